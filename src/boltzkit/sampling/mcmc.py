"""MCMC kernels for a density π(x) ∝ exp(−U(x)) given only its energy U, and chain diagnostics.

A kernel is an object holding hyper-parameters; ``kernel.run(energy, state, steps, generator)``
maps a :class:`~boltzkit.sampling.ChainState` to a new one (BlackJAX style: explicit state,
explicit randomness; no draw tracks gradients: ``run`` works under ``torch.no_grad``, and only
∇ₓU is taken, by autograd).  ``energy`` maps a batch of rows ``(n, d)`` to ``(n,)`` energies (a model
passes β·F_θ, and +∞ outside its support).  What a kernel adapts lives in the state, per chain,
so it persists, is checkpointed and resumes with the chains:

- ``step_size`` ``(n,)``: the step size ε (Langevin, MALA, HMC);
- ``accept`` ``(n,)``: the mean Metropolis–Hastings acceptance probability of the last ``run``.

Continuous x (gradients ∇U by autograd):

- :class:`Langevin` — unadjusted Langevin, x' = x − ε∇U(x) + √(2ε)·ξ (biased by O(ε));
- :class:`MALA` — the same proposal, accepted with min(1, π(y)q(x|y) / π(x)q(y|x)),
  q(y|x) = N(y; x − ε∇U(x), 2ε I);
- :class:`HMC` — L leapfrog steps of H(x, p) = U(x) + ½ pᵀM⁻¹p, p ~ N(0, M), accepted with
  min(1, exp(H(x, p) − H(x', p'))).

MALA and HMC adapt ε towards a target acceptance rate (0.574 and 0.65: Roberts & Rosenthal
1998, Beskos et al. 2013) by log ε ← log ε + γ(ā − a*), ā the mean acceptance probability of
the step over the chains.  The adaptation changes ε from step to step, so it is for training
(where the target moves anyway) and warm-up; set ``adapt=False`` for exact invariance.

Discrete x, binary (one column per variable, values 0/1) or categorical (``categories`` = K,
K one-hot columns per variable):

- :class:`Gibbs` — systematic-scan single-site Gibbs: site i drawn from π(x_i | x_−i);
- :class:`Metropolis` — systematic-scan single-site Metropolis: flip (binary) or move to a
  uniformly chosen other category, accepted with min(1, exp(U(x) − U(x')));
- :class:`GibbsWithGradients` — binary x (Grathwohl et al. 2021): flip site i with
  q(i|x) = softmax(d(x)/2)_i, d(x) = (2x − 1) ⊙ ∇U(x) (the first-order estimate of
  log π(flip_i x) − log π(x)), accepted with min(1, π(x')q(i|x') / π(x)q(i|x)).

Diagnostics: :func:`batch_means` (mean, standard error and effective sample size of chain
averages) and :func:`autocorrelation_time`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..errors import ConfigurationError, DataError
from ..validation import check_choice, check_float, check_int
from .state import ChainState

#: a batch of rows (n, d) → energies (n,)
Energy = Callable[[Tensor], Tensor]
#: per-coordinate box (low, high) that Langevin chains are projected onto, or None
Bounds = tuple[Tensor, Tensor] | None

_MIN_STEP, _MAX_STEP = 1e-10, 1e4


def energy_and_grad(energy: Energy, x: Tensor) -> tuple[Tensor, Tensor]:
    """U(x) ``(n,)`` and ∇ₓU(x) ``(n, d)`` by autograd (works inside ``torch.no_grad``)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        u = energy(x)
        (grad,) = torch.autograd.grad(u.sum(), x)
    return u.detach(), grad.detach()


