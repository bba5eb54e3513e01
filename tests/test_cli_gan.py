"""``boltzkit gan train|sample|evaluate`` end to end on small synthetic images, and the one-line
exit-2 errors (nothing written)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from boltzkit import checkpoint
from boltzkit.cli import main
from boltzkit.models.gan import GAN


def images(path, n=200, seed=0, binary=True):
    """8×8 images: a random bar per row (binary), or its grey version."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 64), np.float32)
    for i in range(n):
        r = int(rng.integers(0, 8))
        x[i].reshape(8, 8)[r] = 1.0
    if not binary:
        x = 0.2 + 0.6 * x
    np.save(path, x)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("gan")
    data = images(root / "train.npy")
    out = root / "run"
    assert main(["gan", "train", "--data", str(data), "--epochs", "3", "--hidden", "16", "--latent", "2",
                 "--m", "20", "--k", "2", "--loss", "non-saturating", "--out", str(out), "--quiet"]) == 0
    return root, data, out


def test_train_writes_a_checkpoint_curves_and_samples(trained):
    _, _, out = trained
    for name in ("config.json", "model.safetensors", "training_state.safetensors", "metrics.csv", "curves.png",
                 "samples.png"):
        assert (out / name).is_file(), name
    model = checkpoint.load_checkpoint(out, kind=GAN).model
    assert model.latent_dim == 2 and model.n_visible == 64
    header = (out / "metrics.csv").read_text().splitlines()[0]
    assert {"d_loss", "g_loss", "d_real", "d_fake", "sample_diversity"} <= set(header.split(","))


