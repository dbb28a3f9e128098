"""The sparsity recipe launched as a user launches it: a subprocess with CLI flags, read back from W&B offline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lightning_bestpractices.wandb_offline import find_offline_runs, read_offline_run

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import ROOT, run_python, subprocess_env  # noqa: E402

RECIPE = ROOT / "recipes" / "sparsity.py"
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.accelerator=cpu"]
SHORT = ["--trainer.max_epochs=8", "--pruning.start_epoch=2", "--pruning.every=2", "--pruning.stop_epoch=6"]


def _fit(tmp_path: Path, *args: str):
    tmp_path.mkdir(parents=True, exist_ok=True)
    proc = run_python([RECIPE, "fit", *QUIET, *args], tmp_path, timeout=900)
    runs = find_offline_runs(tmp_path / "runs")
    assert len(runs) == 1, runs
    return proc, read_offline_run(runs[0], wait=120)


def test_l1_gives_a_sparser_network_that_prunes_better(tmp_path):
    proc, l1 = _fit(tmp_path / "l1")
    _, none = _fit(tmp_path / "none", "--penalty.strength=0")
    # the recipe prints its run folder and final metrics, and the PNG / CSV are in that folder
    assert f"run folder: {l1.save_dir}" in proc.stdout
    final = next(line for line in proc.stdout.splitlines() if line.startswith("final metrics: "))
    assert "sparsity/val_acc=" in final and "sparsity/frac_below_threshold=" in final
    assert (l1.save_dir / "sparsity_curve.png").stat().st_size > 10_000
    curve = (l1.save_dir / "sparsity_curve.csv").read_text().splitlines()
    assert curve[0] == "target sparsity,sparsity (exact zeros),val accuracy" and len(curve) == 9
    # both were pruned to the same 93.75% by ModelPruning; L1 left more near-zero weights and lost less accuracy
    assert none.summary["sparsity/frac_below_threshold"] >= 0.9375 - 1e-3
    assert l1.summary["sparsity/frac_below_threshold"] >= none.summary["sparsity/frac_below_threshold"]
    assert l1.summary["val/acc"] >= 0.95
    rows = {float(r.split(",")[0]): float(r.split(",")[2]) for r in curve[1:]}
    rows_none = {float(r.split(",")[0]): float(r.split(",")[2])
                 for r in (none.save_dir / "sparsity_curve.csv").read_text().splitlines()[1:]}  # fmt: skip
    assert rows[0.95] > rows_none[0.95] + 0.1, (rows, rows_none)
    assert l1.config["penalty"]["strength"] == 0.001 and none.config["penalty"]["strength"] == 0


def test_without_pruning_l1_alone_makes_weights_small(tmp_path):
    _, l1 = _fit(tmp_path / "l1", "--pruning.amount=0", "--trainer.max_epochs=20")
    _, none = _fit(tmp_path / "none", "--pruning.amount=0", "--trainer.max_epochs=20", "--penalty.strength=0")
    assert l1.summary["sparsity/frac_below_threshold"] > 0.3 > 0.05 > none.summary["sparsity/frac_below_threshold"]
    assert min(l1.summary["val/acc"], none.summary["val/acc"]) >= 0.95


@pytest.mark.parametrize("mode", ["ddp", "bf16"])
def test_ddp_and_bf16(tmp_path, mode):
    extra = ["--trainer.devices=2", "--trainer.strategy=ddp"] if mode == "ddp" else ["--trainer.precision=bf16-mixed"]
    _, run = _fit(tmp_path, *SHORT, *extra)
    assert run.summary["parity/max_rank_diff"] == 0
    assert run.summary["sparsity/frac_below_threshold"] >= 0.875 - 1e-3  # three cuts of half: 1 - 0.5**3
    assert run.summary["val/acc"] > 0.5


@pytest.mark.parametrize(("flag", "message"), [
    ("--penalty.strength=-1", "`strength` must be a number >= 0, got -1"),
    ("--penalty.l1_ratio=2", "`l1_ratio` must be in [0, 1], got 2"),
])  # fmt: skip
def test_bad_input_is_a_cli_error(tmp_path, flag, message):
    proc = subprocess.run([sys.executable, str(RECIPE), "fit", *QUIET, flag], cwd=tmp_path,
                          env=subprocess_env(tmp_path), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr
    assert not (tmp_path / "runs").exists() or not find_offline_runs(tmp_path / "runs")
