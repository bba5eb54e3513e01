"""``boltzkit energy train | evaluate``: outputs, the exact log-likelihood, and one-line errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from boltzkit import checkpoint
from boltzkit.cli import main
from boltzkit.data.toy import TOY_BOX
from boltzkit.evaluation import quadrature
from boltzkit.models.energy import EnergyFunctionModel

FAST = ["--epochs", "2", "--n", "400", "--batch-size", "100", "--k", "3", "--hidden", "16", "16",
        "--samples", "200", "--sample-steps", "20", "--quiet"]


def test_train_on_a_toy_then_evaluate_exactly(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["energy", "train", "--toy", "8gaussians", "--sampler", "hmc", "--method", "pcd", *FAST,
                 "--out", str(out)]) == 0
    assert "training log-likelihood" in capsys.readouterr().out
    for name in ("model.safetensors", "config.json", "metrics.csv", "density.png"):
        assert (out / name).is_file()
    header = (out / "metrics.csv").read_text().splitlines()[0]
    assert "acceptance_rate" in header and "step_size" in header
    test = tmp_path / "test.npy"
    g = np.random.default_rng(5)
    points = g.uniform(-2, 2, (300, 2))
    np.save(test, points)
    assert main(["energy", "evaluate", str(out), "--data", str(test), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["method"].startswith("quadrature") and result["n"] == 300
    # the same number, by an independent quadrature rule on the saved model
    model = checkpoint.load(out)
    assert isinstance(model, EnergyFunctionModel) and model.support == [list(TOY_BOX[0]), list(TOY_BOX[1])]
    x = torch.from_numpy(points).float()
    grid = quadrature.make_grid(*model.support, 600, rule="midpoint")
    ll = quadrature.log_likelihood(model.energy, x, quadrature.log_partition(model.energy, grid, x))
    assert abs(ll - result["log_likelihood"]) < 1e-3
    assert main(["energy", "evaluate", str(out), "--toy", "8gaussians", "--n", "500", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["true_log_likelihood"] > result["log_likelihood"] - 5


@pytest.mark.parametrize("sampler, method", [("langevin", "cd"), ("mala", "replay")])
def test_train_on_user_points_in_one_dimension(tmp_path, sampler, method):
    data = tmp_path / "points.npy"
    np.save(data, np.random.default_rng(0).normal(1.0, 0.5, 400))
    out = tmp_path / "one"
    assert main(["energy", "train", "--data", str(data), "--sampler", sampler, "--method", method, *FAST[:2],
                 *FAST[4:], "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["sampler"]["name"] == sampler and config["negative_phase"]["method"] == method
    low, high = config["support"]
    x = np.load(data)
    span = x.max() - x.min()
    assert math.isclose(low[0], x.min() - 0.25 * span, rel_tol=1e-6)
    assert math.isclose(high[0], x.max() + 0.25 * span, rel_tol=1e-6)


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "never"
    cases = [
        (["energy", "train", "--data", str(tmp_path / "missing.npy"), "--out", str(out)], "file not found"),
        (["energy", "train", "--data", str(tmp_path), "--out", str(out)], "--data"),
        (["energy", "train", "--data", "/dev/zero", "--out", str(out)], "not a regular file"),
        (["energy", "train", "--toy", "rings", "--lr", "-1", "--out", str(out)], "--lr"),
        (["energy", "train", "--toy", "rings", "--hidden", "0", "--out", str(out)], "--hidden"),
        (["energy", "train", "--toy", "rings", "--k", "0", "--out", str(out)], "--k"),
    ]
    nan = tmp_path / "nan.npy"
    np.save(nan, np.array([[0.0, math.nan]]))
    cases.append((["energy", "train", "--data", str(nan), "--out", str(out)], "NaN"))
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("boltzkit: error:") and message in err and "\n" not in err, err
        assert not out.exists()


def test_evaluate_refuses_points_outside_the_support_and_high_dimensions(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["energy", "train", "--toy", "rings", *FAST, "--out", str(out)]) == 0
    far = tmp_path / "far.npy"
    np.save(far, np.array([[10.0, 0.0]]))
    assert main(["energy", "evaluate", str(out), "--data", str(far)]) == 2
    assert "outside the model's support" in capsys.readouterr().err
    data3 = tmp_path / "d3.npy"
    np.save(data3, np.random.default_rng(0).normal(size=(200, 3)))
    out3 = tmp_path / "three"
    assert main(["energy", "train", "--data", str(data3), *FAST[:2], *FAST[4:], "--out", str(out3)]) == 0
    assert main(["energy", "evaluate", str(out3), "--data", str(data3)]) == 2
    assert "1-D or 2-D" in capsys.readouterr().err


# -- a crash, then --resume ------------------------------------------------------------------
@pytest.mark.parametrize("options", [["--method", "replay"], ["--method", "pcd", "--sampler", "hmc", "--leapfrog", "3"],
                                     ["--method", "cd", "--sampler", "langevin"]])
def test_a_run_that_crashed_after_an_epoch_resumes_bit_for_bit(tmp_path, crash_after_epoch, options):
    """The checkpoint written after each epoch holds the model, the chains or replay buffer, Adam's
    state, the adapted step size and both random streams: resuming it equals the run never stopped."""
    run = ["energy", "train", "--toy", "rings", *FAST[2:], *options, "--epochs", "4", "--device", "cpu"]
    whole, crashed = tmp_path / "whole", tmp_path / "crashed"
    assert main([*run, "--out", str(whole)]) == 0
    crash = crash_after_epoch(2)
    with pytest.raises(crash):
        main([*run, "--out", str(crashed)])
    assert json.loads((crashed / "config.json").read_text())["epochs_done"] == 2
    assert main(["energy", "train", "--resume", str(crashed), "--epochs", "4", "--samples", "200",
                 "--sample-steps", "20", "--quiet", "--device", "cpu", "--out", str(crashed)]) == 0
    assert (crashed / "model.safetensors").read_bytes() == (whole / "model.safetensors").read_bytes()
    assert len((crashed / "metrics.csv").read_text().strip().splitlines()) == 5


def test_flags_that_contradict_the_resumed_run_exit_2_and_write_nothing(tmp_path, capsys):
    first = tmp_path / "first"
    assert main(["energy", "train", "--toy", "rings", *FAST, "--out", str(first)]) == 0
    capsys.readouterr()
    for flags, named in ((["--k", "5"], "--k 5 (the run has 3)"), (["--hidden", "8"], "--hidden 8 (the run has 16 16)"),
                         (["--toy", "moons"], "--toy moons (the run has rings)")):
        out = tmp_path / "again"
        assert main(["energy", "train", "--resume", str(first), "--epochs", "3", *flags, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert named in err and len(err.strip().splitlines()) == 1
        assert not out.exists()
    # the run's own values may be repeated
    assert main(["energy", "train", "--resume", str(first), "--epochs", "3", "--k", "3", "--toy", "rings",
                 "--samples", "50", "--sample-steps", "5", "--quiet", "--out", str(tmp_path / "ok")]) == 0


def test_resume_needs_a_checkpoint_that_recorded_its_settings(tmp_path, capsys):
    first = tmp_path / "first"
    assert main(["energy", "train", "--toy", "rings", *FAST, "--out", str(first)]) == 0
    config = json.loads((first / "config.json").read_text())
    del config["settings"]  # as written before energy train could resume
    (first / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert main(["energy", "train", "--resume", str(first), "--epochs", "3", "--out", str(tmp_path / "o")]) == 2
    assert "records no run settings" in capsys.readouterr().err
    assert main(["energy", "train", "--epochs", "3", "--out", str(tmp_path / "o")]) == 2  # no points at all
    assert "--toy NAME or --data" in capsys.readouterr().err
