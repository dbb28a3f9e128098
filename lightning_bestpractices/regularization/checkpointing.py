"""Activation checkpointing of chosen blocks: store a block's input, recompute its inside during backward.

What :func:`checkpoint_blocks` adds over calling ``torch.utils.checkpoint.checkpoint`` inside every ``forward``:

* it is applied from outside, to blocks chosen by qualified name or by type, without editing the model's code, and
  undone with :func:`remove_checkpointing`; parameter names and ``state_dict`` keys do not change (the block's
  ``forward`` is replaced on the instance, not the block wrapped in a new parent);
* it always uses the non-reentrant implementation (``use_reentrant=False``: works with inputs that do not require
  grad, with keyword arguments, and under DDP), which keeps the RNG state (dropout draws the same mask when
  recomputed) and the autocast state (bf16-mixed recomputes in bf16), so gradients are the ones without it;
* BatchNorm (and any norm with running statistics) inside a checkpointed block would update its running
  statistics twice per step, once in the forward and again in the recompute. The recompute runs inside a context
  (``context_fn``) that saves those buffers and puts them back, so the statistics also match no checkpointing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from lightning_bestpractices.errors import ArgumentError

__all__ = ["checkpoint_blocks", "remove_checkpointing", "checkpointed_blocks"]


class _CheckpointedForward:
    """The instance-level ``forward`` of a checkpointed block (a picklable, deep-copyable object, not a closure)."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __call__(self, *args, **kwargs):
        module = self.module
        fwd = type(module).forward
        if not torch.is_grad_enabled() or not module.training:
            return fwd(module, *args, **kwargs)  # nothing to save memory on: run as usual
        return checkpoint(
            fwd, module, *args, use_reentrant=False, context_fn=lambda: _contexts(module), **kwargs
        )


def _contexts(module: nn.Module):
    return contextlib.nullcontext(), _keep_running_stats(module)


@contextlib.contextmanager
def _keep_running_stats(module: nn.Module) -> Iterator[None]:
    """Put every running-statistics buffer of ``module`` back after the recompute."""
    saved = [
        (b, b.detach().clone())
        for m in module.modules()
        if getattr(m, "track_running_stats", False)
        for b in m.buffers(recurse=False)
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, value in saved:
                b.copy_(value)


def checkpoint_blocks(
    model: nn.Module, *, names: Sequence[str] | None = None, types: Sequence[type] | None = None
) -> list[str]:
    """Checkpoint the submodules of ``model`` named in ``names`` and/or of a class in ``types``.

    A block inside another chosen block is left to its parent (checkpointing it too would only recompute twice).
    Active in training mode with grad enabled; in eval or under ``no_grad`` the block runs as usual.
    Returns the qualified names of the checkpointed blocks.

    Examples:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.Sequential(nn.ReLU(), nn.Linear(8, 8)), nn.Linear(8, 1))
        >>> checkpoint_blocks(net, names=["1"])
        ['1']
        >>> net(torch.randn(3, 4)).sum().backward()
        >>> remove_checkpointing(net)
        ['1']
    """
    if not names and not types:
        raise ArgumentError("`names` or `types` must choose at least one block to checkpoint")
    modules = dict(model.named_modules())
    if names:
        missing = [n for n in names if n not in modules or n == ""]
        if missing:
            raise ArgumentError(f"`names` {missing!r} match no submodule of {type(model).__name__}")
    if types and not all(isinstance(t, type) and issubclass(t, nn.Module) for t in types):
        raise ArgumentError(f"`types` must be nn.Module classes, got {types!r}")
    chosen = [
        n for n, m in modules.items()
        if n and ((names and n in names) or (types and isinstance(m, tuple(types))))
    ]  # fmt: skip
    if not chosen:
        raise ArgumentError(f"`types` {[t.__name__ for t in types or ()]} match no submodule of {type(model).__name__}")
    outer = [n for n in chosen if not any(n.startswith(o + ".") for o in chosen if o != n)]
    for n in outer:
        m = modules[n]
        if isinstance(m.__dict__.get("forward"), _CheckpointedForward):
            continue
        if "forward" in m.__dict__:
            raise RuntimeError(f"block {n!r} already has an instance-level `forward`; cannot checkpoint it")
        m.forward = _CheckpointedForward(m)
    return outer


def checkpointed_blocks(model: nn.Module) -> list[str]:
    """Qualified names of the blocks of ``model`` that :func:`checkpoint_blocks` checkpointed."""
    return [n for n, m in model.named_modules() if isinstance(m.__dict__.get("forward"), _CheckpointedForward)]


def remove_checkpointing(model: nn.Module) -> list[str]:
    """Undo :func:`checkpoint_blocks` on every block of ``model``; returns the names it restored."""
    names = checkpointed_blocks(model)
    for n, m in model.named_modules():
        if n in names:
            del m.__dict__["forward"]
    return names
