"""Softmax (categorical) units against brute-force enumeration and autograd."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from boltzkit.errors import ConfigurationError, DataError
from boltzkit.evaluation.exact import log_likelihood, log_likelihood_gradient, log_partition
from boltzkit.models.base import free_energy_gradient
from boltzkit.models.rbm import RBM
from boltzkit.models.units import Softmax, make_units
from boltzkit.training.gradient import write_gradient
from conftest import random_rbm


def all_one_hot(n: int, k: int) -> torch.Tensor:
    """Every configuration of n K-state variables, one-hot, by itertools (independent of states())."""
    rows = []
    for digits in itertools.product(range(k), repeat=n):
        row = torch.zeros(n * k, dtype=torch.float64)
        for i, d in enumerate(digits):
            row[i * k + d] = 1
        rows.append(row)
    return torch.stack(rows)


def test_spec_and_shape():
    units = make_units("softmax:5", 3)
    assert isinstance(units, Softmax)
    assert units.dim == 15 and units.bias.shape == (15,) and units.spec() == "softmax:5"
    assert units.n_states == 125
    rbm = RBM(3, 4, visible="softmax:5")
    assert rbm.weight.shape == (15, 4)
    assert RBM.from_config(rbm.config()).visible.spec() == "softmax:5"
    with pytest.raises(ConfigurationError):
        make_units("softmax:1", 3)
    with pytest.raises(ConfigurationError):
        make_units("softmax:x", 3)


def test_states_enumerate_every_configuration_once():
    units = Softmax(3, 3)
    states = units.states(0, units.n_states, torch.float64)
    assert sorted(map(tuple, states.tolist())) == sorted(map(tuple, all_one_hot(3, 3).tolist()))
    assert len({tuple(r) for r in states.tolist()}) == 27
    # chunks agree with the whole
    assert torch.equal(units.states(5, 11, torch.float64), states[5:11])


@pytest.mark.parametrize("beta", [1.0, 0.3, torch.tensor([[0.5], [2.0]], dtype=torch.float64)])
def test_conditionals_and_log_partition_vs_brute_force(beta):
    n, k = 2, 3
    units = Softmax(n, k).to(torch.float64)
    g = torch.Generator().manual_seed(0)
    field = torch.randn(2, n * k, generator=g, dtype=torch.float64) * 2
    states = all_one_hot(n, k)
    b = beta if isinstance(beta, torch.Tensor) else torch.tensor(beta, dtype=torch.float64)
    logits = b * (field @ states.t())                      # (batch, K^n): β φ(x)·a
    expected_logz = torch.logsumexp(logits, -1)
    expected_mean = torch.softmax(logits, -1) @ states
    torch.testing.assert_close(units.log_partition(field, beta), expected_logz)
    torch.testing.assert_close(units.mean(field, beta), expected_mean)


def test_exact_log_z_vs_brute_force_over_all_pairs():
    for n_hidden in (3, 9):  # the enumerated layer is the hidden one, then the visible one
        rbm = random_rbm(2, n_hidden, visible="softmax:3")
        v = all_one_hot(2, 3)
        h = torch.tensor(list(itertools.product([0.0, 1.0], repeat=n_hidden)), dtype=torch.float64)
        with torch.no_grad():
            energies = torch.stack([rbm.energy(v, hh.expand(v.shape[0], -1)) for hh in h])
        brute = float(torch.logsumexp(-energies.reshape(-1), 0))
        assert math.isclose(log_partition(rbm), brute, rel_tol=1e-10, abs_tol=1e-10)


def test_sampling_frequencies_match_softmax_probabilities():
    units = Softmax(3, 4).to(torch.float64)
    g = torch.Generator().manual_seed(1)
    field = torch.randn(1, 12, generator=g, dtype=torch.float64) * 1.5
    n = 20000
    samples = units.sample(field.expand(n, -1), torch.Generator().manual_seed(2))
    assert torch.all(samples.reshape(n, 3, 4).sum(-1) == 1)
    p = units.mean(field)[0]
    freq = samples.mean(0)
    se = torch.sqrt(p * (1 - p) / n)
    assert torch.all((freq - p).abs() <= 5 * se + 1e-12), (freq, p)
    # β = 0 gives uniform groups
    flat = units.sample(field.expand(n, -1), torch.Generator().manual_seed(3), beta=0.0).mean(0)
    assert torch.all((flat - 0.25).abs() <= 5 * math.sqrt(0.25 * 0.75 / n))


def test_sampling_is_reproducible_by_generator():
    units = Softmax(4, 5)
    field = torch.randn(7, 20)
    a = units.sample(field, torch.Generator().manual_seed(0))
    b = units.sample(field, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)


def test_closed_form_gradient_matches_autograd():
    rbm = random_rbm(3, 4, visible="softmax:3", scale=0.5)
    g = torch.Generator().manual_seed(5)
    v_pos = rbm.visible.sample(torch.zeros(6, 9, dtype=torch.float64), g)
    v_neg = rbm.visible.sample(torch.randn(8, 9, generator=g, dtype=torch.float64), g)
    write_gradient(rbm, v_pos, v_neg)
    closed = {name: p.grad.clone() for name, p in rbm.named_parameters()}
    free_energy_gradient(rbm, v_pos, v_neg)
    for name, p in rbm.named_parameters():
        torch.testing.assert_close(closed[name], p.grad, rtol=1e-12, atol=1e-12)


def test_exact_gradient_of_softmax_rbm_vs_finite_differences():
    rbm = random_rbm(2, 3, visible="softmax:3", scale=0.5)
    data = all_one_hot(2, 3)[[0, 4, 4, 7]]
    grad = log_likelihood_gradient(rbm, data)
    eps = 1e-6
    for name in ("weight", "visible_bias"):
        p = dict(rbm.named_tensors())[name]
        with torch.no_grad():
            p.view(-1)[1] += eps
            up = log_likelihood(rbm, data)
            p.view(-1)[1] -= 2 * eps
            down = log_likelihood(rbm, data)
            p.view(-1)[1] += eps
        assert math.isclose(float(grad[name].view(-1)[1]), (up - down) / (2 * eps), abs_tol=1e-6)


def test_validate_requires_exactly_one_hot_groups():
    units = Softmax(2, 3)
    units.validate(torch.tensor([[0.0, 1, 0, 1, 0, 0]]))
    with pytest.raises(DataError, match="one-hot"):
        units.validate(torch.tensor([[0.0, 1, 0, 0, 0, 0]]))   # missing value
    with pytest.raises(DataError, match="one-hot"):
        units.validate(torch.tensor([[1.0, 1, 0, 1, 0, 0]]))
    with pytest.raises(DataError, match="0/1"):
        units.validate(torch.tensor([[0.5, 0.5, 0, 1, 0, 0]]))


def test_init_from_data_sets_log_frequencies():
    units = Softmax(2, 3).to(torch.float64)
    data = torch.tensor([[1.0, 0, 0, 0, 0, 1], [0, 1, 0, 0, 0, 1], [1, 0, 0, 0, 0, 1], [1, 0, 0, 0, 0, 1]],
                        dtype=torch.float64)
    units.init_from_data(data.mean(0), smoothing=0.0 + 1e-12)
    p = torch.softmax(units.bias.view(2, 3), -1)
    torch.testing.assert_close(p[0], torch.tensor([0.75, 0.25, 0.0], dtype=torch.float64), atol=1e-9, rtol=0)
    # counts give the same biases; an all-zero group is uniform
    units.init_from_data(torch.tensor([6.0, 2, 0, 0, 0, 0]))
    torch.testing.assert_close(units.bias[3:], torch.full((3,), math.log(1 / 3), dtype=torch.float64))
    assert torch.isfinite(units.bias).all()
