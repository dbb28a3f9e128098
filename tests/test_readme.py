"""The README's promises: CI runs its test command verbatim, and its Trainer example runs."""

from __future__ import annotations

import re

from conftest import ROOT, run_python

README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_ci_runs_the_readme_test_command_verbatim():
    setup = _blocks("bash")[:2]
    assert len(setup) == 2 and all(len(b.strip().splitlines()) == 1 for b in setup), "exactly two set-up commands"
    install_and_run, install_and_test = (b.strip() for b in setup)
    assert "recipes/moons.py fit" in install_and_run
    assert "pytest" in install_and_test
    ci = (ROOT / ".ci" / "run").read_text()
    assert install_and_test in ci.splitlines(), "`.ci/run` must run the README's test command as written"


def test_readme_trainer_example_runs(tmp_path):
    (example,) = _blocks("python")
    assert len(example.strip().splitlines()) <= 25
    (tmp_path / "example.py").write_text(example)
    out = run_python([tmp_path / "example.py"], tmp_path, timeout=600).stdout
    acc = float(re.search(r"val/acc = ([0-9.]+)", out).group(1))
    assert acc > 0.9, out[-2000:]
