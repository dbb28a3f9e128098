"""One LR monitor: LR, momentum and weight decay per named parameter group, per-step rows written in bursts.

Keys follow Lightning's ``LearningRateMonitor`` (``lr-AdamW``; ``lr-AdamW/<group name>`` once the optimizer has
named or several groups; ``-momentum`` / ``-weight_decay`` suffixes), always built from the *optimizer* and its
groups' ``"name"`` -- never from a scheduler's name -- so the keys are the same whichever schedule runs and whichever
part of the package (the optimizer factory, gradual unfreezing, the LR finder) made the group. What
:class:`LRMonitor` adds over ``LearningRateMonitor``:

* momentum (SGD momentum or Adam-family beta1) and weight decay per group, on by default; optimizers that have no
  momentum log no ``-momentum`` key (instead of a warning and a constant 0);
* groups added mid-training (gradual unfreezing) get their own keys from the next logged step on;
* momentum and weight decay go into a row only when they change (a group's first row, then each change): they
  are constant for most optimizers, and every key costs in every logger row (``trainer.callback_metrics`` has
  them all at every logged step);
* per-step rows are kept on the host and written in a burst (before validation, at epoch end, before a checkpoint,
  at the end of training, on an exception, and every ``flush_every`` rows), not with one ``logger.log_metrics``
  round trip per step; every row still reaches every logger with its own ``step``, in step order.

"""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch.optim import Optimizer

from lightning_bestpractices.errors import ArgumentError

from .. import _compat

__all__ = ["LRMonitor", "group_stats"]


def _has_momentum(optimizer: Optimizer) -> bool:
    g = optimizer.param_groups[0] if optimizer.param_groups else optimizer.defaults
    return "betas" in g or bool(g.get("momentum", 0))


def group_stats(
    optimizers: list[Optimizer], *, momentum: bool = True, weight_decay: bool = True
) -> dict[str, float]:
    """``{key: value}`` of every group of every optimizer (keys as in the module docstring).

    Examples:
        >>> net = torch.nn.Linear(2, 1)
        >>> opt = torch.optim.SGD([{"params": [net.weight], "name": "w"}, {"params": [net.bias], "name": "b",
        ...                         "weight_decay": 0.0}], lr=0.1, momentum=0.9, weight_decay=1e-4)
        >>> group_stats([opt])
        {'lr-SGD/w': 0.1, 'lr-SGD/w-momentum': 0.9, 'lr-SGD/w-weight_decay': 0.0001, 'lr-SGD/b': 0.1, 'lr-SGD/b-momentum': 0.9, 'lr-SGD/b-weight_decay': 0.0}
    """
    out: dict[str, float] = {}
    seen: dict[str, int] = {}
    for opt in optimizers:
        cls = type(opt).__name__
        stem = f"lr-{cls}" if cls not in seen else f"lr-{cls}-{seen[cls]}"
        seen[cls] = seen.get(cls, 0) + 1
        groups = opt.param_groups
        with_momentum = momentum and _has_momentum(opt)
        for i, g in enumerate(groups):
            name = g.get("name") or (f"pg{i + 1}" if len(groups) > 1 else None)
            key = f"{stem}/{name}" if name else stem
            out[key] = float(g["lr"])
            if with_momentum:
                out[f"{key}-momentum"] = float(g["betas"][0] if "betas" in g else g.get("momentum", 0.0))
            if weight_decay and "weight_decay" in g:
                out[f"{key}-weight_decay"] = float(g["weight_decay"])
    return out


class LRMonitor(Callback):
    """Log LR, momentum and weight decay of every named parameter group (see the module docstring).

    Args:
        logging_interval: ``"step"`` (every ``log_every_n_steps`` optimizer steps, buffered), ``"epoch"`` (at
            each epoch start) or ``None`` (same as ``"step"``: every schedule of the package is per step).
        log_momentum: log SGD momentum / Adam-family beta1 where the optimizer has one.
        log_weight_decay: log each group's weight decay.
        flush_every: most rows held before they are written (bounds how much a hard kill can lose).

    Attributes:
        lrs: ``{key: [lr, ...]}``, every LR read (one per logged batch, so several per optimizer step under
            gradient accumulation).
        lr_steps: ``{key: [step, ...]}``, the optimizer step each ``lrs`` entry belongs to (optimizer steps taken
            before that batch, i.e. the logged ``step``); together they give the LR of every optimizer step.

    Examples:
        >>> m = LRMonitor(flush_every=128)
        >>> m.logging_interval, m.log_momentum, m.flush_every, m.pending
        ('step', True, 128, 0)
    """

    def __init__(
        self,
        logging_interval: Literal["step", "epoch"] | None = "step",
        log_momentum: bool = True,
        log_weight_decay: bool = True,
        flush_every: int = 256,
    ) -> None:
        if logging_interval not in (None, "step", "epoch"):
            raise ArgumentError(f"`logging_interval` must be 'step', 'epoch' or None, got {logging_interval!r}")
        if isinstance(flush_every, bool) or not isinstance(flush_every, int) or flush_every < 1:
            raise ArgumentError(f"`flush_every` must be an int >= 1, got {flush_every!r}")
        self.logging_interval = logging_interval
        self.log_momentum, self.log_weight_decay = bool(log_momentum), bool(log_weight_decay)
        self.flush_every = flush_every
        self.lrs: dict[str, list[float]] = {}
        self.lr_steps: dict[str, list[int]] = {}
        self.last_momentum_values: dict[str, float] = {}
        self._rows: list[tuple[int, dict[str, float]]] = []
        self._static: dict[str, float] = {}  # last logged momentum / weight decay per key

    @property
    def pending(self) -> int:
        """Rows read but not yet written to the loggers."""
        return len(self._rows)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._static = {}
        if not trainer.loggers:
            raise ArgumentError("LRMonitor needs a logger: the Trainer has `logger=False`")

    def _read(self, trainer: L.Trainer) -> dict[str, float]:
        stats = group_stats(trainer.optimizers, momentum=self.log_momentum, weight_decay=self.log_weight_decay)
        step = _compat.batches_that_stepped(trainer)
        for key, value in stats.items():
            if key.endswith("-momentum"):
                self.last_momentum_values[key] = value
            elif not key.endswith("-weight_decay"):
                self.lrs.setdefault(key, []).append(value)
                self.lr_steps.setdefault(key, []).append(step)
        device = trainer.strategy.root_device
        trainer.callback_metrics.update({k: torch.tensor(v, device=device) for k, v in stats.items()})
        row = {}
        for key, value in stats.items():
            if key.endswith(("-momentum", "-weight_decay")):
                if self._static.get(key) == value:
                    continue
                self._static[key] = value
            row[key] = value
        return row

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if self.logging_interval == "epoch" or not _compat.should_update_logs(trainer):
            return
        stats = self._read(trainer)
        if stats:
            self._rows.append((_compat.batches_that_stepped(trainer), stats))
            if len(self._rows) >= self.flush_every:
                self.flush(trainer)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.logging_interval == "epoch":
            stats = self._read(trainer)
            if stats:
                self._rows.append((_compat.batches_that_stepped(trainer), stats))
                self.flush(trainer)

    def flush(self, trainer: L.Trainer) -> None:
        """Write every waiting row to every logger, oldest first."""
        rows, self._rows = self._rows, []
        for logger in trainer.loggers:
            for step, stats in rows:
                logger.log_metrics(stats, step=step)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.flush(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.flush(trainer)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self.flush(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.flush(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.flush(trainer)


#: The former per-group monitor's name; the same class.
