"""MC dropout speed: naive loop vs batched full pass vs ``mc_predict`` (prefix caching) vs the cost-model bound.

    python benchmarks/mc_dropout.py                    # N=32, batch 64, 3x32x32 inputs, CPU, 1 thread
    python benchmarks/mc_dropout.py --threads 2 --repeats 5

The model is a CNN with BatchNorm in its trunk and two Dropout layers only in its MLP head. Four versions run
side by side in one process (times: median of ``--repeats`` after a warm-up); peak memory is measured per
version in a fresh subprocess as the growth of the RSS (sampled every 0.5 ms) over the RSS before the call:

* naive: N full forward passes of the batch, dropout switched on (the usual recipe);
* batched: one full pass on the input tiled N times (what common MC-dropout libraries do);
* ours: ``mc_predict`` (trunk once, head on N x batch rows, seeded masks, streaming measures);
* bound: one trunk pass plus N head passes of the batch, timed separately (the cost model's floor).

Targets (issue 6): ours >= 15x faster than naive, and within 1.3x of the bound.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lightning_bestpractices._logging import format_table  # noqa: E402
from lightning_bestpractices.uncertainty import mc_predict  # noqa: E402


def make_model() -> nn.Sequential:
    torch.manual_seed(0)

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *block(3, 32), *block(32, 64), nn.MaxPool2d(2), *block(64, 128), nn.MaxPool2d(2), *block(128, 128),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(128, 256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, 256), nn.ReLU(), nn.Dropout(0.3),
        nn.Linear(256, 10),
    ).eval()  # fmt: skip


HEAD_START = 16  # index of the first head layer (Linear after Flatten)


def _dropout_on(model: nn.Module) -> None:
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.train()


def naive(model: nn.Module, x: torch.Tensor, n: int) -> torch.Tensor:
    _dropout_on(model)
    total = 0
    for _ in range(n):
        total = total + model(x).softmax(-1)
    return total / n


def batched(model: nn.Module, x: torch.Tensor, n: int) -> torch.Tensor:
    _dropout_on(model)
    return model(x.repeat(n, 1, 1, 1)).softmax(-1).view(n, x.shape[0], -1).mean(0)


def ours(model: nn.Module, x: torch.Tensor, n: int) -> torch.Tensor:
    return mc_predict(model, x, n).mean_probs


def bound(model: nn.Module, x: torch.Tensor, n: int) -> tuple[float, float]:
    """(trunk seconds, N head passes seconds), timed separately."""
    _dropout_on(model)
    trunk, head = model[:HEAD_START], model[HEAD_START:]
    t0 = time.perf_counter()
    h = trunk(x)
    t1 = time.perf_counter()
    for _ in range(n):
        head(h).softmax(-1)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


VERSIONS = {"naive": naive, "batched": batched, "ours": ours}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def peak_memory(version: str, n: int, batch: int) -> int:
    """Run one version in this (fresh) process; peak RSS growth in bytes, sampled every 0.5 ms by a thread.

    (``ru_maxrss`` is no use here: importing torch peaks higher than the run itself.)
    """
    import threading

    model, x = make_model(), torch.randn(batch, 3, 32, 32)
    with torch.no_grad():
        VERSIONS.get(version, naive)(model, x, 1)  # touch code paths / allocator once
    before, peak, done = _rss_bytes(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with torch.no_grad():
            if version == "bound":
                bound(model, x, n)
            else:
                VERSIONS[version](model, x, n)
    finally:
        done.set()
        sampler.join()
    return max(peak[0], _rss_bytes()) - before


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=32, help="MC samples (issue: 32)")
    parser.add_argument("--batch", type=int, default=64, help="inputs per batch (issue: 64)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per version (median)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (the box is shared: 1 is steadier)"
    )
    parser.add_argument("--memory-of", choices=[*VERSIONS, "bound"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.n < 1 or args.batch < 1 or args.repeats < 1 or args.threads < 1:
        parser.error(f"--n, --batch, --repeats and --threads must be >= 1, got {vars(args)}")
    torch.set_num_threads(args.threads)
    if args.memory_of:
        print(json.dumps(peak_memory(args.memory_of, args.n, args.batch)))
        return

    model, x = make_model(), torch.randn(args.batch, 3, 32, 32)
    with torch.no_grad():
        ref = naive(model, x, 4)  # warm-up (also of the split cache and probe inside mc_predict)
        ours(model, x, 4)
        batched(model, x, 4)
        times: dict[str, list[float]] = {k: [] for k in [*VERSIONS, "bound"]}
        parts: list[tuple[float, float]] = []
        for _ in range(args.repeats):  # interleaved, so load changes on the shared box hit all versions alike
            for name, fn in VERSIONS.items():
                t0 = time.perf_counter()
                fn(model, x, args.n)
                times[name].append(time.perf_counter() - t0)
            parts.append(bound(model, x, args.n))
            times["bound"].append(sum(parts[-1]))
    assert ref.shape == (args.batch, 10)
    med = {k: statistics.median(v) for k, v in times.items()}
    mem = {}
    for name in times:
        out = subprocess.run(
            [sys.executable, __file__, "--memory-of", name, "--n", str(args.n), "--batch", str(args.batch),
             "--threads", str(args.threads)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        mem[name] = json.loads(out.stdout.strip().splitlines()[-1])
    trunk = statistics.median(p[0] for p in parts)
    heads = statistics.median(p[1] for p in parts)
    rows = [
        [name, f"{med[name] * 1000:.1f}", f"{med['naive'] / med[name]:.1f}x", f"{med[name] / med['bound']:.2f}",
         f"{mem[name] / 2**20:.1f}"]
        for name in times
    ]  # fmt: skip
    print(
        f"MC dropout, N={args.n}, batch {args.batch}, 3x32x32, CPU threads={args.threads}, "
        f"torch {torch.__version__}; bound = trunk {trunk * 1000:.1f} ms + {args.n} heads {heads * 1000:.1f} ms"
    )
    print(
        format_table(
            ["version", "ms (median)", "speed-up vs naive", "time / bound", "peak RSS growth MiB"], rows
        )
    )
    ok_speed = med["naive"] / med["ours"] >= 15
    ok_bound = med["ours"] / med["bound"] <= 1.3
    print(f"targets: ours >= 15x naive: {'met' if ok_speed else 'MISSED'}; "
          f"ours within 1.3x of bound: {'met' if ok_bound else 'MISSED'}")  # fmt: skip


if __name__ == "__main__":
    main()
