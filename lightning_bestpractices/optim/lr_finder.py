"""LR range test that keeps per-group LR ratios, with three suggestion rules on log LR, a plot, and a restore.

Lightning's ``Tuner.lr_find`` sets *every* parameter group to the same LR during the sweep (its scheduler has one
end LR), so discriminative LRs are lost, and it offers one rule (steepest descent on the raw index). This is an
equivalent built from the same pieces -- a real ``Trainer`` run, an exponential sweep, early stop on divergence --
that adds:

* the sweep multiplies each group's base LR (``lr * lr_multiplier``) by the same factor, so ratios hold;
* suggestions ``steepest`` (most negative slope of the smoothed loss against ``log10(lr)``), ``valley`` (middle of
  the longest stretch over which the smoothed loss keeps falling) and ``minimum/10`` (one decade below the
  minimum), all computed on log LR;
* a plot of loss against LR with the three suggestions, saved and logged through
  :func:`lightning_bestpractices._logging.log_figure` (W&B, TensorBoard or just the PNG);
* the model (parameters and buffers) and the global RNG state are restored bit for bit afterwards, and the chosen
  LR is written into the module's :class:`~lightning_bestpractices.optim.mixin.OptimConfig` (and its saved
  hyperparameters, so the logged config shows the LR that trains);
* :class:`LRFinder`, the same as a callback of the user's own Trainer: the sweep runs once, on rank 0, in the
  Trainer's precision, before the optimizer is built; the suggestion is broadcast to every rank, the plot goes to
  the run (its folder and loggers), and the LR lands in the config the run logs.
"""

from __future__ import annotations

import copy
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info

from lightning_bestpractices.errors import ArgumentError

__all__ = ["LRFindResult", "LRFinder", "RangeTest", "lr_find", "suggest_lr", "RULES"]

RULES = ("steepest", "valley", "minimum/10")


def _smooth(losses: Sequence[float], beta: float) -> np.ndarray:
    out, avg = [], 0.0
    for i, x in enumerate(losses, start=1):
        avg = beta * avg + (1 - beta) * x
        out.append(avg / (1 - beta**i))
    return np.asarray(out)


def suggest_lr(
    lrs: Sequence[float],
    losses: Sequence[float],
    rule: str = "valley",
    *,
    skip_begin: int = 0,
    skip_end: int = 0,
) -> float:
    """Pick an LR from a range test. ``losses`` should already be smoothed; everything is done on ``log10(lr)``.

    Examples:
        >>> lrs = [10 ** (-6 + k / 10) for k in range(61)]            # 1e-6 .. 1
        >>> losses = [2.0 - math.tanh((math.log10(lr) + 3) * 2) + (lr > 0.1) * 20 * lr for lr in lrs]
        >>> [f"{suggest_lr(lrs, losses, r):.1e}" for r in RULES]
        ['1.0e-03', '3.2e-04', '1.0e-02']
    """
    if rule not in RULES:
        raise ArgumentError(f"`rule` must be one of {RULES}, got {rule!r}")
    x = np.log10(np.asarray(lrs, dtype=float))
    y = np.asarray(losses, dtype=float)
    end = len(x) - skip_end
    x, y = x[skip_begin:end], y[skip_begin:end]
    if len(x) < 3:
        raise ArgumentError(f"need at least 3 points to suggest an LR, got {len(x)}")
    finite = np.isfinite(y)
    x, y = x[finite], y[finite]
    if rule == "minimum/10":
        return float(10 ** (x[int(np.argmin(y))] - 1.0))
    if rule == "steepest":
        return float(10 ** x[int(np.argmin(np.gradient(y, x)))])
    # valley: longest decreasing subsequence of the loss in LR order; its middle in log LR
    n = len(y)
    length, prev = [1] * n, [-1] * n
    for i in range(n):
        for j in range(i):
            if y[j] > y[i] and length[j] + 1 > length[i]:
                length[i], prev[i] = length[j] + 1, j
    end_i = int(np.argmax(length))
    start_i = end_i
    while prev[start_i] >= 0:
        start_i = prev[start_i]
    return float(10 ** ((x[start_i] + x[end_i]) / 2))


