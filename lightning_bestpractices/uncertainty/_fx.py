"""The torch.fx half of the prefix/suffix split: trace, replay against the eager pass, audit mutation, cut.

See :mod:`lightning_bestpractices.uncertainty.split` for the rules. The graph is run node by node by an
``fx.Interpreter`` that keeps every value and compares version counters around each node, so the nodes that
change a tensor in place (also through a view, also inside a leaf module) are known exactly.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from torch import Tensor, fx, nn

from ..tracing import Trace, flatten_tensors, recording, storage_key, version
from .stochastic import is_stochastic

__all__ = ["fx_graph", "fx_split"]


class _Tracer(fx.Tracer):
    """Keeps stochastic modules (also registered user classes) as leaves so the cut can see them."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return is_stochastic(m) or super().is_leaf_module(m, qualname)


def fx_graph(model: nn.Module) -> tuple[fx.GraphModule | None, str]:
    try:
        graph = _Tracer().trace(model)
    except Exception as err:  # noqa: BLE001 - untraceable forward (data-dependent control flow, ...)
        return None, f"{type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}"
    return fx.GraphModule(model, graph), ""


class _Audit(fx.Interpreter):
    """Runs the graph node by node, keeping every value, and records which storages each node changed."""

    def __init__(self, gm: fx.GraphModule, trace: Trace) -> None:
        super().__init__(gm, garbage_collect_values=False)
        self.trace = trace
        self.mutated: dict[fx.Node, set[int]] = {}
        self.owner: list[fx.Node] = []  # the node each recorded op ran in

    def run_node(self, n: fx.Node) -> Any:
        live = [(t, version(t)) for v in self.env.values() for t in flatten_tensors(v)]
        out = super().run_node(n)
        changed = {storage_key(t) for t, v in live if version(t) != v}
        changed.discard(None)
        self.mutated[n] = changed  # type: ignore[assignment]
        self.owner.extend([n] * (len(self.trace.ops) - len(self.owner)))
        return out


# ``h += 1`` on an fx Proxy is traced as ``h = h + 1`` (Proxy has no ``__iadd__``), while eager torch changes h in
# place; where the recorded eager pass shows the in-place op, the node is given back its in-place operator.
_INPLACE_OPERATOR = {
    operator.add: operator.iadd, operator.sub: operator.isub, operator.mul: operator.imul,
    operator.truediv: operator.itruediv, operator.floordiv: operator.ifloordiv, operator.mod: operator.imod,
    operator.pow: operator.ipow, operator.and_: operator.iand, operator.or_: operator.ior,
    operator.xor: operator.ixor, operator.lshift: operator.ilshift, operator.rshift: operator.irshift,
}  # fmt: skip


