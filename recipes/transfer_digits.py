"""Transfer learning, the seed's model A / model B experiment, one seed per run (seed 004, Reusing Pretrained Layers).

    python recipes/transfer_digits.py fit                              # digits + the seed's MLP, CPU, W&B offline
    python recipes/transfer_digits.py fit --trainer.devices=2 --trainer.strategy=ddp
    python recipes/transfer_digits.py fit --trainer.precision=bf16-mixed
    python recipes/transfer_digits.py fit --print_config > my.yaml && python recipes/transfer_digits.py fit --config my.yaml
    python -m lightning_bestpractices.sweep recipes/sweeps/transfer_digits.yaml   # 10 seeds x {mlp, cnn}
    python recipes/transfer_digits.py fit --model.backbone=cnn --model_b.freeze_bn_stats=true   # SmallCNN, BN frozen
    python recipes/transfer_digits.py fit --model.backbone=resnet18 --model.weights=DEFAULT --model.resize=64 \
        --data.dataset=FashionMNIST --data.root=~/data --data.download=true --data.held_out=[0,2]
                                                  # T-shirt vs pullover from ImageNet weights: the download is yours

``fit`` trains model A on 8 classes (the datamodule's other classes). After fit, on every rank, the recipe tests
model A and trains model B, a binary classifier for the 2 held-out classes from only ``data.labelled`` (20)
labelled images, three ways, each with a fresh Trainer that has model A's hardware, strategy and precision (and no
logger of its own): ``B_scratch`` (a new network), ``B_head`` (model A's layers copied and frozen, a new output
layer trained), ``B_unfreeze`` (the same start, then ``GradualUnfreezing`` unfreezes one layer group per
``model_b.unfreeze_at`` epoch, with discriminative and reduced LRs). ``B_head`` and ``B_unfreeze`` start from the same
new head. The seed (``seed_everything``) changes everything: model A's init and data split, the 20 images, the new
heads, the data order; one run is one seed, and the sweep repeats it over 10 seeds.

Metrics: ``A/test_acc`` and, per variant ``B_scratch``, ``B_head``, ``B_unfreeze``: ``test_acc``, ``test_loss`` and
``trainable_params`` (after training); series ``B/test_acc`` (x = variant 0, 1, 2) and ``<variant>/val_acc`` per
epoch. The run folder holds ``results.csv`` and ``model_b_curves.png``. The hyperparameters were set once before
running and are the same for every variant; do not pick the seed, the held-out pair or the settings after looking
at the results (see recipes/README.md). Every hyperparameter, with its reason, is in
``recipes/configs/transfer_digits.yaml``.
"""

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from lightning_bestpractices._logging import log_figure, log_table
from lightning_bestpractices.cli import BestPracticesCLI
from lightning_bestpractices.data import DigitsDataModule, InMemoryDataModule, VisionDataModule
from lightning_bestpractices.errors import ArgumentError
from lightning_bestpractices.finetuning import GradualUnfreezing, freeze_group, layer_groups
from lightning_bestpractices.models import MLP, SmallCNN
from lightning_bestpractices.tasks import Classifier

BACKBONES = ("mlp", "cnn", "resnet18")
DATASETS = ("digits", "MNIST", "FashionMNIST")
#: model B's variants: metric prefix -> table label
VARIANTS = {"B_scratch": "B: scratch", "B_head": "B: head only", "B_unfreeze": "B: frozen -> gradual unfreezing"}


# --- models ------------------------------------------------------------------------------------------------------


class InputAdapter(nn.Module):
    """Repeat a 1-channel image to 3 channels and optionally resize it, for RGB-pretrained backbones (no parameters)."""

    def __init__(self, size: int | None = None) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        if self.size is not None and x.shape[-1] != self.size:
            x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return x


