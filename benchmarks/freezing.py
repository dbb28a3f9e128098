"""Freezing must save compute: training-step time with the backbone frozen vs fully trainable (CPU).

    python benchmarks/freezing.py                       # SmallCNN and resnet18; minutes on a busy 2-core CPU
    python benchmarks/freezing.py --models resnet18 --steps 30 --threads 2

Three variants of the same model, timed interleaved (round-robin, median of ``--steps`` steps each) so that the noise
of a shared machine hits all of them alike:

* ``trainable``: every parameter trains (the baseline);
* ``lr=0``: the workaround the issue rules out -- everything requires grad, the backbone sits in an optimizer group
  with ``lr=0`` (full backward, full optimizer work, nothing saved);
* ``frozen``: :func:`lightning_bestpractices.finetuning.freeze_group` on every group but the head
  (``requires_grad=False`` + frozen BatchNorm), as ``GradualUnfreezing`` does before the first unfreeze: autograd
  stops at the head, so the backbone's backward pass and optimizer update disappear.

One step = forward, cross-entropy, backward, ``AdamW.step``, ``zero_grad``. The table prints the median step time
of each variant and ``frozen / trainable`` (target <= 0.7).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision
from _report import command_line, write_result
from torch import nn
from tqdm import tqdm

from lightning_bestpractices._logging import format_table
from lightning_bestpractices.finetuning import freeze_group, group_parameters, layer_groups
from lightning_bestpractices.models import SmallCNN


def build(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    if name == "cnn":
        return SmallCNN(in_channels=3, num_classes=10, channels=(32, 64, 128), dropout=0.0), (3, 32, 32)
    if name == "resnet18":
        return torchvision.models.resnet18(weights=None, num_classes=10), (3, 64, 64)
    raise ValueError(f"`--models` entries must be 'cnn' or 'resnet18', got {name!r}")


def variant(name: str, kind: str, seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model, _ = build(name)
    model.train()
    groups = layer_groups(model)
    params = group_parameters(model, groups)
    body = [p for ps in params[:-1] for p in ps]
    if kind == "frozen":
        for g in groups[:-1]:
            freeze_group(model, g)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    elif kind == "lr=0":
        opt = torch.optim.AdamW([{"params": body, "lr": 0.0}, {"params": params[-1], "lr": 1e-3}])
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return model, opt


def step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    start = time.perf_counter()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["cnn", "resnet18"])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0 or args.batch_size < 1 or args.threads < 1:
        parser.error(f"--steps/--batch-size/--threads must be >= 1 and --warmup >= 0, got {vars(args)}")
    torch.set_num_threads(args.threads)
    kinds = ["trainable", "lr=0", "frozen"]
    rows = []
    for name in args.models:
        build(name)  # validate the name before any work
        _, shape = build(name)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(args.batch_size, *shape, generator=g)
        y = torch.randint(0, 10, (args.batch_size,), generator=g)
        runs = {k: variant(name, k) for k in kinds}
        for k in kinds:
            for _ in range(args.warmup):
                step(*runs[k], x, y)
        times: dict[str, list[float]] = {k: [] for k in kinds}
        for _ in tqdm(range(args.steps), desc=name, leave=False):
            for k in kinds:
                times[k].append(step(*runs[k], x, y))
        med = {k: statistics.median(v) for k, v in times.items()}
        trainable = sum(p.numel() for p in runs["frozen"][0].parameters() if p.requires_grad)
        total = sum(p.numel() for p in runs["frozen"][0].parameters())
        rows.append(
            [
                name,
                f"{args.batch_size}x{'x'.join(map(str, shape))}",
                f"{trainable:,}/{total:,}",
                f"{med['trainable'] * 1e3:.1f}",
                f"{med['lr=0'] * 1e3:.1f}",
                f"{med['frozen'] * 1e3:.1f}",
                f"{med['lr=0'] / med['trainable']:.2f}",
                f"{med['frozen'] / med['trainable']:.2f}",
            ]
        )
    columns = ["model", "input", "trainable (frozen)", "trainable ms", "lr=0 ms", "frozen ms", "lr=0/trainable",
               "frozen/trainable"]  # fmt: skip
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.steps} interleaved steps")
    print(format_table(columns, rows))
    write_result(
        "freezing", tables={"steps": {"columns": columns, "rows": rows}},
        ratios={f"{col}, {row[0]} {row[1]}": float(row[columns.index(col)]) for row in rows
                for col in ("frozen/trainable", "lr=0/trainable")},
        command=command_line(),
        notes=f"torch {torch.__version__}, {args.threads} threads, wall clock, median of {args.steps} interleaved "
              "steps; target frozen/trainable <= 0.7",
    )  # fmt: skip


if __name__ == "__main__":
    main()
