"""Transfer learning, the seed's model A / model B experiment, with honest statistics over seeds.

    python recipes/transfer_digits.py                                   # digits + MLP, 10 seeds, CPU, ~5 min
    python recipes/transfer_digits.py --seeds 20 --held-out 8 9 --out runs/transfer_89
    python recipes/transfer_digits.py --devices 2 --strategy ddp --precision bf16-mixed
    python recipes/transfer_digits.py --backbone resnet18 --weights DEFAULT --dataset FashionMNIST --data-dir ~/data \
        --download --held-out 0 2                                       # T-shirt vs pullover, ImageNet weights

Model A learns 8 classes; model B is a binary classifier for the 2 held-out classes trained on only 20 labelled
images. Per seed (model A, the 20 images, the new head and the data order all change with the seed), model B is
trained three ways: from scratch; reused layers frozen, head only; frozen, then gradual unfreezing
(``GradualUnfreezing``). The table reports mean +- std (and min/max) of the test accuracy over all seeds, with a
plot of every seed. The hyperparameters below were set once before running and are the same for every variant;
do not pick the seed, the held-out pair or the settings after looking at the results (see recipes/README.md).
"""

from __future__ import annotations

import argparse
import copy
import csv
import statistics
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import nn
from tqdm import tqdm

from lightning_bestpractices._logging import format_table
from lightning_bestpractices.data import DigitsDataModule, InMemoryDataModule, VisionDataModule
from lightning_bestpractices.finetuning import GradualUnfreezing, freeze_group, layer_groups
from lightning_bestpractices.models import MLP, SmallCNN
from lightning_bestpractices.tasks import Classifier

VARIANTS = ("scratch", "head only", "frozen -> gradual unfreezing")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument(
        "--seeds", type=int, default=10, help="independent repetitions (>= 10: one seed proves nothing)"
    )
    p.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed .. first-seed + seeds - 1")
    p.add_argument(
        "--held-out", type=int, nargs=2, default=[3, 5], help="model B's two classes; A learns the rest"
    )
    p.add_argument(
        "--labelled", type=int, default=20, help="labelled training images for model B (the seed: 20)"
    )
    p.add_argument("--backbone", choices=["mlp", "cnn", "resnet18"], default="mlp",
                   help="mlp: the seed's 3x100 dense net; cnn: SmallCNN; resnet18: torchvision")  # fmt: skip
    p.add_argument("--weights", default=None,
                   help="resnet18 only: 'DEFAULT' (torchvision download) or a state-dict file; then it is model A")  # fmt: skip
    p.add_argument("--dataset", choices=["digits", "FashionMNIST"], default="digits",
                   help="digits ship with scikit-learn; FashionMNIST needs --data-dir (and --download once)")  # fmt: skip
    p.add_argument("--data-dir", default="data", help="torchvision dataset root")
    p.add_argument("--download", action="store_true", help="let torchvision download the dataset")
    p.add_argument("--a-epochs", type=int, default=30, help="model A: enough epochs to converge on 8 classes")
    p.add_argument("--a-lr", type=float, default=1e-2, help="model A: AdamW LR, the task's default")
    p.add_argument(
        "--b-epochs", type=int, default=20, help="model B: 4 frozen + 16 fine-tuning epochs, as the seed"
    )
    p.add_argument(
        "--b-lr", type=float, default=1e-2, help="model B: head LR; lower groups get lr_factor powers"
    )
    p.add_argument("--b-batch-size", type=int, default=5, help="20 images -> 4 steps per epoch")
    p.add_argument("--unfreeze-at", type=int, nargs="+", default=[4, 8, 12],
                   help="epochs at which the next group from the top is unfrozen")  # fmt: skip
    p.add_argument(
        "--lr-factor", type=float, default=0.5, help="LR ratio between adjacent groups (discriminative)"
    )
    p.add_argument(
        "--lr-reduction", type=float, default=0.5, help="'reduce the LR when unfreezing' (the seed)"
    )
    p.add_argument("--freeze-bn-stats", action="store_true",
                   help="keep BatchNorm statistics frozen after unfreezing (5-image batches give noisy ones)")  # fmt: skip
    p.add_argument("--threads", type=int, default=1, help="torch threads per process: tiny models run fastest on 1")
    p.add_argument("--devices", type=int, default=1, help="CPU processes")
    p.add_argument("--strategy", default="auto", help="auto or ddp")
    p.add_argument("--precision", default="32-true", help="32-true or bf16-mixed")
    p.add_argument(
        "--out", type=Path, default=Path("runs/transfer_digits"), help="CSV, PNG and table go here"
    )
    p.add_argument("--wandb-mode", choices=["offline", "online", "disabled"], default="offline",
                   help="summary table and plot to W&B (offline by default)")  # fmt: skip
    args = p.parse_args(argv)
    if args.seeds < 1 or args.labelled < 2 or args.a_epochs < 1 or args.b_epochs < 2 or args.threads < 1:
        p.error(f"--seeds/--a-epochs/--threads >= 1, --labelled/--b-epochs >= 2, got {vars(args)}")
    if len(set(args.held_out)) != 2:
        p.error(f"--held-out must be two different classes, got {args.held_out}")
    if args.weights is not None and args.backbone != "resnet18":
        p.error(f"--weights applies to --backbone resnet18, got --backbone {args.backbone}")
    if any(e >= args.b_epochs for e in args.unfreeze_at):
        p.error(f"--unfreeze-at epochs must be < --b-epochs={args.b_epochs}, got {args.unfreeze_at}")
    return args


