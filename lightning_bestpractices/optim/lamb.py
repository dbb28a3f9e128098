"""LAMB: Adam moments with a layer-wise trust ratio (You et al., 2019, "Large Batch Optimization for Deep
Learning: Training BERT in 76 minutes").

torch has no LAMB, so this is written here rather than pulled from a third-party package (the maintained ones
either pin old torch versions or come with CUDA extensions). The update, per parameter tensor ``p``::

    m = beta1 * m + (1 - beta1) * g                  v = beta2 * v + (1 - beta2) * g**2
    m_hat = m / (1 - beta1**t)                       v_hat = v / (1 - beta2**t)
    u = m_hat / (sqrt(v_hat) + eps) + weight_decay * p
    trust = ||p|| / ||u||   if ||p|| > 0 and ||u|| > 0 else 1      (optionally clipped to ``trust_clip``)
    p = p - lr * trust * u

The step runs on whole lists of tensors with ``torch._foreach_*`` kernels (through ``_compat.foreach``) and keeps the trust ratio as a tensor,
so it never synchronises with the device (no ``.item()``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from lightning_bestpractices._compat import foreach
from lightning_bestpractices.errors import ArgumentError

__all__ = ["Lamb"]


class Lamb(Optimizer):
    """Layer-wise Adaptive Moments for Batch training (LAMB).

    Args:
        params: parameters or parameter groups (groups may set ``lr``, ``weight_decay``, ``betas`` ...).
        lr: learning rate, >= 0.
        betas: coefficients of the running averages of the gradient and its square, each in [0, 1).
        eps: added to the denominator, > 0.
        weight_decay: decoupled weight decay added to the update before the trust ratio, >= 0.
        trust_clip: if set, the trust ratio is clipped to ``[0, trust_clip]`` (the paper's ``phi``).

    Examples:
        >>> p = torch.nn.Parameter(torch.ones(3))
        >>> opt = Lamb([p], lr=0.1, weight_decay=0.0)
        >>> p.grad = torch.tensor([1.0, -1.0, 1.0])
        >>> opt.step()
        >>> p.detach()                                   # trust ratio ||p|| / ||u|| = 1: each entry moves 0.1
        tensor([0.9000, 1.1000, 0.9000])
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
        trust_clip: float | None = None,
    ) -> None:
        if not lr >= 0.0:
            raise ArgumentError(f"`lr` must be >= 0, got {lr!r}")
        if not eps > 0.0:
            raise ArgumentError(f"`eps` must be > 0, got {eps!r}")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ArgumentError(f"`betas` must be two numbers in [0, 1), got {betas!r}")
        if not weight_decay >= 0.0:
            raise ArgumentError(f"`weight_decay` must be >= 0, got {weight_decay!r}")
        if trust_clip is not None and not trust_clip > 0:
            raise ArgumentError(f"`trust_clip` must be > 0 or None, got {trust_clip!r}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, trust_clip=trust_clip)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError("Lamb does not support sparse gradients")
            beta1, beta2 = group["betas"]
            grads, exp_avgs, exp_avg_sqs = [], [], []
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                grads.append(p.grad)
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
            steps = [self.state[p]["step"] for p in params]  # per tensor: params may join a group later
            foreach.add_(steps, 1.0)
            foreach.lerp_(exp_avgs, grads, 1 - beta1)
            foreach.mul_(exp_avg_sqs, beta2)
            foreach.addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
            bias1 = foreach.pow(beta1, steps)  # beta ** t, then 1 - beta ** t
            bias2 = foreach.pow(beta2, steps)
            for b in (bias1, bias2):
                foreach.neg_(b)
                foreach.add_(b, 1.0)
            update = foreach.div(exp_avg_sqs, bias2)
            foreach.sqrt_(update)
            foreach.add_(update, group["eps"])
            foreach.mul_(update, bias1)
            update = foreach.div(exp_avgs, update)  # m_hat / (sqrt(v_hat) + eps)
            if group["weight_decay"] != 0:
                foreach.add_(update, params, alpha=group["weight_decay"])
            # trust ratios of all tensors at once, as one tensor per device (no host sync)
            by_device: dict[torch.device, list[int]] = {}
            for i, p in enumerate(params):
                by_device.setdefault(p.device, []).append(i)
            p_norm = foreach.norm(params)
            u_norm = foreach.norm(update)
            scale: list[torch.Tensor] = [None] * len(params)  # type: ignore[list-item]
            for idx in by_device.values():
                pn = torch.stack([p_norm[i] for i in idx]).float()
                un = torch.stack([u_norm[i] for i in idx]).float()
                trust = torch.where((pn > 0) & (un > 0), pn / un.clamp_min(torch.finfo(un.dtype).tiny), 1.0)
                if group["trust_clip"] is not None:
                    trust = trust.clamp(max=group["trust_clip"])
                for i, t in zip(idx, (trust * -group["lr"]).unbind()):
                    scale[i] = t
            foreach.mul_(update, scale)
            foreach.add_(params, update)
        return loss
