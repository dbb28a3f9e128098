"""Normalization practices: no-decay parameter groups, frozen BatchNorm, norm conversion, BatchNorm folding.

Functional core only (pure torch); every function works in any training loop. See ``docs/normalization.md``.
"""

from __future__ import annotations

from .convert import batchnorm_to_groupnorm, batchnorm_to_syncbn, group_count
from .fold import FoldReport, fold_batchnorm
from .frozen import FrozenBatchNorm, freeze_batchnorm, unfreeze_batchnorm
from .groups import (
    NORM_TYPES,
    is_norm,
    no_decay_parameters,
    norm_types,
    param_groups,
    register_norm,
    unregister_norm,
)

__all__ = [
    "NORM_TYPES",
    "register_norm",
    "unregister_norm",
    "norm_types",
    "is_norm",
    "no_decay_parameters",
    "param_groups",
    "FrozenBatchNorm",
    "freeze_batchnorm",
    "unfreeze_batchnorm",
    "batchnorm_to_groupnorm",
    "batchnorm_to_syncbn",
    "group_count",
    "fold_batchnorm",
    "FoldReport",
]
