"""Step-time overhead of GradientMonitor (every k steps) against no monitor, side by side in one process.

    python benchmarks/monitor_overhead.py                      # k=50, 3 x 600 steps per variant, ~1-2 min on CPU
    python benchmarks/monitor_overhead.py --every 10 --per-layer --repeats 5

Both variants are real ``Trainer.fit`` runs on the same MLP and data, interleaved (none, monitor, none, monitor,
...). A timing callback sums ``time.thread_time()`` from ``on_train_batch_start`` to ``on_train_batch_end`` of every
batch after the warm-up (forward, backward, every callback's ``on_before_optimizer_step``, optimizer step), on one
torch thread, so other processes on the machine do not count. Prints the median step time of each variant and
their ratio; the target is ``monitor / none <= 1.01``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_bestpractices._logging import format_table
from lightning_bestpractices.health import GradientMonitor

warnings.filterwarnings("ignore")


class StepClock(L.Callback):
    """Sum of thread CPU time per training batch, after ``warmup`` batches."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.total, self.count, self._t0 = warmup, 0.0, 0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._t0 = time.thread_time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        dt = time.thread_time() - self._t0
        if trainer.global_step > self.warmup:
            self.total += dt
            self.count += 1


class Net(L.LightningModule):
    def __init__(self, width: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                                 nn.Linear(width, 10))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        decay = [p for p in self.parameters() if p.ndim > 1]
        no_decay = [p for p in self.parameters() if p.ndim <= 1]
        return torch.optim.AdamW([{"params": decay, "name": "decay"},
                                  {"params": no_decay, "name": "no_decay", "weight_decay": 0.0}], lr=1e-3)


def run(args: argparse.Namespace, monitor: bool) -> float:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(args.batch * 64, 64, generator=g), torch.randint(0, 10, (args.batch * 64,), generator=g)
    clock = StepClock(args.warmup)
    callbacks: list = [clock]
    if monitor:
        callbacks.append(GradientMonitor(every_n_steps=args.every, per_layer=args.per_layer))
    trainer = L.Trainer(accelerator="cpu", max_steps=args.steps + args.warmup, callbacks=callbacks, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0)
    trainer.fit(Net(args.width), DataLoader(TensorDataset(x, y), batch_size=args.batch, shuffle=True))
    return clock.total / clock.count


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--every", type=int, default=50, help="GradientMonitor(every_n_steps=...)")
    p.add_argument("--per-layer", action="store_true", help="also log per-parameter norms")
    p.add_argument("--steps", type=int, default=600, help="timed steps per run (a multiple of --every is fair)")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    p.add_argument("--repeats", type=int, default=3, help="runs per variant, interleaved")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--width", type=int, default=256, help="hidden width of the 3-layer MLP")
    args = p.parse_args(argv)
    if min(args.every, args.steps, args.repeats, args.batch, args.width) < 1 or args.warmup < 0:
        p.error(f"--every/--steps/--repeats/--batch/--width must be >= 1 and --warmup >= 0, got {vars(args)}")
    torch.set_num_threads(1)
    times: dict[str, list[float]] = {"none": [], "monitor": []}
    for _ in range(args.repeats):
        times["none"].append(run(args, monitor=False))
        times["monitor"].append(run(args, monitor=True))
    none, mon = statistics.median(times["none"]), statistics.median(times["monitor"])
    ratios = [m / n for n, m in zip(times["none"], times["monitor"])]
    rows = [["none", round(none * 1e3, 4), 1.0], [f"GradientMonitor(every_n_steps={args.every})",
                                                  round(mon * 1e3, 4), round(mon / none, 4)]]
    print(format_table(["variant", "ms / step (median)", "ratio"], rows))
    print(f"per-repeat ratios: {[round(r, 4) for r in ratios]}")
    print(f"overhead ratio monitor / none = {mon / none:.4f} (target <= 1.01)")


if __name__ == "__main__":
    main()
