"""The RBM against brute force on tiny models: energies, conditionals, Gibbs sampling, input checks."""

from __future__ import annotations

import itertools

import pytest
import torch

from boltzkit.errors import DataError
from boltzkit.models.rbm import RBM
from conftest import random_rbm


def all_binary(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)


def joint_log_weights(rbm: RBM) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All visible states, all hidden states and the table −E(v, h) of shape (n_v states, n_h states)."""
    vs, hs = all_binary(rbm.n_visible), all_binary(rbm.n_hidden)
    v = vs.repeat_interleave(len(hs), 0)
    h = hs.repeat(len(vs), 1)
    with torch.no_grad():
        return vs, hs, (-rbm.energy(v, h)).reshape(len(vs), len(hs))


def test_energy_is_the_binary_formula():
    rbm = random_rbm(4, 3, seed=1)
    v, h = all_binary(4)[[3, 9, 14]], all_binary(3)[[1, 6, 7]]
    expected = -(v @ rbm.visible_bias) - (h @ rbm.hidden_bias) - ((v @ rbm.weight) * h).sum(1)
    torch.testing.assert_close(rbm.energy(v, h), expected, rtol=0, atol=1e-13)


def test_free_energy_sums_out_the_hidden_layer():
    rbm = random_rbm(5, 4, seed=2)
    vs, _, log_w = joint_log_weights(rbm)
    torch.testing.assert_close(rbm.free_energy(vs), -torch.logsumexp(log_w, 1), rtol=0, atol=1e-12)
    # and the hidden free energy sums out the visible layer
    _, hs, _ = joint_log_weights(rbm)
    torch.testing.assert_close(rbm.free_energy_hidden(hs), -torch.logsumexp(log_w, 0), rtol=0, atol=1e-12)


def test_conditionals_are_ratios_of_joint_probabilities():
    """p(h_j=1 | v) = Σ_{h: h_j=1} p(v,h) / Σ_h p(v,h), and the same for p(v_i=1 | h)."""
    rbm = random_rbm(4, 3, scale=1.5, seed=3)
    vs, hs, log_w = joint_log_weights(rbm)
    p_h_given_v = torch.softmax(log_w, 1)                     # rows: v, columns: h
    p_v_given_h = torch.softmax(log_w, 0)                     # columns: h
    torch.testing.assert_close(rbm.hidden_mean(vs), p_h_given_v @ hs, rtol=0, atol=1e-12)
    torch.testing.assert_close(rbm.visible_mean(hs), p_v_given_h.t() @ vs, rtol=0, atol=1e-12)


def test_gibbs_sampling_reaches_the_exact_marginals():
    """Independent long chains: final-state moments within 5 standard errors of the exact ones."""
    rbm = random_rbm(4, 3, scale=2.0, seed=4)
    vs, hs, log_w = joint_log_weights(rbm)
    p = torch.softmax(log_w.reshape(-1), 0).reshape(log_w.shape)
    exact_v, exact_h = p.sum(1) @ vs, p.sum(0) @ hs
    exact_vh = vs.t() @ p @ hs                                  # E[v_i h_j]

    n_chains = 20000
    g = torch.Generator().manual_seed(0)
    v = torch.zeros(n_chains, 4, dtype=torch.float64)           # far from typical states
    v = rbm.sample(v, 100, generator=g)
    with torch.no_grad():
        h = rbm.sample_hidden(v, generator=g)
    assert v.dtype == torch.float64 and set(v.unique().tolist()) <= {0.0, 1.0}

    def within_5_sigma(samples: torch.Tensor, exact: torch.Tensor) -> None:
        se = (exact * (1 - exact) / n_chains).sqrt()           # binary samples: var = p(1−p)
        z = (samples.mean(0) - exact) / se
        assert float(z.abs().max()) < 5, z

    within_5_sigma(v, exact_v)
    within_5_sigma(h, exact_h)
    within_5_sigma((v.unsqueeze(2) * h.unsqueeze(1)).reshape(n_chains, -1), exact_vh.reshape(-1))


def test_mask_keeps_masked_entries_at_zero():
    rbm = random_rbm(6, 3, scale=2.0, seed=5)
    g = torch.Generator().manual_seed(1)
    mask = torch.bernoulli(torch.full((50, 6), 0.5), generator=g).double()
    v = rbm.sample(torch.ones(50, 6, dtype=torch.float64), 5, generator=g, mask=mask)
    assert bool((v[mask == 0] == 0).all())
    assert bool((v[mask == 1] == 1).any())


@pytest.mark.parametrize("data,message", [
    (torch.zeros(5), "2-D"),
    (torch.zeros(2, 3, 4), "2-D"),
    (torch.zeros(4, 7), "7 columns but the model has 6"),
    (torch.zeros(0, 6), "empty"),
    (torch.tensor([[0.0, 1, 1, 0, float("nan"), 0]]), "NaN or inf"),
    (torch.tensor([[0.0, 1, 1, 0, float("inf"), 0]]), "NaN or inf"),
    (torch.tensor([[0.0, 1, 1, 0, 1, 0], [0.0, 1, 0.5, 0, 1, 0]]), "other than 0/1 .first in row 1"),
])
def test_check_data_rejects_bad_input(data, message):
    rbm = RBM(6, 3)
    with pytest.raises(DataError, match=message):
        rbm.check_data(data)
    with pytest.raises(ValueError):                           # DataError is a ValueError
        rbm.check_data(data)


def test_check_data_accepts_binary_data_and_names_it():
    rbm = RBM(6, 3)
    rbm.check_data(torch.bernoulli(torch.full((10, 6), 0.5)))
    with pytest.raises(DataError, match="^validation set"):
        rbm.check_data(torch.full((2, 6), 0.5), name="validation set")


def test_float64_model_computes_in_float64():
    rbm = RBM(5, 4, seed=0, dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in rbm.parameters())
    v = torch.bernoulli(torch.full((3, 5), 0.5), generator=torch.Generator().manual_seed(0)).double()
    g = torch.Generator().manual_seed(0)
    for out in (rbm.free_energy(v), rbm.hidden_mean(v), rbm.reconstruct(v), rbm.sample(v, 2, g)):
        assert out.dtype == torch.float64
    assert rbm.config()["dtype"] == "float64"
    assert RBM.from_config(rbm.config()).weight.dtype == torch.float64


def test_same_seed_gives_identical_initialisation():
    a, b, c = RBM(20, 7, seed=3), RBM(20, 7, seed=3), RBM(20, 7, seed=4)
    for (name, pa), pb in zip(a.named_tensors().items(), b.parameters()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.weight, c.weight)
    # float32 and float64 models with one seed hold the same weights up to rounding
    torch.testing.assert_close(RBM(20, 7, seed=3, dtype=torch.float64).weight.float(), a.weight)
    # N(0, 0.01²) weights, zero biases
    assert abs(float(RBM(200, 100, seed=0).weight.detach().std()) - 0.01) < 2.5e-4  # 5σ, σ = 0.01/√(2·2e4)
    assert not a.visible_bias.any() and not a.hidden_bias.any()