def test_sample_and_evaluate(trained, capsys, tmp_path):
    root, data, out = trained
    assert main(["gan", "sample", str(out), "--n", "9", "--png", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 0
    test = images(root / "test.npy", n=30, seed=1)
    capsys.readouterr()
    assert main(["gan", "evaluate", str(out), "--data", str(test), "--method", "ais", "--chains", "4",
                 "--betas", "30", "--leapfrog", "3", "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["method"] == "ais" and result["n"] == 30
    low, high = result["log_likelihood_interval"]
    assert low <= result["log_likelihood"] <= high < 0
    assert main(["gan", "evaluate", str(out), "--data", str(test), "--method", "parzen", "--samples", "200",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["method"] == "parzen" and result["sigma"] > 0
    assert any("Theis" in w for w in result["warnings"])


def test_one_line_errors_and_nothing_written(trained, tmp_path, capsys):
    root, data, out = trained
    grey = images(tmp_path / "grey.npy", binary=False)
    target = tmp_path / "new"
    cases = [
        ["gan", "train", "--data", str(grey), "--out", str(target)],                  # not 0/1 for Bernoulli
        ["gan", "train", "--data", str(data), "--m", "0", "--out", str(target)],
        ["gan", "train", "--data", str(tmp_path / "missing.npy"), "--out", str(target)],
        ["gan", "evaluate", str(tmp_path), "--data", str(data)],                      # not a checkpoint
        ["gan", "evaluate", str(out)],                                                # 784 columns vs 64
    ]
    for argv in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("boltzkit: error:") and "\n" not in err, (argv, err)
    assert not target.exists()


def test_divergence_exits_1_and_keeps_the_last_good_state(tmp_path):
    data = images(tmp_path / "train.npy", n=40)
    out = tmp_path / "run"
    assert main(["gan", "train", "--data", str(data), "--epochs", "2", "--hidden", "8", "--m", "20",
                 "--optimizer", "sgd", "--lr", "1e30", "--out", str(out), "--quiet"]) == 1
    model = checkpoint.load(out)
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_conv_architecture_trains_and_evaluates(tmp_path, capsys):
    data = images(tmp_path / "train.npy", n=60)
    out = tmp_path / "conv"
    assert main(["gan", "train", "--data", str(data), "--architecture", "conv", "--channels", "4", "--latent", "2",
                 "--epochs", "1", "--m", "20", "--collapse-threshold", "0", "--out", str(out), "--quiet"]) == 0
    model = checkpoint.load_checkpoint(out, kind=GAN).model
    assert model.architecture == "conv" and model.channels == 4
    assert json.loads((out / "config.json").read_text())["gan"]["architecture"] == "conv"
    capsys.readouterr()
    assert main(["gan", "evaluate", str(out), "--data", str(data), "--rows", "5", "--chains", "2", "--betas", "10",
                 "--leapfrog", "2", "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 5
    odd = tmp_path / "odd.npy"
    np.save(odd, np.zeros((10, 12), np.float32))
    assert main(["gan", "train", "--data", str(odd), "--architecture", "conv", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("boltzkit: error:") and "multiple of 4" in err and "\n" not in err
    assert not (tmp_path / "x").exists()


def test_mode_collapse_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    """A threshold no generator can reach (the samples' spread above 10× the data's) reads as
    collapse at the first epoch's end: exit 1, a message naming it, the initial state saved."""
    data = images(tmp_path / "train.npy", n=40)
    out = tmp_path / "run"
    initial = GAN(64, 2, (8,), (8,), seed=0)
    capsys.readouterr()
    assert main(["gan", "train", "--data", str(data), "--epochs", "3", "--hidden", "8", "--latent", "2", "--m", "20",
                 "--collapse-threshold", "10", "--out", str(out), "--quiet"]) == 1
    assert "mode collapse" in capsys.readouterr().err
    model = checkpoint.load(out)
    for p, q in zip(model.parameters(), initial.parameters()):
        torch.testing.assert_close(p, q)


def test_gaussian_ais_chooses_sigma_on_validation_rows(tmp_path, capsys):
    train = images(tmp_path / "grey.npy", n=60, binary=False)
    valid = images(tmp_path / "valid.npy", n=10, seed=2, binary=False)
    out = tmp_path / "run"
    assert main(["gan", "train", "--data", str(train), "--output", "gaussian", "--epochs", "1", "--hidden", "8",
                 "--latent", "2", "--m", "20", "--collapse-threshold", "0", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["gan", "evaluate", str(out), "--data", str(valid), "--valid", str(valid), "--rows", "4",
                 "--chains", "2", "--betas", "10", "--leapfrog", "2", "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    scores = result["sigma_validation"]
    assert result["sigma"] == float(max(scores, key=scores.get)) and result["validation_rows"] == 4


def test_a_run_that_crashed_after_an_epoch_resumes_bit_for_bit(tmp_path, crash_after_epoch, capsys, monkeypatch):
    """Both networks, both optimizers and the random streams are in each epoch's checkpoint."""
    data = images(tmp_path / "train.npy")
    run = ["gan", "train", "--data", str(data), "--epochs", "3", "--hidden", "16", "--latent", "2", "--m", "20",
           "--k", "2", "--quiet", "--device", "cpu"]
    whole, crashed = tmp_path / "whole", tmp_path / "crashed"
    assert main([*run, "--out", str(whole)]) == 0
    crash = crash_after_epoch(1)
    with pytest.raises(crash):
        main([*run, "--out", str(crashed)])
    resume = ["gan", "train", "--resume", str(crashed), "--epochs", "3", "--quiet"]
    capsys.readouterr()
    assert main([*resume, "--k", "1", "--out", str(tmp_path / "no")]) == 2
    assert "--k 1 (the run has 2)" in capsys.readouterr().err and not (tmp_path / "no").exists()
    monkeypatch.chdir(tmp_path)  # the data file named another way, from another directory, is the same
    assert main([*resume, "--data", "./train.npy", "--out", str(crashed)]) == 0
    assert (crashed / "model.safetensors").read_bytes() == (whole / "model.safetensors").read_bytes()
    assert len((crashed / "metrics.csv").read_text().strip().splitlines()) == 4
