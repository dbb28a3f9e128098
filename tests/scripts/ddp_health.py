"""Training-health cases under real Trainer runs; imported by tests/health/*, launched for DDP.

``python ddp_health.py --out DIR --case NAME[,NAME...] [--devices 2] [--precision bf16-mixed]`` runs the cases (see
CASES) one after the other and writes ``DIR/rank{r}.pt``: ``{case: result}`` with what the tests assert on.
"""

from __future__ import annotations

import argparse
import copy
import os
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EMAWeightAveraging, ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_bestpractices.health import EarlyStopping, GradientMonitor, NonFiniteGuard

warnings.filterwarnings("ignore")

N, BATCH = 64, 8  # 8 steps per epoch on 1 process, 4 per rank on 2
SEED001 = [1.0, 0.9, 0.8, 0.85, 0.83, 0.84, 0.86, 0.7]  # the seed's validation losses, patience 3


class Net(L.LightningModule):
    """Two Linear layers in two named param groups (``body``, ``head``), Adam + a per-step LambdaLR.

    ``nan_step``/``nan_ranks``: at that optimizer step, on those ranks, the loss becomes NaN; ``nan_kind="grad"``
    multiplies it by NaN (the gradients turn NaN too), ``"loss"`` adds a detached NaN (the gradients stay finite).
    ``val_losses``: a scripted value logged as ``val_loss`` per epoch (one list per rank, or one for all).
    """

    def __init__(self, nan_step: int | None = None, nan_ranks: tuple[int, ...] = (0,), nan_kind: str = "grad",
                 val_losses: list | None = None, sync: bool = True, epoch_scheduler: bool = False,
                 nan_batch: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(4, 16), nn.Tanh())
        self.head = nn.Linear(16, 1)
        self.nan_step, self.nan_ranks, self.nan_kind = nan_step, nan_ranks, nan_kind
        self.val_losses, self.sync, self.epoch_scheduler = val_losses, sync, epoch_scheduler
        self.nan_batch = nan_batch  # or: at this batch index of the first epoch (one micro-batch of a step)

    def forward(self, x):
        return self.head(self.body(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self(x).float(), y)
        hit = self.global_step == self.nan_step or (self.current_epoch == 0 and batch_idx == self.nan_batch)
        if hit and self.global_rank in self.nan_ranks:
            loss = loss * float("nan") if self.nan_kind == "grad" else loss + torch.tensor(float("nan"))
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_mse", nn.functional.mse_loss(self(x).float(), y), sync_dist=True)

    def on_validation_epoch_end(self):
        if self.val_losses is not None:
            seq = self.val_losses[self.global_rank] if isinstance(self.val_losses[0], list) else self.val_losses
            self.log("val_loss", float(seq[self.current_epoch]), sync_dist=self.sync)

    def configure_optimizers(self):
        opt = torch.optim.Adam([{"params": self.body.parameters(), "name": "body"},
                                {"params": self.head.parameters(), "name": "head", "lr": 0.02}], lr=0.01)
        scheds = [{"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.9 ** s), "interval": "step"}]
        if self.epoch_scheduler:
            scheds.append({"scheduler": torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5), "interval": "epoch"})
        return [opt], scheds


def loader(shuffle: bool = False) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 4, generator=g)
    y = x.sum(1, keepdim=True).sin()
    return DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=shuffle)


def weights(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().float() for k, v in module.state_dict().items()}


class Recorder(Callback):
    """Per batch: weights, every group's LR and Adam's step count after the batch; per validation: the weights
    evaluated (copied at the first validation batch, as the EarlyStopping under test does)."""

    def __init__(self) -> None:
        self.after_batch: list[dict[str, torch.Tensor]] = []
        self.lrs: list[list[float]] = []
        self.adam_steps: list[float] = []
        self.sched_epochs: list[list[int]] = []
        self.validated: dict[int, dict[str, torch.Tensor]] = {}

    def on_train_batch_end(self, trainer, pl_module, *args):
        self.after_batch.append(weights(pl_module))
        opt = trainer.optimizers[0]
        self.lrs.append([g["lr"] for g in opt.param_groups])
        state = opt.state.get(next(pl_module.parameters()), {})
        self.adam_steps.append(float(state["step"]) if "step" in state else 0.0)
        self.sched_epochs.append([c.scheduler.last_epoch for c in trainer.lr_scheduler_configs])

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if batch_idx == 0 and not trainer.sanity_checking:
            self.validated[trainer.current_epoch] = weights(pl_module)


