"""Checkpoints: one writer and one reader for every model kind.

A checkpoint is a directory with ``config.json`` (the manifest: model kind and config,
library version, the SHA-256 of each tensor file, run settings), ``model.safetensors`` (the
model's tensors) and optionally ``training_state.safetensors`` (optimizer buffers, chains,
RNG states).  Loading never unpickles anything; :func:`load` returns whatever kind was
saved, through the registry from config.json's ``"model"`` name to the class
(:func:`register`).

**The set switches at one instant.**  A save writes the new tensor files under names of
their own (``model.<sha>.safetensors``), then atomically replaces config.json naming those
files and their SHA-256 (the commit point), then renames them to the usual names and
rewrites config.json with those, and finally removes files no manifest names.  A reader
looks for each file under the name config.json gives, then under the usual name, and takes
the one whose SHA-256 matches; so a crash at any point leaves either the old checkpoint or
the new one loadable, never a mixture.  Files are created with the user's umask.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_bytes

from .errors import CheckpointError
from .validation import is_integer

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
STATE_FILE = "training_state.safetensors"
FORMAT = "boltzkit-checkpoint"
#: 1: file by file (boltzkit 0.1); 2: config.json is the manifest of the set (``files``)
FORMAT_VERSION = 2
_CANONICAL = {"model": MODEL_FILE, "state": STATE_FILE}
_DIGEST = {"model": "sha256", "state": "state_sha256"}

#: config.json's "model" name → the class that reads it (``from_checkpoint``)
REGISTRY: dict[str, type[Any]] = {}


def register(cls: type[Any]) -> type[Any]:
    """Class decorator: make :func:`load` rebuild ``cls`` from checkpoints of its kind."""
    REGISTRY[cls.checkpoint_kind] = cls
    return cls


# -- files ---------------------------------------------------------------------------------
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    The file gets the permissions a plain ``open(path, "w")`` would (0666 less the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
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


def _sync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_output_directory(directory: str | Path, what: str = "output directory") -> Path:
    """``directory`` if a checkpoint can be written there (exists as a directory or can be
    created); raise :class:`CheckpointError` naming the problem otherwise — before any work.
    ``what`` names it in the message (the command line passes its flag, e.g. ``--out``)."""
    directory = Path(directory)
    for parent in [directory, *directory.parents]:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                where = "is" if parent == directory else f"lies under {parent}, which is"
                raise CheckpointError(f"{what} {directory} {where} not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise CheckpointError(f"{what} {directory}: {parent} is not writable")
            break
    return directory


# -- writing -------------------------------------------------------------------------------
def save(directory: str | Path, model: Any, extra: dict[str, Any] | None = None,
         state: dict[str, torch.Tensor] | None = None) -> Path:
    """Save ``model`` (any registered kind) with optional extra config and training-state tensors.

    ``model.safetensors`` holds exactly ``model.checkpoint_tensors()`` (for an RBM: ``weight``
    of shape n_visible·K × n_hidden, ``visible_bias``, ``hidden_bias``); ``state`` tensors go to
    ``training_state.safetensors``.  The whole set switches atomically (module docstring).
    """
    return write_checkpoint(directory, model.config(), model.checkpoint_tensors(), extra, state)


def write_checkpoint(directory: str | Path, model_config: dict[str, Any], tensors: dict[str, torch.Tensor],
                     extra: dict[str, Any] | None = None,
                     state: dict[str, torch.Tensor] | None = None) -> Path:
    """The one writer: tensors and manifest, switched at one instant (see the module docstring)."""
    from . import __version__

    directory = check_output_directory(directory)
    directory.mkdir(parents=True, exist_ok=True)
    blobs = {"model": tensor_bytes(tensors)}
    if state:
        blobs["state"] = tensor_bytes(state)
    digests = {role: hashlib.sha256(blob).hexdigest() for role, blob in blobs.items()}
    pending = {role: f"{_CANONICAL[role].removesuffix('.safetensors')}.{digests[role][:16]}.safetensors"
               for role in blobs}
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "library_version": __version__,
              **model_config, "tensors": sorted(tensors), **(extra or {})}
    for role, digest in digests.items():
        config[_DIGEST[role]] = digest
    for role, blob in blobs.items():
        atomic_write_bytes(directory / pending[role], blob)
    _write_manifest(directory, config, pending)                  # the commit point
    for role in blobs:
        os.replace(directory / pending[role], directory / _CANONICAL[role])
    _write_manifest(directory, config, {role: _CANONICAL[role] for role in blobs})
    _sync_directory(directory)
    _remove_unnamed(directory, keep={_CANONICAL[role] for role in blobs})
    return directory


def _write_manifest(directory: Path, config: dict[str, Any], files: dict[str, str]) -> None:
    atomic_write_text(directory / CONFIG_FILE,
                      json.dumps({**config, "files": files}, indent=2, sort_keys=True) + "\n")


def _remove_unnamed(directory: Path, keep: set[str]) -> None:
    """Tensor files of earlier or interrupted saves that the manifest no longer names."""
    for path in directory.iterdir():
        name = path.name
        stale = ((name.startswith("model.") or name.startswith("training_state."))
                 and name.endswith(".safetensors") and name not in keep)
        leftover = name.startswith(".") and name.endswith(".tmp") and (
            name.startswith(f".{CONFIG_FILE}.") or ".safetensors." in name)
        if (stale or leftover) and path.is_file():
            path.unlink(missing_ok=True)


# -- reading -------------------------------------------------------------------------------
class Checkpoint(NamedTuple):
    """What :func:`load_checkpoint` returns: the model, its config.json, training-state tensors."""

    model: Any
    config: dict[str, Any]
    state: dict[str, torch.Tensor]


def read_config(directory: str | Path) -> dict[str, Any]:
    """The checkpoint's config.json, validated as one of ours."""
    directory = Path(directory)
    path = directory / CONFIG_FILE
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} not found")
    if not path.is_file():
        raise CheckpointError(f"{path} not found: {directory} is not a boltzkit checkpoint")
    try:
        config = json.loads(path.read_text("utf-8"))
    except (ValueError, UnicodeDecodeError, OSError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}); the checkpoint is corrupt") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{path} was not written by boltzkit (no '\"format\": \"{FORMAT}\"')")
    version = config.get("format_version", 1)
    if not is_integer(version) or version < 1:
        raise CheckpointError(f"{path}: format_version must be a positive integer, got {_clip(repr(version))}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {version}; this boltzkit reads up to {FORMAT_VERSION}")
    files = config.get("files", {})
    if not isinstance(files, dict) or not all(isinstance(v, str) and "/" not in v and v.endswith(".safetensors")
                                              and not v.startswith(".") for v in files.values()):
        raise CheckpointError(f"{path}: 'files' must map roles to tensor file names in the checkpoint")
    _check_standardise(config, path)
    return config


