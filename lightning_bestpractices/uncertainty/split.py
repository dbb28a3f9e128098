"""Split a model into a deterministic prefix (run once) and a stochastic suffix (run N times).

Everything before the first active dropout-family module gives the same result in every MC sample, so
running it N times (as the usual "tile the input N times" implementations do) wastes N - 1 passes of what is
often the expensive part (the convolutional trunk). The split is found, in order of preference:

1. declared by the model: a ``mc_split()`` method returning ``(prefix, suffix)`` callables
   (see :class:`~lightning_bestpractices.uncertainty.MCDropoutMixin`);
2. ``nn.Sequential``: the children before the first child that contains a stochastic module;
3. ``torch.fx``: the traced graph is cut into nodes that do not depend on any stochastic module (prefix) and
   the rest (suffix); the values crossing the cut must be tensors with the batch as first dimension;
4. recorded execution order: forward hooks record the top-level children; if they form a chain (each child
   consumes exactly the previous child's output) the model is treated like ``nn.Sequential``.

Otherwise there is no safe split and ``mc_predict`` runs batched full passes (it says so once).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, fx, nn

from .stochastic import _spec_for, find_stochastic_modules

__all__ = ["Split", "find_split"]


@dataclass
class Split:
    """``suffix(expand(prefix(x)))`` equals ``model(expand(x))`` for the stochastic passes.

    ``prefix`` maps the input batch to a tensor or tuple of tensors (batch first); ``suffix`` maps the same
    structure, expanded to ``n * batch`` rows, to the model output. ``kind`` says how it was found.
    """

    prefix: Callable[[Tensor], Any]
    suffix: Callable[[Any], Any]
    kind: str


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def find_split(model: nn.Module, x: Tensor | None = None) -> Split | None:
    """The best available :class:`Split` of ``model`` (``None``: no safe split). Cached per model.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2))
        >>> split = find_split(net)
        >>> split.kind, len(split.prefix), len(split.suffix)
        ('sequential', 2, 2)
    """
    declared = getattr(model, "mc_split", None)
    if callable(declared):
        parts = declared()
        if parts is not None:
            prefix, suffix = parts
            return Split(prefix, suffix, "declared")
    key = tuple(id(m) for _, m in find_stochastic_modules(model))
    cached = _CACHE.get(model)
    if cached is not None and cached[0] == key:
        return cached[1]
    split = _sequential_split(model)
    if split is None:
        split = _fx_split(model)
    if split is None and x is not None:
        split = _hook_split(model, x)
    _CACHE[model] = (key, split)
    return split


def _contains_stochastic(module: nn.Module) -> bool:
    return any(_spec_for(m)[0] for m in module.modules())


def _sequential_split(model: nn.Module) -> Split | None:
    if not isinstance(model, nn.Sequential):
        return None
    return _chain_split(list(model), "sequential")


def _chain_split(children: list[nn.Module], kind: str) -> Split | None:
    first = next((i for i, c in enumerate(children) if _contains_stochastic(c)), None)
    if first is None:
        return None
    return Split(nn.Sequential(*children[:first]), nn.Sequential(*children[first:]), kind)


class _Tracer(fx.Tracer):
    """Keeps stochastic modules (also registered user classes) as leaves so the cut can see them."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return _spec_for(m)[0] or super().is_leaf_module(m, qualname)


def _fx_split(model: nn.Module) -> Split | None:
    try:
        graph = _Tracer().trace(model)
    except Exception:  # noqa: BLE001 - untraceable forward (data-dependent control flow, ...): try hooks next
        return None
    modules = dict(model.named_modules())
    dep: set[fx.Node] = set()  # depends on a stochastic module
    batch: set[fx.Node] = set()  # depends on the input
    for node in graph.nodes:
        if node.op == "placeholder":
            batch.add(node)
        if any(a in dep for a in node.all_input_nodes) or (
            node.op == "call_module" and _spec_for(modules[node.target])[0]
        ):
            dep.add(node)
        if any(a in batch for a in node.all_input_nodes):
            batch.add(node)
    if not dep:
        return None
    output = next(n for n in graph.nodes if n.op == "output")
    frontier = [
        n
        for n in graph.nodes
        if n not in dep and n in batch and any(u in dep or u is output for u in n.users)
    ]
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        return None

    pre = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for node in graph.nodes:
        if node.op != "output" and node not in dep:
            env[node] = pre.node_copy(node, lambda n: env[n])
    pre.output(tuple(env[n] for n in frontier))
    post = fx.Graph()
    env2: dict[fx.Node, fx.Node] = {n: post.placeholder(f"cut_{i}") for i, n in enumerate(frontier)}
    for node in graph.nodes:
        if node in env2 or node.op == "placeholder":
            continue
        if node.op == "output" or node in dep or node not in batch:  # constants (get_attr, ...) are re-made
            env2[node] = post.node_copy(node, lambda n: env2[n])
    prefix_gm = fx.GraphModule(model, pre)
    suffix_gm = fx.GraphModule(model, post)
    for gm in (prefix_gm, suffix_gm):
        gm.graph.eliminate_dead_code()
        gm.recompile()
    return Split(prefix_gm, lambda state: suffix_gm(*state), "fx")


def _hook_split(model: nn.Module, x: Tensor) -> Split | None:
    children = list(model.children())
    calls: list[tuple[nn.Module, Any, Any]] = []
    hooks = [c.register_forward_hook(lambda m, a, o: calls.append((m, a, o))) for c in children]
    modes = {m: m.training for m in model.modules()}
    first = x[:1]
    try:
        model.eval()
        with torch.no_grad():
            out = model(first)
    except Exception:  # noqa: BLE001
        return None
    finally:
        for h in hooks:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    if not calls or len({id(m) for m, _, _ in calls}) != len(calls):
        return None
    prev: Any = first
    for _, args, o in calls:
        if len(args) != 1 or args[0] is not prev:
            return None
        prev = o
    if prev is not out:
        return None
    return _chain_split([m for m, _, _ in calls], "hooks")
