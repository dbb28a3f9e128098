from __future__ import annotations

import csv
import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_bestpractices.initialization import init_weights
from lightning_bestpractices.initialization.diagnostics import DepthDiagnostics, depth_statistics, plot_depth


def _relu_mlp(depth: int, width: int) -> nn.Sequential:
    return nn.Sequential(*[m for _ in range(depth) for m in (nn.Linear(width, width), nn.ReLU())])


def test_seed_experiment_kaiming_keeps_scale_xavier_and_small_normal_collapse():
    """Seed 001 section 5: 30-layer ReLU MLP, width 256."""
    ratios = {}
    for scheme in ("kaiming", "xavier", "normal"):
        torch.manual_seed(0)
        net = _relu_mlp(30, 256)
        x = torch.randn(256, 256)
        init_weights(net, scheme, example_input=x[:2])
        stats = depth_statistics(net, x)
        assert len(stats.names) == 30 and stats.names[0] == "0" and stats.names[-1] == "58"
        ratios[scheme] = stats.ratio()
        if scheme == "kaiming":
            assert all(0.5 < s / stats.act_std[0] < 2 for s in stats.act_std)
            assert all(0.1 < g / stats.grad_std[-1] < 10 for g in stats.grad_std)
    assert 0.5 < ratios["kaiming"] < 2
    assert ratios["xavier"] < 1e-3  # each layer loses a factor ~sqrt(2)
    assert ratios["normal"] < 1e-20  # each layer loses a factor ~ 0.01 * sqrt(256 / 2) = 0.11


def test_depth_statistics_has_no_side_effects_and_matches_autograd():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))
    net.train()
    x = torch.randn(32, 8)
    buffers = {k: v.clone() for k, v in net.named_buffers()}
    stats = depth_statistics(net, x, loss_fn=lambda out: out.sum())
    assert all(p.grad is None for p in net.parameters())
    assert net.training
    for k, v in net.named_buffers():
        assert torch.equal(v, buffers[k]), k
    # reference: the same numbers by hand
    h1 = net[0](x)
    h1.retain_grad()
    out = net[3](net[2](net[1](h1)))
    out.sum().backward()
    assert stats.act_std == pytest.approx([h1.std().item(), out.std().item()], rel=1e-5)
    assert stats.grad_std[0] == pytest.approx(h1.grad.std().item(), rel=1e-5)
    assert stats.grad_std[1] == 0.0  # d(sum)/d(out) is all ones
    assert stats.weight_grad_std[0] == pytest.approx(net[0].weight.grad.std().item(), rel=1e-5)
    fig = plot_depth({"a": stats, "b": stats})
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 2


class _Net(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        return F.mse_loss(self(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_callback_logs_metrics_table_and_plot(tmp_path):
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(64, 6), torch.randn(64, 1))
    cb = DepthDiagnostics(every_n_steps=3)
    trainer = L.Trainer(
        max_steps=7, accelerator="cpu", precision="bf16-mixed", logger=CSVLogger(tmp_path, name="d"),
        callbacks=[cb], enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(_Net(), DataLoader(data, batch_size=8))
    assert cb.steps_recorded == [0, 3, 6]
    assert cb.last is not None and all(math.isfinite(v) and v > 0 for v in cb.last.act_std + cb.last.grad_std)
    log_dir = tmp_path / "d" / "version_0"
    assert (log_dir / "depth_plot.png").stat().st_size > 1000
    with (log_dir / "depth_stats.csv").open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["depth", "layer", "act_std", "grad_std", "weight_grad_std"]
    assert [r[1] for r in rows[1:]] == ["net.0", "net.2", "net.4"]
    with (log_dir / "metrics.csv").open() as fh:
        logged = list(csv.DictReader(fh))
    steps = sorted({int(r["step"]) for r in logged if r.get("depth/act_std/net.2")})
    assert steps == [0, 3, 6]
    # state survives a checkpoint: a resumed run does not record step 6 again
    fresh = DepthDiagnostics(every_n_steps=3)
    fresh.load_state_dict(cb.state_dict())
    assert not fresh._due(6) and fresh._due(9)


def test_bad_input():
    with pytest.raises(ValueError, match="`every_n_steps` must be an int >= 1 or None, got 0"):
        DepthDiagnostics(every_n_steps=0)
    with pytest.raises(ValueError, match="`layer_types`"):
        depth_statistics(nn.Linear(2, 2), torch.randn(3, 2), layer_types=[])
    with pytest.raises(ValueError, match="has no layers of types"):
        depth_statistics(nn.ReLU(), torch.randn(3, 2))
