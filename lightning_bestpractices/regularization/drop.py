"""DropPath (stochastic depth) and DropConnect, both seeded MC modules of the ``uncertainty`` registry.

* :class:`DropPath` is ``torchvision.ops.StochasticDepth`` (same maths in training: each sample's whole residual
  branch is zeroed with probability ``p`` and the survivors scaled by ``1 / (1 - p)``) with what it lacks: ``p`` in
  ``[0, 1)`` checked with a clear error, and :func:`linear_drop_path_rates`, the usual schedule that grows the rate
  linearly with depth.
* :class:`DropConnect` wraps a ``Linear`` or ``ConvNd`` and drops *weights* instead of activations (Wan et al.,
  2013): in training, one Bernoulli(1 - p) mask over the weight per forward, survivors scaled by ``1 / (1 - p)``,
  bias kept. Evaluation uses the plain layer. PyTorch has no DropConnect layer.

Importing this module registers both with :func:`lightning_bestpractices.uncertainty.register_stochastic`, with
seeded forwards that draw from the :class:`~lightning_bestpractices.uncertainty.RowRandom` they are given: under
``mc_predict`` each (input, sample) row gets its own mask, the same whatever the batch or chunk size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call
from torchvision.ops import StochasticDepth

from lightning_bestpractices.errors import ArgumentError
from lightning_bestpractices.uncertainty import RowRandom, register_stochastic
from lightning_bestpractices.uncertainty.seeded import BUILT_IN_FORWARDS

__all__ = ["check_drop_p", "linear_drop_path_rates", "DropPath", "DropConnect"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def check_drop_p(p: float, name: str = "p") -> float:
    """Return ``float(p)``; raise ``ValueError`` naming the argument unless ``0 <= p < 1``."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise ArgumentError(f"`{name}` must be a drop probability in [0, 1), got {p!r}")
    return float(p)


