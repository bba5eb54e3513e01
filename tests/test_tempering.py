"""Parallel tempering (sampler and estimator) and fast persistent contrastive divergence."""

from __future__ import annotations

import pytest
import torch

from boltzkit.errors import ConfigurationError
from boltzkit.sampling import ParallelTempering, tempering_betas
from boltzkit.training.gradient import (
    FastPersistentContrastiveDivergence,
    ParallelTemperingEstimator,
    PersistentContrastiveDivergence,
    make_estimator,
)
from conftest import random_rbm


def exact_visible_marginals(rbm, beta: float) -> torch.Tensor:
    """E[v] under p_β(v) ∝ exp(−F_β(v)), by enumerating every visible state."""
    states = rbm.visible.states(0, rbm.visible.n_states, torch.float64)
    with torch.no_grad():
        p = torch.softmax(-rbm.free_energy(states, beta), 0)
    return p @ states


def test_tempering_betas():
    assert tempering_betas(5) == [1.0, 0.75, 0.5, 0.25, 0.0]
    geo = tempering_betas(3, "geometric", 0.01)
    assert geo[0] == 1.0 and geo[1] == pytest.approx(0.1) and geo[2] == pytest.approx(0.01)
    assert tempering_betas(1) == [1.0]
    with pytest.raises(ConfigurationError):
        tempering_betas(3, "geometric", 0.0)
    with pytest.raises(ConfigurationError):
        tempering_betas(3, "cubic")
    with pytest.raises(ConfigurationError):
        ParallelTempering([0.9, 0.5])          # β_1 must be 1
    with pytest.raises(ConfigurationError):
        ParallelTempering([1.0, 0.2, 0.5])     # not non-increasing


