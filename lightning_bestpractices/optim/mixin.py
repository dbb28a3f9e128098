"""``configure_optimizers`` from a config: optimizer, LR, weight decay, multipliers and schedule, no Python.

A recipe YAML can say::

    model:
      optim:
        optimizer: adamw
        lr: 3.0e-3
        weight_decay: 0.05
        schedule: {name: cosine, warmup: 5%, final_lr: 1.0e-5}

What :class:`OptimizerMixin` adds over writing ``configure_optimizers`` by hand: the schedule is resolved against
the optimizer steps that will really happen (:func:`~lightning_bestpractices.optim.steps.plan_from_trainer`), and
re-resolved when a run resumes: if the step count changed (other devices, accumulation, ``max_epochs``), the
schedulers are rebuilt for the new count and moved to the current step, so the last step still ends on
``final_lr``. Epoch starts seen so far are kept in the checkpoint, so epoch-based durations stay where they were.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from lightning_bestpractices.errors import ArgumentError

from .factory import create_optimizer
from .schedule import Schedule
from .schedules import ScheduleSpec, _has_momentum, build_scheduler, check_final_lr, resolve_curve
from .steps import StepPlan, count_optimizer_steps, plan_from_trainer

__all__ = ["OptimConfig", "OptimizerMixin", "configure_from_config"]

_CKPT_KEY = "lightning_bestpractices.optim"


@dataclass
class OptimConfig:
    """Optimizer + schedule, as plain data (for YAML / LightningCLI).

    Args:
        optimizer: registry name (see :func:`~lightning_bestpractices.optim.list_optimizers`).
        lr: base learning rate, >= 0.
        weight_decay: >= 0; biases and normalization parameters get none.
        options: extra optimizer arguments (``momentum``, ``betas``, ``eps`` ...).
        lr_multipliers: ``{submodule_prefix: multiplier}`` for discriminative LRs.
        no_decay_skip: names passed to the no-decay grouping as ``skip``.
        schedule: a :class:`~lightning_bestpractices.optim.schedules.ScheduleSpec`, its fields as a mapping, or a
            name; ``None`` for a constant LR with no scheduler.

    Examples:
        >>> cfg = OptimConfig.from_any({"optimizer": "adamw", "lr": 3e-3, "weight_decay": 0.05,
        ...                             "schedule": {"name": "cosine", "warmup": "5%", "final_lr": 1e-5}})
        >>> cfg.schedule.name, cfg.schedule.warmup
        ('cosine', Duration(value=0.05, unit='fraction'))
        >>> OptimConfig(lr=-1.0)
        Traceback (most recent call last):
        ...
        lightning_bestpractices.errors.ArgumentError: `lr` must be >= 0, got -1.0
    """

    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)
    lr_multipliers: dict[str, float] = field(default_factory=dict)
    no_decay_skip: list[str] = field(default_factory=list)
    schedule: ScheduleSpec | dict[str, Any] | str | None = None

    def __post_init__(self) -> None:
        from .factory import OPTIMIZERS, list_optimizers

        if isinstance(self.optimizer, str) and self.optimizer.lower() not in OPTIMIZERS:
            raise ArgumentError(f"unknown optimizer {self.optimizer!r}; choose one of {list_optimizers()}")
        for name in ("lr", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ArgumentError(f"`{name}` must be >= 0, got {value!r}")
        for prefix, mult in self.lr_multipliers.items():
            if not mult > 0:
                raise ArgumentError(f"`lr_multipliers[{prefix!r}]` must be > 0, got {mult!r}")
        self.schedule = ScheduleSpec.from_any(self.schedule)
        if self.schedule is not None:
            check_final_lr(self.schedule, self.lr)

    @classmethod
    def from_any(cls, config: OptimConfig | dict[str, Any] | None) -> OptimConfig:
        if config is None:
            return cls()
        if isinstance(config, OptimConfig):
            return config
        if isinstance(config, dict):
            unknown = set(config) - {f.name for f in dataclasses.fields(cls)}
            if unknown:
                raise ArgumentError(f"unknown optim option(s) {sorted(unknown)} in {config!r}")
            return cls(**config)
        raise ArgumentError(f"`optim` must be an OptimConfig or a mapping, got {config!r}")

    def with_lr(self, lr: float) -> OptimConfig:
        """A copy with another base LR (e.g. the LR finder's suggestion); ``final_lr`` keeps its value unless it
        would lie above the new LR (then it is lowered to it)."""
        spec = self.schedule
        if isinstance(spec, ScheduleSpec) and spec.final_lr is not None and spec.final_lr > lr:
            spec = dataclasses.replace(spec, final_lr=float(lr))
        return dataclasses.replace(self, lr=float(lr), schedule=spec)


def configure_from_config(
    module: nn.Module, config: OptimConfig, trainer: L.Trainer | None = None
) -> tuple[Any, list[dict[str, Any]], StepPlan | None]:
    """Optimizer and Lightning scheduler configs for ``module`` (pure function behind the mixin)."""
    opt = create_optimizer(
        module, config.optimizer, lr=config.lr, weight_decay=config.weight_decay,
        lr_multipliers=config.lr_multipliers, no_decay_skip=config.no_decay_skip, **config.options,
    )  # fmt: skip
    if config.schedule is None or trainer is None:
        return opt, [], None
    plan = plan_from_trainer(trainer)
    return opt, build_scheduler(opt, config.schedule, plan, lr=config.lr), plan


class OptimizerMixin:
    """Mix into a ``LightningModule`` that sets ``self.optim`` (an :class:`OptimConfig` or a mapping).

    Provides ``configure_optimizers`` and the hooks that keep the schedule right on resume. If your module
    overrides ``on_train_start``, ``on_train_epoch_start``, ``on_save_checkpoint`` or ``on_load_checkpoint``,
    call ``super()`` in them.

    Examples:
        >>> import torch
        >>> class Net(OptimizerMixin, L.LightningModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.layer = torch.nn.Linear(2, 1)
        ...         self.optim = {"optimizer": "lamb", "lr": 0.01, "weight_decay": 0.01}
        >>> type(Net().configure_optimizers()).__name__      # no trainer attached: the optimizer alone
        'Lamb'
    """

    optim: OptimConfig | dict[str, Any] | None
    _lbp_plan: StepPlan | None = None
    _lbp_epoch_starts: list[int] | None = None
    _lbp_plateau_metric: float | None = None
    _lbp_plateau_epoch: int | None = None

    def optim_config(self) -> OptimConfig:
        config = OptimConfig.from_any(getattr(self, "optim", None))
        self.optim = config
        return config

    def configure_optimizers(self) -> Any:
        config = self.optim_config()
        trainer = self._trainer_or_none()
        if trainer is not None and _sweeping(trainer):  # the LR finder's sweep drives the LR: optimizer only
            trainer = None
        opt, configs, plan = configure_from_config(self, config, trainer)  # type: ignore[arg-type]
        self._lbp_plan = plan
        if not configs:
            return opt
        if len(configs) == 1:
            return {"optimizer": opt, "lr_scheduler": configs[0]}
        return [opt], configs

    def _trainer_or_none(self) -> L.Trainer | None:
        try:
            return self.trainer  # type: ignore[attr-defined]
        except RuntimeError:
            return None

    # ---- resume: keep the epoch starts, re-resolve when the step count changed ------------------------------

    def on_train_epoch_start(self) -> None:
        trainer = self.trainer  # type: ignore[attr-defined]
        starts = list(self._lbp_epoch_starts or [])[: trainer.current_epoch]
        self._lbp_epoch_starts = [*starts, int(trainer.global_step)]
        super().on_train_epoch_start()  # type: ignore[misc]

    def on_train_start(self) -> None:
        super().on_train_start()  # type: ignore[misc]
        trainer = self.trainer  # type: ignore[attr-defined]
        config = self.optim_config()
        if self._lbp_plan is None or config.schedule is None:
            return
        epoch, step = int(trainer.current_epoch), int(trainer.global_step)
        if step == 0 and epoch == 0:
            return
        self._catch_up_plateau(trainer)
        history = list(self._lbp_epoch_starts or [])[:epoch]
        if len(history) < epoch:  # no record (older checkpoint): assume earlier epochs ran as configured now
            known = count_optimizer_steps(trainer.num_training_batches, epoch, accumulate=_acc(trainer))
            history = list(known.epoch_starts[:epoch])
        plan = plan_from_trainer(trainer, history=[*history, step])
        if plan.epoch_starts == self._lbp_plan.epoch_starts:
            return
        rank_zero_info(
            f"optimizer steps changed on resume: {self._lbp_plan.total} -> {plan.total}; rebuilding the "
            f"'{config.schedule.name}' schedule and moving it to step {step}"
        )
        self._rebuild(trainer, config, plan, step)

    def _rebuild(self, trainer: L.Trainer, config: OptimConfig, plan: StepPlan, step: int) -> None:
        """Re-resolve the schedule's curve for the new step count; the scheduler, its step and state stay."""
        schedules = {id(c.scheduler): c.scheduler for c in trainer.lr_scheduler_configs}
        for sched in schedules.values():
            if isinstance(sched, Schedule):
                momentum = _has_momentum(sched.optimizer)
                sched.curve, _ = resolve_curve(config.schedule, plan, config.lr, momentum=momentum)  # type: ignore[arg-type]
                sched.refresh()
        self._lbp_plan = plan

    def _catch_up_plateau(self, trainer: L.Trainer) -> None:
        """Apply the plateau step that Lightning runs *after* the epoch-end checkpoint was written.

        Lightning steps epoch-interval plateau schedulers after ``on_train_epoch_end`` / validation, where
        ``ModelCheckpoint`` saves, and skips that step on restart; the resumed run would keep the LR from before the
        last reduction. The monitored value is kept in the checkpoint, so the missed step is taken here.
        """
        if self._lbp_plateau_metric is None or self._lbp_plateau_epoch != trainer.current_epoch - 1:
            return
        for c in trainer.lr_scheduler_configs:
            s = c.scheduler
            if isinstance(s, Schedule) and s.plateau is not None and c.reduce_on_plateau and c.frequency == 1:
                s.step(self._lbp_plateau_metric)

    def on_validation_end(self) -> None:
        """Plateau: fail before training if the sanity check logged metrics but not ``monitor``."""
        super().on_validation_end()  # type: ignore[misc]
        trainer = self.trainer  # type: ignore[attr-defined]
        spec = self.optim_config().schedule
        if (
            not trainer.sanity_checking
            or spec is None
            or spec.name != "plateau"
            or not trainer.callback_metrics
        ):
            return
        if spec.monitor not in trainer.callback_metrics:
            raise ArgumentError(
                f"schedule 'plateau' monitors {spec.monitor!r}, which is not logged; logged metrics: "
                f"{sorted(trainer.callback_metrics)}"
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)  # type: ignore[misc]
        state: dict[str, Any] = {"epoch_starts": list(self._lbp_epoch_starts or [])}
        spec = self.optim_config().schedule
        trainer = self._trainer_or_none()
        if trainer is not None and spec is not None and spec.name == "plateau":
            value = trainer.callback_metrics.get(spec.monitor)  # type: ignore[arg-type]
            state["plateau_metric"] = None if value is None else float(value)
            state["plateau_epoch"] = int(trainer.current_epoch)
        checkpoint[_CKPT_KEY] = state

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)  # type: ignore[misc]
        state = checkpoint.get(_CKPT_KEY)
        if state is not None:
            self._lbp_epoch_starts = list(state["epoch_starts"])
            self._lbp_plateau_metric = state.get("plateau_metric")
            self._lbp_plateau_epoch = state.get("plateau_epoch")


def _sweeping(trainer: L.Trainer) -> bool:
    from .lr_finder import RangeTest

    return any(isinstance(cb, RangeTest) for cb in trainer.callbacks)


def _acc(trainer: L.Trainer) -> Any:
    from lightning.pytorch.callbacks import GradientAccumulationScheduler

    for cb in trainer.callbacks:
        if isinstance(cb, GradientAccumulationScheduler):
            return cb.get_accumulate_grad_batches
    return trainer.accumulate_grad_batches
