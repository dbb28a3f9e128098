"""No schedule vs step vs cosine vs warmup-cosine vs 1cycle vs plateau, on 8x8 digits with momentum SGD.

    python recipes/schedules.py                                    # the comparison, ~1 min on 2 CPU cores
    python recipes/schedules.py --seeds 0 1 2 --out runs/schedules
    python recipes/schedules.py fit --config recipes/configs/schedules.yaml    # one configured run (LightningCLI)
    python recipes/schedules.py fit --trainer.devices=2 --trainer.strategy=ddp --trainer.accumulate_grad_batches=3

The comparison trains the same network from the same init with every schedule at the same peak LR and prints a
table (final / best validation accuracy, final validation loss), saves it as CSV, and plots validation accuracy and
the LR per optimizer step (``<out>/schedules.png``). The ``fit`` form runs one configuration through
``BestPracticesCLI`` (W&B offline, LR/momentum/WD per group logged); the schedule is resolved against the real
number of optimizer steps, so the last step ends on ``final_lr`` under any devices/accumulation setting.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from lightning_bestpractices._logging import format_table
from lightning_bestpractices.data import DigitsDataModule
from lightning_bestpractices.models import MLP
from lightning_bestpractices.tasks import Classifier

CONFIG = Path(__file__).parent / "configs" / "schedules.yaml"
LR = 0.05  # same peak LR for every schedule: the LR range test's minimum/10 rule gave 0.046 (--lr-find)
EPOCHS = 20

# each entry is an OptimConfig "schedule" field -- what a YAML would hold
SCHEDULES = {
    "none": None,
    "step": {"name": "step", "every": "6 epochs", "gamma": 0.2},  # the classic /5 every ~30% of training
    "cosine": {"name": "cosine", "final_lr": 1e-5},
    "warmup-cosine": {"name": "cosine", "warmup": "5%", "final_lr": 1e-5},
    "1cycle": {
        "name": "onecycle",
        "pct_start": 0.3,
        "final_lr": 1e-5,
    },  # momentum cycles 0.95 -> 0.85 -> 0.95
    "plateau": {"name": "plateau", "monitor": "val/loss", "patience": 2, "factor": 0.2, "final_lr": 1e-5},
}


class History(Callback):
    def __init__(self) -> None:
        self.acc: list[float] = []
        self.loss: list[float] = []
        self.lrs: list[float] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.lrs.append(optimizer.param_groups[0]["lr"])

    def on_validation_end(self, trainer, pl_module) -> None:  # after the epoch-end metrics are computed
        if not trainer.sanity_checking and "val/acc" in trainer.callback_metrics:
            self.acc.append(float(trainer.callback_metrics["val/acc"]))
            self.loss.append(float(trainer.callback_metrics["val/loss"]))


def run(schedule: dict | None, seed: int, epochs: int, lr: float = LR) -> History:
    L.seed_everything(seed, verbose=False)
    optim = {"optimizer": "momentum", "lr": lr, "weight_decay": 5e-4, "schedule": schedule}
    model = Classifier(MLP(64, [128], 10, dropout=0.0, norm="none"), num_classes=10, optim=optim)
    hist = History()
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[hist],
                        num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(model, datamodule=DigitsDataModule(batch_size=64, seed=seed))
    return hist


def compare(argv: list[str] | None = None) -> list[list]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", nargs="+", default=list(SCHEDULES), choices=list(SCHEDULES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--out", type=Path, default=Path("runs/schedules"))
    parser.add_argument("--lr", type=float, default=LR, help="peak LR of every schedule")
    parser.add_argument("--lr-find", action="store_true", help="only run the LR range test for the peak LR")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.lr_find:
        return find_peak_lr(args.out)
    rows, first = [], {}
    for name in args.schedules:
        hists = [run(SCHEDULES[name], s, args.epochs, args.lr) for s in args.seeds]
        first[name] = hists[0]
        final = [h.acc[-1] for h in hists]
        rows.append([
            name, round(statistics.mean(final), 4), round(statistics.pstdev(final), 4) if len(final) > 1 else "-",
            round(statistics.mean(max(h.acc) for h in hists), 4), round(statistics.mean(h.loss[-1] for h in hists), 4),
            f"{hists[0].lrs[-1]:.2g}",
        ])  # fmt: skip
        print(f"{name:14s} val/acc {rows[-1][1]}", flush=True)
    columns = ["schedule", "final val acc", "std", "best val acc", "final val loss", "last LR"]
    print(format_table(columns, rows))
    with (args.out / "schedules.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([columns, *rows])
    _plot(first, args.out / "schedules.png", args.lr)
    return rows


def find_peak_lr(out: Path) -> list[list]:
    """The LR range test that picked the peak LR: momentum SGD on digits, 1e-4 .. 3, 150 steps."""
    from lightning_bestpractices.optim import lr_find

    L.seed_everything(0, verbose=False)
    model = Classifier(MLP(64, [128], 10, dropout=0.0, norm="none"), num_classes=10,
                            optim={"optimizer": "momentum", "lr": LR, "weight_decay": 5e-4})  # fmt: skip
    result = lr_find(model, datamodule=DigitsDataModule(batch_size=64, seed=0), min_lr=1e-4, max_lr=3.0,
                     num_steps=150, trainer_kwargs={"default_root_dir": str(out), "enable_progress_bar": False})  # fmt: skip
    rows = [[rule, f"{lr:.3g}"] for rule, lr in result.suggestions.items()]
    print(format_table(["rule", "suggested LR"], rows))
    print(
        f"steps run: {len(result.losses)} (stopped early on divergence if < 150); plot: {out / 'lr_find.png'}"
    )
    return rows


def _plot(hists: dict[str, History], path: Path, lr: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.2))
    for name, h in hists.items():
        a.plot(range(1, len(h.acc) + 1), h.acc, label=name)
        b.plot(h.lrs, label=name)
    a.set(xlabel="epoch", ylabel="validation accuracy", title=f"digits, momentum SGD, peak LR {lr:g}")
    b.set(
        xlabel="optimizer step", ylabel="learning rate", yscale="log", title="LR actually used at each step"
    )
    for ax in (a, b):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"saved {path}")


def cli(args: list[str] | None = None):
    from lightning_bestpractices.cli import BestPracticesCLI

    return BestPracticesCLI(Classifier, DigitsDataModule, args=args, default_config=CONFIG)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in (
        "fit",
        "validate",
        "test",
        "predict",
        "--help",
        "-h",
        "--print_config",
    ):
        cli()
    else:
        compare()
