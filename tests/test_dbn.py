"""Deep belief networks: greedy training through the trainer, features, generation against the
exact distribution, fine-tuning by back-propagation, checkpoints, the command line."""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import pytest
import torch

from boltzkit import checkpoint
from boltzkit.cli import core, main
from boltzkit.cli import deep as cli_deep
from boltzkit.errors import BoltzkitError, ConfigurationError, DataError
from boltzkit.evaluation import deep
from boltzkit.models.dbn import DBN, DBNNet
from boltzkit.models.deep_boltzmann import DBM
from boltzkit.models.rbm import RBM
from boltzkit.training import Trainer, TrainingConfig


def binary(n: int, d: int, seed: int = 0, p: float = 0.3) -> torch.Tensor:
    return (torch.rand(n, d, generator=torch.Generator().manual_seed(seed)) < p).float()


def random_dbn(sizes: list[int], scale: float = 1.0, seed: int = 0) -> DBN:
    dbn = DBN(sizes, seed=seed, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in dbn.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * scale)
    return dbn


# -- greedy training ----------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["mean", "sample"])
def test_each_layer_is_the_trainer_run_on_the_layer_below(how):
    data = binary(120, 10, seed=1)
    config = TrainingConfig(epochs=3, batch_size=20, seed=5)
    dbn = DBN([10, 6, 4], seed=0)
    histories = dbn.fit(data, config, propagate=how)
    assert [len(h) for h in histories] == [3, 3]
    # the same two RBMs trained by hand, the second on the first one's hidden means / draws
    first, second = RBM(10, 6, seed=0), RBM(6, 4, seed=1)
    Trainer(first, config).fit(data)
    gen = torch.Generator().manual_seed(config.seed + 7919)
    features = first.hidden_mean(data).detach() if how == "mean" else first.sample_hidden(data, gen)
    if how == "mean":
        from boltzkit.models.dbn import FeatureBatches
        features = FeatureBatches(features)
    Trainer(second, dataclasses.replace(config, seed=config.seed + 1)).fit(features)
    assert torch.equal(dbn.rbms[0].weight, first.weight)
    assert torch.equal(dbn.rbms[1].weight, second.weight)


def test_any_unit_types_stack():
    x = torch.randn(80, 5, generator=torch.Generator().manual_seed(0))
    dbn = DBN([5, 8, 4], units=["gaussian", "bernoulli", "relu"], seed=0)
    dbn.fit(x, TrainingConfig(epochs=2, batch_size=20, lr=0.01))
    features = dbn.transform(x)
    assert features.shape == (80, 4) and bool((features >= 0).all())
    with pytest.raises(ConfigurationError, match="top layer"):
        DBN([5, 4, 3], units=["bernoulli", "relu", "bernoulli"])


def test_transform_composes_the_hidden_means():
    dbn = random_dbn([6, 5, 4, 3], scale=0.5)
    x = binary(7, 6).double()
    manual = x
    for layer, rbm in enumerate(dbn.rbms, start=1):
        manual = rbm.hidden_mean(manual)
        torch.testing.assert_close(dbn.transform(x, layer), manual)
    with pytest.raises(ConfigurationError):
        dbn.transform(x, layer=4)


# -- generation -----------------------------------------------------------------------------------
def test_samples_follow_the_exact_dbn_distribution():
    """Gibbs in the top RBM then the downward pass draws from p(v) = Σ_h p(v|h¹) p(h¹): the
    frequency of each of the 8 visible states within 5 binomial standard errors of the exact p(v)."""
    dbn = random_dbn([3, 3, 2], scale=1.2, seed=3)
    n = 20000
    v = dbn.sample(n, steps=50, generator=torch.Generator().manual_seed(0), mean=False)
    codes = (v @ torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)).long()
    freq = torch.bincount(codes, minlength=8).double() / n
    states = torch.tensor([[(i >> k) & 1 for k in range(3)] for i in range(8)], dtype=torch.float64)
    p = deep.dbn_exact_log_likelihood(dbn, states).exp()
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-10)
    se = (p * (1 - p) / n).sqrt()
    assert bool(((freq - p).abs() <= 5 * se + 1e-3).all()), (freq, p)


