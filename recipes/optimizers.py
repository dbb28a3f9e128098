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
from lightning.pytorch.callbacks import Callback

from lightning_bestpractices.cli import BestPracticesCLI
from lightning_bestpractices.tasks import Classifier


class ValHistory(Callback):
    """Validation loss and accuracy at every validation end (epoch values, synchronised across processes)."""

    def __init__(self) -> None:
        self.epoch: list[int] = []
        self.loss: list[float] = []
        self.acc: list[float] = []

    def on_validation_end(self, trainer, pl_module) -> None:  # after the epoch-end metrics are computed
        m = trainer.callback_metrics
        if not trainer.sanity_checking and "val/loss" in m:
            self.epoch.append(trainer.current_epoch + 1)
            self.loss.append(float(m["val/loss"]))
            self.acc.append(float(m["val/acc"]))


class OptimizersCLI(BestPracticesCLI):
    """After ``fit``: the best validation accuracy and the per-epoch validation curves."""

    def before_fit(self) -> None:
        self.history = ValHistory()
        self.trainer.callbacks.append(self.history)

    def report(self) -> None:
        h = self.history
        if not h.acc:
            return
        self.add_metrics({"val/best_acc": max(h.acc), "val/best_epoch": float(h.epoch[h.acc.index(max(h.acc))])})
        self.add_series("val/loss", x=h.epoch, y=h.loss, xlabel="epoch", ylabel="validation loss")
        self.add_series("val/acc", x=h.epoch, y=h.acc, xlabel="epoch", ylabel="validation accuracy")


def main(args=None) -> OptimizersCLI:
    return OptimizersCLI(Classifier, L.LightningDataModule, subclass_mode_data=True, args=args,
                         default_config=Path(__file__).parent / "configs" / "optimizers.yaml")


if __name__ == "__main__":
    main()
