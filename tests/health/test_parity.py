"""RankParity under real DDP (2 CPU processes): identical ranks pass, a divergence is reported and raised."""

from __future__ import annotations

import pytest
import torch

from lightning_bestpractices import RankParity


@pytest.mark.parametrize("on_mismatch", ["warn", "raise"])
def test_a_divergence_between_two_ranks_is_reported(run_script, tmp_path, on_mismatch):
    run_script("ddp_parity.py", "--out", str(tmp_path), "--on-mismatch", on_mismatch, "--diverge")
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    for seen in ranks:
        assert seen["max_diff"] == pytest.approx(1e-3, rel=1e-3), "every rank measures the same divergence"
    if on_mismatch == "raise":
        assert all("ranks diverged" in seen["error"] and "b.weight" in seen["error"] for seen in ranks)
    else:
        assert all(seen["error"] is None for seen in ranks)
        assert any("ranks diverged" in w and "b.weight" in w for w in ranks[0]["warnings"]), "rank 0 warns"


def test_identical_ranks_pass(run_script, tmp_path):
    run_script("ddp_parity.py", "--out", str(tmp_path), "--on-mismatch", "raise")
    for r in (0, 1):
        seen = torch.load(tmp_path / f"rank{r}.pt")
        assert seen["max_diff"] == 0.0 and seen["error"] is None and seen["warnings"] == []


@pytest.mark.parametrize(
    "kwargs,match",
    [({"every_n_epochs": 0}, "`every_n_epochs`"), ({"on_mismatch": "log"}, "`on_mismatch`"),
     ({"tolerance": -1.0}, "`tolerance`")],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RankParity(**kwargs)
