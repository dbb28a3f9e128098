"""Depth diagnostics: per-layer activation and gradient std on one batch, as a table, metrics and a plot.

The seed-001 picture (a deep ReLU MLP keeps its activation scale with Kaiming init and loses it with Xavier or
``N(0, 0.01)``) is one call: ``plot_depth({name: depth_statistics(model, x) for ...})``.

What this adds over logging ``tensor.std()`` in a hook yourself: the statistics are taken in float32 (also under
``bf16-mixed``), gradients come from ``torch.autograd.grad`` so ``.grad`` and the optimizer are never touched,
BatchNorm running statistics are restored after the probe forward, and the :class:`DepthDiagnostics` callback logs
metrics, a table and a figure through the shared logger-agnostic helpers (rank 0 only).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import nn

from lightning_bestpractices.errors import ArgumentError

from .._logging import format_table, log_figure, log_table
from .core import WEIGHT_LAYERS

__all__ = ["DepthStats", "depth_statistics", "plot_depth", "DepthDiagnostics"]


@dataclass
class DepthStats:
    """Per layer in execution order: output std, std of the loss gradient w.r.t. that output, weight-grad std."""

    names: list[str] = field(default_factory=list)
    act_std: list[float] = field(default_factory=list)
    grad_std: list[float] = field(default_factory=list)
    weight_grad_std: list[float] = field(default_factory=list)
    columns: ClassVar[list[str]] = ["depth", "layer", "act_std", "grad_std", "weight_grad_std"]

    @property
    def rows(self) -> list[list]:
        return [
            [i + 1, n, a, g, w]
            for i, (n, a, g, w) in enumerate(
                zip(self.names, self.act_std, self.grad_std, self.weight_grad_std)
            )
        ]

    def ratio(self) -> float:
        """Activation std of the last recorded layer over the first: ~1 means the scale survives depth."""
        return self.act_std[-1] / self.act_std[0] if self.act_std and self.act_std[0] > 0 else math.nan

    def __str__(self) -> str:
        return format_table(self.columns, self.rows)


def _call(model: nn.Module, x: Any) -> Any:
    if isinstance(x, dict):
        return model(**x)
    if isinstance(x, (tuple, list)):
        return model(*x)
    return model(x)


def _default_loss(out: Any) -> torch.Tensor:
    out = out if isinstance(out, torch.Tensor) else out[0]
    return 0.5 * out.float().pow(2).sum() / max(out.shape[0], 1)


def depth_statistics(
    model: nn.Module,
    x: Any,
    *,
    loss_fn: Callable[[Any], torch.Tensor] | None = None,
    layer_types: Sequence[type] | None = None,
    gradients: bool = True,
) -> DepthStats:
    """Run one forward (and backward) on ``x`` and record, for each layer in execution order, the std of its output
    and of the loss gradient w.r.t. that output.

    Args:
        model: any module; its train/eval mode is used as is, BatchNorm buffers are restored afterwards.
        x: model input (``model(x)``, ``model(*x)``, ``model(**x)``).
        loss_fn: ``loss_fn(output) -> scalar``; default ``0.5 * ||output||^2 / batch`` (gradient = output / batch).
        layer_types: which modules to record (default: Linear/Conv/ConvTranspose/Bilinear); each call counts.
        gradients: also compute the gradient statistics (``torch.autograd.grad``; ``.grad`` is not touched).

    Examples:
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> net = nn.Sequential(*[m for _ in range(10) for m in (nn.Linear(64, 64, bias=False), nn.ReLU())])
        >>> for m in net[::2]:
        ...     _ = nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        >>> stats = depth_statistics(net, torch.randn(256, 64))
        >>> len(stats.names), 0.5 < stats.ratio() < 2
        (10, True)
    """
    types = tuple(layer_types) if layer_types is not None else WEIGHT_LAYERS
    if not types or not all(isinstance(t, type) for t in types):
        raise ArgumentError(f"`layer_types` must be a non-empty sequence of module classes, got {layer_types!r}")
    names = {id(m): n for n, m in model.named_modules()}
    outputs: list[tuple[str, torch.Tensor, nn.Module]] = []

    def hook(mod, inp, out):
        o = out if isinstance(out, torch.Tensor) else out[0]
        outputs.append((names.get(id(mod), "?"), o, mod))

    targets = [m for m in model.modules() if isinstance(m, types)]
    if not targets:
        raise ArgumentError(f"`model` has no layers of types {[t.__name__ for t in types]} to record")
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    handles = [m.register_forward_hook(hook) for m in targets]
    try:
        with torch.enable_grad():
            out = _call(model, x)
            stats = DepthStats()
            for name, o, _ in outputs:
                stats.names.append(name)
                stats.act_std.append(float(o.detach().float().std()))
            if gradients:
                loss = (loss_fn or _default_loss)(out)
                tensors = [o for _, o, _ in outputs if o.requires_grad]
                weights = [m.weight for _, _, m in outputs if getattr(m, "weight", None) is not None]
                grads = torch.autograd.grad(loss, tensors + weights, allow_unused=True) if tensors else []
                g_out, g_w = grads[: len(tensors)], grads[len(tensors) :]
                it_out, it_w = iter(g_out), iter(g_w)
                for _, o, m in outputs:
                    g = next(it_out) if o.requires_grad else None
                    stats.grad_std.append(float(g.float().std()) if g is not None else math.nan)
                    gw = next(it_w) if getattr(m, "weight", None) is not None else None
                    stats.weight_grad_std.append(float(gw.float().std()) if gw is not None else math.nan)
            else:
                stats.grad_std = [math.nan] * len(outputs)
                stats.weight_grad_std = [math.nan] * len(outputs)
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():
            for k, v in model.named_buffers():
                if k in buffers:
                    v.copy_(buffers[k])
    return stats


def plot_depth(stats: DepthStats | dict[str, DepthStats], *, title: str = ""):
    """Activation std and gradient std against depth (log y), one line per entry; returns the figure."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    runs = stats if isinstance(stats, dict) else {"model": stats}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for label, s in runs.items():
        depth = range(1, len(s.act_std) + 1)
        axes[0].plot(depth, s.act_std, "-o", markersize=3, label=label)
        axes[1].plot(depth, s.grad_std, "-o", markersize=3, label=label)
    for ax, what in zip(axes, ("activation std (layer output)", "gradient std (dL/d output)")):
        ax.set_yscale("log")
        ax.set_xlabel("depth (layer)")
        ax.set_ylabel(what)
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _default_batch_to_input(batch: Any) -> Any:
    return batch[0] if isinstance(batch, (tuple, list)) else batch


