"""The early-stopping recipe launched as a user launches it; W&B offline read back; accuracies recomputed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from lightning_bestpractices.data import DigitsDataModule
from lightning_bestpractices.models import MLP
from lightning_bestpractices.wandb_offline import find_offline_runs, read_offline_run

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import ROOT, run_python  # noqa: E402

RECIPE = ROOT / "recipes" / "early_stopping.py"
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.accelerator=cpu"]
# One process at full length, and DDP; bf16-mixed runs in tests/recipes/test_matrix.py like every recipe.
MODES = {
    "cpu": [],
    "ddp": ["--trainer.devices=2", "--trainer.strategy=ddp", "--trainer.max_epochs=12"],
}


def _test_acc(state_dict: dict) -> float:
    """Test accuracy of a checkpoint's weights on the recipe's test split, computed here without the recipe."""
    net = MLP(64, [256, 256], 10, dropout=0.0, norm="none")
    net.load_state_dict({k.removeprefix("net."): v.float() for k, v in state_dict.items() if k.startswith("net.")})
    data = DigitsDataModule(batch_size=32, train_limit=200, seed=0)
    x, y = data.build_splits()["test"]
    with torch.no_grad():
        return float((net(x).argmax(1) == y).float().mean())


@pytest.mark.parametrize("mode", list(MODES))
def test_recipe_reports_final_and_best(mode, tmp_path):
    out = run_python([RECIPE, "fit", *QUIET, *MODES[mode]], tmp_path, timeout=900).stdout
    assert "run folder: " in out and "best/test_acc=" in out and "final/test_acc=" in out
    runs = find_offline_runs(tmp_path / "runs")
    assert len(runs) == 1
    run = read_offline_run(runs[0], wait=120)
    s = run.summary
    assert 0 <= s["best/epoch"] < s["epochs_trained"]
    if mode == "cpu":  # the full budget: the run overfits and stops early
        assert s["stopped_epoch"] > s["best/epoch"] and s["epochs_trained"] < 150
    ckpts = {p.name.split("-")[0]: p for p in tmp_path.glob("runs/**/checkpoints/*.ckpt")}
    assert sorted(ckpts) == ["best", "final"]
    best = torch.load(ckpts["best"], weights_only=False)
    assert best["epoch"] == s["best/epoch"], "ModelCheckpoint's best epoch is the one EarlyStopping restored"
    assert s["best/test_acc"] == pytest.approx(_test_acc(best["state_dict"]), abs=1e-6)
    final = torch.load(ckpts["final"], weights_only=False)
    assert s["final/test_acc"] == pytest.approx(_test_acc(final["state_dict"]), abs=1e-6)
    (folder,) = (tmp_path / "runs" / "early_stopping").iterdir()  # the one run folder holds everything
    assert run.save_dir == folder
    assert (folder / "val_loss_curve.png").stat().st_size > 10_000
    assert (folder / "test_accuracy.csv").is_file() and (folder / "config.yaml").is_file()
    assert {"best/test_acc", "final/test_acc"} <= set(json.loads((folder / "metrics.json").read_text())["metrics"])
