"""Adapters for a user's own torch LR schedulers, class by class, so a parameter group can join mid-training.

The package's :class:`~lightning_bestpractices.optim.schedule.Schedule` keeps every per-group fact in the param
group, so a joining group needs nothing from it. torch's schedulers keep per-group lists on the scheduler object
(``base_lrs``, ``LambdaLR.lr_lambdas``, ``CyclicLR.max_lrs``, ``ReduceLROnPlateau.min_lrs``, ...) that a group
added with ``optimizer.add_param_group`` is missing from: the scheduler then crashes (LambdaLR, CyclicLR,
ReduceLROnPlateau with per-group ``min_lr``) or leaves the new group at a constant LR (chainable schedulers). This
module knows, for each supported class, which lists those are and whether they scale with the group's LR
(:data:`SUPPORTED`); :func:`extend` appends the new group's entries, :func:`scale` multiplies one group's.

A scheduler class that is not listed is refused with an error that names it (its per-group state is unknown, and
guessing would make the new group's LR silently wrong). Container schedulers (``SequentialLR``,
``ChainedScheduler``) are walked into; their children are read through
:func:`lightning_bestpractices._compat.scheduler_children`.

The current LR of a new group is derived from the reference group: for every supported schedule the LR is affine
in the group's LR quantities, ``lr(t) = floor + (base - floor) * m(t)``, where ``floor`` is the shared ``eta_min``
of a cosine schedule (0 otherwise), so ``m(t)`` is read off the reference group. ReduceLROnPlateau: the new group
joins at the reference LR times ``lr_scale``, but not below its own floor. That is exact except for
``lr_scale > 1`` with a shared ``min_lr`` once the reference group has reached it (torch keeps no count of
reductions to recover the unclamped LR).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from typing import Any

from torch.optim import lr_scheduler as S

from lightning_bestpractices.errors import ArgumentError

from .. import _compat

__all__ = ["SUPPORTED", "supported", "check_supported", "walk", "extend", "scale", "current_lr", "sync_last_lr"]

_SCALED, _COPIED = "scaled", "copied"

#: scheduler class -> {per-group list attribute: "scaled" (an LR, times the group's scale) or "copied"}
SUPPORTED: dict[type, dict[str, str]] = {
    S.LambdaLR: {"base_lrs": _SCALED, "lr_lambdas": _COPIED},
    S.MultiplicativeLR: {"base_lrs": _SCALED, "lr_lambdas": _COPIED},
    S.StepLR: {"base_lrs": _SCALED},
    S.MultiStepLR: {"base_lrs": _SCALED},
    S.ConstantLR: {"base_lrs": _SCALED},
    S.LinearLR: {"base_lrs": _SCALED},
    S.ExponentialLR: {"base_lrs": _SCALED},
    S.PolynomialLR: {"base_lrs": _SCALED},
    S.CosineAnnealingLR: {"base_lrs": _SCALED},
    S.CosineAnnealingWarmRestarts: {"base_lrs": _SCALED},
    S.CyclicLR: {"base_lrs": _SCALED, "max_lrs": _SCALED, "base_momentums": _COPIED, "max_momentums": _COPIED},
    S.OneCycleLR: {"base_lrs": _SCALED},  # its other per-group values are keys of the param group
    S.SequentialLR: {},  # children are walked
    S.ChainedScheduler: {},
    S.ReduceLROnPlateau: {"min_lrs": "floor"},  # scaled only when the floors were given per group
}


def supported() -> list[str]:
    """Names of the torch scheduler classes this module supports.

    Examples:
        >>> "OneCycleLR" in supported() and "CosineAnnealingWarmRestarts" in supported()
        True
    """
    return sorted(c.__name__ for c in SUPPORTED)


def _is_own(scheduler: Any) -> bool:
    from lightning_bestpractices.optim.schedule import Schedule

    return isinstance(scheduler, Schedule)


def check_supported(scheduler: Any) -> None:
    """Raise a ``ValueError`` naming the class if ``scheduler`` (or a child of it) is not supported."""
    for s in walk([scheduler]):
        if not _is_own(s) and type(s) not in SUPPORTED:
            raise ArgumentError(
                f"gradual unfreezing cannot add parameter groups to a {type(s).__name__} scheduler: its per-group "
                f"state is unknown. Supported: the package's Schedule (lightning_bestpractices.optim) and torch's "
                f"{supported()}"
            )


def walk(schedulers: Iterable[Any]) -> list[Any]:
    """The schedulers and, depth first, the children of container schedulers."""
    out = []
    for s in schedulers:
        out.append(s)
        out += walk(_compat.scheduler_children(s))
    return out


def _lists(scheduler: Any) -> dict[str, str]:
    if _is_own(scheduler):
        return {}
    check_supported(scheduler)
    lists = dict(SUPPORTED[type(scheduler)])
    if "min_lrs" in lists:  # per-group floors (e.g. scaled by LR multipliers) scale; one shared value is copied
        lists["min_lrs"] = _SCALED if getattr(scheduler, "default_min_lr", 0.0) is None else _COPIED
    return lists


def extend(schedulers: Sequence[Any], like: int, factor: float) -> None:
    """Append the entries of a group cloned from group ``like`` (LRs times ``factor``) to every per-group list."""
    for s in walk(schedulers):
        for key, how in _lists(s).items():
            values = getattr(s, key)
            values.append(values[like] * factor if how == _SCALED else values[like])


def scale(schedulers: Sequence[Any], index: int, factor: float) -> None:
    """Multiply group ``index``'s entries of every LR list by ``factor``."""
    for s in walk(schedulers):
        for key, how in _lists(s).items():
            if how == _SCALED:
                getattr(s, key)[index] = getattr(s, key)[index] * factor


