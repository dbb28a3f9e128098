"""The results page: run every seed claim's sweep at full length, write JSON, render the tables from it.

    python tools/results.py run                 # every claim in tools/claims.yaml: sweeps, then render (long)
    python tools/results.py run --only momentum_quadratic --jobs 2 --threads 1
    python tools/results.py render              # docs/results.md + every marked table, from docs/results.json
    python tools/results.py check               # exit 1 if a rendered table differs from what the JSON gives

A claim names a sweep (``recipes/sweeps/<sweep>.yaml``), the metrics to show, and optionally *derived* numbers: a
Python expression over ``m(setting, metric)`` (the mean over seeds), e.g. a ratio of two settings, or
``spread(variant, metric)`` (best minus worst mean over that variant's grid points). ``run`` writes
each sweep's summary into ``docs/results.json`` (with the command, wall time and hardware), keeping the entries of
claims it did not run. ``render`` writes ``docs/results.md`` and replaces the text between
``<!-- results: ID -->`` and ``<!-- /results -->`` in ``docs/*.md`` and ``recipes/README.md`` with claim ID's
table. No number in those tables is typed by hand: the test suite re-renders them from the JSON and compares.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLAIMS = ROOT / "tools" / "claims.yaml"
RESULTS = ROOT / "docs" / "results.json"
PAGE = ROOT / "docs" / "results.md"
MARKED = [ROOT / "recipes" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"(<!-- results: (?P<id>[\w-]+) -->\n)(?P<body>.*?)(<!-- /results -->)", re.S)


def load_claims() -> list[dict[str, Any]]:
    import yaml

    claims = yaml.safe_load(CLAIMS.read_text())
    ids = [c["id"] for c in claims]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise SystemExit(f"{CLAIMS}: duplicate claim ids {sorted(dup)}")
    return claims


def _mean(summary: list[dict[str, Any]], setting: str, metric: str) -> float:
    for row in summary:
        if row["setting"] == setting:
            stat = row["metrics"].get(metric)
            if stat is None:
                raise KeyError(f"metric {metric!r} missing for setting {setting!r}")
            return stat["mean"]
    raise KeyError(f"setting {setting!r} not in the sweep (have {[r['setting'] for r in summary]})")


def derive(expressions: dict[str, str], summary: list[dict[str, Any]]) -> dict[str, float]:
    """Evaluate each derived expression with ``m(setting, metric)`` = that setting's mean over seeds."""
    def spread(prefix: str, metric: str) -> float:  # best minus worst mean over the settings starting with prefix
        means = [r["metrics"][metric]["mean"] for r in summary
                 if r["setting"].split(",")[0] == prefix and metric in r["metrics"]]
        if not means:
            raise KeyError(f"no setting {prefix!r} with metric {metric!r}")
        return max(means) - min(means)

    env = {"m": lambda s, k: _mean(summary, s, k), "spread": spread, "abs": abs, "max": max, "min": min,
           "math": math}
    return {name: float(eval(expr, {"__builtins__": {}}, env)) for name, expr in expressions.items()}  # noqa: S307


def run_claims(only: list[str] | None, jobs: int, extra: list[str], threads: int | None = 1) -> None:
    sys.path.insert(0, str(ROOT))
    from lightning_bestpractices.sweep import load_sweep, run_sweep

    claims = load_claims()
    if only:
        unknown = set(only) - {c["id"] for c in claims}
        if unknown:
            raise SystemExit(f"unknown claim id(s) {sorted(unknown)}; see {CLAIMS}")
        claims = [c for c in claims if c["id"] in only]
    data = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"claims": {}}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    done: dict[str, dict[str, Any]] = {}
    for claim in claims:
        if not claim.get("sweep"):
            data["claims"][claim["id"]] = {**claim, "measured": False}
            continue
        name = claim["sweep"]
        if name not in done:
            sweep = load_sweep(ROOT / "recipes" / "sweeps" / f"{name}.yaml")
            out = ROOT / "runs" / "results" / stamp / name
            print(f"== {claim['id']}: sweep {name} ({len(sweep.runs())} runs) -> {out}", flush=True)
            load = os.getloadavg()[0]
            done[name] = run_sweep(sweep, out, jobs=jobs, extra=extra, threads=threads)
            done[name]["load"] = round((load + os.getloadavg()[0]) / 2, 1)  # other jobs on a shared machine
        result = done[name]
        failed = [r for r in result["runs"] if r["rc"] != 0]
        entry = {**claim, "measured": True, "command": f"python -m lightning_bestpractices.sweep "
                 f"recipes/sweeps/{name}.yaml --jobs {jobs}" + (f" --threads {threads}" if threads else "")
                 + (f" --args {' '.join(extra)}" if extra else ""),
                 "wall_s": result["wall_s"], "runs": len(result["runs"]), "failed": len(failed),
                 "seeds": sorted({r["seed"] for r in result["runs"] if r["seed"] is not None}),
                 "hardware": next((r["hardware"] for r in result["runs"] if r.get("hardware")), None),
                 "summary": result["summary"], "metric": result["metric"], "date": time.strftime("%Y-%m-%d"),
                 "load": result.get("load"), "git": commit}
        entry["derived"] = derive(claim.get("derived", {}), result["summary"]) if not failed else {}
        data["claims"][claim["id"]] = entry
        RESULTS.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")  # after each claim: partial runs count
    data["command"] = "python tools/results.py run"
    RESULTS.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------------------------------- render
