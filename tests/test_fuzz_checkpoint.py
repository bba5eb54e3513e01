"""Property-based (hypothesis) tests of checkpoint reading on hostile files (issue #21, items 3 and 8).

A checkpoint written by ``boltzkit train`` is damaged — config.json fields replaced by values of
the wrong type or size (``format_version`` "abc", ``n_hidden`` 10**12, ``visible`` softmax with
10**7 states, ...) or deleted; config.json, model.safetensors or training_state.safetensors
bytes flipped, cut or inserted, with the SHA-256 in config.json left stale or recomputed so that
the damaged bytes reach the parsers — and then read two ways:

- ``checkpoint.load_checkpoint(dir, training_state=True)`` returns a model whose tensors have
  the shapes config.json implies and finite values, or raises a one-line CheckpointError;
- ``boltzkit evaluate DIR --data FILE --json`` exits 0 with valid JSON, or exits 2 with one
  line ``boltzkit: error: ...`` on stderr;

never another exception, never a hang, and never an allocation the file does not back (a
config.json claim is checked against the tensor shapes before the model is built; measured in
a child process by its peak resident memory).

``pytest -m slow tests/test_fuzz_checkpoint.py`` runs ten times as many examples.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from boltzkit import checkpoint, cli
from boltzkit.errors import CheckpointError
from boltzkit.models.conditional import ConditionalRBM
from boltzkit.models.rbm import RBM
from test_fuzz_loaders import hang_alarm, mutated

# CI replays a fixed set of examples (derandomize) so that a run is repeatable; locally each
# run draws new ones, and `pytest -m slow` draws ten times as many.
FAST = settings(max_examples=100, deadline=None, database=None, derandomize=bool(os.environ.get("CI")),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SLOW = settings(FAST, max_examples=600)

# Values a config.json field is set to: wrong types, huge and negative sizes, odd unit specs.
JUNK = ["abc", "", "1", 10**12, 2**63, 2**64, -1, 0, 1.5, None, True, False, [], {}, [1, 2], {"a": 1},
        float("nan"), float("inf"), "softmax:1000000000", "softmax:1", "gaussian", "relu", "float16", "int64",
        "RBM", "CFRBM", "ConditionalRBM", "x" * 5000, "model.safetensors", "../model.safetensors", 2, 3]


@pytest.fixture(scope="module")
def pristine() -> Iterator[tuple[Path, Path]]:
    """(checkpoint written by ``boltzkit train`` with a training state, its data file)."""
    with tempfile.TemporaryDirectory(prefix="boltzkit-fuzz-ckpt-") as d:
        root = Path(d)
        data = root / "data.npy"
        np.save(data, (np.random.default_rng(0).random((40, 6)) < 0.4).astype(np.float32))
        out = root / "run"
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert cli.main(["train", "--data", str(data), "--hidden", "4", "--epochs", "2", "--batch-size", "10",
                             "--out", str(out), "--quiet", "--device", "cpu"]) == 0
        for name in list(out.iterdir()):
            if name.suffix == ".png" or name.name == "metrics.csv":
                name.unlink()
        assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "training_state.safetensors"}
        yield out, data


@pytest.fixture(scope="module")
def pristine_cf() -> Iterator[Path]:
    """A CF-RBM checkpoint written by ``boltzkit recommend train``."""
    with tempfile.TemporaryDirectory(prefix="boltzkit-fuzz-cf-") as d:
        root = Path(d)
        ratings = root / "r.tsv"
        ratings.write_text("".join(f"{u}\t{i}\t{1 + (u * i) % 5}\n" for u in range(1, 30) for i in range(1, 12)
                                   if (u + i) % 3))
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert cli.main(["recommend", "train", "--ratings", str(ratings), "--hidden", "4", "--epochs", "1",
                             "--out", str(root / "run"), "--quiet"]) == 0
        yield root / "run"


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="boltzkit-fuzz-ckpt-work-") as d:
        yield Path(d)


def fresh_copy(pristine_dir: Path, scratch: Path) -> Path:
    target = scratch / "ckpt"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(pristine_dir, target)
    return target


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def write_json(path: Path, config: dict) -> None:
    path.write_text(json.dumps(config, indent=2))  # NaN/inf written as JSON extensions, as a hostile file may


def rehash(directory: Path, role: str) -> None:
    """Make config.json's SHA-256 of ``role``'s file match its (damaged) bytes."""
    name, key = {"model": ("model.safetensors", "sha256"),
                 "state": ("training_state.safetensors", "state_sha256")}[role]
    config = read_json(directory / "config.json")
    config[key] = hashlib.sha256((directory / name).read_bytes()).hexdigest()
    write_json(directory / "config.json", config)


# -- the contract ---------------------------------------------------------------------------------
def load_outcome(directory: Path):
    """load_checkpoint's result, or the CheckpointError it raised (one line naming the checkpoint)."""
    with hang_alarm():
        try:
            loaded = checkpoint.load_checkpoint(directory, device="cpu", training_state=True)
        except CheckpointError as e:
            message = str(e)
            assert "\n" not in message and len(message) < 700, message
            assert str(directory) in message, message
            return e
    model = loaded.model
    assert isinstance(model, RBM)
    config_shapes = {n: tuple(t.shape) for n, t in model.checkpoint_tensors().items()}
    assert config_shapes["weight"] == (model.visible.dim, model.hidden.dim)
    assert all(torch.isfinite(t).all() for t in model.checkpoint_tensors().values())
    assert all(isinstance(t, torch.Tensor) for t in loaded.state.values())
    return loaded


