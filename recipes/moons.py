"""Two moons: the "putting it all together" pipeline (Kaiming init, BatchNorm, dropout, AdamW, cosine schedule).

    python recipes/moons.py fit                                    # CPU, W&B offline, ~20 s
    python recipes/moons.py fit --trainer.devices=2 --trainer.strategy=ddp
    python recipes/moons.py fit --trainer.precision=bf16-mixed
    python recipes/moons.py fit --print_config > my.yaml && python recipes/moons.py fit --config my.yaml

Every hyperparameter, with its reason, is in ``recipes/configs/moons.yaml``. Expected: val/acc >= 0.95.
"""

from pathlib import Path

from lightning_bestpractices.cli import BestPracticesCLI
from lightning_bestpractices.data import MoonsDataModule
from lightning_bestpractices.tasks import Classifier


def main(args=None) -> BestPracticesCLI:
    return BestPracticesCLI(Classifier, MoonsDataModule, args=args,
                            default_config=Path(__file__).parent / "configs" / "moons.yaml")


if __name__ == "__main__":
    main()
