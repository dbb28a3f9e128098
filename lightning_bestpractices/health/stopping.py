"""``EarlyStopping`` that ends fit with the weights of the best monitored epoch."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping as _LightningEarlyStopping
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from lightning_bestpractices.errors import ArgumentError

__all__ = ["EarlyStopping"]


class EarlyStopping(_LightningEarlyStopping):
    """Lightning's ``EarlyStopping`` plus ``restore_best``: when fit ends, the model holds the weights that earned
    the best monitored score, whether training stopped early or ran to ``max_epochs``, with or without a
    ``ModelCheckpoint``.

    Why a subclass: the stopping rule (``patience``, ``min_delta``, ``mode``, thresholds, ``check_finite``, the
    DDP-wide stop decision) is Lightning's, unchanged; what Lightning does not do (its issue was closed as won't
    fix) is keep and restore the best weights. This adds only that:

    * **Which weights.** The weights the validation loop evaluated: they are copied (parameters and buffers, e.g.
      BatchNorm statistics) at the first validation batch, after every callback's ``on_validation_epoch_start``.
      With Lightning's ``EMAWeightAveraging`` (or any ``WeightAveraging``) validation runs on the averaged weights,
      so the score and the restored weights are the EMA weights of the best epoch, not the raw training weights of
      that epoch nor the final EMA. Without validation batches (monitoring a training metric) the current weights
      are copied at the check.
    * **When.** The copy is kept whenever the check improves ``best_score`` (Lightning's own rule decides), and is
      loaded back in ``on_fit_end``: after every callback's ``on_train_end``, so also after ``EMAWeightAveraging``
      writes its final average into the model.
    * **DDP.** Rank 0's verdict on "improved" is broadcast, so every rank keeps the copy of the same epoch even when
      the monitored metric is not synced (``sync_dist=False``); DDP keeps the weights identical, so the restored
      weights are bit-identical on every rank.
    * **Resume.** :meth:`state_dict` holds Lightning's state, :attr:`best_epoch` and the best weights, so a resumed
      run restores the best epoch even when it came before the interruption (the checkpoint grows by one copy of the
      weights).

    Memory: one or two extra copies of the weights (the best, and the candidate of the current validation), on the
    model's device.

    Args:
        monitor, min_delta, patience, verbose, mode, strict, check_finite, stopping_threshold,
        divergence_threshold, check_on_train_epoch_end, log_rank_zero_only: as in Lightning's ``EarlyStopping``.
        restore_best: keep and restore the best weights (``False``: Lightning's behaviour).

    Attributes:
        best_epoch: the epoch (0-based ``trainer.current_epoch``) of the best score, ``None`` before the first check.
        restored_epoch: the epoch whose weights were restored at fit end, ``None`` if nothing was restored.
        history: ``(epoch, value)`` of the monitored metric at every validation end of fit (kept across resume),
            for plotting the curve with its best and stop epochs.

    Examples:
        >>> import lightning as L
        >>> from lightning.pytorch.demos.boring_classes import BoringModel
        >>> class Scripted(BoringModel):  # logs a validation loss that is best at epoch 1
        ...     def on_validation_epoch_end(self):
        ...         self.log("val_loss", [0.5, 0.2, 0.4, 0.3, 0.6][self.current_epoch])
        >>> stop = EarlyStopping("val_loss", patience=2)
        >>> trainer = L.Trainer(max_epochs=5, callbacks=[stop], logger=False, enable_checkpointing=False,
        ...                     enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
        >>> trainer.fit(Scripted())
        >>> stop.stopped_epoch, stop.best_epoch, stop.restored_epoch
        (3, 1, 1)
    """

    def __init__(
        self,
        monitor: str,
        min_delta: float = 0.0,
        patience: int = 3,
        verbose: bool = False,
        mode: str = "min",
        strict: bool = True,
        check_finite: bool = True,
        stopping_threshold: float | None = None,
        divergence_threshold: float | None = None,
        check_on_train_epoch_end: bool | None = None,
        log_rank_zero_only: bool = False,
        restore_best: bool = True,
    ) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise ArgumentError(f"`monitor` must be a metric name, got {monitor!r}")
        if mode not in self.mode_dict:
            raise ArgumentError(f"`mode` can be min or max, got {mode!r}")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ArgumentError(f"`patience` must be an int >= 0, got {patience!r}")
        if not min_delta >= 0:
            raise ArgumentError(f"`min_delta` must be >= 0, got {min_delta!r}")
        super().__init__(monitor=monitor, min_delta=min_delta, patience=patience, verbose=verbose, mode=mode,
                         strict=strict, check_finite=check_finite, stopping_threshold=stopping_threshold,
                         divergence_threshold=divergence_threshold, check_on_train_epoch_end=check_on_train_epoch_end,
                         log_rank_zero_only=log_rank_zero_only)
        self.restore_best = bool(restore_best)
        self.best_epoch: int | None = None
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.restored_epoch: int | None = None
        self.history: list[tuple[int, float]] = []
        self._candidate: dict[str, torch.Tensor] | None = None

    # --- state ------------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["best_epoch"] = self.best_epoch
        state["best_weights"] = self.best_weights
        state["history"] = list(self.history)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.best_epoch = state_dict.get("best_epoch")
        self.best_weights = state_dict.get("best_weights")
        self.history = [tuple(h) for h in state_dict.get("history", [])]

    # --- hooks ------------------------------------------------------------------------------------------------

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._candidate = None
        self.restored_epoch = None

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                                  batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.restore_best and batch_idx == 0 and dataloader_idx == 0 and not _not_fitting(trainer):
            self._candidate = _copy_weights(pl_module)  # exactly what this validation evaluates

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if value is not None and not _not_fitting(trainer):
            self.history.append((trainer.current_epoch, float(value)))  # one number per validation
        self._checked(trainer, pl_module, super().on_validation_end)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._checked(trainer, pl_module, super().on_train_epoch_end)
        self._candidate = None

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.restore_best:
            return
        if self.best_weights is None:
            rank_zero_warn(f"EarlyStopping: no check of `monitor`={self.monitor!r} improved, nothing to restore")
            return
        pl_module.load_state_dict(self.best_weights)
        self.restored_epoch = self.best_epoch
        rank_zero_info(f"EarlyStopping: restored the weights of epoch {self.best_epoch} "
                       f"({self.monitor}={float(self.best_score):.6g})")

    # --- helpers ----------------------------------------------------------------------------------------------

    def _checked(self, trainer: L.Trainer, pl_module: L.LightningModule, check) -> None:
        before = self.best_score
        try:
            check(trainer, pl_module)
        except RuntimeError as err:
            if self.monitor in trainer.callback_metrics:
                raise
            raise ArgumentError(f"`monitor` {self.monitor!r} is not a logged metric; the metrics logged are: "
                             f"{sorted(trainer.callback_metrics)}") from err
        if not self.restore_best or _not_fitting(trainer):
            return
        improved = self.best_score is not before  # Lightning replaces best_score only on an improvement
        if trainer.world_size > 1:
            improved = trainer.strategy.broadcast(improved, src=0)
        if improved:
            self.best_weights = self._candidate if self._candidate is not None else _copy_weights(pl_module)
            self.best_epoch = trainer.current_epoch


def _not_fitting(trainer: L.Trainer) -> bool:
    return trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking


def _copy_weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}
