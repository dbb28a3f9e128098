"""Optimizers and LR schedules that stay right when devices, accumulation or resume change.

* :mod:`.factory` -- ``create_optimizer`` by name or class, no-decay groups, per-group LR multipliers; ``Lamb``.
* :mod:`.steps` -- the real optimizer-step count of a run and durations (steps / epochs / fractions).
* :mod:`.curves` -- closed-form LR curves (pure Python); :mod:`.schedules` -- ``ScheduleSpec`` resolved into a
  curve against that count; :mod:`.schedule` -- ``Schedule``, the one LR scheduler that drives every curve, with
  each group's base LR, floor and name in the param group.
* :mod:`.mixin` -- ``configure_optimizers`` from a config, re-resolved on resume.
* :mod:`.lr_finder` -- LR range test that keeps group ratios, three suggestion rules, plot, restore.
* :mod:`.monitor` -- ``LRMonitor``: LR / momentum / weight decay per named group, buffered per-step rows.
"""

from __future__ import annotations

from .curves import (
    Constant,
    CosineFactor,
    CosineWarmupFactor,
    Curve,
    ExponentialFactor,
    LinearFactor,
    LinearWarmup,
    MultiStepFactor,
    Offset,
    OneCycleFactor,
    RestartsFactor,
    StepFactor,
    Warmup,
)
from .factory import OPTIMIZERS, OptimizerEntry, build_param_groups, create_optimizer, list_optimizers
from .lamb import Lamb
from .lr_finder import RULES, LRFinder, LRFindResult, lr_find, suggest_lr
from .mixin import OptimConfig, OptimizerMixin, configure_from_config
from .monitor import GroupLRMonitor, LRMonitor
from .schedule import Plateau, Schedule
from .schedules import (
    SCHEDULES,
    ScheduleSpec,
    base_lrs_of,
    build_scheduler,
    fast_forward,
    list_schedules,
    resolve_curve,
)
from .steps import Duration, StepPlan, count_optimizer_steps, parse_duration, plan_from_trainer

__all__ = [
    "OPTIMIZERS",
    "RULES",
    "SCHEDULES",
    "Constant",
    "CosineFactor",
    "CosineWarmupFactor",
    "Curve",
    "Duration",
    "ExponentialFactor",
    "GroupLRMonitor",
    "LRFindResult",
    "LRFinder",
    "LRMonitor",
    "Lamb",
    "LinearFactor",
    "LinearWarmup",
    "MultiStepFactor",
    "Offset",
    "OneCycleFactor",
    "OptimConfig",
    "OptimizerEntry",
    "OptimizerMixin",
    "Plateau",
    "RestartsFactor",
    "Schedule",
    "ScheduleSpec",
    "StepFactor",
    "StepPlan",
    "Warmup",
    "base_lrs_of",
    "build_param_groups",
    "build_scheduler",
    "configure_from_config",
    "count_optimizer_steps",
    "create_optimizer",
    "fast_forward",
    "list_optimizers",
    "list_schedules",
    "lr_find",
    "parse_duration",
    "plan_from_trainer",
    "resolve_curve",
    "suggest_lr",
]
