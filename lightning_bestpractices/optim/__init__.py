"""Optimizers and LR schedules that stay right when devices, accumulation or resume change.

* :mod:`.factory` -- ``create_optimizer`` by name or class, no-decay groups, per-group LR multipliers; ``Lamb``.
* :mod:`.steps` -- the real optimizer-step count of a run and durations (steps / epochs / fractions).
* :mod:`.schedules` -- ``ScheduleSpec`` built into torch schedulers against that count (``.curves``: the few
  curves torch lacks).
* :mod:`.mixin` -- ``configure_optimizers`` from a config, re-resolved on resume.
* :mod:`.lr_finder` -- LR range test that keeps group ratios, three suggestion rules, plot, restore.
* :mod:`.monitor` -- LR / momentum / weight decay per named group.
"""

from __future__ import annotations

from .curves import CosineFactor, CosineWarmupFactor, OneCycle, RestartsFactor
from .factory import OPTIMIZERS, OptimizerEntry, build_param_groups, create_optimizer, list_optimizers
from .lamb import Lamb
from .lr_finder import RULES, LRFindResult, lr_find, suggest_lr
from .mixin import OptimConfig, OptimizerMixin, configure_from_config
from .monitor import GroupLRMonitor
from .schedules import SCHEDULES, ScheduleSpec, base_lrs_of, build_scheduler, fast_forward, list_schedules
from .steps import Duration, StepPlan, count_optimizer_steps, parse_duration, plan_from_trainer
from .task import OptimClassifier

__all__ = [
    "OPTIMIZERS",
    "RULES",
    "GroupLRMonitor",
    "LRFindResult",
    "lr_find",
    "suggest_lr",
    "SCHEDULES",
    "CosineFactor",
    "CosineWarmupFactor",
    "Duration",
    "Lamb",
    "OneCycle",
    "OptimConfig",
    "OptimClassifier",
    "OptimizerEntry",
    "OptimizerMixin",
    "RestartsFactor",
    "ScheduleSpec",
    "StepPlan",
    "base_lrs_of",
    "build_param_groups",
    "build_scheduler",
    "configure_from_config",
    "count_optimizer_steps",
    "create_optimizer",
    "fast_forward",
    "list_optimizers",
    "list_schedules",
    "parse_duration",
    "plan_from_trainer",
]
