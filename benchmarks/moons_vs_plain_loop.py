"""Moons: the recipe's Trainer setup vs the seed's plain PyTorch loop, side by side in one process.

    python benchmarks/moons_vs_plain_loop.py                 # 100 epochs, 3 repeats, prints one table
    python benchmarks/moons_vs_plain_loop.py --epochs 20 --repeats 1

Both train the same MLP (same init, same data) with AdamW + per-epoch cosine for the same epochs and validate every
epoch. The plain loop is the seed's: a ``DataLoader`` over a ``TensorDataset``, ``.item()`` bookkeeping per step.
Ours is exactly what ``recipes/moons.py fit`` builds from ``recipes/configs/moons.yaml`` (W&B offline logger, LR
monitor every step, torchmetrics, decision-boundary plot, rank-parity check), minus the progress bar and the
checkpoint file. Repeats alternate plain/ours so machine noise hits both; the table shows medians and their ratio.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def plain_loop(dm, epochs: int, seed: int) -> tuple[float, float]:
    """The seed's loop; returns (seconds, final val accuracy)."""
    from lightning_bestpractices.models import MLP

    torch.manual_seed(seed)
    model = MLP(2, [64, 32], 1, dropout=0.3)
    (xt, yt), (xv, yv) = dm.splits["train"], dm.splits["val"]
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xt, yt), batch_size=32, shuffle=True)
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xv, yv), batch_size=32)
    crit = nn.BCEWithLogitsLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        tl, tc, tn = 0.0, 0, 0
        for xb, yb in train:
            opt.zero_grad()
            out = model(xb)
            loss = crit(out, yb)
            loss.backward()
            opt.step()
            tl += loss.item() * xb.size(0)
            tc += ((torch.sigmoid(out) > 0.5).float() == yb).sum().item()
            tn += xb.size(0)
        model.eval()
        vc, vn = 0, 0
        with torch.no_grad():
            for xb, yb in val:
                out = model(xb)
                vc += ((torch.sigmoid(out) > 0.5).float() == yb).sum().item()
                vn += xb.size(0)
        sched.step()
    return time.perf_counter() - start, vc / vn


def run_recipe(epochs: int, workdir: str) -> tuple[float, float]:
    """What ``recipes/moons.py fit`` builds; returns (seconds in ``trainer.fit``, final val accuracy)."""
    from lightning_bestpractices.cli import BestPracticesCLI
    from lightning_bestpractices.data import MoonsDataModule
    from lightning_bestpractices.tasks import Classifier

    args = [f"--trainer.max_epochs={epochs}", "--trainer.enable_progress_bar=false",
            "--trainer.enable_checkpointing=false", f"--trainer.logger.init_args.save_dir={workdir}"]
    cli = BestPracticesCLI(Classifier, MoonsDataModule, args=args, run=False,
                           default_config=ROOT / "recipes" / "configs" / "moons.yaml")
    start = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    seconds = time.perf_counter() - start
    return seconds, float(cli.trainer.callback_metrics["val/acc"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads for both versions (a 2.4k-parameter MLP gains nothing from more, "
                        "and spinning OpenMP threads make timings on a shared machine meaningless)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")

    from lightning_bestpractices.data import MoonsDataModule

    dm = MoonsDataModule()
    dm.setup("fit")
    plain_t, ours_t, plain_acc, ours_acc = [], [], [], []
    with tempfile.TemporaryDirectory() as workdir:
        for _ in range(args.repeats):
            t, a = plain_loop(dm, args.epochs, seed=42)
            plain_t.append(t)
            plain_acc.append(a)
            t, a = run_recipe(args.epochs, workdir)
            ours_t.append(t)
            ours_acc.append(a)
    p, o = statistics.median(plain_t), statistics.median(ours_t)
    steps = args.epochs * math.ceil(800 / 32)
    print(f"\nmoons, {args.epochs} epochs ({steps} steps), {args.repeats} repeat(s), "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'version':<28}{'wall s (median)':>16}{'ms/step':>10}{'val acc':>10}")
    print(f"{'plain PyTorch loop (seed)':<28}{p:>16.2f}{1000 * p / steps:>10.2f}{statistics.median(plain_acc):>10.3f}")
    print(f"{'recipe Trainer setup':<28}{o:>16.2f}{1000 * o / steps:>10.2f}{statistics.median(ours_acc):>10.3f}")
    print(f"ratio recipe/plain: {o / p:.2f}  (target <= 1.2, ambition <= 1.0)")


if __name__ == "__main__":
    main()
