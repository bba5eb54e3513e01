"""AIS against exact enumeration (boltzkit.exact) on small models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from boltzkit import exact
from boltzkit.errors import ConfigurationError
from boltzkit.evaluation.ais import (
    AISResult,
    ais,
    ais_many,
    base_log_partition,
    base_visible_bias,
    default_betas,
    log_likelihood,
    raise_many,
    reverse_ais,
)
from boltzkit.models.rbm import RBM
from conftest import random_rbm


def exact_samples(rbm: RBM, n: int, seed: int = 0) -> torch.Tensor:
    """n exact draws of v from the model: h from p(h) ∝ exp(−F(h)) by enumeration, then v | h."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        states = rbm.hidden.states(0, rbm.hidden.n_states, rbm.weight.dtype)
        p = torch.softmax(-rbm.free_energy_hidden(states), 0)
        h = states[torch.multinomial(p, n, replacement=True, generator=g)]
        return rbm.sample_visible(h, g)


def se_of_log_mean(log_w: torch.Tensor) -> float:
    """Delta-method standard error of log mean(w): se(w̄) / w̄."""
    w = torch.exp(log_w - log_w.max())
    return float(w.std() / w.mean()) / math.sqrt(log_w.numel())


# -- exactness ----------------------------------------------------------------------------------

def test_zero_weights_is_exact_with_zero_variance():
    rbm = random_rbm(12, 6, scale=1.0, seed=3)
    with torch.no_grad():
        rbm.weight.zero_()
    # base = the model's own visible biases: every weight increment is the same number
    result = ais(rbm, base_bias=rbm.visible_bias, n_chains=50, betas=30, seed=0)
    assert isinstance(result, AISResult)
    assert result.log_weights.dtype == torch.float64
    assert float(result.log_weights.std()) == 0.0
    assert result.log_z == pytest.approx(exact.log_partition(rbm), abs=1e-9)
    assert result.log_z_low == pytest.approx(result.log_z, abs=1e-12)
    assert result.log_z_high == pytest.approx(result.log_z, abs=1e-12)
    assert result.ess == pytest.approx(50)


def test_model_equal_to_base_model_gives_identical_weights():
    data = torch.bernoulli(torch.rand(1, 15).expand(300, -1), generator=torch.Generator().manual_seed(0))
    rbm = RBM(15, 7, dtype=torch.float64)
    with torch.no_grad():
        rbm.weight.zero_()
        rbm.visible_bias.copy_(base_visible_bias(rbm, data))
    result = ais(rbm, data, n_chains=40, betas=50, seed=1)
    assert float(result.log_weights.max() - result.log_weights.min()) == 0.0
    assert result.log_z == pytest.approx(exact.log_partition(rbm), abs=1e-9)
    assert result.log_z_base == pytest.approx(result.log_z, abs=1e-9)


def test_base_log_partition_is_exact():
    rbm = random_rbm(10, 5, seed=2)
    bias = torch.randn(10, dtype=torch.float64)
    base = RBM(10, 5, dtype=torch.float64)
    with torch.no_grad():
        base.weight.zero_()
        base.visible_bias.copy_(bias)
    assert base_log_partition(rbm, bias) == pytest.approx(exact.log_partition(base), abs=1e-10)


def test_base_bias_from_data_is_smoothed_log_odds():
    data = torch.zeros(50, 4, dtype=torch.float64)
    data[:, 0] = 1.0
    data[:25, 1] = 1.0
    rbm = RBM(4, 3, dtype=torch.float64)
    bias = base_visible_bias(rbm, data, smoothing=0.1)
    p = torch.tensor([0.95, 0.5, 0.05, 0.05], dtype=torch.float64)
    assert torch.allclose(bias, torch.log(p / (1 - p)))
    assert torch.equal(base_visible_bias(rbm), torch.zeros(4, dtype=torch.float64))


# -- against enumeration on random models ------------------------------------------------------

