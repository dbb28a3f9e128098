"""The one module that reads or writes private attributes of torch and Lightning.

Every other module of the package goes through a function here, and ``tests/test_compat.py`` has one test per
function that fails loudly when the internal it relies on changes (a renamed attribute, a changed type). The
package pins the Lightning minor version it tests (``lightning>=2.6.6,<2.7`` in ``pyproject.toml``); a torch or
Lightning release that moves one of these breaks a named test here instead of gradual unfreezing silently.

What is used, and why there is no public way:

================================  ==================================================================================
function                          private internal
================================  ==================================================================================
``scheduler_children``            ``SequentialLR._schedulers`` / ``ChainedScheduler._schedulers`` (no accessor)
``sequential_milestones``         ``SequentialLR._milestones`` (no accessor)
``set_last_lr``                   ``LRScheduler._last_lr`` (what ``get_last_lr()`` returns; no setter)
``rewrap_ddp``                    ``DDPStrategy._setup_model`` + ``_register_ddp_hooks`` (re-wrap after unfreezing)
``batches_that_stepped``          ``fit_loop.epoch_loop._batches_that_stepped`` (the ``step`` Lightning logs at)
``should_update_logs``            ``trainer._logger_connector.should_update_logs`` (the ``log_every_n_steps`` rule)
``train_dataloader``              ``fit_loop._data_source.dataloader()`` (the loader before ``setup_data``)
``wandb_init_kwargs``             ``WandbLogger._wandb_init`` (the kwargs of the deferred ``wandb.init``)
``foreach``, ``foreach_sign``,    ``torch._foreach_<op>``: the fused multi-tensor kernels torch's own optimizers
``foreach_add_``                  run on (LAMB's step, the weight penalty's gradient); no public alias
================================  ==================================================================================

Examples:
    >>> import torch
    >>> from torch.optim import lr_scheduler as S
    >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    >>> seq = S.SequentialLR(opt, [S.ConstantLR(opt, 0.5, total_iters=2), S.ExponentialLR(opt, 0.9)], [2])
    >>> [type(s).__name__ for s in scheduler_children(seq)], sequential_milestones(seq)
    (['ConstantLR', 'ExponentialLR'], [2])
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "foreach",
    "foreach_add_",
    "foreach_sign",
    "scheduler_children",
    "sequential_milestones",
    "set_last_lr",
    "rewrap_ddp",
    "batches_that_stepped",
    "should_update_logs",
    "train_dataloader",
    "wandb_init_kwargs",
]


def scheduler_children(scheduler: Any) -> list[Any]:
    """The child schedulers of a ``SequentialLR`` or ``ChainedScheduler`` (``[]`` for any other scheduler)."""
    from torch.optim.lr_scheduler import ChainedScheduler, SequentialLR

    if isinstance(scheduler, (SequentialLR, ChainedScheduler)):
        return list(scheduler._schedulers)
    return []


def sequential_milestones(scheduler: Any) -> list[int]:
    """The milestones of a ``SequentialLR`` (the steps at which it switches to the next child)."""
    return list(scheduler._milestones)


def set_last_lr(scheduler: Any, lrs: list[float]) -> None:
    """Set what ``scheduler.get_last_lr()`` returns (after the optimizer's groups changed under it)."""
    scheduler._last_lr = list(lrs)


def rewrap_ddp(strategy: Any) -> None:
    """Wrap ``strategy.lightning_module`` in a fresh ``DistributedDataParallel`` (registers newly trainable
    parameters for all-reduce), with the strategy's own DDP arguments and communication hooks."""
    strategy.model = strategy._setup_model(strategy.lightning_module)
    strategy._register_ddp_hooks()


def batches_that_stepped(trainer: Any) -> int:
    """The ``step`` Lightning passes to ``logger.log_metrics`` for rows logged in training."""
    return int(trainer.fit_loop.epoch_loop._batches_that_stepped)


def should_update_logs(trainer: Any) -> bool:
    """Lightning's own "log at this batch" decision (``log_every_n_steps``, ``should_stop``)."""
    return bool(trainer._logger_connector.should_update_logs)


def train_dataloader(trainer: Any) -> Any:
    """The training dataloader as the user gave it (before the Trainer has set up its data)."""
    return trainer.fit_loop._data_source.dataloader()


def wandb_init_kwargs(logger: Any) -> dict[str, Any]:
    """The keyword arguments a ``WandbLogger`` will pass to ``wandb.init`` when its run starts (mutable)."""
    return logger._wandb_init


class _Foreach:
    """``foreach.<op>(...)`` is ``torch._foreach_<op>(...)``, for the ops the package uses (listed in ``OPS``)."""

    OPS = ("add_", "addcmul_", "div", "lerp_", "mul_", "neg_", "norm", "pow", "sqrt_", "sign")

    def __getattr__(self, op: str) -> Any:
        if op not in self.OPS:
            raise AttributeError(f"`foreach.{op}` is not one of the wrapped torch._foreach_* ops {self.OPS}")
        import torch

        return getattr(torch, f"_foreach_{op}")


foreach = _Foreach()


def foreach_sign(tensors: list) -> list:
    """``torch._foreach_sign``, else a plain loop."""
    import torch

    fn = getattr(torch, "_foreach_sign", None)
    return list(fn(tensors)) if fn is not None else [t.sign() for t in tensors]


def foreach_add_(tensors: list, others: list, alpha: float) -> None:
    """``torch._foreach_add_(tensors, others, alpha=alpha)``, else a plain loop; mixed dtypes or devices (a bf16
    grad of an fp32 weight) go through the loop."""
    import torch

    fn = getattr(torch, "_foreach_add_", None)
    if fn is not None and all(t.dtype == o.dtype and t.device == o.device for t, o in zip(tensors, others)):
        fn(tensors, others, alpha=alpha)
        return
    for t, o in zip(tensors, others):
        t.add_(o.to(t.dtype), alpha=alpha)

