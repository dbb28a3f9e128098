"""Every Python snippet of docs/regularization.md runs as written."""

from __future__ import annotations

import re

import pytest
from conftest import ROOT, run_python

DOC = (ROOT / "docs" / "regularization.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", DOC, flags=re.S)


def test_there_are_snippets():
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_snippet_runs(index, tmp_path):
    (tmp_path / "snippet.py").write_text(BLOCKS[index])
    run_python([tmp_path / "snippet.py"], tmp_path, timeout=600)
