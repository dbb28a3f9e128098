"""Regularization under real DDP (2 CPU processes, gloo), or in one process with ``--devices 1``.

One launch runs every scenario; each rank saves its results to ``<out>/rank{rank}.pt`` and
``tests/regularization/test_ddp_regularization.py`` checks them. The models and the scenario functions are also
imported by the single-process tests, so both run the same code.
Run: ``python tests/scripts/ddp_regularization.py --out DIR [--devices 1] [--precision bf16-mixed]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_bestpractices.regularization import (
    DropConnect,
    DropPath,
    MaxNorm,
    WeightPenalty,
    checkpoint_blocks,
    decay_parameters,
    max_norm_targets,
    unit_norms,
    weight_penalty,
)
from lightning_bestpractices.uncertainty import MCDropoutMixin


class Net(L.LightningModule):
    """A small conv + BN + MLP classifier trained with plain SGD (updates are easy to reason about)."""

    def __init__(self, lr: float = 0.1, penalty: tuple[float, float] | None = None, drop: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lr, self.penalty = lr, penalty
        conv = nn.Conv2d(1, 4, 3, padding=1)
        fc = nn.Linear(64, 16)
        self.net = nn.Sequential(
            DropConnect(conv, 0.2) if drop else conv, nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
            DropConnect(fc, 0.3) if drop else fc, nn.ReLU(),
            DropPath(0.4) if drop else nn.Identity(), nn.Linear(16, 3),
        )  # fmt: skip
        self.step_weights: list[dict[str, torch.Tensor]] = []

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        if self.penalty is not None:  # the reference: the penalty written into the loss by hand
            loss = loss + weight_penalty(decay_parameters(self), *self.penalty)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class MCNet(MCDropoutMixin, Net):
    def __init__(self) -> None:
        super().__init__(drop=True)
        self.configure_mc_dropout(6, seed=5, stages=("predict",), log_figures=False)


class RecordWeights(Callback):
    """After every training batch: the max unit norm of each constrained weight, the step and the param values."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        norms = {n: float(unit_norms(w).max()) for n, w in max_norm_targets(pl_module)}
        params = {n: p.detach().clone() for n, p in pl_module.named_parameters()}
        self.rows.append({"batch": batch_idx, "step": trainer.global_step, "norms": norms, "params": params})


def data(n: int = 48, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 4, 4, generator=g) * 3, torch.randint(0, 3, (n,), generator=g)


def loader(batch_size: int = 4, n: int = 48) -> DataLoader:
    return DataLoader(TensorDataset(*data(n)), batch_size=batch_size)


def trainer(devices: int = 1, precision: str = "32-true", callbacks=(), **kw) -> L.Trainer:
    kw.setdefault("max_steps", 6)
    kw.setdefault("logger", False)
    kw.setdefault("enable_checkpointing", False)
    return L.Trainer(
        accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto", precision=precision,
        enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks), deterministic=True, **kw,
    )  # fmt: skip


def params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def penalty_pair(devices: int, precision: str, accumulate: int = 1, l1_ratio: float = 0.5) -> dict:
    """The callback and the hand-written loss penalty, same data and seeds: final parameters of both."""
    strength = 0.02
    ours = Net()
    trainer(devices, precision, [WeightPenalty(strength, l1_ratio)], accumulate_grad_batches=accumulate).fit(
        ours, loader())
    ref = Net(penalty=(strength, l1_ratio))
    trainer(devices, precision, accumulate_grad_batches=accumulate).fit(ref, loader())
    plain = Net()
    trainer(devices, precision, accumulate_grad_batches=accumulate).fit(plain, loader())
    return {"ours": params(ours), "ref": params(ref), "plain": params(plain)}


def max_norm_run(devices: int, precision: str, accumulate: int = 1, max_norm: float = 0.6) -> dict:
    """A large learning rate pushes unit norms past ``max_norm``; MaxNorm must pull them back after every step."""
    record, cb = RecordWeights(), MaxNorm(max_norm)
    model = Net(lr=2.0)
    t = trainer(devices, precision, [cb, record], accumulate_grad_batches=accumulate, max_steps=5)
    t.fit(model, loader())
    free = RecordWeights()
    trainer(devices, precision, [free], accumulate_grad_batches=accumulate, max_steps=5).fit(Net(lr=2.0), loader())
    return {"rows": record.rows, "free_rows": free.rows, "applied_steps": cb.applied_steps,
            "global_step": t.global_step, "params": params(model)}  # fmt: skip


def drop_train_and_predict(devices: int, precision: str = "32-true") -> dict:
    """Train with DropConnect + DropPath (ranks must stay identical), then MC-predict through the mixin."""
    model = MCNet()
    trainer(devices, precision).fit(model, loader())
    x, y = data(37, seed=2)
    trainer(devices, precision).predict(model, DataLoader(TensorDataset(x, y), batch_size=5))
    r = model.mc_results["predict"]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    return {"params": params(model), "state": state, "mean_probs": r.output.mean_probs, "indices": r.indices}


def checkpointing_pair(devices: int, precision: str) -> dict:
    """Checkpointing the conv+BN block and the MLP must not change training: same parameters and BN statistics."""
    out = {}
    for name, ckpt in (("plain", False), ("ckpt", True)):
        model = Net(drop=True)  # dropout masks must be redrawn identically in the recompute
        if ckpt:
            checkpoint_blocks(model, names=["net.0", "net.4"], types=[nn.BatchNorm2d])
        L.seed_everything(3)
        trainer(devices, precision).fit(model, loader())
        out[name] = {**params(model), **{f"buf.{n}": b.clone() for n, b in model.named_buffers()}}
    return out


def run(devices: int, precision: str) -> dict:
    return {
        "world_size": devices,
        "penalty": penalty_pair(devices, precision),
        "penalty_accumulate": penalty_pair(devices, precision, accumulate=3, l1_ratio=1.0),
        "max_norm": max_norm_run(devices, precision),
        "max_norm_accumulate": max_norm_run(devices, precision, accumulate=3),
        "max_norm_bf16": max_norm_run(devices, "bf16-mixed", accumulate=3),
        "penalty_bf16": penalty_pair(devices, "bf16-mixed"),
        "drop": drop_train_and_predict(devices, precision),
        "checkpointing": checkpointing_pair(devices, precision),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--precision", default="32-true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    res = run(args.devices, args.precision)
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    torch.save(res, Path(args.out) / f"rank{rank}.pt")
