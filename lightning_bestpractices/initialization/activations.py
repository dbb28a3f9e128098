"""Find the activation that follows each weight layer, in execution order (or registration order as fallback).

The execution-order search runs the model once (see :mod:`lightning_bestpractices.tracing`) and walks forward from the layer's
output through ops that do not mix features (norms, dropout, reshapes, pooling, residual adds, ...) until it
reaches an activation (found) or a feature-mixing op such as another linear/conv/matmul/softmax (none found).
Functional activations in ``forward`` (``F.gelu(x)``, ``x.relu()``, ``torch.tanh(x)``) count like modules.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from torch import nn

from ..tracing import Node, Trace

__all__ = ["Activation", "activation_from_op", "find_activations_traced", "find_activations_by_order"]

_RELU_LIKE = {
    "relu", "relu_", "relu6", "gelu", "silu", "silu_", "mish", "mish_", "elu", "elu_", "celu", "celu_",
    "hardswish", "hardswish_", "softplus", "glu",
}  # fmt: skip
_STOP = {
    "linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "matmul", "__matmul__", "mm", "bmm", "addmm", "baddbmm", "einsum", "bilinear", "embedding",
    "embedding_bag", "multi_head_attention_forward", "lstm", "gru", "rnn_tanh", "rnn_relu", "softmax",
    "log_softmax", "softmin", "cross_entropy", "nll_loss", "mse_loss", "l1_loss", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "smooth_l1_loss", "huber_loss", "kl_div", "argmax", "argmin",
}  # fmt: skip


@dataclass(frozen=True)
class Activation:
    """An activation as ``torch.nn.init.calculate_gain`` understands it, plus the name the user sees."""

    name: str  # "relu", "leaky_relu", "gelu", "tanh", "sigmoid", "selu", "none", "attention", "not run"
    negative_slope: float = 0.0

    @property
    def nonlinearity(self) -> str:
        """The ``calculate_gain`` name: ReLU-like activations (GELU, SiLU, Mish, ELU) use ReLU's gain."""
        if self.name in _RELU_LIKE:
            return "relu"
        if self.name in ("leaky_relu", "tanh", "sigmoid"):
            return self.name
        return "linear"

    @property
    def family(self) -> str:
        """``"relu"`` (Kaiming), ``"saturating"``/``"none"`` (Xavier), ``"selu"`` (LeCun) or ``"attention"``."""
        if self.name in _RELU_LIKE or self.name == "leaky_relu":
            return "relu"
        if self.name in ("tanh", "sigmoid"):
            return "saturating"
        if self.name in ("selu", "attention"):
            return self.name
        return "none"

    def __str__(self) -> str:
        if self.name == "leaky_relu":
            return f"leaky_relu({self.negative_slope:g})"
        return self.name


def activation_from_op(name: str, args: tuple, kwargs: dict) -> Activation | None:
    """The activation an op applies, or ``None`` if it is not an activation."""
    base = name.rstrip("_")
    if name in _RELU_LIKE or base in _RELU_LIKE:
        return Activation(base)
    if base in ("leaky_relu", "rrelu"):
        if base == "rrelu":
            lower = kwargs.get("lower", args[0] if args else 1 / 8)
            upper = kwargs.get("upper", args[1] if len(args) > 1 else 1 / 3)
            slope = (lower + upper) / 2
        else:
            slope = kwargs.get("negative_slope", args[0] if args and not isinstance(args[0], bool) else 0.01)
        return Activation("leaky_relu", float(slope))
    if base in ("tanh", "hardtanh"):
        return Activation("tanh")
    if base in ("sigmoid", "hardsigmoid"):
        return Activation("sigmoid")
    if base == "selu":
        return Activation("selu")
    return None


def find_activations_traced(trace: Trace, layers: list[nn.Module]) -> dict[int, Activation]:
    """``id(layer) -> Activation`` for every layer that ran in ``trace`` (first call counts)."""
    result: dict[int, Activation] = {}
    for layer in layers:
        calls = trace.calls_of(layer)
        if not calls:
            result[id(layer)] = Activation("not run")
            continue
        result[id(layer)] = _search(trace, calls[0].outputs, calls[0].end)
    return result


def _search(trace: Trace, start: list[Node], after: int) -> Activation:
    heap: list[int] = []
    seen: set[int] = set()
    for n in start:
        for i in trace.consumers.get(n, ()):
            if i >= after and i not in seen:
                seen.add(i)
                heapq.heappush(heap, i)
    while heap:  # earliest op first: "the activation that actually follows" in execution order
        op = trace.ops[heapq.heappop(heap)]
        if op.name == "scaled_dot_product_attention":
            return Activation("attention")
        act = activation_from_op(op.name, op.args, op.kwargs)
        if act is not None:
            return act
        if op.name in _STOP or op.name.endswith("_loss"):
            continue
        for n in op.outputs:
            for i in trace.consumers.get(n, ()):
                if i > op.index and i not in seen:
                    seen.add(i)
                    heapq.heappush(heap, i)
    return Activation("none")


_MODULE_ACTS: dict[type, str] = {
    nn.ReLU: "relu", nn.ReLU6: "relu6", nn.GELU: "gelu", nn.SiLU: "silu", nn.Mish: "mish", nn.ELU: "elu",
    nn.CELU: "celu", nn.Hardswish: "hardswish", nn.Softplus: "softplus", nn.Tanh: "tanh", nn.Hardtanh: "tanh",
    nn.Sigmoid: "sigmoid", nn.Hardsigmoid: "sigmoid", nn.SELU: "selu",
}  # fmt: skip
_PASS_MODULES = (
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity, nn.Flatten,
    nn.Unflatten, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool2d,
)  # fmt: skip


def module_activation(mod: nn.Module) -> Activation | None:
    if isinstance(mod, nn.LeakyReLU):
        return Activation("leaky_relu", float(mod.negative_slope))
    for cls, name in _MODULE_ACTS.items():
        if type(mod) is cls:
            return Activation(name)
    return None


def find_activations_by_order(model: nn.Module, layers: list[nn.Module], is_pass) -> dict[int, Activation]:
    """Fallback without an example input: the next activation *module* in registration order.

    Only sees activation modules (not functional calls in ``forward``) and assumes registration order is
    execution order, which holds for ``nn.Sequential`` stacks.
    """
    leaves = [m for m in model.modules() if not list(m.children())]
    result: dict[int, Activation] = {}
    for layer in layers:
        act = Activation("none")
        if layer in leaves:
            for nxt in leaves[leaves.index(layer) + 1 :]:
                found = module_activation(nxt)
                if found is not None:
                    act = found
                    break
                if not (isinstance(nxt, _PASS_MODULES) or is_pass(nxt)):
                    break
        result[id(layer)] = act
    return result


def gain(act: Activation) -> float:
    """``torch.nn.init.calculate_gain`` for ``act`` (ReLU's for GELU/SiLU/Mish/ELU, 1 for none/SELU)."""
    from torch.nn.init import calculate_gain

    if act.nonlinearity == "leaky_relu":
        return calculate_gain("leaky_relu", act.negative_slope)
    return calculate_gain(act.nonlinearity) if act.nonlinearity != "linear" else 1.0
