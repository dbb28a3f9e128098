"""Find the last norm layer of each residual branch in an execution trace (for ``zero_init_residual``).

At every ``a + b`` the branch with more Conv/Linear ops since the two inputs split is the residual branch (the
shortcut has 0, or 1 for a projection); walking back from the add through ops that keep the values' meaning
(dropout, reshapes, scaling, stochastic depth) must reach a norm layer's output. Equal depth: ambiguous, skipped.
"""

from __future__ import annotations

from torch import nn

from ..normalization import is_norm
from ..tracing import Trace

__all__ = ["zero_residual_norms"]

_ADDS = {"add", "add_", "__add__", "__radd__", "__iadd__"}
_MIXING = {"linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
           "matmul", "bmm", "mm", "addmm", "einsum", "bilinear"}  # fmt: skip
_BRANCH_PASS = {"dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "view", "reshape", "flatten",
                "contiguous", "clone", "mul", "__mul__", "__rmul__", "stochastic_depth", "permute", "transpose"}  # fmt: skip


def zero_residual_norms(module: nn.Module, trace: Trace) -> list[str]:
    """Qualified names of the last norm layer in each residual branch found in ``trace``."""
    names = {id(m): n for n, m in module.named_modules()}
    norm_out = {}
    for call in trace.calls:
        if is_norm(call.module) and getattr(call.module, "weight", None) is not None:
            for n in call.outputs:
                norm_out[n] = call.module
    params = {id(p) for p in module.parameters()} | {id(b) for b in module.buffers()}

    def upstream(node) -> set[int]:
        seen: set[int] = set()
        todo = [node]
        while todo:
            i = trace.producer.get(todo.pop())
            if i is None or i in seen:
                continue
            seen.add(i)
            todo.extend(trace.ops[i].inputs)
        return seen

    found: list[str] = []
    for op in trace.ops:
        ins = [n for n in op.inputs if n[0] not in params]
        if op.name not in _ADDS or len(ins) != 2:
            continue
        ups = [upstream(n) for n in ins]
        depth = [sum(trace.ops[i].name in _MIXING for i in ups[k] - ups[1 - k]) for k in (0, 1)]
        if depth[0] == depth[1]:
            continue
        cur = ins[0] if depth[0] > depth[1] else ins[1]
        while cur not in norm_out:
            i = trace.producer.get(cur)
            if i is None or trace.ops[i].name not in _BRANCH_PASS:
                break
            data_in = [n for n in trace.ops[i].inputs if n[0] not in params]
            if len(data_in) != 1:
                break
            cur = data_in[0]
        if cur in norm_out:
            name = names[id(norm_out[cur])]
            if name not in found:
                found.append(name)
    return found
