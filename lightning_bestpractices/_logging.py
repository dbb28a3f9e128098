"""Logger-agnostic helpers for figures and tables.

Every practice that produces a picture or a table goes through these two functions, so that the same callback
works with W&B (the default), TensorBoard, CSV or no logger at all, and so that only rank 0 writes.

What they add over calling ``WandbLogger.log_image`` directly: the PNG is always saved next to the run (also
when the logger cannot show images), and nothing happens on ranks other than 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import lightning as L

# Lightning is imported inside the functions that take a Trainer: `format_table` is used by the pure-torch cores
# (init and fold reports), which must import without Lightning.

__all__ = ["run_dir", "log_figure", "log_table", "format_table", "RUN_DIR_ENV"]

RUN_DIR_ENV = "LBP_RUN_DIR"
"""Environment variable naming the run folder; :class:`~lightning_bestpractices.cli.BestPracticesCLI` sets it for
the length of a run, and the DDP ranks it launches inherit it."""


def run_dir(trainer: L.Trainer) -> Path:
    """Folder of the current run.

    Inside a :class:`~lightning_bestpractices.cli.BestPracticesCLI` run: its run folder (``$LBP_RUN_DIR``).
    Otherwise: the W&B run's ``files`` folder, else the CSV/TensorBoard logger's log dir, else the Trainer's
    ``default_root_dir``.
    """
    import os

    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and trainer.is_global_zero:
            return Path(logger.experiment.dir)
    for logger in trainer.loggers:
        if isinstance(logger, (CSVLogger, TensorBoardLogger)):
            return Path(logger.log_dir)
    return Path(trainer.default_root_dir)


def log_figure(trainer: L.Trainer, key: str, figure: Any, *, step: int | None = None) -> Path | None:
    """Save a matplotlib ``figure`` as ``<run_dir>/<key>.png`` and show it in every logger that takes images.

    Returns the PNG's path on rank 0 and ``None`` elsewhere, and under ``fast_dev_run`` (which writes nothing).
    The figure is closed afterwards.
    """
    import matplotlib.pyplot as plt
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    try:
        if not trainer.is_global_zero or trainer.fast_dev_run:
            return None
        path = run_dir(trainer) / f"{key.replace('/', '_')}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=110, bbox_inches="tight")
        step = trainer.global_step if step is None else step
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key=key, images=[str(path)], step=None)
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_figure(key, figure, global_step=step)
        return path
    finally:
        plt.close(figure)


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Render rows as a fixed-width text table (what a user reads in the console).

    Examples:
        >>> print(format_table(["layer", "std"], [["fc1", 1.0], ["fc2", 0.25]]))
        layer  std
        -----  ----
        fc1    1
        fc2    0.25
    """
    cells = [[str(c) for c in columns]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def log_table(trainer: L.Trainer, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path | None:
    """Log a table to W&B (as a ``wandb.Table``), save it as ``<run_dir>/<key>.csv`` and print it on rank 0.

    Under ``fast_dev_run`` the table is only printed: nothing is written.
    """
    from lightning.pytorch.loggers import WandbLogger
    from lightning.pytorch.utilities import rank_zero_info

    if not trainer.is_global_zero:
        return None
    rows = [list(r) for r in rows]
    if trainer.fast_dev_run:
        rank_zero_info(f"{key}:\n{format_table(columns, rows)}")
        return None
    path = run_dir(trainer) / f"{key.replace('/', '_')}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    import csv

    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        writer.writerows(rows)
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_table(key=key, columns=list(columns), data=_typed_columns(rows))
    rank_zero_info(f"{key}:\n{format_table(columns, rows)}")
    return path


def _plain(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)


def _typed_columns(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """``wandb.Table`` needs one type per column: in a numeric column, placeholders like ``"-"`` become ``None``.

    Examples:
        >>> _typed_columns([["fc1", 64], ["bn1", "-"]])
        [['fc1', 64], ['bn1', None]]
    """
    rows = [[_plain(v) for v in r] for r in rows]
    for c in range(len(rows[0]) if rows else 0):
        values = [r[c] for r in rows]
        numeric = [isinstance(v, (int, float)) and not isinstance(v, bool) for v in values]
        if any(numeric) and not all(numeric):
            for r, is_num in zip(rows, numeric):
                if not is_num:
                    r[c] = None
    return rows
