"""One test per private torch / Lightning internal that ``lightning_bestpractices._compat`` touches.

Each test fails loudly (a named assertion, not a silent wrong LR) when a torch or Lightning release renames or
reshapes the internal. ``pyproject.toml`` pins the Lightning minor version these were checked against.
"""

from __future__ import annotations

import inspect

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.strategies import DDPStrategy
from torch import nn
from torch.optim import lr_scheduler as S
from torch.utils.data import DataLoader, TensorDataset

from lightning_bestpractices import _compat

QUIET = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)


def _opt():
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)


class _Net(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader(n=12, batch_size=2):
    return DataLoader(TensorDataset(torch.randn(n, 2)), batch_size=batch_size)


def test_scheduler_children_of_sequential_and_chained():
    opt = _opt()
    a, b = S.ConstantLR(opt, 0.5, total_iters=2), S.ExponentialLR(opt, 0.9)
    seq = S.SequentialLR(opt, [a, b], milestones=[2])
    assert "_schedulers" in vars(seq), "torch renamed SequentialLR._schedulers"
    assert [id(s) for s in _compat.scheduler_children(seq)] == [id(a), id(b)]
    chain = S.ChainedScheduler([S.ConstantLR(opt, 0.5), S.ExponentialLR(opt, 0.9)])
    assert "_schedulers" in vars(chain), "torch renamed ChainedScheduler._schedulers"
    assert len(_compat.scheduler_children(chain)) == 2
    assert _compat.scheduler_children(a) == []


def test_sequential_milestones():
    opt = _opt()
    seq = S.SequentialLR(opt, [S.ConstantLR(opt, 0.5), S.ConstantLR(opt, 0.2), S.ExponentialLR(opt, 0.9)], [2, 5])
    assert "_milestones" in vars(seq), "torch renamed SequentialLR._milestones"
    assert _compat.sequential_milestones(seq) == [2, 5]


def test_set_last_lr_is_what_get_last_lr_returns():
    opt = _opt()
    sched = S.StepLR(opt, step_size=1)
    assert "_last_lr" in vars(sched), "torch renamed LRScheduler._last_lr"
    _compat.set_last_lr(sched, [0.25])
    assert sched.get_last_lr() == [0.25]


def test_rewrap_ddp_uses_strategy_methods_that_exist():
    # exercised for real under 2-process DDP by tests/scripts/ddp_finetuning.py (ranks stay identical)
    setup = inspect.signature(DDPStrategy._setup_model)
    assert list(setup.parameters) == ["self", "model"], "Lightning changed DDPStrategy._setup_model"
    assert list(inspect.signature(DDPStrategy._register_ddp_hooks).parameters) == ["self"]


def test_batches_that_stepped_is_the_logged_step():
    seen = []

    class Probe(L.Callback):
        def on_train_batch_start(self, trainer, *args):
            seen.append((_compat.batches_that_stepped(trainer), trainer.global_step))

    trainer = L.Trainer(max_epochs=2, accumulate_grad_batches=2, callbacks=[Probe()], **QUIET)
    trainer.fit(_Net(), _loader(n=10))  # 5 batches per epoch: steps after batches 2, 4, 5
    assert [s for s, _ in seen] == [g for _, g in seen] == [0, 0, 1, 1, 2, 3, 3, 4, 4, 5]
    assert _compat.batches_that_stepped(trainer) == trainer.global_step == 6


def test_should_update_logs_follows_log_every_n_steps():
    seen = []

    class Probe(L.Callback):
        def on_train_batch_start(self, trainer, *args):
            seen.append(_compat.should_update_logs(trainer))

    trainer = L.Trainer(max_steps=6, log_every_n_steps=3, callbacks=[Probe()], **QUIET)
    trainer.fit(_Net(), _loader())
    assert seen == [False, False, True, False, False, True]


def test_train_dataloader_before_setup_data():
    loader, got = _loader(), []

    class Probe(L.Callback):
        def setup(self, trainer, pl_module, stage):
            got.append(_compat.train_dataloader(trainer))

    L.Trainer(max_steps=1, callbacks=[Probe()], **QUIET).fit(_Net(), loader)
    assert got == [loader]


def test_wandb_init_kwargs_are_the_deferred_init_arguments(tmp_path):
    logger = WandbLogger(project="compat", save_dir=str(tmp_path), offline=True)
    kwargs = _compat.wandb_init_kwargs(logger)
    assert isinstance(kwargs, dict) and kwargs["project"] == "compat"
    kwargs.setdefault("tags", ["x"])
    assert _compat.wandb_init_kwargs(logger)["tags"] == ["x"], "must be the logger's own (mutable) mapping"


@pytest.mark.parametrize("op", _compat._Foreach.OPS)
def test_foreach_ops_exist_and_match_a_loop(op):
    """Each wrapped ``torch._foreach_<op>`` exists and computes what the per-tensor op computes."""
    xs = [torch.rand(3) + 0.5, torch.rand(2, 2) + 0.5]
    ys = [torch.rand(3) + 0.5, torch.rand(2, 2) + 0.5]
    fn = getattr(_compat.foreach, op)
    args = {"add_": (ys,), "addcmul_": (ys, ys), "div": (ys,), "lerp_": (ys, 0.3), "mul_": (2.0,), "neg_": (),
            "norm": (), "pow": (2.0,), "sqrt_": (), "sign": ()}[op]  # fmt: skip
    ref = [getattr(x.clone(), op)(*[a[i] if isinstance(a, list) else a for a in args]) for i, x in enumerate(xs)]
    got = [x.clone() for x in xs]
    out = fn(got, *args)
    for r, g in zip(ref, out if out is not None else got):
        torch.testing.assert_close(g, r)
    with pytest.raises(AttributeError, match="not one of the wrapped"):
        _compat.foreach.zero_  # noqa: B018


def test_foreach_sign_and_add_match_a_loop_also_for_mixed_dtypes():
    ws = [torch.randn(4), torch.randn(3)]
    assert all(torch.equal(s, w.sign()) for s, w in zip(_compat.foreach_sign(ws), ws))
    grads = [torch.zeros(4), torch.zeros(3, dtype=torch.bfloat16)]  # the second pair goes through the loop
    _compat.foreach_add_(grads, ws, alpha=0.5)
    for g, w in zip(grads, ws):
        torch.testing.assert_close(g, (0.5 * w).to(g.dtype))


@pytest.mark.parametrize("name", _compat.__all__)
def test_every_compat_name_has_a_test_here(name):
    tests = [n for n in globals() if n.startswith("test_")]
    key = name.lower().removesuffix("_attr")
    assert any(key.split("_")[0] in t for t in tests), f"no test for _compat.{name}"