# --- models ------------------------------------------------------------------------------------------------------


class GrayToRGB(nn.Module):
    """Repeat a 1-channel image to 3 channels, for RGB-pretrained backbones on digits (no parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def _rgb(args: argparse.Namespace, net: nn.Module) -> nn.Module:
    # FashionMNIST is converted to RGB by the data module; the in-memory digits are converted here
    return nn.Sequential(GrayToRGB(), net) if args.dataset == "digits" else net


def make_net(args: argparse.Namespace, out_features: int) -> nn.Module:
    if args.backbone == "mlp":  # the seed's model: Flatten, 3 x (Dense 100, ReLU), output layer
        return nn.Sequential(nn.Flatten(), MLP(64 if args.dataset == "digits" else 784, [100, 100, 100],
                                               out_features, dropout=0.0, norm="none"))  # fmt: skip
    if args.backbone == "cnn":
        return SmallCNN(in_channels=1, num_classes=out_features, channels=(32, 64), dropout=0.0)
    import torchvision

    net = torchvision.models.resnet18(weights=None, num_classes=out_features)
    if args.weights is None:  # trained here as model A: grayscale input
        net.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
        return net
    return _rgb(args, net)  # same input as the pretrained model A


def load_pretrained_resnet(args: argparse.Namespace) -> nn.Module:
    """torchvision resnet18 with ImageNet ('DEFAULT', downloaded by torchvision) or user-supplied weights."""
    import torchvision

    if args.weights == "DEFAULT":
        net = torchvision.models.resnet18(weights=torchvision.models.ResNet18_Weights.DEFAULT)
    else:
        net = torchvision.models.resnet18(weights=None)
        net.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True))
    return _rgb(args, net)


def replace_head(net: nn.Module, out_features: int) -> nn.Module:
    """Copy ``net`` and replace its output layer (the last layer group, a Linear) by a fresh one."""
    net = copy.deepcopy(net)
    head = layer_groups(net)[-1].modules[-1]
    old = net.get_submodule(head)
    if not isinstance(old, nn.Linear):
        raise ValueError(f"the output layer {head!r} must be nn.Linear, got {type(old).__name__}")
    parent, _, leaf = head.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, leaf, nn.Linear(old.in_features, out_features))
    return net


# --- data ----------------------------------------------------------------------------------------------------------


def data_a(args: argparse.Namespace, seed: int) -> L.LightningDataModule:
    rest = [c for c in range(10) if c not in args.held_out]
    if args.dataset == "digits":
        return DigitsDataModule(batch_size=64, classes=rest, image=args.backbone != "mlp", seed=seed)
    return VisionDataModule("FashionMNIST", root=args.data_dir, download=args.download, batch_size=128,
                            classes=rest, seed=seed, **_vision_size(args))  # fmt: skip


def _vision_size(args: argparse.Namespace) -> dict:
    return {"channels": 3, "image_size": 64} if args.backbone == "resnet18" and args.weights else {}


def data_b(args: argparse.Namespace, seed: int) -> L.LightningDataModule:
    if args.dataset == "digits":
        return DigitsDataModule(batch_size=args.b_batch_size, classes=list(args.held_out), train_limit=args.labelled,
                                image=args.backbone != "mlp", test_fraction=0.4, seed=seed)  # fmt: skip
    vision = VisionDataModule("FashionMNIST", root=args.data_dir, download=args.download, val_size=1000,
                              classes=list(args.held_out), seed=seed, **_vision_size(args))  # fmt: skip
    vision.prepare_data()
    vision.setup("fit")

    def tensors(ds, n=None):
        idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n].tolist()
        xs, ys = zip(*(ds[i] for i in idx))
        return torch.stack([torch.as_tensor(x) for x in xs]), torch.as_tensor(ys)

    return InMemoryDataModule(train=tensors(vision.datasets["train"], args.labelled),
                              val=tensors(vision.datasets["val"]), test=tensors(vision.datasets["test"]),
                              batch_size=args.b_batch_size, seed=seed)  # fmt: skip


# --- training ------------------------------------------------------------------------------------------------------


def fit_and_test(args, net, data, num_classes, epochs, lr, callbacks=()) -> float:
    task = Classifier(net, num_classes=num_classes, lr=lr)
    trainer = L.Trainer(max_epochs=epochs, callbacks=list(callbacks), devices=args.devices, strategy=args.strategy,
                        precision=args.precision, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(task, data)
    return float(trainer.test(task, data, verbose=False)[0]["test/acc"])


def run_seed(args: argparse.Namespace, seed: int) -> dict[str, float]:
    L.seed_everything(seed, verbose=False)
    result = {}
    if args.backbone == "resnet18" and args.weights is not None:
        model_a = load_pretrained_resnet(args)  # model A is the pretrained network
    else:
        model_a = make_net(args, 8)
        result["model A (8 classes)"] = fit_and_test(
            args, model_a, data_a(args, seed), 8, args.a_epochs, args.a_lr
        )
    data = data_b(args, seed)

    L.seed_everything(seed + 1, verbose=False)
    result["scratch"] = fit_and_test(args, make_net(args, 1), data, 2, args.b_epochs, args.b_lr)

    L.seed_everything(seed + 2, verbose=False)
    net = replace_head(model_a, 1)
    for group in layer_groups(net)[:-1]:
        freeze_group(net, group)
    result["head only"] = fit_and_test(args, net, data, 2, args.b_epochs, args.b_lr)

    L.seed_everything(seed + 2, verbose=False)  # the same new head as "head only"
    unfreeze = GradualUnfreezing(unfreeze_at=args.unfreeze_at, lr_factor=args.lr_factor,
                                 lr_reduction=args.lr_reduction, freeze_bn_stats=args.freeze_bn_stats)  # fmt: skip
    result[VARIANTS[2]] = fit_and_test(
        args, replace_head(model_a, 1), data, 2, args.b_epochs, args.b_lr, [unfreeze]
    )
    return result


def summarize(results: list[dict[str, float]]) -> tuple[list[str], list[list]]:
    columns = ["model", "test acc mean", "std", "min", "max", "seeds"]
    rows = []
    for key in results[0]:
        accs = [r[key] for r in results]
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        rows.append([key, f"{statistics.mean(accs):.4f}", f"{std:.4f}", f"{min(accs):.4f}", f"{max(accs):.4f}",
                     len(accs)])  # fmt: skip
    return columns, rows


def plot(results: list[dict[str, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    xs = list(range(len(VARIANTS)))
    for r in results:  # one line per seed: the paired comparison is what matters
        ax.plot(xs, [r[v] for v in VARIANTS], color="0.75", lw=0.8, marker="o", ms=3)
    means = [statistics.mean(r[v] for r in results) for v in VARIANTS]
    stds = [statistics.stdev(r[v] for r in results) if len(results) > 1 else 0 for v in VARIANTS]
    ax.errorbar(xs, means, yerr=stds, color="C3", lw=2, capsize=6, marker="s", label="mean +- std")
    ax.set_xticks(xs, VARIANTS)
    ax.set_ylabel("model B test accuracy")
    ax.set_title(title)
    ax.legend()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    results = [run_seed(args, s) for s in tqdm(seeds, desc="seeds")]
    columns, rows = summarize(results)
    title = (
        f"{args.dataset} {args.held_out[0]} vs {args.held_out[1]}, {args.labelled} labelled, {args.backbone}"
    )
    table = format_table(columns, rows)
    if rank_zero_only.rank == 0:
        print(f"{title}, {args.seeds} seeds\n{table}")
        with (args.out / "results.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["seed", *results[0]])
            writer.writeheader()
            writer.writerows({"seed": s, **r} for s, r in zip(seeds, results))
        (args.out / "summary.txt").write_text(f"{title}, {args.seeds} seeds\n{table}\n")
        plot(results, args.out / "transfer_digits.png", title)
        if args.wandb_mode != "disabled":
            import wandb

            run = wandb.init(project="lightning-bestpractices", name="transfer_digits", mode=args.wandb_mode,
                             config={k: str(v) for k, v in vars(args).items()}, dir=str(args.out))  # fmt: skip
            run.log({"transfer/summary": wandb.Table(columns=columns, data=[[str(c) for c in r] for r in rows]),
                     "transfer/accuracy": wandb.Image(str(args.out / "transfer_digits.png"))})  # fmt: skip
            run.finish()
    return results


if __name__ == "__main__":
    main()
