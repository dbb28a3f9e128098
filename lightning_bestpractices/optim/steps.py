"""The number of optimizer steps a run really takes, and durations resolved against it.

The usual bug is a schedule length computed as ``len(train_loader) * epochs``: wrong under DDP (each rank sees
``1/world_size`` of the batches), under gradient accumulation (one optimizer step per ``k`` batches, plus one for
a leftover partial group at the end of each epoch), with ``drop_last``, ``limit_train_batches`` and ``max_steps``.
Lightning's ``trainer.estimated_stepping_batches`` gets most of these right, but it uses one accumulation factor for
all epochs, so a :class:`~lightning.pytorch.callbacks.GradientAccumulationScheduler` makes it wrong.

What this module adds:

* :func:`count_optimizer_steps` -- the pure rule, per epoch: ``ceil(batches / accumulate(epoch))`` steps, the
  sum cut at ``max_steps``; it returns a :class:`StepPlan` (the global step at which every epoch starts).
* :func:`plan_from_trainer` -- reads the live Trainer (batches per rank after the distributed sampler, drop_last
  and ``limit_train_batches``; accumulation per epoch, including the scheduler callback; ``max_epochs`` and
  ``max_steps``), broadcasts rank 0's answer so every process builds the same schedule.
* :class:`Duration` -- "200 steps", "3 epochs", ``0.05`` or "5%" of training, resolved against a plan.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

from lightning_bestpractices.errors import ArgumentError

if TYPE_CHECKING:
    import lightning as L

__all__ = [
    "Duration",
    "DurationLike",
    "StepPlan",
    "count_optimizer_steps",
    "plan_from_trainer",
    "parse_duration",
]

DurationLike = Union[int, float, str, "Duration", Mapping[str, Any]]

_UNITS = {
    "step": "steps", "steps": "steps", "s": "steps",
    "epoch": "epochs", "epochs": "epochs", "ep": "epochs", "e": "epochs",
    "%": "fraction", "fraction": "fraction",
}  # fmt: skip


@dataclass(frozen=True)
class Duration:
    """A length of time in training: ``unit`` is ``"steps"`` (optimizer steps), ``"epochs"`` or ``"fraction"``.

    Build one with :func:`parse_duration`; :meth:`resolve` turns it into optimizer steps for a :class:`StepPlan`.

    Examples:
        >>> plan = count_optimizer_steps(10, max_epochs=4, accumulate=3)   # ceil(10 / 3) = 4 steps per epoch
        >>> [parse_duration(d).resolve(plan) for d in (6, "2 epochs", 0.25, "50%")]
        [6, 8, 4, 8]
    """

    value: float
    unit: str

    def resolve(self, plan: StepPlan, *, name: str = "duration") -> int:
        """Optimizer steps for this duration (epochs count the real steps of each epoch; fractions round)."""
        if self.unit == "steps":
            return int(self.value)
        if self.unit == "fraction":
            return int(round(self.value * plan.total))
        return plan.epoch_to_step(self.value, name=name)

    def __str__(self) -> str:
        if self.unit == "fraction":
            return f"{self.value:.4g} of training"
        return f"{self.value:g} {self.unit}"


def parse_duration(value: DurationLike, *, name: str = "duration") -> Duration:
    """Read a duration: an ``int`` is optimizer steps, a ``float`` a fraction of training in (0, 1].

    Strings: ``"200 steps"``, ``"3 epochs"`` (also ``"1.5 ep"``), ``"5%"``; mappings: ``{"epochs": 3}``.

    Raises:
        lightning_bestpractices.errors.ArgumentError: naming ``name`` and the value, for negative lengths, fractions outside (0, 1], unknown units.

    Examples:
        >>> parse_duration("5%"), parse_duration("3 epochs"), parse_duration(200)
        (Duration(value=0.05, unit='fraction'), Duration(value=3.0, unit='epochs'), Duration(value=200, unit='steps'))
        >>> parse_duration(1.5, name="warmup")
        Traceback (most recent call last):
        ...
        lightning_bestpractices.errors.ArgumentError: `warmup` as a fraction of training must be in (0, 1], got 1.5
    """
    if isinstance(value, Duration):
        return _check(value, name, value)
    if isinstance(value, bool):
        raise ArgumentError(
            f"`{name}` must be steps (int), a fraction (float) or a string like '3 epochs', got {value!r}"
        )
    if isinstance(value, int):
        return _check(Duration(value, "steps"), name, value)
    if isinstance(value, float):
        return _check(Duration(value, "fraction"), name, value)
    if isinstance(value, Mapping):
        if len(value) != 1:
            raise ArgumentError(
                f"`{name}` as a mapping must have one key (steps/epochs/fraction), got {value!r}"
            )
        ((unit, amount),) = value.items()
        return parse_duration(f"{amount} {unit}", name=name)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z%]*)\s*", value)
        if m is None or m.group(2).lower() not in ("", *_UNITS):
            raise ArgumentError(
                f"`{name}` must look like '200 steps', '3 epochs', '5%' or a number, got {value!r}"
            )
        number, unit = m.group(1), m.group(2).lower()
        if unit == "":
            return parse_duration(
                float(number) if any(c in number for c in ".eE") else int(number), name=name
            )
        if unit == "%":
            return _check(Duration(float(number) / 100.0, "fraction"), name, value)
        unit = _UNITS[unit]
        if unit == "steps":
            if float(number) != int(float(number)):
                raise ArgumentError(f"`{name}` in steps must be a whole number, got {value!r}")
            return _check(Duration(int(float(number)), "steps"), name, value)
        return _check(Duration(float(number), unit), name, value)
    raise ArgumentError(
        f"`{name}` must be steps (int), a fraction (float) or a string like '3 epochs', got {value!r}"
    )


def _check(d: Duration, name: str, raw: Any) -> Duration:
    if d.unit == "fraction" and not (0.0 < d.value <= 1.0):
        raise ArgumentError(f"`{name}` as a fraction of training must be in (0, 1], got {raw!r}")
    if d.unit != "fraction" and (d.value < 0 or not math.isfinite(d.value)):
        raise ArgumentError(f"`{name}` must be >= 0, got {raw!r}")
    return d


@dataclass(frozen=True)
class StepPlan:
    """Optimizer steps of a run: ``epoch_starts[e]`` is the global step at which epoch ``e`` starts.

    ``total`` is the number of optimizer steps of the whole run. The last entry of ``epoch_starts`` is ``total``
    (the end of the last epoch that runs, cut at ``max_steps``).
    """

    epoch_starts: tuple[int, ...]
    batches_per_epoch: int | None = None

    @property
    def total(self) -> int:
        return self.epoch_starts[-1]

    @property
    def epochs(self) -> int:
        """Number of epochs that run (the last one possibly cut short by ``max_steps``)."""
        return len(self.epoch_starts) - 1

    @property
    def steps_per_epoch(self) -> list[int]:
        return [b - a for a, b in zip(self.epoch_starts[:-1], self.epoch_starts[1:])]

    def epoch_to_step(self, epochs: float, *, name: str = "duration") -> int:
        """Global step at ``epochs`` epochs into training (fractions interpolate within that epoch)."""
        whole = int(math.floor(epochs))
        if whole > self.epochs or (whole == self.epochs and epochs > whole):
            raise ArgumentError(
                f"`{name}` of {epochs:g} epochs is longer than training ({self.epochs} epochs, "
                f"{self.total} optimizer steps)"
            )
        if whole == self.epochs:
            return self.total
        start, end = self.epoch_starts[whole], self.epoch_starts[whole + 1]
        return start + int(round((epochs - whole) * (end - start)))

    def epoch_of_step(self, step: int) -> int:
        return max(0, bisect_right(self.epoch_starts, step) - 1)


def count_optimizer_steps(
    batches_per_epoch: int | float,
    max_epochs: int | None,
    *,
    accumulate: int | Mapping[int, int] | Callable[[int], int] = 1,
    max_steps: int = -1,
    history: Sequence[int] = (),
) -> StepPlan:
    """Count the optimizer steps of a run, epoch by epoch.

    Args:
        batches_per_epoch: training batches one process sees per epoch (after sharding, ``drop_last`` and
            ``limit_train_batches``); ``inf`` for an iterable dataset of unknown length (needs ``max_steps``).
        max_epochs: epochs to run; ``None`` or ``-1`` for "until ``max_steps``".
        accumulate: batches per optimizer step: one number, ``{first_epoch: factor}`` (as for
            ``GradientAccumulationScheduler``) or a function of the epoch. An epoch whose batch count is not a
            multiple of it ends with a step on the partial group, as Lightning does.
        max_steps: stop after this many optimizer steps in total; ``-1`` for no limit.
        history: known start steps of epochs that already ran (from a checkpoint); later epochs are counted.

    Examples:
        >>> plan = count_optimizer_steps(10, max_epochs=3, accumulate={0: 1, 1: 4})
        >>> plan.steps_per_epoch, plan.total
        ([10, 3, 3], 16)
        >>> count_optimizer_steps(10, max_epochs=3, max_steps=12).steps_per_epoch
        [10, 2]
    """
    factor = _accumulation_fn(accumulate)
    unbounded_epochs = max_epochs is None or max_epochs < 0
    if batches_per_epoch == float("inf") or batches_per_epoch is None:
        if max_steps < 0:
            raise ArgumentError(
                "the train dataloader has no length: set `max_steps` so schedules can be resolved"
            )
        return StepPlan((0, int(max_steps)), None)
    if unbounded_epochs and max_steps < 0:
        raise ArgumentError("the number of optimizer steps is unbounded: set `max_epochs` or `max_steps`")
    batches = int(batches_per_epoch)
    if batches <= 0:
        raise ArgumentError(f"the train dataloader yields no batches per epoch ({batches_per_epoch!r})")
    starts = [int(s) for s in history] or [0]
    epoch = len(starts) - 1
    cap = max_steps if max_steps >= 0 else math.inf
    while (unbounded_epochs or epoch < max_epochs) and starts[-1] < cap:
        starts.append(min(starts[-1] + math.ceil(batches / factor(epoch)), cap))
        epoch += 1
    if starts[-1] > cap:  # history already past max_steps (e.g. max_steps lowered on resume)
        starts[-1] = int(cap)
    return StepPlan(tuple(int(s) for s in starts), batches)


def _accumulation_fn(accumulate: int | Mapping[int, int] | Callable[[int], int]) -> Callable[[int], int]:
    if callable(accumulate):
        return accumulate
    if isinstance(accumulate, Mapping):
        table = dict(sorted((int(k), int(v)) for k, v in accumulate.items()))
        if any(v < 1 for v in table.values()):
            raise ArgumentError(f"`accumulate` factors must be >= 1, got {accumulate!r}")
        keys = list(table)

        def factor(epoch: int) -> int:
            i = bisect_right(keys, epoch) - 1
            return table[keys[i]] if i >= 0 else 1

        return factor
    if isinstance(accumulate, bool) or not isinstance(accumulate, int) or accumulate < 1:
        raise ArgumentError(f"`accumulate` must be an int >= 1, a mapping or a function, got {accumulate!r}")
    return lambda _epoch: accumulate


def plan_from_trainer(trainer: L.Trainer, *, history: Sequence[int] = ()) -> StepPlan:
    """The :class:`StepPlan` of ``trainer.fit`` as configured now, agreed across processes (rank 0's count).

    Loads the train dataloader if the Trainer has not yet (as ``estimated_stepping_batches`` does), so it can be
    called from ``configure_optimizers``. ``history`` holds the start steps of epochs that already ran (resume).
    """
    from lightning.pytorch.callbacks import GradientAccumulationScheduler

    if trainer.train_dataloader is None:
        trainer.fit_loop.setup_data()
    batches = trainer.num_training_batches
    accumulate: Any = trainer.accumulate_grad_batches
    for cb in trainer.callbacks:
        if isinstance(cb, GradientAccumulationScheduler):
            accumulate = cb.get_accumulate_grad_batches
    max_epochs = trainer.max_epochs
    plan = count_optimizer_steps(
        batches, max_epochs, accumulate=accumulate, max_steps=trainer.max_steps, history=history
    )
    return trainer.strategy.broadcast(plan, src=0)
