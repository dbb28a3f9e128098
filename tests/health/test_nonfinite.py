"""NonFiniteGuard and its functional core: a NaN injected at a given step, in 1 process, DDP-2 and bf16-mixed."""

from __future__ import annotations

import math

import pytest
import torch
from _health_helpers import DDP_BF16_CASES, DDP_CASES, ddp_health_fixture, health_cases, same_weights  # noqa: F401
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_bestpractices.health import NonFiniteGuard, first_nonfinite, maybe_nonfinite

NAN_STEP = 3
BASE_LR = 0.01  # the body group's LR in ddp_health.Net; LambdaLR multiplies it by 0.9 per real step

values = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                   st.sampled_from([3e38, -3e38, float("nan"), float("inf")]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(values, min_size=1, max_size=6), min_size=0, max_size=4))
def test_fast_check_never_misses_and_the_exact_check_is_exact(rows):
    tensors = [torch.tensor(r, dtype=torch.float32) for r in rows]
    truth = any(not bool(torch.isfinite(t).all()) for t in tensors)
    assert (first_nonfinite((str(i), t) for i, t in enumerate(tensors)) is not None) == truth
    if not bool(maybe_nonfinite(tensors)):  # the fast path's "all finite" must be exact
        assert not truth
    if truth:
        assert bool(maybe_nonfinite(tensors))


def test_first_nonfinite_names_the_first_bad_tensor_in_order():
    named = [("a", torch.ones(2)), ("b", torch.tensor([1.0, float("inf")])), ("c", torch.tensor([float("nan")]))]
    assert first_nonfinite(named) == "b"


