"""The transfer recipe in-process, tiny budget: model B's variants really freeze, unfreeze and start anew.

One run trains model A, then B from scratch, B head only (model A's layers copied and frozen) and B with gradual
unfreezing. Checked against model A's weights after the run. CPU / DDP / bf16 launches are the matrix test's.
"""

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import load_recipe  # noqa: E402

from lightning_bestpractices.normalization import FrozenBatchNorm  # noqa: E402

# SmallCNN has 4 layer groups (two conv blocks, the head's hidden and output layers); unfreezing at epochs 1 and 2
# of 3 unfreezes the two groups below the output layer and leaves the first conv block frozen
TINY = ["--trainer.max_epochs=2", "--trainer.logger=false", "--trainer.enable_progress_bar=false",
        "--trainer.accelerator=cpu", "--model.backbone=cnn", "--model_b.max_epochs=3", "--model_b.unfreeze_at=[1,2]",
        "--seed_everything=7"]  # fmt: skip


def _recipe():
    return load_recipe("transfer_digits")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("transfer") / "run"
    return _recipe().main(["fit", *TINY, f"--run_dir={folder}"]), folder


def _params(module: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in module.state_dict().items() if k.startswith(prefix)}


def test_head_only_keeps_model_a_layers_and_trains_a_new_head(run):
    cli, _ = run
    a, b = cli.model.net, cli.models_b["B_head"].net
    body = {k: v for k, v in a.state_dict().items() if not k.startswith("head.4")}
    for key, value in body.items():  # weights and BatchNorm statistics: untouched by 3 epochs of training
        assert torch.equal(value, b.state_dict()[key]), key
    assert all(isinstance(b.features[i], FrozenBatchNorm) for i in (1, 5))
    assert b.head[4].out_features == 1 and a.head[4].out_features == 8
    trainable = [n for n, p in b.named_parameters() if p.requires_grad]
    assert trainable == ["head.4.weight", "head.4.bias"]
    # the new head trained: it moved away from its initialization (the recipe's seed + 2 draw)
    torch.manual_seed(7 + 2)
    fresh = _recipe().replace_head(a, 1).head[4]
    assert not torch.equal(fresh.weight, b.head[4].weight)


def test_gradual_unfreezing_unfreezes_from_the_top(run):
    cli, _ = run
    a, task = cli.model.net, cli.models_b["B_unfreeze"]
    b = task.net
    for prefix in ("features.4", "head.1"):  # unfrozen at epochs 1 and 2: trained
        assert b.get_submodule(prefix).weight.requires_grad
        assert not torch.equal(a.get_submodule(prefix).weight, b.get_submodule(prefix).weight), prefix
    for key, value in _params(a, "features.0").items():  # never unfrozen: model A's weights
        assert torch.equal(value, b.state_dict()[key]), key
    assert not b.features[0].weight.requires_grad
    names = [g.get("name") for g in task.trainer.optimizers[0].param_groups]
    assert {"net.features.4", "net.head.1"} <= set(names), names  # joined as their own optimizer groups
    # same start as head only: both got the same new output layer, then took different paths
    torch.manual_seed(7 + 2)
    fresh = _recipe().replace_head(a, 1).head[4]
    assert fresh.weight.shape == b.head[4].weight.shape


def test_scratch_is_a_new_network_and_metrics_are_reported(run):
    cli, folder = run
    a, b = cli.model.net, cli.models_b["B_scratch"].net
    assert all(p.requires_grad for p in b.parameters())
    for key, value in _params(b, "features.0").items():
        assert not torch.equal(value, a.state_dict()[key]), key
    summary = json.loads((folder / "metrics.json").read_text())
    m = summary["metrics"]
    assert m["B_head/trainable_params"] == 129 < m["B_unfreeze/trainable_params"] < m["B_scratch/trainable_params"]
    for key in ("A/test_acc", "B_scratch/test_acc", "B_head/test_acc", "B_unfreeze/test_acc"):
        assert 0 <= m[key] <= 1, key
    series = summary["series"]["B/test_acc"]
    assert series["x"] == [0, 1, 2]
    assert series["y"] == [m["B_scratch/test_acc"], m["B_head/test_acc"], m["B_unfreeze/test_acc"]]
    assert len(summary["series"]["B_unfreeze/val_acc"]["y"]) == 3
    assert cli.datamodule.seed == 7  # the data split and model B's 20 images follow the run's seed
    assert (folder / "model_b_curves.png").stat().st_size > 1000
    assert len((folder / "results.csv").read_text().splitlines()) == 5


@pytest.mark.parametrize("args, message", [
    (["--data.held_out=[3,3]"], "`held_out` must be two different classes in 0..9, got [3, 3]"),
    (["--model_b.unfreeze_at=[4,25]"], "`unfreeze_at` epochs must be < max_epochs=20, got [4, 25]"),
    (["--model.weights=w.pth"], "`weights` applies to backbone 'resnet18'"),
])  # fmt: skip
def test_bad_settings_are_cli_errors(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        _recipe().main(["fit", "--trainer.logger=false", *args, f"--run_dir={tmp_path / 'run'}"])
    assert err.value.code == 2
    assert message in capsys.readouterr().err


def test_user_weights_for_a_torchvision_backbone(tmp_path):
    """resnet18 from a state-dict file (no download): model A starts from it with an 8-class output layer."""
    import torchvision

    weights = tmp_path / "resnet18.pth"
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), weights)
    model = _recipe().TransferClassifier(backbone="resnet18", weights=str(weights))
    adapter, net = model.net
    assert torch.equal(net.conv1.weight, reference.conv1.weight) and net.fc.out_features == 8
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 8)  # grayscale repeated to RGB inside the network