def replace_head(net: nn.Module, out_features: int, *, copy_net: bool = True) -> nn.Module:
    """``net`` (a copy, unless ``copy_net=False``) with its output layer (the last layer group's Linear) made anew."""
    net = copy.deepcopy(net) if copy_net else net
    head = layer_groups(net)[-1].modules[-1]
    old = net.get_submodule(head)
    if not isinstance(old, nn.Linear):
        raise ArgumentError(f"the output layer {head!r} must be nn.Linear, got {type(old).__name__}")
    parent, _, leaf = head.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, leaf, nn.Linear(old.in_features, out_features))
    return net


def build_net(backbone: str, input_size: int, out_features: int, weights: str | None = None,
              resize: int | None = None) -> nn.Module:  # fmt: skip
    """A fresh network of the recipe's ``backbone`` for ``input_size`` x ``input_size`` grayscale images."""
    if backbone == "mlp":  # the seed's model: 3 x (Dense 100, ReLU), output layer (MLP flattens its input)
        return MLP(input_size * input_size, [100, 100, 100], out_features, dropout=0.0, norm="none")
    if backbone == "cnn":
        return SmallCNN(in_channels=1, num_classes=out_features, channels=(32, 64), dropout=0.0)
    import torchvision

    if weights is None:  # trained here as model A: grayscale input
        net = torchvision.models.resnet18(weights=None, num_classes=out_features)
        net.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
        return net
    if weights == "DEFAULT":  # torchvision downloads the ImageNet weights (network needed once)
        net = torchvision.models.resnet18(weights=torchvision.models.ResNet18_Weights.DEFAULT)
    else:
        net = torchvision.models.resnet18(weights=None)
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    net = replace_head(net, out_features, copy_net=False)  # ImageNet's 1000 classes -> ours
    return nn.Sequential(InputAdapter(resize), net)


class TransferClassifier(Classifier):
    """Model A: the ``Classifier`` task on the 8 classes that model B does not see.

    Args:
        backbone: ``"mlp"`` (the seed's dense net, 3 x 100), ``"cnn"`` (``SmallCNN`` with BatchNorm, no dropout) or
            ``"resnet18"`` (torchvision).
        weights: resnet18 only: ``"DEFAULT"`` (ImageNet, downloaded by torchvision) or a state-dict file; model A
            then starts from them (its output layer replaced by an 8-class one) instead of from scratch.
        resize: resnet18 with ``weights`` only: resize inputs to this square size inside the network.
        input_size: side of the square input images (the recipe links it to ``data.dataset``).
        optim: model A's optimizer and schedule (see :class:`~lightning_bestpractices.tasks.Classifier`).
    """

    def __init__(self, backbone: Literal["mlp", "cnn", "resnet18"] = "mlp", weights: str | None = None,
                 resize: int | None = None, input_size: int = 8, optim: dict[str, Any] | None = None) -> None:  # fmt: skip
        if backbone not in BACKBONES:
            raise ArgumentError(f"`backbone` must be one of {BACKBONES}, got {backbone!r}")
        if weights is not None and backbone != "resnet18":
            raise ArgumentError(f"`weights` applies to backbone 'resnet18', got weights={weights!r} with {backbone!r}")
        if resize is not None and (weights is None or resize < 8):
            raise ArgumentError(f"`resize` needs `weights` and a size >= 8, got resize={resize!r}, weights={weights!r}")
        super().__init__(build_net(backbone, input_size, 8, weights, resize), num_classes=8, optim=optim)
        self.backbone, self.input_size = backbone, input_size

    def new_net(self, out_features: int) -> nn.Module:
        """A fresh, untrained network of the same architecture (model B from scratch)."""
        return build_net(self.backbone, self.input_size, out_features)


# --- data ----------------------------------------------------------------------------------------------------------


