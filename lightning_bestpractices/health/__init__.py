"""Training health: gradient monitoring without per-step syncs, a non-finite guard that agrees across ranks, and
early stopping that ends with the best weights.

Functional core (``health.functional``, pure torch, no Lightning import): :func:`grad_norm_by_group`, :func:`update_ratio_by_group`,
:func:`maybe_nonfinite`, :func:`first_nonfinite`. Lightning shells: :class:`GradientMonitor`,
:class:`NonFiniteGuard`, :class:`EarlyStopping`.
"""

from __future__ import annotations

from lightning_bestpractices._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        ".parity": ["RankParity", "max_rank_difference"],
        ".functional": [
            "first_nonfinite",
            "grad_norm_by_group",
            "group_names",
            "maybe_nonfinite",
            "update_ratio_by_group",
        ],
        ".gradients": ["GradientMonitor"],
        ".nonfinite": ["NonFiniteGuard"],
        ".stopping": ["EarlyStopping"],
    },
)
