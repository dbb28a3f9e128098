"""Which modules are stochastic, how to switch only them on, and counter-based (seeded) dropout masks.

What this adds over ``module.train()`` on every ``nn.Dropout`` (the usual MC-dropout recipe):

* only the dropout family is switched on (a registry, extendable with :func:`register_stochastic`); everything
  else, BatchNorm included, stays in eval, and every module's mode is restored on exit, also on error;
* masks come from a counter-based hash of ``(seed, input index, sample index, module index, element)``, computed
  with vectorised integer ops, instead of the global RNG over the whole tensor. The same input and sample get
  the same mask whatever the batch size, chunk size or number of processes, which is what makes MC predictions
  reproducible and lets the deterministic prefix of the network run once (see ``split.py``).
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import StochasticDepth

__all__ = [
    "RowRandom",
    "register_stochastic",
    "unregister_stochastic",
    "stochastic_registry",
    "find_stochastic_modules",
    "mc_dropout_mode",
    "counter_uniform_bits",
]

_MASK32 = 0xFFFFFFFF
_ALPHA = 1.7580993408473766  # SELU's -alpha * scale, as in torch's alpha_dropout

SeededForward = Callable[[nn.Module, Tensor, "RowRandom"], Tensor]


# ----------------------------------------------------------------------------------------------------------------
# counter-based random bits
# ----------------------------------------------------------------------------------------------------------------
def _mix32(x: Tensor) -> Tensor:
    """A bijective 32-bit integer mixer (xorshift-multiply, constants < 2**31 so int64 never overflows)."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x68E31DA5) & _MASK32
    return x ^ (x >> 16)


def _key(*parts: Tensor | int) -> Tensor | int:
    """Fold integers / int64 tensors into one 32-bit key (broadcasting)."""
    k: Tensor | int = 0x243F6A88
    for p in parts:
        lo = p & _MASK32
        hi = (p >> 32) & _MASK32
        k = _mix32(torch.as_tensor((k ^ lo) & _MASK32, dtype=torch.int64))
        k = _mix32((k ^ hi) & _MASK32)
    return k


def _mix32_(x: Tensor) -> Tensor:
    """In-place :func:`_mix32` on int64 values in ``[0, 2**32)``."""
    x.bitwise_xor_(x >> 16)
    x.mul_(0x7FEB352D).bitwise_and_(_MASK32)
    x.bitwise_xor_(x >> 15)
    x.mul_(0x68E31DA5).bitwise_and_(_MASK32)
    return x.bitwise_xor_(x >> 16)


def _mix32_i32_(x: Tensor) -> Tensor:
    """The same mixer on int32 storage (two's-complement wrap-around), with logical shifts: half the memory."""
    x.bitwise_xor_((x >> 16) & 0xFFFF)
    x.mul_(0x7FEB352D)
    x.bitwise_xor_((x >> 15) & 0x1FFFF)
    x.mul_(0x68E31DA5)
    return x.bitwise_xor_((x >> 16) & 0xFFFF)


def _int32_wraps() -> bool:
    """int32 multiplication wraps on every platform we know of; check once instead of trusting it."""
    probe = torch.arange(0, 2**32 - 1, 2**20 + 12345, dtype=torch.int64)
    ref = _mix32_(probe.clone())
    got = _mix32_i32_((probe - (probe >= 2**31).long() * 2**32).to(torch.int32)).long() & _MASK32
    return bool(torch.equal(ref, got))


_INT32_OK = _int32_wraps()


def counter_uniform_bits(row_keys: Tensor, numel: int) -> Tensor:
    """32-bit random integers, shape ``(len(row_keys), numel)``, a pure function of ``(row key, element index)``.

    Example:
        >>> keys = torch.tensor([1, 2, 1])
        >>> bits = counter_uniform_bits(keys, 4)
        >>> bool((bits[0] == bits[2]).all()), bool((bits[0] == bits[1]).all())
        (True, False)
    """
    elem = _mix32(torch.arange(numel, device=row_keys.device, dtype=torch.int64) ^ 0x13198A2E)
    return _mix32_(row_keys.view(-1, 1) ^ elem)


