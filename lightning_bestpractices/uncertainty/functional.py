"""MC dropout prediction and uncertainty measures (pure torch).

:func:`mc_predict` is the one entry point. What it adds over the usual recipe (``module.train()`` on every
dropout, tile the input N times, ``softmax(...).mean(0)``):

* only dropout-family modules are switched on (BatchNorm stays in eval, buffers untouched), modes restored;
* the deterministic prefix of the network runs once and only the stochastic suffix runs N times;
* samples run in chunks sized to a memory budget, aggregated with running sums (memory O(batch x classes));
* masks are seeded per (seed, input index, sample index): batch size, chunk size and process count do not
  change the result;
* it returns probabilities and the standard measures, never logits, so averaging logits is impossible.
"""

from __future__ import annotations

import math
import os
import warnings
import weakref
from dataclasses import fields
from typing import Any

import torch
from torch import Tensor, nn

from lightning_bestpractices.errors import ArgumentError

from .measures import (
    MCOutput,
    MCRegressionOutput,
    Task,
    _ClassificationAccumulator,
    _log_probs,
    _Welford,
    uncertainty_measures,
)
from .mode import mc_dropout_mode
from .split import Analysis, _declared, analyse, count_functional_dropout_calls
from .stochastic import check_rates, find_stochastic_modules

__all__ = ["MCOutput", "MCRegressionOutput", "mc_logits", "mc_predict", "uncertainty_measures"]

_WARNED: weakref.WeakKeyDictionary[nn.Module, set[str]] = weakref.WeakKeyDictionary()


def _warn_once(model: nn.Module, key: str, message: str) -> None:
    """Warn (rank 0 only) the first time ``key`` applies to this ``model`` object: a loop over ``mc_predict``
    calls says it once, while another model (a later test's, or a reloaded one) is told again. The memory lives
    and dies with the model, so no process-wide state can hide a warning that a later caller expects."""
    seen = _WARNED.setdefault(model, set())
    if key not in seen:
        seen.add(key)
        if _global_rank() == 0:
            warnings.warn(message, UserWarning, stacklevel=3)


def _global_rank() -> int:
    """This process's rank: torch.distributed's when it runs, else the launcher's environment (the variables
    Lightning reads), else 0. Pure torch, so that ``mc_predict`` imports without Lightning."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 0


# ----------------------------------------------------------------------------------------------------------------
# mc_predict
# ----------------------------------------------------------------------------------------------------------------
def _expand(state: Any, n: int) -> Any:
    if isinstance(state, Tensor):
        return state.repeat(n, *([1] * (state.dim() - 1)))
    return tuple(_expand(s, n) for s in state)


def _nbytes(obj: Any) -> int:
    if isinstance(obj, Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (tuple, list)):
        return sum(_nbytes(o) for o in obj)
    return 0


def _valid_state(state: Any, batch: int) -> bool:
    if isinstance(state, Tensor):
        return state.dim() > 0 and state.shape[0] == batch
    return isinstance(state, (tuple, list)) and len(state) > 0 and all(_valid_state(s, batch) for s in state)


def _check_targets(targets: Tensor, task: Task, batch: int) -> Tensor:
    if not isinstance(targets, Tensor):
        raise ArgumentError(f"`targets` must be a Tensor, got {type(targets).__name__}")
    if task == "regression":
        raise ArgumentError("`targets` are only used for classification (the mixture log-likelihood)")
    if targets.shape != (batch,):
        raise ArgumentError(
            f"`targets` must have shape ({batch},) (one class index per input), got {tuple(targets.shape)}"
        )
    if targets.is_floating_point():
        raise ArgumentError(f"`targets` must hold integer class indices, got dtype {targets.dtype}")
    return targets.long()


def mc_predict(
    model: nn.Module,
    x: Tensor,
    n_samples: int = 30,
    *,
    targets: Tensor | None = None,
    task: Task = "multiclass",
    seed: int = 0,
    indices: Tensor | None = None,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    split: bool = True,
    temperature: float = 1.0,
) -> MCOutput | MCRegressionOutput:
    """Monte Carlo dropout predictions of ``model`` on the batch ``x``.

    Args:
        model: returns logits (or log-probabilities) ``(B, C)``; ``(B,)`` or ``(B, 1)`` logits for ``binary``;
            any ``(B, ...)`` tensor for ``regression``.
        x: input batch, batch first.
        n_samples: number of stochastic passes N (>= 1).
        targets: class indices ``(B,)``; adds the mixture ``log_likelihood``.
        task: ``"multiclass"`` (softmax), ``"binary"`` (sigmoid) or ``"regression"``.
        seed: with ``indices``, fixes every dropout mask.
        indices: global index of each input (default ``0..B-1``); pass dataset indices so that batching and
            sharding over processes do not change the masks.
        chunk_size: samples per stochastic pass (default: all N, or what fits ``memory_budget``).
        memory_budget: bytes allowed for one chunk's activations (estimated on the first sample).
        split: run the deterministic prefix once (see ``split.py``); ``False`` runs batched full passes.
        temperature: divides every sample's logits before its softmax/sigmoid (fit it on validation data with
            :func:`~lightning_bestpractices.uncertainty.fit_temperature` on :func:`mc_logits`); classification.

    Examples:
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
        >>> out = mc_predict(net, torch.randn(5, 4), n_samples=8, targets=torch.tensor([0, 1, 2, 0, 1]))
        >>> out.mean_probs.shape, out.log_likelihood.shape
        (torch.Size([5, 3]), torch.Size([5]))
        >>> bool((out.mutual_information >= 0).all() and (out.mutual_information <= math.log(3)).all())
        True
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ArgumentError(f"`n_samples` must be an int >= 1, got {n_samples!r}")
    if task not in ("multiclass", "binary", "regression"):
        raise ArgumentError(f"`task` must be 'multiclass', 'binary' or 'regression', got {task!r}")
    if not isinstance(x, Tensor) or x.dim() == 0:
        raise ArgumentError(f"`x` must be a batch-first Tensor, got {type(x).__name__}")
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not (math.isfinite(temperature) and temperature > 0)
    ):
        raise ArgumentError(f"`temperature` must be a finite number > 0, got {temperature!r}")
    if temperature != 1.0 and task == "regression":
        raise ArgumentError(
            f"`temperature` scales classification logits; got {temperature!r} with task='regression'"
        )
    return _mc(model, x, n_samples, targets, task, seed, indices, chunk_size, memory_budget, split,
               float(temperature), collect=False)  # fmt: skip


