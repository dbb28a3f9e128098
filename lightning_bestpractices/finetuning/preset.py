"""The ``fine_tune`` preset: head-only 1cycle, then everything unfrozen with discriminative LRs and a fresh 1cycle.

This is fastai's ``Learner.fine_tune`` as one Lightning callback: phase 1 trains the new head on the frozen body
with ``OneCycleLR``; at ``freeze_epochs`` every group is unfrozen, the head gets ``lr * unfreeze_lr_scale`` and the
groups below a geometric spread down to ``head_lr / lr_mult`` (fastai's ``slice(lr / lr_mult, lr)``), and a new
1cycle runs over the remaining steps. Both cycles have the shape of torch's ``OneCycleLR`` (cosine rise and fall,
momentum cycled inversely), as one curve of the package's own
:class:`~lightning_bestpractices.optim.schedule.Schedule`: the preset adds that one scheduler to the Trainer at
``on_fit_start`` and, at the unfreeze, swaps its curve and sets each group's peak LR in the group itself. Lightning
steps and checkpoints it like any scheduler; nothing of Lightning's is replaced.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
from lightning.pytorch.utilities.types import LRSchedulerConfig
from torch.optim import Optimizer

from lightning_bestpractices.errors import ArgumentError

from ..optim.curves import Offset, OneCycleFactor
from ..optim.schedule import Schedule
from .callback import GradualUnfreezing, _check_positive
from .groups import GroupSpec

__all__ = ["FineTune", "fine_tune"]


class FineTune(GradualUnfreezing):
    """Two-phase fine-tuning in one callback: frozen body + 1cycle on the head, then all unfrozen + 1cycle.

    The LightningModule's ``configure_optimizers`` returns only an optimizer (any; e.g. ``AdamW`` over
    ``self.parameters()``); this callback owns the LR schedule. Needs ``max_epochs > freeze_epochs``.

    Args:
        lr: peak LR of the head in phase 1.
        freeze_epochs: epochs of phase 1 (head only), >= 1.
        lr_mult: the input-side group's peak LR in phase 2 is the head's divided by this (>= 1).
        unfreeze_lr_scale: the head's phase-2 peak LR is ``lr * unfreeze_lr_scale`` (fastai halves it).
        pct_start / freeze_pct_start: ``OneCycleLR`` warm-up fraction of phase 2 / phase 1.
        div_factor / final_div_factor: ``OneCycleLR``'s start and end divisors.
        groups / head / train_bn_affine / freeze_bn_stats / weight_decay: as in :class:`GradualUnfreezing`.

    Examples:
        >>> cb = FineTune(lr=1e-3, freeze_epochs=1, lr_mult=100)
        >>> cb.unfreeze_at, cb.groups_per_unfreeze
        ((1,), (-1,))
    """

    def __init__(
        self,
        lr: float = 1e-3,
        freeze_epochs: int = 1,
        *,
        lr_mult: float = 100.0,
        unfreeze_lr_scale: float = 0.5,
        pct_start: float = 0.3,
        freeze_pct_start: float = 0.99,
        div_factor: float = 25.0,
        final_div_factor: float = 1e5,
        groups: list[GroupSpec] | None = None,
        head: GroupSpec | None = None,
        train_bn_affine: bool = False,
        freeze_bn_stats: bool = False,
        weight_decay: float | None = None,
    ) -> None:
        if isinstance(freeze_epochs, bool) or not isinstance(freeze_epochs, int) or freeze_epochs < 1:
            raise ArgumentError(f"`freeze_epochs` must be an int >= 1, got {freeze_epochs!r}")
        super().__init__(
            unfreeze_at=[freeze_epochs],
            groups_per_unfreeze=-1,
            groups=groups,
            head=head,
            train_bn_affine=train_bn_affine,
            freeze_bn_stats=freeze_bn_stats,
            weight_decay=weight_decay,
        )
        self.lr = _check_positive("lr", lr)
        self.lr_mult = _check_positive("lr_mult", lr_mult)
        if self.lr_mult < 1:
            raise ArgumentError(f"`lr_mult` must be >= 1, got {lr_mult!r}")
        self.unfreeze_lr_scale = _check_positive("unfreeze_lr_scale", unfreeze_lr_scale)
        for name, value in (("pct_start", pct_start), ("freeze_pct_start", freeze_pct_start)):
            if not isinstance(value, (int, float)) or not 0 < value < 1:
                raise ArgumentError(f"`{name}` must be in (0, 1), got {value!r}")
        self.pct_start, self.freeze_pct_start = float(pct_start), float(freeze_pct_start)
        self.div_factor = _check_positive("div_factor", div_factor)
        self.final_div_factor = _check_positive("final_div_factor", final_div_factor)
        self.freeze_epochs = freeze_epochs
        self._total_steps = 0

    def _lr_factor(self) -> float:
        return (1.0 / self.lr_mult) ** (1.0 / max(len(self.groups) - 1, 1))

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and (trainer.max_epochs in (None, -1) or trainer.max_epochs <= self.freeze_epochs):
            raise ArgumentError(
                f"FineTune needs `max_epochs` > `freeze_epochs`={self.freeze_epochs}, got max_epochs={trainer.max_epochs}"
            )
        super().setup(trainer, pl_module, stage)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.lr_scheduler_configs:
            raise ArgumentError(
                "FineTune owns the LR schedule: configure_optimizers must return only an optimizer, got "
                f"{len(trainer.lr_scheduler_configs)} LR scheduler(s)"
            )
        total = trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ArgumentError("FineTune needs a finite training length (`max_epochs`)")
        self._total_steps = int(total)
        self._phase1_steps = self._total_steps * self.freeze_epochs // trainer.max_epochs
        super().on_fit_start(trainer, pl_module)  # finds the optimizer, rebuilds groups on resume
        opt = self._optimizer
        self._schedule = Schedule(opt, self._cycle(opt, 0, self._phase1_steps, self.freeze_pct_start))
        trainer.lr_scheduler_configs.append(LRSchedulerConfig(self._schedule, name="fine_tune", interval="step"))
        if self.phase == 0:
            self._set_peaks(opt, [self.lr] * len(opt.param_groups))
        else:  # resumed in phase 2; Lightning then loads the schedule's state (its step and curve)
            self._install_phase2(trainer)

    def _cycle(self, opt: Optimizer, start: int, steps: int, pct: float) -> Offset:
        steps = max(int(steps), 2)
        cycle = "betas" in opt.defaults or opt.defaults.get("momentum", 0) > 0
        peak = max(pct * steps - 1.0, 0.0)  # where torch's OneCycleLR peaks
        curve = OneCycleFactor(steps, peak, self.div_factor, 1.0 / (self.div_factor * self.final_div_factor),
                               shapes=("cos", "cos"), momentum=(0.85, 0.95) if cycle else None)  # fmt: skip
        return Offset(start, curve)

    def _set_peaks(self, opt: Optimizer, max_lr: list[float]) -> None:
        for group, peak in zip(opt.param_groups, max_lr):  # each group's peak LR lives in the group
            group["initial_lr"] = float(peak)
        self._schedule.refresh()

    def _install_phase2(self, trainer: L.Trainer) -> None:
        opt = self._optimizer
        n = len(self.groups)
        by_name = {g.name: i for i, g in enumerate(self.groups)}
        head_lr = self.lr * self.unfreeze_lr_scale
        max_lr = []
        for group in opt.param_groups:
            name = str(group.get("name", "")).removesuffix(".no_decay")
            depth = n - 1 - by_name[name] if name in by_name else 0
            max_lr.append(head_lr * self._lr_factor() ** depth)
        start = self._phase1_steps
        self._schedule.curve = self._cycle(opt, start, self._total_steps - start, self.pct_start)
        self._set_peaks(opt, max_lr)

    def _apply(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super()._apply(trainer, pl_module)
        self._install_phase2(trainer)


def fine_tune(lr: float = 1e-3, freeze_epochs: int = 1, **kwargs: Any) -> FineTune:
    """The ``fine_tune`` preset as a function: ``Trainer(callbacks=[fine_tune(lr=1e-3, freeze_epochs=1)])``.

    Examples:
        >>> type(fine_tune(2e-3, freeze_epochs=2, lr_mult=10)).__name__
        'FineTune'
    """
    return FineTune(lr=lr, freeze_epochs=freeze_epochs, **kwargs)
