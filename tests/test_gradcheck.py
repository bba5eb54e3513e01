"""Centered gradients and the gradient-quality report against exact enumeration."""

from __future__ import annotations

import pytest
import torch

from boltzkit import exact
from boltzkit.errors import ConfigurationError
from boltzkit.evaluation.gradient_quality import gradient_quality, plot_gradient_quality
from boltzkit.models.rbm import RBM
from boltzkit.training import (
    Centering,
    ContrastiveDivergence,
    Estimator,
    PersistentContrastiveDivergence,
    make_estimator,
    write_gradient,
)
from conftest import random_rbm


def binary(rows: int, cols: int, p: float = 0.5, seed: int = 0) -> torch.Tensor:
    return torch.bernoulli(torch.full((rows, cols), p, dtype=torch.float64),
                           generator=torch.Generator().manual_seed(seed))


def grads(rbm: RBM) -> list[torch.Tensor]:
    return [rbm.weight.grad.clone(), rbm.visible_bias.grad.clone(), rbm.hidden_bias.grad.clone()]


# -- centering --------------------------------------------------------------------------------
def test_zero_offsets_give_the_ordinary_gradient_bit_for_bit():
    rbm = random_rbm(6, 4, seed=1)
    v_pos, v_neg = binary(9, 6, seed=2), binary(11, 6, 0.3, seed=3)
    write_gradient(rbm, v_pos, v_neg)
    plain = grads(rbm)
    write_gradient(rbm, v_pos, v_neg, offsets=(torch.zeros(6, dtype=torch.float64),
                                               torch.zeros(4, dtype=torch.float64)))
    for a, b in zip(plain, grads(rbm)):
        assert torch.equal(a, b)


def test_centered_gradient_matches_the_reparametrised_model():
    """The centered update, mapped back, is J Jᵀ ∇θ for θ(θ') = (W', b' − W'μ_h, c' − W'ᵀμ_v).

    Checked two ways: against autograd through the reparametrisation, and against the
    centered-statistics formula ∇W' = −⟨(v−μ_v)(E[h|v]−μ_h)ᵀ⟩_+ + ⟨…⟩_−,
    ∇b' = −⟨v⟩_+ + ⟨v⟩_− − ∇W' μ_h, ∇c' = −⟨E[h|v]⟩_+ + ⟨E[h|v]⟩_− − ∇W'ᵀ μ_v.
    It is also a descent direction: ⟨centered, ordinary⟩ = ‖Jᵀ∇θ‖² > 0.
    """
    rbm = random_rbm(6, 4, seed=4)
    v_pos, v_neg = binary(13, 6, 0.6, seed=5), binary(17, 6, 0.4, seed=6)
    g = torch.Generator().manual_seed(7)
    mu_v, mu_h = torch.rand(6, generator=g, dtype=torch.float64), torch.rand(4, generator=g, dtype=torch.float64)
    write_gradient(rbm, v_pos, v_neg)
    g_w, g_b, g_c = grads(rbm)
    write_gradient(rbm, v_pos, v_neg, offsets=(mu_v, mu_h))
    centered = grads(rbm)

    def to_ordinary(w, b, c):
        return w, b - w @ mu_h, c - w.t() @ mu_v

    # Jᵀ g by autograd (the map is linear), then J (Jᵀ g) by applying the map
    primal = [t.clone().requires_grad_(True) for t in (g_w, g_b, g_c)]
    inner = sum((x * y).sum() for x, y in zip(to_ordinary(*primal), (g_w, g_b, g_c)))
    jt_g = torch.autograd.grad(inner, primal)
    for got, want in zip(centered, to_ordinary(*jt_g)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-13)

    with torch.no_grad():
        h_pos, h_neg = rbm.hidden_mean(v_pos), rbm.hidden_mean(v_neg)
        w = (-(v_pos - mu_v).t() @ (h_pos - mu_h) / 13 + (v_neg - mu_v).t() @ (h_neg - mu_h) / 17)
        b = -v_pos.mean(0) + v_neg.mean(0) - w @ mu_h
        c = -h_pos.mean(0) + h_neg.mean(0) - w.t() @ mu_v
    for got, want in zip(centered, (w, b, c)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-13)

    dot = sum(float((x * y).sum()) for x, y in zip(centered, (g_w, g_b, g_c)))
    assert dot > 0
    assert dot == pytest.approx(sum(float((t ** 2).sum()) for t in jt_g), rel=1e-10)


def test_exact_centered_gradient_is_an_ascent_direction_of_the_likelihood():
    """With exact expectations: the centered map of the exact gradient raises log p."""
    rbm = random_rbm(5, 3, scale=1.0, seed=12)
    data = binary(10, 5, seed=13)
    truth = exact.log_likelihood_gradient(rbm, data)           # ∇ mean log p
    mu_v, mu_h = data.mean(0), rbm.hidden_mean(data).mean(0).detach()
    g_w, g_b, g_c = (-truth["weight"], -truth["visible_bias"], -truth["hidden_bias"])
    from boltzkit.models.rbm import center_gradient as _center_gradient
    _center_gradient(g_w, g_b, g_c, mu_v, mu_h)                 # in place: centered loss gradient
    before = exact.log_likelihood(rbm, data)
    with torch.no_grad():
        for p, d in zip((rbm.weight, rbm.visible_bias, rbm.hidden_bias), (g_w, g_b, g_c)):
            p.sub_(1e-3 * d)
    assert exact.log_likelihood(rbm, data) > before