def test_mean_samples_are_probabilities():
    dbn = random_dbn([6, 4, 3], seed=1)
    v = dbn.sample(5, steps=3, generator=torch.Generator().manual_seed(1))
    assert v.shape == (5, 6) and bool(((v > 0) & (v < 1)).all())


# -- fine-tuning ----------------------------------------------------------------------------------
def test_network_is_the_stack_with_a_head():
    dbn = random_dbn([6, 5, 4], scale=0.5)
    net = dbn.network(3)
    x = binary(9, 6).double()
    manual = net.head(dbn.rbms[1].hidden_mean(dbn.rbms[0].hidden_mean(x)))
    torch.testing.assert_close(net(x), manual)


def test_fine_tuning_back_propagates_into_the_stack_and_learns():
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(300, 12, generator=g) < 0.5).float()
    y = (x[:, :6].sum(1) > x[:, 6:].sum(1)).long()       # a label the raw features determine
    dbn = DBN([12, 16, 8], seed=0)
    dbn.fit(x, TrainingConfig(epochs=3, batch_size=30))
    before = dbn.rbms[0].weight.detach().clone()
    net = dbn.network(2)
    history = net.fit(x, y, TrainingConfig(epochs=30, batch_size=30, lr=0.5, momentum=0.9, weight_decay=0.0))
    assert len(history) == 30
    error = float((net.predict(x) != y).float().mean())
    assert error < 0.1
    assert not torch.equal(dbn.rbms[0].weight, before)     # the gradient reached the bottom layer
    # the step is the autograd gradient of the cross-entropy
    net.zero_grad()
    batch = torch.nn.functional.cross_entropy(net(x[:30]), y[:30])
    batch.backward()
    reference = net.dbn.rbms[0].weight.grad.clone()
    from boltzkit.training import LossStep
    LossStep().step(net, x[:30], context=y[:30].float())
    torch.testing.assert_close(net.dbn.rbms[0].weight.grad, reference)


def test_regression_head():
    x = binary(100, 6, seed=2)
    target = x[:, :2].sum(1, keepdim=True)
    net = DBN([6, 8]).network(1, task="regression")
    net.fit(x, target, TrainingConfig(epochs=50, batch_size=20, lr=0.2, momentum=0.9, weight_decay=0.0))
    assert float(((net.predict(x) - target) ** 2).mean()) < 0.1


def test_bad_labels_are_refused():
    net = DBN([6, 4]).network(3)
    with pytest.raises(DataError, match="integers 0..2"):
        net.fit(binary(10, 6), torch.full((10,), 3.0))
    with pytest.raises(DataError, match="rows"):
        net.fit(binary(10, 6), torch.zeros(9))


# -- checkpoints ------------------------------------------------------------------------------------
def test_checkpoints_return_dbn_and_fine_tuned_network(tmp_path):
    dbn = random_dbn([6, 5, 4], seed=2)
    checkpoint.save(tmp_path / "dbn", dbn)
    loaded = checkpoint.load(tmp_path / "dbn")
    assert type(loaded) is DBN and loaded.config() == dbn.config()
    assert all(torch.equal(a, b) for a, b in zip(dbn.parameters(), loaded.parameters()))
    net = dbn.network(3, seed=1)
    checkpoint.save(tmp_path / "net", net)
    again = checkpoint.load(tmp_path / "net")
    x = binary(4, 6).double()
    assert type(again) is DBNNet and torch.equal(again(x), net(x))


