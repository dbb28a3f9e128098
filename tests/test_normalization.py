from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_bestpractices import normalization as N
from lightning_bestpractices.normalization import (
    FrozenBatchNorm,
    batchnorm_to_groupnorm,
    batchnorm_to_syncbn,
    fold_batchnorm,
    freeze_batchnorm,
    is_norm,
    no_decay_parameters,
    param_groups,
    register_norm,
    unfreeze_batchnorm,
)


# ------------------------------------------------------------------------------------------------ param groups
@register_norm
class _ScaleNorm(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return self.gain * x / x.norm(dim=-1, keepdim=True).clamp_min(1e-6)


class _Oddities(nn.Module):
    """Parameters whose *names* look like norm/bias params but that must still decay."""

    def __init__(self) -> None:
        super().__init__()
        self.bias_scale = nn.Parameter(torch.ones(3))  # not a bias: only the name starts with "bias"
        self.norm_weight = nn.Parameter(torch.ones(3))  # not a norm: owner is not a norm module


class _EveryNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn1 = nn.BatchNorm1d(4)
        self.bn2 = nn.BatchNorm2d(4)
        self.bn3 = nn.BatchNorm3d(4)
        self.sbn = nn.SyncBatchNorm(4)
        self.ln = nn.LayerNorm(4)
        self.gn = nn.GroupNorm(2, 4)
        self.in1 = nn.InstanceNorm1d(4, affine=True)
        self.in2 = nn.InstanceNorm2d(4, affine=True)
        self.in3 = nn.InstanceNorm3d(4, affine=True)
        self.rms = nn.RMSNorm(4)
        self.frozen = FrozenBatchNorm(4, train_affine=True)
        self.custom = _ScaleNorm(4)
        self.lin = nn.Linear(4, 4, bias=False)
        self.emb = nn.Embedding(10, 4)
        self.gru = nn.GRU(4, 4)
        self.attn = nn.MultiheadAttention(4, 2)
        self.head = nn.Linear(4, 10)
        self.head.weight = self.emb.weight  # tied: must appear once
        self.odd = _Oddities()
        self.pos_embed = nn.Parameter(torch.zeros(1, 4))
        self.cls_token = nn.Parameter(torch.zeros(1, 4))
        self.frozen_lin = nn.Linear(4, 4)
        self.frozen_lin.requires_grad_(False)

    def no_weight_decay(self):
        return {"pos_embed"}


EXPECTED_DECAY = {
    "conv.weight",
    "lin.weight",
    "emb.weight",
    "gru.weight_ih_l0",
    "gru.weight_hh_l0",
    "attn.in_proj_weight",
    "attn.out_proj.weight",
    "odd.bias_scale",
    "odd.norm_weight",
    "frozen_lin.weight",
}
EXPECTED_NO_DECAY = {
    "conv.bias",
    *(
        f"{m}.{p}"
        for m in ("bn1", "bn2", "bn3", "sbn", "ln", "gn", "in1", "in2", "in3", "frozen")
        for p in ("weight", "bias")
    ),
    "rms.weight",
    "custom.gain",
    "gru.bias_ih_l0",
    "gru.bias_hh_l0",
    "attn.in_proj_bias",
    "attn.out_proj.bias",
    "head.bias",
    "pos_embed",
    "cls_token",
    "frozen_lin.bias",
}


def _names(module, params):
    by_id = {id(p): n for n, p in module.named_parameters()}
    return [by_id[id(p)] for p in params]


def test_param_groups_match_hand_listed_sets_for_every_norm_type():
    model = _EveryNorm()
    groups = param_groups(model, 0.1, skip=("cls_token",), prefix="backbone/")
    assert [g["name"] for g in groups] == ["backbone/decay", "backbone/no_decay"]
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    decay, no_decay = (_names(model, g["params"]) for g in groups)
    assert len(decay) == len(set(decay)) and len(no_decay) == len(set(no_decay))
    assert set(decay) == EXPECTED_DECAY
    assert set(no_decay) == EXPECTED_NO_DECAY
    # every parameter is in exactly one group, frozen ones included
    assert len(decay) + len(no_decay) == len(list(model.parameters()))
    # the groups are accepted by a real optimizer
    torch.optim.AdamW(groups, lr=1e-3)


def test_no_decay_is_by_identity_and_type_not_by_value():
    model = _EveryNorm()
    with torch.no_grad():  # give a decayed weight exactly the values of a norm weight: must not matter
        model.lin.weight.fill_(1.0)
        model.odd.norm_weight.fill_(1.0)
    ids = no_decay_parameters(model, skip=("cls_token",))
    assert id(model.lin.weight) not in ids and id(model.odd.norm_weight) not in ids
    assert id(model.ln.weight) in ids


def test_skip_prefix_covers_submodule_and_empty_group_dropped():
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False))
    groups = param_groups(model, 0.01, skip=("1",))
    assert [(g["name"], _names(model, g["params"])) for g in groups] == [
        ("decay", ["0.weight"]),
        ("no_decay", ["1.weight"]),
    ]
    only_norm = nn.LayerNorm(3)
    assert [g["name"] for g in param_groups(only_norm, 0.01)] == ["no_decay"]


