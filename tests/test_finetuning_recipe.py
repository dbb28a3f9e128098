"""The transfer_digits recipe launched as a user launches it (subprocess + CLI flags), tiny settings."""

from __future__ import annotations

import csv

from conftest import ROOT, run_python

from lightning_bestpractices.wandb_offline import find_offline_runs, read_offline_run

RECIPE = ROOT / "recipes" / "transfer_digits.py"


def test_transfer_digits_recipe_runs_and_reports(tmp_path):
    out = tmp_path / "out"
    args = ["--seeds", "1", "--a-epochs", "1", "--b-epochs", "2", "--unfreeze-at", "1", "--out", str(out)]
    proc = run_python([RECIPE, *args], tmp_path, timeout=600)
    assert "frozen -> gradual unfreezing" in proc.stdout and "test acc mean" in proc.stdout

    with (out / "results.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["seed"] for r in rows] == ["0"]
    keys = ["model A (8 classes)", "scratch", "head only", "frozen -> gradual unfreezing"]
    assert list(rows[0])[1:] == keys
    # model A learned something (8 classes: chance is 0.125); every task-B model beats chance (2 classes: 0.5)
    # by a wide margin (measured: 0.94 scratch, 0.82 head only, 0.84 gradual at these settings)
    assert float(rows[0]["model A (8 classes)"]) > 0.3
    assert all(float(rows[0][k]) > 0.7 for k in keys[1:]), rows
    assert (out / "transfer_digits.png").stat().st_size > 0
    assert "std" in (out / "summary.txt").read_text()

    [path] = find_offline_runs(out)
    run = read_offline_run(path, wait=120)
    assert run.config["seeds"] == "1"
    assert run.summary["transfer/summary"]["_type"] == "table-file"
    assert run.summary["transfer/accuracy"]["_type"] == "image-file"


def _recipe():
    import importlib.util

    spec = importlib.util.spec_from_file_location("transfer_digits", RECIPE)
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    return recipe


def test_transfer_digits_recipe_torchvision_backbone_with_user_weights(tmp_path):
    """The resnet18 path with a user-supplied state-dict file (no download): model A is the loaded network."""
    import torch
    import torchvision

    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    argv = ["--backbone", "resnet18", "--weights", str(weights), "--seeds", "1", "--b-epochs", "2",
            "--unfreeze-at", "1", "--wandb-mode", "disabled", "--out", str(tmp_path / "out")]  # fmt: skip
    [result] = _recipe().main(argv)
    assert list(result) == ["scratch", "head only", "frozen -> gradual unfreezing"]  # no model A training
    # The "pretrained" backbone here has random weights, so the frozen variants land anywhere between chance and
    # 0.8 (seen: 0.5 to 0.8); the resnet18 trained from scratch learns the 2-class task (0.96 measured)
    assert result["scratch"] > 0.8, result


def test_transfer_digits_recipe_bad_input(capsys):
    import pytest

    recipe = _recipe()
    for argv, message in [
        (["--held-out", "3", "3"], "--held-out must be two different classes, got [3, 3]"),
        (["--unfreeze-at", "4", "25"], "--unfreeze-at epochs must be < --b-epochs=20, got [4, 25]"),
        (["--weights", "w.pth"], "--weights applies to --backbone resnet18, got --backbone mlp"),
        (["--seeds", "0"], "--seeds/--a-epochs/--threads >= 1"),
    ]:
        with pytest.raises(SystemExit) as err:
            recipe.parse_args(argv)
        assert err.value.code == 2 and message in capsys.readouterr().err, argv