def _check_standardise(config: dict[str, Any], path: Path) -> None:
    """config.json's optional ``standardise`` (the Gaussian data statistics, ``{"mean": [...],
    "std": [...]}``): finite numbers, positive spreads, one of each per visible unit."""
    if "standardise" not in config:
        return
    stats = config["standardise"]
    n = config.get("n_visible")

    def numbers(key: str) -> list[float] | None:
        values = stats.get(key) if isinstance(stats, dict) else None
        if not isinstance(values, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            return None
        return values

    mean, std = numbers("mean"), numbers("std")
    if (mean is None or std is None or len(mean) != len(std) or not all(s > 0 for s in std)
            or (isinstance(n, int) and len(mean) != n)):
        raise CheckpointError(f"{path}: 'standardise' must hold 'mean' and 'std' lists of finite numbers, one per "
                              f"visible unit, with std > 0")


def _clip(text: str, limit: int = 80) -> str:
    """``text`` on one line and at most ``limit`` characters (config.json values can be huge)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def load_tensors(directory: str | Path, config: dict[str, Any], role: str = "model") -> dict[str, torch.Tensor]:
    """The tensors of one file of a checkpoint (``role`` "model" or "state"), after checking the
    file against the SHA-256 that config.json records for it."""
    directory = Path(directory)
    digest = config.get(_DIGEST[role])
    names = [n for n in (config.get("files", {}).get(role), _CANONICAL[role]) if n]
    found = None
    for name in dict.fromkeys(names):
        path = directory / name
        if not path.is_file():
            continue
        found = path
        blob = path.read_bytes()
        if hashlib.sha256(blob).hexdigest() == digest:
            try:
                return safetensors_load(blob)
            except (SafetensorError, OSError, ValueError, RuntimeError) as e:
                raise CheckpointError(f"{path} is not a readable safetensors file: {e}") from None
    if found is None:
        raise CheckpointError(f"{directory / _CANONICAL[role]} not found")
    raise CheckpointError(f"{found} does not match its config.json (truncated or replaced)")


def load_training_state(directory: str | Path, config: dict[str, Any] | None = None) -> dict[str, torch.Tensor]:
    """The training-state tensors of a checkpoint (empty when it has none)."""
    config = read_config(directory) if config is None else config
    return load_tensors(directory, config, "state") if _DIGEST["state"] in config else {}


def model_class(config: dict[str, Any], directory: str | Path = "") -> type[Any]:
    """The registered class of config.json's ``"model"`` entry."""
    _ensure_registered()
    kind = config.get("model", "RBM")
    if not isinstance(kind, str) or kind not in REGISTRY:
        raise CheckpointError(f"{directory}: unknown model kind {_clip(repr(kind))} (known: "
                              f"{', '.join(sorted(REGISTRY))})")
    return REGISTRY[kind]


def load_checkpoint(directory: str | Path, device: str | torch.device | None = None, *,
                    kind: type[Any] | tuple[type[Any], ...] | None = None, training_state: bool = False) -> Checkpoint:
    """Load a checkpoint of any registered kind: (model, config, training-state tensors).

    Bit-for-bit what was saved.  ``kind`` refuses other model kinds with one line; the training
    state is read (and checked) only when ``training_state`` is true, so a damaged state never
    stops ``evaluate`` or ``sample``.
    """
    config = read_config(directory)
    cls = model_class(config, directory)
    if kind is not None and not issubclass(cls, kind):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        raise CheckpointError(f"{directory} holds a {config.get('model', 'RBM')} checkpoint, not a "
                              f"{' or '.join(k.checkpoint_description for k in kinds)}; use the command "
                              f"that wrote it (e.g. 'boltzkit recommend' for CF models)")
    tensors = load_tensors(directory, config)
    try:
        model = cls.from_checkpoint(config, tensors, device=device)
    except CheckpointError as e:
        raise CheckpointError(f"{directory}: {_clip(str(e), 400)}") from None
    except (KeyError, ValueError, TypeError, AttributeError, RuntimeError, OverflowError, MemoryError) as e:
        raise CheckpointError(f"{directory}/{CONFIG_FILE} describes no valid {_clip(repr(config.get('model', 'RBM')))}"
                              f": {_clip(repr(e), 400)}") from None
    state = load_training_state(directory, config) if training_state else {}
    return Checkpoint(model, config, state)


def load(directory: str | Path, device: str | torch.device | None = None) -> Any:
    """The model saved in ``directory``, whatever its kind (RBM, CF-RBM, …)."""
    return load_checkpoint(directory, device).model


def _ensure_registered() -> None:
    """Import the modules that register the built-in kinds."""
    from .evaluation import sample_quality  # noqa: F401
    from .models import conditional, dbn, deep_boltzmann, energy, gan, rbm, sequence  # noqa: F401
    from .recommend import model  # noqa: F401