class TransferData(InMemoryDataModule):
    """Model A's data (the 8 classes not held out) as the datamodule; model B's from :meth:`data_b`.

    Args:
        dataset: ``"digits"`` (scikit-learn's 8x8 digits, no download), ``"MNIST"`` or ``"FashionMNIST"``
            (torchvision, 28x28; ``download=True`` or a copy under ``root``).
        root / download: torchvision's dataset folder and whether it may download there.
        held_out: the 2 classes of model B; model A learns the other 8.
        labelled: model B's labelled training images (the seed: 20).
        batch_size / b_batch_size: per-process batch sizes of model A and model B.
        seed: data split, model B's images and shuffling (the recipe links it to ``seed_everything``).
    """

    def __init__(self, dataset: Literal["digits", "MNIST", "FashionMNIST"] = "digits", root: str = "data",
                 download: bool = False, held_out: Sequence[int] = (3, 5), labelled: int = 20, batch_size: int = 64,
                 b_batch_size: int = 5, seed: int = 0) -> None:  # fmt: skip
        super().__init__(batch_size=batch_size, seed=seed)
        if dataset not in DATASETS:
            raise ArgumentError(f"`dataset` must be one of {DATASETS}, got {dataset!r}")
        held_out = [int(c) for c in held_out]
        if len(held_out) != 2 or len(set(held_out)) != 2 or not all(0 <= c <= 9 for c in held_out):
            raise ArgumentError(f"`held_out` must be two different classes in 0..9, got {held_out!r}")
        if labelled < 2:
            raise ArgumentError(f"`labelled` must be >= 2, got {labelled!r}")
        if b_batch_size < 1:
            raise ArgumentError(f"`b_batch_size` must be >= 1, got {b_batch_size!r}")
        self.dataset, self.root, self.download = dataset, root, download
        self.held_out, self.labelled, self.b_batch_size = held_out, labelled, b_batch_size
        self.classes_a = [c for c in range(10) if c not in held_out]

    def prepare_data(self) -> None:
        if self.dataset != "digits" and self.download:  # once, on local rank 0 (Lightning calls it there)
            VisionDataModule(self.dataset, root=self.root, download=True).prepare_data()

    def _vision(self, classes: list[int], val_size: int) -> dict[str, torch.utils.data.Dataset]:
        vision = VisionDataModule(self.dataset, root=self.root, download=False, classes=classes, val_size=val_size,
                                  seed=self.seed)  # fmt: skip
        vision.setup("fit")
        return vision.datasets

    def _tensors(self, ds: torch.utils.data.Dataset, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if n is not None:  # a seeded random subset, e.g. model B's labelled images
            idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(self.seed))[:n].tolist()
            ds = torch.utils.data.Subset(ds, idx)
        xs, ys = zip(*torch.utils.data.DataLoader(ds, batch_size=1000))
        return torch.cat(xs), torch.cat(ys).long()

    def build_splits(self) -> dict:
        """Model A's splits: the 8 classes, relabelled 0..7."""
        if self.dataset == "digits":
            return DigitsDataModule(classes=self.classes_a, image=True, seed=self.seed).build_splits()
        ds = self._vision(self.classes_a, val_size=5000)
        test = self._tensors(ds["test"])
        return {"train": self._tensors(ds["train"]), "val": self._tensors(ds["val"]), "test": test, "predict": test}

    def data_b(self) -> InMemoryDataModule:
        """Model B's data: the 2 held-out classes (relabelled 0, 1), ``labelled`` training images."""
        if self.dataset == "digits":  # 40% test: ~146 test images of the ~365 of two digits
            splits = DigitsDataModule(classes=self.held_out, image=True, train_limit=self.labelled, test_fraction=0.4,
                                      seed=self.seed).build_splits()  # fmt: skip
            splits = {k: splits[k] for k in ("train", "val", "test")}
        else:
            ds = self._vision(self.held_out, val_size=1000)
            splits = {"train": self._tensors(ds["train"], self.labelled), "val": self._tensors(ds["val"]),
                      "test": self._tensors(ds["test"])}  # fmt: skip
        return InMemoryDataModule(**splits, batch_size=self.b_batch_size, seed=self.seed)


# --- model B -------------------------------------------------------------------------------------------------------


