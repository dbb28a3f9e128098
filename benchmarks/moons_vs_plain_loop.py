"""Moons: the recipe's Trainer setup vs the seed's plain PyTorch loop, side by side in one process.

    python benchmarks/moons_vs_plain_loop.py                 # 100 epochs, 3 repeats, prints one table
    python benchmarks/moons_vs_plain_loop.py --epochs 20 --repeats 1
    python benchmarks/moons_vs_plain_loop.py --breakdown --epochs 30   # where the recipe's extra time per step goes

Both train the same MLP (same init, same data) with AdamW + per-epoch cosine for the same epochs and validate every
epoch. The plain loop is the seed's: a ``DataLoader`` over a ``TensorDataset``, ``.item()`` bookkeeping per step.
Ours is exactly what ``recipes/moons.py fit`` builds from ``recipes/configs/moons.yaml`` (W&B offline logger, LR
monitor every step, torchmetrics, decision-boundary plot, rank-parity check), minus the progress bar and the
checkpoint file. Repeats alternate plain/ours so machine noise hits both; the table shows medians and their ratio.

The recipe uses torch's fused AdamW (``model.optim.options.fused: true``), the seed's loop torch's default AdamW. A
third row, the seed's loop with ``fused=True``, separates what Lightning's loop costs from what the fused kernel
saves. A fourth row is what a user would otherwise write: the same model as a plain LightningModule the way
Lightning's docs show it (torchmetrics called in the step, ``self.log``, ``LearningRateMonitor`` at every step,
``WandbLogger``), AdamW + per-epoch cosine. Every Lightning repeat starts its own W&B run (the previous one is
finished outside the timed region), as a user's run would.
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
from _report import command_line, write_result  # noqa: E402


class PlainLoop:
    """The seed's loop, one epoch per call: DataLoader over TensorDataset, ``.item()`` bookkeeping per step."""

    def __init__(self, dm, epochs: int, seed: int, fused: bool | None = None) -> None:
        from lightning_bestpractices.models import MLP

        torch.manual_seed(seed)
        self.model = MLP(2, [64, 32], 1, dropout=0.3)
        (xt, yt), (xv, yv) = dm.splits["train"], dm.splits["val"]
        self.train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xt, yt), batch_size=32, shuffle=True)
        self.val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xv, yv), batch_size=32)
        self.crit = nn.BCEWithLogitsLoss()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=0.01, weight_decay=0.01, fused=fused)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=epochs)

    def epoch(self) -> float:
        """Train one epoch, validate, step the schedule; returns the validation accuracy."""
        model, opt, crit = self.model, self.opt, self.crit
        model.train()
        tl, tc, tn = 0.0, 0, 0
        for xb, yb in self.train:
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
            for xb, yb in self.val:
                out = model(xb)
                vc += ((torch.sigmoid(out) > 0.5).float() == yb).sum().item()
                vn += xb.size(0)
        self.sched.step()
        return vc / vn


def plain_loop(dm, epochs: int, seed: int, fused: bool | None = None) -> tuple[float, float]:
    """The seed's loop; returns (seconds, final val accuracy)."""
    loop = PlainLoop(dm, epochs, seed, fused)
    start = time.perf_counter()
    for _ in range(epochs):
        acc = loop.epoch()
    return time.perf_counter() - start, acc