@pytest.mark.parametrize("scale, seed", [(0.5, 0), (1.0, 1)])
def test_random_model_matches_exact(scale, seed):
    rbm = random_rbm(24, 10, scale=scale, seed=seed)
    truth = exact.log_partition(rbm)
    result = ais(rbm, exact_samples(rbm, 500, seed), n_chains=200, betas=1500, seed=seed)
    # the interval is log(mean w ± 3 se); the estimate must also sit within 5 delta-method
    # standard errors of log mean(w) (≈ 0.01 nats here), which fails at once for a biased path
    assert result.log_z_low <= truth <= result.log_z_high
    assert abs(result.log_z - truth) <= 5 * se_of_log_mean(result.log_weights)
    assert abs(result.log_z - truth) < 0.05
    assert result.ess > 0.5 * result.n_chains
    assert (result.n_chains, result.n_betas) == (200, 1500)


def test_short_schedule_is_less_certain_than_long():
    rbm = random_rbm(20, 10, scale=1.0, seed=4)
    short = ais(rbm, n_chains=200, betas=10, seed=0)
    long = ais(rbm, n_chains=200, betas=1000, seed=0)
    assert short.ess < long.ess
    width = lambda r: r.log_z_high - r.log_z_low  # noqa: E731
    assert width(short) > width(long)


def test_float32_model_agrees_with_exact():
    rbm = random_rbm(20, 8, scale=0.5, seed=5, dtype=torch.float32)
    truth = exact.log_partition(rbm)
    result = ais(rbm, n_chains=200, betas=1500, seed=0)
    assert result.log_weights.dtype == torch.float64
    assert result.log_z_low <= truth <= result.log_z_high
    assert abs(result.log_z - truth) < 0.05


# -- reverse AIS and the bracket ----------------------------------------------------------------

def test_reverse_from_exact_samples_matches_exact():
    rbm = random_rbm(20, 10, scale=0.7, seed=6)
    truth = exact.log_partition(rbm)
    samples = exact_samples(rbm, 200, seed=7)
    result = reverse_ais(rbm, samples, n_chains=200, betas=1500, seed=0)
    assert result.direction == "reverse"
    assert result.log_z_low <= truth <= result.log_z_high
    assert abs(result.log_z - truth) <= 5 * se_of_log_mean(result.log_weights)


def test_forward_and_reverse_bracket_log_z():
    # per chain, E[log Z_A + log w_fwd] = log Z − KL ≤ log Z and E[log Z_A − log w_rev] ≥ log Z
    # (Jensen); with a short schedule both gaps are many standard errors wide
    rbm = random_rbm(20, 10, scale=1.0, seed=8)
    truth = exact.log_partition(rbm)
    samples = exact_samples(rbm, 300, seed=9)
    forward = ais(rbm, n_chains=300, betas=20, seed=0)
    reverse = reverse_ais(rbm, samples, n_chains=300, betas=20, seed=0)

    def mean_and_se(x):
        return float(x.mean()), float(x.std()) / math.sqrt(x.numel())

    fwd, fwd_se = mean_and_se(forward.log_z_base + forward.log_weights)
    rev, rev_se = mean_and_se(reverse.log_z_base - reverse.log_weights)
    assert fwd + 4 * fwd_se < truth < rev - 4 * rev_se
    # and with a long schedule both pooled estimates close in on the truth
    forward = ais(rbm, n_chains=100, betas=2000, seed=1)
    reverse = reverse_ais(rbm, samples, n_chains=100, betas=2000, seed=1)
    assert abs(forward.log_z - truth) < 0.05 and abs(reverse.log_z - truth) < 0.05


# -- log-likelihood -----------------------------------------------------------------------------

def test_log_likelihood_matches_exact_and_orders_interval():
    rbm = random_rbm(16, 8, scale=0.5, seed=10)
    data = exact_samples(rbm, 100, seed=11)
    result = ais(rbm, data, n_chains=200, betas=1000, seed=0)
    estimate = log_likelihood(rbm, data, result)
    truth = exact.log_likelihood(rbm, data)
    assert estimate.low <= estimate.mean <= estimate.high
    assert estimate.low <= truth <= estimate.high
    assert estimate.mean == pytest.approx(exact.log_likelihood(rbm, data, log_z=result.log_z), abs=1e-9)


