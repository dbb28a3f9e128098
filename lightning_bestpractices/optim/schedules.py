"""Schedule specs: a small declarative description, built into torch schedulers against the real step count.

A :class:`ScheduleSpec` says *what* (``cosine`` with ``warmup="5%"`` down to ``final_lr=1e-5``); durations are
optimizer steps, epochs or fractions of training (:func:`~lightning_bestpractices.optim.steps.parse_duration`).
:func:`build_scheduler` turns it into torch scheduler objects once the :class:`StepPlan` of the run is known, so
``LR at the last optimizer step == the configured final value`` holds under DDP, accumulation, ``drop_last``,
``max_steps`` and resume.

Which torch class each name becomes (warmup, if any, is torch's ``LinearLR`` -- or a cosine ``LambdaLR`` -- joined
to the decay with ``SequentialLR``):

==============  =============================================================================================
``constant``    ``ConstantLR(factor=1)``
``step``        ``StepLR`` (``MultiStepLR`` at the real epoch ends when ``every`` is in epochs)
``multistep``   ``MultiStepLR``
``exponential`` ``ExponentialLR`` (``gamma`` derived from ``final_lr`` when not given)
``linear``      ``LinearLR`` from 1 to ``final_lr / lr``
``cosine``      ``LambdaLR(CosineFactor)`` -- matches ``CosineAnnealingLR``, keeps group ratios with a floor
``restarts``    ``LambdaLR(RestartsFactor)`` -- cosine cycles that end exactly on the floor
``onecycle``    :class:`~lightning_bestpractices.optim.curves.OneCycle` (torch's ``OneCycleLR``, seed shape)
``plateau``     ``ReduceLROnPlateau`` with per-group ``min_lr`` (stepped per epoch on ``monitor``)
==============  =============================================================================================

Group multipliers: every curve is a factor applied to each group's base LR (``lr * lr_multiplier``); floors
(``final_lr``, plateau ``min_lr``) are scaled by the multiplier too, so the ratios between groups hold at every step.

Adding a parameter group mid-training (gradual unfreezing): use
:func:`lightning_bestpractices.finetuning.add_param_group`, which extends every per-group list of the attached
schedulers (``base_lrs``, ``LambdaLR.lr_lambdas``, ``SequentialLR`` children, ``OneCycleLR``'s group keys).
Nothing more is needed here: the factor objects (:mod:`~lightning_bestpractices.optim.curves`) hold no per-group
state, so the new group's entry in ``lr_lambdas`` can be the same object as the others'. Give the new group an
``lr_multiplier`` key if it should be rebuilt correctly on a resume with a changed step count.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch.optim import Optimizer
from torch.optim import lr_scheduler as sched

from lightning_bestpractices.errors import ArgumentError

from .curves import CosineFactor, CosineWarmupFactor, OneCycle, RestartsFactor
from .steps import Duration, DurationLike, StepPlan, parse_duration

__all__ = [
    "SCHEDULES",
    "ScheduleSpec",
    "list_schedules",
    "build_scheduler",
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

    Example:
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

    Example:
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


def build_scheduler(
    optimizer: Optimizer, spec: ScheduleSpec | dict[str, Any] | str, plan: StepPlan, lr: float | None = None
) -> list[dict[str, Any]]:
    """Build the schedulers of ``spec`` for a run of ``plan.total`` optimizer steps.

    Sets every group's LR to its base (``lr * lr_multiplier``, see :func:`base_lrs_of`) first, so the result does
    not depend on what earlier schedulers left in the optimizer. Returns Lightning scheduler configs
    (``{"scheduler", "interval", "frequency", "name"[, "monitor"]}``), one -- or two for plateau with warmup.

    Raises:
        lightning_bestpractices.errors.ArgumentError: warmup not shorter than training, durations longer than training, inconsistent options.

    Example:
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
    for g, b in zip(optimizer.param_groups, bases):
        g["lr"] = b
        g.pop("initial_lr", None)
    ref = bases[0] if lr is None else float(lr)
    ratio = [b / ref if ref > 0 else 1.0 for b in bases]
    total = plan.total
    if total < 1:
        raise ArgumentError(f"training has no optimizer steps ({plan.steps_per_epoch}); nothing to schedule")
    warm = spec.warmup.resolve(plan, name="warmup") if isinstance(spec.warmup, Duration) else 0
    if warm and warm >= total:
        raise ArgumentError(
            f"`warmup` ({spec.warmup} = {warm} optimizer steps) must be shorter than training ({total} steps)"
        )
    final = 0.0 if spec.final_lr is None else float(spec.final_lr)
    if spec.final_lr is not None and ref <= 0:
        raise ArgumentError(f"`final_lr` needs a base `lr` > 0, got {ref!r}")
    r = final / ref if ref > 0 else 0.0
    length = total - warm  # steps of the decay phase, >= 1

    if spec.name == "onecycle":
        min_lr = None if spec.final_lr is None else [final * q for q in ratio]
        peak = float(warm) if warm else None
        scheduler = OneCycle(
            optimizer, max_lr=bases, total_steps=max(total, 2), peak_step=peak, pct_start=spec.pct_start,
            min_lr=min_lr, shapes=("linear" if spec.warmup_shape == "linear" else "cos", "cos"),
            cycle_momentum=spec.cycle_momentum and _has_momentum(optimizer), base_momentum=spec.base_momentum,
            max_momentum=spec.max_momentum, div_factor=spec.div_factor,
        )  # fmt: skip
        return [_config(scheduler, "step", spec.name)]
    if spec.name == "plateau":
        plateau = sched.ReduceLROnPlateau(
            optimizer, mode=spec.mode, factor=spec.factor, patience=spec.patience, threshold=spec.threshold,
            cooldown=spec.cooldown, min_lr=[final * q for q in ratio],
        )  # fmt: skip
        configs = [{**_config(plateau, "epoch", spec.name), "monitor": spec.monitor, "strict": True}]
        if warm:
            configs.insert(0, _config(_warmup(optimizer, spec, warm), "step", "warmup"))
        return configs

    decay = _decay(optimizer, spec, plan, warm, length, r)
    if not warm:
        return [_config(decay, "step", spec.name)]
    warmup = _warmup(optimizer, spec, warm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        seq = sched.SequentialLR(optimizer, [warmup, decay], milestones=[warm])
    return [_config(seq, "step", spec.name)]


def _config(scheduler: Any, interval: str, name: str) -> dict[str, Any]:
    return {"scheduler": scheduler, "interval": interval, "frequency": 1, "name": f"lr-{name}"}


def _has_momentum(optimizer: Optimizer) -> bool:
    if "betas" in optimizer.defaults:
        return True
    return bool(optimizer.defaults.get("momentum", 0))


def _warmup(optimizer: Optimizer, spec: ScheduleSpec, warm: int) -> sched.LRScheduler:
    if spec.warmup_shape == "cosine":
        start = 0.0 if spec.warmup_start is None else spec.warmup_start
        return sched.LambdaLR(optimizer, CosineWarmupFactor(warm, start))
    start = 1.0 / warm if spec.warmup_start is None else spec.warmup_start
    return sched.LinearLR(
        optimizer, start_factor=max(start, 1e-12), end_factor=1.0, total_iters=max(warm - 1, 1)
    )


def _decay(
    optimizer: Optimizer, spec: ScheduleSpec, plan: StepPlan, warm: int, length: int, r: float
) -> sched.LRScheduler:
    gamma = 0.1 if spec.gamma is None else spec.gamma
    if spec.name == "constant":
        return sched.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if spec.name == "cosine":
        return sched.LambdaLR(optimizer, CosineFactor(length, r))
    if spec.name == "restarts":
        return sched.LambdaLR(
            optimizer, RestartsFactor(RestartsFactor.tile(length, spec.cycles, spec.cycle_mult), r)
        )
    if spec.name == "linear":
        if r > 1:
            raise ArgumentError(f"schedule 'linear' decays: `final_lr` must be <= lr, got ratio {r:g}")
        if length == 1:
            return sched.LambdaLR(optimizer, CosineFactor(1, r))
        return sched.LinearLR(optimizer, start_factor=1.0, end_factor=r, total_iters=length - 1)
    if spec.name == "exponential":
        if spec.gamma is None:
            if r <= 0:
                raise ArgumentError("schedule 'exponential' needs `gamma`, or `final_lr` > 0")
            gamma = r ** (1.0 / (length - 1)) if length > 1 else 1.0
        return sched.ExponentialLR(optimizer, gamma=gamma)
    if spec.name == "step":
        every = spec.every
        assert isinstance(every, Duration)
        if every.unit == "epochs":
            marks, k = [], 1
            while k * every.value < plan.epochs:
                marks.append(plan.epoch_to_step(k * every.value, name="every") - warm)
                k += 1
            return sched.MultiStepLR(
                optimizer, milestones=[m for m in marks if m > 0] or [length + 1], gamma=gamma
            )
        size = every.resolve(plan, name="every")
        if size < 1:
            raise ArgumentError(f"`every` resolves to {size} optimizer steps; it must be >= 1")
        return sched.StepLR(optimizer, step_size=size, gamma=gamma)
    if spec.name == "multistep":
        steps = [m.resolve(plan, name="milestones") for m in spec.milestones or ()]
        for m, s in zip(spec.milestones or (), steps):
            if not warm < s < plan.total:
                raise ArgumentError(
                    f"`milestones` entry {m} (= step {s}) must fall after warmup ({warm} steps) and before the "
                    f"end of training ({plan.total} steps)"
                )
        return sched.MultiStepLR(optimizer, milestones=sorted(s - warm for s in steps), gamma=gamma)
    raise AssertionError(spec.name)


def fast_forward(schedulers: Sequence[Any], steps: int) -> None:
    """Step freshly built (step-interval) schedulers ``steps`` times without training, e.g. to rejoin a resumed run."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for s in schedulers:
            for _ in range(steps):
                s.step()
