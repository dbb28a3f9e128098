"""Regularization: weight penalties, max-norm, DropPath / DropConnect, activation checkpointing.

Functional core (pure torch): :func:`weight_penalty`, :func:`add_penalty_grad_`, :func:`decay_parameters`,
:func:`max_norm_`, :func:`unit_norms`, :func:`linear_drop_path_rates`, :func:`checkpoint_blocks`. Modules:
:class:`DropPath`, :class:`DropConnect` (seeded MC modules, registered with ``uncertainty`` on import).
Lightning shells: :class:`WeightPenalty`, :class:`MaxNorm`. Sparsity through Lightning's ``ModelPruning``:
:func:`sparsity`.
"""

from __future__ import annotations

from .callbacks import MaxNorm, WeightPenalty
from .checkpointing import checkpoint_blocks, checkpointed_blocks, remove_checkpointing
from .drop import DropConnect, DropPath, check_drop_p, linear_drop_path_rates
from .maxnorm import DEFAULT_MAX_NORM_TYPES, max_norm_, max_norm_targets, unit_norms
from .penalties import add_penalty_grad_, decay_parameters, weight_penalty
from .sparsity import sparsity

__all__ = [
    "DEFAULT_MAX_NORM_TYPES",
    "DropConnect",
    "DropPath",
    "MaxNorm",
    "WeightPenalty",
    "add_penalty_grad_",
    "check_drop_p",
    "checkpoint_blocks",
    "checkpointed_blocks",
    "decay_parameters",
    "linear_drop_path_rates",
    "max_norm_",
    "max_norm_targets",
    "remove_checkpointing",
    "sparsity",
    "unit_norms",
    "weight_penalty",
]