@pytest.mark.parametrize("kwargs, match", [
    ({"action": "ignore"}, "`action` can be skip or stop, got 'ignore'"),
    ({"watch": "params"}, "`watch` can be both, loss or grads, got 'params'"),
    ({"max_skips": 0}, "`max_skips` must be an int >= 1 or None, got 0"),
    ({"filename": "a/b.ckpt"}, "`filename` must be a plain file name"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NonFiniteGuard(**kwargs)


def _check_skip(r: dict, *, nan_step: int = NAN_STEP) -> None:
    """The step at ``nan_step`` changed nothing: weights, Adam's state and the LR schedule were held."""
    assert r["skips"] == 1 and r["skipped_steps"] == [nan_step]
    before, at, after = (r["after_batch"][nan_step + d] for d in (-1, 0, 1))
    assert same_weights(before, at), "the skipped step changed the weights"
    assert not same_weights(at, after), "training goes on after the skip"
    assert all(torch.isfinite(v).all() for v in r["final"].values())
    assert r["adam_steps"][nan_step] == r["adam_steps"][nan_step - 1] == nan_step
    for i, lrs in enumerate(r["lrs"]):  # the schedule counts real steps only
        real = i + 1 - (i >= nan_step)
        assert r["sched_epochs"][i][0] == real
        assert lrs[0] == pytest.approx(BASE_LR * 0.9 ** real, rel=1e-12), i


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
@pytest.mark.parametrize("kind", ["grad", "loss"])
def test_skip_one_process(kind, precision, tmp_path):
    # "grad": NaN loss and NaN gradients; "loss": a NaN loss whose gradients stay finite (watched as the loss)
    r = health_cases.guard_skip(1, precision, tmp_path, nan_kind=kind, watch="both" if kind == "grad" else "loss")
    _check_skip(r)
    assert r["global_step"] == 16  # Lightning still counts the batch; the optimizer did not step


def test_skip_on_the_epochs_last_batch_keeps_the_epoch_schedulers_step(tmp_path):
    r = health_cases.guard_skip(1, "32-true", tmp_path, epoch_scheduler=True, nan_step=7)  # 8 batches per epoch
    assert r["skipped_steps"] == [7]
    assert r["sched_epochs"][6] == [7, 0]
    assert r["sched_epochs"][7] == [7, 1], "step scheduler held, epoch scheduler stepped once"
    assert r["sched_epochs"][-1] == [15, 2]
    assert same_weights(r["after_batch"][6], r["after_batch"][7])


@pytest.mark.parametrize("watch, reason", [
    ("both", "the loss"),
    ("grads", "the gradient of `body.0.weight`"),  # the first parameter of the optimizer's first group
])
def test_stop_names_the_step_and_leaves_a_checkpoint_that_resumes(watch, reason, tmp_path):
    r = health_cases.guard_stop(1, "32-true", tmp_path, watch=watch)
    assert r["stop_reason"] == f"NonFiniteGuard: non-finite value in {reason} at optimizer step {NAN_STEP}"
    assert r["batches_run"] == NAN_STEP + 1, "stopped right after the bad step"
    ckpt = torch.load(r["path"], weights_only=False)
    saved = {k: v.float() for k, v in ckpt["state_dict"].items()}
    assert same_weights(saved, r["stopped_weights"]), "the checkpoint holds the last good weights"
    assert same_weights(r["resumed_start"], r["stopped_weights"]), "resume starts from them"
    assert r["resumed_skips"] == 1 and r["resumed_skipped"] == [NAN_STEP], "the skip count survives resume"
    assert r["resumed_stop"] is None and r["resumed_global_step"] == 24  # ran to max_epochs=3 (8 steps each)
    assert r["resumed_batches"] == 24 - r["batches_run"], "resumed mid-epoch, after the last good batch"
    assert all(torch.isfinite(v).all() for v in r["resumed_final"].values())


def test_state_dict_round_trip_and_state_key():
    a = NonFiniteGuard()
    a.skips, a.skipped_steps = 2, [4, 9]
    b = NonFiniteGuard()
    b.load_state_dict(a.state_dict())
    assert (b.skips, b.skipped_steps) == (2, [4, 9])
    assert a.state_key != NonFiniteGuard(action="stop").state_key


def _ranks_agree(ranks: list[dict], case: str) -> None:
    r0, r1 = (r[case] for r in ranks)
    for a, b in zip(r0["after_batch"], r1["after_batch"]):
        assert same_weights(a, b), "ranks diverged"
    assert same_weights(r0["final"], r1["final"])
    assert r0["lrs"] == r1["lrs"]


@pytest.mark.parametrize("case", ["guard_skip", "guard_skip_loss"])
def test_ddp_nan_on_one_rank_skips_every_rank(ddp_health, case):
    # the NaN is injected on rank 1 only; guard_skip_loss keeps the gradients finite, so only the reduced loss
    # verdict can make rank 0 skip too
    ranks = ddp_health(DDP_CASES)
    for r in ranks:
        _check_skip(r[case])
        assert r[case]["global_step"] == 8  # 64 samples / 2 ranks / batch 8 = 4 steps per epoch, 2 epochs
    _ranks_agree(ranks, case)


@pytest.mark.parametrize("precision, case", [("32-true", "guard_stop_loss"), ("bf16-mixed", "guard_stop")])
def test_ddp_stop_on_one_rank_stops_every_rank_without_a_hang(ddp_health, precision, case):
    ranks = ddp_health(DDP_CASES if precision == "32-true" else DDP_BF16_CASES, precision)
    for r in ranks:
        r = r[case]
        assert r["stop_reason"] == f"NonFiniteGuard: non-finite value in the loss at optimizer step {NAN_STEP}"
        assert r["batches_run"] == NAN_STEP + 1
        assert same_weights(r["resumed_start"], r["stopped_weights"])
        assert r["resumed_skips"] == 1 and r["resumed_global_step"] == 12
    assert same_weights(ranks[0][case]["resumed_final"], ranks[1][case]["resumed_final"])


def test_ddp_bf16_skip(ddp_health):
    ranks = ddp_health(DDP_BF16_CASES, "bf16-mixed")
    for r in ranks:
        _check_skip(r["guard_skip_loss"])
    _ranks_agree(ranks, "guard_skip_loss")
    assert math.isfinite(float(ranks[0]["guard_skip_loss"]["final"]["head.bias"]))


def test_a_nan_loss_in_the_first_micro_batch_of_an_accumulated_step_skips_that_step(tmp_path):
    # accumulate 2: batches 4 and 5 make optimizer step 2; the NaN loss (finite gradients) is in batch 4, so only
    # a loss flag kept across the micro-batches catches it at the step
    r = health_cases.guard_skip(1, "32-true", tmp_path, nan_kind="loss", watch="loss", nan_step=None,
                                nan_batch=4, accumulate=2)
    assert r["skips"] == 1 and r["skipped_steps"] == [2]
    assert same_weights(r["after_batch"][3], r["after_batch"][5]), "step 2 changed nothing"
    assert not same_weights(r["after_batch"][5], r["after_batch"][7])
    assert r["adam_steps"][5] == 2 and r["adam_steps"][-1] == 7  # 8 steps, one skipped
    assert r["sched_epochs"][5] == [2] and r["sched_epochs"][-1] == [7]