# -- reproducibility and validation -------------------------------------------------------------

def test_seed_fixes_the_result():
    rbm = random_rbm(15, 6, seed=12)
    a = ais(rbm, n_chains=30, betas=50, seed=5)
    b = ais(rbm, n_chains=30, betas=50, seed=5)
    c = ais(rbm, n_chains=30, betas=50, seed=6)
    assert torch.equal(a.log_weights, b.log_weights) and a.log_z == b.log_z
    assert not torch.equal(a.log_weights, c.log_weights)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(ais(rbm, n_chains=10, betas=20, generator=g1).log_weights,
                       ais(rbm, n_chains=10, betas=20, generator=g2).log_weights)
    data = exact_samples(rbm, 50)
    r1 = reverse_ais(rbm, data, n_chains=20, betas=30, seed=1)
    r2 = reverse_ais(rbm, data, n_chains=20, betas=30, seed=1)
    assert torch.equal(r1.log_weights, r2.log_weights)


def test_default_schedule_follows_the_paper():
    betas = default_betas()
    assert betas.dtype == torch.float64 and len(betas) == 14_500
    assert float(betas[0]) == 0.0 and float(betas[-1]) == 1.0
    assert bool((betas[1:] > betas[:-1]).all())
    assert int((betas < 0.5).sum()) == pytest.approx(500, abs=1)
    assert int(((betas >= 0.5) & (betas < 0.9)).sum()) == pytest.approx(4000, abs=1)
    assert int((betas >= 0.9).sum()) == pytest.approx(10000, abs=1)
    short = default_betas(29)
    assert len(short) == 29 and float(short[0]) == 0.0 and float(short[-1]) == 1.0


def test_bad_arguments_raise():
    rbm = random_rbm(6, 3)
    for betas in (1, torch.tensor([0.0]), torch.tensor([0.1, 1.0]), torch.tensor([0.0, 0.9]),
                  torch.tensor([0.0, 0.7, 0.5, 1.0]), torch.tensor([0.0, float("nan"), 1.0])):
        with pytest.raises(ConfigurationError):
            ais(rbm, betas=betas)
    with pytest.raises(ConfigurationError):
        ais(rbm, n_chains=0, betas=5)
    with pytest.raises(ConfigurationError):
        ais(rbm, torch.ones(3, 6), base_bias=torch.zeros(6), betas=5)
    with pytest.raises(ConfigurationError):
        ais(rbm, base_bias=torch.zeros(5), betas=5)
    # an explicit schedule tensor is accepted as given
    result = ais(rbm, betas=torch.linspace(0, 1, 7), n_chains=4, seed=0)
    assert result.n_betas == 7


# -- slow: a model trained on binarised MNIST, default schedule ---------------------------------

@pytest.mark.slow
def test_mnist_default_schedule_within_a_tenth_of_a_nat():
    from boltzkit.data import load_default
    from boltzkit.training import fit

    x, _ = load_default()
    data = torch.from_numpy(np.ascontiguousarray(x))
    train, test = data[:8000], data[8000:]
    rbm = RBM(784, 20, seed=0)
    fit(rbm, train, epochs=5, batch_size=100, lr=0.05, seed=0)
    truth = exact.log_partition(rbm)
    result = ais(rbm, train, n_chains=100, seed=0)
    reverse = reverse_ais(rbm, test, n_chains=100, base_data=train, seed=0)
    print(f"\nexact log Z {truth:.4f}  AIS {result.log_z:.4f} [{result.log_z_low:.4f}, "
          f"{result.log_z_high:.4f}] ess {result.ess:.1f}  reverse {reverse.log_z:.4f} "
          f"[{reverse.log_z_low:.4f}, {reverse.log_z_high:.4f}]  test LL exact "
          f"{exact.log_likelihood(rbm, test, log_z=truth):.4f} AIS {log_likelihood(rbm, test, result)}")
    assert abs(result.log_z - truth) < 0.1
    assert result.log_z_low <= truth <= result.log_z_high


