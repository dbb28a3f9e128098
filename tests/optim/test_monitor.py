from __future__ import annotations

import csv

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from lightning_bestpractices.data import InMemoryDataModule
from lightning_bestpractices.models import MLP
from lightning_bestpractices.optim.monitor import LRMonitor
from lightning_bestpractices.tasks import Classifier
from lightning_bestpractices.wandb_offline import find_offline_runs, read_offline_run


def _data(n: int = 70) -> InMemoryDataModule:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=g)
    y = (x[:, :1] > 0).float()
    return InMemoryDataModule(train=(x, y), val=(x[:20], y[:20]), batch_size=16, seed=1)


class _Pending(L.Callback):
    """Records how many rows the monitor holds after every batch."""

    def __init__(self, monitor: LRMonitor) -> None:
        self.monitor, self.seen = monitor, []

    def on_train_batch_end(self, *args, **kwargs) -> None:
        self.seen.append(self.monitor.pending)


class _StepSchedule(Classifier):
    """Cosine per step, so every logged LR differs from the previous one."""

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.trainer.estimated_stepping_batches)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _fit(tmp_path, monitor, logger_cls=CSVLogger, epochs: int = 3, extra=()):
    torch.manual_seed(0)
    logger = (CSVLogger(tmp_path, name="csv") if logger_cls is CSVLogger
              else WandbLogger(save_dir=str(tmp_path), offline=True, project="t"))
    trainer = L.Trainer(max_epochs=epochs, logger=logger, callbacks=[monitor, *extra], log_every_n_steps=1,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(_StepSchedule(MLP(2, [8], 1), lr=0.1), _data())
    return trainer


def _csv_rows(trainer, key: str) -> list[tuple[int, float]]:
    with open(f"{trainer.logger.log_dir}/metrics.csv") as fh:
        return [(int(r["step"]), float(r[key])) for r in csv.DictReader(fh) if r.get(key)]


def test_rows_match_lightning_monitor_and_buffer_is_bounded(tmp_path):
    ref = _fit(tmp_path / "ref", LearningRateMonitor(logging_interval="step"))
    monitor = LRMonitor(flush_every=3)
    probe = _Pending(monitor)
    ours = _fit(tmp_path / "ours", monitor, extra=[probe])
    expected = _csv_rows(ref, "lr-AdamW")
    assert len(expected) == 3 * 5  # 70 samples / 16 per batch = 5 steps per epoch, one row per step
    assert _csv_rows(ours, "lr-AdamW") == expected  # same steps, same values, same order
    assert monitor.lrs == ref.callbacks[0].lrs
    assert float(ours.callback_metrics["lr-AdamW"]) == pytest.approx(expected[-1][1])
    assert max(probe.seen) == 2 and monitor.pending == 0, "never more than flush_every - 1 rows wait"
    assert [step for step, _ in expected] == monitor.lr_steps["lr-AdamW"]  # each LR read with its logged step


def test_lr_steps_give_the_lr_of_every_optimizer_step_under_accumulation(tmp_path):
    monitor = LRMonitor()
    trainer = _fit(tmp_path, monitor, epochs=2, extra=[])
    acc = LRMonitor()
    torch.manual_seed(0)
    accumulated = L.Trainer(max_epochs=2, logger=CSVLogger(tmp_path, name="acc"), callbacks=[acc],
                            log_every_n_steps=1, accumulate_grad_batches=2, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    accumulated.fit(_StepSchedule(MLP(2, [8], 1), lr=0.1), _data())
    # 5 batches per epoch, 2 per optimizer step -> 3 steps per epoch (the last on one batch); every batch is read
    assert len(acc.lrs["lr-AdamW"]) == 10 and acc.lr_steps["lr-AdamW"] == [0, 0, 1, 1, 2, 3, 3, 4, 4, 5]
    assert accumulated.global_step == 6 and trainer.global_step == 10 == len(monitor.lr_steps["lr-AdamW"])


def test_rows_reach_wandb_offline_in_step_order(tmp_path):
    import wandb

    trainer = _fit(tmp_path, LRMonitor(), logger_cls=WandbLogger, epochs=2)
    wandb.finish()
    run = read_offline_run(find_offline_runs(tmp_path)[0], wait=120)
    steps = [row["trainer/global_step"] for row in run.history if "lr-AdamW" in row]
    assert steps == list(range(10)), "one row per optimizer step, each with its own step"
    assert run.values("lr-AdamW") == pytest.approx(trainer.callbacks[0].lrs["lr-AdamW"])
    assert run.values("lr-AdamW")[0] == pytest.approx(0.1)


def test_waiting_rows_are_written_when_training_fails(tmp_path):
    class Boom(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 3:
                raise RuntimeError("boom")

    monitor = LRMonitor(flush_every=100)
    with pytest.raises(RuntimeError, match="boom"):
        _fit(tmp_path, monitor, extra=[Boom()])
    logs = sorted(tmp_path.rglob("metrics.csv"))
    assert logs, "the CSV logger wrote its file on failure"
    with logs[0].open() as fh:
        steps = [int(r["step"]) for r in csv.DictReader(fh) if r.get("lr-AdamW")]
    assert steps == [0, 1, 2, 3] and monitor.pending == 0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"flush_every": 0}, r"`flush_every` must be an int >= 1, got 0"),
        ({"flush_every": 2.5}, r"`flush_every` must be an int >= 1, got 2.5"),
        ({"logging_interval": "batch"}, r"`logging_interval` must be 'step', 'epoch' or None, got 'batch'"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LRMonitor(**kwargs)
