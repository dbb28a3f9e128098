"""MC dropout under real DDP (2 CPU processes, gloo): predict, validate and bf16 test in one launch.

Each rank saves what it gathered to ``<out>/rank{rank}.pt``; ``tests/test_uncertainty_lightning.py`` compares
that with one process. Run: ``python tests/scripts/ddp_uncertainty.py --out DIR [--devices 1]``.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_bestpractices.data import InMemoryDataModule
from lightning_bestpractices.uncertainty import MCDropoutMixin

N_SAMPLES = 8


class Net(MCDropoutMixin, L.LightningModule):
    def __init__(self, stages=("predict",), calibrate: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
            nn.Linear(64, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 16), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(16, 3),
        )  # fmt: skip
        with torch.no_grad():  # non-trivial BN statistics that a stray train-mode pass would change
            self.net[1].running_mean.uniform_(-1, 1)
            self.net[1].running_var.uniform_(0.5, 2)
        self.configure_mc_dropout(N_SAMPLES, seed=3, stages=stages, log_figures=False, calibrate=calibrate)

    def forward(self, x):
        return self.net(x)


def data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(37, 1, 4, 4, generator=g), torch.randint(0, 3, (37,), generator=g)


def trainer(devices: int, precision: str = "32-true") -> L.Trainer:
    return L.Trainer(
        accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto", precision=precision,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip


def run(devices: int) -> dict:
    x, y = data()
    result: dict = {}
    # 1) DataLoader: Lightning adds a DistributedSampler (padded: 37 -> 2 x 19) and tracks batch indices
    model = Net()
    bn = {k: v.clone() for k, v in model.net[1].state_dict().items()}
    modes = [m.training for m in model.modules()]
    t = trainer(devices)
    t.predict(model, DataLoader(TensorDataset(x, y), batch_size=5))
    r = model.mc_results["predict"]
    result["predict"] = {**asdict(r.output), "indices": r.indices, "targets": r.targets}
    result["bn_unchanged"] = all(torch.equal(bn[k], v) for k, v in model.net[1].state_dict().items())
    result["modes_restored"] = modes == [m.training for m in model.modules()]
    # 2) validate on the package's in-memory loader (rank-strided shards, no padding), with metrics
    model = Net(stages=("validate",))
    t = trainer(devices)
    t.validate(model, datamodule=InMemoryDataModule(val=(x, y), batch_size=4, eval_batch_size=6))
    r = model.mc_results["validate"]
    result["validate"] = {**asdict(r.output), "indices": r.indices}
    result["val_metrics"] = {k: float(v) for k, v in t.callback_metrics.items()}
    # 3) bf16-mixed test on a DataLoader: DistributedSampler pads 37 -> 38 and no index tracking in test
    model = Net(stages=("test",))
    t = trainer(devices, "bf16-mixed")
    t.test(model, DataLoader(TensorDataset(x, y), batch_size=7))
    result["bf16"] = {**asdict(model.mc_results["test"].output), "indices": model.mc_results["test"].indices}
    result["world_size"] = t.world_size
    # 4) temperature fitted on the (rank-sharded) validation set before test, gathered: the same T everywhere
    model = Net(stages=("test",), calibrate=True)
    t = trainer(devices)
    t.test(model, datamodule=InMemoryDataModule(val=(x[:20], y[:20]), test=(x[20:], y[20:]), batch_size=4,
                                                 eval_batch_size=3))  # fmt: skip
    result["temperature"] = model.mc_temperature
    result["calibrated"] = {
        **asdict(model.mc_results["test"].output),
        "indices": model.mc_results["test"].indices,
    }
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--devices", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    res = run(args.devices)
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    torch.save(res, Path(args.out) / f"rank{rank}.pt")
