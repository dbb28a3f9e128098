"""Normalization practices: no-decay parameter groups, frozen BatchNorm, norm conversion, BatchNorm folding.

Functional core only (pure torch); every function works in any training loop. See ``docs/normalization.md``.
"""

from __future__ import annotations

from lightning_bestpractices._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        ".convert": ["batchnorm_to_groupnorm", "batchnorm_to_syncbn", "group_count"],
        ".fold": ["FoldReport", "fold_batchnorm"],
        ".frozen": ["FrozenBatchNorm", "freeze_batchnorm", "unfreeze_batchnorm"],
        ".groups": [
            "NORM_TYPES",
            "is_norm",
            "no_decay_parameters",
            "norm_types",
            "param_groups",
            "register_norm",
            "unregister_norm",
        ],
    },
)
