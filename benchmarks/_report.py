"""Shared by the benchmarks: write what a run measured to ``benchmarks/results/<name>.json``.

Numbers are generated, never typed: every results table in ``benchmarks/README.md`` and the docs is rendered from
these files by ``python benchmarks/render.py`` (and ``--check`` in the test suite compares them). A result holds
the tables the benchmark printed (``{"columns": [...], "rows": [[...]]}``, cells as numbers or the benchmark's
own strings), the headline ratios, the command that produced it, the date, the git commit and the hardware.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"


def hardware() -> dict[str, Any]:
    """CPU model, cores, torch threads, load average and versions (without importing Lightning: it is slow)."""
    from lightning_bestpractices._hardware import hardware as measured_on

    return measured_on(load=True)


def git_commit() -> str:
    """The checked-out commit, with ``-dirty`` when tracked files differ from it."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def command_line(argv: list[str] | None = None) -> str:
    """How this benchmark was invoked, as a user would type it from the repository root."""
    argv = sys.argv if argv is None else argv
    script = Path(argv[0])
    try:
        script = script.resolve().relative_to(ROOT)
    except ValueError:
        pass
    return shlex.join(["python", str(script), *argv[1:]])


def _plain(value: Any) -> Any:
    """JSON-ready: tuples to lists, numpy/torch scalars to Python numbers."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value


def write_result(name: str, *, tables: dict[str, dict[str, list]], ratios: dict[str, float], command: str,
                 notes: str = "", out_dir: Path | None = None) -> Path:  # fmt: skip
    """Write ``<out_dir>/<name>.json`` (default ``benchmarks/results/``) and return its path.

    Args:
        name: the benchmark's name (the file stem, and the NAME in ``<!-- bench: NAME[:TABLE] -->``).
        tables: table name -> ``{"columns": [...], "rows": [[...], ...]}``, as the benchmark printed it.
        ratios: the headline ratios (label -> value), rendered under the tables.
        command: the command line that produced the numbers (``command_line()``).
        notes: one line on what the numbers mean or the conditions of the run (optional).
    """
    for key, table in tables.items():
        columns, rows = table["columns"], table["rows"]
        bad = [i for i, row in enumerate(rows) if len(row) != len(columns)]
        if bad:
            raise ValueError(f"table {key!r}: rows {bad} do not have {len(columns)} cells")
    out_dir = RESULTS if out_dir is None else Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {"name": name, "command": command, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "commit": git_commit(), "hardware": hardware(), "notes": notes,
            "tables": _plain({k: {"columns": list(t["columns"]), "rows": t["rows"]} for k, t in tables.items()}),
            "ratios": _plain({k: float(v) for k, v in ratios.items()})}  # fmt: skip
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return path