def evaluate_outcome(directory: Path, data: Path) -> int:
    """``boltzkit evaluate``: exit 0 with one JSON object, or exit 2 with one error line."""
    out, err = io.StringIO(), io.StringIO()
    with hang_alarm(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["evaluate", str(directory), "--data", str(data), "--json", "--quiet", "--device", "cpu"])
    if code == 0:
        result = json.loads(out.getvalue(), parse_constant=lambda c: pytest.fail(f"JSON holds {c}"))
        assert isinstance(result, dict) and "log_likelihood" in result
    else:
        assert code == 2, code
        lines = err.getvalue().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("boltzkit: error: "), err.getvalue()
    return code


def check(directory: Path, data: Path):
    """Both readers keep the contract; a load error and an evaluate error go together (evaluate
    needs only the model, so a bad training state alone may leave evaluate working)."""
    loaded = load_outcome(directory)
    code = evaluate_outcome(directory, data)
    if not isinstance(loaded, CheckpointError):
        assert code == 0
    return loaded, code


def test_pristine_checkpoint_loads_and_evaluates(pristine, scratch):
    directory, data = pristine
    loaded, code = check(fresh_copy(directory, scratch), data)
    assert not isinstance(loaded, CheckpointError) and code == 0 and loaded.state


# -- config.json fields ---------------------------------------------------------------------------
def config_paths(config, prefix=()) -> list[tuple]:
    """Every key path of a JSON document (dict keys and list indices)."""
    paths = []
    items = config.items() if isinstance(config, dict) else enumerate(config) if isinstance(config, list) else []
    for key, value in items:
        paths.append(prefix + (key,))
        if isinstance(value, (dict, list)) and len(prefix) < 3:
            paths.extend(config_paths(value, prefix + (key,))[:40])
    return paths


def set_path(config: dict, path: tuple, value, delete: bool) -> dict:
    config = copy.deepcopy(config)
    node = config
    for key in path[:-1]:
        node = node[key]
    if delete and isinstance(node, dict):
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return config


@pytest.mark.parametrize("field,value,outcome", [
    ("format_version", "abc", "error"),
    ("format_version", 99, "error"),
    ("format_version", 1.0, "error"),
    ("format", "other", "error"),
    ("n_hidden", 10**12, "error"),
    ("n_hidden", 3, "error"),
    ("n_hidden", "4", "error"),
    ("n_hidden", None, "error"),
    ("n_visible", 2**64, "error"),
    ("n_visible", -6, "error"),
    ("visible", "softmax:10000000", "error"),   # 60 million visible columns: refused before allocating
    ("visible", "softmax:1000000000000", "error"),
    ("visible", 7, "error"),
    ("hidden", "gaussian", "ok"),               # bernoulli visible, gaussian hidden: a valid model, same shapes
    ("hidden", "relu", "ok"),
    ("hidden", "nope", "error"),
    ("dtype", "int64", "error"),
    ("dtype", "float64", "ok"),
    ("model", "CFRBM", "error"),
    ("model", "Nope", "error"),
    ("model", None, "error"),
    ("model", [], "error"),                     # before the fix: TypeError (unhashable) traceback
    ("model", {"a": 1}, "error"),
    ("format_version", "x" * 5000, "error"),    # before the fix: the 5000 characters echoed in the message
    ("dtype", "x" * 5000, "error"),
    ("files", {"model": "../model.safetensors"}, "error"),
    ("files", [], "error"),
    ("sha256", "0" * 64, "error"),
    ("sha256", None, "error"),
    ("standardise", {"mean": [0.0] * 6, "std": [1.0] * 6}, "ok"),
    ("standardise", "abc", "error"),
    ("standardise", {"mean": [0.0] * 6}, "error"),
    ("standardise", {"mean": ["a"] * 6, "std": [1.0] * 6}, "error"),
    ("standardise", {"mean": [0.0] * 6, "std": [0.0] * 6}, "error"),
    ("standardise", {"mean": [0.0] * 5, "std": [1.0] * 5}, "error"),
    ("standardise", {"mean": [0.0] * 6, "std": [float("nan")] * 6}, "error"),
])
def test_config_field_cells(pristine, scratch, field, value, outcome):
    directory, data = pristine
    target = fresh_copy(directory, scratch)
    write_json(target / "config.json", {**read_json(target / "config.json"), field: value})
    loaded, code = check(target, data)
    if outcome == "ok":
        assert code == 0, loaded
    else:
        assert code == 2


