"""The registry of stochastic modules: which classes MC dropout switches on, how, and what their drop rate is.

What this adds over ``module.train()`` on every ``nn.Dropout`` (the usual MC-dropout recipe): only the registered
dropout family is switched on (everything else, BatchNorm included, stays in eval, see ``mode.py``), each with a
seeded forward (``seeded.py``) that draws its mask from a counter-based RNG (``rng.py``), and every module's drop
rate is checked before any pass (a ``p`` set outside [0, 1] after construction is refused).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from lightning_bestpractices.errors import ArgumentError

from .rng import RowRandom
from .seeded import BUILT_IN_FORWARDS

__all__ = [
    "register_stochastic",
    "unregister_stochastic",
    "stochastic_registry",
    "stochastic_rate",
    "find_stochastic_modules",
    "check_rates",
]

SeededForward = Callable[[nn.Module, Tensor, RowRandom], Tensor]
RateOf = Callable[[nn.Module], "float | None"]


def _default_rate(module: nn.Module) -> float | None:
    return getattr(module, "p", None)


@dataclass(frozen=True)
class _Entry:
    forward: SeededForward | None
    rate: RateOf


_REGISTRY: dict[type, _Entry] = {cls: _Entry(fwd, _default_rate) for cls, fwd in BUILT_IN_FORWARDS.items()}


def register_stochastic(
    cls: type, forward: SeededForward | None = None, *, rate: RateOf | None = None
) -> type:
    """Add ``cls`` to the modules that MC dropout switches on (usable as a class decorator).

    ``forward(module, x, rng)`` is the seeded forward used during MC passes; draw randomness from ``rng``
    (a :class:`RowRandom`) so masks are reproducible per input and sample. With ``forward=None`` the class's own
    ``mc_forward(x, rng)`` method is used if it has one, else the module is simply put in train mode and draws
    from the global RNG (then results depend on batch and chunk sizes; a warning says so once).

    ``rate(module)`` returns the module's drop probability, which MC dropout checks lies in [0, 1] before any pass
    (a rate set after construction, e.g. while tuning a loaded model, is otherwise never validated). The default
    reads ``module.p`` when the module has that attribute and checks nothing when it has not; a class that keeps
    its rate elsewhere says where, e.g. ``register_stochastic(MyDrop, rate=lambda m: m.drop_prob)``. Return
    ``None`` for "no single rate to check".

    Registering a class again replaces its entry. Example:
        >>> class MyDrop(nn.Module):
        ...     def __init__(self, p=0.5):
        ...         super().__init__()
        ...         self.p = p
        ...     def mc_forward(self, x, rng):
        ...         return x * rng.keep_mask(x.shape[1:], self.p, x.dtype) / (1 - self.p)
        >>> _ = register_stochastic(MyDrop)
        >>> MyDrop in stochastic_registry(), stochastic_rate(MyDrop(0.2))
        (True, 0.2)
        >>> unregister_stochastic(MyDrop)
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ArgumentError(f"`cls` must be an nn.Module subclass, got {cls!r}")
    if forward is not None and not callable(forward):
        raise ArgumentError(f"`forward` must be callable or None, got {forward!r}")
    if rate is not None and not callable(rate):
        raise ArgumentError(f"`rate` must be callable (module -> drop probability) or None, got {rate!r}")
    _REGISTRY[cls] = _Entry(forward, rate or _default_rate)
    return cls


def unregister_stochastic(cls: type) -> None:
    """Remove a class added with :func:`register_stochastic`."""
    if cls not in _REGISTRY:
        raise KeyError(f"`cls` {cls!r} is not registered")
    del _REGISTRY[cls]


def stochastic_registry() -> dict[type, SeededForward | None]:
    """A copy of the registry: class -> seeded forward (``None``: ``mc_forward`` or train mode, global RNG)."""
    return {cls: entry.forward for cls, entry in _REGISTRY.items()}


def _entry_for(module: nn.Module) -> _Entry | None:
    for cls in type(module).__mro__:
        if cls in _REGISTRY:
            return _REGISTRY[cls]
    return None


def _spec_for(module: nn.Module) -> tuple[bool, SeededForward | None]:
    entry = _entry_for(module)
    if entry is None:
        return False, None
    if entry.forward is None and hasattr(module, "mc_forward"):
        return True, lambda m, x, r: m.mc_forward(x, r)
    return True, entry.forward


def is_stochastic(module: nn.Module) -> bool:
    return _entry_for(module) is not None


def stochastic_rate(module: nn.Module) -> float | None:
    """The drop probability of a registered module as its registry entry reads it (``None``: not known)."""
    entry = _entry_for(module)
    if entry is None:
        raise KeyError(f"{type(module).__name__} is not a registered stochastic module")
    return entry.rate(module)


def check_rates(modules: list[tuple[str, nn.Module]]) -> None:
    """Raise ``ValueError`` naming the module and the value if a drop probability is not a number in [0, 1].

    Examples:
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
        >>> net[1].p = 1.5
        >>> check_rates(find_stochastic_modules(net))
        Traceback (most recent call last):
        ...
        lightning_bestpractices.errors.ArgumentError: dropout module '1' (Dropout) has drop probability p=1.5, outside [0, 1]
    """
    for name, module in modules:
        p = stochastic_rate(module)
        if p is None:
            continue
        try:
            value = float(p)
        except (TypeError, ValueError):
            raise ArgumentError(
                f"dropout module {name!r} ({type(module).__name__}) has a drop probability that is not a number: "
                f"{p!r}"
            ) from None
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise ArgumentError(
                f"dropout module {name!r} ({type(module).__name__}) has drop probability p={p!r}, outside [0, 1]"
            )


def find_stochastic_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(qualified name, module)`` of every dropout-family module, in ``model.modules()`` order.

    Examples:
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.1), nn.BatchNorm1d(4), nn.AlphaDropout(0.2))
        >>> [name for name, _ in find_stochastic_modules(net)]
        ['1', '3']
    """
    return [(n, m) for n, m in model.named_modules() if is_stochastic(m)]