# -- the command line (the functions the core CLI calls) -----------------------------------------------
def parse(argv: list[str]) -> argparse.Namespace:
    """The core ``train``/``sample``/``evaluate`` parser, plus the deep options if the core does
    not yet add them."""
    parser = core.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    train = sub.choices["train"]
    if not any("--labels" in a.option_strings for a in train._actions):
        cli_deep.add_train_arguments(train)
    if not any("--model" in a.option_strings for a in train._actions):
        train.add_argument("--model", default="rbm")
    return parser.parse_args(argv)


def test_parse_layer_sizes():
    assert cli_deep.parse_layer_sizes(["500,1000"]) == ([500, 1000], "bernoulli")
    assert cli_deep.parse_layer_sizes(["20", "10", "relu"]) == ([20, 10], "relu")
    for bad in (["0,5"], ["5,,4"], ["tanh"], None):
        with pytest.raises(ConfigurationError):
            cli_deep.parse_layer_sizes(bad)


def test_train_sample_evaluate_a_fine_tuned_dbn(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = (rng.random((200, 16)) < 0.3).astype(np.float32)
    y = (x[:, :8].sum(1) > x[:, 8:].sum(1)).astype(np.int64)
    np.save(tmp_path / "x.npy", x)
    np.savetxt(tmp_path / "y.txt", y, fmt="%d")
    out = tmp_path / "run"
    args = parse(["train", "--model", "dbn", "--hidden", "12,6", "--data", str(tmp_path / "x.npy"), "--labels",
                  str(tmp_path / "y.txt"), "--epochs", "5", "--batch-size", "20", "--finetune-epochs", "25",
                  "--finetune-lr", "0.5", "--out", str(out), "--quiet"])
    assert cli_deep.train_deep(args) == 0
    model, config, _ = checkpoint.load_checkpoint(out)
    assert isinstance(model, DBNNet) and model.dbn.sizes == [16, 12, 6] and config["train_error"] < 0.3
    assert {"metrics.csv", "samples.png", "filters.png"} <= {p.name for p in out.iterdir()}
    sample_args = parse(["sample", str(out), "-n", "4", "--steps", "5", "--npy", str(tmp_path / "s.npy")])
    assert cli_deep.sample_deep(model, config, sample_args) == 0
    assert np.load(tmp_path / "s.npy").shape == (4, 16)
    result = cli_deep.evaluate_deep(model, torch.from_numpy(x[:50]), "ais", chains=20, betas=200, seed=0)
    assert {"log_likelihood", "log_partition", "log_partition_interval", "method"} <= set(result)
    assert result["method"] == "ais" and np.isfinite(result["log_likelihood"])


def test_labels_from_a_1d_npy_array(tmp_path):
    """np.save(path, y) of integer labels is the natural label file; 2-D or fractional arrays are refused."""
    y = np.array([0, 2, 1, 1, 0], np.int64)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "col.npy", y[:, None].astype(np.float32))
    np.save(tmp_path / "two.npy", np.zeros((5, 2)))
    np.save(tmp_path / "half.npy", np.full(5, 0.5))
    assert np.array_equal(cli_deep.load_labels(str(tmp_path / "y.npy"), 5), y)
    assert np.array_equal(cli_deep.load_labels(str(tmp_path / "col.npy"), 5), y)
    with pytest.raises(DataError, match=r"shape \(5, 2\)"):
        cli_deep.load_labels(str(tmp_path / "two.npy"), 5)
    with pytest.raises(DataError, match="non-negative integers"):
        cli_deep.load_labels(str(tmp_path / "half.npy"), 5)
    with pytest.raises(DataError, match="5 labels for 4 data rows"):
        cli_deep.load_labels(str(tmp_path / "y.npy"), 4)


