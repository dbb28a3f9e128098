"""The stochastic registry: every registered class has its drop rate checked before any MC pass."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torchvision.ops import StochasticDepth

from lightning_bestpractices.regularization import DropConnect  # registers DropPath and DropConnect too
from lightning_bestpractices.uncertainty import (
    mc_dropout_mode,
    mc_predict,
    register_stochastic,
    stochastic_rate,
    stochastic_registry,
    unregister_stochastic,
)


class DropProb(nn.Module):
    """Keeps its rate as ``drop_prob``: it must say so with ``rate=``."""

    def __init__(self, drop_prob: float = 0.2) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def mc_forward(self, x, rng):
        return x * rng.keep_mask(x.shape[1:], self.drop_prob, x.dtype) / (1 - self.drop_prob)


@pytest.fixture
def with_drop_prob():
    register_stochastic(DropProb, rate=lambda m: m.drop_prob)
    yield DropProb
    unregister_stochastic(DropProb)


def _make(cls: type) -> nn.Module:
    if cls is StochasticDepth:
        return StochasticDepth(0.2, mode="row")
    if cls is DropProb:
        return DropProb(0.2)
    if cls is DropConnect:
        return DropConnect(nn.Linear(3, 3), 0.2)
    return cls(0.2)


def _set_rate(module: nn.Module, value: float) -> None:
    if isinstance(module, DropProb):
        module.drop_prob = value
    else:
        module.p = value


def _registered(extra=()):
    return sorted([*stochastic_registry(), *extra], key=lambda c: c.__name__)


@pytest.mark.parametrize("value", [1.5, -0.1, math.nan])
def test_every_registered_module_with_a_bad_rate_is_refused_by_name_before_any_pass(with_drop_prob, value):
    for cls in _registered():
        module = _make(cls)
        _set_rate(module, value)
        net = nn.Sequential(nn.Linear(3, 3), nn.Sequential(nn.Identity(), module), nn.Linear(3, 2))
        calls = []
        net[0].register_forward_hook(lambda m, a, o, calls=calls: calls.append(1))
        with pytest.raises(ValueError, match=rf"'1\.1' \({cls.__name__}\) has drop probability .*{value}"):
            mc_predict(net, torch.randn(4, 3), 3)
        assert calls == [], cls  # refused before the first forward
        with pytest.raises(ValueError, match=r"'1\.1'"), mc_dropout_mode(net):
            pass


def test_good_rates_at_the_edges_run(with_drop_prob):
    for cls in _registered():
        for value in (0.0, 1.0) if cls is not DropProb else (0.0, 0.5):
            module = _make(cls)
            _set_rate(module, value)
            net = nn.Sequential(nn.Linear(3, 3), module, nn.Linear(3, 2))
            out = mc_predict(net, torch.randn(4, 3), 2, task="regression")
            assert torch.isfinite(out.mean).all(), (cls, value)


def test_rate_defaults_to_p_and_is_unchecked_without_it():
    class NoRate(nn.Module):
        def mc_forward(self, x, rng):
            return x * rng.keep_mask(x.shape[1:], 0.5, x.dtype) * 2

    register_stochastic(NoRate)
    try:
        assert stochastic_rate(NoRate()) is None
        mc_predict(nn.Sequential(nn.Linear(3, 3), NoRate(), nn.Linear(3, 2)), torch.randn(2, 3), 2)
    finally:
        unregister_stochastic(NoRate)
    assert stochastic_rate(nn.Dropout(0.3)) == 0.3
    with pytest.raises(KeyError, match="Linear"):
        stochastic_rate(nn.Linear(2, 2))


def test_register_rejects_a_rate_that_is_not_callable():
    with pytest.raises(TypeError, match="`rate`"):
        register_stochastic(DropProb, rate=0.5)
    assert DropProb not in stochastic_registry()


def test_no_regularization_hook_left():
    import lightning_bestpractices.uncertainty.stochastic as stochastic

    assert not hasattr(stochastic, "_register_package_modules")
