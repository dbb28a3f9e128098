"""Activation checkpointing of chosen blocks: same gradients and BN statistics, less saved activation memory."""

from __future__ import annotations

import copy
import importlib.util
import pickle

import pytest
import torch
from conftest import SCRIPTS
from torch import nn

from lightning_bestpractices.regularization import (
    checkpoint_blocks,
    checkpointed_blocks,
    remove_checkpointing,
)

_spec = importlib.util.spec_from_file_location("ddp_regularization", SCRIPTS / "ddp_regularization.py")
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc1, self.bn, self.drop, self.fc2 = nn.Linear(width, 4 * width), nn.BatchNorm1d(4 * width), \
            nn.Dropout(0.3), nn.Linear(4 * width, width)  # fmt: skip

    def forward(self, x, scale: float = 1.0):
        return x + scale * self.fc2(self.drop(torch.relu(self.bn(self.fc1(x)))))


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), Block(16), Block(16), nn.Linear(16, 2)).train()


def run(net: nn.Module, autocast: bool = False) -> tuple[dict, dict, int]:
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(1))
    saved = [0]

    def pack(t):
        saved[0] += t.numel() * t.element_size()
        return t

    torch.manual_seed(5)  # dropout masks
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = net(x).float().pow(2).mean()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters()}
    return grads, {n: b.clone() for n, b in net.named_buffers()}, saved[0]


@pytest.mark.parametrize("autocast", [False, True])
@pytest.mark.parametrize("how", [{"types": [Block]}, {"names": ["1", "2"]}, {"names": ["1"], "types": [Block]}])
def test_exact_gradients_and_statistics(how, autocast):
    g0, b0, saved0 = run(model(), autocast)
    net = model()
    assert checkpoint_blocks(net, **how) in (["1", "2"], ["1"])
    g1, b1, saved1 = run(net, autocast)
    for k in g0:
        assert torch.equal(g0[k], g1[k]), k
    for k in b0:  # BN running stats updated once, not twice
        assert torch.equal(b0[k], b1[k]), k
    assert saved1 < saved0


def test_blocks_are_recomputed_in_backward_only_in_training():
    net = model()
    calls = []
    net[1].fc1.register_forward_hook(lambda *a: calls.append(1))
    checkpoint_blocks(net, types=[Block])
    run(net)
    assert len(calls) == 2, "forward + recompute"
    calls.clear()
    net.eval()
    net(torch.randn(3, 8)).sum().backward()
    assert len(calls) == 1
    calls.clear()
    net.train()
    with torch.no_grad():
        net(torch.randn(3, 8))
    assert len(calls) == 1


def test_keyword_arguments_nested_blocks_and_undo():
    net = model()
    keys = list(net.state_dict())
    assert checkpoint_blocks(net, names=["1", "1.fc1"], types=[nn.Linear]) == ["0", "1", "2.fc1", "2.fc2", "3"]
    assert list(net.state_dict()) == keys
    y = net[1](torch.randn(4, 16), scale=0.5)
    y.sum().backward()
    copy.deepcopy(net)(torch.randn(4, 8)).sum().backward()
    restored = pickle.loads(pickle.dumps(net))
    assert checkpointed_blocks(restored) == ["0", "1", "2.fc1", "2.fc2", "3"]
    assert remove_checkpointing(net) == ["0", "1", "2.fc1", "2.fc2", "3"] and checkpointed_blocks(net) == []
    assert "forward" not in net[1].__dict__


def test_bad_arguments():
    net = model()
    with pytest.raises(ValueError, match=r"`names` \['9'\] match no submodule of Sequential"):
        checkpoint_blocks(net, names=["9"])
    with pytest.raises(ValueError, match=r"`types` \['Conv2d'\] match no submodule"):
        checkpoint_blocks(net, types=[nn.Conv2d])
    with pytest.raises(ValueError, match="`names` or `types` must choose"):
        checkpoint_blocks(net)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_lightning_training_unchanged(precision):
    res = script.checkpointing_pair(1, precision)
    for k in res["plain"]:
        assert torch.equal(res["plain"][k], res["ckpt"][k]), k
