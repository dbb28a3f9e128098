"""A classifier whose optimizer and schedule come from an :class:`~lightning_bestpractices.optim.mixin.OptimConfig`.

The package's :class:`~lightning_bestpractices.tasks.Classifier` (loss, torchmetrics accuracy, logging) with
:class:`~lightning_bestpractices.optim.mixin.OptimizerMixin` in front, so a recipe YAML chooses the optimizer, the
LR multipliers and the schedule::

    model:
      class_path: lightning_bestpractices.optim.OptimClassifier
      init_args:
        net: {class_path: lightning_bestpractices.models.MLP, init_args: {in_features: 64, hidden: [128], out_features: 10}}
        num_classes: 10
        optim: {optimizer: adamw, lr: 3.0e-3, weight_decay: 0.05,
                schedule: {name: cosine, warmup: 5%, final_lr: 1.0e-5}}
"""

from __future__ import annotations

from typing import Any, Literal

from torch import nn

from lightning_bestpractices.errors import ArgumentError
from lightning_bestpractices.tasks import Classifier

from .mixin import OptimConfig, OptimizerMixin

__all__ = ["OptimClassifier"]


class OptimClassifier(OptimizerMixin, Classifier):
    """:class:`~lightning_bestpractices.tasks.Classifier` trained with the optimizer/schedule of ``optim``.

    Args:
        net: the network (one logit for binary, ``num_classes`` logits otherwise).
        num_classes: number of classes.
        task: ``"binary"`` or ``"multiclass"`` (default from ``num_classes``).
        optim: an :class:`OptimConfig` or its fields as a mapping (see the module docstring).

    Example:
        >>> from lightning_bestpractices.models import MLP
        >>> m = OptimClassifier(MLP(2, [8], 1), optim={"optimizer": "nesterov", "lr": 0.05})
        >>> opt = m.configure_optimizers()
        >>> type(opt).__name__, opt.param_groups[0]["nesterov"], opt.param_groups[0]["lr"]
        ('SGD', True, 0.05)
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int = 2,
        task: Literal["binary", "multiclass"] | None = None,
        optim: OptimConfig | dict[str, Any] | None = None,
    ) -> None:
        config = OptimConfig.from_any(optim)
        parent = dict(num_classes=num_classes, task=task, lr=config.lr if config.lr > 0 else 1.0,
                      weight_decay=config.weight_decay, cosine_epochs=0)  # fmt: skip
        super().__init__(net, **parent)
        self.optim = config
        for prefix in config.lr_multipliers:  # fail at construction, not at fit start
            try:
                self.get_submodule(prefix)
            except AttributeError:
                raise ArgumentError(f"`lr_multipliers` key {prefix!r} is not a submodule of the model") from None
