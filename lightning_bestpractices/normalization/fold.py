"""Fold eval-mode BatchNorm into the preceding Conv/Linear for inference.

What this adds over ``torch.nn.utils.fusion`` (which does the arithmetic here) and over
``torch.fx.experimental.optimization.fuse``: the Conv -> BN pairs are found in *execution order* by running the
model once (so models that fx cannot trace, e.g. with data-dependent control flow, are folded too), a pair is
folded only when it is provably safe (the conv output feeds nothing but that BN and is never changed in place,
also not through a view or inside the layer's own ``forward``, both modules run exactly once, the weights are not
shared), and every BN that is left in place is reported with the reason. The pass is recorded by
:mod:`lightning_bestpractices.tracing`, which sees in-place ops.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.fusion import fuse_conv_bn_weights, fuse_linear_bn_weights

from lightning_bestpractices.errors import ArgumentError

from .._logging import format_table
from ..tracing import node, trace_model
from .frozen import FrozenBatchNorm

__all__ = ["fold_batchnorm", "FoldReport"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_BN = (_BatchNorm, FrozenBatchNorm)


@dataclass
class FoldReport:
    """What :func:`fold_batchnorm` did: ``folded`` ``(layer, bn)`` name pairs and ``skipped`` ``(bn, reason)``."""

    folded: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def rows(self) -> list[list[str]]:
        return [[bn, layer, "folded"] for layer, bn in self.folded] + [
            [bn, "-", f"kept: {why}"] for bn, why in self.skipped
        ]

    def __str__(self) -> str:
        head = f"fold_batchnorm: {len(self.folded)} folded, {len(self.skipped)} kept"
        return head + "\n" + format_table(["batchnorm", "into", "result"], self.rows)


def _parent(root: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent_name, _, leaf = name.rpartition(".")
    return (root.get_submodule(parent_name) if parent_name else root), leaf


def _bn_stats(
    bn: nn.Module,
) -> tuple[torch.Tensor, torch.Tensor, float, torch.Tensor | None, torch.Tensor | None]:
    return bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias


def fold_batchnorm(
    model: nn.Module, example_input: Any, *, inplace: bool = False
) -> tuple[nn.Module, FoldReport]:
    """Fold every BatchNorm that directly follows a Conv1d/2d/3d, ConvTranspose or Linear into that layer.

    The model is run once on ``example_input`` (``model(x)``, ``model(*x)`` or ``model(**x)``) to see what
    actually feeds each BN. A folded pair becomes one layer with the fused weights plus an ``nn.Identity`` where
    the BN was. A BN stays in place (and is listed in the report with why) when it did not run, when its input
    was not produced by a Conv/Linear module, when that output is also used elsewhere (a residual, a hook, the
    model output), when either module runs more than once or shares its weight, when it has no running
    statistics, or when a Linear output is not ``(N, C)`` (BN normalizes dim 1, Linear features are the last).

    Args:
        model: a model in eval mode (BatchNorm must use its running statistics).
        example_input: an input the model accepts; one small batch is enough.
        inplace: modify ``model`` itself instead of a deep copy.

    Returns:
        ``(folded_model, report)``. Eval outputs match the original within float32 rounding (~1e-6 relative).

    Raises:
        lightning_bestpractices.errors.ArgumentError: if ``model`` or any BatchNorm in it is in train mode.

    Examples:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU()).eval()
        >>> folded, report = fold_batchnorm(net, torch.randn(1, 3, 8, 8))
        >>> folded
        Sequential(
          (0): Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1))
          (1): Identity()
          (2): ReLU()
        )
        >>> report.folded
        [('0', '1')]
    """
    if not isinstance(model, nn.Module):
        raise ArgumentError(f"`model` must be an nn.Module, got {type(model).__name__}")
    training = [
        n or type(model).__name__ for n, m in model.named_modules() if isinstance(m, _BN) and m.training
    ]
    if model.training or training:
        where = f" (BatchNorm in train mode: {', '.join(training[:5])})" if training else ""
        raise ArgumentError(
            f"fold_batchnorm needs `model` in eval mode, got model.training={model.training}{where}; "
            "call model.eval() first: folding uses the running statistics"
        )
    if not inplace:
        model = copy.deepcopy(model)
    trace = trace_model(model, example_input)
    names = {id(m): n for n, m in model.named_modules()}
    param_owners: dict[int, int] = {}
    for m in model.modules():
        for p in m.parameters(recurse=False):
            param_owners[id(p)] = param_owners.get(id(p), 0) + 1
    # which weight-layer call produced each node
    produced_by = {}
    for call in trace.calls:
        if isinstance(call.module, (*_CONV, *_CONV_T, nn.Linear)):
            for n in call.outputs:
                produced_by[n] = call
    model_outputs = set(trace.model_outputs)

    report = FoldReport()
    pairs: list[tuple[nn.Module, nn.Module, str, str]] = []
    for bn_name, bn in model.named_modules():
        if not isinstance(bn, _BN):
            continue
        reason = None
        bn_calls = trace.calls_of(bn)
        layer_call = None
        if bn.running_mean is None or bn.running_var is None:
            reason = "no running statistics (track_running_stats=False)"
        elif not bn_calls:
            reason = "did not run on the example input"
        elif len(bn_calls) > 1:
            reason = f"runs {len(bn_calls)} times per forward"
        elif len(bn_calls[0].inputs) != 1 or bn_calls[0].inputs[0] not in produced_by:
            reason = "its input is not the output of a Conv/Linear module"
            changed = [op for op in trace.ops if op.mutated and bn_calls[0].inputs[0] in op.outputs]
            if changed:
                reason += f" (it was changed in place by `{changed[-1].name}` after that module returned it)"
        else:
            node = bn_calls[0].inputs[0]
            layer_call = produced_by[node]
            layer = layer_call.module
            others = [op for op in trace.data_consumers(node) if id(bn) not in op.stack]
            changed = trace.mutations_of(node)
            if changed:
                reason = (
                    f"{names.get(id(layer))}'s output is changed in place by `{changed[0].name}` (folding would "
                    "move the BN across that op)"
                )
            elif others:
                reason = f"{names.get(id(layer))}'s output is also used by `{others[0].name}`"
            elif node in model_outputs:
                reason = f"{names.get(id(layer))}'s output is also a model output"
            elif len(trace.calls_of(layer)) > 1:
                reason = f"{names.get(id(layer))} runs {len(trace.calls_of(layer))} times per forward"
            elif any(param_owners.get(id(p), 0) > 1 for p in layer.parameters(recurse=False)):
                reason = f"{names.get(id(layer))} shares its weight with another module"
            elif layer.training:
                reason = f"{names.get(id(layer))} is in train mode"
            elif isinstance(layer, nn.Linear) and layer_call.outputs and _ndim(trace, layer_call) != 2:
                reason = (
                    "Linear output is not (N, C): BN normalizes dim 1, Linear's features are the last dim"
                )
            elif any(p is layer for p, *_ in pairs):
                reason = f"{names.get(id(layer))} is already folded with another BN"
        if reason is not None:
            report.skipped.append((bn_name, reason))
            continue
        pairs.append((layer_call.module, bn, names[id(layer_call.module)], bn_name))

    for layer, bn, layer_name, bn_name in pairs:
        fused = copy.deepcopy(layer)
        rm, rv, eps, w, b = _bn_stats(bn)
        with torch.no_grad():
            if isinstance(layer, nn.Linear):
                w = torch.ones_like(rm) if w is None else w
                b = torch.zeros_like(rm) if b is None else b
                fused.weight, fused.bias = fuse_linear_bn_weights(layer.weight, layer.bias, rm, rv, eps, w, b)
            else:
                fused.weight, fused.bias = fuse_conv_bn_weights(
                    layer.weight, layer.bias, rm, rv, eps, w, b, transpose=isinstance(layer, _CONV_T)
                )
        parent, leaf = _parent(model, layer_name)
        setattr(parent, leaf, fused)
        parent, leaf = _parent(model, bn_name)
        setattr(parent, leaf, nn.Identity())
        report.folded.append((layer_name, bn_name))
    return model, report


def _ndim(trace, call) -> int:
    for t in trace.keep:
        if node(t) == call.outputs[0]:
            return t.dim()
    return -1
