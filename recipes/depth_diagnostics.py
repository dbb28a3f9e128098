"""Depth diagnostics: does the activation scale survive 30 ReLU layers? (seed 001, section 5)

    python recipes/depth_diagnostics.py                      # 30 layers, width 256, a few minutes on a busy 2-core CPU
    python recipes/depth_diagnostics.py --depth 50 --train-epochs 0 --out runs/depth50

For each init scheme, a plain ReLU MLP (no normalization, so nothing rescues a bad init) is initialized with
``init_weights`` and probed with ``depth_statistics`` on a standard-normal batch: the std of every layer's output
and of the gradient w.r.t. it. Then the same network is trained for a few epochs on the 8x8 digits with
``WeightInit`` so the numbers can be tied to trainability. Prints a table and saves ``<out>/depth_diagnostics.png``
and ``<out>/depth_diagnostics.csv``.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import lightning as L
import torch

from lightning_bestpractices._logging import format_table
from lightning_bestpractices.data import DigitsDataModule
from lightning_bestpractices.initialization import WeightInit, init_weights
from lightning_bestpractices.initialization.diagnostics import depth_statistics, plot_depth
from lightning_bestpractices.models import MLP
from lightning_bestpractices.tasks import Classifier

SCHEMES = {
    "kaiming": "Kaiming normal (fan-in, ReLU gain): variance 2/fan_in",
    "auto": "init_weights('auto'): finds the ReLU after each layer -> Kaiming; output layer -> Xavier",
    "xavier": "Xavier normal, gain 1: variance 2/(fan_in+fan_out), half of what ReLU needs",
    "normal": "N(0, 0.01): the 'small random numbers' init",
}


def build(args: argparse.Namespace, in_features: int, out_features: int) -> MLP:
    # no norm and no dropout: the experiment is about the init alone
    return MLP(in_features, [args.width] * (args.depth - 1), out_features, dropout=0.0, norm="none")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depth", type=int, default=30, help="Linear layers in total (seed: 20-50)")
    p.add_argument("--width", type=int, default=256, help="hidden width (seed: 256)")
    p.add_argument("--batch", type=int, default=512, help="probe batch size: enough samples for a stable std")
    p.add_argument(
        "--train-epochs", type=int, default=5, help="epochs on digits per scheme; 0 skips training"
    )
    p.add_argument("--lr", type=float, default=0.01, help="SGD lr: plain SGD shows vanishing signal honestly")
    p.add_argument("--seed", type=int, default=0, help="one seed for model, probe batch and data split")
    p.add_argument(
        "--schemes", nargs="+", default=list(SCHEMES), choices=list(SCHEMES), help="inits to compare"
    )
    p.add_argument(
        "--threads", type=int, default=1, help="intra-op threads: small matmuls gain nothing from more"
    )
    p.add_argument("--out", type=Path, default=Path("runs/depth_diagnostics"), help="plot and CSV go here")
    args = p.parse_args()
    if args.depth < 2:
        p.error(f"--depth must be >= 2, got {args.depth}")
    if args.width < 1:
        p.error(f"--width must be >= 1, got {args.width}")
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)

    stats, rows = {}, []
    for scheme in args.schemes:
        torch.manual_seed(args.seed)
        x = torch.randn(args.batch, args.width)
        model = build(args, args.width, 10)
        init_weights(model, scheme, example_input=x[:2])
        s = depth_statistics(model, x)
        stats[scheme] = s
        picks = sorted({0, 9, 19, len(s.act_std) - 2, len(s.act_std) - 1} & set(range(len(s.act_std))))
        row = {"scheme": scheme}
        row.update({f"act_L{i + 1}": s.act_std[i] for i in picks})
        row["act_last/first"] = s.act_std[-2] / s.act_std[0]  # last hidden layer / first layer
        row["grad_L1"] = s.grad_std[0]
        if args.train_epochs > 0:
            t0 = time.perf_counter()
            row.update(train(args, scheme))
            row["train_s"] = time.perf_counter() - t0
        rows.append(row)

    columns = list(dict.fromkeys(k for r in rows for k in r))
    table = [[r.get(c, "") for c in columns] for r in rows]
    print(f"\n{args.depth}-layer ReLU MLP, width {args.width}, probe batch {args.batch} ~ N(0, 1):")
    print(format_table(columns, table))
    for scheme in args.schemes:
        print(f"  {scheme:8s} {SCHEMES[scheme]}")
    with (args.out / "depth_diagnostics.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([columns, *table])
    fig = plot_depth(stats, title=f"{args.depth}-layer ReLU MLP, width {args.width}")
    fig.savefig(args.out / "depth_diagnostics.png", dpi=110, bbox_inches="tight")
    print(f"plot: {args.out / 'depth_diagnostics.png'}")


def train(args: argparse.Namespace, scheme: str) -> dict[str, float]:
    L.seed_everything(args.seed, verbose=False)
    data = DigitsDataModule(batch_size=64, seed=args.seed)
    model = Classifier(build(args, 64, 10), num_classes=10,
                       optim={"lr": args.lr, "weight_decay": 0.0, "schedule": None})
    model.configure_optimizers = lambda: torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    trainer = L.Trainer(
        max_epochs=args.train_epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[WeightInit(scheme, seed=args.seed)],
    )  # fmt: skip
    trainer.fit(model, datamodule=data)
    metrics = trainer.callback_metrics
    return {"val_acc": float(metrics["val/acc"]), "val_loss": float(metrics["val/loss"])}


if __name__ == "__main__":
    main()
