"""Monitoring quantities against brute-force computations from the model's own formulas."""

from __future__ import annotations

import pytest
import torch

from boltzkit.errors import ConfigurationError
from boltzkit.evaluation.monitors import pseudo_log_likelihood, reconstruction_error
from boltzkit.models.rbm import RBM
from boltzkit.models.units import UNIT_TYPES
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


# -- log-likelihood callbacks -----------------------------------------------------------------
def test_ais_callback_matches_exact_and_leaves_training_alone():
    """A 16×12 model (log Z enumerable) trained 3 epochs, AIS with 1,000 β and 100 chains every
    epoch.  The error of log Ẑ is the Monte-Carlo error of log mean(w), whose standard error
    is ≈ sd(log w)/√M for weights this even (ESS ≈ M; the short schedule's Jensen bias is
    below it here): the estimate must be within 5 of those of the exact value.  The
    callback's own generator leaves the trained parameters bit-for-bit unchanged."""
    from boltzkit import Trainer, TrainingConfig, exact
    from boltzkit.evaluation.monitors import AISLikelihood, ExactLikelihood
    from test_train import bars_and_stripes

    data = bars_and_stripes(4).repeat(4, 1)
    config = TrainingConfig(epochs=3, batch_size=20, lr=0.1)
    plain = random_rbm(16, 12, seed=3)
    Trainer(plain, config).fit(data)
    watched = random_rbm(16, 12, seed=3)
    monitor = AISLikelihood({"ais_log_likelihood": data, "ais_part": data[:10]}, every=1, seed=1)
    history = Trainer(watched, config, callbacks=[monitor, ExactLikelihood(data)]).fit(data)
    for name, p in plain.named_tensors().items():
        assert torch.equal(watched.named_tensors()[name], p), name
    log_w = monitor.last.log_weights
    assert monitor.last.n_betas == 1000 and log_w.numel() == 100 and monitor.last.ess > 90
    tolerance = 5 * float(log_w.std()) / log_w.numel() ** 0.5
    for row in history:
        assert row["ais_log_likelihood_low"] < row["ais_log_likelihood"] < row["ais_log_likelihood_high"]
        assert row["ais_log_likelihood"] == pytest.approx(row["log_likelihood"], abs=tolerance)
    assert history[-1]["log_likelihood"] == pytest.approx(exact.log_likelihood(watched, data), abs=1e-12)
    assert history[-1]["log_likelihood"] > history[0]["log_likelihood"] + 0.5  # it learns: a moving target
    # same log Ẑ for every set: the difference is the exact difference of the mean free energies
    part = history[-1]["ais_part"] - history[-1]["ais_log_likelihood"]
    assert part == pytest.approx(exact.log_likelihood(watched, data[:10]) - exact.log_likelihood(watched, data),
                                 abs=1e-9)


def test_likelihood_callbacks_run_every_n_epochs_and_check_the_model_first():
    from boltzkit import Trainer, TrainingConfig
    from boltzkit.evaluation.monitors import AISLikelihood, ExactLikelihood

    data = binary(40, 6, seed=6).float()
    callbacks = [ExactLikelihood({"ll": data}, every=2), AISLikelihood(data, every=3, n_betas=20, n_chains=5)]
    history = Trainer(RBM(6, 3, seed=0), TrainingConfig(epochs=5, batch_size=20), callbacks=callbacks).fit(data)
    assert [row["epoch"] for row in history if "ll" in row] == [2, 4, 5]          # and the last epoch
    assert [row["epoch"] for row in history if "ais_log_likelihood" in row] == [3, 5]
    relu = RBM(6, 3, hidden="relu")
    with pytest.raises(ConfigurationError, match="discrete hidden"):
        Trainer(relu, TrainingConfig(epochs=1), callbacks=[AISLikelihood(data)]).fit(data)
    with pytest.raises(ConfigurationError):
        AISLikelihood(data, every=0)
    with pytest.raises(ConfigurationError):
        AISLikelihood(data, n_betas=1)
