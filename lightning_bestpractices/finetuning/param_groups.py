"""Add parameter groups to a live optimizer and keep the attached LR schedule consistent.

``torch.optim.Optimizer.add_param_group`` only touches the optimizer. With the package's own
:class:`~lightning_bestpractices.optim.schedule.Schedule` that is all a group needs: its base LR (``initial_lr``),
floor and name live in the param group. A user's own torch schedulers keep per-group lists on the scheduler, which
:mod:`~lightning_bestpractices.finetuning.foreign` extends class by class. What this module adds:

* :func:`add_param_group` clones a reference group *with its schedule*: the new group behaves exactly as if it had
  been in the optimizer from the start with every LR quantity multiplied by ``lr_scale``, and its current LR is
  that schedule's value now.
* :func:`scale_group_lr` multiplies one group's whole schedule by a factor (the "lower the LR when unfreezing" step).
* :func:`drop_frozen_parameters` removes ``requires_grad=False`` parameters from an optimizer, so that they can be
  added later as their own group (parameters are matched by identity).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch.optim import Optimizer

from lightning_bestpractices.errors import ArgumentError

from . import foreign

__all__ = ["add_param_group", "scale_group_lr", "drop_frozen_parameters", "group_index_of"]

#: optimizer param-group keys that are learning rates (scaled with the group)
LR_KEYS = ("lr", "initial_lr", "max_lr", "min_lr")


def _attached(optimizer: Optimizer, schedulers: Iterable[Any]) -> list[Any]:
    return [s for s in schedulers if getattr(s, "optimizer", None) is optimizer]


def _own(schedulers: Sequence[Any]) -> list[Any]:
    from lightning_bestpractices.optim.schedule import Schedule

    return [s for s in schedulers if isinstance(s, Schedule)]


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

    Examples:
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

    Examples:
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
    own, others = _own(attached), [s for s in attached if s not in _own(attached)]
    for s in others:
        foreign.check_supported(s)  # before anything changes
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
    optimizer.add_param_group(group)
    foreign.extend(others, like, lr_scale)
    if others:
        group["lr"] = foreign.current_lr(ref, lr_scale, others, len(optimizer.param_groups) - 1)
    for s in own:
        s.refresh()
    foreign.sync_last_lr(optimizer, others)
    return len(optimizer.param_groups) - 1


def scale_group_lr(
    optimizer: Optimizer, index: int, factor: float, *, schedulers: Sequence[Any] = ()
) -> None:
    """Multiply group ``index``'s whole LR schedule by ``factor`` (its current LR moves to that schedule's value).

    Examples:
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
    own, others = _own(attached), [s for s in attached if s not in _own(attached)]
    for s in others:
        foreign.check_supported(s)
    old = dict(group)
    for key in LR_KEYS[1:]:
        if key in group and isinstance(group[key], (int, float, torch.Tensor)):
            group[key] = group[key] * factor
    if "lr_multiplier" in group:
        group["lr_multiplier"] = float(group["lr_multiplier"]) * factor
    foreign.scale(others, index, factor)
    group["lr"] = foreign.current_lr(old, factor, others, index) if others else old["lr"] * factor
    for s in own:
        s.refresh()
    foreign.sync_last_lr(optimizer, others)
