"""Gradient estimators against autograd and exact enumeration."""

from __future__ import annotations

import itertools

import pytest
import torch

from boltzkit import exact
from boltzkit.errors import ConfigurationError
from boltzkit.models.base import free_energy_gap, free_energy_gradient
from boltzkit.models.rbm import RBM
from boltzkit.training.gradient import (
    ContrastiveDivergence,
    PersistentContrastiveDivergence,
    make_estimator,
    write_gradient,
)
from conftest import random_rbm


def flat_grad(rbm: RBM) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in rbm.named_tensors().values()])


def binary(rows: int, cols: int, p: float = 0.5, seed: int = 0) -> torch.Tensor:
    return torch.bernoulli(torch.full((rows, cols), p), generator=torch.Generator().manual_seed(seed)).double()


@pytest.mark.parametrize("n_pos,n_neg", [(13, 13), (7, 29)])
def test_closed_form_gradient_equals_autograd_of_free_energy_gap(n_pos, n_neg):
    rbm = random_rbm(6, 4, seed=1)
    v_pos, v_neg = binary(n_pos, 6, seed=2), binary(n_neg, 6, 0.3, seed=3)
    auto = torch.autograd.grad(free_energy_gap(rbm, v_pos, v_neg), list(rbm.parameters()))
    write_gradient(rbm, v_pos, v_neg)
    for p, g in zip(rbm.parameters(), auto):
        torch.testing.assert_close(p.grad, g, rtol=1e-12, atol=1e-14)
    # the fallback used by non-linear unit types computes the same thing
    closed = flat_grad(rbm)
    free_energy_gradient(rbm, v_pos, v_neg)
    torch.testing.assert_close(flat_grad(rbm), closed, rtol=1e-12, atol=1e-14)


def test_gradient_is_overwritten_not_accumulated_and_pos_field_is_reused():
    rbm = random_rbm(5, 3, seed=4)
    v_pos, v_neg = binary(8, 5, seed=5), binary(8, 5, seed=6)
    write_gradient(rbm, v_pos, v_neg)
    first = flat_grad(rbm).clone()
    write_gradient(rbm, v_pos, v_neg, pos_field=rbm.hidden_field(v_pos).detach())
    torch.testing.assert_close(flat_grad(rbm), first, rtol=0, atol=0)
    # identical positive and negative samples: the gradient vanishes
    write_gradient(rbm, v_pos, v_pos)
    assert float(flat_grad(rbm).abs().max()) < 1e-14


def cd_bias(rbm: RBM, data: torch.Tensor, k: int, reps: int = 20, copies: int = 1000):
    """Bias of the mean CD-k gradient vs the exact gradient, and the standard error of that mean.

    ``.grad`` holds −∇ mean log p estimates, so bias = mean(.grad) + exact ∇ mean log p.
    Each replicate averages CD over ``copies`` copies of the data set (an unbiased estimate
    of the CD-k expectation); the replicates give the standard error.
    """
    exact_grad = torch.cat([g.reshape(-1) for g in exact.log_likelihood_gradient(rbm, data).values()])
    estimator, g = ContrastiveDivergence(k), torch.Generator().manual_seed(k)
    batch = data.repeat(copies, 1)
    grads = []
    for _ in range(reps):
        estimator.step(rbm, batch, g)
        grads.append(flat_grad(rbm).clone())
    grads = torch.stack(grads)
    return grads.mean(0) + exact_grad, grads.std(0) / reps ** 0.5


def test_cd_bias_falls_as_k_grows():
    """CD-1 on a strongly coupled model is biased far beyond the noise; long chains are not."""
    rbm = random_rbm(5, 3, scale=2.0, seed=11)
    data = binary(8, 5, seed=0)
    bias_1, se_1 = cd_bias(rbm, data, 1)
    bias_3, _ = cd_bias(rbm, data, 3)
    bias_50, se_50 = cd_bias(rbm, data, 50)
    assert float(bias_1.norm()) > 20 * float(se_1.norm())       # CD-1 bias is real, not noise
    assert float(bias_3.norm()) < 0.5 * float(bias_1.norm())
    assert float(bias_50.norm()) < 0.5 * float(bias_3.norm())
    assert float((bias_50 / se_50).abs().max()) < 5              # consistent with zero at 5σ


