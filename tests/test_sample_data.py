"""Dynamic binarisation: ``TrainingConfig(sample_data=True)`` trains on fresh Bernoulli draws of
grey-level rows (``boltzkit.training.batches.redraw``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from boltzkit import RBM, Trainer, TrainingConfig, cli
from boltzkit.errors import ConfigurationError, DataError
from boltzkit.models.dbn import DBN
from boltzkit.models.deep_boltzmann import DBM
from boltzkit.training.batches import Batch, BatchSource, redraw


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_redraw_is_scale_times_a_bernoulli_draw_of_the_probabilities(scale):
    p = torch.tensor([0.0, 0.03, 0.25, 0.5, 0.9, 1.0])
    n = 40_000
    draws = redraw((scale * p).expand(n, -1).contiguous(), scale, torch.Generator().manual_seed(0))
    assert set(draws.unique().tolist()) <= {0.0, scale}  # N tied copies of one binary draw
    freq = draws.mean(0) / scale
    se = (p * (1 - p) / n).sqrt()
    assert torch.all((freq - p).abs() <= 4 * se + 2 ** -16), (freq, p)  # 2⁻¹⁷: the 16-bit uniforms
    assert freq[0] == 0 and freq[-1] == 1


class Recorder:
    """Wraps an estimator's step and keeps the visible rows each update was given."""

    def __init__(self, trainer: Trainer) -> None:
        self.rows: list[torch.Tensor] = []
        step = trainer.estimator.step

        def recording(model, values, *args, **kwargs):
            self.rows.append(values.clone())
            return step(model, values, *args, **kwargs)

        trainer.estimator.step = recording


