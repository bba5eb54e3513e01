"""Parzen-window log-likelihood of samples, and the nearest-training-neighbour check.

The Parzen estimate of the GAN paper (Goodfellow et al. 2014; Breuleux et al. 2011): fit an
isotropic Gaussian kernel density to n model samples s_1..s_n and report the mean test
log-likelihood

    log p̂(x) = logsumexp_i [−|x − s_i|²/(2σ²)] − log n − (D/2) log(2πσ²),

with σ chosen by the mean log p̂ on *validation* rows (:func:`select_sigma`).

**Caveat (Theis, van den Oord & Bethge 2016, "A note on the evaluation of generative
models")**: this is a poor estimate of the model's log-likelihood.  In 784 dimensions it
needs astronomically many samples to converge, it can rank models in the opposite order to
their true log-likelihood, and a model that merely memorises the training set scores well.
boltzkit reports it only because published GAN figures use it (225 ± 2 nats on real-valued
MNIST); the headline number is AIS (:mod:`.decoder_ais`).  For binary data it is not a
density over {0, 1}^D at all (it is a density over R^D), so it is not comparable to an RBM's
log-likelihood in nats.

:func:`nearest_neighbour_distance` measures how far each sample lies from its closest
training row (Euclidean; for 0/1 rows its square is the Hamming distance): samples at
distance 0 are copies of the training data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..errors import DataError
from ..validation import check_float, check_int

#: σ grid searched by default (pixels in [0, 1]; the GAN paper's σ for MNIST is ≈ 0.2)
DEFAULT_SIGMAS = tuple(float(s) for s in torch.logspace(math.log10(0.05), math.log10(1.0), 20).tolist())


def _pair(samples: Tensor, x: Tensor, name: str) -> tuple[Tensor, Tensor]:
    if samples.dim() != 2 or x.dim() != 2 or samples.shape[1] != x.shape[1]:
        raise DataError(f"{name}: samples {tuple(samples.shape)} and rows {tuple(x.shape)} must be 2-D with the "
                        f"same number of columns")
    if samples.shape[0] == 0 or x.shape[0] == 0:
        raise DataError(f"{name}: no samples or no rows")
    return samples.double(), x.to(samples.device).double()


def _squared_distances(x: Tensor, samples: Tensor) -> Tensor:
    """|x_j − s_i|² ``(len(x), len(samples))``, clamped at 0 (rounding)."""
    return (x.pow(2).sum(1, keepdim=True) - 2 * x @ samples.t() + samples.pow(2).sum(1)).clamp_min(0.0)


def parzen_log_likelihoods(samples: Tensor, x: Tensor, sigmas: Sequence[float], batch_rows: int = 1000) -> Tensor:
    """log p̂(x) per row of ``x`` for each σ of ``sigmas``, ``(len(sigmas), len(x))`` float64: the
    squared distances of a block of rows are computed once and shared by every σ."""
    if len(sigmas) == 0:
        raise DataError("parzen_log_likelihoods needs at least one sigma")
    sigmas = [check_float("sigma", s, 0.0, low_open=True) for s in sigmas]
    check_int("batch_rows", batch_rows, least=1)
    samples, x = _pair(samples, x, "parzen_log_likelihood")
    n, d = samples.shape
    out = []
    for rows in x.split(batch_rows):
        d2 = _squared_distances(rows, samples)
        out.append(torch.stack([torch.logsumexp(d2 / (-2 * s * s), 1) - math.log(n)
                                - 0.5 * d * math.log(2 * math.pi * s * s) for s in sigmas]))
    return torch.cat(out, 1)


def parzen_log_likelihood(samples: Tensor, x: Tensor, sigma: float, batch_rows: int = 1000) -> Tensor:
    """log p̂(x) per row of ``x`` (float64) under the Parzen window of ``samples`` with width σ."""
    return parzen_log_likelihoods(samples, x, [sigma], batch_rows)[0]


def select_sigma(samples: Tensor, valid: Tensor, sigmas: Sequence[float] = DEFAULT_SIGMAS,
                 batch_rows: int = 1000) -> tuple[float, list[float]]:
    """(the σ of ``sigmas`` with the highest mean validation log p̂, that mean for each σ)."""
    if len(sigmas) == 0:
        raise DataError("select_sigma needs at least one candidate sigma")
    scores = parzen_log_likelihoods(samples, valid, sigmas, batch_rows).mean(1).tolist()
    best = max(range(len(scores)), key=scores.__getitem__)
    return float(sigmas[best]), scores


def nearest_neighbour_distance(samples: Tensor, train: Tensor, batch_rows: int = 1000) -> Tensor:
    """Euclidean distance from each sample to its nearest training row, ``(len(samples),)``."""
    check_int("batch_rows", batch_rows, least=1)
    samples, train = _pair(samples, train, "nearest_neighbour_distance")
    out = []
    for rows in samples.split(batch_rows):
        best = torch.full((rows.shape[0],), math.inf, dtype=torch.float64, device=rows.device)
        for block in train.split(10_000):
            best = torch.minimum(best, _squared_distances(rows, block).min(1).values)
        out.append(best.sqrt())
    return torch.cat(out)
