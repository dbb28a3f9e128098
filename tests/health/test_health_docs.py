"""Every Python snippet of docs/health.md runs as written (in a fresh process, in a temporary folder)."""

from __future__ import annotations

import re

import pytest
from _health_helpers import ROOT, run_python

SNIPPETS = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "health.md").read_text(), flags=re.S)


def test_the_page_has_a_snippet_per_part():
    text = "\n".join(SNIPPETS)
    for name in ("GradientMonitor", "grad_norm_by_group", "NonFiniteGuard", "EarlyStopping"):
        assert name in text, name


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_snippet_runs(index, tmp_path):
    (tmp_path / "snippet.py").write_text(SNIPPETS[index])
    out = run_python([tmp_path / "snippet.py"], tmp_path, timeout=300).stdout
    if "SEQUENCE" in SNIPPETS[index]:
        assert out.strip().splitlines()[-1] == "5 2 2"  # the seed-001 result the page states
    if "Spiky" in SNIPPETS[index]:
        assert "non-finite value in the loss at optimizer step 3" in out
        assert (tmp_path / "checkpoints" / "last-good.ckpt").is_file()
