"""Split a model into a deterministic prefix (run once) and a stochastic suffix (run N times), only where exact.

Everything before the first active dropout-family module gives the same result in every MC sample, so
running it N times (as the usual "tile the input N times" implementations do) wastes N - 1 passes of what is
often the expensive part (the convolutional trunk). The split is found, in order of preference:

1. declared by the model: a ``mc_split()`` method returning ``(prefix, suffix)`` callables
   (see :class:`~lightning_bestpractices.uncertainty.MCDropoutMixin`); trusted as declared;
2. ``nn.Sequential`` (with its own ``forward``): the children before the first child that contains a
   stochastic module;
3. ``torch.fx``: the traced graph is cut into nodes that do not depend on any stochastic module (prefix) and
   the rest (suffix);
4. recorded execution order: if the top-level children form a chain (each consumes exactly the previous
   child's output, unchanged, and the top-level ``forward`` runs no torch op of its own), the model is treated
   like ``nn.Sequential``.

Every automatic split is audited on one recorded MC pass (:mod:`lightning_bestpractices.tracing`), which sees
in-place ops (``relu_``, ``inplace=True``, ``+=``, index assignment), also inside nested children and through
views. A split is refused, with the reason, when the forward changes a parameter or buffer in place; for fx,
when the graph does not replay the eager forward op for op, when an op before the dropout changes in place a
tensor that the stochastic part has already read, when the stochastic part changes in place a tensor that
reaches it through two values of the cut (the copies made for the N samples would no longer alias), or when a
tensor that does not depend on the input is changed in place; for the chain, when a tensor is changed between
two children or the top-level ``forward`` computes anything itself (a data-dependent branch, say). Nothing is
dead-code eliminated: an in-place op whose result is unused still runs. Then ``mc_predict`` runs batched full
passes and says why, once.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..tracing import Trace, flatten_tensors, node, recording
from ._fx import fx_graph, fx_split
from .mode import mc_dropout_mode
from .stochastic import find_stochastic_modules, is_stochastic

__all__ = ["Split", "find_split", "explain_split", "count_functional_dropout_calls"]

_FUNCTIONAL_DROPOUTS = frozenset(
    {
        "dropout", "dropout_", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "alpha_dropout_",
        "feature_alpha_dropout", "feature_alpha_dropout_", "feature_dropout", "feature_dropout_",
    }
)  # fmt: skip


@dataclass
class Split:
    """``suffix(expand(prefix(x)))`` equals ``model(expand(x))`` for the stochastic passes.

    ``prefix`` maps the input batch to a tensor or tuple of tensors (batch first); ``suffix`` maps the same
    structure, expanded to ``n * batch`` rows, to the model output. ``kind`` says how it was found.
    """

    prefix: Callable[[Tensor], Any]
    suffix: Callable[[Any], Any]
    kind: str


@dataclass
class Analysis:
    """What one recorded MC pass says about a model: its split (or why none) and stray ``F.dropout`` calls."""

    split: Split | None
    reason: str
    functional_dropouts: int


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def find_split(model: nn.Module, x: Tensor | None = None) -> Split | None:
    """The best exact :class:`Split` of ``model`` (``None``: no exact split). Cached per model.

    With ``x`` (a batch the model accepts) the split is audited on one recorded pass (see the module docstring);
    without it only a declared or cached split, or an ``nn.Sequential``'s children, can be returned.

    Examples:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(8, 2))
        >>> split = find_split(net, torch.randn(3, 4))
        >>> split.kind, len(split.prefix), len(split.suffix)
        ('sequential', 2, 2)
    """
    return explain_split(model, x)[0]


def explain_split(model: nn.Module, x: Tensor | None = None) -> tuple[Split | None, str]:
    """``(split, reason)``: the split :func:`find_split` returns and, when it is ``None``, why."""
    declared = _declared(model)
    if declared is not None:
        return declared, ""
    if x is None:
        cached = _cached(model, None)
        if cached is not None:
            return cached.split, cached.reason
        if _is_plain_sequential(model):
            return _chain_split(list(model), "sequential"), ""
        return None, "no example batch to audit a split on"
    analysis = analyse(model, x)
    return analysis.split, analysis.reason


def _declared(model: nn.Module) -> Split | None:
    declared = getattr(model, "mc_split", None)
    if callable(declared):
        parts = declared()
        if parts is not None:
            prefix, suffix = parts
            return Split(prefix, suffix, "declared")
    return None


def _key(model: nn.Module, x: Tensor | None) -> tuple:
    mods = tuple(id(m) for _, m in find_stochastic_modules(model))
    return mods if x is None else (mods, tuple(x.shape[1:]), x.dtype, x.device)


def _cached(model: nn.Module, x: Tensor | None) -> Analysis | None:
    entry = _CACHE.get(model)
    if entry is None:
        return None
    key, analysis = entry
    if x is None:
        return analysis if key[0] == _key(model, None) else None
    return analysis if key == _key(model, x) else None


def analyse(model: nn.Module, x: Tensor) -> Analysis:
    """Record one MC pass of ``model`` on ``x[:1]`` and decide the split from it (cached per model and shape).

    The model must have a stochastic module (else :func:`count_functional_dropout_calls` is the probe to use).
    The global RNG is left as it was; the model's modes are restored.
    """
    cached = _cached(model, x)
    if cached is not None:
        return cached
    # outside inference mode (Lightning's predict/test run in it): inference tensors keep no version counter.
    # A clone, so that a forward that changes its input in place does not change the caller's batch.
    with torch.inference_mode(False):
        x1 = x[:1].clone()
        buffers = {name: b.clone() for name, b in model.named_buffers()}
        with _restore(model, buffers):
            analysis = _analyse(model, x1)
    _CACHE[model] = (_key(model, x), analysis)
    return analysis


def _analyse(model: nn.Module, x1: Tensor) -> Analysis:
    gm, fx_error = fx_graph(model)  # fx tracing may run a forward's in-place ops on real buffers, too
    with _quiet_rng(x1), torch.no_grad(), mc_dropout_mode(model) as mc:
        mc.set_rows(torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long))
        with recording(model) as trace:
            out = model(x1.clone())
        trace.model_outputs = [node(t) for t in flatten_tensors(out)]
        stochastic_ids = {id(m) for _, m in mc.modules}
        functional = sum(
            1 for op in trace.ops if op.name in _FUNCTIONAL_DROPOUTS and not stochastic_ids & set(op.stack)
        )
        split, reason = None, ""
        mutated = trace.mutated_parameters(model)
        if mutated:
            reason = f"its forward changes {mutated[0]!r} (a parameter or buffer) in place"
        elif _is_plain_sequential(model):
            split = _chain_split(list(model), "sequential")
            reason = "" if split is not None else "no child contains a stochastic module"
        else:
            reasons = []
            if gm is None:
                reasons.append(f"torch.fx cannot trace it ({fx_error})")
            else:
                parts, why = fx_split(model, gm, x1, trace)
                split = None if parts is None else Split(parts[0], parts[1], "fx")
                reasons.append(why)
            if split is None:
                split, why = _hook_split(model, trace)
                reasons.append(why)
            reason = "" if split is not None else "; ".join(r for r in reasons if r)
    return Analysis(split, reason, functional)


class _restore:
    """Put the buffers back as they were after the recorded passes (a forward that counts its calls, say)."""

    def __init__(self, model: nn.Module, buffers: dict[str, Tensor]) -> None:
        self.model, self.buffers = model, buffers

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        with torch.no_grad():
            for name, b in self.model.named_buffers():
                if name in self.buffers and b.shape == self.buffers[name].shape:
                    b.copy_(self.buffers[name])


class _quiet_rng:
    """Leave the global RNG as it was (unseeded registered modules draw from it during the recorded pass)."""

    def __init__(self, x: Tensor) -> None:
        self.ctx = torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else [])

    def __enter__(self) -> None:
        self.ctx.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self.ctx.__exit__(*exc)


def count_functional_dropout_calls(model: nn.Module, x: Tensor) -> int:
    """Run ``model`` once on ``x[:1]`` in eval mode and count ``F.dropout``-family calls made outside modules.

    These calls cannot be switched on by MC dropout (their ``training`` flag comes from the caller), so
    :func:`~lightning_bestpractices.uncertainty.mc_predict` fails loudly (no dropout module) or warns (some).
    Seen through :func:`lightning_bestpractices.tracing.recording` (a scoped ``TorchFunctionMode``): nothing in
    ``torch.nn.functional`` is replaced.

    Examples:
        >>> class Net(nn.Module):
        ...     def forward(self, x):
        ...         return nn.functional.dropout(x, 0.5, self.training)
        >>> count_functional_dropout_calls(Net(), torch.randn(2, 3))
        1
    """
    modes = {m: m.training for m in model.modules()}
    stochastic_ids = {id(m) for _, m in find_stochastic_modules(model)}
    try:
        model.eval()
        with torch.inference_mode(False), torch.no_grad(), recording(model) as trace:
            model(x[:1].clone())
    finally:
        for m, mode in modes.items():
            m.training = mode
    return sum(
        1 for op in trace.ops if op.name in _FUNCTIONAL_DROPOUTS and not stochastic_ids & set(op.stack)
    )


def _is_plain_sequential(model: nn.Module) -> bool:
    return isinstance(model, nn.Sequential) and type(model).forward is nn.Sequential.forward


def _contains_stochastic(module: nn.Module) -> bool:
    return any(is_stochastic(m) for m in module.modules())


def _chain_split(children: list[nn.Module], kind: str) -> Split | None:
    first = next((i for i, c in enumerate(children) if _contains_stochastic(c)), None)
    if first is None:
        return None
    return Split(nn.Sequential(*children[:first]), nn.Sequential(*children[first:]), kind)


# -------------------------------------------------------------------------------------------------- hooks
def _hook_split(model: nn.Module, trace: Trace) -> tuple[Split | None, str]:
    roots = [c for c in trace.calls if c.module is model and c.depth == 0]
    if len(roots) != 1:
        return None, "chain: the model did not run exactly once"
    root = roots[0]
    top = [c for c in trace.calls if c.depth == 1]
    if not top:
        return None, "chain: forward calls no child module"
    if len({id(c.module) for c in top}) != len(top):
        return None, "chain: a child module runs more than once"
    own = [op for op in trace.ops if op.stack == (id(model),)]
    if own:
        return None, f"chain: the top-level forward runs `{own[0].name}` itself, outside its children"
    prev = root.inputs
    if root.n_args != 1 or len(prev) != 1:
        return None, "chain: forward takes more than one tensor"
    for c in top:
        if c.n_args != 1 or c.inputs != prev:
            return None, (
                f"chain: child {c.name!r} does not get exactly the previous child's output, unchanged"
            )
        prev = c.outputs
    if root.outputs != prev or len(prev) != 1:
        return None, "chain: the model's output is not the last child's output, unchanged"
    split = _chain_split([c.module for c in top], "hooks")
    return (split, "") if split is not None else (None, "chain: no child contains a stochastic module")