def exact_model_moments(rbm: RBM) -> tuple[torch.Tensor, torch.Tensor]:
    """E_model[v] and E_model[v μ(v)ᵀ] = E_model[v hᵀ], μ(v) = E[h|v], by enumerating v."""
    vs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=rbm.n_visible)), dtype=torch.float64)
    with torch.no_grad():
        p = torch.softmax(-rbm.free_energy(vs), 0)
        mu = rbm.hidden_mean(vs)
    return p @ vs, torch.einsum("s,si,sj->ij", p, vs, mu)


def test_pcd_negative_phase_matches_exact_model_expectations():
    """Persistent chains on a fixed model: time averages per chain, standard error across chains."""
    rbm = random_rbm(5, 3, scale=2.0, seed=11)
    data = binary(8, 5, seed=0)
    n_chains, burn_in, steps = 2000, 30, 100
    estimator = PersistentContrastiveDivergence(k=1, n_chains=n_chains)
    g = torch.Generator().manual_seed(0)
    sum_v = torch.zeros(n_chains, 5, dtype=torch.float64)
    sum_vh = torch.zeros(n_chains, 5, 3, dtype=torch.float64)
    for t in range(burn_in + steps):
        v_neg = estimator.step(rbm, data, g)
        assert v_neg.shape == (n_chains, 5)
        if t >= burn_in:
            with torch.no_grad():
                sum_v += v_neg
                sum_vh += v_neg.unsqueeze(2) * rbm.hidden_mean(v_neg).unsqueeze(1)
    assert torch.equal(estimator.state_dict()["chains"], v_neg)
    exact_v, exact_vh = exact_model_moments(rbm)
    for chain_means, expected in ((sum_v / steps, exact_v), (sum_vh / steps, exact_vh)):
        se = chain_means.std(0) / n_chains ** 0.5               # chains are independent
        z = (chain_means.mean(0) - expected) / se
        assert float(z.abs().max()) < 5, z


def test_mask_keeps_masked_visible_entries_at_zero_in_cd_samples():
    rbm = random_rbm(8, 4, scale=2.0, seed=7)
    rbm.visible_bias.data.fill_(3.0)                            # unmasked units are mostly on
    data = binary(64, 8, seed=8)
    mask = binary(64, 8, seed=9)
    for k in (1, 3):
        v_neg = ContrastiveDivergence(k).step(rbm, data * mask, torch.Generator().manual_seed(k), mask=mask)
        assert bool((v_neg[mask == 0] == 0).all())
        assert float(v_neg[mask == 1].mean()) > 0.5
    with pytest.raises(ConfigurationError, match="masks"):
        PersistentContrastiveDivergence().step(rbm, data, mask=mask)


def test_estimator_construction_is_validated():
    assert isinstance(make_estimator("cd", k=2), ContrastiveDivergence)
    pcd = make_estimator("pcd", k=3, n_chains=10)
    assert isinstance(pcd, PersistentContrastiveDivergence) and pcd.k == 3 and pcd.chains.n_chains == 10
    with pytest.raises(ConfigurationError, match="unknown method"):
        make_estimator("nope")
    for cls in (ContrastiveDivergence, PersistentContrastiveDivergence):
        with pytest.raises(ConfigurationError, match="k must be"):
            cls(k=0)


@pytest.mark.parametrize("k", [1, 3])
def test_cd_mean_field_reconstruction_is_the_expectation_of_the_sampled_last_step(k):
    """visible="mean" runs the same chain (same draws) and returns E[v | h_k] where the default
    returns a sample of it: probabilities instead of 0/1, equal on average over many chains."""
    rbm = random_rbm(6, 4, scale=0.8, seed=3)
    v = torch.bernoulli(torch.full((4000, 6), 0.5, dtype=torch.float64),
                        generator=torch.Generator().manual_seed(1))
    field = rbm.hidden_field(v)
    mean = ContrastiveDivergence(k, visible="mean").negative_phase(
        rbm, v, field, torch.Generator().manual_seed(2), None).visible
    sampled = ContrastiveDivergence(k).negative_phase(rbm, v, field, torch.Generator().manual_seed(2), None).visible
    assert ((mean > 0) & (mean < 1)).all() and set(sampled.unique().tolist()) <= {0.0, 1.0}
    # 4,000 Bernoulli draws per column: standard error ≤ 0.5/√4000 ≈ 0.008
    assert (sampled.mean(0) - mean.mean(0)).abs().max() < 0.04
    with pytest.raises(ConfigurationError, match="visible"):
        ContrastiveDivergence(1, visible="median")
