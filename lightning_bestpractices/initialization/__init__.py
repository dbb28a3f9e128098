"""Initialization practices: activation-aware ``init_weights``, ``lsuv_init`` and the ``WeightInit`` callback.

See ``docs/initialization.md``.
"""

from __future__ import annotations

from lightning_bestpractices._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        ".diagnostics": ["DepthDiagnostics", "DepthStats", "depth_statistics", "plot_depth"],
        ".activations": ["Activation"],
        ".callback": ["WeightInit"],
        ".core": ["SCHEMES", "WEIGHT_LAYERS", "InitReport", "LayerInit", "init_weights"],
        ".lsuv": ["LSUVReport", "lsuv_init"],
    },
)
