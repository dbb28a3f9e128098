"""Per-step learning-rate logging without a logger round trip at every step.

Lightning's ``LearningRateMonitor(logging_interval="step")`` calls ``logger.log_metrics`` at every optimizer step.
With W&B each call is a blocking hand-off to the SDK's I/O thread plus a record for the ``wandb-core`` service; for
a small model on a busy CPU that is a sizeable share of the step (see ``benchmarks/moons_vs_plain_loop.py``).

:class:`BufferedLRMonitor` reads the same values at the same steps (it *is* a ``LearningRateMonitor``: same keys,
same ``step=``, same ``callback_metrics``, same ``lrs`` history) but keeps the rows on the host and writes them in a
burst: before each validation run, at the end of every training epoch, before a checkpoint is saved, at the end of
training, on an exception, and whenever ``flush_every`` rows are waiting. Every row still reaches every logger,
each with its own ``step``, in step order and before the validation metrics logged after it.
"""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor

from lightning_bestpractices.errors import ArgumentError

__all__ = ["BufferedLRMonitor"]


class BufferedLRMonitor(LearningRateMonitor):
    """``LearningRateMonitor`` whose per-step rows are written to the loggers in batches.

    Args:
        logging_interval: ``"step"`` (buffered), ``"epoch"`` or ``None``, as in ``LearningRateMonitor``.
        log_momentum / log_weight_decay: as in ``LearningRateMonitor``.
        flush_every: most rows held before they are written (bounds how much a hard kill can lose).

    Example:
        >>> monitor = BufferedLRMonitor(flush_every=128)
        >>> monitor.logging_interval, monitor.flush_every, monitor.pending
        ('step', 128, 0)
    """

    def __init__(
        self,
        logging_interval: Literal["step", "epoch"] | None = "step",
        log_momentum: bool = False,
        log_weight_decay: bool = False,
        flush_every: int = 256,
    ) -> None:
        if logging_interval not in (None, "step", "epoch"):
            raise ArgumentError(f"`logging_interval` must be 'step', 'epoch' or None, got {logging_interval!r}")
        if isinstance(flush_every, bool) or not isinstance(flush_every, int) or flush_every < 1:
            raise ArgumentError(f"`flush_every` must be an int >= 1, got {flush_every!r}")
        super().__init__(logging_interval=logging_interval, log_momentum=log_momentum,
                         log_weight_decay=log_weight_decay)
        self.flush_every = flush_every
        self._rows: list[tuple[int, dict[str, float]]] = []

    @property
    def pending(self) -> int:
        """Rows read but not yet written to the loggers."""
        return len(self._rows)

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        # Same condition, values and step as LearningRateMonitor.on_train_batch_start; only the write is deferred.
        if self.logging_interval == "epoch" or not trainer._logger_connector.should_update_logs:
            return
        stats = self._extract_stats(trainer, "step" if self.logging_interval is None else "any")
        if stats:
            self._rows.append((trainer.fit_loop.epoch_loop._batches_that_stepped, stats))
            if len(self._rows) >= self.flush_every:
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
