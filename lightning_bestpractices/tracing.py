"""The package's one execution-order recorder (pure torch): which module and which torch op ran after which.

Used by ``init_weights`` (which activation follows a layer), ``fold_batchnorm`` (what feeds each BatchNorm) and
``mc_predict`` (whether a prefix/suffix split is exact, and which ``F.dropout`` calls sit outside modules).

The model runs once while a :class:`~torch.overrides.TorchFunctionMode` records every torch-level call
(``F.relu``, ``torch.tanh``, ``x.relu_()``, ``x += y``, ``x[:, 0] = 0``, ...) and per-module hooks record which
module produced which tensor. The mode is entered with ``with``, so it only sees calls made by this thread inside
the block: nothing in torch is replaced, for this or any other thread.

What this adds over ``torch.fx`` tracing: it records what *ran*, so a ``forward`` with data-dependent control
flow is traced too, and it sees mutation. A tensor is identified by ``(id(t), t._version)``; an op that changes
one of its inputs in place (``relu_``, ``inplace=True``, ``+=``, ``__setitem__``) bumps the version, and the trace
records the op as a *mutation* of that tensor's storage (views and ``.data`` share the storage, so a change made
through an alias is seen as well). Limits: only the path taken on the example input is seen; work that bypasses
``__torch_function__`` (a custom C++/CUDA kernel called directly) is invisible.

Examples:
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(inplace=True))
    >>> trace = trace_model(net, torch.randn(2, 3))
    >>> [(op.name, bool(op.mutated)) for op in trace.ops]
    [('linear', False), ('relu', True)]
    >>> trace.mutated_parameters(net)
    []
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

__all__ = [
    "Node",
    "Op",
    "Call",
    "Trace",
    "METADATA_OPS",
    "op_name",
    "flatten_tensors",
    "node",
    "version",
    "storage_key",
    "recording",
    "run_model",
    "trace_model",
]

Node = tuple[int, int]  # (id(tensor), tensor._version)

#: attribute reads and queries that look at metadata only; never count as using a tensor's values
METADATA_OPS = frozenset(
    {
        "dim", "size", "shape", "dtype", "device", "numel", "ndim", "ndimension", "stride", "is_contiguous",
        "is_floating_point", "is_complex", "requires_grad", "layout", "__len__", "data_ptr", "element_size",
        "is_cuda", "is_sparse", "grad_fn", "_is_view", "names", "is_quantized", "is_meta", "get_device",
        "storage_offset", "nelement", "is_leaf", "__format__", "__repr__", "__hash__", "_version", "__bool__",
        "untyped_storage", "_base", "is_inference",
    }
)  # fmt: skip


def op_name(func: Callable) -> str:
    """``"relu"`` for ``F.relu``, ``torch.relu`` and ``Tensor.relu``; ``"shape"`` for ``Tensor.shape.__get__``."""
    name = getattr(func, "__name__", type(func).__name__)
    if name in ("__get__", "__set__"):
        name = getattr(getattr(func, "__self__", None), "__name__", name)
    return name


def flatten_tensors(obj: Any) -> Iterator[torch.Tensor]:
    """Every tensor inside nested tuples/lists/dicts."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from flatten_tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from flatten_tensors(o)


def version(t: torch.Tensor) -> int:
    """``t._version``; ``-1`` for inference tensors, which keep no version counter (run traces outside
    ``torch.inference_mode`` to see mutation: see :func:`trace_model`)."""
    return -1 if t.is_inference() else t._version


def node(t: torch.Tensor) -> Node:
    """The trace's name for ``t`` as it is now: ``(id(t), t._version)``."""
    return (id(t), version(t))


def storage_key(t: torch.Tensor) -> int | None:
    """An id of the memory ``t`` lives in, shared by its views (``None`` for empty or storage-less tensors)."""
    try:
        if t.numel() == 0:
            return None
        return t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # sparse, nested, functional wrappers
        return None


@dataclass
class Op:
    """One torch-level call: its name, tensor inputs/outputs as nodes, the modules running around it.

    ``mutated`` holds the nodes (as they were before the call) of inputs the call changed in place; their new
    versions are appended to ``outputs``, so data flow continues through in-place ops.
    """

    index: int
    name: str
    args: tuple
    kwargs: dict
    inputs: list[Node]
    outputs: list[Node]
    stack: tuple[int, ...]  # id() of the modules whose forward was running, outermost first
    mutated: list[Node] = field(default_factory=list)
    mutated_storages: list[int] = field(default_factory=list)


@dataclass
class Call:
    """One module call: the nodes it received/returned, how many arguments, and the op index range it spans."""

    module: nn.Module
    name: str
    inputs: list[Node]
    outputs: list[Node]
    start: int
    end: int = -1
    n_args: int = 0
    depth: int = 0  # how many module calls were open around this one (0: the traced model itself)