def _replay(model: nn.Module, gm: fx.GraphModule, x1: Tensor, eager: Trace) -> tuple[_Audit | None, str]:
    """Run ``gm`` node by node until it replays the eager pass op for op (restoring ``+=``), or say where not."""
    theirs = [(op.name, bool(op.mutated)) for op in eager.ops]
    for _ in range(len(gm.graph.nodes) + 1):
        with recording(model) as replay:
            audit = _Audit(gm, replay)
            audit.run(x1.clone())
        ours = [(op.name, bool(op.mutated)) for op in replay.ops]
        if ours == theirs:
            if replay.mutated_parameters(model):
                return None, f"fx: the graph changes {replay.mutated_parameters(model)[0]!r} in place"
            return audit, ""
        i = next((k for k, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
        got = ours[i][0] if i < len(ours) else "end"
        want = theirs[i][0] if i < len(theirs) else "end"
        n = audit.owner[i] if i < len(audit.owner) else None
        if (
            n is not None and n.op == "call_function" and n.target in _INPLACE_OPERATOR
            and i < len(theirs) and theirs[i][1] and not ours[i][1]
        ):  # fmt: skip
            n.target = _INPLACE_OPERATOR[n.target]
            gm.recompile()
            continue
        return None, f"fx: the traced graph does not replay the forward (op {i}: `{got}` instead of `{want}`)"
    return None, "fx: the traced graph does not replay the forward"


def _storages(value: Any) -> set[int]:
    return {k for t in flatten_tensors(value) if (k := storage_key(t)) is not None}


def fx_split(
    model: nn.Module, gm: fx.GraphModule, x1: Tensor, eager: Trace
) -> tuple[tuple[Callable, Callable] | None, str]:
    graph = gm.graph
    nodes = list(graph.nodes)
    placeholders = [n for n in nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        return None, f"fx: forward takes {len(placeholders)} inputs, not one"
    audit, why = _replay(model, gm, x1, eager)
    if audit is None:
        return None, why
    modules = dict(model.named_modules())
    env = audit.env
    dep: set[fx.Node] = set()  # depends on a stochastic module (directly or through a changed tensor)
    batch: set[fx.Node] = set()  # depends on the input
    tainted: set[int] = set()  # storages changed in place by the stochastic part
    read_by_dep: set[int] = set()
    for n in nodes:
        if n.op == "output":
            continue
        if n.op == "placeholder":
            batch.add(n)
        reads = (
            set().union(*(_storages(env.get(a)) for a in n.all_input_nodes)) if n.all_input_nodes else set()
        )
        is_dep = (
            (n.op == "call_module" and is_stochastic(modules[n.target]))
            or any(a in dep for a in n.all_input_nodes)
            or bool(reads & tainted)
        )
        if any(a in batch for a in n.all_input_nodes):
            batch.add(n)
        if is_dep:
            dep.add(n)
            tainted |= audit.mutated.get(n, set())
            read_by_dep |= reads
        elif audit.mutated.get(n) and audit.mutated[n] & read_by_dep:
            return None, f"fx: `{n.name}` changes in place a tensor that the stochastic part has already read"
    if not dep:
        return None, "fx: no node depends on a stochastic module"
    constants = set().union(*(_storages(env.get(n)) for n in nodes if n.op != "output" and n not in batch))
    changed = set().union(*audit.mutated.values())
    if changed & constants:
        return None, "fx: a tensor that does not depend on the input is changed in place"
    output = next(n for n in nodes if n.op == "output")
    frontier = [
        n for n in nodes if n not in dep and n in batch and any(u in dep or u is output for u in n.users)
    ]
    for n in frontier:
        if not isinstance(env.get(n), Tensor) or env[n].dim() == 0:
            return (
                None,
                f"fx: {n.name!r} crosses the cut but is not a batch-first tensor ({type(env.get(n)).__name__})",
            )
    for s in tainted:
        sharing = [n.name for n in frontier if s in _storages(env.get(n))]
        if len(sharing) > 1:
            return None, (
                f"fx: the stochastic part changes in place a tensor that reaches it as {sharing[0]!r} and "
                f"{sharing[1]!r} (aliases)"
            )
    pre = fx.Graph()
    penv: dict[fx.Node, fx.Node] = {}
    for n in nodes:
        if n.op != "output" and n not in dep:
            penv[n] = pre.node_copy(n, lambda a: penv[a])
    pre.output(tuple(penv[n] for n in frontier))
    post = fx.Graph()
    senv: dict[fx.Node, fx.Node] = {n: post.placeholder(f"cut_{i}") for i, n in enumerate(frontier)}
    for n in nodes:
        if n in senv or n.op == "placeholder":
            continue
        if n.op == "output" or n in dep or n not in batch:  # constants (get_attr, ...) are re-made
            senv[n] = post.node_copy(n, lambda a: senv[a])
    prefix_gm = fx.GraphModule(model, pre)  # no dead-code elimination: an unused in-place op still runs
    suffix_gm = fx.GraphModule(model, post)
    return (prefix_gm, lambda state: suffix_gm(*state)), ""
