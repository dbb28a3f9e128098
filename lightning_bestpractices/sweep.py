"""Sweeps: one recipe run per setting and seed, through CLI overrides, and one comparison plot.

Every study in the package (optimizers, schedules, dropout rates, batch sizes, seeds...) is a sweep file::

    recipe: recipes/optimizers.py        # relative to the sweep file's repository (the folder holding recipes/)
    description: SGD vs Adam on digits
    metric: val/acc                      # ranked in the comparison plot (mean +- std over seeds)
    mode: max                            # max | min: which end is better
    series: val/acc                      # optional: a curve drawn per setting (a recipe series or a history key)
    args: ["--trainer.max_epochs=30"]    # overrides for every run (a relative --config=PATH: from the repository)
    variants:                            # optional named settings, each a list of overrides
      sgd: ["--model.optim.optimizer=sgd", "--model.optim.lr=0.1"]
      adam: ["--model.optim.optimizer=adam", "--model.optim.lr=0.001"]
    grid:                                # optional cartesian product: key -> values, each ``--key=value``
      data.batch_size: [32, 128]
    seeds: [0, 1, 2]                     # ``--seed_everything`` values: the replicate axis

and one command runs it::

    python -m lightning_bestpractices.sweep recipes/sweeps/optimizers.yaml [--seeds 0 1] [--set KEY=VALUE ...]
                                            [--args ...] [--jobs N] [--threads T] [--out DIR] [--dry-run]

Each run is ``python RECIPE fit <args> <variant> <grid> --seed_everything=S --run_dir OUT/<setting>/seed<S>``
in its own process (so DDP flags work in a sweep too), with its console output in ``OUT/logs/``. The recipe's
``metrics.json`` (written by :class:`~lightning_bestpractices.cli.BestPracticesCLI`) is read back; the sweep
writes ``sweep.json`` (every run and a per-setting summary), ``sweep.csv`` and ``comparison.png``.

What it adds over W&B sweeps: it runs offline, in order, with no agent or server; the settings are the same
CLI overrides a user types; and its summary statistics go straight into the generated results page.
This module imports neither torch nor Lightning.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ArgumentError

__all__ = ["Sweep", "Run", "load_sweep", "run_sweep", "summarize", "plot_comparison", "main"]


@dataclass
class Run:
    """One process of a sweep: a setting (variant + grid point) and a seed."""

    setting: str
    seed: int | None
    overrides: list[str]
    run_dir: Path | None = None
    rc: int | None = None
    wall_s: float | None = None
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.setting if self.seed is None else f"{self.setting}/seed{self.seed}"


@dataclass
class Sweep:
    """A parsed sweep file (see the module docstring).

    Examples:
        >>> s = Sweep(name="demo", recipe=Path("recipes/moons.py"), metric="val/acc",
        ...           variants={"a": ["--x=1"], "b": ["--x=2"]}, grid={"data.batch_size": [32, 64]}, seeds=[0, 1])
        >>> [r.label for r in s.runs()][:3]
        ['a,batch_size=32/seed0', 'a,batch_size=32/seed1', 'a,batch_size=64/seed0']
        >>> s.runs()[0].overrides
        ['--x=1', '--data.batch_size=32', '--seed_everything=0']
    """

    name: str
    recipe: Path
    metric: str
    mode: str = "max"
    series: str | None = None
    description: str = ""
    args: list[str] = field(default_factory=list)
    variants: dict[str, list[str]] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    seeds: list[int] | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("max", "min"):
            raise ArgumentError(f"`mode` must be 'max' or 'min', got {self.mode!r}")
        for name, overrides in self.variants.items():
            if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
                raise ArgumentError(f"variant {name!r} must be a list of CLI overrides, got {overrides!r}")
        for key, values in self.grid.items():
            if not isinstance(values, list) or not values:
                raise ArgumentError(f"grid key {key!r} must list at least one value, got {values!r}")
        if self.seeds is not None and not all(isinstance(s, int) and not isinstance(s, bool) for s in self.seeds):
            raise ArgumentError(f"`seeds` must be a list of ints, got {self.seeds!r}")

    def settings(self) -> list[tuple[str, list[str]]]:
        """(label, overrides) per setting: every variant times every grid point, in file order."""
        variants = list(self.variants.items()) or [("", [])]
        keys = list(self.grid)
        points = list(itertools.product(*(self.grid[k] for k in keys))) if keys else [()]
        out = []
        for (vname, vargs), point in itertools.product(variants, points):
            parts = [vname] if vname else []
            parts += [f"{k.rsplit('.', 1)[-1]}={_cli_value(v)}" for k, v in zip(keys, point)]
            overrides = list(vargs) + [f"--{k}={_cli_value(v)}" for k, v in zip(keys, point)]
            out.append((",".join(parts) or "default", overrides))
        return out

    def runs(self) -> list[Run]:
        """Every run of the sweep: settings times seeds."""
        seeds = self.seeds if self.seeds else [None]
        return [Run(label, seed, [*overrides, *([] if seed is None else [f"--seed_everything={seed}"])])
                for label, overrides in self.settings() for seed in seeds]


def _cli_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def load_sweep(path: str | Path) -> Sweep:
    """Read a sweep file; the recipe path is resolved against the repository holding the file (or cwd)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ArgumentError(f"sweep file not found: {str(path)!r}")
    spec = yaml.safe_load(path.read_text()) or {}
    known = {"recipe", "description", "metric", "mode", "series", "args", "variants", "grid", "seeds"}
    unknown = set(spec) - known
    if unknown:
        raise ArgumentError(f"{path}: unknown sweep keys {sorted(unknown)}; allowed: {sorted(known)}")
    for key in ("recipe", "metric"):
        if key not in spec:
            raise ArgumentError(f"{path}: `{key}` is required")
    recipe = Path(spec.pop("recipe"))
    if not recipe.is_absolute():
        base = next((p for p in [path.resolve().parent, *path.resolve().parents] if (p / recipe).is_file()), None)
        recipe = (base / recipe) if base is not None else recipe.resolve()
    if not recipe.is_file():
        raise ArgumentError(f"{path}: `recipe` not found: {str(recipe)!r}")
    root = recipe.parent.parent  # the repository: runs start in their own folder, so relative configs point here
    for key in ("args", "variants"):
        if key in spec:
            spec[key] = _resolve_configs(spec[key], root)
    return Sweep(name=path.stem, recipe=recipe, **spec)


