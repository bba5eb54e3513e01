"""Bernoulli draws from a field: x = 1 with probability σ(β a), in one pass on the CPU.

A draw compares a 16-bit uniform level u with a table instead of computing σ(β a):

    x = 1  ⇔  t[u] < β a,   t[u] = float32(logit((u + ½) / 2¹⁶)),   u ∈ {0, …, 2¹⁶ − 1}

t is increasing, so P(x = 1) = #{u : t[u] < β a} / 2¹⁶ = round(2¹⁶ σ(β a)) / 2¹⁶ — within 2⁻¹⁷
of σ(β a), and 2⁻²² more where β a lies within float32 rounding of a table entry (the same
law as :func:`boltzkit.sampling.bits.bernoulli` applied to σ(β a); ``tests/test_logistic.py``
counts it over all 2¹⁶ levels).  No sigmoid is computed.

The levels come from SplitMix64 (Steele, Lea & Flood 2014, the generator that seeds
xoshiro; it passes BigCrush) started at a key of 64 bits drawn from the caller's
``torch.Generator``, four levels per 64-bit word: a seed fixes every draw, and a saved
generator state resumes a run bit for bit.  Unlike torch's CPU generator, a sequential
Mersenne twister, the words are a pure function of (key, position), so they can be made
anywhere in any order.  :mod:`boltzkit.sampling.native` computes them together with the
comparison in one compiled loop (2–4× faster than the torch operations here, which compute
the same numbers and are used where no C compiler is found); the two agree bit for bit.
On other devices (CUDA) the draw is :func:`~boltzkit.sampling.bits.bernoulli` of σ(β a),
with the device's own generator.
"""

from __future__ import annotations

import sys

import torch
from torch import Tensor

from . import native
from .bits import bernoulli, random_words

#: SplitMix64's increment (the golden ratio in 64 bits) and its two mixing multipliers
GAMMA, MIX_1, MIX_2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_LEVELS = 1 << 16
_tables: dict[torch.device, Tensor] = {}
_steps: dict[tuple[int, torch.device], Tensor] = {}


def _int64(x: int) -> int:
    """The int64 with the same 64 bits as the unsigned ``x`` (mod 2⁶⁴)."""
    x &= (1 << 64) - 1
    return x - (1 << 64) if x >= 1 << 63 else x


def logit_table(device: torch.device | str = "cpu") -> Tensor:
    """t[u] = logit((u + ½) / 2¹⁶) rounded to float32, u = 0 … 2¹⁶ − 1 (increasing; cached)."""
    device = torch.device(device)
    if device not in _tables:
        u = torch.arange(_LEVELS, dtype=torch.float64).add_(0.5).div_(_LEVELS)
        _tables[device] = torch.logit(u).to(device, torch.float32)
    return _tables[device]


def _shifted_xor(z: Tensor, shift: int) -> Tensor:
    """z ^= z >>> shift (logical shift of the 64 bits; torch shifts int64 arithmetically)."""
    return z.bitwise_xor_(torch.bitwise_right_shift(z, shift).bitwise_and_((1 << (64 - shift)) - 1))


def splitmix_words(key: int | Tensor, first: int, n: int, device: torch.device | str = "cpu") -> Tensor:
    """SplitMix64 words ``first`` … ``first + n − 1`` of the stream with state ``key`` (a number, or
    one int64 in a tensor), as int64: word_i = mix(key + (i + 1)·γ) mod 2⁶⁴, with
    mix(z) = z ⊕ z≫31 after z ← (z ⊕ z≫30)·m₁ and z ← (z ⊕ z≫27)·m₂.  Torch's int64 sums and
    products wrap mod 2⁶⁴, which is the arithmetic wanted."""
    device = torch.device(device)
    steps = _steps.get((n, device))
    if steps is None:  # (i + 1)·γ, kept for the few sizes a training loop uses (up to 2¹⁶ words each)
        steps = torch.arange(1, n + 1, dtype=torch.int64, device=device).mul_(_int64(GAMMA))
        if n <= 1 << 16:
            if len(_steps) >= 16:
                _steps.clear()
            _steps[n, device] = steps
    if isinstance(key, Tensor):
        z = steps.add(key.reshape(()).to(device)).add_(_int64(first * GAMMA))
    else:
        z = steps.add(_int64(key + first * GAMMA))
    z = _shifted_xor(z, 30).mul_(_int64(MIX_1))
    z = _shifted_xor(z, 27).mul_(_int64(MIX_2))
    return _shifted_xor(z, 31)


def draw_key(generator: torch.Generator | None) -> Tensor:
    """One 64-bit key from ``generator`` (CPU), in a one-element int64 tensor (never read on the
    host, so a loop of draws has no read-back to count)."""
    return random_words(1, generator)


def bernoulli_logistic(field: Tensor, generator: torch.Generator | None = None, beta: float | Tensor = 1.0
                       ) -> Tensor:
    """x ∈ {0, 1} with P(x = 1) = σ(β a) to within 2⁻¹⁷ + 2⁻²² (module docstring), in ``field``'s
    dtype; ``beta`` a number or a tensor that broadcasts against ``field``.  Never differentiable."""
    field = field.detach()
    scaled = isinstance(beta, Tensor) or beta != 1.0
    if field.device.type != "cpu":
        p = torch.sigmoid(field * beta if scaled else field)
        return bernoulli(p, generator, inplace=True)
    if isinstance(beta, Tensor):  # per-row temperatures: scale first, then draw at β = 1
        field, beta, scaled = field * beta, 1.0, False
    key = draw_key(generator)
    work = field if field.dtype in (torch.float32, torch.float64) else field.float()  # bf16, half: float32
    if work.dtype == torch.float32:
        out = native.draw_logistic(work, float(beta), scaled, key, logit_table())
        if out is not None:
            return out.to(field.dtype)
    return _draw_logistic(work, float(beta), scaled, key).to(field.dtype)


def _draw_logistic(work: Tensor, beta: float, scaled: bool, key: int | Tensor) -> Tensor:
    """The torch operations that :func:`native.draw_logistic` fuses (the same bits for float32),
    for a float32 or float64 ``work``."""
    n = work.numel()
    words = splitmix_words(key, 0, (n + 3) // 4)
    if sys.byteorder == "little":  # level i: bits 16·(i mod 4) … of word i / 4
        levels = words.view(torch.int16)[:n].to(torch.int64)
    else:
        levels = torch.stack([torch.bitwise_right_shift(words, 16 * k) for k in range(4)], 1).flatten()[:n]
    thresholds = logit_table().take(levels.bitwise_and_(_LEVELS - 1)).view(work.shape)
    a = work * beta if scaled else work
    return thresholds.lt_(a).to(work.dtype)  # in place: 1.0 where t[u] < a (the table's dtype, float32)
