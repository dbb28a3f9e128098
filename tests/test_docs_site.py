"""The documentation site builds with ``mkdocs build --strict``: every page in the nav exists, every link resolves,
and every API page renders its module's docstrings (a broken docstring reference fails the build)."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT


def test_docs_build_strictly_and_render_the_api(tmp_path):
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    api = {p.parent.name: p.read_text() for p in (site / "api").glob("*/index.html")}
    assert set(api) == {"foundation", "initialization", "normalization", "optim", "finetuning", "uncertainty",
                        "regularization", "health"}  # fmt: skip
    for page, name in [("normalization", "fold_batchnorm"), ("optim", "Schedule"), ("uncertainty", "mc_predict"),
                       ("health", "NonFiniteGuard"), ("regularization", "MaxNorm"), ("foundation", "Classifier")]:
        assert 'id="lightning_bestpractices.' in api[page] and name in api[page], (page, name)
    assert (site / "guide" / "index.html").is_file() and (site / "index.html").is_file()