def _resolve_configs(overrides: Any, root: Path) -> Any:
    """``--config=REL`` overrides (in a list, or in a dict of lists) made absolute against the repository.

    Examples:
        >>> _resolve_configs(["--config=recipes/configs/x.yaml", "--a=1"], Path("/repo"))
        ['--config=/repo/recipes/configs/x.yaml', '--a=1']
    """
    if isinstance(overrides, dict):
        return {name: _resolve_configs(value, root) for name, value in overrides.items()}
    if not isinstance(overrides, list):
        return overrides
    out = []
    for item in overrides:
        if isinstance(item, str) and item.startswith("--config=") and not Path(item[9:]).is_absolute():
            item = f"--config={root / item[9:]}"
        out.append(item)
    return out


def _launch(sweep: Sweep, run: Run, out: Path, extra: Sequence[str], threads: int | None = None) -> subprocess.Popen:
    run.run_dir = out / run.label
    log = out / "logs" / f"{run.label.replace('/', '-')}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(sweep.recipe), "fit", *sweep.args, *run.overrides, *extra,
           f"--run_dir={run.run_dir}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("LBP_RUN_DIR", None)  # each run gets its own folder, never the caller's
    if threads is not None:  # torch reads these at start-up: intra-op threads of every run
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    fh = log.open("w")
    fh.write(" ".join(cmd) + "\n")
    fh.flush()
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=out)
    proc._log = fh  # closed in _collect
    proc._started = time.perf_counter()
    return proc


def _collect(run: Run, proc: subprocess.Popen) -> None:
    run.rc = proc.wait()
    proc._log.close()
    run.wall_s = round(time.perf_counter() - proc._started, 2)
    metrics = run.run_dir / "metrics.json"
    if run.rc == 0 and metrics.is_file():
        run.result = json.loads(metrics.read_text())