def test_train_deep_refuses_bad_input_before_writing(tmp_path):
    out = tmp_path / "never"
    np.save(tmp_path / "x.npy", np.zeros((10, 4), np.float32))
    np.savetxt(tmp_path / "y.txt", np.zeros(9), fmt="%d")
    cases = [["--model", "dbm", "--hidden", "5"],                          # one layer
             ["--model", "dbm", "--hidden", "5,4", "--labels", str(tmp_path / "y.txt")],
             ["--model", "dbn", "--hidden", "5,4", "--labels", str(tmp_path / "y.txt")],  # 9 labels, 10 rows
             ["--model", "dbn", "--hidden", "5,x"],
             ["--model", "dbn", "--hidden", "5,4", "--labels", str(tmp_path / "missing.txt")]]
    for extra in cases:
        args = parse(["train", "--data", str(tmp_path / "x.npy"), "--epochs", "1", "--out", str(out), "--quiet",
                      *extra])
        with pytest.raises(BoltzkitError):
            cli_deep.train_deep(args)
        assert not out.exists() or not any(out.iterdir()), extra


def test_train_and_resume_a_dbm(tmp_path):
    rng = np.random.default_rng(1)
    np.save(tmp_path / "x.npy", (rng.random((100, 10)) < 0.3).astype(np.float32))
    common = ["--model", "dbm", "--hidden", "6,4", "--data", str(tmp_path / "x.npy"), "--quiet",
              "--pretrain-epochs", "1", "--batch-size", "20", "--lr-schedule", "constant", "--centered"]
    full, half = tmp_path / "full", tmp_path / "half"
    assert cli_deep.train_deep(parse(["train", *common, "--epochs", "3", "--out", str(full)])) == 0
    model = checkpoint.load(full)
    assert isinstance(model, DBM) and model.sizes == [10, 6, 4]
    # two epochs, then --resume to three: the same parameters bit for bit (constant schedule, so the
    # planned length does not change the learning rates)
    assert cli_deep.train_deep(parse(["train", *common, "--epochs", "2", "--out", str(half)])) == 0
    resumed_args = parse(["train", "--model", "dbm", "--data", str(tmp_path / "x.npy"),  # sizes from the run
                          "--quiet", "--resume", str(half), "--epochs", "3", "--out", str(half)])
    assert cli_deep.train_deep(resumed_args) == 0
    resumed = checkpoint.load(half)
    for name, t in model.checkpoint_tensors().items():
        assert torch.equal(t, resumed.checkpoint_tensors()[name]), name
    result = cli_deep.evaluate_deep(model, torch.from_numpy(np.load(tmp_path / "x.npy")), "exact")
    assert result["method"] == "exact" and result["variational_bound"] <= result["log_likelihood"] + 1e-9


@pytest.mark.parametrize("flags, named", [(["--lr", "0.3"], "--lr 0.3 (the run has 0.05)"),
                                          (["--mean-field-steps", "3"], "--mean-field-steps 3 (the run has 10)"),
                                          (["--dtype", "float64"], "--dtype float64 (the run has float32)"),
                                          (["--hidden", "6,5"], "--hidden 6,5 (the run has 6,4)"),
                                          (["--seed", "0"], "--seed 0 (the run has 3)"),  # a typed zero counts
                                          (["--lr", "0.05", "--seed", "3"], None)])  # the run's own values
def test_dbm_resume_refuses_flags_that_contradict_the_run(tmp_path, capsys, flags, named):
    """Given with --resume, a setting the saved run does not have is an error, not silently dropped."""
    rng = np.random.default_rng(1)
    np.save(tmp_path / "x.npy", (rng.random((40, 10)) < 0.3).astype(np.float32))
    data = ["--model", "dbm", "--data", str(tmp_path / "x.npy"), "--quiet", "--batch-size", "20"]
    assert main(["train", *data, "--hidden", "6,4", "--pretrain-epochs", "1", "--epochs", "1", "--seed", "3",
                 "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    hidden = [] if "--hidden" in flags else ["--hidden", "6,4"]
    out = tmp_path / "again"
    status = main(["train", *data, *hidden, "--resume", str(tmp_path / "run"), "--epochs", "2", *flags,
                   "--out", str(out)])
    if named is None:
        assert status == 0
        return
    assert status == 2
    err = capsys.readouterr().err
    assert named in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
