"""MC dropout speed: naive loop vs tiled full pass vs ``mc_predict`` (prefix caching) vs the cost floor.

    python benchmarks/mc_dropout.py                    # N=32, batch 64, 3x32x32 inputs, CPU, 1 thread
    python benchmarks/mc_dropout.py --repeats 5 --json results.json

The model is a CNN with BatchNorm in its trunk and two Dropout layers only in its MLP head. The versions run
interleaved in one process (round-robin, so the load of a shared machine hits all alike), each timed with the
CPU clock of the computing thread (``time.thread_time``; ``torch.set_num_threads(1)``, so that thread does all
the work; on a shared machine wall time mostly measures waiting for a core):

* naive: N full forward passes of the batch, dropout switched on (the usual recipe);
* tiled: one full pass on the input tiled N times (what common MC-dropout libraries do);
* ours: ``mc_predict`` (trunk once, head on N x batch rows, seeded masks, streaming measures);
* floor: the trunk once plus ONE head pass over the N x batch rows, with torch's own dropout and a plain
  softmax mean: the least any prefix-caching implementation must compute.

Also timed: T, one trunk pass, and H, one head pass over the batch. The naive loop costs N (T + H) and any
prefix-caching version at least T, so the speed-up over naive is capped by N (T + H) / T; the table prints it
next to the measured speed-up. Ratios are medians over rounds of per-round ratios (p25-p75 in brackets). Peak
memory is measured per version in a fresh subprocess as the growth of the RSS (sampled every 0.5 ms). The table
is printed as Markdown, written to ``benchmarks/results/mc_dropout.json`` (rendered into ``benchmarks/README.md``
by ``python benchmarks/render.py``) and, with ``--json``, written with every raw time.

Target (issue 11): ours <= 1.05 x floor.
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
from _report import command_line, write_result  # noqa: E402

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


def floor(model: nn.Module, x: torch.Tensor, n: int) -> torch.Tensor:
    """Trunk once, then one head pass over the N x batch rows (torch's dropout), probabilities averaged."""
    _dropout_on(model)
    trunk, head = model[:HEAD_START], model[HEAD_START:]
    h = trunk(x)
    return head(h.repeat(n, 1)).softmax(-1).view(n, x.shape[0], -1).mean(0)


def trunk_once(model: nn.Module, x: torch.Tensor, n: int) -> torch.Tensor:
    """T: one trunk pass of the batch."""
    return model[:HEAD_START](x)


def head_once(model: nn.Module, x: torch.Tensor, n: int, _cache: dict = {}) -> torch.Tensor:  # noqa: B006
    """H: one head pass of the batch (dropout on); the trunk features are computed once, outside the clock."""
    _dropout_on(model)
    key = (id(model), x.data_ptr())
    if key not in _cache:
        _cache.clear()
        _cache[key] = model[:HEAD_START](x)
    return model[HEAD_START:](_cache[key]).softmax(-1)


VERSIONS = {"naive": naive, "tiled": batched, "ours": ours, "floor": floor}
PARTS = {"T": trunk_once, "H": head_once}


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
        VERSIONS[version](model, x, 1)  # touch code paths / allocator once
    before, peak, done = _rss_bytes(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with torch.no_grad():
            VERSIONS[version](model, x, n)
    finally:
        done.set()
        sampler.join()
    return max(peak[0], _rss_bytes()) - before


def _median_ratio(a: list[float], b: list[float]) -> tuple[float, float, float]:
    r = [x / y for x, y in zip(a, b)]
    q = statistics.quantiles(r, n=4) if len(r) > 1 else [r[0]] * 3
    return statistics.median(r), q[0], q[2]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=32, help="MC samples (issue: 32)")
    parser.add_argument("--batch", type=int, default=64, help="inputs per batch (issue: 64)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (interleaved; medians)")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw times and the table here")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-version RSS subprocesses")
    parser.add_argument("--memory-of", choices=list(VERSIONS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.n < 1 or args.batch < 1 or args.repeats < 1:
        parser.error(f"--n, --batch and --repeats must be >= 1, got {vars(args)}")
    torch.set_num_threads(1)  # all work in this thread, so that its CPU clock covers it
    if args.memory_of:
        print(json.dumps(peak_memory(args.memory_of, args.n, args.batch)))
        return

    model, x = make_model(), torch.randn(args.batch, 3, 32, 32)
    fns = {**VERSIONS, **PARTS}
    times: dict[str, list[float]] = {k: [] for k in fns}
    with torch.no_grad():
        for fn in fns.values():  # warm-up (also of the split audit, cached per model, inside mc_predict)
            fn(model, x, 4)
        for _ in range(args.repeats):
            for name, fn in fns.items():
                t0 = time.thread_time()
                fn(model, x, args.n)
                times[name].append(time.thread_time() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    mem = {}
    if not args.no_memory:
        for name in VERSIONS:
            out = subprocess.run(
                [sys.executable, __file__, "--memory-of", name, "--n", str(args.n), "--batch", str(args.batch)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            mem[name] = json.loads(out.stdout.strip().splitlines()[-1])
    t, h, n = med["T"], med["H"], args.n
    cap = n * (t + h) / t
    lines = [
        f"MC dropout, N={n}, batch {args.batch}, 3x32x32, CPU, 1 thread, thread CPU clock, {args.repeats} rounds, "
        f"torch {torch.__version__}: T (trunk) = {t * 1000:.1f} ms, H (head, batch) = {h * 1000:.2f} ms, "
        f"speed-up cap N(T+H)/T = {cap:.1f}x",
        "",
        "| version | CPU ms (median) | speed-up vs naive | / floor | peak RSS growth MiB |",
        "|---|---|---|---|---|",
    ]
    rows = {}
    table_rows = []
    for name in VERSIONS:
        sp = _median_ratio(times["naive"], times[name])
        fl = _median_ratio(times[name], times["floor"])
        rows[name] = {
            "ms": med[name] * 1000,
            "speedup": sp,
            "over_floor": fl,
            "rss_mib": mem.get(name, 0) / 2**20,
        }
        label = {
            "tiled": "tiled (one pass on N x batch)",
            "floor": "floor (trunk + 1 head pass on N x batch)",
        }
        speed = f"{sp[0]:.1f}x" + (f" (cap {cap:.1f}x)" if name == "ours" else "")
        ratio = f"{fl[0]:.3f} ({fl[1]:.3f}-{fl[2]:.3f})"
        if name == "ours":
            ratio = f"**{fl[0]:.3f}** ({fl[1]:.3f}-{fl[2]:.3f})"
        rss = f"{mem[name] / 2**20:.1f}" if mem else "-"
        lines.append(f"| {label.get(name, name)} | {med[name] * 1000:.1f} | {speed} | {ratio} | {rss} |")
        table_rows.append([label.get(name, name), round(med[name] * 1000, 1), speed, ratio, rss])
    ok = rows["ours"]["over_floor"][0] <= 1.05
    lines += ["", f"target ours <= 1.05 x floor: {'met' if ok else 'MISSED'} ({rows['ours']['over_floor'][0]:.3f}); "
              f"speed-up over naive {rows['ours']['speedup'][0]:.1f}x of a cap of {cap:.1f}x"]  # fmt: skip
    text = "\n".join(lines)
    print(text)
    write_result(
        "mc_dropout",
        tables={"versions": {"columns": ["version", "CPU ms (median)", "speed-up vs naive", "/ floor",
                                         "peak RSS growth MiB"], "rows": table_rows}},
        ratios={"ours / floor": rows["ours"]["over_floor"][0], "ours speed-up vs naive": rows["ours"]["speedup"][0],
                "speed-up cap N(T+H)/T": cap, "tiled speed-up vs naive": rows["tiled"]["speedup"][0]},
        command=command_line(), notes=lines[0] + "; target ours <= 1.05 x floor",
    )  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "times_s": times,
                                         "T_s": t, "H_s": h, "cap": cap, "rows": rows, "table": text}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
