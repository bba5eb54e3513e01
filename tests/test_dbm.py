"""The deep Boltzmann machine against exact enumeration: log Z, F(v), the Gibbs kernel, the
mean-field bound, the PCD gradient; centering; pre-training; checkpoints and bit-for-bit resume."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from boltzkit import checkpoint, exact
from boltzkit.errors import ConfigurationError, DataError
from boltzkit.evaluation import deep
from boltzkit.models.deep_boltzmann import DBM, Binomial
from boltzkit.models.rbm import RBM
from boltzkit.training import Callback, PersistentContrastiveDivergence, Trainer, TrainingConfig


def random_dbm(n_visible: int, hidden: list[int], scale: float = 1.0, seed: int = 0, **kwargs) -> DBM:
    """A float64 DBM with N(0, scale²) weights and biases (far from uniform)."""
    dbm = DBM(n_visible, hidden, seed=seed, dtype=torch.float64, **kwargs)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in dbm.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * scale)
    return dbm


def binary(n: int, d: int, seed: int = 0, p: float = 0.3) -> torch.Tensor:
    return (torch.rand(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) < p).double()


def all_states(dbm: DBM) -> list[torch.Tensor]:
    """Every joint configuration of every layer, split per layer (brute force, tiny models)."""
    s = torch.tensor(list(itertools.product([0.0, 1.0], repeat=sum(dbm.sizes))), dtype=torch.float64)
    return list(s.split(dbm.sizes, 1))


# -- exact quantities: three routes must agree -------------------------------------------------
@pytest.mark.parametrize("hidden", [[3, 2], [2, 3, 2]])
def test_log_partition_and_free_energy_match_brute_force(hidden):
    dbm = random_dbm(3, hidden, seed=len(hidden))
    states = all_states(dbm)
    energies = dbm.energy(states)
    brute = float(torch.logsumexp(-energies, 0).detach())
    assert float(deep.dbm_log_partition(dbm, 0).detach()) == pytest.approx(brute, abs=1e-10)
    assert float(deep.dbm_log_partition(dbm, 1).detach()) == pytest.approx(brute, abs=1e-10)
    assert exact.log_partition(dbm.as_rbm()) == pytest.approx(brute, abs=1e-10)
    v = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)), dtype=torch.float64)
    f_brute = torch.stack([-torch.logsumexp(-energies[(states[0] == row).all(1)], 0) for row in v])
    torch.testing.assert_close(dbm.free_energy(v), f_brute, atol=1e-10, rtol=0)
    # the probabilities of all visible configurations sum to one
    assert float(torch.logsumexp(deep.dbm_exact_log_likelihood(dbm, v), 0)) == pytest.approx(0.0, abs=1e-10)


def test_as_rbm_free_energy_is_the_even_free_energy():
    dbm = random_dbm(4, [3, 2, 2], seed=3)
    rbm = dbm.as_rbm()
    even = (torch.rand(20, rbm.n_visible, generator=torch.Generator().manual_seed(0)) < 0.5).double()
    torch.testing.assert_close(rbm.free_energy(even), dbm.free_energy_parity(dbm.split_even(even), 0),
                               atol=1e-12, rtol=0)


def test_exact_gradient_matches_finite_differences():
    dbm = random_dbm(3, [2, 2], scale=0.7, seed=5)
    data = binary(7, 3, seed=1, p=0.5)
    grads = deep.dbm_log_likelihood_gradient(dbm, data)
    tensors = dbm.checkpoint_tensors()
    eps = 1e-6
    for name in ("weight_1", "weight_2", "visible_bias", "hidden_bias_2"):
        p = tensors[name]
        for index in [(0,) * p.dim(), tuple(s - 1 for s in p.shape)]:
            with torch.no_grad():
                p[index] += eps
                up = float(deep.dbm_exact_log_likelihood(dbm, data).mean())
                p[index] -= 2 * eps
                down = float(deep.dbm_exact_log_likelihood(dbm, data).mean())
                p[index] += eps
            # central differences: error O(eps²) ≈ 1e-12 plus rounding ≈ 1e-16/eps = 1e-10
            assert float(grads[name][index]) == pytest.approx((up - down) / (2 * eps), abs=1e-7)


# -- the mean-field bound -----------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
def test_mean_field_bound_is_below_the_exact_log_likelihood(seed):
    dbm = random_dbm(5, [4, 3], scale=1.0, seed=seed, mean_field_steps=50)
    data = binary(40, 5, seed=seed, p=0.5)
    log_z = float(deep.dbm_log_partition(dbm).detach())
    bound = deep.variational_bound(dbm, data, log_z)
    exact_ll = deep.dbm_exact_log_likelihood(dbm, data, log_z)
    # a bound, row by row (KL(q‖p(h|v)) ≥ 0); rounding only
    assert bool((bound <= exact_ll + 1e-10).all())
    # and not a trivial one: within a few nats of the truth on this 7-hidden-unit model
    assert float((exact_ll - bound).mean()) < 2.0


def test_mean_field_reaches_its_fixed_point():
    dbm = random_dbm(6, [4, 3, 2], scale=0.5, seed=2, mean_field_steps=200)
    v = binary(10, 6, seed=3)
    mu = dbm.mean_field(v)
    states = [v, *mu]
    for l in range(1, dbm.n_layers + 1):
        torch.testing.assert_close(mu[l - 1], torch.sigmoid(dbm.field(l, states)), atol=1e-10, rtol=0)


# -- the Gibbs kernel leaves p invariant ---------------------------------------------------------
def test_alternating_gibbs_samples_the_exact_marginal():
    dbm = random_dbm(3, [3, 2], scale=1.0, seed=7)
    n = 10000
    g = torch.Generator().manual_seed(0)
    state = dbm.init_chains(binary(50, 3, seed=2), n, g)
    state = dbm.advance(state, 50, g)
    codes = (state.visible @ torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)).long()
    freq = torch.bincount(codes, minlength=8).double() / n
    v = torch.tensor([[(i >> k) & 1 for k in range(3)] for i in range(8)], dtype=torch.float64)
    p = deep.dbm_exact_log_likelihood(dbm, v).exp()
    se = (p * (1 - p) / n).sqrt()
    # 5 standard errors of a binomial proportion per state (chains are independent after 50 sweeps)
    assert bool(((freq - p).abs() <= 5 * se + 1e-3).all()), (freq, p)


# -- the PCD gradient's expectation ---------------------------------------------------------------
def test_pcd_gradient_expectation_is_the_exact_gradient_of_the_bound():
    """The unchanged PCD estimator with the DBM's kernel: E[ĝ] = ∇(mean F_MF(v) + log Z)
    (the negative gradient of the mean-field bound with exact log Z), checked per component
    within 5 standard errors computed from the per-chain statistics."""
    torch.manual_seed(0)
    dbm = random_dbm(4, [3, 2], scale=0.8, seed=11, mean_field_steps=100)
    data = binary(30, 4, seed=4, p=0.5)
    n_chains = 20000
    estimator = PersistentContrastiveDivergence(k=100, n_chains=n_chains)
    estimator.step(dbm, data, torch.Generator().manual_seed(1))
    estimate = {name: p.grad.clone() for name, p in dbm.checkpoint_tensors().items()}
    # exact: autograd with q fixed at its fixed point (stationary, so that is the total derivative)
    tensors = dbm.checkpoint_tensors()
    mu = [m.detach() for m in dbm.mean_field(data)]
    objective = dbm.variational_free_energy(data, mu).mean() + deep.dbm_log_partition(dbm)
    truth = dict(zip(tensors, torch.autograd.grad(objective, list(tensors.values()))))
    # standard errors of the chain averages: per-chain Rao-Blackwellised statistics
    chains = estimator.chains.chains
    x = [chains.visible, chains.layers["hidden_1"], chains.layers["hidden_2"]]
    x[1] = torch.sigmoid(dbm.field(1, x)).detach()
    per_chain = {"weight_1": x[0].unsqueeze(2) * x[1].unsqueeze(1), "weight_2": x[1].unsqueeze(2) * x[2].unsqueeze(1),
                 "visible_bias": x[0], "hidden_bias_1": x[1], "hidden_bias_2": x[2]}
    for name, stats in per_chain.items():
        se = stats.std(0) / math.sqrt(n_chains)
        diff = (estimate[name] - truth[name]).abs()
        assert bool((diff <= 5 * se + 1e-9).all()), (name, diff, se)


# -- centering -------------------------------------------------------------------------------------
def test_centered_gradient_is_j_jt_of_the_ordinary_one():
    dbm = random_dbm(3, [2, 2], seed=1)
    g = torch.Generator().manual_seed(0)
    g_w = [torch.randn(w.shape, generator=g, dtype=torch.float64) for w in dbm.weights]
    g_b = [torch.randn(b.shape, generator=g, dtype=torch.float64) for b in dbm.biases()]
    m = [torch.rand(b.shape, generator=g, dtype=torch.float64) for b in dbm.biases()]
    zero = [torch.zeros_like(t) for t in m]
    same_w, same_b = DBM.center_gradient(g_w, g_b, zero)
    assert all(torch.equal(a, b) for a, b in zip(same_w + same_b, g_w + g_b))
    # θ(θ'): W = W', b_l = b'_l − W'_lᵀ m_{l−1} − W'_{l+1} m_{l+1}; the centered step is J Jᵀ g
    shapes = [w.shape for w in dbm.weights] + [b.shape for b in dbm.biases()]
    sizes = [math.prod(s) for s in shapes]

    def theta(flat: torch.Tensor) -> torch.Tensor:
        parts = [p.reshape(s) for p, s in zip(flat.split(sizes), shapes)]
        w, b = parts[:2], parts[2:]
        out_b = []
        for l in range(3):
            t = b[l]
            if l > 0:
                t = t - w[l - 1].t() @ m[l - 1]
            if l < 2:
                t = t - w[l] @ m[l + 1]
            out_b.append(t)
        return torch.cat([t.reshape(-1) for t in w + out_b])

    point = torch.randn(sum(sizes), dtype=torch.float64, generator=g)
    jac = torch.autograd.functional.jacobian(theta, point)
    flat_g = torch.cat([t.reshape(-1) for t in g_w + g_b])
    expected = jac @ jac.t() @ flat_g
    c_w, c_b = DBM.center_gradient(g_w, g_b, m)
    torch.testing.assert_close(torch.cat([t.reshape(-1) for t in c_w + c_b]), expected, atol=1e-12, rtol=0)


def test_trainer_centering_passes_every_layer_offset():
    dbm = random_dbm(5, [4, 3], scale=0.3, seed=2)
    data = binary(64, 5, seed=1)
    trainer = Trainer(dbm, TrainingConfig(epochs=1, batch_size=16, centered=True, lr=0.01))
    trainer.fit(data)
    state = trainer.estimator.state_dict()
    assert state["centering_visible"].shape == (5,) and state["centering_hidden"].shape == (7,)


# -- training: chains, resume, checkpoint -----------------------------------------------------------
class _StopAfter(Callback):
    """Interrupts a run after ``epoch`` epochs, as a crash or a kill would between epochs."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer, epoch, metrics):
        trainer.stop = epoch >= self.epoch


