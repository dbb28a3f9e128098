"""Tests of lightning_bestpractices.finetuning: layer groups, schedule-preserving param groups, GradualUnfreezing.

DDP parity runs as one real 2-process launch (tests/scripts/ddp_finetuning.py); everything else is in-process.
"""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
import torchvision
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import nn
from torch.optim import lr_scheduler as S

from lightning_bestpractices.data import InMemoryDataModule
from lightning_bestpractices.finetuning import (
    FineTune,
    GradualUnfreezing,
    LayerGroupsMixin,
    add_param_group,
    drop_frozen_parameters,
    freeze_group,
    layer_groups,
    scale_group_lr,
    unfreeze_group,
)
from lightning_bestpractices.normalization import FrozenBatchNorm

QUIET = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)

# --- schedulers: every torch scheduler in the issue (+ two more), built on any optimizer --------------------------
TOTAL = 16  # optimizer steps in the Lightning runs below (4 epochs x 4 batches)

SCHEDULERS = {
    "StepLR": lambda o: S.StepLR(o, step_size=3, gamma=0.5),
    "MultiStepLR": lambda o: S.MultiStepLR(o, milestones=[3, 9], gamma=0.3),
    "ExponentialLR": lambda o: S.ExponentialLR(o, gamma=0.9),
    "CosineAnnealingLR": lambda o: S.CosineAnnealingLR(o, T_max=TOTAL, eta_min=1e-3),
    "CosineAnnealingWarmRestarts": lambda o: S.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2, eta_min=1e-3),
    "OneCycleLR": lambda o: S.OneCycleLR(o, max_lr=[g["lr"] for g in o.param_groups], total_steps=TOTAL),
    "LambdaLR": lambda o: S.LambdaLR(o, lambda step: 1.0 / (1.0 + step)),
    "LinearLR": lambda o: S.LinearLR(o, start_factor=0.1, total_iters=10),
    "SequentialLR": lambda o: S.SequentialLR(
        o,
        [S.LinearLR(o, start_factor=0.1, total_iters=3), S.CosineAnnealingLR(o, T_max=13, eta_min=1e-3)],
        [3],
    ),
    "ReduceLROnPlateau": lambda o: S.ReduceLROnPlateau(o, factor=0.5, patience=0, min_lr=1e-4),
    "CyclicLR": lambda o: S.CyclicLR(
        o,
        base_lr=[g["lr"] / 10 for g in o.param_groups],
        max_lr=[g["lr"] for g in o.param_groups],
        step_size_up=3,
    ),
    "ChainedScheduler": lambda o: S.ChainedScheduler(
        [S.ConstantLR(o, 0.5, total_iters=5), S.ExponentialLR(o, 0.9)]
    ),
}
PLATEAU_METRIC = [1.0 / (1 + (t % 3)) for t in range(64)]  # improves, stalls, ... (drives ReduceLROnPlateau)


def _reference_lrs(make, lrs: list[float], steps: int, plateau_every: int = 1) -> list[list[float]]:
    """LR used at each step by each group when all groups exist from the start (pure torch)."""
    params = [nn.Parameter(torch.zeros(1)) for _ in lrs]
    opt = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)], momentum=0.9)
    sched, out = make(opt), []
    for t in range(steps):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        if isinstance(sched, S.ReduceLROnPlateau):
            if (t + 1) % plateau_every == 0:
                sched.step(PLATEAU_METRIC[(t + 1) // plateau_every - 1])
        else:
            sched.step()
    return out


@pytest.mark.parametrize("join", [2, 7])
@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_add_param_group_follows_schedule(name, join):
    """A group added at step ``join`` has, from then on, exactly the LRs it would have had from the start."""
    make, scale = SCHEDULERS[name], 0.1
    ref = _reference_lrs(make, [0.5, 0.5 * scale], TOTAL)
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [a], "lr": 0.5}], momentum=0.9)
    sched = make(opt)
    for t in range(TOTAL):
        if t == join:
            assert add_param_group(opt, [b], lr_scale=scale, schedulers=[sched], name="new") == 1
            assert (
                opt.param_groups[1]["name"] == "new"
                and opt.param_groups[1]["momentum"] == opt.param_groups[0]["momentum"]
            )
        if t >= join:
            assert opt.param_groups[1]["lr"] == pytest.approx(ref[t][1], rel=1e-9), f"step {t}"
            assert opt.param_groups[0]["lr"] == pytest.approx(ref[t][0], rel=1e-9), f"step {t}"
            assert sched.get_last_lr() == [g["lr"] for g in opt.param_groups]
        opt.step()
        sched.step(PLATEAU_METRIC[t]) if isinstance(sched, S.ReduceLROnPlateau) else sched.step()
    if name == "OneCycleLR":  # momentum is cycled for the new group too
        assert opt.param_groups[1]["momentum"] == opt.param_groups[0]["momentum"]


