"""Initialization practices: activation-aware ``init_weights``, ``lsuv_init`` and the ``WeightInit`` callback.

See ``docs/initialization.md``.
"""

from __future__ import annotations

from .activations import Activation
from .callback import WeightInit
from .core import SCHEMES, WEIGHT_LAYERS, InitReport, LayerInit, init_weights
from .lsuv import LSUVReport, lsuv_init

__all__ = [
    "init_weights",
    "InitReport",
    "LayerInit",
    "SCHEMES",
    "WEIGHT_LAYERS",
    "Activation",
    "lsuv_init",
    "LSUVReport",
    "WeightInit",
]