def test_register_norm_updates_registry():
    @register_norm
    class _MyNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(2))

    assert _MyNorm in N.NORM_TYPES and _MyNorm in N.norm_types() and is_norm(_MyNorm())
    assert _MyNorm in N.groups.NORM_TYPES
    assert no_decay_parameters(_MyNorm()) != set()


@pytest.mark.parametrize("wd", [-0.1, math.nan, math.inf, True, "0.1", None])
def test_param_groups_rejects_bad_weight_decay(wd):
    with pytest.raises(ValueError, match="`weight_decay`"):
        param_groups(nn.Linear(2, 2), wd)


def test_param_groups_rejects_unknown_skip_name():
    with pytest.raises(ValueError, match=r"`skip` name 'encoder\.wieght'"):
        param_groups(nn.Linear(2, 2), 0.1, skip=("encoder.wieght",))


def test_register_norm_rejects_non_module():
    with pytest.raises(TypeError, match="`cls`"):
        register_norm(int)


# ------------------------------------------------------------------------------------------------ frozen BN
def _warm(bn: nn.Module, shape) -> None:
    bn.train()
    for _ in range(3):
        bn(torch.randn(*shape) * 3 + 1)
    with torch.no_grad():
        if bn.affine:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-1, 1)


@pytest.mark.parametrize(
    "cls,shape",
    [
        (nn.BatchNorm1d, (8, 5)),
        (nn.BatchNorm1d, (8, 5, 7)),
        (nn.BatchNorm2d, (8, 5, 4, 4)),
        (nn.BatchNorm3d, (8, 5, 3, 3, 3)),
        (nn.SyncBatchNorm, (8, 5, 4, 4)),
    ],
)
def test_frozen_matches_eval_bn_and_roundtrips(cls, shape):
    bn = cls(5)
    if cls is nn.SyncBatchNorm:  # SyncBatchNorm needs a process group to train; set stats directly
        with torch.no_grad():
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 1.5)
    else:
        _warm(bn, shape)
    params = (bn.weight, bn.bias)
    buffers = {f"0.{k}": v.clone() for k, v in bn.state_dict().items()}
    x = torch.randn(*shape)
    expected = bn.eval()(x)

    model = nn.Sequential(bn)
    freeze_batchnorm(model)
    frozen = model[0]
    assert isinstance(frozen, FrozenBatchNorm) and frozen.original_cls is cls
    assert frozen.weight is params[0] and frozen.bias is params[1]
    assert not frozen.weight.requires_grad
    for mode in (True, False):
        torch.testing.assert_close(model.train(mode)(x), expected, rtol=0, atol=1e-5)
    assert model.state_dict().keys() == buffers.keys()  # checkpoints stay interchangeable
    for k, v in model.state_dict().items():
        assert torch.equal(v, buffers[k])

    unfreeze_batchnorm(model)
    back = model[0]
    assert type(back) is cls and back.weight is params[0] and back.weight.requires_grad
    torch.testing.assert_close(back.eval()(x), expected)


