"""Every recipe, launched as a user launches it, on one CPU process, on DDP with 2 CPU processes, and in bf16-mixed.

Each run gets a small step budget through Trainer flags only (the recipes themselves are unchanged) and must
finish with finite metrics, one run folder (config, metrics.json, the W&B offline run, read back) and nothing else
in the working folder. The one-process run is launched from the recipe's own ``--print_config`` output, so the
printed config feeds back through ``--config``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import yaml

from lightning_bestpractices.wandb_offline import find_offline_runs, read_offline_run

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import ROOT, run_python  # noqa: E402

# A recipe is a script in recipes/ with a config of the same name: adding one adds it to the matrix.
RECIPES = sorted(p.stem for p in (ROOT / "recipes").glob("*.py") if (ROOT / "recipes" / "configs" / f"{p.stem}.yaml").is_file())
BUDGET = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=2",
          "--trainer.limit_test_batches=2", "--trainer.limit_predict_batches=2", "--trainer.accelerator=cpu",
          "--trainer.enable_progress_bar=false"]
MODES = {"cpu": [], "ddp": ["--trainer.devices=2", "--trainer.strategy=ddp"], "bf16": ["--trainer.precision=bf16-mixed"]}
# Budget flags some recipes need on top (their own after-fit loops, also set from the command line).
EXTRA: dict[str, list[str]] = {}


def test_every_recipe_is_in_the_matrix():
    scripts = {p.stem for p in (ROOT / "recipes").glob("*.py")}
    assert scripts == set(RECIPES), f"recipes without a config of the same name: {sorted(scripts - set(RECIPES))}"
    assert len(RECIPES) >= 3


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_runs(recipe, mode, tmp_path):
    script = ROOT / "recipes" / f"{recipe}.py"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    args = [script, "fit", *BUDGET, *EXTRA.get(recipe, []), *MODES[mode]]
    if mode == "cpu":  # the published config, printed as a user prints it, then fed back in
        printed = run_python([script, "fit", "--print_config"], tmp_path, timeout=300).stdout
        config = yaml.safe_load(printed)
        assert config["trainer"] and config["model"], "the printed config is the whole recipe"
        (tmp_path / "printed.yaml").write_text(printed)
        args = [script, "fit", f"--config={tmp_path / 'printed.yaml'}", *BUDGET, *EXTRA.get(recipe, [])]
    out = run_python(args, cwd, timeout=900).stdout

    folder = Path(next(line for line in out.splitlines() if line.startswith("run folder: ")).split(": ", 1)[1])
    assert folder.is_relative_to(cwd / "runs" / recipe), folder
    assert [p.name for p in cwd.iterdir()] == ["runs"], "nothing but the run folder in the working folder"
    assert (folder / "config.yaml").is_file()
    summary = json.loads((folder / "metrics.json").read_text())
    metrics = summary["metrics"]
    assert metrics, "a run reports metrics"
    bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
    assert not bad, f"non-finite metrics: {bad}"
    line = next(line for line in out.splitlines() if line.startswith("final metrics: "))
    assert "=" in line
    runs = find_offline_runs(folder)
    assert len(runs) == 1, runs
    run = read_offline_run(runs[0], wait=120)
    assert run.complete and run.exit_code == 0
    assert run.history, "metrics reached W&B"
    assert run.save_dir == folder, "the W&B data lives in the run folder"
    if mode == "bf16":
        assert run.config["trainer"]["precision"] == "bf16-mixed"
    if mode == "ddp":
        assert str(run.config["trainer"]["devices"]) == "2"
