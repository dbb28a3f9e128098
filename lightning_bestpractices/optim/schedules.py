"""Schedule specs: a small declarative description, resolved into a curve against the real step count.

A :class:`ScheduleSpec` says *what* (``cosine`` with ``warmup="5%"`` down to ``final_lr=1e-5``); durations are
optimizer steps, epochs or fractions of training (:func:`~lightning_bestpractices.optim.steps.parse_duration`).
:func:`resolve_curve` turns it into a closed-form curve (:mod:`~lightning_bestpractices.optim.curves`) once the
:class:`StepPlan` of the run is known, and :func:`build_scheduler` attaches the package's one scheduler
(:class:`~lightning_bestpractices.optim.schedule.Schedule`) with that curve, so ``LR at the last optimizer step ==
the configured final value`` holds under DDP, accumulation, ``drop_last``, ``max_steps`` and resume.

Each name, and the torch class it equals step for step (the tests check it):

==============  =============================================================================================
``constant``    ``ConstantLR(factor=1)``
``step``        ``StepLR`` (``MultiStepLR`` at the real epoch ends when ``every`` is in epochs)
``multistep``   ``MultiStepLR``
``exponential`` ``ExponentialLR`` (``gamma`` derived from ``final_lr`` when not given)
``linear``      ``LinearLR`` from 1 to ``final_lr / lr``
``cosine``      ``CosineAnnealingLR`` with the floor as a factor (so group ratios hold)
``restarts``    cosine cycles that end exactly on the floor (``CosineAnnealingWarmRestarts`` stops one short)
``onecycle``    the seed's 1cycle (linear rise, cosine fall, momentum / beta1 cycled inversely)
``plateau``     ``ReduceLROnPlateau`` with a per-group floor (``step(metric)`` once per epoch on ``monitor``)
==============  =============================================================================================

Warmup (torch's ``LinearLR``, or a half cosine) precedes the decay as ``SequentialLR`` would join them.

Group multipliers: every curve is a factor applied to each group's base LR (``lr * lr_multiplier``); floors
(``final_lr``, plateau ``min_lr``) are scaled by the multiplier too, so the ratios between groups hold at every step.
A group added mid-training needs only its base LR in its param group (see
:mod:`~lightning_bestpractices.optim.schedule`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch.optim import Optimizer

from lightning_bestpractices.errors import ArgumentError

from . import curves as C
from .schedule import Plateau, Schedule
from .steps import Duration, DurationLike, StepPlan, parse_duration

__all__ = [
    "SCHEDULES",
    "ScheduleSpec",
    "list_schedules",
    "build_scheduler",
    "resolve_curve",
    "base_lrs_of",
    "fast_forward",
]

SCHEDULES: dict[str, str] = {
    "constant": "the base LR throughout",
    "step": "multiply by gamma every `every`",
    "multistep": "multiply by gamma at each of `milestones`",
    "exponential": "multiply by gamma every step (gamma from final_lr if not given)",
    "linear": "straight line down to final_lr",
    "cosine": "half cosine down to final_lr",
    "restarts": "`cycles` cosine cycles (each `cycle_mult` times longer), each ending at final_lr",
    "onecycle": "linear rise to lr over `warmup` (or pct_start), cosine fall to final_lr; momentum cycles",
    "plateau": "multiply by factor when `monitor` stops improving for `patience` epochs, floor final_lr",
}


def list_schedules() -> list[str]:
    """Names accepted by :class:`ScheduleSpec`.

    Examples:
        >>> list_schedules()
        ['constant', 'cosine', 'exponential', 'linear', 'multistep', 'onecycle', 'plateau', 'restarts', 'step']
    """
    return sorted(SCHEDULES)


@dataclass
class ScheduleSpec:
    """What the LR does over training. Every field is validated here, before any training starts.

    Args:
        name: one of :func:`list_schedules`.
        warmup: rise phase before the decay (steps, epochs or fraction); for ``onecycle`` it is the rise to the peak.
        warmup_shape: ``"linear"`` (torch ``LinearLR``, the seed's ``lr * (t + 1) / W``) or ``"cosine"``.
        warmup_start: LR factor at the first warmup step; default ``1 / W`` for linear, 0 for cosine.
        final_lr: LR of the last optimizer step (of a multiplier-1 group) for linear/cosine/restarts/onecycle/
            exponential; the floor for plateau. Default 0 (onecycle: ``lr / div_factor / 1e4``).
        every, gamma: ``step``: multiply by ``gamma`` (default 0.1) every ``every``.
        milestones: ``multistep``: durations from the start of training.
        cycles, cycle_mult: ``restarts``: number of cycles and the length ratio of consecutive cycles.
        pct_start, div_factor, cycle_momentum, base_momentum, max_momentum: ``onecycle`` (as torch's
            ``OneCycleLR``; momentum cycling acts on SGD momentum or Adam-family beta1).
        monitor, mode, factor, patience, threshold, cooldown: ``plateau`` (as torch's ``ReduceLROnPlateau``).

    Examples:
        >>> ScheduleSpec("cosine", warmup="5%", final_lr=1e-5).warmup
        Duration(value=0.05, unit='fraction')
        >>> ScheduleSpec("cosin")
        Traceback (most recent call last):
        ...
        lightning_bestpractices.errors.ArgumentError: unknown schedule 'cosin'; choose one of ['constant', 'cosine', 'exponential', 'linear', 'multistep', 'onecycle', 'plateau', 'restarts', 'step']
    """

    name: str = "constant"
    warmup: DurationLike | None = None
    warmup_shape: str = "linear"
    warmup_start: float | None = None
    final_lr: float | None = None
    every: DurationLike | None = None
    gamma: float | None = None
    milestones: list[DurationLike] | None = None
    cycles: int = 3
    cycle_mult: float = 1.0
    pct_start: float = 0.3
    div_factor: float = 25.0
    cycle_momentum: bool = True
    base_momentum: float = 0.85
    max_momentum: float = 0.95
    monitor: str | None = None
    mode: str = "min"
    factor: float = 0.1
    patience: int = 2
    threshold: float = 1e-4
    cooldown: int = 0

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise ArgumentError(f"unknown schedule {self.name!r}; choose one of {list_schedules()}")
        if self.warmup is not None:
            self.warmup = parse_duration(self.warmup, name="warmup")
        if self.warmup_shape not in ("linear", "cosine"):
            raise ArgumentError(f"`warmup_shape` must be 'linear' or 'cosine', got {self.warmup_shape!r}")
        if self.warmup_start is not None and not 0.0 <= self.warmup_start <= 1.0:
            raise ArgumentError(f"`warmup_start` must be in [0, 1], got {self.warmup_start!r}")
        if self.final_lr is not None and not (isinstance(self.final_lr, (int, float)) and self.final_lr >= 0):
            raise ArgumentError(f"`final_lr` must be a number >= 0, got {self.final_lr!r}")
        if self.gamma is not None and not 0.0 < self.gamma <= 1.0:
            raise ArgumentError(f"`gamma` must be in (0, 1], got {self.gamma!r}")
        if self.name == "step":
            if self.every is None:
                raise ArgumentError("schedule 'step' needs `every` (e.g. '2 epochs', 100 or 0.3)")
            self.every = parse_duration(self.every, name="every")
            if self.every.value == 0:
                raise ArgumentError(f"`every` must be > 0, got {self.every}")
        if self.name == "multistep":
            if not self.milestones:
                raise ArgumentError("schedule 'multistep' needs `milestones`, e.g. ['3 epochs', '6 epochs']")
            self.milestones = [parse_duration(m, name="milestones") for m in self.milestones]
        if self.name == "exponential" and self.gamma is not None and self.final_lr is not None:
            raise ArgumentError("schedule 'exponential' takes `gamma` or `final_lr`, not both")
        if not (isinstance(self.cycles, int) and self.cycles >= 1):
            raise ArgumentError(f"`cycles` must be an int >= 1, got {self.cycles!r}")
        if not self.cycle_mult > 0:
            raise ArgumentError(f"`cycle_mult` must be > 0, got {self.cycle_mult!r}")
        if not 0.0 <= self.pct_start < 1.0:
            raise ArgumentError(f"`pct_start` must be in [0, 1), got {self.pct_start!r}")
        if not self.div_factor >= 1.0:
            raise ArgumentError(f"`div_factor` must be >= 1, got {self.div_factor!r}")
        if self.name == "plateau":
            if not self.monitor or not isinstance(self.monitor, str):
                raise ArgumentError(
                    "schedule 'plateau' needs `monitor`, the name of a logged metric (e.g. 'val/loss')"
                )
            if self.mode not in ("min", "max"):
                raise ArgumentError(f"`mode` must be 'min' or 'max', got {self.mode!r}")
            if not 0.0 < self.factor < 1.0:
                raise ArgumentError(f"`factor` must be in (0, 1), got {self.factor!r}")
            if self.patience < 0:
                raise ArgumentError(f"`patience` must be >= 0, got {self.patience!r}")

    @classmethod
    def from_any(cls, spec: ScheduleSpec | dict[str, Any] | str | None) -> ScheduleSpec | None:
        """Accept a spec, a mapping of its fields, a bare name, or ``None``."""
        if spec is None or isinstance(spec, ScheduleSpec):
            return spec
        if isinstance(spec, str):
            return cls(spec)
        if isinstance(spec, dict):
            unknown = set(spec) - {f.name for f in dataclasses.fields(cls)}
            if unknown:
                raise ArgumentError(f"unknown schedule option(s) {sorted(unknown)} in {spec!r}")
            return cls(**spec)
        raise ArgumentError(f"`schedule` must be a ScheduleSpec, a mapping or a name, got {spec!r}")


def base_lrs_of(optimizer: Optimizer, lr: float | None = None) -> list[float]:
    """Base LR of each group: ``lr * group["lr_multiplier"]`` when ``lr`` is given, else the group's ``lr``."""
    if lr is None:
        return [float(g["lr"]) for g in optimizer.param_groups]
    return [float(lr) * float(g.get("lr_multiplier", 1.0)) for g in optimizer.param_groups]


def check_final_lr(spec: ScheduleSpec, lr: float) -> None:
    """``final_lr`` above the peak ``lr`` makes a decaying schedule climb; refuse it, naming both values."""
    if spec.final_lr is None or spec.name in ("constant", "step", "multistep"):
        return
    if float(spec.final_lr) > float(lr):
        what = "floor" if spec.name == "plateau" else "last-step LR"
        raise ArgumentError(
            f"`final_lr` ({spec.final_lr!r}, the {what} of schedule {spec.name!r}) must not be above the peak "
            f"`lr` ({lr!r})"
        )


def resolve_curve(spec: ScheduleSpec | dict[str, Any] | str, plan: StepPlan, lr: float, *, momentum: bool = False):
    """The curve of ``spec`` for a run of ``plan`` (factors of the base LR ``lr`` of a multiplier-1 group).

    ``momentum``: whether the optimizer has momentum / beta1 (1cycle cycles it then). Returns ``(curve,
    plateau)``, ``plateau`` a fresh :class:`~lightning_bestpractices.optim.schedule.Plateau` or ``None``.

    Raises:
        lightning_bestpractices.errors.ArgumentError: warmup not shorter than training, durations longer than training, ``final_lr`` above ``lr``.

    Examples:
        >>> from lightning_bestpractices.optim import count_optimizer_steps
        >>> curve, _ = resolve_curve({"name": "cosine", "warmup": 2, "final_lr": 0.01}, count_optimizer_steps(6, 1), 0.1)
        >>> [round(curve(t), 4) for t in range(6)]
        [0.5, 1.0, 1.0, 0.775, 0.325, 0.1]
    """
    spec = ScheduleSpec.from_any(spec)
    assert spec is not None
    total = plan.total
    if total < 1:
        raise ArgumentError(f"training has no optimizer steps ({plan.steps_per_epoch}); nothing to schedule")
    warm = spec.warmup.resolve(plan, name="warmup") if isinstance(spec.warmup, Duration) else 0
    if warm and warm >= total:
        raise ArgumentError(
            f"`warmup` ({spec.warmup} = {warm} optimizer steps) must be shorter than training ({total} steps)"
        )
    ref = float(lr)
    if spec.final_lr is not None and ref <= 0:
        raise ArgumentError(f"`final_lr` needs a base `lr` > 0, got {ref!r}")
    check_final_lr(spec, ref)
    final = 0.0 if spec.final_lr is None else float(spec.final_lr)
    r = final / ref if ref > 0 else 0.0
    length = total - warm  # steps of the decay phase, >= 1

    if spec.name == "onecycle":
        r = 1.0 / spec.div_factor / 1e4 if spec.final_lr is None else r
        peak = float(warm) if warm else spec.pct_start * (max(total, 2) - 1)
        cycle = (spec.base_momentum, spec.max_momentum) if spec.cycle_momentum and momentum else None
        shapes = ("linear" if spec.warmup_shape == "linear" else "cos", "cos")
        return C.OneCycleFactor(max(total, 2), peak, spec.div_factor, r, shapes, cycle), None
    if spec.name == "plateau":
        plateau = Plateau(mode=spec.mode, factor=spec.factor, patience=spec.patience, threshold=spec.threshold,
                          cooldown=spec.cooldown, floor=r)  # fmt: skip
        curve: C.Curve = C.Constant()
        if warm:
            curve = C.Warmup(warm, _warmup(spec, warm), curve)
        curve.final = r
        return curve, plateau
    decay = _decay(spec, plan, warm, length, r)
    return (C.Warmup(warm, _warmup(spec, warm), decay) if warm else decay), None


def build_scheduler(
    optimizer: Optimizer, spec: ScheduleSpec | dict[str, Any] | str, plan: StepPlan, lr: float | None = None
) -> list[dict[str, Any]]:
    """The package's :class:`~lightning_bestpractices.optim.schedule.Schedule` for ``spec`` over ``plan.total``
    optimizer steps, as Lightning scheduler configs.

    Sets every group's base LR (``initial_lr``) to ``lr * lr_multiplier`` (see :func:`base_lrs_of`) first, so the
    result does not depend on what earlier schedulers left in the optimizer. Returns one config
    (``{"scheduler", "interval": "step", "frequency", "name"}``); plateau adds a second, per-epoch config on
    ``monitor`` for the same scheduler (``reduce_on_plateau``), which steps it with the metric.

    Raises:
        lightning_bestpractices.errors.ArgumentError: warmup not shorter than training, durations longer than training, inconsistent options.

    Examples:
        >>> import torch
        >>> from lightning_bestpractices.optim import count_optimizer_steps
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        >>> plan = count_optimizer_steps(5, max_epochs=2)                        # 10 optimizer steps
        >>> [cfg] = build_scheduler(opt, {"name": "cosine", "warmup": 2, "final_lr": 0.001}, plan)
        >>> lrs = []
        >>> for _ in range(plan.total):
        ...     lrs.append(opt.param_groups[0]["lr"]); opt.step(); cfg["scheduler"].step()
        >>> [round(x, 4) for x in lrs]
        [0.05, 0.1, 0.1, 0.0951, 0.0814, 0.0615, 0.0395, 0.0196, 0.0059, 0.001]
    """
    spec = ScheduleSpec.from_any(spec)
    assert spec is not None
    bases = base_lrs_of(optimizer, lr)
    if any(b < 0 for b in bases):
        raise ArgumentError(f"`lr` must be >= 0, got base LRs {bases}")
    ref = bases[0] if lr is None else float(lr)
    curve, plateau = resolve_curve(spec, plan, ref, momentum=_has_momentum(optimizer))
    for g, b in zip(optimizer.param_groups, bases):
        g["lr"] = b
        g["initial_lr"] = b
        g.pop("min_lr", None)
    scheduler = Schedule(optimizer, curve, plateau=plateau)
    configs = [{"scheduler": scheduler, "interval": "step", "frequency": 1, "name": None}]
    if plateau is not None:
        configs.append({"scheduler": scheduler, "interval": "epoch", "frequency": 1, "name": None,
                        "monitor": spec.monitor, "strict": True, "reduce_on_plateau": True})  # fmt: skip
        if not warm_of(spec, plan):
            configs = configs[1:]
    return configs


def warm_of(spec: ScheduleSpec, plan: StepPlan) -> int:
    """Warmup length of ``spec`` in optimizer steps of ``plan`` (0 without warmup)."""
    return spec.warmup.resolve(plan, name="warmup") if isinstance(spec.warmup, Duration) else 0


def _has_momentum(optimizer: Optimizer) -> bool:
    if "betas" in optimizer.defaults:
        return True
    return bool(optimizer.defaults.get("momentum", 0))


def _warmup(spec: ScheduleSpec, warm: int) -> C.Curve:
    if spec.warmup_shape == "cosine":
        return C.CosineWarmupFactor(warm, 0.0 if spec.warmup_start is None else spec.warmup_start)
    start = 1.0 / warm if spec.warmup_start is None else spec.warmup_start
    return C.LinearWarmup(warm, max(start, 1e-12))


def _decay(spec: ScheduleSpec, plan: StepPlan, warm: int, length: int, r: float) -> C.Curve:
    gamma = 0.1 if spec.gamma is None else spec.gamma
    if spec.name == "constant":
        return C.Constant()
    if spec.name == "cosine":
        return C.CosineFactor(length, r)
    if spec.name == "restarts":
        return C.RestartsFactor(C.RestartsFactor.tile(length, spec.cycles, spec.cycle_mult), r)
    if spec.name == "linear":
        return C.LinearFactor(length, r)
    if spec.name == "exponential":
        if spec.gamma is None:
            if r <= 0:
                raise ArgumentError("schedule 'exponential' needs `gamma`, or `final_lr` > 0")
            gamma = r ** (1.0 / (length - 1)) if length > 1 else 1.0
        return C.ExponentialFactor(gamma, length)
    if spec.name == "step":
        every = spec.every
        assert isinstance(every, Duration)
        if every.unit == "epochs":
            marks, k = [], 1
            while k * every.value < plan.epochs:
                marks.append(plan.epoch_to_step(k * every.value, name="every") - warm)
                k += 1
            return C.MultiStepFactor([m for m in marks if m > 0] or [length + 1], gamma)
        size = every.resolve(plan, name="every")
        if size < 1:
            raise ArgumentError(f"`every` resolves to {size} optimizer steps; it must be >= 1")
        return C.StepFactor(size, gamma)
    if spec.name == "multistep":
        steps = [m.resolve(plan, name="milestones") for m in spec.milestones or ()]
        for m, s in zip(spec.milestones or (), steps):
            if not warm < s < plan.total:
                raise ArgumentError(
                    f"`milestones` entry {m} (= step {s}) must fall after warmup ({warm} steps) and before the "
                    f"end of training ({plan.total} steps)"
                )
        return C.MultiStepFactor([s - warm for s in steps], gamma)
    raise AssertionError(spec.name)


def fast_forward(schedulers: Sequence[Any], steps: int) -> None:
    """Step freshly built (step-interval) schedulers ``steps`` times without training, e.g. to rejoin a resumed run."""
    for s in schedulers:
        for _ in range(steps):
            s.step()
