"""Batch size and gradient accumulation: steps, time per epoch, accuracy; 32 x 4 accumulated = 128 (seed 003).

    python recipes/batch_size.py fit                                   # digits, batch 32, CPU, W&B offline
    python recipes/batch_size.py fit --trainer.devices=2 --trainer.strategy=ddp
    python recipes/batch_size.py fit --trainer.precision=bf16-mixed
    python recipes/batch_size.py fit --print_config > my.yaml && python recipes/batch_size.py fit --config my.yaml
    python -m lightning_bestpractices.sweep recipes/sweeps/batch_size.yaml   # batch 8 ... 512, and 32 x 4
    python recipes/batch_size.py fit --data.batch_size=32 --trainer.accumulate_grad_batches=4

One run trains an MLP without BatchNorm (and without dropout) on 1024 digits images for a fixed number of epochs
at one batch size. It reports what the batch size trades: ``optimizer_steps`` (1024 / batch per epoch), the
training time per epoch as wall clock (``time/epoch_wall_s``) and as this thread's CPU clock
(``time/epoch_cpu_s``: the time the training loop's thread computed, which another job on a shared machine
does not inflate; with more than one torch intra-op thread, the work of the other threads is not in it, so
compare wall times then), both the median over epochs, with the per-epoch values as series, and ``val/acc``.

Gradient accumulation (``--trainer.accumulate_grad_batches=k``, a Lightning flag) sums the gradients of k batches
before one optimizer step; Lightning divides each batch's loss by k, so with equal batches the accumulated
gradient is the gradient of the mean loss over all k x batch samples. With the same seed (same initial weights)
and the same shuffle (the loader's permutation depends on the data seed and the epoch, not on the batch size),
batch 32 x 4 therefore makes the same optimizer steps as batch 128, up to float rounding; 1024 is divisible by
128, so no accumulation window is ever cut short. It is exact only without BatchNorm (which normalizes each
32-sample batch by its own statistics) and without dropout (different masks).

The check is part of every run with accumulation (k > 1, one process): after fit the recipe trains two references
in the same process, from the same initial weights over the same data order, and reports the largest parameter
difference to each: ``accum/max_weight_diff`` against batch ``k x batch`` without accumulation (float rounding
only) and ``accum/max_weight_diff_unaccumulated`` against ``batch`` without accumulation (k times as many, smaller
steps: a real difference, so the check can fail). Rounding only in fp32: under ``bf16-mixed`` the products of 4 x 32
and of 128 rows round differently. Every run also saves its final weights as ``final_weights.pt``
(a float32 state dict) in its run folder; :func:`max_weight_difference` compares two run folders, e.g. the sweep's
``b128`` and ``b32x4`` runs of one seed. Every hyperparameter, with its reason, is in
``recipes/configs/batch_size.yaml``.
"""

from __future__ import annotations

import copy
import statistics
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from lightning_bestpractices._logging import run_dir
from lightning_bestpractices.cli import BestPracticesCLI
from lightning_bestpractices.data import DigitsDataModule
from lightning_bestpractices.tasks import Classifier

WEIGHTS_FILE = "final_weights.pt"


class EpochTimer(L.Callback):
    """Training time per epoch (validation excluded): wall clock and the CPU clock of the training thread."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self._start: tuple[float, float] | None = None

    @staticmethod
    def _now(trainer: L.Trainer) -> tuple[float, float]:
        if trainer.strategy.root_device.type == "cuda":  # queued kernels belong to the epoch that launched them
            torch.cuda.synchronize(trainer.strategy.root_device)
        return time.perf_counter(), time.thread_time()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = self._now(trainer)

    def _stop(self, trainer: L.Trainer) -> None:
        if self._start is None:
            return
        wall, cpu = self._now(trainer)
        self.wall.append(wall - self._start[0])
        self.cpu.append(cpu - self._start[1])
        self._start = None

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:  # validation runs inside the training epoch: stop the clock before it
            self._stop(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop(trainer)  # epochs without validation


class StartWeights(L.Callback):
    """Keep a copy of the parameters as they are when fit starts (the initial weights the references start from)."""

    def __init__(self) -> None:
        self.weights: dict[str, torch.Tensor] | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


def train_reference(trainer: L.Trainer, model: Classifier, start: dict[str, torch.Tensor], batch_size: int) -> Classifier:
    """Train a copy of ``model`` from ``start`` at ``batch_size`` without accumulation, otherwise as ``trainer``
    trained: same epochs, data order, precision, device, clipping. Single process only."""
    dm = trainer.datamodule
    limit = trainer.limit_train_batches
    limit = limit * dm.batch_size // batch_size if isinstance(limit, int) else limit  # the same samples per epoch
    device = trainer.strategy.root_device
    ref = type(model)(copy.deepcopy(model.net), **{k: v for k, v in model.hparams.items() if not k.startswith("_")})
    ref.load_state_dict(start)
    ref_trainer = L.Trainer(
        accelerator=device.type, devices=[device.index or 0] if device.type == "cuda" else 1,
        precision=trainer.precision, max_epochs=trainer.max_epochs, max_steps=trainer.max_steps,
        limit_train_batches=limit, limit_val_batches=0, num_sanity_val_steps=0,
        gradient_clip_val=trainer.gradient_clip_val, gradient_clip_algorithm=trainer.gradient_clip_algorithm,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=str(run_dir(trainer)))
    saved = dm.batch_size, dm.trainer
    dm.batch_size = batch_size
    try:
        ref_trainer.fit(ref, dm)
    finally:
        dm.batch_size, dm.trainer = saved
    return ref


def final_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's parameters as a float32 CPU state dict (what ``final_weights.pt`` holds)."""
    return {k: v.detach().float().cpu().clone() for k, v in model.named_parameters()}


