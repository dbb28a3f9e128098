"""Functional core of MC dropout: invariants, reproducibility, prefix caching, registry, bad input."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torchvision.ops import StochasticDepth

from lightning_bestpractices.uncertainty import (
    MCOutput,
    find_split,
    mc_dropout_mode,
    mc_predict,
    register_stochastic,
    stochastic_registry,
    uncertainty_measures,
    unregister_stochastic,
)
from lightning_bestpractices.uncertainty.functional import _ClassificationAccumulator


def small_cnn(p: float = 0.5, classes: int = 4) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64, 16),
        nn.ReLU(),
        nn.Dropout(p),
        nn.Linear(16, 16),
        nn.ReLU(),
        nn.Dropout(p),
        nn.Linear(16, classes),
    )


class FunctionalCNN(nn.Module):
    """Not a Sequential: torch ops between modules, so the split comes from torch.fx."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(64, 16)
        self.drop = nn.Dropout(p)
        self.out = nn.Linear(16, 3)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x))).flatten(1)
        return self.out(self.drop(torch.relu(self.fc(h))))


class _Gate(nn.Module):
    """A data-dependent branch inside a child: defeats torch.fx, and runs once, inside the prefix."""

    def forward(self, h):
        if h.sum() > -1e9:  # data-dependent
            h = torch.relu(h)
        return h