def linear_drop_path_rates(depth: int, max_rate: float, min_rate: float = 0.0) -> list[float]:
    """Drop-path rate per block, growing linearly from ``min_rate`` (first block) to ``max_rate`` (last block).

    Early blocks compute features every later block needs, so they are dropped least (Huang et al., 2016).

    Examples:
        >>> linear_drop_path_rates(5, 0.2)
        [0.0, 0.05, 0.1, 0.15, 0.2]
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ArgumentError(f"`depth` must be an int >= 1, got {depth!r}")
    check_drop_p(max_rate, "max_rate")
    check_drop_p(min_rate, "min_rate")
    if min_rate > max_rate:
        raise ArgumentError(f"`min_rate` must be <= `max_rate`, got {min_rate!r} > {max_rate!r}")
    if depth == 1:
        return [float(max_rate)]
    return [round(min_rate + (max_rate - min_rate) * i / (depth - 1), 12) for i in range(depth)]


class DropPath(StochasticDepth):
    """Stochastic depth on a residual branch: ``x + DropPath(p)(branch(x))``.

    Args:
        p: probability of dropping a sample's branch, in ``[0, 1)``.
        mode: ``"row"`` (each sample on its own, the usual choice) or ``"batch"`` (the whole batch at once).

    Examples:
        >>> _ = torch.manual_seed(0)
        >>> drop = DropPath(0.5).train()
        >>> y = drop(torch.ones(6, 3))
        >>> sorted(set(y[:, 0].tolist())), bool((y == y[:, :1]).all())   # whole rows kept (x2) or dropped
        ([0.0, 2.0], True)
        >>> DropPath(0.5).eval()(torch.ones(2, 3)).tolist()
        [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    """

    def __init__(self, p: float = 0.1, mode: str = "row") -> None:
        if mode not in ("row", "batch"):
            raise ArgumentError(f"`mode` must be 'row' or 'batch', got {mode!r}")
        super().__init__(check_drop_p(p), mode)


# DropPath is a StochasticDepth: it draws its masks with the built-in seeded forward (exact at p == 1 too)
_drop_path_seeded = BUILT_IN_FORWARDS[StochasticDepth]


def _survivor_scale(p: float) -> float:
    """DropConnect's ``1 / (1 - p)``; at ``p == 1`` (set after construction, which mc_predict accepts) every weight is dropped,
    the mask is all zeros, and any finite scale gives the same zeros."""
    return 1.0 / (1.0 - p) if p < 1.0 else 0.0


class DropConnect(nn.Module):
    """Drop each weight of a wrapped ``Linear`` / ``Conv1d`` / ``Conv2d`` / ``Conv3d`` with probability ``p``.

    The wrapped layer stays reachable as ``.layer`` (its parameters are ``layer.weight`` / ``layer.bias``, so the
    no-decay grouping, weight init and max-norm see an ordinary layer).

    Args:
        layer: the layer to wrap.
        p: weight drop probability, in ``[0, 1)``.

    Examples:
        >>> _ = torch.manual_seed(0)
        >>> dc = DropConnect(nn.Linear(4, 3), p=0.5)
        >>> dc.eval()(torch.ones(1, 4)).shape, dc.p
        (torch.Size([1, 3]), 0.5)
        >>> torch.equal(dc.eval()(torch.ones(2, 4)), dc.layer(torch.ones(2, 4)))
        True
    """

    def __init__(self, layer: nn.Module, p: float = 0.5) -> None:
        super().__init__()
        if not isinstance(layer, (nn.Linear, *_CONVS)):
            raise ArgumentError(f"`layer` must be an nn.Linear or nn.Conv1d/2d/3d, got {type(layer).__name__}")
        self.layer = layer
        self.p = check_drop_p(p)

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return self.layer(x)
        w = self.layer.weight
        keep = torch.empty_like(w).bernoulli_(1.0 - self.p)
        return functional_call(self.layer, {"weight": w * keep.mul_(_survivor_scale(self.p))}, (x,))


def _drop_connect_seeded(module: DropConnect, x: Tensor, rng: RowRandom) -> Tensor:
    """One weight mask per (input, sample) row: a batched matmul (Linear) or a grouped convolution (Conv)."""
    p = float(module.p)
    layer = module.layer
    if p == 0.0:
        return layer(x)
    rng.check_rows(x, module)
    w = layer.weight
    keep = rng.keep_mask(w.shape, p, w.dtype)  # (rows, *w.shape)
    weights = w.unsqueeze(0) * keep.mul_(_survivor_scale(p))
    rows = x.shape[0]
    if isinstance(layer, nn.Linear):
        flat = x.reshape(rows, -1, x.shape[-1])  # (rows, *, in) -> (rows, m, in)
        y = torch.bmm(flat, weights.to(flat.dtype).transpose(1, 2))
        if layer.bias is not None:
            y = y + layer.bias.to(y.dtype)
        return y.reshape(*x.shape[:-1], w.shape[0])
    if layer.padding_mode != "zeros":  # rare: one call per row through the layer's own forward (exact, slower)
        return torch.cat([functional_call(layer, {"weight": weights[r]}, (x[r : r + 1],)) for r in range(rows)])
    nd = w.dim() - 2
    grouped = x.reshape(1, rows * x.shape[1], *x.shape[2:])  # rows become groups of one convolution
    out = _CONV_FN[nd](
        grouped, weights.reshape(rows * w.shape[0], *w.shape[1:]).to(grouped.dtype),
        None, layer.stride, layer.padding, layer.dilation, layer.groups * rows,
    )  # fmt: skip
    out = out.reshape(rows, w.shape[0], *out.shape[2:])
    if layer.bias is not None:
        out = out + layer.bias.to(out.dtype).view(1, -1, *([1] * nd))
    return out


register_stochastic(DropPath, _drop_path_seeded)
register_stochastic(DropConnect, _drop_connect_seeded)
