"""The few LR curves torch lacks, as picklable ``LambdaLR`` factors plus one ``OneCycleLR`` subclass.

Everything else in :mod:`~lightning_bestpractices.optim.schedules` is torch's own scheduler. These exist because:

* :class:`CosineFactor` (cosine decay to a floor, used through ``torch.optim.lr_scheduler.LambdaLR``):
  torch's ``CosineAnnealingLR`` takes one absolute ``eta_min`` for all parameter groups, so groups with LR
  multipliers would all converge to the same floor and discriminative ratios break. A factor on ``base_lr`` keeps
  ``lr_i(t) = base_lr_i * f(t)``, reaches the floor exactly at the decay's last step, and is closed form (no
  drift from the recursive update). It equals ``CosineAnnealingLR(T_max=length - 1)`` for one group.
* :class:`CosineWarmupFactor`: torch's ``LinearLR`` covers linear warmup; a half-cosine ramp has no torch class.
* :class:`RestartsFactor`: torch's ``CosineAnnealingWarmRestarts`` restarts one step *before* reaching
  ``eta_min`` (its cycle index runs ``0 .. T_i - 1``), so the last optimizer step never sees the configured
  floor, and its ``eta_min`` is again one absolute value for all groups. Here every cycle ends exactly at the
  floor and the cycles tile the decay window.
* :class:`OneCycle`: torch's ``OneCycleLR`` (kept for momentum / beta1 cycling and its state handling) uses one
  anneal shape for both phases and peaks at step ``pct_start * total - 1``; the seed's 1cycle (and Smith's) rises
  linearly and anneals with a cosine, peaking at ``pct_start * (total - 1)``. This subclass allows a shape per
  phase and puts the phase ends where the seed does, so the last step lands on ``min_lr``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch.optim.lr_scheduler import OneCycleLR

from lightning_bestpractices.errors import ArgumentError

__all__ = ["CosineFactor", "CosineWarmupFactor", "RestartsFactor", "OneCycle"]


def _cos_interp(start: float, end: float, pct: float) -> float:
    return end + (start - end) * (1.0 + math.cos(math.pi * pct)) / 2.0


class CosineFactor:
    """``f(i)`` falls from 1 to ``final`` along a half cosine over ``length`` steps (``i = 0 .. length - 1``).

    Example:
        >>> f = CosineFactor(5, final=0.1)
        >>> [round(f(i), 4) for i in range(6)]
        [1.0, 0.8682, 0.55, 0.2318, 0.1, 0.1]
    """

    def __init__(self, length: int, final: float) -> None:
        self.length = int(length)
        self.final = float(final)

    def __call__(self, i: int) -> float:
        if self.length <= 1 or i >= self.length - 1:
            return self.final
        return _cos_interp(1.0, self.final, i / (self.length - 1))


class CosineWarmupFactor:
    """``f(t)`` rises from ``start`` to 1 along a half cosine over ``length`` steps, then stays at 1.

    Example:
        >>> f = CosineWarmupFactor(3, start=0.0)
        >>> [f(t) for t in range(4)]
        [0.0, 0.5, 1.0, 1.0]
    """

    def __init__(self, length: int, start: float) -> None:
        self.length = int(length)
        self.start = float(start)

    def __call__(self, t: int) -> float:
        if self.length <= 1 or t >= self.length - 1:
            return 1.0
        return _cos_interp(self.start, 1.0, t / (self.length - 1))


class RestartsFactor:
    """Cosine cycles of the given lengths, each from 1 down to exactly ``final`` at its last step.

    Example:
        >>> f = RestartsFactor([3, 3], final=0.0)
        >>> [f(i) for i in range(6)]
        [1.0, 0.5, 0.0, 1.0, 0.5, 0.0]
    """

    def __init__(self, lengths: Sequence[int], final: float) -> None:
        self.lengths = [int(n) for n in lengths]
        self.final = float(final)

    def __call__(self, i: int) -> float:
        for n in self.lengths:
            if i < n:
                return CosineFactor(n, self.final)(i)
            i -= n
        return self.final

    @staticmethod
    def tile(total: int, cycles: int, mult: float) -> list[int]:
        """Cycle lengths ``L, L*mult, L*mult**2 ...`` (rounded, each >= 1) that add up to ``total`` exactly.

        Example:
            >>> RestartsFactor.tile(70, cycles=3, mult=2.0)
            [10, 20, 40]
        """
        weights = [mult**k for k in range(cycles)]
        bounds = [round(total * sum(weights[: k + 1]) / sum(weights)) for k in range(cycles)]
        lengths = [b - a for a, b in zip([0, *bounds[:-1]], bounds)]
        if min(lengths) < 1:
            raise ArgumentError(f"{cycles} restart cycles do not fit into {total} decay steps")
        return lengths


class OneCycle(OneCycleLR):
    """torch's ``OneCycleLR`` with a shape per phase and the seed's phase ends (see the module docstring).

    Args:
        optimizer, max_lr, total_steps, div_factor, cycle_momentum, base_momentum, max_momentum: as in torch.
        peak_step: the (possibly fractional) step index where the LR peaks; default ``pct_start * (total - 1)``.
        min_lr: the LR of the last step (per group or one value); default ``max_lr / div_factor / 1e4``.
        shapes: anneal shape of the rise and of the fall, each ``"linear"`` or ``"cos"``.

    Example:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0, momentum=0.9)
        >>> sched = OneCycle(opt, max_lr=1.0, total_steps=5, peak_step=2, div_factor=10, min_lr=0.01)
        >>> lrs = []
        >>> for _ in range(5):
        ...     lrs.append(round(opt.param_groups[0]["lr"], 4)); opt.step(); sched.step()
        >>> lrs
        [0.1, 0.55, 1.0, 0.505, 0.01]
    """

    def __init__(
        self,
        optimizer,
        max_lr: float | list[float],
        total_steps: int,
        *,
        peak_step: float | None = None,
        pct_start: float = 0.3,
        min_lr: float | list[float] | None = None,
        shapes: tuple[str, str] = ("linear", "cos"),
        cycle_momentum: bool = True,
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
        div_factor: float = 25.0,
        last_epoch: int = -1,
    ) -> None:
        if any(s not in ("linear", "cos") for s in shapes) or len(shapes) != 2:
            raise ArgumentError(f"`shapes` must be two of 'linear'/'cos', got {shapes!r}")
        if total_steps < 2:
            raise ArgumentError(f"1cycle needs at least 2 optimizer steps, got {total_steps!r}")
        peak = pct_start * (total_steps - 1) if peak_step is None else float(peak_step)
        if not 0.0 <= peak < total_steps - 1:
            raise ArgumentError(f"the 1cycle peak must lie in [0, {total_steps - 1}), got step {peak:g}")
        self.shapes = tuple(shapes)
        self.peak_step = peak
        super().__init__(
            optimizer, max_lr, total_steps=total_steps, pct_start=float(pct_start), cycle_momentum=cycle_momentum,
            base_momentum=base_momentum, max_momentum=max_momentum, div_factor=div_factor, last_epoch=last_epoch,
        )  # fmt: skip
        self._schedule_phases[0]["end_step"] = peak
        self._schedule_phases[1]["end_step"] = float(total_steps - 1)
        if last_epoch == -1:
            groups = self.optimizer.param_groups
            mins = min_lr if isinstance(min_lr, (list, tuple)) else [min_lr] * len(groups)
            for g, m in zip(groups, mins):
                g["min_lr"] = g["initial_lr"] / 1e4 if m is None else float(m)
            self._update_lr_now()

    def _update_lr_now(self) -> None:
        """Recompute step 0 with the patched phases (the parent's __init__ already took its first step)."""
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    def get_lr(self) -> list[float]:
        step = self.last_epoch
        out = []
        for group in self.optimizer.param_groups:
            start = 0.0
            for i, phase in enumerate(self._schedule_phases):
                end = phase["end_step"]
                if step <= end or i == len(self._schedule_phases) - 1:
                    pct = 1.0 if end <= start else min(1.0, (step - start) / (end - start))
                    interp = _cos_interp if self.shapes[i] == "cos" else _lin_interp
                    lr = interp(group[phase["start_lr"]], group[phase["end_lr"]], pct)
                    if self.cycle_momentum:
                        mom = interp(group[phase["start_momentum"]], group[phase["end_momentum"]], pct)
                        if self.use_beta1:
                            group["betas"] = (mom, *group["betas"][1:])
                        else:
                            group["momentum"] = mom
                    break
                start = end
            out.append(lr)
        return out


def _lin_interp(start: float, end: float, pct: float) -> float:
    return start + (end - start) * pct
