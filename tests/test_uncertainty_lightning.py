"""Lightning shell of MC dropout: trainer.predict/validate, BN buffers, DDP == 1 process, bf16, figures."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn

from lightning_bestpractices.data import InMemoryDataModule
from lightning_bestpractices.uncertainty import MCDropoutMixin, find_split, mc_predict

SCRIPT = Path(__file__).parent / "scripts" / "ddp_uncertainty.py"
_spec = importlib.util.spec_from_file_location("ddp_uncertainty", SCRIPT)
ddp_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ddp_script)


@pytest.fixture(scope="module")
def single_process():
    torch.set_num_threads(1)
    return ddp_script.run(devices=1)


def _close(a: dict, b: dict, atol: float) -> None:
    for key, value in a.items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(b[key].float(), value.float(), atol=atol, rtol=0, msg=key)


def test_predict_matches_functional_in_dataset_order_and_keeps_bn(single_process):
    x, y = ddp_script.data()
    ref = mc_predict(ddp_script.Net(), x, ddp_script.N_SAMPLES, targets=y, seed=3)
    got = single_process["predict"]
    assert torch.equal(got["indices"], torch.arange(37)) and torch.equal(got["targets"], y)
    _close(
        {k: getattr(ref, k) for k in ("mean_probs", "std_probs", "mutual_information", "log_likelihood")},
        got,
        1e-6,
    )
    assert single_process["bn_unchanged"]  # BN running statistics bit-for-bit after trainer.predict
    assert single_process["modes_restored"]  # every module's train/eval mode is as before trainer.predict
    # validate through the in-memory loader (batch 6) gives the same per-input outputs as predict (batch 5)
    _close(single_process["validate"], got, 1e-6)
    assert set(single_process["val_metrics"]) == {
        f"val/mc_{k}" for k in ("accuracy", "nll", "ece", "brier", "auroc_mi")
    }
    # bf16-mixed: fp32 outputs close to the fp32 run
    assert single_process["bf16"]["mean_probs"].dtype == torch.float32
    torch.testing.assert_close(single_process["bf16"]["mean_probs"], got["mean_probs"], atol=0.03, rtol=0)


def test_ddp_two_processes_equal_one_process(run_script, tmp_path, single_process):
    run_script("ddp_uncertainty.py", "--out", str(tmp_path))
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert ranks[0]["world_size"] == 2
    for res in ranks:
        for stage in ("predict", "validate", "bf16"):
            _close(single_process[stage], res[stage], 1e-6)  # gathered, de-padded, in dataset order
        # the temperature is fitted on the gathered validation logits (another summation order than 1 process)
        _close(single_process["calibrated"], res["calibrated"], 1e-5)
        assert res["temperature"] == pytest.approx(single_process["temperature"], rel=1e-5)
        assert single_process["temperature"] != 1.0
        assert res["bn_unchanged"]
        for key, value in single_process["val_metrics"].items():
            assert res["val_metrics"][key] == pytest.approx(value, abs=1e-6), key


class Task(L.LightningModule):
    """A plain task with its own validation_step: the mixin must leave that stage alone."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten()
        )
        self.head = nn.Sequential(
            nn.Dropout(0.3), nn.Linear(256, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 10)
        )

    def forward(self, x):
        return self.head(torch.flatten(self.features(x), 1))

    def training_step(self, batch, batch_idx):
        return nn.functional.cross_entropy(self(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", nn.functional.cross_entropy(self(batch[0]), batch[1]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class DigitsNet(MCDropoutMixin, Task):
    """MC dropout for test and predict only; validation stays the task's deterministic one."""

    def __init__(self) -> None:
        super().__init__()
        self.configure_mc_dropout(4, stages=("test", "predict"))


def test_mixin_with_task_fit_then_mc_test_saves_figures(tmp_path):
    dm = InMemoryDataModule(
        train=(torch.rand(64, 1, 8, 8), torch.randint(0, 10, (64,))),
        val=(torch.rand(40, 1, 8, 8), torch.randint(0, 10, (40,))),
        test=(torch.rand(40, 1, 8, 8), torch.randint(0, 10, (40,))),
        batch_size=16,
    )
    model = DigitsNet()
    trainer = L.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(model, dm)
    assert "val/loss" in trainer.callback_metrics  # the task's own validation_step ran (not MC)
    # LightningModule: features + flatten (prefix) | head (suffix)
    assert find_split(model, torch.rand(2, 1, 8, 8)).kind == "fx"
    bn = model.features[1].running_mean.clone()
    trainer.test(model, dm)
    assert torch.equal(bn, model.features[1].running_mean)
    metrics = model.mc_results["test"].metrics
    assert 0 <= metrics["ece"] <= 1 and metrics["nll"] > 0 and "auroc_mi" in metrics
    assert trainer.callback_metrics["test/mc_ece"] == pytest.approx(metrics["ece"], abs=1e-6)
    assert (tmp_path / "test_mc_reliability.png").stat().st_size > 1000
    assert (tmp_path / "test_mc_uncertainty_hist.png").stat().st_size > 1000


def test_configure_mc_dropout_bad_arguments():
    net = ddp_script.Net()
    for kwargs, name in [
        ({"n_samples": 0}, "n_samples"),
        ({"stages": ("train",)}, "stages"),
        ({"task": "logits"}, "task"),
        ({"memory_budget": -1}, "memory_budget"),
        ({"n_bins": 0}, "n_bins"),
    ]:
        with pytest.raises(ValueError, match=f"`{name}`"):
            net.configure_mc_dropout(**kwargs)


def test_predict_without_dropout_fails_before_work():
    class NoDrop(MCDropoutMixin, L.LightningModule):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(x)

    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(ValueError, match="no dropout-family module"):
        trainer.predict(NoDrop(), torch.utils.data.DataLoader(torch.randn(4, 3), batch_size=2))
