"""Schedule gallery: LR against optimizer step for every schedule, built exactly as training builds it.

    python recipes/schedule_gallery.py                         # -> runs/schedule_gallery.png, a few seconds
    python recipes/schedule_gallery.py --batches 50 --epochs 6 --accumulate 1 --accumulate-from 3:2 --out docs/images

No training: each panel builds the schedule with ``build_scheduler`` for a run of ``--epochs`` epochs of
``--batches`` batches (accumulation factors per epoch as a ``GradientAccumulationScheduler`` would apply them),
steps it once per optimizer step, and draws the LR of a multiplier-1 group and of a 0.25x group. Dotted verticals
are epoch starts. 1cycle also shows momentum (right axis); plateau is fed a validation loss that stalls.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from lightning_bestpractices.optim import build_scheduler, count_optimizer_steps

LR = 0.1
GALLERY = {
    "constant (+ 2-epoch cosine warmup)": {"name": "constant", "warmup": "2 epochs", "warmup_shape": "cosine"},
    "step (x0.5 every epoch)": {"name": "step", "every": "1 epoch", "gamma": 0.5},
    "multistep (x0.1 at 50%, 75%)": {"name": "multistep", "milestones": [0.5, 0.75], "gamma": 0.1},
    "exponential (to 1e-3)": {"name": "exponential", "final_lr": 1e-3},
    "linear (5% warmup, to 0)": {"name": "linear", "warmup": 0.05, "final_lr": 0.0},
    "cosine (to 1e-3)": {"name": "cosine", "final_lr": 1e-3},
    "warmup-cosine (10%, to 1e-4)": {"name": "cosine", "warmup": 0.1, "final_lr": 1e-4},
    "restarts (3 cycles, x2 longer)": {"name": "restarts", "cycles": 3, "cycle_mult": 2.0, "final_lr": 1e-3},
    "1cycle (30% rise, to 1e-5)": {"name": "onecycle", "pct_start": 0.3, "final_lr": 1e-5},
    "plateau (patience 1, x0.3)": {"name": "plateau", "monitor": "val/loss", "patience": 1, "factor": 0.3,
                                   "final_lr": 1e-3},
}  # fmt: skip
STALLING_LOSS = [1.0, 0.8, 0.7, 0.7, 0.7, 0.65, 0.66, 0.66, 0.66, 0.66, 0.66, 0.66]


def trace(spec: dict, plan) -> tuple[list[list[float]], list[float]]:
    """LRs of both groups and group-0 momentum at every optimizer step of ``plan``."""
    params = [torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)]
    opt = torch.optim.SGD([{"params": [params[0]], "lr_multiplier": 1.0}, {"params": [params[1]], "lr_multiplier": 0.25}],
                          lr=LR, momentum=0.9)  # fmt: skip
    configs = build_scheduler(opt, spec, plan, lr=LR)
    lrs, moms, epoch = [], [], 0
    for t in range(plan.total):
        lrs.append([g["lr"] for g in opt.param_groups])
        moms.append(opt.param_groups[0]["momentum"])
        opt.step()
        for c in configs:
            if c["interval"] == "step":
                c["scheduler"].step()
        if t + 1 == plan.epoch_starts[epoch + 1]:
            epoch += 1
            for c in configs:
                if c["interval"] == "epoch":
                    c["scheduler"].step(STALLING_LOSS[min(epoch, len(STALLING_LOSS) - 1)])
    return lrs, moms


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40, help="training batches per epoch (per process)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--accumulate", type=int, default=1, help="accumulation factor from epoch 0")
    parser.add_argument(
        "--accumulate-from", default="4:2", help="EPOCH:FACTOR change, as a GAS callback would"
    )
    parser.add_argument("--out", type=Path, default=Path("runs"))
    args = parser.parse_args(argv)
    table = {0: args.accumulate}
    if args.accumulate_from:
        e, f = (int(v) for v in args.accumulate_from.split(":"))
        table[e] = f
    plan = count_optimizer_steps(args.batches, args.epochs, accumulate=table)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 2
    rows = (len(GALLERY) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(11, 2.3 * rows), sharex=True)
    for ax, (title, spec) in zip(axes.flat, GALLERY.items()):
        lrs, moms = trace(spec, plan)
        ax.plot([x[0] for x in lrs], lw=1.8, label="group x1")
        ax.plot([x[1] for x in lrs], lw=1.2, ls="--", label="group x0.25")
        for s in plan.epoch_starts[1:-1]:
            ax.axvline(s, color="0.8", lw=0.8, ls=":")
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("LR")
        ax.grid(alpha=0.3)
        if spec["name"] == "onecycle":
            twin = ax.twinx()
            twin.plot(moms, color="C3", lw=1, alpha=0.7)
            twin.set_ylabel("momentum", color="C3", fontsize=8)
        print(f"{title:38s} first {lrs[0][0]:.3g}  last {lrs[-1][0]:.3g}  (x0.25 group: {lrs[-1][1]:.3g})")
    axes.flat[0].legend(fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("optimizer step")
    fig.suptitle(f"{plan.total} optimizer steps: epochs of {plan.steps_per_epoch} steps "
                 f"({args.batches} batches, accumulation {table})", fontsize=11)  # fmt: skip
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "schedule_gallery.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"saved {path}")
    return path


if __name__ == "__main__":
    main()
