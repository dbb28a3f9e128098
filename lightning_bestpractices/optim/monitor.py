"""LR, momentum and weight decay per named parameter group: Lightning's ``LearningRateMonitor``, extended.

Lightning's monitor already names keys after a group's ``"name"`` (``lr-cosine/decay``) and reads Adam's
``betas[0]`` as momentum. What :class:`GroupLRMonitor` adds:

* momentum and weight decay are on by default (they are what schedules like 1cycle change);
* optimizers that have no momentum (Adagrad, plain SGD with ``momentum=0``) log no ``-momentum`` key, instead of
  Lightning's warning plus a constant 0;
* groups added mid-training (gradual unfreezing) get their own keys from the next step on.
"""

from __future__ import annotations

from typing import Any, Literal

from lightning.pytorch.callbacks import LearningRateMonitor
from torch.optim import Optimizer

from lightning_bestpractices.errors import ArgumentError

__all__ = ["GroupLRMonitor"]


class GroupLRMonitor(LearningRateMonitor):
    """``LearningRateMonitor(log_momentum=True, log_weight_decay=True)`` with the additions above.

    Args:
        logging_interval: ``"step"``, ``"epoch"`` or ``None`` (each scheduler's own interval), as Lightning's.
        log_momentum: log SGD momentum / Adam-family beta1 where the optimizer has one.
        log_weight_decay: log each group's weight decay.

    Example:
        >>> GroupLRMonitor().log_momentum, GroupLRMonitor(logging_interval="epoch").logging_interval
        (True, 'epoch')
    """

    def __init__(
        self,
        logging_interval: Literal["step", "epoch"] | None = "step",
        log_momentum: bool = True,
        log_weight_decay: bool = True,
    ) -> None:
        if logging_interval not in (None, "step", "epoch"):
            raise ArgumentError(f"`logging_interval` must be 'step', 'epoch' or None, got {logging_interval!r}")
        super().__init__(
            logging_interval=logging_interval, log_momentum=log_momentum, log_weight_decay=log_weight_decay
        )

    def on_train_start(self, trainer: Any, *args: Any, **kwargs: Any) -> None:
        momentum = self.log_momentum
        self.log_momentum = False  # Lightning warns for optimizers without momentum; we just skip those
        try:
            super().on_train_start(trainer, *args, **kwargs)
        finally:
            self.log_momentum = momentum

    def _get_optimizer_stats(self, optimizer: Optimizer, names: list[str]) -> dict[str, float]:
        if len(names) < len(optimizer.param_groups):  # groups added since the names were made
            names = [*names, *self._new_names(names, optimizer)]
        stats = super()._get_optimizer_stats(optimizer, names)
        if self.log_momentum and not _has_momentum(optimizer):
            stats = {k: v for k, v in stats.items() if not k.endswith("-momentum")}
        return stats

    def _new_names(self, names: list[str], optimizer: Optimizer) -> list[str]:
        stem = names[0].rsplit("/", 1)[0] if names and "/" in names[0] else (names[0] if names else "lr")
        out = []
        for i in range(len(names), len(optimizer.param_groups)):
            name = f"{stem}/{optimizer.param_groups[i].get('name', f'pg{i + 1}')}"
            self.lrs.setdefault(name, [])
            out.append(name)
        return out


def _has_momentum(optimizer: Optimizer) -> bool:
    g = optimizer.param_groups[0]
    return "betas" in g or bool(g.get("momentum", 0))
