"""fold_batchnorm's in-place audit: a BN after an in-place change of the conv output is kept, not folded wrong."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_bestpractices.normalization import fold_batchnorm


def _randomize(model: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g))
    return model.eval()


class ReluOwnConv(nn.Conv2d):
    """A conv whose own forward changes its output in place: the call's output is not the conv's result."""

    def forward(self, x):
        return super().forward(x).relu_()


class Net(nn.Module):
    def __init__(self, pattern: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.pattern = pattern
        self.conv = ReluOwnConv(3, 4, 3) if pattern == "inside_conv" else nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        h = self.conv(x)
        if self.pattern == "relu_":
            h.relu_()
        elif self.pattern == "iadd":
            h += 1.0
        elif self.pattern == "index":
            h[:, 0] = 0.0
        elif self.pattern == "view":
            h[:, 1:3].mul_(-2.0)
        elif self.pattern == "data":
            h.data.mul_(-2.0)
        elif self.pattern == "module":
            self.act(h)
        y = self.bn(h)
        if self.pattern == "after_bn":
            h.add_(1.0)  # the folded conv's output *is* the BN output: this would change y
        return self.act(y)  # in place on the BN output: still foldable


@pytest.mark.parametrize(
    "pattern", ["relu_", "iadd", "index", "view", "data", "module", "inside_conv", "after_bn"]
)
def test_bn_after_an_inplace_change_of_the_conv_output_is_kept(pattern):
    model = _randomize(Net(pattern))
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = model(x.clone())
    folded, report = fold_batchnorm(model, x.clone())
    assert report.folded == [] and [bn for bn, _ in report.skipped] == ["bn"], report
    with torch.no_grad():
        torch.testing.assert_close(folded(x.clone()), expected, rtol=0, atol=1e-5)


def test_inplace_only_on_the_bn_output_still_folds_and_matches():
    model = _randomize(Net("none"))
    x = torch.randn(2, 3, 8, 8)
    folded, report = fold_batchnorm(model, x)
    assert report.folded == [("conv", "bn")]
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=0, atol=1e-5)


def test_reason_names_the_inplace_op():
    _, report = fold_batchnorm(_randomize(Net("inside_conv")), torch.randn(1, 3, 8, 8))
    assert "changed in place by `relu_`" in report.skipped[0][1]