class Untraceable(FunctionalCNN):
    """Data-dependent control flow defeats torch.fx; the children still form a chain (hook-recorded split)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(self.conv, self.bn, nn.ReLU(), nn.Flatten(), self.fc, _Gate())
        del self.conv, self.bn, self.fc

    def forward(self, x):
        return self.out(self.drop(self.body(x)))


X = torch.randn(64, 1, 4, 4, generator=torch.Generator().manual_seed(1))
Y = torch.randint(0, 4, (64,), generator=torch.Generator().manual_seed(2))


def _trained_bn(model: nn.Module) -> nn.Module:
    model.train()
    with torch.no_grad():
        model(X * 2 + 1)  # non-trivial running stats
    return model


# ---------------------------------------------------------------------------------------------------- invariants
@pytest.mark.parametrize("n", [1, 5])
def test_p0_equals_deterministic_and_zero_uncertainty(n):
    model = _trained_bn(small_cnn(p=0.0))
    out = mc_predict(model, X, n, targets=Y)
    model.eval()
    with torch.no_grad():
        probs = model(X).softmax(-1)
    torch.testing.assert_close(out.mean_probs, probs, rtol=0, atol=1e-6)
    # identical rows may differ in the last bit after a matmul over N * B rows, hence 1e-6 and not exactly 0
    assert out.std_probs.abs().max() < 1e-6 and out.mutual_information.abs().max() < 1e-6
    torch.testing.assert_close(
        out.log_likelihood, probs.log().gather(1, Y[:, None]).squeeze(1), atol=1e-5, rtol=0
    )


def test_single_sample_has_no_spread_but_is_stochastic():
    model = small_cnn(p=0.5)
    one = mc_predict(model, X, 1)
    assert torch.equal(one.std_probs, torch.zeros_like(one.std_probs))
    assert torch.equal(one.mutual_information, torch.zeros(64))
    model.eval()
    with torch.no_grad():
        assert not torch.allclose(one.mean_probs, model(X).softmax(-1))  # dropout really was on


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 6),
    b=st.integers(1, 5),
    c=st.integers(2, 6),
    scale=st.floats(0.0, 30.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_measure_bounds(n, b, c, scale, seed):
    logits = torch.randn(n, b, c, generator=torch.Generator().manual_seed(seed)) * scale
    out = uncertainty_measures(logits.log_softmax(-1))
    assert (out.mutual_information >= 0).all() and (out.mutual_information <= math.log(c) + 1e-6).all()
    assert (out.predictive_entropy >= out.expected_entropy - 1e-5).all()
    torch.testing.assert_close(out.mean_probs.sum(-1), torch.ones(b))


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(1, 11), min_size=0, max_size=4), seed=st.integers(0, 2**31 - 1))
def test_streaming_equals_reference(cuts, seed):
    g = torch.Generator().manual_seed(seed)
    log_probs = (torch.randn(12, 3, 5, generator=g) * 3).log_softmax(-1)
    targets = torch.randint(0, 5, (3,), generator=g)
    ref = uncertainty_measures(log_probs, targets)
    acc = _ClassificationAccumulator(targets)
    bounds = [0, *sorted(set(cuts)), 12]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        acc.update(log_probs[lo:hi])
    got = acc.result(binary=False)
    for name in ("mean_probs", "std_probs", "predictive_entropy", "expected_entropy", "mutual_information"):
        torch.testing.assert_close(getattr(got, name), getattr(ref, name), atol=1e-6, rtol=1e-5)
    manual = torch.logsumexp(log_probs.gather(-1, targets.view(1, 3, 1).expand(12, 3, 1)).squeeze(-1), 0)
    torch.testing.assert_close(got.log_likelihood, manual - math.log(12))


def test_probabilities_are_averaged_never_logits():
    """Reference: N separate seeded passes, softmax each, average. Softmax of mean logits differs."""
    model = small_cnn(p=0.5)
    out = mc_predict(model, X[:8], 6)
    logits = []
    with torch.no_grad(), mc_dropout_mode(model) as mc:
        for s in range(6):
            mc.set_rows(torch.arange(8), torch.tensor([s]))
            logits.append(model(X[:8]))
    logits = torch.stack(logits)
    torch.testing.assert_close(out.mean_probs, logits.softmax(-1).mean(0), atol=1e-6, rtol=0)
    assert not torch.allclose(out.mean_probs, logits.mean(0).softmax(-1), atol=1e-4)
    assert "logit" not in " ".join(MCOutput.__dataclass_fields__)  # nothing to average logits with


# ------------------------------------------------------------------------------------------ modes & BN buffers
def test_only_dropout_on_bn_untouched_and_modes_restored_on_error():
    model = _trained_bn(small_cnn())
    model[1].train()
    model[4].eval()  # an odd mix of modes must come back exactly
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    seen = []
    model[1].register_forward_hook(lambda m, a, o: seen.append(m.training))
    mc_predict(model, X, 4)
    assert seen and not any(seen)  # BN ran in eval during the MC passes
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert [m.training for m in model.modules()] == modes

    def boom(m, a, o):
        raise RuntimeError("boom")

    h = model[8].register_forward_hook(boom)
    with pytest.raises(RuntimeError, match="boom"):
        mc_predict(model, X, 4)
    h.remove()
    assert [m.training for m in model.modules()] == modes
    assert all("forward" not in m.__dict__ for m in model.modules())


# ------------------------------------------------------------------------------------------- reproducibility
@pytest.mark.parametrize("make", [small_cnn, FunctionalCNN, Untraceable], ids=["sequential", "fx", "hooks"])
def test_identical_across_batch_and_chunk_sizes(make):
    model = make()
    n = 6
    ref = mc_predict(model, X, n, targets=Y % 3, seed=7)
    for bs in (1, 7, 64):
        for chunk in (1, n):
            parts = [
                mc_predict(model, X[i : i + bs], n, targets=Y[i : i + bs] % 3, seed=7,
                           indices=torch.arange(i, min(i + bs, 64)), chunk_size=chunk)
                for i in range(0, 64, bs)
            ]  # fmt: skip
            for name in ("mean_probs", "std_probs", "mutual_information", "log_likelihood"):
                got = torch.cat([getattr(p, name) for p in parts])
                torch.testing.assert_close(
                    got, getattr(ref, name), atol=2e-6, rtol=1e-5, msg=f"{name} bs={bs}"
                )
    other_seed = mc_predict(model, X, n, seed=8)
    assert not torch.allclose(other_seed.mean_probs, ref.mean_probs)


@pytest.mark.parametrize(
    "make,kind", [(small_cnn, "sequential"), (FunctionalCNN, "fx"), (Untraceable, "hooks")]
)
def test_prefix_split_matches_full_passes(make, kind):
    model = make()
    cached = mc_predict(model, X, 5)
    assert find_split(model, X).kind == kind
    full = mc_predict(model, X, 5, split=False)
    torch.testing.assert_close(cached.mean_probs, full.mean_probs, atol=1e-6, rtol=0)
    torch.testing.assert_close(cached.std_probs, full.std_probs, atol=1e-6, rtol=0)


def test_declared_split_is_used():
    model = FunctionalCNN()
    calls = []

    def prefix(x):
        calls.append(x.shape[0])
        return torch.relu(model.fc(torch.relu(model.bn(model.conv(x))).flatten(1)))

    model.mc_split = lambda: (prefix, lambda h: model.out(model.drop(h)))
    out = mc_predict(model, X, 5)
    assert calls == [64]  # prefix ran once, on the un-expanded batch
    del model.mc_split
    torch.testing.assert_close(
        out.mean_probs, mc_predict(model, X, 5, split=False).mean_probs, atol=1e-6, rtol=0
    )


def test_memory_budget_chunks_without_changing_results():
    model = small_cnn()
    ref = mc_predict(model, X, 9)
    seen = []
    model[7].register_forward_hook(lambda m, a, o: seen.append(a[0].shape[0] // 64))
    out = mc_predict(model, X, 9, memory_budget=64 * 1024 * 3)
    assert seen[0] == 1 and max(seen) < 9 and sum(seen) == 9  # first sample measures, then chunks
    torch.testing.assert_close(out.mean_probs, ref.mean_probs, atol=1e-6, rtol=0)


def test_bf16_autocast_accumulates_in_fp32():
    model = small_cnn()
    ref = mc_predict(model, X, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = mc_predict(model, X, 4)
    assert out.mean_probs.dtype == torch.float32 and out.mutual_information.dtype == torch.float32
    torch.testing.assert_close(out.mean_probs, ref.mean_probs, atol=0.05, rtol=0)


# --------------------------------------------------------------------------------------- tasks & registry
def test_regression_and_binary():
    torch.manual_seed(0)
    reg = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
    x = torch.randn(10, 3)
    out = mc_predict(reg, x, 7, task="regression")
    samples = []
    with torch.no_grad(), mc_dropout_mode(reg) as mc:
        for s in range(7):
            mc.set_rows(torch.arange(10), torch.tensor([s]))
            samples.append(reg(x))
    samples = torch.stack(samples)
    torch.testing.assert_close(out.mean, samples.mean(0))
    torch.testing.assert_close(out.variance, samples.var(0, correction=0))

    binary = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))
    b = mc_predict(binary, x, 7, task="binary", targets=torch.ones(10, dtype=torch.long))
    assert b.mean_probs.shape == (10,) and (b.mutual_information <= math.log(2) + 1e-6).all()
    torch.testing.assert_close(b.log_likelihood.exp(), b.mean_probs, atol=1e-5, rtol=0)


BUILT_IN = sorted(
    (c for c in stochastic_registry() if c.__module__.startswith(("torch.", "torchvision."))), key=str
)


def test_registry_lists_the_whole_dropout_family():
    expected = {nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout}
    assert expected | {StochasticDepth} == set(BUILT_IN)


@pytest.mark.parametrize("cls", BUILT_IN, ids=lambda c: c.__name__)
def test_registry_seeded_forwards_match_torch_statistics(cls):
    """Each built-in seeded forward keeps the expectation torch's own gives (and alpha-dropout keeps the variance)."""
    if cls is StochasticDepth:
        module = StochasticDepth(0.3, mode="row")
    else:
        module = cls(p=0.3)
    x = (
        torch.randn(4000, 8, 3)
        if cls in (nn.Dropout1d, nn.FeatureAlphaDropout)
        else torch.randn(4000, 8, 3, 2)
    )
    if cls is nn.Dropout1d or cls is nn.Dropout:
        x = x[..., 0] if cls is nn.Dropout else x
    wrapper = nn.Sequential(module)
    out = mc_predict(wrapper, x, 1, task="regression").mean
    torch.manual_seed(0)
    ref = module.train()(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out.mean(), ref.mean(), atol=0.03, rtol=0)
    torch.testing.assert_close(out.std(), ref.std(), atol=0.04, rtol=0)
    if (
        "Alpha" in cls.__name__
    ):  # dropped units take the value a * alpha' * (1 - p) (SELU's saturation, rescaled)
        a = 1.0 / math.sqrt((1.7580993408473766**2 * 0.3 + 1) * 0.7)
        dropped = torch.isclose(out, torch.tensor(-1.7580993408473766 * a * 0.7))
    else:
        dropped = out == 0
    assert abs(float(dropped.float().mean()) - 0.3) < 0.03


