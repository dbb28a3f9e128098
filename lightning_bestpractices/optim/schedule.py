"""The package's own LR scheduler: one ``torch.optim.lr_scheduler.LRScheduler`` driven by a closed-form curve.

:class:`Schedule` sets every parameter group's LR to ``group["initial_lr"] * curve(t)`` at optimizer step ``t``
(times the plateau scale, if it reduces on plateau), and the momentum / beta1 the curve asks for. Every per-group
fact lives *in the param group*: its base LR (``initial_lr``, torch's own key), its floor (``min_lr``, plateau
only), its ``name`` and ``lr_multiplier``. So

* a group that joins mid-run is ``optimizer.add_param_group({"params": ..., "lr": base})`` and nothing else: the
  schedule takes the group's ``lr`` as its base and sets its scheduled LR before the next optimizer step (a step
  pre-hook, public torch API);
* the checkpoint carries the per-group facts with the optimizer's state, and the scheduler's own state (the step,
  the curve, the plateau counters) in ``state_dict()``; nothing lives anywhere else, so a snapshot of
  ``state_dict()`` plus the groups' ``lr`` restores it exactly;
* the LR finder, ``FineTune`` and resume change the schedule by swapping :attr:`Schedule.curve` (then
  :meth:`Schedule.refresh`), never by replacing Lightning's scheduler configs.

What it adds over torch's schedulers: no per-group lists on the scheduler (``base_lrs``, ``lr_lambdas``,
``min_lrs``) that a new group would have to be spliced into, and no recursive update that drifts or has to be
replayed on resume. Plateau reduction follows torch's ``ReduceLROnPlateau`` rule (relative/absolute threshold,
patience, cooldown, a floor per group).

Examples:
    >>> import torch
    >>> from lightning_bestpractices.optim.curves import CosineFactor
    >>> w, b = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    >>> opt = torch.optim.SGD([{"params": [w], "lr": 1.0}], lr=1.0)
    >>> sched = Schedule(opt, CosineFactor(5, final=0.0))
    >>> opt.step(); sched.step()
    >>> opt.add_param_group({"params": [b], "lr": 0.1})     # joins mid-run: nothing else to do
    >>> opt.step()                                          # the pre-hook puts it on the curve first
    >>> [round(g["lr"], 4) for g in opt.param_groups]
    [0.8536, 0.0854]
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from lightning_bestpractices.errors import ArgumentError

from .curves import Curve, curve_from_dict

__all__ = ["Schedule", "Plateau"]


@dataclass
class Plateau:
    """Reduce-on-plateau settings and state (torch's ``ReduceLROnPlateau`` rule), kept in the schedule's state.

    ``scale`` is the product of all reductions so far; a group's LR is ``max(base * curve(t) * scale, min_lr)``
    once reduced. ``floor`` is the floor as a factor of the base LR (each group's ``min_lr`` is its base times it).
    """

    mode: str = "min"
    factor: float = 0.1
    patience: int = 10
    threshold: float = 1e-4
    threshold_mode: str = "rel"
    cooldown: int = 0
    floor: float = 0.0
    best: float = math.inf
    num_bad_epochs: int = 0
    cooldown_counter: int = 0
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise ArgumentError(f"`mode` must be 'min' or 'max', got {self.mode!r}")
        if self.threshold_mode not in ("rel", "abs"):
            raise ArgumentError(f"`threshold_mode` must be 'rel' or 'abs', got {self.threshold_mode!r}")
        if self.mode == "max" and self.best == math.inf:
            self.best = -math.inf

    def _better(self, a: float, best: float) -> bool:
        if self.mode == "min":
            return a < (best * (1.0 - self.threshold) if self.threshold_mode == "rel" else best - self.threshold)
        return a > (best * (1.0 + self.threshold) if self.threshold_mode == "rel" else best + self.threshold)

    def update(self, value: float) -> bool:
        """Account for one epoch's metric; returns whether the LR was reduced (torch's order of checks)."""
        if self._better(value, self.best):
            self.best, self.num_bad_epochs = value, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self.scale *= self.factor
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
            return True
        return False


class Schedule(LRScheduler):
    """``lr(group, t) = group["initial_lr"] * curve(t)``; see the module docstring.

    Args:
        optimizer: the optimizer; each group's current ``lr`` becomes its base (``initial_lr``) unless it has one.
        curve: a :class:`~lightning_bestpractices.optim.curves.Curve` (any picklable ``f(t) -> factor`` with a
            ``final`` attribute and a ``momentum(t)`` method).
        plateau: a :class:`Plateau` to reduce on a monitored metric (``step(metric)``), or ``None``.
        last_epoch: as in torch (``-1`` for a fresh schedule).
    """

    def __init__(self, optimizer: Optimizer, curve: Curve, *, plateau: Plateau | None = None, last_epoch: int = -1):
        self.curve = curve
        self.plateau = plateau
        self.groups_seen = 0
        super().__init__(optimizer, last_epoch)
        self._hook = optimizer.register_step_pre_hook(self._before_optimizer_step)

    # --- the LR of every group ----------------------------------------------------------------------------

    def _bases(self) -> list[tuple[float, float]]:
        floor = 0.0 if self.plateau is None else self.plateau.floor
        out = []
        for g in self.optimizer.param_groups:
            if "initial_lr" not in g:  # a group that joined with add_param_group: its lr is its base
                g["initial_lr"] = float(g["lr"])
            if self.plateau is not None and "min_lr" not in g:
                g["min_lr"] = float(g["initial_lr"]) * floor
            out.append((float(g["initial_lr"]), float(g.get("min_lr", 0.0))))
        self.groups_seen = len(self.optimizer.param_groups)
        return out

    def lrs_at(self, t: int) -> list[float]:
        """Every group's LR at optimizer step ``t`` (no side effects besides filling in a new group's base)."""
        f = float(self.curve(t))
        scale = 1.0 if self.plateau is None else self.plateau.scale
        out = []
        for base, floor in self._bases():
            lr = base * f
            if scale != 1.0:
                lr = max(lr * scale, floor)
            out.append(lr)
        return out

    def _set_momentum(self, t: int) -> None:
        m = self.curve.momentum(t)
        if m is None:
            return
        for g in self.optimizer.param_groups:
            if "betas" in g:
                g["betas"] = (m, *g["betas"][1:])
            elif "momentum" in g:
                g["momentum"] = m

    def get_lr(self) -> list[float]:
        self._set_momentum(self.last_epoch)
        return self.lrs_at(self.last_epoch)

    def refresh(self) -> None:
        """Set every group's LR (and momentum) for the current step, e.g. after groups joined or the curve changed."""
        from lightning_bestpractices._compat import set_last_lr

        self._set_momentum(self.last_epoch)
        for g, lr in zip(self.optimizer.param_groups, self.lrs_at(self.last_epoch)):
            g["lr"] = lr
        set_last_lr(self, [g["lr"] for g in self.optimizer.param_groups])

    def _before_optimizer_step(self, optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        if len(optimizer.param_groups) != self.groups_seen:
            self.refresh()

    # --- stepping -----------------------------------------------------------------------------------------

    def step(self, metrics: float | None = None) -> None:  # type: ignore[override]
        """Advance one optimizer step; with ``metrics`` (plateau only), account for one epoch's metric instead."""
        if metrics is None:
            super().step()
            return
        if self.plateau is None:
            raise ArgumentError("this Schedule has no plateau: step() takes no metric")
        if self.plateau.update(float(metrics)):
            self.refresh()

    # --- state: everything in state_dict ---------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Plain data only (a checkpoint loads with ``weights_only=True``); a snapshot, not a view."""
        state = {k: list(v) if isinstance(v, list) else v for k, v in super().state_dict().items()}
        state.pop("_hook", None)
        state["curve"] = self.curve.to_dict() if isinstance(self.curve, Curve) else self.curve
        state["plateau"] = None if self.plateau is None else dataclasses.asdict(self.plateau)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        curve = state.pop("curve", None)
        plateau = state.pop("plateau", None)
        self.__dict__.update(state)
        if isinstance(curve, dict):
            self.curve = curve_from_dict(curve)
        elif curve is not None:
            self.curve = curve
        self.plateau = None if plateau is None else Plateau(**plateau)
