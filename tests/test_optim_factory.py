"""Optimizer registry, no-decay groups with LR multipliers, LAMB against a straightforward reference."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from lightning_bestpractices.optim import OPTIMIZERS, Lamb, create_optimizer, list_optimizers


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 2))


@pytest.mark.parametrize("name", list_optimizers())
def test_every_registry_entry_trains_and_keeps_groups(name):
    net = _net()
    opt = create_optimizer(net, name, lr=0.01, weight_decay=0.1, lr_multipliers={"3": 0.5})
    assert isinstance(opt, OPTIMIZERS[name].cls)
    by_name = {g["name"]: g for g in opt.param_groups}
    assert set(by_name) == {"3.decay", "3.no_decay", "decay", "no_decay"}
    assert by_name["3.decay"]["lr"] == pytest.approx(0.005) and by_name["decay"]["lr"] == pytest.approx(0.01)
    assert by_name["no_decay"]["weight_decay"] == 0.0 and by_name["decay"]["weight_decay"] == 0.1
    # every parameter exactly once; LayerNorm and biases without decay
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in net.parameters())
    assert {id(p) for p in by_name["no_decay"]["params"]} == {
        id(net[0].bias),
        id(net[1].weight),
        id(net[1].bias),
    }
    for k, v in OPTIMIZERS[name].defaults.items():
        assert by_name["decay"][k] == v
    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    before = nn.functional.cross_entropy(net(x), y).item()
    for _ in range(30):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    assert nn.functional.cross_entropy(net(x), y).item() < before


def test_create_by_class_and_from_explicit_groups():
    net = _net()
    opt = create_optimizer(net, torch.optim.SGD, lr=0.1, momentum=0.5)
    assert type(opt) is torch.optim.SGD and opt.param_groups[0]["momentum"] == 0.5
    groups = [{"params": net[0].parameters(), "name": "first", "lr_multiplier": 0.1},
              {"params": net[3].parameters()}]  # fmt: skip
    opt = create_optimizer(groups, "adam", lr=1.0, weight_decay=0.01)
    assert [(g["name"], g["lr"], g["weight_decay"]) for g in opt.param_groups] == [
        ("first", 0.1, 0.01),
        ("pg1", 1.0, 0.01),
    ]


def test_nested_multipliers_longest_prefix_wins():
    net = nn.Sequential(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)), nn.Linear(2, 1))
    opt = create_optimizer(net, "sgd", lr=1.0, lr_multipliers={"0": 0.1, "0.1": 0.5})
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == {"0.decay": 0.1, "0.no_decay": 0.1, "0.1.decay": 0.5, "0.1.no_decay": 0.5, "decay": 1.0,
                   "no_decay": 1.0}  # fmt: skip
    assert sum(len(g["params"]) for g in opt.param_groups) == 6


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "adamw2"}, "unknown optimizer 'adamw2'"),
        ({"name": 3}, "`name` must be a registry name or an Optimizer class, got 3"),
        ({"lr": -0.1}, r"`lr` must be >= 0, got -0.1"),
        ({"weight_decay": -1e-4}, r"`weight_decay` must be >= 0, got -0.0001"),
        ({"lr_multipliers": {"0": 0.0}}, r"`lr_multipliers\['0'\]` must be > 0, got 0.0"),
        ({"lr_multipliers": {"nope": 0.5}}, "`lr_multipliers` key 'nope' is not a submodule"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_optimizer(_net(), **{"name": "adamw", **kwargs})


def _reference_lamb(params, grads_per_step, lr, betas, eps, wd):
    """The seed's LAMB, written out per tensor with plain Python scalars for the trust ratio."""
    params = [p.detach().clone().double() for p in params]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    for t, grads in enumerate(grads_per_step, start=1):
        for i, (p, g) in enumerate(zip(params, grads)):
            g = g.double()
            m[i] = betas[0] * m[i] + (1 - betas[0]) * g
            v[i] = betas[1] * v[i] + (1 - betas[1]) * g * g
            m_hat = m[i] / (1 - betas[0] ** t)
            v_hat = v[i] / (1 - betas[1] ** t)
            update = m_hat / (v_hat.sqrt() + eps) + wd * p
            pn, un = float(p.norm()), float(update.norm())
            trust = pn / un if pn > 0 and un > 0 else 1.0
            params[i] = p - lr * trust * update
    return params


@pytest.mark.parametrize("wd", [0.0, 0.05])
def test_lamb_matches_reference_including_trust_ratio(wd):
    torch.manual_seed(1)
    params = [
        nn.Parameter(torch.randn(5, 3)),
        nn.Parameter(torch.randn(3) * 0.01),
        nn.Parameter(torch.zeros(4)),
    ]
    start = copy.deepcopy([p.detach() for p in params])
    opt = Lamb(params, lr=0.02, betas=(0.9, 0.99), eps=1e-6, weight_decay=wd)
    grads_per_step = [[torch.randn_like(p) for p in params] for _ in range(6)]
    for grads in grads_per_step:
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
    ref = _reference_lamb(start, grads_per_step, 0.02, (0.9, 0.99), 1e-6, wd)
    for p, r in zip(params, ref):
        torch.testing.assert_close(p.detach().double(), r, rtol=1e-5, atol=1e-6)
    # the zero-initialised tensor got trust ratio 1 on step 1 (||p|| = 0), then a real ratio
    assert params[2].detach().abs().sum() > 0
    # trust ratio makes the step size relative to the weight norm: same relative change for a scaled tensor
    a, b = nn.Parameter(torch.ones(10)), nn.Parameter(100 * torch.ones(10))
    opt = Lamb([a, b], lr=0.01, weight_decay=0.0)
    a.grad, b.grad = torch.ones(10), torch.ones(10)
    opt.step()
    torch.testing.assert_close((1 - a.detach()) / 1, (100 - b.detach()) / 100)


def test_lamb_bad_input_and_state_roundtrip():
    p = nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match=r"`betas` must be two numbers in \[0, 1\), got \(0.9, 1.0\)"):
        Lamb([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="`lr` must be >= 0, got -1"):
        Lamb([p], lr=-1)
    opt = Lamb([p], lr=0.1)
    p.grad = torch.ones(2)
    opt.step()
    clone = nn.Parameter(p.detach().clone())
    opt2 = Lamb([clone], lr=0.1)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))  # as from a checkpoint file: no shared tensors
    p.grad, clone.grad = torch.tensor([1.0, -2.0]), torch.tensor([1.0, -2.0])
    opt.step()
    opt2.step()
    assert torch.equal(p.detach(), clone.detach())