class GradReference(Callback):
    """Straight-loop reference for GradientMonitor: norms per group at the logging steps, and the ratio after."""

    def __init__(self, k: int) -> None:
        self.k, self.norms, self.ratios, self._before = k, {}, {}, None

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if trainer.global_step % self.k:
            return
        norms = {}
        for g in optimizer.param_groups:
            norms[g["name"]] = sum(float((p.grad.double() ** 2).sum()) for p in g["params"]) ** 0.5
        norms["total"] = sum(v ** 2 for v in norms.values()) ** 0.5
        self.norms[trainer.global_step] = norms
        self._before = [[p.detach().clone().double() for p in g["params"]] for g in optimizer.param_groups]

    def on_train_batch_end(self, trainer, pl_module, *args):
        if self._before is None:
            return
        step = trainer.global_step - 1
        opt = trainer.optimizers[0]
        self.ratios[step] = {}
        for g, before in zip(opt.param_groups, self._before):
            d = sum(float(((p.detach().double() - b) ** 2).sum()) for p, b in zip(g["params"], before)) ** 0.5
            w = sum(float((b ** 2).sum()) for b in before) ** 0.5
            self.ratios[step][g["name"]] = d / w
        self._before = None


class MonitorHistory(Callback):
    def __init__(self, monitor: GradientMonitor) -> None:
        self.monitor, self.history = monitor, {}

    def on_train_batch_end(self, trainer, pl_module, *args):
        if self.monitor.last_step is not None:
            self.history[self.monitor.last_step] = dict(self.monitor.last)


def trainer(devices: int, precision: str, callbacks: list, root: Path, **kw: Any) -> L.Trainer:
    kw.setdefault("logger", False)
    kw.setdefault("enable_checkpointing", False)
    return L.Trainer(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
                     precision=precision, callbacks=callbacks, default_root_dir=root, enable_progress_bar=False,
                     enable_model_summary=False, num_sanity_val_steps=0, **kw)


# --- cases: each returns a dict of plain values and tensors ----------------------------------------------------


def guard_skip(devices: int, precision: str, root: Path, nan_kind: str = "grad", watch: str = "both",
               epoch_scheduler: bool = False, nan_step: int | None = 3, nan_batch: int | None = None,
               accumulate: int = 1) -> dict:
    rec, guard = Recorder(), NonFiniteGuard(action="skip", watch=watch)
    model = Net(nan_step=nan_step, nan_ranks=(devices - 1,), nan_kind=nan_kind, epoch_scheduler=epoch_scheduler,
                nan_batch=nan_batch)
    t = trainer(devices, precision, [guard, rec], root, max_epochs=2, limit_val_batches=0,
                accumulate_grad_batches=accumulate)
    t.fit(model, loader())
    return {"skips": guard.skips, "skipped_steps": guard.skipped_steps, "after_batch": rec.after_batch,
            "lrs": rec.lrs, "adam_steps": rec.adam_steps, "sched_epochs": rec.sched_epochs, "final": weights(model), "global_step": t.global_step}


def guard_stop(devices: int, precision: str, root: Path, nan_step: int = 3, watch: str = "both",
               nan_kind: str = "grad") -> dict:
    rec, guard = Recorder(), NonFiniteGuard(action="stop", watch=watch, dirpath=root / "guard")
    model = Net(nan_step=nan_step, nan_ranks=(devices - 1,), nan_kind=nan_kind)
    t = trainer(devices, precision, [guard, rec], root, max_epochs=3, limit_val_batches=0)
    t.fit(model, loader())
    out = {"stop_reason": guard.stop_reason, "skips": guard.skips, "batches_run": len(rec.after_batch),
           "stopped_weights": weights(model), "path": str(guard.checkpoint_path), "global_step": t.global_step}
    # resume from the last-good checkpoint, without the fault
    rec2, guard2 = Recorder(), NonFiniteGuard(action="stop", watch=watch, dirpath=root / "guard2")
    model2 = Net()
    start = {}

    class AtStart(Callback):
        def on_train_start(self, trainer, pl_module):
            start.update(weights(pl_module))

    t2 = trainer(devices, precision, [guard2, rec2, AtStart()], root, max_epochs=3, limit_val_batches=0)
    t2.fit(model2, loader(), ckpt_path=guard.checkpoint_path)
    out.update(resumed_start=start, resumed_skips=guard2.skips, resumed_skipped=guard2.skipped_steps,
               resumed_global_step=t2.global_step, resumed_final=weights(model2),
               resumed_stop=guard2.stop_reason, resumed_batches=len(rec2.after_batch))
    return out