def max_weight_difference(a: dict[str, torch.Tensor] | str | Path, b: dict[str, torch.Tensor] | str | Path) -> float:
    """``max |w_a - w_b|`` over all parameters of two state dicts, or of two run folders' ``final_weights.pt``."""
    load = lambda s: s if isinstance(s, dict) else torch.load(Path(s) / WEIGHTS_FILE, weights_only=True)  # noqa: E731
    wa, wb = load(a), load(b)
    if wa.keys() != wb.keys():
        raise ValueError(f"the two runs have different parameters: {sorted(wa.keys() ^ wb.keys())}")
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


class BatchSizeCLI(BestPracticesCLI):
    """After ``fit``: steps, batch sizes, time per epoch, the final weights' norm; the weights saved to disk."""

    def report(self) -> None:
        trainer, model = self.trainer, self.model
        timer = next(cb for cb in trainer.callbacks if isinstance(cb, EpochTimer))
        batch = trainer.datamodule.batch_size
        accumulate = trainer.accumulate_grad_batches
        weights = final_weights(model)
        metrics = {
            "optimizer_steps": float(trainer.global_step),
            "batch_size": float(batch),
            "accumulate_grad_batches": float(accumulate),
            "effective_batch": float(batch * accumulate * trainer.world_size),
            "weights/l2": float(torch.sqrt(sum((w.double() ** 2).sum() for w in weights.values()))),
        }
        if trainer.current_epoch:
            metrics["steps_per_epoch"] = trainer.global_step / trainer.current_epoch
        if timer.wall:
            metrics["time/epoch_wall_s"] = statistics.median(timer.wall)
            metrics["time/epoch_cpu_s"] = statistics.median(timer.cpu)
            metrics["time/train_wall_s"] = sum(timer.wall)
            epochs = list(range(len(timer.wall)))
            self.add_series("epoch_wall_s", x=epochs, y=timer.wall, xlabel="epoch", ylabel="training wall time (s)")
            self.add_series("epoch_cpu_s", x=epochs, y=timer.cpu, xlabel="epoch",
                            ylabel="training thread CPU time (s)")
        self.add_metrics(metrics)
        self._check_accumulation(weights)
        if trainer.is_global_zero and not trainer.fast_dev_run:  # fast_dev_run writes nothing
            folder = run_dir(trainer)
            folder.mkdir(parents=True, exist_ok=True)
            torch.save(weights, folder / WEIGHTS_FILE)


    def _check_accumulation(self, weights: dict[str, torch.Tensor]) -> None:
        trainer, k = self.trainer, self.trainer.accumulate_grad_batches
        if k == 1 or trainer.fast_dev_run:
            return
        if trainer.world_size > 1:  # the references would need a process group of their own
            rank_zero_info("batch_size: the accumulation check runs on one process only; skipped")
            return
        start = next(cb for cb in trainer.callbacks if isinstance(cb, StartWeights)).weights
        batch = trainer.datamodule.batch_size
        large = train_reference(trainer, self.model, start, batch * k)
        small = train_reference(trainer, self.model, start, batch)
        self.add_metrics({"accum/max_weight_diff": max_weight_difference(weights, final_weights(large)),
                          "accum/max_weight_diff_unaccumulated": max_weight_difference(weights, final_weights(small))})


def main(args=None) -> BatchSizeCLI:
    return BatchSizeCLI(Classifier, DigitsDataModule, args=args,
                        trainer_defaults={"callbacks": [EpochTimer(), StartWeights()]},
                        default_config=Path(__file__).parent / "configs" / "batch_size.yaml")


if __name__ == "__main__":
    main()
