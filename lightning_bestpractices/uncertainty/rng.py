"""Counter-based random numbers for seeded dropout masks (pure torch).

Masks come from a counter-based hash of ``(seed, module index, input index, sample index, element)``, computed
with vectorised integer ops, instead of the global RNG over the whole tensor. The same input and sample get the
same mask whatever the batch size, chunk size or number of processes, which is what makes MC predictions
reproducible and lets the deterministic prefix of the network run once (see ``split.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

__all__ = ["RowRandom", "counter_uniform_bits", "counter_bits16"]

_MASK32 = 0xFFFFFFFF


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

    Examples:
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
