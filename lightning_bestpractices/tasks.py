"""LightningModules that wrap a plain ``nn.Module`` for a task (loss, torchmetrics metrics, optimizer).

:class:`Classifier` (binary or multiclass) and :class:`Regressor` (mean squared error) share one shape.

The optimizer and schedule come from an :class:`~lightning_bestpractices.optim.OptimConfig` (``optim=``), through
:class:`~lightning_bestpractices.optim.OptimizerMixin`: by default AdamW, no weight decay on norm parameters and
biases, and a cosine schedule over the run's real optimizer steps.

Examples:
    >>> from lightning_bestpractices.models import MLP
    >>> task = Classifier(MLP(2, [8], 1, norm="batch"), num_classes=2)
    >>> task.task, type(task.loss_fn).__name__
    ('binary', 'BCEWithLogitsLoss')
    >>> opt = task.configure_optimizers()          # no Trainer attached: the optimizer alone
    >>> [(g["name"], g["weight_decay"]) for g in opt.param_groups]
    [('decay', 0.01), ('no_decay', 0.0)]
"""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
import torchmetrics
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from lightning_bestpractices.errors import ArgumentError

from ._logging import log_figure
from .optim.mixin import OptimConfig, OptimizerMixin

__all__ = ["Classifier", "DEFAULT_OPTIM", "DecisionBoundary", "Regressor", "SmoothedBCEWithLogitsLoss",
           "plot_decision_boundary"]

#: The task's default: AdamW at the seed's LR and weight decay, decay only on weights (not norms and biases),
#: cosine over the real optimizer steps down to 0.
DEFAULT_OPTIM: dict[str, Any] = {"optimizer": "adamw", "lr": 0.01, "weight_decay": 0.01, "schedule": "cosine"}


def _optim_config(optim: OptimConfig | dict[str, Any] | None, lr: float | None, weight_decay: float | None,
                  metric_update_every: int) -> OptimConfig:
    """The task's optimizer config: :data:`DEFAULT_OPTIM`, updated by ``optim``, then the ``lr`` /
    ``weight_decay`` shorthands; the shared argument checks of :class:`Classifier` and :class:`Regressor`."""
    if lr is not None and not (isinstance(lr, (int, float)) and lr > 0):
        raise ArgumentError(f"`lr` must be > 0, got {lr!r}")
    if weight_decay is not None and not (isinstance(weight_decay, (int, float)) and weight_decay >= 0):
        raise ArgumentError(f"`weight_decay` must be >= 0, got {weight_decay!r}")
    if metric_update_every < 1:
        raise ArgumentError(f"`metric_update_every` must be >= 1, got {metric_update_every!r}")
    config = dict(DEFAULT_OPTIM)
    if isinstance(optim, OptimConfig):
        config = {f: getattr(optim, f) for f in optim.__dataclass_fields__}
    elif optim is not None:
        config.update(optim)
    if lr is not None:
        config["lr"] = lr
    if weight_decay is not None:
        config["weight_decay"] = weight_decay
    return OptimConfig.from_any(config)


def _check_lr_multipliers(task: L.LightningModule) -> None:
    for prefix in task.optim.lr_multipliers:
        try:
            task.get_submodule(prefix)
        except AttributeError:
            raise ArgumentError(f"`lr_multipliers` key {prefix!r} is not a submodule of the model") from None


