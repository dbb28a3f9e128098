"""The sweep runner: settings from variants x grid x seeds, real recipe runs read back, one comparison plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT

from lightning_bestpractices.errors import ArgumentError
from lightning_bestpractices.sweep import Sweep, load_sweep, main, summarize

FAST = ["--trainer.max_epochs=2", "--trainer.limit_train_batches=3", "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
        "--trainer.enable_progress_bar=false", "--trainer.accelerator=cpu"]


def test_settings_are_the_product_of_variants_grid_and_seeds():
    s = Sweep(name="t", recipe=Path("r.py"), metric="m", variants={"a": ["--x=1"], "b": ["--x=2"]},
              grid={"data.batch_size": [8, 16], "model.flag": [True]}, seeds=[0, 1, 2])
    runs = s.runs()
    assert len(runs) == 2 * 2 * 1 * 3
    assert runs[0].label == "a,batch_size=8,flag=true/seed0"
    assert runs[-1].overrides == ["--x=2", "--data.batch_size=16", "--model.flag=true", "--seed_everything=2"]
    assert len({r.label for r in runs}) == len(runs), "every run has its own folder"


@pytest.mark.parametrize("bad,message", [
    ({"mode": "best"}, "`mode` must be 'max' or 'min', got 'best'"),
    ({"grid": {"lr": []}}, "grid key 'lr' must list at least one value"),
    ({"variants": {"a": "--x=1"}}, "variant 'a' must be a list of CLI overrides"),
    ({"seeds": [0, "1"]}, "`seeds` must be a list of ints"),
])
def test_bad_sweeps_are_refused(bad, message):
    with pytest.raises(ArgumentError, match=message.replace("[", r"\[").replace("(", r"\(")):
        Sweep(name="t", recipe=Path("r.py"), metric="m", **bad)


def test_sweep_files_name_their_errors(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("recipe: recipes/moons.py\nmetric: val/acc\ntypo: 1\n")
    with pytest.raises(ArgumentError, match=r"unknown sweep keys \['typo'\]"):
        load_sweep(f)
    f.write_text("recipe: recipes/nope.py\nmetric: val/acc\n")
    with pytest.raises(ArgumentError, match="`recipe` not found"):
        load_sweep(f)


def test_every_shipped_sweep_file_loads():
    files = sorted((ROOT / "recipes" / "sweeps").glob("*.yaml"))
    assert files
    for f in files:
        sweep = load_sweep(f)
        assert sweep.recipe.is_relative_to(ROOT / "recipes"), f
        assert sweep.runs(), f


def test_summary_ignores_failed_and_non_finite_runs():
    runs = [{"setting": "a", "rc": 0, "metrics": {"m": 1.0}}, {"setting": "a", "rc": 0, "metrics": {"m": float("nan")}},
            {"setting": "a", "rc": 1, "metrics": {"m": 100.0}}]
    (row,) = summarize({"runs": runs})
    assert row["metrics"]["m"] == {"mean": 1.0, "std": 0.0, "min": 1.0, "max": 1.0, "n": 1}
    assert row["failed"] == 1 and row["runs"] == 3


def test_a_real_sweep_runs_each_setting_and_seed_and_plots(tmp_path, capsys):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(f"recipe: {ROOT / 'recipes' / 'moons.py'}\nmetric: val/acc\nseries: val/loss\n"
                    f"args: {json.dumps(FAST)}\ngrid:\n  data.batch_size: [16, 64]\nseeds: [3]\n")
    result = main([str(spec), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert "batch_size=16" in out and "sweep folder:" in out
    assert [r["rc"] for r in result["runs"]] == [0, 0]
    for run in result["runs"]:  # each run wrote its own folder, with the seed and the override applied
        saved = json.loads((Path(run["run_dir"]) / "metrics.json").read_text())
        assert saved["metrics"] == run["metrics"] and "--seed_everything=3" in saved["argv"]
        config = (Path(run["run_dir"]) / "config.yaml").read_text()
        assert f"batch_size: {run['setting'].split('=')[1]}" in config and "seed_everything: 3" in config
    # 800 points: 50 steps per epoch at batch 16, 13 at 64, limited to 3 -> both ran 2 epochs of 3 steps
    assert [r["history"][-1]["step"] for r in result["runs"]] == [6.0, 6.0]
    stored = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert [s["setting"] for s in stored["summary"]] == ["batch_size=16", "batch_size=64"]
    assert (tmp_path / "out" / "comparison.png").stat().st_size > 10_000
    assert (tmp_path / "out" / "sweep.csv").read_text().count("\n") == 3


def test_a_failing_run_is_reported_and_the_sweep_exits_non_zero(tmp_path, capsys):
    spec = tmp_path / "bad.yaml"
    spec.write_text(f"recipe: {ROOT / 'recipes' / 'moons.py'}\nmetric: val/acc\nargs: {json.dumps(FAST)}\n"
                    "variants:\n  ok: []\n  broken: ['--model.optim.lr=-1']\n")
    with pytest.raises(SystemExit) as exc:
        main([str(spec), "--out", str(tmp_path / "out")])
    assert exc.value.code == 1
    result = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert [r["rc"] for r in result["runs"]] == [0, 2], "the bad setting is a CLI error (exit 2), the other ran"
    log = (tmp_path / "out" / "logs" / "broken.log").read_text()
    assert "lr" in log and "-1" in log
