"""MCMC kernels against exact answers: Gaussians, a mixture, an enumerable Ising model, a Potts model.

Every comparison uses the standard error of the chain average.  Chains are independent after
the warm-up (the step size is frozen then), so the time-average of each chain is one
independent draw and SE = sd(chain averages)/√chains (``batch_means`` with one batch per
chain); ESS = var/SE² is printed with failures.  Tolerance: 5 SE per moment — with ≤ 40
moments per test a correct kernel fails with probability < 40 · 6e-7 ≈ 2e-5, while the
broken kernels below are off by far more.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from boltzkit.errors import ConfigurationError, DataError
from boltzkit.sampling import ChainState
from boltzkit.sampling.mcmc import (
    HMC,
    MALA,
    Gibbs,
    GibbsWithGradients,
    Langevin,
    Metropolis,
    autocorrelation_time,
    batch_means,
    make_kernel,
)
from boltzkit.training.threads import torch_threads
from conftest import record_host_reads

Z = 5.0
DT = torch.float64


@pytest.fixture(autouse=True)
def one_thread():
    """Small chains run on one thread, as the trainer's thread rule does (two threads on a busy
    2-core machine were measured 20× slower)."""
    with torch_threads(1):
        yield

# a correlated 3-D Gaussian N(μ, A⁻¹)
PRECISION = torch.tensor([[2.0, 0.6, 0.0], [0.6, 1.0, 0.3], [0.0, 0.3, 0.5]], dtype=DT)
MEAN = torch.tensor([1.0, -0.5, 2.0], dtype=DT)
COV = torch.linalg.inv(PRECISION)


def gaussian_energy(x: torch.Tensor) -> torch.Tensor:
    d = x - MEAN
    return 0.5 * ((d @ PRECISION) * d).sum(1)


def moment_features(x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """x_i and (x_i − μ_i)(x_j − μ_j), i ≤ j: their expectations are μ and Σ (μ the exact mean)."""
    d = x - mean
    i, j = torch.triu_indices(x.shape[-1], x.shape[-1])
    return torch.cat([x, d[..., i] * d[..., j]], -1)


def exact_features(mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    i, j = torch.triu_indices(len(mean), len(mean))
    return torch.cat([mean, cov[i, j]])


def trace(kernel, energy, start: torch.Tensor, warmup: int, steps: int, seed: int = 0, bounds=None) -> torch.Tensor:
    """(steps, chains, d) after ``warmup`` transitions with adaptation, then adaptation frozen."""
    g = torch.Generator().manual_seed(seed)
    state = ChainState(start)
    if warmup:
        state = kernel.run(energy, state, warmup, g, bounds)
    if hasattr(kernel, "adapt"):
        kernel.adapt = False
    rows = []
    for _ in range(steps):
        state = kernel.run(energy, state, 1, g, bounds)
        rows.append(state.visible)
    return torch.stack(rows)


def z_scores(samples: torch.Tensor, exact: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    avg = batch_means(moment_features(samples, mean), batches_per_chain=1)
    return (avg.mean - exact) / avg.standard_error


def assert_moments(samples, mean, cov, what: str) -> None:
    avg = batch_means(moment_features(samples, mean), batches_per_chain=1)
    z = (avg.mean - exact_features(mean, cov)) / avg.standard_error
    assert z.abs().max() < Z, f"{what}: z-scores {z.numpy().round(2)}, ESS {avg.ess.numpy().round(0)}"


def gaussian_start(n: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return MEAN + scale * torch.randn(n, 3, generator=g, dtype=DT)


def exact_gaussian_samples(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return MEAN + torch.randn(n, 3, generator=g, dtype=DT) @ torch.linalg.cholesky(COV).T


# -- Gaussian --------------------------------------------------------------------------------
def test_langevin_matches_its_exact_discretised_law():
    """ULA on N(μ, A⁻¹) is a Gaussian AR(1) whose stationary law is N(μ, (A − εA²/2)⁻¹) exactly;
    the chain must match it (and with ε = 0.1 it differs from Σ by much more than 5 SE)."""
    eps = 0.1
    samples = trace(Langevin(step_size=eps), gaussian_energy, gaussian_start(500, 1), 300, 400)
    biased = torch.linalg.inv(PRECISION - eps * PRECISION @ PRECISION / 2)
    assert_moments(samples, MEAN, biased, "ULA vs its discretised law")
    z = z_scores(samples, exact_features(MEAN, COV), MEAN)
    assert z.abs().max() > Z  # the O(ε) bias is visible: the test above has the power to see errors


@pytest.mark.parametrize("kernel", [MALA(step_size=0.3), HMC(step_size=0.2, n_leapfrog=5)], ids=["mala", "hmc"])
def test_metropolis_kernels_match_gaussian_moments(kernel):
    samples = trace(kernel, gaussian_energy, gaussian_start(500, 2, 3.0), 300, 300)
    assert_moments(samples, MEAN, COV, kernel.name)


@pytest.mark.parametrize("kernel, target", [(MALA(step_size=2.0), 0.574), (HMC(step_size=2.0, n_leapfrog=4), 0.65)],
                         ids=["mala", "hmc"])
def test_step_size_adapts_to_the_target_acceptance(kernel, target):
    g = torch.Generator().manual_seed(3)
    state = kernel.run(gaussian_energy, ChainState(exact_gaussian_samples(400, 3)), 400, g)
    assert state.layers["step_size"][0] < 2.0
    kernel.adapt = False
    state = kernel.run(gaussian_energy, state, 50, g)
    # the mean acceptance probability of 400 chains × 50 steps has SE < 0.01; adaptation noise
    # moves ε a little around its fixed point, so allow 0.05
    assert abs(float(state.layers["accept"].mean()) - target) < 0.05


# -- invariance: exact starts, large steps, no adaptation -------------------------------------
class MALAWithoutCorrection(MALA):
    """A wrong acceptance ratio: the proposal densities q(x|y)/q(y|x) dropped."""

    def log_acceptance(self, x, u, grad, y, uy, grad_y, eps):
        return u - uy


class HMCWithoutKinetic(HMC):
    """A wrong acceptance ratio: the kinetic energy left out of H."""

    def hamiltonian(self, u, p, mass):
        return u


def invariance_z(kernel) -> torch.Tensor:
    """z-scores of the moments after chains started exactly at π take 40 big steps."""
    samples = trace(kernel, gaussian_energy, exact_gaussian_samples(2000, 4), 0, 40, seed=5)
    return z_scores(samples, exact_features(MEAN, COV), MEAN)


@pytest.mark.parametrize("kernel, broken", [
    (MALA(step_size=0.8, adapt=False), MALAWithoutCorrection(step_size=0.8, adapt=False)),
    (HMC(step_size=0.9, n_leapfrog=3, adapt=False), HMCWithoutKinetic(step_size=0.9, n_leapfrog=3, adapt=False)),
], ids=["mala", "hmc"])
def test_mala_and_hmc_keep_the_target_invariant(kernel, broken):
    """Started at π, a correct kernel stays at π; the same check flags a wrong acceptance ratio."""
    z = invariance_z(kernel)
    assert z.abs().max() < Z, f"{kernel.name} moved the chains off π: z = {z.numpy().round(2)}"
    z_broken = invariance_z(broken)
    assert z_broken.abs().max() > 2 * Z, f"the broken {kernel.name} went unnoticed: z = {z_broken.numpy().round(2)}"


# -- a mixture --------------------------------------------------------------------------------
MIX_MEANS = torch.tensor([[-1.0, 0.0], [1.0, 0.5]], dtype=DT)
MIX_SD = torch.tensor([0.6, 0.5], dtype=DT)
MIX_W = torch.tensor([0.4, 0.6], dtype=DT)


def mixture_energy(x: torch.Tensor) -> torch.Tensor:
    d2 = ((x.unsqueeze(1) - MIX_MEANS) ** 2).sum(-1) / MIX_SD ** 2
    log = torch.log(MIX_W) - 0.5 * d2 - 2 * torch.log(MIX_SD)
    return -torch.logsumexp(log, 1)


def mixture_moments() -> tuple[torch.Tensor, torch.Tensor]:
    mean = (MIX_W[:, None] * MIX_MEANS).sum(0)
    second = sum(MIX_W[k] * (MIX_SD[k] ** 2 * torch.eye(2, dtype=DT) + torch.outer(MIX_MEANS[k], MIX_MEANS[k]))
                 for k in range(2))
    return mean, second - torch.outer(mean, mean)


@pytest.mark.parametrize("kernel", [MALA(step_size=0.3), HMC(step_size=0.3, n_leapfrog=5)], ids=["mala", "hmc"])
def test_kernels_match_mixture_moments(kernel):
    mean, cov = mixture_moments()
    g = torch.Generator().manual_seed(6)
    start = torch.randn(500, 2, generator=g, dtype=DT)
    samples = trace(kernel, mixture_energy, start, 300, 600, seed=7)
    assert_moments(samples, mean, cov, f"{kernel.name} on the mixture")


# -- discrete: Ising and Potts by enumeration -------------------------------------------------
def ising(d: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    j = torch.randn(d, d, generator=g, dtype=DT) * 0.3
    j = torch.triu(j, 1)
    j = j + j.T
    h = torch.randn(d, generator=g, dtype=DT) * 0.3

    def energy(x: torch.Tensor) -> torch.Tensor:
        s = 2 * x - 1
        return -0.5 * ((s @ j) * s).sum(1) - s @ h
    return energy


def enumerated_moments(energy, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    p = torch.softmax(-energy(states), 0)
    mean = p @ states
    d = states - mean
    return mean, (p[:, None] * d).T @ d


@pytest.mark.parametrize("kernel, steps", [(Gibbs(), 200), (Metropolis(), 200), (GibbsWithGradients(), 800)],
                         ids=["gibbs", "metropolis", "gwg"])
def test_discrete_kernels_match_an_enumerated_ising_model(kernel, steps):
    energy = ising()
    states = torch.tensor(list(itertools.product([0.0, 1.0], repeat=8)), dtype=DT)
    mean, cov = enumerated_moments(energy, states)
    g = torch.Generator().manual_seed(8)
    start = (torch.rand(400, 8, generator=g, dtype=DT) < 0.5).to(DT)
    samples = trace(kernel, energy, start, steps // 4, steps, seed=9)
    assert set(samples.unique().tolist()) <= {0.0, 1.0}
    assert_moments(samples, mean, cov, f"{kernel.name} on the Ising model")


def potts():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(9, 9, generator=g, dtype=DT) * 0.5
    w = (w + w.T) / 2
    b = torch.randn(9, generator=g, dtype=DT) * 0.5

    def energy(x: torch.Tensor) -> torch.Tensor:
        return -0.5 * ((x @ w) * x).sum(1) - x @ b
    return energy


@pytest.mark.parametrize("kernel", [Gibbs(categories=3), Metropolis(categories=3)], ids=["gibbs", "metropolis"])
def test_categorical_kernels_match_an_enumerated_potts_model(kernel):
    energy = potts()
    codes = torch.tensor(list(itertools.product(range(3), repeat=3)))
    states = torch.nn.functional.one_hot(codes, 3).reshape(27, 9).to(DT)
    mean, cov = enumerated_moments(energy, states)
    g = torch.Generator().manual_seed(10)
    start = states[torch.randint(27, (400,), generator=g)]
    samples = trace(kernel, energy, start, 50, 200, seed=11)
    assert torch.all(samples.reshape(200, 400, 3, 3).sum(-1) == 1)
    keep = [i for i in range(9) if i % 3 != 2]  # drop one column per block: the rest are linearly dependent
    sub_cov = cov[keep][:, keep]
    assert_moments(samples[..., keep], mean[keep], sub_cov, f"{kernel.name} on the Potts model")


# -- support, errors, diagnostics ---------------------------------------------------------------
def test_chains_stay_inside_bounds():
    low, high = torch.full((3,), 0.0, dtype=DT), torch.full((3,), 1.5, dtype=DT)

    def boxed(x):
        inside = ((x >= low) & (x <= high)).all(1)
        return torch.where(inside, gaussian_energy(x), torch.full_like(x[:, 0], math.inf))
    start = torch.full((50, 3), 0.5, dtype=DT)
    for kernel in (Langevin(step_size=0.5), MALA(step_size=0.5), HMC(step_size=0.5, n_leapfrog=3)):
        x = kernel.run(boxed, ChainState(start), 30, torch.Generator().manual_seed(0), (low, high)).visible
        assert bool(((x >= low) & (x <= high)).all()), kernel.name


def test_non_finite_start_and_bad_names_are_refused():
    with pytest.raises(DataError, match="energy is nan"):
        MALA().run(lambda x: x.sum(1) * math.nan, ChainState(torch.zeros(4, 2, dtype=DT)), 1)
    with pytest.raises(ConfigurationError, match="sampler must be one of"):
        make_kernel("nuts")
    with pytest.raises(ConfigurationError, match="step_size"):
        MALA(step_size=-1.0)
    with pytest.raises(ConfigurationError, match="binary"):
        GibbsWithGradients(categories=3)
    assert make_kernel(HMC(n_leapfrog=3).config()) == HMC(n_leapfrog=3)


def ar1(rho: float, steps: int, chains: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(steps, chains, generator=g, dtype=DT) * math.sqrt(1 - rho ** 2)
    x = torch.empty(steps, chains, dtype=DT)
    x[0] = torch.randn(chains, generator=g, dtype=DT)
    for t in range(1, steps):
        x[t] = rho * x[t - 1] + noise[t]
    return x


def test_diagnostics_on_an_ar1_process():
    """AR(1) with ρ = 0.9: τ = (1 + ρ)/(1 − ρ) = 19 and var(mean of N draws) ≈ τ/N.  The estimate
    of τ from 8 chains × 20,000 steps has a relative SE of about √(2(2W+1)/N) ≈ 5 % for a
    window W ≈ 4τ; allow 20 %."""
    rho, tau = 0.9, 19.0
    x = ar1(rho, 20000, 8, 0)
    assert abs(float(autocorrelation_time(x)) / tau - 1) < 0.2
    avg = batch_means(x.unsqueeze(-1), batches_per_chain=20)  # blocks of 1000 ≫ τ
    exact_se = math.sqrt(tau / x.numel())
    assert abs(float(avg.standard_error[0]) / exact_se - 1) < 0.2   # SE from 160 blocks: ±6 %
    assert abs(float(avg.ess[0]) / (x.numel() / tau) - 1) < 0.4


def _reads(monkeypatch, run) -> int:
    """Tensor values read back to the host while ``run()`` runs (each a GPU synchronisation on CUDA)."""
    with monkeypatch.context() as m:
        calls = record_host_reads(m)
        run()
    return len(calls)


@pytest.mark.parametrize("kernel, start", [
    (Langevin(step_size=0.1), torch.zeros(20, 3, dtype=DT)),
    (MALA(step_size=0.1), torch.zeros(20, 3, dtype=DT)),
    (Gibbs(), torch.zeros(20, 4, dtype=DT)),
], ids=["langevin", "mala", "gibbs"])
def test_reads_back_per_run_do_not_grow_with_the_steps(monkeypatch, kernel, start):
    """The finiteness checks accumulate on the device: as many read-backs for 20 steps as for 1."""
    energy = gaussian_energy if kernel.continuous else (lambda x: (x.sum(1) - 1.5) ** 2)

    def run(steps):
        return lambda: kernel.run(energy, ChainState(start.clone()), steps, torch.Generator().manual_seed(0))

    assert _reads(monkeypatch, run(20)) == _reads(monkeypatch, run(1)) <= 2


def test_a_non_finite_energy_met_during_the_run_is_still_refused():
    def blows_up(x):  # finite at the start, infinite once a chain leaves the unit ball
        return torch.where((x ** 2).sum(1) < 1, (x ** 2).sum(1), torch.full_like(x[:, 0], math.inf))

    with pytest.raises(DataError, match="Langevin chains left the finite numbers"):
        Langevin(step_size=1.0).run(blows_up, ChainState(torch.zeros(50, 2, dtype=DT)), 20,
                                    torch.Generator().manual_seed(0))
    with pytest.raises(DataError, match="every value of variable 0"):  # the first such variable is named
        Gibbs().run(lambda x: torch.where(x[:, 2] == 0, math.inf, 0.0) + x.sum(1),
                    ChainState(torch.zeros(6, 3, dtype=DT)), 2, torch.Generator().manual_seed(0))
