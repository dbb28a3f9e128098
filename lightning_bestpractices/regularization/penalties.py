"""L1, L2 and elastic-net weight penalties: a functional core and the :class:`WeightPenalty` callback.

The penalty is ``strength * (l1_ratio * sum|w| + (1 - l1_ratio) * sum w**2)`` over the selected parameters:
``l1_ratio=1`` is L1 (lasso, drives weights to exactly zero), ``0`` is L2 (ridge), in between is elastic net.
By default the selected parameters are the decay group of the package's one no-decay grouping
(:func:`lightning_bestpractices.normalization.no_decay_parameters`): weights of Linear/Conv/embedding layers, not
biases or norm parameters.

What this adds over writing ``loss = loss + lam * sum(p.abs().sum() for p in params)`` in ``training_step``: the
callback needs no change to the user's module or loss, and instead of building an autograd graph for the penalty
it adds the penalty's exact (sub)gradient ``strength * (l1_ratio * sign(w) + 2 * (1 - l1_ratio) * w)`` to ``.grad``
once per optimizer step, in a few fused ``foreach`` kernels with no host sync. That is the gradient of
``mean micro-batch loss + penalty`` under gradient accumulation, it is added after AMP unscaling and after DDP's
all-reduce (parameters are identical on every rank, so every rank adds the same term), and before gradient
clipping, exactly where a penalty in the loss would have put it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from lightning_bestpractices._compat import foreach_add_, foreach_sign
from lightning_bestpractices.errors import ArgumentError

__all__ = ["check_penalty_args", "decay_parameters", "weight_penalty", "add_penalty_grad_"]


def check_penalty_args(strength: float, l1_ratio: float) -> None:
    """Raise ``ValueError`` naming the argument when ``strength < 0`` or ``l1_ratio`` is outside ``[0, 1]``."""
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not strength >= 0:
        raise ArgumentError(f"`strength` must be a number >= 0, got {strength!r}")
    if isinstance(l1_ratio, bool) or not isinstance(l1_ratio, (int, float)) or not 0 <= l1_ratio <= 1:
        raise ArgumentError(f"`l1_ratio` must be in [0, 1], got {l1_ratio!r}")


def decay_parameters(module: nn.Module, *, skip: Iterable[str] = ()) -> list[nn.Parameter]:
    """Trainable parameters of ``module`` that get weight decay: not in ``no_decay_parameters(module, skip=skip)``.

    Shared parameters are listed once, in ``named_parameters`` order.

    Examples:
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Linear(3, 1))
        >>> [tuple(p.shape) for p in decay_parameters(net)]
        [(3, 2), (1, 3)]
    """
    from lightning_bestpractices.normalization import no_decay_parameters

    excluded = no_decay_parameters(module, skip=skip)
    return [p for p in module.parameters() if p.requires_grad and id(p) not in excluded]


def weight_penalty(params: Iterable[Tensor], strength: float, l1_ratio: float = 1.0) -> Tensor:
    """The penalty value ``strength * (l1_ratio * sum|w| + (1 - l1_ratio) * sum w**2)`` as a 0-dim fp32 tensor.

    Differentiable: add it to a loss in a plain training loop.

    Examples:
        >>> w = torch.tensor([[1.0, -2.0], [0.0, 3.0]])
        >>> float(weight_penalty([w], 0.5, l1_ratio=1.0)), float(weight_penalty([w], 0.5, l1_ratio=0.0))
        (3.0, 7.0)
    """
    check_penalty_args(strength, l1_ratio)
    params = list(params)
    total = torch.zeros((), dtype=torch.float32, device=params[0].device if params else None)
    for p in params:
        w = p.float()
        if l1_ratio > 0:
            total = total + l1_ratio * w.abs().sum()
        if l1_ratio < 1:
            total = total + (1 - l1_ratio) * w.pow(2).sum()
    return total * strength


def add_penalty_grad_(params: Sequence[Tensor], strength: float, l1_ratio: float = 1.0) -> int:
    """Add the penalty's (sub)gradient to ``p.grad`` of every parameter in ``params`` that has a gradient.

    Parameters whose ``.grad`` is ``None`` (unused this step, frozen, or dropped by a step-skipping guard) are left
    alone, so a skipped step stays skipped. ``sign(0) = 0`` is the L1 subgradient used at exactly zero weights.
    Returns how many parameters were touched. No host sync.

    Examples:
        >>> w = nn.Parameter(torch.tensor([1.0, -2.0, 0.0]))
        >>> w.grad = torch.zeros(3)
        >>> add_penalty_grad_([w], 0.1, l1_ratio=0.5)
        1
        >>> w.grad
        tensor([ 0.1500, -0.2500,  0.0000])
    """
    check_penalty_args(strength, l1_ratio)
    pairs = [(p, p.grad) for p in params if p.grad is not None]
    if not pairs or strength == 0:
        return len(pairs)
    weights = [p.detach() for p, _ in pairs]
    grads = [g for _, g in pairs]
    if l1_ratio > 0:
        foreach_add_(grads, foreach_sign(weights), alpha=strength * l1_ratio)
    if l1_ratio < 1:
        foreach_add_(grads, weights, alpha=2.0 * strength * (1 - l1_ratio))
    return len(pairs)
