"""The log-likelihood of a decoder-based model (a GAN's generator with an observation model) by AIS.

Wu, Burda, Salakhutdinov & Grosse (ICLR 2017), "On the quantitative analysis of decoder-based
generative models".  A decoder with prior p(z) = N(0, I) and observation model p(x | z)
(``decoder.log_likelihood_given(x, z)``: Bernoulli(G(z)) or N(G(z), σ²I)) defines

    p(x) = ∫ p(z) p(x | z) dz.

For each x, AIS moves chains in z along the geometric path from the prior to the posterior,

    f_β(z) = p(z) p(x | z)^β,   Z_0 = 1,   Z_1 = p(x),

with 0 = β_0 < … < β_K = 1 (default: the sigmoidal schedule of Grosse et al. 2015): z_0 ~ p(z);
at step k the weight gains (β_k − β_{k−1}) log p(x | z) and z moves by one HMC transition
(:class:`boltzkit.sampling.mcmc.HMC`, L leapfrog steps, step size adapted towards 65 %
acceptance) leaving f_{β_k} invariant, U_β(z) = ½|z|² − β log p(x | z).  Then E[w] = p(x), and
log mean(w) over the chains of x is a stochastic *lower* bound on log p(x) (Jensen).

:func:`decoder_reverse_ais` runs the schedule backwards from an exact posterior sample (for data
simulated from the model: draw z, then x; z is exactly distributed as p(z | x)); then
E[w] = 1/p(x) and −log mean(w) is a stochastic *upper* bound.  Forward and reverse together
bracket the true log-likelihood on simulated data — bidirectional Monte Carlo (Grosse et al.
2015) — which is how the schedule is validated before it is trusted on real data.

Intervals: per example, log(mean(w) ± 3 s.e.) over its chains (as :mod:`.ais`); the mean over
examples ± 3 s.e. with the per-example s.e. of log mean(w) by the delta method (s.e.(w̄)/w̄),
combined as independent (:meth:`DecoderAISResult.estimate`).  :func:`quadrature_log_likelihood` gives exact log p(x)
for a latent dimension of 1 or 2 (the test ground truth).  For real-valued data the σ of a
Gaussian observation model is chosen on validation rows (:func:`select_observation_sigma`), as
Wu et al. do, before the test rows are scored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from ..errors import ConfigurationError, DataError
from ..sampling.mcmc import HMC
from ..sampling.state import ChainState
from ..validation import check_float, check_int, is_integer
from . import quadrature
from .ais import N_STANDARD_ERRORS, LikelihoodEstimate, _schedule, _summary

#: β values of the default schedule
DEFAULT_N_BETAS = 1000


class Decoder(Protocol):
    """What AIS needs of a decoder: the latent dimension and log p(x | z) per paired row."""

    latent_dim: int

    def log_likelihood_given(self, x: Tensor, z: Tensor) -> Tensor: ...


def sigmoid_betas(n_betas: int = DEFAULT_N_BETAS, radius: float = 4.0) -> Tensor:
    """β_k = (σ(s_k) − σ(−r)) / (σ(r) − σ(−r)), s_k evenly spaced on [−r, r] (float64, 0 → 1):
    dense near both ends, where the posterior changes fastest (Grosse et al. 2015)."""
    check_int("n_betas", n_betas, least=2)
    check_float("radius", radius, 0.0, low_open=True)
    s = torch.sigmoid(torch.linspace(-radius, radius, n_betas, dtype=torch.float64))
    betas = (s - s[0]) / (s[-1] - s[0])
    betas[0], betas[-1] = 0.0, 1.0
    return betas


@dataclass
class DecoderAISResult:
    """Per-example AIS estimates of log p(x) (nats) with their intervals.

    ``log_likelihood``, ``low``, ``high``: ``(n,)``; ``log_weights``: ``(n, n_chains)`` float64
    (forward: log w, E[w] = p(x); reverse: log w, E[w] = 1/p(x)); ``accept``: the mean HMC
    acceptance probability over the run.
    """

    log_likelihood: Tensor
    low: Tensor
    high: Tensor
    log_weights: Tensor = field(repr=False)
    n_chains: int
    n_betas: int
    direction: str
    accept: float

    @property
    def mean(self) -> float:
        """Mean log-likelihood in nats per example."""
        return float(self.log_likelihood.mean())

    @property
    def standard_error(self) -> Tensor:
        """Per-example standard error of log mean(w) by the delta method, s.e.(w̄)/w̄ ``(n,)``."""
        w = torch.exp(self.log_weights - self.log_weights.max(1, keepdim=True).values)
        if self.n_chains < 2:
            return torch.full((w.shape[0],), math.inf, dtype=torch.float64)
        return w.std(1, unbiased=True) / math.sqrt(self.n_chains) / w.mean(1)

    def estimate(self) -> LikelihoodEstimate:
        """The mean over examples ± 3 s.e., s.e. = √(Σ_i s.e._i²)/n (independent examples, delta
        method per example): finite even when a per-example interval has a −∞ end."""
        half = N_STANDARD_ERRORS * float(self.standard_error.pow(2).sum().sqrt()) / self.log_likelihood.numel()
        return LikelihoodEstimate(self.mean, self.mean - half, self.mean + half)

    def __str__(self) -> str:
        e = self.estimate()
        return (f"{self.direction} decoder AIS: log p(x) = {e.mean:.3f} [{e.low:.3f}, {e.high:.3f}] nats/example "
                f"({self.log_likelihood.numel()} examples, {self.n_chains} chains, {self.n_betas} β, "
                f"HMC acceptance {self.accept:.2f})")


def _betas(betas: int | Tensor | None) -> Tensor:
    if betas is None:
        return sigmoid_betas()
    if is_integer(betas):
        return sigmoid_betas(betas)
    return _schedule(betas)


def _anneal(decoder: Decoder, x: Tensor, z: Tensor, betas: list[float], kernel: HMC,
            generator: torch.Generator | None, progress: bool) -> tuple[Tensor, float]:
    """Σ_k (β_k − β_{k−1}) log p(x | z_{k−1}) per chain (float64), z moved by one HMC step at β_k
    after each increment but the last; ``x`` and ``z`` are paired rows.  Returns (log w, mean
    acceptance)."""
    log_w = torch.zeros(z.shape[0], dtype=torch.float64, device=z.device)
    state = ChainState(z)
    accept_total, moves = 0.0, 0
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(betas) - 1, unit="β", dynamic_ncols=True)
    last = len(betas) - 1
    for k in range(1, len(betas)):
        beta, previous = betas[k], betas[k - 1]
        with torch.no_grad():
            ell = decoder.log_likelihood_given(x, state.visible).double()
        if not bool(torch.isfinite(ell).all()):
            raise DataError("log p(x | z) is not finite along the AIS chains; check the decoder's parameters")
        log_w += (beta - previous) * ell
        if k < last:
            def energy(zz: Tensor, b: float = beta) -> Tensor:
                return 0.5 * (zz * zz).sum(1) - b * decoder.log_likelihood_given(x, zz)

            state = kernel.run(energy, state, 1, generator)
            accept_total += float(state.layers["accept"].mean())
            moves += 1
        if bar is not None and (k % 50 == 0 or k == last):
            bar.update(k - bar.n)
    if bar is not None:
        bar.close()
    return log_w, accept_total / max(moves, 1)


def _run(decoder: Decoder, x: Tensor, z: Tensor, betas: Tensor, n_chains: int, direction: str, n_leapfrog: int,
         step_size: float, generator: torch.Generator | None, progress: bool) -> DecoderAISResult:
    n = x.shape[0]
    kernel = HMC(step_size=step_size, n_leapfrog=n_leapfrog, target_accept=0.65)
    x_rep = x.repeat_interleave(n_chains, 0)
    schedule = betas.tolist() if direction == "forward" else betas.flip(0).tolist()
    log_w, accept = _anneal(decoder, x_rep, z, schedule, kernel, generator, progress)
    log_w = log_w.reshape(n, n_chains).cpu()
    rows = [_summary(row) for row in log_w]
    mean = torch.tensor([r[0] for r in rows], dtype=torch.float64)
    low = torch.tensor([r[1] for r in rows], dtype=torch.float64)
    high = torch.tensor([r[2] for r in rows], dtype=torch.float64)
    if direction == "reverse":  # log p̂ = −log mean(w); the interval ends swap
        mean, low, high = -mean, -high, -low
    return DecoderAISResult(mean, low, high, log_w, n_chains, len(schedule), direction, accept)


def _checked(decoder: Decoder, x: Tensor, n_chains: int, n_leapfrog: int, step_size: float) -> Tensor:
    check_int("n_chains", n_chains, least=1)
    check_int("n_leapfrog", n_leapfrog, least=1)
    check_float("step_size", step_size, 0.0, low_open=True)
    if hasattr(decoder, "check_data"):
        decoder.check_data(x)
    p = next(decoder.parameters()) if hasattr(decoder, "parameters") else x
    return x.to(p.device, p.dtype)


def _generator(generator: torch.Generator | None, seed: int, device: torch.device) -> torch.Generator:
    return generator if generator is not None else torch.Generator(device).manual_seed(seed)


def decoder_ais(decoder: Decoder, x: Tensor, *, n_chains: int = 16, betas: int | Tensor | None = None,
                n_leapfrog: int = 10, step_size: float = 0.05, seed: int = 0,
                generator: torch.Generator | None = None, progress: bool = False) -> DecoderAISResult:
    """Forward AIS estimate of log p(x) for each row of ``x`` (a stochastic lower bound).

    ``n_chains`` chains per row start at z ~ N(0, I); ``betas``: a count (sigmoidal schedule,
    default 1,000) or an explicit increasing schedule from 0 to 1.
    """
    x = _checked(decoder, x, n_chains, n_leapfrog, step_size)
    schedule = _betas(betas)
    g = _generator(generator, seed, x.device)
    z = torch.randn(x.shape[0] * n_chains, decoder.latent_dim, generator=g, device=g.device,
                    dtype=x.dtype).to(x.device)
    return _run(decoder, x, z, schedule, n_chains, "forward", n_leapfrog, step_size, g, progress)


def decoder_reverse_ais(decoder: Decoder, x: Tensor, z: Tensor, *, n_chains: int = 16,
                        betas: int | Tensor | None = None, n_leapfrog: int = 10, step_size: float = 0.05,
                        seed: int = 0, generator: torch.Generator | None = None,
                        progress: bool = False) -> DecoderAISResult:
    """Reverse AIS (β: 1 → 0) from exact posterior samples ``z`` of the rows of ``x``: a stochastic
    upper bound on log p(x).  ``z``: ``(n, latent_dim)`` (each row's chains start there) or
    ``(n, n_chains, latent_dim)``."""
    x = _checked(decoder, x, n_chains, n_leapfrog, step_size)
    z = z.detach().to(x.device, x.dtype)
    if z.dim() == 2 and z.shape == (x.shape[0], decoder.latent_dim):
        z = z.repeat_interleave(n_chains, 0)
    elif z.dim() == 3 and z.shape == (x.shape[0], n_chains, decoder.latent_dim):
        z = z.reshape(-1, decoder.latent_dim)
    else:
        raise ConfigurationError(f"posterior samples must have shape ({x.shape[0]}, {decoder.latent_dim}) or "
                                 f"({x.shape[0]}, {n_chains}, {decoder.latent_dim}); got {tuple(z.shape)}")
    g = _generator(generator, seed, x.device)
    return _run(decoder, x, z, _betas(betas), n_chains, "reverse", n_leapfrog, step_size, g, progress)


def bidirectional(decoder: Any, n: int, *, seed: int = 0, **options: Any
                  ) -> tuple[Tensor, DecoderAISResult, DecoderAISResult]:
    """BDMC on ``n`` rows simulated from the model (``decoder.sample_observations``): returns
    (x, forward result, reverse result); forward ≤ log p(x) ≤ reverse in expectation."""
    check_int("n", n, least=1)
    p = next(decoder.parameters())
    g = torch.Generator(p.device).manual_seed(seed)
    z, x = decoder.sample_observations(n, g)
    forward = decoder_ais(decoder, x, seed=seed + 1, **options)
    reverse = decoder_reverse_ais(decoder, x, z, seed=seed + 2, **options)
    return x, forward, reverse


#: σ grid of the Gaussian observation model searched by default (pixels in [0, 1])
DEFAULT_OBSERVATION_SIGMAS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5)


def select_observation_sigma(decoder: Any, valid: Tensor, sigmas: Sequence[float] = DEFAULT_OBSERVATION_SIGMAS,
                             **options: Any) -> tuple[float, list[float]]:
    """σ of a Gaussian observation model p(x | z) = N(G(z), σ²I) chosen on validation rows: the σ of
    ``sigmas`` with the highest mean AIS log-likelihood of ``valid`` (``options`` go to
    :func:`decoder_ais`).  Returns (σ, the mean for each σ); ``decoder.sigma`` is left at the
    chosen value (G is unchanged: σ only scales the observation noise)."""
    if getattr(decoder, "output", None) != "gaussian":
        raise ConfigurationError("σ selection applies to a Gaussian observation model (output='gaussian')")
    if len(sigmas) == 0:
        raise ConfigurationError("select_observation_sigma needs at least one candidate sigma")
    checked = [float(check_float("sigma", s, 0.0, low_open=True) or s) for s in sigmas]
    scores = []
    for s in checked:
        decoder.sigma = s
        scores.append(decoder_ais(decoder, valid, **options).mean)
    best = checked[max(range(len(scores)), key=scores.__getitem__)]
    decoder.sigma = best
    return best, scores


def quadrature_log_likelihood(decoder: Decoder, x: Tensor, bound: float = 8.0, points: int = 401) -> Tensor:
    """Exact log p(x) = log ∫ N(z; 0, I) p(x | z) dz per row by Simpson quadrature on [−bound, bound]^d
    (latent dimension d of 1 or 2), float64."""
    d = decoder.latent_dim
    if d > 2:
        raise ConfigurationError(f"quadrature over z needs a latent dimension of 1 or 2, got {d}")
    grid = quadrature.make_grid([-bound] * d, [bound] * d, points)
    out = []
    with torch.no_grad():
        for row in x:
            def energy(z: Tensor, r: Tensor = row) -> Tensor:
                return (0.5 * (z * z).sum(1) + 0.5 * d * math.log(2 * math.pi)
                        - decoder.log_likelihood_given(r.expand(z.shape[0], -1), z))

            out.append(quadrature.log_partition(energy, grid, x))
    return torch.stack(out)
