"""StepsToThreshold against a straight loop; argument checks of both measurement callbacks."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from lightning_bestpractices.measure import StepsToThreshold, StepTimer, hardware_name


class _Bowl(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.x = torch.nn.Parameter(torch.tensor([1.0]))

    def training_step(self, batch, batch_idx):
        return (self.x**2).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(100, 1)), batch_size=1)


def test_steps_to_threshold_matches_a_straight_loop_and_stops():
    x, expected = 1.0, None
    for step in range(100):  # loss x^2 before each update x <- x - 0.1 * 2x
        if x * x < 1e-3:
            expected = step
            break
        x -= 0.2 * x
    cb = StepsToThreshold(threshold=1e-3)
    trainer = L.Trainer(max_epochs=1, callbacks=[cb], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(_Bowl())
    assert cb.step == expected and trainer.global_step == expected + 1, "stopped right after the step that hit it"
    assert cb.metrics["threshold_reached"] == 1.0 and cb.metrics["steps_to_threshold"] == expected
    assert [s for s, _ in cb.history] == list(range(expected + 1))


def test_steps_to_threshold_not_reached_reports_no_step():
    cb = StepsToThreshold(threshold=-1.0, stop=False)
    trainer = L.Trainer(max_steps=5, callbacks=[cb], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(_Bowl())
    assert cb.metrics["threshold_reached"] == 0.0 and "steps_to_threshold" not in cb.metrics
    assert trainer.global_step == 5


def test_argument_checks_and_hardware_name():
    with pytest.raises(ValueError, match="`threshold` must be a finite number"):
        StepsToThreshold(threshold=float("nan"))
    with pytest.raises(ValueError, match="`history_every` must be an int >= 1"):
        StepsToThreshold(history_every=0)
    with pytest.raises(ValueError, match="`max_steps` must be an int >= 1 or None"):
        StepTimer(max_steps=0)
    assert hardware_name("cpu").endswith("threads)")
