"""The schedule recipe in-process with tiny budgets: the LR of every optimizer step ends on ``final_lr`` under
gradient accumulation, and the LR range test config trains at the LR it finds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import ROOT, load_recipe  # noqa: E402

RECIPE = ROOT / "recipes" / "schedules.py"
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.accelerator=cpu", "--trainer.enable_checkpointing=false"]



@pytest.fixture(autouse=True)
def _own_argv(monkeypatch):
    """The recipe parses ``args``; pytest's own command line is not the recipe's (LightningCLI warns about both)."""
    monkeypatch.setattr(sys, "argv", [str(RECIPE)])

def _recipe():
    return load_recipe("schedules")


def _fit(tmp_path: Path, *args: str):
    """Run the recipe in this process; LRMonitor needs a logger, so a CSVLogger under ``tmp_path``."""
    cli = _recipe().main(args=["fit", *QUIET, "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
                               f"--trainer.logger.init_args.save_dir={tmp_path / 'logs'}",
                               f"--run_dir={tmp_path / 'run'}", *args])  # fmt: skip
    found = list(tmp_path.glob("**/metrics.json"))
    assert len(found) == 1, found
    return cli, json.loads(found[0].read_text()), found[0].parent


def test_last_optimizer_step_is_on_final_lr_under_accumulation(tmp_path):
    # 7 batches per epoch, 3 per optimizer step -> 3 steps per epoch (the last one on a partial window), 6 in all
    cli, out, folder = _fit(tmp_path, "--trainer.max_epochs=2", "--trainer.limit_train_batches=7",
                            "--trainer.limit_val_batches=2", "--trainer.accumulate_grad_batches=3")  # fmt: skip
    assert cli.trainer.global_step == 6
    lr = out["series"]["lr"]
    assert lr["x"] == [0, 1, 2, 3, 4, 5] and lr["xlabel"] == "optimizer step" and lr["ylabel"] == "lr"
    assert lr["y"][-1] == pytest.approx(1e-5, rel=1e-6)  # the config's final_lr, on the very last optimizer step
    assert max(lr["y"]) == pytest.approx(0.05) and lr["y"] == sorted(lr["y"], reverse=True)  # cosine from the peak
    assert out["metrics"]["optimizer_steps"] == 6 and out["metrics"]["lr/last"] == pytest.approx(1e-5, rel=1e-6)
    # the monitor read the LR at every one of the 14 batches; the series keeps one value per optimizer step
    monitor = next(cb for cb in cli.trainer.callbacks if type(cb).__name__ == "LRMonitor")
    assert len(monitor.lrs["lr-SGD/decay"]) == 14 and monitor.lrs["lr-SGD/no_decay"] == monitor.lrs["lr-SGD/decay"]
    assert (folder / "lr_schedule.png").stat().st_size > 10_000
    assert 0 < out["metrics"]["val/best_acc"] <= 1


def test_lr_find_config_trains_at_the_suggested_lr(tmp_path):
    config = yaml.safe_load((ROOT / "recipes" / "configs" / "schedules_lr_find.yaml").read_text())
    finder = config["trainer"]["callbacks"][1]
    assert finder["class_path"].endswith("LRFinder")
    finder["init_args"]["num_steps"] = 20  # the shipped config, with a short sweep
    short = tmp_path / "lr_find.yaml"
    short.write_text(yaml.safe_dump(config))
    cli, out, folder = _fit(tmp_path, f"--config={short}", "--trainer.max_epochs=1",
                            "--trainer.limit_train_batches=4", "--trainer.limit_val_batches=1")  # fmt: skip
    found = out["metrics"]["lr_find/lr"]
    assert 1e-4 < found < 3.0 and found != 0.05
    assert found == pytest.approx(out["metrics"]["lr_find/minimum_10"])  # the config's rule is the one applied
    assert {"lr_find/steepest", "lr_find/valley"} <= set(out["metrics"])
    assert cli.model.optim.lr == pytest.approx(found)
    assert out["metrics"]["lr/peak"] == pytest.approx(found)  # the schedule's peak is the range test's LR
    assert (folder / "lr_find.png").is_file()


def test_the_lr_find_sweep_runs_the_lr_find_config(capsys):
    """The sweep spells the config out as one flag (its runs start in the sweep folder): no drift between them."""
    main = _recipe().main
    spec = yaml.safe_load((ROOT / "recipes" / "sweeps" / "lr_find.yaml").read_text())
    assert spec["recipe"] == "recipes/schedules.py"
    printed = []
    for args in (spec["args"], [f"--config={ROOT / 'recipes' / 'configs' / 'schedules_lr_find.yaml'}"]):
        with pytest.raises(SystemExit):
            main(args=["fit", *args, "--print_config"])
        printed.append(yaml.safe_load(capsys.readouterr().out))
    assert printed[0] == printed[1]
    assert [c["class_path"].rsplit(".", 1)[1] for c in printed[0]["trainer"]["callbacks"]] == ["LRMonitor", "LRFinder"]