class DepthDiagnostics(L.Callback):
    """Record :func:`depth_statistics` on the current training batch and log them (rank 0 logs its own batch).

    Runs before the first training step and then every ``every_n_steps`` optimizer steps (``None``: only the
    first). Logs ``depth/act_std/<layer>`` and ``depth/grad_std/<layer>`` metrics, a ``depth/stats`` table and a
    ``depth/plot`` figure. The statistics cost one extra forward/backward on a step where they are taken and
    nothing on the others.

    Args:
        every_n_steps: interval in optimizer steps, or ``None`` for the first step only.
        loss_fn: ``loss_fn(output) -> scalar`` for the gradients (see :func:`depth_statistics`).
        layer_types: modules to record.
        batch_to_input: maps a training batch to the model input (default: ``batch[0]`` for tuples/lists).
        plot: log the figure too.

    Examples:
        >>> DepthDiagnostics(every_n_steps=100).state_dict()
        {'steps_recorded': []}
    """

    def __init__(
        self,
        every_n_steps: int | None = None,
        *,
        loss_fn: Callable[[Any], torch.Tensor] | None = None,
        layer_types: Sequence[type] | None = None,
        batch_to_input: Callable[[Any], Any] = _default_batch_to_input,
        plot: bool = True,
    ) -> None:
        if every_n_steps is not None and (
            not isinstance(every_n_steps, int) or isinstance(every_n_steps, bool) or every_n_steps < 1
        ):
            raise ArgumentError(f"`every_n_steps` must be an int >= 1 or None, got {every_n_steps!r}")
        if not callable(batch_to_input):
            raise ArgumentError(f"`batch_to_input` must be callable, got {batch_to_input!r}")
        self.every_n_steps = every_n_steps
        self.loss_fn = loss_fn
        self.layer_types = layer_types
        self.batch_to_input = batch_to_input
        self.plot = plot
        self.steps_recorded: list[int] = []
        self.last: DepthStats | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"steps_recorded": list(self.steps_recorded)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.steps_recorded = list(state_dict["steps_recorded"])

    def _due(self, step: int) -> bool:
        if step in self.steps_recorded:
            return False
        if self.every_n_steps is None:
            return not self.steps_recorded
        return step % self.every_n_steps == 0

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ):
        step = trainer.global_step
        if not self._due(step):
            return
        self.steps_recorded.append(step)
        # every rank computes (a SyncBatchNorm in the model needs all ranks in the forward); rank 0 logs its own
        self.last = depth_statistics(
            pl_module, self.batch_to_input(batch), loss_fn=self.loss_fn, layer_types=self.layer_types
        )
        self._log(trainer, self.last, step)

    @rank_zero_only
    def _log(self, trainer: L.Trainer, stats: DepthStats, step: int) -> None:
        metrics = {}
        for name, a, g in zip(stats.names, stats.act_std, stats.grad_std):
            metrics[f"depth/act_std/{name}"] = a
            if not math.isnan(g):
                metrics[f"depth/grad_std/{name}"] = g
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
        log_table(trainer, "depth/stats", stats.columns, stats.rows)
        if self.plot:
            log_figure(trainer, "depth/plot", plot_depth(stats, title=f"step {step}"), step=step)
