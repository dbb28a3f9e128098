"""DropPath and DropConnect: training maths, bad input, and seeded MC predictions through the registry."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F
from conftest import SCRIPTS
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call
from torchvision.ops import StochasticDepth

from lightning_bestpractices.regularization import DropConnect, DropPath, linear_drop_path_rates
from lightning_bestpractices.regularization.drop import _drop_connect_seeded, _drop_path_seeded
from lightning_bestpractices.uncertainty import (
    RowRandom,
    find_stochastic_modules,
    mc_predict,
    stochastic_registry,
)

_spec = importlib.util.spec_from_file_location("ddp_regularization", SCRIPTS / "ddp_regularization.py")
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)


def rng(n_inputs: int, n_samples: int, seed: int = 0, module_index: int = 0) -> RowRandom:
    return RowRandom(seed, module_index, torch.arange(n_inputs), torch.arange(n_samples))


# ---------------------------------------------------------------------------------------------------------------
# arguments
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5, float("nan"), "0.1"])
def test_bad_drop_probability(bad):
    for make in (lambda: DropPath(bad), lambda: DropConnect(nn.Linear(2, 2), bad)):
        with pytest.raises(ValueError, match=rf"`p` must be a drop probability in \[0, 1\), got {bad!r}"):
            make()
    with pytest.raises(ValueError, match=r"`max_rate` must be a drop probability"):
        linear_drop_path_rates(4, bad)


def test_other_bad_arguments():
    with pytest.raises(TypeError, match="`layer` must be an nn.Linear or nn.Conv1d/2d/3d, got ReLU"):
        DropConnect(nn.ReLU())
    with pytest.raises(ValueError, match="`mode` must be 'row' or 'batch', got 'col'"):
        DropPath(0.1, mode="col")
    with pytest.raises(ValueError, match="`depth` must be an int >= 1, got 0"):
        linear_drop_path_rates(0, 0.1)


def test_linear_rates():
    assert linear_drop_path_rates(4, 0.3) == [0.0, 0.1, 0.2, 0.3]
    assert linear_drop_path_rates(3, 0.3, min_rate=0.1) == [0.1, 0.2, 0.3]
    assert linear_drop_path_rates(1, 0.2) == [0.2]


# ---------------------------------------------------------------------------------------------------------------
# training-mode maths
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["row", "batch"])
def test_drop_path_is_torchvisions_stochastic_depth(mode):
    x = torch.randn(16, 3, 2, 2)
    torch.manual_seed(4)
    ours = DropPath(0.4, mode).train()(x)
    torch.manual_seed(4)
    ref = StochasticDepth(0.4, mode).train()(x)
    assert torch.equal(ours, ref)
    assert torch.equal(DropPath(0.4).eval()(x), x)


def test_drop_connect_drops_weights_with_one_mask_per_forward():
    torch.manual_seed(0)
    layer = nn.Linear(6, 5)
    dc = DropConnect(layer, 0.5).train()
    x = torch.randn(1, 6).repeat(4, 1)  # four identical rows
    torch.manual_seed(1)
    y = dc(x)
    torch.manual_seed(1)
    keep = torch.empty_like(layer.weight).bernoulli_(0.5)
    torch.testing.assert_close(y, F.linear(x, layer.weight * keep / 0.5, layer.bias))
    # one weight mask for the batch: identical rows give identical outputs (activation dropout would not)
    torch.testing.assert_close(y[0], y[3])
    # gradients reach only the kept weights
    y.sum().backward()
    assert bool((layer.weight.grad[keep == 0] == 0).all())


def test_drop_connect_conv_training():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, padding=1, stride=2)
    dc = DropConnect(conv, 0.3).train()
    x = torch.randn(2, 2, 5, 5)
    torch.manual_seed(7)
    y = dc(x)
    torch.manual_seed(7)
    keep = torch.empty_like(conv.weight).bernoulli_(0.7)
    torch.testing.assert_close(y, F.conv2d(x, conv.weight * keep / 0.7, conv.bias, stride=2, padding=1))


# ---------------------------------------------------------------------------------------------------------------
# seeded MC forwards
# ---------------------------------------------------------------------------------------------------------------
def test_registered_with_uncertainty():
    reg = stochastic_registry()
    assert reg[DropPath] is _drop_path_seeded and reg[DropConnect] is _drop_connect_seeded
    net = nn.Sequential(DropConnect(nn.Linear(2, 2)), DropPath(0.1), nn.Dropout(0.1))
    assert [n for n, _ in find_stochastic_modules(net)] == ["0", "1", "2"]


def test_drop_path_seeded_drops_whole_paths():
    x = torch.randn(5 * 8, 3, 4)
    y = _drop_path_seeded(DropPath(0.5), x, rng(5, 8))
    dropped = (y == 0).flatten(1).all(1)
    kept = torch.isclose(y, 2 * x).flatten(1).all(1)
    assert bool((dropped | kept).all()) and 5 < int(dropped.sum()) < 35
    batch = _drop_path_seeded(DropPath(0.5, "batch"), x, rng(5, 8)).view(8, 5, -1)
    assert bool(((batch == 0).flatten(1).all(1) | (batch != 0).flatten(1).any(1)).all())
    per_sample = (batch == 0).all(-1)  # batch mode: one decision per sample, shared by every input
    assert bool((per_sample == per_sample[:, :1]).all())


def test_drop_connect_linear_seeded_equals_a_loop_over_rows():
    torch.manual_seed(0)
    dc = DropConnect(nn.Linear(6, 4), 0.4)
    x = torch.randn(3 * 2, 5, 6)  # extra middle dim
    r = rng(3, 2, seed=9)
    y = _drop_connect_seeded(dc, x, r)
    keep = r.keep_mask(dc.layer.weight.shape, 0.4, torch.float32)
    for row in range(6):
        ref = F.linear(x[row], dc.layer.weight * keep[row] / 0.6, dc.layer.bias)
        torch.testing.assert_close(y[row], ref, rtol=1e-5, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(
    nd=st.sampled_from([1, 2]), groups=st.sampled_from([1, 2]), stride=st.integers(1, 2), padding=st.integers(0, 2),
    dilation=st.integers(1, 2), bias=st.booleans(), padding_mode=st.sampled_from(["zeros", "reflect"]),
    seed=st.integers(0, 1000),
)  # fmt: skip
def test_drop_connect_conv_fast_path_is_exact(nd, groups, stride, padding, dilation, bias, padding_mode, seed):
    """The grouped-convolution fast path equals running each row through the layer with its own weights."""
    torch.manual_seed(seed)
    cls = {1: nn.Conv1d, 2: nn.Conv2d}[nd]
    conv = cls(4, 6, 3, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=bias,
               padding_mode=padding_mode)  # fmt: skip
    dc = DropConnect(conv, 0.3)
    x = torch.randn(2 * 3, 4, *([7] * nd))
    r = rng(2, 3, seed=seed)
    y = _drop_connect_seeded(dc, x, r)
    keep = r.keep_mask(conv.weight.shape, 0.3, torch.float32)
    for row in range(6):
        ref = functional_call(conv, {"weight": conv.weight * keep[row] / 0.7}, (x[row : row + 1],))
        torch.testing.assert_close(y[row : row + 1], ref, rtol=1e-5, atol=1e-5)


def mc_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        DropConnect(nn.Conv2d(1, 4, 3, padding=1), 0.2), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
        nn.Linear(64, 16), nn.ReLU(), DropPath(0.3), DropConnect(nn.Linear(16, 3), 0.3),
    ).eval()  # fmt: skip


@pytest.mark.parametrize("split", [True, False])
def test_mc_predict_reproducible_and_independent_of_batch_and_chunk(split):
    net = mc_net()
    x = torch.randn(9, 1, 4, 4)
    a = mc_predict(net, x, 8, seed=3, split=split)
    b = mc_predict(net, x, 8, seed=3, chunk_size=3, split=split)
    c = mc_predict(net, x[4:], 8, seed=3, indices=torch.arange(4, 9), split=split)
    d = mc_predict(net, x, 8, seed=4, split=split)
    torch.testing.assert_close(a.mean_probs, b.mean_probs, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a.mean_probs[4:], c.mean_probs, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(a.mean_probs, d.mean_probs), "another seed must give other masks"
    assert float(a.mutual_information.mean()) > 1e-4, "the modules must actually be stochastic under MC"


def test_mc_predict_under_bf16_autocast():
    net = mc_net()
    x = torch.randn(6, 1, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        a = mc_predict(net, x, 4, seed=1)
        b = mc_predict(net, x, 4, seed=1, chunk_size=1)
    torch.testing.assert_close(a.mean_probs, b.mean_probs, rtol=2e-2, atol=1e-2)
    assert torch.allclose(a.mean_probs.sum(-1), torch.ones(6), atol=1e-3)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_train_then_mc_predict_in_lightning(precision):
    res = script.drop_train_and_predict(1, precision)
    res2 = script.drop_train_and_predict(1, precision)
    assert torch.equal(res["mean_probs"], res2["mean_probs"]), "seeded training and MC prediction repeat exactly"
    assert res["indices"].tolist() == list(range(37))
    assert torch.allclose(res["mean_probs"].sum(-1), torch.ones(37), atol=1e-3)
