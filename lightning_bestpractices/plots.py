"""Plots that say more than numbers: the decision boundary of a 2-D classifier."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from lightning_bestpractices.errors import ArgumentError

from ._logging import log_figure

__all__ = ["DecisionBoundary", "plot_decision_boundary"]


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
