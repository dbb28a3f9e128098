"""Schedule end-values under real Trainer runs; imported by tests/test_optim_lightning.py, launched for DDP.

``python ddp_optim.py --out DIR [--devices 2]`` runs every schedule under a few Trainer configurations (in one
process group) and writes ``DIR/rank{r}.pt``: for each case, the LRs of every param group at every real optimizer
step, the planned step count, the epoch starts seen, and a checksum of the parameters.
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
from lightning.pytorch.callbacks import Callback, GradientAccumulationScheduler, ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_bestpractices.optim import OptimizerMixin

warnings.filterwarnings("ignore")

LR = 0.1
MULTS = {"head": 0.25}
N_SAMPLES = 62  # 1 process, batch 4: 16 batches (15 with drop_last); 2 processes: 8 (7) per rank
BATCH = 4

#: every schedule once, with a final value that the test can compute (see expected_final)
SCHEDULES: dict[str, dict[str, Any]] = {
    "constant": {"name": "constant", "warmup": 3},
    "step": {"name": "step", "every": "1 epoch", "gamma": 0.5},
    "multistep": {"name": "multistep", "milestones": ["1 epoch", 0.75], "gamma": 0.1, "warmup": 2},
    "exponential": {"name": "exponential", "final_lr": 1e-3},
    "linear": {"name": "linear", "warmup": 0.1, "warmup_shape": "cosine", "final_lr": 2e-3},
    "cosine": {"name": "cosine", "warmup": 0.2, "final_lr": 1e-4},
    "restarts": {"name": "restarts", "cycles": 2, "cycle_mult": 2.0, "final_lr": 1e-3},
    "onecycle": {"name": "onecycle", "final_lr": 1e-5},
    "plateau": {"name": "plateau", "monitor": "const", "patience": 0, "factor": 0.1, "final_lr": 1e-3},
}

#: Trainer configurations; together every schedule sees every condition of the issue
CASES: dict[str, dict[str, Any]] = {
    "plain": {"accumulate": 1, "drop_last": False, "max_epochs": 4},
    "acc3_droplast_maxsteps": {"accumulate": 3, "drop_last": True, "max_epochs": 6, "max_steps": 19},
    "gas": {"gas": {0: 1, 2: 3}, "drop_last": False, "max_epochs": 5, "precision": "bf16-mixed"},
}


class TinyNet(OptimizerMixin, L.LightningModule):
    """Two submodules (``body`` at LR multiplier 1, ``head`` at 0.25), a BatchNorm for the no-decay group."""

    def __init__(self, optim: dict[str, Any]) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.Tanh())
        self.head = nn.Linear(8, 1)
        self.optim = optim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def configure_optimizers(self):
        self.lightning_estimate = (
            self.trainer.estimated_stepping_batches
        )  # what Lightning predicts at fit start
        return super().configure_optimizers()

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self(x), y)
        self.log("const", 1.0, on_step=False, on_epoch=True, sync_dist=True)
        return loss


def loaders(drop_last: bool) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N_SAMPLES, 3, generator=g)
    y = x.sum(1, keepdim=True) + 0.1 * torch.randn(N_SAMPLES, 1, generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=False, drop_last=drop_last)


class Recorder(Callback):
    """LR of every group right before every real optimizer step, and the global step at every epoch start."""

    def __init__(self) -> None:
        self.lrs: list[list[float]] = []
        self.names: list[str] = []
        self.epoch_starts: list[int] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.epoch_starts.append(trainer.global_step)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.names = [g["name"] for g in optimizer.param_groups]
        self.lrs.append([float(g["lr"]) for g in optimizer.param_groups])


def trainer_for(
    case: dict[str, Any], devices: int, root: Path, extra: list[Callback] = ()
) -> tuple[L.Trainer, Recorder]:
    rec = Recorder()
    callbacks: list[Callback] = [rec, *extra]
    if case.get("gas"):
        callbacks.append(GradientAccumulationScheduler(dict(case["gas"])))
    kwargs: dict[str, Any] = dict(
        accelerator="cpu", devices=devices, max_epochs=case["max_epochs"], max_steps=case.get("max_steps", -1),
        accumulate_grad_batches=case.get("accumulate", 1), limit_train_batches=case.get("limit_train_batches"), precision=case.get("precision", "32-true"), logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=bool(extra), default_root_dir=str(root),
        callbacks=callbacks, num_sanity_val_steps=0,
    )  # fmt: skip
    if devices > 1:
        kwargs["strategy"] = "ddp"
    return L.Trainer(**kwargs), rec


def run_case(schedule: dict[str, Any], case: dict[str, Any], devices: int, root: Path) -> dict[str, Any]:
    torch.manual_seed(0)
    model = TinyNet({"optimizer": "momentum", "lr": LR, "weight_decay": 1e-4, "lr_multipliers": MULTS,
                     "schedule": copy.deepcopy(schedule)})  # fmt: skip
    trainer, rec = trainer_for(case, devices, root)
    trainer.fit(model, train_dataloaders=loaders(case["drop_last"]))
    return {
        "estimated": model.lightning_estimate,
        "lrs": rec.lrs, "names": rec.names, "epoch_starts": rec.epoch_starts, "planned": model._lbp_plan.total,
        "params": torch.cat([p.detach().flatten() for p in model.parameters()]),
    }  # fmt: skip


def run_resume(
    schedule: dict[str, Any], devices: int, root: Path, resume_case: dict[str, Any] | None = None
) -> dict:
    """Full run saving every epoch, then a second run resumed from the epoch-2 checkpoint (optionally reconfigured)."""
    case = {"accumulate": 1, "drop_last": False, "max_epochs": 4}
    torch.manual_seed(0)
    make = lambda: TinyNet({"optimizer": "adamw", "lr": LR, "weight_decay": 1e-4, "lr_multipliers": MULTS,  # noqa: E731
                            "schedule": copy.deepcopy(schedule)})  # fmt: skip
    model = make()
    ckpt = ModelCheckpoint(dirpath=root / "ckpt", filename="{epoch}", save_top_k=-1, every_n_epochs=1)
    trainer, full = trainer_for(case, devices, root, [ckpt])
    trainer.fit(model, train_dataloaders=loaders(False))
    path = root / "ckpt" / "epoch=1.ckpt"
    resumed_case = resume_case or case
    model2 = make()
    trainer2, part = trainer_for(resumed_case, devices, root)
    trainer2.fit(model2, train_dataloaders=loaders(resumed_case["drop_last"]), ckpt_path=str(path))
    return {
        "full": full.lrs, "resumed": part.lrs, "names": part.names, "resume_step": part.epoch_starts[0],
        "epoch_starts": full.epoch_starts[:2] + part.epoch_starts, "planned": model2._lbp_plan.total,
        "params_full": torch.cat([p.detach().flatten() for p in model.parameters()]),
        "params_resumed": torch.cat([p.detach().flatten() for p in model2.parameters()]),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--devices", type=int, default=2)
    args = parser.parse_args()
    out = Path(args.out)
    results: dict[str, Any] = {}
    for sname, schedule in SCHEDULES.items():  # every schedule with accumulation, drop_last and max_steps
        results[f"{sname}/acc3_droplast_maxsteps"] = run_case(schedule, CASES["acc3_droplast_maxsteps"], args.devices,
                                                              out / "runs")  # fmt: skip
    for sname in ("step", "onecycle"):  # an epoch-dependent and a step-dependent shape under GAS + bf16
        results[f"{sname}/gas"] = run_case(SCHEDULES[sname], CASES["gas"], args.devices, out / "runs")
    results["cosine/resume"] = run_resume(SCHEDULES["cosine"], args.devices, out / "resume_cosine")
    rank = int(os.environ.get("LOCAL_RANK", 0))
    torch.save(results, out / f"rank{rank}.pt")


if __name__ == "__main__":
    main()
