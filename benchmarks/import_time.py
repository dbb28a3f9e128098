"""Import cost of the package's functional core next to ``import torch`` (issue: a core that stands alone).

Each statement runs in a fresh interpreter, several times, alternating; the time is the child's CPU time (user +
system, from ``os.wait4``), which on a shared machine measures the work rather than the waiting. Prints one
table and, with ``--json``, writes the numbers.

    python benchmarks/import_time.py --repeats 7
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from _report import command_line, write_result

STATEMENTS = {
    "import torch": "import torch",
    "from lightning_bestpractices import fold_batchnorm": "from lightning_bestpractices import fold_batchnorm",
    "import lightning_bestpractices (names resolve on first use)": "import lightning_bestpractices",
    "from lightning_bestpractices import WeightInit (loads Lightning)": "from lightning_bestpractices import WeightInit",
    "import lightning": "import lightning",
}


def cpu_seconds(statement: str) -> float:
    proc = subprocess.Popen([sys.executable, "-c", statement], cwd=Path(__file__).resolve().parents[1])
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"`{statement}` failed with status {status}")
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    times: dict[str, list[float]] = {k: [] for k in STATEMENTS}
    for _ in range(args.repeats):
        for label, statement in STATEMENTS.items():
            times[label].append(cpu_seconds(statement))
    base = statistics.median(times["import torch"])
    print(f"| statement | CPU s (median of {args.repeats}) | / `import torch` |")
    print("|---|---|---|")
    rows = []
    for label, ts in times.items():
        med = statistics.median(ts)
        print(f"| `{label}` | {med:.2f} | {med / base:.2f} |")
        rows.append([f"`{label}`", round(med, 2), round(med / base, 2)])
    ratios = {f"{label} / import torch": statistics.median(ts) / base for label, ts in times.items()
              if label != "import torch"}  # fmt: skip
    write_result(
        "import_time",
        tables={"imports": {"columns": ["statement", f"CPU s (median of {args.repeats})", "/ `import torch`"],
                            "rows": rows}},
        ratios=ratios, command=command_line(),
        notes="each statement in a fresh interpreter, alternating; child CPU time (user + system)",
    )  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({k: statistics.median(v) for k, v in times.items()}, indent=2))


if __name__ == "__main__":
    main()