def mc_logits(
    model: nn.Module,
    x: Tensor,
    n_samples: int = 30,
    *,
    seed: int = 0,
    indices: Tensor | None = None,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    split: bool = True,
) -> Tensor:
    """The per-sample outputs ``(N, B, ...)`` of the same seeded passes as :func:`mc_predict` (fp32).

    For fitting a temperature on validation data only (:func:`~lightning_bestpractices.uncertainty.
    fit_temperature`); predictions come from :func:`mc_predict`, which averages probabilities.

    Examples:
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
        >>> x = torch.randn(5, 4)
        >>> z = mc_logits(net, x, n_samples=8)
        >>> z.shape
        torch.Size([8, 5, 3])
        >>> torch.allclose(z.softmax(-1).mean(0), mc_predict(net, x, 8).mean_probs, atol=1e-6)
        True
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ArgumentError(f"`n_samples` must be an int >= 1, got {n_samples!r}")
    if not isinstance(x, Tensor) or x.dim() == 0:
        raise ArgumentError(f"`x` must be a batch-first Tensor, got {type(x).__name__}")
    return _mc(model, x, n_samples, None, "regression", seed, indices, chunk_size, memory_budget, split, 1.0,
               collect=True)  # fmt: skip


class _Collect:
    def __init__(self) -> None:
        self.parts: list[Tensor] = []

    def update(self, values: Tensor) -> None:
        self.parts.append(values)


def _mc(
    model: nn.Module,
    x: Tensor,
    n_samples: int,
    targets: Tensor | None,
    task: Task,
    seed: int,
    indices: Tensor | None,
    chunk_size: int | None,
    memory_budget: int | None,
    split: bool,
    temperature: float,
    collect: bool,
) -> Any:
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ArgumentError(f"`chunk_size` must be an int >= 1 or None, got {chunk_size!r}")
    if memory_budget is not None and (not isinstance(memory_budget, int) or memory_budget <= 0):
        raise ArgumentError(
            f"`memory_budget` must be a positive number of bytes or None, got {memory_budget!r}"
        )
    batch = x.shape[0]
    if targets is not None:
        targets = _check_targets(targets, task, batch).to(x.device)
    if indices is None:
        indices = torch.arange(batch, device=x.device)
    elif not isinstance(indices, Tensor) or indices.shape != (batch,) or indices.is_floating_point():
        raise ArgumentError(f"`indices` must be an integer Tensor of shape ({batch},), got {indices!r}")
    analysis = _check_dropout(model, x)  # before MC mode: the audit records one MC pass of its own
    plan = (_declared(model) or analysis.split) if split else None

    with torch.no_grad(), mc_dropout_mode(model, seed) as mc:
        if mc.unseeded:
            _warn_once(
                model,
                "unseeded" + ",".join(mc.unseeded),
                f"MC dropout: {mc.unseeded} have no seeded forward and use the global RNG, so results depend "
                "on batch and chunk size; give them `mc_forward` or use `register_stochastic(cls, forward)`.",
            )
        if split and plan is None:
            _warn_once(
                model,
                f"nosplit{type(model).__name__}:{analysis.reason}",
                f"MC dropout: no exact prefix/suffix split for {type(model).__name__} ({analysis.reason}); "
                "running batched full passes instead. Declare one with `mc_split()` (see MCDropoutMixin) to "
                "run the deterministic part once.",
            )
        state = None
        if plan is not None:
            state = plan.prefix(x.clone())  # an in-place op in the prefix must not change the caller's x
            if not _valid_state(state, batch):
                _warn_once(
                    model,
                    f"nosplit{type(model).__name__}",
                    f"MC dropout: no exact prefix/suffix split for {type(model).__name__} (the values crossing "
                    "the cut are not batch-first tensors); running batched full passes instead.",
                )
                plan, state = None, None
        source = state if plan is not None else x
        run = plan.suffix if plan is not None else model
        acc: Any = (
            _Collect()
            if collect
            else _Welford()
            if task == "regression"
            else _ClassificationAccumulator(targets)
        )

        def _pass(start: int, count: int, measure: bool = False) -> int:
            mc.set_rows(indices, torch.arange(start, start + count, device=x.device))
            inp = _expand(source, count)
            peak = [0]
            hooks = []
            if measure:

                def _hook(m: nn.Module, a: Any, o: Any) -> None:
                    peak[0] = max(peak[0], _nbytes(a) + _nbytes(o))

                hooks = [m.register_forward_hook(_hook) for m in model.modules() if not list(m.children())]
            try:
                out = run(inp)
            finally:
                for h in hooks:
                    h.remove()
            if not isinstance(out, Tensor) or out.shape[0] != count * batch:
                raise RuntimeError(
                    f"model output must be a Tensor with {count * batch} rows, got {_describe(out)}"
                )
            if task == "regression":
                acc.update(out.float().reshape(count, batch, *out.shape[1:]))
            else:
                acc.update(_log_probs(out, task, count, batch, temperature))
            return _nbytes(inp) + peak[0] + _nbytes(out)

        done = 0
        if chunk_size is None and memory_budget is not None:
            per_sample = _pass(0, 1, measure=True)
            if per_sample > memory_budget:
                raise ArgumentError(
                    f"`memory_budget`={memory_budget} bytes is too small for one MC sample of this batch "
                    f"(needs about {per_sample} bytes); raise it or use a smaller batch"
                )
            chunk_size, done = max(1, memory_budget // per_sample), 1
        chunk = n_samples if chunk_size is None else chunk_size
        while done < n_samples:
            count = min(chunk, n_samples - done)
            _pass(done, count)
            done += count

    if collect:
        return torch.cat(acc.parts)
    if task == "regression":
        return MCRegressionOutput(acc.mean, acc.variance, acc.n)
    return acc.result(binary=task == "binary")


def _describe(out: Any) -> str:
    return f"shape {tuple(out.shape)}" if isinstance(out, Tensor) else type(out).__name__


def _check_dropout(model: nn.Module, x: Tensor) -> Analysis:
    modules = find_stochastic_modules(model)
    if not modules:
        n_functional = count_functional_dropout_calls(model, x)
        hint = (
            f" It calls functional dropout (F.dropout & co.) {n_functional} time(s): those calls take their "
            "`training` flag from your code and cannot be switched on; use nn.Dropout modules instead."
            if n_functional
            else ""
        )
        raise ArgumentError(
            f"`model` ({type(model).__name__}) has no dropout-family module for MC dropout.{hint}"
        )
    check_rates(modules)
    analysis = analyse(model, x)
    if analysis.functional_dropouts:
        _warn_once(
            model,
            f"functional{type(model).__name__}",
            f"MC dropout: {type(model).__name__} also calls F.dropout-style functions "
            f"{analysis.functional_dropouts} time(s); those stay off during MC passes. Use nn.Dropout modules "
            "so they take part.",
        )
    return analysis


def output_fields(output: MCOutput | MCRegressionOutput) -> dict[str, Any]:
    """The dataclass fields as a dict (for logging / saving)."""
    return {f.name: getattr(output, f.name) for f in fields(output)}