class ModelB:
    """Model B's training, the same for every variant, and the unfreezing schedule of ``B_unfreeze``.

    Args:
        max_epochs: epochs of each model B fit.
        optim: model B's optimizer and schedule (the head's LR; lower groups get ``lr_factor`` powers of it).
        unfreeze_at: epochs at which the next layer group from the top is unfrozen (each < ``max_epochs``).
        lr_factor: LR ratio between adjacent layer groups (discriminative LRs).
        lr_reduction: factor on the LRs of the groups already training at each unfreeze.
        freeze_bn_stats: keep BatchNorm statistics frozen after unfreezing (small batches give noisy ones).
    """

    def __init__(self, max_epochs: int = 20, optim: dict[str, Any] | None = None,
                 unfreeze_at: Sequence[int] = (4, 8, 12), lr_factor: float = 0.5, lr_reduction: float = 0.5,
                 freeze_bn_stats: bool = False) -> None:  # fmt: skip
        if max_epochs < 2:
            raise ArgumentError(f"`max_epochs` of model B must be >= 2, got {max_epochs!r}")
        late = [e for e in unfreeze_at if e >= max_epochs]
        if late:
            raise ArgumentError(f"`unfreeze_at` epochs must be < max_epochs={max_epochs}, got {list(unfreeze_at)!r}")
        self.max_epochs, self.optim = max_epochs, optim
        self.unfreeze_at, self.lr_factor, self.lr_reduction = list(unfreeze_at), lr_factor, lr_reduction
        self.freeze_bn_stats = freeze_bn_stats
        self.unfreezing()  # GradualUnfreezing checks its own arguments now, not after model A trained

    def unfreezing(self) -> GradualUnfreezing:
        return GradualUnfreezing(unfreeze_at=self.unfreeze_at, lr_factor=self.lr_factor,
                                 lr_reduction=self.lr_reduction, freeze_bn_stats=self.freeze_bn_stats)  # fmt: skip


class ValCurve(Callback):
    """Validation accuracy after every epoch of a model B fit."""

    def __init__(self) -> None:
        self.epochs: list[int] = []
        self.acc: list[float] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # on_validation_end, not on_validation_epoch_end: the task logs val/acc in its own epoch-end hook, which
        # Lightning runs after the callbacks' one
        if not trainer.sanity_checking and "val/acc" in trainer.callback_metrics:
            self.epochs.append(trainer.current_epoch)
            self.acc.append(float(trainer.callback_metrics["val/acc"]))


#: Trainer settings model B takes over from model A's config (hardware, strategy, precision, batch budgets)
_INHERITED = ("accelerator", "strategy", "devices", "num_nodes", "precision", "plugins", "deterministic", "benchmark",
              "limit_train_batches", "limit_val_batches", "limit_test_batches", "enable_progress_bar",
              "inference_mode", "use_distributed_sampler", "gradient_clip_val", "gradient_clip_algorithm")  # fmt: skip


def seed_of(seed: int | bool) -> int:
    """The run's integer seed (``seed_everything: true`` draws one later; the data then use 0)."""
    return 0 if isinstance(seed, bool) else int(seed)


def input_size_of(dataset: str) -> int:
    return 8 if dataset == "digits" else 28