def run_sweep(sweep: Sweep, out: str | Path, *, jobs: int = 1, extra: Sequence[str] = (),
              threads: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Run every run of ``sweep`` (``jobs`` at a time, each with ``threads`` torch threads if given), then write
    ``sweep.json``, ``sweep.csv`` and the plot. Small models run fastest on one thread: ``jobs = cores,
    threads = 1`` is the quickest way through a sweep of them."""
    if jobs < 1:
        raise ArgumentError(f"`jobs` must be >= 1, got {jobs!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ArgumentError(f"`threads` must be an int >= 1, got {threads!r}")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    runs = sweep.runs()
    started = time.perf_counter()
    pending, active, done = list(runs), [], 0
    bar = _progress(len(runs), sweep.name) if progress else None
    while pending or active:
        while pending and len(active) < jobs:
            run = pending.pop(0)
            active.append((run, _launch(sweep, run, out, extra, threads)))
        run, proc = active.pop(0)
        _collect(run, proc)
        done += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"{run.label}: {'ok' if run.rc == 0 else f'FAILED rc={run.rc}'}")
    if bar is not None:
        bar.close()
    result = {
        "name": sweep.name, "description": sweep.description, "recipe": str(sweep.recipe), "metric": sweep.metric,
        "mode": sweep.mode, "series": sweep.series, "args": [*sweep.args, *extra], "jobs": jobs, "threads": threads,
        "wall_s": round(time.perf_counter() - started, 2),
        "runs": [{"setting": r.setting, "seed": r.seed, "overrides": r.overrides, "run_dir": str(r.run_dir),
                  "rc": r.rc, "wall_s": r.wall_s, "metrics": r.result.get("metrics", {}),
                  "cpu_s": r.result.get("cpu_s"), "series": r.result.get("series", {}),
                  "history": r.result.get("history", []), "hardware": r.result.get("hardware")} for r in runs],
    }
    result["summary"] = summarize(result)
    (out / "sweep.json").write_text(json.dumps(result, indent=1))
    _write_csv(result, out / "sweep.csv")
    plot_comparison(result, out / "comparison.png")
    return result


def _progress(total: int, name: str):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with Lightning
        return None
    return tqdm(total=total, desc=f"sweep {name}", unit="run", file=sys.stderr)


def summarize(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per setting, in sweep order: runs, failures, and mean/std/min/max over seeds of every metric.

    Examples:
        >>> runs = [{"setting": "a", "rc": 0, "metrics": {"m": 1.0}}, {"setting": "a", "rc": 0, "metrics": {"m": 3.0}},
        ...         {"setting": "b", "rc": 1, "metrics": {}}]
        >>> s = summarize({"runs": runs})
        >>> s[0]["metrics"]["m"], s[1]["failed"]
        ({'mean': 2.0, 'std': 1.4142135623730951, 'min': 1.0, 'max': 3.0, 'n': 2}, 1)
    """
    order: dict[str, list[dict[str, Any]]] = {}
    for run in result["runs"]:
        order.setdefault(run["setting"], []).append(run)
    out = []
    for setting, runs in order.items():
        ok = [r for r in runs if r["rc"] == 0]
        keys = sorted({k for r in ok for k in r["metrics"]})
        stats = {}
        for key in keys:
            values = [r["metrics"][key] for r in ok if key in r["metrics"] and _finite(r["metrics"][key])]
            if values:
                stats[key] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1
                              else 0.0, "min": min(values), "max": max(values), "n": len(values)}
        out.append({"setting": setting, "runs": len(runs), "failed": len(runs) - len(ok), "metrics": stats})
    return out


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _write_csv(result: dict[str, Any], path: Path) -> None:
    keys = sorted({k for r in result["runs"] for k in r["metrics"]})
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["setting", "seed", "rc", "wall_s", *keys])
        for r in result["runs"]:
            writer.writerow([r["setting"], r["seed"], r["rc"], r["wall_s"], *(r["metrics"].get(k, "") for k in keys)])


def _curve(run: dict[str, Any], key: str) -> tuple[list[float], list[float], str, str] | None:
    if key in run.get("series", {}):
        s = run["series"][key]
        return s["x"], s["y"], s.get("xlabel", "x"), s.get("ylabel", key)
    rows = [r for r in run.get("history", []) if key in r]
    if rows:
        return [r["epoch"] for r in rows], [r[key] for r in rows], "epoch", key
    return None


