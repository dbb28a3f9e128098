"""Transfer learning: layer groups, freezing, gradual unfreezing with discriminative LRs, the ``fine_tune`` preset.

Functional core (pure torch, any training loop): :mod:`.groups` (split a model into layer groups, freeze/unfreeze
them) and :mod:`.param_groups` (add optimizer groups that follow the configured LR schedule). Lightning shell:
:class:`GradualUnfreezing` and the :class:`FineTune` preset. See ``docs/finetuning.md``.
"""

from __future__ import annotations

from lightning_bestpractices._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        ".callback": ["GradualUnfreezing"],
        ".groups": [
            "LayerGroup",
            "LayerGroupsMixin",
            "freeze_group",
            "group_parameters",
            "layer_groups",
            "unfreeze_group",
        ],
        ".param_groups": ["add_param_group", "drop_frozen_parameters", "group_index_of", "scale_group_lr"],
        ".preset": ["FineTune", "fine_tune"],
    },
)