@pytest.mark.parametrize("field", ["format", "model", "n_visible", "n_hidden", "sha256", "files", "visible",
                                   "hidden", "dtype", "format_version", "tensors", "library_version",
                                   "training_state", "state_sha256", "training"])
def test_missing_config_key(pristine, scratch, field):
    directory, data = pristine
    target = fresh_copy(directory, scratch)
    config = read_json(target / "config.json")
    config.pop(field)
    write_json(target / "config.json", config)
    check(target, data)


@FAST
@given(st.data())
def test_fuzz_config_fields(pristine, scratch, data):
    directory, data_file = pristine
    target = fresh_copy(directory, scratch)
    config = read_json(target / "config.json")
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(config_paths(config)))
        value = data.draw(st.one_of(st.sampled_from(JUNK), st.integers(), st.floats(), st.text(max_size=8)))
        config = set_path(config, path, value, delete=data.draw(st.booleans()))
    write_json(target / "config.json", config)
    check(target, data_file)


@FAST
@given(raw=st.data())
def test_fuzz_config_bytes(pristine, scratch, raw):
    directory, data = pristine
    target = fresh_copy(directory, scratch)
    text = (target / "config.json").read_bytes()
    (target / "config.json").write_bytes(raw.draw(mutated(text, text=True)))
    check(target, data)


@FAST
@given(st.data())
def test_fuzz_cf_checkpoint(pristine_cf, scratch, data):
    """The CF-RBM kind through the same reader: config.json fields and model bytes damaged.
    Before the fix ``n_users`` = inf or 2**64 raised OverflowError past load_checkpoint."""
    target = fresh_copy(pristine_cf, scratch)
    config = read_json(target / "config.json")
    for _ in range(data.draw(st.integers(0, 2))):
        path = data.draw(st.sampled_from(config_paths(config)))
        config = set_path(config, path, data.draw(st.sampled_from(JUNK)), delete=data.draw(st.booleans()))
    write_json(target / "config.json", config)
    if data.draw(st.booleans()):
        (target / "model.safetensors").write_bytes(data.draw(mutated((target / "model.safetensors").read_bytes())))
        rehash(target, "model")
    with hang_alarm():
        try:
            loaded = checkpoint.load_checkpoint(target, device="cpu")
        except CheckpointError as e:
            assert "\n" not in str(e) and len(str(e)) < 700 and str(target) in str(e), str(e)
            return
    assert loaded.model.n_levels_ >= 1


@pytest.mark.parametrize("value", [float("inf"), 2**64, -1, "7"])
def test_cf_size_fields(pristine_cf, scratch, value):
    target = fresh_copy(pristine_cf, scratch)
    write_json(target / "config.json", {**read_json(target / "config.json"), "n_users": value})
    with pytest.raises(CheckpointError, match=str(target)):
        checkpoint.load_checkpoint(target)


# -- tensor files -----------------------------------------------------------------------------------
@FAST
@given(data=st.data(), role=st.sampled_from(["model", "state"]), fix_hash=st.booleans())
def test_fuzz_tensor_files(pristine, scratch, data, role, fix_hash):
    """Damaged tensor files: with a stale SHA-256 they are refused as "does not match"; with a
    recomputed one the bytes reach the safetensors parser and the model/state checks."""
    directory, data_file = pristine
    target = fresh_copy(directory, scratch)
    name = "model.safetensors" if role == "model" else "training_state.safetensors"
    raw = (target / name).read_bytes()
    damaged = data.draw(mutated(raw))
    (target / name).write_bytes(damaged)
    if fix_hash:
        rehash(target, role)
    loaded, code = check(target, data_file)
    if damaged != raw and not fix_hash:
        assert isinstance(loaded, CheckpointError) and "does not match" in str(loaded)
    if role == "state" and damaged != raw:
        assert code == 0  # evaluate never reads the training state


def safetensors_with_header(header: dict, payload: bytes) -> bytes:
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + payload


