"""``GradientMonitor``: gradient norms and update-to-weight ratios every k optimizer steps, with no per-step sync."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger

from lightning_bestpractices.errors import ArgumentError

from .functional import grad_norm_by_group, group_names, update_ratio_by_group

__all__ = ["GradientMonitor"]


class GradientMonitor(L.Callback):
    """Every ``every_n_steps`` optimizer steps, log the gradient norm (total and per param group), optionally per
    parameter, the update-to-weight ratio per group, and optionally W&B histograms of the gradients.

    The norms are read in ``on_before_optimizer_step``: after the backward pass and the DDP all-reduce, after AMP's
    unscaling (so ``16-mixed`` shows true gradient norms, not scaled ones), before gradient clipping (so they show
    what clipping acts on), and once per real optimizer step (never between accumulation micro-batches). The
    update-to-weight ratio ``||w_after - w_before|| / ||w_before||`` needs the weights on both sides of the step: on a
    logging step the weights are copied there and a one-shot ``Optimizer.register_step_post_hook`` measures them
    after the step. A step the AMP grad scaler skips logs no ratio.

    On a step that does not log, the callback increments a counter, does one modulo and returns: no host sync, no tensor work,
    no loop over parameters. On a logging step the values come to the host once (one sync per logging step).

    What it adds over Lightning's ``grad_norm`` utility (per-parameter norms from ``on_before_optimizer_step``):
    per-group norms named after the param groups, the update ratio, the logging interval in optimizer steps (not
    batches) and histograms. Metric keys: ``{prefix}norm_total``, ``{prefix}norm/{group}``,
    ``{prefix}update_ratio/{group}``, ``{prefix}norm_layer/{param}``, ``{prefix}hist/{param}``; written to every
    logger at ``step=trainer.global_step`` (rank 0 only, as Lightning's loggers do; gradients are identical on every
    rank after the all-reduce). The last logged values are kept in :attr:`last`.

    Args:
        every_n_steps: log at optimizer steps 0, k, 2k, ... (``trainer.global_step % k == 0``, the step about to be
            taken); >= 1.
        per_layer: also log the norm of every parameter's gradient.
        update_ratio: log the update-to-weight ratio per group (copies the weights once per logging step).
        histograms: also log a W&B histogram of every parameter's gradient (only to a ``WandbLogger``).
        norm_type: the p of the p-norm, > 0 (``float("inf")`` for the max-norm).
        prefix: prepended to every metric key.

    Examples:
        >>> import lightning as L
        >>> from lightning.pytorch.demos.boring_classes import BoringModel
        >>> monitor = GradientMonitor(every_n_steps=2)
        >>> trainer = L.Trainer(max_steps=3, callbacks=[monitor], logger=False, enable_checkpointing=False,
        ...                     enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
        >>> trainer.fit(BoringModel())
        >>> sorted(monitor.last), monitor.last_step
        (['grad/norm/0', 'grad/norm_total', 'grad/update_ratio/0'], 2)
    """

    def __init__(
        self,
        every_n_steps: int = 50,
        per_layer: bool = False,
        update_ratio: bool = True,
        histograms: bool = False,
        norm_type: float = 2.0,
        prefix: str = "grad/",
    ) -> None:
        if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ArgumentError(f"`every_n_steps` must be an int >= 1, got {every_n_steps!r}")
        if not norm_type > 0:
            raise ArgumentError(f"`norm_type` must be > 0, got {norm_type!r}")
        self.every_n_steps = every_n_steps
        self.per_layer = per_layer
        self.update_ratio = update_ratio
        self.histograms = histograms
        self.norm_type = float(norm_type)
        self.prefix = prefix
        self.last: dict[str, float] = {}
        self.last_step: int | None = None
        self._before: list[list[torch.Tensor]] | None = None
        self._handle: Any = None
        self._step = 0

    # --- hooks ------------------------------------------------------------------------------------------------

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._step = trainer.global_step  # a resumed run continues the count

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        # the whole cost of a step that does not log: a counter (cheaper than Lightning's global_step property,
        # which walks the loop's progress objects) and a modulo; it equals trainer.global_step here
        step = self._step
        self._step = step + 1
        if step % self.every_n_steps:
            return
        self._remove_hook()
        names = group_names(optimizer)
        total, per_group = grad_norm_by_group(optimizer, self.norm_type)
        tensors = {f"{self.prefix}norm_total": total}
        tensors.update({f"{self.prefix}norm/{n}": v for n, v in zip(names, per_group)})
        if self.per_layer or self.histograms:
            owner = {id(p): n for n, p in pl_module.named_parameters()}
            grads = [(owner.get(id(p), f"group{gi}.{pi}"), p.grad) for gi, g in enumerate(optimizer.param_groups)
                     for pi, p in enumerate(g["params"]) if p.grad is not None]
            if self.per_layer:
                tensors.update({f"{self.prefix}norm_layer/{n}": torch.linalg.vector_norm(gr.detach().float(),
                                                                                         self.norm_type)
                                for n, gr in grads})
        metrics = dict(zip(tensors, torch.stack([t.float().to(total.device) for t in tensors.values()]).tolist()))
        self.last = dict(metrics)
        self.last_step = step
        self._log(trainer, metrics, step)
        if self.histograms:
            self._log_histograms(trainer, grads, step)
        if self.update_ratio:
            self._before = [[p.detach().clone() for p in g["params"]] for g in optimizer.param_groups]
            self._handle = optimizer.register_step_post_hook(self._after_step_hook(trainer, names, step))

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self._handle is not None:  # a step the grad scaler skipped never ran the post-hook: drop its weight copy
            self._remove_hook()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._remove_hook()

    # --- helpers ----------------------------------------------------------------------------------------------

    def _after_step_hook(self, trainer: L.Trainer, names: list[str], step: int):
        def hook(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            before, self._before = self._before, None
            self._remove_hook()
            if before is None:
                return
            after = [list(g["params"]) for g in optimizer.param_groups]
            ratios = update_ratio_by_group(before, after, self.norm_type)
            values = torch.stack([r.to(ratios[0].device) for r in ratios]).tolist() if ratios else []
            metrics = {f"{self.prefix}update_ratio/{n}": v for n, v in zip(names, values)}
            self.last.update(metrics)
            self._log(trainer, metrics, step)

        return hook

    def _remove_hook(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._before = None

    @staticmethod
    def _log(trainer: L.Trainer, metrics: dict[str, float], step: int) -> None:
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)

    def _log_histograms(self, trainer: L.Trainer, grads: list[tuple[str, torch.Tensor]], step: int) -> None:
        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if not loggers or not trainer.is_global_zero:
            return
        import wandb

        hists = {f"{self.prefix}hist/{n}": wandb.Histogram(g.detach().float().cpu().numpy()) for n, g in grads}
        for logger in loggers:
            logger.log_metrics(hists, step=step)
