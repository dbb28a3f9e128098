"""How sparse a model is: the fraction of (effective) weights with ``|w| < threshold``.

Pruning itself is Lightning's ``ModelPruning`` callback (on ``torch.nn.utils.prune``); combine it with
:class:`~lightning_bestpractices.regularization.WeightPenalty` (``l1_ratio=1``), which drives the weights pruning
would remove towards zero first, so removing them costs less accuracy. What :func:`sparsity` adds over counting
zeros in ``model.parameters()``: during pruning the parameter is ``weight_orig`` (unmasked) and the weight the
layer uses is ``weight_orig * weight_mask``; this counts the weight the layer uses.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from lightning_bestpractices.errors import ArgumentError

__all__ = ["effective_weights", "sparsity"]


def effective_weights(module: nn.Module, *, skip: Iterable[str] = ()) -> list[tuple[str, torch.Tensor]]:
    """``(name, tensor the layer computes with)`` for every parameter in the decay group of ``module``.

    A pruned parameter ``<name>_orig`` is reported as the masked ``<name>``.

    Examples:
        >>> import torch.nn.utils.prune as prune
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> _ = prune.l1_unstructured(net[0], "weight", amount=0.5)
        >>> [n for n, _ in effective_weights(net)]
        ['0.weight', '2.weight']
    """
    from lightning_bestpractices.normalization import no_decay_parameters

    excluded = no_decay_parameters(module, skip=skip)
    out = []
    for mod_name, mod in module.named_modules():
        for p_name, p in mod.named_parameters(recurse=False):
            if id(p) in excluded:
                continue
            base = p_name[: -len("_orig")] if p_name.endswith("_orig") else p_name
            tensor = getattr(mod, base) if base != p_name and hasattr(mod, base + "_mask") else p
            out.append((f"{mod_name}.{base}" if mod_name else base, tensor.detach()))
    return out


def sparsity(module: nn.Module, threshold: float = 1e-3, *, skip: Iterable[str] = ()) -> float:
    """Fraction of the decay-group weights of ``module`` (biases and norm parameters excluded) with ``|w| < threshold``.

    Examples:
        >>> lin = nn.Linear(4, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = lin.weight.copy_(torch.tensor([[0.0, 1e-4, 0.5, -2.0]]))
        >>> sparsity(lin)
        0.5
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold > 0:
        raise ArgumentError(f"`threshold` must be a number > 0, got {threshold!r}")
    weights = [w for _, w in effective_weights(module, skip=skip)]
    if not weights:
        raise ArgumentError(f"{type(module).__name__} has no decay-group weights to measure")
    small = sum(int((w.abs() < threshold).sum()) for w in weights)
    return small / sum(w.numel() for w in weights)
