"""GradualUnfreezing in a user's own LightningModule: inherited no-decay split, bad input, separate states."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_bestpractices.finetuning import GradualUnfreezing
from lightning_bestpractices.normalization import no_decay_parameters
from lightning_bestpractices.optim import OptimizerMixin

QUIET = dict(logger=False, enable_progress_bar=False, enable_model_summary=False)


class Net(OptimizerMixin, L.LightningModule):
    """What a user writes: own modules, the optim config, nothing else of the package."""

    def __init__(self, optim=None):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8), nn.BatchNorm1d(8), nn.ReLU()
        )
        self.head = nn.Linear(8, 1)
        self.optim = optim or {"optimizer": "adamw", "lr": 0.01, "weight_decay": 0.1, "schedule": "cosine"}

    def forward(self, x):
        return self.head(self.backbone(x))

    def training_step(self, batch, batch_idx):
        return nn.functional.mse_loss(self(batch[0]), batch[1])


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=g)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)


class _Ratios(L.Callback):
    def __init__(self):
        self.rows = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.rows.append({g["name"]: g["lr"] for g in optimizer.param_groups})


def test_unfrozen_groups_inherit_the_split_and_weight_decay_of_the_optimizer(tmp_path):
    L.seed_everything(0)
    model, rec = Net(), _Ratios()
    trainer = L.Trainer(max_epochs=3, callbacks=[GradualUnfreezing(unfreeze_at=[1, 2]), rec],
                        enable_checkpointing=False, default_root_dir=tmp_path, **QUIET)  # fmt: skip
    trainer.fit(model, _data())
    groups = trainer.optimizers[0].param_groups
    names = [g["name"] for g in groups]
    assert names == ["decay", "no_decay", "backbone.3", "backbone.3.no_decay", "backbone.0", "backbone.0.no_decay"]
    no_decay = no_decay_parameters(model)
    wd = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    by_name = {n: wd[id(p)] for n, p in model.named_parameters()}
    assert len(by_name) == sum(1 for _ in model.parameters())  # every parameter is in the optimizer once
    for n, p in model.named_parameters():  # decay on Linear weights only: never on biases or BatchNorm weights
        assert by_name[n] == (0.0 if id(p) in no_decay else 0.1), n
    assert {n for n, v in by_name.items() if v > 0} == {"backbone.0.weight", "backbone.3.weight", "head.weight"}
    for row in rec.rows[8:]:  # after the second unfreeze: discriminative ratios on the schedule at every step
        assert row["backbone.3"] == pytest.approx(0.5 * row["decay"], rel=1e-12)
        assert row["backbone.0.no_decay"] == pytest.approx(0.25 * row["decay"], rel=1e-12)


def test_more_unfreeze_points_than_frozen_groups_names_unfreeze_at(tmp_path):
    trainer = L.Trainer(max_epochs=5, callbacks=[GradualUnfreezing(unfreeze_at=[1, 2, 3])],
                        enable_checkpointing=False, default_root_dir=tmp_path, **QUIET)  # fmt: skip
    with pytest.raises(ValueError, match=r"`unfreeze_at`=\[1, 2, 3\] has 3 unfreeze points, but the model has only 2 "
                                         r"frozen layer group\(s\) \(\['backbone.0', 'backbone.3'\]\)") as err:
        trainer.fit(Net(), _data())
    assert "groups_per_unfreeze" not in str(err.value) and trainer.global_step == 0


def test_two_instances_save_and_restore_separately(tmp_path):
    def callbacks():
        a = GradualUnfreezing(unfreeze_at=[1, 2], groups=["backbone.0", "backbone.3", ["head"]])
        b = GradualUnfreezing(unfreeze_at=[2], groups=[["backbone.0", "backbone.3"], ["head"]])
        return a, b

    a, b = callbacks()
    assert a.state_key != b.state_key
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    L.seed_everything(0)
    L.Trainer(max_epochs=3, callbacks=[a, b, ckpt], default_root_dir=tmp_path, **QUIET).fit(Net(), _data())
    assert (a.phase, b.phase) == (2, 1)
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)["callbacks"]
    assert saved[a.state_key]["phase"] == 2 and saved[b.state_key]["phase"] == 1

    seen = []

    class Probe(L.Callback):
        def on_fit_start(self, trainer, pl_module):
            seen.append((a2.phase, b2.phase))

    a2, b2 = callbacks()
    L.Trainer(max_epochs=4, callbacks=[a2, b2, Probe()], default_root_dir=tmp_path, enable_checkpointing=False,
              **QUIET).fit(Net(), _data(), ckpt_path=tmp_path / "last.ckpt")  # fmt: skip
    assert seen == [(2, 1)]  # each restored its own phase before training continued


def test_group_names_are_not_doubled_through_the_task_wrapper(tmp_path):
    from lightning_bestpractices.models import MLP
    from lightning_bestpractices.optim import LRMonitor
    from lightning_bestpractices.tasks import Classifier

    model = Classifier(MLP(4, [8, 8], 1, norm="batch"), optim={"weight_decay": 0.1})
    logger = L.pytorch.loggers.CSVLogger(tmp_path)
    trainer = L.Trainer(max_epochs=3, callbacks=[GradualUnfreezing(unfreeze_at=[1, 2]), LRMonitor()], logger=logger,
                        log_every_n_steps=1, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)  # fmt: skip
    data = DataLoader(TensorDataset(torch.randn(16, 4), torch.randint(0, 2, (16, 1)).float()), batch_size=8)
    trainer.fit(model, data)
    names = [g["name"] for g in trainer.optimizers[0].param_groups]
    assert names == ["decay", "no_decay", "net.4", "net.4.no_decay", "net.0", "net.0.no_decay"]
    header = (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "lr-AdamW/net.4" in header and "lr-AdamW/net.0.no_decay-weight_decay" in header  # the same names
    assert not any("net.net" in h for h in header)
