"""Training-health checks.

:class:`RankParity` verifies the promise DDP makes and that late changes to a model (unfreezing, re-initialising,
swapping modules) can silently break: every rank holds the same parameters and buffers. Lightning has no such check;
a divergence otherwise shows up only as a checkpoint (rank 0's) that does not match what the other ranks trained.
"""

from __future__ import annotations

from typing import Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from lightning_bestpractices.errors import ArgumentError

__all__ = ["RankParity", "max_rank_difference"]


def max_rank_difference(trainer: L.Trainer, module: torch.nn.Module, *, buffers: bool = True) -> dict[str, float]:
    """Max absolute difference of each parameter (and floating buffer) between every rank and rank 0.

    All ranks must call it (it all-gathers one tensor at a time, so peak extra memory is one tensor times the world
    size). Returns ``{name: max_abs_diff}`` on every rank; on a single process every value is 0.
    """
    tensors = dict(module.named_parameters())
    if buffers:
        tensors.update({n: b for n, b in module.named_buffers() if b.is_floating_point()})
    out: dict[str, float] = {}
    for name, t in tensors.items():
        gathered = trainer.strategy.all_gather(t.detach().float())
        if trainer.world_size == 1:
            out[name] = 0.0
            continue
        out[name] = float((gathered - gathered[:1]).abs().max())
    return out


class RankParity(L.Callback):
    """At the end of fit (and every ``every_n_epochs`` epochs, if set), check that all ranks hold identical weights.

    Logs ``parity/max_rank_diff`` to the loggers and keeps it in :attr:`max_diff`. On a mismatch it warns or raises
    (``on_mismatch``), naming the worst tensors.

    Args:
        every_n_epochs: also check at the end of every n-th training epoch; ``None`` checks only at fit end.
        on_mismatch: ``"warn"`` or ``"raise"``.
        tolerance: largest difference accepted (0: bit-identical).
    """

    def __init__(
        self,
        every_n_epochs: int | None = None,
        on_mismatch: Literal["warn", "raise"] = "warn",
        tolerance: float = 0.0,
    ) -> None:
        if every_n_epochs is not None and every_n_epochs < 1:
            raise ArgumentError(f"`every_n_epochs` must be >= 1 or None, got {every_n_epochs!r}")
        if on_mismatch not in ("warn", "raise"):
            raise ArgumentError(f"`on_mismatch` must be 'warn' or 'raise', got {on_mismatch!r}")
        if tolerance < 0:
            raise ArgumentError(f"`tolerance` must be >= 0, got {tolerance!r}")
        self.every_n_epochs = every_n_epochs
        self.on_mismatch = on_mismatch
        self.tolerance = tolerance
        self.max_diff: float | None = None

    def _check(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        diffs = max_rank_difference(trainer, pl_module)
        self.max_diff = max(diffs.values(), default=0.0)
        for logger in trainer.loggers:
            logger.log_metrics({"parity/max_rank_diff": self.max_diff}, step=trainer.global_step)
        if self.max_diff <= self.tolerance:
            rank_zero_info(f"RankParity: {trainer.world_size} rank(s) hold identical weights (max diff {self.max_diff:g})")
            return
        worst = sorted(diffs.items(), key=lambda kv: -kv[1])[:5]
        msg = f"RankParity: ranks diverged, max |diff| = {self.max_diff:g}; worst tensors: {worst}"
        if self.on_mismatch == "raise":
            raise RuntimeError(msg)
        rank_zero_warn(msg)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._check(trainer, pl_module)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer, pl_module)
