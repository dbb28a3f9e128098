"""The mixed-precision recipe in-process: the timer skips warmup and reports finite, positive step times."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.demos.boring_classes import BoringModel

from lightning_bestpractices.measure import StepTimer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import load_recipe  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
RECIPE = load_recipe("mixed_precision")
SMALL = ["--trainer.logger=false", "--trainer.enable_progress_bar=false", "--trainer.accelerator=cpu",
         "--model.net.init_args.hidden=[64]", "--model.net.init_args.in_features=32", "--data.features=32",
         "--data.n_train=512", "--data.batch_size=64", "--trainer.max_steps=9", "--timer.warmup=3"]


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_recipe_reports_finite_positive_step_times(precision, tmp_path):
    RECIPE.main(["fit", *SMALL, f"--trainer.precision={precision}", f"--run_dir={tmp_path}"])
    summary = json.loads((tmp_path / "metrics.json").read_text())
    m = summary["metrics"]
    assert m["timed_steps"] == 6 and m["warmup_steps"] == 3, "9 steps, the first 3 not timed"
    for key in ("ms_per_step_wall", "ms_per_step_cpu", "ms_per_step_wall_median"):
        assert math.isfinite(m[key]) and m[key] > 0, (key, m[key])
    assert "ms_per_step_cuda" not in m, "no CUDA number is published from a CPU run"
    table = (tmp_path / "step_time.csv").read_text().splitlines()
    assert table[1].startswith(precision + ",")


def test_timer_skips_warmup_steps():
    class Slow(BoringModel):  # the first steps are slow, like compilation or allocator warmup
        def training_step(self, batch, batch_idx):
            if self.global_step < 3:
                import time

                end = time.thread_time() + 0.05
                while time.thread_time() < end:  # burn CPU: thread time, not a sleep
                    pass
            return super().training_step(batch, batch_idx)

    timer = StepTimer(warmup=3)
    trainer = L.Trainer(max_steps=8, callbacks=[timer], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(Slow())
    assert timer.metrics["timed_steps"] == 5
    assert timer.metrics["ms_per_step_cpu"] < 50, "the three slow warmup steps are not in the average"
    assert len(timer._cpu) == 5


def test_timer_times_nothing_without_steps_past_warmup():
    timer = StepTimer(warmup=10)
    trainer = L.Trainer(max_steps=3, callbacks=[timer], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    with pytest.warns(UserWarning, match="nothing timed"):
        trainer.fit(BoringModel())
    assert timer.metrics == {}
    with pytest.raises(ValueError, match="`warmup` must be an int >= 0"):
        StepTimer(warmup=-1)
