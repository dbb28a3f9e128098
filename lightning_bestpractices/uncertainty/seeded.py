"""Seeded forwards of the built-in dropout family: the same maths as torch / torchvision, a different RNG.

Each takes ``(module, x, rng)`` with ``rng`` a :class:`~lightning_bestpractices.uncertainty.RowRandom` and draws
its mask from it, so a mask depends on ``(seed, input index, sample index)`` only.
"""

from __future__ import annotations

import math

from torch import Tensor, nn
from torchvision.ops import StochasticDepth

from .rng import RowRandom

__all__ = ["BUILT_IN_FORWARDS"]

_ALPHA = 1.7580993408473766  # SELU's -alpha * scale, as in torch's alpha_dropout


def _channel_shape(x: Tensor) -> tuple[int, ...]:
    return (x.shape[1],) + (1,) * (x.dim() - 2) if x.dim() >= 3 else tuple(x.shape[1:])


def _dropout(module: nn.Module, x: Tensor, rng: RowRandom, channel: bool = False) -> Tensor:
    p = float(module.p)
    if p == 0.0:
        return x
    rng.check_rows(x, module)
    if p == 1.0:
        return x * 0.0
    keep = rng.keep_mask(_channel_shape(x) if channel else x.shape[1:], p, x.dtype)
    return x * keep.mul_(1.0 / (1.0 - p))


def _alpha_dropout(module: nn.Module, x: Tensor, rng: RowRandom, channel: bool = False) -> Tensor:
    p = float(module.p)
    if p == 0.0:
        return x
    rng.check_rows(x, module)
    if p == 1.0:
        return x * 0.0
    keep = rng.keep_mask(_channel_shape(x) if channel else x.shape[1:], p, x.dtype)
    a = 1.0 / math.sqrt((_ALPHA * _ALPHA * p + 1) * (1 - p))
    return x * (keep * a) + (keep - 1) * (_ALPHA * a) + _ALPHA * a * p


def _stochastic_depth(module: StochasticDepth, x: Tensor, rng: RowRandom) -> Tensor:
    p = float(module.p)
    if p == 0.0:
        return x
    rng.check_rows(x, module)
    keep = rng.keep_mask((1,) * (x.dim() - 1), p, x.dtype, per_input=module.mode == "row")
    return x * (keep / (1.0 - p)) if p < 1.0 else x * keep


BUILT_IN_FORWARDS = {
    nn.Dropout: _dropout,
    nn.Dropout1d: lambda m, x, r: _dropout(m, x, r, channel=True),
    nn.Dropout2d: lambda m, x, r: _dropout(m, x, r, channel=True),
    nn.Dropout3d: lambda m, x, r: _dropout(m, x, r, channel=True),
    nn.AlphaDropout: _alpha_dropout,
    nn.FeatureAlphaDropout: lambda m, x, r: _alpha_dropout(m, x, r, channel=True),
    StochasticDepth: _stochastic_depth,
}
