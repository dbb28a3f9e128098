"""Depth diagnostics (seed 001, section 5): does the activation scale survive 30 ReLU layers? One run = one init.

    python recipes/depth_diagnostics.py fit                          # Kaiming, 30 layers x 256, digits, CPU, W&B offline
    python recipes/depth_diagnostics.py fit --trainer.devices=2 --trainer.strategy=ddp
    python recipes/depth_diagnostics.py fit --trainer.precision=bf16-mixed
    python recipes/depth_diagnostics.py fit --print_config > my.yaml && python recipes/depth_diagnostics.py fit --config my.yaml
    python recipes/depth_diagnostics.py fit --init.scheme=normal     # another init: kaiming, auto, xavier, normal, ...
    python recipes/depth_diagnostics.py fit --trainer.max_epochs=0   # the probe alone, no training
    python -m lightning_bestpractices.sweep recipes/sweeps/depth_diagnostics.yaml   # kaiming vs auto vs xavier vs normal

A plain ReLU MLP (no normalization, no dropout, so nothing rescues a bad init) is initialized by ``WeightInit``
(``--init.scheme``, ``--init.seed``) at fit start. Before the first training step the recipe probes the initialized
network with ``depth_statistics`` on a standard-normal batch (``--probe.batch_size``, ``--probe.seed``): the std of
every layer's output and of the loss gradient w.r.t. it. Then the same network trains on the 8x8 digits, so the
probe can be tied to trainability. After fit: the ``act_std`` and ``grad_std`` series (one point per layer), the
plot ``depth_diagnostics.png`` and the table ``depth_stats.csv`` in the run folder, and as metrics
``probe/act_ratio`` (last hidden layer's activation std over the first layer's), ``probe/grad_ratio`` (first layer's
gradient std over the last layer's) and the final ``val/acc`` / ``val/loss``. The schemes, for reading the sweep:

* ``kaiming``: Kaiming normal (fan-in, ReLU gain), variance 2/fan_in: keeps the scale;
* ``auto``: ``init_weights('auto')`` finds the ReLU after each layer (Kaiming), Xavier for the output layer;
* ``xavier``: Xavier normal, gain 1: variance 2/(fan_in+fan_out), half of what ReLU needs per layer;
* ``normal``: N(0, 0.01), the "small random numbers" init: the signal vanishes within a few layers.

Every hyperparameter, with its reason, is in ``recipes/configs/depth_diagnostics.yaml``.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from lightning_bestpractices._logging import log_figure, log_table
from lightning_bestpractices.cli import BestPracticesCLI
from lightning_bestpractices.data import DigitsDataModule
from lightning_bestpractices.errors import ArgumentError
from lightning_bestpractices.initialization import WeightInit
from lightning_bestpractices.initialization.diagnostics import DepthStats, depth_statistics, plot_depth
from lightning_bestpractices.tasks import Classifier


class DepthProbe(Callback):
    """``depth_statistics`` of the model's network at fit start, on ``N(0, 1)`` inputs.

    The CLI lists it after the ``--init`` callback, so it sees the initialized weights. Every rank probes (the weights are identical after ``WeightInit``'s broadcast); the batch comes from a private
    generator, so the global RNG, and with it the training run, is the same with or without the probe.
    """

    def __init__(self, batch_size: int = 512, seed: int = 0) -> None:
        if batch_size < 2:
            raise ArgumentError(f"`batch_size` must be >= 2, got {batch_size!r}")
        self.batch_size, self.seed = batch_size, seed
        self.stats: DepthStats | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        net = pl_module.net
        first = next(m for m in net.modules() if isinstance(m, torch.nn.Linear))
        gen = torch.Generator().manual_seed(self.seed)
        x = torch.randn(self.batch_size, first.in_features, generator=gen).to(pl_module.device)
        self.stats = depth_statistics(net, x)  # float32 statistics, .grad untouched


class DepthCLI(BestPracticesCLI):
    """Adds ``--init`` (the ``WeightInit`` callback) and ``--probe``; after ``fit`` reports the probe."""

    def add_arguments_to_parser(self, parser) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_lightning_class_args(WeightInit, "init")
        parser.add_lightning_class_args(DepthProbe, "probe")

    def report(self) -> None:
        trainer = self.trainer
        probe = next(cb for cb in trainer.callbacks if isinstance(cb, DepthProbe))
        s = probe.stats
        if s is None:  # fit stopped before it started
            return
        scheme = next(cb for cb in trainer.callbacks if isinstance(cb, WeightInit)).scheme
        layers = list(range(1, len(s.act_std) + 1))
        self.add_series("act_std", x=layers, y=s.act_std, xlabel="layer", ylabel="activation std")
        self.add_series("grad_std", x=layers, y=s.grad_std, xlabel="layer", ylabel="gradient std (dL/d output)")
        # the last hidden layer against the first (the output layer has its own, Xavier-sized, scale)
        self.add_metrics({"probe/act_ratio": s.act_std[-2] / s.act_std[0],
                          "probe/grad_ratio": s.grad_std[0] / s.grad_std[-2],
                          "probe/act_std_first": s.act_std[0], "probe/act_std_last_hidden": s.act_std[-2]})
        log_table(trainer, "depth_stats", s.columns, s.rows)
        title = f"{len(layers)}-layer ReLU MLP, init {scheme!r}, probe batch {probe.batch_size} ~ N(0, 1)"
        log_figure(trainer, "depth_diagnostics", plot_depth({scheme: s}, title=title))


def main(args=None) -> DepthCLI:
    return DepthCLI(Classifier, DigitsDataModule, args=args,
                    default_config=Path(__file__).parent / "configs" / "depth_diagnostics.yaml")


if __name__ == "__main__":
    main()
