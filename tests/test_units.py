"""Spin, Gaussian and ReLU unit types: conditionals against brute force or quadrature,
exact log Z against enumeration / quadrature, gradients against autograd and the hand-derived
closed form, sampling moments against analytic ones, and a short training run."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy import integrate
from scipy.stats import norm

from boltzkit import exact
from boltzkit.errors import ConfigurationError, DataError
from boltzkit.models.base import free_energy_gap
from boltzkit.models.rbm import RBM
from boltzkit.models.units import Gaussian, ReLU, Spin, make_units
from boltzkit.training import fit
from boltzkit.training.gradient import ContrastiveDivergence, write_gradient
from conftest import random_rbm

D = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- construction -----------------------------------------------------------------------------

def test_make_units_specs():
    assert isinstance(make_units("spin", 3), Spin)
    fixed, learned = make_units("gaussian", 3), make_units("gaussian:learned", 3)
    assert fixed.spec() == "gaussian" and learned.spec() == "gaussian:learned"
    assert "log_sigma" in dict(fixed.named_buffers()) and "log_sigma" not in dict(fixed.named_parameters())
    assert "log_sigma" in dict(learned.named_parameters())
    assert "log_sigma" in fixed.state_dict()
    assert isinstance(make_units("relu", 2), ReLU)
    with pytest.raises(ConfigurationError):
        make_units("gaussian:wobbly", 3)


def test_rbm_rejects_unsupported_combinations():
    for visible, hidden in [("gaussian", "gaussian"), ("gaussian", "relu"), ("relu", "bernoulli"),
                            ("relu", "relu"), ("gaussian:learned", "gaussian")]:
        with pytest.raises(ConfigurationError):
            RBM(3, 2, visible=visible, hidden=hidden)
    for visible, hidden in [("gaussian", "bernoulli"), ("gaussian:learned", "spin"),
                            ("bernoulli", "gaussian"), ("bernoulli", "relu"), ("spin", "spin")]:
        RBM(3, 2, visible=visible, hidden=hidden)


def test_rbm_config_round_trip_keeps_learned_sigma():
    rbm = RBM(3, 2, visible="gaussian:learned")
    again = RBM.from_config(rbm.config())
    assert again.visible.spec() == "gaussian:learned"
    assert "visible_log_sigma" in again.named_tensors()
    assert "visible_log_sigma" not in RBM(3, 2, visible="gaussian").named_tensors()


# -- spin -------------------------------------------------------------------------------------

@pytest.mark.parametrize("beta", [1.0, 0.4, torch.tensor([[0.3], [1.7]], dtype=D)])
def test_spin_conditionals_match_brute_force(beta):
    units = Spin(3).to(D)
    with torch.no_grad():
        units.bias.copy_(torch.tensor([0.3, -1.2, 2.0], dtype=D))
    field = torch.tensor([[0.5, -2.0, 3.0], [-0.1, 0.0, 40.0]], dtype=D)
    states = units.states(0, units.n_states, D)
    assert set(states.unique().tolist()) == {-1.0, 1.0}
    b = beta if isinstance(beta, torch.Tensor) else torch.tensor([[beta]] * 2, dtype=D)
    # p_β(x|a) ∝ exp(β(−E_self(x) + x·input)) = exp(β x·a) for linear units
    logits = b * (field @ states.t())
    log_z = torch.logsumexp(logits, 1)
    mean = torch.softmax(logits, 1) @ states
    torch.testing.assert_close(units.log_partition(field, beta), log_z)
    torch.testing.assert_close(units.mean(field, beta), mean)
    # the same from the pieces: −E_self(x) + φ(x)·input with input = a − b
    pieces = b * (-units.self_energy(states) + (field - units.bias) @ states.t())
    torch.testing.assert_close(torch.logsumexp(pieces, 1), log_z)


def test_spin_rbm_log_partition_matches_brute_force():
    rbm = random_rbm(4, 3, visible="spin", hidden="spin")
    pm = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=4)), dtype=D)
    ph = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=3)), dtype=D)
    v, h = pm.repeat_interleave(len(ph), 0), ph.repeat(len(pm), 1)
    brute = torch.logsumexp(-rbm.energy(v, h), 0)
    assert exact.log_partition(rbm) == pytest.approx(float(brute.detach()), abs=1e-10)
    # mixed: spin visible, bernoulli hidden, and the free energy against the sum over h
    mixed = random_rbm(4, 3, visible="spin", seed=3)
    hb = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)), dtype=D)
    joint = -mixed.energy(pm.repeat_interleave(8, 0), hb.repeat(16, 1)).reshape(16, 8)
    torch.testing.assert_close(-mixed.free_energy(pm), torch.logsumexp(joint, 1))
    assert exact.log_partition(mixed) == pytest.approx(float(torch.logsumexp(joint.detach().reshape(-1), 0)), abs=1e-10)


def test_spin_sampling_moments_and_validation():
    units = Spin(4).to(D)
    field = torch.tensor([-1.5, -0.2, 0.0, 0.9], dtype=D).expand(20000, 4)
    x = units.sample(field, gen(1), beta=0.8)
    assert set(x.unique().tolist()) <= {-1.0, 1.0}
    expected = torch.tanh(0.8 * field[0])
    se = torch.sqrt((1 - expected ** 2) / x.shape[0])
    assert bool(((x.mean(0) - expected).abs() < 5 * se + 1e-12).all())
    units.validate(x)
    with pytest.raises(DataError):
        units.validate(torch.tensor([[0.0, 1.0, 1.0, -1.0]], dtype=D))
    units.init_from_data(torch.tensor([0.5, -0.5, 0.0, 1.0], dtype=D))
    torch.testing.assert_close(units.mean(units.bias)[:3], torch.tensor([0.5, -0.5, 0.0], dtype=D))


def test_spin_closed_form_gradient_matches_autograd():
    rbm = random_rbm(5, 4, visible="spin", hidden="spin", scale=0.5)
    g = gen(2)
    v_pos = torch.bernoulli(torch.full((7, 5), 0.5, dtype=D), generator=g) * 2 - 1
    v_neg = torch.bernoulli(torch.full((9, 5), 0.5, dtype=D), generator=g) * 2 - 1
    write_gradient(rbm, v_pos, v_neg)
    closed = {n: p.grad.clone() for n, p in rbm.named_parameters()}
    params = list(rbm.parameters())
    grads = torch.autograd.grad(free_energy_gap(rbm, v_pos, v_neg), params)
    for (name, _), g_auto in zip(rbm.named_parameters(), grads):
        torch.testing.assert_close(closed[name], g_auto, msg=name)


# -- gaussian ---------------------------------------------------------------------------------

def _gaussian(n: int, bias, log_sigma) -> Gaussian:
    units = Gaussian(n, "learned").to(D)
    with torch.no_grad():
        units.bias.copy_(torch.tensor(bias, dtype=D))
        units.log_sigma.copy_(torch.tensor(log_sigma, dtype=D))
    return units


@pytest.mark.parametrize("beta", [1.0, 0.3, 2.5])
def test_gaussian_conditional_1d_matches_quadrature(beta):
    units = _gaussian(1, [0.7], [math.log(1.6)])
    b, s2 = 0.7, 1.6 ** 2
    inp = -1.3
    field = torch.tensor([[b + inp]], dtype=D)

    def density(v):  # exp(β(−E_self(v) + φ(v)·input))
        return math.exp(beta * (-(v - b) ** 2 / (2 * s2) + v * inp / s2))

    z, _ = integrate.quad(density, -math.inf, math.inf, epsabs=0, epsrel=1e-12)
    m1, _ = integrate.quad(lambda v: v * density(v), -math.inf, math.inf, epsabs=0, epsrel=1e-12)
    m2, _ = integrate.quad(lambda v: v * v * density(v), -math.inf, math.inf, epsabs=0, epsrel=1e-12)
    assert float(units.log_partition(field, beta).detach()) == pytest.approx(math.log(z), abs=1e-9)
    assert float(units.mean(field, beta)) == pytest.approx(m1 / z, abs=1e-9)
    variance = m2 / z - (m1 / z) ** 2
    assert variance == pytest.approx(s2 / beta, rel=1e-7)
    # statistic and self-energy are the pieces of the same density
    v = torch.tensor([[0.4]], dtype=D)
    log_density = beta * (-units.self_energy(v) + units.statistic(v)[:, 0] * inp)
    assert float(log_density.detach()) == pytest.approx(math.log(density(0.4)), abs=1e-12)


def test_gaussian_conditional_2d_matches_quadrature():
    units = _gaussian(2, [0.2, -0.5], [0.3, -0.4])
    field = torch.tensor([[1.1, -1.4]], dtype=D)
    b, s2 = units.bias.detach().numpy(), units.variance().detach().numpy()
    inp = field[0].numpy() - b
    beta = 0.7

    def density(y, x):
        v = (x, y)
        return math.exp(beta * sum(-(v[i] - b[i]) ** 2 / (2 * s2[i]) + v[i] * inp[i] / s2[i]
                                   for i in range(2)))

    z, _ = integrate.dblquad(density, -15, 15, -15, 15, epsabs=0, epsrel=1e-10)
    assert float(units.log_partition(field, beta).detach()) == pytest.approx(math.log(z), abs=1e-7)


def _cho_energy(rbm: RBM, v, h) -> float:
    """E(v,h) = Σ_i (v_i − b_i)²/(2σ_i²) − cᵀh − Σ_ij (v_i/σ_i²) W_ij h_j, written out."""
    b, c = rbm.visible.bias.tolist(), rbm.hidden.bias.tolist()
    s2 = rbm.visible.variance().tolist()
    w = rbm.weight.tolist()
    return (sum((v[i] - b[i]) ** 2 / (2 * s2[i]) for i in range(len(v)))
            - sum(c[j] * h[j] for j in range(len(h)))
            - sum(v[i] / s2[i] * w[i][j] * h[j] for i in range(len(v)) for j in range(len(h))))


def _quadrature_log_z_gaussian_bernoulli(rbm: RBM) -> float:
    """log Σ_h ∫∫ exp(−E(v,h)) dv by 2-D quadrature of the joint energy, one h at a time."""
    hs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=rbm.n_hidden)), dtype=D)
    with torch.no_grad():
        centres = rbm.visible_field(hs)          # the mean of p(v|h), to place the box
        sigma = torch.exp(rbm.visible.log_sigma).tolist()
        b, s2 = rbm.visible.bias.tolist(), rbm.visible.variance().tolist()
        terms = []
        for h, centre in zip(hs.tolist(), centres.tolist()):
            # for fixed h, −E is a quadratic in v: −E = const − Σ_i (v_i² − 2 v_i t_i)/(2σ_i²)
            t = [centre[i] for i in range(2)]
            k0 = -_cho_energy(rbm, [0.0, 0.0], h)
            shift = k0 + sum(t[i] ** 2 / (2 * s2[i]) for i in range(2))  # max of −E

            def integrand(y, x, h=h, shift=shift):
                return math.exp(-_fast(x, y) - shift)

            wh = [sum(rbm.weight[i, j].item() * h[j] for j in range(len(h))) for i in range(2)]
            ch = sum(rbm.hidden.bias[j].item() * h[j] for j in range(len(h)))

            def _fast(x, y, wh=wh, ch=ch):
                v = (x, y)
                return (sum((v[i] - b[i]) ** 2 / (2 * s2[i]) - v[i] / s2[i] * wh[i] for i in range(2))
                        - ch)

            lo = [t[i] - 12 * sigma[i] for i in range(2)]
            hi = [t[i] + 12 * sigma[i] for i in range(2)]
            value, _ = integrate.dblquad(integrand, lo[0], hi[0], lo[1], hi[1], epsabs=0, epsrel=1e-10)
            terms.append(math.log(value) + shift)
    return float(torch.logsumexp(torch.tensor(terms, dtype=D), 0))


def test_gaussian_bernoulli_exact_log_partition_matches_quadrature():
    rbm = random_rbm(2, 3, visible="gaussian:learned", scale=0.6, seed=4)
    assert exact.enumerated_layer(rbm) == "hidden"
    v, h = torch.tensor([[0.3, -1.1]], dtype=D), torch.tensor([[1.0, 0.0, 1.0]], dtype=D)
    assert float(rbm.energy(v, h).detach()) == pytest.approx(_cho_energy(rbm, [0.3, -1.1], [1.0, 0.0, 1.0]), abs=1e-12)
    assert exact.log_partition(rbm) == pytest.approx(_quadrature_log_z_gaussian_bernoulli(rbm), abs=1e-7)
    # the free energy is the log of the hidden sum of the joint
    v = torch.tensor([[0.3, -1.0], [2.0, 0.5]], dtype=D)
    hs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)), dtype=D)
    joint = torch.stack([torch.logsumexp(-rbm.energy(row.expand(8, -1), hs), 0) for row in v])
    torch.testing.assert_close(-rbm.free_energy(v), joint)


def _hand_gradient(rbm: RBM, v: torch.Tensor) -> dict[str, torch.Tensor]:
    """mean ∂F/∂θ for Gaussian(learned σ)–Bernoulli, derived by hand (s = log σ)."""
    b, s, c, w = rbm.visible.bias, rbm.visible.log_sigma, rbm.hidden.bias, rbm.weight
    inv = torch.exp(-2 * s)
    mu = torch.sigmoid(c + (v * inv) @ w)
    return {"weight": -((v * inv).t() @ mu) / v.shape[0],
            "visible.bias": (-(v - b) * inv).mean(0),
            "visible.log_sigma": (-(v - b) ** 2 * inv + 2 * v * inv * (mu @ w.t())).mean(0),
            "hidden.bias": -mu.mean(0)}


def test_gaussian_learned_sigma_gradient_matches_autograd_and_closed_form():
    rbm = random_rbm(4, 3, visible="gaussian:learned", scale=0.5, seed=5)
    g = gen(6)
    v_pos = torch.randn(11, 4, generator=g, dtype=D)
    v_neg = rbm.sample(v_pos, 2, gen(7))
    write_gradient(rbm, v_pos, v_neg)
    written = {n: p.grad.clone() for n, p in rbm.named_parameters()}
    assert set(written) == {"weight", "visible.bias", "visible.log_sigma", "hidden.bias"}
    grads = torch.autograd.grad(free_energy_gap(rbm, v_pos, v_neg), list(rbm.parameters()))
    pos, neg = _hand_gradient(rbm, v_pos), _hand_gradient(rbm, v_neg)
    for (name, _), g_auto in zip(rbm.named_parameters(), grads):
        torch.testing.assert_close(written[name], g_auto, msg=name)
        torch.testing.assert_close(written[name], (pos[name] - neg[name]).detach(), msg=name)


def test_gaussian_exact_gradient_matches_finite_differences():
    rbm = random_rbm(2, 3, visible="gaussian:learned", scale=0.5, seed=8)
    data = torch.randn(6, 2, generator=gen(9), dtype=D)
    grad = exact.log_likelihood_gradient(rbm, data)
    eps = 1e-5
    for name, p in rbm.named_tensors().items():
        flat = p.data.view(-1)
        for i in range(flat.numel()):
            old = float(flat[i])
            flat[i] = old + eps
            up = exact.log_likelihood(rbm, data)
            flat[i] = old - eps
            down = exact.log_likelihood(rbm, data)
            flat[i] = old
            assert float(grad[name].view(-1)[i]) == pytest.approx((up - down) / (2 * eps), abs=1e-6), name


def test_gaussian_sampling_moments():
    units = _gaussian(3, [0.0, 1.0, -2.0], [0.0, math.log(0.5), math.log(2.0)])
    field = torch.tensor([0.5, 1.0, -3.0], dtype=D).expand(40000, 3)
    beta = 0.5
    x = units.sample(field, gen(10), beta=beta)
    var = units.variance().detach() / beta
    n = x.shape[0]
    assert bool(((x.mean(0) - field[0]).abs() < 5 * torch.sqrt(var / n)).all())
    # the sample variance has standard error ≈ var·sqrt(2/n)
    assert bool(((x.var(0) - var).abs() < 5 * var * math.sqrt(2 / n)).all())
    # tempered with a per-chain β tensor: the spread follows each row's β
    betas = torch.tensor([[0.25], [4.0]], dtype=D).repeat(20000, 1)
    y = units.sample(torch.zeros(40000, 3, dtype=D), gen(11), beta=betas)
    ratio = y[0::2].var(0) / y[1::2].var(0)
    torch.testing.assert_close(ratio, torch.full((3,), 16.0, dtype=D), rtol=0.1, atol=0)


def test_gaussian_fixed_sigma_is_not_trained():
    rbm = random_rbm(3, 2, visible="gaussian", seed=1)
    assert "visible.log_sigma" not in dict(rbm.named_parameters())
    assert float(rbm.visible.log_sigma.abs().max()) == 0.0
    v = torch.randn(5, 3, generator=gen(12), dtype=D)
    write_gradient(rbm, v, rbm.sample(v, 1, gen(13)))
    assert all(p.grad is not None for p in rbm.parameters())


def test_gaussian_bernoulli_training_reduces_reconstruction_error():
    g = gen(14)
    prototypes = torch.tensor([[2.0, 2.0, 2.0, -2.0, -2.0, -2.0],
                               [-2.0, -2.0, -2.0, 2.0, 2.0, 2.0],
                               [2.0, -2.0, 2.0, -2.0, 2.0, -2.0]])
    data = prototypes[torch.randint(3, (300,), generator=g)] + 0.3 * torch.randn(300, 6, generator=g)
    data = (data - data.mean(0)) / data.std(0)
    rbm = RBM(6, 8, visible="gaussian", seed=0)

    def error(model):
        return float(((model.reconstruct(data) - data) ** 2).mean())

    model_before = RBM(6, 8, visible="gaussian", seed=0)
    model_before.visible.init_from_data(data.mean(0))
    before = error(model_before)
    fit(rbm, data, epochs=15, batch_size=20, lr=0.05, momentum=0.5, initial_momentum=0.5,
        method="cd", k=1, seed=0)
    after = error(rbm)
    assert math.isfinite(after) and after < 0.5 * before


def test_gaussian_learned_sigma_trains_with_pcd():
    data = torch.randn(200, 4, generator=gen(15)) * torch.tensor([0.5, 1.0, 1.0, 2.0])
    rbm = RBM(4, 5, visible="gaussian:learned", seed=0)
    fit(rbm, data, epochs=4, batch_size=25, lr=0.01, method="pcd")
    assert bool(torch.isfinite(rbm.visible.log_sigma).all())
    assert float(rbm.visible.log_sigma.detach().abs().max()) > 0  # it moved


# -- relu -------------------------------------------------------------------------------------

def _stepped_sigmoid_log_partition(field: torch.Tensor, beta: float, terms: int = 4000) -> torch.Tensor:
    k = torch.arange(1, terms + 1, dtype=D)
    return torch.nn.functional.softplus(beta * (field.unsqueeze(-1) - k + 0.5)).sum((-1, -2))


@pytest.mark.parametrize("beta", [1.0, 0.6, 3.0])
def test_relu_log_partition_matches_long_sum(beta):
    units = ReLU(6).to(D)
    field = torch.tensor([[-30.0, -2.3, -0.5, 0.0, 0.5, 1.49],
                          [2.5, 7.3, 40.2, 120.7, 0.01, -0.01]], dtype=D)
    expected = _stepped_sigmoid_log_partition(field, beta)
    tolerance = 1e-9 if beta >= 1 else 1e-5
    torch.testing.assert_close(units.log_partition(field, beta), expected, rtol=1e-12, atol=tolerance)
    # its gradient is the mean of the binary copies Σ_k σ(β(a − k + ½))·β
    f = field.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(units.log_partition(f, beta).sum(), f)
    k = torch.arange(1, 4001, dtype=D)
    copies = beta * torch.sigmoid(beta * (field.unsqueeze(-1) - k + 0.5)).sum(-1)
    torch.testing.assert_close(grad, copies, rtol=0, atol=tolerance)


def test_relu_samples_are_nonnegative_stochastic_and_have_the_noisy_mean():
    units = ReLU(4).to(D)
    a = torch.tensor([-2.0, -0.3, 0.4, 3.0], dtype=D)
    field = a.expand(40000, 4)
    x = units.sample(field, gen(16))
    y = units.sample(field, gen(17))
    assert bool((x >= 0).all()) and not torch.equal(x, y)
    assert bool((x[:, 3] != x[0, 3]).any())  # noisy, not max(0, a)
    for i, ai in enumerate(a.tolist()):
        s = math.sqrt(1 / (1 + math.exp(-ai)))
        first, _ = integrate.quad(lambda z, ai=ai, s=s: max(0.0, ai + s * z) * norm.pdf(z), -12, 12, points=[-ai / s])
        second, _ = integrate.quad(lambda z, ai=ai, s=s: max(0.0, ai + s * z) ** 2 * norm.pdf(z), -12, 12,
                                   points=[-ai / s])
        se = math.sqrt(max(second - first ** 2, 1e-12) / x.shape[0])
        assert float(x[:, i].mean()) == pytest.approx(first, abs=5 * se + 1e-9)
    torch.testing.assert_close(units.mean(a), a.clamp(min=0))


def test_relu_hidden_rbm_trains_and_enumerates_visible():
    rbm = random_rbm(4, 3, hidden="relu", scale=0.3, seed=18)
    # exact enumeration of the (binary) visible layer uses the relu log-partition
    vs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4)), dtype=D)
    expected = float(torch.logsumexp(-rbm.free_energy(vs).detach(), 0))
    assert exact.log_partition(rbm) == pytest.approx(expected, abs=1e-10)
    with pytest.raises(ConfigurationError):
        rbm.energy(vs[:2], torch.zeros(2, 3, dtype=D))
    data = torch.bernoulli(torch.full((60, 4), 0.3), generator=gen(19))
    model = RBM(4, 3, hidden="relu", seed=0)
    ContrastiveDivergence(1).step(model, data, gen(20))
    assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in model.parameters())
    fit(model, data, epochs=2, batch_size=20, lr=0.01, method="cd")
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_first_row_outside_finds_the_first_bad_row_across_blocks():
    from boltzkit.models.units import first_row_outside
    x = torch.zeros(10, 3)
    assert first_row_outside(x, (0.0, 1.0), rows=4) is None
    x[9, 1] = 0.5
    x[6, 2] = 2.0
    assert first_row_outside(x, (0.0, 1.0), rows=4) == 6
    assert first_row_outside(x, (0.0, 1.0), rows=100) == 6


def test_all_finite_sees_nan_and_inf_anywhere():
    from boltzkit.models.units import all_finite
    x = torch.zeros(5000)
    assert all_finite(x) and all_finite(torch.zeros(0))
    for bad in (float("nan"), float("inf"), float("-inf")):
        y = x.clone()
        y[4321] = bad
        assert not all_finite(y)


@pytest.mark.parametrize("beta, previous", [(0.5, 0.49999), (1.0, 0.99999), (0.001, 0.0),
                                            (1.0, 0.0), (0.0, 1.0), (0.3, 0.7)])
def test_bernoulli_log_partition_change_matches_float64_difference(beta, previous):
    from boltzkit.models.units import Bernoulli, Units
    layer = Bernoulli(300)
    g = torch.Generator().manual_seed(0)
    for scale in (0.01, 1.0, 100.0):
        field = torch.randn(20, 300, generator=g) * scale
        ours = layer.log_partition_change(field, beta, previous)
        exact = Units.log_partition_change(layer, field, beta, previous)  # float64 subtraction
        assert ours.dtype == torch.float64
        # float32 inputs: each term is exact to ~1e-7 of its size, |term| ≤ |β − β'|·|a_i|
        size = abs(beta - previous) * field.double().abs().sum(-1)
        assert bool(((ours - exact).abs() <= 1e-6 * size + 1e-12).all())
