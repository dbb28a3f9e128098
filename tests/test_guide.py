"""docs/guide.md: its one script (your own LightningModule with six practices) runs, on 1 process and DDP-2."""

from __future__ import annotations

import re

import pytest
from conftest import ROOT, run_python

GUIDE = (ROOT / "docs" / "guide.md").read_text()


def _script() -> str:
    (block,) = re.findall(r"```python\n(.*?)```", GUIDE, flags=re.S)
    return block


@pytest.mark.parametrize("devices", [1, 2])
def test_guide_runs(devices, tmp_path):
    (tmp_path / "guide.py").write_text(_script())
    out = run_python([tmp_path / "guide.py", str(devices)], tmp_path, timeout=600).stdout
    found = re.findall(r"LR found ([0-9.e+-]+) config LR ([0-9.e+-]+)", out)
    assert len(found) == devices, out[-3000:]  # every rank got the LR
    assert len({f for f in found}) == 1 and float(found[0][0]) == float(found[0][1])  # one sweep, one LR, applied
    groups = re.search(r"groups (\[.*\])", out).group(1)
    for name in ("'backbone.3', 0.01", "'backbone.3.no_decay', 0.0", "'backbone.0', 0.01", "'no_decay', 0.0"):
        assert name in groups, groups
    assert "net.net" not in out
    assert float(re.search(r"val/acc ([0-9.]+)", out).group(1)) > 0.8
    folded, diff = re.search(r"folded (\d+) max diff ([0-9.e+-]+)", out).groups()
    assert int(folded) == 2 and float(diff) < 1e-4
    (plot,) = tmp_path.rglob("lr_find*.png")  # the sweep's plot: once, in the run's logger folder, not the cwd
    assert plot.parent != tmp_path and "lightning_logs" in plot.parts
    assert float(re.search(r"MC mean prob ([0-9.]+)", out).group(1)) > 0