@settings(max_examples=60, deadline=None)
@example(name="ReduceLROnPlateau", join=14, scale=0.25, like_second=False)  # joined below its floor once
@given(
    name=st.sampled_from(sorted(SCHEDULERS)),
    join=st.integers(0, TOTAL - 1),
    scale=st.floats(1e-3, 10.0),
    like_second=st.booleans(),
)
def test_add_param_group_property(name, join, scale, like_second):
    """Any scheduler, any join step, any scale, cloning either of two groups: the schedule-from-the-start LRs."""
    # The one documented inexact case (see finetuning.param_groups): a plateau group scaled above a reference that
    # already sits at the shared floor; torch keeps no reduction count to reconstruct it from.
    assume(not (name == "ReduceLROnPlateau" and scale > 1))
    make = SCHEDULERS[name]
    base = [0.5, 0.2]
    ref = _reference_lrs(make, [*base, base[like_second] * scale], TOTAL)
    params = [nn.Parameter(torch.zeros(1)) for _ in range(3)]
    opt = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, base)], momentum=0.9)
    sched = make(opt)
    for t in range(TOTAL):
        if t == join:
            add_param_group(opt, [params[2]], like=int(like_second), lr_scale=scale, schedulers=[sched])
        if t >= join:
            assert opt.param_groups[2]["lr"] == pytest.approx(ref[t][2], rel=1e-9, abs=1e-15), f"step {t}"
        opt.step()
        sched.step(PLATEAU_METRIC[t]) if isinstance(sched, S.ReduceLROnPlateau) else sched.step()


OUR_SPECS = {  # lightning_bestpractices.optim schedules (torch LRScheduler objects with per-group state)
    "constant": {"name": "constant"},
    "step": {"name": "step", "every": 4, "gamma": 0.5},
    "multistep": {"name": "multistep", "milestones": [5, 11], "gamma": 0.3},
    "exponential": {"name": "exponential", "final_lr": 0.01},
    "linear": {"name": "linear", "final_lr": 0.01},
    "cosine": {"name": "cosine", "warmup": 3, "final_lr": 0.01},
    "restarts": {"name": "restarts", "cycles": 2, "final_lr": 0.01},
    "onecycle": {"name": "onecycle", "final_lr": 1e-4},
    "plateau": {"name": "plateau", "patience": 0, "factor": 0.5, "final_lr": 0.01, "monitor": "x"},
}


def _our_schedule(spec):
    from lightning_bestpractices.optim import build_scheduler, count_optimizer_steps

    def make(opt):
        return build_scheduler(opt, spec, count_optimizer_steps(TOTAL, max_epochs=1))[0]["scheduler"]

    return make


@pytest.mark.parametrize("name", sorted(OUR_SPECS))
def test_add_param_group_follows_our_schedules(name):
    """Same contract for every schedule of ``lightning_bestpractices.optim`` (listed from its registry)."""
    from lightning_bestpractices.optim import list_schedules

    assert sorted(OUR_SPECS) == sorted(list_schedules())
    make, scale, join = _our_schedule(OUR_SPECS[name]), 0.1, 6
    ref = _reference_lrs(make, [0.5, 0.5 * scale], TOTAL)
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [a], "lr": 0.5}], momentum=0.9)
    sched = make(opt)
    for t in range(TOTAL):
        if t == join:
            add_param_group(opt, [b], lr_scale=scale, schedulers=[sched])
            assert opt.param_groups[1]["lr_multiplier"] == scale
        if t >= join:
            assert opt.param_groups[1]["lr"] == pytest.approx(ref[t][1], rel=1e-9), f"step {t}"
        opt.step()
        sched.step(PLATEAU_METRIC[t]) if isinstance(sched, S.ReduceLROnPlateau) else sched.step()


