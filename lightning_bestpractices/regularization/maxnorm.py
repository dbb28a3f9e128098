"""Max-norm: after every real optimizer step, each unit's incoming weight vector has L2 norm <= ``max_norm``.

A unit is a row of a ``Linear`` weight ``(out, in)``, or one output channel of a ``ConvNd`` weight
``(out, in / groups, *kernel)`` taken over all of dims 1.. (the whole kernel of that channel). The rescaling is
``torch.renorm(w, p=2, dim=0, maxnorm=r)``: units already inside the ball are left untouched, the others are
scaled onto it.

What :class:`MaxNorm` adds over calling ``renorm_`` after ``optimizer.step()`` in a hand-written loop: it attaches
itself with torch's public ``Optimizer.register_step_post_hook``, so it runs after exactly the steps that
happened. Under gradient accumulation ``optimizer.step`` runs only at the accumulation boundary, so nothing
happens between micro-batches; when the AMP grad scaler skips a step (inf/NaN gradients) ``scaler.step`` does not
call ``optimizer.step`` at all, so the post-hook does not run either. Both hold by construction, without reading
Lightning's loop state.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lightning_bestpractices.errors import ArgumentError

__all__ = ["DEFAULT_MAX_NORM_TYPES", "check_max_norm", "max_norm_targets", "unit_norms", "max_norm_"]

#: Layer types whose ``weight`` is constrained by default (dim 0 = output unit). ``ConvTranspose`` is not here:
#: its weight is ``(in, out / groups, *kernel)``, so dim 0 is not the output unit.
DEFAULT_MAX_NORM_TYPES: tuple[type, ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def check_max_norm(max_norm: float) -> None:
    """Raise ``ValueError`` naming the argument unless ``max_norm`` is a finite number > 0."""
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float)) or not 0 < max_norm < float("inf"):
        raise ArgumentError(f"`max_norm` must be a finite number > 0, got {max_norm!r}")


def max_norm_targets(
    module: nn.Module, types: Sequence[type] = DEFAULT_MAX_NORM_TYPES, names: Sequence[str] | None = None
) -> list[tuple[str, Tensor]]:
    """``(qualified weight name, weight)`` of every layer to constrain: by ``names`` (module names) or by ``types``.

    Examples:
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4, 2), nn.BatchNorm1d(2))
        >>> [n for n, _ in max_norm_targets(net)]
        ['0.weight', '2.weight']
    """
    modules = dict(module.named_modules())
    if names is not None:
        missing = [n for n in names if n not in modules]
        if missing:
            raise ArgumentError(f"`names` {missing!r} match no submodule of {type(module).__name__}")
        chosen = [(n, modules[n]) for n in names]
    else:
        chosen = [(n, m) for n, m in modules.items() if isinstance(m, tuple(types))]
    out = []
    for n, m in chosen:
        w = getattr(m, "weight_orig", None)  # a pruned layer (torch.nn.utils.prune): the parameter is weight_orig
        if w is None:
            w = getattr(m, "weight", None)
        if not isinstance(w, Tensor) or w.dim() < 2:
            raise ArgumentError(f"`names` entry {n!r} has no weight of at least 2 dims to constrain")
        out.append((f"{n}.weight" if n else "weight", w))
    return out


def unit_norms(weight: Tensor) -> Tensor:
    """L2 norm of each unit's incoming weights: over dims 1.., one value per index of dim 0.

    Examples:
        >>> unit_norms(torch.tensor([[3.0, 4.0], [0.0, 1.0]]))
        tensor([5., 1.])
    """
    return weight.detach().flatten(1).norm(dim=1)


@torch.no_grad()
def max_norm_(weights: Sequence[Tensor], max_norm: float) -> None:
    """Rescale, in place, every unit (index of dim 0) of each weight whose incoming L2 norm exceeds ``max_norm``.

    Examples:
        >>> w = torch.tensor([[3.0, 4.0], [0.3, 0.4]])
        >>> max_norm_([w], 1.0)
        >>> [round(v, 6) for v in unit_norms(w).tolist()]
        [1.0, 0.5]
    """
    check_max_norm(max_norm)
    for w in weights:
        w.renorm_(2, 0, max_norm)
