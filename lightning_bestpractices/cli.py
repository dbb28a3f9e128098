"""The LightningCLI that every recipe uses.

What it adds over ``LightningCLI``:

* **W&B by default, offline unless asked.** The default logger is ``WandbLogger``; the run is offline unless the
  ``WANDB_MODE`` environment variable or the ``--wandb_mode`` config value says ``online`` (or ``disabled``). Any
  other Lightning logger can be chosen instead with ``--trainer.logger=CSVLogger`` (or TensorBoardLogger).
* **The full config goes to the run.** It is saved as ``config.yaml`` in the run folder and logged as the run's
  config, so ``--print_config`` output and the logged config are the same document.
* **Bad input stops before training,** with the field and the bad value, as a normal CLI error (exit code 2) rather
  than a traceback from deep inside instantiation. Only the package's own argument checks
  (:class:`~lightning_bestpractices.errors.ArgumentError`) count as bad input: any other exception raised while
  the classes are built is a bug and keeps its traceback.
* **The process is left as it was found.** ``WANDB_MODE`` is set for the run (DDP ranks launched from this process
  inherit it) and restored when the CLI returns, so a later run in the same process is not switched off.
* **A default config per recipe:** ``BestPracticesCLI(..., default_config="configs/moons.yaml")`` makes
  ``python recipes/moons.py fit`` run the recipe as published; any flag still overrides it.

* **One run folder per run.** ``runs/<recipe>/<YYYYmmdd-HHMMSS>-<6 hex>/`` (or ``--run_dir PATH``) holds the
  config, ``checkpoints/``, every PNG and CSV the recipe makes, ``metrics.json`` and the logger's data: the W&B
  offline run under ``wandb/``, or the CSV/TensorBoard logger's files. Every logger's ``save_dir`` and every
  ``ModelCheckpoint`` without a ``dirpath`` are pointed there; DDP ranks agree on the folder through the
  ``LBP_RUN_DIR`` environment variable they inherit. Nothing is written to the working folder, and under
  ``--trainer.fast_dev_run`` nothing is written at all.
* **A report after fit.** A recipe overrides :meth:`BestPracticesCLI.report` (runs on every rank after ``fit``)
  and adds numbers with :meth:`~BestPracticesCLI.add_metrics` and curves with :meth:`~BestPracticesCLI.add_series`.
  The CLI then writes ``metrics.json`` (final metrics, series, the per-epoch history, wall and CPU time,
  hardware), logs the added metrics, and prints the run folder and the final metrics. A sweep
  (:mod:`lightning_bestpractices.sweep`) reads those files.

Every recipe runs unchanged under ``--trainer.devices=2 --trainer.strategy=ddp`` and
``--trainer.precision=bf16-mixed``; multi-node runs add ``--trainer.num_nodes`` and launch through torchrun or SLURM.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from ._hardware import hardware
from ._logging import RUN_DIR_ENV, run_dir
from .errors import ArgumentError

__all__ = ["BestPracticesCLI", "LogConfig", "MetricHistory", "WANDB_MODES", "hardware"]

WANDB_MODES = ("offline", "online", "disabled")
DEFAULT_PROJECT = "lightning-bestpractices"
_RUN_LOGGERS = ("WandbLogger", "CSVLogger", "TensorBoardLogger")


class LogConfig(SaveConfigCallback):
    """Save the resolved config as ``config.yaml`` in the run folder and log it as the run's config (rank 0).

    Under ``fast_dev_run`` nothing is saved (Lightning's promise that a dev run writes nothing).
    """

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        if trainer.is_global_zero and not trainer.fast_dev_run:
            text = self.parser.dump(self.config, skip_none=False)
            folder = run_dir(trainer)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / self.config_filename).write_text(text)
            config = yaml.safe_load(text)
            for logger in trainer.loggers:
                logger.log_hyperparams(config)
        self.already_saved = trainer.strategy.broadcast(True)


class MetricHistory(Callback):
    """Keep every scalar in ``trainer.callback_metrics`` at the end of each training epoch (after validation).

    What it adds over a logger: the history is in memory, logger-independent, and saved in checkpoints, so a
    resumed run's ``metrics.json`` still holds the whole curve. The CLI adds one to every recipe.

    Examples:
        >>> h = MetricHistory()
        >>> h.state_dict()
        {'rows': []}
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        row: dict[str, float] = {"epoch": float(trainer.current_epoch), "step": float(trainer.global_step)}
        row.update(_scalars(trainer.callback_metrics))
        self.rows.append(row)

    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(r) for r in self.rows]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [dict(r) for r in state_dict["rows"]]


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


