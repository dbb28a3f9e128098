"""LR schedules (seed 004): one run = one schedule, on 8x8 digits with momentum SGD; the LR of every optimizer step.

    python recipes/schedules.py fit                                   # warmup-cosine, digits, CPU, W&B offline
    python recipes/schedules.py fit --trainer.devices=2 --trainer.strategy=ddp --trainer.accumulate_grad_batches=3
    python recipes/schedules.py fit --trainer.precision=bf16-mixed
    python recipes/schedules.py fit --print_config > my.yaml && python recipes/schedules.py fit --config my.yaml
    python recipes/schedules.py fit --model.optim.schedule=null --model.optim.schedule='{name: onecycle, final_lr: 1.0e-5}'
    python recipes/schedules.py fit --config recipes/configs/schedules_lr_find.yaml   # LR range test, then train at its LR
    python -m lightning_bestpractices.sweep recipes/sweeps/schedules.yaml          # none/step/cosine/... at one peak LR
    python -m lightning_bestpractices.sweep recipes/sweeps/schedule_gallery.yaml   # every schedule kind, short runs

The schedule is an ``OptimConfig`` field (``model.optim.schedule``), resolved against the real number of optimizer
steps of the run, so the last optimizer step ends on ``final_lr`` whatever the devices, ``accumulate_grad_batches``
or ``max_epochs``. After fit the recipe reads the LR that ``LRMonitor`` recorded at every batch, keeps one value per
optimizer step, saves ``lr_schedule.png`` (LR against optimizer step, one line per param group) and reports it as
the ``lr`` series (``lr/last``, ``lr/peak``, ``optimizer_steps`` and ``val/best_acc`` as metrics). Setting the
schedule from the command line: ``--model.optim.schedule=null`` first clears the config's warmup-cosine fields, so
the new mapping starts from the schedule defaults instead of merging into them.

The LR range test that chose the peak LR is a config switch: ``configs/schedules_lr_find.yaml`` adds ``LRFinder``,
which sweeps a copy of the model before training, writes ``lr_find.png`` into the run folder and trains at the LR it
suggests (reported as ``lr_find/lr``, each rule's suggestion as ``lr_find/<rule>``). Every hyperparameter, with
its reason, is in ``recipes/configs/schedules.yaml``.
"""

from __future__ import annotations

from pathlib import Path

from lightning_bestpractices._logging import log_figure
from lightning_bestpractices.cli import BestPracticesCLI, MetricHistory
from lightning_bestpractices.data import DigitsDataModule
from lightning_bestpractices.optim import LRFinder, LRMonitor
from lightning_bestpractices.tasks import Classifier


def lr_per_step(monitor: LRMonitor) -> dict[str, tuple[list[int], list[float]]]:
    """``{group key: (optimizer steps, LR)}``: the first reading at each step (every batch of an accumulation
    window reads the same LR, the one its optimizer step uses)."""
    out = {}
    for key, lrs in monitor.lrs.items():
        seen: dict[int, float] = {}
        for step, lr in zip(monitor.lr_steps[key], lrs):
            seen.setdefault(step, lr)
        out[key] = (list(seen), list(seen.values()))
    return out


class SchedulesCLI(BestPracticesCLI):
    """After ``fit``: the LR of every optimizer step (plot + ``lr`` series) and the best validation accuracy."""

    def report(self) -> None:
        trainer = self.trainer
        metrics = {}
        history = next(cb for cb in trainer.callbacks if isinstance(cb, MetricHistory))
        acc = [r["val/acc"] for r in history.rows if "val/acc" in r]
        if acc:
            metrics["val/best_acc"] = max(acc)
        finder = next((cb for cb in trainer.callbacks if isinstance(cb, LRFinder)), None)
        if finder is not None and finder.lr is not None:
            metrics["lr_find/lr"] = finder.lr  # the LR the run trained at (every rank)
            if finder.result is not None:  # the sweep itself ran on rank 0 only
                metrics.update({f"lr_find/{rule.replace('/', '_')}": float(lr)
                                for rule, lr in finder.result.suggestions.items()})
        monitor = next((cb for cb in trainer.callbacks if isinstance(cb, LRMonitor)), None)
        curves = lr_per_step(monitor) if monitor is not None else {}
        if curves:
            steps, lrs = next(iter(curves.values()))  # the first group (weights with decay); others in the plot
            metrics.update({"lr/last": lrs[-1], "lr/peak": max(lrs), "optimizer_steps": float(len(steps))})
            self.add_series("lr", x=steps, y=lrs, xlabel="optimizer step", ylabel="lr")
            log_figure(trainer, "lr_schedule", _plot(curves, self.model))
        self.add_metrics(metrics)


def _plot(curves: dict[str, tuple[list[int], list[float]]], model: Classifier):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for key, (steps, lrs) in curves.items():
        ax.plot(steps, lrs, label=key.removeprefix("lr-"))
    spec = model.optim.schedule
    ax.set(xlabel="optimizer step", ylabel="learning rate",
           title=f"schedule: {getattr(spec, 'name', None) or 'none (constant)'}, {len(steps)} optimizer steps")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def main(args=None) -> SchedulesCLI:
    return SchedulesCLI(Classifier, DigitsDataModule, args=args,
                        default_config=Path(__file__).parent / "configs" / "schedules.yaml")


if __name__ == "__main__":
    main()
