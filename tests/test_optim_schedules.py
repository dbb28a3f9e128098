"""Schedule specs against torch's schedulers, against the seed's formulas, and across parameter groups."""

from __future__ import annotations

import math

import pytest
import torch
from torch.optim import lr_scheduler as S

from lightning_bestpractices.optim import (
    OptimConfig,
    ScheduleSpec,
    build_scheduler,
    count_optimizer_steps,
    list_schedules,
    parse_duration,
)

LR = 0.5


def _opt(mults=(1.0,), cls=torch.optim.SGD, **kw):
    groups = [
        {"params": [torch.zeros(1, requires_grad=True)], "lr_multiplier": m, "lr": LR * m} for m in mults
    ]
    return cls(groups, lr=LR, **kw)


def _run(spec, plan, mults=(1.0,), metric=None, cls=torch.optim.SGD, **kw):
    """LRs of every group at each optimizer step 0 .. total-1 (and momentum / beta1 of group 0)."""
    opt = _opt(mults, cls, **kw)
    configs = build_scheduler(opt, spec, plan, lr=LR)
    lrs, moms = [], []
    epoch = 0
    for t in range(plan.total):
        lrs.append([g["lr"] for g in opt.param_groups])
        g0 = opt.param_groups[0]
        moms.append(g0["betas"][0] if "betas" in g0 else g0.get("momentum"))
        opt.step()
        for c in configs:
            if c["interval"] == "step":
                c["scheduler"].step()
        if t + 1 == plan.epoch_starts[epoch + 1]:  # end of an epoch
            epoch += 1
            for c in configs:
                if c["interval"] == "epoch":
                    c["scheduler"].step(1.0 if metric is None else metric(epoch))
    return lrs, moms


def _torch_lrs(make, total):
    opt = _opt()
    s = make(opt)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        s.step()
    return out


PLAN = count_optimizer_steps(9, max_epochs=4, accumulate={0: 1, 2: 2})  # epochs of 9, 9, 5, 5 steps = 28


def test_plan_counts_partial_accumulation_groups_and_max_steps():
    assert PLAN.steps_per_epoch == [9, 9, 5, 5] and PLAN.total == 28
    # brute force: Lightning steps when (batch_idx + 1) % k == 0 or on the last batch of the epoch
    for batches, k, epochs, max_steps in [(10, 3, 3, -1), (7, 7, 2, -1), (5, 2, 4, 7), (1, 4, 3, -1)]:
        steps = 0
        for _ in range(epochs):
            for b in range(batches):
                if ((b + 1) % k == 0 or b + 1 == batches) and (max_steps < 0 or steps < max_steps):
                    steps += 1
        assert count_optimizer_steps(batches, epochs, accumulate=k, max_steps=max_steps).total == steps
    assert count_optimizer_steps(float("inf"), None, max_steps=40).total == 40
    with pytest.raises(ValueError, match="set `max_steps`"):
        count_optimizer_steps(float("inf"), None)


def test_durations_resolve_against_real_epochs():
    assert [parse_duration(d).resolve(PLAN) for d in (5, "2 epochs", "2.4 epochs", 0.5, "25%", "3 steps")] == [
        5, 18, 20, 14, 7, 3,
    ]  # fmt: skip
    assert parse_duration({"epochs": 3}).resolve(PLAN) == 23


@pytest.mark.parametrize(
    ("spec", "reference"),
    [
        ({"name": "step", "every": 4, "gamma": 0.5}, lambda o: S.StepLR(o, step_size=4, gamma=0.5)),
        ({"name": "step", "every": "1 epoch", "gamma": 0.5},
         lambda o: S.MultiStepLR(o, milestones=[9, 18, 23], gamma=0.5)),
        ({"name": "multistep", "milestones": [3, "2 epochs", 0.9], "gamma": 0.3},
         lambda o: S.MultiStepLR(o, milestones=[3, 18, 25], gamma=0.3)),
        ({"name": "exponential", "gamma": 0.9}, lambda o: S.ExponentialLR(o, gamma=0.9)),
        ({"name": "linear", "final_lr": 0.05}, lambda o: S.LinearLR(o, 1.0, 0.1, total_iters=27)),
        ({"name": "cosine", "final_lr": 0.01}, lambda o: S.CosineAnnealingLR(o, T_max=27, eta_min=0.01)),
        ({"name": "constant"}, lambda o: S.ConstantLR(o, factor=1.0, total_iters=0)),
        ({"name": "cosine", "warmup": 5, "final_lr": 0.01},
         lambda o: S.SequentialLR(o, [S.LinearLR(o, 0.2, 1.0, total_iters=4),
                                      S.CosineAnnealingLR(o, T_max=22, eta_min=0.01)], milestones=[5])),
    ],
)  # fmt: skip
def test_matches_torch_step_for_step(spec, reference):
    ours = [lr[0] for lr in _run(spec, PLAN)[0]]
    theirs = _torch_lrs(reference, PLAN.total)
    assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-15)


