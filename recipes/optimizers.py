"""SGD vs momentum vs Nesterov vs RMSprop vs Adam vs AdamW vs LAMB, on two moons and on 8x8 digits.

    python recipes/optimizers.py                          # both datasets, 1 seed, ~2 min on 2 CPU cores
    python recipes/optimizers.py --seeds 0 1 2 --datasets digits --out runs/optimizers

Same network, data, epochs and constant LR schedule for every optimizer; only the update rule (and its usual LR)
changes. Prints a table (final / best validation accuracy, final validation loss, wall time), writes it as CSV and
saves a plot of the validation loss per epoch (``<out>/optimizers.png``).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from lightning_bestpractices._logging import format_table
from lightning_bestpractices.data import DigitsDataModule, MoonsDataModule
from lightning_bestpractices.models import MLP
from lightning_bestpractices.tasks import Classifier

# the usual starting LR of each update rule (constant through training, so only the rule differs)
OPTIMIZERS = {
    "sgd": {"lr": 0.1},  # no momentum: needs the largest raw step
    "momentum": {"lr": 0.02},  # heavy ball 0.9 multiplies the effective step by ~10
    "nesterov": {"lr": 0.02},  # same effective step as momentum, look-ahead gradient
    "rmsprop": {"lr": 1e-3},  # per-coordinate normalised step: torch's usual 1e-2 is unstable here
    "adam": {"lr": 1e-3},  # Kingma & Ba default
    "adamw": {"lr": 1e-3, "weight_decay": 0.01},  # Adam + decoupled decay, the seed's default choice
    "lamb": {"lr": 1e-2, "weight_decay": 0.01},  # trust ratio: the step is a fraction of each layer's norm
}

DATASETS = {
    # 800 noisy training points, 2 features; batch 32 -> 25 steps per epoch
    "moons": dict(data=lambda seed: MoonsDataModule(n_train=800, n_val=200, noise=0.2, batch_size=32, seed=seed),
                  net=lambda: MLP(2, [64, 32], 1, dropout=0.0, norm="none"), classes=2, epochs=30),
    # 8x8 digits, 64 features, 10 classes; batch 64
    "digits": dict(data=lambda seed: DigitsDataModule(batch_size=64, seed=seed),
                   net=lambda: MLP(64, [128], 10, dropout=0.0, norm="none"), classes=10, epochs=20),
}  # fmt: skip


class History(Callback):
    """Validation loss and accuracy at every epoch end (read from the logged torchmetrics values)."""

    def __init__(self) -> None:
        self.loss: list[float] = []
        self.acc: list[float] = []

    def on_validation_end(self, trainer, pl_module) -> None:  # after the epoch-end metrics are computed
        if trainer.sanity_checking:
            return
        m = trainer.callback_metrics
        if "val/loss" in m:
            self.loss.append(float(m["val/loss"]))
            self.acc.append(float(m["val/acc"]))


def run(dataset: str, name: str, seed: int, epochs: int | None = None) -> dict:
    spec = DATASETS[dataset]
    L.seed_everything(seed, verbose=False)
    model = Classifier(
        spec["net"](), num_classes=spec["classes"], optim={"optimizer": name, "weight_decay": 0.0, "schedule": None, **OPTIMIZERS[name]}
    )
    hist = History()
    trainer = L.Trainer(
        max_epochs=epochs or spec["epochs"], accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[hist], num_sanity_val_steps=0,
    )  # fmt: skip
    start = time.perf_counter()
    trainer.fit(model, datamodule=spec["data"](seed))
    return {"loss": hist.loss, "acc": hist.acc, "time": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> list[list]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS), choices=list(OPTIMIZERS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=None, help="override the per-dataset epoch count")
    parser.add_argument("--out", type=Path, default=Path("runs/optimizers"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    rows, curves = [], {}
    for dataset in args.datasets:
        for name in args.optimizers:
            runs = [run(dataset, name, s, args.epochs) for s in args.seeds]
            curves[dataset, name] = runs[0]["loss"]
            final = [r["acc"][-1] for r in runs]
            rows.append([
                dataset, name, OPTIMIZERS[name]["lr"], round(statistics.mean(final), 4),
                round(statistics.pstdev(final), 4) if len(final) > 1 else "-",
                round(statistics.mean(max(r["acc"]) for r in runs), 4),
                round(statistics.mean(r["loss"][-1] for r in runs), 4),
                round(statistics.mean(r["time"] for r in runs), 1),
            ])  # fmt: skip
            print(f"{dataset:7s} {name:9s} val/acc {rows[-1][3]}", flush=True)
    columns = ["data", "optimizer", "lr", "final val acc", "std", "best val acc", "final val loss", "time s"]
    print(format_table(columns, rows))
    with (args.out / "optimizers.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([columns, *rows])
    _plot(curves, args.datasets, args.out / "optimizers.png")
    return rows


def _plot(curves: dict, datasets: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.2), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        for (d, name), loss in curves.items():
            if d == dataset:
                ax.plot(range(1, len(loss) + 1), loss, label=name)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation loss")
        ax.set_title(f"{dataset}: constant LR, seed 0")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