def test_scale_group_lr_scales_the_schedule():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = S.CosineAnnealingLR(opt, T_max=10, eta_min=0.01)
    ref = _reference_lrs(lambda o: S.CosineAnnealingLR(o, T_max=10, eta_min=0.01), [0.2], 10)
    for t in range(10):
        if t == 4:
            scale_group_lr(opt, 0, 0.2, schedulers=[sched])
        if t >= 4:
            assert opt.param_groups[0]["lr"] == pytest.approx(ref[t][0], rel=1e-9)
        opt.step()
        sched.step()


def test_param_group_bad_input():
    p, q = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1), requires_grad=False)
    opt = torch.optim.SGD([p, q], lr=0.1)
    with pytest.raises(ValueError, match="`lr_scale` must be a finite number > 0, got 0"):
        add_param_group(opt, [q], lr_scale=0)
    with pytest.raises(ValueError, match="`like` must index"):
        add_param_group(opt, [q], like=3)
    with pytest.raises(ValueError, match="`factor` must be a finite number > 0, got -1"):
        scale_group_lr(opt, 0, -1)
    assert drop_frozen_parameters(opt) == 1 and opt.param_groups[0]["params"] == [p]


# --- layer groups ----------------------------------------------------------------------------------------------


def test_layer_groups_auto_sequential_resnet_container_mixin():
    seq = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    assert [g.modules for g in layer_groups(seq)] == [("1",), ("3",), ("5",)]
    bn = nn.Sequential(
        nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2)
    )  # a norm joins its layer
    assert [g.modules for g in layer_groups(bn)] == [("0", "1"), ("3",)]
    wrapped = nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2)))  # looked through
    assert [g.modules for g in layer_groups(wrapped)] == [("1.0",), ("1.1",)]

    resnet = torchvision.models.resnet18(weights=None, num_classes=3)
    assert [g.name for g in layer_groups(resnet)] == ["stem", "layer1", "layer2", "layer3", "layer4", "fc"]
    assert layer_groups(resnet)[0].modules == ("conv1", "bn1")

    class Wrapper(nn.Module):  # a container: its Sequential backbone is expanded, the head stays one group
        def __init__(self):
            super().__init__()
            self.backbone = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8))
            self.head = nn.Linear(8, 2)

    assert [g.name for g in layer_groups(Wrapper())] == ["backbone.0", "backbone.2", "head"]

    class Declared(LayerGroupsMixin, Wrapper):
        def layer_groups(self):
            return [self.backbone, "head"]

    assert [g.name for g in layer_groups(Declared())] == ["backbone", "head"]


def test_layer_groups_explicit_patterns_and_head():
    resnet = torchvision.models.resnet18(weights=None)
    groups = layer_groups(resnet, groups=[["conv1", "bn1", "layer1"], "layer[23]", "layer4*"], head="fc")
    assert [g.modules for g in groups] == [
        ("conv1", "bn1", "layer1"),
        ("layer2", "layer3"),
        ("layer4",),
        ("fc",),
    ]
    # head named explicitly inside an automatic split: removed from the other groups, appended last
    seq = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2))
    assert [g.name for g in layer_groups(seq, head="1")] == ["0", "2", "1"]


def test_layer_groups_bad_input():
    seq = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(ValueError, match=r"`groups` entry 'encoder\.\*' matches no submodule"):
        layer_groups(seq, groups=["encoder.*", "2"])
    with pytest.raises(ValueError, match=r"`head` 'classifier' cannot be found"):
        layer_groups(seq, head="classifier")
    with pytest.raises(ValueError, match="need at least two layer groups"):
        layer_groups(nn.Sequential(nn.Linear(2, 2)))


