"""Image classification with a CNN: BatchNorm, augmentation, init, no-decay groups, warmup-cosine, label smoothing
and gradient clipping, all from the config (seed 002, sections 6 and 9).

    python recipes/image_cnn.py fit                                   # 8x8 digits as images, offline, CPU, W&B offline
    python recipes/image_cnn.py fit --trainer.devices=2 --trainer.strategy=ddp
    python recipes/image_cnn.py fit --trainer.precision=bf16-mixed
    python recipes/image_cnn.py fit --print_config > my.yaml && python recipes/image_cnn.py fit --config my.yaml
    python -m lightning_bestpractices.sweep recipes/sweeps/image_cnn.yaml   # augmentation / smoothing on and off
    python recipes/image_cnn.py fit --data.name=FashionMNIST --data.download=true --data.val_size=5000 \\
        --trainer.max_epochs=15                                       # a real dataset (network needed once)
    python recipes/image_cnn.py fit --config recipes/configs/image_cnn_cifar10.yaml      # CIFAR-10, 3 channels
    python recipes/image_cnn.py fit --model.channels_last=true --model.compile=true      # GPU speed switches

What comes from where: the network is ``models.SmallCNN`` (conv -> BatchNorm -> ReLU blocks); ``WeightInit("auto")``
initializes it from the activations it finds; the optimizer is AdamW with no weight decay on BatchNorm parameters
and biases and a warmup-cosine schedule (``model.optim``); label smoothing is a ``Classifier`` argument; clipping
is the Trainer's own ``gradient_clip_val``; augmentation is a list of torchvision v2 transforms that
``VisionDataModule`` applies to training images only. After fit the recipe tests the final weights and saves a
picture of a few training images as the model saw them (augmented) next to the originals.

``--model.channels_last`` stores conv weights and input batches in NHWC (faster convolutions on GPUs with tensor
cores, especially under ``bf16-mixed``); ``--model.compile`` compiles the network with ``torch.compile``. Both are
off by default: on a CPU and on 8x8 images they cost more than they save.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from lightning_bestpractices._logging import log_figure
from lightning_bestpractices.cli import BestPracticesCLI
from lightning_bestpractices.data import VisionDataModule
from lightning_bestpractices.errors import ArgumentError
from lightning_bestpractices.optim.mixin import OptimConfig
from lightning_bestpractices.tasks import Classifier


class ImageClassifier(Classifier):
    """``Classifier`` for image batches, with two speed switches for GPU users (both off by default).

    Args:
        channels_last: keep the network's 4-D weights and every 4-D input batch in ``torch.channels_last``
            (NHWC) memory format, which cuDNN's tensor-core convolutions prefer. The values are unchanged.
        compile: compile the network in place with ``nn.Module.compile`` (``torch.compile``) once the model is
            configured; parameter names and checkpoints stay those of the plain module.
        compile_mode: ``torch.compile``'s ``mode`` (``None``, ``"default"``, ``"reduce-overhead"``,
            ``"max-autotune"``).
        The other arguments are :class:`~lightning_bestpractices.tasks.Classifier`'s.
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int = 10,
        task: Literal["binary", "multiclass"] | None = None,
        optim: OptimConfig | dict[str, Any] | None = None,
        label_smoothing: float = 0.0,
        metric_update_every: int = 32,
        channels_last: bool = False,
        compile: bool = False,
        compile_mode: str | None = None,
    ) -> None:
        super().__init__(net, num_classes, task=task, optim=optim, label_smoothing=label_smoothing,
                         metric_update_every=metric_update_every)
        if compile_mode not in (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"):
            raise ArgumentError(f"`compile_mode` must be a torch.compile mode or None, got {compile_mode!r}")
        self.channels_last, self.compile_net, self.compile_mode = bool(channels_last), bool(compile), compile_mode
        self._compiled = False

    def configure_model(self) -> None:
        # runs before the strategy moves/wraps the module (DDP), on every rank, once per trainer entry point
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)
        if self.compile_net and not self._compiled:
            self.net.compile(mode=self.compile_mode)
            self._compiled = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)  # a no-op when the batch already is NHWC
        return self.net(x)


def augmentation_figure(datamodule: VisionDataModule, n: int = 8):
    """Originals (top) and training-pipeline versions (bottom) of the first ``n`` training images."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    train = datamodule.datasets["train"]
    fig, axes = plt.subplots(2, n, figsize=(1.3 * n, 3))
    for i in range(n):
        index = train.indices[i] if hasattr(train, "indices") else i
        base = train.dataset if hasattr(train, "dataset") else train
        augmented = base[index][0]
        transform, base.transform = base.transform, datamodule.transforms["val"]  # the same image, no augmentation
        try:
            original = base[index][0]
        finally:
            base.transform = transform
        for row, img in enumerate((original, augmented)):
            img = img.float()
            img = (img - img.min()) / (img.max() - img.min()).clamp_min(1e-8)
            axes[row, i].imshow(img.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray")
            axes[row, i].axis("off")
    axes[0, 0].set_title("original", fontsize=8, loc="left")
    axes[1, 0].set_title("as trained (augmented)", fontsize=8, loc="left")
    return fig


class ImageCNNCLI(BestPracticesCLI):
    """After ``fit``: test the final weights; save the augmentation picture."""

    def report(self) -> None:
        trainer, model, data = self.trainer, self.model, self.datamodule
        fitted = {k: float(v) for k, v in trainer.callback_metrics.items() if k in ("train/acc", "val/acc")}
        result = trainer.test(model, data, verbose=False)[0]  # collective: every rank runs it
        metrics = {"test/acc": float(result["test/acc"]), "test/loss": float(result["test/loss"]), **fitted}
        if len(fitted) == 2:  # train accuracy is measured on augmented images, validation on originals
            metrics["train_val_gap"] = fitted["train/acc"] - fitted["val/acc"]
        self.add_metrics(metrics)
        if trainer.is_global_zero and not trainer.fast_dev_run and data.augment:
            log_figure(trainer, "augmentation", augmentation_figure(data))


def main(args=None) -> ImageCNNCLI:
    return ImageCNNCLI(ImageClassifier, VisionDataModule, args=args,
                       default_config=Path(__file__).parent / "configs" / "image_cnn.yaml")


if __name__ == "__main__":
    main()
