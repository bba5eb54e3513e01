"""The bad-input and fault matrix of the command line: every cell ends in one line
``boltzkit: error: …`` with exit code 2 (1 for divergence), checked before any work, with
nothing half-written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from boltzkit import checkpoint, cli
from boltzkit.models import RBM


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "x.npy"
    rng = np.random.default_rng(0)
    np.save(path, (rng.random((200, 16)) < 0.3).astype(np.float32))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_data) -> Path:
    out = tmp_path_factory.mktemp("run") / "rbm"
    assert cli.main(["train", "--data", str(small_data), "--hidden", "4", "--epochs", "2", "--quiet",
                     "--device", "cpu", "--out", str(out)]) == 0
    return out


def one_line_error(argv: list[str], capsys) -> str:
    code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, (code, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("boltzkit: error: "), err
    return lines[0]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())} if directory.exists() else {}


# -- item 3: no traceback ---------------------------------------------------------------------------
@pytest.mark.parametrize("flags, message", [
    (["--visible", "softmax:abc"], "--visible softmax:abc"),
    (["--visible", "softmax"], "number of states"),
    (["--visible", "relu"], "hidden layer"),
    (["--binarize", "abc"], "--binarize"),
    (["--binarize", "1.5"], "(0, 1)"),
    (["--device", "mps"], "--device mps"),
    (["--device", "meta"], "--device meta"),
    (["--device", "nonsense"], "--device"),
    (["--hidden", "100000000000"], "too large"),
    (["--sparsity-target", "1.5"], "sparsity target"),
    (["--sparsity-target", "0"], "sparsity target"),
    (["--lr", "nan"], "--lr"),
    (["--weight-decay", "inf"], "--weight-decay"),
    (["--momentum", "1.0"], "momentum"),
    (["--epochs", "0"], "--epochs"),
    (["--holdout", "200"], "--holdout"),
])
def test_bad_train_flags_exit_2_before_any_work(tmp_path, small_data, capsys, flags, message):
    out = tmp_path / "out"
    line = one_line_error(["train", "--data", str(small_data), *flags, "--quiet", "--out", str(out)], capsys)
    assert message in line
    assert not out.exists()


def test_out_that_is_not_a_directory_is_refused_before_training(tmp_path, small_data, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for out in (a_file, a_file / "below", Path("/dev/null")):
        line = one_line_error(["train", "--data", str(small_data), "--quiet", "--out", str(out)], capsys)
        assert "not a directory" in line
    assert a_file.read_text() == "x"


@pytest.mark.parametrize("which", ["fifo", "dir", "dev"])
def test_inputs_that_never_end_are_refused_at_once(tmp_path, capsys, which):
    if which == "fifo":
        path = tmp_path / "pipe"
        os.mkfifo(path)
    else:
        path = tmp_path if which == "dir" else Path("/dev/zero")
    line = one_line_error(["train", "--data", str(path), "--quiet", "--out", str(tmp_path / "o")], capsys)
    assert str(path) in line and "--data" in line


def test_sample_outputs_are_checked_before_anything_is_written(trained, tmp_path, capsys):
    before = snapshot(trained)
    a_dir = tmp_path / "d"
    a_dir.mkdir()
    assert "is a directory" in one_line_error(["sample", str(trained), "--png", str(a_dir)], capsys)
    png = tmp_path / "ok.png"
    assert "is a directory" in one_line_error(["sample", str(trained), "--png", str(png), "--npy", str(a_dir)], capsys)
    assert not png.exists() and snapshot(trained) == before


def _edit_config(src: Path, dst: Path, **changes) -> Path:
    import shutil

    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    config.update(changes)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


@pytest.mark.parametrize("changes, message", [
    ({"format_version": "abc"}, "format_version"),
    ({"n_hidden": 10 ** 12}, "claims"),
    ({"dtype": "int8"}, "dtype"),
    ({"model": "Nonsense"}, "unknown model kind"),
    ({"visible": "softmax:abc"}, "describes no valid"),
])
def test_foreign_or_corrupt_configs_are_refused(trained, tmp_path, small_data, capsys, changes, message):
    broken = _edit_config(trained, tmp_path / "broken", **changes)
    assert message in one_line_error(["evaluate", str(broken), "--data", str(small_data)], capsys)


def _write_tensors(directory: Path, tensors: dict[str, torch.Tensor]) -> None:
    import hashlib

    blob = checkpoint.tensor_bytes(tensors)
    (directory / "model.safetensors").write_bytes(blob)
    config = json.loads((directory / "config.json").read_text())
    config["sha256"] = hashlib.sha256(blob).hexdigest()
    config.pop("files", None)
    (directory / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.update(weight=torch.full_like(t["weight"], float("nan"))), "NaN or inf"),
    (lambda t: t.update(hidden_bias=t["hidden_bias"].to(torch.int32)), "dtype"),
    (lambda t: t.update(extra=torch.zeros(3)), "unexpected"),
    (lambda t: t.pop("visible_bias"), "missing"),
])
def test_bad_tensors_in_a_checkpoint_are_refused(trained, tmp_path, small_data, capsys, edit, message):
    import shutil

    broken = tmp_path / "t"
    shutil.copytree(trained, broken)
    tensors = {k: v.clone() for k, v in checkpoint.load(trained).checkpoint_tensors().items()}
    edit(tensors)
    _write_tensors(broken, {k: v.detach() for k, v in tensors.items()})
    assert message in one_line_error(["evaluate", str(broken), "--data", str(small_data)], capsys)


# -- item 2 and resume ---------------------------------------------------------------------------------
def test_a_damaged_training_state_stops_only_resume(trained, tmp_path, small_data, capsys):
    import shutil

    broken = tmp_path / "s"
    shutil.copytree(trained, broken)
    state = broken / "training_state.safetensors"
    state.write_bytes(state.read_bytes()[:-4])
    assert cli.main(["evaluate", str(broken), "--data", str(small_data), "--json"]) == 0
    capsys.readouterr()
    assert cli.main(["sample", str(broken), "-n", "4", "--steps", "2"]) == 0
    capsys.readouterr()
    line = one_line_error(["train", "--data", str(small_data), "--resume", str(broken), "--epochs", "3",
                           "--quiet", "--out", str(broken)], capsys)
    assert "training_state" in line


@pytest.mark.parametrize("field, value, message", [
    ("unknown_field", 1, "unknown fields"),
    ("epoch", "two", "epoch"),
])
def test_ill_typed_resume_state_is_refused(trained, tmp_path, small_data, capsys, field, value, message):
    config = json.loads((trained / "config.json").read_text())
    state = dict(config["training_state"])
    state[field] = value
    broken = _edit_config(trained, tmp_path / "r", training_state=state)
    line = one_line_error(["train", "--data", str(small_data), "--resume", str(broken), "--epochs", "3", "--quiet",
                           "--out", str(broken)], capsys)
    assert message in line


def test_resume_state_tensors_of_the_wrong_shape_or_missing_chains_are_refused(trained, tmp_path, small_data, capsys):
    import hashlib
    import shutil

    from safetensors.torch import load_file

    for name, edit in (("shape", lambda t: t.update({"estimator.chains": t["estimator.chains"][:, :3]})),
                       ("missing", lambda t: t.pop("estimator.chains")),
                       ("rng", lambda t: t.update({"rng.sampling": t["rng.sampling"][:10]}))):
        broken = tmp_path / name
        shutil.copytree(trained, broken)
        tensors = load_file(str(broken / "training_state.safetensors"))
        edit(tensors)
        blob = checkpoint.tensor_bytes(tensors)
        (broken / "training_state.safetensors").write_bytes(blob)
        config = json.loads((broken / "config.json").read_text())
        config["state_sha256"] = hashlib.sha256(blob).hexdigest()
        (broken / "config.json").write_text(json.dumps(config))
        line = one_line_error(["train", "--data", str(small_data), "--resume", str(broken), "--epochs", "3",
                               "--quiet", "--out", str(broken)], capsys)
        assert "training state is damaged" in line


@pytest.mark.parametrize("flags, named", [(["--lr", "0.1"], "--lr 0.1 (the run has"),
                                          (["--method", "cd"], "--method cd (the run has pcd)"),
                                          (["--hidden", "7"], "--hidden 7 bernoulli (the run has"),
                                          (["--visible", "spin"], "--visible spin (the run has bernoulli)")])
def test_flags_that_contradict_the_resumed_run_are_refused(trained, small_data, capsys, flags, named):
    before = snapshot(trained)
    line = one_line_error(["train", "--data", str(small_data), "--resume", str(trained), "--epochs", "3", *flags,
                           "--quiet", "--out", str(trained)], capsys)
    assert named in line and "contradict" in line
    assert snapshot(trained) == before


# -- item 4: no silent acceptance ---------------------------------------------------------------------------
def test_gaussian_data_of_huge_scale_is_standardised_in_float64_or_refused(tmp_path, capsys):
    """1e30 used to overflow σ in float32 (data standardised to zeros, −Infinity printed); now the
    statistics are float64, and values beyond float32 are refused."""
    path = tmp_path / "big.npy"
    np.save(path, np.random.default_rng(0).normal(size=(50, 4)) * 1e30)
    out = tmp_path / "o"
    assert cli.main(["train", "--data", str(path), "--visible", "gaussian", "--hidden", "3", "--epochs", "2",
                     "--quiet", "--out", str(out)]) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", str(out), "--data", str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert np.isfinite(result["log_likelihood"]) and "warnings" not in result
    np.save(path, np.random.default_rng(0).normal(size=(50, 4)) * 1e39)
    line = one_line_error(["train", "--data", str(path), "--visible", "gaussian", "--quiet", "--out",
                           str(tmp_path / "o2")], capsys)
    assert "NaN/inf" in line


def test_a_threshold_outside_the_data_and_binarised_codes_are_refused(tmp_path, capsys):
    path = tmp_path / "dim.npy"
    np.save(path, np.full((20, 4), 0.2))
    assert "outside the data's range" in one_line_error(["train", "--data", str(path), "--binarize", "0.5",
                                                          "--quiet", "--out", str(tmp_path / "o")], capsys)
    codes = tmp_path / "codes.npy"
    np.save(codes, np.random.default_rng(0).integers(0, 3, (20, 4)))
    assert "softmax" in one_line_error(["train", "--data", str(codes), "--visible", "softmax:3", "--binarize",
                                        "0.5", "--quiet", "--out", str(tmp_path / "o2")], capsys)


def test_json_never_prints_nan():
    from boltzkit.cli.common import finite_json

    text = finite_json({"log_likelihood": float("-inf"), "interval": [1.0, float("nan")]})
    parsed = json.loads(text)
    assert parsed["log_likelihood"] is None and parsed["interval"] == [1.0, None]
    assert len(parsed["warnings"]) == 2


def test_recommend_train_refuses_bad_rates_and_out_files(tmp_path, capsys):
    ratings = tmp_path / "r.tsv"
    ratings.write_text("".join(f"{u}\t{i}\t{1 + (u + i) % 5}\n" for u in range(10) for i in range(8)))
    a_file = tmp_path / "f"
    a_file.write_text("x")
    assert "--weight-decay" in one_line_error(["recommend", "train", "--ratings", str(ratings), "--weight-decay",
                                               "nan", "--out", str(tmp_path / "o")], capsys)
    assert "not a directory" in one_line_error(["recommend", "train", "--ratings", str(ratings), "--out",
                                                str(a_file)], capsys)


# -- item 7: the divergence guard sees a collapsed log-likelihood --------------------------------------------
def test_a_collapsed_log_likelihood_stops_training_with_exit_1(tmp_path, small_data, capsys):
    out = tmp_path / "wild"
    code = cli.main(["train", "--data", str(small_data), "--hidden", "4", "--epochs", "5", "--lr", "1000",
                     "--monitor-every", "1", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "diverged" in err, err
    model = checkpoint.load(out)  # the last good state was kept and saved
    assert isinstance(model, RBM)


# -- item 9: messages name the flag the user typed ------------------------------------------------------------
def test_messages_name_the_flag_and_file(tmp_path, small_data, capsys):
    bad = tmp_path / "nan.npy"
    x = np.zeros((10, 16), dtype=np.float32)
    x[3, 2] = np.nan
    np.save(bad, x)
    line = one_line_error(["train", "--data", str(small_data), "--valid", str(bad), "--quiet", "--out",
                           str(tmp_path / "o")], capsys)
    assert f"--valid {bad}" in line


def test_a_free_energy_that_overflows_counts_as_divergence():
    from boltzkit.errors import DivergenceError
    from boltzkit.training import Trainer, TrainingConfig

    data = (torch.rand(64, 6, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    trainer = Trainer(RBM(6, 3, seed=0), TrainingConfig(epochs=1, batch_size=32, max_weight=1e39))
    trainer.fit(data)
    good = trainer.snapshot()
    with torch.no_grad():
        trainer.model.weight.fill_(3e37)          # finite parameters, F(v) = −Σ softplus(…) overflows
    with pytest.raises(DivergenceError, match="free energy"):
        trainer._check(good, "in a test")
    assert torch.equal(trainer.model.weight, good["model"]["weight"])   # the last good state is back
