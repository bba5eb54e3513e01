"""EnergyFunctionModel: the lecture's Gaussian mean, CD gradients against quadrature and enumeration,
the bad-input messages, checkpoints, and training through the common Trainer."""

from __future__ import annotations

import itertools
import logging
import math

import pytest
import torch
from torch import nn

from boltzkit import checkpoint
from boltzkit.errors import CheckpointError, ConfigurationError, DataError, DivergenceError
from boltzkit.evaluation import quadrature
from boltzkit.models.base import free_energy_gradient
from boltzkit.models.energy import EnergyFunctionModel, GaussianEnergy, MLPEnergy
from boltzkit.sampling import ChainState
from boltzkit.sampling.mcmc import HMC, MALA, Gibbs, GibbsWithGradients, Langevin, Metropolis
from boltzkit.training import Callback, Trainer, TrainingConfig, make_estimator
from boltzkit.training.replay import ReplayBuffer
from boltzkit.training.threads import torch_threads

DT = torch.float64


@pytest.fixture(autouse=True)
def one_thread():
    """Small chains run on one thread, as the trainer's thread rule does (two threads on a busy
    2-core machine were measured 20× slower)."""
    with torch_threads(1):
        yield


# -- the lecture's example ----------------------------------------------------------------------
TAU, N = 4.0, 500


def gaussian_data() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return 2.0 + torch.randn(N, 1, generator=g, dtype=DT) / math.sqrt(TAU)


@pytest.mark.parametrize("method, sampler", [
    ("cd", Langevin(step_size=0.2)), ("cd", MALA(step_size=0.2)), ("pcd", HMC(step_size=0.2, n_leapfrog=3)),
    ("replay", MALA(step_size=0.2))], ids=["cd1-langevin", "cd1-mala", "pcd1-hmc", "replay-mala"])
def test_gaussian_mean_converges_to_the_sample_mean(method, sampler):
    """log f = −τ(x − μ)²/2 with τ known: the maximum-likelihood μ is x̄, with SE 1/√(Nτ) ≈ 0.022.

    CD-1 with Langevin from x⁺ gives E[x⁻] = x⁺ − ετ(x⁺ − μ), so the update is
    μ ← μ + lr·ετ²(x̄ − μ) + noise: a contraction to x̄.  Its noise leaves μ with
    sd ≈ √(lr/N) ≈ 0.2 SE at the initial lr (an AR(1) with these coefficients), less as the lr
    decays to 0 (measured 0.07–0.19 SE over 8 seeds for every row here); CD-1 with an MH kernel
    ends at an M-estimate of location Σψ(x_i − μ) = 0, ≈ 0.2 SE from x̄ for these data.  So
    |μ − x̄| < SE holds with more than 4 sd of margin, and a wrong gradient (sign, factor of
    2 in the acceptance) lands many SE away.
    """
    x = gaussian_data()
    xbar, se = float(x.mean()), 1 / math.sqrt(N * TAU)
    model = EnergyFunctionModel(GaussianEnergy(1, precision=TAU).double(), 1, sampler=sampler)
    estimator = ReplayBuffer(k=10, n_chains=N, buffer_size=2000) if method == "replay" else make_estimator(method, 1, N)
    history = Trainer(model, TrainingConfig(epochs=300, batch_size=N, lr=0.01, seed=1), estimator=estimator).fit(x)
    mu = float(model.module.mean.detach())
    assert abs(mu - xbar) < se, f"μ = {mu:.4f}, x̄ = {xbar:.4f}, SE = {se:.4f}"
    if sampler.metropolis:
        assert 0.3 < history[-1]["acceptance_rate"] < 0.9 and "step_size" in history[-1]


def test_gaussian_exact_log_likelihood_by_quadrature():
    """−mean τ(x − μ)²/2 − log Z with log Z = ½ log(2π/τ): quadrature agrees to 1e-9."""
    x = gaussian_data()
    model = EnergyFunctionModel(GaussianEnergy(1, precision=TAU, mean=1.5).double(), 1)
    grid = quadrature.make_grid(-8.0, 10.0, 2001)
    log_z = quadrature.log_partition(model.energy, grid, x)
    assert abs(float(log_z.detach()) - 0.5 * math.log(2 * math.pi / TAU)) < 1e-9
    exact = float((-TAU / 2 * (x - 1.5) ** 2).mean()) - 0.5 * math.log(2 * math.pi / TAU)
    assert abs(quadrature.log_likelihood(model.energy, x, log_z) - exact) < 1e-9


