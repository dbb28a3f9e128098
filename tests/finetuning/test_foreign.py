"""The adapter for a user's own torch schedulers: every supported class works, an unknown class is refused."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn
from torch.optim import lr_scheduler as S
from torch.utils.data import DataLoader, TensorDataset

from lightning_bestpractices.finetuning import GradualUnfreezing, add_param_group, foreign


class MyScheduler(S.LRScheduler):
    """A user's own scheduler with per-group state the adapter cannot know about."""

    def get_lr(self):
        return [g["lr"] for g in self.optimizer.param_groups]


def test_unknown_scheduler_class_is_refused_naming_it():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = MyScheduler(opt)
    with pytest.raises(ValueError, match=r"cannot add parameter groups to a MyScheduler scheduler.*'OneCycleLR'"):
        add_param_group(opt, [nn.Parameter(torch.zeros(1))], schedulers=[sched])
    assert len(opt.param_groups) == 1  # refused before anything changed
    nested = S.SequentialLR(opt, [S.ConstantLR(opt), MyScheduler(opt)], milestones=[2])
    with pytest.raises(ValueError, match="MyScheduler"):
        foreign.check_supported(nested)


def test_supported_list_is_class_by_class():
    assert foreign.supported() == sorted(c.__name__ for c in foreign.SUPPORTED)
    assert {"LambdaLR", "OneCycleLR", "CosineAnnealingWarmRestarts", "StepLR", "ReduceLROnPlateau"} <= set(
        foreign.supported()
    )


class _Net(L.LightningModule):
    def __init__(self, make):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        self.make = make

    def training_step(self, batch, batch_idx):
        return self.net(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.1)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self.make(opt), "interval": "step"}}


def test_gradual_unfreezing_refuses_an_unknown_scheduler_before_the_first_step(tmp_path):
    data = DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4)
    trainer = L.Trainer(max_epochs=2, callbacks=[GradualUnfreezing([1])], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    with pytest.raises(ValueError, match="MyScheduler"):
        trainer.fit(_Net(MyScheduler), data)
    assert trainer.global_step == 0
