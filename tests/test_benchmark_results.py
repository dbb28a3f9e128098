"""Every benchmark table in the READMEs and docs is exactly what benchmarks/results/*.json renders to."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys

import pytest
from conftest import ROOT

BENCHMARKS = ["checkpointing", "fold_batchnorm", "freezing", "import_time", "lamb", "mc_dropout",
              "monitor_overhead", "moons_vs_plain_loop"]  # fmt: skip


@pytest.fixture(scope="module")
def render():
    spec = importlib.util.spec_from_file_location("bench_render", ROOT / "benchmarks" / "render.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_rendered_files_agree_with_the_json(render):
    files = render.expected_files()
    assert ROOT / "benchmarks" / "README.md" in files
    stale = render.check()
    assert not stale, f"stale: {[str(p.relative_to(ROOT)) for p in stale]}: run `python benchmarks/render.py`"


def test_every_marker_names_an_existing_result_and_table(render):
    seen = set()
    for path in render.marked_files():
        if not path.is_file():
            continue
        for name, table in render.markers(path):
            json_path = render.RESULTS / f"{name}.json"
            assert json_path.is_file(), f"{path.relative_to(ROOT)}: marker for missing result {name!r}"
            data = json.loads(json_path.read_text())
            assert table in (None, "ratios") or table in data["tables"], (
                f"{path.relative_to(ROOT)}: {name!r} has no table {table!r}"
            )
            seen.add(name)
    assert set(BENCHMARKS) <= seen, f"benchmarks without a rendered table: {sorted(set(BENCHMARKS) - seen)}"


@pytest.mark.parametrize("name", BENCHMARKS)
def test_every_benchmark_wrote_a_complete_result(render, name):
    data = render.load(name)
    assert data["command"].startswith(f"python benchmarks/{name}.py")
    assert data["date"] and data["commit"] and data["hardware"]["cpu"] and data["hardware"]["cpu_count"]
    assert data["tables"] and data["ratios"]
    for table in data["tables"].values():
        assert table["rows"] and all(len(row) == len(table["columns"]) for row in table["rows"])


def test_a_changed_number_makes_the_check_fail(render, tmp_path):
    """The check can fail: one number changed in a copy of a JSON changes the rendered block."""
    results = tmp_path / "results"
    shutil.copytree(render.RESULTS, results)
    assert render.check(results) == []
    path = results / "lamb.json"
    data = json.loads(path.read_text())
    key = next(iter(data["ratios"]))
    data["ratios"][key] = data["ratios"][key] * 1.5 + 1
    path.write_text(json.dumps(data))
    stale = render.check(results)
    assert stale, "a changed ratio did not change any rendered file"


def test_a_missing_table_is_an_error(render):
    with pytest.raises(KeyError, match="no table"):
        render.render_block("lamb", "no-such-table")
    with pytest.raises(KeyError, match="no result"):
        render.render_block("no-such-benchmark", None)


def test_no_hand_typed_table_in_the_benchmarks_readme(render):
    """Every table in benchmarks/README.md sits inside a marker, i.e. is rendered from a JSON."""
    readme = ROOT / "benchmarks" / "README.md"
    lines = render.MARKER.sub("", readme.read_text()).splitlines()
    typed = [a for a, b in zip(lines, lines[1:]) if a.startswith("|") and b.startswith("|---")]
    assert not typed, f"typed tables in benchmarks/README.md: {typed}; render them from benchmarks/results/"