def plot_comparison(result: dict[str, Any], path: str | Path) -> Path:
    """One figure: the metric per setting (mean +- std, every seed a dot), and the series per setting if any."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = result.get("summary") or summarize(result)
    metric, series = result["metric"], result.get("series")
    curves = {}
    if series:
        for run in result["runs"]:
            curve = _curve(run, series) if run["rc"] == 0 else None
            if curve is not None:
                curves.setdefault(run["setting"], []).append(curve)
    ncols = 2 if curves else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.5 * ncols, 4.2), squeeze=False)
    ax = axes[0][0]
    labels = [s["setting"] for s in summary]
    means = [s["metrics"].get(metric, {}).get("mean", float("nan")) for s in summary]
    stds = [s["metrics"].get(metric, {}).get("std", 0.0) for s in summary]
    pos = range(len(labels))
    ax.bar(pos, means, yerr=stds, capsize=4, color="#8fb3d9", edgecolor="#2b5d8a")
    for i, label in enumerate(labels):
        values = [r["metrics"][metric] for r in result["runs"]
                  if r["setting"] == label and r["rc"] == 0 and _finite(r["metrics"].get(metric))]
        ax.scatter([i] * len(values), values, color="black", s=10, zorder=3)
    finite = [m for m in means if _finite(m)]
    if finite and result.get("mode") == "max" and min(finite) > 0:
        low = min(v for r in result["runs"] for v in [r["metrics"].get(metric)] if _finite(v))
        ax.set_ylim(max(0.0, low - 0.1 * (max(finite) - low + 1e-9) - 0.02), None)
    ax.set_xticks(list(pos), labels, rotation=30 if len(labels) > 4 else 0, ha="right" if len(labels) > 4 else "center")
    ax.set_ylabel(f"{metric} ({'higher' if result.get('mode') == 'max' else 'lower'} is better)")
    n = max((s["runs"] for s in summary), default=0)
    ax.set_title(f"{result['name']}: {metric}, mean ± std over {n} run(s) per setting")
    ax.grid(axis="y", alpha=0.3)
    if curves:
        ax2 = axes[0][1]
        for setting, runs in curves.items():
            x, _, xlabel, ylabel = runs[0]
            length = min(len(c[1]) for c in runs)
            mean = [statistics.fmean(c[1][i] for c in runs) for i in range(length)]
            ax2.plot(x[:length], mean, label=setting)
        ys = [v for runs in curves.values() for c in runs for v in c[1]]
        if ys and min(ys) > 0 and max(ys) / min(ys) > 1e3:  # e.g. activation std over depth: vanishing is 1e-20
            ax2.set_yscale("log")
        ax2.set_xlabel(xlabel)
        ax2.set_ylabel(ylabel)
        ax2.set_title(f"{series} per setting (mean over seeds)")
        ax2.grid(alpha=0.3)
        ax2.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """``python -m lightning_bestpractices.sweep FILE.yaml ...`` (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m lightning_bestpractices.sweep", description=__doc__.split("\n")[0])
    parser.add_argument("file", help="sweep file (YAML)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="replace the file's seeds")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=V1,V2",
                        help="replace (or add) a grid key, values comma-separated; repeatable")
    parser.add_argument("--args", nargs=argparse.REMAINDER, default=[],
                        help="extra CLI overrides for every run (put last), e.g. --args --trainer.max_epochs=5")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (default 1)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per run (OMP_NUM_THREADS); default: torch's own choice")
    parser.add_argument("--out", default=None, help="sweep folder (default runs/sweeps/<name>-<stamp>)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands and stop")
    ns = parser.parse_args(argv)
    try:
        sweep = load_sweep(ns.file)
        if ns.seeds is not None:
            sweep.seeds = ns.seeds
        for item in ns.set:
            key, sep, values = item.partition("=")
            if not sep or not key:
                raise ArgumentError(f"`--set` takes KEY=V1,V2, got {item!r}")
            sweep.grid[key] = [_yaml_value(v) for v in values.split(",")]
        Sweep.__post_init__(sweep)
    except ArgumentError as err:
        parser.error(str(err))
    if ns.dry_run:
        for run in sweep.runs():
            print(" ".join([sys.executable, str(sweep.recipe), "fit", *sweep.args, *run.overrides, *ns.args]))
        return {}
    out = Path(ns.out) if ns.out else Path("runs") / "sweeps" / f"{sweep.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    result = run_sweep(sweep, out, jobs=ns.jobs, extra=ns.args, threads=ns.threads)
    _print_summary(result)
    print(f"sweep folder: {Path(out).resolve()}  (sweep.json, sweep.csv, comparison.png)")
    failed = sum(1 for r in result["runs"] if r["rc"] != 0)
    if failed:
        print(f"{failed} run(s) failed; their output is in {Path(out).resolve() / 'logs'}", file=sys.stderr)
        raise SystemExit(1)
    return result


def _yaml_value(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def _print_summary(result: dict[str, Any]) -> None:
    metric = result["metric"]
    print(f"{result['name']}: {metric} per setting (mean ± std over seeds)")
    for s in result["summary"]:
        m = s["metrics"].get(metric)
        text = f"{m['mean']:.4g} ± {m['std']:.2g} (n={m['n']})" if m else "no result"
        print(f"  {s['setting']:<32} {text}" + (f"  [{s['failed']} failed]" if s["failed"] else ""))


if __name__ == "__main__":
    main()
