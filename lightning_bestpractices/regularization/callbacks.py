"""Lightning shells of the regularization practices: :class:`WeightPenalty` and :class:`MaxNorm`.

The maths lives in :mod:`.penalties` and :mod:`.maxnorm` (pure torch, no Lightning import); these callbacks only
decide *when* it runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn

from lightning_bestpractices.errors import ArgumentError

from .maxnorm import DEFAULT_MAX_NORM_TYPES, check_max_norm, max_norm_, max_norm_targets, unit_norms  # noqa: F401
from .penalties import add_penalty_grad_, check_penalty_args, decay_parameters, weight_penalty

__all__ = ["WeightPenalty", "MaxNorm"]


class WeightPenalty(Callback):
    """Add an L1, L2 or elastic-net penalty on the selected parameters to the training objective.

    A callback rather than a mixin, because it composes with any LightningModule unchanged (no ``super()``
    chain in ``training_step``, no assumption about what the loss is) and with the package's other callbacks:
    it acts in ``on_before_optimizer_step``, once per real optimizer step, on gradients that are already
    unscaled (AMP) and all-reduced (DDP). :mod:`.penalties` explains why that is exact.

    The penalty value is logged as ``"<key>"`` (a weight-only quantity, identical on every rank, so no sync) only at
    the steps where Lightning writes step metrics (every ``trainer.log_every_n_steps``); other steps compute no
    value at all.

    Args:
        strength: overall coefficient (lambda), >= 0. ``0`` turns it into a no-op (handy for an ablation).
        l1_ratio: share of L1 in ``[0, 1]``; 1 = L1, 0 = L2.
        names: qualified names (or name prefixes) of the parameters to penalise instead of the default decay group.
        skip: names excluded from the default decay group (forwarded to ``no_decay_parameters``).
        key: logged metric name (``None``: do not log).

    Examples:
        >>> import lightning as L
        >>> from lightning_bestpractices.models import MLP
        >>> from lightning_bestpractices.tasks import Classifier
        >>> from lightning_bestpractices.data import MoonsDataModule
        >>> trainer = L.Trainer(max_steps=3, callbacks=[WeightPenalty(1e-3, l1_ratio=1.0)], logger=False,
        ...                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        >>> trainer.fit(Classifier(MLP(2, [8], 1)), MoonsDataModule(n_train=64, n_val=32, batch_size=16))
        >>> trainer.global_step
        3
    """

    def __init__(
        self,
        strength: float,
        l1_ratio: float = 1.0,
        *,
        names: Sequence[str] | None = None,
        skip: Sequence[str] = (),
        key: str | None = "regularization/penalty",
    ) -> None:
        check_penalty_args(strength, l1_ratio)
        if names is not None and (isinstance(names, str) or not all(isinstance(n, str) for n in names)):
            raise ArgumentError(f"`names` must be a list of parameter names, got {names!r}")
        self.strength, self.l1_ratio = float(strength), float(l1_ratio)
        self.names = list(names) if names is not None else None
        self.skip = list(skip)
        self.key = key
        self._params: list[nn.Parameter] = []

    def select(self, module: nn.Module) -> list[nn.Parameter]:
        """The parameters this callback penalises in ``module`` (raises if a name in ``names`` matches nothing)."""
        if self.names is None:
            return decay_parameters(module, skip=self.skip)
        named = list(module.named_parameters())
        chosen: dict[int, nn.Parameter] = {}
        for pattern in self.names:
            hits = [p for n, p in named if n == pattern or n.startswith(pattern + ".")]
            if not hits:
                raise ArgumentError(f"`names` entry {pattern!r} matches no parameter of {type(module).__name__}")
            chosen.update((id(p), p) for p in hits)
        return list(chosen.values())

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._params = self.select(pl_module)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # re-select once the strategy has wrapped/moved the model (same parameter objects, checked names)
        self._params = self.select(pl_module)

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        if self.strength == 0:
            return
        add_penalty_grad_(self._params, self.strength, self.l1_ratio)
        if self.key is not None and self._logging_step(trainer):
            with torch.no_grad():
                value = weight_penalty(self._params, self.strength, self.l1_ratio)
            pl_module.log(self.key, value, on_step=True, on_epoch=False, sync_dist=False)

    @staticmethod
    def _logging_step(trainer: L.Trainer) -> bool:
        # Lightning writes step metrics when (batches that stepped so far + 1) % log_every_n_steps == 0; before the
        # step runs, that count is the global step (one optimizer).
        n = trainer.log_every_n_steps
        return bool(n) and (trainer.global_step + 1) % n == 0


class MaxNorm(Callback):
    """Keep every unit's incoming weight norm at most ``max_norm`` after each real optimizer step.

    Hooks are registered on each of ``trainer.optimizers`` at fit start (only for the weights that optimizer
    updates) and removed at fit end. The weights are not touched before the first step.

    Args:
        max_norm: the radius r, > 0 (3 to 4 is the usual range for dropout networks).
        types: layer types to constrain (default Linear and Conv1d/2d/3d), ignored when ``names`` is given.
        names: qualified module names to constrain instead.

    Attributes:
        applied_steps: how many optimizer steps it has acted after (kept in checkpoints).

    Examples:
        >>> import lightning as L
        >>> from lightning_bestpractices.models import MLP
        >>> from lightning_bestpractices.tasks import Classifier
        >>> from lightning_bestpractices.data import MoonsDataModule
        >>> model = Classifier(MLP(2, [8], 1), lr=0.5)
        >>> cb = MaxNorm(0.5)
        >>> trainer = L.Trainer(max_steps=4, callbacks=[cb], logger=False, enable_checkpointing=False,
        ...                     enable_progress_bar=False, enable_model_summary=False)
        >>> trainer.fit(model, MoonsDataModule(n_train=64, n_val=32, batch_size=16))
        >>> cb.applied_steps, all(bool((unit_norms(w) <= 0.5).all()) for _, w in max_norm_targets(model))
        (4, True)
    """

    def __init__(
        self, max_norm: float, types: Sequence[type] = DEFAULT_MAX_NORM_TYPES, names: Sequence[str] | None = None
    ) -> None:
        check_max_norm(max_norm)
        if names is not None and (isinstance(names, str) or not all(isinstance(n, str) for n in names)):
            raise ArgumentError(f"`names` must be a list of module names, got {names!r}")
        if names is None and (not types or not all(isinstance(t, type) for t in types)):
            raise ArgumentError(f"`types` must be a non-empty list of module classes, got {types!r}")
        self.max_norm = float(max_norm)
        self.types = tuple(types)
        self.names = list(names) if names is not None else None
        self.applied_steps = 0
        self._handles: list = []

    @property
    def state_key(self) -> str:
        return self._generate_state_key(max_norm=self.max_norm, names=self.names)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._remove()
        targets = [w for _, w in max_norm_targets(pl_module, self.types, self.names)]
        if not targets:
            raise ArgumentError(
                f"MaxNorm found no layer of types {[t.__name__ for t in self.types]} in {type(pl_module).__name__}"
            )
        for index, optimizer in enumerate(trainer.optimizers):
            owned = {id(p) for group in optimizer.param_groups for p in group["params"]}
            mine = [w for w in targets if id(w) in owned]
            if mine:
                self._handles.append(optimizer.register_step_post_hook(self._make_hook(mine, count=not index)))

    def _make_hook(self, weights: list[Tensor], count: bool):
        max_norm = self.max_norm

        def hook(optimizer, args, kwargs) -> None:
            max_norm_(weights, max_norm)
            if count:
                self.applied_steps += 1

        return hook

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._remove()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._remove()

    def state_dict(self) -> dict:
        return {"applied_steps": self.applied_steps}

    def load_state_dict(self, state_dict: dict) -> None:
        self.applied_steps = int(state_dict["applied_steps"])