class Classifier(OptimizerMixin, L.LightningModule):
    """Train a classifier: BCE-with-logits for ``"binary"`` (one logit), cross-entropy for ``"multiclass"``.

    Logs ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc`` per epoch (``test/*`` likewise) through
    torchmetrics (``MeanMetric`` for the sample-weighted loss, ``Accuracy``), synchronised across processes at epoch
    end. ``predict_step`` returns probabilities. Optimizer and schedule come from ``optim`` (see the module
    docstring); if your subclass overrides ``on_train_start``, ``on_train_epoch_start``, ``on_save_checkpoint`` or
    ``on_load_checkpoint``, call ``super()`` (the schedule is re-resolved there on resume).

    What it adds over calling torchmetrics in every step: a step only appends its detached outputs to a short
    on-device buffer (no host sync, no ``self.log``); every ``metric_update_every`` batches, and at epoch end, the
    buffer goes to each metric in one ``update`` call. The epoch values are the same as per-batch updates, but
    torchmetrics' per-call work (input checks, state bookkeeping) is paid once per flush instead of at every step,
    which is most of a small model's step time. Binary accuracy gets probabilities (``sigmoid(logits)``), so the
    0.5 threshold applies to every batch alike (torchmetrics guesses logits vs probabilities per ``update`` call).

    Args:
        net: the network; its output is one logit (binary) or ``num_classes`` logits.
        num_classes: number of classes.
        task: ``"binary"`` or ``"multiclass"``; by default binary when ``num_classes == 2``.
        optim: an :class:`~lightning_bestpractices.optim.OptimConfig` or its fields as a mapping (optimizer,
            ``lr``, ``weight_decay``, ``options`` such as ``{"fused": true}``, ``lr_multipliers``, ``schedule``);
            fields not given keep :data:`DEFAULT_OPTIM`. ``schedule: null`` trains at a constant LR.
        lr, weight_decay: shorthands that override ``optim``'s ``lr`` / ``weight_decay``.
        metric_update_every: batches buffered before the metrics are updated (bounds the buffer's memory).
        label_smoothing: in [0, 1): the loss's targets are mixed with the uniform distribution over the classes,
            ``(1 - eps) * one_hot + eps / num_classes`` (torch's ``CrossEntropyLoss(label_smoothing=eps)``; for
            ``"binary"`` the 0/1 target becomes ``eps / 2`` / ``1 - eps / 2``). Only the loss changes: the logged
            ``*/loss`` is the smoothed loss, accuracy and predictions are computed as without it.

    Examples:
        >>> from lightning_bestpractices.models import MLP
        >>> task = Classifier(MLP(64, [16], 10), num_classes=10, label_smoothing=0.1)
        >>> task.loss_fn.label_smoothing
        0.1
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int = 2,
        task: Literal["binary", "multiclass"] | None = None,
        optim: OptimConfig | dict[str, Any] | None = None,
        lr: float | None = None,
        weight_decay: float | None = None,
        metric_update_every: int = 32,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ArgumentError(f"`num_classes` must be >= 2, got {num_classes!r}")
        if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) or not (
            0 <= label_smoothing < 1
        ):
            raise ArgumentError(f"`label_smoothing` must be in [0, 1), got {label_smoothing!r}")
        task = task or ("binary" if num_classes == 2 else "multiclass")
        if task not in ("binary", "multiclass"):
            raise ArgumentError(f"`task` must be 'binary' or 'multiclass', got {task!r}")
        config = _optim_config(optim, lr, weight_decay, metric_update_every)  # a new name: hparams keep `optim`
        self.save_hyperparameters(ignore=["net"])  # for the logger and checkpoint; the code reads the attributes below
        # Plain attributes, not self.hparams: a subclass that calls save_hyperparameters() replaces hparams with its
        # own arguments, and the settings must not disappear with them.
        self.optim = config
        self.metric_update_every = metric_update_every
        self.net = net
        _check_lr_multipliers(self)  # fail at construction, not at fit start
        self.task = task
        self.label_smoothing = float(label_smoothing)
        if task == "multiclass":
            self.loss_fn: nn.Module = nn.CrossEntropyLoss(label_smoothing=self.label_smoothing)
        elif self.label_smoothing:
            self.loss_fn = SmoothedBCEWithLogitsLoss(self.label_smoothing)
        else:
            self.loss_fn = nn.BCEWithLogitsLoss()
        kw = {"task": task} if task == "binary" else {"task": task, "num_classes": num_classes}
        self.acc = nn.ModuleDict({f"{s}_": torchmetrics.Accuracy(**kw) for s in ("train", "val", "test")})
        self.mean_loss = nn.ModuleDict({f"{s}_": torchmetrics.MeanMetric() for s in ("train", "val", "test")})
        self._pending: dict[str, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]]] = {
            "train": [], "val": [], "test": []}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _targets(self, y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        if self.task == "binary":
            return y.to(logits.dtype).view_as(logits)
        return y.long().view(-1)

    def _step(self, batch, stage: str) -> torch.Tensor:
        # Hot path: no self.log, no metric call, no host sync; outputs wait in `_pending` for `_flush`.
        x, y = batch[0], batch[1]
        logits = self(x)
        target = self._targets(y, logits)
        loss = self.loss_fn(logits, target)
        pending = self._pending[stage]
        pending.append((logits.detach(), target, loss.detach(), x.shape[0]))
        if len(pending) >= self.metric_update_every:
            self._flush(stage)
        return loss

    def _flush(self, stage: str) -> None:
        """Update the stage's torchmetrics with every buffered batch at once, then empty the buffer."""
        pending = self._pending[stage]
        if not pending:
            return
        logits = torch.cat([p[0] for p in pending]).float()
        target = torch.cat([p[1] for p in pending]).long()
        losses = torch.stack([p[2] for p in pending]).float()
        weights = torch.tensor([p[3] for p in pending], dtype=losses.dtype).to(losses.device, non_blocking=True)
        pending.clear()
        preds = torch.sigmoid(logits) if self.task == "binary" else logits
        self.acc[f"{stage}_"].update(preds, target)
        self.mean_loss[f"{stage}_"].update(losses, weight=weights)

    def _log_epoch(self, stage: str) -> None:
        self._flush(stage)
        self.log(f"{stage}/loss", self.mean_loss[f"{stage}_"], prog_bar=stage != "test")
        self.log(f"{stage}/acc", self.acc[f"{stage}_"], prog_bar=stage == "val")

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def on_train_epoch_start(self) -> None:
        self._pending["train"].clear()  # left over only if the previous epoch was interrupted

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def on_validation_epoch_start(self) -> None:
        self._pending["val"].clear()

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "test")

    def on_test_epoch_start(self) -> None:
        self._pending["test"].clear()

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        logits = self(x).float()
        return torch.sigmoid(logits) if self.task == "binary" else logits.softmax(-1)


