"""The MC dropout recipe in-process, tiny budget: what it is for, checked against the run it made.

MC dropout must keep BatchNorm in eval (its running statistics untouched by the N passes), average the
probabilities of the passes (never the logits), and score the same inputs as the deterministic network; the
temperatures come from the validation set. CPU / DDP / bf16 launches are the matrix test's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import load_recipe  # noqa: E402

from lightning_bestpractices.uncertainty import mc_logits  # noqa: E402

TINY = ["--trainer.max_epochs=2", "--trainer.logger=false", "--trainer.enable_progress_bar=false",
        "--trainer.accelerator=cpu", "--model.n_samples=6"]  # fmt: skip


def _recipe():
    return load_recipe("mc_dropout")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mc") / "run"
    cli = _recipe().main(["fit", *TINY, "--seed_everything=3", f"--run_dir={folder}"])
    return cli, folder


def test_batchnorm_stays_in_eval_and_probabilities_are_averaged(run):
    cli, folder = run
    model = cli.model
    # the checkpoint written at the end of fit holds BatchNorm's statistics before the two MC test runs
    [ckpt] = (folder / "checkpoints").glob("*.ckpt")
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    bn = [k for k in state if "running_mean" in k or "running_var" in k]
    assert len(bn) == 4
    now = model.state_dict()
    for key in bn:
        assert torch.equal(state[key], now[key].cpu()), f"{key} changed during MC dropout"

    result = model.mc_results["test"]  # the calibrated run, gathered in dataset order
    x, y = cli.datamodule.splits["test"]
    assert torch.equal(result.indices, torch.arange(len(y))) and torch.equal(result.targets, y.cpu())
    z = mc_logits(model, x, model.mc_n_samples, seed=model.mc_seed, indices=result.indices)  # (N, B, C)
    t = model.mc_temperature
    averaged_probs = (z / t).softmax(-1).mean(0)
    assert torch.allclose(result.output.mean_probs, averaged_probs, atol=1e-5)
    assert not torch.allclose(result.output.mean_probs, (z.mean(0) / t).softmax(-1), atol=1e-3)
    assert model.mc_seed == 3  # the masks follow the run's seed, as the data split does
    assert cli.datamodule.seed == 3


def test_metrics_cover_the_four_variants(run):
    cli, folder = run
    summary = json.loads((folder / "metrics.json").read_text())
    metrics = summary["metrics"]
    for prefix in ("det", "det_temp", "mc", "mc_temp"):
        for name in ("acc", "nll", "ece", "ece_torchmetrics", "brier", "temperature"):
            assert f"{prefix}/{name}" in metrics, (prefix, name)
        # the package's ECE is torchmetrics' CalibrationError (15 bins, L1)
        assert metrics[f"{prefix}/ece"] == pytest.approx(metrics[f"{prefix}/ece_torchmetrics"], abs=1e-6)
    assert metrics["det/temperature"] == metrics["mc/temperature"] == 1.0
    assert metrics["det_temp/temperature"] != 1.0
    assert metrics["mc_temp/temperature"] == pytest.approx(cli.model.mc_temperature)
    # the mixin's own logged test metrics are those of the calibrated run
    assert metrics["test/mc_ece"] == pytest.approx(metrics["mc_temp/ece"], abs=1e-6)
    # MC accuracy is the accuracy of the averaged probabilities
    result = cli.model.mc_results["test"]
    assert metrics["mc_temp/acc"] == pytest.approx(float((result.output.predictions == result.targets).float().mean()))
    rows = (folder / "results.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[1].startswith("deterministic,")
    for name in ("reliability", "mi_histogram", "test_mc_reliability"):
        assert (folder / f"{name}.png").stat().st_size > 1000, name


def test_a_network_without_dropout_is_a_cli_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        _recipe().main(["fit", *TINY, "--model.net.dropout=0.0", f"--run_dir={tmp_path / 'run'}"])
    assert err.value.code == 2
    assert "`net` needs a dropout layer with p > 0" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
