"""LR finder (group ratios, suggestions, plot to W&B, exact restore) and the one LR monitor (per group LR/momentum/WD;
keys from the optimizer class, the same for every schedule)."""

from __future__ import annotations

import copy
import importlib.util
import math
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import WandbLogger

from lightning_bestpractices.optim import OptimConfig
from lightning_bestpractices.optim.lr_finder import RULES, lr_find, suggest_lr
from lightning_bestpractices.optim.monitor import LRMonitor
from lightning_bestpractices.wandb_offline import find_offline_runs, read_offline_run

_spec = importlib.util.spec_from_file_location(
    "ddp_optim", Path(__file__).parent / "scripts" / "ddp_optim.py"
)
ddp_optim = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ddp_optim)

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    return tmp_path


def _read_run(root, key):
    """Read the offline run back once complete (its exit record written), and check it logged ``key``."""
    run = read_offline_run(find_offline_runs(root)[0], wait=120)
    assert any(k == key or k.startswith(key + "/") for row in run.history for k in row), f"{key!r} never logged"
    return run


def _net(lr=0.1):
    torch.manual_seed(0)
    return ddp_optim.TinyNet({"optimizer": "momentum", "lr": lr, "lr_multipliers": {"head": 0.25},
                              "schedule": {"name": "cosine", "warmup": 0.1, "final_lr": 1e-4}})  # fmt: skip


def _snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_lr_find_keeps_ratios_logs_plot_applies_and_restores_exactly(wandb_env):
    tmp_path = wandb_env
    model, twin = _net(), _net()
    before = _snapshot(model)
    torch.manual_seed(7)
    rng = torch.get_rng_state()
    logger = WandbLogger(project="lr-find", save_dir=str(tmp_path), offline=True)
    result = lr_find(model, train_dataloaders=ddp_optim.loaders(False), min_lr=1e-4, max_lr=10.0, num_steps=40,
                     trainer_kwargs={"logger": logger, "default_root_dir": tmp_path, **QUIET})  # fmt: skip
    logger.experiment.finish()
    # model, buffers (BatchNorm running stats) and RNG are back, bit for bit
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)
    # the sweep kept the head at 1/4 of the body at every step, and rose exponentially from min_lr
    names = [g["name"] for g in model.trainer.optimizers[0].param_groups]
    head, body = names.index("head.decay"), names.index("decay")
    assert all(g[head] == pytest.approx(0.25 * g[body], rel=1e-12) for g in result.group_lrs)
    assert result.lrs[0] == pytest.approx(1e-4) and all(b > a for a, b in zip(result.lrs, result.lrs[1:]))
    ratios = [b / a for a, b in zip(result.lrs, result.lrs[1:])]
    assert ratios == pytest.approx([ratios[0]] * len(ratios), rel=1e-9)
    # loss diverged at large LR: the sweep stopped early; suggestions inside the range, the chosen one applied
    assert len(result.losses) <= 40 and set(result.suggestions) == set(RULES)
    assert all(1e-4 <= v <= 10.0 for v in result.suggestions.values())
    assert model.optim.lr == result.suggestion == result.suggestions["valley"]
    # plot saved and logged to W&B
    run = _read_run(tmp_path, "lr_find")
    assert list(run.files_dir.glob("media/images/lr_find_*.png"))
    assert any(k == "lr_find" or k.startswith("lr_find/") for row in run.history for k in row)

    # nothing leaked: training after the finder == training an untouched twin at the same LR, bit for bit
    twin.optim = OptimConfig.from_any(twin.optim).with_lr(result.suggestion)
    outs = []
    for m in (model, twin):
        torch.set_rng_state(rng)
        trainer = L.Trainer(
            max_epochs=2, logger=False, enable_checkpointing=False, default_root_dir=tmp_path, **QUIET
        )
        trainer.fit(m, ddp_optim.loaders(False))
        outs.append((_snapshot(m), copy.deepcopy(trainer.optimizers[0].state_dict())))
    (s1, o1), (s2, o2) = outs
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert o1["param_groups"] == o2["param_groups"]
    assert all(
        torch.equal(o1["state"][i]["momentum_buffer"], o2["state"][i]["momentum_buffer"]) for i in o1["state"]
    )


