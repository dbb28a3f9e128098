"""In-memory data modules: whole-tensor slices from tensors already on the training device.

A dataset that fits in memory does not need a ``DataLoader``: per-sample ``__getitem__`` plus ``collate`` costs more
than the model step for small models. :class:`TensorLoader` slices batches straight out of tensors that live on the
training device, shuffles with a seeded generator (the same permutation on every rank), and shards by rank the way
``DistributedSampler`` does, so every rank runs the same number of optimizer steps.

:class:`InMemoryDataModule` is the reusable shell; :class:`MoonsDataModule`, :class:`DigitsDataModule` and
:class:`RegressionDataModule` (diabetes or a synthetic set by default) are built-in datasets that need no network. :class:`VisionDataModule` wraps torchvision datasets (MNIST, FashionMNIST, CIFAR10,
FakeData) for users who have them or can download them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import lightning as L
import torch
from torch import Tensor

from lightning_bestpractices.errors import ArgumentError

__all__ = [
    "TensorLoader",
    "InMemoryDataModule",
    "MoonsDataModule",
    "DigitsDataModule",
    "RegressionDataModule",
    "Standardization",
    "VisionDataModule",
]

Split = tuple[Tensor, ...]


class TensorLoader:
    """Iterate over equal-length tensors in batches of whole-tensor slices.

    Args:
        tensors: tensors with the same first dimension (e.g. ``(x, y)``); they are not copied.
        batch_size: samples per batch on this rank.
        shuffle: reshuffle every epoch with ``torch.Generator().manual_seed(seed + epoch)``.
        drop_last: drop the last incomplete batch.
        seed: base seed of the shuffle.
        rank / world_size: shard of this process. Training shards (``pad=True``) are padded by wrapping around so
            all ranks have the same length, exactly like ``DistributedSampler``; evaluation shards (``pad=False``)
            are contiguous and never duplicate a sample, so metrics are exact.
        epoch_fn: returns the current epoch (the data module passes ``trainer.current_epoch``), so a resumed run
            sees the same permutations as an uninterrupted one.

    Examples:
        >>> x, y = torch.arange(10.0).unsqueeze(1), torch.arange(10)
        >>> [b[1].tolist() for b in TensorLoader((x, y), batch_size=4)]
        [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
        >>> loader = TensorLoader((x, y), batch_size=4, rank=1, world_size=2, drop_last=True)
        >>> len(loader), [b[1].tolist() for b in loader]
        (1, [[1, 3, 5, 7]])
    """

    def __init__(
        self,
        tensors: Sequence[Tensor],
        batch_size: int,
        *,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
        epoch_fn: Callable[[], int] | None = None,
    ) -> None:
        if not tensors:
            raise ArgumentError("`tensors` must hold at least one tensor, got an empty sequence")
        n = tensors[0].shape[0]
        if any(t.shape[0] != n for t in tensors):
            raise ArgumentError(f"`tensors` must share their first dimension, got {[tuple(t.shape) for t in tensors]}")
        if batch_size < 1:
            raise ArgumentError(f"`batch_size` must be >= 1, got {batch_size!r}")
        if not 0 <= rank < world_size:
            raise ArgumentError(f"`rank` must be in [0, world_size={world_size}), got {rank!r}")
        self.tensors = tuple(tensors)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.pad = pad
        self.epoch_fn = epoch_fn
        self._epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch used for the shuffle when no ``epoch_fn`` was given (the ``DistributedSampler`` API)."""
        self._epoch = epoch

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch."""
        n = self.tensors[0].shape[0]
        if self.pad:
            return math.ceil(n / self.world_size)
        return len(range(self.rank, n, self.world_size))

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def _indices(self) -> Tensor | None:
        n = self.tensors[0].shape[0]
        device = self.tensors[0].device
        if self.shuffle:
            epoch = self.epoch_fn() if self.epoch_fn is not None else self._epoch
            g = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(n, generator=g)
        elif self.world_size == 1:
            return None  # plain contiguous slices, no gather at all
        else:
            order = torch.arange(n)
        if self.pad and self.world_size > 1:
            total = self.num_samples * self.world_size
            order = torch.cat([order, order[: total - n]]) if total > n else order
        order = order[self.rank :: self.world_size]
        return order.to(device)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        idx = self._indices()
        for b in range(len(self)):
            start, stop = b * self.batch_size, min((b + 1) * self.batch_size, self.num_samples)
            if idx is None:
                yield tuple(t[start:stop] for t in self.tensors)
            else:
                sel = idx[start:stop]
                yield tuple(t.index_select(0, sel) for t in self.tensors)


class InMemoryDataModule(L.LightningDataModule):
    """Serve in-memory tensors as whole-tensor slices from the training device.

    Pass each split as a tuple of tensors, e.g. ``train=(x, y)``. Subclasses instead override
    :meth:`build_splits`. At ``setup`` the tensors are moved once to ``trainer.strategy.root_device``; then every
    batch is a slice (an ``index_select`` when shuffling), with no per-sample ``__getitem__`` and no collate.

    Under DDP each rank gets its own shard (see :class:`TensorLoader`) and the epoch length is
    ``ceil(n / world_size / batch_size)``. Shuffling is seeded by ``seed`` and the epoch, identically on all ranks.

    Examples:
        >>> dm = InMemoryDataModule(train=(torch.randn(100, 3), torch.randint(0, 2, (100,))), batch_size=32)
        >>> dm.setup("fit")
        >>> len(dm.train_dataloader()), [t.shape[0] for t in next(iter(dm.train_dataloader()))]
        (4, [32, 32])
    """

    def __init__(
        self,
        train: Split | None = None,
        val: Split | None = None,
        test: Split | None = None,
        predict: Split | None = None,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ArgumentError(f"`batch_size` must be >= 1, got {batch_size!r}")
        if eval_batch_size is not None and eval_batch_size < 1:
            raise ArgumentError(f"`eval_batch_size` must be >= 1, got {eval_batch_size!r}")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or max(batch_size, 256)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.splits: dict[str, Split | None] = {"train": train, "val": val, "test": test, "predict": predict}
        self._on_device = False

    def build_splits(self) -> dict[str, Split | None]:
        """Return ``{"train": (x, y), "val": ..., "test": ..., "predict": ...}``; subclasses generate data here."""
        return self.splits

    def setup(self, stage: str | None = None) -> None:
        if self._on_device:
            return
        splits = self.build_splits()
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        self.splits = {
            k: (tuple(t.to(device) for t in v) if v is not None else None) for k, v in splits.items()
        }
        self._on_device = True

    def _loader(self, split: str, *, train: bool) -> TensorLoader:
        tensors = self.splits.get(split)
        if tensors is None:
            raise ArgumentError(f"{type(self).__name__} has no `{split}` split")
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        return TensorLoader(
            tensors,
            self.batch_size if train else self.eval_batch_size,
            shuffle=self.shuffle and train,
            drop_last=self.drop_last and train,
            seed=self.seed,
            rank=rank,
            world_size=world,
            pad=train,
            epoch_fn=(lambda: trainer.current_epoch) if trainer is not None else None,
        )

    def train_dataloader(self) -> TensorLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> TensorLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> TensorLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> TensorLoader:
        return self._loader("predict" if self.splits.get("predict") is not None else "val", train=False)


class MoonsDataModule(InMemoryDataModule):
    """Two interleaving half circles (``sklearn.datasets.make_moons``), generated and seeded.

    Train and validation sets are drawn with different seeds (``seed`` and ``seed + 1``), so they share no point.
    Targets are float ``(n, 1)`` for ``BCEWithLogitsLoss``. The test split is a third independent draw.

    Args:
        n_train: training points (800 in the seed's experiment).
        n_val: validation points (200).
        noise: std of the Gaussian noise added to the points (0.2).
        batch_size: training batch size per rank (32).
        seed: data seed (also the shuffle seed).
    """

    def __init__(
        self,
        n_train: int = 800,
        n_val: int = 200,
        noise: float = 0.2,
        batch_size: int = 32,
        seed: int = 42,
        drop_last: bool = False,
    ) -> None:
        super().__init__(batch_size=batch_size, seed=seed, drop_last=drop_last)
        for name, value in (("n_train", n_train), ("n_val", n_val)):
            if value < 2:
                raise ArgumentError(f"`{name}` must be >= 2, got {value!r}")
        if noise < 0:
            raise ArgumentError(f"`noise` must be >= 0, got {noise!r}")
        self.n_train, self.n_val, self.noise = n_train, n_val, noise

    def _draw(self, n: int, seed: int) -> Split:
        from sklearn.datasets import make_moons

        x, y = make_moons(n_samples=n, noise=self.noise, random_state=seed)
        return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32).unsqueeze(1)

    def build_splits(self) -> dict[str, Split | None]:
        val = self._draw(self.n_val, self.seed + 1)
        return {
            "train": self._draw(self.n_train, self.seed),
            "val": val,
            "test": self._draw(self.n_val, self.seed + 2),
            "predict": val,
        }


class DigitsDataModule(InMemoryDataModule):
    """The 8x8 handwritten digits that ship inside scikit-learn (1797 images, 10 classes, no download).

    Pixels are scaled to [0, 1]. A stratified, seeded split gives train / val / test.

    Args:
        batch_size: training batch size per rank.
        classes: keep only these digits, relabelled ``0..len(classes)-1`` in the given order (e.g. ``[8, 9]``).
        image: serve ``(n, 1, 8, 8)`` images instead of flat ``(n, 64)`` vectors.
        val_fraction / test_fraction: fractions of the (filtered) data held out.
        train_limit: keep only the first ``train_limit`` training images (after the seeded shuffle), e.g. 20
            labelled images for a transfer-learning experiment.
        seed: split and shuffle seed.
    """

    def __init__(
        self,
        batch_size: int = 64,
        classes: list[int] | None = None,
        image: bool = False,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        train_limit: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, seed=seed)
        if classes is not None:
            bad = [c for c in classes if not 0 <= int(c) <= 9]
            if bad or len(set(classes)) != len(classes) or len(classes) < 2:
                raise ArgumentError(f"`classes` must be >= 2 distinct digits in 0..9, got {classes!r}")
        for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0 <= frac < 1:
                raise ArgumentError(f"`{name}` must be in [0, 1), got {frac!r}")
        if val_fraction + test_fraction >= 1:
            raise ArgumentError(f"`val_fraction + test_fraction` must be < 1, got {val_fraction + test_fraction!r}")
        if train_limit is not None and train_limit < 1:
            raise ArgumentError(f"`train_limit` must be >= 1, got {train_limit!r}")
        self.classes = list(classes) if classes is not None else None
        self.image = image
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.train_limit = train_limit

    @property
    def num_classes(self) -> int:
        return len(self.classes) if self.classes is not None else 10

    def build_splits(self) -> dict[str, Split | None]:
        from sklearn.datasets import load_digits

        data = load_digits()
        x = torch.as_tensor(data.data, dtype=torch.float32) / 16.0
        y = torch.as_tensor(data.target, dtype=torch.long)
        if self.classes is not None:
            keep = torch.isin(y, torch.tensor(self.classes))
            x, y = x[keep], y[keep]
            remap = torch.full((10,), -1, dtype=torch.long)
            remap[torch.tensor(self.classes)] = torch.arange(len(self.classes))
            y = remap[y]
        if self.image:
            x = x.view(-1, 1, 8, 8)
        g = torch.Generator().manual_seed(self.seed)
        parts: dict[str, list[Tensor]] = {"train": [], "val": [], "test": []}
        for c in range(self.num_classes):  # stratified: every split keeps the class balance
            idx = torch.nonzero(y == c).flatten()
            idx = idx[torch.randperm(len(idx), generator=g)]
            n_val, n_test = round(len(idx) * self.val_fraction), round(len(idx) * self.test_fraction)
            parts["val"].append(idx[:n_val])
            parts["test"].append(idx[n_val : n_val + n_test])
            parts["train"].append(idx[n_val + n_test :])
        splits: dict[str, Split | None] = {}
        for name, chunks in parts.items():
            idx = torch.cat(chunks)
            idx = idx[torch.randperm(len(idx), generator=g)]
            if name == "train" and self.train_limit is not None:
                idx = idx[: self.train_limit]
            splits[name] = (x[idx], y[idx]) if len(idx) else None
        splits["predict"] = splits["test"] or splits["val"]
        return splits


class Standardization:
    """Per-column ``(x - mean) / std`` with statistics fitted on one tensor (the training split) only.

    Fitting on the training split alone keeps validation and test data out of the preprocessing: statistics taken
    over all the data would leak the held-out rows' location and spread into training. Columns with zero spread
    (a constant feature) get ``std = 1``, so they map to 0 instead of NaN.

    Args:
        mean, std: per-column statistics, shape ``(columns,)``.

    Examples:
        >>> train = torch.tensor([[1.0, 10.0], [3.0, 10.0]])
        >>> s = Standardization.fit(train)
        >>> s.mean.tolist(), s.std.tolist()
        ([2.0, 10.0], [1.0, 1.0])
        >>> s(torch.tensor([[4.0, 12.0]])).tolist()          # other splits reuse the training statistics
        [[2.0, 2.0]]
        >>> s.inverse(s(train)).tolist() == train.tolist()
        True
    """

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        mean, std = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
        if mean.shape != std.shape or mean.ndim != 1:
            raise ArgumentError(f"`mean` and `std` must be 1-D of one shape, got {tuple(mean.shape)} and "
                                f"{tuple(std.shape)}")
        if not bool((std > 0).all()):
            raise ArgumentError(f"`std` must be > 0, got {std.tolist()!r}")
        self.mean, self.std = mean, std

    @classmethod
    def fit(cls, x: Tensor) -> Standardization:
        """Statistics of ``x`` (rows = samples): column means and population standard deviations."""
        if x.ndim != 2 or x.shape[0] < 2:
            raise ArgumentError(f"`x` must be (n >= 2, columns), got shape {tuple(x.shape)}")
        x = x.double()
        std = x.std(0, correction=0)
        return cls(x.mean(0).float(), torch.where(std > 0, std, torch.ones_like(std)).float())

    def __call__(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x.device, x.dtype)) / self.std.to(x.device, x.dtype)

    def inverse(self, z: Tensor) -> Tensor:
        """Map standardized values back to the original units."""
        return z * self.std.to(z.device, z.dtype) + self.mean.to(z.device, z.dtype)

    def __repr__(self) -> str:
        return f"Standardization(mean={self.mean.tolist()}, std={self.std.tolist()})"


class RegressionDataModule(InMemoryDataModule):
    """Tabular regression data, split once (seeded) and standardized with the training split's statistics.

    Datasets:

    * ``"diabetes"`` (default, offline): ``sklearn.datasets.load_diabetes``, 442 patients, 10 features, a disease
      progression score one year later; it ships inside scikit-learn.
    * ``"synthetic"`` (offline): ``sklearn.datasets.make_friedman1`` (``n_samples`` points, ``n_features`` inputs
      of which 5 matter, non-linearly, plus Gaussian ``noise``), drawn with ``seed``.
    * ``"california"`` (needs network once): ``sklearn.datasets.fetch_california_housing``, 20,640 districts, 8
      features, median house value in units of $100,000, downloaded to ``data_home`` (scikit-learn's default
      folder when ``None``) the first time. Lightning calls :meth:`prepare_data` on one process per node, so the
      download happens once.

    The inputs are always standardized (:class:`Standardization` fitted on the training split only). With
    ``standardize_target`` (the default) the target is standardized too and :attr:`target_standardization` holds
    its statistics; :class:`~lightning_bestpractices.tasks.Regressor` picks them up at ``setup`` and reports its
    metrics (MSE, RMSE) in the target's original units. Why standardize the target: the network's output layer
    starts with outputs of order 1, while the diabetes score has a mean near 150 and a spread near 77, so on the raw
    target the first steps only chase the mean, the squared errors (and so the gradients) are thousands of times
    larger than on a unit-scale target, and a learning rate that suits one dataset does not suit another.

    Targets are float ``(n, 1)``.

    Args:
        dataset: ``"diabetes"``, ``"synthetic"`` or ``"california"``.
        val_fraction / test_fraction: fractions held out (seeded random split).
        standardize_target: also standardize the target (with training statistics).
        n_samples / n_features / noise: size, input width (>= 5) and noise std of the synthetic set.
        data_home: download folder of the California data.
        batch_size: training batch size per rank.
        seed: split, synthetic-data and shuffle seed.

    Examples:
        >>> dm = RegressionDataModule("diabetes", seed=0)
        >>> dm.setup("fit")
        >>> x, y = dm.splits["train"]
        >>> tuple(x.shape), tuple(y.shape), dm.num_features
        ((266, 10), (266, 1), 10)
        >>> round(float(x.mean()), 6) + 0.0, round(float(x.std(0, correction=0).mean()), 6)   # training statistics
        (0.0, 1.0)
        >>> 140 < float(dm.target_standardization.mean) < 165    # the score's mean, in original units
        True
    """

    DATASETS = ("diabetes", "synthetic", "california")

    def __init__(
        self,
        dataset: str = "diabetes",
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        standardize_target: bool = True,
        n_samples: int = 1000,
        n_features: int = 10,
        noise: float = 1.0,
        data_home: str | None = None,
        batch_size: int = 32,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, seed=seed)
        if dataset not in self.DATASETS:
            raise ArgumentError(f"`dataset` must be one of {self.DATASETS}, got {dataset!r}")
        for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0 <= frac < 1:
                raise ArgumentError(f"`{name}` must be in [0, 1), got {frac!r}")
        if val_fraction + test_fraction >= 1:
            raise ArgumentError(f"`val_fraction + test_fraction` must be < 1, got {val_fraction + test_fraction!r}")
        if n_samples < 10:
            raise ArgumentError(f"`n_samples` must be >= 10, got {n_samples!r}")
        if n_features < 5:
            raise ArgumentError(f"`n_features` must be >= 5 (make_friedman1 uses 5), got {n_features!r}")
        if noise < 0:
            raise ArgumentError(f"`noise` must be >= 0, got {noise!r}")
        self.dataset, self.val_fraction, self.test_fraction = dataset, val_fraction, test_fraction
        self.standardize_target = standardize_target
        self.n_samples, self.n_features, self.noise = n_samples, n_features, noise
        self.data_home = data_home
        self.feature_standardization: Standardization | None = None
        self.target_standardization: Standardization | None = None

    @property
    def num_features(self) -> int:
        """Input width: 10 (diabetes), 8 (california) or ``n_features`` (synthetic)."""
        return {"diabetes": 10, "california": 8}.get(self.dataset, self.n_features)

    def prepare_data(self) -> None:
        if self.dataset == "california":  # download once per node, before setup runs on every process
            from sklearn.datasets import fetch_california_housing

            fetch_california_housing(data_home=self.data_home, download_if_missing=True)

    def load(self) -> tuple[Tensor, Tensor]:
        """The whole dataset, unsplit and unscaled: ``x`` float ``(n, features)``, ``y`` float ``(n, 1)``."""
        if self.dataset == "diabetes":
            from sklearn.datasets import load_diabetes

            x, y = load_diabetes(return_X_y=True)
        elif self.dataset == "synthetic":
            from sklearn.datasets import make_friedman1

            x, y = make_friedman1(self.n_samples, n_features=self.n_features, noise=self.noise,
                                  random_state=self.seed)
        else:
            from sklearn.datasets import fetch_california_housing

            x, y = fetch_california_housing(data_home=self.data_home, download_if_missing=False, return_X_y=True)
        return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32).view(-1, 1)

    def build_splits(self) -> dict[str, Split | None]:
        x, y = self.load()
        n = x.shape[0]
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        n_val, n_test = round(n * self.val_fraction), round(n * self.test_fraction)
        idx = {"val": order[:n_val], "test": order[n_val : n_val + n_test], "train": order[n_val + n_test :]}
        self.feature_standardization = Standardization.fit(x[idx["train"]])
        self.target_standardization = Standardization.fit(y[idx["train"]]) if self.standardize_target else None
        fx = self.feature_standardization
        fy = self.target_standardization or (lambda t: t)
        splits: dict[str, Split | None] = {
            name: (fx(x[i]), fy(y[i])) if len(i) else None for name, i in idx.items()}
        splits["predict"] = splits["test"] or splits["val"]
        return splits


class VisionDataModule(L.LightningDataModule):
    """torchvision image datasets (MNIST, FashionMNIST, CIFAR10), the 8x8 digits offline, or FakeData for tests.

    The download is the user's: pass ``download=True`` on a machine with network, or point ``root`` at a copy.
    ``"Digits"`` needs neither: the 8x8 digits that ship inside scikit-learn (the same images and test split as
    :class:`DigitsDataModule` with ``image=True``), served through the same transform pipeline as the others.
    Batches come from a regular ``DataLoader`` (these datasets are too large or too slow to decode to keep on the
    device as tensors in general).

    Every split gets ``ToImage -> [Grayscale] -> [Resize] -> ToDtype(float32, scale=True) -> [Normalize]``; the
    training split alone gets the ``augment`` transforms too, per sample (a new draw every time an image is
    served), after the conversion to float in [0, 1] and before ``Normalize``. Validation and test images are never
    augmented.

    Args:
        name: ``"MNIST"``, ``"FashionMNIST"``, ``"CIFAR10"``, ``"Digits"`` or ``"FakeData"``.
        root: dataset folder.
        download: let torchvision download the data into ``root``.
        batch_size / num_workers: ``DataLoader`` settings.
        val_size: images held out of the training set for validation (seeded; at most a fifth of it).
        classes: keep only these labels, relabelled ``0..len(classes)-1``.
        image_size: resize to this square size (e.g. 224 for ImageNet backbones); ``None`` keeps the native size.
        channels: convert to this many channels (3 for ImageNet backbones on MNIST).
        augment: torchvision (v2) transforms for the training split only, e.g.
            ``[v2.RandomAffine(degrees=10, translate=(0.1, 0.1))]``; in YAML a list of ``class_path`` entries.
        mean / std: per-channel ``Normalize`` statistics for every split (e.g. ``[0.5]`` / ``[0.5]``); both or neither.
        seed: seed of the validation split.

    Examples:
        >>> from torchvision.transforms import v2
        >>> dm = VisionDataModule("Digits", augment=[v2.RandomAffine(degrees=10)], val_size=100)
        >>> dm.setup("fit")
        >>> [len(dm.datasets[s]) for s in ("train", "val", "test")]
        [1338, 100, 359]
        >>> dm.datasets["train"][0][0].shape, dm.transforms["train"] is dm.transforms["val"]
        (torch.Size([1, 8, 8]), False)
    """

    NAMES = ("MNIST", "FashionMNIST", "CIFAR10", "Digits", "FakeData")

    def __init__(
        self,
        name: str = "MNIST",
        root: str = "data",
        download: bool = False,
        batch_size: int = 128,
        num_workers: int = 0,
        val_size: int = 5000,
        classes: list[int] | None = None,
        image_size: int | None = None,
        channels: int | None = None,
        augment: list[torch.nn.Module] | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if name not in self.NAMES:
            raise ArgumentError(f"`name` must be one of {self.NAMES}, got {name!r}")
        if batch_size < 1:
            raise ArgumentError(f"`batch_size` must be >= 1, got {batch_size!r}")
        if val_size < 0:
            raise ArgumentError(f"`val_size` must be >= 0, got {val_size!r}")
        if augment is not None and not all(callable(t) for t in augment):
            raise ArgumentError(f"`augment` must be a list of transforms (callables), got {augment!r}")
        if (mean is None) != (std is None) or (mean is not None and len(mean) != len(std)):
            raise ArgumentError(f"`mean` and `std` must be given together, one value per channel, got {mean!r}, {std!r}")
        if std is not None and any(not s > 0 for s in std):
            raise ArgumentError(f"`std` values must be > 0, got {std!r}")
        self.save_hyperparameters(ignore=["augment"])  # transforms are objects: the config file records them
        self.augment = list(augment or [])
        self.datasets: dict[str, torch.utils.data.Dataset] = {}
        self.transforms = {"train": self._transform(train=True), "val": self._transform(train=False)}

    def _transform(self, train: bool) -> Callable:
        from torchvision.transforms import v2

        hp = self.hparams
        steps: list = [v2.ToImage()]
        if hp.channels is not None:
            steps.append(v2.Grayscale(hp.channels) if hp.channels in (1, 3) else v2.Identity())
        if hp.image_size is not None:
            steps.append(v2.Resize((hp.image_size, hp.image_size), antialias=True))
        steps.append(v2.ToDtype(torch.float32, scale=True))
        if train:
            steps += self.augment
        if hp.mean is not None:
            steps.append(v2.Normalize(list(hp.mean), list(hp.std)))
        return v2.Compose(steps)

    def _dataset(self, train: bool, augment: bool | None = None) -> torch.utils.data.Dataset:
        import torchvision

        hp = self.hparams
        transform = self.transforms["train" if (train if augment is None else augment) else "val"]
        if hp.name == "FakeData":
            n = 200 if train else 100
            return torchvision.datasets.FakeData(n, (1, 28, 28), 10, transform=transform, random_offset=int(train))
        if hp.name == "Digits":
            splits = DigitsDataModule(image=True, val_fraction=0.0, test_fraction=0.2, seed=hp.seed).build_splits()
            return _TensorImages(*splits["train" if train else "test"], transform=transform)
        cls = getattr(torchvision.datasets, hp.name)
        return cls(hp.root, train=train, download=hp.download, transform=transform)

    def prepare_data(self) -> None:
        if self.hparams.download and self.hparams.name not in ("Digits", "FakeData"):  # download once, on rank 0 (Lightning calls prepare_data there only)
            self._dataset(True)
            self._dataset(False)

    def _filter(self, ds: torch.utils.data.Dataset) -> torch.utils.data.Dataset:
        classes = self.hparams.classes
        if classes is None:
            return ds
        targets = torch.as_tensor([int(t) for _, t in ds] if not hasattr(ds, "targets") else ds.targets)
        idx = torch.nonzero(torch.isin(targets, torch.tensor(classes))).flatten().tolist()
        remap = {c: i for i, c in enumerate(classes)}
        return _Relabel(torch.utils.data.Subset(ds, idx), remap)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        train = self._filter(self._dataset(True))
        n_val = min(self.hparams.val_size, len(train) // 5)
        g = torch.Generator().manual_seed(self.hparams.seed)
        train, val = torch.utils.data.random_split(train, [len(train) - n_val, n_val], generator=g)
        if self.augment and n_val:  # validation images come out of the training files: serve them unaugmented
            val = torch.utils.data.Subset(self._filter(self._dataset(True, augment=False)), val.indices)
        self.datasets = {"train": train, "val": val, "test": self._filter(self._dataset(False))}

    def _loader(self, split: str, shuffle: bool) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            self.datasets[split],
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
        )

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader("test", False)

    def predict_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader("test", False)


class _TensorImages(torch.utils.data.Dataset):
    """In-memory ``(n, C, H, W)`` float images in [0, 1] with their labels, served through ``transform``."""

    def __init__(self, images: Tensor, targets: Tensor, transform: Callable | None = None) -> None:
        self.images, self.targets, self.transform = images, targets, transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        x = self.images[i]
        return (self.transform(x) if self.transform is not None else x), int(self.targets[i])


class _Relabel(torch.utils.data.Dataset):
    def __init__(self, ds: torch.utils.data.Dataset, remap: dict[int, int]) -> None:
        self.ds, self.remap = ds, remap

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        x, y = self.ds[i]
        return x, self.remap[int(y)]
