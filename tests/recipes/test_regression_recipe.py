"""The regression recipe in-process: metrics in original units, baselines against sklearn, the linked input width."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_squared_error

from lightning_bestpractices.data import RegressionDataModule

ROOT = Path(__file__).resolve().parents[2]
QUIET = ["--trainer.logger=false", "--trainer.enable_progress_bar=false", "--trainer.accelerator=cpu"]


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import load_recipe  # noqa: E402


def _recipe():
    return load_recipe("regression")


def _run(tmp_path: Path, *args: str) -> dict:
    run = tmp_path / "run"
    cli = _recipe().main(["fit", *QUIET, f"--run_dir={run}", *args])
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["metrics"] == pytest.approx({**summary["metrics"], **cli.final_metrics})
    return summary


def test_diabetes_run_reports_test_metrics_in_original_units_and_beats_the_mean(tmp_path):
    s = _run(tmp_path, "--trainer.max_epochs=20")
    m = s["metrics"]
    for key in ("train/loss", "val/loss", "val/rmse", "val/r2", "test/mse", "test/rmse", "test/r2",
                "val/rmse_constant", "val/rmse_linear", "test/rmse_constant", "test/rmse_linear"):
        assert key in m, key
    assert m["test/rmse"] == pytest.approx(m["test/mse"] ** 0.5, rel=1e-4)
    assert m["test/rmse"] > 20, "diabetes RMSE is in score points (spread ~77), not in standardized units"
    assert m["test/rmse"] < m["test/rmse_constant"], "the MLP must beat predicting the training mean"
    assert len([row for row in s["history"] if "val/rmse" in row]) == 20
    assert (tmp_path / "run" / "pred_vs_true.png").stat().st_size > 5_000


def test_baselines_match_sklearn_on_unscaled_data():
    """The least-squares yardstick, recomputed by sklearn on the raw (unstandardized) split: standardization does not
    change a linear fit with intercept, so the two must agree."""
    dm = RegressionDataModule("diabetes", seed=0)
    dm.setup("fit")
    got = _recipe().baseline_rmse(dm)
    raw = {k: (dm.feature_standardization.inverse(dm.splits[k][0]).numpy(),
               dm.target_standardization.inverse(dm.splits[k][1]).view(-1).numpy()) for k in ("train", "val", "test")}
    lin = LinearRegression().fit(*raw["train"])
    for split in ("val", "test"):
        x, y = raw[split]
        assert got[f"{split}/rmse_linear"] == pytest.approx(mean_squared_error(y, lin.predict(x)) ** 0.5, rel=1e-4)
        const = torch.full_like(torch.as_tensor(y), float(raw["train"][1].mean())).numpy()
        assert got[f"{split}/rmse_constant"] == pytest.approx(mean_squared_error(y, const) ** 0.5, rel=1e-4)


def test_input_width_follows_the_dataset_and_the_mlp_beats_least_squares_on_friedman(tmp_path):
    s = _run(tmp_path, "--data.dataset=synthetic", "--data.n_features=7", "--data.n_samples=1000",
             "--data.noise=0.5", "--trainer.max_epochs=40", "--model.optim.lr=0.01", "--model.optim.weight_decay=0.01")
    m = s["metrics"]
    # make_friedman1 is non-linear in 5 of its inputs: a straight line cannot fit it, the MLP can
    assert m["test/rmse"] < 0.8 * m["test/rmse_linear"], (m["test/rmse"], m["test/rmse_linear"])