def test_suggestion_rules_on_log_lr():
    lrs = [10 ** (-5 + k / 20) for k in range(101)]  # 1e-5 .. 1
    # a loss that falls steepest at 1e-3 (in log LR), bottoms out near 3e-2, then blows up
    losses = [
        1 - math.tanh(3 * (math.log10(lr) + 3)) + 50 * max(0.0, math.log10(lr) + 1.5) ** 2 for lr in lrs
    ]
    assert suggest_lr(lrs, losses, "steepest") == pytest.approx(1e-3, rel=0.13)
    best = lrs[min(range(101), key=losses.__getitem__)]
    assert suggest_lr(lrs, losses, "minimum/10") == pytest.approx(best / 10, rel=1e-9)
    valley = suggest_lr(lrs, losses, "valley")  # middle (in log LR) of the descent from 1e-5 to the minimum
    assert valley == pytest.approx(10 ** ((-5 + math.log10(best)) / 2), rel=1e-9)
    with pytest.raises(
        ValueError, match=r"`rule` must be one of \('steepest', 'valley', 'minimum/10'\), got 'min'"
    ):
        suggest_lr(lrs, losses, "min")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_lr": 0.0}, "`min_lr` must be > 0, got 0.0"),
        ({"min_lr": 1e-3, "max_lr": 1e-4}, r"`max_lr` must be > `min_lr` \(0.001\), got 0.0001"),
        ({"num_steps": 2}, "`num_steps` must be an int >= 5, got 2"),
        ({"rule": "lowest"}, "`rule` must be one of"),
        ({"smoothing": 1.0}, r"`smoothing` must be in \[0, 1\), got 1.0"),
    ],
)
def test_lr_find_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lr_find(_net(), train_dataloaders=ddp_optim.loaders(False), **kwargs)


def test_monitor_logs_lr_momentum_wd_per_named_group_to_wandb(wandb_env):
    tmp_path = wandb_env
    torch.manual_seed(0)
    model = ddp_optim.TinyNet({"optimizer": "adamw", "lr": 0.1, "weight_decay": 0.01, "lr_multipliers": {"head": 0.25},
                               "schedule": {"name": "onecycle", "final_lr": 1e-4}})  # fmt: skip
    rec = ddp_optim.Recorder()
    logger = WandbLogger(project="lr-monitor", save_dir=str(tmp_path), offline=True)
    trainer = L.Trainer(max_epochs=1, logger=logger, log_every_n_steps=1, default_root_dir=tmp_path,
                        callbacks=[LRMonitor(), rec], enable_checkpointing=False, **QUIET)  # fmt: skip
    trainer.fit(model, ddp_optim.loaders(False))
    logger.experiment.finish()
    run = _read_run(tmp_path, "lr-AdamW/decay")
    rows = [r for r in run.history if "lr-AdamW/decay" in r]
    assert len(rows) == len(rec.lrs) == 16
    names = rec.names
    for row, lrs in zip(rows, rec.lrs):
        for name, lr in zip(names, lrs):
            assert row[f"lr-AdamW/{name}"] == pytest.approx(lr, rel=1e-6)
    assert rows[0]["lr-AdamW/head.decay-momentum"] == pytest.approx(0.95)  # AdamW beta1, cycled by 1cycle
    assert min(r["lr-AdamW/decay-momentum"] for r in rows) < 0.9
    assert (
        rows[0]["lr-AdamW/decay-weight_decay"] == 0.01
        and rows[0]["lr-AdamW/no_decay-weight_decay"] == 0
    )


def test_monitor_skips_momentum_for_optimizers_without_it(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    torch.manual_seed(0)
    model = ddp_optim.TinyNet({"optimizer": "adagrad", "lr": 0.1})
    logger = CSVLogger(tmp_path)
    trainer = L.Trainer(max_steps=3, logger=logger, log_every_n_steps=1, callbacks=[LRMonitor()],
                        enable_checkpointing=False, default_root_dir=tmp_path, **QUIET)  # fmt: skip
    trainer.fit(model, ddp_optim.loaders(False))
    header = (Path(logger.log_dir) / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "lr-Adagrad/decay" in header and "lr-Adagrad/no_decay-weight_decay" in header
    assert not any(h.endswith("-momentum") for h in header)
    with pytest.raises(ValueError, match="`logging_interval` must be 'step', 'epoch' or None, got 'batch'"):
        LRMonitor(logging_interval="batch")