class Regressor(OptimizerMixin, L.LightningModule):
    """Train a regressor with the mean squared error; report MSE, RMSE and R² in the target's original units.

    Logs ``train/loss`` and ``train/rmse``, ``val/loss``, ``val/mse``, ``val/rmse``, ``val/r2`` per epoch
    (``test/*`` likewise), through torchmetrics (``MeanSquaredError``, ``MeanSquaredError(squared=False)``,
    ``R2Score``, ``MeanMetric`` for the sample-weighted loss), synchronised across processes at epoch end, with the
    same buffered updates as :class:`Classifier` (``metric_update_every``). Optimizer and schedule come from
    ``optim`` exactly as for :class:`Classifier`.

    **Units.** ``loss`` is the training objective: the MSE on the targets the network is trained on. When the data
    module standardizes the target (it has a ``target_standardization`` with ``mean`` and ``std``, as
    :class:`~lightning_bestpractices.data.RegressionDataModule` does), the Regressor copies those statistics into its
    ``target_mean`` / ``target_std`` buffers at ``setup``; predictions and targets are mapped back before the
    metrics see them, so ``mse``/``rmse`` are in the original units (``loss`` stays in standardized units), and
    ``predict_step`` returns predictions in the original units. The buffers are saved in checkpoints, so a model
    loaded from one predicts in the original units without the data module.

    Args:
        net: the network; its output has ``num_targets`` columns.
        num_targets: number of regression targets (output columns).
        optim: an :class:`~lightning_bestpractices.optim.OptimConfig` or its fields as a mapping; fields not given
            keep :data:`DEFAULT_OPTIM`.
        lr, weight_decay: shorthands that override ``optim``'s ``lr`` / ``weight_decay``.
        metric_update_every: batches buffered before the metrics are updated.

    Examples:
        >>> from lightning_bestpractices.models import MLP
        >>> task = Regressor(MLP(10, [50, 40], 1, dropout=0.0, norm="none"))
        >>> task.target_std.tolist()       # identity until a data module provides target statistics
        [1.0]
        >>> x, y = torch.randn(4, 10), torch.randn(4, 1)
        >>> loss = task.training_step((x, y), 0)
        >>> torch.allclose(loss, torch.nn.functional.mse_loss(task(x), y))
        True
    """

    def __init__(
        self,
        net: nn.Module,
        num_targets: int = 1,
        optim: OptimConfig | dict[str, Any] | None = None,
        lr: float | None = None,
        weight_decay: float | None = None,
        metric_update_every: int = 32,
    ) -> None:
        super().__init__()
        if num_targets < 1:
            raise ArgumentError(f"`num_targets` must be >= 1, got {num_targets!r}")
        config = _optim_config(optim, lr, weight_decay, metric_update_every)  # a new name: hparams keep `optim`
        self.save_hyperparameters(ignore=["net"])
        self.optim = config
        self.metric_update_every = metric_update_every
        self.num_targets = num_targets
        self.net = net
        _check_lr_multipliers(self)
        self.register_buffer("target_mean", torch.zeros(num_targets))
        self.register_buffer("target_std", torch.ones(num_targets))
        self.loss_fn = nn.MSELoss()
        kw = {"num_outputs": num_targets}
        self.mse = nn.ModuleDict({f"{s}_": torchmetrics.MeanSquaredError(**kw) for s in ("train", "val", "test")})
        self.rmse = nn.ModuleDict(
            {f"{s}_": torchmetrics.MeanSquaredError(squared=False, **kw) for s in ("train", "val", "test")})
        self.r2 = nn.ModuleDict({f"{s}_": torchmetrics.R2Score(multioutput="uniform_average")
                                 for s in ("train", "val", "test")})
        self.mean_loss = nn.ModuleDict({f"{s}_": torchmetrics.MeanMetric() for s in ("train", "val", "test")})
        self._pending: dict[str, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]]] = {
            "train": [], "val": [], "test": []}

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        scale = getattr(dm, "target_standardization", None)
        if scale is not None:
            mean, std = torch.as_tensor(scale.mean).float().view(-1), torch.as_tensor(scale.std).float().view(-1)
            if mean.numel() != self.num_targets:
                raise ArgumentError(f"the data module's target statistics have {mean.numel()} columns, "
                                    f"`num_targets` is {self.num_targets}")
            self.target_mean.copy_(mean)
            self.target_std.copy_(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def to_original_units(self, z: torch.Tensor) -> torch.Tensor:
        """Map network outputs (or standardized targets) back to the target's original units."""
        return z.float() * self.target_std + self.target_mean

    def _step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch[0], batch[1]
        pred = self(x)
        target = y.to(torch.float32).view(pred.shape)
        loss = self.loss_fn(pred.float(), target)
        pending = self._pending[stage]
        pending.append((pred.detach(), target, loss.detach(), x.shape[0]))
        if len(pending) >= self.metric_update_every:
            self._flush(stage)
        return loss

    def _flush(self, stage: str) -> None:
        pending = self._pending[stage]
        if not pending:
            return
        pred = self.to_original_units(torch.cat([p[0] for p in pending]))
        target = self.to_original_units(torch.cat([p[1] for p in pending]))
        losses = torch.stack([p[2] for p in pending]).float()
        weights = torch.tensor([p[3] for p in pending], dtype=losses.dtype).to(losses.device, non_blocking=True)
        pending.clear()
        if self.num_targets == 1:
            pred, target = pred.view(-1), target.view(-1)
        self.mse[f"{stage}_"].update(pred, target)
        self.rmse[f"{stage}_"].update(pred, target)
        self.r2[f"{stage}_"].update(pred, target)
        self.mean_loss[f"{stage}_"].update(losses, weight=weights)

    def _log_epoch(self, stage: str) -> None:
        self._flush(stage)
        self.log(f"{stage}/loss", self.mean_loss[f"{stage}_"], prog_bar=stage != "test")
        self.log(f"{stage}/rmse", self.rmse[f"{stage}_"], prog_bar=stage == "val")
        if stage != "train":  # R² and MSE of the moving training weights say little; RMSE is kept as a trace
            self.log(f"{stage}/mse", self.mse[f"{stage}_"])
            self.log(f"{stage}/r2", self.r2[f"{stage}_"])

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def on_train_epoch_start(self) -> None:
        self._pending["train"].clear()

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def on_validation_epoch_start(self) -> None:
        self._pending["val"].clear()

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "test")

    def on_test_epoch_start(self) -> None:
        self._pending["test"].clear()

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.to_original_units(self(x))
class SmoothedBCEWithLogitsLoss(nn.BCEWithLogitsLoss):
    """``BCEWithLogitsLoss`` on label-smoothed targets: ``t * (1 - eps) + eps / 2``.

    The binary counterpart of ``CrossEntropyLoss(label_smoothing=eps)`` (two classes, ``eps / 2`` each): a
    two-logit softmax with smoothed cross-entropy and one logit with this loss give the same value.

    Examples:
        >>> logits, target = torch.tensor([[2.0], [-1.0]]), torch.tensor([[1.0], [0.0]])
        >>> smoothed = SmoothedBCEWithLogitsLoss(0.2)(logits, target)
        >>> plain = nn.BCEWithLogitsLoss()(logits, torch.tensor([[0.9], [0.1]]))
        >>> bool(torch.isclose(smoothed, plain))
        True
    """

    def __init__(self, label_smoothing: float = 0.0, **kwargs: Any) -> None:
        if not 0 <= label_smoothing < 1:
            raise ArgumentError(f"`label_smoothing` must be in [0, 1), got {label_smoothing!r}")
        super().__init__(**kwargs)
        self.label_smoothing = float(label_smoothing)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return super().forward(input, target * (1 - self.label_smoothing) + 0.5 * self.label_smoothing)