def test_every_replica_samples_its_tempered_distribution():
    """Time averages of all replicas match exact E_β[v] within 5 standard errors.

    The standard error comes from the spread of per-chain time averages (chains are
    independent).  The weights are strong, so wrong swap probabilities (e.g. βF instead of
    F_β, or the sign flipped) show up as a bias far beyond the tolerance.
    """
    rbm = random_rbm(6, 4, scale=2.5, seed=3)
    betas = [1.0, 0.7, 0.45, 0.2]
    n_chains, burn_in, steps = 100, 50, 400
    pt = ParallelTempering(betas, n_chains)
    g = torch.Generator().manual_seed(0)
    start = torch.zeros(n_chains, 6, dtype=torch.float64)
    pt.advance(rbm, start, burn_in, g)
    total = torch.zeros_like(pt.state)
    for _ in range(steps):
        pt.advance(rbm, start, 1, g)
        total += pt.state
    per_chain = (total / steps).reshape(len(betas), n_chains, 6)
    for r, beta in enumerate(betas):
        estimate, se = per_chain[r].mean(0), per_chain[r].std(0) / n_chains ** 0.5
        truth = exact_visible_marginals(rbm, beta)
        assert bool(((estimate - truth).abs() <= 5 * se + 1e-3).all()), (beta, estimate, truth, se)
    rates = pt.swap_rates
    assert bool(((rates > 0) & (rates <= 1)).all()), rates
    assert bool((pt.swap_attempts == (burn_in + steps) // 2 * n_chains).all())


def test_equal_temperatures_always_swap():
    rbm = random_rbm(5, 3, scale=2.0, seed=1)
    pt = ParallelTempering([1.0, 1.0, 1.0, 1.0], n_chains=50)
    data = torch.bernoulli(torch.full((50, 5), 0.5, dtype=torch.float64),
                           generator=torch.Generator().manual_seed(2))
    pt.advance(rbm, data, 20, torch.Generator().manual_seed(3))
    assert torch.equal(pt.swap_accepted, pt.swap_attempts)
    assert bool((pt.swap_attempts > 0).all())
    assert torch.equal(pt.swap_rates, torch.ones(3, dtype=torch.float64))


def test_pt_estimator_uses_the_beta_one_replicas_and_round_trips():
    rbm = random_rbm(5, 3, seed=4)
    data = torch.bernoulli(torch.full((16, 5), 0.5, dtype=torch.float64),
                           generator=torch.Generator().manual_seed(5))
    est = make_estimator("pt", k=2, n_chains=8, replicas=4)
    assert isinstance(est, ParallelTemperingEstimator)
    assert est.chains.betas.tolist() == tempering_betas(4)
    v_neg = est.step(rbm, data, torch.Generator().manual_seed(6))
    assert v_neg.shape == (8, 5) and est.chains.state.shape == (32, 5)
    assert torch.equal(v_neg, est.chains.state[:8])
    state = est.state_dict()
    other = make_estimator("pt", betas=[1.0, 0.5, 0.1], n_chains=8)
    other.load_state_dict(state)
    assert torch.equal(other.chains.state, est.chains.state)
    assert torch.equal(other.chains.betas, est.chains.betas)
    assert torch.equal(other.swap_rates.nan_to_num(-1), est.swap_rates.nan_to_num(-1))
    with pytest.raises(ConfigurationError):
        est.step(rbm, data, mask=torch.ones_like(data))


def _train(estimator, steps: int = 6):
    """A few SGD updates of a small model with ``estimator``; returns (model, chains)."""
    rbm = random_rbm(7, 4, scale=0.5, seed=8)
    data = torch.bernoulli(torch.full((20, 7), 0.4, dtype=torch.float64),
                           generator=torch.Generator().manual_seed(9))
    opt = torch.optim.SGD(rbm.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(10)
    for _ in range(steps):
        estimator.step(rbm, data, g)
        opt.step()
    return rbm, estimator.chains.state


def test_fpcd_with_zero_fast_rate_is_pcd_bit_for_bit():
    rbm_p, chains_p = _train(PersistentContrastiveDivergence(k=2))
    rbm_f, chains_f = _train(make_estimator("fpcd", k=2, fast_lr=0.0))
    assert torch.equal(chains_p, chains_f)
    for a, b in zip(rbm_p.parameters(), rbm_f.parameters()):
        assert torch.equal(a, b)


def test_fpcd_fast_weights_follow_the_gradient_and_decay():
    est = FastPersistentContrastiveDivergence(k=1, fast_lr=0.05)
    assert est.fast_decay == pytest.approx(19 / 20)
    rbm, _ = _train(est, steps=1)
    # after one update from zero: θ_fast = −fast_lr · g, and the model is left untouched by it
    for name, p in rbm.named_parameters():
        torch.testing.assert_close(est.fast[name], -0.05 * p.grad, rtol=0, atol=1e-15)
    rbm_p, chains_p = _train(PersistentContrastiveDivergence(k=1), steps=4)
    rbm_f, chains_f = _train(FastPersistentContrastiveDivergence(k=1, fast_lr=0.5), steps=4)
    assert not torch.equal(chains_p, chains_f)
    state = est.state_dict()
    assert {"chains", "fast_weight", "fast_visible_bias", "fast_hidden_bias"} <= state.keys()
    other = FastPersistentContrastiveDivergence()
    other.load_state_dict(state)
    restored = other._fast(rbm)
    for name in est.fast:
        assert torch.equal(restored[name], est.fast[name])
    with pytest.raises(ConfigurationError):
        FastPersistentContrastiveDivergence(fast_decay=1.5)


def test_fpcd_chains_move_under_the_fast_model_and_the_model_is_restored():
    import copy

    rbm = random_rbm(6, 3, seed=12)
    data = torch.bernoulli(torch.full((10, 6), 0.5, dtype=torch.float64),
                           generator=torch.Generator().manual_seed(13))
    est = FastPersistentContrastiveDivergence(k=3, n_chains=10)
    g = torch.Generator().manual_seed(14)
    fast = est._fast(rbm)
    for t in fast.values():
        t.copy_(torch.randn(t.shape, generator=g, dtype=t.dtype))
    before = [p.detach().clone() for p in rbm.parameters()]
    shifted = copy.deepcopy(rbm)
    with torch.no_grad():
        for name, p in shifted.named_parameters():
            p.add_(fast[name])
    reference = PersistentContrastiveDivergence(k=3, n_chains=10)
    want = reference.chains.advance(shifted, data, 3, torch.Generator().manual_seed(15))
    with torch.no_grad():
        got = est.negative_phase(rbm, data, rbm.hidden_field(data), torch.Generator().manual_seed(15), None)
    assert torch.equal(got.visible, want.visible)
    for p, q in zip(rbm.parameters(), before):
        assert torch.equal(p, q)


def test_training_log_reports_swap_acceptance_of_parallel_tempering():
    """Every epoch's metrics carry the PT swap rates (mean and lowest pair), in [0, 1]; the
    mean equals the sampler's own counts, and estimators without swaps add nothing."""
    from boltzkit.models.rbm import RBM
    from boltzkit.training import Trainer, TrainingConfig

    data = torch.bernoulli(torch.full((60, 6), 0.4), generator=torch.Generator().manual_seed(1))
    trainer = Trainer(RBM(6, 3, seed=0), TrainingConfig(epochs=2, batch_size=20, method="pt", replicas=4))
    history = trainer.fit(data)
    rates = trainer.estimator.swap_rates
    assert all(0 <= h["swap_rate_min"] <= h["swap_rate_mean"] <= 1 for h in history)
    assert history[-1]["swap_rate_mean"] == pytest.approx(float(rates.mean()))
    assert history[-1]["swap_rate_min"] == pytest.approx(float(rates.min()))
    plain = Trainer(RBM(6, 3, seed=0), TrainingConfig(epochs=1, batch_size=20)).fit(data)
    assert not any(key.startswith("swap") for key in plain[0])


def test_free_energies_share_one_field_and_match_free_energy():
    rbm = random_rbm(7, 4, scale=0.7, seed=5)
    v = torch.bernoulli(torch.full((6, 7), 0.4, dtype=torch.float64), generator=torch.Generator().manual_seed(0))
    betas = [torch.full((6, 1), 1.0, dtype=torch.float64), torch.linspace(0, 1, 6, dtype=torch.float64)[:, None]]
    expected = torch.stack([rbm.free_energy(v, b) for b in betas])
    assert torch.allclose(rbm.free_energies(v, betas), expected, atol=1e-12)
    # the EnergyModel default (one free_energy call per β) gives the same
    assert torch.allclose(super(type(rbm), rbm).free_energies(v, betas), expected, atol=1e-12)


def test_every_pair_of_a_reloaded_longer_ladder_swaps():
    """The swap indices are cached per ladder: a state with more temperatures must not reuse
    the pairs of the shorter ladder (pairs beyond it would never be tried)."""
    rbm = random_rbm(6, 3, scale=0.3, seed=1)
    data = torch.bernoulli(torch.full((4, 6), 0.5, dtype=torch.float64), generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(3)
    short = ParallelTempering(tempering_betas(3), n_chains=4)
    short.advance(rbm, data, 2, g)
    longer = ParallelTempering(tempering_betas(5), n_chains=4)
    longer.advance(rbm, data, 1, g)
    short.load_state_dict(longer.state_dict())
    short.advance(rbm, data, 4, g)
    assert short.replicas == 5 and bool((short.swap_attempts > 0).all())


def test_a_ladder_of_one_temperature_never_swaps():
    pt = ParallelTempering([1.0], n_chains=3)
    pt.swap(random_rbm(4, 2))  # no pair, no chains needed
    assert pt.swap_attempts.numel() == 0


def test_one_hidden_field_per_step_serves_the_swaps_and_the_sweep(monkeypatch):
    """Swap-then-sweep: the field c + vW of every replica, computed once for the swaps'
    free energies, also draws the sweep's hidden units (it was computed twice per step)."""
    rbm = random_rbm(6, 4, seed=3)
    pt = ParallelTempering(tempering_betas(4), n_chains=5)
    data = torch.bernoulli(torch.full((5, 6), 0.5, dtype=rbm.weight.dtype), generator=torch.Generator().manual_seed(0))
    pt.advance(rbm, data, 1, torch.Generator().manual_seed(1))
    calls: list[int] = []
    field = type(rbm).hidden_field

    def counted(self, v):
        calls.append(v.shape[0])
        return field(self, v)

    monkeypatch.setattr(type(rbm), "hidden_field", counted)
    pt.advance(rbm, data, 3, torch.Generator().manual_seed(2))
    assert calls == [4 * 5] * 3
    assert "hidden_field" not in pt.chains.layers  # consumed by the sweep, never checkpointed
