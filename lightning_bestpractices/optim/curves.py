"""LR curves: picklable closed-form factors ``f(t)`` of the optimizer step, resolved against a run's step count.

Every schedule of :mod:`~lightning_bestpractices.optim.schedules` is one of these curves driven by the package's
:class:`~lightning_bestpractices.optim.schedule.Schedule`: group ``g`` gets ``lr = g["initial_lr"] * f(t)``, so
the ratios between groups hold at every step and a group added later needs nothing but its own ``initial_lr``.
Pure Python (no torch, no Lightning). Each curve says where it ends (``final``, a factor of the base LR) and, for
1cycle, what the momentum is at each step (``momentum(t)``; ``None`` for curves that leave momentum alone).

Why closed form instead of torch's chainable schedulers: a closed form has no state to extend when a group joins
and no drift to undo on resume, and it can be checked against torch step for step (the tests do). Where a curve
differs from the torch class of the same name, on purpose:

* :class:`CosineFactor`: torch's ``CosineAnnealingLR`` takes one absolute ``eta_min`` for all groups, so groups
  with LR multipliers would converge to the same floor; a factor keeps ``lr_i(t) = base_i * f(t)``. It equals
  ``CosineAnnealingLR(T_max=length - 1)`` for one group and reaches the floor exactly at the last step.
* :class:`RestartsFactor`: torch's ``CosineAnnealingWarmRestarts`` restarts one step *before* reaching
  ``eta_min``; here every cycle ends exactly on the floor and the cycles tile the decay window.
* :class:`OneCycleFactor`: torch's ``OneCycleLR`` uses one anneal shape for both phases and peaks at step
  ``pct_start * total - 1``; the seed's 1cycle (and Smith's) rises linearly and anneals with a cosine, peaking at
  ``pct_start * (total - 1)``, so the last step lands on the floor.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence

from lightning_bestpractices.errors import ArgumentError

__all__ = [
    "Curve",
    "Constant",
    "LinearFactor",
    "LinearWarmup",
    "CosineFactor",
    "CosineWarmupFactor",
    "RestartsFactor",
    "ExponentialFactor",
    "StepFactor",
    "MultiStepFactor",
    "Warmup",
    "OneCycleFactor",
    "Offset",
    "curve_from_dict",
]


def _cos_interp(start: float, end: float, pct: float) -> float:
    return end + (start - end) * (1.0 + math.cos(math.pi * pct)) / 2.0


def _lin_interp(start: float, end: float, pct: float) -> float:
    return start + (end - start) * pct


class Curve:
    """Base of every curve: ``f(t)`` (a factor of each group's base LR), ``final`` and ``momentum(t)``."""

    final: float = 1.0

    def __call__(self, t: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def momentum(self, t: int) -> float | None:
        """Momentum (SGD) / beta1 (Adam family) at step ``t``; ``None``: leave the optimizer's value alone."""
        return None

    def to_dict(self) -> dict:
        """Plain data (loads with ``torch.load(weights_only=True)``); :func:`curve_from_dict` inverts it."""
        return {"curve": type(self).__name__, **{k: v.to_dict() if isinstance(v, Curve) else v
                                                 for k, v in vars(self).items()}}  # fmt: skip

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Constant(Curve):
    """``f(t) = 1``.

    Examples:
        >>> Constant()(7)
        1.0
    """

    def __call__(self, t: int) -> float:
        return 1.0


class LinearFactor(Curve):
    """Straight line from 1 to ``final`` over ``length`` steps (torch's ``LinearLR(1, final, length - 1)``).

    Examples:
        >>> [LinearFactor(3, final=0.5)(i) for i in range(4)]
        [1.0, 0.75, 0.5, 0.5]
    """

    def __init__(self, length: int, final: float) -> None:
        self.length, self.final = int(length), float(final)

    def __call__(self, i: int) -> float:
        if self.length <= 1 or i >= self.length - 1:
            return self.final
        return _lin_interp(1.0, self.final, i / (self.length - 1))


class LinearWarmup(Curve):
    """Linear rise from ``start`` to 1 over ``length`` steps (torch's ``LinearLR(start, 1, max(length-1, 1))``).

    Examples:
        >>> [LinearWarmup(4, start=0.25)(t) for t in range(5)]
        [0.25, 0.5, 0.75, 1.0, 1.0]
    """

    def __init__(self, length: int, start: float) -> None:
        self.length, self.start = int(length), float(start)

    def __call__(self, t: int) -> float:
        span = max(self.length - 1, 1)
        return _lin_interp(self.start, 1.0, min(t, span) / span)


class CosineFactor(Curve):
    """``f(i)`` falls from 1 to ``final`` along a half cosine over ``length`` steps (``i = 0 .. length - 1``).

    Examples:
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


class CosineWarmupFactor(Curve):
    """``f(t)`` rises from ``start`` to 1 along a half cosine over ``length`` steps, then stays at 1.

    Examples:
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


class RestartsFactor(Curve):
    """Cosine cycles of the given lengths, each from 1 down to exactly ``final`` at its last step.

    Examples:
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

        Examples:
            >>> RestartsFactor.tile(70, cycles=3, mult=2.0)
            [10, 20, 40]
        """
        weights = [mult**k for k in range(cycles)]
        bounds = [round(total * sum(weights[: k + 1]) / sum(weights)) for k in range(cycles)]
        lengths = [b - a for a, b in zip([0, *bounds[:-1]], bounds)]
        if min(lengths) < 1:
            raise ArgumentError(f"{cycles} restart cycles do not fit into {total} decay steps")
        return lengths


class ExponentialFactor(Curve):
    """``gamma ** i`` (torch's ``ExponentialLR``); ``final`` is its value at step ``length - 1``.

    Examples:
        >>> [ExponentialFactor(0.5, length=3)(i) for i in range(3)]
        [1.0, 0.5, 0.25]
    """

    def __init__(self, gamma: float, length: int) -> None:
        self.gamma, self.length = float(gamma), int(length)
        self.final = self.gamma ** max(self.length - 1, 0)

    def __call__(self, i: int) -> float:
        return self.gamma**i


class StepFactor(Curve):
    """``gamma ** (i // size)`` (torch's ``StepLR``).

    Examples:
        >>> [StepFactor(2, 0.5)(i) for i in range(5)]
        [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    def __init__(self, size: int, gamma: float) -> None:
        self.size, self.gamma = int(size), float(gamma)

    def __call__(self, i: int) -> float:
        return self.gamma ** (i // self.size)


class MultiStepFactor(Curve):
    """``gamma ** (number of milestones <= i)`` (torch's ``MultiStepLR``).

    Examples:
        >>> [MultiStepFactor([1, 3], 0.1)(i) for i in range(4)]
        [1.0, 0.1, 0.1, 0.010000000000000002]
    """

    def __init__(self, milestones: Sequence[int], gamma: float) -> None:
        self.milestones, self.gamma = sorted(int(m) for m in milestones), float(gamma)

    def __call__(self, i: int) -> float:
        return self.gamma ** bisect_right(self.milestones, i)


class Warmup(Curve):
    """``warmup(t)`` for the first ``steps`` steps, then ``decay(t - steps)`` (torch's ``SequentialLR`` of two).

    Examples:
        >>> f = Warmup(2, LinearWarmup(2, 0.5), CosineFactor(3, 0.0))
        >>> [f(t) for t in range(5)], f.final
        ([0.5, 1.0, 1.0, 0.5, 0.0], 0.0)
    """

    def __init__(self, steps: int, warmup: Curve, decay: Curve) -> None:
        self.steps, self.warmup, self.decay = int(steps), warmup, decay
        self.final = decay.final

    def __call__(self, t: int) -> float:
        return self.warmup(t) if t < self.steps else self.decay(t - self.steps)

    def momentum(self, t: int) -> float | None:
        return self.warmup.momentum(t) if t < self.steps else self.decay.momentum(t - self.steps)


class OneCycleFactor(Curve):
    """1cycle: rise from ``1 / div_factor`` to 1 until ``peak`` (a possibly fractional step), fall to ``final`` at
    step ``total - 1``; momentum (if ``momentum=(base, max)``) moves the opposite way, from max to base and back.

    Args:
        total: optimizer steps of the cycle, >= 2.
        peak: step of the LR peak, in ``[0, total - 1)``.
        div_factor: the first step's LR is the peak's divided by this.
        final: factor of the last step.
        shapes: anneal shape of the rise and of the fall, each ``"linear"`` or ``"cos"``.
        momentum: ``(base_momentum, max_momentum)`` to cycle, or ``None``.

    Examples:
        >>> f = OneCycleFactor(5, peak=2, div_factor=10, final=0.01, momentum=(0.85, 0.95))
        >>> [round(f(t), 4) for t in range(5)], [round(f.momentum(t), 3) for t in (0, 2, 4)]
        ([0.1, 0.55, 1.0, 0.505, 0.01], [0.95, 0.85, 0.95])
    """

    def __init__(
        self,
        total: int,
        peak: float,
        div_factor: float,
        final: float,
        shapes: tuple[str, str] = ("linear", "cos"),
        momentum: tuple[float, float] | None = None,
    ) -> None:
        if len(shapes) != 2 or any(s not in ("linear", "cos") for s in shapes):
            raise ArgumentError(f"`shapes` must be two of 'linear'/'cos', got {shapes!r}")
        if total < 2:
            raise ArgumentError(f"1cycle needs at least 2 optimizer steps, got {total!r}")
        if not 0.0 <= peak < total - 1:
            raise ArgumentError(f"the 1cycle peak must lie in [0, {total - 1}), got step {peak:g}")
        self.total, self.peak, self.div_factor, self.final = int(total), float(peak), float(div_factor), float(final)
        self.shapes = tuple(shapes)
        self.cycle = None if momentum is None else (float(momentum[0]), float(momentum[1]))

    def _phase(self, t: int) -> tuple[int, float]:
        if t <= self.peak:
            return 0, 1.0 if self.peak <= 0 else min(1.0, t / self.peak)
        end = self.total - 1
        return 1, min(1.0, (t - self.peak) / (end - self.peak))

    def __call__(self, t: int) -> float:
        phase, pct = self._phase(t)
        interp = _cos_interp if self.shapes[phase] == "cos" else _lin_interp
        return interp(1.0 / self.div_factor, 1.0, pct) if phase == 0 else interp(1.0, self.final, pct)

    def momentum(self, t: int) -> float | None:
        if self.cycle is None:
            return None
        base, top = self.cycle
        phase, pct = self._phase(t)
        interp = _cos_interp if self.shapes[phase] == "cos" else _lin_interp
        return interp(top, base, pct) if phase == 0 else interp(base, top, pct)


class Offset(Curve):
    """``inner(t - start)`` from step ``start`` on (a curve that begins mid-run, e.g. a second 1cycle).

    Examples:
        >>> f = Offset(3, LinearFactor(3, 0.0))
        >>> [f(t) for t in range(3, 7)]
        [1.0, 0.5, 0.0, 0.0]
    """

    def __init__(self, start: int, inner: Curve) -> None:
        self.start, self.inner = int(start), inner
        self.final = inner.final

    def __call__(self, t: int) -> float:
        return self.inner(max(t - self.start, 0))

    def momentum(self, t: int) -> float | None:
        return self.inner.momentum(max(t - self.start, 0))


def curve_from_dict(state: dict) -> Curve:
    """Rebuild a curve of this module from :meth:`Curve.to_dict`.

    Examples:
        >>> f = Warmup(2, LinearWarmup(2, 0.5), CosineFactor(3, 0.1))
        >>> curve_from_dict(f.to_dict()) == f
        True
    """
    state = dict(state)
    cls = globals().get(state.pop("curve"))
    if not (isinstance(cls, type) and issubclass(cls, Curve)):
        raise ArgumentError(f"unknown curve in a saved schedule: {state!r}")
    obj = cls.__new__(cls)
    for k, v in state.items():
        setattr(obj, k, curve_from_dict(v) if isinstance(v, dict) and "curve" in v else v)
    return obj