def test_freeze_keeps_optimizer_working_and_train_affine_optional():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    _warm(net[1], (16, 4))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    freeze_batchnorm(net, train_affine=True)
    before = net[1].weight.detach().clone()
    mean_before = net[1].running_mean.clone()
    net.train()(torch.randn(16, 3)).pow(2).sum().backward()
    opt.step()
    assert not torch.equal(net[1].weight, before)  # the optimizer built before freezing still updates it
    assert torch.equal(net[1].running_mean, mean_before)


def test_freeze_rejects_bn_without_running_stats_and_bad_input():
    with pytest.raises(ValueError, match="track_running_stats=False"):
        freeze_batchnorm(nn.Sequential(nn.BatchNorm2d(3, track_running_stats=False)))
    with pytest.raises(ValueError, match=r"expects input of shape \(N, 3, \*\), got \(2, 4\)"):
        FrozenBatchNorm(3)(torch.randn(2, 4))
    with pytest.raises(ValueError, match="`num_features`"):
        FrozenBatchNorm(0)


class _FrozenNet(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16, 6),
            nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 1),
        )  # fmt: skip

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(param_groups(self, 1e-4), lr=0.05)


@pytest.mark.parametrize("train_affine,precision", [(True, "32-true"), (False, "bf16-mixed")])
def test_frozen_bn_invariants_after_trainer_fit(train_affine, precision):
    torch.manual_seed(0)
    model = _FrozenNet()
    # give the BNs non-trivial statistics first, then freeze
    model.net.train()(torch.randn(64, 2, 4, 4) * 2 + 0.5)
    freeze_batchnorm(model, train_affine=train_affine)
    frozen = [m for m in model.modules() if isinstance(m, FrozenBatchNorm)]
    assert len(frozen) == 2
    buffers = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    affine = {
        n: p.detach().clone() for n, p in model.named_parameters() if n.startswith(("net.1.", "net.5."))
    }
    data = TensorDataset(torch.randn(64, 2, 4, 4), torch.randn(64, 1))
    trainer = L.Trainer(
        max_epochs=3, accelerator="cpu", precision=precision, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, DataLoader(data, batch_size=16))
    assert model.training  # Lightning put the model back into train mode every epoch...
    assert all(isinstance(m, FrozenBatchNorm) for m in (model.net[1], model.net[5]))
    for k, v in model.state_dict().items():  # ...and still no buffer changed
        if k in buffers:
            assert torch.equal(v, buffers[k]), k
    changed = {n: not torch.equal(p.detach(), affine[n]) for n, p in model.named_parameters() if n in affine}
    assert all(changed.values()) if train_affine else not any(changed.values())
    x = torch.randn(8, 2, 4, 4)
    torch.testing.assert_close(model.net.train()(x), model.net.eval()(x))


# ------------------------------------------------------------------------------------------------ conversion
def test_batchnorm_to_groupnorm_and_syncbn():
    net = nn.Sequential(nn.Conv2d(3, 48, 3), nn.BatchNorm2d(48), nn.Conv2d(48, 7, 1), nn.BatchNorm2d(7))
    w = net[1].weight
    batchnorm_to_groupnorm(net, num_groups=32)
    assert isinstance(net[1], nn.GroupNorm) and net[1].num_groups == 24 and net[1].weight is w
    assert net[3].num_groups == 7
    net(torch.randn(1, 3, 5, 5))  # batch of 1 works: the point of GroupNorm
    with pytest.raises(ValueError, match="`num_groups`"):
        batchnorm_to_groupnorm(net, num_groups=0)

    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
    w = net[1].weight
    net = batchnorm_to_syncbn(net)
    assert isinstance(net[1], nn.SyncBatchNorm) and net[1].weight is w


# ------------------------------------------------------------------------------------------------ folding
def _randomize_bn(model: nn.Module) -> nn.Module:
    """Non-trivial statistics and affine params, so a wrong fold cannot pass by accident."""
    with torch.no_grad():
        for m in model.modules():
            if (
                isinstance(m, (nn.modules.batchnorm._BatchNorm, FrozenBatchNorm))
                and m.running_mean is not None
            ):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                if m.affine:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.3, 0.3)
    return model


def test_fold_resnet18_matches_within_1e5():
    import torchvision

    torch.manual_seed(0)
    model = _randomize_bn(torchvision.models.resnet18(weights=None)).eval()
    x = torch.randn(2, 3, 64, 64)
    folded, report = fold_batchnorm(model, x)
    assert len(report.folded) == 20 and report.skipped == []
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # not inplace: original untouched
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=0, atol=1e-5)
    assert "20 folded, 0 kept" in str(report)


