"""Measure a run honestly: per-step time after warmup, and the step at which the loss first reaches a target.

Two callbacks for benchmark-style recipes:

* :class:`StepTimer` times each training step from ``on_train_batch_start`` to ``on_train_batch_end``, skipping
  the first ``warmup`` steps (allocator, autotuning, ``torch.compile`` and lazy init make them slow). On CPU it
  reads the wall clock (``time.perf_counter``) and the main thread's CPU clock (``time.thread_time``, which other
  processes competing for the cores do not inflate); on CUDA it records a pair of CUDA events per step and reads
  them once, at the end of training, so the hot path never waits for the GPU. What it adds over Lightning's
  ``Timer`` / profilers: warmup is excluded, device time comes from events rather than host timestamps, and the
  result is a handful of floats ready for a results table.
* :class:`StepsToThreshold` watches the training loss that ``training_step`` returns and records the first
  optimizer step at which it is below ``threshold`` (a "time to target" measure), optionally stopping the run
  there. Lightning's ``EarlyStopping(stopping_threshold=...)`` checks only at epoch or validation end and does not
  say at which step the target was hit.

Under DDP both reduce across processes (mean time per step; the loss is averaged before the comparison), so every
rank agrees on the result and on when to stop.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from lightning_bestpractices.errors import ArgumentError

__all__ = ["StepTimer", "StepsToThreshold", "hardware_name"]


def hardware_name(device: torch.device | str | None = None) -> str:
    """A short name of the device a run used: the GPU's name on CUDA, else the CPU model and torch's threads.

    Examples:
        >>> "threads" in hardware_name("cpu")
        True
    """
    device = torch.device(device or "cpu")
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = ""
    try:
        with open("/proc/cpuinfo") as fh:
            name = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "")
    except OSError:
        pass
    if not name:
        import platform

        name = platform.processor() or platform.machine() or "CPU"
    return f"{name} ({torch.get_num_threads()} threads)"


class StepTimer(L.Callback):
    """Time training steps after ``warmup`` steps: wall clock and thread CPU clock; CUDA events on GPU.

    After training, :attr:`metrics` holds (milliseconds per optimizer step, averaged over processes):

    * ``ms_per_step_wall``: wall clock from the start of the first timed step to the end of the last one (after a
      device sync on GPU), divided by the timed steps: the throughput a user sees, hooks and data included.
    * ``ms_per_step_cpu``: the main thread's CPU time inside the steps (``time.thread_time``), per step. With one
      intra-op thread (``torch.set_num_threads(1)``) this is the compute, unaffected by other processes.
    * ``ms_per_step_cuda`` (GPU only): median of the per-step CUDA-event times (the GPU's time for a step).
    * ``ms_per_step_wall_median`` (CPU only): median of the per-step wall times.
    * ``timed_steps``, ``peak_memory_mb`` (GPU only: ``torch.cuda.max_memory_allocated``).

    With fewer than ``warmup + 1`` steps nothing is timed and :attr:`metrics` is empty (a warning says so).

    Args:
        warmup: steps not timed at the start of training.
        max_steps: stop timing after this many timed steps (``None``: time every step after warmup).

    Examples:
        >>> timer = StepTimer(warmup=2)
        >>> trainer = L.Trainer(max_steps=6, callbacks=[timer], logger=False, enable_checkpointing=False,
        ...                     enable_progress_bar=False, enable_model_summary=False)
        >>> from lightning.pytorch.demos.boring_classes import BoringModel
        >>> trainer.fit(BoringModel())
        >>> timer.metrics["timed_steps"], timer.metrics["ms_per_step_wall"] > 0
        (4.0, True)
    """

    def __init__(self, warmup: int = 5, max_steps: int | None = None) -> None:
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ArgumentError(f"`warmup` must be an int >= 0, got {warmup!r}")
        if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
            raise ArgumentError(f"`max_steps` must be an int >= 1 or None, got {max_steps!r}")
        self.warmup, self.max_steps = warmup, max_steps
        self.metrics: dict[str, float] = {}
        self.device_name = ""
        self._reset()

    def _reset(self) -> None:
        self._seen = 0
        self._wall: list[float] = []
        self._cpu: list[float] = []
        self._events: list[tuple[Any, Any]] = []
        self._first_start: float | None = None
        self._last_end: float | None = None
        self._t0 = (0.0, 0.0)
        self._timing = False

    def _cuda(self, pl_module: L.LightningModule) -> bool:
        return pl_module.device.type == "cuda"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reset()
        self.metrics = {}
        self.device_name = hardware_name(pl_module.device)
        if self._cuda(pl_module):
            torch.cuda.reset_peak_memory_stats(pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._seen += 1
        n = len(self._cpu)
        self._timing = self._seen > self.warmup and (self.max_steps is None or n < self.max_steps)
        if not self._timing:
            return
        if self._cuda(pl_module):
            start = torch.cuda.Event(enable_timing=True)
            start.record()
            self._events.append((start, None))
        self._t0 = (time.perf_counter(), time.thread_time())
        if self._first_start is None:
            self._first_start = self._t0[0]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self._timing:
            return
        wall, cpu = time.perf_counter(), time.thread_time()
        if self._cuda(pl_module):
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self._events[-1] = (self._events[-1][0], end)
        self._wall.append(wall - self._t0[0])
        self._cpu.append(cpu - self._t0[1])
        self._last_end = wall
        self._timing = False

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        cuda = self._cuda(pl_module)
        n = len(self._cpu)
        local = torch.zeros(6, dtype=torch.float64)
        if n:
            last_end = self._last_end
            if cuda:
                torch.cuda.synchronize(pl_module.device)
                last_end = time.perf_counter() if self._events[-1][1] is None else last_end
                ms = [s.elapsed_time(e) for s, e in self._events if e is not None]
                local[2] = statistics.median(ms)
                local[5] = torch.cuda.max_memory_allocated(pl_module.device) / 2**20
            local[0] = (last_end - self._first_start) * 1e3 / n
            local[1] = sum(self._cpu) * 1e3 / n
            local[3] = statistics.median(self._wall) * 1e3
            local[4] = n
        # every rank runs this hook: average over processes so all ranks report the same numbers
        reduced = trainer.strategy.reduce(local.to(pl_module.device), reduce_op="mean").cpu().tolist()
        if not n:
            rank_zero_warn(f"StepTimer: no step after the {self.warmup} warmup steps; nothing timed")
            return
        wall, cpu, dev, wall_median, steps, memory = reduced
        self.metrics = {"ms_per_step_wall": wall, "ms_per_step_cpu": cpu, "timed_steps": float(round(steps)),
                        "warmup_steps": float(self.warmup)}
        if cuda:
            self.metrics.update(ms_per_step_cuda=dev, peak_memory_mb=memory)
        else:
            self.metrics["ms_per_step_wall_median"] = wall_median


class StepsToThreshold(L.Callback):
    """Record the first optimizer step at which the training loss is below ``threshold``; optionally stop there.

    The loss is the one ``training_step`` returns (``outputs["loss"]``), i.e. the loss of the parameters *before*
    that step's update: :attr:`step` is the number of optimizer steps taken when the loss was first seen below the
    threshold. With full-batch training (one batch = the whole training set) this is exactly "steps until the
    training loss reaches ``threshold``". It reads the loss from the device at every step (one host sync per step),
    which is the price of step resolution; under DDP the loss is averaged over processes first.

    After training, :attr:`metrics` holds ``steps_to_threshold`` and ``threshold_loss`` (the loss at that step)
    when the threshold was reached, and ``threshold_reached`` (1 or 0) and ``final_loss`` always;
    :attr:`history` holds ``(step, loss)`` pairs, one every ``history_every`` steps.

    Args:
        threshold: loss target (> 0 for losses that are >= 0).
        stop: end training at the step the threshold is reached.
        history_every: keep every n-th loss in :attr:`history` (for a loss curve).

    Examples:
        >>> cb = StepsToThreshold(threshold=0.5)
        >>> cb.state_dict()
        {'step': None, 'value': None}
    """

    def __init__(self, threshold: float = 1e-3, stop: bool = True, history_every: int = 1) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            raise ArgumentError(f"`threshold` must be a finite number, got {threshold!r}")
        if isinstance(history_every, bool) or not isinstance(history_every, int) or history_every < 1:
            raise ArgumentError(f"`history_every` must be an int >= 1, got {history_every!r}")
        self.threshold, self.stop, self.history_every = float(threshold), stop, history_every
        self.step: int | None = None
        self.value: float | None = None
        self.last: float | None = None
        self.history: list[tuple[int, float]] = []
        self._before = 0

    @property
    def state_key(self) -> str:
        return self._generate_state_key(threshold=self.threshold)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "value": self.value}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.step, self.value = state_dict["step"], state_dict["value"]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._before = int(trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        loss = trainer.strategy.reduce(loss.detach().float(), reduce_op="mean")
        value = float(loss)  # the host sync this measure needs
        self.last = value
        if self._before % self.history_every == 0:
            self.history.append((self._before, value))
        if self.step is None and value < self.threshold:
            self.step, self.value = self._before, value
            if self.stop:
                trainer.should_stop = True

    @property
    def metrics(self) -> dict[str, float]:
        out = {"threshold_reached": float(self.step is not None)}
        if self.step is not None:
            out.update(steps_to_threshold=float(self.step), threshold_loss=float(self.value))
        if self.last is not None and math.isfinite(self.last):
            out["final_loss"] = self.last
        return out