def trainable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class TransferCLI(BestPracticesCLI):
    """``fit`` trains model A; ``report`` tests it and trains and tests the three model B variants."""

    def add_arguments_to_parser(self, parser) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_class_arguments(ModelB, "model_b")
        # one run = one seed: the split, model B's images and the shuffling follow seed_everything
        parser.link_arguments("seed_everything", "data.seed", compute_fn=seed_of)
        parser.link_arguments("data.dataset", "model.input_size", compute_fn=input_size_of)

    def b_trainer(self, max_epochs: int, callbacks: list[Callback]) -> L.Trainer:
        """A Trainer for model B: model A's hardware, strategy and precision; no logger, no checkpoints."""
        config = self.config_init[self.subcommand]["trainer"]
        kwargs = {k: config[k] for k in _INHERITED if k in config and config[k] is not None}
        strategy = kwargs.get("strategy")
        if strategy is not None and not isinstance(strategy, str):  # an instance is bound to model A's run
            kwargs["strategy"] = getattr(type(strategy), "strategy_name", "auto")
        fast = self.trainer.fast_dev_run
        if fast:  # a smoke test: one batch per loop, still every epoch (so every unfreeze point is passed)
            n = 1 if fast is True else int(fast)
            kwargs.update(limit_train_batches=n, limit_val_batches=n, limit_test_batches=n)
        return L.Trainer(**kwargs, max_epochs=max_epochs, callbacks=callbacks, logger=False,
                         enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
                         default_root_dir=self.trainer.default_root_dir)  # fmt: skip

    def report(self) -> None:
        trainer, model_a, dm = self.trainer, self.model, self.datamodule
        settings: ModelB = self.config_init[self.subcommand]["model_b"]
        seed = seed_of(self.config[self.subcommand]["seed_everything"])
        result = trainer.test(model_a, dm, verbose=False)[0]
        metrics = {"A/test_acc": result["test/acc"], "A/test_loss": result["test/loss"]}
        data = dm.data_b()

        torch.manual_seed(seed + 1)
        scratch = model_a.new_net(1)
        torch.manual_seed(seed + 2)
        head_only = replace_head(model_a.net, 1)
        for group in layer_groups(head_only)[:-1]:
            freeze_group(head_only, group)
        torch.manual_seed(seed + 2)  # the same new head as "head only"
        unfreeze = replace_head(model_a.net, 1)
        runs = {"B_scratch": (scratch, []), "B_head": (head_only, []), "B_unfreeze": (unfreeze, [settings.unfreezing()])}

        self.models_b: dict[str, Classifier] = {}
        curves: dict[str, ValCurve] = {}
        for name, (net, callbacks) in runs.items():
            task = Classifier(net, num_classes=2, optim=settings.optim)
            curves[name] = ValCurve()
            b_trainer = self.b_trainer(settings.max_epochs, [*callbacks, curves[name]])
            b_trainer.fit(task, data)
            result = b_trainer.test(task, data, verbose=False)[0]
            metrics.update({f"{name}/test_acc": result["test/acc"], f"{name}/test_loss": result["test/loss"],
                            f"{name}/trainable_params": trainable(task)})  # fmt: skip
            self.models_b[name] = task
            self.add_series(f"{name}/val_acc", curves[name].epochs, curves[name].acc, xlabel="model B epoch",
                            ylabel="validation accuracy")  # fmt: skip
        self.add_metrics(metrics)
        self.add_series("B/test_acc", list(range(len(VARIANTS))), [metrics[f"{k}/test_acc"] for k in VARIANTS],
                        xlabel="model B variant (0 scratch, 1 head only, 2 gradual unfreezing)",
                        ylabel="model B test accuracy")  # fmt: skip

        rows = [["A (8 classes)", trainable(model_a), metrics["A/test_acc"], metrics["A/test_loss"]]]
        rows += [[label, metrics[f"{k}/trainable_params"], metrics[f"{k}/test_acc"], metrics[f"{k}/test_loss"]]
                 for k, label in VARIANTS.items()]  # fmt: skip
        log_table(trainer, "results", ["model", "trainable params (end)", "test acc", "test loss"], rows)
        log_figure(trainer, "model_b_curves", _plot(curves, settings.unfreeze_at))


def _plot(curves: dict[str, ValCurve], unfreeze_at: list[int]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, curve in curves.items():
        ax.plot(curve.epochs, curve.acc, marker=".", label=VARIANTS[name])
    for epoch in unfreeze_at:
        ax.axvline(epoch, color="0.7", linestyle=":", lw=1)
    ax.set_xlabel("model B epoch (dotted: unfreeze points of gradual unfreezing)")
    ax.set_ylabel("validation accuracy")
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def main(args=None) -> TransferCLI:
    return TransferCLI(TransferClassifier, TransferData, args=args,
                       default_config=Path(__file__).parent / "configs" / "transfer_digits.yaml")  # fmt: skip


if __name__ == "__main__":
    main()
