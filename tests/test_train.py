"""The fit loop: reproducibility, learning (exact log-likelihood), divergence guard, config checks."""

from __future__ import annotations

import itertools

import pytest
import torch

from boltzkit import RBM, Trainer, TrainingConfig, exact, fit
from boltzkit.errors import ConfigurationError, DivergenceError
from boltzkit.training import Callback, EarlyStopping, MetricCallback
from boltzkit.training.gradient import make_estimator


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
        fit(rbm, data, epochs=5, batch_size=10, lr=0.1, max_weight=1.3 * start)  # epoch 1 reaches ≈ 1.6×
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


# -- resume, snapshots, divergence ------------------------------------------------------------
class StopAt(Callback):
    """Interrupts a run after ``epoch`` epochs (as a killed process would, between epochs)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer, epoch, metrics):
        trainer.stop = trainer.stop or epoch == self.epoch


@pytest.mark.parametrize("options", [
    dict(method="pcd"), dict(method="pcd", centered=True), dict(method="fpcd"),
    dict(method="pt", replicas=3), dict(method="cd", sparsity_target=0.1, centered=True),
], ids=["pcd", "pcd-centered", "fpcd", "pt", "cd-centered-sparse"])
def test_resume_equals_uninterrupted_run_bit_for_bit(tmp_path, options):
    """Through a checkpoint on disk, with the linear learning-rate decay of the whole run."""
    from boltzkit import checkpoint as io
    data = random_binary(60, 12)
    config = TrainingConfig(epochs=4, batch_size=20, lr=0.1, momentum_epochs=1, **options)
    whole = RBM(12, 5, seed=2)
    Trainer(whole, config).fit(data)

    first = Trainer(RBM(12, 5, seed=2), config, callbacks=[StopAt(2)])
    first.fit(data)
    assert first.epoch == 2
    tensors, state = first.training_state()
    if options.get("centered"):
        assert {"estimator.centering_visible", "estimator.centering_hidden"} <= set(tensors)
    if options["method"] == "fpcd":
        assert "estimator.fast_weight" in tensors
    io.save(tmp_path, first.rbm, extra={"training_state": state}, state=tensors)

    rbm, saved, saved_tensors = io.load_checkpoint(tmp_path, training_state=True)
    second = Trainer(rbm, config)
    second.load_training_state(saved_tensors, saved["training_state"])
    second.fit(data)
    assert second.epoch == 4 and [m["epoch"] for m in second.history] == [1, 2, 3, 4]
    for name, p in whole.named_tensors().items():
        assert torch.equal(rbm.named_tensors()[name], p), name


def test_divergence_restores_momentum_buffers_and_chains_of_the_last_good_state():
    data = random_binary(300, 16)
    trainer = Trainer(RBM(16, 8, seed=0), TrainingConfig(epochs=1, batch_size=10, lr=0.05, method="fpcd",
                                                         centered=True, lr_schedule="constant"))
    trainer.fit(data)
    momentum = {i: s["momentum_buffer"].clone() for i, s in trainer.optimizer.state_dict()["state"].items()}
    chains = {k: v.clone() for k, v in trainer.estimator.state_dict().items()}
    assert len(momentum) == 3 and {"chains", "fast_weight", "centering_visible"} <= set(chains)
    trainer.config.epochs = 3
    for group in trainer.optimizer.param_groups:
        group["lr"] = 1e6
    with pytest.raises(DivergenceError, match="momentum buffers and chains were restored"):
        trainer.fit(data)
    state = trainer.optimizer.state_dict()["state"]
    for i, buffer in momentum.items():
        assert torch.equal(state[i]["momentum_buffer"], buffer), i
    restored = trainer.estimator.state_dict()
    assert restored.keys() == chains.keys()
    for name, value in chains.items():
        assert torch.equal(restored[name], value), name
    assert trainer.optimizer.param_groups[0]["lr"] == 1e6       # hyper-parameters are left alone


# -- early stopping ---------------------------------------------------------------------------
class Scripted(Callback):
    """Records a scripted metric value per epoch and the parameters it was measured on."""

    def __init__(self, values: list[float | None]) -> None:
        self.values, self.weights = values, {}

    def on_epoch_end(self, trainer, epoch, metrics):
        self.weights[epoch] = trainer.rbm.weight.detach().clone()
        if self.values[epoch - 1] is not None:
            metrics["score"] = self.values[epoch - 1]


@pytest.mark.parametrize("mode,values,min_delta,stop,best", [
    ("max", [1.0, 2.0, 1.5, 2.05, 9.0], 0.1, 4, 2),              # 2.05 is not 0.1 better than 2.0
    ("max", [1.0, None, 2.0, None, 1.0, None, 1.0, 9.0], 0.0, 7, 3),  # patience counts evaluations
    ("min", [3.0, 2.0, 1.0, 1.5, 0.5, 0.7, 0.6, 2.0], 0.0, 7, 5),
])
def test_early_stopping_stops_after_patience_and_restores_the_best_parameters(mode, values, min_delta,
                                                                              stop, best):
    data = random_binary(40, 12)
    scripted = Scripted(values)
    early = EarlyStopping("score", patience=2, min_delta=min_delta, mode=mode, verbose=False)
    trainer = Trainer(RBM(12, 5, seed=0), TrainingConfig(epochs=len(values), batch_size=20),
                      callbacks=[scripted, early])
    history = trainer.fit(data)
    assert trainer.stop and early.stopped_epoch == stop and len(history) == stop == trainer.epoch
    assert early.best_epoch == best and early.best == values[best - 1]
    assert torch.equal(trainer.rbm.weight, scripted.weights[best])
    assert not torch.equal(scripted.weights[stop], scripted.weights[best])
    assert f"restored the parameters (with momentum buffers and chains) of epoch {best}" in early.message


def test_early_stopping_lets_an_improving_run_finish_and_checks_its_arguments():
    data = random_binary(40, 12)
    early = EarlyStopping("score", patience=1, verbose=False)
    trainer = Trainer(RBM(12, 5, seed=0), TrainingConfig(epochs=3, batch_size=20),
                      callbacks=[Scripted([1.0, 2.0, 3.0]), early])
    trainer.fit(data)
    assert trainer.epoch == 3 and not trainer.stop and early.message is None and early.best_epoch == 3
    for bad in (dict(patience=0), dict(min_delta=-1.0), dict(mode="up")):
        with pytest.raises(ConfigurationError):
            EarlyStopping("score", **bad)


# -- sparsity target --------------------------------------------------------------------------
def test_sparsity_penalty_adds_the_hand_computed_gradient():
    """Two CD-1 updates with and without the penalty, same random numbers: the difference is
    cost·(q − p) on ∇c and cost·mean(v)(q − p)ᵀ on ∇W, with q₁ = m₁, q₂ = λ q₁ + (1−λ) m₂."""
    from conftest import random_rbm
    rbm = random_rbm(6, 4, seed=5)
    batches = [random_binary(9, 6, seed=1).double(), random_binary(9, 6, seed=2).double()]
    target, cost, decay = 0.05, 0.3, 0.9
    plain = make_estimator("cd", 1)
    sparse = make_estimator("cd", 1, sparsity_target=target, sparsity_cost=cost, sparsity_decay=decay)
    g_plain, g_sparse = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    q = None
    for v in batches:
        m = torch.sigmoid(rbm.hidden_bias.detach() + v @ rbm.weight.detach()).mean(0)
        q = m if q is None else decay * q + (1 - decay) * m
        plain.step(rbm, v, g_plain)
        before = [p.grad.clone() for p in (rbm.weight, rbm.visible_bias, rbm.hidden_bias)]
        sparse.step(rbm, v, g_sparse)
        torch.testing.assert_close(sparse.sparsity.estimate, q, rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(rbm.hidden_bias.grad - before[2], cost * (q - target), rtol=1e-10, atol=1e-14)
        torch.testing.assert_close(rbm.weight.grad - before[0], cost * torch.outer(v.mean(0), q - target),
                                   rtol=1e-10, atol=1e-14)
        assert torch.equal(rbm.visible_bias.grad, before[1])
    with pytest.raises(ConfigurationError, match="sparsity"):
        TrainingConfig(sparsity_target=0.0)
    with pytest.raises(ConfigurationError, match="sparsity"):
        TrainingConfig(sparsity_target=0.1, sparsity_decay=1.0)


def test_sparsity_target_drives_the_mean_hidden_activity_to_the_target():
    """Bars and stripes, 10 hidden units: without the penalty the mean of E[h|v] stays near 0.4.
    With p = 0.05 the hidden biases move until cost·(q − p) balances the likelihood gradient
    on c (|mean_data E[h|v] − mean_model E[h]|, ≲ 0.01 per unit here); with cost 1 the
    remaining gap plus the decaying oscillation from q's lag (1/(1−λ) = 10 updates) is a few
    thousandths after 120 updates, so ±0.01 (a fifth of the target) is the tolerance."""
    data = bars_and_stripes(4).repeat(4, 1)
    common = dict(epochs=20, batch_size=20, lr=0.1, lr_schedule="constant")
    dense, sparse = RBM(16, 10, seed=0), RBM(16, 10, seed=0)
    fit(dense, data, **common)
    fit(sparse, data, sparsity_target=0.05, sparsity_cost=1.0, sparsity_decay=0.9, **common)
    assert float(dense.transform(data).mean()) > 0.3
    activity = sparse.transform(data).mean(0)
    assert float(activity.mean()) == pytest.approx(0.05, abs=0.01)
    assert float((activity - 0.05).abs().max()) < 0.015