def test_the_trainer_feeds_fresh_binary_draws_of_grey_rows():
    p = torch.linspace(0.05, 0.95, 10)
    data = p.expand(200, -1).contiguous()  # every row the same, so the shuffle cannot matter
    trainer = Trainer(RBM(10, 4, seed=0), TrainingConfig(epochs=2, batch_size=200, lr=0.01, sample_data=True))
    seen = Recorder(trainer)
    trainer.fit(data)
    first, second = seen.rows
    assert set(torch.cat(seen.rows).unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(first, second)  # a new draw every pass
    freq = torch.cat(seen.rows).mean(0)
    assert torch.all((freq - p).abs() <= 4 * (p * (1 - p) / 400).sqrt())


def test_without_sample_data_grey_rows_are_refused_and_binary_rows_pass_unchanged():
    grey = torch.rand(30, 6, generator=torch.Generator().manual_seed(0))
    with pytest.raises(DataError, match="0/1"):
        Trainer(RBM(6, 3, seed=0), TrainingConfig(epochs=1, batch_size=30)).fit(grey)
    binary = (grey > 0.5).float()
    trainer = Trainer(RBM(6, 3, seed=0), TrainingConfig(epochs=1, batch_size=30))
    seen = Recorder(trainer)
    trainer.fit(binary)
    assert torch.equal(seen.rows[0].sort(0).values, binary.sort(0).values)


@pytest.mark.parametrize("bad, what", [(1.5, r"must lie in \[0, 1\], got \[.*, 1.5\]"), (-0.25, r"got \[-0.25"),
                                       (float("nan"), "NaN")])
def test_sample_data_refuses_values_that_are_not_probabilities(bad, what):
    data = torch.rand(20, 5, generator=torch.Generator().manual_seed(1))
    data[7, 2] = bad
    rbm = RBM(5, 3, seed=0)
    before = {k: v.clone() for k, v in rbm.named_tensors().items()}
    with pytest.raises(DataError, match=what):
        Trainer(rbm, TrainingConfig(epochs=1, batch_size=10, sample_data=True)).fit(data)
    assert all(torch.equal(before[k], v) for k, v in rbm.named_tensors().items())  # nothing trained


def test_sample_data_needs_visible_units_that_can_be_drawn_and_a_boolean():
    data = torch.rand(20, 5)
    with pytest.raises(ConfigurationError, match="bernoulli or binomial visible units; this RBM has gaussian"):
        Trainer(RBM(5, 3, visible="gaussian", seed=0), TrainingConfig(epochs=1, sample_data=True)).fit(data)
    with pytest.raises(ConfigurationError, match="sample_data must be True or False"):
        TrainingConfig(sample_data=1)  # type: ignore[arg-type]


def test_a_data_loader_of_grey_rows_is_drawn_and_checked_per_batch():
    loader = torch.utils.data.DataLoader(torch.rand(40, 6), batch_size=10)
    trainer = Trainer(RBM(6, 3, seed=0), TrainingConfig(epochs=1, batch_size=10, sample_data=True))
    seen = Recorder(trainer)
    trainer.fit(loader)
    assert len(seen.rows) == 4 and set(torch.cat(seen.rows).unique().tolist()) == {0.0, 1.0}
    bad = torch.utils.data.DataLoader(torch.rand(40, 6) * 2, batch_size=10)
    with pytest.raises(DataError, match="sample_data"):
        Trainer(RBM(6, 3, seed=0), TrainingConfig(epochs=1, batch_size=10, sample_data=True)).fit(bad)


def test_resume_with_sample_data_equals_the_uninterrupted_run_bit_for_bit(tmp_path):
    from boltzkit import checkpoint as io
    from boltzkit.training import Callback

    class StopAt(Callback):
        def on_epoch_end(self, trainer, epoch, metrics):
            trainer.stop = trainer.stop or epoch == 2

    data = torch.rand(60, 12, generator=torch.Generator().manual_seed(3))
    config = TrainingConfig(epochs=4, batch_size=20, lr=0.1, sample_data=True)
    whole = RBM(12, 5, seed=2)
    Trainer(whole, config).fit(data)
    first = Trainer(RBM(12, 5, seed=2), config, callbacks=[StopAt()])
    first.fit(data)
    tensors, state = first.training_state()
    io.save(tmp_path, first.rbm, extra={"training_state": state}, state=tensors)
    rbm, saved, saved_tensors = io.load_checkpoint(tmp_path, training_state=True)
    second = Trainer(rbm, config)
    second.load_training_state(saved_tensors, saved["training_state"])
    second.fit(data)
    for name, p in whole.named_tensors().items():
        assert torch.equal(rbm.named_tensors()[name], p), name


def test_deep_models_pretrain_on_grey_rows_with_sample_data():
    grey = torch.rand(60, 8, generator=torch.Generator().manual_seed(4))
    config = TrainingConfig(epochs=2, batch_size=20, lr=0.05, sample_data=True)
    dbm = DBM(8, [5, 4], seed=0)
    with pytest.raises(DataError, match="0/1"):
        dbm.pretrain(grey, TrainingConfig(epochs=1, batch_size=20))
    rbms = dbm.pretraining_rbms()
    assert rbms[0].visible.data_scale == 2.0  # the doubled first layer draws 2·Bernoulli(p)
    dbm.pretrain(grey, config)
    Trainer(dbm, TrainingConfig(epochs=1, batch_size=20, lr=0.01, sample_data=True)).fit(grey)
    dbn = DBN([8, 5, 4], seed=0)
    dbn.fit(grey, [config, TrainingConfig(epochs=1, batch_size=20)])
    for t in [*dbm.parameters(), *dbn.parameters()]:
        assert torch.isfinite(t).all()


# -- the command line: --binarize resample ------------------------------------------------------
@pytest.fixture
def grey_file(tmp_path):
    """200 × 16 grey levels on a 0..255 scale (the CLI scales them to [0, 1] first)."""
    rng = np.random.default_rng(0)
    path = tmp_path / "grey.npy"
    np.save(path, (rng.random((200, 16)) * np.linspace(40, 255, 16)).round().astype(np.float32))
    return path


def test_cli_trains_an_rbm_on_rows_drawn_afresh_and_resumes_bit_for_bit(tmp_path, grey_file, capsys):
    common = ["--data", str(grey_file), "--hidden", "5", "--batch-size", "25", "--quiet", "--device", "cpu",
              "--lr-schedule", "constant", "--seed", "4"]
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert cli.main(["train", *common, "--binarize", "resample", "--epochs", "4", "--out", str(whole)]) == 0
    config = json.loads((whole / "config.json").read_text())
    assert config["training"]["sample_data"] is True
    rows = (whole / "metrics.csv").read_text().strip().splitlines()
    header, last = rows[0].split(","), rows[-1].split(",")
    assert np.isfinite(float(last[header.index("log_likelihood")]))  # scored on one fixed binary draw
    assert cli.main(["train", *common, "--binarize", "resample", "--epochs", "2", "--out", str(part)]) == 0
    assert cli.main(["train", "--data", str(grey_file), "--quiet", "--device", "cpu", "--epochs", "4",
                     "--resume", str(part), "--out", str(part)]) == 0  # the run's own setting: resample
    assert (part / "model.safetensors").read_bytes() == (whole / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert cli.main(["train", "--data", str(grey_file), "--binarize", "0.5", "--quiet", "--epochs", "5",
                     "--resume", str(part), "--out", str(part)]) == 2
    assert "--binarize 0.5 (the run draws its rows afresh" in capsys.readouterr().err


def test_cli_fixed_rows_are_kept_apart_from_resample(tmp_path, grey_file, capsys):
    out = tmp_path / "fixed"
    assert cli.main(["train", "--data", str(grey_file), "--binarize", "stochastic", "--hidden", "4", "--epochs",
                     "1", "--quiet", "--device", "cpu", "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["training"]["sample_data"] is False
    capsys.readouterr()
    assert cli.main(["evaluate", str(out), "--data", str(grey_file), "--binarize", "resample"]) == 2
    assert "--binarize resample draws new binary rows while" in capsys.readouterr().err
    assert cli.main(["train", "--data", str(grey_file), "--binarize", "coin", "--out", str(tmp_path / "x")]) == 2
    assert "'stochastic' or 'resample', got 'coin'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert cli.main(["train", "--data", str(grey_file), "--binarize", "resample", "--visible", "gaussian",
                     "--out", str(tmp_path / "g")]) == 2
    assert "not --visible gaussian" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()


def test_cli_trains_a_dbm_and_a_dbn_with_resample(tmp_path, grey_file):
    for kind in ("dbm", "dbn"):
        out = tmp_path / kind
        assert cli.main(["train", "--model", kind, "--data", str(grey_file), "--binarize", "resample",
                         "--hidden", "6,4", "--epochs", "1", "--pretrain-epochs", "1", "--quiet", "--device", "cpu",
                         "--out", str(out)]) == 0
        assert json.loads((out / "config.json").read_text())["training"]["sample_data"] is True


def test_cli_resumes_a_resampled_dbm_run_without_repeating_the_flag(tmp_path, grey_file):
    out = tmp_path / "dbm"
    base = ["train", "--model", "dbm", "--data", str(grey_file), "--quiet", "--device", "cpu", "--out", str(out)]
    assert cli.main([*base, "--binarize", "resample", "--hidden", "6,4", "--epochs", "1",
                     "--pretrain-epochs", "1"]) == 0
    assert cli.main([*base, "--hidden", "6,4", "--epochs", "2", "--resume", str(out)]) == 0  # grey: resample only
    assert json.loads((out / "config.json").read_text())["training"]["epochs"] == 2


def test_monitored_rows_are_one_fixed_binary_draw_under_resample():
    from boltzkit.cli.core import fixed_rows

    grey = torch.rand(50, 7, generator=torch.Generator().manual_seed(5))
    assert fixed_rows(grey, TrainingConfig()) is grey
    drawn = fixed_rows(grey, TrainingConfig(sample_data=True, seed=2))
    assert set(drawn.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(drawn, fixed_rows(grey, TrainingConfig(sample_data=True, seed=2)))


class Rows(BatchSource):
    """A custom source (not TensorBatches): the trainer cannot see its values at once."""

    def __init__(self, values: torch.Tensor) -> None:
        self.values = values

    def __len__(self) -> int:
        return self.values.shape[0]

    def batch(self, rows: torch.Tensor) -> Batch:
        return Batch(self.values.index_select(0, rows))


def test_a_custom_source_is_checked_as_probabilities_before_training():
    grey = torch.rand(50, 6, generator=torch.Generator().manual_seed(0))
    trainer = Trainer(RBM(6, 3, seed=0), TrainingConfig(epochs=1, batch_size=10, sample_data=True))
    seen = Recorder(trainer)
    trainer.fit(Rows(grey))  # grey rows pass (no "0/1" refusal) and are drawn afresh
    assert len(seen.rows) == 5 and set(torch.cat(seen.rows).unique().tolist()) == {0.0, 1.0}
    bad = grey.clone()
    bad[37, 2] = 1.5  # in the last block the trainer would reach
    trainer = Trainer(RBM(6, 3, seed=0), TrainingConfig(epochs=1, batch_size=10, sample_data=True))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(DataError, match=r"\[0, 1\], got \[.*, 1.5\]"):
        trainer.fit(Rows(bad))
    assert trainer.epoch == 0 and all(torch.equal(v, trainer.model.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize("sparse_input", [False, True])
def test_the_sklearn_bernoulli_rbm_draws_its_rows_afresh_with_sample_data(sparse_input):
    pytest.importorskip("sklearn")
    from scipy import sparse

    from boltzkit.sklearn import BernoulliRBM

    grey = np.random.default_rng(0).random((40, 8)) * (np.random.default_rng(1).random((40, 8)) < 0.5)
    X = sparse.csr_matrix(grey) if sparse_input else grey
    rows = {}
    for flag in (False, True):
        est = BernoulliRBM(4, n_iter=0, batch_size=20, random_state=0, sample_data=flag).fit(X)
        seen = Recorder(est._trainer)
        est.partial_fit(X)
        rows[flag] = torch.cat(seen.rows)
    assert not set(rows[False].unique().tolist()) <= {0.0, 1.0}  # scikit-learn's way: the values as they are
    assert set(rows[True].unique().tolist()) == {0.0, 1.0}
    assert BernoulliRBM(sample_data=True).get_params()["sample_data"] is True
    est = BernoulliRBM(4, n_iter=1, random_state=0, sample_data=np.True_).fit(X)  # a NumPy bool (grid search)
    weights = est.components_.copy()
    with pytest.raises(ValueError, match=r"^X: .*\[0, 1\], got \[.*, 1\.9"):
        est.fit(X * 2)
    np.testing.assert_array_equal(est.components_, weights)  # refused before the fitted model is replaced
    est.set_params(sample_data=False)
    seen = Recorder(est._trainer)
    est.partial_fit(X)  # set_params between partial_fit calls counts
    assert not set(torch.cat(seen.rows).unique().tolist()) <= {0.0, 1.0}
    del est.__dict__["sample_data"]  # as unpickled from before the parameter existed
    assert est.get_params()["sample_data"] is False
