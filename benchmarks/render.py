"""Render the benchmark tables in the READMEs and docs from ``benchmarks/results/*.json``.

    python benchmarks/render.py            # rewrite every marked block from the JSON files
    python benchmarks/render.py --check    # exit 1 when a file differs from what the JSON files give

A block is the text between ``<!-- bench: NAME -->`` (every table of ``results/NAME.json`` and its ratios) or
``<!-- bench: NAME:TABLE -->`` (one table; ``NAME:ratios`` for the ratios alone) and ``<!-- /bench -->``, in
``benchmarks/README.md``, ``README.md`` and ``docs/*.md``. Each block ends with a one-line footer: the command that
wrote the JSON, its notes, the date, the hardware and the commit. The JSON files are written by the benchmarks
themselves (``benchmarks/_report.py``); no number in a block is typed by hand, and the test suite checks the
rendered files against the JSON files.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
MARKER = re.compile(
    r"(?P<open><!-- bench: (?P<name>[\w-]+)(?::(?P<table>[\w-]+))? -->\n)(?P<body>.*?)(?P<close><!-- /bench -->)",
    re.S,
)


def marked_files() -> list[Path]:
    """The files whose marked blocks are rendered."""
    return [ROOT / "benchmarks" / "README.md", ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        text = str(value)
    elif isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, int):
        text = f"{value:,}"
    else:
        text = str(value)
    return text.replace("|", "\\|")


def markdown_table(table: dict[str, list]) -> str:
    lines = [
        "| " + " | ".join(_cell(c) for c in table["columns"]) + " |",
        "|" + "---|" * len(table["columns"]),
    ]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table["rows"]]
    return "\n".join(lines) + "\n"


def ratios_text(ratios: dict[str, float]) -> str:
    return "Ratios: " + "; ".join(f"{k} **{v:.4g}**" for k, v in ratios.items()) + ".\n"


def footer(data: dict[str, Any]) -> str:
    hw = data.get("hardware") or {}
    load = hw.get("load_average_1_5_15min")
    machine = (f"{hw.get('cpu', '?')}, {hw.get('cpu_count', '?')} cores, {hw.get('torch_threads', '?')} torch "
               f"thread(s)" + (f", load average {load[0]:g}" if load else "")
               + f", torch {hw.get('torch', '?')}, Lightning {hw.get('lightning', '?')}")  # fmt: skip
    notes = f" ({data['notes']})" if data.get("notes") else ""
    return (
        f"<small>`{data['command']}`{notes}; {data['date']}; {machine}; commit "
        f"{str(data.get('commit', 'unknown'))[:12]}.</small>\n"
    )


def load(name: str, results_dir: Path | None = None) -> dict[str, Any]:
    path = (RESULTS if results_dir is None else Path(results_dir)) / f"{name}.json"
    if not path.is_file():
        raise KeyError(f"no result {name!r}: {path} does not exist (run the benchmark)")
    return json.loads(path.read_text())


def render_block(name: str, table: str | None, results_dir: Path | None = None) -> str:
    """The markdown for ``<!-- bench: NAME[:TABLE] -->``; ``KeyError`` when the JSON or the table is missing."""
    data = load(name, results_dir)
    if table == "ratios":
        parts = [ratios_text(data["ratios"])]
    elif table is not None:
        if table not in data["tables"]:
            raise KeyError(f"result {name!r} has no table {table!r} (has {sorted(data['tables'])})")
        parts = [markdown_table(data["tables"][table])]
    else:
        parts = [markdown_table(t) for t in data["tables"].values()]
        if data.get("ratios"):
            parts.append(ratios_text(data["ratios"]))
    return "\n".join(parts) + "\n" + footer(data)


def markers(path: Path) -> list[tuple[str, str | None]]:
    """(NAME, TABLE or None) of every marked block in ``path``."""
    return [(m["name"], m["table"]) for m in MARKER.finditer(path.read_text())]


def render_text(text: str, results_dir: Path | None = None) -> str:
    return MARKER.sub(
        lambda m: m["open"] + render_block(m["name"], m["table"], results_dir) + m["close"], text
    )


def expected_files(results_dir: Path | None = None) -> dict[Path, str]:
    """Every file with marked blocks and the text it must have, from the JSON files alone."""
    out = {}
    for path in marked_files():
        if path.is_file():
            text = path.read_text()
            if MARKER.search(text):
                out[path] = render_text(text, results_dir)
    return out


def check(results_dir: Path | None = None) -> list[Path]:
    """The marked files that differ from what the JSON files render to (empty: all agree)."""
    return [p for p, text in expected_files(results_dir).items() if p.read_text() != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/render.py", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a rendered file differs from the JSON"
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = check()
        if stale:
            print("out of date (run `python benchmarks/render.py`): "
                  + ", ".join(str(p.relative_to(ROOT)) for p in stale))  # fmt: skip
            return 1
        print(f"{len(expected_files())} file(s) agree with benchmarks/results/")
        return 0
    for path, text in expected_files().items():
        if path.read_text() != text:
            path.write_text(text)
            print(f"rendered {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
