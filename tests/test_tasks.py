import lightning as L
import pytest
import torch

from lightning_bestpractices.data import DigitsDataModule
from lightning_bestpractices.models import MLP
from lightning_bestpractices.tasks import Classifier


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"lr": -0.1}, r"`lr` must be > 0, got -0.1"),
        ({"lr": 0.0}, r"`lr` must be > 0, got 0.0"),
        ({"weight_decay": -1.0}, r"`weight_decay` must be >= 0, got -1.0"),
        ({"num_classes": 1}, r"`num_classes` must be >= 2, got 1"),
    ],
)
def test_classifier_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Classifier(MLP(), **kwargs)


def test_multiclass_fit_logs_epoch_metrics_and_predicts_probabilities():
    torch.manual_seed(0)
    dm = DigitsDataModule(batch_size=64)
    model = Classifier(MLP(64, [64], 10, dropout=0.1), num_classes=10, lr=0.01)
    trainer = L.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(model, dm)
    m = trainer.callback_metrics
    assert {"train/loss", "train/acc", "val/loss", "val/acc"} <= set(m)
    assert float(m["val/acc"]) > 0.8
    # the cosine schedule spans the run: after 3 of 3 epochs the LR is back at its minimum (0)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    probs = torch.cat(trainer.predict(model, dm))
    assert probs.shape[1] == 10 and torch.allclose(probs.sum(1), torch.ones(len(probs)), atol=1e-5)
