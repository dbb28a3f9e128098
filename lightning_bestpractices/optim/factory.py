"""Create an optimizer by name or class, with no-decay parameter groups and per-group LR multipliers.

A listable registry in the style of timm's ``create_optimizer``: :func:`list_optimizers` gives the names, tests
are parametrised over it. Every optimizer is torch's own except ``lamb`` (torch has none, see
:mod:`~lightning_bestpractices.optim.lamb`).

What :func:`create_optimizer` adds over calling the class: parameter groups come from
:func:`lightning_bestpractices.normalization.param_groups` (no weight decay on biases and normalization
parameters), every group carries a ``"name"`` (for LR/WD logging) and an ``"lr_multiplier"``, and the group's
``lr`` is ``lr * lr_multiplier`` -- schedules built by :mod:`~lightning_bestpractices.optim.schedules` keep those
ratios at every step (discriminative learning rates).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from lightning_bestpractices.errors import ArgumentError

from .lamb import Lamb

__all__ = ["OPTIMIZERS", "OptimizerEntry", "create_optimizer", "list_optimizers", "build_param_groups"]


@dataclass(frozen=True)
class OptimizerEntry:
    """A registry entry: the optimizer class, default keyword arguments and a one-line note."""

    cls: type[Optimizer]
    defaults: dict[str, Any] = field(default_factory=dict)
    note: str = ""


OPTIMIZERS: dict[str, OptimizerEntry] = {
    "sgd": OptimizerEntry(torch.optim.SGD, {}, "plain SGD"),
    "momentum": OptimizerEntry(torch.optim.SGD, {"momentum": 0.9}, "SGD with heavy-ball momentum 0.9"),
    "nesterov": OptimizerEntry(
        torch.optim.SGD, {"momentum": 0.9, "nesterov": True}, "SGD with Nesterov momentum"
    ),
    "adagrad": OptimizerEntry(torch.optim.Adagrad, {}, "per-coordinate LR from the sum of squared gradients"),
    "rmsprop": OptimizerEntry(torch.optim.RMSprop, {}, "LR scaled by a running RMS of gradients"),
    "adam": OptimizerEntry(
        torch.optim.Adam, {}, "momentum + RMSprop with bias correction; L2 in the gradient"
    ),
    "adamw": OptimizerEntry(torch.optim.AdamW, {}, "Adam with decoupled weight decay"),
    "nadam": OptimizerEntry(torch.optim.NAdam, {}, "Adam with Nesterov momentum"),
    "adamax": OptimizerEntry(torch.optim.Adamax, {}, "Adam with an infinity-norm second moment"),
    "radam": OptimizerEntry(torch.optim.RAdam, {}, "Adam with a rectified warmup of the adaptive term"),
    "lamb": OptimizerEntry(Lamb, {}, "Adam moments with a layer-wise trust ratio (large batches)"),
}


def list_optimizers() -> list[str]:
    """Names accepted by :func:`create_optimizer`.

    Examples:
        >>> list_optimizers()
        ['adagrad', 'adam', 'adamax', 'adamw', 'lamb', 'momentum', 'nadam', 'nesterov', 'radam', 'rmsprop', 'sgd']
    """
    return sorted(OPTIMIZERS)


def _check_number(name: str, value: Any, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ArgumentError(f"`{name}` must be a finite number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ArgumentError(f"`{name}` must be {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


def build_param_groups(
    model: nn.Module,
    weight_decay: float,
    *,
    lr_multipliers: Mapping[str, float] | None = None,
    no_decay_skip: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """Named decay/no-decay groups, one pair per LR-multiplier prefix (submodule name) plus one for the rest.

    ``lr_multipliers={"backbone": 0.1}`` puts every parameter under ``model.backbone`` in groups
    ``backbone.decay`` / ``backbone.no_decay`` with ``lr_multiplier`` 0.1; the remaining parameters get 1.0.
    Longer prefixes win (``{"a": 0.1, "a.b": 0.5}``). ``no_decay_skip`` is passed to
    :func:`~lightning_bestpractices.normalization.param_groups` as ``skip``.

    Examples:
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Linear(3, 1))
        >>> groups = build_param_groups(net, 0.05, lr_multipliers={"0": 0.1})
        >>> [(g["name"], len(g["params"]), g["weight_decay"], g["lr_multiplier"]) for g in groups]
        [('0.decay', 1, 0.05, 0.1), ('0.no_decay', 1, 0.0, 0.1), ('decay', 1, 0.05, 1.0), ('no_decay', 3, 0.0, 1.0)]
    """
    from lightning_bestpractices.normalization import param_groups

    weight_decay = _check_number("weight_decay", weight_decay)
    multipliers = dict(lr_multipliers or {})
    for prefix, mult in multipliers.items():
        _check_number(f"lr_multipliers[{prefix!r}]", mult, positive=True)
        try:
            model.get_submodule(prefix)
        except AttributeError:
            raise ArgumentError(
                f"`lr_multipliers` key {prefix!r} is not a submodule of {type(model).__name__}"
            ) from None
    skip = tuple(no_decay_skip)
    owner: dict[int, str] = {}  # parameter id -> the longest multiplier prefix that contains it
    for prefix in sorted(multipliers, key=len):
        for p in model.get_submodule(prefix).parameters():
            owner[id(p)] = prefix
    groups: list[dict[str, Any]] = []
    for prefix, mult in multipliers.items():
        sub = model.get_submodule(prefix)
        for g in param_groups(sub, weight_decay, prefix=f"{prefix}.", skip=_skip_within(skip, prefix)):
            params = [p for p in g["params"] if owner.get(id(p)) == prefix]
            if params:
                groups.append({**g, "params": params, "lr_multiplier": float(mult)})
    for g in param_groups(model, weight_decay, skip=skip):
        params = [p for p in g["params"] if id(p) not in owner]
        if params:
            groups.append({**g, "params": params, "lr_multiplier": 1.0})
    return groups


def _skip_within(skip: tuple[str, ...], prefix: str) -> tuple[str, ...]:
    """``skip`` names relative to the submodule at ``prefix`` (names outside it are dropped)."""
    inner = tuple(s[len(prefix) + 1 :] for s in skip if s.startswith(prefix + "."))
    return inner


def create_optimizer(
    model: nn.Module | Iterable[torch.Tensor] | Iterable[dict[str, Any]],
    name: str | type[Optimizer] = "adamw",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    *,
    lr_multipliers: Mapping[str, float] | None = None,
    no_decay_skip: Iterable[str] = (),
    **kwargs: Any,
) -> Optimizer:
    """Create an optimizer by registry name or class.

    Args:
        model: a module (groups are built with :func:`build_param_groups`), or parameters, or ready groups (each
            may carry ``"name"`` and ``"lr_multiplier"``).
        name: a key of :data:`OPTIMIZERS` (see :func:`list_optimizers`) or an ``Optimizer`` subclass.
        lr: base learning rate (of groups with multiplier 1), >= 0.
        weight_decay: weight decay of the decay groups, >= 0; norm and bias parameters get 0.
        lr_multipliers: ``{submodule_prefix: multiplier}``: those groups get ``lr * multiplier``.
        no_decay_skip: passed on as ``skip`` to the no-decay grouping.
        kwargs: optimizer options (``momentum``, ``betas``, ``eps`` ...) over the registry defaults.

    Raises:
        lightning_bestpractices.errors.ArgumentError: unknown name, negative ``lr``/``weight_decay``, a non-positive multiplier, an unknown prefix.

    Examples:
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.LayerNorm(3), nn.Linear(3, 1))
        >>> opt = create_optimizer(net, "nesterov", lr=0.1, weight_decay=1e-4, lr_multipliers={"2": 0.5})
        >>> [(g["name"], g["lr"], g["weight_decay"], g["nesterov"]) for g in opt.param_groups]
        [('2.decay', 0.05, 0.0001, True), ('2.no_decay', 0.05, 0.0, True), ('decay', 0.1, 0.0001, True), ('no_decay', 0.1, 0.0, True)]
        >>> create_optimizer(net, "adamw2")
        Traceback (most recent call last):
        ...
        lightning_bestpractices.errors.ArgumentError: unknown optimizer 'adamw2'; choose one of ['adagrad', 'adam', 'adamax', 'adamw', 'lamb', 'momentum', 'nadam', 'nesterov', 'radam', 'rmsprop', 'sgd'] or pass an Optimizer class
    """
    if isinstance(name, str):
        key = name.lower()
        if key not in OPTIMIZERS:
            raise ArgumentError(
                f"unknown optimizer {name!r}; choose one of {list_optimizers()} or pass an Optimizer class"
            )
        entry = OPTIMIZERS[key]
    elif isinstance(name, type) and issubclass(name, Optimizer):
        entry = OptimizerEntry(name)
    else:
        raise ArgumentError(f"`name` must be a registry name or an Optimizer class, got {name!r}")
    lr = _check_number("lr", lr)
    weight_decay = _check_number("weight_decay", weight_decay)
    if isinstance(model, nn.Module):
        groups = build_param_groups(
            model, weight_decay, lr_multipliers=lr_multipliers, no_decay_skip=no_decay_skip
        )
    else:
        if lr_multipliers:
            raise ArgumentError(
                "`lr_multipliers` needs a module; with explicit groups set 'lr_multiplier' per group"
            )
        items = list(model)
        if not items:
            raise ArgumentError("`model` has no parameters")
        if isinstance(items[0], dict):
            groups = [dict(g) for g in items]
        else:
            groups = [{"name": "params", "params": items}]
        for i, g in enumerate(groups):
            g.setdefault("name", f"pg{i}")
            g.setdefault("weight_decay", weight_decay)
            _check_number(f"weight_decay of group {g['name']!r}", g["weight_decay"])
            g["lr_multiplier"] = _check_number(
                f"lr_multiplier of group {g['name']!r}", g.get("lr_multiplier", 1.0), positive=True
            )
    for g in groups:
        g["lr"] = lr * g["lr_multiplier"]
    options = {**entry.defaults, **kwargs}
    return entry.cls(groups, lr=lr, weight_decay=weight_decay, **options)
