"""Cells of the hardening matrix found by the audit of issues 11/12/21: sizes no check foresaw
(NumPy and torch allocation failures), an output pipe closed early, and resume states whose
estimator tensors (chain count, PT replicas, fast weights, centering, sparsity) do not fit the
run.  Every one ends in one line ``boltzkit: error: …`` with exit code 2 and nothing written."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from boltzkit import checkpoint, cli
from boltzkit.cli import _out_of_memory


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "x.npy"
    rng = np.random.default_rng(0)
    np.save(path, (rng.random((200, 12)) < 0.3).astype(np.float32))
    return path


def _train(root: Path, data: Path, name: str, *flags: str) -> Path:
    out = root / name
    assert cli.main(["train", "--data", str(data), "--hidden", "4", "--epochs", "2", "--quiet",
                     "--device", "cpu", "--out", str(out), *flags]) == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, small_data) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    return {"pcd": _train(root, small_data, "pcd"),
            "sparse": _train(root, small_data, "sparse", "--sparsity-target", "0.1", "--centered"),
            "fpcd": _train(root, small_data, "fpcd", "--method", "fpcd"),
            "pt": _train(root, small_data, "pt", "--method", "pt", "--replicas", "3")}


def one_line_error(argv: list[str], capsys) -> str:
    code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("boltzkit: error: "), (code, err)
    return lines[0]


# -- allocation failures: one line, nothing written ---------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["sample", "{run}", "-n", "1000000000000", "--png", "{tmp}/big.png"],            # torch: 48 TB
    ["evaluate", "{run}", "--data", "{data}", "--method", "ais", "--betas", "1000000000000"],  # NumPy: 7 TiB
])
def test_allocations_beyond_any_machine_end_in_one_line(runs, small_data, tmp_path, capsys, argv):
    argv = [a.format(run=runs["pcd"], data=small_data, tmp=tmp_path) for a in argv]
    line = one_line_error(argv, capsys)
    assert "out of memory" in line and "enforce fail" not in line
    assert list(tmp_path.iterdir()) == []


def test_only_allocation_failures_are_turned_into_messages():
    assert _out_of_memory(MemoryError("Unable to allocate 7 TiB"))
    assert _out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: "
                                       "can't allocate memory"))
    assert not _out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))


def test_a_programming_error_is_not_disguised(monkeypatch, small_data, tmp_path):
    import boltzkit.cli.core as core

    def broken(args):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(core, "cmd_evaluate", broken)
    with pytest.raises(RuntimeError, match="mat1"):
        cli.main(["evaluate", str(tmp_path), "--data", str(small_data)])


def test_an_output_pipe_closed_early_ends_in_one_line(runs, small_data):
    process = subprocess.Popen([sys.executable, "-m", "boltzkit", "evaluate", str(runs["pcd"]), "--data",
                                str(small_data), "--device", "cpu"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()  # the reader goes away before the command prints
    err = process.stderr.read()
    code = process.wait(timeout=120)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and lines == ["boltzkit: error: the output was closed before the command finished"], err


# -- resume states whose estimator tensors do not fit the run ------------------------------------------
def _damage(run: Path, to: Path, edit) -> Path:
    shutil.copytree(run, to)
    tensors = load_file(str(to / "training_state.safetensors"))
    edit(tensors)
    blob = checkpoint.tensor_bytes(tensors)
    (to / "training_state.safetensors").write_bytes(blob)
    config = json.loads((to / "config.json").read_text())
    config["state_sha256"] = hashlib.sha256(blob).hexdigest()
    (to / "config.json").write_text(json.dumps(config))
    return to


@pytest.mark.parametrize("run, edit", [
    ("pcd", lambda t: t.update({"estimator.chains": t["estimator.chains"][:1]})),          # 1 chain, not 100
    ("pt", lambda t: t.update({"estimator.chains": t["estimator.chains"][:7]})),           # not 3 × 100
    ("fpcd", lambda t: t.update({"estimator.fast_weight": t["estimator.fast_weight"][:1]})),
    ("sparse", lambda t: t.update({"estimator.sparsity_estimate": t["estimator.sparsity_estimate"][:1]})),
    ("sparse", lambda t: t.update({"estimator.centering_hidden": t["estimator.centering_hidden"][:1]})),
    ("sparse", lambda t: t.update({"estimator.centering_visible": t["estimator.centering_visible"][:3]})),
    ("fpcd", lambda t: t.update({"estimator.fast_nothing": t["estimator.fast_weight"].clone()})),
], ids=["chain-count", "pt-rows", "fast-weight", "sparsity", "centering", "centering-visible", "fast-unknown"])
def test_estimator_state_that_does_not_fit_the_run_is_refused(runs, small_data, tmp_path, capsys, run, edit):
    broken = _damage(runs[run], tmp_path / "broken", edit)
    before = {p.name: p.read_bytes() for p in broken.iterdir()}
    line = one_line_error(["train", "--data", str(small_data), "--resume", str(broken), "--epochs", "3",
                           "--quiet", "--device", "cpu", "--out", str(broken)], capsys)
    assert "training state is damaged" in line
    assert {p.name: p.read_bytes() for p in broken.iterdir()} == before


def _two_ranks(tensors: dict) -> None:
    """The state as two processes of 50 chains each would have gathered it (``rank1.…``)."""
    chains = tensors["estimator.chains"]
    tensors.update({"estimator.chains": chains[:50], "rank1.estimator.chains": chains[50:],
                    "rank1.rng.sampling": tensors["rng.sampling"].clone()})


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.update({"rank1.estimator.chains": t["rank1.estimator.chains"][:49]}),
     "'rank1.estimator.chains' holds 49 chains, the run keeps 50"),
    (lambda t: t.update({"rank1.estimator.chains": t["rank1.estimator.chains"][:, :11]}),
     "'rank1.estimator.chains' has shape (50, 11), rank 0's (50, 12)"),
    (lambda t: t.update({"rank2.rng.sampling": t["rng.sampling"].clone()}), "written by 3 processes"),
], ids=["rank-chain-count", "rank-chain-width", "world-does-not-divide"])
def test_a_gathered_state_of_several_processes_is_checked_rank_by_rank(runs, small_data, tmp_path, capsys,
                                                                      edit, message):
    good = _damage(runs["pcd"], tmp_path / "good", _two_ranks)   # pooled again: resumes in one process
    assert cli.main(["train", "--data", str(small_data), "--resume", str(good), "--epochs", "3", "--quiet",
                     "--device", "cpu", "--out", str(good)]) == 0
    capsys.readouterr()   # the warning that the chains are pooled for one process
    broken = _damage(runs["pcd"], tmp_path / "broken", lambda t: (_two_ranks(t), edit(t)))
    before = {p.name: p.read_bytes() for p in broken.iterdir()}
    line = one_line_error(["train", "--data", str(small_data), "--resume", str(broken), "--epochs", "3",
                           "--quiet", "--device", "cpu", "--out", str(broken)], capsys)
    assert "training state is damaged" in line and message in line, line
    assert {p.name: p.read_bytes() for p in broken.iterdir()} == before


def test_undamaged_estimator_states_resume(runs, small_data, tmp_path):
    for name, run in runs.items():
        copy = tmp_path / name
        shutil.copytree(run, copy)
        assert cli.main(["train", "--data", str(small_data), "--resume", str(copy), "--epochs", "3",
                         "--quiet", "--device", "cpu", "--out", str(copy)]) == 0, name


# -- the Python API at its edge (issue 12 item 6, issue 21 item 6) ---------------------------------------
def test_pseudo_likelihood_takes_numpy_and_refuses_bad_data_in_one_line():
    import torch

    from boltzkit import RBM
    from boltzkit.errors import DataError
    from boltzkit.evaluation import monitors

    rbm = RBM(6, 3, seed=0)
    x = (np.random.default_rng(0).random((20, 6)) < 0.5).astype(np.float32)
    assert monitors.pseudo_log_likelihood(rbm, x) == monitors.pseudo_log_likelihood(rbm, torch.from_numpy(x))
    for bad, message in ((x[:, :5], "columns"), (np.full((3, 6), np.nan, np.float32), "NaN"),
                         ([[0.0] * 6], "NumPy array"), (x[:0], "empty")):
        with pytest.raises(DataError, match=message):
            monitors.pseudo_log_likelihood(rbm, bad)


# -- sizes checked before the data are prepared or trained on (issue 21 items 3-4) ---------------------
def test_softmax_one_hot_is_written_by_index_assignment():
    from boltzkit.cli.core import prepare_data

    codes = np.random.default_rng(1).integers(0, 4, (9, 5)).astype(np.float32)
    onehot, _ = prepare_data(codes, "softmax:4")
    assert onehot.dtype == np.float32 and onehot.shape == (9, 20)
    np.testing.assert_array_equal(onehot, np.eye(4, dtype=np.float32)[codes.astype(np.int64)].reshape(9, -1))


def test_the_model_size_is_checked_before_the_data_are_prepared(small_data, tmp_path, capsys, monkeypatch):
    import boltzkit.cli.core as core

    def never(*args, **kwargs):
        raise AssertionError("the data were prepared for a model that cannot exist")

    monkeypatch.setattr(core, "prepare_data", never)
    line = one_line_error(["train", "--data", str(small_data), "--hidden", "100000000000", "--quiet",
                           "--device", "cpu", "--out", str(tmp_path / "run")], capsys)
    assert "too large" in line and not (tmp_path / "run").exists()


@pytest.mark.parametrize("flags, message", [
    (["--batch-size", "201"], "--batch-size 201 is larger than the 200 training rows"),
    (["--batch-size", "150", "--holdout", "60"], "--batch-size 150 is larger than the 140 training rows"),
    (["--chains", "10000000000000"], "--chains 10000000000000: the persistent chains would need"),
    (["--method", "pt", "--chains", "1000000000000", "--replicas", "10"], "--chains 1000000000000"),
], ids=["batch", "batch-holdout", "chains", "pt-chains"])
def test_batch_and_chains_beyond_the_run_are_refused_before_training(small_data, tmp_path, capsys, flags,
                                                                    message, monkeypatch):
    import boltzkit.cli.core as core

    monkeypatch.setattr(core.Trainer, "fit", lambda *a, **k: pytest.fail("training started"))
    line = one_line_error(["train", "--data", str(small_data), "--quiet", "--device", "cpu",
                           "--out", str(tmp_path / "run"), *flags], capsys)
    assert message in line, line
    assert not (tmp_path / "run").exists()


def test_batch_of_all_rows_still_trains(small_data, tmp_path):
    assert cli.main(["train", "--data", str(small_data), "--hidden", "3", "--epochs", "1", "--batch-size", "200",
                     "--quiet", "--device", "cpu", "--monitor-every", "0", "--out", str(tmp_path / "run")]) == 0


# -- sample: a progress bar over the sweeps, --quiet silences it ---------------------------------------
@pytest.mark.parametrize("method", ["gibbs", "pt"])
def test_sample_progress_draws_the_same_samples(runs, method):
    from boltzkit.cli.core import _model_samples

    rbm, _, _ = checkpoint.load_checkpoint(runs["pcd"])
    plain = _model_samples(rbm, 7, 250, 3, True, method, 3)
    shown = _model_samples(rbm, 7, 250, 3, True, method, 3, progress=True)   # 100 chunks of 2 + 50
    np.testing.assert_array_equal(plain, shown)
    blocks = _model_samples(rbm, 7, 250, 3, False, method, 3, chain_block=3, progress=True)
    np.testing.assert_array_equal(blocks, _model_samples(rbm, 7, 250, 3, False, method, 3, chain_block=3))


def test_sample_shows_progress_unless_quiet(runs, tmp_path, capsys):
    argv = ["sample", str(runs["pcd"]), "-n", "4", "--steps", "300", "--device", "cpu"]
    assert cli.main([*argv, "--png", str(tmp_path / "a.png")]) == 0
    err = capsys.readouterr().err
    assert "300/300" in err and "sweep" in err, err
    assert cli.main([*argv, "--png", str(tmp_path / "b.png"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


# -- forward and reverse AIS take NumPy arrays alike (issue 12 item 6) ---------------------------------
def test_forward_and_reverse_ais_take_numpy_like_tensors():
    import torch

    from boltzkit import RBM
    from boltzkit.errors import DataError
    from boltzkit.evaluation import ais

    rbm = RBM(8, 4, seed=2, dtype=torch.float64)
    x = (np.random.default_rng(3).random((30, 8)) < 0.4).astype(np.float64)
    t = torch.from_numpy(x)
    forward = [ais.ais(rbm, d, n_chains=10, betas=50, seed=1) for d in (x, t)]
    assert torch.equal(forward[0].log_weights, forward[1].log_weights)
    reverse = [ais.reverse_ais(rbm, d, base_data=d, n_chains=10, betas=50, seed=1) for d in (x, t)]
    assert torch.equal(reverse[0].log_weights, reverse[1].log_weights)
    assert ais.log_likelihood(rbm, x, forward[0]) == ais.log_likelihood(rbm, t, forward[0])
    for run in (ais.ais, ais.reverse_ais):
        with pytest.raises(DataError, match="columns"):
            run(rbm, x[:, :5], n_chains=4, betas=10, seed=0)
        with pytest.raises(DataError, match="NumPy array"):
            run(rbm, [[0.0] * 8], n_chains=4, betas=10, seed=0)
