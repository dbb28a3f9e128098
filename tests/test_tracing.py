"""The one execution recorder: sees every in-place shape, is scoped to its block and thread, patches nothing."""

from __future__ import annotations

import threading

import torch
import torch.nn.functional as F
from torch import nn

from lightning_bestpractices.initialization import init_weights
from lightning_bestpractices.tracing import recording, storage_key, trace_model
from lightning_bestpractices.uncertainty.split import count_functional_dropout_calls


class Inner(nn.Module):
    def forward(self, h):
        h[:, 1:3].mul_(2.0)  # through a view, inside a child
        return h


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 6)
        self.act = nn.ReLU(inplace=True)
        self.inner = Inner()

    def forward(self, x):
        h = self.fc(x)
        h.relu_()
        F.relu(h, inplace=True)
        self.act(h)
        h += 1.0
        h[:, 0] = 0.0
        h = self.inner(h)
        return h.sum(1)


def test_every_inplace_shape_is_a_mutation_of_the_layer_output():
    model = Net()
    trace = trace_model(model, torch.randn(2, 4))
    fc_out = trace.calls_of(model.fc)[0].outputs[0]
    changed = [op.name for op in trace.mutations_of(fc_out)]
    assert changed == ["relu_", "relu", "relu", "add_", "__setitem__", "mul_"]
    view_op = next(op for op in trace.ops if op.name == "mul_")
    assert model.inner in [c.module for c in trace.calls if c.start <= view_op.index < c.end]
    assert trace.storage[fc_out] in view_op.mutated_storages  # the view's change is the layer output's change
    assert trace.mutated_parameters(model) == []
    assert [op.name for op in trace.ops if not op.mutated] == ["linear", "__getitem__", "sum"]


def test_mutation_continues_the_data_flow():
    """The new version of a tensor changed by ``__setitem__`` (which returns None) is that op's output."""
    model = Net()
    trace = trace_model(model, torch.randn(2, 4))
    setitem = next(op for op in trace.ops if op.name == "__setitem__")
    assert setitem.outputs and trace.producer[setitem.outputs[0]] == setitem.index


def test_parameter_changes_are_reported():
    class Counts(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("n", torch.zeros(()))
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            self.n += 1
            return self.fc(x)

    assert trace_model(Counts(), torch.randn(1, 2)).mutated_parameters(Counts()) == []  # other instance
    model = Counts()
    assert trace_model(model, torch.randn(1, 2)).mutated_parameters(model) == ["n"]


def test_recording_is_scoped_to_the_block_and_the_thread_and_patches_nothing():
    model = nn.Sequential(nn.Linear(2, 2))
    before = {name: getattr(F, name) for name in ("dropout", "dropout2d", "alpha_dropout")}
    seen_in_thread = []

    def other_thread():
        seen_in_thread.append(float(torch.ones(3).exp().sum()))

    with recording(model) as trace:
        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join()
        assert {name: getattr(F, name) for name in before} == before
        model(torch.randn(1, 2))
    torch.tanh(torch.randn(2))  # after the block: not recorded
    assert seen_in_thread and [op.name for op in trace.ops] == ["randn", "linear"]
    assert not model[0]._forward_hooks and not model[0]._forward_pre_hooks


def test_functional_dropout_probe_counts_without_replacing_functions():
    class Net2(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.drop = nn.Dropout(0.5)  # its own F.dropout call does not count

        def forward(self, x):
            return F.dropout(self.drop(x), 0.1, self.training) + F.alpha_dropout(x, 0.1, self.training)

    original = F.dropout
    assert count_functional_dropout_calls(Net2(), torch.randn(2, 3)) == 2
    assert F.dropout is original


def test_inference_mode_inputs_are_traced_with_versions():
    model = Net()
    with torch.inference_mode():
        x = torch.randn(2, 4)
    trace = trace_model(model, x)
    assert [op.name for op in trace.mutations_of(trace.calls_of(model.fc)[0].outputs[0])][:2] == [
        "relu_",
        "relu",
    ]


def test_storage_key_is_shared_by_views():
    t = torch.randn(4, 4)
    assert storage_key(t) == storage_key(t[1:, ::2]) == storage_key(t.data)
    assert storage_key(torch.empty(0)) is None


def test_init_weights_sees_the_activation_after_an_index_assignment():
    class Net3(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.out = nn.Linear(4, 8), nn.Linear(8, 2)

        def forward(self, x):
            h = self.fc(x)
            h[:, 0] = 0.0  # returns None: the relu reads the new version of h
            return self.out(F.relu(h))

    report = init_weights(Net3(), example_input=torch.randn(2, 4))
    assert (report["fc"].activation, report["fc"].scheme) == ("relu", "kaiming")