def test_restarts_are_torch_cosine_cycles_ending_on_the_floor():
    ours = [
        lr[0] for lr in _run({"name": "restarts", "cycles": 2, "cycle_mult": 2.0, "final_lr": 0.02}, PLAN)[0]
    ]
    lengths = [9, 19]  # 28 steps tiled as L + 2L
    start = 0
    for n in lengths:
        cycle = _torch_lrs(lambda o, n=n: S.CosineAnnealingLR(o, T_max=n - 1, eta_min=0.02), n)
        assert ours[start : start + n] == pytest.approx(cycle, rel=1e-12)
        assert ours[start + n - 1] == pytest.approx(0.02, rel=1e-12)
        start += n


def test_plateau_matches_torch_with_per_group_floor():
    metric = [1.0, 0.9, 0.9, 0.9, 0.95]
    lrs, _ = _run({"name": "plateau", "monitor": "val/loss", "patience": 1, "factor": 0.5, "final_lr": 0.2},
                  PLAN, mults=(1.0, 0.1), metric=lambda e: metric[e])  # fmt: skip
    opt = _opt((1.0, 0.1))
    ref = S.ReduceLROnPlateau(opt, patience=1, factor=0.5, min_lr=[0.2, 0.02])
    for e, n in enumerate(PLAN.steps_per_epoch):
        start = PLAN.epoch_starts[e]
        assert all(lr == pytest.approx([g["lr"] for g in opt.param_groups]) for lr in lrs[start : start + n])
        ref.step(metric[e + 1])
    assert lrs[-1] == pytest.approx([0.25, 0.025])


def _seed_warmup_cosine(t, base, warmup, total, min_lr):
    """Seed 000, WarmupCosineScheduler.get_lr at index ``t`` (``total`` = index of the last step)."""
    if t < warmup:
        return base * (t + 1) / warmup
    progress = (t - warmup) / (total - warmup)
    return min_lr + (base - min_lr) * (1 + math.cos(math.pi * progress)) / 2


def _seed_one_cycle(step, max_lr, total, pct, div, final_div):
    """Seed 000, OneCycleLR.get_lr at index ``step`` (``total`` = index of the last step)."""
    initial, min_lr = max_lr / div, max_lr / final_div
    if step < total * pct:
        return initial + (max_lr - initial) * step / (total * pct)
    progress = (step - total * pct) / (total * (1 - pct))
    return min_lr + (max_lr - min_lr) * (1 + math.cos(math.pi * progress)) / 2


@pytest.mark.parametrize("epochs", [1, 3])
def test_warmup_cosine_and_one_cycle_match_the_seed(epochs):
    plan = count_optimizer_steps(11, max_epochs=epochs)
    n = plan.total
    lrs, _ = _run({"name": "cosine", "warmup": 4, "final_lr": 0.001}, plan)
    assert [x[0] for x in lrs] == pytest.approx([_seed_warmup_cosine(t, LR, 4, n - 1, 0.001) for t in range(n)],
                                                rel=1e-12)  # fmt: skip
    lrs, moms = _run({"name": "onecycle", "pct_start": 0.3, "div_factor": 25.0, "final_lr": LR / 1e3}, plan,
                     momentum=0.9)  # fmt: skip
    seed = [_seed_one_cycle(t, LR, n - 1, 0.3, 25.0, 1e3) for t in range(n)]
    assert [x[0] for x in lrs] == pytest.approx(seed, rel=1e-12)
    # momentum cycles inversely: max at the ends, base at the peak
    peak = max(range(n), key=lambda t: seed[t])
    assert moms[0] == pytest.approx(0.95) and moms[-1] == pytest.approx(0.95)
    assert min(moms) == pytest.approx(moms[peak]) and moms[peak] == pytest.approx(0.85, abs=0.02)


def test_one_cycle_cycles_beta1_for_adam_and_leaves_plain_sgd_alone():
    plan = count_optimizer_steps(20, max_epochs=1)
    _, betas = _run({"name": "onecycle"}, plan, cls=torch.optim.AdamW)
    assert betas[0] == pytest.approx(0.95) and min(betas) == pytest.approx(0.85, abs=1e-3)
    _, moms = _run({"name": "onecycle"}, plan, cls=torch.optim.SGD)  # momentum=0: no cycling
    assert set(moms) == {0}


SPECS = {
    "constant": {"name": "constant", "warmup": "1 epoch"},
    "step": {"name": "step", "every": 0.25, "gamma": 0.5},
    "multistep": {"name": "multistep", "milestones": ["1.5 epochs", 0.8], "warmup": 3},
    "exponential": {"name": "exponential", "final_lr": 0.002, "warmup": 2, "warmup_shape": "cosine"},
    "linear": {"name": "linear", "final_lr": 0.003},
    "cosine": {"name": "cosine", "warmup": 0.1, "final_lr": 0.004},
    "restarts": {"name": "restarts", "cycles": 3, "final_lr": 0.005, "warmup": 2},
    "onecycle": {"name": "onecycle", "warmup": 0.25, "final_lr": 0.006},
    "plateau": {"name": "plateau", "monitor": "m", "patience": 0, "final_lr": 0.007, "warmup": 4},
}


