"""Early stopping with checkpointing (seed 002, exercise 5): test accuracy of the final weights vs the best ones.

    python recipes/early_stopping.py fit                                  # digits, CPU, W&B offline, ~1 min
    python recipes/early_stopping.py fit --trainer.devices=2 --trainer.strategy=ddp
    python recipes/early_stopping.py fit --trainer.precision=bf16-mixed
    python recipes/early_stopping.py fit --print_config > my.yaml && python recipes/early_stopping.py fit --config my.yaml

An MLP with no dropout and no weight decay learns the 8x8 digits from only 200 training images at a constant LR,
so it overfits: the validation loss turns up after a few epochs. ``EarlyStopping(restore_best=True)`` stops the run
``patience`` epochs later and loads the weights of the best validation epoch back; a ``ModelCheckpoint`` without a
monitor keeps the final weights on disk. After fit the recipe tests both on the held-out test split and prints
the run folder and the two accuracies; ``val_loss_curve.png`` in the run folder marks the best and the stop
epochs. Every hyperparameter, with its reason, is in ``recipes/configs/early_stopping.yaml``.

When does keeping the best model matter most? When training runs long past the best epoch (large ``patience``, a
fixed epoch budget, a constant LR) and the validation loss really climbs. Here it mostly plateaus after the best
epoch, so the two accuracies differ by one or two percent (a handful of the ~360 test images) and either may win
(see recipes/README.md): the lowest validation loss is not guaranteed to be the highest test accuracy.
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_bestpractices._logging import log_figure, log_table
from lightning_bestpractices.cli import BestPracticesCLI
from lightning_bestpractices.data import DigitsDataModule
from lightning_bestpractices.health import EarlyStopping
from lightning_bestpractices.tasks import Classifier


class EarlyStoppingCLI(BestPracticesCLI):
    """After ``fit``: test the restored best weights and the final ones, log both, plot the monitored curve."""

    def report(self) -> None:
        trainer, model, data = self.trainer, self.model, self.datamodule
        stop = next(cb for cb in trainer.callbacks if isinstance(cb, EarlyStopping))
        final_ckpt = next(cb for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint) and cb.monitor is None)
        best = trainer.test(model, data, verbose=False)[0]["test/acc"]  # the model holds the restored best
        if not final_ckpt.best_model_path:  # fast_dev_run saves no checkpoint: nothing to compare against
            return
        final = trainer.test(model, data, ckpt_path=final_ckpt.best_model_path, verbose=False)[0]["test/acc"]
        metrics = {"best/test_acc": float(best), "final/test_acc": float(final),
                   "best/epoch": float(stop.best_epoch), "stopped_epoch": float(stop.stopped_epoch),
                   "epochs_trained": float(trainer.current_epoch)}
        self.add_metrics(metrics)
        rows = [["final (last epoch)", trainer.current_epoch - 1, round(float(final), 4)],
                ["best (restored)", stop.best_epoch, round(float(best), 4)]]
        log_table(trainer, "test_accuracy", ["weights", "epoch", "test acc"], rows)
        self._plot(stop)

    def _plot(self, stop: EarlyStopping) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        epochs, values = zip(*stop.history)
        ax.plot(epochs, values, marker=".", label=stop.monitor)
        ax.axvline(stop.best_epoch, color="green", linestyle="--", label=f"best (epoch {stop.best_epoch})")
        if stop.stopped_epoch:
            ax.axvline(stop.stopped_epoch, color="red", linestyle=":", label=f"stopped (epoch {stop.stopped_epoch})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(stop.monitor)
        ax.legend()
        ax.grid(alpha=0.3)
        log_figure(self.trainer, "val_loss_curve", fig)


def main(args=None) -> EarlyStoppingCLI:
    return EarlyStoppingCLI(Classifier, DigitsDataModule, args=args,
                            default_config=Path(__file__).parent / "configs" / "early_stopping.yaml")


if __name__ == "__main__":
    main()
