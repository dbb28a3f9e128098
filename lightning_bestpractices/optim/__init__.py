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

from lightning_bestpractices._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        ".curves": [
            "Constant",
            "CosineFactor",
            "CosineWarmupFactor",
            "Curve",
            "ExponentialFactor",
            "LinearFactor",
            "LinearWarmup",
            "MultiStepFactor",
            "Offset",
            "OneCycleFactor",
            "RestartsFactor",
            "StepFactor",
            "Warmup",
        ],
        ".factory": [
            "OPTIMIZERS",
            "OptimizerEntry",
            "build_param_groups",
            "create_optimizer",
            "list_optimizers",
        ],
        ".lamb": ["Lamb"],
        ".lr_finder": ["RULES", "LRFinder", "LRFindResult", "lr_find", "suggest_lr"],
        ".mixin": ["OptimConfig", "OptimizerMixin", "configure_from_config"],
        ".monitor": ["LRMonitor"],
        ".schedule": ["Plateau", "Schedule"],
        ".schedules": [
            "SCHEDULES",
            "ScheduleSpec",
            "base_lrs_of",
            "build_scheduler",
            "fast_forward",
            "list_schedules",
            "resolve_curve",
        ],
        ".steps": ["Duration", "StepPlan", "count_optimizer_steps", "parse_duration", "plan_from_trainer"],
    },
)
