"""The command line end to end: train → files, sample, evaluate --json, and exit code 2 on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.torch import load_file

from boltzkit import checkpoint as io
from boltzkit import cli, exact


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_data):
    out = tmp_path_factory.mktemp("run")
    code = cli.main(["train", "--data", str(small_data), "--hidden", "6", "--epochs", "3",
                     "--batch-size", "20", "--quiet", "--out", str(out), "--device", "cpu"])
    assert code == 0
    return out


def test_train_writes_every_file(trained):
    for name in ("model.safetensors", "config.json", "metrics.csv", "filters.png", "samples.png", "curves.png"):
        assert (trained / name).stat().st_size > 0, name
    assert set(load_file(str(trained / "model.safetensors"))) == {"weight", "visible_bias", "hidden_bias"}
    config = json.loads((trained / "config.json").read_text())
    assert config["visible"] == "bernoulli" and config["training"]["epochs"] == 3
    rows = (trained / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 4 and "log_likelihood" in rows[0]


def test_same_seed_same_model(tmp_path, small_data, trained):
    out = tmp_path / "again"
    cli.main(["train", "--data", str(small_data), "--hidden", "6", "--epochs", "3", "--batch-size", "20",
              "--quiet", "--out", str(out), "--device", "cpu"])
    assert (out / "model.safetensors").read_bytes() == (trained / "model.safetensors").read_bytes()


def test_evaluate_json_matches_exact(trained, small_data, capsys):
    assert cli.main(["evaluate", str(trained), "--data", str(small_data), "--json", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    rbm = io.load(trained)
    x = np.load(small_data)
    import torch

    assert result["method"] == "exact"
    assert result["log_likelihood"] == pytest.approx(exact.log_likelihood(rbm, torch.from_numpy(x)), abs=1e-6)
    assert result["log_partition"] == pytest.approx(exact.log_partition(rbm), abs=1e-9)
    assert result["pseudo_log_likelihood"] < 0


def test_sample_writes_png_and_npy(trained, tmp_path):
    npy = tmp_path / "s.npy"
    assert cli.main(["sample", str(trained), "-n", "8", "--steps", "5", "--npy", str(npy),
                     "--png", str(tmp_path / "s.png"), "--device", "cpu"]) == 0
    assert np.load(npy).shape == (8, 16)
    assert (tmp_path / "s.png").stat().st_size > 0


@pytest.mark.parametrize("problem,contents,message", [
    ("missing", None, "not found"),
    ("nonbinary", np.full((5, 16), 0.5, np.float32), "0/1"),
    ("nan", np.array([[np.nan] * 16] * 3, np.float32), "NaN"),
    ("empty", np.zeros((0, 16), np.float32), "empty"),
])
def test_bad_training_data_exits_2_and_writes_nothing(tmp_path, capsys, problem, contents, message):
    path = tmp_path / f"{problem}.npy"
    if contents is not None:
        np.save(path, contents)
    out = tmp_path / "out"
    assert cli.main(["train", "--data", str(path), "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("boltzkit: error:") and message.lower() in err.lower()
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_size_mismatch_and_foreign_checkpoint_exit_2(trained, tmp_path, capsys):
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((4, 10), np.float32))
    assert cli.main(["evaluate", str(trained), "--data", str(wrong), "--device", "cpu"]) == 2
    assert "columns" in capsys.readouterr().err
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "config.json").write_text("{}")
    assert cli.main(["evaluate", str(tmp_path / "fake"), "--data", str(wrong)]) == 2
    assert "not written by boltzkit" in capsys.readouterr().err


def test_bad_numbers_exit_2(tmp_path, capsys):
    assert cli.main(["train", "--hidden", "0", "--out", str(tmp_path / "o")]) == 2
    assert "--hidden" in capsys.readouterr().err


def test_resume_equals_uninterrupted_run(tmp_path, small_data):
    common = ["--data", str(small_data), "--hidden", "5", "--batch-size", "25", "--quiet",
              "--device", "cpu", "--lr-schedule", "constant", "--seed", "4"]
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert cli.main(["train", *common, "--epochs", "4", "--out", str(whole)]) == 0
    assert cli.main(["train", *common, "--epochs", "2", "--out", str(part)]) == 0
    assert cli.main(["train", "--data", str(small_data), "--quiet", "--device", "cpu",
                     "--epochs", "4", "--resume", str(part), "--out", str(part)]) == 0
    assert (part / "model.safetensors").read_bytes() == (whole / "model.safetensors").read_bytes()
    assert len((part / "metrics.csv").read_text().strip().splitlines()) == 5


def test_gaussian_visible_standardises_and_samples_in_data_units(tmp_path):
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(200, 9)) * 3 + 10).astype(np.float32)
    path = tmp_path / "g.npy"
    np.save(path, x)
    out = tmp_path / "g"
    assert cli.main(["train", "--data", str(path), "--visible", "gaussian", "--hidden", "4", "--epochs", "2",
                     "--method", "cd", "--quiet", "--device", "cpu", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert np.allclose(config["standardise"]["mean"], x.mean(0), atol=1e-4)
    npy = tmp_path / "s.npy"
    assert cli.main(["sample", str(out), "-n", "400", "--steps", "20", "--npy", str(npy), "--device", "cpu"]) == 0
    samples = np.load(npy)
    assert abs(samples.mean() - 10) < 1.5  # back in data units, not standardised ones


def test_softmax_visible_takes_integer_codes(tmp_path):
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 3, size=(150, 5)).astype(np.float32)
    path = tmp_path / "c.npy"
    np.save(path, codes)
    out = tmp_path / "c"
    assert cli.main(["train", "--data", str(path), "--visible", "softmax:3", "--hidden", "4", "--epochs", "2",
                     "--quiet", "--device", "cpu", "--out", str(out)]) == 0
    assert load_file(str(out / "model.safetensors"))["weight"].shape == (15, 4)
    np.save(path, codes + 3)
    assert cli.main(["train", "--data", str(path), "--visible", "softmax:3", "--quiet",
                     "--out", str(tmp_path / "x")]) == 2


def test_hidden_count_and_type_together(tmp_path, small_data):
    out = tmp_path / "r"
    assert cli.main(["train", "--data", str(small_data), "--hidden", "7", "--hidden", "relu", "--epochs", "1",
                     "--method", "cd", "--quiet", "--device", "cpu", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["hidden"] == "relu" and config["n_hidden"] == 7


def test_evaluate_with_ais_brackets_the_exact_value(trained, small_data, capsys):
    assert cli.main(["evaluate", str(trained), "--data", str(small_data), "--method", "ais", "--betas", "500",
                     "--chains", "50", "--json", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    rbm = io.load(trained)
    log_z = exact.log_partition(rbm)
    low, high = result["log_partition_interval"]
    assert result["method"] == "ais" and low <= log_z <= high
    assert abs(result["log_partition"] - log_z) < 0.05 and 1 <= result["ess"] <= 50


def test_gradcheck_reports_every_estimator(trained, small_data, capsys, tmp_path):
    png = tmp_path / "g.png"
    assert cli.main(["gradcheck", str(trained), "--data", str(small_data), "--repeats", "3", "--rows", "100",
                     "--json", "--png", str(png), "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"CD-1", "CD-10", "PCD-1", "FPCD-1", "PT-1 (10 replicas)", "centered PCD-1"} <= set(result)
    assert all(-1 <= row["cosine"] <= 1 for row in result.values())
    assert png.stat().st_size > 0


@pytest.mark.parametrize("method", ["pt", "fpcd"])
def test_train_with_other_estimators(tmp_path, small_data, method):
    out = tmp_path / method
    assert cli.main(["train", "--data", str(small_data), "--hidden", "4", "--epochs", "2", "--method", method,
                     "--centered", "--quiet", "--device", "cpu", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["training"]["method"] == method and config["training"]["centered"] is True


def test_validation_log_likelihood_and_early_stopping_keep_the_best_epoch(tmp_path, small_data, capsys):
    """Nothing beats the first evaluation by 1,000 nats: stop after epoch 2, keep epoch 1's model."""
    common = ["--data", str(small_data), "--hidden", "5", "--batch-size", "25", "--quiet", "--device", "cpu",
              "--lr-schedule", "constant"]
    stopped, one = tmp_path / "stopped", tmp_path / "one"
    assert cli.main(["train", *common, "--epochs", "6", "--valid", str(small_data), "--monitor-every", "1",
                     "--early-stopping", "1", "--min-delta", "1000", "--out", str(stopped)]) == 0
    err = capsys.readouterr().err
    assert "early stopping after epoch 2" in err and "of epoch 1" in err
    rows = (stopped / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and "valid_log_likelihood" in rows[0].split(",")
    assert cli.main(["train", *common, "--epochs", "1", "--out", str(one)]) == 0
    assert (stopped / "model.safetensors").read_bytes() == (one / "model.safetensors").read_bytes()


def test_large_models_monitor_by_ais_when_asked_and_sparsity_is_saved(tmp_path, small_data):
    out = tmp_path / "ais"
    assert cli.main(["train", "--data", str(small_data), "--hidden", "21", "--epochs", "2", "--batch-size", "50",
                     "--valid", str(small_data), "--monitor-betas", "50", "--monitor-chains", "10",
                     "--sparsity-target", "0.1", "--sparsity-cost", "0.2", "--quiet", "--device", "cpu",
                     "--out", str(out)]) == 0
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    for name in ("ais_log_likelihood", "valid_ais_log_likelihood_low", "valid_ais_log_likelihood_high"):
        assert name in header, name
    assert "log_likelihood" not in header
    training = json.loads((out / "config.json").read_text())["training"]
    assert training["sparsity_target"] == 0.1 and training["sparsity_cost"] == 0.2


@pytest.mark.parametrize("flags,message", [
    (["--hidden", "21", "--early-stopping", "2"], "needs a monitored log-likelihood"),
    (["--sparsity-target", "-0.1"], "sparsity target"),
    (["--monitor-every", "-1"], "--monitor-every"),
])
def test_bad_monitoring_flags_exit_2(tmp_path, small_data, capsys, flags, message):
    out = tmp_path / "o"
    assert cli.main(["train", "--data", str(small_data), *flags, "--quiet", "--device", "cpu", "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_momentum_schedule_flags_reach_the_optimizer(tmp_path, small_data, monkeypatch):
    """--initial-momentum for --momentum-epochs epochs, then --momentum (Hinton's guide, §9)."""
    from boltzkit.training import trainer as train

    seen: list[float] = []
    original = train.Trainer._set_momentum

    def spy(self, epoch):
        original(self, epoch)
        seen.append(self.optimizer.param_groups[0]["momentum"])

    monkeypatch.setattr(train.Trainer, "_set_momentum", spy)
    out = tmp_path / "run"
    assert cli.main(["train", "--data", str(small_data), "--hidden", "4", "--epochs", "3", "--batch-size", "50",
                     "--initial-momentum", "0.5", "--momentum", "0.9", "--momentum-epochs", "2",
                     "--quiet", "--out", str(out), "--device", "cpu"]) == 0
    assert seen == [0.5, 0.5, 0.9]
    saved = json.loads((out / "config.json").read_text())["training"]
    assert (saved["initial_momentum"], saved["momentum"], saved["momentum_epochs"]) == (0.5, 0.9, 2)


def test_bad_thread_count_exits_2_and_writes_nothing(tmp_path, small_data, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "--data", str(small_data), "--threads", "0", "--quiet", "--out", str(out)]) == 2
    assert "--threads must be at least 1" in capsys.readouterr().err and not out.exists()
