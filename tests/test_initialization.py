from __future__ import annotations

import json
import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.init import calculate_gain
from torch.utils.data import DataLoader, TensorDataset

from lightning_bestpractices import FrozenBatchNorm, WeightInit, init_weights, lsuv_init

FI, FO = 384, 512  # fan_in != fan_out so Xavier and Kaiming differ


def _trunc_var(cut: float = 2.0) -> float:
    """Variance of a standard normal truncated to [-cut, cut]."""
    phi = math.exp(-(cut**2) / 2) / math.sqrt(2 * math.pi)
    z = math.erf(cut / math.sqrt(2))
    return 1 - 2 * cut * phi / z


class _Act(nn.Module):
    """Linear -> (functional or module) activation -> Linear; the activation is chosen by ``kind``."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.fc = nn.Linear(FI, FO)
        self.out = nn.Linear(FO, 4)
        self.mod = {"relu": nn.ReLU(), "silu": nn.SiLU(), "mish": nn.Mish(), "selu": nn.SELU()}.get(kind)

    def forward(self, x):
        h = self.fc(x)
        k = self.kind
        if self.mod is not None:
            h = self.mod(h)
        elif k == "leaky":
            h = F.leaky_relu(h, 0.2)
        elif k == "gelu":
            h = F.gelu(F.dropout(h, 0.1, self.training))  # pass-through ops before the activation
        elif k == "tensor_relu":
            h = h.view(h.shape[0], -1).relu()
        elif k == "tanh":
            h = torch.tanh(h)
        elif k == "sigmoid":
            h = torch.sigmoid(h)
        return self.out(h)


RELU = calculate_gain("relu")
CASES = {
    # kind: (activation the report shows, scheme, expected std of fc.weight from the theory)
    "relu": ("relu", "kaiming", RELU / math.sqrt(FI)),
    "tensor_relu": ("relu", "kaiming", RELU / math.sqrt(FI)),
    "leaky": ("leaky_relu(0.2)", "kaiming", calculate_gain("leaky_relu", 0.2) / math.sqrt(FI)),
    "gelu": ("gelu", "kaiming", RELU / math.sqrt(FI)),
    "silu": ("silu", "kaiming", RELU / math.sqrt(FI)),
    "mish": ("mish", "kaiming", RELU / math.sqrt(FI)),
    "tanh": ("tanh", "xavier", calculate_gain("tanh") * math.sqrt(2 / (FI + FO))),
    "sigmoid": ("sigmoid", "xavier", calculate_gain("sigmoid") * math.sqrt(2 / (FI + FO))),
    "none": ("none", "xavier", math.sqrt(2 / (FI + FO))),
    "selu": ("selu", "lecun", 1 / math.sqrt(FI)),
}


@pytest.mark.parametrize("distribution", ["normal", "uniform"])
@pytest.mark.parametrize("kind", sorted(CASES))
def test_auto_scheme_matches_theory(kind, distribution):
    torch.manual_seed(0)
    model = _Act(kind)
    report = init_weights(model, example_input=torch.randn(2, FI), distribution=distribution)
    act, scheme, std = CASES[kind]
    row = report["fc"]
    assert (row.activation, row.scheme, row.fan_in, row.fan_out) == (act, scheme, FI, FO)
    assert model.fc.weight.std().item() == pytest.approx(std, rel=0.02)
    assert model.fc.weight.mean().abs().item() < 0.05 * std
    assert torch.count_nonzero(model.fc.bias) == 0
    assert report["out"].activation == "none" and report["out"].scheme == "xavier"


@pytest.mark.parametrize(
    "scheme,expected",
    [
        ("kaiming", RELU / math.sqrt(FI)),
        ("xavier", math.sqrt(2 / (FI + FO))),  # gain 1 for ReLU: the "wrong" init of the depth experiment
        ("lecun", 1 / math.sqrt(FI)),
        ("normal", 0.01),
        ("trunc_normal", 0.02 * math.sqrt(_trunc_var())),
    ],
)
def test_forced_schemes_match_theory(scheme, expected):
    torch.manual_seed(0)
    model = _Act("relu")
    report = init_weights(model, scheme, example_input=torch.randn(2, FI))
    assert report["fc"].scheme == scheme
    assert model.fc.weight.std().item() == pytest.approx(expected, rel=0.02)
    if scheme == "trunc_normal":
        assert model.fc.weight.abs().max().item() <= 0.04 + 1e-7


def test_orthogonal_uses_the_activation_gain():
    lin = nn.Sequential(nn.Linear(64, 64), nn.ReLU())
    init_weights(lin, "orthogonal", example_input=torch.randn(2, 64))
    w = lin[0].weight
    torch.testing.assert_close(w @ w.T, RELU**2 * torch.eye(64), atol=1e-4, rtol=0)


def test_conv_embedding_recurrent_attention_and_norms():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(50, 32, padding_idx=0)
            self.gru = nn.GRU(32, 32, batch_first=True)
            self.q, self.k, self.v = nn.Linear(32, 32), nn.Linear(32, 32), nn.Linear(32, 32)
            self.mha = nn.MultiheadAttention(32, 4, batch_first=True)
            self.ln = nn.LayerNorm(32)
            self.conv = nn.Conv1d(32, 64, 5, padding=2)
            self.bn = nn.BatchNorm1d(64)
            self.frozen = FrozenBatchNorm(64)

        def forward(self, tok):
            h, _ = self.gru(self.emb(tok))
            h = F.scaled_dot_product_attention(self.q(h), self.k(h), self.v(h))
            h = self.ln(self.mha(h, h, h)[0])
            return self.frozen(F.relu(self.bn(self.conv(h.transpose(1, 2)))))

    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        net.ln.weight.fill_(3.0)
        net.bn.running_mean.fill_(5.0)
        net.frozen.running_mean.fill_(7.0)
    report = init_weights(net, example_input=torch.randint(0, 50, (2, 7)))
    assert report["emb"].scheme == "trunc_normal" and torch.count_nonzero(net.emb.weight[0]) == 0
    assert net.emb.weight[1:].std().item() == pytest.approx(0.02 * math.sqrt(_trunc_var()), rel=0.1)
    for name in ("q", "k", "v"):
        assert (report[name].activation, report[name].scheme) == ("attention", "trunc_normal")
    assert (
        report["mha.in_proj_weight"].scheme == "trunc_normal"
        and report["mha.out_proj.weight"].scheme == "trunc_normal"
    )
    assert torch.count_nonzero(net.mha.in_proj_bias) == 0
    # GRU: weight_hh orthogonal per gate, weight_ih Xavier per gate, biases 0
    assert report["gru.weight_hh_l0"].scheme == "orthogonal"
    for w in net.gru.weight_hh_l0.chunk(3, 0):
        torch.testing.assert_close(w @ w.T, torch.eye(32), atol=1e-4, rtol=0)
    assert report["gru.weight_ih_l0"].scheme == "xavier" and torch.count_nonzero(net.gru.bias_hh_l0) == 0
    # conv: fan_in = C_in * kernel; ReLU follows after a BatchNorm
    assert (report["conv"].activation, report["conv"].scheme, report["conv"].fan_in) == (
        "relu",
        "kaiming",
        32 * 5,
    )
    assert net.conv.weight.std().item() == pytest.approx(RELU / math.sqrt(160), rel=0.05)
    # norms start at 1/0 with fresh statistics; a frozen BN is left alone
    assert torch.all(net.ln.weight == 1) and torch.all(net.bn.running_mean == 0)
    assert torch.all(net.frozen.running_mean == 7.0) and report["frozen"].scheme == "keep (frozen)"


def test_execution_order_beats_registration_order():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.act = nn.Tanh()  # registered right after fc1 ...
            self.fc1 = nn.Linear(8, 8)
            self.fc2 = nn.Linear(8, 8)

        def forward(self, x):  # ... but it follows fc2; fc1 is followed by a functional GELU
            return self.act(self.fc2(F.gelu(self.fc1(x))))

    report = init_weights(Net(), example_input=torch.randn(2, 8))
    assert report.method == "execution trace"
    assert report["fc1"].activation == "gelu" and report["fc2"].activation == "tanh"
    with pytest.warns(UserWarning, match="registration order"):
        fallback = init_weights(nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.1), nn.ReLU(), nn.Linear(4, 2)))
    assert fallback.method == "registration order" and fallback["0"].activation == "relu"


def test_overrides_by_module_then_pattern_then_type():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.seq = nn.Sequential(*(m for _ in range(3) for m in (nn.Linear(64, 64), nn.ReLU())))
            self.emb = nn.Embedding(5, 64)  # never runs in forward: still initialized, by type

        def forward(self, x):
            return self.seq(x)

    net = Net()
    calls = []

    def custom(mod):
        calls.append(mod)
        nn.init.constant_(mod.weight, 0.5)

    emb = net.emb.weight.detach().clone()
    report = init_weights(
        net,
        overrides={nn.Linear: "normal", "seq.[24]": "lecun", net.seq[4]: custom, nn.Embedding: "keep"},
        example_input=torch.randn(2, 64),
    )
    got = [report[n].scheme for n in ("seq.0", "seq.2", "seq.4", "emb")]
    assert got == ["normal", "lecun", "custom: custom", "keep"]
    assert calls == [net.seq[4]] and torch.all(net.seq[4].weight == 0.5)
    assert torch.equal(net.emb.weight, emb)
    assert net.seq[0].weight.std().item() == pytest.approx(0.01, rel=0.1)
    assert net.seq[2].weight.std().item() == pytest.approx(1 / 8, rel=0.1)


def test_zero_init_residual_matches_torchvision():
    import torchvision

    ref = torchvision.models.resnet18(weights=None, zero_init_residual=True)
    expected = {n for n, m in ref.named_modules() if isinstance(m, nn.BatchNorm2d) and not m.weight.any()}
    model = torchvision.models.resnet18(weights=None)
    report = init_weights(model, example_input=torch.randn(1, 3, 32, 32), zero_init_residual=True)
    zeroed = {n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and not m.weight.any()}
    assert zeroed == expected and len(zeroed) == 8  # bn2 of each block, not the downsample BNs
    assert {r.name for r in report if r.scheme == "zeros (residual)"} == expected
    assert report["conv1"].activation == "relu" and report["fc"].activation == "none"
    assert "layer1.0.conv2" in str(report)


def test_init_weights_bad_input():
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    with pytest.raises(ValueError, match="`scheme` must be one of .* got 'he'"):
        init_weights(net, "he")
    with pytest.raises(ValueError, match="`distribution`"):
        init_weights(net, distribution="gaussian", example_input=torch.randn(2, 4))
    with pytest.raises(ValueError, match="`overrides` value for '0' must be one of"):
        init_weights(net, overrides={"0": "he"})
    with pytest.raises(ValueError, match="`overrides` name pattern 'encoder.*' matches no layer"):
        init_weights(net, overrides={"encoder.*": "xavier"})
    with pytest.raises(ValueError, match="`overrides` module Linear is not part of the model"):
        init_weights(net, overrides={nn.Linear(2, 2): "xavier"})
    with pytest.raises(ValueError, match="`zero_init_residual=True` needs `example_input`"):
        init_weights(net, zero_init_residual=True)
    with pytest.raises(ValueError, match=r"`example_input` \(\(2, 3\)\) does not run through Sequential"):
        init_weights(net, example_input=torch.randn(2, 3))
    with pytest.raises(ValueError, match="`trunc_std`"):
        init_weights(net, trunc_std=0.0)


# ------------------------------------------------------------------------------------------------ LSUV
def _deep_tanh(depth: int = 8, width: int = 64) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(16, width), nn.Tanh()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(width, 3))


def test_lsuv_reaches_tolerance_and_leaves_no_trace():
    torch.manual_seed(0)
    net = _deep_tanh().double()
    net.train()
    net[2].eval()  # a mixed mode must come back as it was
    modes = [m.training for m in net.modules()]
    x = torch.randn(128, 16)  # float32 batch: cast to the model's float64
    report = lsuv_init(net, x, tol=0.02)
    assert report.converged and len(report.rows) == 9
    with torch.no_grad():
        h = x.double()
        for m in net:
            h = m(h)
            if isinstance(m, nn.Linear):
                assert abs(h.std().item() - 1.0) <= 0.02
    assert [m.training for m in net.modules()] == modes
    assert all(p.dtype == torch.float64 and p.device.type == "cpu" for p in net.parameters())
    assert all(not m._forward_hooks for m in net.modules())
    # re-entrant: a second call on a conv net works and converges too
    cnn = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(32, 2)
    )
    assert lsuv_init(cnn, torch.randn(16, 3, 6, 6), target_std=0.5, tol=0.05).converged
    assert lsuv_init(net, x, tol=0.02).converged


def test_lsuv_bad_input():
    net = _deep_tanh(2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match=r"`batch` of shape \(8, 5\) does not fit Sequential"):
        lsuv_init(net, torch.randn(8, 5))
    with pytest.raises(ValueError, match="at least 2 samples"):
        lsuv_init(net, torch.randn(1, 16))
    with pytest.raises(ValueError, match="found no Linear/Conv layers"):
        lsuv_init(nn.Sequential(nn.ReLU(), nn.LayerNorm(4)), torch.randn(4, 4))
    with pytest.raises(ValueError, match="`tol`"):
        lsuv_init(net, torch.randn(8, 16), tol=2.0)
    assert all(not m._forward_hooks for m in net.modules())
    assert all(
        torch.equal(v, before[k]) for k, v in net.state_dict().items()
    )  # errors leave the model as it was


# ------------------------------------------------------------------------------------------------ WeightInit
class _Net(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(6, 32)
        self.bn = nn.BatchNorm1d(
            32
        )  # its report row has empty (None) numeric cells: W&B tables must accept it
        self.b = nn.Linear(32, 1)
        self.example_input_array = torch.randn(4, 6)

    def forward(self, x):
        return self.b(F.silu(self.bn(self.a(x))))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.mse_loss(self(x), y)
        self.log("loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    return DataLoader(
        TensorDataset(torch.randn(32, 6, generator=g), torch.randn(32, 1, generator=g)), batch_size=8
    )


def test_weight_init_runs_once_logs_to_wandb_and_survives_resume(tmp_path, monkeypatch):
    from lightning.pytorch.loggers import WandbLogger

    from lightning_bestpractices.wandb_offline import find_offline_runs, read_offline_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    torch.manual_seed(0)
    model, cb = _Net(), WeightInit("auto", seed=123)
    logger = WandbLogger(project="init-test", save_dir=str(tmp_path), offline=True)
    kw = dict(accelerator="cpu", enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1)
    trainer = L.Trainer(max_epochs=1, logger=logger, default_root_dir=tmp_path, callbacks=[cb], **kw)
    trainer.fit(model, _loader())
    assert cb.done and cb.report["a"].scheme == "kaiming" and cb.report["a"].activation == "silu"
    logger.experiment.finish()

    run = read_offline_run(find_offline_runs(tmp_path)[0], wait=120)
    tables = sorted(run.files_dir.glob("media/table/init/report_*.table.json"))  # written by wandb itself
    assert len(tables) == 1
    data = json.loads(tables[0].read_text())
    assert data["columns"][:4] == ["layer", "type", "activation", "scheme"]
    assert [r[:4] for r in data["data"]] == [
        ["a", "Linear", "silu", "kaiming"],
        ["bn", "BatchNorm1d", "-", "ones/zeros"],
        ["b", "Linear", "none", "xavier"],
    ]
    assert data["data"][0][4:6] == [6, 32] and data["data"][1][4:] == [None, None, None]

    # a second fit with the same callback does not re-initialize the trained weights
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    cb.report = None
    trainer2 = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, **kw)
    trainer2.fit(model, [])  # no batches: weights must stay exactly as they were
    assert cb.report is None
    for k, v in model.state_dict().items():
        assert torch.equal(v, weights[k])

    # resume: a fresh callback restores done=True from the checkpoint and skips
    ckpt = tmp_path / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    assert torch.load(ckpt, weights_only=False)["callbacks"][cb.state_key] == {"done": True}
    fresh_model, fresh_cb = _Net(), WeightInit("auto")
    seen = {}

    class Probe(L.Callback):
        def on_fit_start(self, trainer, pl_module):
            seen.update({k: v.clone() for k, v in pl_module.state_dict().items()})

    L.Trainer(
        max_epochs=2, logger=False, enable_checkpointing=False, callbacks=[fresh_cb, Probe()], **kw
    ).fit(fresh_model, _loader(), ckpt_path=ckpt)
    assert fresh_cb.done and fresh_cb.report is None
    for k, v in seen.items():
        assert torch.equal(v, weights[k])


def test_weight_init_lsuv_from_first_training_batch():
    torch.manual_seed(0)
    model = _Net()
    model.example_input_array = None
    cb = WeightInit("lsuv", lsuv_kwargs={"tol": 0.05})
    trainer = L.Trainer(
        max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[cb],
    )  # fmt: skip
    trainer.fit(model, _loader())
    assert cb.report.converged and [r[0] for r in cb.report.rows] == ["a", "b"]


def test_weight_init_bad_arguments():
    with pytest.raises(ValueError, match="`scheme` must be one of .* got 'he'"):
        WeightInit("he")
    with pytest.raises(ValueError, match="`lsuv_kwargs` keys"):
        WeightInit("lsuv", lsuv_kwargs={"tolerance": 0.1})
    with pytest.raises(ValueError, match="`seed`"):
        WeightInit(seed="1")
    with pytest.raises(ValueError, match="`distribution`"):
        WeightInit(distribution="gauss")
    with pytest.raises(ValueError, match="`overrides` value for 'head' must be one of"):
        WeightInit(overrides={"head": "he"})


def test_ddp_ranks_end_identical_and_resume_does_not_reinit(run_script, tmp_path):
    run_script("ddp_initialization.py", "--out", str(tmp_path), timeout=300)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    params = [k for k in r0["before"] if "running" not in k and "num_batches" not in k]
    # the per-rank seeds really gave different weights before WeightInit ...
    assert any(not torch.equal(r0["before"][k], r1["before"][k]) for k in params)
    # ... and every rank has the same weights right after it, and after training
    for k in r0["after_init"]:
        assert torch.equal(r0["after_init"][k], r1["after_init"][k]), k
    for k in params:
        assert torch.equal(r0["after_fit"][k], r1["after_fit"][k]), k
    # the init is the one the report describes (ReLU after a BN -> Kaiming, tanh -> Xavier)
    assert [row[:4] for row in r0["report"] if row[1] == "Linear"] == [
        ["a", "Linear", "relu", "kaiming"], ["b", "Linear", "tanh", "xavier"], ["c", "Linear", "none", "xavier"],
    ]  # fmt: skip
    assert r1["report"] is None  # rank 1 received the weights, it did not initialize
    # resuming: WeightInit restored done=True and did not touch the checkpointed (rank-0) weights
    assert r0["done"] == (True, True) and r1["done"] == (True, True)
    assert r0["resumed_report"] is None and r1["resumed_report"] is None
    for r in (r0, r1):
        for k in r0["after_fit"]:
            assert torch.equal(r["resumed_start"][k], r0["after_fit"][k]), k


def test_two_weight_inits_save_and_restore_separately(tmp_path):
    """Resuming a run that had one WeightInit into a Trainer with a second one: the first restores done=True and
    skips, the second (its own state_key) is new and initializes. One shared key would skip both."""
    kw = dict(accelerator="cpu", enable_progress_bar=False, enable_model_summary=False, logger=False,
              default_root_dir=tmp_path)  # fmt: skip
    first = WeightInit("auto", seed=1, log_key="init/a")
    trainer = L.Trainer(max_epochs=1, callbacks=[first], **kw)
    trainer.fit(_Net(), _loader())
    ckpt = tmp_path / "one.ckpt"
    trainer.save_checkpoint(ckpt)

    restored, added = WeightInit("auto", seed=1, log_key="init/a"), WeightInit("kaiming", seed=2, log_key="init/b")
    assert restored.state_key != added.state_key
    resumed = L.Trainer(max_epochs=2, callbacks=[restored, added], **kw)
    resumed.fit(_Net(), _loader(), ckpt_path=ckpt)
    assert restored.done and restored.report is None, "restored from its own entry: no second initialization"
    assert added.done and added.report is not None, "the new callback found no entry of its own and ran"
    saved = torch.load(tmp_path / "one.ckpt", weights_only=False)["callbacks"]
    assert [k for k in saved if k.startswith("WeightInit")] == [first.state_key]
