"""BestPracticesCLI in-process: bad input stops before training with the field and the value."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch
from conftest import ROOT

from lightning_bestpractices.wandb_offline import find_offline_runs


def _recipe():
    spec = importlib.util.spec_from_file_location("moons_recipe", ROOT / "recipes" / "moons.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _NoTraining(Exception):
    pass


@pytest.fixture
def moons(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_SILENT", "true")
    # The CLI writes WANDB_MODE into os.environ (so DDP ranks inherit it). setenv first makes monkeypatch record
    # the variable, so that it is restored even when it was unset: a bare delenv of an unset name records nothing.
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_MODE")
    return _recipe()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--model.bogus=1"], "bogus"),
        (["--model.lr=-0.1"], "`lr` must be > 0, got -0.1"),
        (["--model.optim.lr=-1"], "`lr` must be >= 0, got -1.0"),  # checked inside jsonargparse's type adaptation
        (["--model.net.init_args.dropout=1.5"], "`dropout` must be in [0, 1), got 1.5"),
        (["--model.net.init_args.dropout=-0.2"], "`dropout` must be in [0, 1), got -0.2"),
        (["--model.net.init_args.hidden=[]"], "`hidden` must list at least one width, got []"),
        (["--wandb_mode=sometimes"], "`wandb_mode` must be one of"),
    ],
)
def test_bad_input_is_a_cli_error_before_training(moons, capsys, args, message, monkeypatch):
    import lightning as L

    def no_fit(*a, **k):  # proves the error comes before any training step
        raise _NoTraining

    monkeypatch.setattr(L.Trainer, "fit", no_fit)
    with pytest.raises(SystemExit) as exc:
        moons.main(["fit", *args])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_unknown_key_in_a_config_file(moons, capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  lr: 0.01\n  learning_rate_typo: 0.1\n")
    with pytest.raises(SystemExit):
        moons.main(["fit", "--config", str(bad)])
    assert "learning_rate_typo" in capsys.readouterr().err


def test_other_loggers_and_wandb_modes(moons, tmp_path):
    short = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.enable_progress_bar=false"]
    cli = moons.main(["fit", *short, "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
                      "--trainer.logger.init_args.save_dir=elsewhere", "--run_dir=csv_run"])
    log_dir = Path(cli.trainer.logger.log_dir).resolve()
    assert log_dir == tmp_path / "csv_run", "the run folder owns every logger's save_dir"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["csv_run"], "nothing else lands in the working folder"
    header = (log_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"lr-AdamW/decay", "lr-AdamW/no_decay"} <= set(header)  # one LR column per named group
    for name in ("config.yaml", "decision_boundary.png", "metrics.json", "hparams.yaml"):
        assert (log_dir / name).is_file(), name
    assert [p.parent.name for p in log_dir.glob("**/*.ckpt")] == ["checkpoints"]
    assert cli.trainer.logger.__class__.__name__ == "CSVLogger"
    assert not find_offline_runs(tmp_path)

    before = os.environ.get("WANDB_MODE")
    moons.main(["fit", *short, "--wandb_mode=disabled"])
    assert os.environ.get("WANDB_MODE") == before, "the CLI restores the WANDB_MODE it set for the run"
    assert not find_offline_runs(tmp_path), "disabled mode writes no run"


def test_validate_test_predict_from_a_fit_checkpoint(moons, tmp_path):
    quiet = ["--trainer.logger=lightning.pytorch.loggers.CSVLogger", "--trainer.logger.init_args.save_dir=csv",
             "--trainer.enable_progress_bar=false"]
    fit = moons.main(["fit", *quiet, "--trainer.max_epochs=3"])
    fit_acc = float(fit.trainer.callback_metrics["val/acc"])
    ckpt = fit.trainer.checkpoint_callback.best_model_path
    assert ckpt.endswith(".ckpt")
    val = moons.main(["validate", *quiet, f"--ckpt_path={ckpt}"])
    assert float(val.trainer.callback_metrics["val/acc"]) == fit_acc, "same weights, same data, same accuracy"
    test = moons.main(["test", *quiet, f"--ckpt_path={ckpt}"])
    assert 0.5 < float(test.trainer.callback_metrics["test/acc"]) <= 1.0
    pred = moons.main(["predict", *quiet, f"--ckpt_path={ckpt}"])
    assert pred.trainer.state.finished and pred.trainer.predicting is False
    probs = torch.cat(pred.trainer.predict_loop.predictions)  # the predict split of moons is its val split
    x, y = pred.datamodule.splits["predict"] or pred.datamodule.splits["val"]
    assert probs.shape == y.shape and bool(((probs >= 0) & (probs <= 1)).all())
    with torch.no_grad():
        expected = torch.sigmoid(pred.model.eval()(x).float())  # the checkpoint's weights, applied directly
    torch.testing.assert_close(probs, expected)
    pred_acc = ((probs > 0.5).float() == y).float().mean().item()
    assert pred_acc == pytest.approx(fit_acc, abs=1e-6), "predictions score what validation scored"


def test_a_bug_in_a_class_keeps_its_traceback(tmp_path, monkeypatch):
    """Only the package's argument checks are configuration errors; an ordinary TypeError is a bug."""
    import lightning as L

    from lightning_bestpractices import BestPracticesCLI, MoonsDataModule
    from lightning_bestpractices.errors import ArgumentError

    monkeypatch.chdir(tmp_path)

    class Buggy(L.LightningModule):
        def __init__(self, width: int = 2) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(width, None)  # a bug: None is no size

    with pytest.raises(TypeError) as err:
        BestPracticesCLI(Buggy, MoonsDataModule, args=["fit", "--wandb_mode=disabled"])
    assert not isinstance(err.value, ArgumentError)

    class Checked(Buggy):
        def __init__(self, width: int = 2) -> None:
            L.LightningModule.__init__(self)
            raise ArgumentError(f"`width` must be >= 3, got {width!r}")

    with pytest.raises(SystemExit) as exc:
        BestPracticesCLI(Checked, MoonsDataModule, args=["fit", "--wandb_mode=disabled"])
    assert exc.value.code == 2


def test_fast_dev_run_writes_nothing(moons, tmp_path, capsys):
    """Lightning promises that a dev run writes nothing: no run folder, no config, no PNG, no W&B run."""
    cli = moons.main(["fit", "--trainer.fast_dev_run=true", "--trainer.enable_progress_bar=false"])
    assert cli.trainer.fast_dev_run and cli.trainer.state.finished
    assert list(tmp_path.iterdir()) == []
    assert "fast_dev_run: nothing written" in capsys.readouterr().out


def test_the_run_folder_holds_config_checkpoints_plots_and_the_wandb_run(moons, tmp_path):
    cli = moons.main(["fit", "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
                      "--trainer.enable_progress_bar=false"])
    (folder,) = (tmp_path / "runs" / "moons").iterdir()
    assert cli.run_folder == folder and [p.name for p in tmp_path.iterdir()] == ["runs"]
    names = {p.relative_to(folder).parts[0] for p in folder.rglob("*")}
    assert {"config.yaml", "metrics.json", "decision_boundary.png", "checkpoints", "wandb"} <= names
    (run,) = find_offline_runs(folder)
    summary = json.loads((folder / "metrics.json").read_text())
    assert summary["metrics"]["val/acc"] == pytest.approx(float(cli.trainer.callback_metrics["val/acc"]))
    assert [row["epoch"] for row in summary["history"]] == [0.0] and summary["hardware"]["cpu_count"] >= 1
    assert os.environ.get("LBP_RUN_DIR") is None, "the run folder variable is cleared when the CLI returns"
