"""Dropout rate vs accuracy, and the train-validation gap with and without dropout (seed 001 ex. 3, seed 002 ex. 4).

    python recipes/dropout.py fit                                      # moons, dropout 0.3, CPU, W&B offline
    python recipes/dropout.py fit --trainer.devices=2 --trainer.strategy=ddp
    python recipes/dropout.py fit --trainer.precision=bf16-mixed
    python recipes/dropout.py fit --print_config > my.yaml && python recipes/dropout.py fit --config my.yaml
    python -m lightning_bestpractices.sweep recipes/sweeps/dropout_moons.yaml    # rates 0 ... 0.7 on moons
    python recipes/dropout.py fit --config recipes/configs/dropout_digits.yaml  # 500 digits, 3-layer MLP, dropout 0.5
    python -m lightning_bestpractices.sweep recipes/sweeps/dropout_digits.yaml   # dropout 0 vs 0.5: the gap

The dropout rate is one config field, ``model.net.init_args.dropout``. The accuracy a training epoch logs
(``train/acc``) is measured with dropout switched on and on moving weights, so it is no fair match for the
validation accuracy. This recipe measures both splits the same way: at the end of every validation epoch, and once
more after fit, it runs the whole training split and the whole validation split through the model in eval mode
(dropout off, under the run's precision) and logs ``train/acc_eval``, ``val/acc_eval``,
``gap = train/acc_eval - val/acc_eval``, the same for the loss (``train/loss_eval``, ``val/loss_eval``,
``gap_loss = val - train``: it still moves when both accuracies have saturated) and, after fit, ``val/acc`` (the
eval-mode validation accuracy, the metric the moons sweep ranks); the per-epoch gaps are the ``gap`` and
``gap_loss`` series. Each rank measures the full splits itself (the weights are identical on every rank), so the
numbers do not depend on the device count.
Every hyperparameter, with its reason, is in ``recipes/configs/dropout.yaml`` (moons) and
``recipes/configs/dropout_digits.yaml`` (digits).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from lightning_bestpractices.cli import BestPracticesCLI
from lightning_bestpractices.data import InMemoryDataModule
from lightning_bestpractices.tasks import Classifier


@torch.no_grad()
def eval_mode_scores(trainer: L.Trainer, model: Classifier, split: str, chunk: int = 4096) -> tuple[float, float]:
    """Accuracy and mean loss of ``model`` on the data module's whole ``split``, in eval mode, under the trainer's
    precision (as a validation step computes them)."""
    x, y = trainer.datamodule.splits[split]
    was_training = model.training
    model.eval()
    correct, loss_sum = 0, 0.0
    try:
        for start in range(0, x.shape[0], chunk):
            with trainer.precision_plugin.forward_context():
                logits = model(x[start : start + chunk]).float()
            target = y[start : start + chunk]
            target = target.to(logits.dtype).view_as(logits) if model.task == "binary" else target.view(-1).long()
            loss_sum += float(model.loss_fn(logits, target)) * logits.shape[0]
            pred = (logits > 0).to(target.dtype) if model.task == "binary" else logits.argmax(-1)
            correct += int((pred == target).sum())
    finally:
        model.train(was_training)
    return correct / x.shape[0], loss_sum / x.shape[0]


class EvalModeGap(L.Callback):
    """At every validation end: train and val accuracy in eval mode, logged, and the gap between them kept."""

    def __init__(self) -> None:
        self.epochs: list[int] = []
        self.gaps: list[float] = []
        self.loss_gaps: list[float] = []

    def measure(self, trainer: L.Trainer, model: Classifier) -> dict[str, float]:
        (train_acc, train_loss), (val_acc, val_loss) = (eval_mode_scores(trainer, model, s) for s in ("train", "val"))
        return {"train/acc_eval": train_acc, "val/acc_eval": val_acc, "gap": train_acc - val_acc,
                "train/loss_eval": train_loss, "val/loss_eval": val_loss, "gap_loss": val_loss - train_loss}

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not isinstance(trainer.datamodule, InMemoryDataModule):
            return
        values = self.measure(trainer, pl_module)
        # the same value on every rank (full splits, identical weights): the mean over ranks changes nothing
        pl_module.log_dict(values, sync_dist=True)
        self.epochs.append(trainer.current_epoch)
        self.gaps.append(values["gap"])
        self.loss_gaps.append(values["gap_loss"])


class DropoutCLI(BestPracticesCLI):
    """After ``fit``: the final eval-mode accuracies and gap as metrics, the per-epoch gap as a series."""

    def report(self) -> None:
        gap = next(cb for cb in self.trainer.callbacks if isinstance(cb, EvalModeGap))
        final = gap.measure(self.trainer, self.model)
        final["dropout"] = dropout_rate(self.model)
        self.add_metrics({**final, "val/acc": final["val/acc_eval"]})
        if gap.epochs:
            self.add_series("gap", x=gap.epochs, y=gap.gaps, xlabel="epoch",
                            ylabel="train acc - val acc (both in eval mode)")
            self.add_series("gap_loss", x=gap.epochs, y=gap.loss_gaps, xlabel="epoch",
                            ylabel="val loss - train loss (both in eval mode)")


def dropout_rate(model: torch.nn.Module) -> float:
    """The largest ``nn.Dropout`` probability in ``model`` (0 when it has none): the setting this run used."""
    rates = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    return float(max(rates)) if rates else 0.0


def main(args=None) -> DropoutCLI:
    return DropoutCLI(Classifier, InMemoryDataModule, args=args, subclass_mode_data=True,
                      trainer_defaults={"callbacks": [EvalModeGap()]},
                      default_config=Path(__file__).parent / "configs" / "dropout.yaml")


if __name__ == "__main__":
    main()
