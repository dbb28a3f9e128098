"""An MLP regressor on tabular data: standardized inputs, MSE loss, RMSE and R² via torchmetrics (seed 004).

    python recipes/regression.py fit                                   # diabetes (ships with scikit-learn), CPU, W&B offline
    python recipes/regression.py fit --trainer.devices=2 --trainer.strategy=ddp
    python recipes/regression.py fit --trainer.precision=bf16-mixed
    python recipes/regression.py fit --print_config > my.yaml && python recipes/regression.py fit --config my.yaml
    python -m lightning_bestpractices.sweep recipes/sweeps/regression.yaml   # 5 seeds, one comparison plot
    python recipes/regression.py fit --data.dataset=california         # the seed's data: downloads once (network)
    python recipes/regression.py fit --data.dataset=synthetic          # seeded Friedman-1 data, non-linear

The seed's network (two hidden layers of 50 and 40 ReLU units, one linear output) trained with the mean squared
error. The data module standardizes the inputs and the target with statistics of the training split only, and the
Regressor maps its outputs back, so ``val/rmse`` and ``test/rmse`` are in the target's units (diabetes: points of
the disease-progression score; California: $100,000). The input width follows the dataset
(``data.num_features`` is linked to ``model.net.init_args.in_features``).

After fit the recipe tests the final weights on the held-out test split and, as yardsticks, fits two baselines on
the same training split: the training mean (``*/rmse_constant``) and ordinary least squares (``*/rmse_linear``). An
MLP that does not beat least squares has learned nothing the straight line had not. ``pred_vs_true.png`` in the
run folder plots the test predictions against the truth. Every hyperparameter, with its reason, is in
``recipes/configs/regression.yaml``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lightning_bestpractices._logging import log_figure
from lightning_bestpractices.cli import BestPracticesCLI
from lightning_bestpractices.data import RegressionDataModule
from lightning_bestpractices.tasks import Regressor


def baseline_rmse(dm: RegressionDataModule) -> dict[str, float]:
    """RMSE, in original units, of the training mean and of least squares (with intercept) on val and test."""
    x, y = (t.detach().double().cpu() for t in dm.splits["train"])
    ones = lambda t: torch.cat([t, torch.ones(t.shape[0], 1, dtype=t.dtype)], 1)  # noqa: E731
    coef = torch.linalg.lstsq(ones(x), y).solution
    back = dm.target_standardization.inverse if dm.target_standardization is not None else (lambda t: t)
    out = {}
    for split in ("val", "test"):
        if dm.splits.get(split) is None:
            continue
        xs, ys = (t.detach().double().cpu() for t in dm.splits[split])
        truth = back(ys.float()).double()
        for name, pred in (("constant", y.mean().expand_as(ys)), ("linear", ones(xs) @ coef)):
            out[f"{split}/rmse_{name}"] = float((back(pred.float()).double() - truth).pow(2).mean().sqrt())
    return out


class RegressionCLI(BestPracticesCLI):
    """Links the input width to the data; after ``fit``: test metrics, two baselines, a predicted-vs-true plot."""

    def add_arguments_to_parser(self, parser) -> None:
        super().add_arguments_to_parser(parser)
        parser.link_arguments("data.num_features", "model.net.init_args.in_features", apply_on="instantiate")

    def report(self) -> None:
        trainer, model, dm = self.trainer, self.model, self.datamodule
        # what fit ended with, before trainer.test replaces the trainer's metrics
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("train/", "val/"))}
        metrics.update({k: float(v) for k, v in trainer.test(model, dm, verbose=False)[0].items()})
        metrics.update(baseline_rmse(dm))
        self.add_metrics(metrics)
        self._plot(metrics.get("test/rmse"))

    def _plot(self, rmse: float | None) -> None:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        dm, model = self.datamodule, self.model
        x, y = dm.splits["test"]
        was_training = model.training
        model.eval()
        with torch.no_grad():
            pred = model.to_original_units(model(x)).cpu().view(-1)
        model.train(was_training)
        truth = model.to_original_units(y.float()).cpu().view(-1)
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.scatter(truth, pred, s=12, alpha=0.7)
        lo, hi = float(min(truth.min(), pred.min())), float(max(truth.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], color="black", linewidth=1, label="perfect prediction")
        title = f"{dm.dataset}: test predictions" + (f" (RMSE {rmse:.3g})" if rmse is not None else "")
        ax.set(xlabel="true target", ylabel="predicted target", title=title)
        ax.legend(loc="upper left")
        log_figure(self.trainer, "pred_vs_true", fig)


def main(args=None) -> RegressionCLI:
    return RegressionCLI(Regressor, RegressionDataModule, args=args,
                         default_config=Path(__file__).parent / "configs" / "regression.yaml")


if __name__ == "__main__":
    main()