@pytest.mark.parametrize("header,payload", [
    ({"weight": {"dtype": "F32", "shape": [6, 4], "data_offsets": [0, 96]}}, bytes(96)),          # lacks biases
    ({"weight": {"dtype": "F32", "shape": [2**40, 4], "data_offsets": [0, 96]}}, bytes(96)),      # shape lies
    ({"weight": {"dtype": "F32", "shape": [6, 4], "data_offsets": [0, 2**40]}}, bytes(96)),       # offsets lie
    ({"weight": {"dtype": "I64", "shape": [6, 4], "data_offsets": [0, 192]},
      "visible_bias": {"dtype": "F32", "shape": [6], "data_offsets": [192, 216]},
      "hidden_bias": {"dtype": "F32", "shape": [4], "data_offsets": [216, 232]}}, bytes(232)),    # integer weight
    ({"weight": {"dtype": "F32", "shape": [6, 4], "data_offsets": [0, 96]},
      "visible_bias": {"dtype": "F32", "shape": [6], "data_offsets": [96, 120]},
      "hidden_bias": {"dtype": "F32", "shape": [4], "data_offsets": [120, 136]}},
     np.full(34, np.nan, np.float32).tobytes()),                                                 # NaN parameters
    ({"weight": {"dtype": "XX", "shape": [6, 4], "data_offsets": [0, 96]}}, bytes(96)),           # unknown dtype
])
def test_crafted_model_files(pristine, scratch, header, payload):
    directory, data = pristine
    target = fresh_copy(directory, scratch)
    (target / "model.safetensors").write_bytes(safetensors_with_header(header, payload))
    rehash(target, "model")
    loaded, code = check(target, data)
    assert isinstance(loaded, CheckpointError) and code == 2


def test_header_length_beyond_the_file(pristine, scratch):
    directory, data = pristine
    target = fresh_copy(directory, scratch)
    (target / "model.safetensors").write_bytes((2**62).to_bytes(8, "little") + b"{}")
    rehash(target, "model")
    loaded, code = check(target, data)
    assert isinstance(loaded, CheckpointError) and code == 2


def test_config_json_not_a_regular_file(pristine, scratch, tmp_path):
    """A FIFO in place of config.json or model.safetensors is refused, not read (no hang)."""
    directory, data = pristine
    for name in ("config.json", "model.safetensors"):
        target = fresh_copy(directory, scratch)
        (target / name).unlink()
        import os

        os.mkfifo(target / name)
        loaded, code = check(target, data)
        assert isinstance(loaded, CheckpointError) and code == 2


# -- claims the file does not back ---------------------------------------------------------------------
PEAK_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    from boltzkit import checkpoint
    from boltzkit.errors import CheckpointError
    checkpoint.load_checkpoint(sys.argv[1])        # warm up: imports, allocator
    for bad in sys.argv[2:]:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            checkpoint.load_checkpoint(bad)
            outcome = "loaded"
        except CheckpointError as e:
            outcome = str(e)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"dir": bad, "extra_kib": after - before, "outcome": outcome}))
""")


def test_size_claims_are_checked_before_allocating(tmp_path):
    """config.json claims the tensor file does not back are refused with at most a few MB of
    extra peak memory, in a fresh process.  Before the fix the claimed model was allocated
    first: for ``visible`` softmax:5000000, 30 million x 4 float64 weights (960 MB); for
    ``n_context`` 30,000,000, 30 million x 4 float32 context weights (480 MB)."""
    good = checkpoint.save(tmp_path / "good", RBM(6, 4, seed=0))
    bad = []
    for kind, model, field, value in [("rbm", RBM(6, 4, seed=0), "visible", "softmax:5000000"),
                                      ("conditional", ConditionalRBM(6, 4, 3, seed=0), "n_context", 30_000_000)]:
        directory = checkpoint.save(tmp_path / kind, model)
        write_json(directory / "config.json", {**read_json(directory / "config.json"), field: value})
        bad.append(str(directory))
    result = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(good), *bad], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    reports = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [r["dir"] for r in reports] == bad
    for report in reports:
        assert report["outcome"].startswith(report["dir"]) and "shape" in report["outcome"], report
        assert report["extra_kib"] < 64 * 1024, report


# -- a larger run --------------------------------------------------------------------------------------
@pytest.mark.slow
@SLOW
@given(st.data())
def test_fuzz_checkpoint_larger_run(pristine, scratch, data):
    directory, data_file = pristine
    target = fresh_copy(directory, scratch)
    config = read_json(target / "config.json")
    for _ in range(data.draw(st.integers(0, 2))):
        path = data.draw(st.sampled_from(config_paths(config)))
        config = set_path(config, path, data.draw(st.sampled_from(JUNK)), delete=data.draw(st.booleans()))
    write_json(target / "config.json", config)
    for role, name in (("model", "model.safetensors"), ("state", "training_state.safetensors")):
        if data.draw(st.booleans()):
            (target / name).write_bytes(data.draw(mutated((target / name).read_bytes())))
            if data.draw(st.booleans()):
                rehash(target, role)
    check(target, data_file)
    assert math  # (used by hypothesis-generated floats in JUNK)