def counter_bits16(row_keys: Tensor, numel: int) -> Tensor:
    """16-bit random integers (int32, ``[0, 65536)``), shape ``(len(row_keys), numel)``: two per 32-bit hash.

    The hot path of the seeded dropout masks: one in-place mixing round per pair of elements, in int32 when the
    platform's int32 multiplication wraps (checked at import). Same values either way.
    """
    half = (numel + 1) // 2
    elem = _mix32(torch.arange(half, device=row_keys.device, dtype=torch.int64) ^ 0x13198A2E)
    if _INT32_OK:
        k = row_keys.view(-1, 1)
        k = (k - (k >= 2**31).long() * 2**32).to(torch.int32)
        e = (elem - (elem >= 2**31).long() * 2**32).to(torch.int32)
        h = _mix32_i32_(k ^ e)
        pair = torch.stack([h & 0xFFFF, (h >> 16) & 0xFFFF], -1)
    else:
        h = _mix32_(row_keys.view(-1, 1) ^ elem)
        pair = torch.stack([h & 0xFFFF, h >> 16], -1).to(torch.int32)
    return pair.view(len(row_keys), 2 * half)[:, :numel]


@dataclass
class RowRandom:
    """Random numbers for the rows of one stochastic module's input during an MC pass.

    Rows are laid out sample-major: row ``s * B + b`` is input ``input_index[b]`` under sample
    ``sample_index[s]``. Every value depends only on ``(seed, module index, input index, sample index,
    element index)``. A custom stochastic module's seeded forward (see :func:`register_stochastic`) asks for
    ``rng.keep_mask(shape, p, dtype)`` or ``rng.uniform(shape)`` instead of calling ``torch.rand``.
    """

    seed: int
    module_index: int
    input_index: Tensor
    sample_index: Tensor
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def rows(self) -> int:
        return len(self.input_index) * len(self.sample_index)

    def _row_keys(self, per_input: bool) -> Tensor:
        if per_input not in self._cache:
            n_in = len(self.input_index)
            inp = self.input_index if per_input else torch.full_like(self.input_index, -1)
            inputs = inp.repeat(len(self.sample_index))
            samples = self.sample_index.repeat_interleave(n_in)
            self._cache[per_input] = _key(self.seed, self.module_index, inputs, samples)
        return self._cache[per_input]

    def bits(self, shape: Sequence[int], per_input: bool = True) -> Tensor:
        """int64 tensor ``(rows, *shape)`` of 32-bit random integers; ``per_input=False`` shares them across inputs."""
        numel = math.prod(shape)
        return counter_uniform_bits(self._row_keys(per_input), numel).view(self.rows, *shape)

    def uniform(self, shape: Sequence[int], per_input: bool = True) -> Tensor:
        """float32 uniforms in ``[0, 1)``, shape ``(rows, *shape)``."""
        return (self.bits(shape, per_input) >> 8).to(torch.float32) * (1.0 / (1 << 24))

    def keep_mask(self, shape: Sequence[int], p: float, dtype: torch.dtype, per_input: bool = True) -> Tensor:
        """Bernoulli(1 - p) keep mask (0/1 in ``dtype``), shape ``(rows, *shape)``; ``p`` has 16-bit resolution."""
        threshold = min(int(round(p * 65536)), 65536)
        bits = counter_bits16(self._row_keys(per_input), math.prod(shape))
        return (bits >= threshold).to(dtype).view(self.rows, *shape)

    def check_rows(self, x: Tensor, module: nn.Module) -> None:
        if x.dim() == 0 or x.shape[0] != self.rows:
            raise RuntimeError(
                f"{type(module).__name__} got an input of shape {tuple(x.shape)} during MC dropout, but its first "
                f"dimension must be the (expanded) batch of {self.rows} rows. Modules that put the batch elsewhere "
                "(e.g. seq-first RNN code) need a custom seeded forward: see `register_stochastic`."
            )