@dataclass
class LRFindResult:
    """Outcome of :func:`lr_find`: the sweep (LR of a multiplier-1 group), losses, and the suggestions."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestions: dict[str, float]
    rule: str
    group_lrs: list[list[float]] = field(default_factory=list)
    precision: str | None = None  # the precision the sweep ran in

    @property
    def suggestion(self) -> float:
        return self.suggestions[self.rule]

    def plot(self):
        """Loss against LR (log axis), raw and smoothed, with a marker for every rule."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.plot(self.lrs, self.losses, color="0.75", lw=1, label="loss")
        ax.plot(self.lrs, self.smoothed, color="C0", lw=2, label="smoothed")
        for (name, lr), color in zip(self.suggestions.items(), ("C3", "C2", "C1")):
            y = float(np.interp(math.log10(lr), np.log10(self.lrs), self.smoothed))
            style = "o" if name == self.rule else "x"
            ax.plot([lr], [y], style, color=color, ms=9, label=f"{name}: {lr:.2e}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (multiplier-1 group)")
        ax.set_ylabel("training loss")
        top = np.nanpercentile(self.smoothed, 95) if len(self.smoothed) else 1.0
        ax.set_ylim(min(self.smoothed) - 0.05 * abs(top), top * 1.2 if top > 0 else None)
        ax.set_title(f"LR range test -- suggestion ({self.rule}) {self.suggestion:.2e}")
        ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3, which="both")
        return fig


class RangeTest(Callback):
    """The sweep: before every optimizer step, every group's LR is its base LR times the sweep factor.

    The LR is set in ``on_before_optimizer_step`` (after the previous step's scheduler update), so it is the LR
    the step uses whatever scheduler the module configured; an
    :class:`~lightning_bestpractices.optim.mixin.OptimizerMixin` module builds no schedule while this callback is
    in the Trainer.
    """

    def __init__(self, min_lr: float, max_lr: float, steps: int, beta: float, diverge: float) -> None:
        self.min_lr, self.max_lr, self.steps, self.beta, self.diverge = min_lr, max_lr, steps, beta, diverge
        self.lrs: list[float] = []
        self.group_lrs: list[list[float]] = []
        self.losses: list[float] = []
        self._avg, self._best = 0.0, math.inf
        self._ratios: list[float] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if len(trainer.optimizers) != 1:
            raise ArgumentError(f"lr_find needs exactly one optimizer, got {len(trainer.optimizers)}")
        opt = trainer.optimizers[0]
        ref = opt.param_groups[0]
        self._scale = float(ref.get("lr_multiplier", 1.0))
        ref_lr = float(ref.get("initial_lr", ref["lr"]))
        # ratio to a multiplier-1 group: from the multipliers (or the configured LRs when groups have none)
        self._ratios = [
            float(g["lr_multiplier"]) if "lr_multiplier" in g else self._scale * float(g.get("initial_lr", g["lr"])) / ref_lr
            for g in opt.param_groups
        ]

    def factor(self, k: int) -> float:
        """LR of a multiplier-1 group at sweep step ``k``: exponential from ``min_lr`` to ``max_lr``."""
        return self.min_lr * (self.max_lr / self.min_lr) ** (min(k, self.steps - 1) / max(self.steps - 1, 1))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        lr = self.factor(len(self.lrs))
        for g, ratio in zip(optimizer.param_groups, self._ratios):
            g["lr"] = lr * ratio
        self.group_lrs.append([float(g["lr"]) for g in optimizer.param_groups])
        self.lrs.append(lr)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if len(self.losses) >= len(self.lrs):  # accumulating: only count batches that stepped
            return
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        loss = trainer.strategy.reduce(loss.detach().float(), reduce_op="mean")
        value = float(loss)  # the sweep needs the value now (the user asked for it; not a training hot path)
        self.losses.append(value)
        i = len(self.losses)
        self._avg = self.beta * self._avg + (1 - self.beta) * value
        smoothed = self._avg / (1 - self.beta**i)
        self._best = min(self._best, smoothed)
        stop = not math.isfinite(value) or (i > 5 and smoothed > self.diverge * self._best)
        if trainer.strategy.reduce_boolean_decision(stop, all=False):
            trainer.should_stop = True