def _uniform(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    device = generator.device if generator is not None else like.device
    return torch.rand(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def _normal(like: Tensor, generator: torch.Generator | None) -> Tensor:
    device = generator.device if generator is not None else like.device
    return torch.randn(like.shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def _metropolis(current: tuple[Tensor, Tensor, Tensor], proposal: tuple[Tensor, Tensor, Tensor],
                log_accept: Tensor, generator: torch.Generator | None) -> tuple[tuple[Tensor, Tensor, Tensor], Tensor]:
    """Accept each chain's proposal (x, U, ∇U) with probability min(1, e^{log_accept}); returns the
    new (x, U, ∇U) and the acceptance probabilities."""
    accepted, prob = _accept(log_accept, generator)
    keep = accepted.unsqueeze(1)
    (x, u, grad), (y, uy, gy) = current, proposal
    return (torch.where(keep, y, x), torch.where(accepted, uy, u), torch.where(keep, gy, grad)), prob


def _accept(log_alpha: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """(accepted mask, acceptance probability min(1, e^{log α})); NaN counts as a rejection."""
    log_alpha = torch.nan_to_num(log_alpha, nan=-math.inf, posinf=0.0).clamp(max=0.0)
    u = _uniform(log_alpha.shape, log_alpha, generator)
    return torch.log(u) < log_alpha, log_alpha.exp()


def _check_current(u: Tensor, kernel: str) -> None:
    bad = ~torch.isfinite(u)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise DataError(f"{kernel}: the energy is {float(u[i])} at {int(bad.sum())} of {u.numel()} chain "
                        f"states (e.g. chain {i}); the energy module must return finite values on the "
                        f"data and wherever the chains start")


class Kernel:
    """Base class: :meth:`run` advances a :class:`ChainState` ``steps`` transitions."""

    name: ClassVar[str] = "kernel"
    #: True for kernels over continuous x, False for binary/categorical x
    continuous: ClassVar[bool] = True
    #: True when the kernel has a Metropolis–Hastings acceptance step
    metropolis: ClassVar[bool] = True

    def init(self, state: ChainState) -> ChainState:
        """``state`` with the layers this kernel keeps (added where missing)."""
        return state

    def run(self, energy: Energy, state: ChainState, steps: int, generator: torch.Generator | None = None,
            bounds: Bounds = None) -> ChainState:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """Hyper-parameters, JSON-serialisable, with the kernel's ``name`` (see :func:`make_kernel`)."""
        values = asdict(self)  # type: ignore[call-overload]
        return {"name": self.name, **{k: v for k, v in values.items() if not k.startswith("_")}}


# -- continuous kernels ------------------------------------------------------------------------
@dataclass
class _StepSizeKernel(Kernel):
    """Shared by the gradient kernels: a per-chain step size kept in the state."""

    step_size: float = 0.01

    def __post_init__(self) -> None:
        check_float("step_size", self.step_size, 0.0, low_open=True)

    def init(self, state: ChainState, step_size: float | Tensor | None = None) -> ChainState:
        """Add ``step_size`` (from ``step_size`` if given, else the kernel's) and ``accept`` layers."""
        n, x = state.n_chains, state.visible
        layers: dict[str, Tensor] = {}
        if state.get("step_size") is None or state.layers["step_size"].shape != (n,):
            value = self.step_size if step_size is None else step_size
            layers["step_size"] = torch.as_tensor(value, dtype=x.dtype, device=x.device).expand(n).clone()
        if state.get("accept") is None or state.layers["accept"].shape != (n,):
            layers["accept"] = torch.full((n,), math.nan, dtype=x.dtype, device=x.device)
        return state.replace(state.visible, **layers) if layers else state


@dataclass
class Langevin(_StepSizeKernel):
    """Unadjusted Langevin: x' = x − ε∇U(x) + s·ξ, ξ ~ N(0, I), s = √(2ε) (or ``noise_scale``).

    With s = √(2ε) the chain approximates π with an O(ε) bias (for a Gaussian target
    N(μ, A⁻¹) its stationary law is N(μ, (A − εA²/2)⁻¹) exactly); a ``noise_scale`` below √(2ε)
    is the "tempered" variant of Du & Mordatch (2019).  ``bounds`` (the model's support) are
    enforced by clamping.  No acceptance step, no adaptation: ``accept`` stays NaN.
    """

    name: ClassVar[str] = "langevin"
    metropolis: ClassVar[bool] = False
    noise_scale: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_float("noise_scale", self.noise_scale, 0.0, optional=True)

    @torch.no_grad()
    def run(self, energy: Energy, state: ChainState, steps: int, generator: torch.Generator | None = None,
            bounds: Bounds = None) -> ChainState:
        state = self.init(state)
        x, eps = state.visible, state.layers["step_size"].unsqueeze(1)
        scale = torch.sqrt(2 * eps) if self.noise_scale is None else torch.full_like(eps, self.noise_scale)
        finite = torch.ones((), dtype=torch.bool, device=x.device)  # read once, after the run
        for step in range(steps):
            u, grad = energy_and_grad(energy, x)
            if step == 0:
                _check_current(u, self.name)  # the start states, with the details
            else:
                finite &= torch.isfinite(u).all()
            x = x - eps * grad + scale * _normal(x, generator)
            if bounds is not None:
                x = torch.maximum(torch.minimum(x, bounds[1]), bounds[0])
        if not bool(finite & torch.isfinite(x).all()):
            raise DataError("Langevin chains left the finite numbers (the energy or its gradient blew up); "
                            "lower step_size or use MALA, which rejects such moves")
        return state.replace(x)


@dataclass
class _AdaptiveKernel(_StepSizeKernel):
    """A Metropolis–Hastings kernel whose step size adapts towards ``target_accept``."""

    target_accept: float = 0.574
    adapt: bool = True
    adapt_rate: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        check_float("target_accept", self.target_accept, 0.0, 1.0, low_open=True, high_open=True)
        check_float("adapt_rate", self.adapt_rate, 0.0)

    def _adapted(self, eps: Tensor, prob: Tensor) -> Tensor:
        """log ε ← log ε + γ(ā − a*) with ā the mean acceptance probability over the chains."""
        if not self.adapt:
            return eps
        return (eps * torch.exp(self.adapt_rate * (prob.mean() - self.target_accept))).clamp(_MIN_STEP, _MAX_STEP)


@dataclass
class MALA(_AdaptiveKernel):
    """Metropolis-adjusted Langevin (Roberts & Tweedie 1996); see the module docstring.

    Proposal y = x − ε∇U(x) + √(2ε)ξ; log α = U(x) − U(y) + log q(x|y) − log q(y|x) with
    log q(y|x) = −|y − x + ε∇U(x)|²/(4ε) (+ a constant that cancels).
    """

    name: ClassVar[str] = "mala"

    def log_acceptance(self, x: Tensor, u: Tensor, grad: Tensor, y: Tensor, uy: Tensor, grad_y: Tensor,
                       eps: Tensor) -> Tensor:
        """log π(y)q(x|y) − log π(x)q(y|x) per chain."""
        forward = ((y - x + eps * grad) ** 2).sum(1) / (4 * eps[:, 0])
        backward = ((x - y + eps * grad_y) ** 2).sum(1) / (4 * eps[:, 0])
        return (u - uy) + forward - backward

    @torch.no_grad()
    def run(self, energy: Energy, state: ChainState, steps: int, generator: torch.Generator | None = None,
            bounds: Bounds = None) -> ChainState:
        state = self.init(state)
        x, eps = state.visible, state.layers["step_size"].unsqueeze(1)
        u, grad = energy_and_grad(energy, x)
        _check_current(u, self.name)
        total = torch.zeros_like(u)
        for _ in range(steps):
            y = x + (-eps * grad + torch.sqrt(2 * eps) * _normal(x, generator))
            uy, grad_y = energy_and_grad(energy, y)
            (x, u, grad), prob = _metropolis((x, u, grad), (y, uy, grad_y),
                                             self.log_acceptance(x, u, grad, y, uy, grad_y, eps), generator)
            total += prob
            eps = self._adapted(eps, prob)
        return state.replace(x, step_size=eps[:, 0], accept=total / max(steps, 1))


@dataclass
class HMC(_AdaptiveKernel):
    """Hamiltonian Monte Carlo (Duane et al. 1987; Neal 2011) with a diagonal mass matrix.

    Momentum p ~ N(0, M), M = diag(``mass``) (a number or one per coordinate); ``n_leapfrog``
    leapfrog steps of size ε: p ← p − ε/2·∇U, x ← x + εM⁻¹p, p ← p − ε/2·∇U; then accept with
    min(1, exp(H(x, p) − H(x', p'))), H = U(x) + ½ pᵀM⁻¹p.
    """

    name: ClassVar[str] = "hmc"
    step_size: float = 0.1
    n_leapfrog: int = 10
    mass: float | list[float] = 1.0
    target_accept: float = 0.65

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("n_leapfrog", self.n_leapfrog, least=1)
        masses = self.mass if isinstance(self.mass, list) else [self.mass]
        for m in masses:
            check_float("mass", m, 0.0, low_open=True)

    def hamiltonian(self, u: Tensor, p: Tensor, mass: Tensor) -> Tensor:
        """H(x, p) = U(x) + ½ Σ_i p_i²/m_i per chain."""
        return u + 0.5 * (p * p / mass).sum(1)

    @torch.no_grad()
    def run(self, energy: Energy, state: ChainState, steps: int, generator: torch.Generator | None = None,
            bounds: Bounds = None) -> ChainState:
        state = self.init(state)
        x, eps = state.visible, state.layers["step_size"].unsqueeze(1)
        mass = torch.as_tensor(self.mass, dtype=x.dtype, device=x.device)
        if mass.dim() == 1 and mass.numel() != x.shape[1]:
            raise ConfigurationError(f"HMC mass has {mass.numel()} entries but the chains have "
                                     f"{x.shape[1]} coordinates; give one mass or one per coordinate")
        u, grad = energy_and_grad(energy, x)
        _check_current(u, self.name)
        total = torch.zeros_like(u)
        for _ in range(steps):
            p = _normal(x, generator) * torch.sqrt(mass)
            h0 = self.hamiltonian(u, p, mass)
            y, gy = x, grad
            p = p - 0.5 * eps * gy
            for leap in range(self.n_leapfrog):
                y = y + eps * p / mass
                uy, gy = energy_and_grad(energy, y)
                p = p - (eps if leap < self.n_leapfrog - 1 else 0.5 * eps) * gy
            (x, u, grad), prob = _metropolis((x, u, grad), (y, uy, gy), h0 - self.hamiltonian(uy, p, mass),
                                             generator)
            total += prob
            eps = self._adapted(eps, prob)
        return state.replace(x, step_size=eps[:, 0], accept=total / max(steps, 1))


# -- discrete kernels --------------------------------------------------------------------------
@dataclass
class _SiteKernel(Kernel):
    """Single-site kernels over d variables: binary (``categories`` 2 or None, one 0/1 column
    each) or categorical (``categories`` K > 2, K one-hot columns each)."""

    continuous: ClassVar[bool] = False
    categories: int | None = None

    def __post_init__(self) -> None:
        check_int("categories", self.categories, least=2, optional=True)

    @property
    def _k(self) -> int:
        return self.categories or 2

    def _sites(self, x: Tensor) -> int:
        k = self._k
        if k == 2:
            return x.shape[1]
        if x.shape[1] % k:
            raise ConfigurationError(f"{x.shape[1]} columns are not whole one-hot blocks of {k} categories")
        return x.shape[1] // k

    def _set(self, x: Tensor, site: int, value: Tensor) -> Tensor:
        """``x`` with variable ``site`` set to ``value`` ``(n,)`` (integer codes)."""
        x = x.clone()
        if self._k == 2:
            x[:, site] = value.to(x.dtype)
        else:
            k = self._k
            x[:, site * k:(site + 1) * k] = torch.nn.functional.one_hot(value.long(), k).to(x.dtype)
        return x

    def _value(self, x: Tensor, site: int) -> Tensor:
        if self._k == 2:
            return x[:, site].round().long()
        k = self._k
        return x[:, site * k:(site + 1) * k].argmax(1)

    def init(self, state: ChainState) -> ChainState:
        if state.get("accept") is None or state.layers["accept"].shape != (state.n_chains,):
            x = state.visible
            return state.replace(x, accept=torch.full((state.n_chains,), math.nan, dtype=x.dtype,
                                                      device=x.device))
        return state


@dataclass
class Gibbs(_SiteKernel):
    """Systematic-scan single-site Gibbs: each step visits every variable i once and draws
    x_i ~ π(x_i | x_−i) ∝ exp(−U(x with x_i = c)) over the K values c (K energy evaluations)."""

    name: ClassVar[str] = "gibbs"
    metropolis: ClassVar[bool] = False

    @torch.no_grad()
    def run(self, energy: Energy, state: ChainState, steps: int, generator: torch.Generator | None = None,
            bounds: Bounds = None) -> ChainState:
        state = self.init(state)
        x, k = state.visible, self._k
        n, sites = x.shape[0], self._sites(x)
        values = torch.arange(k, device=x.device)
        first_bad = torch.full((), -1, dtype=torch.int64, device=x.device)  # read once, after the run
        for _ in range(steps):
            for site in range(sites):
                candidates = torch.cat([self._set(x, site, values[c].expand(n)) for c in range(k)])
                u = energy(candidates).reshape(k, n)
                logits = -u
                top = logits.max(0).values
                unseen = (first_bad < 0) & ~torch.isfinite(top).all()
                first_bad = torch.where(unseen, site, first_bad)
                prob = torch.softmax(logits - top, 0)
                draw = _uniform((n,), x, generator)
                choice = (draw.unsqueeze(0) > prob.cumsum(0)).sum(0).clamp(max=k - 1)
                x = self._set(x, site, choice)
        site = int(first_bad)
        if site >= 0:
            raise DataError(f"gibbs: the energy is infinite or NaN for every value of variable {site} "
                            f"in some chain; the energy module must be finite on the domain")
        return state.replace(x)


@dataclass
class Metropolis(_SiteKernel):
    """Systematic-scan single-site Metropolis: for each variable, propose a flip (binary) or a
    uniformly drawn other category (symmetric), accept with min(1, exp(U(x) − U(x')))."""

    name: ClassVar[str] = "metropolis"

    @torch.no_grad()
    def run(self, energy: Energy, state: ChainState, steps: int, generator: torch.Generator | None = None,
            bounds: Bounds = None) -> ChainState:
        state = self.init(state)
        x, k = state.visible, self._k
        n, sites = x.shape[0], self._sites(x)
        u = energy(x)
        _check_current(u, self.name)
        total = torch.zeros_like(u)
        for _ in range(steps):
            for site in range(sites):
                current = self._value(x, site)
                shift = 1 + (_uniform((n,), x, generator) * (k - 1)).long().clamp(max=k - 2)
                y = self._set(x, site, (current + shift) % k)
                uy = energy(y)
                accepted, prob = _accept(u - uy, generator)
                x = torch.where(accepted.unsqueeze(1), y, x)
                u = torch.where(accepted, uy, u)
                total += prob
        return state.replace(x, accept=total / max(steps * sites, 1))


@dataclass
class GibbsWithGradients(_SiteKernel):
    """Gibbs-with-gradients for binary x (Grathwohl et al. 2021); see the module docstring.

    ``log_acceptance`` is log π(x') − log π(x) + log q(i|x') − log q(i|x).
    """

    name: ClassVar[str] = "gwg"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self._k != 2:
            raise ConfigurationError("Gibbs-with-gradients is implemented for binary x; use gibbs or "
                                     "metropolis for categorical variables")

    @staticmethod
    def proposal_logits(x: Tensor, grad: Tensor) -> Tensor:
        """log q(i|x) = log softmax(d/2), d = (2x − 1) ⊙ ∇U(x)."""
        return torch.log_softmax((2 * x - 1) * grad / 2, dim=1)

    def log_acceptance(self, u: Tensor, uy: Tensor, forward: Tensor, backward: Tensor) -> Tensor:
        return (u - uy) + backward - forward

    @torch.no_grad()
    def run(self, energy: Energy, state: ChainState, steps: int, generator: torch.Generator | None = None,
            bounds: Bounds = None) -> ChainState:
        state = self.init(state)
        x = state.visible
        n = x.shape[0]
        rows = torch.arange(n, device=x.device)
        u, grad = energy_and_grad(energy, x)
        _check_current(u, self.name)
        total = torch.zeros_like(u)
        for _ in range(steps):
            logq = self.proposal_logits(x, grad)
            draw = _uniform((n,), x, generator)
            site = (draw.unsqueeze(1) > logq.exp().cumsum(1)).sum(1).clamp(max=x.shape[1] - 1)
            y = x.clone()
            y[rows, site] = 1 - y[rows, site]
            uy, grad_y = energy_and_grad(energy, y)
            backward = self.proposal_logits(y, grad_y)[rows, site]
            accepted, prob = _accept(self.log_acceptance(u, uy, logq[rows, site], backward), generator)
            keep = accepted.unsqueeze(1)
            x, grad = torch.where(keep, y, x), torch.where(keep, grad_y, grad)
            u = torch.where(accepted, uy, u)
            total += prob
        return state.replace(x, accept=total / max(steps, 1))


#: kernels by name (``make_kernel``, the command line)
KERNELS: dict[str, type[Kernel]] = {"langevin": Langevin, "mala": MALA, "hmc": HMC, "gibbs": Gibbs,
                                    "metropolis": Metropolis, "gwg": GibbsWithGradients}


def make_kernel(name: str | dict[str, Any], **options: Any) -> Kernel:
    """A kernel by name (``langevin``, ``mala``, ``hmc``, ``gibbs``, ``metropolis``, ``gwg``) or from
    a :meth:`Kernel.config` dict; ``options`` are its hyper-parameters."""
    if isinstance(name, dict):
        options = {**{k: v for k, v in name.items() if k != "name"}, **options}
        name = name.get("name", "")
    kind: str = check_choice("sampler", name, KERNELS)
    try:
        return KERNELS[kind](**options)
    except TypeError as e:
        raise ConfigurationError(f"bad option for the {name} sampler: {e}") from None


# -- diagnostics -------------------------------------------------------------------------------
@dataclass
class ChainAverage:
    """A chain average with its batch-means standard error and effective sample size."""

    mean: Tensor
    standard_error: Tensor
    ess: Tensor
    batches: int = field(default=0)


def batch_means(trace: Tensor, batches_per_chain: int = 10) -> ChainAverage:
    """Mean of f over a trace ``(steps, chains, ...)`` with its standard error by batch means.

    Each chain is cut into ``batches_per_chain`` consecutive blocks; the block means are treated
    as independent (true when a block is much longer than the autocorrelation time, and chains
    are independent), so SE = sd(block means)/√(blocks).  ESS = var(f)/SE², the number of
    independent draws that would give the same standard error.
    """
    steps = trace.shape[0]
    check_int("batches_per_chain", batches_per_chain, least=1, most=steps)
    length = steps // batches_per_chain
    used = trace[: length * batches_per_chain].double()
    blocks = used.reshape(batches_per_chain, length, *used.shape[1:]).mean(1)
    blocks = blocks.reshape(-1, *used.shape[2:])
    count = blocks.shape[0]
    mean = used.mean((0, 1))
    se = blocks.std(0, unbiased=True) / math.sqrt(count)
    var = used.reshape(-1, *used.shape[2:]).var(0, unbiased=True)
    return ChainAverage(mean, se, var / se.clamp_min(1e-300) ** 2, count)


def autocorrelation_time(trace: Tensor, window: int | None = None) -> Tensor:
    """Integrated autocorrelation time τ = 1 + 2Σ_t ρ_t of a trace ``(steps, chains)`` per chain
    set, ρ_t pooled over chains, summed while Geyer's pair sums ρ_{2m} + ρ_{2m+1} stay positive.
    ESS of the chain average = chains·steps/τ."""
    x = trace.double()
    x = x - x.mean(0, keepdim=True)
    steps = x.shape[0]
    window = window or steps // 2
    n = 2 ** math.ceil(math.log2(2 * steps))
    spectrum = torch.fft.rfft(x, n=n, dim=0)
    acov = torch.fft.irfft(spectrum * spectrum.conj(), n=n, dim=0)[:window] / steps
    rho = acov.mean(1) / acov[0].mean()
    tau = torch.tensor(-1.0, dtype=torch.float64)   # τ = −1 + 2 Σ_m (ρ_2m + ρ_2m+1), ρ_0 = 1
    for m in range(0, window - 1, 2):
        pair = rho[m] + rho[m + 1]
        if pair <= 0:
            break
        tau = tau + 2 * pair
    return tau.clamp_min(1.0)