def test_stochastic_depth_batch_mode_shares_mask_across_inputs():
    module = nn.Sequential(StochasticDepth(0.5, mode="batch"))
    x = torch.ones(50, 3)
    outs = [mc_predict(module, x, 1, task="regression", seed=s).mean for s in range(8)]
    assert all(bool((o == o[0]).all()) for o in outs) and len({float(o[0, 0]) for o in outs}) == 2


def test_register_custom_module_seeded_and_unseeded():
    class Drop(nn.Module):
        def __init__(self):
            super().__init__()
            self.p = 0.5

        def forward(self, x):
            return x * (torch.rand_like(x) > self.p) * 2 if self.training else x

    net = nn.Sequential(nn.Linear(3, 8), Drop(), nn.Linear(8, 2))
    with pytest.raises(ValueError, match="no dropout-family module"):
        mc_predict(net, torch.randn(4, 3), 3)
    register_stochastic(Drop)
    try:
        with pytest.warns(UserWarning, match="global RNG"):
            out = mc_predict(net, torch.randn(4, 3), 20)
        assert (out.std_probs > 0).any()
        register_stochastic(Drop, lambda m, x, rng: x * rng.keep_mask(x.shape[1:], m.p, x.dtype) * 2)
        x = torch.randn(9, 3)
        a = mc_predict(net, x, 4)
        b = torch.cat(
            [mc_predict(net, x[i : i + 1], 4, indices=torch.tensor([i])).mean_probs for i in range(9)]
        )
        torch.testing.assert_close(a.mean_probs, b, atol=1e-6, rtol=0)
    finally:
        unregister_stochastic(Drop)
    with pytest.raises(TypeError, match="`cls`"):
        register_stochastic(int)


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("n", [0, -3, 1.5, True])
def test_bad_n_samples(n):
    with pytest.raises(ValueError, match="`n_samples`"):
        mc_predict(small_cnn(), X, n)


