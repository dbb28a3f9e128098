"""``MCDropoutMixin``: MC dropout predictions from ``trainer.predict`` (and validate/test), DDP-gathered in order.

What it adds over calling :func:`mc_predict` in your own ``predict_step``:

* Lightning's ``on_{predict,validation,test}_model_eval`` hooks are overridden so the whole model is in eval
  (BatchNorm uses its running statistics and never updates them); dropout is then switched on per step by
  :func:`mc_predict` itself, so no later ``.eval()`` call can switch MC off;
* every input is keyed by its dataset index (from Lightning's index-tracking batch sampler, or the rank-strided
  position used by ``DistributedSampler(shuffle=False)`` and the package's in-memory loaders), so masks, and
  thus results, are identical with 1 or 2 processes and any batch size;
* at the end of the epoch the outputs of all ranks are gathered, de-duplicated and sorted by dataset index into
  ``self.mc_results[stage]`` (an :class:`MCOutput` plus ``targets`` and ``indices``) on every rank;
* with targets, validate/test log ``mc_accuracy``, ``mc_nll``, ``mc_ece``, ``mc_brier``, ``mc_auroc_mi`` and
  save/log a reliability diagram and an MI histogram;
* with ``calibrate=True``, before test/predict a temperature is fitted on the datamodule's validation set (every
  sample's logits divided by T before its softmax, the MC mixture's NLL minimised; see ``temperature.py``),
  gathered over all ranks so every rank uses the same T, and used for the stage (logged as ``mc_temperature``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from lightning_bestpractices.errors import ArgumentError

from .calibration import calibration_metrics, log_calibration_figures, uncertainty_auroc
from .functional import MCOutput, MCRegressionOutput, mc_logits, mc_predict
from .temperature import fit_temperature

__all__ = ["MCDropoutMixin"]

_STAGES = ("predict", "validate", "test")


class MCDropoutMixin:
    """Mix into a ``LightningModule`` before it: ``class Net(MCDropoutMixin, L.LightningModule)``.

    Call :meth:`configure_mc_dropout` in ``__init__`` to change the defaults (30 samples, predict only). Override
    :meth:`mc_split` to declare the deterministic prefix and stochastic suffix yourself, and
    :meth:`mc_unpack_batch` if your batches are not ``x`` or ``(x, y, ...)``.

    Examples:
        >>> import lightning as L
        >>> from torch import nn
        >>> class Net(MCDropoutMixin, L.LightningModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))
        ...         self.configure_mc_dropout(n_samples=10)
        ...     def forward(self, x):
        ...         return self.net(x)
        >>> trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
        >>> preds = trainer.predict(Net(), torch.utils.data.DataLoader(torch.randn(6, 4), batch_size=4))
        >>> net = trainer.lightning_module
        >>> net.mc_results["predict"].output.mean_probs.shape
        torch.Size([6, 3])
    """

    mc_n_samples: int = 30
    mc_seed: int = 0
    mc_task: str = "multiclass"
    mc_stages: tuple[str, ...] = ("predict",)
    mc_chunk_size: int | None = None
    mc_memory_budget: int | None = None
    mc_n_bins: int = 15
    mc_log_figures: bool = True
    mc_calibrate: bool = False
    mc_temperature: float = 1.0

    def configure_mc_dropout(
        self,
        n_samples: int = 30,
        *,
        seed: int = 0,
        task: str = "multiclass",
        stages: tuple[str, ...] | list[str] = ("predict",),
        chunk_size: int | None = None,
        memory_budget: int | None = None,
        n_bins: int = 15,
        log_figures: bool = True,
        calibrate: bool = False,
    ) -> None:
        """Validate and set the MC settings (see :func:`mc_predict` for the meaning of each).

        ``calibrate=True`` fits a temperature on the validation set before test/predict (classification only).
        """
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
            raise ArgumentError(f"`n_samples` must be an int >= 1, got {n_samples!r}")
        if task not in ("multiclass", "binary", "regression"):
            raise ArgumentError(f"`task` must be 'multiclass', 'binary' or 'regression', got {task!r}")
        bad = [s for s in stages if s not in _STAGES]
        if isinstance(stages, str) or bad:
            raise ArgumentError(f"`stages` must be a subset of {_STAGES}, got {stages!r}")
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise ArgumentError(f"`chunk_size` must be an int >= 1 or None, got {chunk_size!r}")
        if memory_budget is not None and (not isinstance(memory_budget, int) or memory_budget <= 0):
            raise ArgumentError(
                f"`memory_budget` must be a positive number of bytes or None, got {memory_budget!r}"
            )
        if not isinstance(n_bins, int) or n_bins < 1:
            raise ArgumentError(f"`n_bins` must be an int >= 1, got {n_bins!r}")
        self.mc_n_samples, self.mc_seed, self.mc_task = n_samples, int(seed), task
        self.mc_stages, self.mc_chunk_size, self.mc_memory_budget = tuple(stages), chunk_size, memory_budget
        if not isinstance(calibrate, bool):
            raise ArgumentError(f"`calibrate` must be True or False, got {calibrate!r}")
        if calibrate and task == "regression":
            raise ArgumentError(
                "`calibrate=True` fits a temperature to classification logits; got task='regression'"
            )
        self.mc_n_bins, self.mc_log_figures, self.mc_calibrate = n_bins, log_figures, calibrate

    # ------------------------------------------------------------------------------------------ user overrides
    def mc_split(self) -> tuple[Callable[[Tensor], Any], Callable[[Any], Tensor]] | None:
        """Return ``(prefix, suffix)`` to declare the split (prefix has no active dropout); ``None``: automatic."""
        return None

    def mc_unpack_batch(self, batch: Any) -> tuple[Tensor, Tensor | None]:
        """``(inputs, targets or None)`` from a batch: a tensor, or a tuple/list ``(x, y, ...)``."""
        if isinstance(batch, Tensor):
            return batch, None
        if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
            y = batch[1] if len(batch) > 1 and isinstance(batch[1], Tensor) else None
            return batch[0], y if self.mc_task != "regression" else None
        raise ArgumentError(f"cannot unpack a batch of type {type(batch).__name__}; override `mc_unpack_batch`")

    # ---------------------------------------------------------------------------------------------- the steps
    def mc_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0, stage: str = "predict") -> Any:
        """Run :func:`mc_predict` on one batch and keep the result for the epoch-end gather."""
        x, y = self.mc_unpack_batch(batch)
        if y is not None and self.mc_task == "binary" and y.is_floating_point():  # BCE-style 0./1. targets
            y = y.reshape(-1).long()
        indices = self._mc_indices(stage, batch_idx, dataloader_idx, x.shape[0], x.device)
        out = mc_predict(
            self,  # type: ignore[arg-type]
            x,
            self.mc_n_samples,
            targets=y,
            task=self.mc_task,  # type: ignore[arg-type]
            seed=self.mc_seed,
            indices=indices,
            chunk_size=self.mc_chunk_size,
            memory_budget=self.mc_memory_budget,
            temperature=self.mc_temperature if self.mc_task != "regression" else 1.0,
        )
        store = self.__dict__.setdefault("_mc_store", {}).setdefault(stage, [])
        store.append((indices, y, out))  # stays on the device: no host sync per step; moved at epoch end
        return out

    def predict_step(self, batch: Any, batch_idx: int, *args: Any) -> Any:
        if "predict" not in self.mc_stages:
            return super().predict_step(batch, batch_idx, *args)  # type: ignore[misc]
        return self.mc_step(batch, batch_idx, args[0] if args else 0, "predict")

    def validation_step(self, batch: Any, batch_idx: int, *args: Any) -> Any:
        if "validate" not in self.mc_stages:  # the class after the mixin (e.g. your task) does validation
            return super().validation_step(batch, batch_idx, *args)  # type: ignore[misc]
        return self.mc_step(batch, batch_idx, args[0] if args else 0, "validate")

    def test_step(self, batch: Any, batch_idx: int, *args: Any) -> Any:
        if "test" not in self.mc_stages:
            return super().test_step(batch, batch_idx, *args)  # type: ignore[misc]
        return self.mc_step(batch, batch_idx, args[0] if args else 0, "test")

    # ---------------------------------------------------------------------------------- Lightning's eval hooks
    def on_predict_model_eval(self) -> None:
        """Everything in eval (BN frozen); ``mc_predict`` switches only dropout on, inside each step."""
        self.trainer.model.eval()  # type: ignore[attr-defined]

    def on_validation_model_eval(self) -> None:
        self.trainer.model.eval()  # type: ignore[attr-defined]

    def on_test_model_eval(self) -> None:
        self.trainer.model.eval()  # type: ignore[attr-defined]

    # ------------------------------------------------------------------------------------------- calibration
    def fit_mc_temperature(self, dataloader: Any) -> float:
        """Fit :attr:`mc_temperature` on every batch of ``dataloader`` (MC per-sample logits, all ranks).

        Each rank runs its batches (dataset index ``rank + world_size * position`` for the package's sharded
        loaders, else the position) and the logits are gathered, so every rank fits the same T. Returns T.
        """
        if self.mc_task == "regression":
            raise ArgumentError("temperature scaling needs classification logits; `mc_task` is 'regression'")
        rank, world = getattr(dataloader, "rank", 0), getattr(dataloader, "world_size", 1)
        device = self.device  # type: ignore[attr-defined]
        parts, targets, pos = [], [], 0
        for batch in dataloader:
            x, y = self.mc_unpack_batch(batch)
            if y is None:
                raise ArgumentError("`fit_mc_temperature` needs batches with targets, `(x, y, ...)`")
            idx = rank + world * torch.arange(pos, pos + x.shape[0], device=device)
            pos += x.shape[0]
            z = mc_logits(
                self,  # type: ignore[arg-type]
                x.to(device), self.mc_n_samples, seed=self.mc_seed, indices=idx, chunk_size=self.mc_chunk_size,
                memory_budget=self.mc_memory_budget,
            )  # fmt: skip
            parts.append(z.reshape(z.shape[0], z.shape[1], -1).cpu())
            targets.append(y.reshape(-1).long().cpu())
        local = (torch.cat(parts, 1), torch.cat(targets)) if parts else None
        gathered = [local]
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, local)
        gathered = [g for g in gathered if g is not None]
        if not gathered:
            raise ArgumentError("`fit_mc_temperature` got an empty dataloader")
        z = torch.cat([g[0] for g in gathered], 1)
        y = torch.cat([g[1] for g in gathered])
        if self.mc_task == "binary":
            z = z[..., 0]
        self.mc_temperature = fit_temperature(z, y, task=self.mc_task)  # type: ignore[arg-type]
        return self.mc_temperature

    def _mc_calibrate(self, stage: str) -> None:
        if not (self.mc_calibrate and stage in self.mc_stages):
            return
        dm = getattr(self.trainer, "datamodule", None)  # type: ignore[attr-defined]
        if dm is None or not callable(getattr(dm, "val_dataloader", None)):
            raise ArgumentError(
                "`calibrate=True` fits the temperature on `trainer.datamodule.val_dataloader()`, but this "
                f"{stage} run has no datamodule; pass one, or call `fit_mc_temperature(loader)` yourself"
            )
        self.fit_mc_temperature(dm.val_dataloader())

    def on_test_start(self) -> None:
        self._mc_calibrate("test")
        super().on_test_start()  # type: ignore[misc]

    def on_predict_start(self) -> None:
        self._mc_calibrate("predict")
        super().on_predict_start()  # type: ignore[misc]

    # ------------------------------------------------------------------------------------------ epoch bounds
    # Stages run by MC replace the task's own steps, so the task's epoch hooks (which would aggregate metrics
    # its steps never updated) are skipped for those stages; other stages go to the task as usual.
    def on_predict_epoch_start(self) -> None:
        self._mc_reset("predict")
        if "predict" not in self.mc_stages:
            super().on_predict_epoch_start()  # type: ignore[misc]

    def on_validation_epoch_start(self) -> None:
        self._mc_reset("validate")
        if "validate" not in self.mc_stages:
            super().on_validation_epoch_start()  # type: ignore[misc]

    def on_test_epoch_start(self) -> None:
        self._mc_reset("test")
        if "test" not in self.mc_stages:
            super().on_test_epoch_start()  # type: ignore[misc]

    def on_predict_epoch_end(self) -> None:
        if "predict" in self.mc_stages:
            return self._mc_finish("predict")
        return super().on_predict_epoch_end()  # type: ignore[misc]

    def on_validation_epoch_end(self) -> None:
        if "validate" in self.mc_stages:
            return self._mc_finish("validate")
        return super().on_validation_epoch_end()  # type: ignore[misc]

    def on_test_epoch_end(self) -> None:
        if "test" in self.mc_stages:
            return self._mc_finish("test")
        return super().on_test_epoch_end()  # type: ignore[misc]

    def _mc_reset(self, stage: str) -> None:
        self.__dict__.setdefault("_mc_store", {})[stage] = []
        self.__dict__.setdefault("_mc_seen", {})[stage] = {}

    def _mc_indices(self, stage: str, batch_idx: int, dataloader_idx: int, size: int, device: Any) -> Tensor:
        """Dataset index of every input of this batch (see the module docstring)."""
        trainer = self.trainer  # type: ignore[attr-defined]
        loaders = {
            "predict": trainer.predict_dataloaders,
            "validate": trainer.val_dataloaders,
            "test": trainer.test_dataloaders,
        }[stage]
        loader = loaders[dataloader_idx] if isinstance(loaders, (list, tuple)) else loaders
        seen = getattr(getattr(loader, "batch_sampler", None), "seen_batch_indices", None)
        if seen is not None and batch_idx < len(seen) and len(seen[batch_idx]) == size:
            return torch.as_tensor(seen[batch_idx], dtype=torch.long, device=device)
        dataset = getattr(loader, "dataset", None)
        if dataset is not None and hasattr(dataset, "__len__"):  # positions past the end are sampler padding
            self.__dict__.setdefault("_mc_limit", {})[stage] = len(dataset)
        counters = self.__dict__.setdefault("_mc_seen", {}).setdefault(stage, {})
        start = counters.get(dataloader_idx, 0)
        counters[dataloader_idx] = start + size
        pos = torch.arange(start, start + size, device=device)
        return trainer.global_rank + trainer.world_size * pos

    def _mc_finish(self, stage: str) -> None:
        local = [
            (i.cpu(), None if y is None else y.cpu(), _to_cpu(o))
            for i, y, o in self.__dict__.get("_mc_store", {}).get(stage, [])
        ]
        gathered = [local]
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, local)
        items = [item for part in gathered for item in part]
        self.__dict__.setdefault("mc_results", {})
        if not items:
            return
        indices = torch.cat([i for i, _, _ in items])
        order = torch.argsort(indices, stable=True)
        keep = torch.ones_like(order, dtype=torch.bool)
        keep[1:] = indices[order][1:] != indices[order][:-1]  # padding duplicates (DistributedSampler)
        limit = self.__dict__.get("_mc_limit", {}).pop(stage, None)
        if limit is not None:
            keep &= indices[order] < limit
        order = order[keep]
        outputs = [o for _, _, o in items]
        merged = {}
        for f in fields(outputs[0]):
            values = [getattr(o, f.name) for o in outputs]
            merged[f.name] = torch.cat(values)[order] if isinstance(values[0], Tensor) else values[0]
        output = type(outputs[0])(**merged)
        targets = None if items[0][1] is None else torch.cat([t for _, t, _ in items])[order]
        self.mc_results[stage] = MCResult(output, targets, indices[order])
        self.__dict__["_mc_store"][stage] = []
        if targets is None or not isinstance(output, MCOutput):
            return
        trainer = self.trainer  # type: ignore[attr-defined]
        metrics = calibration_metrics(output, targets, self.mc_n_bins)
        if self.mc_calibrate and stage != "validate":
            metrics["temperature"] = float(self.mc_temperature)
        correct = output.predictions == targets
        if 0 < int(correct.sum()) < len(correct):
            metrics["auroc_mi"] = uncertainty_auroc(output.mutual_information, correct)
        if self.mc_log_figures and not trainer.sanity_checking:
            log_calibration_figures(trainer, output, targets, f"{stage}_mc", self.mc_n_bins)
        if stage != "predict":
            name = "val" if stage == "validate" else stage
            for (
                k,
                v,
            ) in metrics.items():  # equal on all ranks already (gathered set); the sync only averages equals
                self.log(f"{name}/mc_{k}", v, sync_dist=True)  # type: ignore[attr-defined]
        self.mc_results[stage].metrics = metrics


class MCResult:
    """Gathered MC outputs of one stage, in dataset order: ``output``, ``targets``, ``indices``, ``metrics``."""

    def __init__(
        self, output: MCOutput | MCRegressionOutput, targets: Tensor | None, indices: Tensor
    ) -> None:
        self.output, self.targets, self.indices = output, targets, indices
        self.metrics: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"MCResult(n={len(self.indices)}, metrics={self.metrics})"


def _to_cpu(out: MCOutput | MCRegressionOutput) -> MCOutput | MCRegressionOutput:
    return type(out)(**{f.name: _cpu(getattr(out, f.name)) for f in fields(out)})


def _cpu(v: Any) -> Any:
    return v.detach().cpu() if isinstance(v, Tensor) else v
