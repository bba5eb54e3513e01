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