# -- other unit types -----------------------------------------------------------------------------

@pytest.mark.parametrize("visible, hidden, n_visible, n_hidden", [
    ("softmax:3", "bernoulli", 7, 8),
    ("bernoulli", "spin", 14, 8),
    ("spin", "softmax:3", 12, 5),
])
def test_other_linear_unit_types_match_exact(visible, hidden, n_visible, n_hidden):
    rbm = random_rbm(n_visible, n_hidden, scale=0.5, seed=13, visible=visible, hidden=hidden)
    truth = exact.log_partition(rbm)
    data = exact_samples(rbm, 300, seed=14)
    result = ais(rbm, data, n_chains=200, betas=1000, seed=0)
    assert result.log_z_low <= truth <= result.log_z_high
    assert abs(result.log_z - truth) < 0.05
    reverse = reverse_ais(rbm, data, n_chains=100, betas=1000, base_data=data, seed=0)
    assert abs(reverse.log_z - truth) < 0.05


@pytest.mark.parametrize("visible", ["gaussian", "gaussian:learned"])
def test_gaussian_visible_units_anneal_the_couplings_only(visible):
    """Gaussian-Bernoulli: the base keeps the model's Gaussian layer; AIS must match the exact
    log Z (hidden states enumerated, Gaussian integrated analytically)."""
    rbm = random_rbm(12, 8, scale=0.4, seed=21, visible=visible)
    truth = exact.log_partition(rbm)
    result = ais(rbm, n_chains=200, betas=1000, seed=0)
    assert result.log_z_low <= truth <= result.log_z_high
    assert abs(result.log_z - truth) < 0.05


def test_unsupported_unit_types_raise():
    with pytest.raises(ConfigurationError, match="discrete hidden"):
        ais(RBM(5, 3, hidden="relu"), betas=5)


def rbm_with_biases(n_visible: int, n_hidden: int, seed: int, scale: float, vb: torch.Tensor,
                    hb: torch.Tensor) -> RBM:
    """``random_rbm(n_visible, n_hidden, scale, seed)`` with its biases replaced by ``vb`` and ``hb``."""
    rbm = random_rbm(n_visible, n_hidden, scale=scale, seed=seed)
    with torch.no_grad():
        rbm.visible.bias.copy_(vb)
        rbm.hidden.bias.copy_(hb)
    return rbm


def test_ais_many_matches_exact_for_rbms_that_share_weights_but_not_biases():
    """One batch of chains for R RBMs with their own biases (the steps of an RNN-RBM): each
    log Ẑ_r within 5 delta-method standard errors of exact enumeration, per-row bases too."""
    rbm = random_rbm(12, 8, scale=1.0, seed=4)
    g = torch.Generator().manual_seed(0)
    vb = torch.randn(5, 12, generator=g, dtype=rbm.weight.dtype) * 1.5
    hb = torch.randn(5, 8, generator=g, dtype=rbm.weight.dtype)
    log_z, log_w = ais_many(rbm, vb, hb, n_chains=300, betas=800, base_bias=vb * 0.5,
                            generator=torch.Generator().manual_seed(1))
    assert log_z.shape == (5,) and log_w.shape == (5, 300) and log_z.dtype == torch.float64
    for r in range(5):
        truth = exact.log_partition(rbm_with_biases(12, 8, 4, 1.0, vb[r], hb[r]))
        assert abs(float(log_z[r]) - truth) <= max(5 * se_of_log_mean(log_w[r]), 1e-9), r
    with pytest.raises(ConfigurationError, match="ais_many needs biases"):
        ais_many(rbm, vb[:, :5], hb)


