"""MC outputs and their measures (pure torch): per-input dataclasses and exact streaming aggregation over chunks.

Probabilities are aggregated, never logits: each sample's output is turned into (log-)probabilities first, then
the mean and spread over samples, the entropies and the mixture log-likelihood are accumulated chunk by chunk
with O(batch x classes) memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from lightning_bestpractices.errors import ArgumentError

__all__ = ["MCOutput", "MCRegressionOutput", "uncertainty_measures"]

Task = Literal["multiclass", "binary", "regression"]


@dataclass
class MCOutput:
    """Per-input MC dropout outputs for classification (``binary``: probabilities of the positive class).

    Attributes:
        mean_probs: mean over samples of the softmax (sigmoid) probabilities, ``(B, C)`` (binary ``(B,)``).
        std_probs: standard deviation over samples of those probabilities (population std, 0 for N=1).
        predictive_entropy: entropy of ``mean_probs`` (total uncertainty, nats), ``(B,)``.
        expected_entropy: mean over samples of each sample's entropy (aleatoric), ``(B,)``.
        mutual_information: ``predictive_entropy - expected_entropy`` (epistemic), in ``[0, log C]``.
        log_likelihood: ``log mean_s p_s(target)``, the mixture log-likelihood computed in log space; ``None``
            without targets.
        n_samples: number of MC samples.
    """

    mean_probs: Tensor
    std_probs: Tensor
    predictive_entropy: Tensor
    expected_entropy: Tensor
    mutual_information: Tensor
    log_likelihood: Tensor | None
    n_samples: int

    @property
    def predictions(self) -> Tensor:
        """Predicted class from the averaged probabilities."""
        return (self.mean_probs > 0.5).long() if self.mean_probs.dim() == 1 else self.mean_probs.argmax(-1)


@dataclass
class MCRegressionOutput:
    """Per-input MC dropout outputs for regression: predictive ``mean`` and ``variance`` over samples."""

    mean: Tensor
    variance: Tensor
    n_samples: int


# ----------------------------------------------------------------------------------------------------------------
# streaming aggregation
# ----------------------------------------------------------------------------------------------------------------
class _Welford:
    """Running mean and sum of squared deviations over chunks (Chan et al.'s merge): exact, O(batch) memory."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: Tensor | None = None
        self.m2: Tensor | None = None

    def update(self, values: Tensor) -> None:  # values: (chunk, ...)
        c = values.shape[0]
        cmean = values.mean(0)
        cm2 = (values - cmean).square().sum(0)
        if self.mean is None:
            self.n, self.mean, self.m2 = c, cmean, cm2
            return
        total = self.n + c
        delta = cmean - self.mean
        self.mean = self.mean + delta * (c / total)
        self.m2 = self.m2 + cm2 + delta.square() * (self.n * c / total)
        self.n = total

    @property
    def variance(self) -> Tensor:
        return self.m2 / self.n


class _ClassificationAccumulator:
    def __init__(self, targets: Tensor | None) -> None:
        self.probs = _Welford()
        self.entropy_sum: Tensor | None = None
        self.targets = targets
        self.lse: Tensor | None = None

    def update(self, log_probs: Tensor) -> None:  # (chunk, B, C), fp32
        probs = log_probs.exp()
        self.probs.update(probs)
        ent = torch.special.entr(probs).sum(-1).sum(0)
        self.entropy_sum = ent if self.entropy_sum is None else self.entropy_sum + ent
        if self.targets is not None:
            idx = self.targets.view(1, -1, 1).expand(log_probs.shape[0], -1, 1)
            lse = log_probs.gather(-1, idx).squeeze(-1).logsumexp(0)
            self.lse = lse if self.lse is None else torch.logaddexp(self.lse, lse)

    def result(self, binary: bool) -> MCOutput:
        n = self.probs.n
        mean = self.probs.mean
        std = self.probs.variance.clamp_min(0).sqrt()
        predictive = torch.special.entr(mean).sum(-1)
        expected = self.entropy_sum / n
        mi = (predictive - expected).clamp(0.0, math.log(mean.shape[-1]))
        ll = None if self.lse is None else self.lse - math.log(n)
        if binary:
            mean, std = mean[..., 1].contiguous(), std[..., 1].contiguous()
        return MCOutput(mean, std, predictive, expected, mi, ll, n)


def _log_probs(out: Tensor, task: Task, n: int, batch: int, temperature: float = 1.0) -> Tensor:
    out = out.float()
    if temperature != 1.0:
        out = out / temperature  # per sample, before its softmax: temperature scaling of the MC mixture
    if task == "binary":
        z = out.reshape(n, batch)
        return torch.stack([nn.functional.logsigmoid(-z), nn.functional.logsigmoid(z)], -1)
    return torch.log_softmax(out.reshape(n, batch, -1), -1)


def uncertainty_measures(log_probs: Tensor, targets: Tensor | None = None) -> MCOutput:
    """Reference measures from stacked per-sample log-probabilities (or logits) ``(N, B, C)`` (not streamed).

    Each sample is turned into probabilities first; only probabilities are averaged.

    Examples:
        >>> lp = torch.log(torch.tensor([[[0.9, 0.1]], [[0.1, 0.9]]]))  # two samples that disagree
        >>> out = uncertainty_measures(lp)
        >>> out.mean_probs, round(float(out.mutual_information), 4)
        (tensor([[0.5000, 0.5000]]), 0.3681)
    """
    if log_probs.dim() != 3:
        raise ArgumentError(f"`log_probs` must have shape (N, B, C), got {tuple(log_probs.shape)}")
    acc = _ClassificationAccumulator(targets)
    acc.update(log_probs.float().log_softmax(-1))  # idempotent on log-probs; normalises logits
    return acc.result(binary=False)