def _run(data: torch.Tensor, stop_after: int | None = None, resume_from=None):
    dbm = DBM(6, [5, 4], seed=3, dtype=torch.float64)
    config = TrainingConfig(epochs=4, batch_size=10, lr=0.05, centered=True, seed=4)
    trainer = Trainer(dbm, config, callbacks=[_StopAfter(stop_after)] if stop_after else [])
    if resume_from is not None:
        model, saved, state = checkpoint.load_checkpoint(resume_from, training_state=True)
        dbm.load_state_dict(model.state_dict())
        trainer.load_training_state(state, saved["training_state"])
    trainer.fit(data)
    return dbm, trainer


def test_resumed_dbm_run_equals_the_uninterrupted_run_bit_for_bit(tmp_path):
    data = binary(60, 6, seed=9, p=0.4)
    full, full_trainer = _run(data)
    half, half_trainer = _run(data, stop_after=2)
    assert half_trainer.epoch == 2
    tensors, state = half_trainer.training_state()
    assert {"estimator.chains", "estimator.chains.hidden_1", "estimator.chains.hidden_2",
            "estimator.centering_hidden"} <= set(tensors)
    checkpoint.save(tmp_path / "run", half, extra={"training_state": state}, state=tensors)
    resumed, resumed_trainer = _run(data, resume_from=tmp_path / "run")
    assert resumed_trainer.epoch == 4
    for (name, a), b in zip(full.checkpoint_tensors().items(), resumed.checkpoint_tensors().values()):
        assert torch.equal(a, b), name
    a, b = full_trainer.estimator.chains.chains, resumed_trainer.estimator.chains.chains
    assert torch.equal(a.visible, b.visible) and all(torch.equal(a.layers[k], b.layers[k]) for k in a.layers)
    assert not torch.equal(half.weights[0], full.weights[0])     # the second half did train


