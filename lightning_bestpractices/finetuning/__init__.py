"""Transfer learning: layer groups, freezing, gradual unfreezing with discriminative LRs, the ``fine_tune`` preset.

Functional core (pure torch, any training loop): :mod:`.groups` (split a model into layer groups, freeze/unfreeze
them) and :mod:`.param_groups` (add optimizer groups that follow the configured LR schedule). Lightning shell:
:class:`GradualUnfreezing` and the :class:`FineTune` preset. See ``docs/finetuning.md``.
"""

from __future__ import annotations

from .callback import GradualUnfreezing
from .groups import LayerGroup, LayerGroupsMixin, freeze_group, group_parameters, layer_groups, unfreeze_group
from .param_groups import add_param_group, drop_frozen_parameters, group_index_of, scale_group_lr
from .preset import FineTune, fine_tune

__all__ = [
    "LayerGroup",
    "LayerGroupsMixin",
    "layer_groups",
    "group_parameters",
    "freeze_group",
    "unfreeze_group",
    "add_param_group",
    "scale_group_lr",
    "drop_frozen_parameters",
    "group_index_of",
    "GradualUnfreezing",
    "FineTune",
    "fine_tune",
]
