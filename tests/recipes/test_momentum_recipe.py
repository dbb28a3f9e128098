"""The momentum recipe in-process: momentum 0.9 reaches the loss threshold in far fewer steps than plain GD."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import load_recipe  # noqa: E402


def _recipe():
    return load_recipe("momentum")


RECIPE = _recipe()
QUIET = ["--trainer.logger=false", "--trainer.enable_progress_bar=false", "--trainer.accelerator=cpu"]


def _fit(tmp_path: Path, name: str, *args: str) -> dict:
    folder = tmp_path / name
    RECIPE.main(["fit", *QUIET, f"--run_dir={folder}", *args])
    return json.loads((folder / "metrics.json").read_text())


def test_momentum_reaches_the_threshold_in_fewer_steps_on_the_quadratic(tmp_path):
    small = ["--model.init_args.condition_number=100", "--threshold.threshold=1e-4"]  # a short version of the study
    gd = _fit(tmp_path, "gd", *small)
    mom = _fit(tmp_path, "momentum", *small, "--model.init_args.optim.optimizer=momentum")
    g, m = gd["metrics"], mom["metrics"]
    assert g["threshold_reached"] == m["threshold_reached"] == 1.0
    assert m["steps_to_threshold"] * 2.5 < g["steps_to_threshold"], (g, m)
    assert g["steps_run"] == g["steps_to_threshold"] + 1, "the run stops at the step that reached the threshold"
    # the theory reported beside it: 1 / (1 - beta), and the spectral-radius prediction of the step ratio
    assert g["theory/velocity_factor"] == 1.0 and m["theory/velocity_factor"] == pytest.approx(10.0)
    assert g["theory/speedup_vs_gd"] == 1.0 and m["theory/speedup_vs_gd"] > 3  # asymptotic: deep thresholds
    curve = mom["series"]["loss_curve"]
    assert curve["y"][-1] < -4 <= curve["y"][0] and curve["x"][0] == 0, "log10 of the loss, from step 0"


def test_heavy_ball_rate_matches_a_straight_loop():
    lr, beta, c = 1.0, 0.9, 0.001
    x_prev = x = 1.0
    for _ in range(3000):
        x, x_prev = x - lr * c * x + beta * (x - x_prev), x
    assert abs(x) ** (1 / 3000) == pytest.approx(RECIPE.heavy_ball_rate(lr, beta, c), rel=2e-3)


def test_bad_quadratic_arguments_are_rejected():
    with pytest.raises(ValueError, match="`condition_number` must be >= 1, got 0.5"):
        RECIPE.QuadraticBowl(condition_number=0.5)
    with pytest.raises(ValueError, match="`dim` must be an int >= 2"):
        RECIPE.QuadraticBowl(dim=1)