def test_checkpoint_round_trip_returns_a_dbm(tmp_path):
    dbm = random_dbm(5, [4, 3, 2], seed=6, mean_field_steps=7)
    checkpoint.save(tmp_path / "m", dbm)
    loaded = checkpoint.load(tmp_path / "m")
    assert type(loaded) is DBM and loaded.config() == dbm.config()
    for name, t in dbm.checkpoint_tensors().items():
        assert torch.equal(t, loaded.checkpoint_tensors()[name]), name


def test_training_raises_the_bound_on_data():
    data = binary(200, 8, seed=1, p=0.2)
    data[:100, :4] = 1.0                                   # a structure worth learning
    dbm = DBM(8, [6, 4], seed=0, dtype=torch.float64)
    before = float(deep.variational_bound(dbm, data, float(deep.dbm_log_partition(dbm).detach())).mean())
    Trainer(dbm, TrainingConfig(epochs=30, batch_size=20, lr=0.05)).fit(data)
    after = float(deep.dbm_exact_log_likelihood(dbm, data).mean())
    assert after > before + 0.5


def test_a_dbm_too_large_to_enumerate_trains_on_the_trainer():
    """`boltzkit train --model dbm --hidden 500,1000` must train: h² of 30 units cannot be enumerated."""
    data = binary(300, 8, seed=2, p=0.3)
    dbm = DBM(8, [5, 30], seed=0)
    Trainer(dbm, TrainingConfig(epochs=1, batch_size=10, lr=0.01)).fit(data, check_every=1)
    assert all(bool(torch.isfinite(w).all()) for w in dbm.weights)


