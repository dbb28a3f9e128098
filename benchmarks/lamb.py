"""LAMB step time: our ``Lamb`` (foreach kernels, trust ratio kept as a tensor) vs a straightforward per-tensor loop.

    python benchmarks/lamb.py                       # ~30 s on 2 CPU cores
    python benchmarks/lamb.py --layers 48 --width 256 --rounds 30

The baseline is the textbook loop (the seed's update rule, one tensor at a time, ``float(norm)`` for the trust
ratio); torch's ``AdamW`` (foreach) is shown as the cost of the Adam moments alone. All three run on the same model
and gradients; rounds are interleaved and the table reports medians and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from _report import command_line, write_result
from torch import nn

from lightning_bestpractices._logging import format_table
from lightning_bestpractices.optim import Lamb


class LoopLamb(torch.optim.Optimizer):
    """The per-tensor reference: what one writes first (and what the tests compare ``Lamb`` against)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["t"], state["m"], state["v"] = 0, torch.zeros_like(p), torch.zeros_like(p)
                state["t"] += 1
                t, m, v, g = state["t"], state["m"], state["v"], p.grad
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                update = (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + group["eps"]) + group[
                    "weight_decay"
                ] * p
                pn, un = float(p.norm()), float(update.norm())
                trust = pn / un if pn > 0 and un > 0 else 1.0
                p.add_(update, alpha=-group["lr"] * trust)


def main(argv: list[str] | None = None) -> list[list]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=24, help="Linear+LayerNorm blocks (3 tensors + 2 each)")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per timed round")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    blocks = [
        m for _ in range(args.layers) for m in (nn.Linear(args.width, args.width), nn.LayerNorm(args.width))
    ]
    base = nn.Sequential(*blocks)
    variants = {}
    for name, make in (
        ("loop LAMB (baseline)", LoopLamb),
        ("Lamb (ours)", Lamb),
        ("torch AdamW", torch.optim.AdamW),
    ):
        model = copy.deepcopy(base)  # same weights, own tensors
        params = list(model.parameters())
        for p in params:
            p.grad = torch.randn_like(p) * 1e-2
        variants[name] = (make(params, lr=1e-3, weight_decay=0.01), [])
    n_tensors = len(list(base.parameters()))
    for _ in range(args.rounds):
        for opt, times in variants.values():
            start = time.perf_counter()
            for _ in range(args.steps):
                opt.step()
            times.append((time.perf_counter() - start) / args.steps)
    base_t = statistics.median(variants["loop LAMB (baseline)"][1])
    rows = []
    for name, (_, times) in variants.items():
        med = statistics.median(times)
        rows.append([name, f"{med * 1e3:.3f}", f"{base_t / med:.2f}x"])
    print(f"{n_tensors} parameter tensors ({args.layers} x Linear+LayerNorm, width {args.width}), "
          f"{args.threads} thread(s), median of {args.rounds} rounds x {args.steps} steps")  # fmt: skip
    print(format_table(["optimizer", "ms / step", "speed vs baseline"], rows))
    meds = {name: statistics.median(times) for name, (_, times) in variants.items()}
    write_result(
        "lamb", tables={"step": {"columns": ["optimizer", "ms / step", "speed vs baseline"], "rows": rows}},
        ratios={f"speed of {name} vs loop LAMB": base_t / med for name, med in meds.items()
                if name != "loop LAMB (baseline)"},
        command=command_line(),
        notes=f"{n_tensors} parameter tensors ({args.layers} x Linear+LayerNorm, width {args.width}), "
              f"{args.threads} thread(s), wall clock, median of {args.rounds} rounds x {args.steps} steps",
    )  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
