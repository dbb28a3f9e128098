"""Step-time overhead of GradientMonitor (every k steps) against no monitor, side by side in one process.

    python benchmarks/monitor_overhead.py                      # k=50, 3 x 600 steps per variant, ~1-2 min on CPU
    python benchmarks/monitor_overhead.py --every 10 --per-layer --repeats 5

Both variants are real ``Trainer.fit`` runs on the same MLP and data, interleaved (none, monitor, none, monitor,
...). A timing callback sums ``time.thread_time()`` from ``on_train_batch_start`` to ``on_train_batch_end`` of every
batch after the warm-up (forward, backward, every callback's ``on_before_optimizer_step``, optimizer step), on one
torch thread, so other processes on the machine do not count. Prints the median step time of each variant and
their ratio; the target is ``monitor / none <= 1.01``. On a shared, loaded machine the end-to-end ratio moves by a
few percent from run to run either way, so the script also sums the thread CPU time spent inside the monitor's own
hooks (and its post-step hook), minus the same timing around hooks that do nothing (the timer's own cost, in the
"none" runs): that share of the step time is the overhead itself, without the run-to-run noise.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import lightning as L
import torch
from _report import command_line, write_result
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


class _Timed:
    """Sums the thread CPU time spent inside the wrapped callback's per-step hooks (and its post-step hook)."""

    hook_time = 0.0
    warmup = 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        t0 = time.thread_time()
        super().on_before_optimizer_step(trainer, pl_module, optimizer)
        self.hook_time += time.thread_time() - t0

    def on_train_batch_end(self, trainer, *args):
        t0 = time.thread_time()
        super().on_train_batch_end(trainer, *args)
        self.hook_time += time.thread_time() - t0


class TimedMonitor(_Timed, GradientMonitor):
    def _after_step_hook(self, trainer, names, step):
        inner = super()._after_step_hook(trainer, names, step)

        def hook(*args):
            t0 = time.thread_time()
            inner(*args)
            self.hook_time += time.thread_time() - t0

        return hook


class TimedNoop(_Timed, L.Callback):
    """The same timing around hooks that do nothing: the timer's own cost, subtracted from the monitor's."""


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


def run(args: argparse.Namespace, monitor: bool) -> tuple[float, float]:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(args.batch * 64, 64, generator=g), torch.randint(0, 10, (args.batch * 64,), generator=g)
    clock = StepClock(args.warmup)
    callbacks: list = [clock]
    timed = TimedMonitor(every_n_steps=args.every, per_layer=args.per_layer) if monitor else TimedNoop()
    callbacks.append(timed)
    trainer = L.Trainer(accelerator="cpu", max_steps=args.steps + args.warmup, callbacks=callbacks, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0)
    trainer.fit(Net(args.width), DataLoader(TensorDataset(x, y), batch_size=args.batch, shuffle=True))
    steps = args.steps + args.warmup
    return clock.total / clock.count, timed.hook_time / steps


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
    in_hooks: list[float] = []
    timer: list[float] = []
    for _ in range(args.repeats):
        step, noop = run(args, monitor=False)
        times["none"].append(step)
        timer.append(noop)
        step, hook = run(args, monitor=True)
        times["monitor"].append(step)
        in_hooks.append(hook)
    none, mon = statistics.median(times["none"]), statistics.median(times["monitor"])
    hook = statistics.median(in_hooks) - statistics.median(timer)  # the monitor's own work per step
    ratios = [m / n for n, m in zip(times["none"], times["monitor"])]
    name = f"GradientMonitor(every_n_steps={args.every}{', per_layer' if args.per_layer else ''})"
    rows = [["none", round(none * 1e3, 4), 1.0, "-"],
            [name, round(mon * 1e3, 4), round(mon / none, 4), round(hook * 1e3, 4)]]
    columns = ["variant", "ms / step (median)", "ratio", "ms / step inside the monitor"]
    print(format_table(columns, rows))
    print(f"per-repeat ratios: {[round(r, 4) for r in ratios]}")
    print(f"overhead ratio monitor / none = {mon / none:.4f} (target <= 1.01); "
          f"(step time + time inside the monitor's hooks) / step time = {1 + hook / none:.4f}")
    write_result(
        "monitor_overhead", tables={"steps": {"columns": columns, "rows": rows}},
        ratios={"monitor / none (end to end)": mon / none, "(step + time inside the monitor) / step": 1 + hook / none},
        command=command_line(),
        notes=f"{args.repeats} interleaved Trainer.fit runs per variant, {args.steps} timed steps each, 1 torch thread, "
              f"thread CPU clock; per-repeat ratios {[round(r, 3) for r in ratios]}; target <= 1.01",
    )  # fmt: skip


if __name__ == "__main__":
    main()
