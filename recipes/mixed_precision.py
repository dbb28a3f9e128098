"""Mixed precision: training step time in ``32-true`` vs ``bf16-mixed`` (seed 000: "2-3x speedup on modern GPUs").

    python recipes/mixed_precision.py fit                             # fp32 step time of an MLP, CPU, W&B offline
    python recipes/mixed_precision.py fit --trainer.precision=bf16-mixed
    python recipes/mixed_precision.py fit --trainer.devices=2 --trainer.strategy=ddp
    python recipes/mixed_precision.py fit --print_config > my.yaml && python recipes/mixed_precision.py fit --config my.yaml
    python -m lightning_bestpractices.sweep recipes/sweeps/mixed_precision.yaml   # 32-true vs bf16-mixed, one plot
    python recipes/mixed_precision.py fit --trainer.accelerator=gpu --model.net.init_args.hidden=[4096,4096,4096] \\
        --data.features=4096 --data.batch_size=1024                   # a GPU-sized model

The precision is the Trainer's own flag (``--trainer.precision``); nothing else changes between the two runs. The
model is an MLP classifier (matrix multiplies dominate, the work tensor cores speed up) on synthetic data that
lives on the device, so the loop times compute, not data loading. ``measure.StepTimer`` skips the first
``timer.warmup`` steps and reports, per optimizer step: ``ms_per_step_wall`` (wall clock over the timed steps),
``ms_per_step_cpu`` (the main thread's CPU time) and, on a GPU, ``ms_per_step_cuda`` (CUDA events) and
``peak_memory_mb``. The device's name goes into the ``step_time`` table (and the run's hardware record).

What to expect: on GPUs with bf16 tensor cores (A100, H100) bf16-mixed runs the matrix multiplies several times
faster than true fp32 (``--float32_matmul_precision=high`` lets fp32 use TF32 instead, which closes much of the
gap); on a CPU without native bf16 instructions, bf16 is emulated and slower. Publish only what was measured: the
results page shows this recipe's numbers with the hardware they came from.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lightning_bestpractices._logging import log_table
from lightning_bestpractices.cli import BestPracticesCLI
from lightning_bestpractices.data import InMemoryDataModule, Split
from lightning_bestpractices.errors import ArgumentError
from lightning_bestpractices.measure import StepTimer
from lightning_bestpractices.tasks import Classifier


class SyntheticDataModule(InMemoryDataModule):
    """Gaussian inputs labelled by a fixed random linear teacher (learnable, so the loss falls like a real task).

    Args:
        n_train / n_val: samples per split.
        features: input width.
        num_classes: classes of the teacher.
        batch_size: per process.
        seed: data seed.
    """

    def __init__(self, n_train: int = 8192, n_val: int = 1024, features: int = 512, num_classes: int = 10,
                 batch_size: int = 256, seed: int = 0) -> None:
        super().__init__(batch_size=batch_size, seed=seed)
        for name, value in (("n_train", n_train), ("n_val", n_val), ("features", features)):
            if value < 1:
                raise ArgumentError(f"`{name}` must be >= 1, got {value!r}")
        if num_classes < 2:
            raise ArgumentError(f"`num_classes` must be >= 2, got {num_classes!r}")
        self.n_train, self.n_val, self.features, self.num_classes = n_train, n_val, features, num_classes

    def build_splits(self) -> dict[str, Split | None]:
        g = torch.Generator().manual_seed(self.seed)
        teacher = torch.randn(self.features, self.num_classes, generator=g)
        x = torch.randn(self.n_train + self.n_val, self.features, generator=g)
        y = (x @ teacher).argmax(1)
        train, val = (x[: self.n_train], y[: self.n_train]), (x[self.n_train:], y[self.n_train:])
        return {"train": train, "val": val, "test": val, "predict": val}


class MixedPrecisionCLI(BestPracticesCLI):
    """``--timer.*`` configures the step timer; ``--float32_matmul_precision`` torch's fp32 matmul mode."""

    def add_arguments_to_parser(self, parser) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_lightning_class_args(StepTimer, "timer")
        parser.add_argument("--float32_matmul_precision", type=str, default="highest",
                            help="torch.set_float32_matmul_precision: highest (true fp32), high (TF32), medium")

    def before_instantiate_classes(self) -> None:
        super().before_instantiate_classes()
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        mode = config.get("float32_matmul_precision") or "highest"
        if mode not in ("highest", "high", "medium"):
            self.parser.error(f"`float32_matmul_precision` must be highest, high or medium, got {mode!r}")
        torch.set_float32_matmul_precision(mode)

    def report(self) -> None:
        trainer = self.trainer
        timer = next(c for c in trainer.callbacks if isinstance(c, StepTimer))
        metrics = dict(timer.metrics)
        metrics["torch_threads"] = float(torch.get_num_threads())
        self.add_metrics(metrics)
        if timer.metrics and not trainer.fast_dev_run:
            precision = str(trainer.precision)
            cols = ["precision", "device", "ms/step wall", "ms/step cpu", "ms/step cuda", "timed steps"]
            row = [precision, timer.device_name, round(metrics["ms_per_step_wall"], 3),
                   round(metrics["ms_per_step_cpu"], 3),
                   round(metrics["ms_per_step_cuda"], 3) if "ms_per_step_cuda" in metrics else "-",
                   int(metrics["timed_steps"])]
            log_table(trainer, "step_time", cols, [row])


def main(args=None) -> MixedPrecisionCLI:
    return MixedPrecisionCLI(Classifier, SyntheticDataModule, args=args,
                             default_config=Path(__file__).parent / "configs" / "mixed_precision.yaml")


if __name__ == "__main__":
    main()
