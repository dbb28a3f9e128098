import lightning as L
import pytest
import torch

from lightning_bestpractices.data import (
    DigitsDataModule,
    InMemoryDataModule,
    MoonsDataModule,
    TensorLoader,
    VisionDataModule,
)


def _ids(loader):
    return torch.cat([b[0].flatten() for b in loader]).long()


@pytest.mark.parametrize("n,world,bs,drop", [(10, 2, 3, False), (11, 2, 4, True), (7, 3, 2, False), (8, 1, 8, False)])
def test_train_shards_cover_everything_with_equal_lengths(n, world, bs, drop):
    x = torch.arange(n).float().unsqueeze(1)
    loaders = [TensorLoader((x,), bs, shuffle=True, seed=3, rank=r, world_size=world, drop_last=drop)
               for r in range(world)]
    assert len({len(ld) for ld in loaders}) == 1, "every rank must run the same number of steps"
    assert all(len(list(ld)) == len(ld) for ld in loaders)
    if not drop:
        seen = torch.cat([_ids(ld) for ld in loaders])
        assert set(seen.tolist()) == set(range(n))  # padding only repeats samples, never drops one
        assert len(seen) == world * loaders[0].num_samples


def test_eval_shards_are_exact_partition():
    x = torch.arange(11).float().unsqueeze(1)
    seen = torch.cat([_ids(TensorLoader((x,), 4, rank=r, world_size=2, pad=False)) for r in range(2)])
    assert sorted(seen.tolist()) == list(range(11))


def test_shuffle_is_seeded_per_epoch_and_identical_across_ranks():
    x = torch.arange(50).float().unsqueeze(1)
    epoch = {"e": 0}
    a = TensorLoader((x,), 50, shuffle=True, seed=1, epoch_fn=lambda: epoch["e"])
    b = TensorLoader((x,), 50, shuffle=True, seed=1, epoch_fn=lambda: epoch["e"])
    first = _ids(a)
    assert torch.equal(first, _ids(b))
    assert not torch.equal(first, torch.arange(50))
    epoch["e"] = 1
    second = _ids(a)
    assert not torch.equal(first, second)
    epoch["e"] = 0
    assert torch.equal(_ids(a), first), "same epoch, same order: a resumed run replays it"


def test_loader_bad_input():
    x = torch.zeros(4, 1)
    with pytest.raises(ValueError, match="`batch_size` must be >= 1, got 0"):
        TensorLoader((x,), 0)
    with pytest.raises(ValueError, match="share their first dimension"):
        TensorLoader((x, torch.zeros(3)), 2)
    with pytest.raises(ValueError, match="`rank`"):
        TensorLoader((x,), 2, rank=2, world_size=2)


def test_datamodule_serves_device_slices_without_dataloader():
    dm = InMemoryDataModule(train=(torch.randn(70, 2), torch.arange(70)), val=(torch.randn(9, 2), torch.arange(9)),
                            batch_size=32)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert not isinstance(loader, torch.utils.data.DataLoader)
    assert [b[0].shape[0] for b in loader] == [32, 32, 6]
    with pytest.raises(ValueError, match="no `test` split"):
        dm.test_dataloader()


def test_moons_splits_are_independent_and_shaped():
    dm = MoonsDataModule(n_train=800, n_val=200, noise=0.2, seed=42)
    dm.setup("fit")
    (xt, yt), (xv, yv) = dm.splits["train"], dm.splits["val"]
    assert xt.shape == (800, 2) and yt.shape == (800, 1) and xv.shape == (200, 2) and yv.shape == (200, 1)
    assert yt.dtype == torch.float32 and set(yt.unique().tolist()) == {0.0, 1.0}
    assert torch.cdist(xv, xt).min() > 0, "validation points must not repeat training points"
    again = MoonsDataModule(seed=42)
    again.setup("fit")
    assert torch.equal(again.splits["train"][0], xt)
    with pytest.raises(ValueError, match="`noise` must be >= 0, got -1"):
        MoonsDataModule(noise=-1)


def test_digits_classes_images_and_limit():
    dm = DigitsDataModule(classes=[8, 9], image=True, train_limit=20, seed=1)
    dm.setup("fit")
    x, y = dm.splits["train"]
    assert x.shape == (20, 1, 8, 8) and set(y.tolist()) <= {0, 1}
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    full = DigitsDataModule(val_fraction=0.2, test_fraction=0.2)
    full.setup("fit")
    sizes = {k: v[0].shape[0] for k, v in full.splits.items() if k != "predict"}
    assert sum(sizes.values()) == 1797
    counts = torch.bincount(full.splits["val"][1], minlength=10)
    assert counts.min() >= 30, "stratified split keeps every class in validation"
    with pytest.raises(ValueError, match=r"`classes` must be >= 2 distinct digits in 0..9, got \[3, 11\]"):
        DigitsDataModule(classes=[3, 11])
    with pytest.raises(ValueError, match="`val_fraction` must be in"):
        DigitsDataModule(val_fraction=1.5)


def test_vision_datamodule_with_fakedata_and_bad_name():
    dm = VisionDataModule("FakeData", batch_size=16, val_size=40, classes=[1, 2, 3], channels=3, image_size=16)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape[1:] == (3, 16, 16) and set(y.tolist()) <= {0, 1, 2}
    with pytest.raises(ValueError, match="`name` must be one of"):
        VisionDataModule("ImageNet22k")


class _Probe(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.seen = []

    def training_step(self, batch, batch_idx):
        self.seen.append(batch[0].device.type)
        return self.layer(batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_trainer_uses_loader_and_limit_batches():
    dm = MoonsDataModule(n_train=100, n_val=20, batch_size=10)
    model = _Probe()
    trainer = L.Trainer(max_epochs=2, limit_train_batches=4, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, dm)
    assert trainer.global_step == 8 and model.seen == ["cpu"] * 8


def test_vision_datamodule_digits_match_the_in_memory_digits_and_check_arguments():
    from torchvision.transforms import v2

    dm = VisionDataModule("Digits", val_size=100, mean=[0.5], std=[0.5])
    dm.setup("fit")
    reference = DigitsDataModule(image=True, val_fraction=0.0, test_fraction=0.2).build_splits()["test"]
    x, y = dm.datasets["test"][3]
    torch.testing.assert_close(x, (reference[0][3] - 0.5) / 0.5)  # Normalize applied, same test split
    assert y == int(reference[1][3])
    assert isinstance(dm.transforms["train"], v2.Compose)
    with pytest.raises(ValueError, match="`mean` and `std` must be given together"):
        VisionDataModule("Digits", mean=[0.5])
    with pytest.raises(ValueError, match="`std` values must be > 0"):
        VisionDataModule("Digits", mean=[0.5], std=[0.0])
    with pytest.raises(ValueError, match="`augment` must be a list of transforms"):
        VisionDataModule("Digits", augment=[3])
