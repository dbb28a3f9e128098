"""Monte Carlo dropout and uncertainty: seeded, prefix-cached MC predictions, measures, calibration, Lightning mixin.

Functional core: :func:`mc_predict`, :func:`uncertainty_measures`, :func:`mc_dropout_mode`,
:func:`register_stochastic`, :func:`find_split`. Lightning shell: :class:`MCDropoutMixin`. Reporting:
:func:`calibration_metrics`, :func:`reliability_diagram`, :func:`uncertainty_histogram`.
"""

from __future__ import annotations

from lightning_bestpractices._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        ".calibration": [
            "calibration_metrics",
            "log_calibration_figures",
            "reliability_diagram",
            "uncertainty_auroc",
            "uncertainty_histogram",
        ],
        ".functional": ["MCOutput", "MCRegressionOutput", "mc_logits", "mc_predict", "uncertainty_measures"],
        ".mixin": ["MCDropoutMixin", "MCResult"],
        ".mode": ["MCState", "mc_dropout_mode"],
        ".rng": ["RowRandom"],
        ".split": ["Split", "explain_split", "find_split"],
        ".stochastic": [
            "find_stochastic_modules",
            "register_stochastic",
            "stochastic_rate",
            "stochastic_registry",
            "unregister_stochastic",
        ],
        ".temperature": ["fit_temperature", "temperature_nll"],
    },
)
