"""DDP check for ``RankParity``'s mismatch path (launched by tests/test_monitoring.py; Lightning re-launches it for
rank 1).

Two ranks train a tiny model; with ``--diverge`` a callback listed before ``RankParity`` adds 1e-3 to one weight
on rank 1 only at fit end, the kind of silent divergence a rank-local change causes. ``--on-mismatch warn``
records the warning, ``raise`` the error; each rank writes ``rank{r}.pt`` with what it saw.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_bestpractices import RankParity


class Net(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 8)
        self.b = nn.Linear(8, 1)

    def forward(self, x):
        return self.b(F.relu(self.a(x)))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.mse_loss(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


class Diverge(L.Callback):
    def on_fit_end(self, trainer, pl_module):
        if trainer.global_rank == 1:
            with torch.no_grad():
                pl_module.b.weight[0, 3] += 1e-3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--on-mismatch", choices=["warn", "raise"], default="warn")
    parser.add_argument("--diverge", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(32, 4), torch.randn(32, 1))
    parity = RankParity(on_mismatch=args.on_mismatch)
    trainer = L.Trainer(
        strategy="ddp", devices=2, accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
        callbacks=[*([Diverge()] if args.diverge else []), parity],
    )  # fmt: skip
    error = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            trainer.fit(Net(), DataLoader(data, batch_size=8))
        except RuntimeError as err:
            error = str(err)
    seen = [str(w.message) for w in caught if "RankParity" in str(w.message)]
    torch.save({"max_diff": parity.max_diff, "warnings": seen, "error": error},
               args.out / f"rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    main()
