"""Optimizers (seed 004): one run = one update rule at its usual LR, constant, on 8x8 digits (or two moons).

    python recipes/optimizers.py fit                                  # AdamW on digits, CPU, W&B offline
    python recipes/optimizers.py fit --trainer.devices=2 --trainer.strategy=ddp
    python recipes/optimizers.py fit --trainer.precision=bf16-mixed
    python recipes/optimizers.py fit --print_config > my.yaml && python recipes/optimizers.py fit --config my.yaml
    python recipes/optimizers.py fit --model.optim.optimizer=lamb --model.optim.lr=0.01     # another update rule
    python recipes/optimizers.py fit --config recipes/configs/optimizers_moons.yaml          # two moons instead
    python -m lightning_bestpractices.sweep recipes/sweeps/optimizers.yaml        # SGD ... LAMB on digits
    python -m lightning_bestpractices.sweep recipes/sweeps/optimizers_moons.yaml  # the same on two moons

Same network, data, epochs and constant LR (no schedule) for every optimizer; only the update rule (and its usual
LR, listed with a reason in the sweep files) changes. Reports the final validation accuracy and loss (``val/acc``,
``val/loss``), the best validation accuracy over the epochs (``val/best_acc``) and the validation loss and accuracy
per epoch as the ``val/loss`` and ``val/acc`` series. Every hyperparameter, with its reason, is in
``recipes/configs/optimizers.yaml``.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L

from lightning_bestpractices.cli import BestPracticesCLI, MetricHistory
from lightning_bestpractices.tasks import Classifier


class OptimizersCLI(BestPracticesCLI):
    """After ``fit``: the best validation accuracy and the per-epoch validation curves (from the CLI's history)."""

    def report(self) -> None:
        history = next(cb for cb in self.trainer.callbacks if isinstance(cb, MetricHistory))
        rows = [r for r in history.rows if "val/acc" in r and "val/loss" in r]
        if not rows:
            return
        epochs = [r["epoch"] + 1 for r in rows]  # epochs trained so far, 1-based
        acc, loss = [r["val/acc"] for r in rows], [r["val/loss"] for r in rows]
        best = max(range(len(acc)), key=acc.__getitem__)
        self.add_metrics({"val/best_acc": acc[best], "val/best_epoch": epochs[best]})
        self.add_series("val/loss", x=epochs, y=loss, xlabel="epoch", ylabel="validation loss")
        self.add_series("val/acc", x=epochs, y=acc, xlabel="epoch", ylabel="validation accuracy")


def main(args=None) -> OptimizersCLI:
    return OptimizersCLI(Classifier, L.LightningDataModule, subclass_mode_data=True, args=args,
                         default_config=Path(__file__).parent / "configs" / "optimizers.yaml")


if __name__ == "__main__":
    main()
