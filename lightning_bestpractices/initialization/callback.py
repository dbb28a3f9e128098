"""``WeightInit``: the Lightning shell around :func:`init_weights` and :func:`lsuv_init`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from lightning_bestpractices.errors import ArgumentError

from .._logging import log_table
from .core import SCHEMES, init_weights
from .lsuv import lsuv_init

__all__ = ["WeightInit"]


def _default_batch_to_input(batch: Any) -> Any:
    if isinstance(batch, (tuple, list)):
        return batch[0]
    if isinstance(batch, dict):
        raise ArgumentError("WeightInit got a dict batch: pass `batch_to_input=lambda b: b['<input key>']`")
    return batch


class WeightInit(L.Callback):
    """Initialize the LightningModule's weights once, at the start of the first ``fit``.

    * Runs exactly once: a ``done`` flag is saved in the checkpoint, so ``fit(ckpt_path=...)`` never
      re-initializes the restored weights (nor does a second ``fit`` call with the same callback).
    * Under DDP the initialization runs on rank 0 and the resulting state is broadcast
      (``trainer.strategy.broadcast``), so every rank ends with identical weights whatever its RNG state.
    * The report (layer, activation found, scheme, fan) is logged with ``log_table`` under ``log_key``
      (a W&B table, a CSV in the run folder and the console).

    The example input for the activation trace / LSUV batch is, in order: ``example_input``, the module's
    ``example_input_array``, or the first batch of the training dataloader passed through ``batch_to_input``
    (default: ``batch[0]`` for tuple/list batches).

    Args:
        scheme: an :func:`init_weights` scheme (``"auto"``, ``"kaiming"``, ...) or ``"lsuv"``.
        example_input: input used to find activations (or the LSUV batch).
        overrides, zero_init_residual, distribution, normal_std: passed to :func:`init_weights` (``normal_std``:
            the std of the ``"normal"`` scheme).
        lsuv_kwargs: passed to :func:`lsuv_init` (``target_std``, ``tol``, ``max_iters``).
        seed: seed a private ``torch.Generator`` for the init (reproducible without touching the global RNG).
        batch_to_input: maps a training batch to the model input.
        log_key: key of the logged table.

    Examples:
        >>> cb = WeightInit("auto", zero_init_residual=True)
        >>> cb.state_dict(), cb.state_key
        ({'done': False}, "WeightInit{'scheme': 'auto', 'log_key': 'init/report'}")
    """

    def __init__(
        self,
        scheme: str = "auto",
        *,
        example_input: Any = None,
        overrides: Mapping | None = None,
        zero_init_residual: bool = False,
        distribution: str = "normal",
        normal_std: float = 0.01,
        lsuv_kwargs: Mapping[str, Any] | None = None,
        seed: int | None = None,
        batch_to_input: Callable[[Any], Any] = _default_batch_to_input,
        log_key: str = "init/report",
    ) -> None:
        if scheme not in (*SCHEMES, "lsuv"):
            raise ArgumentError(f"`scheme` must be one of {(*SCHEMES, 'lsuv')}, got {scheme!r}")
        if distribution not in ("normal", "uniform"):
            raise ArgumentError(f"`distribution` must be 'normal' or 'uniform', got {distribution!r}")
        if isinstance(normal_std, bool) or not isinstance(normal_std, (int, float)) or not normal_std > 0:
            raise ArgumentError(f"`normal_std` must be > 0, got {normal_std!r}")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise ArgumentError(f"`seed` must be an int or None, got {seed!r}")
        allowed = {"target_std", "tol", "max_iters", "orthogonal_preinit"}
        if lsuv_kwargs is not None and not set(lsuv_kwargs) <= allowed:
            raise ArgumentError(f"`lsuv_kwargs` keys must be among {sorted(allowed)}, got {sorted(lsuv_kwargs)}")
        for key, value in (
            overrides or {}
        ).items():  # names/patterns are checked against the model at fit start
            if not (callable(value) or value in SCHEMES):
                raise ArgumentError(
                    f"`overrides` value for {key!r} must be one of {SCHEMES} or a callable, got {value!r}"
                )
        if not callable(batch_to_input):
            raise ArgumentError(f"`batch_to_input` must be callable, got {batch_to_input!r}")
        self.scheme = scheme
        self.example_input = example_input
        self.overrides = overrides
        self.zero_init_residual = zero_init_residual
        self.distribution = distribution
        self.normal_std = float(normal_std)
        self.lsuv_kwargs = dict(lsuv_kwargs or {})
        self.seed = seed
        self.batch_to_input = batch_to_input
        self.log_key = log_key
        self.done = False
        self.report = None

    @property
    def state_key(self) -> str:
        """Key of this callback's entry in a checkpoint: two ``WeightInit`` in one Trainer (say, one per
        submodule, with their own ``log_key``) save and restore their ``done`` flags separately."""
        return self._generate_state_key(scheme=self.scheme, log_key=self.log_key)

    def state_dict(self) -> dict[str, Any]:
        return {"done": self.done}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.done = bool(state_dict["done"])

    def _example(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Any:
        x = self.example_input
        if x is None:
            x = getattr(pl_module, "example_input_array", None)
        if x is None:
            try:
                from .._compat import train_dataloader

                loader = train_dataloader(trainer)
                x = self.batch_to_input(next(iter(loader)))
            except (AttributeError, StopIteration, TypeError, NotImplementedError) as err:
                rank_zero_warn(f"WeightInit could not take a batch from the training dataloader: {err}")
                x = None
        return None if x is None else move_data_to_device(x, pl_module.device)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.done:
            rank_zero_info(
                "WeightInit: weights were already initialized (resumed run or second fit); skipping"
            )
            return
        if trainer.is_global_zero:
            x = self._example(trainer, pl_module)
            gen = None
            if self.seed is not None:
                gen = torch.Generator(device=pl_module.device).manual_seed(self.seed)
            if self.scheme == "lsuv":
                if x is None:
                    raise ArgumentError(
                        "WeightInit('lsuv') needs a batch: pass `example_input` or a train dataloader"
                    )
                self.report = lsuv_init(pl_module, x, generator=gen, **self.lsuv_kwargs)
            else:
                self.report = init_weights(
                    pl_module,
                    self.scheme,
                    example_input=x,
                    overrides=self.overrides,
                    zero_init_residual=self.zero_init_residual,
                    distribution=self.distribution,
                    normal_std=self.normal_std,
                    generator=gen,
                )
        if trainer.world_size > 1:
            state = (
                {k: v.detach().cpu() for k, v in pl_module.state_dict().items()}
                if trainer.is_global_zero
                else None
            )
            state = trainer.strategy.broadcast(state, src=0)
            pl_module.load_state_dict(state)
        if trainer.is_global_zero and self.report is not None:
            log_table(trainer, self.log_key, self.report.columns, self.report.rows)
        self.done = True
