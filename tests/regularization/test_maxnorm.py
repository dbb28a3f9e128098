"""MaxNorm: the bound holds after every real optimizer step, and only real steps trigger it."""

from __future__ import annotations

import importlib.util

import lightning as L
import pytest
import torch
from conftest import SCRIPTS
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins import MixedPrecision
from torch import nn

from lightning_bestpractices.regularization import MaxNorm, max_norm_, max_norm_targets, unit_norms

_spec = importlib.util.spec_from_file_location("ddp_regularization", SCRIPTS / "ddp_regularization.py")
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)

R = 0.6
TOL = 1 + 1e-6  # renorm scales by r / (norm + 1e-7); the recomputed norm may round one ulp above r


def test_functional_rows_and_conv_channels():
    torch.manual_seed(0)
    lin, conv = nn.Linear(5, 4), nn.Conv2d(2, 3, 3)
    with torch.no_grad():
        lin.weight.mul_(10)
        lin.weight[0].mul_(1e-3)  # one row already inside the ball: must stay bit-identical
        conv.weight.mul_(10)
    row0 = lin.weight[0].clone()
    conv_before = conv.weight.clone()
    max_norm_([lin.weight, conv.weight], 1.0)
    assert torch.equal(lin.weight[0], row0)
    assert (unit_norms(lin.weight)[1:] - 1).abs().max() < 1e-6
    # conv: per output channel over (in, kh, kw), direction kept
    norms = conv_before.flatten(1).norm(dim=1)
    torch.testing.assert_close(conv.weight, conv_before / norms.view(-1, 1, 1, 1))


def test_targets_and_names():
    net = nn.Sequential(nn.Conv1d(1, 2, 3), nn.ConvTranspose1d(2, 2, 3), nn.Flatten(), nn.Linear(4, 2))
    assert [n for n, _ in max_norm_targets(net, names=["0"])] == ["0.weight"]
    assert "1.weight" not in [n for n, _ in max_norm_targets(net)]  # transpose conv: dim 0 is not the unit
    with pytest.raises(ValueError, match=r"`names` \['9'\] match no submodule"):
        max_norm_targets(net, names=["9"])


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan"), True])
def test_bad_max_norm(bad):
    with pytest.raises(ValueError, match=rf"`max_norm` must be a finite number > 0, got {bad!r}"):
        MaxNorm(bad)


def check_rows(res: dict, accumulate: int) -> None:
    rows = res["rows"]
    assert res["applied_steps"] == res["global_step"] == 5
    assert len(rows) == 5 * accumulate
    assert max(max(r["norms"].values()) for r in res["free_rows"] if r["step"] > 0) > 1.2 * R, "test too easy"
    for prev, row in zip([None, *rows], rows):
        if row["step"] > 0:
            assert max(row["norms"].values()) <= R * TOL, row
        if prev is not None and row["step"] == prev["step"]:
            # a micro-batch without an optimizer step: nothing (no step, no rescaling) touched the weights
            for k in row["params"]:
                assert torch.equal(row["params"][k], prev["params"][k]), k


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
@pytest.mark.parametrize("accumulate", [1, 3])
def test_bound_after_every_step(precision, accumulate):
    res = script.max_norm_run(1, precision, accumulate=accumulate)
    check_rows(res, accumulate)


class InfAtStep(Callback):
    """Poison one gradient (in the scaled backward) at one optimizer step, as an fp16 overflow would."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.before: dict | None = None
        self.after: dict | None = None

    def on_after_backward(self, trainer, pl_module) -> None:
        if trainer.global_step == self.step:
            pl_module.net[7].weight.grad[0, 0] = float("inf")
            self.before = {n: p.detach().clone() for n, p in pl_module.named_parameters()}

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        if self.before is not None and self.after is None:
            self.after = {n: p.detach().clone() for n, p in pl_module.named_parameters()}


def test_steps_skipped_by_the_fp16_grad_scaler_are_skipped():
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**4)
    spy, cb = InfAtStep(2), MaxNorm(R)
    model = script.Net(lr=2.0)
    with torch.no_grad():  # start outside the ball so a wrongly-run rescale would change the weights
        model.net[7].weight.mul_(20)
    t = L.Trainer(accelerator="cpu", max_steps=5, callbacks=[cb, spy], logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, enable_model_summary=False,
                  plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)])  # fmt: skip
    t.fit(model, script.loader())
    # the scaler found the inf, skipped optimizer.step and with it the post-step hook
    assert scaler.get_scale() < 2.0**4
    assert cb.applied_steps == 5 - 1
    for k in spy.before:
        assert torch.equal(spy.before[k], spy.after[k]), k
    assert max(float(unit_norms(w).max()) for _, w in max_norm_targets(model)) <= R * TOL


def test_hooks_removed_after_fit_and_state_round_trip():
    cb = MaxNorm(R)
    model = script.Net(lr=2.0)
    t = script.trainer(callbacks=[cb], max_steps=2)
    t.fit(model, script.loader())
    assert cb.applied_steps == 2
    t.optimizers[0].step()  # after fit the hook is gone
    assert cb.applied_steps == 2
    fresh = MaxNorm(R)
    fresh.load_state_dict(cb.state_dict())
    assert fresh.applied_steps == 2 and fresh.state_key == cb.state_key != MaxNorm(2 * R).state_key


def test_resume_continues_the_step_count(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    first = MaxNorm(R)
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True, every_n_train_steps=3)
    t = script.trainer(callbacks=[first, ckpt], max_steps=3, enable_checkpointing=True)
    t.fit(script.Net(lr=2.0), script.loader())
    resumed = MaxNorm(R)
    t2 = script.trainer(callbacks=[resumed], max_steps=5)
    t2.fit(script.Net(lr=2.0), script.loader(), ckpt_path=tmp_path / "last.ckpt")
    assert first.applied_steps == 3 and resumed.applied_steps == 5 == t2.global_step