def test_bad_inputs():
    model = small_cnn()
    with pytest.raises(ValueError, match="no dropout-family module"):
        mc_predict(nn.Sequential(nn.Linear(16, 2)), X.flatten(1), 3)
    with pytest.raises(ValueError, match=r"`memory_budget`=100 bytes is too small"):
        mc_predict(model, X, 3, memory_budget=100)
    with pytest.raises(ValueError, match=r"`targets` must have shape \(64,\).*\(64, 1\)"):
        mc_predict(model, X, 3, targets=Y[:, None])
    with pytest.raises(ValueError, match="`targets` must hold integer"):
        mc_predict(model, X, 3, targets=Y.float())
    with pytest.raises(ValueError, match="`task`"):
        mc_predict(model, X, 3, task="logits")
    with pytest.raises(ValueError, match="`chunk_size`"):
        mc_predict(model, X, 3, chunk_size=0)
    with pytest.raises(ValueError, match="`indices`"):
        mc_predict(model, X, 3, indices=torch.arange(3))


def test_functional_dropout_fails_loudly_or_warns():
    class OnlyFunctional(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(16, 3)

        def forward(self, x):
            return self.fc(nn.functional.dropout(x.flatten(1), 0.5, self.training))

    with pytest.raises(ValueError, match=r"F\.dropout.*1 time"):
        mc_predict(OnlyFunctional(), X, 3)

    class Mixed(OnlyFunctional):
        def __init__(self):
            super().__init__()
            self.drop = nn.Dropout(0.5)

        def forward(self, x):
            return self.drop(super().forward(x))

    with pytest.warns(UserWarning, match="stay off"):
        mc_predict(Mixed(), X, 3)


def test_unsafe_split_falls_back_to_full_passes_and_says_so_once():
    class SizeAcrossCut(FunctionalCNN):
        def forward(self, x):
            h = torch.relu(self.bn(self.conv(x)))
            n = h.size(0)  # an int computed before the dropout, used after it: cutting here would be wrong
            return self.out(self.drop(torch.relu(self.fc(h.view(n, -1)))).view(n, -1))

    model = SizeAcrossCut()
    with pytest.warns(UserWarning, match="no exact prefix/suffix split.*not a batch-first tensor"):
        out = mc_predict(model, X, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = mc_predict(model, X, 4)  # said once only
    torch.testing.assert_close(out.mean_probs, again.mean_probs, rtol=0, atol=0)
    torch.testing.assert_close(
        out.mean_probs, mc_predict(model, X, 4, split=False).mean_probs, atol=1e-6, rtol=0
    )


_ALPHA_PRIME = -1.7580993408473766  # SELU's negative saturation, what alpha dropout drops a unit to (rescaled)


@pytest.mark.parametrize(
    "cls,shape",
    [
        (nn.Dropout1d, (500, 6, 7)),
        (nn.Dropout2d, (500, 6, 4, 3)),
        (nn.Dropout3d, (500, 6, 2, 3, 2)),
        (nn.FeatureAlphaDropout, (500, 6, 4, 3)),
        (nn.Dropout, (500, 6, 4, 3)),
        (nn.AlphaDropout, (500, 6, 4, 3)),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_channel_dropout_zeroes_whole_channels(cls, shape):
    """The channel variants drop whole feature maps (every position of a (sample, channel) together); the element
    variants drop single elements. An element-wise mask with the right rate passes the statistics test above, so
    this is what tells a channel dropout from an element dropout."""
    p = 0.3
    x = torch.rand(shape) + 1.0  # no element is 0 or the alpha constant by chance
    out = mc_predict(nn.Sequential(cls(p=p)), x, 1, task="regression").mean
    if "Alpha" in cls.__name__:
        a = 1.0 / math.sqrt((_ALPHA_PRIME**2 * p + 1) * (1 - p))
        dropped = torch.isclose(out, torch.tensor(_ALPHA_PRIME * a * (1 - p)))
    else:
        dropped = out == 0
    per_map = dropped.flatten(2)  # (sample, channel, positions)
    whole = per_map.all(-1) | ~per_map.any(-1)  # each map entirely dropped or entirely kept
    if cls in (nn.Dropout, nn.AlphaDropout):
        assert not bool(whole.all()), "element dropout must not drop whole channels only"
        assert abs(float(dropped.float().mean()) - p) < 0.02
    else:
        assert bool(whole.all()), "a channel dropout dropped part of a channel"
        assert abs(float(per_map.all(-1).float().mean()) - p) < 0.03, "fraction of channels dropped"