# -- CD estimates against the exact gradient ----------------------------------------------------
def boxed_mlp(d: int, seed: int) -> EnergyFunctionModel:
    net = MLPEnergy(d, hidden=[8], activation="tanh", seed=seed).double()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(2.0)  # a density far from uniform on the box
    return EnergyFunctionModel(net, d, sampler=MALA(step_size=0.1), support=(-3.0, 3.0))


def gradient_of(model, data, negatives) -> torch.Tensor:
    model.zero_grad()
    model.write_gradient(data, ChainState(negatives))
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


@pytest.mark.parametrize("d", [1, 2])
def test_long_chain_gradient_matches_the_quadrature_gradient(d):
    """With x⁻ from well-mixed chains, E[∇θ(mean U(x⁺) − mean U(x⁻))] is the exact gradient
    mean ∇U(x⁺) − E_p[∇U] (quadrature).  40 independent groups of 200 chains give 40 estimates;
    the mean of 40 has SE = sd/√40, and every one of the 25–33 parameters must lie within 5 SE
    (false alarm < 33 · 6e-7).  CD-1 from the data, by contrast, is biased and fails the check."""
    model = boxed_mlp(d, seed=d)
    g = torch.Generator().manual_seed(0)
    data = torch.rand(400, d, generator=g, dtype=DT) * 4 - 2
    grid = quadrature.make_grid([-3.0] * d, [3.0] * d, 801 if d == 1 else 161)
    exact = torch.cat([v.reshape(-1) for v in quadrature.exact_gradient(model, data, grid, model.energy).values()])

    def estimates(steps: int) -> torch.Tensor:
        start = data[torch.randint(400, (8000,), generator=g)]
        neg = model.advance(ChainState(start), steps, g).visible
        return torch.stack([gradient_of(model, data, chunk) for chunk in neg.split(200)])

    with torch.no_grad():
        model.advance(ChainState(data), 100, g)  # adapt the step size once
    model.sampler.adapt = False
    long = estimates(300)
    se = long.std(0) / math.sqrt(len(long))
    assert torch.allclose(long.mean(0)[se == 0], exact[se == 0], atol=1e-12)  # the output bias: ∂U/∂c = 1
    z = (long.mean(0) - exact)[se > 0] / se[se > 0]
    assert z.abs().max() < 5, f"z = {z.numpy().round(2)}"
    short = estimates(1)
    se1 = short.std(0) / math.sqrt(len(short))
    z1 = (short.mean(0) - exact)[se1 > 0] / se1[se1 > 0]
    assert z1.abs().max() > 5  # the check has the power to see CD-1's bias


def test_binary_gradient_matches_enumeration():
    """A binary user energy (pairwise + field, learnable): Gibbs and GWG negatives give the
    enumerated gradient within 5 SE (40 groups of 250 chains)."""
    class Pairwise(nn.Module):
        def __init__(self):
            super().__init__()
            g = torch.Generator().manual_seed(3)
            self.w = nn.Parameter(torch.randn(6, 6, generator=g, dtype=DT) * 0.4)
            self.b = nn.Parameter(torch.randn(6, generator=g, dtype=DT) * 0.4)

        def forward(self, x):
            return -((x @ torch.triu(self.w, 1)) * x).sum(1) - x @ self.b

    g = torch.Generator().manual_seed(1)
    data = (torch.rand(300, 6, generator=g, dtype=DT) < 0.3).to(DT)
    states = torch.tensor(list(itertools.product([0.0, 1.0], repeat=6)), dtype=DT)
    for sampler in (Gibbs(), GibbsWithGradients(), Metropolis()):
        model = EnergyFunctionModel(Pairwise(), 6, domain="binary", sampler=sampler)
        with torch.enable_grad():
            u = model.energy(states)
            nll = model.energy(data).mean() + torch.logsumexp(-u, 0)
            exact = torch.cat([t.reshape(-1) for t in torch.autograd.grad(nll, list(model.parameters()))])
        start = data[torch.randint(300, (10000,), generator=g)]
        neg = model.advance(ChainState(start), 60 if sampler.name == "gwg" else 15, g).visible
        est = torch.stack([gradient_of(model, data, c) for c in neg.split(250)])
        se = est.std(0) / math.sqrt(len(est))
        keep = se > 0  # the strictly lower triangle of w is unused: zero gradient everywhere
        z = (est.mean(0) - exact)[keep] / se[keep]
        assert z.abs().max() < 5, f"{sampler.name}: z = {z.numpy().round(2)}"


