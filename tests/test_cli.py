"""The command line end to end: train → files, sample, evaluate --json, and exit code 2 on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.torch import load_file

from boltzkit import cli, exact, io


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    rng = np.random.default_rng(0)
    x = (rng.random((300, 16)) < np.linspace(0.1, 0.9, 16)).astype(np.float32)
    path = tmp_path_factory.mktemp("data") / "x.npy"
    np.save(path, x)
    return path


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
    rbm, _, _ = io.load(trained)
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
