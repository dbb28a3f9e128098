"""Every regularization part under real DDP with 2 CPU processes (one launch of tests/scripts/ddp_regularization.py)."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from conftest import SCRIPTS
from test_maxnorm import check_rows

from lightning_bestpractices.uncertainty import mc_predict

_spec = importlib.util.spec_from_file_location("ddp_regularization", SCRIPTS / "ddp_regularization.py")
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    from conftest import run_python

    out = tmp_path_factory.mktemp("ddp_regularization")
    run_python([SCRIPTS / "ddp_regularization.py", "--out", out, "--devices", "2"], out, timeout=900)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1)]


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_world_size(ranks):
    assert [r["world_size"] for r in ranks] == [2, 2]


@pytest.mark.parametrize("case", ["penalty", "penalty_accumulate", "penalty_bf16"])
def test_penalty_under_ddp(ranks, case):
    r0, r1 = (r[case] for r in ranks)
    for name in ("ours", "ref", "plain"):
        _same(r0[name], r1[name])  # every rank adds the same term to the same all-reduced gradient
    assert max(float((r0["ours"][k] - r0["plain"][k]).abs().max()) for k in r0["ours"]) > 1e-3
    for k in r0["ours"]:
        torch.testing.assert_close(r0["ours"][k], r0["ref"][k], rtol=1e-5, atol=1e-6, msg=k)


@pytest.mark.parametrize(("case", "accumulate"), [("max_norm", 1), ("max_norm_accumulate", 3), ("max_norm_bf16", 3)])
def test_max_norm_under_ddp(ranks, case, accumulate):
    for r in ranks:
        check_rows(r[case], accumulate)
    _same(ranks[0][case]["params"], ranks[1][case]["params"])


def test_drop_modules_train_and_mc_predict_under_ddp(ranks):
    r0, r1 = (r["drop"] for r in ranks)
    _same(r0["params"], r1["params"])
    # the gathered DDP predictions are those of one process on the whole set: masks follow dataset indices
    model = script.MCNet()
    model.load_state_dict(r0["state"])
    x, _ = script.data(37, seed=2)
    ref = mc_predict(model.eval(), x, 6, seed=5, indices=torch.arange(37))
    order = r0["indices"].argsort()
    torch.testing.assert_close(r0["mean_probs"][order], ref.mean_probs, rtol=1e-5, atol=1e-6)
    assert torch.equal(r0["mean_probs"], r1["mean_probs"])


def test_checkpointing_under_ddp(ranks):
    for r in ranks:
        _same(r["checkpointing"]["plain"], r["checkpointing"]["ckpt"])
    # parameters agree across ranks (BN running statistics are per rank without SyncBatchNorm)
    params = [{k: v for k, v in r["checkpointing"]["ckpt"].items() if not k.startswith("buf.")} for r in ranks]
    _same(*params)
