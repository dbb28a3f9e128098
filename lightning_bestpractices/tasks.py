"""LightningModules that wrap a plain ``nn.Module`` for a task (loss, torchmetrics metrics, optimizer).

Example:
    >>> from lightning_bestpractices.models import MLP
    >>> task = Classifier(MLP(2, [8], 1), num_classes=2)
    >>> task.task, type(task.loss_fn).__name__
    ('binary', 'BCEWithLogitsLoss')
"""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
import torchmetrics
from torch import nn

from lightning_bestpractices.errors import ArgumentError

__all__ = ["Classifier"]


class Classifier(L.LightningModule):
    """Train a classifier: BCE-with-logits for ``"binary"`` (one logit), cross-entropy for ``"multiclass"``.

    Logs ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc`` per epoch (``test/*`` likewise) through
    torchmetrics (``MeanMetric`` for the sample-weighted loss, ``Accuracy``), synchronised across processes at epoch
    end. ``predict_step`` returns probabilities. The optimizer is AdamW; the schedule is cosine annealing over the
    run's epochs, stepped per epoch as in the seed's pipeline.

    What it adds over calling torchmetrics in every step: a step only appends its detached outputs to a short
    on-device buffer (no host sync, no ``self.log``); every ``metric_update_every`` batches, and at epoch end, the
    buffer goes to each metric in one ``update`` call. The epoch values are the same as per-batch updates, but
    torchmetrics' per-call work (input checks, state bookkeeping) is paid once per flush instead of at every step,
    which is most of a small model's step time. Binary accuracy gets probabilities (``sigmoid(logits)``), so the
    0.5 threshold applies to every batch alike (torchmetrics guesses logits vs probabilities per ``update`` call).

    Args:
        net: the network; its output is one logit (binary) or ``num_classes`` logits.
        num_classes: number of classes.
        task: ``"binary"`` or ``"multiclass"``; by default binary when ``num_classes == 2``.
        lr: AdamW learning rate, > 0.
        weight_decay: AdamW decoupled weight decay, >= 0.
        cosine_epochs: length of the cosine schedule in epochs (default: ``trainer.max_epochs``); 0 disables it.
        fused: use torch's fused AdamW kernel (one kernel per parameter instead of ~10 small ops; on CPU and CUDA),
            ``None`` keeps torch's default implementation. Same update rule, different rounding.
        metric_update_every: batches buffered before the metrics are updated (bounds the buffer's memory).
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int = 2,
        task: Literal["binary", "multiclass"] | None = None,
        lr: float = 0.01,
        weight_decay: float = 0.01,
        cosine_epochs: int | None = None,
        fused: bool | None = None,
        metric_update_every: int = 32,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ArgumentError(f"`num_classes` must be >= 2, got {num_classes!r}")
        if not lr > 0:
            raise ArgumentError(f"`lr` must be > 0, got {lr!r}")
        if not weight_decay >= 0:
            raise ArgumentError(f"`weight_decay` must be >= 0, got {weight_decay!r}")
        if cosine_epochs is not None and cosine_epochs < 0:
            raise ArgumentError(f"`cosine_epochs` must be >= 0, got {cosine_epochs!r}")
        if metric_update_every < 1:
            raise ArgumentError(f"`metric_update_every` must be >= 1, got {metric_update_every!r}")
        task = task or ("binary" if num_classes == 2 else "multiclass")
        if task not in ("binary", "multiclass"):
            raise ArgumentError(f"`task` must be 'binary' or 'multiclass', got {task!r}")
        self.save_hyperparameters(ignore=["net"])  # for the logger and checkpoint; the code reads the attributes below
        # Plain attributes, not self.hparams: a subclass that calls save_hyperparameters() replaces hparams with its
        # own arguments, and the settings must not disappear with them.
        self.lr, self.weight_decay, self.cosine_epochs = lr, weight_decay, cosine_epochs
        self.fused, self.metric_update_every = fused, metric_update_every
        self.net = net
        self.task = task
        self.loss_fn = nn.BCEWithLogitsLoss() if task == "binary" else nn.CrossEntropyLoss()
        kw = {"task": task} if task == "binary" else {"task": task, "num_classes": num_classes}
        self.acc = nn.ModuleDict({f"{s}_": torchmetrics.Accuracy(**kw) for s in ("train", "val", "test")})
        self.mean_loss = nn.ModuleDict({f"{s}_": torchmetrics.MeanMetric() for s in ("train", "val", "test")})
        self._pending: dict[str, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]]] = {
            "train": [], "val": [], "test": []}

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets `_current_fx_name` around every hook call, ~45 times per training step, and
        # nn.Module.__setattr__ runs its parameter/module/buffer checks each time. That name is never a parameter,
        # module or buffer, so the plain assignment below is exactly what nn.Module would end up doing.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _targets(self, y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        if self.task == "binary":
            return y.to(logits.dtype).view_as(logits)
        return y.long().view(-1)

    def _step(self, batch, stage: str) -> torch.Tensor:
        # Hot path: no self.log, no metric call, no host sync; outputs wait in `_pending` for `_flush`.
        x, y = batch[0], batch[1]
        logits = self(x)
        target = self._targets(y, logits)
        loss = self.loss_fn(logits, target)
        pending = self._pending[stage]
        pending.append((logits.detach(), target, loss.detach(), x.shape[0]))
        if len(pending) >= self.metric_update_every:
            self._flush(stage)
        return loss

    def _flush(self, stage: str) -> None:
        """Update the stage's torchmetrics with every buffered batch at once, then empty the buffer."""
        pending = self._pending[stage]
        if not pending:
            return
        logits = torch.cat([p[0] for p in pending]).float()
        target = torch.cat([p[1] for p in pending]).long()
        losses = torch.stack([p[2] for p in pending]).float()
        weights = torch.tensor([p[3] for p in pending], dtype=losses.dtype).to(losses.device, non_blocking=True)
        pending.clear()
        preds = torch.sigmoid(logits) if self.task == "binary" else logits
        self.acc[f"{stage}_"].update(preds, target)
        self.mean_loss[f"{stage}_"].update(losses, weight=weights)

    def _log_epoch(self, stage: str) -> None:
        self._flush(stage)
        self.log(f"{stage}/loss", self.mean_loss[f"{stage}_"], prog_bar=stage != "test")
        self.log(f"{stage}/acc", self.acc[f"{stage}_"], prog_bar=stage == "val")

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def on_train_epoch_start(self) -> None:
        self._pending["train"].clear()  # left over only if the previous epoch was interrupted

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def on_validation_epoch_start(self) -> None:
        self._pending["val"].clear()

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "test")

    def on_test_epoch_start(self) -> None:
        self._pending["test"].clear()

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        logits = self(x).float()
        return torch.sigmoid(logits) if self.task == "binary" else logits.softmax(-1)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay, fused=self.fused)
        epochs = self.cosine_epochs
        if epochs is None:
            epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 0
        if not epochs:
            return opt
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
