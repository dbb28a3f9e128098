"""Norm conversion helpers: BatchNorm -> GroupNorm (small batches) and BatchNorm -> SyncBatchNorm (DDP).

For DDP training with Lightning, **use ``Trainer(sync_batchnorm=True)``**: it performs exactly the SyncBatchNorm
conversion at setup, with the right process group. :func:`batchnorm_to_syncbn` is for plain-torch loops and for
checking what the Trainer will do; it delegates to ``nn.SyncBatchNorm.convert_sync_batchnorm``.

What :func:`batchnorm_to_groupnorm` adds (torch has no such converter): it chooses a valid group count per layer
and moves the affine Parameter objects into the GroupNorm (optimizers keep working).
"""

from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from lightning_bestpractices.errors import ArgumentError

from .frozen import FrozenBatchNorm

__all__ = ["batchnorm_to_groupnorm", "batchnorm_to_syncbn", "group_count"]


def group_count(num_channels: int, num_groups: int) -> int:
    """Largest divisor of ``num_channels`` that is ``<= num_groups`` (GroupNorm needs groups to divide channels).

    Examples:
        >>> group_count(64, 32), group_count(24, 32), group_count(30, 8)
        (32, 24, 6)
    """
    return max(g for g in range(1, min(num_groups, num_channels) + 1) if num_channels % g == 0)


def batchnorm_to_groupnorm(module: nn.Module, num_groups: int = 32, *, eps: float | None = None) -> nn.Module:
    """Replace every BatchNorm (1d/2d/3d, SyncBatchNorm, FrozenBatchNorm) with ``GroupNorm`` in place.

    GroupNorm does not depend on the batch size, so it is the usual replacement when per-device batches are
    small (< 8-16 samples). Each layer gets ``group_count(C, num_groups)`` groups; the BatchNorm's affine
    parameters (the same objects) become the GroupNorm's, the running statistics are dropped. The model must be
    retrained or fine-tuned afterwards: GroupNorm normalizes per sample, so outputs change. Returns ``module``
    (or the replacement, if ``module`` itself is a BatchNorm).

    Examples:
        >>> net = batchnorm_to_groupnorm(nn.Sequential(nn.Conv2d(3, 48, 3), nn.BatchNorm2d(48)), num_groups=32)
        >>> net[1]
        GroupNorm(24, 48, eps=1e-05, affine=True, bias=True)
    """
    if not isinstance(num_groups, int) or isinstance(num_groups, bool) or num_groups < 1:
        raise ArgumentError(f"`num_groups` must be a positive int, got {num_groups!r}")
    if eps is not None and not eps > 0:
        raise ArgumentError(f"`eps` must be > 0, got {eps!r}")

    def convert(bn: nn.Module) -> nn.GroupNorm:
        c = bn.num_features
        gn = nn.GroupNorm(group_count(c, num_groups), c, eps=bn.eps if eps is None else eps, affine=bn.affine)
        if bn.affine:
            gn.weight, gn.bias = bn.weight, bn.bias
        return gn

    if isinstance(module, (_BatchNorm, FrozenBatchNorm)):
        return convert(module)
    for name, child in list(module.named_children()):
        if isinstance(child, (_BatchNorm, FrozenBatchNorm)):
            setattr(module, name, convert(child))
        else:
            batchnorm_to_groupnorm(child, num_groups, eps=eps)
    return module


def batchnorm_to_syncbn(module: nn.Module, process_group=None) -> nn.Module:
    """``nn.SyncBatchNorm.convert_sync_batchnorm`` (parameters and buffers are the same objects afterwards).

    With Lightning, prefer ``Trainer(strategy="ddp", sync_batchnorm=True)``, which does this conversion for you.

    Examples:
        >>> net = batchnorm_to_syncbn(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)))
        >>> type(net[1]).__name__
        'SyncBatchNorm'
    """
    if not isinstance(module, nn.Module):
        raise ArgumentError(f"`module` must be an nn.Module, got {type(module).__name__}")
    return nn.SyncBatchNorm.convert_sync_batchnorm(module, process_group)
