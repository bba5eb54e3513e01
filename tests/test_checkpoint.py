"""Checkpoints: bit-for-bit reload, atomic writes, and clear errors for corrupt or foreign files."""

from __future__ import annotations

import json

import pytest
import torch

from boltzkit import checkpoint as io
from boltzkit.errors import CheckpointError
from boltzkit.models.rbm import RBM
from conftest import random_rbm


def test_round_trip_is_bit_for_bit(tmp_path):
    rbm = random_rbm(7, 5, dtype=torch.float32)
    io.save(tmp_path, rbm, state={"chains": torch.ones(3, 7)})
    loaded, config, state = io.load_checkpoint(tmp_path, training_state=True)
    for name, p in rbm.named_tensors().items():
        assert torch.equal(loaded.named_tensors()[name], p), name
    assert loaded.weight.dtype == torch.float32
    assert torch.equal(state["chains"], torch.ones(3, 7))
    assert config["n_visible"] == 7 and config["n_hidden"] == 5


def test_file_holds_exactly_the_named_tensors(tmp_path):
    from safetensors.torch import load_file

    io.save(tmp_path, RBM(6, 4))
    tensors = load_file(str(tmp_path / io.MODEL_FILE))
    assert set(tensors) == {"weight", "visible_bias", "hidden_bias"}
    assert tensors["weight"].shape == (6, 4)


def test_missing_directory_and_foreign_config(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        io.load(tmp_path / "nope")
    (tmp_path / io.CONFIG_FILE).write_text(json.dumps({"hello": 1}))
    with pytest.raises(CheckpointError, match="not written by boltzkit"):
        io.load(tmp_path)
    (tmp_path / io.CONFIG_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        io.load(tmp_path)


def test_truncated_tensor_file_is_detected(tmp_path):
    io.save(tmp_path, RBM(6, 4))
    path = tmp_path / io.MODEL_FILE
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="truncated"):
        io.load(tmp_path)


def test_shape_mismatch_is_detected(tmp_path):
    io.save(tmp_path, RBM(6, 4))
    config = json.loads((tmp_path / io.CONFIG_FILE).read_text())
    config["n_hidden"] = 5
    (tmp_path / io.CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="shape"):
        io.load(tmp_path)


def test_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "file.bin"
    io.atomic_write_bytes(target, b"old")

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(io.os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        io.atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]
