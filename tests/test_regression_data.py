"""RegressionDataModule: seeded splits, standardization with training statistics only, the three datasets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_bestpractices.data import RegressionDataModule, Standardization
from lightning_bestpractices.errors import ArgumentError


def _raw_rows(dm: RegressionDataModule, split: str) -> torch.Tensor:
    """Undo the module's scaling: the split's rows in original units, features and target side by side."""
    x, y = dm.splits[split]
    y = dm.target_standardization.inverse(y) if dm.target_standardization is not None else y
    return torch.cat([dm.feature_standardization.inverse(x), y], 1)


@pytest.mark.parametrize("dataset", ["diabetes", "synthetic"])
def test_splits_partition_the_data_and_use_training_statistics_only(dataset):
    dm = RegressionDataModule(dataset, n_samples=300, seed=3)
    dm.setup("fit")
    x_all, y_all = dm.load()
    n = x_all.shape[0]
    sizes = {k: dm.splits[k][0].shape[0] for k in ("train", "val", "test")}
    assert sum(sizes.values()) == n and sizes["val"] == round(0.2 * n) == sizes["test"]
    # every original row appears in exactly one split (compare the de-standardized rows with the raw data)
    rows = torch.cat([_raw_rows(dm, k) for k in ("train", "val", "test")])
    raw = torch.cat([x_all, y_all], 1)
    order = lambda t: t[np.lexsort(t.double().numpy().T[::-1])]  # noqa: E731
    torch.testing.assert_close(order(rows), order(raw), rtol=1e-5, atol=1e-4)
    # statistics of the training split only: train is exactly standardized, the held-out splits are not
    x_tr, y_tr = dm.splits["train"]
    torch.testing.assert_close(x_tr.mean(0), torch.zeros(x_tr.shape[1]), atol=1e-5, rtol=0)
    torch.testing.assert_close(x_tr.std(0, correction=0), torch.ones(x_tr.shape[1]), atol=1e-4, rtol=0)
    assert abs(float(y_tr.mean())) < 1e-5 and abs(float(y_tr.std(correction=0)) - 1) < 1e-4
    x_val = dm.splits["val"][0]
    assert float(x_val.mean(0).abs().max()) > 1e-3, "validation rows must not be standardized with their own stats"
    raw_train = dm.feature_standardization.inverse(x_tr)
    torch.testing.assert_close(dm.feature_standardization.mean, raw_train.mean(0), atol=1e-5, rtol=1e-5)


def test_target_left_in_original_units_when_asked():
    dm = RegressionDataModule("diabetes", standardize_target=False, seed=0)
    dm.setup("fit")
    assert dm.target_standardization is None
    y = torch.cat([dm.splits[k][1] for k in ("train", "val", "test")]).view(-1)
    assert sorted(y.tolist()) == sorted(dm.load()[1].view(-1).tolist())


def test_split_and_synthetic_data_follow_the_seed():
    a, b, c = (RegressionDataModule("synthetic", n_samples=100, seed=s) for s in (1, 1, 2))
    for dm in (a, b, c):
        dm.setup("fit")
    assert torch.equal(a.splits["train"][0], b.splits["train"][0])
    assert not torch.equal(a.load()[0], c.load()[0])
    d, e = RegressionDataModule("diabetes", seed=0), RegressionDataModule("diabetes", seed=1)
    d.setup("fit"), e.setup("fit")
    assert not torch.equal(d.splits["val"][1], e.splits["val"][1]), "the split depends on the seed"


def test_num_features_matches_the_data():
    for dm in (RegressionDataModule("diabetes"), RegressionDataModule("synthetic", n_features=7, n_samples=50)):
        dm.setup("fit")
        assert dm.splits["train"][0].shape[1] == dm.num_features
    assert RegressionDataModule("california").num_features == 8


def test_california_goes_through_fetch_california_housing(monkeypatch):
    """No network here: the sklearn fetcher is replaced by a stand-in that records how it was called."""
    import sklearn.datasets

    calls = []

    def fake_fetch(data_home=None, download_if_missing=True, return_X_y=False):
        calls.append((data_home, download_if_missing, return_X_y))
        rng = np.random.default_rng(0)
        return rng.normal(size=(50, 8)), rng.normal(2.0, 1.0, size=50)

    monkeypatch.setattr(sklearn.datasets, "fetch_california_housing", fake_fetch)
    dm = RegressionDataModule("california", data_home="somewhere")
    dm.prepare_data()  # the download step (one process per node)
    dm.setup("fit")    # every process reads the local copy, never downloads
    assert calls[0][:2] == ("somewhere", True) and calls[1] == ("somewhere", False, True)
    assert dm.splits["train"][0].shape == (30, 8)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"dataset": "boston"}, r"`dataset` must be one of .*, got 'boston'"),
        ({"val_fraction": 1.0}, r"`val_fraction` must be in \[0, 1\), got 1.0"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, r"`val_fraction \+ test_fraction` must be < 1"),
        ({"n_features": 3}, r"`n_features` must be >= 5"),
        ({"noise": -1.0}, r"`noise` must be >= 0, got -1.0"),
        ({"batch_size": 0}, r"`batch_size` must be >= 1, got 0"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ArgumentError, match=match):
        RegressionDataModule(**kwargs)


def test_standardization_guards_constant_columns_and_bad_input():
    s = Standardization.fit(torch.tensor([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]]))
    assert s.std[1] == 1.0 and torch.isfinite(s(torch.tensor([[2.0, 5.0]]))).all()
    with pytest.raises(ArgumentError, match=r"`x` must be \(n >= 2, columns\)"):
        Standardization.fit(torch.ones(1, 3))
    with pytest.raises(ArgumentError, match=r"`std` must be > 0"):
        Standardization(torch.zeros(2), torch.tensor([1.0, 0.0]))