class BestPracticesCLI(LightningCLI):
    """``LightningCLI`` with a run folder, W&B-offline logging, config logging, clean input errors, a recipe
    default config and an after-fit report (see the module docstring).

    Args:
        model_class: the LightningModule (class) the recipe trains.
        datamodule_class: the LightningDataModule (class) it trains on.
        default_config: a YAML file used as the default for every subcommand.
        name: the recipe's name, the middle part of ``runs/<name>/<stamp>``; defaults to the default config's
            stem, else the script's.
        **kwargs: forwarded to ``LightningCLI``.
    """

    def __init__(self, model_class=None, datamodule_class=None, *, default_config: str | Path | None = None,
                 name: str | None = None, **kwargs: Any) -> None:
        parser_kwargs = dict(kwargs.pop("parser_kwargs", {}) or {})
        if default_config is not None:
            path = Path(default_config)
            if not path.is_file():
                raise FileNotFoundError(f"`default_config` not found: {str(path)!r}")
            if kwargs.get("run", True):  # subcommands: each subcommand parser reads the recipe config
                for sub in ("fit", "validate", "test", "predict"):
                    parser_kwargs.setdefault(sub, {}).setdefault("default_config_files", [str(path)])
            else:
                parser_kwargs.setdefault("default_config_files", [str(path)])
        self.name = name or (Path(default_config).stem if default_config else Path(sys.argv[0]).stem) or "run"
        self.run_folder: Path | None = None
        self.final_metrics: dict[str, float] = {}
        self.series: dict[str, dict[str, Any]] = {}
        self._started = (time.perf_counter(), time.process_time())
        trainer_defaults = {
            "logger": {
                "class_path": "lightning.pytorch.loggers.WandbLogger",
                "init_args": {"project": DEFAULT_PROJECT},
            },
            **(kwargs.pop("trainer_defaults", None) or {}),
        }
        kwargs.setdefault("seed_everything_default", 42)
        kwargs.setdefault("save_config_callback", LogConfig)
        saved = {key: os.environ.get(key) for key in ("WANDB_MODE", RUN_DIR_ENV)}
        try:  # LightningCLI runs the subcommand inside __init__: the run happens in here
            super().__init__(model_class, datamodule_class, parser_kwargs=parser_kwargs,
                             trainer_defaults=trainer_defaults, **kwargs)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    # ----------------------------------------------------------------------------------------------- parsing
    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument(
            "--wandb_mode",
            type=str | None,
            default=None,
            help="W&B mode: offline (default, no account needed), online or disabled. "
            "Defaults to the WANDB_MODE environment variable, else offline.",
        )
        parser.add_argument(
            "--run_dir",
            type=str | None,
            default=None,
            help="Folder for everything this run writes (config, checkpoints, plots, tables, logger data). "
            "Default: runs/<recipe>/<YYYYmmdd-HHMMSS>-<6 hex>.",
        )

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        mode = config.get("wandb_mode") or os.environ.get("WANDB_MODE") or "offline"
        if mode not in WANDB_MODES:
            self.parser.error(f"`wandb_mode` must be one of {WANDB_MODES}, got {mode!r}")
        os.environ["WANDB_MODE"] = mode  # inherited by DDP ranks launched from this process
        folder = config.get("run_dir") or os.environ.get(RUN_DIR_ENV)
        if not folder:
            stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
            folder = Path("runs") / self.name / stamp
        self.run_folder = Path(folder).expanduser().resolve()
        os.environ[RUN_DIR_ENV] = str(self.run_folder)  # DDP ranks started by this process use the same folder
        trainer = config.get("trainer")
        if trainer is not None:
            trainer["default_root_dir"] = str(self.run_folder)
            logger = trainer.get("logger")
            for spec in logger if isinstance(logger, list) else [logger]:
                if spec is None or isinstance(spec, bool) or not hasattr(spec, "get"):
                    continue
                if str(spec.get("class_path", "")).rsplit(".", 1)[-1] in _RUN_LOGGERS:
                    if spec.get("init_args") is None:
                        spec["init_args"] = type(spec)()
                    spec["init_args"]["save_dir"] = str(self.run_folder)
                    if not spec["class_path"].endswith("WandbLogger"):  # CSV/TensorBoard: files right in the folder
                        spec["init_args"]["name"] = ""
                        spec["init_args"]["version"] = ""

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except Exception as err:  # our argument checks: a CLI error; anything else is a bug, with traceback
            cause = _argument_error(err)
            if cause is None:
                raise
            parser = self._parser(self.subcommand) if self.subcommand else self.parser
            parser.error(f"invalid configuration: {cause}")

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        from ._compat import wandb_init_kwargs

        trainer = super().instantiate_trainer(**kwargs)
        for logger in trainer.loggers:  # the run's own mode: W&B's process-wide settings keep the first run's mode
            if isinstance(logger, WandbLogger) and os.environ.get("WANDB_MODE") in WANDB_MODES:
                init = wandb_init_kwargs(logger)
                if init.get("mode") is None:  # an explicit `offline=True` / `mode=` of the user stays
                    init["mode"] = os.environ["WANDB_MODE"]
        for callback in trainer.callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath is None and self.run_folder is not None:
                callback.dirpath = str(self.run_folder / "checkpoints")
        if not any(isinstance(cb, MetricHistory) for cb in trainer.callbacks):
            trainer.callbacks.append(MetricHistory())
        return trainer

    # ------------------------------------------------------------------------------------------------ report
    def report(self) -> None:
        """Override in a recipe: after-fit work on every rank (test runs, plots, tables, extra metrics)."""

    def add_metrics(self, metrics: dict[str, Any] | None = None, **more: Any) -> None:
        """Add final numbers to ``metrics.json``, the loggers and the printed summary (floats, or 1-element tensors)."""
        for key, value in {**(metrics or {}), **more}.items():
            value = value.item() if isinstance(value, torch.Tensor) else value
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ArgumentError(f"metric {key!r} must be a number, got {value!r}")
            self.final_metrics[key] = float(value)

    def add_series(self, key: str, x, y, *, xlabel: str = "x", ylabel: str | None = None) -> None:
        """Add a curve (``x`` against ``y``) to ``metrics.json``; a sweep draws it per setting in its comparison plot."""
        x, y = [float(v) for v in x], [float(v) for v in y]
        if len(x) != len(y):
            raise ArgumentError(f"series {key!r}: `x` and `y` must have the same length, got {len(x)} and {len(y)}")
        self.series[key] = {"x": x, "y": y, "xlabel": xlabel, "ylabel": ylabel or key}

    def after_fit(self) -> None:
        self.report()
        trainer = self.trainer
        if self.final_metrics:
            for logger in trainer.loggers:
                logger.log_metrics(dict(self.final_metrics), step=trainer.global_step)
        self._write_summary()

    @rank_zero_only
    def _write_summary(self) -> None:
        trainer = self.trainer
        metrics = {**_scalars(trainer.callback_metrics), **self.final_metrics}
        if trainer.fast_dev_run:
            print("fast_dev_run: nothing written; metrics: " + _fmt_metrics(metrics))
            return
        history = next((cb.rows for cb in trainer.callbacks if isinstance(cb, MetricHistory)), [])
        wall, cpu = time.perf_counter() - self._started[0], time.process_time() - self._started[1]
        summary = {"recipe": self.name, "run_dir": str(self.run_folder), "subcommand": self.subcommand,
                   "metrics": metrics, "series": self.series, "history": history, "wall_s": round(wall, 3),
                   "cpu_s": round(cpu, 3), "hardware": hardware(), "argv": sys.argv[1:]}
        folder = run_dir(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "metrics.json").write_text(json.dumps(summary, indent=1, default=_json_default, allow_nan=True))
        print(f"run folder: {folder}")
        print("final metrics: " + _fmt_metrics(metrics))


def _argument_error(err: BaseException) -> ArgumentError | None:
    """The package's argument check behind ``err``: itself, or one jsonargparse wrapped while adapting a typed
    value (a dataclass field such as ``model.optim.lr`` is checked inside the type's adaptation)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, ArgumentError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _fmt_metrics(metrics: dict[str, float]) -> str:
    """The printed summary; the LR monitor's per-group values stay in ``metrics.json`` only."""
    return ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()) if not k.startswith("lr-"))


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    raise TypeError(f"not JSON serializable: {value!r}")
