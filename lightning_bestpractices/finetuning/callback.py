"""``GradualUnfreezing``: freeze all but the head, then unfreeze layer groups on a schedule, correctly under DDP.

What it adds over Lightning's ``BackboneFinetuning``/``BaseFinetuning``:

* **DDP-correct.** ``DistributedDataParallel`` registers only the parameters that require grad when it wraps the
  model; parameters unfrozen later are never all-reduced and the ranks silently drift apart (Lightning's callbacks
  and the finetuning-scheduler package have this bug). After every unfreeze this callback rebuilds the DDP wrapper,
  so the new parameters are bucketed and all-reduced like any other (zero per-step overhead; the rebuild also
  broadcasts rank 0's weights once).
* **Scheduler-correct.** New groups are added with
  :func:`~lightning_bestpractices.finetuning.add_param_group`, so they follow the configured schedule from the
  moment they join: the package's own ``Schedule`` needs nothing more, a user's own torch scheduler is extended
  through :mod:`~lightning_bestpractices.finetuning.foreign` (class by class; an unknown class is refused at
  ``on_fit_start``, before the first step).
* **Decay-correct.** A joining layer group inherits the optimizer's weight decay and the package's one no-decay
  rule (:func:`~lightning_bestpractices.normalization.no_decay_parameters`): it joins as ``name`` (decayed) and
  ``name.no_decay`` (norm weights and all biases, weight decay 0), with no extra argument.
* **Resumable.** The phase is in ``state_dict``; on resume the parameter groups are rebuilt in ``on_fit_start``,
  before Lightning loads the optimizer and scheduler state into them.
* **Frozen means frozen.** ``requires_grad=False`` (no gradient, no optimizer state, less backward compute) and
  BatchNorm in frozen groups uses frozen running statistics
  (:class:`~lightning_bestpractices.normalization.FrozenBatchNorm`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, SingleDeviceStrategy
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim import Optimizer

from lightning_bestpractices.errors import ArgumentError

from .. import _compat
from ..normalization import no_decay_parameters
from . import foreign
from .groups import GroupSpec, LayerGroup, freeze_group, group_parameters, layer_groups, unfreeze_group
from .param_groups import add_param_group, drop_frozen_parameters, group_index_of, scale_group_lr

__all__ = ["GradualUnfreezing"]


def _check_positive(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ArgumentError(f"`{name}` must be a finite number > 0, got {value!r}")
    return float(value)


def _check_milestones(unfreeze_at: Any) -> tuple[int | float, ...]:
    points = (unfreeze_at,) if isinstance(unfreeze_at, (int, float)) else tuple(unfreeze_at)
    if not points:
        raise ArgumentError("`unfreeze_at` must list at least one epoch or fraction, got an empty sequence")
    if any(isinstance(p, bool) or not isinstance(p, (int, float)) for p in points):
        raise ArgumentError(f"`unfreeze_at` must hold ints (epochs) or floats (fractions), got {unfreeze_at!r}")
    ints = all(isinstance(p, int) for p in points)
    if not ints and not all(isinstance(p, float) for p in points):
        raise ArgumentError(
            f"`unfreeze_at` must be all epochs (int) or all fractions (float), got {unfreeze_at!r}"
        )
    if ints and points[0] < 1:
        raise ArgumentError(
            f"`unfreeze_at` epochs must be >= 1 (epoch 0 trains the head alone), got {unfreeze_at!r}"
        )
    if not ints and not all(0 < p < 1 for p in points):
        raise ArgumentError(f"`unfreeze_at` fractions of training must be in (0, 1), got {unfreeze_at!r}")
    if any(b <= a for a, b in zip(points, points[1:])):
        raise ArgumentError(f"`unfreeze_at` must be strictly increasing, got {unfreeze_at!r}")
    return points


class GradualUnfreezing(Callback):
    """Train the head first, then unfreeze layer groups from the top down with discriminative learning rates.

    At ``setup`` the model is split into layer groups (:func:`~lightning_bestpractices.finetuning.layer_groups`)
    and every group but the head is frozen. At each point of ``unfreeze_at`` the next ``groups_per_unfreeze``
    groups below the unfrozen ones are unfrozen and added to the optimizer as new parameter groups named after the
    layer group. A group ``d`` groups below the head gets ``lr_factor ** d`` times the head's schedule (a geometric
    spread like fastai's ``slice(lo, hi)``: ``lr_factor = (lo / hi) ** (1 / (n_groups - 1))``). The head is the
    optimizer group that holds the head's parameters; the optimizer may hold all parameters or only trainable ones
    (frozen ones are taken out at ``on_fit_start`` and come back as their own groups).

    Args:
        unfreeze_at: epochs (ints >= 1) or fractions of the total optimizer steps (floats in (0, 1)), strictly
            increasing. Epochs must be < ``max_epochs``.
        groups_per_unfreeze: groups unfrozen at each point, one int for all or one per point; ``-1`` means all
            remaining groups.
        groups: layer groups, input side first (``None``: automatic; see
            :func:`~lightning_bestpractices.finetuning.layer_groups`).
        head: name/pattern of the head (``None``: the last group).
        lr_factor: LR multiplier per group below the head (> 0; 1 gives every group the head's LR).
        lr_reduction: at each unfreeze, every group already training has its schedule multiplied by this (> 0;
            e.g. 0.1 to "reduce the LR when unfreezing"; 1 keeps it).
        train_bn_affine: whether BatchNorm ``weight``/``bias`` in frozen groups keep training (their statistics
            stay frozen either way).
        freeze_bn_stats: keep BatchNorm running statistics frozen also after a group is unfrozen (its
            ``weight``/``bias`` train). Worth it with small batches, whose statistics are noisy; by default an
            unfrozen group's BatchNorm goes back to batch statistics and updates its running estimates.
        weight_decay: weight decay of the decayed part of each new group; ``None`` (default) inherits the
            optimizer's (the largest weight decay among its groups). Whenever it is > 0 a new group is split into
            ``name`` and ``name.no_decay`` (weight decay 0 for norm parameters and biases, the rule of
            :func:`~lightning_bestpractices.normalization.param_groups`).

    Examples:
        >>> import torch, lightning as L
        >>> class Net(L.LightningModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1))
        ...     def training_step(self, batch, _):
        ...         return self.net(batch[0]).pow(2).mean()
        ...     def configure_optimizers(self):
        ...         return torch.optim.SGD(self.parameters(), lr=0.1)
        >>> data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 4)), batch_size=4)
        >>> cb = GradualUnfreezing(unfreeze_at=[1, 2], lr_factor=0.5)
        >>> trainer = L.Trainer(max_epochs=3, callbacks=[cb], logger=False, enable_checkpointing=False,
        ...                     enable_progress_bar=False, enable_model_summary=False)
        >>> trainer.fit(Net(), data)
        >>> [(g["name"], g["lr"]) for g in trainer.optimizers[0].param_groups]
        [('net.4', 0.1), ('net.2', 0.05), ('net.0', 0.025)]
    """

    def __init__(
        self,
        unfreeze_at: int | float | Sequence[int | float] = (1,),
        groups_per_unfreeze: int | Sequence[int] | None = None,
        *,
        groups: Sequence[GroupSpec] | None = None,
        head: GroupSpec | None = None,
        lr_factor: float = 0.5,
        lr_reduction: float = 1.0,
        train_bn_affine: bool = False,
        freeze_bn_stats: bool = False,
        weight_decay: float | None = None,
    ) -> None:
        self.unfreeze_at = _check_milestones(unfreeze_at)
        self._counts_given = groups_per_unfreeze is not None
        if groups_per_unfreeze is None:
            groups_per_unfreeze = 1
        counts = (
            (groups_per_unfreeze,) * len(self.unfreeze_at)
            if isinstance(groups_per_unfreeze, int)
            else tuple(groups_per_unfreeze)
        )
        if len(counts) != len(self.unfreeze_at):
            raise ArgumentError(
                f"`groups_per_unfreeze` must be one int or one per `unfreeze_at` point "
                f"({len(self.unfreeze_at)}), got {groups_per_unfreeze!r}"
            )
        if any(isinstance(c, bool) or not isinstance(c, int) or (c < 1 and c != -1) for c in counts):
            raise ArgumentError(
                f"`groups_per_unfreeze` entries must be ints >= 1 or -1 (all), got {groups_per_unfreeze!r}"
            )
        if -1 in counts[:-1]:
            raise ArgumentError(
                f"`groups_per_unfreeze` may use -1 (all remaining) only last, got {groups_per_unfreeze!r}"
            )
        self.groups_per_unfreeze = counts
        self.lr_factor = _check_positive("lr_factor", lr_factor)
        self.lr_reduction = _check_positive("lr_reduction", lr_reduction)
        if weight_decay is not None and (not isinstance(weight_decay, (int, float)) or weight_decay < 0):
            raise ArgumentError(f"`weight_decay` must be None or a number >= 0, got {weight_decay!r}")
        self.weight_decay = weight_decay
        self.groups_spec = groups
        self.head = head
        self.train_bn_affine = bool(train_bn_affine)
        self.freeze_bn_stats = bool(freeze_bn_stats)
        self.phase = 0  # unfreeze events applied so far
        self.groups: list[LayerGroup] = []
        self._order: list[list[int]] = []  # group indices unfrozen at each event
        self._steps: list[int] | None = None  # milestones as global steps (fractions only)
        self._optimizer: Optimizer | None = None
        self._head_group = 0
        self._loaded_groups: list[str] | None = None  # group names from a checkpoint, checked at on_fit_start

    # --- state ------------------------------------------------------------------------------------------------

    @property
    def state_key(self) -> str:
        # keyed by what it acts on, not by its schedule: a resumed run with another `unfreeze_at` still finds its
        # phase and is told clearly (see on_fit_start); two instances on different groups keep separate states
        return self._generate_state_key(groups=self.groups_spec, head=self.head)

    def state_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "groups": [g.name for g in self.groups]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.phase = int(state_dict["phase"])
        self._loaded_groups = list(state_dict.get("groups", []))

    # --- hooks ------------------------------------------------------------------------------------------------

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        strategy = trainer.strategy
        if isinstance(strategy, DeepSpeedStrategy) or not isinstance(
            strategy, (SingleDeviceStrategy, DDPStrategy)
        ):
            raise ArgumentError(
                f"GradualUnfreezing supports single-device and DDP strategies, got {type(strategy).__name__}"
            )
        self.groups = layer_groups(pl_module, self.groups_spec, self.head)
        self._order = self._plan(len(self.groups))
        if isinstance(self.unfreeze_at[0], int) and trainer.max_epochs not in (None, -1):
            late = [e for e in self.unfreeze_at if e >= trainer.max_epochs]
            if late:
                raise ArgumentError(
                    f"`unfreeze_at` epochs {late} are out of range: training has max_epochs={trainer.max_epochs} "
                    f"(epochs 0..{trainer.max_epochs - 1})"
                )
        self.phase = 0
        self._loaded_groups = None
        for group in self.groups[:-1]:
            freeze_group(pl_module, group, train_bn_affine=self.train_bn_affine)
        in_modules = {id(p) for p in self._module_params(pl_module, self.groups[0])}
        for p in group_parameters(pl_module, self.groups)[0]:
            if id(p) not in in_modules:  # parameters in no group are frozen with the first group
                p.requires_grad_(False)
        self._report(pl_module, "frozen all but the head")

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._loaded_groups is not None and self._loaded_groups != [g.name for g in self.groups]:
            raise ArgumentError(
                f"the checkpoint's layer groups {self._loaded_groups} differ from this model's "
                f"{[g.name for g in self.groups]}"
            )
        # unfreezing is decided from trainer.current_epoch / global_step, identical on every rank; the phase
        # restored from a checkpoint is made identical too
        self.phase = trainer.strategy.broadcast(self.phase)
        if self.phase > len(self.unfreeze_at):
            raise ArgumentError(
                f"the checkpoint is in phase {self.phase} but `unfreeze_at`={list(self.unfreeze_at)} has only "
                f"{len(self.unfreeze_at)} unfreeze points"
            )
        head_param = next((p for p in group_parameters(pl_module, self.groups)[-1] if p.requires_grad), None)
        if head_param is None:
            raise ArgumentError(f"the head {self.groups[-1].name!r} has no trainable parameter")
        for config in trainer.lr_scheduler_configs:  # a scheduler we cannot extend: say so before the first step
            foreign.check_supported(config.scheduler)
        self._optimizer = None
        for opt in trainer.optimizers:
            drop_frozen_parameters(opt)
            if self._optimizer is None and group_index_of(opt, head_param) is not None:
                self._optimizer = opt
        if self._optimizer is None:
            raise ArgumentError(
                f"no optimizer holds the head's parameters ({self.groups[-1].name!r}); configure_optimizers must "
                "include them"
            )
        self._head_group = group_index_of(self._optimizer, head_param)
        self._optimizer.param_groups[self._head_group].setdefault("name", self.groups[-1].name)
        if isinstance(self.unfreeze_at[0], float):
            total = trainer.estimated_stepping_batches
            if not math.isfinite(total):
                raise ArgumentError(
                    "`unfreeze_at` fractions need a finite training length (max_epochs or max_steps)"
                )
            self._steps = [max(1, round(f * total)) for f in self.unfreeze_at]
        # resume: rebuild the groups before Lightning loads the optimizer state into them
        for event in range(self.phase):
            self._unfreeze(trainer, pl_module, event, rewrap=False)
        if self.phase:
            self._rewrap_ddp(trainer)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._steps is None:
            while (
                self.phase < len(self.unfreeze_at) and trainer.current_epoch >= self.unfreeze_at[self.phase]
            ):
                self._apply(trainer, pl_module)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if (
            self._steps is None
            or self.phase >= len(self._steps)
            or trainer.global_step < self._steps[self.phase]
        ):
            return
        if batch_idx % trainer.accumulate_grad_batches == 0:  # never in the middle of an accumulation window
            while self.phase < len(self._steps) and trainer.global_step >= self._steps[self.phase]:
                self._apply(trainer, pl_module)

    # --- work -------------------------------------------------------------------------------------------------

    def _plan(self, n: int) -> list[list[int]]:
        frozen = list(range(n - 2, -1, -1))  # nearest the head first
        order = []
        if not self._counts_given and len(self.unfreeze_at) > n - 1:
            raise ArgumentError(
                f"`unfreeze_at`={list(self.unfreeze_at)} has {len(self.unfreeze_at)} unfreeze points, but the model "
                f"has only {n - 1} frozen layer group(s) ({[g.name for g in self.groups[:-1]]}) to unfreeze"
            )
        for count in self.groups_per_unfreeze:
            take = len(frozen) if count == -1 else count
            if take > len(frozen) or take == 0:
                raise ArgumentError(
                    f"`groups_per_unfreeze`={list(self.groups_per_unfreeze)} asks for more groups than the "
                    f"{n - 1} frozen ones ({[g.name for g in self.groups[:-1]]})"
                )
            order.append(frozen[:take])
            frozen = frozen[take:]
        return order

    @staticmethod
    def _module_params(pl_module: nn.Module, group: LayerGroup) -> list[nn.Parameter]:
        return [p for name in group.modules for p in pl_module.get_submodule(name).parameters()]

    def _apply(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        names = self._unfreeze(trainer, pl_module, self.phase, rewrap=True)
        self.phase += 1
        lrs = {g.get("name"): g["lr"] for g in self._optimizer.param_groups}
        self._report(
            pl_module,
            f"epoch {trainer.current_epoch}, step {trainer.global_step}: unfroze "
            + ", ".join(f"{n} (lr {lrs.get(n, float('nan')):.3g})" for n in names),
        )

    def _attached_schedulers(self, trainer: L.Trainer) -> list[Any]:
        return [c.scheduler for c in trainer.lr_scheduler_configs if c.scheduler.optimizer is self._optimizer]

    def _lr_factor(self) -> float:
        return self.lr_factor

    def _unfreeze(
        self, trainer: L.Trainer, pl_module: L.LightningModule, event: int, *, rewrap: bool
    ) -> list[str]:
        opt, schedulers = self._optimizer, self._attached_schedulers(trainer)
        n = len(self.groups)
        if self.lr_reduction != 1.0:
            for i in range(len(opt.param_groups)):
                scale_group_lr(opt, i, self.lr_reduction, schedulers=schedulers)
        for i in self._order[event]:
            if not self.freeze_bn_stats:
                unfreeze_group(pl_module, self.groups[i])
        params = group_parameters(pl_module, self.groups)
        decay = self._joining_weight_decay(opt)
        no_decay = no_decay_parameters(pl_module) if decay > 0 else set()
        names = []
        for i in self._order[event]:
            for p in params[i]:
                p.requires_grad_(True)
            held = {id(p) for g in opt.param_groups for p in g["params"]}  # match by identity
            new = [p for p in params[i] if id(p) not in held]
            if not new:
                continue
            scale = self._lr_factor() ** (n - 1 - i)
            name = self.groups[i].name
            parts = [
                (name, [p for p in new if id(p) not in no_decay], {"weight_decay": decay}),
                (f"{name}.no_decay", [p for p in new if id(p) in no_decay], {"weight_decay": 0.0}),
            ]
            for part_name, part, extra in parts:
                if part:
                    add_param_group(
                        opt,
                        part,
                        like=self._head_group,
                        lr_scale=scale,
                        schedulers=schedulers,
                        name=part_name,
                        **extra,
                    )
                    names.append(part_name)
        if rewrap:
            self._rewrap_ddp(trainer)
        return names

    def _joining_weight_decay(self, opt: Optimizer) -> float:
        """The weight decay a joining group's decayed part gets: the argument, else the optimizer's own."""
        if self.weight_decay is not None:
            return float(self.weight_decay)
        values = [float(g.get("weight_decay", 0.0)) for g in opt.param_groups]
        return max([*values, float(opt.defaults.get("weight_decay", 0.0) or 0.0) if not values else 0.0])

    @staticmethod
    def _rewrap_ddp(trainer: L.Trainer) -> None:
        """Rebuild the DDP wrapper so that it registers (buckets, all-reduces) the newly trainable parameters."""
        strategy = trainer.strategy
        if isinstance(strategy, DDPStrategy) and isinstance(strategy.model, DistributedDataParallel):
            _compat.rewrap_ddp(strategy)

    def _report(self, pl_module: nn.Module, what: str) -> None:
        total = sum(p.numel() for p in pl_module.parameters())
        trainable = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)
        frozen = [
            g.name
            for g, ps in zip(self.groups, group_parameters(pl_module, self.groups))
            if not any(p.requires_grad for p in ps)
        ]
        rank_zero_info(
            f"GradualUnfreezing: {what}; trainable parameters {trainable:,}/{total:,}; "
            f"groups {[g.name for g in self.groups]}, frozen {frozen}"
        )
