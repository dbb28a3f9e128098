"""EarlyStopping(restore_best=True): the seed-001 sequence, max_epochs, ModelCheckpoint, EMA, resume, DDP, bf16."""

from __future__ import annotations

import pytest
import torch
from _health_helpers import DDP_BF16_CASES, DDP_CASES, ddp_health_fixture, health_cases, same_weights  # noqa: F401

from lightning_bestpractices.health import EarlyStopping

STEPS_PER_EPOCH = 8  # 1 process; 4 per rank under DDP-2


def _epoch_end_weights(r: dict, epoch: int, steps: int = STEPS_PER_EPOCH) -> dict:
    return r["after_batch"][(epoch + 1) * steps - 1]


def _check_seed001(r: dict, steps: int = STEPS_PER_EPOCH) -> None:
    # 1.0, 0.9, 0.8 improve; 0.85, 0.83, 0.84 do not: the third miss (epoch index 5, the 6th epoch) stops the run,
    # so 0.86 and 0.7 are never seen; the best is 0.8 at epoch index 2
    assert r["should_stop"] and r["stopped_epoch"] == 5 and r["epochs_run"] == 6
    assert sorted(r["validated"]) == [0, 1, 2, 3, 4, 5]
    assert r["history"] == [(e, pytest.approx(v)) for e, v in enumerate(health_cases.SEED001[:6])]
    assert r["best_epoch"] == r["restored"] == 2
    assert same_weights(r["final"], r["validated"][2]), "the model ends with the weights of its best epoch"
    assert not same_weights(r["final"], r["after_batch"][-1]), "not with the last trained ones"
    assert same_weights(r["validated"][2], _epoch_end_weights(r, 2, steps))


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_seed001_sequence_stops_at_the_sixth_epoch_with_the_best_weights(precision, tmp_path):
    _check_seed001(health_cases.es_seed001(1, precision, tmp_path))


def test_running_to_max_epochs_also_restores_the_best(tmp_path):
    r = health_cases.CASES["es_full"](1, "32-true", tmp_path)
    assert not r["should_stop"] and r["epochs_run"] == 5
    assert r["best_epoch"] == r["restored"] == 2
    assert same_weights(r["final"], r["validated"][2])


def test_agrees_with_model_checkpoints_best(tmp_path):
    r = health_cases.es_seed001(1, "32-true", tmp_path, checkpoint=True)
    _check_seed001(r)
    best = torch.load(r["best_ckpt"], weights_only=False)["state_dict"]
    assert same_weights({k: v.float() for k, v in best.items()}, r["final"])


def test_without_restore_best_the_model_keeps_its_last_weights(tmp_path):
    stop = EarlyStopping("val_loss", patience=3, restore_best=False)
    model = health_cases.Net(val_losses=health_cases.SEED001)
    trainer = health_cases.trainer(1, "32-true", [stop], tmp_path, max_epochs=8)
    trainer.fit(model, health_cases.loader(), health_cases.loader())
    assert stop.stopped_epoch == 5 and stop.restored_epoch is None and stop.best_weights is None


def _check_ema(r: dict, steps: int = STEPS_PER_EPOCH) -> None:
    # validation (and so the score) ran on the EMA weights: those of the best epoch are restored, which are neither
    # that epoch's raw training weights nor the final EMA that EMAWeightAveraging writes at train end
    assert r["best_epoch"] == r["restored"] == 2 and r["stopped_epoch"] == 5
    assert same_weights(r["final"], r["validated"][2])
    assert not same_weights(r["final"], _epoch_end_weights(r, 2, steps)), "EMA weights, not the raw ones"
    assert not same_weights(r["final"], r["validated"][5]), "the best epoch's EMA, not the final EMA"


def test_composes_with_ema_weight_averaging(tmp_path):
    _check_ema(health_cases.CASES["es_ema"](1, "32-true", tmp_path))


def test_best_epoch_before_an_interruption_survives_resume(tmp_path):
    r = health_cases.es_resume(1, "32-true", tmp_path)
    assert r["first"]["best_epoch"] == 1 and r["epochs_run"] == 6
    assert sorted(r["validated"]) == [4, 5], "the resumed run validated only epochs 4 and 5"
    assert r["best_epoch"] == r["restored"] == 1
    assert same_weights(r["final"], r["first"]["validated"][1])


def test_unknown_monitor_key_names_the_keys_that_exist(tmp_path):
    stop = EarlyStopping("val_los")
    trainer = health_cases.trainer(1, "32-true", [stop], tmp_path, max_epochs=2)
    with pytest.raises(ValueError, match=r"`monitor` 'val_los' is not a logged metric; the metrics logged are: "
                                         r"\['val_mse'\]"):
        trainer.fit(health_cases.Net(), health_cases.loader(), health_cases.loader())
    assert trainer.current_epoch == 0, "raised at the first validation"


@pytest.mark.parametrize("kwargs, match", [
    ({"monitor": ""}, "`monitor` must be a metric name, got ''"),
    ({"mode": "lower"}, "`mode` can be min or max, got 'lower'"),
    ({"patience": -1}, "`patience` must be an int >= 0, got -1"),
    ({"min_delta": -0.1}, "`min_delta` must be >= 0, got -0.1"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EarlyStopping(**{"monitor": "val_loss", **kwargs})


def test_state_dict_round_trip():
    a = EarlyStopping("val_loss")
    a.best_epoch, a.best_weights, a.wait_count = 4, {"w": torch.ones(2)}, 2
    b = EarlyStopping("val_loss")
    b.load_state_dict(a.state_dict())
    assert (b.best_epoch, b.wait_count) == (4, 2) and torch.equal(b.best_weights["w"], torch.ones(2))
    assert a.state_key != EarlyStopping("val_acc", mode="max").state_key


DDP_STEPS = STEPS_PER_EPOCH // 2


def test_ddp_seed001_bit_identical_on_every_rank(ddp_health):
    ranks = ddp_health(DDP_CASES)
    for r in ranks:
        _check_seed001(r["es_seed001"], DDP_STEPS)
    assert same_weights(ranks[0]["es_seed001"]["final"], ranks[1]["es_seed001"]["final"])


def test_ddp_unsynced_metric_restores_rank_zeros_best_on_every_rank(ddp_health):
    # rank 0 logs its best at epoch 1, rank 1 at epoch 3 (sync_dist=False): rank 0's verdict is broadcast
    ranks = ddp_health(DDP_CASES)
    for r in ranks:
        r = r["es_unsynced"]
        assert r["best_epoch"] == r["restored"] == 1
        assert same_weights(r["final"], r["validated"][1])
    assert same_weights(ranks[0]["es_unsynced"]["final"], ranks[1]["es_unsynced"]["final"])


def test_ddp_ema_and_resume(ddp_health):
    ranks = ddp_health(DDP_CASES)
    for r in ranks:
        _check_ema(r["es_ema"], DDP_STEPS)
        assert r["es_resume"]["restored"] == 1
        assert same_weights(r["es_resume"]["final"], r["es_resume"]["first"]["validated"][1])
    for case in ("es_ema", "es_resume"):
        assert same_weights(ranks[0][case]["final"], ranks[1][case]["final"])


def test_ddp_bf16_seed001(ddp_health):
    ranks = ddp_health(DDP_BF16_CASES, "bf16-mixed")
    for r in ranks:
        _check_seed001(r["es_seed001"], DDP_STEPS)
    assert same_weights(ranks[0]["es_seed001"]["final"], ranks[1]["es_seed001"]["final"])