def test_write_gradient_is_the_generic_autograd_gradient():
    model = boxed_mlp(2, seed=0)
    g = torch.Generator().manual_seed(0)
    data, neg = torch.rand(50, 2, generator=g, dtype=DT), torch.rand(60, 2, generator=g, dtype=DT)
    ours = gradient_of(model, data, neg)
    free_energy_gradient(model, data, neg)
    assert torch.allclose(ours, torch.cat([p.grad.reshape(-1) for p in model.parameters()]), atol=1e-14)


def test_categorical_marginals_are_learned():
    """Independent categorical variables, U = −Σ_i θ_i·x_i: the MLE makes the model marginals
    equal the data frequencies.  PCD with Gibbs: 400 chains, marginal SE ≈ 0.025 at the end;
    allow 0.06."""
    class Independent(nn.Module):
        def __init__(self):
            super().__init__()
            self.theta = nn.Parameter(torch.zeros(6, dtype=DT))

        def forward(self, x):
            return -x @ self.theta

    g = torch.Generator().manual_seed(2)
    probs = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], dtype=DT)
    codes = torch.stack([torch.multinomial(probs[i], 2000, True, generator=g) for i in range(2)], 1)
    data = nn.functional.one_hot(codes, 3).reshape(2000, 6).to(DT)
    model = EnergyFunctionModel(Independent(), 6, domain="categorical:3")
    assert model.sampler.name == "gibbs" and model.sampler.categories == 3
    Trainer(model, TrainingConfig(epochs=15, batch_size=400, lr=0.5, weight_decay=0.0, seed=0),
            estimator=make_estimator("pcd", 1, 400)).fit(data)
    fitted = torch.softmax(model.module.theta.detach().reshape(2, 3), 1)
    assert (fitted - data.mean(0).reshape(2, 3)).abs().max() < 0.06


# -- bad input ------------------------------------------------------------------------------------
class WrongShape(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 3)

    def forward(self, x):
        return self.lin(x)


