"""The optimizer/schedule recipes, launched the way a user launches them (tiny settings)."""

from __future__ import annotations

import csv

import pytest
from conftest import ROOT, run_python

from lightning_bestpractices.wandb_offline import find_offline_runs, read_offline_run

RECIPES = ROOT / "recipes"


def test_schedule_gallery_and_optimizer_comparison(tmp_path):
    proc = run_python(
        [RECIPES / "schedule_gallery.py", "--out", tmp_path, "--batches", "7", "--epochs", "4"], tmp_path
    )
    assert (tmp_path / "schedule_gallery.png").stat().st_size > 10_000
    assert "cosine (to 1e-3)                       first 0.1  last 0.001" in proc.stdout
    run_python([RECIPES / "optimizers.py", "--datasets", "moons", "--optimizers", "lamb", "--epochs", "1",
                "--out", tmp_path], tmp_path)  # fmt: skip
    rows = list(csv.reader((tmp_path / "optimizers.csv").open()))
    assert rows[0][:3] == ["data", "optimizer", "lr"] and [r[1] for r in rows[1:]] == ["lamb"]
    assert 0.6 < float(rows[1][3]) <= 1.0  # one epoch already beats chance on moons
    assert (tmp_path / "optimizers.png").exists()


def test_schedules_recipe_yaml_run_ends_on_final_lr_with_accumulation(tmp_path):
    run_python([RECIPES / "schedules.py", "fit", "--trainer.max_epochs=2", "--trainer.accumulate_grad_batches=3",
                "--trainer.enable_progress_bar=false"], tmp_path,
               WANDB_SERVICE="")  # own W&B service: not the one an in-process test of this session started  # fmt: skip
    found = find_offline_runs(tmp_path)
    assert found, f"no offline W&B run under {tmp_path}"
    run = read_offline_run(found[0], wait=120)  # waits for the run's exit record: every row is in the log
    rows = [r for r in run.history if "lr-SGD/decay" in r]
    assert run.config["model"]["optim"]["schedule"]["warmup"] == "5%"  # the YAML's config is the run's config
    # digits: 1078 training images / 64 = 17 batches per epoch (the monitor logs each), 3 per optimizer step ->
    # 6 optimizer steps per epoch, 12 in total; the last batch's LR is the LR of the last optimizer step
    assert len(rows) == 34 and len({r["trainer/global_step"] for r in rows}) == 12
    assert rows[-1]["lr-SGD/decay"] == pytest.approx(1e-5, rel=1e-6)
    assert rows[0]["lr-SGD/decay-momentum"] == 0.9 and rows[0]["lr-SGD/no_decay-weight_decay"] == 0
