"""Add parameter groups to a live optimizer and keep every attached LR scheduler consistent.

``torch.optim.Optimizer.add_param_group`` only touches the optimizer. The schedulers attached to it keep per-group
lists (``base_lrs``, ``lr_lambdas``, ``min_lrs``, ``max_lrs``, ...) and per-group keys in the optimizer
(``initial_lr``, OneCycleLR's ``max_lr``/``min_lr``/momenta); a group added later is missing from all of them, so
the scheduler crashes (LambdaLR, CyclicLR, ReduceLROnPlateau with per-group ``min_lr``) or leaves the new group at a
constant LR (chainable schedulers). What this adds:

* :func:`add_param_group` clones a reference group *with its schedule*: the new group behaves exactly as if it had
  been in the optimizer from the start with every LR quantity multiplied by ``lr_scale``, and its current LR is
  that schedule's value now. Works for every torch scheduler (``SequentialLR``/``ChainedScheduler`` children
  included) and for any ``LRScheduler`` subclass that keeps its per-group state in ``base_lrs``-like lists.
* :func:`scale_group_lr` multiplies one group's whole schedule by a factor (the "lower the LR when unfreezing" step).
* :func:`drop_frozen_parameters` removes ``requires_grad=False`` parameters from an optimizer, so that they can be
  added later as their own group (parameters are matched by identity).

The current LR of a new group is derived from the reference group: for every torch schedule the LR is affine in the
group's LR quantities, ``lr(t) = floor + (base - floor) * m(t)``, where ``floor`` is the shared ``eta_min`` of a
cosine schedule (0 otherwise), so ``m(t)`` is read off the reference group. ReduceLROnPlateau: the new group
joins at the reference LR times ``lr_scale``, but not below its own floor (the shared ``min_lr``, or the reference
group's scaled when ``min_lr`` was given per group). That is exact except for ``lr_scale > 1`` with a shared
``min_lr`` once the reference group has reached it (torch keeps no count of reductions to recover the unclamped LR).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from lightning_bestpractices.errors import ArgumentError

__all__ = ["add_param_group", "scale_group_lr", "drop_frozen_parameters", "group_index_of"]

#: optimizer param-group keys that are learning rates (scaled with the group)
LR_KEYS = ("lr", "initial_lr", "max_lr", "min_lr")
#: scheduler per-group lists that hold learning rates (scaled); every other per-group list is copied
SCALED_LISTS = ("base_lrs", "max_lrs")


def _children(scheduler: Any) -> list[Any]:
    return list(getattr(scheduler, "_schedulers", []) or [])


def _walk(schedulers: Iterable[Any]) -> list[Any]:
    out = []
    for s in schedulers:
        out.append(s)
        out += _walk(_children(s))
    return out


def _per_group_lists(scheduler: Any, n: int) -> list[str]:
    """Public list attributes with one entry per param group (``base_lrs``, ``lr_lambdas``, ``min_lrs``...)."""
    names = []
    for key, value in vars(scheduler).items():
        if key.startswith("_") or key == "optimizer" or not isinstance(value, list) or len(value) != n:
            continue
        names.append(key)
    return names


def _scaled(scheduler: Any, key: str) -> bool:
    """Whether a per-group list scales with the group: LR lists do; ReduceLROnPlateau's ``min_lrs`` only when they
    were given per group (then they are per-group floors, e.g. scaled by LR multipliers), not as one value."""
    if key == "min_lrs" and isinstance(scheduler, ReduceLROnPlateau):
        return getattr(scheduler, "default_min_lr", 0.0) is None
    return key in SCALED_LISTS


def _active_floor(schedulers: Sequence[Any]) -> float:
    """The additive floor (``eta_min``) of the schedule currently driving the LRs, 0 if it has none."""
    for s in schedulers:
        leaf = s
        while _children(leaf):
            kids = _children(leaf)
            milestones = getattr(leaf, "_milestones", None)
            leaf = kids[bisect_right(milestones, leaf.last_epoch)] if milestones is not None else kids[-1]
        floor = getattr(leaf, "eta_min", 0.0)
        if isinstance(floor, (int, float)) and floor:
            return float(floor)
    return 0.0


def _affine(lr: float, base: float, new_base: float, floor: float) -> float:
    """LR of a group whose base is ``new_base``, given a group at ``lr`` with base ``base`` on the same schedule."""
    if base == floor:
        return lr * (new_base / base) if base else new_base
    return floor + (lr - floor) * (new_base - floor) / (base - floor)


def _sync_last_lr(optimizer: Optimizer, schedulers: Sequence[Any]) -> None:
    lrs = [g["lr"] for g in optimizer.param_groups]
    for s in _walk(schedulers):
        if hasattr(s, "_last_lr"):
            s._last_lr = list(lrs)


def _attached(optimizer: Optimizer, schedulers: Iterable[Any]) -> list[Any]:
    return [s for s in schedulers if getattr(s, "optimizer", None) is optimizer]


def _check_scale(name: str, value: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not value > 0
        or value == float("inf")
    ):
        raise ArgumentError(f"`{name}` must be a finite number > 0, got {value!r}")
    return float(value)


def group_index_of(optimizer: Optimizer, param: torch.Tensor) -> int | None:
    """Index of the param group that holds ``param`` (by identity), or ``None``."""
    for i, group in enumerate(optimizer.param_groups):
        if any(p is param for p in group["params"]):
            return i
    return None


def drop_frozen_parameters(optimizer: Optimizer) -> int:
    """Remove every ``requires_grad=False`` parameter (and its state) from ``optimizer``; returns how many.

    Groups are kept even when they become empty, so group indices (and the schedulers' per-group lists) stay valid.

    Example:
        >>> a, b = torch.nn.Parameter(torch.ones(1)), torch.nn.Parameter(torch.ones(1), requires_grad=False)
        >>> opt = torch.optim.SGD([a, b], lr=0.1)
        >>> drop_frozen_parameters(opt), len(opt.param_groups[0]["params"])
        (1, 1)
    """
    dropped = 0
    for group in optimizer.param_groups:
        keep = [p for p in group["params"] if p.requires_grad]
        for p in group["params"]:
            if not p.requires_grad:
                optimizer.state.pop(p, None)
                dropped += 1
        group["params"] = keep
    return dropped


def add_param_group(
    optimizer: Optimizer,
    params: Iterable[torch.nn.Parameter],
    *,
    like: int = 0,
    lr_scale: float = 1.0,
    schedulers: Sequence[Any] = (),
    name: str | None = None,
    **overrides: Any,
) -> int:
    """Add ``params`` as a new group that copies group ``like`` and its schedule, with LRs times ``lr_scale``.

    Args:
        optimizer: the optimizer (its existing state is untouched; the new parameters start with fresh state).
        params: the parameters of the new group; must not already be in ``optimizer``.
        like: index of the reference group whose hyperparameters and schedule are cloned.
        lr_scale: factor on every LR quantity of the clone (``lr``, ``initial_lr``, OneCycleLR's ``max_lr``/
            ``min_lr``, ``lr_multiplier``, schedulers' ``base_lrs``/``max_lrs``, per-group ``min_lrs``); one-value
            floors (``eta_min``, a scalar ``min_lr`` of ReduceLROnPlateau) are shared.
        schedulers: the LR schedulers to keep consistent; those not attached to ``optimizer`` are ignored.
        name: the group's ``"name"`` (shown by LR monitors).
        overrides: other hyperparameters of the new group (e.g. ``weight_decay=0.0``).

    Returns:
        The index of the new group.

    Example:
        >>> net = torch.nn.Linear(2, 2)
        >>> opt = torch.optim.SGD([net.weight], lr=1.0)
        >>> sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        >>> opt.step(); sched.step()
        >>> add_param_group(opt, [net.bias], lr_scale=0.1, schedulers=[sched], name="bias")
        1
        >>> opt.step(); sched.step()
        >>> [round(g["lr"], 6) for g in opt.param_groups]
        [0.25, 0.025]
    """
    lr_scale = _check_scale("lr_scale", lr_scale)
    n = len(optimizer.param_groups)
    if not -n <= like < n:
        raise ArgumentError(f"`like` must index one of the optimizer's {n} param groups, got {like!r}")
    like %= n
    params = list(params)
    if not params:
        raise ArgumentError("`params` is empty")
    ref = optimizer.param_groups[like]
    attached = _attached(optimizer, schedulers)
    group = {k: v for k, v in ref.items() if k != "params"}
    for key in LR_KEYS:
        if key in group and isinstance(group[key], (int, float, torch.Tensor)):
            group[key] = group[key] * lr_scale
    group["lr_multiplier"] = (
        float(ref.get("lr_multiplier", 1.0)) * lr_scale
    )  # optim's schedules rebuild from it
    if name is not None:
        group["name"] = name
    group.update(overrides)
    group["params"] = params
    scheduled = {}
    for s in _walk(attached):
        scheduled[id(s)] = _per_group_lists(s, n)
    optimizer.add_param_group(group)
    for s in _walk(attached):
        for key in scheduled[id(s)]:
            values = getattr(s, key)
            values.append(values[like] * lr_scale if _scaled(s, key) else values[like])
    if attached:
        group["lr"] = _current_lr(ref, lr_scale, attached, len(optimizer.param_groups) - 1)
    _sync_last_lr(optimizer, attached)
    return len(optimizer.param_groups) - 1


def _current_lr(ref: dict, scale: float, schedulers: Sequence[Any], index: int) -> float:
    lr = float(ref["lr"])
    if all(isinstance(s, ReduceLROnPlateau) for s in schedulers):
        # Every reduction multiplies each group by `factor` and clamps it at the group's own floor, so the new group
        # is at max(reference * scale, its floor). Exact unless the reference already sits at a *shared* floor and
        # scale > 1: torch keeps no reduction count to tell how far below the floor the unclamped value is.
        floor = max(float(s.min_lrs[index]) for s in schedulers)
        return max(lr * scale, floor)
    base = float(ref.get("initial_lr", lr))
    return _affine(lr, base, base * scale, _active_floor(schedulers))


def scale_group_lr(
    optimizer: Optimizer, index: int, factor: float, *, schedulers: Sequence[Any] = ()
) -> None:
    """Multiply group ``index``'s whole LR schedule by ``factor`` (its current LR moves to that schedule's value).

    Example:
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=1.0)
        >>> sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5)
        >>> opt.step(); sched.step()
        >>> scale_group_lr(opt, 0, 0.1, schedulers=[sched])
        >>> opt.step(); sched.step()
        >>> round(opt.param_groups[0]["lr"], 6), sched.base_lrs
        (0.025, [0.1])
    """
    factor = _check_scale("factor", factor)
    n = len(optimizer.param_groups)
    if not -n <= index < n:
        raise ArgumentError(f"`index` must index one of the optimizer's {n} param groups, got {index!r}")
    group = optimizer.param_groups[index]
    attached = _attached(optimizer, schedulers)
    old = dict(group)
    for key in LR_KEYS[1:]:
        if key in group and isinstance(group[key], (int, float, torch.Tensor)):
            group[key] = group[key] * factor
    if "lr_multiplier" in group:
        group["lr_multiplier"] = float(group["lr_multiplier"]) * factor
    for s in _walk(attached):
        for key in _per_group_lists(s, n):
            if _scaled(s, key):
                getattr(s, key)[index] = getattr(s, key)[index] * factor
    group["lr"] = _current_lr(old, factor, attached, index) if attached else old["lr"] * factor
    _sync_last_lr(optimizer, attached)


def scheduler_list(trainer_or_configs: Any) -> list[LRScheduler | ReduceLROnPlateau]:
    """The scheduler objects of a Trainer (``trainer.lr_scheduler_configs``) or of a list of configs."""
    configs = getattr(trainer_or_configs, "lr_scheduler_configs", trainer_or_configs)
    return [c.scheduler for c in configs]