def annealing_model_probability(rbm: RBM, v: torch.Tensor, vb: torch.Tensor, hb: torch.Tensor,
                                betas: list[float]) -> float:
    """q(v) of RAISE's annealing model by enumeration: x_0 ~ p_A (visible bias vb, W = 0), then
    one Gibbs sweep at each β_1..β_K of f_β(x) = exp(vbᵀx) Π_j (1 + exp(β(hb + xW)_j))."""
    w = rbm.weight.detach()
    xs = rbm.visible.states(0, rbm.visible.n_states, w.dtype)
    hs = rbm.hidden.states(0, rbm.hidden.n_states, w.dtype)

    def bernoulli(p: torch.Tensor, states: torch.Tensor) -> torch.Tensor:   # rows of p × states
        return torch.exp(states @ torch.log(p).t() + (1 - states) @ torch.log1p(-p).t()).t()

    q = torch.softmax(xs @ vb, 0)                                           # p_A
    for beta in betas[1:]:
        h_given_x = bernoulli(torch.sigmoid(beta * (hb + xs @ w)), hs)     # (x, h)
        x_given_h = bernoulli(torch.sigmoid(vb + beta * (hs @ w.t())), xs)  # (h, x')
        q = q @ (h_given_x @ x_given_h)
    return float(q[(xs == v).all(1)].squeeze())


def test_raise_many_is_unbiased_for_its_annealing_model():
    """E[q̂(v)] = q(v), the annealing model's probability of v, enumerated for a 3-β schedule
    (where q is still far from p): mean q̂ within 4 standard errors, for two RBMs of one batch."""
    rbm = random_rbm(4, 3, scale=2.0, seed=7)
    g = torch.Generator().manual_seed(2)
    vb = torch.randn(2, 4, generator=g, dtype=rbm.weight.dtype)
    hb = torch.randn(2, 3, generator=g, dtype=rbm.weight.dtype)
    v = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 0.0]], dtype=rbm.weight.dtype)
    betas = [0.0, 0.4, 1.0]
    log_z, log_w = raise_many(rbm, v, vb, hb, n_chains=40_000, betas=torch.tensor(betas),
                              generator=torch.Generator().manual_seed(3))
    assert log_z.shape == (2,) and log_w.shape == (2, 40_000)
    for r in range(2):
        step = rbm_with_biases(4, 3, 7, 2.0, vb[r], hb[r])
        with torch.no_grad():
            log_f = float(-step.free_energy(v[r:r + 1])[0])
        q_hat = math.exp(log_f - float(log_z[r]))                   # the mean of the chains' q̂
        se = q_hat * se_of_log_mean(log_w[r])
        q = annealing_model_probability(rbm, v[r], vb[r], hb[r], betas)
        p = math.exp(log_f - exact.log_partition(step))
        assert abs(q - p) > 10 * se, "the schedule is meant to be short enough for q ≠ p"
        assert abs(q_hat - q) <= 4 * se, (r, q_hat, q, p, se)


def test_raise_many_approaches_exact_log_probability_from_below():
    """With a long schedule, −F(v) − log Ẑ from RAISE is within 5 standard errors (or 0.02 nats)
    of the exact log p(v), for rows of RBMs with their own biases; one chain per row errs low on
    average (Jensen), never high beyond the noise."""
    rbm = random_rbm(10, 6, scale=1.0, seed=5)
    g = torch.Generator().manual_seed(0)
    vb = torch.randn(4, 10, generator=g, dtype=rbm.weight.dtype)
    hb = torch.randn(4, 6, generator=g, dtype=rbm.weight.dtype)
    v = (torch.rand(4, 10, generator=g) < torch.sigmoid(vb)).to(rbm.weight.dtype)
    log_z, log_w = raise_many(rbm, v, vb, hb, n_chains=200, betas=1000, base_bias=vb * 0.5,
                              generator=torch.Generator().manual_seed(1))
    for r in range(4):
        truth = exact.log_partition(rbm_with_biases(10, 6, 5, 1.0, vb[r], hb[r]))
        assert abs(float(log_z[r]) - truth) <= max(5 * se_of_log_mean(log_w[r]), 0.02), (r, float(log_z[r]), truth)
    with pytest.raises(ConfigurationError, match="one observed row per RBM"):
        raise_many(rbm, v[:, :5], vb, hb)