def es_seed001(devices: int, precision: str, root: Path, sync: bool = True, val_losses: list | None = None,
               ema: bool = False, checkpoint: bool = False, max_epochs: int = 8, patience: int = 3) -> dict:
    rec = Recorder()
    stop = EarlyStopping("val_loss", patience=patience)
    callbacks: list = [stop, rec]
    if ema:
        callbacks.insert(0, EMAWeightAveraging(decay=0.5))
    kw = {}
    if checkpoint:
        callbacks.append(ModelCheckpoint(dirpath=root / "ckpt", monitor="val_loss"))
        callbacks.append(ModelCheckpoint(dirpath=root / "every", filename="{epoch}", save_top_k=-1))
        kw["enable_checkpointing"] = True
    model = Net(val_losses=val_losses or SEED001, sync=sync)
    t = trainer(devices, precision, callbacks, root, max_epochs=max_epochs, **kw)
    t.fit(model, loader(), loader())
    return {"stopped_epoch": stop.stopped_epoch, "best_epoch": stop.best_epoch, "history": stop.history, "restored": stop.restored_epoch,
            "epochs_run": t.current_epoch, "validated": rec.validated, "final": weights(model),
            "after_batch": rec.after_batch, "should_stop": t.should_stop,
            "best_ckpt": str(t.checkpoint_callback.best_model_path) if checkpoint else None}


def es_resume(devices: int, precision: str, root: Path) -> dict:
    """Best at epoch 1; interrupted after epoch 3 (max_epochs=4); resumed to 6 epochs; best still epoch 1."""
    seq = [1.0, 0.5, 0.8, 0.9, 0.95, 0.97]
    first = es_seed001(devices, precision, root / "a", val_losses=seq, checkpoint=True, max_epochs=4, patience=10)
    rec, stop = Recorder(), EarlyStopping("val_loss", patience=10)
    model = Net(val_losses=seq)
    t = trainer(devices, precision, [stop, rec], root / "b", max_epochs=6)
    t.fit(model, loader(), loader(), ckpt_path=str(root / "a" / "every" / "epoch=3.ckpt"))
    return {"first": first, "best_epoch": stop.best_epoch, "restored": stop.restored_epoch,
            "final": weights(model), "epochs_run": t.current_epoch, "validated": rec.validated}


def monitor(devices: int, precision: str, root: Path, k: int = 3) -> dict:
    mon = GradientMonitor(every_n_steps=k, per_layer=True)
    ref, hist = GradReference(k), MonitorHistory(mon)
    t = trainer(devices, precision, [mon, ref, hist], root, max_epochs=2, limit_val_batches=0,
                accumulate_grad_batches=2)
    t.fit(Net(), loader())
    return {"history": hist.history, "norms": ref.norms, "ratios": ref.ratios, "global_step": t.global_step}


CASES = {
    "guard_skip": guard_skip,
    "guard_skip_loss": lambda d, p, r: guard_skip(d, p, r, nan_kind="loss", watch="loss"),
    "guard_stop": guard_stop,
    "guard_stop_loss": lambda d, p, r: guard_stop(d, p, r, nan_kind="loss", watch="loss"),
    "es_seed001": es_seed001,
    "es_unsynced": lambda d, p, r: es_seed001(d, p, r, sync=False,
                                              val_losses=[[1.0, 0.6, 0.7, 0.8, 0.9, 1.0],
                                                          [1.0, 0.9, 0.8, 0.5, 0.9, 1.0]], max_epochs=6),
    "es_ema": lambda d, p, r: es_seed001(d, p, r, ema=True),
    "es_full": lambda d, p, r: es_seed001(d, p, r, val_losses=[1.0, 0.7, 0.5, 0.6, 0.55], max_epochs=5),
    "es_resume": es_resume,
    "monitor": monitor,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--case", required=True, help=f"comma-separated, from {sorted(CASES)}")
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--precision", default="32-true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    result = {case: CASES[case](args.devices, args.precision, out / "work" / case) for case in args.case.split(",")}
    rank = int(os.environ.get("LOCAL_RANK", 0))
    out.mkdir(parents=True, exist_ok=True)
    torch.save(copy.deepcopy(result), out / f"rank{rank}.pt")


if __name__ == "__main__":
    main()