# ----------------------------------------------------------------------------------------------------------------
# seeded forwards of the built-in dropout family (same maths as torch / torchvision, different RNG)
# ----------------------------------------------------------------------------------------------------------------
def _channel_shape(x: Tensor) -> tuple[int, ...]:
    return (x.shape[1],) + (1,) * (x.dim() - 2) if x.dim() >= 3 else tuple(x.shape[1:])


def _dropout(module: nn.Module, x: Tensor, rng: RowRandom, channel: bool = False) -> Tensor:
    p = float(module.p)
    if p == 0.0:
        return x
    rng.check_rows(x, module)
    if p == 1.0:
        return x * 0.0
    keep = rng.keep_mask(_channel_shape(x) if channel else x.shape[1:], p, x.dtype)
    return x * keep.mul_(1.0 / (1.0 - p))


def _alpha_dropout(module: nn.Module, x: Tensor, rng: RowRandom, channel: bool = False) -> Tensor:
    p = float(module.p)
    if p == 0.0:
        return x
    rng.check_rows(x, module)
    if p == 1.0:
        return x * 0.0
    keep = rng.keep_mask(_channel_shape(x) if channel else x.shape[1:], p, x.dtype)
    a = 1.0 / math.sqrt((_ALPHA * _ALPHA * p + 1) * (1 - p))
    return x * (keep * a) + (keep - 1) * (_ALPHA * a) + _ALPHA * a * p


def _stochastic_depth(module: StochasticDepth, x: Tensor, rng: RowRandom) -> Tensor:
    p = float(module.p)
    if p == 0.0:
        return x
    rng.check_rows(x, module)
    keep = rng.keep_mask((1,) * (x.dim() - 1), p, x.dtype, per_input=module.mode == "row")
    return x * (keep / (1.0 - p)) if p < 1.0 else x * keep


_REGISTRY: dict[type, SeededForward | None] = {
    nn.Dropout: _dropout,
    nn.Dropout1d: lambda m, x, r: _dropout(m, x, r, channel=True),
    nn.Dropout2d: lambda m, x, r: _dropout(m, x, r, channel=True),
    nn.Dropout3d: lambda m, x, r: _dropout(m, x, r, channel=True),
    nn.AlphaDropout: _alpha_dropout,
    nn.FeatureAlphaDropout: lambda m, x, r: _alpha_dropout(m, x, r, channel=True),
    StochasticDepth: _stochastic_depth,
}


def register_stochastic(cls: type, forward: SeededForward | None = None) -> type:
    """Add ``cls`` to the modules that MC dropout switches on (usable as a class decorator).

    ``forward(module, x, rng)`` is the seeded forward used during MC passes; draw randomness from ``rng``
    (a :class:`RowRandom`) so masks are reproducible per input and sample. With ``forward=None`` the class's own
    ``mc_forward(x, rng)`` method is used if it has one, else the module is simply put in train mode and draws
    from the global RNG (then results depend on batch and chunk sizes; a warning says so once).

    Example:
        >>> class MyDrop(nn.Module):
        ...     def __init__(self, p=0.5):
        ...         super().__init__()
        ...         self.p = p
        ...     def mc_forward(self, x, rng):
        ...         return x * rng.keep_mask(x.shape[1:], self.p, x.dtype) / (1 - self.p)
        >>> _ = register_stochastic(MyDrop)
        >>> MyDrop in stochastic_registry()
        True
        >>> unregister_stochastic(MyDrop)
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"`cls` must be an nn.Module subclass, got {cls!r}")
    if forward is not None and not callable(forward):
        raise TypeError(f"`forward` must be callable or None, got {forward!r}")
    _REGISTRY[cls] = forward
    return cls


def unregister_stochastic(cls: type) -> None:
    """Remove a class added with :func:`register_stochastic`."""
    if cls not in _REGISTRY:
        raise KeyError(f"`cls` {cls!r} is not registered")
    del _REGISTRY[cls]


def stochastic_registry() -> dict[type, SeededForward | None]:
    """A copy of the registry: class -> seeded forward (``None``: train mode, global RNG)."""
    _register_package_modules()
    return dict(_REGISTRY)


_LOOKED_UP: list[bool] = []


def _register_package_modules() -> None:
    """Our own DropPath / DropConnect (``lightning_bestpractices.regularization``) join when that module exists."""
    if _LOOKED_UP:
        return
    _LOOKED_UP.append(True)
    try:
        from lightning_bestpractices import regularization  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - optional sibling module
        return
    for name in ("DropPath", "DropConnect"):
        cls = getattr(regularization, name, None)
        if isinstance(cls, type) and issubclass(cls, nn.Module) and cls not in _REGISTRY:
            _REGISTRY[cls] = None


def _spec_for(module: nn.Module) -> tuple[bool, SeededForward | None]:
    for cls in type(module).__mro__:
        if cls in _REGISTRY:
            fwd = _REGISTRY[cls]
            if fwd is None and hasattr(module, "mc_forward"):
                return True, lambda m, x, r: m.mc_forward(x, r)
            return True, fwd
    return False, None


def find_stochastic_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(qualified name, module)`` of every dropout-family module, in ``model.modules()`` order.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.1), nn.BatchNorm1d(4), nn.AlphaDropout(0.2))
        >>> [name for name, _ in find_stochastic_modules(net)]
        ['1', '3']
    """
    _register_package_modules()
    return [(n, m) for n, m in model.named_modules() if _spec_for(m)[0]]


