"""Shared by tests/health/test_*.py: the case module (tests/scripts/ddp_health.py) and its DDP launches, run once
per session (import ``ddp_health_fixture`` into the test module: it provides the ``ddp_health`` fixture)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import ROOT, SCRIPTS, run_python  # noqa: E402, F401

_spec = importlib.util.spec_from_file_location("ddp_health", SCRIPTS / "ddp_health.py")
health_cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(health_cases)


_CACHE: dict[tuple[str, str], list[dict]] = {}

#: the DDP launches every health test module shares (one process group each, so the suite pays two launches)
DDP_CASES = "guard_skip,guard_skip_loss,guard_stop_loss,monitor,es_seed001,es_unsynced,es_ema,es_resume"
DDP_BF16_CASES = "guard_skip_loss,guard_stop,monitor,es_seed001"


@pytest.fixture(scope="session", name="ddp_health")
def ddp_health_fixture(tmp_path_factory):
    """``ddp_health("a,b", precision)`` -> ``[rank0, rank1]``, each ``{case: result}``; each launch runs once."""
    cache = _CACHE

    def _run(cases: str, precision: str = "32-true") -> list[dict]:
        key = (cases, precision)
        if key not in cache:
            out = tmp_path_factory.mktemp("ddp_health")
            # a hang (ranks disagreeing on a collective) fails the test through the subprocess timeout
            run_python([SCRIPTS / "ddp_health.py", "--out", out, "--case", cases, "--devices", "2",
                        "--precision", precision], out, timeout=600)
            cache[key] = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
        return cache[key]

    return _run


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Bit-identical state dicts."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
