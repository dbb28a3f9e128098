"""The batch-size recipe in-process: 32 x 4 accumulated batches end on the weights of batch 128, 32 alone does not."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
QUIET = ["--trainer.logger=false", "--trainer.enable_progress_bar=false", "--trainer.accelerator=cpu",
         "--trainer.enable_checkpointing=false", "--trainer.max_epochs=2"]


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import load_recipe  # noqa: E402


def _recipe():
    return load_recipe("batch_size")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three runs with the same seed and the same data order: batch 128, batch 32 x 4, batch 32."""
    recipe, out = _recipe(), tmp_path_factory.mktemp("batch_size")
    settings = {"b128": ["--data.batch_size=128"],
                "b32x4": ["--data.batch_size=32", "--trainer.accumulate_grad_batches=4"],
                "b32": ["--data.batch_size=32"]}
    metrics = {}
    for name, args in settings.items():
        recipe.main(["fit", *QUIET, *args, f"--run_dir={out / name}"])
        metrics[name] = json.loads((out / name / "metrics.json").read_text())
    return recipe, out, metrics


def test_accumulated_batches_end_on_the_large_batch_weights(runs):
    recipe, out, metrics = runs
    same = recipe.max_weight_difference(out / "b128", out / "b32x4")
    different = recipe.max_weight_difference(out / "b128", out / "b32")
    # float rounding only (four partial sums of 32 rows instead of one of 128); the check can fail: without the
    # accumulation the same seed and data order give weights that differ by orders of magnitude more
    assert same < 1e-5, same
    assert different > 1e-2, different
    # the run with accumulation checks itself against in-process references: the same numbers as the separate runs
    m = metrics["b32x4"]["metrics"]
    assert m["accum/max_weight_diff"] == pytest.approx(same, abs=1e-9)
    assert m["accum/max_weight_diff_unaccumulated"] == pytest.approx(different, abs=1e-9)
    assert "accum/max_weight_diff" not in metrics["b128"]["metrics"], "no accumulation, nothing to check"
    w = torch.load(out / "b128" / recipe.WEIGHTS_FILE, weights_only=True)
    assert sorted(w) == [f"net.net.{i}.{p}" for i in (0, 2, 4) for p in ("bias", "weight")]  # 3 Linear layers
    assert all(t.dtype == torch.float32 for t in w.values())


def test_steps_batches_and_times_are_reported(runs):
    _, _, metrics = runs
    m = {name: s["metrics"] for name, s in metrics.items()}
    # 1024 training images: 8 steps per epoch at 128 (also when 4 x 32 are accumulated), 32 at batch 32
    assert [m[k]["optimizer_steps"] for k in ("b128", "b32x4", "b32")] == [16, 16, 64]
    assert [m[k]["effective_batch"] for k in ("b128", "b32x4", "b32")] == [128, 128, 32]
    assert m["b32x4"]["accumulate_grad_batches"] == 4 and m["b32x4"]["steps_per_epoch"] == 8
    assert m["b128"]["weights/l2"] == pytest.approx(m["b32x4"]["weights/l2"], rel=1e-6)
    for name, s in metrics.items():
        assert 0 < s["metrics"]["time/epoch_cpu_s"] and 0 < s["metrics"]["time/epoch_wall_s"], name
        assert len(s["series"]["epoch_wall_s"]["y"]) == 2 and 0 <= s["metrics"]["val/acc"] <= 1


def test_the_in_run_check_follows_a_batch_limit(tmp_path):
    """``limit_train_batches`` counts batches of the run's size: the references must see the same samples."""
    recipe = _recipe()
    recipe.main(["fit", *QUIET, "--data.batch_size=16", "--trainer.accumulate_grad_batches=4",
                 "--trainer.limit_train_batches=8", f"--run_dir={tmp_path}"])
    m = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert m["optimizer_steps"] == 4  # 2 epochs x 8 batches / 4
    assert m["accum/max_weight_diff"] < 1e-5 < 1e-2 < m["accum/max_weight_diff_unaccumulated"]
