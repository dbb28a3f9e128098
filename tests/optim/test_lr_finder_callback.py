"""LRFinder inside the user's own fit: the Trainer's precision, the LR in the logged hyperparameters, the plot in
the run folder (DDP: one sweep, every rank the same LR -- tests/test_guide.py runs it with 2 processes)."""

from __future__ import annotations

import lightning as L
import torch
import yaml
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from lightning_bestpractices.models import MLP
from lightning_bestpractices.optim import LRFinder
from lightning_bestpractices.tasks import Classifier


def test_lr_finder_callback_sweeps_in_the_trainers_precision_and_logs_the_lr_it_sets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    L.seed_everything(0)
    x = torch.randn(64, 2)
    data = DataLoader(TensorDataset(x, (x[:, :1] > 0).float()), batch_size=8)
    finder = LRFinder(min_lr=1e-4, max_lr=1.0, num_steps=20, rule="minimum/10")
    logger = CSVLogger(tmp_path / "logs")
    trainer = L.Trainer(max_epochs=1, precision="bf16-mixed", logger=logger, callbacks=[finder],
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    model = Classifier(MLP(2, [8], 1))
    trainer.fit(model, data)
    assert finder.result.precision == "bf16-mixed" and len(finder.result.losses) == 20
    assert model.optim.lr == finder.lr == finder.result.suggestion
    assert trainer.optimizers[0].param_groups[0]["initial_lr"] == finder.lr  # the optimizer was built with it
    logged = yaml.safe_load((tmp_path / "logs" / "lightning_logs" / "version_0" / "hparams.yaml").read_text())
    assert logged["optim"]["lr"] == finder.lr
    assert (tmp_path / "logs" / "lightning_logs" / "version_0" / "lr_find.png").is_file()
    assert not list(tmp_path.glob("*.png")) and not (tmp_path / "lightning_logs").exists()  # nothing in the cwd
