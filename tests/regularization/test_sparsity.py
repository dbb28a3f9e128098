"""Sparsity measure, and L1 + max-norm composing with Lightning's ModelPruning."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.utils.prune as prune
from conftest import SCRIPTS
from lightning.pytorch.callbacks import ModelPruning
from torch import nn

from lightning_bestpractices.regularization import (
    MaxNorm,
    WeightPenalty,
    max_norm_targets,
    sparsity,
    unit_norms,
)
from lightning_bestpractices.regularization.sparsity import effective_weights

_spec = importlib.util.spec_from_file_location("ddp_regularization", SCRIPTS / "ddp_regularization.py")
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)


def test_sparsity_counts_the_masked_weight_and_skips_biases():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 10), nn.LayerNorm(10), nn.Linear(10, 10))
    with torch.no_grad():
        net[0].bias.zero_()  # biases are not counted even when zero
    assert sparsity(net) == 0.0
    prune.l1_unstructured(net[0], "weight", amount=50)
    assert sparsity(net) == pytest.approx(50 / 200)
    assert [n for n, _ in effective_weights(net)] == ["0.weight", "2.weight"]
    with pytest.raises(ValueError, match="`threshold` must be a number > 0, got 0"):
        sparsity(net, 0)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_l1_and_max_norm_compose_with_model_pruning(precision):
    model = script.Net(lr=0.5)
    pruning = ModelPruning("l1_unstructured", amount=0.5, parameter_names=["weight"],
                           use_lottery_ticket_hypothesis=False, make_pruning_permanent=False)  # fmt: skip
    cb = MaxNorm(0.8)
    t = script.trainer(1, precision, [WeightPenalty(1e-2), cb, pruning], max_epochs=3, max_steps=-1)
    t.fit(model, script.loader(batch_size=12))
    lin = model.net[4]
    assert hasattr(lin, "weight_orig") and hasattr(lin, "weight_mask")
    # pruned entries stay exactly zero in the weight the layer uses (penalty and max-norm act on weight_orig)
    assert bool((lin.weight[lin.weight_mask == 0] == 0).all())
    assert sparsity(model) >= 0.5 ** 0 - 0.5 ** 3 - 1e-6  # three epochs of pruning half the rest: 87.5%
    assert cb.applied_steps == t.global_step
    assert max(float(unit_norms(w).max()) for _, w in max_norm_targets(model)) <= 0.8 * (1 + 1e-6)
