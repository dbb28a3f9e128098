"""The optimizer recipe in-process with tiny budgets: each sweep variant trains the rule it names at its LR,
constant, and a run reports final and best validation accuracy with the per-epoch curves."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import ROOT, load_recipe  # noqa: E402

RECIPE = ROOT / "recipes" / "optimizers.py"
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.accelerator=cpu", "--trainer.logger=false",
         "--trainer.enable_checkpointing=false"]  # fmt: skip
TORCH_CLASS = {"sgd": "SGD", "momentum": "SGD", "nesterov": "SGD", "rmsprop": "RMSprop", "adam": "Adam",
               "adamw": "AdamW", "lamb": "Lamb"}  # fmt: skip



@pytest.fixture(autouse=True)
def _own_argv(monkeypatch):
    """The recipe parses ``args``; pytest's own command line is not the recipe's (LightningCLI warns about both)."""
    monkeypatch.setattr(sys, "argv", [str(RECIPE)])

def _recipe():
    return load_recipe("optimizers")


def _metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


@pytest.mark.parametrize("sweep", ["optimizers", "optimizers_moons"])
def test_every_sweep_variant_trains_its_rule_at_a_constant_lr(sweep, tmp_path):
    spec = yaml.safe_load((ROOT / "recipes" / "sweeps" / f"{sweep}.yaml").read_text())
    assert spec["recipe"] == "recipes/optimizers.py" and set(spec["variants"]) == set(TORCH_CLASS)
    main = _recipe().main
    for name, overrides in spec["variants"].items():
        cli = main(args=["fit", *QUIET, *spec.get("args", []), *overrides, "--trainer.max_epochs=1",
                         "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
                         f"--run_dir={tmp_path / name}"])  # fmt: skip
        opt = cli.trainer.optimizers[0]
        wanted = {o.split("=", 1)[0].rsplit(".", 1)[1]: o.split("=", 1)[1] for o in overrides}
        assert type(opt).__name__ == TORCH_CLASS[name], name
        assert not cli.trainer.lr_scheduler_configs, "constant LR: no scheduler"
        decay = next(g for g in opt.param_groups if g["name"] == "decay")
        assert decay["lr"] == float(wanted["lr"]) and decay["weight_decay"] == float(wanted["weight_decay"])
        if name in ("momentum", "nesterov"):
            assert decay["momentum"] == 0.9 and decay["nesterov"] == (name == "nesterov")
        assert cli.datamodule.__class__.__name__ == ("MoonsDataModule" if "moons" in sweep else "DigitsDataModule")


def test_the_moons_sweep_runs_the_moons_config(capsys):
    """The moons sweep spells the moons config out as flags (its runs start in the sweep folder): no drift."""
    main = _recipe().main
    spec = yaml.safe_load((ROOT / "recipes" / "sweeps" / "optimizers_moons.yaml").read_text())
    printed = []
    for args in (spec["args"], [f"--config={ROOT / 'recipes' / 'configs' / 'optimizers_moons.yaml'}"]):
        with pytest.raises(SystemExit):
            main(args=["fit", *args, "--print_config"])
        printed.append(yaml.safe_load(capsys.readouterr().out))
    assert printed[0] == printed[1] and printed[0]["data"]["class_path"].endswith("MoonsDataModule")


def test_a_run_reports_final_and_best_accuracy_and_the_curves(tmp_path):
    cli = _recipe().main(args=["fit", *QUIET, f"--config={ROOT / 'recipes' / 'configs' / 'optimizers_moons.yaml'}",
                               "--model.optim.optimizer=lamb", "--model.optim.lr=0.01", "--trainer.max_epochs=2",
                               f"--run_dir={tmp_path / 'run'}"])  # fmt: skip
    assert cli.model.task == "binary"
    out = _metrics(tmp_path / "run")
    m, s = out["metrics"], out["series"]
    assert s["val/acc"]["x"] == [1, 2] and s["val/loss"]["x"] == [1, 2]
    assert s["val/acc"]["y"][-1] == pytest.approx(m["val/acc"]) and s["val/loss"]["y"][-1] == pytest.approx(m["val/loss"])
    assert m["val/best_acc"] == pytest.approx(max(s["val/acc"]["y"])) and m["val/best_acc"] >= m["val/acc"]
    assert 0.6 < m["val/acc"] <= 1.0  # two epochs of LAMB already beat chance on moons by far
