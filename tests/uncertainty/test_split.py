"""The prefix/suffix split of mc_predict is exact (== split=False to 1e-6) or refused with a warning saying why."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from lightning_bestpractices.uncertainty import explain_split, find_split, mc_predict

X = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))


def _exact(model: nn.Module, x: torch.Tensor = X, n: int = 5):
    """(split kind or None, max |split - full| of mean_probs), with warnings collected."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cached = mc_predict(model, x, n, seed=1)
    full = mc_predict(model, x, n, seed=1, split=False)
    split = find_split(model, x)
    diff = float((cached.mean_probs - full.mean_probs).abs().max())
    return (None if split is None else split.kind), diff, [str(w.message) for w in caught]


class Base(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(4, 16)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(16, 3)


# ------------------------------------------------------------------------------------- the issue's table
class ReluStatement(Base):
    def forward(self, x):
        h = self.fc(x)
        h.relu_()  # result unused: dead-code elimination used to drop it (0.17 off)
        return self.out(self.drop(h))


class FunctionalInplace(Base):
    def forward(self, x):
        h = self.fc(x)
        F.relu(h, inplace=True)  # 0.19 off before
        return self.out(self.drop(h))


class BranchInplace(Base):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(self.fc)
        del self.fc

    def forward(self, x):
        h = self.body(x)
        if h.sum() > -1e9:  # data-dependent: fx cannot trace; children keep the tensor's identity
            h.relu_()
            h += 1.0
        return self.out(self.drop(h))  # 0.32 off before


@pytest.mark.parametrize("make", [ReluStatement, FunctionalInplace], ids=lambda c: c.__name__)
def test_issue_rows_fx_split_is_used_and_exact(make):
    kind, diff, _ = _exact(make())
    assert kind == "fx"
    assert diff < 1e-6


def test_issue_row_branch_with_inplace_gets_full_passes_and_one_warning():
    model = BranchInplace()
    kind, diff, messages = _exact(model)
    assert kind is None and diff < 1e-6
    why = [m for m in messages if "no exact prefix/suffix split" in m]
    assert len(why) == 1 and "torch.fx cannot trace it" in why[0] and "top-level forward runs" in why[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mc_predict(model, X, 3)  # said once only


# ----------------------------------------------------------------------------------- more in-place shapes
class Augmented(Base):
    def forward(self, x):
        h = self.fc(x)
        h += 1.0
        h[:, 1:3].mul_(-1)  # through a view
        return self.out(self.drop(h))


class IndexAssignment(Base):
    def forward(self, x):
        h = self.fc(x)
        h[:, 0] = 0.0  # fx cannot trace item assignment; the top-level forward is no plain chain
        return self.out(self.drop(h))


class InplaceChild(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 16)

    def forward(self, h):
        h.relu_()  # changes the parent's tensor
        return self.fc(h).tanh_()


class NestedInplace(Base):
    def __init__(self) -> None:
        super().__init__()
        self.child = InplaceChild()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        h = self.fc(x)
        self.act(h)  # inplace module as a statement
        g = self.child(h)
        return self.out(self.drop(g + h))


class ChangedAfterDropoutRead(Base):
    def forward(self, x):
        h = self.fc(x)
        d = self.drop(h)
        h.add_(1.0)  # before the dropout in no way: it runs after the dropout read h
        return self.out(d) + self.out(h)


class SuffixChangesAlias(Base):
    def forward(self, x):
        h = self.fc(x)
        v = h[:, :8]  # a view of h crossing the cut next to h itself
        d = self.drop(h)
        h.mul_(d)  # the stochastic part changes h, which v sees
        return self.out(torch.cat([v, v], 1)) + self.out(d)


class ChangesBuffer(Base):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        self.calls += 1
        return self.out(self.drop(self.fc(x) * self.calls))


@pytest.mark.parametrize("make", [Augmented, NestedInplace], ids=lambda c: c.__name__)
def test_inplace_before_the_dropout_is_kept_in_the_prefix(make):
    kind, diff, _ = _exact(make())
    assert kind == "fx" and diff < 1e-6


@pytest.mark.parametrize(
    "make,why",
    [
        (ChangedAfterDropoutRead, "stochastic part has already read"),
        (SuffixChangesAlias, "aliases"),
        (IndexAssignment, "top-level forward runs `__setitem__`"),
    ],
    ids=["after-read", "alias", "index-assignment"],
)
def test_inexact_splits_are_refused_with_the_reason(make, why):
    model = make()
    split, reason = explain_split(model, X)
    assert split is None and why in reason
    kind, diff, messages = _exact(make())
    assert kind is None and diff < 1e-6
    assert any(why in m for m in messages)


def test_forward_changing_a_buffer_is_not_split_and_the_audit_leaves_the_buffer_alone():
    model = ChangesBuffer()
    split, reason = explain_split(model, X)
    assert split is None and "'calls' (a parameter or buffer)" in reason
    assert float(model.calls) == 0  # the recorded pass restored it
    with pytest.warns(UserWarning, match="'calls' \\(a parameter or buffer\\)"):
        mc_predict(model, X, 3)
    assert float(model.calls) == 1  # one batched full pass (3 samples in one chunk)


def test_forward_changing_its_input_does_not_change_the_callers_batch():
    class EatsInput(Base):
        def forward(self, x):
            x.mul_(2.0)
            return self.out(self.drop(self.fc(x)))

    x = X.clone()
    kind, diff, _ = _exact(EatsInput(), x)
    assert kind == "fx" and diff < 1e-6
    assert torch.equal(x, X)


def test_sequential_subclass_with_its_own_forward_is_not_split_as_a_chain():
    class Skip(nn.Sequential):
        def forward(self, x):
            return self[3](self[2](self[1](self[0](x)))) + self[0](x)[:, :3]

    torch.manual_seed(0)
    model = Skip(nn.Linear(4, 16), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(16, 3))
    kind, diff, _ = _exact(model)
    assert kind == "fx" and diff < 1e-6


# -------------------------------------------------------------------------------------------- property test
OPS = ["linear", "relu_", "f_relu_inplace", "relu_module", "iadd", "setitem", "view_mul", "nested", "drop",
       "save", "use_saved", "after_drop_mut", "branch"]  # fmt: skip


class Random(nn.Module):
    """A forward built from a list of op codes (a Python loop over a fixed list: fx traces it unrolled)."""

    def __init__(self, ops: list[str], seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.ops = ops
        self.inp = nn.Linear(4, 6)
        self.mods = nn.ModuleList()
        for op in ops:
            if op == "linear":
                self.mods.append(nn.Linear(6, 6))
            elif op == "relu_module":
                self.mods.append(nn.ReLU(inplace=True))
            elif op == "nested":
                self.mods.append(_Nested())
            elif op == "drop":
                self.mods.append(nn.Dropout(0.4))
            else:
                self.mods.append(nn.Identity())
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        h = self.inp(x)
        saved = h
        last_drop = None
        for op, mod in zip(self.ops, self.mods):
            if op in ("linear", "drop"):
                h = mod(h)
                if op == "drop":
                    last_drop = h
            elif op == "relu_":
                h.relu_()
            elif op == "f_relu_inplace":
                F.relu(h, inplace=True)
            elif op == "relu_module":
                mod(h)
            elif op == "iadd":
                h += 0.5
            elif op == "setitem":
                h[:, 0] = 0.25  # fx cannot trace this: full passes
            elif op == "view_mul":
                h[:, 1::2].mul_(-1.5)
            elif op == "nested":
                h = mod(h)
            elif op == "save":
                saved = h
            elif op == "use_saved":
                h = h + saved
            elif op == "after_drop_mut":
                if last_drop is not None:
                    saved.add_(last_drop)
            elif op == "branch":
                if h.sum() > -1e6:  # data-dependent: fx cannot trace this forward
                    h.tanh_()
        return self.head(self.drop(h) + saved)


class _Nested(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.act = nn.ReLU(inplace=True)

    def forward(self, h):
        h.mul_(0.9)  # the caller's tensor
        out = self.act(self.fc(h))
        out[:, -1] = h[:, 0]
        return out


class _ChainBranch(nn.Module):
    def forward(self, h):
        if h.sum() > -1e6:
            h = h.relu_()
        return h


MODULES = {
    "linear": lambda: nn.Linear(6, 6),
    "relu_inplace": lambda: nn.ReLU(inplace=True),
    "nested": _Nested,
    "drop": lambda: nn.Dropout(0.4),
    "branch": _ChainBranch,
}


class Chain(nn.Module):
    """Children called one after the other: fx (or, with a branch child, the hook-recorded chain)."""

    def __init__(self, names: list[str], seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.inp = nn.Linear(4, 6)
        self.body = nn.ModuleList(MODULES[n]() for n in names)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        h = self.inp(x)
        for m in self.body:
            h = m(h)
        return self.head(self.drop(h))


def test_property_split_equals_full_passes():
    kinds: list[str | None] = []

    # derandomize: the same 60 examples every run, so the coverage assertion below cannot flip with the seed
    @settings(max_examples=60, deadline=None, derandomize=True)
    @given(
        style=st.sampled_from(["forward", "sequential", "chain"]),
        ops=st.lists(st.sampled_from(OPS), min_size=1, max_size=7),
        names=st.lists(st.sampled_from(sorted(MODULES)), min_size=1, max_size=5),
        seed=st.integers(0, 1000),
    )
    def check(style, ops, names, seed):
        if style == "forward":
            model = Random(ops, seed)
        elif style == "sequential":
            torch.manual_seed(seed)
            model = nn.Sequential(nn.Linear(4, 6), *(MODULES[n]() for n in names), nn.Dropout(0.3),
                                  nn.Linear(6, 3))  # fmt: skip
        else:
            model = Chain(names, seed)
        x = torch.randn(5, 4, generator=torch.Generator().manual_seed(seed))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cached = mc_predict(model, x, 4, seed=seed, task="regression")
        full = mc_predict(model, x, 4, seed=seed, task="regression", split=False)
        split = find_split(model, x)
        kinds.append(None if split is None else split.kind)
        torch.testing.assert_close(cached.mean, full.mean, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(cached.variance, full.variance, atol=1e-6, rtol=1e-6)

    check()
    # the test must exercise every way of splitting, and refusals too, or it proves nothing
    assert {"fx", "sequential", "hooks", None} <= set(kinds), set(kinds)
