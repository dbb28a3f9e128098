"""Small reference models used by the recipes (plain ``nn.Module``; no Lightning here).

Examples:
    >>> net = MLP(in_features=2, hidden=[64, 32], out_features=1, dropout=0.3)
    >>> net(torch.randn(5, 2)).shape
    torch.Size([5, 1])
    >>> [type(m).__name__ for m in net.net[:4]]
    ['Linear', 'BatchNorm1d', 'ReLU', 'Dropout']
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lightning_bestpractices.errors import ArgumentError

__all__ = ["MLP", "SmallCNN"]

_NORMS = {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm, "none": None}
_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh, "selu": nn.SELU}


def _check_dropout(dropout: float) -> None:
    if not 0 <= dropout < 1:
        raise ArgumentError(f"`dropout` must be in [0, 1), got {dropout!r}")


class MLP(nn.Module):
    """Blocks of Linear -> norm -> activation -> Dropout, then a linear output layer.

    Initialization follows the seed's "putting it all together" network: Kaiming-normal (fan-in, ReLU gain) for the
    hidden layers, Xavier-normal for the output layer, zero biases.

    Args:
        in_features: input width.
        hidden: hidden widths, at least one (e.g. ``[64, 32]``).
        out_features: output width (1 for a binary logit).
        dropout: dropout probability after each hidden activation, in [0, 1); 0 adds no Dropout module.
        norm: ``"batch"``, ``"layer"`` or ``"none"``.
        activation: ``"relu"``, ``"gelu"``, ``"silu"``, ``"tanh"`` or ``"selu"``.
    """

    def __init__(
        self,
        in_features: int = 2,
        hidden: Sequence[int] = (64, 32),
        out_features: int = 1,
        dropout: float = 0.3,
        norm: str = "batch",
        activation: str = "relu",
    ) -> None:
        super().__init__()
        hidden = list(hidden)
        if not hidden:
            raise ArgumentError(f"`hidden` must list at least one width, got {hidden!r}")
        if any(int(h) < 1 for h in hidden):
            raise ArgumentError(f"`hidden` widths must be >= 1, got {hidden!r}")
        _check_dropout(dropout)
        if norm not in _NORMS:
            raise ArgumentError(f"`norm` must be one of {sorted(_NORMS)}, got {norm!r}")
        if activation not in _ACTIVATIONS:
            raise ArgumentError(f"`activation` must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers.append(nn.Linear(width, h))
            if _NORMS[norm] is not None:
                layers.append(_NORMS[norm](h))
            layers.append(_ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, out_features))
        self.net = nn.Sequential(*layers)
        self.activation = activation
        self.reset_parameters()

    def reset_parameters(self) -> None:
        linears = [m for m in self.net if isinstance(m, nn.Linear)]
        for layer in linears[:-1]:
            nonlinearity = "relu" if self.activation in ("relu", "gelu", "silu") else self.activation
            if nonlinearity == "selu":
                nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="linear")
            else:
                nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity=nonlinearity)
            nn.init.zeros_(layer.bias)
        nn.init.xavier_normal_(linears[-1].weight)
        nn.init.zeros_(linears[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class SmallCNN(nn.Module):
    """A small CNN: ``features`` (conv -> BN -> ReLU blocks with pooling) and an MLP ``head`` with dropout.

    The split into ``features`` and ``head`` is what transfer learning freezes and what MC dropout caches.

    Args:
        in_channels: image channels (1 for digits/MNIST).
        num_classes: output classes.
        channels: conv widths; each block halves the spatial size after its first layer.
        hidden: width of the head's hidden layer.
        dropout: dropout probability in the head (two Dropout layers), in [0, 1).

    Examples:
        >>> SmallCNN(in_channels=1, num_classes=10)(torch.randn(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        channels: Sequence[int] = (32, 64),
        hidden: int = 128,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        channels = list(channels)
        if not channels:
            raise ArgumentError(f"`channels` must list at least one width, got {channels!r}")
        _check_dropout(dropout)
        blocks: list[nn.Module] = []
        width = in_channels
        for i, c in enumerate(channels):
            blocks += [nn.Conv2d(width, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
            if i < len(channels) - 1:
                blocks.append(nn.MaxPool2d(2))
            width = c
        blocks += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(width, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
