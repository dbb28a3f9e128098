"""``NonFiniteGuard``: skip or stop on a NaN/inf loss or gradient, with the same decision on every DDP rank."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from lightning_bestpractices.errors import ArgumentError

from .functional import first_nonfinite, maybe_nonfinite

__all__ = ["NonFiniteGuard"]

ACTIONS = ("skip", "stop")
WATCH = ("both", "loss", "grads")


class NonFiniteGuard(L.Callback):
    """Watch the loss and the gradients; on a NaN or inf, skip the optimizer step (``action="skip"``) or end the
    run (``action="stop"``).

    **Where it decides.** In ``on_before_optimizer_step``, once per real optimizer step: after the backward pass of
    every accumulated micro-batch, after DDP's all-reduce and after AMP's unscaling. The gradients there are
    identical on every rank, so a gradient check agrees across ranks by construction. The losses (every micro-batch
    loss since the last step, seen in ``on_before_backward``) differ per rank, so the loss verdict goes through
    ``trainer.strategy.reduce_boolean_decision``: a non-finite loss on any rank skips (or stops) every rank.
    Returning ``None`` from ``training_step`` instead leaves the other ranks waiting in the all-reduce forever.

    **What a skip does.** Every gradient of the optimizer is set to ``None``, so torch's optimizers change neither
    the parameters nor their state (Adam's step count and moments stay as they were). The learning-rate schedule
    is held too, without knowing its class: the ``state_dict()`` of every scheduler in
    ``trainer.lr_scheduler_configs`` and every param group's hyperparameters (``lr``, momentum, betas, ...) are
    copied before the step and put back in ``on_train_batch_end``, which Lightning runs after its step-interval
    (and epoch-interval) scheduler updates. An epoch-interval scheduler that stepped on that batch (the epoch's last)
    is then stepped again from the restored state, since the epoch did end. ``ReduceLROnPlateau`` with
    ``interval="step"`` updates after ``on_train_batch_end`` and is not held. Skips are counted
    (:attr:`skips`, :attr:`skipped_steps`) and logged as ``nonfinite/skips``.

    **What a stop does.** The bad step is skipped as above, ``trainer.should_stop`` is set on every rank, a
    checkpoint of the last good state (the weights and optimizer state before the bad step) is written to
    ``dirpath/filename`` (default: ``trainer.default_root_dir``), and a warning names the step and the first
    parameter with a non-finite gradient, or the loss. :attr:`stop_reason` keeps the message. If ``min_epochs`` /
    ``min_steps`` keep the Trainer running, every further step is skipped. ``trainer.fit(..., ckpt_path=...)`` on
    that checkpoint resumes; the skip count survives (:meth:`state_dict`).

    **Cost.** One host sync per optimizer step (a single bool; the gradient check is one fused norm, and only when
    that norm is not finite are the gradients checked one by one), plus under DDP one all-reduce of one number when
    the loss is watched. With ``watch="grads"`` no collective is needed. Under ``16-mixed`` the grad scaler already
    skips steps with inf gradients and lowers its scale; use ``watch="loss"`` there so those calibration steps are
    not counted.

    Args:
        action: ``"skip"`` or ``"stop"``.
        watch: ``"both"`` (loss and gradients), ``"loss"`` or ``"grads"``.
        max_skips: with ``action="skip"``, stop (as ``"stop"`` does) once this many steps were skipped; ``None``
            never stops.
        dirpath: folder of the last-good checkpoint written on stop; ``None``: ``trainer.default_root_dir``.
        filename: its file name.

    Examples:
        >>> import lightning as L
        >>> from lightning.pytorch.demos.boring_classes import BoringModel
        >>> class Spiky(BoringModel):
        ...     def training_step(self, batch, batch_idx):
        ...         out = super().training_step(batch, batch_idx)
        ...         return out["loss"] * float("nan") if self.global_step == 2 else out
        >>> guard = NonFiniteGuard(action="skip")
        >>> trainer = L.Trainer(max_steps=5, callbacks=[guard], logger=False, enable_checkpointing=False,
        ...                     enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
        >>> trainer.fit(Spiky())
        >>> guard.skips, guard.skipped_steps
        (1, [2])
    """

    def __init__(
        self,
        action: Literal["skip", "stop"] = "skip",
        watch: Literal["both", "loss", "grads"] = "both",
        max_skips: int | None = None,
        dirpath: str | Path | None = None,
        filename: str = "last-good.ckpt",
    ) -> None:
        if action not in ACTIONS:
            raise ArgumentError(f"`action` can be skip or stop, got {action!r}")
        if watch not in WATCH:
            raise ArgumentError(f"`watch` can be both, loss or grads, got {watch!r}")
        if max_skips is not None and (isinstance(max_skips, bool) or not isinstance(max_skips, int) or max_skips < 1):
            raise ArgumentError(f"`max_skips` must be an int >= 1 or None, got {max_skips!r}")
        if not filename or "/" in filename:
            raise ArgumentError(f"`filename` must be a plain file name, got {filename!r}")
        self.action = action
        self.watch = watch
        self.max_skips = max_skips
        self.dirpath = dirpath
        self.filename = filename
        self.skips = 0
        self.skipped_steps: list[int] = []
        self.stop_reason: str | None = None
        self.checkpoint_path: Path | None = None
        self._loss_bad: torch.Tensor | None = None
        self._rewind: dict[str, Any] | None = None
        self._stopping = False

    @property
    def state_key(self) -> str:
        return self._generate_state_key(action=self.action, watch=self.watch)

    def state_dict(self) -> dict[str, Any]:
        return {"skips": self.skips, "skipped_steps": list(self.skipped_steps)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skips = int(state_dict["skips"])
        self.skipped_steps = list(state_dict["skipped_steps"])

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._loss_bad, self._rewind, self._stopping = None, None, False

    # --- watch ------------------------------------------------------------------------------------------------

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        if self.watch == "grads":
            return
        bad = ~torch.isfinite(loss.detach()).all()  # stays on the device: no sync per micro-batch
        self._loss_bad = bad if self._loss_bad is None else self._loss_bad | bad

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        loss_bad, self._loss_bad = self._loss_bad, None
        if self._stopping:  # min_epochs/min_steps keep the Trainer going after a stop: change nothing more
            self._drop_step(trainer, optimizer)
            return
        params = [p for g in optimizer.param_groups for p in g["params"]]
        device = params[0].device if params else torch.device("cpu")
        flags = [loss_bad if loss_bad is not None else torch.zeros((), dtype=torch.bool, device=device)]
        if self.watch != "loss":
            flags.append(maybe_nonfinite([p.grad for p in params]))
        host = torch.stack([f.to(device) for f in flags]).tolist()  # the one host sync of the step
        reason = None
        if self.watch != "grads":
            # the loss differs per rank: any rank's non-finite loss decides for all
            if trainer.strategy.reduce_boolean_decision(bool(host[0]), all=False):
                reason = "the loss"
        if reason is None and self.watch != "loss" and host[-1]:
            # gradients are identical on every rank after the all-reduce: this agrees without a collective
            owner = {id(p): n for n, p in pl_module.named_parameters()}
            name = first_nonfinite((owner.get(id(p), f"param{i}"), p.grad) for i, p in enumerate(params))
            if name is not None:  # None: the fused norm only overflowed, every gradient is finite
                reason = f"the gradient of `{name}`"
        if reason is None:
            return
        step = trainer.global_step
        self._drop_step(trainer, optimizer)
        self.skips += 1
        self.skipped_steps.append(step)
        for logger in trainer.loggers:
            logger.log_metrics({"nonfinite/skips": float(self.skips)}, step=step)
        if self.action == "stop" or (self.max_skips is not None and self.skips >= self.max_skips):
            self.stop_reason = f"NonFiniteGuard: non-finite value in {reason} at optimizer step {step}"
            self._stopping = True
            trainer.should_stop = True
        else:
            rank_zero_info(f"NonFiniteGuard: skipped optimizer step {step} (non-finite value in {reason}); "
                           f"{self.skips} skipped so far")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self._rewind is not None:
            self._restore_schedule(trainer, pl_module)
        if self._stopping and self.checkpoint_path is None:
            folder = Path(self.dirpath if self.dirpath is not None else trainer.default_root_dir)
            path = folder / self.filename
            trainer.save_checkpoint(path)  # every rank calls it (rank 0 writes); the decision is the same on all
            self.checkpoint_path = path
            rank_zero_warn(f"{self.stop_reason}; stopping. The last good state is saved at {str(path)!r}; "
                           "resume with trainer.fit(model, ckpt_path=...)")

    # --- skipping ---------------------------------------------------------------------------------------------

    def _drop_step(self, trainer: L.Trainer, optimizer: Any) -> None:
        """Make the coming optimizer step a no-op and remember the schedule, to rewind it after Lightning steps it."""
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = None
        if self._rewind is None:
            self._rewind = {
                "schedulers": [copy.deepcopy(c.scheduler.state_dict()) for c in trainer.lr_scheduler_configs],
                "epochs": [getattr(c.scheduler, "last_epoch", None) for c in trainer.lr_scheduler_configs],
                "groups": [(opt, [copy.deepcopy({k: v for k, v in g.items() if k != "params"})
                                  for g in opt.param_groups]) for opt in trainer.optimizers],
            }

    def _restore_schedule(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rewind, self._rewind = self._rewind, None
        configs = trainer.lr_scheduler_configs
        advanced = [c for c, before in zip(configs, rewind["epochs"])
                    if c.interval == "epoch" and before is not None and c.scheduler.last_epoch != before]
        for config, state in zip(configs, rewind["schedulers"]):
            config.scheduler.load_state_dict(state)
        for opt, groups in rewind["groups"]:
            for group, saved in zip(opt.param_groups, groups):
                group.update(saved)
        for config in advanced:  # the epoch ended on this batch: its scheduler step stands, from the held LRs
            pl_module.lr_scheduler_step(config.scheduler, None)