def _num(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.3g}"
    return f"{value:.4g}"


def _cell(stat: dict[str, float] | None) -> str:
    if stat is None:
        return "–"
    if stat["n"] > 1:
        return f"{_num(stat['mean'])} ± {_num(stat['std'])}"
    return _num(stat["mean"])


def claim_table(entry: dict[str, Any]) -> str:
    """The markdown table of one claim: a row per setting, a column per metric (mean ± std over seeds)."""
    if not entry.get("measured"):
        return f"*Not measured here: {entry.get('why_not', 'no sweep')}*\n"
    columns = entry.get("columns") or [entry["metric"]]
    labels = entry.get("labels", {})
    head = ["setting", *[labels.get(c, f"`{c}`") for c in columns], "runs"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in entry["summary"]:
        cells = [f"`{row['setting']}`", *[_cell(row["metrics"].get(c)) for c in columns],
                 str(row["runs"] - row["failed"]) + (f" ({row['failed']} failed)" if row["failed"] else "")]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if entry.get("derived"):
        text += "\n" + "\n".join(f"- {k}: **{_num(v)}**" for k, v in entry["derived"].items()) + "\n"
    seeds = entry.get("seeds") or []
    text += (f"\n<small>`{entry['command']}` — {entry['runs']} runs"
             + (f", seeds {seeds[0]}–{seeds[-1]}" if len(seeds) > 1 else "")
             + f", {_num(entry['wall_s'] / 60)} min wall on {_hw(entry.get('hardware'))}"
             + (f", load average {entry['load']}" if entry.get("load") is not None else "")
             + f", {entry['date']}" + (f", commit {entry['git']}" if entry.get("git") else "") + ".</small>\n")
    return text


def _hw(hw: dict[str, Any] | None) -> str:
    if not hw:
        return "unknown hardware"
    return f"{hw['cpu']} ({hw['cpu_count']} cores, {hw['torch_threads']} torch threads), accelerator: " \
           f"{hw['accelerator']}, torch {hw['torch']}, Lightning {hw['lightning']}"


def render_page(data: dict[str, Any], claims: list[dict[str, Any]]) -> str:
    out = ["# Results", "",
           "Every number on this page was measured by `python tools/results.py run`, which runs each claim's sweep "
           "(`recipes/sweeps/`) at full length and writes `docs/results.json`; this page and every results table in "
           "the docs and `recipes/README.md` are rendered from that file (`python tools/results.py render`), and "
           "the test suite checks that they agree. Values are mean ± standard deviation over the seeds listed under "
           "each table. The wall times are from a shared 2-core virtual machine with other jobs running: compare "
           "ratios, not absolute times.", ""]
    by_seed: dict[str, list[dict[str, Any]]] = {}
    for claim in claims:
        by_seed.setdefault(str(claim["seed"]).split(",")[0].strip(), []).append(claim)
    for seed, group in sorted(by_seed.items()):
        out += [f"## Seed {seed}", ""]
        for claim in group:
            entry = data["claims"].get(claim["id"], {**claim, "measured": False, "why_not": "not run yet"})
            out += [f"### {claim['title']}", "", f"<!-- claim: {claim['id']} -->", "",
                    f"**What the seed says** ({claim['seed']}): {claim['says']}", "",
                    "**What we measured:**", "", claim_table(entry).rstrip(), ""]
            if claim.get("note"):
                out += [claim["note"], ""]
    return "\n".join(out).rstrip() + "\n"


def render_marked(text: str, data: dict[str, Any]) -> str:
    def sub(match: re.Match) -> str:
        entry = data["claims"].get(match["id"])
        body = claim_table(entry) if entry else f"*No results for `{match['id']}` in docs/results.json yet.*\n"
        return match.group(1) + body + match.group(4)

    return MARKER.sub(sub, text)


def expected_files() -> dict[Path, str]:
    """Every generated file (or file with marked tables) and the text it must have, from the JSON alone."""
    data = json.loads(RESULTS.read_text())
    claims = load_claims()
    files = {PAGE: render_page(data, claims)}
    for path in MARKED:
        if path == PAGE or not path.is_file():
            continue
        text = path.read_text()
        if MARKER.search(text):
            files[path] = render_marked(text, data)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/results.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the claims' sweeps at full length, then render")
    run.add_argument("--only", nargs="+", default=None, help="claim ids to (re)run; the others keep their JSON")
    run.add_argument("--jobs", type=int, default=2, help="runs at a time within a sweep (default 2)")
    run.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1: small models)")
    run.add_argument("--args", nargs=argparse.REMAINDER, default=[], help="extra overrides for every run")
    sub.add_parser("render", help="render docs/results.md and the marked tables from docs/results.json")
    sub.add_parser("check", help="exit 1 when a rendered table differs from docs/results.json")
    ns = parser.parse_args(argv)
    if ns.cmd == "run":
        run_claims(ns.only, ns.jobs, ns.args, ns.threads)
    files = expected_files()
    if ns.cmd == "check":
        stale = [str(p.relative_to(ROOT)) for p, text in files.items() if not p.is_file() or p.read_text() != text]
        if stale:
            print("out of date (run `python tools/results.py render`): " + ", ".join(stale))
            return 1
        print(f"{len(files)} file(s) agree with docs/results.json")
        return 0
    for path, text in files.items():
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            print(f"rendered {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
