"""Frozen BatchNorm: normalize with the running statistics in training as in eval, never update them.

What this adds over ``torchvision.ops.FrozenBatchNorm2d``:

* 1d, 2d and 3d inputs (anything shaped ``(N, C, *)``), one class for all;
* the affine ``weight``/``bias`` stay :class:`~torch.nn.Parameter` objects, and ``train_affine=True`` lets them
  learn (torchvision turns them into buffers);
* :func:`freeze_batchnorm` / :func:`unfreeze_batchnorm` convert whole models both ways, including
  ``SyncBatchNorm``, and move the *same* Parameter and buffer objects between the modules, so an optimizer built
  before the conversion still holds the live parameters and the state dict keys do not change.

Why not just ``bn.eval()``: Lightning calls ``model.train()`` at the start of every training epoch, which puts
every BatchNorm back into batch-statistics mode; a :class:`FrozenBatchNorm` has no such mode.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from lightning_bestpractices.errors import ArgumentError

__all__ = ["FrozenBatchNorm", "freeze_batchnorm", "unfreeze_batchnorm"]


class FrozenBatchNorm(nn.Module):
    """BatchNorm that always uses its running statistics; its buffers never change.

    ``y = (x - running_mean) / sqrt(running_var + eps) * weight + bias`` over channel dim 1, for inputs of shape
    ``(N, C)``, ``(N, C, L)``, ``(N, C, H, W)`` or ``(N, C, D, H, W)``, whatever ``model.train()``/``eval()`` says.
    The arithmetic is done in float32 (also under ``bf16-mixed`` autocast).

    Args:
        num_features: number of channels ``C``.
        eps: added to the variance, as in BatchNorm.
        affine: whether there are ``weight``/``bias`` parameters.
        train_affine: whether ``weight``/``bias`` require gradients.
        momentum: kept only so :func:`unfreeze_batchnorm` can rebuild the original BatchNorm.
        original_cls: the BatchNorm class :func:`unfreeze_batchnorm` converts back to.

    Examples:
        >>> bn = nn.BatchNorm1d(3).eval()
        >>> frozen = FrozenBatchNorm.from_batchnorm(bn)
        >>> x = torch.randn(4, 3)
        >>> torch.allclose(frozen.train()(x), bn(x), atol=1e-6)
        True
        >>> frozen.weight is bn.weight, frozen.weight.requires_grad
        (True, False)
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        *,
        affine: bool = True,
        train_affine: bool = False,
        momentum: float | None = 0.1,
        original_cls: type[_BatchNorm] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if not isinstance(num_features, int) or isinstance(num_features, bool) or num_features < 1:
            raise ArgumentError(f"`num_features` must be a positive int, got {num_features!r}")
        if not eps > 0:
            raise ArgumentError(f"`eps` must be > 0, got {eps!r}")
        if not (isinstance(original_cls, type) and issubclass(original_cls, _BatchNorm)):
            raise ArgumentError(f"`original_cls` must be a BatchNorm class, got {original_cls!r}")
        self.num_features = num_features
        self.eps = float(eps)
        self.affine = affine
        self.train_affine = train_affine
        self.momentum = momentum
        self.original_cls = original_cls
        self._original_requires_grad: tuple[bool, bool] | None = None
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features), requires_grad=train_affine)
            self.bias = nn.Parameter(torch.zeros(num_features), requires_grad=train_affine)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    @classmethod
    def from_batchnorm(cls, bn: _BatchNorm, *, train_affine: bool = False) -> FrozenBatchNorm:
        """Build a frozen copy of ``bn`` that *shares* its parameter and buffer objects (no data is copied)."""
        if not isinstance(bn, _BatchNorm):
            raise ArgumentError(f"`bn` must be a BatchNorm module, got {type(bn).__name__}")
        if bn.running_mean is None or bn.running_var is None:
            raise ArgumentError(
                f"cannot freeze {bn!r}: it has `track_running_stats=False`, so there are no running statistics"
            )
        if isinstance(bn.weight, nn.parameter.UninitializedParameter):
            raise ArgumentError(f"cannot freeze {bn!r}: it is a lazy module that has not run yet")
        original_cls = type(bn)
        frozen = cls(
            bn.num_features,
            bn.eps,
            affine=bn.affine,
            train_affine=train_affine,
            momentum=bn.momentum,
            original_cls=original_cls,
        )
        if bn.affine:
            frozen._original_requires_grad = (bn.weight.requires_grad, bn.bias.requires_grad)
            frozen.weight = bn.weight
            frozen.bias = bn.bias
            frozen.weight.requires_grad_(train_affine)
            frozen.bias.requires_grad_(train_affine)
        frozen.running_mean = bn.running_mean
        frozen.running_var = bn.running_var
        if bn.num_batches_tracked is not None:
            frozen.num_batches_tracked = bn.num_batches_tracked
        frozen.train(bn.training)
        return frozen

    def to_batchnorm(self) -> _BatchNorm:
        """The BatchNorm this module was frozen from (same class), sharing this module's parameters and buffers."""
        cls = self.original_cls
        kwargs = {"eps": self.eps, "momentum": self.momentum, "affine": self.affine}
        bn = cls(self.num_features, **kwargs)
        if self.affine:
            bn.weight = self.weight
            bn.bias = self.bias
            if self._original_requires_grad is not None:
                bn.weight.requires_grad_(self._original_requires_grad[0])
                bn.bias.requires_grad_(self._original_requires_grad[1])
            else:
                bn.weight.requires_grad_(True)
                bn.bias.requires_grad_(True)
        bn.running_mean = self.running_mean
        bn.running_var = self.running_var
        bn.num_batches_tracked = self.num_batches_tracked
        bn.train(self.training)
        return bn

    def scale_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel ``(scale, shift)`` in float32 such that ``y = x * scale + shift``."""
        scale = torch.rsqrt(self.running_var.float() + self.eps)
        shift = -self.running_mean.float() * scale
        if self.affine:
            scale = scale * self.weight.float()
            shift = shift * self.weight.float() + self.bias.float()
        return scale, shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or x.shape[1] != self.num_features:
            raise ArgumentError(
                f"FrozenBatchNorm({self.num_features}) expects input of shape (N, {self.num_features}, *), "
                f"got {tuple(x.shape)}"
            )
        scale, shift = self.scale_shift()
        view = (1, -1) + (1,) * (x.dim() - 2)
        return x * scale.view(view) + shift.view(view)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, affine={self.affine}, train_affine={self.train_affine}, "
            f"original_cls={self.original_cls.__name__}"
        )


def freeze_batchnorm(module: nn.Module, *, train_affine: bool = False) -> nn.Module:
    """Replace, in place, every BatchNorm1d/2d/3d and SyncBatchNorm in ``module`` by a :class:`FrozenBatchNorm`.

    The new modules share the old ones' Parameter and buffer objects, so optimizers and state dict keys are
    unaffected. Returns ``module`` (or the replacement, if ``module`` itself is a BatchNorm).

    Examples:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
        >>> net = freeze_batchnorm(net)
        >>> type(net[1]).__name__
        'FrozenBatchNorm'
        >>> type(unfreeze_batchnorm(net)[1]).__name__
        'BatchNorm2d'
    """
    if not isinstance(module, nn.Module):
        raise ArgumentError(f"`module` must be an nn.Module, got {type(module).__name__}")
    if isinstance(module, _BatchNorm):
        return FrozenBatchNorm.from_batchnorm(module, train_affine=train_affine)
    for name, child in list(module.named_children()):
        if isinstance(child, _BatchNorm):
            setattr(module, name, FrozenBatchNorm.from_batchnorm(child, train_affine=train_affine))
        else:
            freeze_batchnorm(child, train_affine=train_affine)
    return module


def unfreeze_batchnorm(module: nn.Module) -> nn.Module:
    """Undo :func:`freeze_batchnorm`: every :class:`FrozenBatchNorm` goes back to its original BatchNorm class.

    Statistics, parameters (the same objects) and their original ``requires_grad`` flags are restored. Returns
    ``module`` (or the replacement, if ``module`` itself is a :class:`FrozenBatchNorm`).
    """
    if not isinstance(module, nn.Module):
        raise ArgumentError(f"`module` must be an nn.Module, got {type(module).__name__}")
    if isinstance(module, FrozenBatchNorm):
        return module.to_batchnorm()
    for name, child in list(module.named_children()):
        if isinstance(child, FrozenBatchNorm):
            setattr(module, name, child.to_batchnorm())
        else:
            unfreeze_batchnorm(child)
    return module