# ----------------------------------------------------------------------------------------------------------------
# the decision boundary of a 2-D classifier: a plot that says more than the accuracy
# ----------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def plot_decision_boundary(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, resolution: int = 200,
                           title: str | None = None):
    """Contour of P(class 1) over the plane, the 0.5 boundary, and the points; returns the matplotlib figure.

    ``model`` maps ``(n, 2)`` inputs to one logit (binary) or to class logits (the last class is shown). The model
    is evaluated in eval mode on its own device and put back in its previous mode.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if x.ndim != 2 or x.shape[1] != 2:
        raise ArgumentError(f"`x` must have shape (n, 2), got {tuple(x.shape)}")
    x, y = x.detach().float().cpu(), y.detach().cpu().view(-1)
    lo, hi = x.min(0).values - 0.5, x.max(0).values + 0.5
    gx, gy = torch.meshgrid(torch.linspace(lo[0], hi[0], resolution), torch.linspace(lo[1], hi[1], resolution),
                            indexing="xy")
    grid = torch.stack([gx.flatten(), gy.flatten()], 1)
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        logits = model(grid.to(device)).float().cpu()
    finally:
        model.train(was_training)
    prob = torch.sigmoid(logits[:, 0]) if logits.shape[1] == 1 else logits.softmax(-1)[:, -1]
    prob = prob.view(resolution, resolution)
    fig, ax = plt.subplots(figsize=(6, 5))
    cs = ax.contourf(gx, gy, prob, levels=50, cmap="RdBu_r", alpha=0.75)
    fig.colorbar(cs, ax=ax, label="P(class 1)")
    ax.contour(gx, gy, prob, levels=[0.5], colors="black", linewidths=2)
    for cls, color in ((0, "tab:blue"), (1, "tab:red")):
        pts = x[y == cls]
        ax.scatter(pts[:, 0], pts[:, 1], c=color, edgecolors="white", s=18, label=f"class {cls}")
    ax.set(xlabel="x1", ylabel="x2", title=title or "Decision boundary")
    ax.legend(loc="upper right")
    return fig


class DecisionBoundary(L.Callback):
    """At the end of fit, plot the model's decision boundary over the validation points.

    The figure is saved as ``decision_boundary.png`` in the run folder and logged to W&B (rank 0 only). It needs a
    data module with 2-D inputs that exposes its tensors as ``splits`` (every :class:`InMemoryDataModule` does).
    """

    def __init__(self, split: str = "val", key: str = "decision_boundary") -> None:
        self.split, self.key = split, key
        self.path = None

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        dm = trainer.datamodule
        tensors = getattr(dm, "splits", {}).get(self.split) if dm is not None else None
        if tensors is None or tensors[0].ndim != 2 or tensors[0].shape[1] != 2:
            rank_zero_warn(f"DecisionBoundary: no 2-D `{self.split}` split in the data module; nothing plotted")
            return
        acc = trainer.callback_metrics.get(f"{self.split}/acc")
        title = f"Decision boundary ({self.split} acc {float(acc):.3f})" if acc is not None else None
        fig = plot_decision_boundary(pl_module, tensors[0], tensors[1], title=title)
        self.path = log_figure(trainer, self.key, fig)
