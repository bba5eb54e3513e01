"""The fit loop: reproducibility, learning (exact log-likelihood), divergence guard, config checks."""

from __future__ import annotations

import itertools

import pytest
import torch

from boltzkit import RBM, Trainer, TrainingConfig, exact, fit
from boltzkit.errors import ConfigurationError, DivergenceError
from boltzkit.train import MetricCallback


def bars_and_stripes(n: int = 4) -> torch.Tensor:
    """The 2^(n+1) − 2 distinct n×n images whose rows (or whose columns) are all on or all off."""
    images = set()
    for bits in itertools.product([0.0, 1.0], repeat=n):
        line = torch.tensor(bits)
        images.add(tuple(line.repeat(n, 1).reshape(-1).tolist()))               # stripes
        images.add(tuple(line.unsqueeze(1).repeat(1, n).reshape(-1).tolist()))  # bars
    return torch.tensor(sorted(images))


def random_binary(rows: int = 200, cols: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.bernoulli(torch.full((rows, cols), 0.3), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("method", ["cd", "pcd"])
def test_same_seed_gives_bit_identical_parameters(method):
    data = random_binary()
    config = dict(epochs=3, batch_size=32, lr=0.1, method=method, k=2)
    runs = []
    for _ in range(2):
        rbm = RBM(12, 5, seed=1)
        fit(rbm, data, **config)
        runs.append(rbm.named_tensors())
    for name in runs[0]:
        assert torch.equal(runs[0][name], runs[1][name]), name
    other = RBM(12, 5, seed=1)
    fit(other, data, **{**config, "seed": 1})                   # another training seed differs
    assert not torch.equal(other.weight, runs[0]["weight"])


@pytest.mark.parametrize("method,k", [("pcd", 1), ("cd", 5)])
def test_training_raises_exact_log_likelihood_on_bars_and_stripes(method, k):
    """30 patterns: an independent (bias-only) model scores 16·log ½ ≈ −11.09 nats, the best −log 30 ≈ −3.40."""
    patterns = bars_and_stripes(4)
    rbm = RBM(16, 8, seed=0)
    before = exact.log_likelihood(rbm, patterns)
    config = TrainingConfig(epochs=50, batch_size=20, lr=0.05, momentum=0.9, initial_momentum=0.5,
                            momentum_epochs=5, weight_decay=1e-4, method=method, k=k)
    history = Trainer(rbm, config,
                      callbacks=[MetricCallback("ll", exact.log_likelihood, patterns, every=10)]
                      ).fit(patterns.repeat(20, 1))
    after = exact.log_likelihood(rbm, patterns)
    assert before < -11.0
    assert after > -6.0 and after > before + 5.0
    assert [m["epoch"] for m in history] == list(range(1, 51))
    curve = [m["ll"] for m in history if "ll" in m]
    assert len(curve) == 5 and curve[-1] == pytest.approx(after, abs=1e-4)
    assert history[-1]["lr"] == pytest.approx(0.0)               # linear decay to zero


def test_huge_learning_rate_raises_and_restores_the_last_good_state():
    data = random_binary(300, 16)
    rbm = RBM(16, 8, seed=0)
    trainer = Trainer(rbm, TrainingConfig(epochs=1, batch_size=10, lr=0.05, lr_schedule="constant"))
    trainer.fit(data)
    good = {name: p.detach().clone() for name, p in rbm.named_tensors().items()}
    trainer.config.epochs = 3
    for group in trainer.optimizer.param_groups:
        group["lr"] = 1e6
    with pytest.raises(DivergenceError, match="epoch 2.*last good state .end of epoch 1"):
        trainer.fit(data)
    assert trainer.epoch == 1
    for name, p in rbm.named_tensors().items():
        assert bool(torch.isfinite(p).all()), name
        assert torch.equal(p, good[name]), name


@pytest.mark.parametrize("lr", [1e6, 1e30])
def test_divergence_in_the_first_epoch_restores_the_initial_state(lr):
    """Overflow reaches NaN probabilities inside a batch; that too must be a DivergenceError."""
    data = random_binary(300, 16)
    rbm = RBM(16, 8, seed=0)
    expected = RBM(16, 8, seed=0)
    expected.visible.init_from_data(data.mean(0))                # what fit does before epoch 1
    with pytest.raises(DivergenceError, match="Try a smaller learning rate"):
        fit(rbm, data, epochs=2, batch_size=10, lr=lr)
    for (name, p), q in zip(rbm.named_tensors().items(), expected.parameters()):
        assert torch.equal(p, q), name


def test_weights_above_max_weight_count_as_divergence():
    data = bars_and_stripes(4).repeat(10, 1)                      # structure: the weights must grow
    rbm, expected = RBM(16, 8, seed=0), RBM(16, 8, seed=0)
    expected.visible.init_from_data(data.mean(0))
    start = float(expected.weight.detach().abs().max())
    with pytest.raises(DivergenceError, match="exploded"):
        fit(rbm, data, epochs=5, batch_size=10, lr=0.1, max_weight=2 * start)
    for (name, p), q in zip(rbm.named_tensors().items(), expected.parameters()):
        assert torch.equal(p, q), name


@pytest.mark.parametrize("bad", [
    dict(epochs=0), dict(epochs=2.5), dict(batch_size=0), dict(batch_size=True), dict(k=0),
    dict(lr=0), dict(lr=-1), dict(lr=float("nan")), dict(lr=float("inf")),
    dict(momentum=1.0), dict(momentum=-0.1), dict(initial_momentum=1.5), dict(momentum=float("nan")),
    dict(weight_decay=-1e-4), dict(weight_decay=float("nan")), dict(lr_schedule="cosine"),
    dict(momentum_epochs=-1), dict(n_chains=0), dict(n_chains=-5), dict(max_weight=0),
    dict(max_weight=float("nan")),
])
def test_training_config_rejects_bad_values(bad):
    name = next(iter(bad)).removeprefix("initial_")
    with pytest.raises(ConfigurationError, match=name):
        TrainingConfig(**bad)


def test_training_config_defaults_and_unknown_method():
    config = TrainingConfig()
    assert config.to_dict()["method"] == "pcd" and config.to_dict()["k"] == 1
    with pytest.raises(ConfigurationError, match="unknown method"):
        Trainer(RBM(4, 2), TrainingConfig(method="gibbs"))


def test_fit_validates_the_data():
    from boltzkit.errors import DataError
    with pytest.raises(DataError, match="columns"):
        fit(RBM(12, 5), random_binary(10, 11), epochs=1)
