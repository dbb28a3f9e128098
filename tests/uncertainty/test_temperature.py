"""Temperature scaling: the LBFGS fit against a dense grid search, MC per-sample scaling, inference mode, mixin."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn

from lightning_bestpractices.data import InMemoryDataModule
from lightning_bestpractices.uncertainty import (
    MCDropoutMixin,
    fit_temperature,
    mc_logits,
    mc_predict,
    temperature_nll,
)

GRID = torch.logspace(-1.5, 1.5, 6001)  # T from 0.03 to 32, 0.05% apart


def _grid_best(z, y, task="multiclass"):
    nll = torch.stack([temperature_nll(z, y, t, task) for t in GRID])
    i = int(nll.argmin())
    return float(GRID[i]), float(nll[i])


def _data(shape, classes, scale, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, shape[-2:-1] if len(shape) > 1 else shape, generator=g)
    signal = nn.functional.one_hot(y, classes).float() * 1.5
    z = (torch.randn(*shape, classes, generator=g) + signal) * scale
    return z, y


@pytest.mark.parametrize("scale", [0.3, 1.0, 5.0])
@pytest.mark.parametrize("mc", [False, True], ids=["deterministic", "mc"])
def test_fit_matches_a_dense_grid_search_on_the_nll(scale, mc):
    if mc:
        g = torch.Generator().manual_seed(1)
        base, y = _data((300,), 4, scale, 0)
        z = base + torch.randn(12, 300, 4, generator=g) * scale  # 12 MC samples around each logit
    else:
        z, y = _data((300,), 4, scale, 0)
    t = fit_temperature(z, y)
    t_grid, nll_grid = _grid_best(z, y)
    assert t == pytest.approx(t_grid, rel=2e-3)
    assert float(temperature_nll(z, y, t)) <= nll_grid + 1e-6


def test_binary_fit_matches_the_grid_and_sigmoid():
    g = torch.Generator().manual_seed(3)
    y = torch.randint(0, 2, (400,), generator=g)
    z = (torch.randn(400, generator=g) + 2 * y - 1) * 4
    t = fit_temperature(z, y, task="binary")
    assert t == pytest.approx(_grid_best(z, y, "binary")[0], rel=2e-3)
    bce = nn.functional.binary_cross_entropy_with_logits(z / t, y.float())
    torch.testing.assert_close(temperature_nll(z, y, t, "binary"), bce)


def test_mc_nll_is_the_mixture_of_per_sample_softmaxes():
    z = torch.randn(5, 7, 3, generator=torch.Generator().manual_seed(0)) * 3
    y = torch.randint(0, 3, (7,), generator=torch.Generator().manual_seed(1))
    mixture = (z / 2.0).softmax(-1).mean(0)
    ref = -mixture.gather(1, y[:, None]).log().mean()
    torch.testing.assert_close(temperature_nll(z, y, 2.0), ref)
    wrong = -(z.mean(0) / 2.0).log_softmax(-1).gather(1, y[:, None]).mean()  # averaging logits first
    assert not torch.allclose(ref, wrong, atol=1e-3)


def test_fit_works_inside_inference_mode_and_autocast():
    z, y = _data((200,), 3, 3.0, 5)
    ref = fit_temperature(z, y)
    with torch.inference_mode():
        zi, yi = z.clone(), y.clone()
        assert zi.is_inference()
        got = fit_temperature(zi, yi)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got_bf16 = fit_temperature(z, y)
    assert got == pytest.approx(ref, rel=1e-6) and got_bf16 == pytest.approx(ref, rel=1e-6)


def test_bad_input():
    z, y = _data((10,), 3, 1.0, 0)
    with pytest.raises(ValueError, match="`task`"):
        fit_temperature(z, y, task="regression")
    with pytest.raises(ValueError, match="`logits` must have 2"):
        fit_temperature(z[0], y)
    with pytest.raises(ValueError, match=r"`targets` must be integer class indices of shape \(10,\)"):
        fit_temperature(z, y.float())
    with pytest.raises(ValueError, match="`max_iter`"):
        fit_temperature(z, y, max_iter=0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 2))
    for bad in (0.0, -1.0, float("nan"), True):
        with pytest.raises(ValueError, match="`temperature`"):
            mc_predict(net, torch.randn(2, 3), 2, temperature=bad)
    with pytest.raises(ValueError, match="`temperature` scales classification"):
        mc_predict(net, torch.randn(2, 3), 2, temperature=2.0, task="regression")


def test_mc_predict_scales_each_sample_before_its_softmax():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 4))
    x = torch.randn(9, 3)
    z = mc_logits(net, x, 6, seed=2)
    out = mc_predict(net, x, 6, seed=2, temperature=2.5)
    torch.testing.assert_close(out.mean_probs, (z / 2.5).softmax(-1).mean(0), atol=1e-6, rtol=0)
    assert not torch.allclose(out.mean_probs, mc_predict(net, x, 6, seed=2).mean_probs, atol=1e-3)


class Net(MCDropoutMixin, L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(5, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 3))
        with torch.no_grad():
            self.net[3].weight.mul_(8)  # overconfident: the fit has something to correct
        self.configure_mc_dropout(6, seed=4, stages=("test",), calibrate=True, log_figures=False)

    def forward(self, x):
        return self.net(x)


def _dm():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(90, 5, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return InMemoryDataModule(val=(x[:50], y[:50]), test=(x[50:], y[50:]), batch_size=8, eval_batch_size=7)


def test_mixin_fits_on_validation_before_test_under_inference_mode():
    model, dm = Net(), _dm()
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.test(model, dm)
    xv, yv = dm.splits["val"]
    ref_t = fit_temperature(mc_logits(Net(), xv, 6, seed=4), yv)
    assert model.mc_temperature == pytest.approx(ref_t, rel=1e-5) and model.mc_temperature > 1.5
    xt, yt = dm.splits["test"]
    ref = mc_predict(Net(), xt, 6, seed=4, temperature=ref_t)
    torch.testing.assert_close(model.mc_results["test"].output.mean_probs, ref.mean_probs, atol=1e-5, rtol=0)
    assert trainer.callback_metrics["test/mc_temperature"] == pytest.approx(ref_t, rel=1e-5)


def test_mixin_calibrate_needs_a_datamodule_and_classification():
    model = Net()
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.randn(4, 5), torch.zeros(4).long())
    )
    with pytest.raises(ValueError, match="no datamodule"):
        trainer.test(model, loader)
    with pytest.raises(ValueError, match="`calibrate`"):
        model.configure_mc_dropout(4, calibrate="yes")
    with pytest.raises(ValueError, match="task='regression'"):
        model.configure_mc_dropout(4, task="regression", calibrate=True)


def test_a_held_out_set_without_errors_cannot_pin_the_temperature():
    """The failure the MC dropout recipe hit: validation nearly error-free, the unbounded fit ran T to ~1e-3 and made
    every test prediction certain. Now the bound is returned, with a warning that says why."""
    import warnings

    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 4, (300,), generator=g)
    mc = 6 * torch.nn.functional.one_hot(y, 4).float() + 0.5 * torch.randn(8, 300, 4, generator=g)  # all correct
    with pytest.warns(UserWarning, match=r"no interior optimum .* 0 argmax error\(s\) in 300"):
        assert fit_temperature(mc, y, min_t=0.1) == 0.1
    noisy = 2 * torch.nn.functional.one_hot(y, 4).float() + torch.randn(300, 4, generator=g)  # errors: interior
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = fit_temperature(noisy, y, min_t=0.1)
    assert 0.1 < t < 20
    with pytest.raises(ValueError, match="`min_t` and `max_t` must satisfy 0 < min_t < 1 < max_t, got 2 and 20"):
        fit_temperature(noisy, y, min_t=2)
