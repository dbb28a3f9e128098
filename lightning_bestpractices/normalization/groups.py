"""Which parameters get weight decay: the norm-type registry, :func:`no_decay_parameters`, :func:`param_groups`.

What this adds over writing the two groups by hand: exclusion is decided by *module type* (every registered
norm class, see :data:`NORM_TYPES` / :func:`register_norm`) and by *parameter identity* (shared/tied parameters
are counted once), never by value or by a substring of the name; it also honours a ``no_weight_decay()`` method
(the timm convention) on the model or any submodule, and it rejects ``skip`` names that match nothing (a typo
would otherwise silently decay a parameter).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable

from torch import nn

from lightning_bestpractices.errors import ArgumentError

from .frozen import FrozenBatchNorm

__all__ = ["NORM_TYPES", "register_norm", "unregister_norm", "norm_types", "is_norm", "no_decay_parameters",
           "param_groups"]

#: Built-in normalization classes (subclasses count too). :func:`register_norm` appends to this attribute, so
#: read it as ``normalization.NORM_TYPES`` (a ``from ... import NORM_TYPES`` is a snapshot) or call :func:`is_norm`.
#: ``LocalResponseNorm`` is left out on purpose: it has no parameters and no statistics.
NORM_TYPES: tuple[type, ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.LazyBatchNorm1d,
    nn.LazyBatchNorm2d,
    nn.LazyBatchNorm3d,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LazyInstanceNorm1d,
    nn.LazyInstanceNorm2d,
    nn.LazyInstanceNorm3d,
    nn.RMSNorm,
    FrozenBatchNorm,
)
_BUILTIN_NORMS = NORM_TYPES


def register_norm(cls: type) -> type:
    """Register a user normalization class: its parameters are then never weight-decayed. Usable as decorator.

    Examples:
        >>> import torch
        >>> @register_norm
        ... class ScaleNorm(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.g = nn.Parameter(torch.ones(1))
        >>> is_norm(ScaleNorm())
        True
    """
    global NORM_TYPES
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ArgumentError(f"`cls` must be an nn.Module subclass, got {cls!r}")
    if cls not in NORM_TYPES:
        NORM_TYPES = (*NORM_TYPES, cls)
        _sync_package_attr()
    return cls


def unregister_norm(cls: type) -> None:
    """Undo :func:`register_norm` (tests restore what they register). Built-in classes cannot be removed.

    Examples:
        >>> class Gain(nn.Module):
        ...     pass
        >>> _ = register_norm(Gain)
        >>> unregister_norm(Gain)
        >>> is_norm(Gain())
        False
    """
    global NORM_TYPES
    if cls in _BUILTIN_NORMS:
        raise ArgumentError(f"`cls` {cls!r} is a built-in norm type and cannot be unregistered")
    if cls not in NORM_TYPES:
        raise KeyError(f"`cls` {cls!r} is not registered")
    NORM_TYPES = tuple(c for c in NORM_TYPES if c is not cls)
    _sync_package_attr()


def _sync_package_attr() -> None:
    """Keep the re-export ``normalization.NORM_TYPES`` current as well."""
    import sys

    pkg = sys.modules.get(__name__.rsplit(".", 1)[0])
    if pkg is not None:
        pkg.NORM_TYPES = NORM_TYPES


def norm_types() -> tuple[type, ...]:
    """The current norm classes: built-ins plus everything registered with :func:`register_norm`."""
    return NORM_TYPES


def is_norm(module: nn.Module) -> bool:
    """Whether ``module`` is an instance of a built-in or registered normalization class."""
    return isinstance(module, NORM_TYPES)


def _is_bias(owner: nn.Module, leaf: str) -> bool:
    if leaf == "bias":
        return True
    if isinstance(owner, nn.RNNBase):  # bias_ih_l0, bias_hh_l0_reverse, ...
        return leaf.startswith("bias_")
    if isinstance(owner, nn.MultiheadAttention):
        return leaf in ("in_proj_bias", "bias_k", "bias_v")
    return False


def _model_skip_names(module: nn.Module) -> set[str]:
    names: set[str] = set()
    for mod_name, mod in module.named_modules():
        fn = getattr(mod, "no_weight_decay", None)
        if callable(fn):
            for n in fn():
                names.add(f"{mod_name}.{n}" if mod_name else str(n))
    return names


def _matches(name: str, pattern: str) -> bool:
    return name == pattern or name.startswith(pattern + ".")


def no_decay_parameters(module: nn.Module, *, skip: Iterable[str] = ()) -> set[int]:
    """``id()`` of every parameter of ``module`` that must not be weight-decayed.

    Excluded: all parameters owned directly by a norm module (:func:`is_norm`), all biases (a parameter registered
    as ``bias``; ``bias_*`` of RNNs; ``in_proj_bias``/``bias_k``/``bias_v`` of ``MultiheadAttention``), the
    parameters named in ``skip``, and those named by a ``no_weight_decay()`` method on ``module`` or a submodule
    (names relative to that submodule). A name also matches everything below it (``"encoder"`` covers
    ``"encoder.pos_embed"``).

    Raises:
        lightning_bestpractices.errors.ArgumentError: if a name in ``skip`` matches no parameter.

    Examples:
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.LayerNorm(3))
        >>> ids = no_decay_parameters(net)
        >>> sorted(n for n, p in net.named_parameters() if id(p) in ids)
        ['0.bias', '1.bias', '1.weight']
    """
    if not isinstance(module, nn.Module):
        raise ArgumentError(f"`module` must be an nn.Module, got {type(module).__name__}")
    if isinstance(skip, str):
        skip = (skip,)
    skip = tuple(skip)
    names = {n: p for n, p in module.named_parameters()}
    for s in skip:
        if not any(_matches(n, s) for n in names):
            raise ArgumentError(f"`skip` name {s!r} matches no parameter of {type(module).__name__}")
    model_names = _model_skip_names(module)
    for s in sorted(model_names):
        if not any(_matches(n, s) for n in names):
            warnings.warn(f"no_weight_decay() name {s!r} matches no parameter; ignored", stacklevel=2)

    excluded: set[int] = set()
    for mod in module.modules():
        for leaf, p in mod.named_parameters(recurse=False):
            if is_norm(mod) or _is_bias(mod, leaf):
                excluded.add(id(p))
    for n, p in names.items():
        if any(_matches(n, s) for s in (*skip, *model_names)):
            excluded.add(id(p))
    return excluded


def param_groups(
    module: nn.Module, weight_decay: float, *, skip: Iterable[str] = (), prefix: str = ""
) -> list[dict]:
    """Two named optimizer parameter groups: ``f"{prefix}decay"`` and ``f"{prefix}no_decay"`` (weight decay 0).

    Which parameters go to ``no_decay`` is decided by :func:`no_decay_parameters`. Frozen parameters
    (``requires_grad=False``) are included too, so that unfreezing later needs no regrouping (the optimizer skips
    parameters whose ``.grad`` is ``None``). Empty groups are dropped. Each group carries a ``"name"`` key so LR/WD
    monitors can show it. Shared parameters appear once.

    Raises:
        lightning_bestpractices.errors.ArgumentError: if ``weight_decay`` is negative or not finite, or a ``skip`` name matches nothing.

    Examples:
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Linear(3, 1))
        >>> [(g["name"], len(g["params"]), g["weight_decay"]) for g in param_groups(net, 0.05)]
        [('decay', 2, 0.05), ('no_decay', 4, 0.0)]
    """
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)):
        raise ArgumentError(f"`weight_decay` must be a number >= 0, got {weight_decay!r}")
    if not math.isfinite(weight_decay) or weight_decay < 0:
        raise ArgumentError(f"`weight_decay` must be a finite number >= 0, got {weight_decay!r}")
    if not isinstance(prefix, str):
        raise ArgumentError(f"`prefix` must be a str, got {prefix!r}")
    excluded = no_decay_parameters(module, skip=skip)
    decay, no_decay = [], []
    for _, p in module.named_parameters():
        (no_decay if id(p) in excluded else decay).append(p)
    groups = [
        {"name": f"{prefix}decay", "params": decay, "weight_decay": float(weight_decay)},
        {"name": f"{prefix}no_decay", "params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]
