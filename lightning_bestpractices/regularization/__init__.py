"""Regularization: weight penalties, max-norm, DropPath / DropConnect, activation checkpointing.

Functional core (pure torch): :func:`weight_penalty`, :func:`add_penalty_grad_`, :func:`decay_parameters`,
:func:`max_norm_`, :func:`unit_norms`, :func:`linear_drop_path_rates`, :func:`checkpoint_blocks`. Modules:
:class:`DropPath`, :class:`DropConnect` (seeded MC modules, registered with ``uncertainty`` on import).
Lightning shells: :class:`WeightPenalty`, :class:`MaxNorm`. Sparsity through Lightning's ``ModelPruning``:
:func:`sparsity`.
"""

from __future__ import annotations

from lightning_bestpractices._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        ".callbacks": ["MaxNorm", "WeightPenalty"],
        ".checkpointing": ["checkpoint_blocks", "checkpointed_blocks", "remove_checkpointing"],
        ".drop": ["DropConnect", "DropPath", "check_drop_p", "linear_drop_path_rates"],
        ".maxnorm": ["DEFAULT_MAX_NORM_TYPES", "max_norm_", "max_norm_targets", "unit_norms"],
        ".penalties": ["add_penalty_grad_", "decay_parameters", "weight_penalty"],
        ".sparsity": ["sparsity"],
    },
)
