"""The image-CNN recipe in-process: augmentation reaches training images only, label smoothing changes the loss,
channels_last keeps the values, FakeData is selectable."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torchvision.transforms import v2

from lightning_bestpractices.data import VisionDataModule
from lightning_bestpractices.models import SmallCNN

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import load_recipe  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
RECIPE = load_recipe("image_cnn")
SMALL = ["--trainer.logger=CSVLogger", "--trainer.enable_progress_bar=false", "--trainer.accelerator=cpu",
         "--trainer.max_epochs=1", "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=2",
         "--trainer.limit_test_batches=2"]


def test_augmentation_reaches_training_images_only():
    dm = VisionDataModule("Digits", augment=[v2.RandomAffine(degrees=10, translate=(0.125, 0.125))], val_size=50)
    dm.setup("fit")
    base = dm.datasets["train"].dataset
    i = dm.datasets["train"].indices[0]
    train_draws = [dm.datasets["train"][0][0] for _ in range(10)]  # a new random draw each time it is served
    assert sum(not torch.equal(d, base.images[i]) for d in train_draws) >= 5, "training images are augmented"
    for k in range(5):
        j = dm.datasets["val"].indices[k]
        assert torch.equal(dm.datasets["val"][k][0], base.images[j]), "validation images are served unchanged"
    assert torch.equal(dm.datasets["test"][0][0], dm.datasets["test"].images[0]), "test images too"


def test_label_smoothing_changes_the_loss(tmp_path):
    out = {}
    for eps in (0.0, 0.2):
        folder = tmp_path / f"ls{eps}"
        RECIPE.main(["fit", *SMALL, f"--model.label_smoothing={eps}", f"--run_dir={folder}"])
        out[eps] = json.loads((folder / "metrics.json").read_text())["metrics"]
    # same seed, same data: only the loss's targets differ; the smoothed loss is bounded away from 0
    assert out[0.2]["test/loss"] != out[0.0]["test/loss"]
    assert abs(out[0.2]["test/acc"] - out[0.0]["test/acc"]) < 0.5
    for m in out.values():
        assert 0 <= m["test/acc"] <= 1


def test_fakedata_is_selectable_and_channels_last_keeps_values(tmp_path):
    folder = tmp_path / "fake"
    RECIPE.main(["fit", *SMALL, "--data.name=FakeData", "--data.val_size=40", "--data.batch_size=16",
                 "--data.mean=null", "--data.std=null", "--model.channels_last=true", f"--run_dir={folder}"])
    metrics = json.loads((folder / "metrics.json").read_text())["metrics"]
    assert 0 <= metrics["test/acc"] <= 1
    torch.manual_seed(0)
    net = SmallCNN(1, 10, [8, 16], 16, dropout=0.0).eval()
    plain = RECIPE.ImageClassifier(net, 10)
    fast = RECIPE.ImageClassifier(SmallCNN(1, 10, [8, 16], 16, dropout=0.0).eval(), 10, channels_last=True)
    fast.net.load_state_dict(net.state_dict())
    fast.configure_model()
    conv = fast.net.features[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(fast(x), plain(x), rtol=1e-5, atol=1e-5)


def test_compile_switch_runs_on_cpu():
    model = RECIPE.ImageClassifier(SmallCNN(1, 10, [4], 8, dropout=0.0), 10, compile=True)
    model.configure_model()
    model.configure_model()  # a second entry point does not compile twice
    x = torch.randn(2, 1, 8, 8)
    assert model(x).shape == (2, 10)
