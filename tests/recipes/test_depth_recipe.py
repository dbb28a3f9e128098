"""The depth-diagnostics recipe in-process with a small network: the probe shows the signal vanishing for a small
normal init and keeping its scale with Kaiming, and training agrees."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import ROOT, load_recipe  # noqa: E402

RECIPE = ROOT / "recipes" / "depth_diagnostics.py"
DEPTH, WIDTH = 12, 32  # 11 hidden layers + output: deep enough for N(0, 0.01) to vanish, quick to train
SMALL = ["--trainer.enable_progress_bar=false", "--trainer.accelerator=cpu", "--trainer.logger=false",
         "--trainer.enable_checkpointing=false", f"--model.net.init_args.hidden=[{', '.join([str(WIDTH)] * (DEPTH - 1))}]",
         "--probe.batch_size=256", "--trainer.max_epochs=1"]  # fmt: skip



@pytest.fixture(autouse=True)
def _own_argv(monkeypatch):
    """The recipe parses ``args``; pytest's own command line is not the recipe's (LightningCLI warns about both)."""
    monkeypatch.setattr(sys, "argv", [str(RECIPE)])

def _recipe():
    return load_recipe("depth_diagnostics")


def test_probe_vanishes_for_small_normal_init_and_is_stable_for_kaiming(tmp_path):
    main = _recipe().main
    out = {}
    for scheme in ("kaiming", "normal"):
        main(args=["fit", *SMALL, f"--init.scheme={scheme}", f"--run_dir={tmp_path / scheme}"])
        out[scheme] = json.loads((tmp_path / scheme / "metrics.json").read_text())
        act = out[scheme]["series"]["act_std"]
        assert act["x"] == list(range(1, DEPTH + 1)) and act["xlabel"] == "layer"
        assert len(out[scheme]["series"]["grad_std"]["y"]) == DEPTH
        assert (tmp_path / scheme / "depth_diagnostics.png").stat().st_size > 10_000
    kaiming, normal = out["kaiming"]["metrics"], out["normal"]["metrics"]
    # Kaiming keeps the activation scale through the ReLU stack; N(0, 0.01) loses ~10x per layer
    assert 0.2 < kaiming["probe/act_ratio"] < 5
    assert all(0.2 < a / out["kaiming"]["series"]["act_std"]["y"][0] < 5 for a in out["kaiming"]["series"]["act_std"]["y"][:-1])
    assert normal["probe/act_ratio"] < 1e-6
    # ... and trainability follows: the vanished network stays at the uniform prediction (loss ln 10 exactly)
    assert normal["val/loss"] == pytest.approx(math.log(10), abs=1e-3)
    assert kaiming["val/loss"] < math.log(10) - 0.02 and kaiming["val/acc"] > normal["val/acc"]


def test_the_probe_alone_and_bad_input(tmp_path, capsys):
    main = _recipe().main
    main(args=["fit", *SMALL, "--init.scheme=xavier", "--trainer.max_epochs=0", f"--run_dir={tmp_path / 'x'}"])
    m = json.loads((tmp_path / "x" / "metrics.json").read_text())["metrics"]
    assert 0 < m["probe/act_ratio"] < 0.5  # Xavier halves the variance at every ReLU layer: it shrinks, slower
    with pytest.raises(SystemExit) as exc:
        main(args=["fit", *SMALL, "--probe.batch_size=1", f"--run_dir={tmp_path / 'bad'}"])
    assert exc.value.code == 2 and "`batch_size` must be >= 2, got 1" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
