"""The moons recipe launched as a user launches it: a subprocess with CLI flags, read back from W&B offline."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import yaml

from lightning_bestpractices.wandb_offline import find_offline_runs, read_offline_run

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import ROOT, run_python  # noqa: E402

RECIPE = ROOT / "recipes" / "moons.py"
QUIET = ["--trainer.enable_progress_bar=false"]

# Full-length runs: one process and DDP (rank parity, per-rank step counts). bf16-mixed with a short budget is in
# tests/recipes/test_matrix.py, like every recipe.
MODES = {
    "cpu": ["--trainer.accelerator=cpu"],
    "ddp": ["--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp"],
}


def _only_run(tmp_path: Path):
    runs = find_offline_runs(tmp_path / "runs")
    assert len(runs) == 1, f"exactly one W&B run expected (rank 0 only logs), found {runs}"
    return read_offline_run(runs[0], wait=120)


@pytest.mark.parametrize("mode", list(MODES))
def test_moons_recipe_matrix(mode, tmp_path):
    run_python([RECIPE, "fit", *MODES[mode], *QUIET], tmp_path, timeout=900)
    run = _only_run(tmp_path)

    # the accuracy target of the issue, in every mode
    assert run.summary["val/acc"] >= 0.95, run.summary["val/acc"]

    # metrics logged per epoch, the LR logged at every optimizer step
    world = 2 if mode == "ddp" else 1
    steps_per_epoch = math.ceil(math.ceil(800 / world) / 32)
    lrs = run.values("lr-AdamW/decay")
    assert len(lrs) == 100 * steps_per_epoch
    assert lrs[0] == pytest.approx(0.01) and lrs[-1] < 1e-4, "cosine from 0.01 towards 0 over the run"
    # the seed's AdamW weight decay on the Linear weights only: none on BatchNorm weights and biases
    assert set(run.values("lr-AdamW/decay-weight_decay")) == {0.01}
    assert set(run.values("lr-AdamW/no_decay-weight_decay")) == {0.0}
    assert run.values("lr-AdamW/no_decay") == lrs
    for key in ("train/loss", "train/acc", "val/loss", "val/acc"):
        assert len(run.values(key)) == 100, key

    # the full config is the run's config
    assert run.config["model"]["optim"]["lr"] == 0.01 and run.config["model"]["optim"]["weight_decay"] == 0.01
    assert run.config["model"]["net"]["init_args"]["hidden"] == [64, 32]
    assert run.config["data"]["n_train"] == 800
    if mode == "ddp":
        assert str(run.config["trainer"]["devices"]) == "2"  # Trainer types `devices` as int | str | list

    # decision boundary: a W&B image and a PNG in the run folder
    assert run.summary["decision_boundary"]["_type"] == "images/separated"
    assert (run.save_dir / "decision_boundary.png").stat().st_size > 10_000
    assert (run.save_dir / "config.yaml").is_file()

    # every rank ends with the same parameters (RankParity all-gathers every tensor at fit end)
    assert run.summary["parity/max_rank_diff"] == 0


def test_print_config_round_trip_reproduces_the_run(tmp_path):
    short = ["--trainer.max_epochs=4", *QUIET]
    printed = run_python([RECIPE, "fit", *short, "--print_config"], tmp_path).stdout
    config = yaml.safe_load(printed)
    assert config["model"]["optim"]["lr"] == 0.01 and config["trainer"]["max_epochs"] == 4
    (tmp_path / "printed.yaml").write_text(printed)

    run_python([RECIPE, "fit", *short], tmp_path / "a" if (tmp_path / "a").mkdir() is None else None)
    run_python([RECIPE, "fit", "--config", tmp_path / "printed.yaml"],
               tmp_path / "b" if (tmp_path / "b").mkdir() is None else None)
    a, b = (read_offline_run(find_offline_runs(tmp_path / d / "runs")[0], wait=120) for d in ("a", "b"))
    for key in ("val/loss", "val/acc", "train/loss", "lr-AdamW/decay"):
        assert a.values(key) == b.values(key), key
    assert len(a.values("val/loss")) == 4