def test_wrong_shape_nan_and_non_finite_gradients_are_explained():
    with pytest.raises(ConfigurationError, match=r"shape \(4, 3\).*one number per row"):
        EnergyFunctionModel(WrongShape(), 2).energy(torch.zeros(4, 2))

    class NaNEnergy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Parameter(torch.ones(1))

        def forward(self, x):
            return torch.log(x[:, 0] - 10) * self.a      # NaN for x < 10

    model = EnergyFunctionModel(NaNEnergy(), 2, sampler=Langevin())
    with pytest.raises(DataError, match="energy is nan"):
        model.advance(ChainState(torch.zeros(4, 2)), 1)
    with pytest.raises(DivergenceError, match="NaN or infinite on 4 of 4 data"):
        model.write_gradient(torch.zeros(4, 2), ChainState(torch.zeros(4, 2)))

    class Kink(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.sqrt(self.a.abs()) * x.sum(1)   # finite energy, infinite ∂/∂a at a = 0

    model = EnergyFunctionModel(Kink(), 2, sampler=Langevin())
    with pytest.raises(DivergenceError, match="gradient of module.a"):
        model.write_gradient(torch.ones(4, 2), ChainState(torch.zeros(4, 2)))
    with pytest.raises(ConfigurationError, match="for continuous x but the domain is binary"):
        EnergyFunctionModel(MLPEnergy(2), 2, domain="binary", sampler="mala")
    with pytest.raises(ConfigurationError, match="nn.Module"):
        EnergyFunctionModel(lambda x: x.sum(1), 2)
    with pytest.raises(DataError, match="outside the model's support"):
        EnergyFunctionModel(MLPEnergy(2), 2, support=(-1, 1)).check_data(torch.full((3, 2), 2.0))


def test_a_sampler_that_does_not_mix_is_reported(caplog):
    """MALA with a huge step and no adaptation accepts nothing: a warning says what to change."""
    model = EnergyFunctionModel(GaussianEnergy(2, precision=1.0), 2, sampler=MALA(step_size=1e4, adapt=False),
                                warn_after=5)
    with caplog.at_level(logging.WARNING, logger="boltzkit"):
        for _ in range(5):
            model.advance(ChainState(torch.zeros(100, 2)), 1, torch.Generator().manual_seed(0))
    assert "accepted no proposal in 5 consecutive updates" in caplog.text
    assert "lower its step size" in caplog.text
    assert model.sampler_metrics()["acceptance_rate"] < 1e-4


def test_one_warning_per_streak_of_updates_that_accept_nothing(caplog):
    """The warning is read back every warn_after updates, once per streak: a streak that goes on
    is not reported again; a new streak after an update that accepted something is."""
    model = EnergyFunctionModel(GaussianEnergy(2, precision=1.0), 2, sampler=MALA(step_size=1e4, adapt=False),
                                warn_after=5)
    g = torch.Generator().manual_seed(0)
    with caplog.at_level(logging.WARNING, logger="boltzkit"):
        for _ in range(15):
            model.advance(ChainState(torch.zeros(100, 2)), 1, g)
        assert caplog.text.count("accepted no proposal") == 1
        model.sampler_step_size.fill_(0.1)            # this update accepts: the streak ends
        model.advance(ChainState(torch.zeros(100, 2)), 1, g)
        model.sampler_step_size.fill_(1e4)
        for _ in range(9):
            model.advance(ChainState(torch.zeros(100, 2)), 1, g)
    assert caplog.text.count("accepted no proposal") == 2


def test_energy_model_updates_read_back_once_per_warn_after_updates(monkeypatch):
    """Acceptance, the no-mixing streak and the replay buffer's restarts stay on the device: 20
    replay/MALA updates read back once per kernel run (its finiteness check) plus once for the
    streak check (every warn_after = 20 updates); they read three times per update before."""
    from conftest import record_host_reads

    model = EnergyFunctionModel(GaussianEnergy(2, precision=1.0), 2, sampler=MALA(step_size=0.1))
    replay = ReplayBuffer(k=2, n_chains=50, buffer_size=200)
    data, g = torch.randn(50, 2, dtype=torch.float32), torch.Generator().manual_seed(0)
    model = model.float()
    with monkeypatch.context() as m:
        calls = record_host_reads(m)
        for _ in range(20):
            replay.negative_phase(model, data, None, g, None)
    assert len(calls) == 20 + 1
    assert 0 < replay.metrics()["replay_fresh_fraction"] < 0.2 and 0 < model.sampler_metrics()["acceptance_rate"] <= 1


# -- checkpoints and resume -----------------------------------------------------------------------
def test_registered_energy_round_trips_through_the_common_checkpoint(tmp_path):
    model = EnergyFunctionModel(MLPEnergy(2, hidden=[16, 16], seed=4), 2, sampler=HMC(n_leapfrog=4),
                                support=(-4.5, 4.5))
    with torch.no_grad():
        model.sampler_step_size.fill_(0.123)
    checkpoint.save(tmp_path / "m", model)
    loaded = EnergyFunctionModel.load(tmp_path / "m")
    x = torch.rand(7, 2)
    assert torch.equal(loaded.energy(x), model.energy(x))
    assert float(loaded.sampler_step_size) == pytest.approx(0.123)
    assert loaded.sampler == model.sampler and loaded.support == model.support


def test_user_module_is_loaded_into_a_module_the_user_builds(tmp_path):
    class Mine(nn.Module):
        def __init__(self):
            super().__init__()
            self.f = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))

        def forward(self, x):
            return self.f(x)

    torch.manual_seed(0)
    model = EnergyFunctionModel(Mine(), 2, output="log_density")
    checkpoint.save(tmp_path / "u", model)
    with pytest.raises(CheckpointError, match="user-defined .*module=module"):
        checkpoint.load(tmp_path / "u")
    again = EnergyFunctionModel.load(tmp_path / "u", module=Mine())
    x = torch.rand(5, 2)
    assert torch.equal(again.energy(x), model.energy(x))
    plain = EnergyFunctionModel(Mine(), 2, output="log_density")
    plain.load_state_dict(model.state_dict())
    assert torch.equal(plain.energy(x), -model.module(x).squeeze(1))


class StopAfter(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer, epoch, metrics):
        trainer.stop = epoch >= self.epoch


def test_replay_buffer_resumes_bit_for_bit():
    """4 epochs straight equal 2 epochs, a training-state round trip into a new model and
    trainer, and 2 more (replay buffer, adapted MALA step size, momentum, RNG all restored)."""
    g = torch.Generator().manual_seed(0)
    data = torch.randn(200, 2, generator=g)
    config = TrainingConfig(epochs=4, batch_size=50, seed=0)

    def fresh() -> Trainer:
        model = EnergyFunctionModel(MLPEnergy(2, hidden=[8], seed=1), 2, sampler=MALA(step_size=0.05))
        return Trainer(model, config, estimator=ReplayBuffer(k=3, buffer_size=500))

    straight = fresh()
    straight.fit(data)
    first = fresh()
    first.callbacks.append(StopAfter(2))
    first.fit(data)
    tensors, state = first.training_state()
    second = fresh()
    second.model.load_state_dict(first.model.state_dict())
    second.load_training_state(tensors, state)
    second.fit(data)
    assert second.epoch == 4 and "replay_fresh_fraction" in second.history[-1]
    for a, b in zip(straight.model.parameters(), second.model.parameters()):
        assert torch.equal(a, b)
