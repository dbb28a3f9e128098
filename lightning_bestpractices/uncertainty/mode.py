"""``mc_dropout_mode``: eval mode for the whole model except its stochastic modules, which draw seeded masks."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from torch import Tensor, nn

from lightning_bestpractices.errors import ArgumentError

from .rng import RowRandom
from .stochastic import SeededForward, _spec_for, check_rates, find_stochastic_modules, stochastic_registry

__all__ = ["MCState", "mc_dropout_mode"]


@dataclass
class MCState:
    """What :func:`mc_dropout_mode` yields: the active modules and the rows of the next pass."""

    seed: int
    modules: list[tuple[str, nn.Module]]
    unseeded: list[str]
    input_index: Tensor | None = None
    sample_index: Tensor | None = None

    def set_rows(self, input_index: Tensor, sample_index: Tensor) -> None:
        """Declare that the next forward runs ``len(sample_index)`` samples of these inputs, sample-major."""
        self.input_index, self.sample_index = input_index, sample_index


@contextlib.contextmanager
def mc_dropout_mode(model: nn.Module, seed: int = 0) -> Iterator[MCState]:
    """Put ``model`` in eval mode except its dropout-family modules, which draw seeded masks.

    Each module's ``training`` flag and ``forward`` are restored on exit, also when an error is raised.
    Raises ``ValueError`` when the model has no dropout-family module, or when one has a drop probability
    outside [0, 1] (named, with its value).

    Examples:
        >>> net = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.Dropout(0.5)).train()
        >>> with mc_dropout_mode(net) as mc:
        ...     [m.training for m in net]
        [False, False, True]
        >>> [m.training for m in net]
        [True, True, True]
    """
    modules = find_stochastic_modules(model)
    if not modules:
        raise ArgumentError(
            f"`model` ({type(model).__name__}) has no dropout-family module to switch on for MC dropout "
            f"(known: {sorted(c.__name__ for c in stochastic_registry())}). Use nn.Dropout modules instead of "
            "F.dropout calls, or add your class with `register_stochastic`."
        )
    check_rates(modules)
    state = MCState(seed=int(seed), modules=modules, unseeded=[])
    modes = {m: m.training for m in model.modules()}
    patched: list[nn.Module] = []
    try:
        model.eval()
        for index, (name, module) in enumerate(modules):
            module.train()
            _, fwd = _spec_for(module)
            if fwd is None:
                state.unseeded.append(name)
                continue
            if "forward" in module.__dict__:
                raise RuntimeError(f"module {name!r} already has an instance-level `forward`; cannot seed it")
            module.forward = _make_forward(module, fwd, state, index)
            patched.append(module)
        yield state
    finally:
        for module in patched:
            module.__dict__.pop("forward", None)
        for module, mode in modes.items():
            module.training = mode


def _make_forward(
    module: nn.Module, fwd: SeededForward, state: MCState, index: int
) -> Callable[[Tensor], Tensor]:
    def forward(x: Tensor) -> Tensor:
        if state.input_index is None or state.sample_index is None:
            raise RuntimeError("MC pass without rows: call `MCState.set_rows` before running the model")
        rng = RowRandom(state.seed, index, state.input_index.to(x.device), state.sample_index.to(x.device))
        return fwd(module, x, rng)

    return forward
