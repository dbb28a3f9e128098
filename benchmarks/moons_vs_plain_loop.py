"""Moons: the recipe's Trainer setup vs the seed's plain PyTorch loop, side by side in one process.

    python benchmarks/moons_vs_plain_loop.py                 # 100 epochs, 3 repeats, prints one table
    python benchmarks/moons_vs_plain_loop.py --epochs 20 --repeats 1

Both train the same MLP (same init, same data) with AdamW + per-epoch cosine for the same epochs and validate every
epoch. The plain loop is the seed's: a ``DataLoader`` over a ``TensorDataset``, ``.item()`` bookkeeping per step.
Ours is exactly what ``recipes/moons.py fit`` builds from ``recipes/configs/moons.yaml`` (W&B offline logger, LR
monitor every step, torchmetrics, decision-boundary plot, rank-parity check), minus the progress bar and the
checkpoint file. Repeats alternate plain/ours so machine noise hits both; the table shows medians and their ratio.

The recipe uses torch's fused AdamW (``model.fused: true``), the seed's loop torch's default AdamW. A third row, the
seed's loop with ``fused=True``, separates what Lightning's loop costs from what the fused kernel saves. Every recipe
repeat starts its own W&B run (the previous one is finished outside the timed region), as a user's run would.
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


def plain_loop(dm, epochs: int, seed: int, fused: bool | None = None) -> tuple[float, float]:
    """The seed's loop; returns (seconds, final val accuracy)."""
    from lightning_bestpractices.models import MLP

    torch.manual_seed(seed)
    model = MLP(2, [64, 32], 1, dropout=0.3)
    (xt, yt), (xv, yv) = dm.splits["train"], dm.splits["val"]
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xt, yt), batch_size=32, shuffle=True)
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xv, yv), batch_size=32)
    crit = nn.BCEWithLogitsLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.01, fused=fused)
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
    import wandb

    if wandb.run is not None:  # the next repeat starts a fresh run, as `recipes/moons.py fit` does
        wandb.finish()
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
    names = ["plain PyTorch loop (seed)", "plain loop + fused AdamW", "recipe Trainer setup"]
    times: dict[str, list[float]] = {n: [] for n in names}
    accs: dict[str, list[float]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as workdir:
        for _ in range(args.repeats):
            for name, fn in zip(names, (lambda: plain_loop(dm, args.epochs, seed=42),
                                        lambda: plain_loop(dm, args.epochs, seed=42, fused=True),
                                        lambda: run_recipe(args.epochs, workdir))):
                t, a = fn()
                times[name].append(t)
                accs[name].append(a)
    med = {n: statistics.median(times[n]) for n in names}
    steps = args.epochs * math.ceil(800 / 32)
    print(f"\nmoons, {args.epochs} epochs ({steps} steps), {args.repeats} repeat(s), "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'version':<28}{'wall s (median)':>16}{'ms/step':>10}{'val acc':>10}")
    for n in names:
        print(f"{n:<28}{med[n]:>16.2f}{1000 * med[n] / steps:>10.2f}{statistics.median(accs[n]):>10.3f}")
    o, p, pf = med[names[2]], med[names[0]], med[names[1]]
    print(f"ratio recipe/plain: {o / p:.2f}  (target <= 1.2, ambition <= 1.0)")
    print(f"ratio recipe/(plain + fused AdamW): {o / pf:.2f}  (Lightning's loop, logging and plots alone)")


if __name__ == "__main__":
    main()