def test_freeze_group_uses_frozen_batchnorm_and_round_trips():
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    weight = net[1].weight
    group = layer_groups(net, groups=[["0", "1"]], head="2")[0]
    freeze_group(net, group, train_bn_affine=True)
    assert isinstance(net[1], FrozenBatchNorm) and net[1].weight is weight
    assert weight.requires_grad and not net[0].weight.requires_grad
    keys = set(net.state_dict())
    unfreeze_group(net, group)
    assert isinstance(net[1], nn.BatchNorm1d) and net[1].weight is weight and net[0].weight.requires_grad
    assert set(net.state_dict()) == keys


# --- the callback, in-process ------------------------------------------------------------------------------------


class Body(L.LightningModule):
    """body (Linear, BatchNorm, Linear, Linear) + head; groups: backbone.0 (+ its BN), backbone.3, backbone.5, head."""

    def __init__(self, make_scheduler=None, interval: str = "step", optimizer: str = "sgd") -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Linear(6, 12),
            nn.BatchNorm1d(12),
            nn.ReLU(),
            nn.Linear(12, 12),
            nn.ReLU(),
            nn.Linear(12, 12),
            nn.ReLU(),
        )
        self.head = nn.Linear(12, 1)
        self.make_scheduler, self.interval, self.optimizer = make_scheduler, interval, optimizer

    def forward(self, x):
        return self.head(self.backbone(x))

    def training_step(self, batch, batch_idx):
        loss = nn.functional.mse_loss(self(batch[0]), batch[1])
        self.log("plateau", PLATEAU_METRIC[self.current_epoch], on_epoch=True, on_step=False)
        return loss

    def configure_optimizers(self):
        if self.optimizer == "adamw":
            opt = torch.optim.AdamW(self.parameters(), lr=0.05, weight_decay=0.01)
        else:
            opt = torch.optim.SGD(self.parameters(), lr=0.5, momentum=0.9)
        if self.make_scheduler is None:
            return opt
        sched = self.make_scheduler(opt)
        config = {"scheduler": sched, "interval": self.interval}
        if isinstance(sched, S.ReduceLROnPlateau):
            config.update(interval="epoch", monitor="plateau")
        return {"optimizer": opt, "lr_scheduler": config}


def _data(n: int = 64, batch_size: int = 16, seed: int = 0) -> InMemoryDataModule:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    return InMemoryDataModule(train=(x, x[:, :1].sin() + x[:, 1:2]), batch_size=batch_size, seed=seed)


class LRRecorder(Callback):
    def __init__(self) -> None:
        self.lrs: list[dict[str, float]] = []
        self.frozen_grads: list[bool] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.lrs.append({g["name"]: g["lr"] for g in optimizer.param_groups})
        self.frozen_grads.append(
            any(p.grad is not None for p in pl_module.parameters() if not p.requires_grad)
        )


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_every_scheduler_across_an_unfreeze(name):
    """Unfreeze at epochs 1 and 2 under each scheduler: no crash; every new group follows the schedule."""
    L.seed_everything(0)
    rec = LRRecorder()
    cb = GradualUnfreezing(unfreeze_at=[1, 2], groups_per_unfreeze=[1, 2], lr_factor=0.5)
    trainer = L.Trainer(max_epochs=4, callbacks=[cb, rec], **QUIET)
    trainer.fit(Body(SCHEDULERS[name]), _data())
    assert len(rec.lrs) == TOTAL and not any(rec.frozen_grads)
    names = ["head", "backbone.5", "backbone.3", "backbone.0"]
    assert list(rec.lrs[-1]) == names
    ref = _reference_lrs(SCHEDULERS[name], [0.5, 0.25, 0.125, 0.0625], TOTAL, plateau_every=4)
    joined = {"head": 0, "backbone.5": 4, "backbone.3": 8, "backbone.0": 8}
    for step, lrs in enumerate(rec.lrs):
        for i, group in enumerate(names):
            if step >= joined[group]:
                assert lrs[group] == pytest.approx(ref[step][i], rel=1e-9), (group, step)