def lightning_docs(dm, epochs: int, workdir: str, seed: int = 42) -> tuple[float, float]:
    """The same model as a plain LightningModule written as Lightning's docs show it; (seconds in fit, val acc)."""
    import lightning as L
    import torchmetrics
    from lightning.pytorch.callbacks import LearningRateMonitor
    from lightning.pytorch.loggers import WandbLogger

    from lightning_bestpractices.models import MLP

    class LitMoons(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = MLP(2, [64, 32], 1, dropout=0.3)
            self.loss_fn = nn.BCEWithLogitsLoss()
            self.train_acc = torchmetrics.classification.BinaryAccuracy()
            self.val_acc = torchmetrics.classification.BinaryAccuracy()

        def training_step(self, batch, batch_idx):
            x, y = batch
            logits = self.model(x)
            loss = self.loss_fn(logits, y)
            self.train_acc(torch.sigmoid(logits), y)
            self.log("train/loss", loss, on_step=False, on_epoch=True)
            self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            logits = self.model(x)
            self.val_acc(torch.sigmoid(logits), y)
            self.log("val/loss", self.loss_fn(logits, y))
            self.log("val/acc", self.val_acc, prog_bar=True)

        def configure_optimizers(self):
            opt = torch.optim.AdamW(self.parameters(), lr=0.01, weight_decay=0.01)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.trainer.max_epochs)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    torch.manual_seed(seed)
    (xt, yt), (xv, yv) = dm.splits["train"], dm.splits["val"]
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xt, yt), batch_size=32, shuffle=True)
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xv, yv), batch_size=32)
    model = LitMoons()
    mode = os.environ.get("WANDB_MODE")  # WandbLogger(offline=True) sets it to "dryrun" for the whole process
    trainer = L.Trainer(max_epochs=epochs, logger=WandbLogger(save_dir=workdir, offline=True), log_every_n_steps=1,
                        callbacks=[LearningRateMonitor(logging_interval="step")], enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False, accelerator="cpu", devices=1)  # fmt: skip
    start = time.perf_counter()
    trainer.fit(model, train, val)
    seconds = time.perf_counter() - start
    import wandb

    if wandb.run is not None:
        wandb.finish()
    if mode is not None:
        os.environ["WANDB_MODE"] = mode
    return seconds, float(trainer.callback_metrics["val/acc"])


def run_recipe(epochs: int, workdir: str) -> tuple[float, float]:
    """What ``recipes/moons.py fit`` builds; returns (seconds in ``trainer.fit``, final val accuracy)."""
    cli = _build_recipe(epochs, workdir, [])
    start = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    seconds = time.perf_counter() - start
    import wandb

    if wandb.run is not None:  # the next repeat starts a fresh run, as `recipes/moons.py fit` does
        wandb.finish()
    return seconds, float(cli.trainer.callback_metrics["val/acc"])


def _build_recipe(epochs: int, workdir: str, extra: list[str]):
    from lightning_bestpractices.cli import BestPracticesCLI
    from lightning_bestpractices.data import MoonsDataModule
    from lightning_bestpractices.tasks import Classifier

    args = [f"--trainer.max_epochs={epochs}", "--trainer.enable_progress_bar=false",
            "--trainer.enable_checkpointing=false"]
    if not any(a.startswith("--trainer.logger") for a in extra):
        args.append(f"--trainer.logger.init_args.save_dir={workdir}")
    return BestPracticesCLI(Classifier, MoonsDataModule, args=args + extra, run=False,
                            default_config=ROOT / "recipes" / "configs" / "moons.yaml")


