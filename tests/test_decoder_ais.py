"""Decoder AIS against quadrature over z (latent dimension 1 and 2), bidirectional Monte Carlo on data
simulated from the model, and the Parzen / nearest-neighbour helpers against brute force."""

from __future__ import annotations

import math

import pytest
import torch

from boltzkit.errors import ConfigurationError, DataError
from boltzkit.evaluation.decoder_ais import (
    decoder_ais,
    decoder_reverse_ais,
    quadrature_log_likelihood,
    select_observation_sigma,
    sigmoid_betas,
)
from boltzkit.evaluation.parzen import (
    nearest_neighbour_distance,
    parzen_log_likelihood,
    parzen_log_likelihoods,
    select_sigma,
)
from boltzkit.models.gan import GAN
from boltzkit.training.threads import torch_threads


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):   # tiny matrices: more threads only add contention
        yield


def decoder(latent: int, pixels: int, hidden: int = 16, scale: float = 3.0, seed: int = 1,
            output: str = "bernoulli", sigma: float = 0.1) -> GAN:
    """A GAN generator with weights scaled up, so that p(x | z) is far from flat in z."""
    gan = GAN(pixels, latent, (hidden,), (4,), output, sigma, seed=seed, dtype=torch.float64)
    with torch.no_grad():
        for p in gan.generator_net.parameters():
            p.mul_(scale)
    return gan


def test_sigmoid_schedule():
    b = sigmoid_betas(50)
    assert b[0] == 0 and b[-1] == 1 and bool((b[1:] > b[:-1]).all())
    steps = b[1:] - b[:-1]
    assert steps[0] < steps[25] and steps[-1] < steps[25]          # dense at both ends


@pytest.mark.parametrize("latent, points, output", [(1, 2001, "bernoulli"), (2, 201, "bernoulli"),
                                                    (1, 2001, "gaussian")])
def test_ais_agrees_with_quadrature_over_z(latent, points, output):
    gan = decoder(latent, 40, output=output, sigma=0.5)
    _, x = gan.sample_observations(20, torch.Generator().manual_seed(0))
    exact = quadrature_log_likelihood(gan, x, points=points)
    # the grid is fine enough: a finer one changes log p(x) by far less than the AIS error
    assert float((exact - quadrature_log_likelihood(gan, x, points=2 * points + 1)).abs().max()) < 1e-3
    result = decoder_ais(gan, x, n_chains=16, betas=300, n_leapfrog=5, step_size=0.1, seed=3)
    # per example, the ±3 s.e. interval of mean(w) should cover log p(x) (≈ 99 % each under the CLT);
    # allow one miss in 20, and the mean over examples must lie in the mean interval
    covered = (result.low <= exact) & (exact <= result.high)
    assert int(covered.sum()) >= 19
    estimate = result.estimate()
    assert estimate.low <= float(exact.mean()) <= estimate.high
    assert estimate.high - estimate.low < 1.0
    assert 0.3 < result.accept < 1.0


def test_bidirectional_monte_carlo_brackets_the_truth():
    gan = decoder(2, 60)
    z, x = gan.sample_observations(40, torch.Generator().manual_seed(0))
    exact = quadrature_log_likelihood(gan, x, points=201)
    se = lambda d: float(d.std()) / math.sqrt(d.numel())  # noqa: E731  (s.e. of the mean over examples)
    # a short schedule: forward is a stochastic lower bound, reverse an upper bound; both gaps are
    # several standard errors (of the mean over the 40 examples) wide, so the order is not noise
    short_f = decoder_ais(gan, x, n_chains=8, betas=10, n_leapfrog=5, step_size=0.1, seed=1)
    short_r = decoder_reverse_ais(gan, x, z, n_chains=8, betas=10, n_leapfrog=5, step_size=0.1, seed=2)
    gap_f, gap_r = short_f.log_likelihood - exact, short_r.log_likelihood - exact
    assert float(gap_f.mean()) < -2 * se(gap_f)
    assert float(gap_r.mean()) > 2 * se(gap_r)
    # a long schedule closes the bracket: both within 3 s.e. of the truth, the gap much smaller
    long_f = decoder_ais(gan, x, n_chains=8, betas=300, n_leapfrog=5, step_size=0.1, seed=1)
    long_r = decoder_reverse_ais(gan, x, z, n_chains=8, betas=300, n_leapfrog=5, step_size=0.1, seed=2)
    for result in (long_f, long_r):
        diff = result.log_likelihood - exact
        assert abs(float(diff.mean())) < 3 * se(diff) + 0.01
    assert long_r.mean - long_f.mean < 0.25 * (short_r.mean - short_f.mean)


