"""MC dropout vs the deterministic network: accuracy, NLL, ECE, Brier, uncertainty vs mistakes (seed 004, MC Dropout).

    python recipes/mc_dropout.py fit                                   # digits (8x8, scikit-learn), CPU, W&B offline
    python recipes/mc_dropout.py fit --trainer.devices=2 --trainer.strategy=ddp
    python recipes/mc_dropout.py fit --trainer.precision=bf16-mixed
    python recipes/mc_dropout.py fit --print_config > my.yaml && python recipes/mc_dropout.py fit --config my.yaml
    python -m lightning_bestpractices.sweep recipes/sweeps/mc_dropout.yaml   # 5 seeds, one comparison plot
    python recipes/mc_dropout.py fit --data=lightning_bestpractices.data.VisionDataModule --data.name=MNIST \
        --data.root=~/data --data.download=true                        # MNIST (or FashionMNIST): the download is yours

Trains the package's ``SmallCNN`` (conv + BatchNorm trunk, two Dropout layers in its MLP head) with the
``Classifier`` task, then scores the test set four ways: deterministically (dropout off, one pass) and with MC
dropout (``n_samples`` passes through the head only, BatchNorm in eval, probabilities averaged, via
``MCDropoutMixin`` and ``trainer.test``), each before and after temperature scaling fitted on the validation set
(for MC the mixin's ``calibrate=True``: every sample's logits divided by T before its softmax). ECE is reported
twice: the package's ``calibration_metrics`` and torchmetrics' ``CalibrationError`` module (15 bins, L1).

Metrics (``metrics.json`` in the run folder, and the console): ``det/*``, ``det_temp/*``, ``mc/*``, ``mc_temp/*``,
each with ``acc``, ``nll``, ``ece``, ``ece_torchmetrics``, ``brier``, ``temperature`` and ``auroc_entropy`` (how
well the predictive entropy flags the wrong predictions), plus ``auroc_mi`` (mutual information) for MC. The run
folder also holds ``results.csv`` (the four rows), ``reliability.png`` and ``mi_histogram.png``, and the mixin's
own ``test_mc_*.png``. The run's seed (``seed_everything``) sets the weights, the data split and order, and the
dropout masks. Every hyperparameter, with its reason, is in ``recipes/configs/mc_dropout.yaml``.
"""

import time
from pathlib import Path

import lightning as L
import torch
from torch import nn
from torchmetrics import CalibrationError

from lightning_bestpractices._logging import log_figure, log_table
from lightning_bestpractices.cli import BestPracticesCLI
from lightning_bestpractices.errors import ArgumentError
from lightning_bestpractices.optim import OptimConfig
from lightning_bestpractices.tasks import Classifier
from lightning_bestpractices.uncertainty import (
    MCDropoutMixin,
    MCOutput,
    calibration_metrics,
    find_stochastic_modules,
    fit_temperature,
    reliability_diagram,
    stochastic_rate,
    uncertainty_auroc,
    uncertainty_histogram,
)

#: the four ways the test set is scored, in table order: metric prefix -> row label
VARIANTS = {"det": "deterministic", "det_temp": "deterministic + temperature", "mc": "MC dropout",
            "mc_temp": "MC dropout + temperature"}  # fmt: skip


class MCClassifier(MCDropoutMixin, Classifier):
    """The ``Classifier`` task (training, deterministic validation) plus calibrated MC dropout on ``trainer.test``.

    Args:
        net: the network; it must contain a dropout layer with p > 0 (MC dropout samples its masks).
        num_classes: number of classes.
        optim: the task's optimizer and schedule (see :class:`~lightning_bestpractices.tasks.Classifier`).
        n_samples: MC passes per test input.
        mc_seed: seed of the dropout masks (the recipe links it to ``seed_everything``).
        n_bins: confidence bins of the ECE and the reliability diagram.
    """

    def __init__(self, net: nn.Module, num_classes: int = 10, optim: OptimConfig | dict | None = None,
                 n_samples: int = 30, mc_seed: int = 0, n_bins: int = 15) -> None:  # fmt: skip
        super().__init__(net, num_classes=num_classes, optim=optim)
        rates = [stochastic_rate(m) for _, m in find_stochastic_modules(net)]
        if not any(r is not None and float(r) > 0 for r in rates):
            raise ArgumentError(f"`net` needs a dropout layer with p > 0 for MC dropout, got drop rates {rates!r}")
        # test only: validation during fit stays the task's deterministic one; `calibrate` fits T before test
        self.configure_mc_dropout(n_samples, seed=mc_seed, stages=("test",), n_bins=n_bins, calibrate=True)


def split_tensors(dm: L.LightningDataModule, split: str, indices: torch.Tensor | None = None):
    """``(x, y)`` of a split (only ``indices``, in that order, if given) on the CPU."""
    if hasattr(dm, "splits"):  # in-memory data modules (digits)
        x, y = dm.splits[split]
        if indices is not None:
            x, y = x[indices.to(x.device)], y[indices.to(y.device)]
        return x.cpu(), y.cpu()
    ds = dm.datasets[split]  # torchvision data modules
    if indices is not None:
        ds = torch.utils.data.Subset(ds, indices.tolist())
    xs, ys = zip(*torch.utils.data.DataLoader(ds, batch_size=1000))
    return torch.cat(xs), torch.cat(ys)


