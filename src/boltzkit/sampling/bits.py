"""Random bits for Bernoulli draws: 16-bit uniforms, four to each 64-bit random word.

A Bernoulli draw needs a uniform U only to compare it with p.  Drawing U as a float costs
a 32-bit draw from torch's CPU generator (a sequential Mersenne twister) per unit; sixteen
bits already put P(x = 1) within 2⁻¹⁷ of p (see :func:`bernoulli`), so one 64-bit word —
two 32-bit draws — serves four units: half the generator's work, and a quarter of the
memory a float uniform would take.  The words come from the caller's ``torch.Generator``
(Philox on CUDA), so a seed fixes a run and a saved generator state resumes it bit for bit.
(NumPy's SFC64 generator, seeded from the torch generator on every call, draws the words
≈ 2× faster when timed alone but made a training epoch no faster: its fresh output arrays
cost what the generator saved.)
"""

from __future__ import annotations

import torch
from torch import Tensor

#: bits of the uniform each Bernoulli draw compares with p
UNIFORM_BITS = 16
_LEVELS = float(1 << UNIFORM_BITS)
_WORD_SHARE = 64 // UNIFORM_BITS


def random_words(n: int, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> Tensor:
    """``n`` uniformly random 64-bit words (int64) from ``generator``."""
    words = torch.empty(n, dtype=torch.int64, device=device)
    return words.random_(-(1 << 63), None, generator=generator)  # the full 64-bit range


def uniform_levels(n: int, generator: torch.Generator | None = None,
                   device: torch.device | str | None = None) -> Tensor:
    """``n`` independent integers uniform on {−2¹⁵, …, 2¹⁵ − 1} (int16), four per random word."""
    words = random_words((n + _WORD_SHARE - 1) // _WORD_SHARE, generator, device)
    return words.view(torch.int16)[:n]


def bernoulli(p: Tensor, generator: torch.Generator | None = None, *, inplace: bool = False) -> Tensor:
    """x ∈ {0, 1} with P(x = 1) within 2⁻¹⁷ + 2⁻²⁵ of p, in ``p``'s dtype.

    With s uniform on {−2¹⁵ … 2¹⁵ − 1} (:func:`uniform_levels`), x = 1 where
    s < t = 2¹⁶ p − 2¹⁵ − ½: the 2¹⁶ equally likely values of s + 2¹⁵ below 2¹⁶ p − ½ are
    round(2¹⁶ p) of them (halves rounded down), so the law is round(2¹⁶ p)/2¹⁶ — exactly in
    float64; in float32 t is rounded to 2⁻⁹ (|t| < 2¹⁵), which moves one level only when
    2¹⁶ p is within 2⁻⁹ of a half-integer, hence the extra 2⁻²⁵.  p = 0 and p = 1 stay exact.
    ``inplace=True`` writes the draw over ``p`` (a temporary the caller owns), saving an
    allocation.  Half-precision probabilities are compared in float32.
    """
    p = p.detach()  # a draw is never differentiable
    levels = uniform_levels(p.numel(), generator, p.device).view(p.shape)
    if p.dtype.itemsize < 4:  # bfloat16/float16 cannot hold 2¹⁶ p − 2¹⁵ − ½
        return _below(p.float(), levels, inplace=True).to(p.dtype)
    return _below(p, levels, inplace)


#: −(2¹⁵ + ½) as CPU 0-d tensors (they combine with tensors on any device) of each float dtype
_OFFSETS = {dtype: torch.tensor(-(_LEVELS / 2 + 0.5), dtype=dtype) for dtype in (torch.float32, torch.float64)}


def _below(p: Tensor, levels: Tensor, inplace: bool) -> Tensor:
    """1 where levels < 2¹⁶ p − 2¹⁵ − ½, else 0 (over ``p`` when ``inplace``)."""
    offset = _OFFSETS.get(p.dtype, _OFFSETS[torch.float64])
    threshold = torch.add(offset, p, alpha=_LEVELS, out=p if inplace else None)  # one pass
    return threshold.gt_(levels)
