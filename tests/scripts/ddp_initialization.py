"""DDP check for ``WeightInit`` (launched by tests/test_initialization.py; Lightning re-launches it for rank 1).

Each rank seeds its RNG differently *before* building the model, so without the broadcast the ranks would start
from different weights. Phase 1 fits with ``WeightInit`` and records the weights right after it ran; phase 2
resumes from the phase-1 checkpoint with a fresh ``WeightInit`` and records the weights at fit start (it must
not re-initialize). Every rank writes ``rank{r}.pt``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_bestpractices import WeightInit


class Net(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(6, 16)
        self.bn = nn.BatchNorm1d(16)
        self.b = nn.Linear(16, 16)
        self.c = nn.Linear(16, 1)

    def forward(self, x):
        return self.c(torch.tanh(self.b(F.relu(self.bn(self.a(x))))))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.mse_loss(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class Probe(L.Callback):
    """Snapshots the weights at fit start (after WeightInit, which is listed first) and at fit end."""

    def __init__(self) -> None:
        self.start: dict[str, torch.Tensor] = {}
        self.end: dict[str, torch.Tensor] = {}

    def on_fit_start(self, trainer, pl_module):
        self.start = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}

    def on_fit_end(self, trainer, pl_module):
        self.end = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}


def trainer(out: Path, callbacks, epochs: int) -> L.Trainer:
    return L.Trainer(
        strategy="ddp", devices=2, accelerator="cpu", precision="bf16-mixed", max_epochs=epochs,
        callbacks=callbacks, default_root_dir=out, logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, use_distributed_sampler=True,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rank = int(os.environ.get("LOCAL_RANK", 0))
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(64, 6, generator=g), torch.randn(64, 1, generator=g))

    torch.manual_seed(1000 + rank)  # different weights per rank before WeightInit
    model = Net()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    init, probe = WeightInit("auto", example_input=torch.randn(8, 6)), Probe()
    t1 = trainer(args.out, [init, probe], epochs=1)
    t1.fit(model, DataLoader(data, batch_size=8))
    ckpt = args.out / "phase1.ckpt"
    t1.save_checkpoint(ckpt)  # collective: every rank calls it, rank 0 writes
    report = [r.row() for r in init.report] if init.report is not None else None

    torch.manual_seed(2000 + rank)
    model2 = Net()
    init2, probe2 = WeightInit("auto", example_input=torch.randn(8, 6)), Probe()
    t2 = trainer(args.out, [init2, probe2], epochs=2)
    t2.fit(model2, DataLoader(data, batch_size=8), ckpt_path=ckpt)

    torch.save(
        {
            "before": before,
            "after_init": probe.start,
            "after_fit": probe.end,
            "resumed_start": probe2.start,
            "resumed_report": init2.report,
            "done": (init.done, init2.done),
            "report": report,
        },
        args.out / f"rank{t1.global_rank}.pt",
    )


if __name__ == "__main__":
    main()
