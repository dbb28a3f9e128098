"""WeightPenalty: the (sub)gradient it adds is exactly the gradient of the penalty written into the loss."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from conftest import SCRIPTS
from hypothesis import given, settings
from hypothesis import strategies as st
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from lightning_bestpractices.normalization import no_decay_parameters
from lightning_bestpractices.regularization import (
    WeightPenalty,
    add_penalty_grad_,
    decay_parameters,
    weight_penalty,
)

_spec = importlib.util.spec_from_file_location("ddp_regularization", SCRIPTS / "ddp_regularization.py")
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)


def test_penalty_value_l1_l2_elastic():
    w = [torch.tensor([1.0, -2.0]), torch.tensor([[0.5], [-0.5]])]
    l1, l2 = 4.0, 5.5
    assert float(weight_penalty(w, 0.1, 1.0)) == pytest.approx(0.1 * l1)
    assert float(weight_penalty(w, 0.1, 0.0)) == pytest.approx(0.1 * l2)
    assert float(weight_penalty(w, 0.1, 0.25)) == pytest.approx(0.1 * (0.25 * l1 + 0.75 * l2))


@settings(max_examples=40, deadline=None)
@given(strength=st.floats(0, 10), l1_ratio=st.floats(0, 1), seed=st.integers(0, 2**16), zeros=st.booleans())
def test_added_gradient_equals_autograd_of_the_penalty(strength, l1_ratio, seed, zeros):
    g = torch.Generator().manual_seed(seed)
    ws = [torch.randn(3, 4, generator=g), torch.randn(5, generator=g)]
    if zeros:
        ws[0][0, :2] = 0.0  # sign(0) = 0 is also autograd's subgradient of |w| at 0
    params = [nn.Parameter(w.clone()) for w in ws]
    weight_penalty(params, strength, l1_ratio).backward()
    expected = [p.grad.clone() for p in params]
    base = [torch.randn(p.shape, generator=g) for p in params]
    for p, b in zip(params, base):
        p.grad = b.clone()
    assert add_penalty_grad_(params, strength, l1_ratio) == 2
    for p, b, e in zip(params, base, expected):
        torch.testing.assert_close(p.grad, b + e, rtol=1e-5, atol=1e-5)


def test_params_without_grad_are_left_alone():
    p, q = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))
    p.grad = torch.zeros(2)
    assert add_penalty_grad_([p, q], 1.0, 1.0) == 1
    assert q.grad is None and torch.equal(p.grad, torch.ones(2))


def test_default_selection_is_the_decay_group():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    net[2].weight.requires_grad_(False)
    chosen = {id(p) for p in decay_parameters(net)}
    assert chosen == {id(net[0].weight)}
    assert not chosen & no_decay_parameters(net)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"strength": -0.1}, r"`strength` must be a number >= 0, got -0.1"),
        ({"strength": 0.1, "l1_ratio": 1.5}, r"`l1_ratio` must be in \[0, 1\], got 1.5"),
        ({"strength": 0.1, "l1_ratio": -0.01}, r"`l1_ratio` must be in \[0, 1\], got -0.01"),
        ({"strength": float("nan")}, r"`strength` must be a number >= 0, got nan"),
        ({"strength": 0.1, "names": "net.0"}, r"`names` must be a list"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WeightPenalty(**kwargs)


def test_unknown_name_fails_before_the_first_step():
    model = script.Net()
    seen = []
    model.training_step = lambda *a: seen.append(1)
    with pytest.raises(ValueError, match=r"`names` entry 'net.9' matches no parameter"):
        script.trainer(callbacks=[WeightPenalty(0.1, names=["net.9"])]).fit(model, script.loader())
    assert not seen


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
@pytest.mark.parametrize(("accumulate", "l1_ratio"), [(1, 0.5), (3, 1.0), (2, 0.0)])
def test_callback_trains_like_the_penalty_in_the_loss(precision, accumulate, l1_ratio):
    res = script.penalty_pair(1, precision, accumulate=accumulate, l1_ratio=l1_ratio)
    moved = max(float((res["ours"][k] - res["plain"][k]).abs().max()) for k in res["ours"])
    assert moved > 1e-3, "the penalty must change training"
    for k in res["ours"]:
        torch.testing.assert_close(res["ours"][k], res["ref"][k], rtol=1e-5, atol=1e-6, msg=k)


def test_names_select_only_those_parameters():
    model = script.Net()
    cb = WeightPenalty(1.0, names=["net.7"])
    assert [id(p) for p in cb.select(model)] == [id(model.net[7].weight), id(model.net[7].bias)]


def test_logged_at_the_logging_interval_only(tmp_path):
    model = script.Net()
    model.training_step = _logging_step(model)
    t = script.trainer(callbacks=[WeightPenalty(0.01, 0.5)], max_steps=7, log_every_n_steps=3,
                       logger=CSVLogger(tmp_path, name="", version=""))  # fmt: skip
    values = []
    model.log_penalty = values
    t.fit(model, script.loader())
    import csv

    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    logged = [(int(r["step"]), float(r["regularization/penalty"])) for r in rows if r.get("regularization/penalty")]
    loss_steps = [int(r["step"]) for r in rows if r.get("train_loss")]
    assert [s for s, _ in logged] == loss_steps == [2, 5]
    # the value is the penalty of the weights just before that step
    for step, value in logged:
        assert value == pytest.approx(values[step], rel=1e-5)


def _logging_step(model):
    original = type(model).training_step

    def training_step(batch, batch_idx):
        loss = original(model, batch, batch_idx)
        model.log("train_loss", loss, on_step=True, on_epoch=False)
        with torch.no_grad():
            model.log_penalty.append(float(weight_penalty(decay_parameters(model), 0.01, 0.5)))
        return loss

    return training_step
