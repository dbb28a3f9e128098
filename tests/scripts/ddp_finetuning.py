"""DDP parity of gradual unfreezing: 2 CPU processes, different data per rank, unfreeze at epochs 1 and 2.

Runs, in one launch, three variants and writes ``<out>/<variant>_rank<r>.pt`` per rank:

* ``ours``: :class:`GradualUnfreezing` (fp32);
* ``ours_bf16``: the same under ``precision="bf16-mixed"``;
* ``ours_steps``: unfreezing at fractions of training (mid-epoch) with ``accumulate_grad_batches=2``;
* ``lightning``: Lightning's ``BackboneFinetuning`` (unfreezes the whole backbone at epoch 1), the regression check
  that documents why our callback exists: parameters unfrozen after DDP wrapped the model are never all-reduced.

Each file holds the final parameters, buffers and optimizer state, plus per-step sums of every parameter and every
gradient (recorded in ``on_before_optimizer_step``, i.e. after DDP's all-reduce).

    python tests/scripts/ddp_finetuning.py --out /tmp/ddp_ft
"""

from __future__ import annotations

import argparse
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import BackboneFinetuning, Callback
from torch import nn

from lightning_bestpractices.data import InMemoryDataModule
from lightning_bestpractices.finetuning import GradualUnfreezing


class Net(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Linear(8, 16),
            nn.BatchNorm1d(16),
            nn.ReLU(),
            nn.Linear(16, 16),
            nn.ReLU(),
            nn.Linear(16, 16),
            nn.ReLU(),
        )
        self.head = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(filter(lambda p: p.requires_grad, self.parameters()), lr=1e-2)


class Recorder(Callback):
    """Per-step sums of parameters and gradients (after DDP's all-reduce, before the optimizer step)."""

    def __init__(self) -> None:
        self.params: list[torch.Tensor] = []
        self.grads: list[torch.Tensor] = []
        self.trainable: list[int] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        ps = list(pl_module.parameters())
        self.params.append(torch.stack([p.detach().double().sum() for p in ps]))
        self.grads.append(
            torch.stack(
                [
                    p.grad.double().sum() if p.grad is not None else torch.zeros((), dtype=torch.float64)
                    for p in ps
                ]
            )
        )
        self.trainable.append(sum(p.requires_grad for p in ps))


def run(variant: str, out: Path) -> None:
    L.seed_everything(0, workers=True)
    model = Net()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(256, 8, generator=g)
    y = (x[:, :1] * 2 - x[:, 1:2]).sin() + 0.1 * torch.randn(256, 1, generator=g)
    data = InMemoryDataModule(train=(x, y), batch_size=16, seed=0)
    if variant == "lightning":
        finetune = BackboneFinetuning(unfreeze_backbone_at_epoch=1, backbone_initial_ratio_lr=0.1)
    elif variant == "ours_steps":  # 3 epochs x 4 optimizer steps: unfreeze at step 4, then 7 (mid epoch 1)
        finetune = GradualUnfreezing(unfreeze_at=[0.35, 0.6], groups_per_unfreeze=[1, -1], lr_factor=0.5)
    else:
        finetune = GradualUnfreezing(unfreeze_at=[1, 2], groups_per_unfreeze=[1, -1], lr_factor=0.5)
    rec = Recorder()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        precision="bf16-mixed" if variant == "ours_bf16" else "32-true",
        max_epochs=3,
        accumulate_grad_batches=2 if variant == "ours_steps" else 1,
        callbacks=[finetune, rec],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
    )
    trainer.fit(model, data)
    opt = trainer.optimizers[0]
    opt_state = {
        f"{i}.{k}": v.clone()
        for i, p in enumerate(model.parameters())
        for k, v in opt.state.get(p, {}).items()
        if torch.is_tensor(v)
    }
    torch.save(
        {
            "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "optimizer": opt_state,
            "param_sums": torch.stack(rec.params),
            "grad_sums": torch.stack(rec.grads),
            "trainable": rec.trainable,
            "groups": [g.get("name") for g in opt.param_groups],
            "world_size": trainer.world_size,
        },
        out / f"{variant}_rank{trainer.global_rank}.pt",
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variants", nargs="+", default=["ours", "ours_bf16", "ours_steps", "lightning"])
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for variant in args.variants:
        run(variant, args.out)


if __name__ == "__main__":
    main()
