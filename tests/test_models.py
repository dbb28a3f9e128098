import math

import pytest
import torch
from torch import nn

from lightning_bestpractices.models import MLP, SmallCNN


def test_mlp_block_structure_and_init():
    torch.manual_seed(0)
    net = MLP(2, [512, 256], 64, dropout=0.3)  # fan_out 64: Xavier, Kaiming and LeCun stds differ by >= 10%
    kinds = [type(m).__name__ for m in net.net]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Dropout"] * 2 + ["Linear"]
    first, second, out = (m for m in net.net if isinstance(m, nn.Linear))
    # Kaiming normal, fan-in, ReLU gain: std = sqrt(2 / fan_in)
    assert second.weight.std().item() == pytest.approx(math.sqrt(2 / 512), rel=0.05)
    # Xavier normal: std = sqrt(2 / (fan_in + fan_out)) = 0.079; Kaiming would give 0.088, LeCun 0.0625. With
    # 16384 weights the sample std is within 1.5% of its value (3 standard errors), so rel=0.03 tells them apart.
    xavier, kaiming, lecun = math.sqrt(2 / (256 + 64)), math.sqrt(2 / 256), math.sqrt(1 / 256)
    assert out.weight.std().item() == pytest.approx(xavier, rel=0.03)
    assert out.weight.std().item() != pytest.approx(kaiming, rel=0.03)
    assert out.weight.std().item() != pytest.approx(lecun, rel=0.03)
    assert all(float(m.bias.abs().max()) == 0 for m in (first, second, out))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"hidden": []}, r"`hidden` must list at least one width, got \[\]"),
        ({"dropout": 1.0}, r"`dropout` must be in \[0, 1\), got 1.0"),
        ({"dropout": -0.1}, r"`dropout` must be in \[0, 1\), got -0.1"),
        ({"norm": "weird"}, r"`norm` must be one of .*got 'weird'"),
    ],
)
def test_mlp_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLP(**kwargs)


def test_mlp_no_dropout_module_when_zero_and_cnn_shapes():
    assert not any(isinstance(m, nn.Dropout) for m in MLP(dropout=0.0).modules())
    cnn = SmallCNN(in_channels=1, num_classes=3, dropout=0.5)
    assert sum(isinstance(m, nn.Dropout) for m in cnn.head) == 2
    assert not any(isinstance(m, nn.Dropout) for m in cnn.features)
    assert cnn(torch.randn(4, 1, 28, 28)).shape == (4, 3)