def lr_find(
    model: L.LightningModule,
    datamodule: L.LightningDataModule | None = None,
    train_dataloaders: Any = None,
    *,
    min_lr: float = 1e-7,
    max_lr: float = 1.0,
    num_steps: int = 100,
    rule: str = "valley",
    smoothing: float = 0.9,
    diverge: float = 4.0,
    apply: bool = True,
    log_to: L.Trainer | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
    trainer: L.Trainer | None = None,
) -> LRFindResult:
    """Sweep the LR exponentially from ``min_lr`` to ``max_lr`` in a short real ``Trainer`` run, then restore.

    Args:
        model: the module; its ``configure_optimizers`` builds the optimizer (for
            :class:`~lightning_bestpractices.optim.mixin.OptimizerMixin` modules the schedule is left out).
        datamodule, train_dataloaders: the training data, as for ``Trainer.fit``.
        min_lr, max_lr: sweep range of a multiplier-1 group, ``0 < min_lr < max_lr``.
        num_steps: optimizer steps of the sweep (it stops early once the smoothed loss passes ``diverge`` times its
            minimum or turns non-finite).
        rule: which suggestion to apply: ``"steepest"``, ``"valley"`` or ``"minimum/10"``.
        smoothing: EMA factor of the loss, in [0, 1).
        apply: write the suggestion into ``model.optim`` (an ``OptimConfig``) as the new ``lr``.
        log_to: a Trainer whose loggers receive the plot (default: ``trainer``, else the sweep's own Trainer).
        trainer_kwargs: more ``Trainer`` arguments for the sweep (``devices``, ``precision``, ``logger`` ...).
        trainer: the run the LR is for (not yet fitted): the sweep uses its precision, and the plot goes to its run
            folder and loggers. The sweep's own files go to a temporary folder, never the working folder.

    Raises:
        lightning_bestpractices.errors.ArgumentError: bad range, step count, rule or smoothing; before anything runs.
    """
    if not (isinstance(min_lr, (int, float)) and min_lr > 0):
        raise ArgumentError(f"`min_lr` must be > 0, got {min_lr!r}")
    if not (isinstance(max_lr, (int, float)) and max_lr > min_lr):
        raise ArgumentError(f"`max_lr` must be > `min_lr` ({min_lr!r}), got {max_lr!r}")
    if not (isinstance(num_steps, int) and num_steps >= 5):
        raise ArgumentError(f"`num_steps` must be an int >= 5, got {num_steps!r}")
    if rule not in RULES:
        raise ArgumentError(f"`rule` must be one of {RULES}, got {rule!r}")
    if not 0.0 <= smoothing < 1.0:
        raise ArgumentError(f"`smoothing` must be in [0, 1), got {smoothing!r}")
    if not diverge > 1.0:
        raise ArgumentError(f"`diverge` must be > 1, got {diverge!r}")

    state = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    sweep = RangeTest(float(min_lr), float(max_lr), num_steps, smoothing, diverge)
    kwargs: dict[str, Any] = dict(
        max_steps=num_steps, max_epochs=-1, num_sanity_val_steps=0, limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=False,
    )  # fmt: skip
    if trainer is not None:
        kwargs["precision"] = trainer.precision
    kwargs.update(trainer_kwargs or {})
    kwargs.setdefault("default_root_dir", tempfile.mkdtemp(prefix="lr_find-"))
    kwargs["callbacks"] = [*list(kwargs.get("callbacks") or []), sweep]
    sweeper = L.Trainer(**kwargs)
    try:
        sweeper.fit(model, train_dataloaders=train_dataloaders, datamodule=datamodule)
    finally:
        model.load_state_dict(state)
        torch.set_rng_state(rng)
    n = len(sweep.losses)
    lrs, losses = sweep.lrs[:n], sweep.losses
    smoothed = _smooth(losses, smoothing)
    skip = min(3, max(0, n // 10))
    suggestions = {r: suggest_lr(lrs, smoothed, r, skip_begin=skip, skip_end=1) for r in RULES}
    result = LRFindResult(lrs, losses, smoothed.tolist(), suggestions, rule, sweep.group_lrs[:n], str(sweeper.precision))
    rank_zero_info(
        "LR range test: " + ", ".join(f"{k} {v:.3e}" for k, v in suggestions.items()) + f" -> using {rule}"
    )
    from lightning_bestpractices._logging import log_figure

    target = log_to or trainer or sweeper
    if target.is_global_zero:
        log_figure(target, "lr_find", result.plot())
    if apply:
        apply_lr(model, result.suggestion)
    return result


def apply_lr(model: L.LightningModule, lr: float) -> None:
    """Write ``lr`` into the module's optim config and its saved hyperparameters (what the run logs)."""
    from .mixin import OptimConfig

    if getattr(model, "optim", None) is not None:
        model.optim = OptimConfig.from_any(model.optim).with_lr(lr)
    hparams = getattr(model, "hparams", None)
    if hparams is not None and ("lr" in hparams or "optim" in hparams):
        hparams = dict(hparams)
        if hparams.get("lr") is not None:
            hparams["lr"] = lr
        optim = hparams.get("optim")
        if isinstance(optim, dict):
            hparams["optim"] = {**optim, "lr": lr}
        elif "optim" in hparams:
            hparams["optim"] = {"lr": lr} if optim is None else OptimConfig.from_any(optim).with_lr(lr)
        model.save_hyperparameters(hparams)  # what Lightning logs at fit start is the saved (initial) copy


class LRFinder(Callback):
    """Run the LR range test inside the user's own ``Trainer.fit``, before its optimizer is built.

    Arguments as :func:`lr_find`. At ``setup("fit")`` rank 0 sweeps a copy of the module in the Trainer's
    precision (one process: the sweep needs no gradient sync; a ``WeightInit`` of the Trainer initialises the copy
    first, as it will the model; layer groups frozen by a ``GradualUnfreezing`` listed before this callback stay
    frozen, so the LR is the head phase's), the suggestion is broadcast to every rank and
    written into the module's optim config and hyperparameters (and into the config a ``LightningCLI`` run logs),
    then ``configure_optimizers`` builds the optimizer and schedule with it. The plot goes to the run folder and
    its loggers. :attr:`result` holds the sweep on rank 0 (``None`` on the others); :attr:`lr` the LR on every rank.

    Examples:
        >>> LRFinder(num_steps=50, rule="minimum/10").rule
        'minimum/10'
    """

    def __init__(self, *, min_lr: float = 1e-7, max_lr: float = 1.0, num_steps: int = 100, rule: str = "valley",
                 smoothing: float = 0.9, diverge: float = 4.0) -> None:  # fmt: skip
        if rule not in RULES:
            raise ArgumentError(f"`rule` must be one of {RULES}, got {rule!r}")
        self.kwargs = dict(min_lr=min_lr, max_lr=max_lr, num_steps=num_steps, rule=rule, smoothing=smoothing,
                           diverge=diverge)  # fmt: skip
        self.rule = rule
        self.result: LRFindResult | None = None
        self.lr: float | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        lr = None
        if trainer.is_global_zero:
            copy_ = _detached_copy(pl_module)
            # the loader the run will train on (a datamodule is not handed over: the sweep would re-attach it)
            data = {"train_dataloaders": _loader(trainer)}
            sweep = dict(accelerator="cpu" if trainer.strategy.root_device.type == "cpu" else "auto", devices=1,
                         strategy="auto", callbacks=_model_preparers(trainer))  # fmt: skip
            self.result = lr_find(copy_, **data, **self.kwargs, apply=False, trainer=trainer, trainer_kwargs=sweep)
            lr = self.result.suggestion
        self.lr = float(trainer.strategy.broadcast(lr, src=0))
        apply_lr(pl_module, self.lr)
        _update_logged_config(trainer, self.lr)


def _model_preparers(trainer: L.Trainer) -> list[Callback]:
    """Fresh copies of the callbacks that initialise the model at fit start (``WeightInit``): the sweep then
    tunes the weights that will train, drawn from the same RNG state (the sweep restores it afterwards)."""
    from lightning_bestpractices.initialization import WeightInit

    out = []
    for cb in trainer.callbacks:
        if isinstance(cb, WeightInit) and not getattr(cb, "done", False):
            out.append(copy.deepcopy(cb))
    return out


def _detached_copy(module: L.LightningModule) -> L.LightningModule:
    trainer = module.trainer
    module.trainer = None  # type: ignore[assignment]
    try:
        return copy.deepcopy(module)
    finally:
        module.trainer = trainer


def _loader(trainer: L.Trainer) -> Any:
    from lightning_bestpractices._compat import train_dataloader

    return train_dataloader(trainer)


def _update_logged_config(trainer: L.Trainer, lr: float) -> None:
    """A LightningCLI run logs its parsed config at setup; make its LR the one that trains."""
    from lightning.pytorch.cli import SaveConfigCallback

    for cb in trainer.callbacks:
        config = getattr(cb, "config", None) if isinstance(cb, SaveConfigCallback) else None
        if config is None:
            continue
        for key in ("model.optim.lr", "model.lr"):
            try:
                if config.get(key) is not None or key == "model.optim.lr" and config.get("model.optim") is not None:
                    config[key] = lr
            except (KeyError, TypeError, AttributeError):
                continue
