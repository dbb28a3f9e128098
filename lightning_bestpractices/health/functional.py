"""Pure-torch core of the health checks: grouped gradient norms, update-to-weight ratios, non-finite detection.

No Lightning import: usable in any training loop. Everything returns tensors on the parameters' device and never
calls ``.item()``; the caller decides when (and whether) to bring a value to the host.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from lightning_bestpractices.errors import ArgumentError

__all__ = ["group_names", "grad_norm_by_group", "update_ratio_by_group", "maybe_nonfinite", "first_nonfinite"]


def _norm(tensors: Sequence[Tensor], norm_type: float) -> Tensor:
    """Norm over a list of tensors (torch's foreach kernels, one launch per device/dtype); 0 for an empty list."""
    if not tensors:
        return torch.zeros(())
    return torch.nn.utils.get_total_norm(tensors, norm_type=norm_type)


def group_names(optimizer: torch.optim.Optimizer) -> list[str]:
    """A name per param group: its ``"name"`` entry if it has one, else its index.

    Examples:
        >>> w, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(1))
        >>> group_names(torch.optim.SGD([{"params": [w], "name": "decay"}, {"params": [b]}], lr=0.1))
        ['decay', '1']
    """
    return [str(g.get("name", i)) for i, g in enumerate(optimizer.param_groups)]


def grad_norm_by_group(optimizer: torch.optim.Optimizer, norm_type: float = 2.0) -> tuple[Tensor, list[Tensor]]:
    """The total gradient norm and one norm per param group (parameters without a gradient are left out).

    The total is the norm of the per-group norms, i.e. the norm over every gradient, as
    ``torch.nn.utils.clip_grad_norm_`` computes it.

    Examples:
        >>> w = torch.nn.Parameter(torch.zeros(2)); w.grad = torch.tensor([3.0, 4.0])
        >>> b = torch.nn.Parameter(torch.zeros(1)); b.grad = torch.tensor([12.0])
        >>> total, groups = grad_norm_by_group(torch.optim.SGD([{"params": [w]}, {"params": [b]}], lr=0.1))
        >>> float(total), [float(g) for g in groups]
        (13.0, [5.0, 12.0])
    """
    per_group = [_norm([p.grad for p in g["params"] if p.grad is not None], norm_type) for g in optimizer.param_groups]
    if not per_group:
        return torch.zeros(()), []
    device = per_group[0].device
    total = _norm([t.to(device) for t in per_group], norm_type)
    return total, per_group


def update_ratio_by_group(before: Sequence[Sequence[Tensor]], after: Sequence[Sequence[Tensor]],
                          norm_type: float = 2.0) -> list[Tensor]:
    """Per group ``||w_after - w_before|| / ||w_before||``: how far one step moved the weights, relative to them.

    ``before`` and ``after`` hold, per group, the same parameters before and after the step. A group whose weights
    are all zero gets ``inf`` when it moved, 0 otherwise. A healthy ratio for SGD/Adam is often quoted near 1e-3;
    much larger means the step size dominates the weights, much smaller that the group barely learns.

    Examples:
        >>> before = [[torch.tensor([3.0, 4.0])]]
        >>> after = [[torch.tensor([3.0, 4.5])]]
        >>> [round(float(r), 6) for r in update_ratio_by_group(before, after)]
        [0.1]
    """
    if len(before) != len(after):
        raise ArgumentError(f"`before` and `after` must have one entry per group, got {len(before)} and {len(after)}")
    out = []
    for b, a in zip(before, after):
        if len(b) != len(a):
            raise ArgumentError(f"`before` and `after` must list the same parameters, got {len(b)} and {len(a)}")
        delta = _norm([y.detach().float() - x.float() for x, y in zip(b, a)], norm_type)
        weight = _norm([x.float() for x in b], norm_type)
        out.append(torch.where(weight > 0, delta / weight, torch.where(delta > 0, torch.inf, 0.0)))
    return out


def maybe_nonfinite(tensors: Iterable[Tensor | None]) -> Tensor:
    """A 0-dim bool tensor, no host sync: ``False`` proves every tensor is finite; ``True`` asks for a closer look.

    One fused norm over all tensors (``None`` entries are ignored) instead of a check per tensor. An inf or NaN
    element makes the norm inf or NaN, so ``False`` is exact. ``True`` also comes from a norm that overflows on
    finite values (squares above the float range), so confirm it with :func:`first_nonfinite` (one check per
    tensor, taken only on that rare path).

    Examples:
        >>> bool(maybe_nonfinite([torch.ones(3), None])), bool(maybe_nonfinite([torch.tensor([1.0, float("nan")])]))
        (False, True)
        >>> big = [torch.full((4,), 3e38)]  # the norm overflows, every element is finite
        >>> bool(maybe_nonfinite(big)), first_nonfinite([("big", big[0])])
        (True, None)
    """
    tensors = [t.detach() for t in tensors if t is not None]
    if not tensors:
        return torch.zeros((), dtype=torch.bool)
    return ~torch.isfinite(_norm(tensors, 2.0))


def first_nonfinite(named: Iterable[tuple[str, Tensor | None]]) -> str | None:
    """The name of the first tensor holding a NaN or an inf, or ``None`` (slow path: one check per tensor).

    Examples:
        >>> first_nonfinite([("a", torch.ones(2)), ("b", None), ("c", torch.tensor([float("inf")]))])
        'c'
    """
    for name, t in named:
        if t is not None and not bool(torch.isfinite(t.detach()).all()):
            return name
    return None
