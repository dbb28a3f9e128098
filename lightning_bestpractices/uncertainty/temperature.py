"""Temperature scaling (Guo et al., 2017): one scalar T > 0 that divides the logits, fitted on held-out data.

What this adds over writing the three lines yourself:

* the same fit for deterministic logits ``(B, C)`` and for MC dropout's per-sample logits ``(N, B, C)``; for MC
  every sample's logits are divided by T *before* its softmax and the probabilities are then averaged, so the
  fitted NLL is the MC mixture's, ``-log mean_s softmax(z_s / T)[y]`` (averaging logits first would fit the
  wrong model);
* it works where Lightning runs your code: ``predict``/``test`` hooks run under ``torch.inference_mode``, where
  autograd is off and inference tensors cannot be saved for backward. The fit leaves inference mode, enables
  grad and clones its inputs out of it; it runs in fp32 also under ``bf16-mixed`` autocast;
* LBFGS (strong Wolfe line search) on log T, so T stays positive without clamping; ``binary`` logits
  ``(B,)``/``(N, B)`` are fitted as two-class logits ``[0, z]``;
* a degenerate fit is not returned silently. When the held-out set has (almost) no errors, the NLL keeps falling
  as T -> 0 and the "best" T is a numerical accident (1e-3, say) that makes every test prediction certain. The
  temperature is kept in ``[min_t, max_t]``; a fit that ends on a bound is returned as that bound with a warning
  that says why. For deterministic logits the NLL is convex in 1/T, so the bound is then the exact constrained
  optimum.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import torch
from torch import Tensor

from lightning_bestpractices.errors import ArgumentError

__all__ = ["fit_temperature", "temperature_nll"]


def _as_classes(logits: Tensor, task: str) -> Tensor:
    if task == "binary":
        return torch.stack([torch.zeros_like(logits), logits], -1)
    return logits


def temperature_nll(
    logits: Tensor, targets: Tensor, temperature: Tensor | float, task: str = "multiclass"
) -> Tensor:
    """Mean NLL of ``targets`` under ``logits / temperature``; ``(N, B, C)`` logits: of the MC mixture.

    Examples:
        >>> z = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
        >>> round(float(temperature_nll(z, torch.tensor([0, 1]), 1.0)), 4)
        0.2201
    """
    z = _as_classes(logits, task).float() / temperature
    lp = z.log_softmax(-1)
    if lp.dim() == 2:
        return -lp.gather(-1, targets.view(-1, 1)).mean()
    picked = lp.gather(-1, targets.view(1, -1, 1).expand(lp.shape[0], -1, 1)).squeeze(-1)  # (N, B)
    return -(picked.logsumexp(0) - math.log(lp.shape[0])).mean()


def fit_temperature(
    logits: Tensor,
    targets: Tensor,
    *,
    task: Literal["multiclass", "binary"] = "multiclass",
    max_iter: int = 100,
    min_t: float = 0.05,
    max_t: float = 20.0,
) -> float:
    """The T > 0 that minimises the NLL of ``targets`` under ``logits / T`` (one scalar, LBFGS, fp32).

    Args:
        logits: ``(B, C)`` logits of a deterministic model, or ``(N, B, C)`` per-sample logits of N MC passes
            (``binary``: ``(B,)`` or ``(N, B)``). Fit on a validation set, never on the test set.
        targets: class indices ``(B,)``.
        task: ``"multiclass"`` (softmax) or ``"binary"`` (sigmoid).
        max_iter: LBFGS iterations.
        min_t, max_t: the range T is kept in; ending on either bound warns (the held-out data cannot pin T).

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> y = torch.randint(0, 3, (500,), generator=g)
        >>> z = torch.randn(500, 3, generator=g) + 2 * torch.nn.functional.one_hot(y, 3)
        >>> t = fit_temperature(z, y)
        >>> round(fit_temperature(4 * z, y) / t, 3)  # logits 4x larger: a 4x larger temperature
        4.0
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     fit_temperature(10 * torch.nn.functional.one_hot(y, 3).float(), y)  # no errors: T -> 0
        0.05
        >>> "no interior optimum" in str(caught[0].message)
        True
    """
    if task not in ("multiclass", "binary"):
        raise ArgumentError(f"`task` must be 'multiclass' or 'binary', got {task!r}")
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        raise ArgumentError(f"`logits` must be a floating-point Tensor, got {type(logits).__name__}")
    want = (1, 2) if task == "binary" else (2, 3)
    if logits.dim() not in want:
        raise ArgumentError(
            f"`logits` must have {want[0]} (deterministic) or {want[1]} (MC samples first) dims for {task!r}, "
            f"got shape {tuple(logits.shape)}"
        )
    batch = logits.shape[-1] if task == "binary" else logits.shape[-2]
    if not isinstance(targets, Tensor) or targets.shape != (batch,) or targets.is_floating_point():
        raise ArgumentError(
            f"`targets` must be integer class indices of shape ({batch},), got "
            f"{tuple(targets.shape) if isinstance(targets, Tensor) else targets!r}"
        )
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ArgumentError(f"`max_iter` must be an int >= 1, got {max_iter!r}")
    if not (isinstance(min_t, (int, float)) and isinstance(max_t, (int, float)) and 0 < min_t < 1 < max_t):
        raise ArgumentError(f"`min_t` and `max_t` must satisfy 0 < min_t < 1 < max_t, got {min_t!r} and {max_t!r}")
    with torch.inference_mode(False), torch.enable_grad(), torch.autocast(logits.device.type, enabled=False):
        z = logits.detach().clone().float()  # a normal tensor, also when the input is an inference tensor
        y = targets.detach().clone().long().to(z.device)
        log_t = torch.zeros((), device=z.device, requires_grad=True)
        opt = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            opt.zero_grad()
            loss = temperature_nll(z, y, log_t.exp(), task)
            loss.backward()
            return loss

        opt.step(closure)
        t = float(log_t.detach().exp())
        with torch.no_grad():  # the bounds beat the fit when the NLL keeps falling towards them (no optimum inside)
            nll = {b: float(temperature_nll(z, y, torch.tensor(b), task)) for b in (min_t, max_t)}
            fitted = float(temperature_nll(z, y, torch.tensor(min(max(t, min_t), max_t)), task)) \
                if math.isfinite(t) else math.inf
    bound = min(nll, key=nll.get)
    if not math.isfinite(t) or not min_t < t < max_t or nll[bound] <= fitted:
        probs = _as_classes(z, task).softmax(-1)
        errors = int((probs.mean(0) if probs.dim() == 3 else probs).argmax(-1).ne(y).sum())
        warnings.warn(
            f"fit_temperature: the held-out NLL has no interior optimum in [{min_t}, {max_t}] (it keeps falling "
            f"towards T={bound}; the held-out set has {errors} argmax error(s) in {y.numel()}). Returning "
            f"T={bound}: this data cannot calibrate the model; use a larger or harder held-out set.",
            stacklevel=2,
        )
        return float(bound)
    return t