def test_reverse_ais_checks_the_posterior_samples():
    gan = decoder(2, 10)
    _, x = gan.sample_observations(3, torch.Generator().manual_seed(0))
    with pytest.raises(ConfigurationError, match="posterior samples"):
        decoder_reverse_ais(gan, x, torch.zeros(3, 5, dtype=torch.float64), n_chains=2, betas=3)
    with pytest.raises(DataError):
        decoder_ais(gan, torch.zeros(3, 11, dtype=torch.float64), n_chains=2, betas=3)


def test_observation_sigma_is_chosen_on_validation_rows():
    """Rows simulated from the decoder with σ = 0.2: the exact (quadrature) log-likelihood and the
    validation-AIS choice both prefer 0.2 of {0.05, 0.2, 0.8}; the choice is left on the model."""
    gan = decoder(1, 6, output="gaussian", sigma=0.2)
    _, x = gan.sample_observations(30, torch.Generator().manual_seed(4))
    exact = []
    for s in (0.05, 0.2, 0.8):
        gan.sigma = s
        exact.append(float(quadrature_log_likelihood(gan, x).mean()))
    assert max(range(3), key=exact.__getitem__) == 1
    gan.sigma = 0.05
    best, scores = select_observation_sigma(gan, x, (0.05, 0.2, 0.8), n_chains=8, betas=100, n_leapfrog=5)
    assert best == 0.2 and gan.sigma == 0.2
    for s, e in zip(scores, exact):
        assert s == pytest.approx(e, abs=0.5)      # AIS near the exact values (which lie ≥ 4.7 nats apart)
    with pytest.raises(ConfigurationError, match="Gaussian"):
        select_observation_sigma(decoder(1, 6), x)


def test_parzen_matches_the_mixture_density():
    g = torch.Generator().manual_seed(0)
    samples, x = torch.rand(7, 3, generator=g, dtype=torch.float64), torch.rand(5, 3, generator=g, dtype=torch.float64)
    sigma = 0.3
    normal = torch.distributions.Normal(samples, sigma)     # the mixture of 7 isotropic Gaussians
    direct = torch.logsumexp(normal.log_prob(x[:, None, :]).sum(2), 1) - math.log(7)
    torch.testing.assert_close(parzen_log_likelihood(samples, x, sigma, batch_rows=2), direct)
    best, scores = select_sigma(samples, x, [0.05, 0.3, 3.0])
    assert scores[[0.05, 0.3, 3.0].index(best)] == max(scores)
    many = parzen_log_likelihoods(samples, x, [0.05, 0.3, 3.0], batch_rows=3)   # shared distances, every σ
    for row, s in zip(many, [0.05, 0.3, 3.0]):
        normal = torch.distributions.Normal(samples, s)
        torch.testing.assert_close(row, torch.logsumexp(normal.log_prob(x[:, None, :]).sum(2), 1) - math.log(7))
    torch.testing.assert_close(torch.tensor(scores, dtype=torch.float64), many.mean(1))


def test_nearest_neighbour_distance_by_brute_force():
    g = torch.Generator().manual_seed(1)
    train = (torch.rand(30, 8, generator=g) < 0.5).double()
    samples = torch.cat([train[:3], (torch.rand(4, 8, generator=g) < 0.5).double()])
    d = nearest_neighbour_distance(samples, train, batch_rows=3)
    brute = torch.tensor([min(float((s - t).norm()) for t in train) for s in samples], dtype=torch.float64)
    torch.testing.assert_close(d, brute)
    assert bool((d[:3] == 0).all())          # copies of training rows are at distance 0
