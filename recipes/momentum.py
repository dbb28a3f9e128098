"""Momentum vs plain gradient descent: optimizer steps until the loss falls below a threshold (seed 004, momentum).

    python recipes/momentum.py fit                                    # GD on a 2-D quadratic, condition number 1000, CPU
    python recipes/momentum.py fit --model.optim.optimizer=momentum   # the same with heavy-ball momentum 0.9
    python recipes/momentum.py fit --problem=moons                    # full-batch GD on two moons
    python recipes/momentum.py fit --trainer.devices=2 --trainer.strategy=ddp
    python recipes/momentum.py fit --trainer.precision=bf16-mixed
    python recipes/momentum.py fit --print_config > my.yaml && python recipes/momentum.py fit --config my.yaml
    python -m lightning_bestpractices.sweep recipes/sweeps/momentum_quadratic.yaml   # gd vs momentum, one plot
    python -m lightning_bestpractices.sweep recipes/sweeps/momentum_moons.yaml

The seed's claim: with a constant gradient, momentum ``beta`` reaches a terminal velocity of ``lr / (1 - beta)``
times the gradient, so ``beta = 0.9`` moves about 10x faster than plain gradient descent. Both problems train
full-batch (every step sees the whole loss, so GD is GD, not SGD) with torch's SGD, and
``measure.StepsToThreshold`` records the first optimizer step with the loss below ``threshold.threshold`` and
stops the run there.

* **Quadratic** (``QuadraticBowl``): ``f(x) = 1/2 sum_i lambda_i x_i^2`` with curvatures log-spaced from 1 down to
  ``1 / condition_number``. With ``lr = 1`` (= 1 / largest curvature) GD crawls along the flattest direction at a rate
  ``1 - lr * lambda_min`` per step; momentum's rate there is the spectral radius of the heavy-ball iteration. The
  recipe reports that theory next to the measurement: ``theory/velocity_factor`` (the seed's ``1 / (1 - beta)``),
  ``theory/rate`` (the slowest mode's per-step contraction) and ``theory/speedup_vs_gd`` (the ratio of the
  asymptotic step counts, GD over this run's optimizer, at the same LR). The ``loss_curve`` series is log10 of the
  loss per step.
* **Moons** (``--problem=moons``: ``recipes/configs/momentum_moons.yaml`` is the default config then): a small MLP classifier, loss = training BCE over all 800
  points. There is no closed-form rate; the reported theory is the seed's ``1 / (1 - beta)``.

Every hyperparameter, with its reason, is in ``recipes/configs/momentum.yaml`` and ``momentum_moons.yaml``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch

from lightning_bestpractices.cli import BestPracticesCLI
from lightning_bestpractices.errors import ArgumentError
from lightning_bestpractices.measure import StepsToThreshold
from lightning_bestpractices.optim.mixin import OptimConfig, OptimizerMixin

_QUADRATIC_OPTIM = {"optimizer": "sgd", "lr": 1.0, "weight_decay": 0.0, "schedule": None}


def curvatures(dim: int, condition_number: float) -> torch.Tensor:
    """Eigenvalues of the quadratic: ``dim`` values log-spaced from 1 down to ``1 / condition_number``."""
    return torch.logspace(0.0, -math.log10(condition_number), dim, dtype=torch.float64)


def heavy_ball_rate(lr: float, momentum: float, curvature: float) -> float:
    """Per-step contraction (spectral radius) of heavy-ball GD on ``1/2 * curvature * x^2``; ``momentum=0``: GD.

    The iteration ``x' = x - lr * c * x + beta * (x - x_prev)`` is linear with characteristic polynomial
    ``z^2 - (1 + beta - lr * c) z + beta``; the error shrinks like ``max |z|`` per step.

    Examples:
        >>> round(heavy_ball_rate(1.0, 0.0, 0.001), 6)        # plain GD: 1 - lr * c
        0.999
        >>> round(heavy_ball_rate(1.0, 0.9, 0.001), 4)        # momentum 0.9 on the same direction
        0.9889
    """
    b = 1.0 + momentum - lr * curvature
    disc = b * b - 4.0 * momentum
    if disc >= 0:
        root = math.sqrt(disc)
        return max(abs((b + root) / 2), abs((b - root) / 2))
    return math.sqrt(momentum)  # complex pair: |z|^2 = beta


class _Ticks:
    """``n`` empty batches: the quadratic needs no data, only a step count per epoch."""

    def __init__(self, n: int) -> None:
        self.n, self.item = n, torch.zeros(1)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter([self.item] * self.n)


class QuadraticBowl(OptimizerMixin, L.LightningModule):
    """An ill-conditioned quadratic whose only parameter is the point: ``f(x) = 1/2 sum_i lambda_i x_i^2``.

    Each training step is one full gradient step (the loss is exact, no data). ``train_dataloader`` serves
    ``steps_per_epoch`` empty batches, so ``--trainer.max_steps`` sets the budget.

    Args:
        dim: number of coordinates (>= 2); curvatures are log-spaced from 1 to ``1 / condition_number``.
        condition_number: largest over smallest curvature (>= 1).
        start: every coordinate's starting value.
        optim: the optimizer config (default: torch SGD, ``lr = 1`` = 1 / largest curvature, no momentum).
        steps_per_epoch: empty batches per epoch.
    """

    def __init__(
        self,
        dim: int = 2,
        condition_number: float = 1000.0,
        start: float = 1.0,
        optim: OptimConfig | dict[str, Any] | None = None,
        steps_per_epoch: int = 1000,
    ) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2:
            raise ArgumentError(f"`dim` must be an int >= 2, got {dim!r}")
        if not (isinstance(condition_number, (int, float)) and condition_number >= 1):
            raise ArgumentError(f"`condition_number` must be >= 1, got {condition_number!r}")
        if steps_per_epoch < 1:
            raise ArgumentError(f"`steps_per_epoch` must be >= 1, got {steps_per_epoch!r}")
        self.save_hyperparameters()
        config = dict(_QUADRATIC_OPTIM)
        if isinstance(optim, OptimConfig):
            config = {f: getattr(optim, f) for f in optim.__dataclass_fields__}
        elif optim is not None:
            config.update(optim)
        self.optim = OptimConfig.from_any(config)
        self.point = torch.nn.Parameter(torch.full((dim,), float(start)))
        self.register_buffer("curvature", curvatures(dim, condition_number).float())

    def loss(self) -> torch.Tensor:
        p = self.point.float()
        return 0.5 * (self.curvature * p * p).sum()

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self.loss()
        self.log("train/loss", loss, on_step=True, on_epoch=False)
        return loss

    def train_dataloader(self) -> _Ticks:
        return _Ticks(self.hparams.steps_per_epoch)

    def momentum(self) -> float:
        return _momentum_of(self.optim)

    def theory(self) -> dict[str, float]:
        """Rates of the slowest direction for this run's optimizer and for plain GD at the same LR."""
        lr, beta = float(self.optim.lr), self.momentum()
        rates = [heavy_ball_rate(lr, beta, float(c)) for c in self.curvature.double()]
        gd = [heavy_ball_rate(lr, 0.0, float(c)) for c in self.curvature.double()]
        rate, gd_rate = max(rates), max(gd)
        out = {"theory/velocity_factor": 1.0 / (1.0 - beta), "theory/rate": rate}
        if 0 < rate < 1 and 0 < gd_rate < 1:
            out["theory/speedup_vs_gd"] = math.log(rate) / math.log(gd_rate)  # GD steps / this run's steps
        return out


