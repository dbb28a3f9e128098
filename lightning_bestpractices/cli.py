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

Every recipe runs unchanged under ``--trainer.devices=2 --trainer.strategy=ddp`` and
``--trainer.precision=bf16-mixed``; multi-node runs add ``--trainer.num_nodes`` and launch through torchrun or SLURM.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

from ._logging import run_dir
from .errors import ArgumentError

__all__ = ["BestPracticesCLI", "LogConfig", "WANDB_MODES"]

WANDB_MODES = ("offline", "online", "disabled")
DEFAULT_PROJECT = "lightning-bestpractices"


class LogConfig(SaveConfigCallback):
    """Save the resolved config as ``config.yaml`` in the run folder and log it as the run's config (rank 0)."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        if trainer.is_global_zero:
            text = self.parser.dump(self.config, skip_none=False)
            folder = run_dir(trainer)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / self.config_filename).write_text(text)
            config = yaml.safe_load(text)
            for logger in trainer.loggers:
                logger.log_hyperparams(config)
        self.already_saved = trainer.strategy.broadcast(True)


class BestPracticesCLI(LightningCLI):
    """``LightningCLI`` with W&B-offline logging, config logging, clean input errors and a recipe default config.

    Args:
        model_class: the LightningModule (class) the recipe trains.
        datamodule_class: the LightningDataModule (class) it trains on.
        default_config: a YAML file (absolute, or relative to the calling recipe's folder is resolved by the
            recipe) used as the default for every subcommand.
        **kwargs: forwarded to ``LightningCLI``.
    """

    def __init__(self, model_class=None, datamodule_class=None, *, default_config: str | Path | None = None,
                 **kwargs: Any) -> None:
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
        trainer_defaults = {
            "logger": {
                "class_path": "lightning.pytorch.loggers.WandbLogger",
                "init_args": {"project": DEFAULT_PROJECT, "save_dir": "runs"},
            },
            **(kwargs.pop("trainer_defaults", None) or {}),
        }
        kwargs.setdefault("seed_everything_default", 42)
        kwargs.setdefault("save_config_callback", LogConfig)
        saved_mode = os.environ.get("WANDB_MODE")
        try:  # LightningCLI runs the subcommand inside __init__: the run happens in here
            super().__init__(model_class, datamodule_class, parser_kwargs=parser_kwargs,
                             trainer_defaults=trainer_defaults, **kwargs)
        finally:
            if saved_mode is None:
                os.environ.pop("WANDB_MODE", None)
            else:
                os.environ["WANDB_MODE"] = saved_mode

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument(
            "--wandb_mode",
            type=str | None,
            default=None,
            help="W&B mode: offline (default, no account needed), online or disabled. "
            "Defaults to the WANDB_MODE environment variable, else offline.",
        )

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        mode = config.get("wandb_mode") or os.environ.get("WANDB_MODE") or "offline"
        if mode not in WANDB_MODES:
            self.parser.error(f"`wandb_mode` must be one of {WANDB_MODES}, got {mode!r}")
        os.environ["WANDB_MODE"] = mode  # inherited by DDP ranks launched from this process

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except ArgumentError as err:  # our argument checks: a CLI error; anything else is a bug, with traceback
            parser = self._parser(self.subcommand) if self.subcommand else self.parser
            parser.error(f"invalid configuration: {err}")

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        from ._compat import wandb_init_kwargs

        trainer = super().instantiate_trainer(**kwargs)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and os.environ.get("WANDB_MODE") == "offline":
                wandb_init_kwargs(logger).setdefault("mode", "offline")
        return trainer