def test_fold_recipe_models():
    from lightning_bestpractices.models import MLP, SmallCNN

    torch.manual_seed(0)
    for model, x, n in [
        (MLP(8, [16, 16], 3, dropout=0.2), torch.randn(4, 8), 2),
        (SmallCNN(1, 10, channels=(8, 16), hidden=16), torch.randn(4, 1, 8, 8), 2),
    ]:
        model = _randomize_bn(model).eval()
        folded, report = fold_batchnorm(model, x)
        assert len(report.folded) == n and not report.skipped, report
        with torch.no_grad():
            torch.testing.assert_close(folded(x), model(x), rtol=0, atol=1e-5)


class _Awkward(nn.Module):
    """Every case that must NOT fold, next to cases that must, including data-dependent control flow."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(3, 4, 3, padding=1)
        self.bn_a = nn.BatchNorm2d(4)  # folds
        self.conv_b = nn.Conv2d(4, 4, 3, padding=1)
        self.bn_b = nn.BatchNorm2d(4)  # conv_b output also used in a residual -> kept
        self.bn_c = nn.BatchNorm2d(4)  # follows a ReLU -> kept
        self.shared = nn.Conv2d(4, 4, 1)
        self.bn_d = nn.BatchNorm2d(4)  # shared conv runs twice -> kept
        self.bn_unused = nn.BatchNorm2d(4)  # never runs -> kept
        self.tconv = nn.ConvTranspose2d(4, 2, 2, stride=2)
        self.bn_t = FrozenBatchNorm(2, original_cls=nn.BatchNorm2d)  # folds (frozen BN too)
        self.lin3d = nn.Linear(2, 5)
        self.bn_l3 = nn.BatchNorm1d(16 * 16)  # Linear output is (N, L, C): kept
        self.lin = nn.Linear(16 * 16 * 5, 6)
        self.bn_l = nn.BatchNorm1d(6, affine=False)  # folds
        self.bn_nostats = nn.BatchNorm2d(3, track_running_stats=False)  # batch statistics even in eval: kept

    def forward(self, x):
        y = self.bn_a(self.conv_a(self.bn_nostats(x)))
        if y.mean() > -100:  # data-dependent control flow: torch.fx cannot trace this
            z = self.conv_b(y)
            y = self.bn_b(z) + z
        y = self.bn_c(torch.relu(y))
        y = self.bn_d(self.shared(self.shared(y)))
        y = self.bn_t(self.tconv(y))  # (N, 2, 16, 16)
        y = self.bn_l3(self.lin3d(y.flatten(2).transpose(1, 2)))  # (N, 256, 5)
        return self.bn_l(self.lin(y.flatten(1)))


def test_fold_reports_what_it_keeps_and_why():
    torch.manual_seed(0)
    model = _randomize_bn(_Awkward()).eval()
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        expected = model(x)
    folded, report = fold_batchnorm(model, x)
    assert sorted(report.folded) == sorted([("conv_a", "bn_a"), ("tconv", "bn_t"), ("lin", "bn_l")])
    why = dict(report.skipped)
    assert set(why) == {"bn_b", "bn_c", "bn_d", "bn_unused", "bn_l3", "bn_nostats"}
    assert "also used by" in why["bn_b"]
    assert "not the output of a Conv/Linear" in why["bn_c"]
    assert "runs 2 times" in why["bn_d"]
    assert "did not run" in why["bn_unused"]
    assert "not (N, C)" in why["bn_l3"]
    assert "no running statistics" in why["bn_nostats"]
    assert isinstance(folded.bn_b, nn.BatchNorm2d) and isinstance(folded.bn_a, nn.Identity)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), expected, rtol=0, atol=1e-5)


def test_fold_rejects_train_mode():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="eval mode, got model.training=True"):
        fold_batchnorm(net.train(), torch.randn(1, 3, 5, 5))
    net.eval()
    net[1].train()
    with pytest.raises(ValueError, match=r"BatchNorm in train mode: 1"):
        fold_batchnorm(net, torch.randn(1, 3, 5, 5))
