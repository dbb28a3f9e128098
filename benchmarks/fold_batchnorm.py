"""BatchNorm folding for inference: eval latency of unfolded vs ``fold_batchnorm`` vs ``torch.fx`` fuse (CPU).

    python benchmarks/fold_batchnorm.py                         # small CNN, resnet18, an fx-untraceable net; ~3 min
    python benchmarks/fold_batchnorm.py --models resnet18 --batches 1 --rounds 30

For each model and batch size three versions of the same eval-mode network are timed interleaved (round-robin, so
the noise of a shared machine hits all alike; ``--iters`` forwards per round under ``torch.inference_mode``). The
table reports each version's median time and, for each ratio, the median over rounds of the per-round ratio (the
two versions were timed seconds apart, so slow drifts of the machine's load cancel) with its p25-p75 range as a
visible measure of the noise. By default the clock is
the CPU time of the (single) computing thread, ``time.thread_time``: on a shared machine wall time mostly measures
how long the process waited for a core; ``--clock wall --threads N`` measures wall time instead:

* ``unfolded``: the model as trained (Conv -> BatchNorm);
* ``ours``: :func:`lightning_bestpractices.normalization.fold_batchnorm`;
* ``fx``: ``torch.fx.experimental.optimization.fuse`` (symbolic tracing; fails on data-dependent control flow).

BatchNorm statistics and affine parameters are randomized first so that a wrong fold cannot match by accident; the
table also reports the largest output difference of each folded model vs the unfolded one.
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import time

import torch
import torchvision
from _report import command_line, write_result
from torch import nn
from torch.fx.experimental.optimization import fuse as fx_fuse
from tqdm import tqdm

from lightning_bestpractices._logging import format_table
from lightning_bestpractices.models import SmallCNN
from lightning_bestpractices.normalization import fold_batchnorm


class DynamicNet(nn.Module):
    """Conv-BN blocks whose depth depends on the data: ``torch.fx`` cannot trace this ``forward``."""

    def __init__(self, width: int = 32, blocks: int = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
            for _ in range(blocks)
        )
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            if x.abs().mean() > 1e-3:  # data-dependent early exit
                x = block(x)
        return self.head(x.mean((2, 3)))


def build(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    if name == "cnn":
        return SmallCNN(in_channels=3, num_classes=10, channels=(32, 64, 128), dropout=0.0), (3, 32, 32)
    if name == "resnet18":
        return torchvision.models.resnet18(weights=None, num_classes=10), (3, 64, 64)
    if name == "dynamic":
        return DynamicNet(), (3, 32, 32)
    raise ValueError(f"`--models` entries must be 'cnn', 'resnet18' or 'dynamic', got {name!r}")


def randomize_bn(model: nn.Module) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)


CLOCKS = {"thread": time.thread_time, "wall": time.perf_counter}


def time_once(model: nn.Module, x: torch.Tensor, iters: int, clock=time.perf_counter) -> float:
    start = clock()
    for _ in range(iters):
        model(x)
    return (clock() - start) / iters * 1e3


def ratio(times: dict[str, list[float]], a: str, b: str) -> str:
    """Median over rounds of the per-round ratio ``a / b`` (timed seconds apart), with its p25-p75 range."""
    if a not in times or b not in times:
        return "n/a"
    r = sorted(x / y for x, y in zip(times[a], times[b]))
    q = statistics.quantiles(r, n=4) if len(r) > 1 else [r[0], r[0], r[0]]
    return f"{q[1]:.3f} ({q[0]:.2f}-{q[2]:.2f})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--models", nargs="+", default=["cnn", "resnet18", "dynamic"], help="cnn, resnet18, dynamic"
    )
    p.add_argument("--batches", nargs="+", type=int, default=[1, 64], help="batch sizes (issue: 1 and 64)")
    p.add_argument("--rounds", type=int, default=15, help="interleaved rounds; the median is reported")
    p.add_argument("--iters", type=int, default=0, help="forwards per round (0: ~50 ms worth, min 1)")
    p.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (1: least noisy when shared)"
    )
    p.add_argument(
        "--clock", choices=list(CLOCKS), default="thread",
        help="thread: CPU time of this thread (immune to waiting for a shared core; needs --threads 1); wall",
    )  # fmt: skip
    args = p.parse_args()
    for flag in ("rounds", "threads"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    if any(b < 1 for b in args.batches):
        p.error(f"--batches must be >= 1, got {args.batches}")
    if args.clock == "thread" and args.threads != 1:
        p.error("--clock thread measures only the calling thread: use --threads 1 or --clock wall")
    torch.set_num_threads(args.threads)
    clock = CLOCKS[args.clock]

    rows = []
    jobs = [(m, b) for m in args.models for b in args.batches]
    for name, batch in tqdm(jobs, desc="fold_batchnorm benchmark"):
        torch.manual_seed(0)
        model, shape = build(name)
        randomize_bn(model)
        model.eval()
        x = torch.randn(batch, *shape)
        versions: dict[str, nn.Module] = {"unfolded": model}
        ours, report = fold_batchnorm(model, x[:1])
        versions["ours"] = ours
        fx_note = ""
        try:
            versions["fx"] = fx_fuse(copy.deepcopy(model))
        except Exception as err:  # noqa: BLE001 - fx raises several types; the table shows why
            fx_note = f"fx cannot trace: {type(err).__name__}"
        with torch.inference_mode():
            ref = model(x)
            diff = {k: (m(x) - ref).abs().max().item() for k, m in versions.items() if k != "unfolded"}
            iters = args.iters or max(1, int(0.05 / max(time_once(model, x, 1) / 1e3, 1e-6)))
            for m in versions.values():  # warm-up
                time_once(m, x, iters, clock)
            times: dict[str, list[float]] = {k: [] for k in versions}
            for _ in range(args.rounds):
                order = list(versions)
                random.shuffle(order)
                for k in order:
                    times[k].append(time_once(versions[k], x, iters, clock))
        med = {k: statistics.median(v) for k, v in times.items()}

        rows.append(
            [
                name, f"{batch}x{'x'.join(map(str, shape))}", f"{len(report.folded)}/{len(report.folded) + len(report.skipped)}",
                med["unfolded"], med["ours"], med.get("fx", "n/a"), ratio(times, "ours", "unfolded"),
                ratio(times, "fx", "unfolded"), ratio(times, "ours", "fx") if "fx" in times else fx_note, max(diff.values()),
            ]
        )  # fmt: skip
    columns = [
        "model", "input", "BN folded", "unfolded ms", "ours ms", "fx ms", "ours/unfolded", "fx/unfolded",
        "ours/fx", "max |diff|",
    ]  # fmt: skip
    print(
        f"\neval latency: ms per forward ({args.clock} clock, median of {args.rounds} interleaved rounds, "
        f"{args.threads} thread(s)); ratios: median of per-round ratios (p25-p75)"
    )
    print(format_table(columns, rows))
    ratios = {}
    for row in rows:
        for col in ("ours/unfolded", "ours/fx"):
            cell = row[columns.index(col)]
            if cell[:1].isdigit():  # "0.907 (0.87-0.94)": the median of the per-round ratios
                ratios[f"{col}, {row[0]} {row[1]}"] = float(cell.split()[0])
    write_result(
        "fold_batchnorm", tables={"latency": {"columns": columns, "rows": rows}}, ratios=ratios,
        command=command_line(),
        notes=f"ms per forward, {args.clock} clock, median of {args.rounds} interleaved rounds, {args.threads} "
              "thread(s); ratios: median of per-round ratios (p25-p75)",
    )  # fmt: skip


if __name__ == "__main__":
    main()
