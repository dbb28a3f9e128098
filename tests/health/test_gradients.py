"""GradientMonitor and its functional core, against a straight-loop reference; 1 process, DDP-2, bf16-mixed."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from _health_helpers import DDP_BF16_CASES, DDP_CASES, ddp_health_fixture, health_cases  # noqa: F401
from hypothesis import given, settings
from hypothesis import strategies as st
from lightning.pytorch.loggers import WandbLogger
from torch.overrides import TorchFunctionMode

from lightning_bestpractices.health import (
    GradientMonitor,
    NonFiniteGuard,
    grad_norm_by_group,
    update_ratio_by_group,
)
from lightning_bestpractices.wandb_offline import find_offline_runs, read_offline_run

K = 3  # ddp_health.monitor logs every 3 optimizer steps; 2 epochs x 8 batches, accumulate 2 -> 8 steps


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(1, 5), min_size=1, max_size=3), min_size=1, max_size=3),
       st.sampled_from([1.0, 2.0, 3.0]), st.integers(0, 2**16))
def test_group_norms_match_a_straight_loop(shapes, p, seed):
    g = torch.Generator().manual_seed(seed)
    groups = []
    for group in shapes:
        params = [torch.nn.Parameter(torch.zeros(n)) for n in group]
        for q in params:
            q.grad = torch.randn(q.shape, generator=g)
        groups.append({"params": params})
    total, per_group = grad_norm_by_group(torch.optim.SGD(groups, lr=0.1), norm_type=p)
    ref = [sum(float((q.grad.double().abs() ** p).sum()) for q in grp["params"]) ** (1 / p) for grp in groups]
    assert [float(x) for x in per_group] == pytest.approx(ref, rel=1e-5)
    assert float(total) == pytest.approx(sum(r ** p for r in ref) ** (1 / p), rel=1e-5)


def test_update_ratio_of_zero_weights():
    ratios = update_ratio_by_group([[torch.zeros(2)], [torch.zeros(2)]], [[torch.ones(2)], [torch.zeros(2)]])
    assert [float(r) for r in ratios] == [float("inf"), 0.0]
    with pytest.raises(ValueError, match="one entry per group"):
        update_ratio_by_group([[torch.ones(1)]], [])


@pytest.mark.parametrize("kwargs, match", [
    ({"every_n_steps": 0}, "`every_n_steps` must be an int >= 1, got 0"),
    ({"every_n_steps": 2.5}, "`every_n_steps` must be an int >= 1, got 2.5"),
    ({"every_n_steps": True}, "`every_n_steps` must be an int >= 1, got True"),
    ({"norm_type": 0}, "`norm_type` must be > 0, got 0"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GradientMonitor(**kwargs)


def _check_against_reference(r: dict, world: int = 1) -> None:
    steps = 8 // world  # each rank sees 1/world of the batches
    assert r["global_step"] == steps
    assert sorted(r["history"]) == sorted(r["norms"]) == sorted(r["ratios"]) == list(range(0, steps, K))
    for step, logged in r["history"].items():
        ref = r["norms"][step]
        assert logged["grad/norm_total"] == pytest.approx(ref["total"], rel=1e-5)
        for group in ("body", "head"):
            assert logged[f"grad/norm/{group}"] == pytest.approx(ref[group], rel=1e-5)
            assert logged[f"grad/update_ratio/{group}"] == pytest.approx(r["ratios"][step][group], rel=1e-4)
        layers = [logged[f"grad/norm_layer/{n}"] for n in ("body.0.weight", "body.0.bias")]
        assert sum(v ** 2 for v in layers) ** 0.5 == pytest.approx(ref["body"], rel=1e-5)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_logged_values_match_the_reference_every_k_steps(precision, tmp_path):
    _check_against_reference(health_cases.monitor(1, precision, tmp_path))


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_ddp_ranks_log_the_same_all_reduced_values(ddp_health, precision):
    ranks = ddp_health(DDP_CASES if precision == "32-true" else DDP_BF16_CASES, precision)
    for r in ranks:
        _check_against_reference(r["monitor"], world=2)
    assert ranks[0]["monitor"]["history"] == ranks[1]["monitor"]["history"]


class _CountingMode(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


class _Counted(GradientMonitor):
    """Counts every torch call (tensor ops, .item/.tolist, .grad reads) made inside the monitor's hook."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.calls: dict[int, int] = {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        with _CountingMode() as mode:
            super().on_before_optimizer_step(trainer, pl_module, optimizer)
        self.calls[trainer.global_step] = mode.calls


def test_steps_that_do_not_log_touch_no_tensor(tmp_path):
    monitor = _Counted(every_n_steps=4, per_layer=True)
    trainer = health_cases.trainer(1, "32-true", [monitor], tmp_path, max_steps=9, limit_val_batches=0)
    trainer.fit(health_cases.Net(), health_cases.loader())
    assert sorted(monitor.calls) == list(range(9))
    assert [s for s, n in monitor.calls.items() if n] == [0, 4, 8]
    assert all(monitor.calls[s] > 10 for s in (0, 4, 8))


def test_wandb_offline_metrics_and_histograms(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = WandbLogger(project="health", save_dir=str(tmp_path), offline=True)
    monitor = GradientMonitor(every_n_steps=2, histograms=True)
    guard = NonFiniteGuard()  # and the guard's skip count, logged at the skipped step
    trainer = L.Trainer(accelerator="cpu", max_steps=5, callbacks=[monitor, guard], logger=logger,
                        limit_val_batches=0, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False)
    trainer.fit(health_cases.Net(nan_step=3), health_cases.loader())
    logger.experiment.finish()
    run = read_offline_run(find_offline_runs(tmp_path)[0], wait=120)
    assert len(run.values("grad/norm_total")) == 3  # steps 0, 2, 4
    assert len(run.values("grad/update_ratio/head")) == 3
    hist = run.values("grad/hist/head.weight")
    assert len(hist) == 3 and hist[0]["_type"] == "histogram"
    assert sum(hist[0]["values"]) == 16  # one count per element of the 1x16 head weight
    assert run.values("nonfinite/skips") == [1.0]


def test_norms_under_16_mixed_are_unscaled(tmp_path):
    # the grad scaler multiplies the loss by 65536 before backward; the norms must be of the unscaled gradients
    r16 = health_cases.monitor(1, "16-mixed", tmp_path / "16")
    r32 = health_cases.monitor(1, "32-true", tmp_path / "32")
    _check_against_reference(r16)
    assert r16["history"][0]["grad/norm_total"] == pytest.approx(r32["history"][0]["grad/norm_total"], rel=1e-2)
