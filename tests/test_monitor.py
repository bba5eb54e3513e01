"""Monitoring quantities against brute-force computations from the model's own formulas."""

from __future__ import annotations

import pytest
import torch

from boltzkit.errors import ConfigurationError
from boltzkit.monitor import pseudo_log_likelihood, reconstruction_error
from boltzkit.rbm import RBM
from boltzkit.units import UNIT_TYPES

from conftest import random_rbm


def binary(rows: int, cols: int, seed: int = 0) -> torch.Tensor:
    return torch.bernoulli(torch.full((rows, cols), 0.4), generator=torch.Generator().manual_seed(seed)).double()


def brute_force_pll(rbm: RBM, data: torch.Tensor) -> float:
    """(1/N) Σ_n Σ_i log p(v_i | v_−i) with p(v_i | v_−i) = e^{−F(v)} / (e^{−F(v)} + e^{−F(v with i flipped)})."""
    total = 0.0
    with torch.no_grad():
        for v in data:
            for i in range(len(v)):
                flipped = v.clone()
                flipped[i] = 1 - flipped[i]
                f = rbm.free_energy(torch.stack([v, flipped]))
                total += float(-f[0] - torch.logsumexp(-f, 0))
    return total / data.shape[0]


@pytest.mark.parametrize("n_visible,n_hidden,scale", [(7, 4, 1.0), (5, 9, 3.0)])
def test_pseudo_log_likelihood_matches_brute_force(n_visible, n_hidden, scale):
    rbm = random_rbm(n_visible, n_hidden, scale=scale, seed=n_visible)
    data = binary(13, n_visible, seed=1)
    expected = brute_force_pll(rbm, data)
    assert pseudo_log_likelihood(rbm, data) == pytest.approx(expected, abs=1e-10)
    assert pseudo_log_likelihood(rbm, data, chunk_rows=4) == pytest.approx(expected, abs=1e-10)


def test_pseudo_log_likelihood_of_an_independent_model():
    """With W = 0 the sites are independent: log p(v_i | v_−i) = log σ((2v_i − 1) b_i)."""
    rbm = RBM(6, 3, weight_scale=0.0, dtype=torch.float64)
    with torch.no_grad():
        rbm.visible_bias.copy_(torch.linspace(-2, 2, 6, dtype=torch.float64))
    data = binary(10, 6, seed=2)
    expected = float(torch.nn.functional.logsigmoid((2 * data - 1) * rbm.visible_bias.detach()).sum(1).mean())
    assert pseudo_log_likelihood(rbm, data) == pytest.approx(expected, abs=1e-12)


def test_reconstruction_error_matches_manual_computation():
    rbm = random_rbm(6, 4, seed=3)
    data = binary(9, 6, seed=4)
    with torch.no_grad():
        mu_h = torch.sigmoid(rbm.hidden_bias + data @ rbm.weight)
        mu_v = torch.sigmoid(rbm.visible_bias + mu_h @ rbm.weight.t())
    expected = float(((mu_v - data) ** 2).sum() / data.numel())
    error = reconstruction_error(rbm, data)
    assert error == pytest.approx(expected, abs=1e-14)
    assert 0 < error < 1                                        # binary data, means in (0, 1)


def test_reconstruction_error_is_zero_for_a_model_that_copies_its_input():
    """h_j = σ(20 v_j − 10) ≈ v_j and v_i = σ(20 h_i − 10) ≈ h_i: error ≈ σ(−10)² ≈ 2e-9."""
    rbm = RBM(5, 5, dtype=torch.float64)
    with torch.no_grad():
        rbm.weight.copy_(20 * torch.eye(5, dtype=torch.float64))
        rbm.visible_bias.fill_(-10)
        rbm.hidden_bias.fill_(-10)
    error = reconstruction_error(rbm, binary(20, 5, seed=5))
    assert 0 <= error < 1e-8


def test_pseudo_log_likelihood_needs_binary_visible_units():
    if "gaussian" not in UNIT_TYPES:
        pytest.skip("no Gaussian unit type registered")
    rbm = RBM(4, 3, visible="gaussian")
    with pytest.raises(ConfigurationError, match="binary"):
        pseudo_log_likelihood(rbm, torch.zeros(2, 4))
