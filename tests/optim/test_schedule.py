"""The package's own LRScheduler: per-group facts in the param group, all state in state_dict, bad input."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from lightning_bestpractices.optim import (
    OptimConfig,
    Schedule,
    ScheduleSpec,
    build_scheduler,
    count_optimizer_steps,
    resolve_curve,
)
from lightning_bestpractices.optim.curves import curve_from_dict

PLAN = count_optimizer_steps(10, max_epochs=2)


def _opt(n=2):
    return torch.optim.AdamW([{"params": [nn.Parameter(torch.zeros(1))], "lr": 0.1 * (i + 1)} for i in range(n)])


def test_a_group_added_mid_run_needs_nothing_but_add_param_group():
    opt = _opt(1)
    sched = Schedule(opt, resolve_curve({"name": "cosine", "warmup": 3, "final_lr": 0.01}, PLAN, 0.1)[0])
    ref = _opt(1)
    ref.add_param_group({"params": [nn.Parameter(torch.zeros(1))], "lr": 0.05})
    ref_sched = Schedule(ref, sched.curve)
    for t in range(PLAN.total):
        if t == 7:
            opt.add_param_group({"params": [nn.Parameter(torch.zeros(1))], "lr": 0.05})
        opt.step()  # the step pre-hook puts a new group on the curve before it is used
        ref.step()
        assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in ref.param_groups][: len(opt.param_groups)]
        sched.step()
        ref_sched.step()
    assert opt.param_groups[1]["lr"] == pytest.approx(0.005, rel=1e-12)  # the floor, scaled with the group


def test_state_dict_snapshot_restores_a_skipped_step_exactly():
    opt = _opt()
    [step_cfg, epoch_cfg] = build_scheduler(
        opt, {"name": "plateau", "monitor": "m", "warmup": 2, "patience": 0, "final_lr": 0.01}, PLAN
    )
    sched = step_cfg["scheduler"]
    assert epoch_cfg["scheduler"] is sched and epoch_cfg["reduce_on_plateau"]
    for _ in range(3):
        opt.step()
        sched.step()
    sched.step(1.0)
    sched.step(2.0)  # worse: a reduction
    snap, lrs = copy.deepcopy(sched.state_dict()), [g["lr"] for g in opt.param_groups]
    opt.step()
    sched.step()
    sched.step(3.0)  # another reduction
    sched.load_state_dict(snap)
    for g, lr in zip(opt.param_groups, lrs):
        g["lr"] = lr
    assert sched.plateau.scale == pytest.approx(0.1) and sched.last_epoch == 3
    after = copy.deepcopy(sched.state_dict())
    assert after == snap  # nothing lives outside state_dict and the groups
    assert all(isinstance(v, (int, float, bool, str, list, dict, type(None))) for v in snap.values())


def test_saved_curve_is_plain_data():
    curve, _ = resolve_curve({"name": "onecycle", "warmup": 3}, PLAN, 0.1, momentum=True)
    state = curve.to_dict()
    assert curve_from_dict(state) == curve and curve_from_dict(state).momentum(0) == pytest.approx(0.95)


@pytest.mark.parametrize("name", ["cosine", "linear", "exponential", "restarts", "onecycle", "plateau"])
def test_final_lr_above_the_peak_is_refused_naming_it(name):
    spec = {"name": name, "final_lr": 0.5, **({"monitor": "m"} if name == "plateau" else {})}
    with pytest.raises(ValueError, match=r"`final_lr` \(0.5, the .* of schedule '" + name + r"'\) must not be above "
                                         r"the peak `lr` \(0.01\)"):
        OptimConfig(lr=0.01, schedule=spec)
    with pytest.raises(ValueError, match=r"`final_lr` \(0.5"):
        build_scheduler(_opt(1), ScheduleSpec.from_any(spec), PLAN, lr=0.01)


def test_with_lr_keeps_final_lr_below_a_lower_peak():
    cfg = OptimConfig(lr=0.1, schedule={"name": "cosine", "final_lr": 0.01}).with_lr(0.001)
    assert cfg.lr == 0.001 and cfg.schedule.final_lr == 0.001


def test_step_with_a_metric_needs_a_plateau():
    sched = Schedule(_opt(1), resolve_curve("cosine", PLAN, 0.1)[0])
    with pytest.raises(ValueError, match="no plateau"):
        sched.step(1.0)