@pytest.mark.parametrize(
    ("train_bn_affine", "freeze_bn_stats"), [(False, False), (True, False), (False, True)]
)
def test_frozen_phase_batchnorm_buffers_and_no_grads(train_bn_affine, freeze_bn_stats):
    """Frozen BN keeps its buffers (and is a FrozenBatchNorm) while frozen; frozen params get no gradient.

    With ``train_bn_affine=True`` the frozen BN's weight/bias train from the start; its statistics stay frozen.
    With ``freeze_bn_stats=True`` the statistics stay frozen after the unfreeze too, while weight/bias train.
    """
    L.seed_everything(0)
    model = Body()
    before = {k: v.clone() for k, v in model.backbone[1].state_dict().items()}
    seen = {}

    class Probe(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            bn = pl_module.backbone[1]
            seen[trainer.current_epoch] = (
                type(bn).__name__,
                {k: v.clone() for k, v in bn.state_dict().items()},
            )

    rec = LRRecorder()
    cb = GradualUnfreezing(
        unfreeze_at=[2],
        groups_per_unfreeze=-1,
        train_bn_affine=train_bn_affine,
        freeze_bn_stats=freeze_bn_stats,
    )
    trainer = L.Trainer(max_epochs=3, callbacks=[cb, rec, Probe()], **QUIET)
    trainer.fit(model, _data())
    for epoch in (0, 1):
        kind, state = seen[epoch]
        assert kind == "FrozenBatchNorm"
        buffers = ("running_mean", "running_var", "num_batches_tracked")
        assert all(torch.equal(state[k], before[k]) for k in buffers), epoch
        assert torch.equal(state["weight"], before["weight"]) != train_bn_affine, epoch
    kind, state = seen[2]
    if freeze_bn_stats:
        assert kind == "FrozenBatchNorm" and torch.equal(state["running_mean"], before["running_mean"])
        assert not torch.equal(state["weight"], before["weight"])
    else:
        assert kind == "BatchNorm1d" and not torch.equal(state["running_mean"], before["running_mean"])
    assert not any(rec.frozen_grads)
    assert all(p.requires_grad for p in model.parameters())


def _resume_run(tmp_path, ckpt: str | None, preset: bool = False) -> tuple[L.LightningModule, L.Trainer]:
    L.seed_everything(0)
    if preset:  # FineTune owns the schedule: two OneCycleLR phases
        model = Body(optimizer="adamw")
        cb = FineTune(lr=0.05, freeze_epochs=2, lr_mult=4.0)
    else:
        model = Body(lambda o: S.OneCycleLR(o, max_lr=0.05, total_steps=5 * 4), optimizer="adamw")
        cb = GradualUnfreezing(
            unfreeze_at=[1, 3], groups_per_unfreeze=[1, -1], lr_reduction=0.5, weight_decay=0.01
        )
    saver = ModelCheckpoint(dirpath=tmp_path, save_top_k=-1, every_n_epochs=1, filename="{epoch}")
    trainer = L.Trainer(
        max_epochs=5,
        callbacks=[cb, saver],
        deterministic=True,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, _data(), ckpt_path=ckpt)
    return model, trainer


@pytest.mark.parametrize(("stop_epoch", "preset"), [(0, False), (1, False), (2, True)])
def test_resume_mid_phase_equals_uninterrupted(tmp_path, stop_epoch, preset):
    """Stop after epoch 0 (frozen phase), 1 (mid phase 1 of epochs 1-2) or, for the FineTune preset, 2 (in its
    second 1cycle), resume: final weights, optimizer state and LRs identical to the uninterrupted run."""
    full, trainer = _resume_run(tmp_path / "full", None, preset)
    ckpt = str(tmp_path / "full" / f"epoch={stop_epoch}.ckpt")
    resumed, trainer2 = _resume_run(tmp_path / "resumed", ckpt, preset)
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    o1, o2 = trainer.optimizers[0], trainer2.optimizers[0]
    assert [g["name"] for g in o1.param_groups] == [g["name"] for g in o2.param_groups]
    assert [g["lr"] for g in o1.param_groups] == [g["lr"] for g in o2.param_groups]
    for p, q in zip(full.parameters(), resumed.parameters()):
        assert all(torch.equal(o1.state[p][k], o2.state[q][k]) for k in o1.state[p])
    if stop_epoch == 1:  # resuming a phase-2 checkpoint with a schedule of one unfreeze point: a clear error
        trainer3 = L.Trainer(max_epochs=5, callbacks=[GradualUnfreezing(unfreeze_at=[1])], **QUIET)
        with pytest.raises(
            ValueError, match=r"the checkpoint is in phase 2 but `unfreeze_at`=\[1\] has only 1"
        ):
            trainer3.fit(Body(optimizer="adamw"), _data(), ckpt_path=str(tmp_path / "full" / "epoch=3.ckpt"))


def test_bf16_mixed_end_to_end():
    L.seed_everything(0)
    model = Body(lambda o: S.CosineAnnealingLR(o, T_max=TOTAL), optimizer="adamw")
    start = [p.detach().clone() for p in model.parameters()]
    trainer = L.Trainer(
        max_epochs=4, precision="bf16-mixed", callbacks=[GradualUnfreezing([1, 2], [1, -1])], **QUIET
    )
    trainer.fit(model, _data())
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())
    assert all(not torch.equal(a, p) for a, p in zip(start, model.parameters()))  # every group trained
    # the head's group + 3 joined layer groups, each split into decayed / no-decay parts (AdamW's own 0.01)
    groups = trainer.optimizers[0].param_groups
    assert len(groups) == 1 + 3 * 2
    assert {g["name"]: g["weight_decay"] for g in groups[1:]} == {
        n: (0.0 if n.endswith(".no_decay") else 0.01) for n in (g["name"] for g in groups[1:])
    } and sum(g["name"].endswith(".no_decay") for g in groups) == 3


