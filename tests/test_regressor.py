"""Regressor: MSE training, metrics in the target's original units, checked against sklearn on the same outputs."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from sklearn.metrics import mean_squared_error, r2_score

from lightning_bestpractices.data import RegressionDataModule
from lightning_bestpractices.errors import ArgumentError
from lightning_bestpractices.models import MLP
from lightning_bestpractices.tasks import Regressor


def _trainer(**kw) -> L.Trainer:
    return L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, accelerator="cpu", **kw)


def _fit(dm: RegressionDataModule, epochs: int = 5) -> tuple[Regressor, L.Trainer]:
    torch.manual_seed(0)
    model = Regressor(MLP(dm.num_features, [32], 1, dropout=0.0, norm="none"), optim={"lr": 0.01})
    trainer = _trainer(max_epochs=epochs)
    trainer.fit(model, dm)
    return model, trainer


@pytest.mark.parametrize("standardize_target", [True, False])
def test_validation_metrics_are_in_original_units_and_match_sklearn(standardize_target):
    dm = RegressionDataModule("diabetes", standardize_target=standardize_target, seed=0, batch_size=16)
    model, trainer = _fit(dm)
    m = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert {"train/loss", "train/rmse", "val/loss", "val/mse", "val/rmse", "val/r2"} <= set(m)

    x, y = dm.splits["val"]
    model.eval()
    with torch.no_grad():
        pred = model(x)
    if standardize_target:
        scale = dm.target_standardization
        assert model.target_mean.tolist() == scale.mean.tolist(), "the statistics are copied at setup"
        pred_orig, y_orig = scale.inverse(pred), scale.inverse(y)
    else:
        assert model.target_std.tolist() == [1.0]
        pred_orig, y_orig = pred, y
    y_np, p_np = y_orig.view(-1).numpy(), pred_orig.view(-1).numpy()
    assert m["val/mse"] == pytest.approx(mean_squared_error(y_np, p_np), rel=1e-4)
    assert m["val/rmse"] == pytest.approx(mean_squared_error(y_np, p_np) ** 0.5, rel=1e-4)
    assert m["val/r2"] == pytest.approx(r2_score(y_np, p_np), abs=1e-4)
    # the loss is the objective on what the network is trained on (standardized units when the target is)
    assert m["val/loss"] == pytest.approx(float(torch.nn.functional.mse_loss(pred, y)), rel=1e-4)
    assert m["val/rmse"] > 20, "diabetes scores spread over ~77 points: an RMSE in original units, not ~1"
    # predictions (of the predict split, here the test split) come back in original units too
    preds = torch.cat(trainer.predict(model, dm))
    with torch.no_grad():
        expected = model(dm.splits["test"][0]) * model.target_std + model.target_mean
    torch.testing.assert_close(preds, expected, rtol=1e-5, atol=1e-3)


def test_a_checkpoint_carries_the_target_statistics(tmp_path):
    dm = RegressionDataModule("diabetes", seed=0)
    model, trainer = _fit(dm, epochs=1)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = Regressor.load_from_checkpoint(tmp_path / "m.ckpt", net=MLP(10, [32], 1, dropout=0.0, norm="none"))
    assert loaded.target_mean.tolist() == model.target_mean.tolist() != [0.0]
    x = dm.splits["test"][0][:5]
    loaded.eval(), model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.predict_step((x,), 0), model.predict_step((x,), 0))


def test_learns_the_synthetic_function_better_than_its_mean():
    dm = RegressionDataModule("synthetic", n_samples=600, noise=0.5, seed=0, batch_size=32)
    _, trainer = _fit(dm, epochs=15)
    assert float(trainer.callback_metrics["val/r2"]) > 0.7


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_targets": 0}, r"`num_targets` must be >= 1, got 0"),
        ({"lr": -1.0}, r"`lr` must be > 0, got -1.0"),
        ({"weight_decay": -0.1}, r"`weight_decay` must be >= 0, got -0.1"),
        ({"metric_update_every": 0}, r"`metric_update_every` must be >= 1, got 0"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ArgumentError, match=match):
        Regressor(MLP(3, [4], 1), **kwargs)


def test_target_statistics_must_match_num_targets():
    dm = RegressionDataModule("diabetes", seed=0)
    model = Regressor(MLP(10, [8], 2, dropout=0.0, norm="none"), num_targets=2)
    with pytest.raises(ArgumentError, match=r"1 columns, `num_targets` is 2"):
        _trainer(max_epochs=1).fit(model, dm)