def breakdown(epochs: int, repeats: int) -> None:
    """Per-step cost of the recipe's parts, each recipe epoch timed next to one epoch of the seed's loop.

    A callback runs one epoch of the plain loop right after each recipe epoch (train + validation + logging), so
    both see the same machine load; the table shows medians over epochs >= 3 of per-step process CPU time (less
    noisy than wall time on a shared machine) and of the per-epoch ratio. Each variant removes one more part.
    """
    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor

    from lightning_bestpractices.data import MoonsDataModule
    from lightning_bestpractices.optim import LRMonitor

    dm = MoonsDataModule()
    dm.setup("fit")
    steps = math.ceil(800 / 32)

    class Paired(L.Callback):
        def __init__(self) -> None:
            self.plain = PlainLoop(dm, epochs, seed=42)
            self.last: tuple[float, float] | None = None
            self.rows: list[tuple[float, float, float]] = []  # (ours cpu, plain cpu, wall ratio) per epoch

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            now = (time.process_time(), time.perf_counter())
            if self.last is not None and trainer.current_epoch > 2:
                c, w = time.process_time(), time.perf_counter()
                self.plain.epoch()
                plain = (time.process_time() - c, time.perf_counter() - w)
                self.rows.append((now[0] - self.last[0], plain[0], (now[1] - self.last[1]) / plain[1]))
            self.last = (time.process_time(), time.perf_counter())

    def no_lr_buffer(cli):
        cli.trainer.callbacks[:] = [LearningRateMonitor(logging_interval="step") if isinstance(cb, LRMonitor)
                                    else cb for cb in cli.trainer.callbacks]

    def bare(cli):
        cli.trainer.callbacks[:] = []

    variants = [
        ("recipe (W&B, buffered LR rows)", [], None),
        ("LR rows unbuffered (Lightning)", [], no_lr_buffer),
        ("CSVLogger instead of W&B", ["--trainer.logger=lightning.pytorch.loggers.CSVLogger"], None),
        ("no logger, no callbacks", ["--trainer.logger=false"], bare),
        ("  + torch's default AdamW", ["--trainer.logger=false", "--model.optim.options={}"], bare),
    ]
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _, _ in variants}
    with tempfile.TemporaryDirectory() as workdir:
        for _ in range(repeats):
            for name, extra, patch in variants:
                if name.startswith("CSV"):
                    extra = [*extra, f"--trainer.logger.init_args.save_dir={workdir}"]
                cli = _build_recipe(epochs, workdir, extra)
                if patch is not None:
                    patch(cli)
                paired = Paired()
                cli.trainer.callbacks.append(paired)
                cli.trainer.fit(cli.model, cli.datamodule)
                import wandb

                if wandb.run is not None:
                    wandb.finish()
                results[name].extend(paired.rows)
    print(f"\nmoons per-step breakdown, {epochs} epochs x {repeats} repeat(s), medians over epochs >= 3, "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'variant':<34}{'ours cpu ms/step':>17}{'plain cpu ms/step':>18}{'cpu ratio':>10}{'wall ratio':>11}")
    table = []
    for name, rows in results.items():
        ours, plain = statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)
        cpu_ratio = statistics.median(r[0] / r[1] for r in rows)
        wall_ratio = statistics.median(r[2] for r in rows)
        print(f"{name:<34}{1000 * ours / steps:>17.2f}{1000 * plain / steps:>18.2f}{cpu_ratio:>10.2f}"
              f"{wall_ratio:>11.2f}")
        table.append([name.strip(), round(1000 * ours / steps, 2), round(1000 * plain / steps, 2), round(cpu_ratio, 2),
                      round(wall_ratio, 2)])  # fmt: skip
    write_result(
        "moons_breakdown",
        tables={"breakdown": {"columns": ["variant", "ours cpu ms/step", "plain cpu ms/step", "cpu ratio",
                                          "wall ratio"], "rows": table}},
        ratios={f"cpu ratio, {row[0]}": row[3] for row in table}, command=command_line(),
        notes=f"{epochs} epochs x {repeats} repeat(s), each recipe epoch paired with one seed-loop epoch; process CPU "
              f"per step, medians over epochs >= 3, torch threads {torch.get_num_threads()}",
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads for both versions (a 2.4k-parameter MLP gains nothing from more, "
                        "and spinning OpenMP threads make timings on a shared machine meaningless)")
    parser.add_argument("--breakdown", action="store_true",
                        help="instead of the table above, time the recipe's parts per step (see `breakdown`)")
    args = parser.parse_args()
    if args.epochs < 4 or args.repeats < 1:
        parser.error(f"`--epochs` must be >= 4 and `--repeats` >= 1, got {args.epochs} and {args.repeats}")
    torch.set_num_threads(args.threads)
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    if args.breakdown:
        breakdown(args.epochs, args.repeats)
        return

    from lightning_bestpractices.data import MoonsDataModule

    dm = MoonsDataModule()
    dm.setup("fit")
    names = ["plain PyTorch loop (seed)", "plain loop + fused AdamW", "recipe Trainer setup",
             "LightningModule (docs way)"]
    times: dict[str, list[float]] = {n: [] for n in names}
    accs: dict[str, list[float]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as workdir:
        for _ in range(args.repeats):
            for name, fn in zip(names, (lambda: plain_loop(dm, args.epochs, seed=42),
                                        lambda: plain_loop(dm, args.epochs, seed=42, fused=True),
                                        lambda: run_recipe(args.epochs, workdir),
                                        lambda: lightning_docs(dm, args.epochs, workdir))):
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
    print(f"ratio recipe/(LightningModule the docs way): {o / med[names[3]]:.2f}  (what a user would otherwise write)")
    write_result(
        "moons_vs_plain_loop",
        tables={"versions": {"columns": ["version", "wall s (median)", "ms/step", "val acc"],
                             "rows": [[n, round(med[n], 2), round(1000 * med[n] / steps, 2),
                                       round(statistics.median(accs[n]), 3)] for n in names]}},
        ratios={"recipe / plain": o / p, "recipe / (plain + fused AdamW)": o / pf,
                "recipe / LightningModule the docs way": o / med[names[3]]},
        command=command_line(),
        notes=f"{args.epochs} epochs ({steps} steps), {args.repeats} repeat(s) alternating, wall clock, torch threads "
              f"{torch.get_num_threads()}; target recipe / plain <= 1.2",
    )  # fmt: skip


if __name__ == "__main__":
    main()
