"""Calibration metrics and plots for (MC-averaged) probabilities.

The metrics are torchmetrics' (``multiclass_calibration_error`` with 15 equal-width bins, accuracy, AUROC, mean
squared error for the Brier score). torchmetrics has no negative log-likelihood metric; the NLL here is the
mean of ``-log p(target)``, taken from :class:`~lightning_bestpractices.uncertainty.MCOutput.log_likelihood`
(computed in log space) when an MC output is given. All metrics take averaged *probabilities*, never logits.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics.functional import mean_squared_error
from torchmetrics.functional.classification import (
    binary_accuracy,
    binary_auroc,
    binary_calibration_error,
    multiclass_accuracy,
    multiclass_calibration_error,
)

from lightning_bestpractices.errors import ArgumentError

from .functional import MCOutput

__all__ = [
    "calibration_metrics",
    "uncertainty_auroc",
    "reliability_diagram",
    "uncertainty_histogram",
    "log_calibration_figures",
]


def _probs_of(output: MCOutput | Tensor) -> Tensor:
    probs = output.mean_probs if isinstance(output, MCOutput) else output
    if not isinstance(probs, Tensor) or probs.dim() not in (1, 2):
        raise ArgumentError(f"`output` must be an MCOutput or probabilities (B,) / (B, C), got {output!r}")
    return probs.float()


def _check_targets(probs: Tensor, targets: Tensor) -> Tensor:
    if not isinstance(targets, Tensor) or targets.shape != probs.shape[:1] or targets.is_floating_point():
        raise ArgumentError(
            f"`targets` must be integer class indices of shape ({probs.shape[0]},), got "
            f"{tuple(targets.shape) if isinstance(targets, Tensor) else targets!r}"
        )
    return targets.long().to(probs.device)


def calibration_metrics(output: MCOutput | Tensor, targets: Tensor, n_bins: int = 15) -> dict[str, float]:
    """Accuracy, NLL, ECE (``n_bins`` equal-width bins, L1) and Brier score of averaged probabilities.

    ``output`` is an :class:`MCOutput` or probabilities ``(B, C)`` (``(B,)`` for binary, positive class).

    Examples:
        >>> probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
        >>> m = calibration_metrics(probs, torch.tensor([0, 1, 1]))
        >>> {k: round(v, 4) for k, v in m.items()}
        {'accuracy': 0.6667, 'nll': 0.4149, 'ece': 0.3, 'brier': 0.2733}
    """
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ArgumentError(f"`n_bins` must be an int >= 1, got {n_bins!r}")
    probs = _probs_of(output)
    targets = _check_targets(probs, targets)
    if probs.dim() == 1:
        acc = binary_accuracy(probs, targets)
        ece = binary_calibration_error(probs, targets, n_bins=n_bins, norm="l1")
        brier = mean_squared_error(probs, targets.float())
        p_target = torch.where(targets == 1, probs, 1 - probs)
    else:
        c = probs.shape[1]
        acc = multiclass_accuracy(probs, targets, num_classes=c, average="micro")
        ece = multiclass_calibration_error(probs, targets, num_classes=c, n_bins=n_bins, norm="l1")
        brier = mean_squared_error(probs, torch.nn.functional.one_hot(targets, c).float()) * c
        p_target = probs.gather(1, targets[:, None]).squeeze(1)
    if isinstance(output, MCOutput) and output.log_likelihood is not None:
        nll = -output.log_likelihood.float().mean()
    else:
        nll = -p_target.clamp_min(torch.finfo(torch.float32).tiny).log().mean()
    return {"accuracy": float(acc), "nll": float(nll), "ece": float(ece), "brier": float(brier)}


def uncertainty_auroc(uncertainty: Tensor, correct: Tensor) -> float:
    """AUROC of ``uncertainty`` for telling wrong predictions (positives) from right ones (torchmetrics).

    Examples:
        >>> uncertainty_auroc(torch.tensor([0.1, 0.2, 0.9, 0.8]), torch.tensor([True, True, False, False]))
        1.0
    """
    if uncertainty.shape != correct.shape:
        raise ArgumentError(
            f"`uncertainty` {tuple(uncertainty.shape)} and `correct` {tuple(correct.shape)} differ"
        )
    return float(binary_auroc(uncertainty.float(), (~correct.bool()).long()))


def _confidence(probs: Tensor) -> tuple[Tensor, Tensor]:
    if probs.dim() == 1:
        pred = (probs > 0.5).long()
        return torch.where(pred == 1, probs, 1 - probs), pred
    conf, pred = probs.max(1)
    return conf, pred


def reliability_diagram(
    probs: Tensor | dict[str, Tensor], targets: Tensor, n_bins: int = 15, title: str = "Reliability diagram"
) -> Any:
    """Accuracy vs confidence per bin (one line per entry of ``probs``) with the ECE in the legend.

    Returns a matplotlib figure (save it with ``_logging.log_figure``).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    curves = probs if isinstance(probs, dict) else {"model": probs}
    edges = torch.linspace(0, 1, n_bins + 1)
    fig, (ax, axc) = plt.subplots(2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    for label, p in curves.items():
        p = _probs_of(p).cpu()
        t = _check_targets(p, targets.cpu())
        conf, pred = _confidence(p)
        which = torch.bucketize(conf, edges[1:-1], right=True)
        counts = torch.bincount(which, minlength=n_bins).float()
        acc = torch.bincount(which, weights=(pred == t).float(), minlength=n_bins) / counts.clamp_min(1)
        mean_conf = torch.bincount(which, weights=conf, minlength=n_bins) / counts.clamp_min(1)
        ok = counts > 0
        ece = calibration_metrics(p, t, n_bins)["ece"]
        ax.plot(mean_conf[ok], acc[ok], "o-", label=f"{label} (ECE {ece:.3f})")
        axc.plot(((edges[:-1] + edges[1:]) / 2)[ok], counts[ok], "o-", label=label)
    ax.set(ylabel="accuracy", title=title, xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    axc.set(xlabel="confidence (max averaged probability)", ylabel="count", yscale="log")
    fig.tight_layout()
    return fig


def uncertainty_histogram(uncertainty: Tensor, correct: Tensor, name: str = "mutual information") -> Any:
    """Histograms of ``uncertainty`` for correct vs wrong predictions, with the wrong-vs-right AUROC."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    u, ok = uncertainty.detach().float().cpu(), correct.detach().bool().cpu()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    bins = torch.linspace(float(u.min()), float(u.max()) + 1e-12, 31).numpy()
    ax.hist(u[ok].numpy(), bins=bins, alpha=0.6, density=True, label=f"correct (n={int(ok.sum())})")
    ax.hist(u[~ok].numpy(), bins=bins, alpha=0.6, density=True, label=f"wrong (n={int((~ok).sum())})")
    auroc = uncertainty_auroc(u, ok) if 0 < int(ok.sum()) < len(ok) else float("nan")
    ax.set(xlabel=name, ylabel="density", title=f"{name}: correct vs wrong (AUROC {auroc:.3f})")
    ax.legend()
    fig.tight_layout()
    return fig


def log_calibration_figures(
    trainer: Any, output: MCOutput, targets: Tensor, prefix: str, n_bins: int = 15
) -> None:
    """Reliability diagram and MI histogram of ``output``, saved as ``<run_dir>/<prefix>_*.png`` and logged (rank 0)."""
    from lightning_bestpractices._logging import log_figure

    if not trainer.is_global_zero:
        return
    correct = output.predictions.cpu() == targets.cpu()
    log_figure(
        trainer,
        f"{prefix}/reliability",
        reliability_diagram({"MC dropout": output.mean_probs}, targets, n_bins),
    )
    log_figure(
        trainer, f"{prefix}/uncertainty_hist", uncertainty_histogram(output.mutual_information, correct)
    )
