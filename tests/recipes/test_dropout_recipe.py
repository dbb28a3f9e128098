"""The dropout recipe in-process: train and validation measured the same way (eval mode), the gap, its series."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
QUIET = ["--trainer.logger=false", "--trainer.enable_progress_bar=false", "--trainer.accelerator=cpu",
         "--trainer.enable_checkpointing=false"]


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import load_recipe  # noqa: E402


def _recipe():
    return load_recipe("dropout")


def _run(tmp_path: Path, *args: str):
    run = tmp_path / "run"
    cli = _recipe().main(["fit", *QUIET, f"--run_dir={run}", *args])
    return cli, json.loads((run / "metrics.json").read_text())


def test_moons_reports_eval_mode_accuracies_and_their_gap(tmp_path):
    recipe = _recipe()
    cli, s = _run(tmp_path, "--trainer.max_epochs=6", "--model.net.init_args.dropout=0.7")
    m = s["metrics"]
    assert m["dropout"] == 0.7
    assert m["gap"] == pytest.approx(m["train/acc_eval"] - m["val/acc_eval"], abs=1e-12)
    assert m["gap_loss"] == pytest.approx(m["val/loss_eval"] - m["train/loss_eval"], abs=1e-12)
    # the eval-mode validation accuracy is the one the Classifier's validation loop logged (same mode, same weights)
    assert m["val/acc"] == pytest.approx(float(cli.trainer.callback_metrics["val/acc"]), abs=1e-6)

    # recomputed here: the model in eval mode on the whole training split
    model, dm = cli.model, cli.datamodule
    x, y = dm.splits["train"]
    model.train()  # the measurement must switch dropout off by itself, and switch it back on
    acc, _ = recipe.eval_mode_scores(cli.trainer, model, "train")
    assert model.training
    model.eval()
    with torch.no_grad():
        expected = float(((model(x).view(-1) > 0).float() == y.view(-1)).float().mean())
    assert acc == pytest.approx(expected, abs=1e-9) == pytest.approx(m["train/acc_eval"], abs=1e-9)

    # why eval mode: with dropout 0.7 the train-mode accuracy of the last epoch is far below the eval-mode one
    assert m["train/acc"] < m["train/acc_eval"] - 0.02, (m["train/acc"], m["train/acc_eval"])
    series = s["series"]["gap"]
    assert series["x"] == list(map(float, range(6))) and series["y"][-1] == pytest.approx(m["gap"], abs=1e-9)
    assert len(s["series"]["gap_loss"]["y"]) == 6


def test_digits_config_trains_on_500_images_and_memorises_them_without_dropout(tmp_path):
    cli, s = _run(tmp_path, f"--config={ROOT / 'recipes' / 'configs' / 'dropout_digits.yaml'}",
                  "--trainer.max_epochs=25", "--model.net.init_args.dropout=0.0")
    assert cli.datamodule.splits["train"][0].shape[0] == 500
    m = s["metrics"]
    assert m["dropout"] == 0.0 and m["train/acc_eval"] == 1.0, "a 256-256 MLP memorises 500 digits"
    assert m["gap"] > 0 and m["gap_loss"] > 0