def test_every_schedule_is_covered_here():
    assert sorted(SPECS) == list_schedules()


@pytest.mark.parametrize("name", sorted(SPECS))
def test_group_ratios_hold_at_every_step(name):
    mults = (1.0, 0.1, 0.37)
    lrs, _ = _run(SPECS[name], PLAN, mults=mults)
    for step in lrs:
        assert step == pytest.approx([m * step[0] for m in mults], rel=1e-12, abs=0.0)


FINAL = {"constant": LR, "step": LR * 0.5**3, "multistep": LR * 0.01, "exponential": 0.002, "linear": 0.003,
         "cosine": 0.004, "restarts": 0.005, "onecycle": 0.006, "plateau": 0.007}  # fmt: skip


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("shape", [(9, 4, {0: 1, 2: 2}, -1), (7, 6, 3, 31), (25, 2, 1, -1)])
def test_last_step_lands_on_the_configured_final_value(name, shape):
    batches, epochs, acc, max_steps = shape
    plan = count_optimizer_steps(batches, epochs, accumulate=acc, max_steps=max_steps)
    lrs, _ = _run(SPECS[name], plan, mults=(1.0, 0.25))
    expected = FINAL[name]
    if name == "step":  # every quarter of training: 3 decays before the last step (4 if a quarter divides it)
        quarter = round(0.25 * plan.total)
        expected = LR * 0.5 ** ((plan.total - 1) // quarter)
    if name == "plateau":  # constant metric, patience 0: one reduction per epoch from the second epoch end
        expected = max(LR * 0.1 ** (plan.epochs - 2), 0.007)
    assert lrs[-1][0] == pytest.approx(expected, rel=1e-9)
    assert lrs[-1][1] == pytest.approx(0.25 * expected, rel=1e-9)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"name": "cosinus"}, "unknown schedule 'cosinus'; choose one of"),
        (
            {"name": "cosine", "warmup": 1.5},
            r"`warmup` as a fraction of training must be in \(0, 1\], got 1.5",
        ),
        (
            {"name": "cosine", "warmup": 0.0},
            r"`warmup` as a fraction of training must be in \(0, 1\], got 0.0",
        ),
        (
            {"name": "cosine", "warmup": "120%"},
            r"`warmup` as a fraction of training must be in \(0, 1\], got '120%'",
        ),
        ({"name": "cosine", "warmup": "3 fortnights"}, "`warmup` must look like '200 steps'"),
        ({"name": "cosine", "warmup": -2}, "`warmup` must be >= 0, got -2"),
        ({"name": "cosine", "final_lr": -1e-5}, "`final_lr` must be a number >= 0, got -1e-05"),
        ({"name": "step"}, "schedule 'step' needs `every`"),
        ({"name": "step", "every": 1.2}, r"`every` as a fraction of training must be in \(0, 1\], got 1.2"),
        ({"name": "plateau"}, "schedule 'plateau' needs `monitor`"),
        ({"name": "plateau", "monitor": "val/loss", "mode": "mn"}, "`mode` must be 'min' or 'max', got 'mn'"),
        ({"name": "exponential", "gamma": 0.9, "final_lr": 0.1}, "takes `gamma` or `final_lr`, not both"),
        ({"name": "cosine", "T_max": 3}, r"unknown schedule option\(s\) \['T_max'\]"),
    ],
)
def test_bad_specs_fail_at_construction(spec, match):
    with pytest.raises(ValueError, match=match):
        ScheduleSpec.from_any(spec)


def test_bad_input_against_the_step_count():
    plan = count_optimizer_steps(5, max_epochs=2)  # 10 steps
    with pytest.raises(
        ValueError, match=r"`warmup` \(12 steps = 12 optimizer steps\) must be shorter than training"
    ):
        build_scheduler(_opt(), {"name": "cosine", "warmup": 12}, plan)
    with pytest.raises(ValueError, match=r"`warmup` \(1 of training = 10 optimizer steps\) must be shorter"):
        build_scheduler(_opt(), {"name": "cosine", "warmup": 1.0}, plan)
    with pytest.raises(ValueError, match="`warmup` of 3 epochs is longer than training"):
        build_scheduler(_opt(), {"name": "cosine", "warmup": "3 epochs"}, plan)
    with pytest.raises(
        ValueError, match=r"`milestones` entry 2 steps \(= step 2\) must fall after warmup \(4"
    ):
        build_scheduler(_opt(), {"name": "multistep", "milestones": [2], "warmup": 4}, plan)
    with pytest.raises(ValueError, match="`lr` must be >= 0, got -0.1"):
        OptimConfig(lr=-0.1)
    with pytest.raises(ValueError, match="`weight_decay` must be >= 0, got -0.5"):
        OptimConfig(weight_decay=-0.5)
    with pytest.raises(ValueError, match="unknown optimizer 'adamax2'"):
        OptimConfig(optimizer="adamax2")
