"""Exact enumeration against brute force over every (v, h) pair and against autograd."""

from __future__ import annotations

import itertools

import pytest
import torch

from boltzkit import exact
from boltzkit.errors import ConfigurationError
from boltzkit.models.rbm import RBM
from conftest import random_rbm


def all_binary(n: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)


def brute_force_log_z(rbm: RBM) -> torch.Tensor:
    """log Σ_{v,h} exp(−E(v,h)) by listing every joint configuration."""
    vs, hs = all_binary(rbm.n_visible), all_binary(rbm.n_hidden)
    v = vs.repeat_interleave(len(hs), 0)
    h = hs.repeat(len(vs), 1)
    return torch.logsumexp(-rbm.energy(v, h), 0)


def brute_force_log_likelihood(rbm: RBM, data: torch.Tensor) -> torch.Tensor:
    hs = all_binary(rbm.n_hidden)
    rows = []
    for v in data:
        rows.append(torch.logsumexp(-rbm.energy(v.expand(len(hs), -1), hs), 0))
    return torch.stack(rows).mean() - brute_force_log_z(rbm)


@pytest.mark.parametrize("n_visible,n_hidden", [(5, 3), (3, 6)])
def test_log_partition_matches_brute_force(n_visible, n_hidden):
    rbm = random_rbm(n_visible, n_hidden)
    assert exact.log_partition(rbm) == pytest.approx(float(brute_force_log_z(rbm).detach()), abs=1e-10)


def test_enumerates_the_smaller_layer():
    assert exact.enumerated_layer(random_rbm(6, 3)) == "hidden"
    assert exact.enumerated_layer(random_rbm(3, 6)) == "visible"
    with pytest.raises(ConfigurationError, match="AIS"):
        exact.enumerated_layer(RBM(30, 30))


def test_log_likelihood_matches_brute_force():
    rbm = random_rbm(6, 4, seed=3)
    data = torch.bernoulli(torch.full((17, 6), 0.4), generator=torch.Generator().manual_seed(0)).double()
    expected = float(brute_force_log_likelihood(rbm, data).detach())
    assert exact.log_likelihood(rbm, data) == pytest.approx(expected, abs=1e-10)


def test_probabilities_sum_to_one():
    rbm = random_rbm(7, 5, seed=4)
    vs = all_binary(7)
    log_p = -rbm.free_energy(vs) - exact.log_partition(rbm)
    assert float(torch.logsumexp(log_p.detach(), 0)) == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("n_visible,n_hidden", [(6, 4), (4, 7)])
def test_gradient_matches_autograd_of_brute_force(n_visible, n_hidden):
    rbm = random_rbm(n_visible, n_hidden, seed=5)
    data = torch.bernoulli(torch.full((11, n_visible), 0.5), generator=torch.Generator().manual_seed(1)).double()
    grads = exact.log_likelihood_gradient(rbm, data)
    loss = brute_force_log_likelihood(rbm, data)
    auto = torch.autograd.grad(loss, list(rbm.parameters()))
    for (name, _), g in zip(rbm.named_tensors().items(), auto):
        torch.testing.assert_close(grads[name], g, rtol=1e-9, atol=1e-11, msg=name)


def test_chunking_does_not_change_the_result(monkeypatch):
    rbm = random_rbm(9, 8, seed=6).to(torch.float64)
    whole = float(exact._generic_log_partition(rbm, "hidden").detach())   # binary models take the split path
    monkeypatch.setattr(exact, "CHUNK_ELEMENTS", 7)
    assert float(exact._generic_log_partition(rbm, "hidden").detach()) == pytest.approx(whole, abs=1e-10)
    assert exact.log_partition(rbm) == pytest.approx(whole, abs=1e-10)


def test_float32_model_is_evaluated_in_float64():
    rbm64 = random_rbm(8, 5, seed=7)
    rbm32 = RBM(8, 5, dtype=torch.float32)
    rbm32.load_state_dict({k: v.float() for k, v in rbm64.state_dict().items()})
    assert exact.log_partition(rbm32) == pytest.approx(exact.log_partition(rbm64.float().double()), abs=1e-9)


# The split enumeration (log_partition's fast path) against the generic float64 path.  Both
# sum in float64; they differ only by rounding, ≲ 1e-13 relative on log Z, so rel=1e-11 is
# tight (AIS standard errors are 1e-2 nats and more) and still leaves room for summation order.
SPLIT_TOLERANCE = {"rel": 1e-11, "abs": 1e-10}


def generic_log_z(rbm: RBM) -> float:
    model = exact._as_float64(rbm)
    with torch.no_grad():
        return float(exact._generic_log_partition(model, exact.enumerated_layer(model)))


@pytest.mark.parametrize("visible,hidden,n_visible,n_hidden", [
    ("bernoulli", "bernoulli", 9, 6), ("spin", "bernoulli", 9, 6), ("softmax:3", "bernoulli", 5, 6),
    ("gaussian", "bernoulli", 7, 6), ("bernoulli", "spin", 9, 6), ("bernoulli", "softmax:3", 9, 4),
    ("bernoulli", "bernoulli", 5, 9), ("bernoulli", "relu", 4, 9), ("spin", "spin", 5, 8)])
@pytest.mark.parametrize("scale", [0.01, 0.3, 1.0, 3.0])
def test_split_enumeration_matches_the_generic_path(monkeypatch, visible, hidden, n_visible, n_hidden, scale):
    rbm = random_rbm(n_visible, n_hidden, scale=scale, seed=11, visible=visible, hidden=hidden)
    expected = generic_log_z(rbm)
    assert exact.enumeration_method(rbm) != "generic"
    assert exact.log_partition(rbm) == pytest.approx(expected, **SPLIT_TOLERANCE)
    # small tables and blocks: several low states, several high blocks
    monkeypatch.setattr(exact, "TABLE_ELEMENTS", 40)
    monkeypatch.setattr(exact, "HIGH_BLOCK", 2)
    assert exact.log_partition(rbm) == pytest.approx(expected, **SPLIT_TOLERANCE)


def test_product_kernel_on_a_wide_model_and_past_its_overflow_guard():
    for scale, fits in ((0.1, True), (8.0, False)):
        rbm = random_rbm(300, 10, scale=scale, seed=12)
        model = exact._as_float64(rbm)
        assert exact.enumeration_method(rbm) == "product"
        field = model.visible_field(model.hidden.states(0, 1024, torch.float64)).detach()
        assert exact._product_group(field) is fits  # scale 8: products could overflow, plain softplus
        assert exact.log_partition(rbm) == pytest.approx(generic_log_z(rbm), **SPLIT_TOLERANCE)


def test_binary_models_take_the_product_kernel():
    assert exact.enumeration_method(RBM(784, 12)) == "product"
    assert exact.enumeration_method(RBM(5, 9)) == "product"  # visible enumerated, hidden summed out
    assert exact.enumeration_method(RBM(784, 12, visible="gaussian")) == "split"
    assert exact.enumeration_method(RBM(784, 12, visible="softmax:4")) == "split"
    assert exact.split_size(RBM(784, 12), "hidden") == 128  # 128 × 784 float64 table: 0.8 MiB