def _active_floor(schedulers: Sequence[Any]) -> float:
    """The additive floor (``eta_min``) of the schedule currently driving the LRs, 0 if it has none."""
    for s in schedulers:
        leaf = s
        while _compat.scheduler_children(leaf):
            kids = _compat.scheduler_children(leaf)
            if isinstance(leaf, S.SequentialLR):
                leaf = kids[bisect_right(_compat.sequential_milestones(leaf), leaf.last_epoch)]
            else:
                leaf = kids[-1]
        floor = getattr(leaf, "eta_min", 0.0)
        if isinstance(floor, (int, float)) and floor:
            return float(floor)
    return 0.0


def _affine(lr: float, base: float, new_base: float, floor: float) -> float:
    """LR of a group whose base is ``new_base``, given a group at ``lr`` with base ``base`` on the same schedule."""
    if base == floor:
        return lr * (new_base / base) if base else new_base
    return floor + (lr - floor) * (new_base - floor) / (base - floor)


def current_lr(ref: dict, factor: float, schedulers: Sequence[Any], index: int) -> float:
    """The LR now of group ``index``, a clone of the group ``ref`` with every LR quantity times ``factor``."""
    lr = float(ref["lr"])
    if all(isinstance(s, S.ReduceLROnPlateau) for s in schedulers):
        # Every reduction multiplies each group by `factor` and clamps it at the group's own floor, so the new group
        # is at max(reference * scale, its floor). Exact unless the reference already sits at a *shared* floor and
        # scale > 1: torch keeps no reduction count to tell how far below the floor the unclamped value is.
        floor = max(float(s.min_lrs[index]) for s in schedulers)
        return max(lr * factor, floor)
    base = float(ref.get("initial_lr", lr))
    return _affine(lr, base, base * factor, _active_floor(schedulers))


def sync_last_lr(optimizer: Any, schedulers: Sequence[Any]) -> None:
    """Make every scheduler's ``get_last_lr()`` agree with the optimizer's groups again."""
    lrs = [g["lr"] for g in optimizer.param_groups]
    for s in walk(schedulers):
        if not _is_own(s):
            _compat.set_last_lr(s, lrs)
