"""Activation checkpointing on CPU: peak memory saved against time added, side by side in one process.

    python benchmarks/checkpointing.py                       # residual MLP and CNN, 1 thread
    python benchmarks/checkpointing.py --repeats 7 --batch 256

Each model trains one step (forward, loss, backward) without and with ``checkpoint_blocks`` on every residual
block. Reported per model:

* time: CPU time of the calling thread (``time.thread_time``; torch runs with 1 intra-op thread, so this is all of
  the step's compute), median of ``--repeats`` interleaved runs after a warm-up;
* peak memory: the peak of live bytes allocated by torch's CPU allocator during the step, above what was live
  when the step began, from ``torch.profiler``'s memory profiling (``profile_memory=True``): each op's own
  allocations net of its own frees, plus the frees between ops, summed in time order. Resolution is one op (a
  temporary allocated and freed inside one op is not seen).
  It counts activations kept for backward, temporaries and the gradients (allocated in the step:
  ``zero_grad(set_to_none=True)``); it does not count the parameters, nor memory the allocator keeps cached;
* saved for backward: bytes of the non-parameter tensors autograd keeps for the backward pass
  (``torch.autograd.graph.saved_tensors_hooks``; a tensor saved by two ops counts twice), the part that
  checkpointing trades for recompute.

The seed's rule of thumb: about 50% less memory for about 30% more time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _report import command_line, write_result  # noqa: E402

from lightning_bestpractices._logging import format_table  # noqa: E402
from lightning_bestpractices.regularization import checkpoint_blocks, remove_checkpointing  # noqa: E402


class MLPBlock(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.norm, self.fc1, self.act, self.fc2 = nn.LayerNorm(d), nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d)

    def forward(self, x):
        return x + self.fc2(self.act(self.fc1(self.norm(x))))


class ConvBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                                  nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c))  # fmt: skip

    def forward(self, x):
        return torch.relu(x + self.body(x))


def models(batch: int):
    torch.manual_seed(0)
    mlp = nn.Sequential(*[MLPBlock(256) for _ in range(8)], nn.Linear(256, 10))
    cnn = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), *[ConvBlock(32) for _ in range(6)],
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))  # fmt: skip
    return [
        ("residual MLP 8 x 256", mlp, MLPBlock, torch.randn(batch, 256)),
        ("residual CNN 6 x 32ch", cnn, ConvBlock, torch.randn(max(batch // 8, 1), 3, 32, 32)),
    ]


def step(model: nn.Module, x: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    model(x).logsumexp(-1).mean().backward()


def timed(model: nn.Module, x: torch.Tensor) -> float:
    t0 = time.thread_time()
    step(model, x)
    return time.thread_time() - t0


def peak_bytes(model: nn.Module, x: torch.Tensor) -> int:
    from torch.profiler import ProfilerActivity, profile

    model.zero_grad(set_to_none=True)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step(model, x)
    # an op's own allocations minus its own frees (children excluded, so nothing counts twice), and the frees
    # that happen between ops ("[memory]" events), in time order
    deltas = sorted(
        (e.time_range.start, e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage)
        for e in prof.events()
    )
    live = peak = 0
    for _, delta in deltas:
        live += delta
        peak = max(peak, live)
    return peak


def saved_bytes(model: nn.Module, x: torch.Tensor) -> int:
    total = [0]
    params = {p.data_ptr() for p in model.parameters()}

    def pack(t):
        if t.data_ptr() not in params:  # weights saved for backward are not extra memory
            total[0] += t.numel() * t.element_size()
        return t

    model.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(x).logsumexp(-1).mean()
    loss.backward()
    return total[0]


def main(argv=None) -> list[list]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=512, help="MLP batch; the CNN uses batch / 8 images of 3x32x32")
    p.add_argument("--repeats", type=int, default=5, help="interleaved timed steps per variant (median)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (thread_time counts 1 thread)")
    args = p.parse_args(argv)
    if args.batch < 1 or args.repeats < 1:
        p.error(f"`--batch` and `--repeats` must be >= 1, got {args.batch!r} and {args.repeats!r}")
    torch.set_num_threads(args.threads)
    rows = []
    for name, model, block, x in models(args.batch):
        model.train()
        results = {}
        for variant in ("plain", "checkpointed"):
            if variant == "checkpointed":
                checkpoint_blocks(model, types=[block])
            step(model, x)  # warm-up
            results[variant] = {"peak": peak_bytes(model, x), "saved": saved_bytes(model, x)}
            remove_checkpointing(model)
        times = {"plain": [], "checkpointed": []}
        for _ in range(args.repeats):  # interleaved, so load changes hit both alike
            times["plain"].append(timed(model, x))
            checkpoint_blocks(model, types=[block])
            times["checkpointed"].append(timed(model, x))
            remove_checkpointing(model)
        t = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        mib = {k: v["peak"] / 2**20 for k, v in results.items()}
        saved = {k: v["saved"] / 2**20 for k, v in results.items()}
        rows.append([name, t["plain"], t["checkpointed"], t["checkpointed"] / t["plain"], mib["plain"],
                     mib["checkpointed"], mib["checkpointed"] / mib["plain"], saved["plain"],
                     saved["checkpointed"]])  # fmt: skip
    columns = ["model", "plain ms", "ckpt ms", "time ratio", "plain peak MiB", "ckpt peak MiB", "memory ratio",
               "plain saved MiB", "ckpt saved MiB"]  # fmt: skip
    print(format_table(columns, rows))
    write_result(
        "checkpointing", tables={"steps": {"columns": columns, "rows": rows}},
        ratios={f"{kind} ratio, {row[0]}": row[i] for row in rows for kind, i in (("time", 3), ("memory", 6))},
        command=command_line(),
        notes=f"one training step, thread CPU clock, median of {args.repeats} interleaved steps, "
              f"{args.threads} torch thread(s); peak = torch CPU allocator, from torch.profiler",
    )  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