def test_centered_estimators_track_sliding_data_means():
    rbm = random_rbm(6, 4, seed=8)
    first, second = binary(20, 6, 0.2, seed=9), binary(20, 6, 0.8, seed=10)
    for method in ("cd", "pcd", "pt", "fpcd"):
        est = make_estimator(method, k=1, n_chains=10, centered=True, centering_rate=0.1)
        assert isinstance(est.centering, Centering)
        g = torch.Generator().manual_seed(0)
        est.step(rbm, first, g)
        torch.testing.assert_close(est.centering.visible_offset, first.mean(0))
        torch.testing.assert_close(est.centering.hidden_offset, rbm.hidden_mean(first).mean(0).detach())
        est.step(rbm, second, g)
        torch.testing.assert_close(est.centering.visible_offset, 0.9 * first.mean(0) + 0.1 * second.mean(0))
    assert ContrastiveDivergence().centering is None
    with pytest.raises(ConfigurationError):
        Centering(0.0)
    gaussian = RBM(4, 3, visible="gaussian", dtype=torch.float64)
    with pytest.raises(ConfigurationError):
        ContrastiveDivergence().center().step(gaussian, torch.randn(5, 4, dtype=torch.float64))


# -- gradient quality ------------------------------------------------------------------------
class ExactSamples(Estimator):
    """Negative phase drawn exactly from p(v) by enumeration (the ideal estimator)."""

    name = "exact-samples"

    def negative_phase(self, rbm, v_data, hidden_field, generator, mask):
        states = rbm.visible.states(0, rbm.visible.n_states, v_data.dtype)
        p = torch.softmax(-rbm.free_energy(states), 0)
        return states[torch.multinomial(p, v_data.shape[0], replacement=True, generator=generator)]


def test_gradient_quality_orders_estimators_and_leaves_the_inputs_alone(tmp_path):
    rbm = random_rbm(5, 3, scale=2.0, seed=11)
    data = binary(8, 5, seed=0).repeat(100, 1)
    pcd = PersistentContrastiveDivergence(n_chains=50)
    pcd.step(random_rbm(5, 3, seed=2), data, torch.Generator().manual_seed(1))
    chains, weight = pcd.chains.state.clone(), rbm.weight.detach().clone()
    result = gradient_quality(rbm, data, {"cd1": ContrastiveDivergence(1), "cd50": ContrastiveDivergence(50),
                                          "pcd": pcd, "exact": ExactSamples()}, repeats=10, seed=3)
    assert torch.equal(pcd.chains.state, chains) and torch.equal(rbm.weight, weight)
    assert set(result) == {"cd1", "cd50", "pcd", "exact"}
    for q in result.values():
        assert q["bias_norm"] >= 0 and q["variance"] >= 0 and -1 <= q["cosine"] <= 1
    cd1, cd50, ideal = result["cd1"], result["cd50"], result["exact"]
    assert cd50["bias_norm"] < 0.5 * cd1["bias_norm"]
    # an unbiased estimator: the norm of the mean error is Monte-Carlo noise, √(variance/R)
    assert ideal["bias_norm"] < 3 * (ideal["variance"] / 10) ** 0.5
    assert ideal["bias_norm"] < 0.2 * cd1["bias_norm"]
    assert ideal["cosine"] > cd1["cosine"]
    png = plot_gradient_quality(result, tmp_path / "quality.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigurationError):
        gradient_quality(rbm, data, {"cd1": ContrastiveDivergence(1)}, repeats=1)


def test_persistent_estimators_are_measured_after_burn_in():
    """Fresh PCD chains start at data rows, so the first updates are CD-like and biased; after
    the warm-up (parameters held fixed) PCD and PT sample the model and their bias drops to
    the Monte-Carlo level (≈ √(variance/R) ≈ 0.03 here, against ≈ 0.24 for CD-1)."""
    rbm = random_rbm(5, 3, scale=2.0, seed=11)
    data = binary(8, 5, seed=0).repeat(25, 1)
    estimators = {"cd1": ContrastiveDivergence(1), "pcd": make_estimator("pcd", 1, 200),
                  "pt": make_estimator("pt", 1, 200, replicas=4)}
    fresh = gradient_quality(rbm, data, estimators, repeats=2, seed=3, burn_in=0)
    burned = gradient_quality(rbm, data, estimators, repeats=10, seed=3, burn_in=50)
    cd1 = burned["cd1"]["bias_norm"]
    assert fresh["pcd"]["bias_norm"] > 0.5 * cd1
    for name in ("pcd", "pt"):
        assert burned[name]["bias_norm"] < 0.25 * cd1, name
        assert burned[name]["cosine"] > burned["cd1"]["cosine"], name
    assert estimators["pcd"].chains.state is None                # the caller's estimator did not move
    with pytest.raises(ConfigurationError):
        gradient_quality(rbm, data, estimators, burn_in=-1)


class Counting(PersistentContrastiveDivergence):
    """PCD that counts its updates, its copies included (a class attribute is not deep-copied)."""

    calls = 0

    def __init__(self, stateless: bool = False) -> None:
        super().__init__(1, 10)
        self.stateless = stateless

    def step(self, rbm, v_data, generator=None, mask=None):
        Counting.calls += 1
        return super().step(rbm, v_data, generator, mask)

    def state_dict(self):
        return {} if self.stateless else super().state_dict()


@pytest.mark.parametrize("stateless,expected", [(False, 7 + 3), (True, 1 + 3)])
def test_burn_in_updates_run_before_the_measured_ones_unless_stateless(stateless, expected):
    Counting.calls = 0
    gradient_quality(random_rbm(4, 2, seed=0), binary(6, 4), {"x": Counting(stateless)}, repeats=3, burn_in=7)
    assert Counting.calls == expected
