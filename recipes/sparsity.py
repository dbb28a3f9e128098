"""Sparse digits MLP: L1 weight penalty + magnitude pruning (Lightning's ModelPruning), accuracy against sparsity.

    python recipes/sparsity.py fit                                   # L1 + pruning, digits, CPU, W&B offline
    python recipes/sparsity.py fit --penalty.strength=0              # the same without L1: the baseline
    python recipes/sparsity.py fit --trainer.devices=2 --trainer.strategy=ddp
    python recipes/sparsity.py fit --trainer.precision=bf16-mixed
    python recipes/sparsity.py fit --print_config > my.yaml && python recipes/sparsity.py fit --config my.yaml

Every hyperparameter, with its reason, is in ``recipes/configs/sparsity.yaml``. After fit the run folder holds
``sparsity_curve.png`` and ``sparsity_curve.csv`` (validation accuracy after pruning the trained network further,
globally by magnitude, to each sparsity level) and the console shows the run folder and the final metrics:
validation accuracy and the fraction of weights with ``|w| < 1e-3``. L1 gives the sparser network, and the one that
loses less accuracy when pruned hard.
"""

from __future__ import annotations

import copy
from pathlib import Path

import lightning as L
import torch
import torch.nn.utils.prune as prune
from lightning.pytorch.callbacks import Callback, ModelPruning

from lightning_bestpractices._logging import log_figure, log_table
from lightning_bestpractices.cli import BestPracticesCLI
from lightning_bestpractices.data import DigitsDataModule
from lightning_bestpractices.regularization import WeightPenalty, sparsity
from lightning_bestpractices.tasks import Classifier

LEVELS = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)


class ScheduledPruning(ModelPruning):
    """``ModelPruning`` (global L1-magnitude by default) applied every ``every`` epochs from ``start_epoch`` on.

    Each application removes ``amount`` of the weights still left (torch.nn.utils.prune semantics), so ``k``
    applications leave ``(1 - amount) ** k`` of them. Weights are not reset to their initial values (no lottery
    ticket rewinding): the network keeps training after each cut.
    """

    def __init__(self, amount: float = 0.4, start_epoch: int = 20, every: int = 5, stop_epoch: int | None = None,
                 pruning_fn: str = "l1_unstructured", make_pruning_permanent: bool = True) -> None:  # fmt: skip
        if not 0 <= amount < 1:
            raise ValueError(f"`amount` must be in [0, 1), got {amount!r}")
        if start_epoch < 0 or every < 1:
            raise ValueError(f"`start_epoch` must be >= 0 and `every` >= 1, got {start_epoch!r} and {every!r}")
        self.start_epoch, self.every, self.stop_epoch = start_epoch, every, stop_epoch
        super().__init__(pruning_fn, amount=amount, apply_pruning=self._due, use_global_unstructured=True,
                         parameter_names=["weight"], use_lottery_ticket_hypothesis=False, make_pruning_permanent=make_pruning_permanent)  # fmt: skip

    def _due(self, epoch: int) -> bool:
        if epoch < self.start_epoch or (self.stop_epoch is not None and epoch > self.stop_epoch):
            return False
        return (epoch - self.start_epoch) % self.every == 0


class SparsityReport(Callback):
    """At fit end: fraction of ``|w| < threshold``, and validation accuracy after extra global magnitude pruning."""

    def __init__(self, threshold: float = 1e-3, levels: tuple[float, ...] = LEVELS) -> None:
        self.threshold, self.levels = threshold, list(levels)
        self.results: dict = {}

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        x, y = trainer.datamodule.splits["val"]
        net = pl_module.net
        rows = []
        for level in self.levels:
            pruned = copy.deepcopy(net).cpu().eval()
            targets = [(m, "weight") for m in pruned.modules() if isinstance(m, torch.nn.Linear)]
            if level > 0:  # the smallest |w| go first, so the zeros left by training-time pruning are included
                prune.global_unstructured(targets, prune.L1Unstructured, amount=_count(level, pruned))
            with torch.no_grad():
                acc = float((pruned(x.cpu().float()).argmax(-1) == y.cpu()).float().mean())
            rows.append([level, sparsity(pruned, 1e-12), acc])
        frac = sparsity(net, self.threshold)
        acc = float(trainer.callback_metrics.get("val/acc", torch.tensor(float("nan"))))
        self.results = {"sparsity/frac_below_threshold": frac, "sparsity/val_acc": acc, "curve": rows}
        for logger in trainer.loggers:
            logger.log_metrics({"sparsity/frac_below_threshold": frac}, step=trainer.global_step)
        log_table(trainer, "sparsity_curve", ["target sparsity", "sparsity (exact zeros)", "val accuracy"], rows)
        log_figure(trainer, "sparsity_curve", _plot(rows, frac, acc))


def _count(level: float, net: torch.nn.Module) -> int:
    """How many Linear weights are zero at sparsity ``level``."""
    return int(round(level * sum(m.weight.numel() for m in net.modules() if isinstance(m, torch.nn.Linear))))


def _plot(rows: list, frac: float, acc: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([r[1] for r in rows], [r[2] for r in rows], "o-")
    ax.set_xlabel("sparsity (fraction of weights exactly 0)")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"trained: {frac:.1%} of |w| < 1e-3, val acc {acc:.3f}")
    ax.grid(alpha=0.3)
    return fig


class SparsityCLI(BestPracticesCLI):
    """The recipe's CLI: the penalty, the pruning schedule and the report are top-level config sections."""

    def add_arguments_to_parser(self, parser) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_lightning_class_args(WeightPenalty, "penalty")
        parser.add_lightning_class_args(ScheduledPruning, "pruning")
        parser.add_lightning_class_args(SparsityReport, "report")

    def report(self) -> None:
        report = next(c for c in self.trainer.callbacks if isinstance(c, SparsityReport))
        r = report.results
        self.add_metrics({"sparsity/val_acc": r["sparsity/val_acc"],
                          "sparsity/frac_below_threshold": r["sparsity/frac_below_threshold"]})
        for level, _, acc in r["curve"]:  # accuracy after pruning to 90% and 95% zeros: where L1 pays off
            if level in (0.9, 0.95):
                self.add_metrics({f"pruned{round(level * 100)}/val_acc": acc})
        self.add_series("sparsity_curve", x=[row[1] for row in r["curve"]], y=[row[2] for row in r["curve"]],
                        xlabel="sparsity (fraction of weights exactly 0)", ylabel="validation accuracy")


def main(args=None) -> SparsityCLI:
    return SparsityCLI(Classifier, DigitsDataModule, args=args,
                       default_config=Path(__file__).parent / "configs" / "sparsity.yaml")  # fmt: skip


if __name__ == "__main__":
    main()