def test_fraction_milestones_unfreeze_at_steps():
    rec = LRRecorder()
    trainer = L.Trainer(max_epochs=2, callbacks=[GradualUnfreezing([0.25, 0.5], [1, -1]), rec], **QUIET)
    trainer.fit(Body(), _data())
    assert [len(lrs) for lrs in rec.lrs] == [1, 1, 2, 2, 4, 4, 4, 4]


def test_fine_tune_preset_two_one_cycles():
    L.seed_everything(0)
    rec = LRRecorder()

    class Plain(Body):
        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1.0)

    cb = FineTune(lr=0.01, freeze_epochs=1, lr_mult=8.0)
    trainer = L.Trainer(max_epochs=3, callbacks=[cb, rec], **QUIET)
    trainer.fit(Plain(), _data())
    head = [lrs["head"] for lrs in rec.lrs]
    assert head[0] == pytest.approx(0.01 / 25) and max(head[:4]) <= 0.01 + 1e-12  # phase 1: 1cycle to 0.01
    phase2 = _reference_lrs(
        lambda o: S.OneCycleLR(o, max_lr=0.005, total_steps=8, final_div_factor=1e5), [1.0], 8
    )
    assert head[4:] == pytest.approx([lrs[0] for lrs in phase2], rel=1e-9)  # a fresh 1cycle, peak 0.01 * 0.5
    last = rec.lrs[4]  # groups 3 below the head start at peak/25 * (1/8)^(3/3)
    assert last["backbone.0"] == pytest.approx(0.005 / 25 / 8, rel=1e-6)
    assert trainer.lr_scheduler_configs[0].scheduler.curve.inner.total == 8  # the second cycle spans phase 2