def _momentum_of(config: OptimConfig) -> float:
    from lightning_bestpractices.optim.factory import OPTIMIZERS

    entry = OPTIMIZERS.get(str(config.optimizer).lower())
    defaults = dict(entry.defaults) if entry is not None else {}
    return float({**defaults, **config.options}.get("momentum", 0.0))


class MomentumCLI(BestPracticesCLI):
    """The threshold callback is a config group (``--threshold.*``); after fit: steps, theory, loss curve."""

    def add_arguments_to_parser(self, parser) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_lightning_class_args(StepsToThreshold, "threshold")
        parser.add_argument("--problem", type=Literal["quadratic", "moons"], default="quadratic",
                            help="which default config the run starts from: configs/momentum.yaml (quadratic) "
                            "or configs/momentum_moons.yaml (moons); read before the config is parsed")

    def report(self) -> None:
        model = self.model
        cb = next(c for c in self.trainer.callbacks if isinstance(c, StepsToThreshold))
        metrics = dict(cb.metrics)
        metrics["steps_run"] = float(self.trainer.global_step)
        if isinstance(model, QuadraticBowl):
            metrics.update(model.theory())
        else:
            beta = _momentum_of(model.optim) if isinstance(getattr(model, "optim", None), OptimConfig) else 0.0
            metrics["theory/velocity_factor"] = 1.0 / (1.0 - beta)
        metrics["momentum"] = (model.momentum() if isinstance(model, QuadraticBowl)
                               else _momentum_of(model.optim))
        self.add_metrics(metrics)
        if cb.history:
            steps, losses = zip(*_thin(cb.history, 400))  # log scale: the slow phase spans decades
            self.add_series("loss_curve", x=list(steps), y=[math.log10(max(v, 1e-30)) for v in losses],
                            xlabel="optimizer step", ylabel="log10 training loss (full batch)")


def _thin(history: list[tuple[int, float]], n: int) -> list[tuple[int, float]]:
    """At most about ``n`` points of a curve, always keeping the last."""
    every = max(1, math.ceil(len(history) / n))
    kept = history[::every]
    return kept if kept[-1] == history[-1] else [*kept, history[-1]]


CONFIGS = {"quadratic": "momentum.yaml", "moons": "momentum_moons.yaml"}


def _problem(argv: list[str]) -> str:
    """``--problem`` picks the default config, so it is read from the command line before parsing."""
    problem = "quadratic"
    for i, arg in enumerate(argv):
        if arg.startswith("--problem="):
            problem = arg.split("=", 1)[1]
        elif arg == "--problem" and i + 1 < len(argv):
            problem = argv[i + 1]
    return problem if problem in CONFIGS else "quadratic"  # a bad value is reported by the parser


def main(args=None) -> MomentumCLI:
    problem = _problem(list(sys.argv[1:] if args is None else args))
    return MomentumCLI(L.LightningModule, None, subclass_mode_model=True, args=args,
                       default_config=Path(__file__).parent / "configs" / CONFIGS[problem])


if __name__ == "__main__":
    main()