# ----------------------------------------------------------------------------------------------------------------
# F.dropout detection
# ----------------------------------------------------------------------------------------------------------------
_FUNCTIONAL_DROPOUTS = (
    "dropout",
    "dropout1d",
    "dropout2d",
    "dropout3d",
    "alpha_dropout",
    "feature_alpha_dropout",
)
_PROBED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def count_functional_dropout_calls(model: nn.Module, x: Tensor) -> int:
    """Run ``model`` once on ``x[:1]`` in eval mode and count ``F.dropout``-family calls made outside modules.

    These calls cannot be switched on by MC dropout (their ``training`` flag comes from the caller), so
    :func:`~lightning_bestpractices.uncertainty.mc_predict` fails loudly (no dropout module) or warns (some).
    The result is cached per model.
    """
    if model in _PROBED:
        return _PROBED[model]
    counter = [0, 0]  # calls counted, depth inside a registered module's own forward
    originals = {name: getattr(F, name) for name in _FUNCTIONAL_DROPOUTS}

    def _wrap(fn: Callable) -> Callable:
        def counted(*args, **kwargs):
            if not counter[1]:
                counter[0] += 1
            return fn(*args, **kwargs)

        return counted

    mods = [m for _, m in find_stochastic_modules(model)]
    modes = {m: m.training for m in model.modules()}
    try:
        for name, fn in originals.items():
            setattr(F, name, _wrap(fn))
        for m in mods:  # their own F.dropout calls are not "functional-only" dropout
            m.forward = _uncounted(m, counter)  # its own eval forward (DropConnect changes the shape)
        model.eval()
        with torch.no_grad():
            model(x[:1])
    finally:
        for name, fn in originals.items():
            setattr(F, name, fn)
        for m in mods:
            m.__dict__.pop("forward", None)
        for m, mode in modes.items():
            m.training = mode
    _PROBED[model] = counter[0]
    return counter[0]


def _uncounted(module: nn.Module, counter: list[int]) -> Callable:
    def forward(*args, **kwargs):
        counter[1] += 1
        try:
            return type(module).forward(module, *args, **kwargs)
        finally:
            counter[1] -= 1

    return forward


# ----------------------------------------------------------------------------------------------------------------
# the context manager
# ----------------------------------------------------------------------------------------------------------------
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
    Raises ``ValueError`` when the model has no dropout-family module.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.Dropout(0.5)).train()
        >>> with mc_dropout_mode(net) as mc:
        ...     [m.training for m in net]
        [False, False, True]
        >>> [m.training for m in net]
        [True, True, True]
    """
    modules = find_stochastic_modules(model)
    if not modules:
        raise ValueError(
            f"`model` ({type(model).__name__}) has no dropout-family module to switch on for MC dropout "
            f"(known: {sorted(c.__name__ for c in stochastic_registry())}). Use nn.Dropout modules instead of "
            "F.dropout calls, or add your class with `register_stochastic`."
        )
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
