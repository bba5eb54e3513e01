"""Deep models in nats against exact enumeration: DBM AIS and reverse AIS brackets, the
variational bounds of DBMs and DBNs, the evaluate entry point."""

from __future__ import annotations

import itertools

import pytest
import torch

from boltzkit import exact
from boltzkit.errors import ConfigurationError
from boltzkit.evaluation import deep
from boltzkit.models.dbn import DBN, log_conditional
from boltzkit.models.deep_boltzmann import DBM

KEYS = {"log_likelihood", "log_partition", "log_partition_interval", "method"}


def random_model(cls, *args, scale: float = 1.0, seed: int = 0, **kwargs):
    model = cls(*args, seed=seed, dtype=torch.float64, **kwargs)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * scale)
    return model


def samples_of(dbm: DBM, n: int, seed: int = 0) -> torch.Tensor:
    """Visible rows drawn from the model itself (long chains), the data AIS's base is fitted to."""
    g = torch.Generator().manual_seed(seed)
    state = dbm.init_chains(torch.zeros(1, dbm.n_visible, dtype=torch.float64), n, g)
    return dbm.advance(state, 200, g).visible


# -- DBM log Z ------------------------------------------------------------------------------------
@pytest.mark.parametrize("hidden", [[6, 4], [5, 4, 3]])
def test_dbm_ais_brackets_the_exact_log_partition(hidden):
    dbm = random_model(DBM, 12, hidden, scale=0.6, seed=len(hidden))
    truth = float(deep.dbm_log_partition(dbm).detach())
    data = samples_of(dbm, 500)
    forward = deep.dbm_ais(dbm, data, n_chains=200, betas=2000, seed=0)
    # the interval is log(mean w ± 3 s.e.); a 3-σ interval holds the truth unless the weights are
    # badly skewed, which the ESS would show
    assert forward.log_z_low <= truth <= forward.log_z_high, (forward, truth)
    assert abs(forward.log_z - truth) < 0.1
    reverse = deep.dbm_reverse_ais(dbm, data, n_chains=200, betas=2000, seed=1)
    # reverse AIS from (approximate) model samples: the other side, the same truth within its interval
    assert reverse.log_z_low - 0.05 <= truth <= reverse.log_z_high + 0.05, (reverse, truth)


def test_dbm_ais_is_a_wrong_answer_for_a_different_model():
    """The check can fail: AIS of a model whose couplings were changed misses the truth."""
    dbm = random_model(DBM, 12, [6, 4], scale=0.6, seed=2)
    truth = float(deep.dbm_log_partition(dbm).detach())
    with torch.no_grad():
        dbm.weights[1].mul_(1.5)
    estimate = deep.dbm_ais(dbm, samples_of(dbm, 200), n_chains=200, betas=2000, seed=0)
    assert not estimate.log_z_low <= truth <= estimate.log_z_high


def test_dbm_evaluate_exact_and_ais():
    dbm = random_model(DBM, 10, [5, 4], scale=0.6, seed=4, mean_field_steps=30)
    data = samples_of(dbm, 300, seed=3)
    exact_result = deep.evaluate(dbm, data, "exact")
    assert KEYS - {"log_partition_interval"} <= set(exact_result) and exact_result["method"] == "exact"
    per_case = deep.dbm_exact_log_likelihood(dbm, data)
    assert exact_result["log_likelihood"] == pytest.approx(float(per_case.mean()), abs=1e-10)
    assert exact_result["variational_bound"] <= exact_result["log_likelihood"]
    ais_result = deep.evaluate(dbm, data, "ais", chains=200, betas=2000, seed=0)
    assert KEYS <= set(ais_result) and ais_result["method"] == "ais"
    low, high = ais_result["log_partition_interval"]
    assert low <= exact_result["log_partition"] <= high
    # the AIS path reports the variational bound (with the AIS log Z), as the DBM paper does
    assert ais_result["log_likelihood"] == pytest.approx(exact_result["variational_bound"], abs=0.1)
    assert deep.evaluate(dbm, data)["method"] == "exact"          # auto: small enough to enumerate
    with pytest.raises(ConfigurationError, match="too large"):
        deep.evaluate(DBM(30, [30, 30]), torch.zeros(2, 30), "exact")
    with pytest.raises(ConfigurationError):
        deep.evaluate(dbm, data, "bridge")


# -- DBN ---------------------------------------------------------------------------------------------
def test_dbn_exact_log_likelihood_against_brute_force():
    dbn = random_model(DBN, [4, 3, 2], scale=1.0, seed=1)
    v = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4)), dtype=torch.float64)
    h1 = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)), dtype=torch.float64)
    bottom, top = dbn.rbms
    log_top = -top.free_energy(h1) - exact.log_partition(top)                     # log p(h¹)
    log_p = torch.stack([torch.logsumexp(log_conditional(bottom.visible, row.expand(8, -1),
                                                         bottom.visible_field(h1)) + log_top, 0) for row in v])
    torch.testing.assert_close(deep.dbn_exact_log_likelihood(dbn, v), log_p, atol=1e-10, rtol=0)
    assert float(torch.logsumexp(log_p, 0).detach()) == pytest.approx(0.0, abs=1e-10)


@torch.no_grad()
def test_dbn_bound_estimate_is_unbiased_for_the_exact_bound_and_below_the_truth():
    dbn = random_model(DBN, [5, 3, 3], scale=1.0, seed=2)
    data = (torch.rand(30, 5, generator=torch.Generator().manual_seed(0)) < 0.5).double()
    bottom, top = dbn.rbms
    log_z = exact.log_partition(top)
    # the bound by enumerating Q(h¹ | v) exactly (3 units: 8 states)
    h1 = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)), dtype=torch.float64)
    exact_bound = []
    for row in data:
        v = row.expand(8, -1)
        log_q = log_conditional(bottom.hidden, h1, bottom.hidden_field(v))
        terms = log_conditional(bottom.visible, v, bottom.visible_field(h1)) - log_q - top.free_energy(h1) - log_z
        exact_bound.append(float((log_q.exp() * terms).sum()))
    exact_bound = torch.tensor(exact_bound)
    truth = deep.dbn_exact_log_likelihood(dbn, data)
    assert bool((exact_bound <= truth + 1e-10).all())                               # Jensen, per case
    estimate, se = deep.dbn_log_likelihood(dbn, data, log_z, samples=2000, seed=0)
    # Monte Carlo over Q: within 5 of its own standard errors of the exact bound
    assert abs(estimate.mean - float(exact_bound.mean())) <= 5 * se
    assert se < 0.05


def test_dbn_top_ais_and_evaluate():
    dbn = random_model(DBN, [8, 6, 5], scale=0.5, seed=3)
    data = dbn.sample(400, steps=100, generator=torch.Generator().manual_seed(0), mean=False)
    truth = exact.log_partition(dbn.top)
    forward = deep.dbn_top_ais(dbn, data, n_chains=200, betas=2000, seed=0)
    assert forward.log_z_low <= truth <= forward.log_z_high
    result = deep.evaluate(dbn, data, "ais", chains=200, betas=2000, seed=0, samples=20)
    exact_result = deep.evaluate(dbn, data, "exact", samples=20)
    assert KEYS <= set(result) and result["method"] == "ais"
    assert result["log_likelihood"] == pytest.approx(exact_result["variational_bound"], abs=0.1)
    assert exact_result["variational_bound"] <= exact_result["log_likelihood"]
    reverse = deep.evaluate(dbn, data, "raise", chains=200, betas=2000, seed=0)
    low, high = reverse["log_partition_interval"]
    assert low - 0.05 <= truth <= high + 0.05