@torch.no_grad()
def deterministic_logits(trainer: L.Trainer, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One eval-mode pass (dropout off) under the run's precision (``bf16-mixed``: the same autocast as test)."""
    model.eval()
    with trainer.precision_plugin.forward_context():
        return torch.cat([model(b.to(model.device)).float().cpu() for b in x.split(1000)])


def scores(output: MCOutput | torch.Tensor, targets: torch.Tensor, temperature: float, n_bins: int) -> dict:
    """acc / nll / ece (package and torchmetrics) / brier, the temperature, and AUROCs of uncertainty vs mistakes."""
    probs = output.mean_probs if isinstance(output, MCOutput) else output
    m = calibration_metrics(output, targets, n_bins)
    tm_ece = CalibrationError(task="multiclass", num_classes=probs.shape[1], n_bins=n_bins, norm="l1")
    out = {"acc": m["accuracy"], "nll": m["nll"], "ece": m["ece"], "ece_torchmetrics": float(tm_ece(probs, targets)),
           "brier": m["brier"], "temperature": float(temperature)}  # fmt: skip
    correct = probs.argmax(-1) == targets
    if 0 < int(correct.sum()) < len(correct):  # an AUROC needs both right and wrong predictions
        out["auroc_entropy"] = uncertainty_auroc(torch.special.entr(probs).sum(-1), correct)
        if isinstance(output, MCOutput):
            out["auroc_mi"] = uncertainty_auroc(output.mutual_information, correct)
    return out


class MCDropoutCLI(BestPracticesCLI):
    """After ``fit``: MC test without and with temperature, the deterministic net likewise, one table, two figures."""

    def add_arguments_to_parser(self, parser) -> None:
        super().add_arguments_to_parser(parser)
        # one run = one seed: the data split, the shuffling and the dropout masks follow seed_everything
        parser.link_arguments("seed_everything", "data.init_args.seed", compute_fn=seed_of)
        parser.link_arguments("seed_everything", "model.mc_seed", compute_fn=seed_of)

    def report(self) -> None:
        trainer, model, dm = self.trainer, self.model, self.datamodule
        n_bins = model.mc_n_bins
        # MC dropout with T = 1 (the mixin's figures only for the calibrated run below)
        model.mc_calibrate, model.mc_temperature, model.mc_log_figures = False, 1.0, False
        trainer.test(model, dm, verbose=False)
        raw = model.mc_results["test"]
        # MC dropout + temperature: the mixin fits T on the validation set (all ranks) before the test
        model.mc_calibrate, model.mc_log_figures = True, True
        start = time.perf_counter()
        trainer.test(model, dm, verbose=False)
        mc_seconds = time.perf_counter() - start
        cal = model.mc_results["test"]
        if not torch.equal(raw.indices, cal.indices):
            raise RuntimeError("the two MC test runs saw different test inputs")
        # the deterministic network on the same inputs (the whole test split, or what limit_test_batches left)
        x, y = split_tensors(dm, "test", cal.indices)
        if not torch.equal(y.long(), cal.targets.long()):
            raise RuntimeError("MC results are not in dataset order")
        xv, yv = split_tensors(dm, "val")
        det_logits = deterministic_logits(trainer, model, x)
        t_det = fit_temperature(deterministic_logits(trainer, model, xv), yv.long())
        y = y.long()
        outputs = {"det": (det_logits.softmax(-1), 1.0), "det_temp": ((det_logits / t_det).softmax(-1), t_det),
                   "mc": (raw.output, 1.0), "mc_temp": (cal.output, model.mc_temperature)}  # fmt: skip
        results = {key: scores(out, y, temp, n_bins) for key, (out, temp) in outputs.items()}
        metrics = {f"{key}/{name}": value for key, row in results.items() for name, value in row.items()}
        metrics["mc_temp/test_seconds"] = mc_seconds  # T fit on val + N passes over test, wall clock
        self.add_metrics(metrics)

        columns = ["model", "T", "acc", "NLL", "ECE", "torchmetrics ECE", "Brier", "AUROC entropy", "AUROC MI"]
        rows = [[VARIANTS[k], r["temperature"], r["acc"], r["nll"], r["ece"], r["ece_torchmetrics"], r["brier"],
                 r.get("auroc_entropy", "-"), r.get("auroc_mi", "-")] for k, r in results.items()]  # fmt: skip
        log_table(trainer, "results", columns, rows)
        n = model.mc_n_samples
        curves = {"deterministic + T": outputs["det_temp"][0], f"MC dropout N={n}": raw.output.mean_probs,
                  f"MC dropout N={n} + T": cal.output.mean_probs}  # fmt: skip
        log_figure(trainer, "reliability", reliability_diagram(curves, y, n_bins))
        correct = cal.output.predictions == y
        log_figure(trainer, "mi_histogram", uncertainty_histogram(cal.output.mutual_information, correct))


def seed_of(seed: int | bool) -> int:
    """The run's integer seed (``seed_everything: true`` draws one later; the data and masks then use 0)."""
    return 0 if isinstance(seed, bool) else int(seed)


def main(args=None) -> MCDropoutCLI:
    # subclass mode for the data: digits (in memory, the default) or torchvision's MNIST / FashionMNIST
    return MCDropoutCLI(MCClassifier, L.LightningDataModule, subclass_mode_data=True, args=args,
                        default_config=Path(__file__).parent / "configs" / "mc_dropout.yaml")  # fmt: skip


if __name__ == "__main__":
    main()
