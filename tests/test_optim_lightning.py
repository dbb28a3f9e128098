"""Schedules under real Trainer runs: exact final LR across devices, accumulation, drop_last, max_steps, resume."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_bestpractices.optim import StepPlan, build_scheduler, create_optimizer, fast_forward

_spec = importlib.util.spec_from_file_location(
    "ddp_optim", Path(__file__).parent / "scripts" / "ddp_optim.py"
)
ddp_optim = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ddp_optim)

LR, MULTS = ddp_optim.LR, ddp_optim.MULTS


def expected_final(sname: str, epoch_starts: list[int], total: int) -> float:
    """The configured final LR of a multiplier-1 group (see ddp_optim.SCHEDULES)."""
    spec = ddp_optim.SCHEDULES[sname]
    if sname == "constant":
        return LR
    if sname == "step":  # gamma 0.5 at every epoch start before the last step
        return LR * 0.5 ** sum(1 for s in epoch_starts[1:] if s <= total - 1)
    if sname == "multistep":  # both milestones fall before the last step
        return LR * 0.01
    return spec["final_lr"]


def check_run(sname: str, res: dict, lrs_key: str = "lrs") -> None:
    lrs, total = res[lrs_key], res["planned"]
    mults = [MULTS.get(n.split(".")[0], 1.0) if "." in n else 1.0 for n in res["names"]]
    final = expected_final(sname, res["epoch_starts"], total)
    for got, m in zip(lrs[-1], mults):
        assert got == pytest.approx(final * m, rel=1e-9, abs=0.0), (sname, got, final * m)
    for step in lrs:  # discriminative ratios hold at every step
        assert step == pytest.approx([m * step[-1] for m in mults], rel=1e-12, abs=0.0)


@pytest.mark.parametrize("cname", sorted(ddp_optim.CASES))
def test_exact_final_lr_single_process(cname, tmp_path):
    case = ddp_optim.CASES[cname]
    for sname, schedule in ddp_optim.SCHEDULES.items():
        res = ddp_optim.run_case(schedule, case, 1, tmp_path)
        assert len(res["lrs"]) == res["planned"], (sname, cname)  # the plan is the real step count
        check_run(sname, res)
    if cname == "gas":  # Lightning's estimate ignores GradientAccumulationScheduler; ours does not
        assert res["estimated"] == 80 and res["planned"] == len(res["lrs"]) == 16 + 16 + 3 * 6
    else:
        assert res["estimated"] == res["planned"]


def test_limit_train_batches_is_counted(tmp_path):
    case = {"accumulate": 2, "drop_last": False, "max_epochs": 3, "limit_train_batches": 5}
    for sname in ("cosine", "step", "onecycle"):
        res = ddp_optim.run_case(ddp_optim.SCHEDULES[sname], case, 1, tmp_path)
        assert res["planned"] == len(res["lrs"]) == 3 * 3  # 5 batches, 2 per step: 3 steps per epoch
        check_run(sname, res)


@pytest.mark.parametrize("sname", sorted(ddp_optim.SCHEDULES))
def test_resume_continues_exactly(sname, tmp_path):
    res = ddp_optim.run_resume(ddp_optim.SCHEDULES[sname], 1, tmp_path)
    k = res["resume_step"]
    assert k == 32 and res["resumed"] == res["full"][k:]  # same LR, bit for bit, after the resume
    assert torch.equal(res["params_full"], res["params_resumed"])
    check_run(sname, {**res, "lrs": res["resumed"]})


def test_resume_with_other_accumulation_recomputes_the_schedule(tmp_path):
    changed = {"accumulate": 2, "drop_last": False, "max_epochs": 4}
    res = ddp_optim.run_resume(ddp_optim.SCHEDULES["cosine"], 1, tmp_path, resume_case=changed)
    assert res["planned"] == 32 + 2 * 8 and len(res["resumed"]) == 16  # 2 epochs of 16 batches, 2 per step
    check_run("cosine", {**res, "lrs": res["resumed"]})  # ends on final_lr 16 steps later
    # the resumed run follows the schedule built for the real history: epochs of 16, 16, 8, 8 steps
    opt = create_optimizer([{"params": [torch.zeros(1, requires_grad=True)]}], "sgd", lr=LR)
    [cfg] = build_scheduler(opt, ddp_optim.SCHEDULES["cosine"], StepPlan((0, 16, 32, 40, 48)), lr=LR)
    fast_forward([cfg["scheduler"]], 32)
    expected = []
    for _ in range(16):
        expected.append(opt.param_groups[0]["lr"])
        cfg["scheduler"].step()
    assert [lrs[-1] for lrs in res["resumed"]] == pytest.approx(expected, rel=1e-12)
    res = ddp_optim.run_resume(ddp_optim.SCHEDULES["onecycle"], 1, tmp_path / "oc", resume_case=changed)
    check_run("onecycle", {**res, "lrs": res["resumed"]})


def test_ddp_two_processes(run_script, tmp_path):
    run_script("ddp_optim.py", "--out", str(tmp_path), "--devices", "2", timeout=400)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0.keys() == r1.keys() and len(r0) == 9 + 2 + 1
    for key, res in r0.items():
        sname = key.split("/")[0]
        if key.endswith("/resume"):
            assert res["resumed"] == res["full"][res["resume_step"] :]
            check_run(sname, {**res, "lrs": res["resumed"]})
            continue
        assert res["lrs"] == r1[key]["lrs"] and torch.equal(res["params"], r1[key]["params"]), key
        assert len(res["lrs"]) == res["planned"], key
        check_run(sname, res)
    # 62 samples on 2 ranks: 31 each -> 8 batches of 4 (7 with drop_last); resume: 4 epochs of 8
    assert r0["cosine/resume"]["planned"] == 4 * 8
    assert r0["cosine/acc3_droplast_maxsteps"]["planned"] == 6 * math.ceil(7 / 3)
    assert r0["step/gas"]["planned"] == 8 + 8 + 3 * 3


class _ValNet(ddp_optim.TinyNet):
    def validation_step(self, batch, batch_idx):
        self.log("val/loss", nn.functional.mse_loss(self(batch[0]), batch[1]))


def _fit(model, tmp_path, **kw):
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    dl = DataLoader(TensorDataset(x, y), batch_size=4)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, **kw)  # fmt: skip
    trainer.fit(model, dl, dl)
    return trainer


def test_bad_input_fails_before_the_first_step(tmp_path):
    model = _ValNet({"optimizer": "sgd", "lr": 0.1, "schedule": {"name": "plateau", "monitor": "val/los"}})
    with pytest.raises(
        ValueError, match=r"monitors 'val/los', which is not logged; logged metrics: \['val/loss'\]"
    ):
        _fit(model, tmp_path, max_epochs=2, num_sanity_val_steps=1)
    assert model.trainer.global_step == 0
    model = _ValNet({"optimizer": "sgd", "lr": 0.1, "schedule": {"name": "cosine", "warmup": "3 epochs"}})
    with pytest.raises(
        ValueError, match=r"`warmup` \(3 epochs = 12 optimizer steps\) must be shorter than training"
    ):
        _fit(model, tmp_path, max_epochs=3)
    assert model.trainer.global_step == 0
    model = _ValNet({"optimizer": "sgd", "lr": 0.1, "schedule": {"name": "plateau", "monitor": "val/loss"}})
    trainer = _fit(model, tmp_path, max_epochs=2, num_sanity_val_steps=1)
    assert trainer.global_step == 8


def test_yaml_style_config_with_no_python(tmp_path):
    model = _ValNet({"optimizer": "adamw", "lr": 3e-3, "weight_decay": 0.05,
                     "schedule": {"name": "cosine", "warmup": "5%", "final_lr": 1e-5}})  # fmt: skip
    trainer = _fit(model, tmp_path, max_epochs=5, accumulate_grad_batches=2)
    opt = trainer.optimizers[0]
    assert type(opt).__name__ == "AdamW" and trainer.global_step == 10
    assert [g["lr"] for g in opt.param_groups][-1] == pytest.approx(1e-5, rel=1e-9)
    assert {g["name"]: g["weight_decay"] for g in opt.param_groups} == {"decay": 0.05, "no_decay": 0.0}