def test_bad_input_clear_errors():
    with pytest.raises(ValueError, match=r"`unfreeze_at` must be strictly increasing, got \[2, 1\]"):
        GradualUnfreezing(unfreeze_at=[2, 1])
    with pytest.raises(ValueError, match=r"`unfreeze_at` epochs must be >= 1"):
        GradualUnfreezing(unfreeze_at=[0, 1])
    with pytest.raises(ValueError, match=r"fractions of training must be in \(0, 1\), got \[0.5, 1.5\]"):
        GradualUnfreezing(unfreeze_at=[0.5, 1.5])
    with pytest.raises(ValueError, match="`lr_factor` must be a finite number > 0, got 0"):
        GradualUnfreezing(lr_factor=0)
    with pytest.raises(ValueError, match="`lr_factor` must be a finite number > 0, got -0.5"):
        GradualUnfreezing(lr_factor=-0.5)
    with pytest.raises(ValueError, match="`lr_reduction` must be a finite number > 0"):
        GradualUnfreezing(lr_reduction=0.0)
    with pytest.raises(ValueError, match="`groups_per_unfreeze` must be one int or one per"):
        GradualUnfreezing(unfreeze_at=[1, 2], groups_per_unfreeze=[1])
    with pytest.raises(ValueError, match="`lr_mult` must be >= 1"):
        FineTune(lr_mult=0.5)

    def fit(cb, max_epochs=3):
        trainer = L.Trainer(max_epochs=max_epochs, callbacks=[cb], **QUIET)
        model = Body()
        with pytest.raises(ValueError) as err:
            trainer.fit(model, _data())
        assert trainer.global_step == 0  # raised before training
        return str(err.value)

    assert "`unfreeze_at` epochs [3, 4] are out of range" in fit(GradualUnfreezing([1, 3, 4]))
    assert "`groups` entry 'encoder.*' matches no submodule" in fit(GradualUnfreezing(groups=["encoder.*"]))
    assert "`head` 'classifier' cannot be found" in fit(GradualUnfreezing(head="classifier"))
    assert "asks for more groups than the 3 frozen ones" in fit(GradualUnfreezing([1, 2], [2, 2]))
    assert "FineTune needs `max_epochs` > `freeze_epochs`=3" in fit(FineTune(freeze_epochs=3))


def test_ddp_parity_and_backbone_finetuning_divergence(run_script, tmp_path):
    """2 processes, different data per rank, unfreeze at epochs 1 and 2 (one launch, four variants).

    Ours: identical parameters (max abs diff exactly 0), gradients and parameters identical at every step, and
    identical optimizer state -- in fp32, in bf16-mixed, and when unfreezing mid-epoch at fractions of training
    with gradient accumulation. Lightning's ``BackboneFinetuning`` under the same setup:
    the backbone layers unfrozen after DDP wrapped the model are never all-reduced, so the ranks diverge. That
    regression check documents why GradualUnfreezing exists; if it ever fails, Lightning has fixed the bug.
    """
    run_script("ddp_finetuning.py", "--out", str(tmp_path / "out"))
    for variant in ("ours", "ours_bf16", "ours_steps", "lightning"):
        r0, r1 = (torch.load(tmp_path / "out" / f"{variant}_rank{r}.pt") for r in (0, 1))
        assert r0["world_size"] == 2
        params = [
            k
            for k in r0["state_dict"]
            if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
        ]
        diff = max((r0["state_dict"][k] - r1["state_dict"][k]).abs().max().item() for k in params)
        if variant == "lightning":
            assert diff > 1e-4, f"BackboneFinetuning no longer diverges under DDP (diff {diff})"
            assert not torch.equal(r0["grad_sums"], r1["grad_sums"])
            continue
        assert diff == 0.0, f"{variant}: ranks differ by {diff}"
        assert torch.equal(r0["param_sums"], r1["param_sums"]) and torch.equal(
            r0["grad_sums"], r1["grad_sums"]
        )
        assert r0["optimizer"].keys() == r1["optimizer"].keys() and len(r0["optimizer"]) > 0
        assert all(torch.equal(r0["optimizer"][k], r1["optimizer"][k]) for k in r0["optimizer"])
        assert len(set(r0["trainable"])) == 3 and r0["trainable"] == sorted(r0["trainable"])  # unfroze twice
        assert r0["groups"] == ["head", "backbone.5", "backbone.3", "backbone.0"]
        assert math.isfinite(r0["param_sums"].sum().item())
