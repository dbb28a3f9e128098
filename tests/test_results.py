"""The results page and every marked results table are exactly what docs/results.json renders to."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import sys

import pytest
from conftest import ROOT


@pytest.fixture(scope="module")
def results():
    spec = importlib.util.spec_from_file_location("results_tool", ROOT / "tools" / "results.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_rendered_files_agree_with_the_json(results):
    files = results.expected_files()
    assert results.PAGE in files and len(files) >= 2
    for path, text in files.items():
        assert path.read_text() == text, f"{path.relative_to(ROOT)} is stale: run `python tools/results.py render`"


def test_every_claim_is_measured_or_says_why_not(results):
    data = json.loads(results.RESULTS.read_text())
    for claim in results.load_claims():
        entry = data["claims"].get(claim["id"])
        assert entry is not None, f"claim {claim['id']} was never run"
        if entry["measured"]:
            assert entry["failed"] == 0 and entry["runs"] >= 1, claim["id"]
            assert (ROOT / "recipes" / "sweeps" / f"{claim['sweep']}.yaml").is_file()
            shown = {k for row in entry["summary"] for k in row["metrics"]}
            missing = set(claim.get("columns", [])) - shown
            assert not missing, f"{claim['id']}: columns not in the measured metrics: {sorted(missing)}"
        else:
            assert claim.get("why_not"), f"{claim['id']} is not measured and does not say why"


def test_every_marker_names_a_claim(results):
    ids = {c["id"] for c in results.load_claims()}
    for path in results.MARKED:
        for match in results.MARKER.finditer(path.read_text()):
            assert match["id"] in ids, f"{path.relative_to(ROOT)}: marker for unknown claim {match['id']!r}"


def test_a_changed_number_makes_the_check_fail(results, tmp_path, monkeypatch):
    """The check can fail: one mean changed in the JSON changes the page and every table showing it."""
    data = json.loads(results.RESULTS.read_text())
    shown = [(k, c) for k, v in data["claims"].items() if v.get("measured")
             for c in (v.get("columns") or [v["metric"]]) if c in v["summary"][0]["metrics"]]
    assert shown
    claim, metric = shown[0]  # a number that is on the page
    changed = copy.deepcopy(data)
    changed["claims"][claim]["summary"][0]["metrics"][metric]["mean"] += 0.123
    fake = tmp_path / "results.json"
    fake.write_text(json.dumps(changed))
    monkeypatch.setattr(results, "RESULTS", fake)
    stale = [p for p, text in results.expected_files().items() if p.read_text() != text]
    assert results.PAGE in stale


def test_no_hand_typed_results_table_outside_the_markers(results):
    """A table whose header names a measured quantity (acc, loss, ECE, ms/step, ...) must sit inside a marker
    (docs/results.md is rendered whole and is checked by the test above)."""
    measured = re.compile(r"\b(acc|accuracy|loss|ECE|NLL|ms/step|speed-?up|wall)\b", re.I)
    bench = re.compile(r"<!-- bench: [\w:-]+ -->\n.*?<!-- /bench -->", re.S)  # rendered by benchmarks/render.py
    for path in [p for p in results.MARKED if p != results.PAGE] + [ROOT / "README.md", ROOT / "benchmarks" / "README.md"]:
        lines = bench.sub("", results.MARKER.sub("", path.read_text())).splitlines()
        headers = [a for a, b in zip(lines, lines[1:]) if a.startswith("|") and re.match(r"^\|\s*:?-{3,}", b)]
        typed = [h for h in headers if measured.search(h)]
        assert not typed, f"{path.relative_to(ROOT)} has typed results tables {typed}; render them from the JSON"
