"""``lsuv_init``: layer-sequential unit-variance initialization (Mishkin & Matas, "All you need is a good init",
ICLR 2016).

Orthonormal pre-init of every weight layer, then, layer by layer in execution order, the weight is rescaled until
the layer's output std on a data batch is within ``tol`` of ``target_std``. torch has no LSUV; what this
implementation adds over the paper's reference loop: it runs on the model's own device and dtype (statistics in
float32), stops each probe forward right after the layer being scaled, restores train/eval mode and keeps no
global state (hooks are removed even on error; randomness only from ``generator`` or the global RNG).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from lightning_bestpractices.errors import ArgumentError

from .._logging import format_table
from .core import WEIGHT_LAYERS

__all__ = ["lsuv_init", "LSUVReport"]


class _Stop(Exception):
    pass


@dataclass
class LSUVReport:
    """Per layer, in execution order: iterations used, output std before/after scaling, and whether it converged."""

    rows: list[list] = field(default_factory=list)
    columns: ClassVar[list[str]] = ["layer", "type", "iterations", "std_before", "std_after", "converged"]

    @property
    def converged(self) -> bool:
        return all(r[-1] for r in self.rows)

    def __str__(self) -> str:
        return "lsuv_init:\n" + format_table(self.columns, self.rows)


def _call(module: nn.Module, batch: Any) -> Any:
    if isinstance(batch, dict):
        return module(**batch)
    if isinstance(batch, (tuple, list)):
        return module(*batch)
    return module(batch)


def _to(batch: Any, device: torch.device, dtype: torch.dtype) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device=device, dtype=dtype if batch.is_floating_point() else batch.dtype)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to(b, device, dtype) for b in batch)
    if isinstance(batch, dict):
        return {k: _to(v, device, dtype) for k, v in batch.items()}
    return batch


def lsuv_init(
    module: nn.Module,
    batch: Any,
    *,
    target_std: float = 1.0,
    tol: float = 0.1,
    max_iters: int = 10,
    orthogonal_preinit: bool = True,
    generator: torch.Generator | None = None,
) -> LSUVReport:
    """Initialize ``module``'s Linear/Conv layers in place so each layer's output std on ``batch`` is ``target_std``.

    Args:
        module: the model. Runs on its own device/dtype; the model is never moved, train/eval mode is restored.
            Forward passes run in eval mode (no dropout, BatchNorm statistics untouched) without gradients.
        batch: model input (``module(batch)``, ``module(*batch)`` for tuple/list, ``module(**batch)`` for dict),
            at least 2 samples; floating tensors are cast to the module's dtype and device.
        target_std: the wanted output std of each layer.
        tol: stop scaling a layer when ``|std - target_std| <= tol``.
        max_iters: most rescaling steps per layer.
        orthogonal_preinit: start from orthonormal weights (the paper) and zero biases; ``False`` rescales the
            existing weights.
        generator: RNG for the orthogonal pre-init.

    Raises:
        lightning_bestpractices.errors.ArgumentError: if the model has no Linear/Conv layers, the batch is too small, or it does not fit the model.

    Examples:
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> net = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 4))
        >>> report = lsuv_init(net, torch.randn(64, 16), tol=0.05)
        >>> report.converged, [r[0] for r in report.rows]
        (True, ['0', '2', '4'])
    """
    if not isinstance(module, nn.Module):
        raise ArgumentError(f"`module` must be an nn.Module, got {type(module).__name__}")
    if not (isinstance(target_std, (int, float)) and target_std > 0 and math.isfinite(target_std)):
        raise ArgumentError(f"`target_std` must be a finite number > 0, got {target_std!r}")
    if not (isinstance(tol, (int, float)) and 0 < tol < target_std):
        raise ArgumentError(f"`tol` must be in (0, target_std), got {tol!r}")
    if not isinstance(max_iters, int) or isinstance(max_iters, bool) or max_iters < 1:
        raise ArgumentError(f"`max_iters` must be an int >= 1, got {max_iters!r}")
    names = {id(m): n for n, m in module.named_modules()}
    layers = [m for m in module.modules() if isinstance(m, WEIGHT_LAYERS)]
    if not layers:
        raise ArgumentError(
            f"lsuv_init found no Linear/Conv layers in {type(module).__name__}: nothing to initialize"
        )
    first = next(iter(module.parameters()))
    tensors = (
        [batch]
        if isinstance(batch, torch.Tensor)
        else [b for b in _flat(batch) if isinstance(b, torch.Tensor)]
    )
    if not tensors:
        raise ArgumentError(f"`batch` must be a tensor or contain tensors, got {type(batch).__name__}")
    if tensors[0].dim() == 0 or tensors[0].shape[0] < 2:
        raise ArgumentError(
            f"`batch` needs at least 2 samples to measure a std, got shape {tuple(tensors[0].shape)}"
        )
    batch = _to(batch, first.device, first.dtype)

    modes = {m: m.training for m in module.modules()}
    order: list[nn.Module] = []
    handles = []
    report = LSUVReport()
    try:
        module.eval()
        with torch.no_grad():
            # execution order (a layer that never runs is left out), and a clear error on a bad batch
            handles = [
                m.register_forward_hook(lambda m, i, o: order.append(m) if m not in order else None)
                for m in layers
            ]
            try:
                _call(module, batch)
            except (RuntimeError, TypeError, ValueError) as err:
                shape = tuple(tensors[0].shape)
                raise ArgumentError(
                    f"`batch` of shape {shape} does not fit {type(module).__name__}: {err}"
                ) from err
            for h in handles:
                h.remove()
            handles = []
            if orthogonal_preinit:  # only now: a bad batch above must leave the model untouched
                for layer in layers:
                    nn.init.orthogonal_(layer.weight, generator=generator)
                    if layer.bias is not None:
                        layer.bias.zero_()
            for layer in order:
                std = before = _layer_std(module, batch, layer)
                it = 0
                while abs(std - target_std) > tol and it < max_iters and std > 0 and math.isfinite(std):
                    layer.weight.mul_(target_std / std)
                    if layer.bias is not None:
                        layer.bias.mul_(target_std / std)
                    std = _layer_std(module, batch, layer)
                    it += 1
                report.rows.append(
                    [names[id(layer)], type(layer).__name__, it, before, std, abs(std - target_std) <= tol]
                )
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    return report


def _layer_std(module: nn.Module, batch: Any, layer: nn.Module) -> float:
    """Output std of ``layer`` (float32); the forward stops right after ``layer``."""
    stats: list[float] = []

    def probe(m, i, out):
        o = out if isinstance(out, torch.Tensor) else out[0]
        stats.append(float(o.detach().float().std()))
        raise _Stop

    handle = layer.register_forward_hook(probe)
    try:
        _call(module, batch)
    except _Stop:
        pass
    finally:
        handle.remove()
    return stats[-1]


def _flat(obj: Any):
    if isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _flat(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _flat(o)
    else:
        yield obj
