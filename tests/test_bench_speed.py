"""The speed benchmark's yardsticks do the work they stand for, and its rounds are paired right.

``benchmarks/eager_loop.py`` is the floor quoted in BENCHMARKS §2 ("the shortest eager-PyTorch
loop of the same update"): it must compute boltzkit's CD-k / PCD-k gradient exactly, from the
same random draws, or the floor would measure different work.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from boltzkit.models.rbm import RBM
from boltzkit.sampling import ChainState
from boltzkit.training.gradient import make_estimator

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from bench_speed import main, summarise_rounds  # noqa: E402
from eager_loop import EagerLoop  # noqa: E402


@pytest.mark.parametrize(("method", "k"), [("cd", 1), ("cd", 3), ("pcd", 1), ("pcd", 2)])
def test_eager_loop_writes_boltzkit_gradient(method: str, k: int) -> None:
    g = torch.Generator().manual_seed(0)
    data = torch.bernoulli(torch.full((400, 30), 0.3), generator=g)
    loop = EagerLoop(data, 20, batch=200, k=k, persistent=method == "pcd", seed=1)
    rbm = RBM(30, 20, seed=2)
    with torch.no_grad():
        loop.weight.normal_(0.0, 0.5, generator=g)  # fields of order 1: every draw matters
        rbm.weight.copy_(loop.weight)
        rbm.visible_bias.normal_(generator=g)
        rbm.hidden_bias.normal_(generator=g)
        loop.visible_bias.copy_(rbm.visible_bias)
        loop.hidden_bias.copy_(rbm.hidden_bias)
    estimator = make_estimator(method, k=k)
    if method == "pcd":
        estimator.chains.chains = ChainState(loop.chains.clone())
    x = data[:200]
    state = loop.generator.get_state()
    estimator.step(rbm, x, torch.Generator().set_state(state))
    loop.optimizer.step = lambda: None  # keep the gradient, skip the parameter update
    loop.update(x)
    for ours, theirs in ((rbm.weight, loop.weight), (rbm.visible_bias, loop.visible_bias),
                         (rbm.hidden_bias, loop.hidden_bias)):
        assert ours.grad is not None and theirs.grad is not None
        torch.testing.assert_close(theirs.grad, ours.grad, rtol=1e-6, atol=1e-7)
    if method == "pcd":
        assert estimator.chains.state is not None
        assert torch.equal(loop.chains, estimator.chains.state)


def test_summary_pairs_rounds() -> None:
    rounds = [{"boltzkit_s": 2.0, "roofline_s": 1.0, "eager_loop_s": 1.6},
              {"boltzkit_s": 4.0, "roofline_s": 3.0, "eager_loop_s": 3.0},
              {"boltzkit_s": 1.5, "roofline_s": 1.2, "eager_loop_s": 1.5}]
    s = summarise_rounds(rounds, n=300)
    assert s["ratio_roofline_over_boltzkit"] == pytest.approx(0.75)      # median of 0.5, 0.75, 0.8
    assert s["ratio_fastest_roofline_over_fastest_boltzkit"] == pytest.approx(1.0 / 1.5)
    assert s["ratio_eager_loop_over_boltzkit"] == pytest.approx(0.8)     # median of 0.8, 0.75, 1.0
    assert s["boltzkit_epoch_s"] == 1.5 and s["samples_per_s"] == pytest.approx(200.0)


@pytest.mark.parametrize("method", ["cd", "pt"])
def test_bench_speed_tiny(method: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--n", "200", "--hidden", "8", "--batch-size", "50", "--rounds", "2", "--repeats", "1",
                 "--method", method, "--replicas", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["rounds"]) == 2 and result["method"] == f"{method}-1"
    assert ("eager_loop_s" in result["rounds"][0]) == (method != "pt")
    assert all(r["boltzkit_s"] > 0 and r["roofline_s"] > 0 for r in result["rounds"])


def test_ab_draws_tiny(capsys: pytest.CaptureFixture[str]) -> None:
    """benchmarks/ab_draws.py runs, restores the units' draw, and reports both draws."""
    import boltzkit.models.units as units
    from ab_draws import main as ab_main

    before = units.Bernoulli.sample
    assert ab_main(["--rounds", "1", "--betas", "10", "--n", "200", "--hidden", "8"]) == 0
    assert units.Bernoulli.sample is before
    result = json.loads(capsys.readouterr().out)
    assert set(result["fastest"]) >= {"ais_ms_per_beta_table", "ais_ms_per_beta_sigmoid", "cd_epoch_s_table",
                                      "cd_epoch_s_sigmoid"}
