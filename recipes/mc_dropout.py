"""MC dropout vs the deterministic network: accuracy, NLL, ECE, Brier, and whether uncertainty flags mistakes.

    python recipes/mc_dropout.py                                     # digits (8x8, scikit-learn), CPU, ~1 min
    python recipes/mc_dropout.py --devices 2 --strategy ddp --precision bf16-mixed
    python recipes/mc_dropout.py --dataset MNIST --data-dir ~/data --download   # download is yours (once)

Trains the package's ``SmallCNN`` (conv + BatchNorm trunk, two Dropout layers in its MLP head) with the
``Classifier`` task, then evaluates the test set deterministically (dropout off, one pass) and with MC dropout
(N passes through the head only, probabilities averaged, via ``MCDropoutMixin`` / ``trainer.test``), each
before and after temperature scaling fitted on the validation set (the mixin's ``calibrate=True`` for MC:
every sample's logits divided by T before its softmax). ECE is reported twice: the package's
``calibration_metrics`` and torchmetrics' ``CalibrationError`` module (15 bins, L1).
Prints one table, logs it and two figures (reliability diagram of both, MI histogram correct vs wrong) to W&B
(offline by default) and saves them with ``results.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from torchmetrics import CalibrationError

from lightning_bestpractices._logging import log_figure, log_table, run_dir
from lightning_bestpractices.data import DigitsDataModule, VisionDataModule
from lightning_bestpractices.models import SmallCNN
from lightning_bestpractices.tasks import Classifier
from lightning_bestpractices.uncertainty import (
    MCDropoutMixin,
    MCOutput,
    calibration_metrics,
    fit_temperature,
    mc_predict,
    reliability_diagram,
    uncertainty_auroc,
    uncertainty_histogram,
)


class MCClassifier(MCDropoutMixin, Classifier):
    """The Classifier task (training, deterministic validation) plus calibrated MC dropout on ``trainer.test``."""

    def __init__(self, net: torch.nn.Module, num_classes: int, lr: float, n_samples: int, seed: int) -> None:
        super().__init__(net, num_classes=num_classes, lr=lr)
        # calibrate: before test, fit a temperature on the validation set (per-sample logits, MC mixture NLL)
        self.configure_mc_dropout(n_samples, seed=seed, stages=("test",), calibrate=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", choices=["digits", "MNIST"], default="digits",
                   help="digits ship with scikit-learn; MNIST needs --data-dir (and --download once)")  # fmt: skip
    p.add_argument("--data-dir", default="data", help="torchvision root for MNIST")
    p.add_argument("--download", action="store_true", help="let torchvision download MNIST into --data-dir")
    p.add_argument("--epochs", type=int, default=30, help="digits: ~1100 training images, 30 epochs converge")
    p.add_argument("--batch-size", type=int, default=64, help="small data: many steps per epoch")
    p.add_argument("--lr", type=float, default=3e-3, help="AdamW; the task's cosine schedule anneals it")
    p.add_argument("--dropout", type=float, default=0.3, help="head dropout; MC dropout samples these masks")
    p.add_argument("--n-samples", type=int, default=30, help="MC passes (the issue's N=30)")
    p.add_argument("--seed", type=int, default=0, help="weights, data split/order and dropout masks")
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--strategy", default="auto")
    p.add_argument("--precision", default="32-true", help="e.g. bf16-mixed")
    p.add_argument("--out", default="runs/mc_dropout", help="results.json, PNGs and the W&B run go here")
    p.add_argument("--wandb-mode", choices=["offline", "online", "disabled"], default=None,
                   help="default: $WANDB_MODE, else offline")  # fmt: skip
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size", "n_samples", "devices"):
        if getattr(args, name) < 1:
            p.error(f"`--{name.replace('_', '-')}` must be >= 1, got {getattr(args, name)!r}")
    if not 0 < args.dropout < 1:
        p.error(f"`--dropout` must be in (0, 1) for MC dropout, got {args.dropout!r}")
    if not args.lr > 0:
        p.error(f"`--lr` must be > 0, got {args.lr!r}")
    return args


def make_data(args: argparse.Namespace) -> tuple[L.LightningDataModule, int]:
    if args.dataset == "digits":
        return DigitsDataModule(batch_size=args.batch_size, image=True, seed=args.seed), 10
    root = Path(args.data_dir).expanduser()
    if not args.download and not (root / "MNIST").exists():
        raise SystemExit(
            f"MNIST not found under {str(root)!r}: pass --download (needs network) or --data-dir"
        )
    return VisionDataModule("MNIST", root=str(root), download=args.download, batch_size=args.batch_size,
                            seed=args.seed), 10  # fmt: skip


def split_tensors(dm: L.LightningDataModule, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A whole split on the CPU, in dataset order (the order ``mc_results`` uses)."""
    if isinstance(dm, DigitsDataModule):
        x, y = dm.splits[split]
        return x.cpu(), y.cpu()
    loader = torch.utils.data.DataLoader(dm.datasets[split], batch_size=1000)
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.environ["WANDB_MODE"] = args.wandb_mode or os.environ.get("WANDB_MODE", "offline")
    L.seed_everything(args.seed, workers=True)
    dm, classes = make_data(args)
    net = SmallCNN(in_channels=1, num_classes=classes, dropout=args.dropout)
    model = MCClassifier(net, classes, args.lr, args.n_samples, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logger = WandbLogger(project="lightning-bestpractices", name="mc_dropout", save_dir=str(out))
    trainer = L.Trainer(max_epochs=args.epochs, accelerator="cpu", devices=args.devices, strategy=args.strategy,
                        precision=args.precision, logger=logger, default_root_dir=out,
                        enable_checkpointing=False, deterministic=True)  # fmt: skip
    t0 = time.perf_counter()
    trainer.fit(model, dm)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    trainer.test(
        model, dm
    )  # MC dropout: gathered over ranks, in dataset order, with figures + metrics logged
    mc_s = time.perf_counter() - t0
    if not trainer.is_global_zero:
        return {}

    mc = model.mc_results["test"]  # calibrated: T fitted on the validation set by the mixin before test
    x, y = split_tensors(dm, "test")
    assert torch.equal(mc.targets, y), "MC results are not in dataset order"
    xv, yv = split_tensors(dm, "val")
    model.eval()
    with torch.no_grad():
        det_logits = torch.cat([model(xb.to(model.device)).float().cpu() for xb in x.split(1000)])
        val_logits = torch.cat([model(xb.to(model.device)).float().cpu() for xb in xv.split(1000)])
    t_det = fit_temperature(val_logits, yv)  # deterministic temperature, same validation set
    mc_raw = mc_predict(model, x.to(model.device), args.n_samples, seed=args.seed,
                        indices=torch.arange(len(y), device=model.device))  # the same masks, T = 1  # fmt: skip
    mc_raw = type(mc_raw)(
        **{k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in vars(mc_raw).items()}
    )
    tm_ece = CalibrationError(task="multiclass", num_classes=classes, n_bins=15, norm="l1")
    rows, results = [], {}
    variants = [
        ("deterministic", 1.0, det_logits.softmax(-1)),
        ("deterministic + temperature", t_det, (det_logits / t_det).softmax(-1)),
        (f"MC dropout (N={args.n_samples})", 1.0, mc_raw),
        (f"MC dropout (N={args.n_samples}) + temperature", model.mc_temperature, mc.output),
    ]
    for name, temp, out_or_probs in variants:
        probs = out_or_probs.mean_probs if isinstance(out_or_probs, MCOutput) else out_or_probs
        ok = probs.argmax(-1) == y
        unc = {"entropy": torch.special.entr(probs).sum(-1)}
        if isinstance(out_or_probs, MCOutput):
            unc["MI"] = out_or_probs.mutual_information
        m = calibration_metrics(out_or_probs, y)
        m["torchmetrics_CalibrationError"] = float(tm_ece(probs, y))
        m["temperature"] = float(temp)
        m.update({f"auroc_{k}": uncertainty_auroc(v, ok) for k, v in unc.items()})
        results[name] = m
        rows.append([name, m["temperature"], m["accuracy"], m["nll"], m["ece"], m["torchmetrics_CalibrationError"],
                     m["brier"], m["auroc_entropy"], m.get("auroc_MI")])  # fmt: skip
    columns = [
        "model",
        "T",
        "accuracy",
        "NLL",
        "ECE (15 bins)",
        "torchmetrics CalibrationError",
        "Brier",
        "AUROC entropy",
        "AUROC MI (wrong vs right)",
    ]
    det_probs, mc_ok = variants[1][2], mc.output.predictions == y
    log_table(trainer, "mc_dropout/results", columns, rows)
    log_figure(trainer, "mc_dropout/reliability",
               reliability_diagram({"deterministic + T": det_probs, f"MC dropout N={args.n_samples}": mc_raw.mean_probs,
                                    f"MC dropout N={args.n_samples} + T": mc.output.mean_probs}, y))  # fmt: skip
    log_figure(trainer, "mc_dropout/mi_histogram", uncertainty_histogram(mc.output.mutual_information, mc_ok))
    results["meta"] = {"dataset": args.dataset, "test_size": len(y), "epochs": args.epochs, "fit_s": fit_s,
                       "mc_test_s": mc_s, "devices": args.devices, "precision": args.precision,
                       "run_dir": str(run_dir(trainer)), "torch": torch.__version__}  # fmt: skip
    (out / "results.json").write_text(json.dumps(results, indent=2))
    logger.experiment.finish()
    return results


if __name__ == "__main__":
    main()
