"""Execution-order tracing shared by ``init_weights`` (which activation follows a layer) and ``fold_batchnorm``.

The model is run once on an example input while a :class:`~torch.overrides.TorchFunctionMode` records every
torch-level call (``F.relu``, ``torch.tanh``, ``x.relu()``, ``x + y``, ...) and module hooks record which module
produced which tensor. Tensors are identified by ``(id(t), t._version)``, so in-place ops (``relu_``, ``+=``)
create a new node instead of a cycle.

Why not ``torch.fx``: fx needs a traceable ``forward`` (no data-dependent control flow); running the model
handles any Python. Limits: only the path taken on the example input is seen; work that bypasses
``__torch_function__`` (custom C++/CUDA kernels called directly) is invisible, and a tensor consumed only there
looks unused.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

Node = tuple[int, int]  # (id(tensor), tensor._version)

#: attribute reads and queries that look at metadata only; never count as using a tensor's values
METADATA_OPS = frozenset(
    {
        "dim", "size", "shape", "dtype", "device", "numel", "ndim", "ndimension", "stride", "is_contiguous",
        "is_floating_point", "is_complex", "requires_grad", "layout", "__len__", "data_ptr", "element_size",
        "is_cuda", "is_sparse", "grad_fn", "_is_view", "names", "is_quantized", "is_meta", "get_device",
        "storage_offset", "nelement", "is_leaf", "__format__", "__repr__", "__hash__", "_version", "__bool__",
    }
)  # fmt: skip


def op_name(func: Callable) -> str:
    """``"relu"`` for ``F.relu``, ``torch.relu`` and ``Tensor.relu``; ``"shape"`` for ``Tensor.shape.__get__``."""
    name = getattr(func, "__name__", type(func).__name__)
    if name in ("__get__", "__set__"):
        name = getattr(getattr(func, "__self__", None), "__name__", name)
    return name


def flatten_tensors(obj: Any) -> Iterator[torch.Tensor]:
    """Every tensor inside nested tuples/lists/dicts (and the attributes of simple dataclass-like outputs)."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from flatten_tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from flatten_tensors(o)


def node(t: torch.Tensor) -> Node:
    return (id(t), t._version)


@dataclass
class Op:
    """One torch-level call: ``name``, its tensor inputs/outputs as nodes, and the modules active around it."""

    index: int
    name: str
    args: tuple
    kwargs: dict
    inputs: list[Node]
    outputs: list[Node]
    stack: tuple[int, ...]  # id() of the modules whose forward was running, outermost first


@dataclass
class Call:
    """One module call: the nodes it received/returned and the op index range it spans."""

    module: nn.Module
    name: str
    inputs: list[Node]
    outputs: list[Node]
    start: int
    end: int = -1


@dataclass
class Trace:
    ops: list[Op] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    consumers: dict[Node, list[int]] = field(default_factory=lambda: defaultdict(list))
    producer: dict[Node, int] = field(default_factory=dict)
    model_outputs: list[Node] = field(default_factory=list)
    keep: list[torch.Tensor] = field(default_factory=list)  # keeps ids unique while the trace is alive

    def calls_of(self, module: nn.Module) -> list[Call]:
        return [c for c in self.calls if c.module is module]

    def data_consumers(self, n: Node) -> list[Op]:
        """Ops that use the *values* of node ``n`` (metadata queries excluded), in execution order."""
        return [self.ops[i] for i in self.consumers.get(n, ()) if self.ops[i].name not in METADATA_OPS]


class _Recorder(TorchFunctionMode):
    def __init__(self, trace: Trace, stack: list[int]) -> None:
        super().__init__()
        self.trace = trace
        self.stack = stack

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = op_name(func)
        if name in METADATA_OPS:  # metadata queries (also our own ``_version`` reads) are not data flow
            return func(*args, **kwargs)
        ins = list(flatten_tensors((args, kwargs)))
        in_nodes = [node(t) for t in ins]
        out = func(*args, **kwargs)
        tr = self.trace
        index = len(tr.ops)
        out_tensors = list(flatten_tensors(out))
        out_nodes = [node(t) for t in out_tensors]
        tr.keep.extend(ins)
        tr.keep.extend(out_tensors)
        small_args = tuple(a for a in args if not isinstance(a, torch.Tensor))
        tr.ops.append(Op(index, name, small_args, dict(kwargs), in_nodes, out_nodes, tuple(self.stack)))
        for n in dict.fromkeys(in_nodes):
            tr.consumers[n].append(index)
        for n in out_nodes:
            if n not in in_nodes:
                tr.producer.setdefault(n, index)
        return out


def trace_model(model: nn.Module, example_input: Any) -> Trace:
    """Run ``model`` once on ``example_input`` (no grad, in the model's current train/eval mode) and record it.

    ``example_input`` is passed as ``model(x)``, ``model(*x)`` for a tuple/list, or ``model(**x)`` for a dict.
    Parameters and buffers are not changed by the tracing itself, except what the model's own forward does
    (BatchNorm in train mode updates running statistics: callers that care snapshot and restore buffers).
    """
    trace = Trace()
    stack: list[int] = []
    names = {id(m): n for n, m in model.named_modules(remove_duplicate=False)}
    open_calls: dict[int, list[Call]] = defaultdict(list)
    handles = []

    def pre_hook(mod, args):
        ins = list(flatten_tensors(args))
        trace.keep.extend(ins)
        call = Call(mod, names.get(id(mod), "?"), [node(t) for t in ins], [], len(trace.ops))
        open_calls[id(mod)].append(call)
        trace.calls.append(call)
        stack.append(id(mod))

    def post_hook(mod, args, out):
        outs = list(flatten_tensors(out))
        trace.keep.extend(outs)
        call = open_calls[id(mod)].pop()
        call.outputs = [node(t) for t in outs]
        call.end = len(trace.ops)
        if stack and stack[-1] == id(mod):
            stack.pop()

    for mod in model.modules():
        handles.append(mod.register_forward_pre_hook(pre_hook))
        handles.append(mod.register_forward_hook(post_hook))
    try:
        with torch.no_grad(), _Recorder(trace, stack):
            if isinstance(example_input, dict):
                out = model(**example_input)
            elif isinstance(example_input, (tuple, list)):
                out = model(*example_input)
            else:
                out = model(example_input)
    finally:
        for h in handles:
            h.remove()
    outs = list(flatten_tensors(out))
    trace.keep.extend(outs)
    trace.model_outputs = [node(t) for t in outs]
    return trace
