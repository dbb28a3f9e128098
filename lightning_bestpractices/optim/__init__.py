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

from lightning_bestpractices._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        ".curves": ["CosineFactor", "CosineWarmupFactor", "OneCycle", "RestartsFactor"],
        ".factory": [
            "OPTIMIZERS",
            "OptimizerEntry",
            "build_param_groups",
            "create_optimizer",
            "list_optimizers",
        ],
        ".lamb": ["Lamb"],
        ".lr_finder": ["RULES", "LRFindResult", "lr_find", "suggest_lr"],
        ".mixin": ["OptimConfig", "OptimizerMixin", "configure_from_config"],
        ".monitor": ["GroupLRMonitor"],
        ".schedules": [
            "SCHEDULES",
            "ScheduleSpec",
            "base_lrs_of",
            "build_scheduler",
            "fast_forward",
            "list_schedules",
        ],
        ".steps": ["Duration", "StepPlan", "count_optimizer_steps", "parse_duration", "plan_from_trainer"],
        ".task": ["OptimClassifier"],
    },
)
