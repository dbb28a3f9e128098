"""Monte Carlo dropout and uncertainty: seeded, prefix-cached MC predictions, measures, calibration, Lightning mixin.

Functional core: :func:`mc_predict`, :func:`uncertainty_measures`, :func:`mc_dropout_mode`,
:func:`register_stochastic`, :func:`find_split`. Lightning shell: :class:`MCDropoutMixin`. Reporting:
:func:`calibration_metrics`, :func:`reliability_diagram`, :func:`uncertainty_histogram`.
"""

from __future__ import annotations

from .calibration import (
    calibration_metrics,
    log_calibration_figures,
    reliability_diagram,
    uncertainty_auroc,
    uncertainty_histogram,
)
from .functional import MCOutput, MCRegressionOutput, mc_logits, mc_predict, uncertainty_measures
from .mixin import MCDropoutMixin, MCResult
from .mode import MCState, mc_dropout_mode
from .rng import RowRandom
from .split import Split, explain_split, find_split
from .stochastic import (
    find_stochastic_modules,
    register_stochastic,
    stochastic_rate,
    stochastic_registry,
    unregister_stochastic,
)
from .temperature import fit_temperature, temperature_nll

__all__ = [
    "MCDropoutMixin",
    "MCResult",
    "calibration_metrics",
    "log_calibration_figures",
    "reliability_diagram",
    "uncertainty_auroc",
    "uncertainty_histogram",
    "MCOutput",
    "MCRegressionOutput",
    "RowRandom",
    "MCState",
    "Split",
    "explain_split",
    "find_split",
    "find_stochastic_modules",
    "fit_temperature",
    "mc_dropout_mode",
    "mc_logits",
    "mc_predict",
    "register_stochastic",
    "stochastic_rate",
    "stochastic_registry",
    "temperature_nll",
    "uncertainty_measures",
    "unregister_stochastic",
]