# -- pre-training ---------------------------------------------------------------------------------
def test_binomial_rbm_is_the_rbm_with_two_tied_visible_copies():
    rbm = RBM(3, 2, visible="binomial:2", seed=0, dtype=torch.float64)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in rbm.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    tied = RBM(6, 2, seed=0, dtype=torch.float64)
    with torch.no_grad():
        tied.weight.copy_(torch.cat([rbm.weight, rbm.weight]))
        tied.visible.bias.copy_(torch.cat([rbm.visible.bias, rbm.visible.bias]))
        tied.hidden.bias.copy_(rbm.hidden.bias)
    assert exact.log_partition(rbm) == pytest.approx(exact.log_partition(tied), abs=1e-10)
    v = binary(5, 3, seed=1, p=0.5)
    # same p(h | v) for data (v, v): the hidden units get twice the input
    torch.testing.assert_close(rbm.hidden_mean(2 * v), tied.hidden_mean(torch.cat([v, v], 1)))


@pytest.mark.parametrize("beta", [1.0, 0.4])
def test_binomial_units_against_enumeration(beta):
    units = Binomial(2, 3).double()
    field = torch.tensor([[0.3, -1.2], [2.0, 0.1]], dtype=torch.float64)
    s = torch.arange(4, dtype=torch.float64)
    log_c = torch.tensor([math.log(math.comb(3, k)) for k in range(4)], dtype=torch.float64)
    logits = beta * (log_c + field.unsqueeze(-1) * s)
    torch.testing.assert_close(units.log_partition(field, beta), torch.logsumexp(logits, -1).sum(-1))
    torch.testing.assert_close(units.mean(field, beta), (torch.softmax(logits, -1) * s).sum(-1))
    draws = units.sample(field.repeat(4000, 1, 1), torch.Generator().manual_seed(0), beta)
    var = (torch.softmax(logits, -1) * s ** 2).sum(-1) - units.mean(field, beta) ** 2
    assert bool(((draws.mean(0) - units.mean(field, beta)).abs() <= 5 * (var / 4000).sqrt()).all())


def test_pretraining_composes_the_dbm_from_the_stack():
    data = binary(100, 6, seed=2)
    dbm = DBM(6, [5, 4, 3], seed=1, dtype=torch.float64)
    histories = dbm.pretrain(data, TrainingConfig(epochs=2, batch_size=20))
    assert [len(h) for h in histories] == [2, 2, 2]
    rbms = dbm.pretraining_rbms()
    assert [r.visible.spec() for r in rbms] == ["binomial:2", "bernoulli", "bernoulli"]
    assert [r.hidden.spec() for r in rbms] == ["bernoulli", "bernoulli", "binomial:2"]
    # the composition rule, on a stack with known weights
    for i, r in enumerate(rbms):
        with torch.no_grad():
            for p in r.parameters():
                p.fill_(float(i + 1))
    dbm.load_pretrained(rbms)
    assert torch.equal(dbm.weights[0], rbms[0].weight) and torch.equal(dbm.weights[2], rbms[2].weight)
    assert torch.equal(dbm.weights[1], rbms[1].weight / 2)
    assert torch.all(dbm.hidden_layers[0].bias == 1.5) and torch.all(dbm.hidden_layers[2].bias == 3.0)


# -- bad input ---------------------------------------------------------------------------------------
def test_bad_input_raises_one_line_errors():
    with pytest.raises(ConfigurationError, match="at least 2 hidden layers"):
        DBM(4, [3])
    dbm = DBM(4, [3, 30])
    with pytest.raises(ConfigurationError, match="variational_free_energy"):
        dbm.free_energy(torch.zeros(1, 4))
    with pytest.raises(DataError, match="0/1"):
        dbm.check_data(torch.full((2, 4), 0.5))
    with pytest.raises(ConfigurationError, match="enumeration"):
        deep.dbm_log_partition(DBM(30, [30, 30]))
