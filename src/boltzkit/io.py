"""Checkpoints: ``model.safetensors`` (parameters) + ``config.json`` (everything else),
and optionally ``training_state.safetensors`` (optimizer buffers, chains, RNG states).

Both files are written atomically (a temporary file in the same directory, then
``os.replace``), and ``config.json`` records the SHA-256 of the tensor file so that a
mismatched or truncated pair is detected.  Loading never unpickles anything.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from .errors import CheckpointError
from .rbm import RBM

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
STATE_FILE = "training_state.safetensors"
FORMAT = "boltzkit-checkpoint"
FORMAT_VERSION = 1


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def tensor_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    """The safetensors serialisation of ``tensors`` (contiguous CPU copies), ready to write."""
    return safetensors_bytes({k: v.detach().contiguous().cpu() for k, v in tensors.items()})


def write_metrics_csv(path: Path, history: list[dict[str, float]]) -> None:
    """One CSV row per entry of ``history`` (columns: every key seen), written atomically."""
    keys = list(dict.fromkeys(k for row in history for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(path, buffer.getvalue())


def save(directory: str | Path, rbm: RBM, extra: dict[str, Any] | None = None,
         state: dict[str, torch.Tensor] | None = None) -> Path:
    """Save ``rbm`` (and optional extra config and training-state tensors) to ``directory``.

    ``model.safetensors`` holds exactly :meth:`RBM.named_tensors` (e.g. ``weight`` of shape
    n_visible·K × n_hidden, ``visible_bias``, ``hidden_bias``); ``state`` tensors go to
    ``training_state.safetensors``.
    """
    from . import __version__

    directory = Path(directory)
    blob = tensor_bytes(rbm.named_tensors())
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "library_version": __version__,
              **rbm.config(), "tensors": sorted(rbm.named_tensors()),
              "sha256": hashlib.sha256(blob).hexdigest(), **(extra or {})}
    if state:
        state_blob = tensor_bytes(state)
        config["state_sha256"] = hashlib.sha256(state_blob).hexdigest()
        atomic_write_bytes(directory / STATE_FILE, state_blob)
    atomic_write_bytes(directory / MODEL_FILE, blob)
    atomic_write_text(directory / CONFIG_FILE, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return directory


def read_config(directory: str | Path) -> dict[str, Any]:
    """The checkpoint's config.json, validated as one of ours."""
    path = Path(directory) / CONFIG_FILE
    if not Path(directory).is_dir():
        raise CheckpointError(f"checkpoint directory {directory} not found")
    if not path.is_file():
        raise CheckpointError(f"{path} not found: {directory} is not a boltzkit checkpoint")
    try:
        config = json.loads(path.read_text("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}); the checkpoint is corrupt") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{path} was not written by boltzkit (no '\"format\": \"{FORMAT}\"')")
    if int(config.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {config['format_version']}; "
                              f"this boltzkit reads up to {FORMAT_VERSION}")
    return config


def load_tensors(directory: str | Path, config: dict[str, Any], name: str = MODEL_FILE,
                 digest_key: str = "sha256") -> dict[str, torch.Tensor]:
    """The tensors of one file of a checkpoint, after checking it against the config's SHA-256."""
    path = Path(directory) / name
    if not path.is_file():
        raise CheckpointError(f"{path} not found")
    blob = path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != config.get(digest_key):
        raise CheckpointError(f"{path} does not match its config.json (truncated or replaced)")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file: {e}") from None


def load(directory: str | Path, device: str | torch.device | None = None
         ) -> tuple[RBM, dict[str, Any], dict[str, torch.Tensor]]:
    """Load a checkpoint: (model, config, training-state tensors). Bit-for-bit what was saved."""
    config = read_config(directory)
    if config.get("model", "RBM") != "RBM":
        raise CheckpointError(f"{directory} holds a {config['model']} checkpoint, not a plain RBM; "
                              f"use the command that wrote it (e.g. 'boltzkit recommend')")
    try:
        rbm = RBM.from_config(config, device=device)
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{directory}/{CONFIG_FILE} describes no valid model: {e}") from None
    tensors = load_tensors(directory, config)
    params = rbm.named_tensors()
    for name, p in params.items():
        if name not in tensors:
            raise CheckpointError(f"{directory}/{MODEL_FILE} lacks the tensor {name!r}")
        if tuple(tensors[name].shape) != tuple(p.shape):
            raise CheckpointError(f"tensor {name!r} has shape {tuple(tensors[name].shape)}, "
                                  f"the config implies {tuple(p.shape)}")
        with torch.no_grad():
            p.copy_(tensors[name])
    state = load_tensors(directory, config, STATE_FILE, "state_sha256") if "state_sha256" in config else {}
    return rbm, config, state