@dataclass
class Trace:
    """What :func:`trace_model` (or :func:`recording`) saw, in execution order."""

    ops: list[Op] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    consumers: dict[Node, list[int]] = field(default_factory=lambda: defaultdict(list))
    producer: dict[Node, int] = field(default_factory=dict)
    storage: dict[Node, int | None] = field(default_factory=dict)
    model_outputs: list[Node] = field(default_factory=list)
    keep: list[torch.Tensor] = field(default_factory=list)  # keeps ids and storages unique while alive

    def calls_of(self, module: nn.Module) -> list[Call]:
        return [c for c in self.calls if c.module is module]

    def data_consumers(self, n: Node) -> list[Op]:
        """Ops that use the *values* of node ``n`` (metadata queries excluded), in execution order."""
        return [self.ops[i] for i in self.consumers.get(n, ()) if self.ops[i].name not in METADATA_OPS]

    def mutations_of(self, n: Node) -> list[Op]:
        """Ops that changed, in place, the memory node ``n`` lives in (through ``n`` or any alias of it)."""
        key = self.storage.get(n)
        if key is None:
            return []
        return [op for op in self.ops if key in op.mutated_storages]

    def mutated_parameters(self, model: nn.Module) -> list[str]:
        """Names of parameters and buffers of ``model`` whose memory an op changed in place during the trace."""
        owners: dict[int, str] = {}
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            key = storage_key(t)
            if key is not None:
                owners.setdefault(key, name)
        changed = {s for op in self.ops for s in op.mutated_storages}
        return [name for key, name in owners.items() if key in changed]


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
        mutated, storages = [], []
        for t, before in zip(ins, in_nodes):
            tr.storage.setdefault(before, storage_key(t))
            if version(t) != before[1]:
                mutated.append(before)
                key = storage_key(t)
                if key is not None and key not in storages:
                    storages.append(key)
                if node(t) not in out_nodes:
                    out_tensors.append(t)
                    out_nodes.append(node(t))
        for t, n in zip(out_tensors, out_nodes):
            tr.storage.setdefault(n, storage_key(t))
        tr.keep.extend(ins)
        tr.keep.extend(out_tensors)
        small_args = tuple(a for a in args if not isinstance(a, torch.Tensor))
        tr.ops.append(
            Op(
                index,
                name,
                small_args,
                dict(kwargs),
                in_nodes,
                out_nodes,
                tuple(self.stack),
                mutated,
                storages,
            )
        )
        for n in dict.fromkeys(in_nodes):
            tr.consumers[n].append(index)
        for n in out_nodes:
            if n not in in_nodes:
                tr.producer.setdefault(n, index)
        return out


@contextlib.contextmanager
def recording(model: nn.Module) -> Iterator[Trace]:
    """Record every torch call and every call of ``model``'s modules made by this thread inside the block.

    The caller runs the model (or anything that calls its modules) inside; hooks are removed on exit.

    Examples:
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.Tanh())
        >>> x = torch.randn(1, 2)
        >>> with recording(net) as trace:
        ...     _ = net(x)
        >>> [c.name for c in trace.calls], [op.name for op in trace.ops]
        (['', '0', '1'], ['linear', 'tanh'])
    """
    trace = Trace()
    stack: list[int] = []
    names = {id(m): n for n, m in model.named_modules(remove_duplicate=False)}
    open_calls: dict[int, list[Call]] = defaultdict(list)
    handles = []

    def pre_hook(mod, args, kwargs):
        ins = list(flatten_tensors((args, kwargs)))
        trace.keep.extend(ins)
        for t in ins:
            trace.storage.setdefault(node(t), storage_key(t))
        call = Call(
            mod, names.get(id(mod), "?"), [node(t) for t in ins], [], len(trace.ops),
            n_args=len(args) + len(kwargs), depth=len(stack),
        )  # fmt: skip
        open_calls[id(mod)].append(call)
        trace.calls.append(call)
        stack.append(id(mod))

    def post_hook(mod, args, out):
        outs = list(flatten_tensors(out))
        trace.keep.extend(outs)
        for t in outs:
            trace.storage.setdefault(node(t), storage_key(t))
        call = open_calls[id(mod)].pop()
        call.outputs = [node(t) for t in outs]
        call.end = len(trace.ops)
        if stack and stack[-1] == id(mod):
            stack.pop()

    for mod in model.modules():
        handles.append(mod.register_forward_pre_hook(pre_hook, with_kwargs=True))
        handles.append(mod.register_forward_hook(post_hook))
    try:
        with _Recorder(trace, stack):
            yield trace
    finally:
        for h in handles:
            h.remove()


def run_model(model: nn.Module, example_input: Any) -> Any:
    """``model(x)``, ``model(*x)`` for a tuple/list, or ``model(**x)`` for a dict."""
    if isinstance(example_input, dict):
        return model(**example_input)
    if isinstance(example_input, (tuple, list)):
        return model(*example_input)
    return model(example_input)


def _out_of_inference(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.clone() if obj.is_inference() else obj
    if isinstance(obj, (list, tuple)):
        return type(obj)(_out_of_inference(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _out_of_inference(v) for k, v in obj.items()}
    return obj


def trace_model(model: nn.Module, example_input: Any) -> Trace:
    """Run ``model`` once on ``example_input`` (no grad, in the model's current train/eval mode) and record it.

    ``example_input`` is passed as ``model(x)``, ``model(*x)`` for a tuple/list, or ``model(**x)`` for a dict.
    Parameters and buffers are not changed by the tracing itself, except what the model's own forward does
    (BatchNorm in train mode updates running statistics: callers that care snapshot and restore buffers).
    The pass runs outside ``torch.inference_mode`` (inference tensors keep no version counter, so mutation
    would be invisible); an input made in inference mode is cloned out of it first.
    """
    with torch.inference_mode(False), torch.no_grad(), recording(model) as trace:
        out = run_model(model, _out_of_inference(example_input))
    outs = list(flatten_tensors(out))
    trace.keep.extend(outs)
    trace.model_outputs = [node(t) for t in outs]
    return trace
