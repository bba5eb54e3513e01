"""What every command group shares: devices, output paths, input files, JSON, help text.

Each check runs before any work starts and raises a :class:`~boltzkit.errors.BoltzkitError`
naming the flag the user typed, so a bad command ends in one line and exit code 2 with
nothing written.
"""

from __future__ import annotations

import argparse
import json
import math
import stat
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import check_output_directory
from ..errors import BoltzkitError, ConfigurationError, DataError, DivergenceError
from ..training.callbacks import Callback


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default (``(default: …)``; ``none`` for an unset value, ``off`` for
    a switch) unless its help already names it; positionals and required options have none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("%(default)" in text or "default" in text or action.default is argparse.SUPPRESS
                or not action.option_strings or action.required):
            return text
        if action.nargs == 0 and (action.default is None or action.default is False):
            return text + " (default: off)"  # a switch (None: 'not given', for --resume checks)
        if action.default is None:  # identity, not ==: a default of 0 or 0.0 is shown
            return text + " (default: none)"
        return text + " (default: %(default)s)"


def device(name: str | None) -> torch.device:
    """``--device``: auto (CUDA when present, else CPU), cpu, cuda, cuda:N, or mps where it works."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigurationError(f"--device {name!r} is not a device (use cpu, cuda, cuda:N or auto)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigurationError(f"--device {name} was asked for but no CUDA device is available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigurationError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigurationError(f"--device {name} is not available on this machine (use cpu or cuda)")
    elif dev.type != "cpu":
        raise ConfigurationError(f"--device {name}: boltzkit runs on cpu, cuda or mps, not {dev.type}")
    return dev


def output_directory(path: str | Path, flag: str = "--out") -> Path:
    """A directory a checkpoint can be written to (existing directory, or creatable)."""
    return check_output_directory(path, what=flag)


def output_file(path: str | Path, flag: str) -> Path:
    """A regular file to (re)write: not a directory or device, in a writable directory."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        mode = path.stat().st_mode if path.exists() else 0
        if stat.S_ISDIR(mode):
            raise ConfigurationError(f"{flag} {path} is a directory; give a file name")
        if not stat.S_ISREG(mode):
            raise ConfigurationError(f"{flag} {path} is not a regular file")
    output_directory(path.parent if str(path.parent) else Path("."), flag)
    return path


def input_file(path: str | Path, flag: str) -> Path:
    """An existing regular file (FIFOs, devices and directories are refused without reading)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise DataError(f"{flag} {path}: file not found") from None
    except OSError as e:
        raise DataError(f"{flag} {path}: cannot be read ({e.strerror})") from None
    if stat.S_ISDIR(mode):
        raise DataError(f"{flag} {path} is a directory, not a data file")
    if not stat.S_ISREG(mode):
        raise DataError(f"{flag} {path} is not a regular file (a FIFO or device cannot be read as data)")
    return path


def positive(name: str, value: Any, least: int = 1) -> None:
    """A count flag (``--epochs``, ``-n``, …) of at least ``least``."""
    if value is not None and value < least:
        raise ConfigurationError(f"{name} must be at least {least}, got {value}")


def finite_json(result: dict[str, Any]) -> str:
    """``result`` as one JSON object; NaN/inf become null with the reason under ``warnings``
    (JSON has no NaN)."""
    warnings: list[str] = list(result.get("warnings", []))

    def clean(key: str, value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            warnings.append(f"{key} is {value} (not finite); reported as null")
            return None
        if isinstance(value, list):
            return [clean(key, v) for v in value]
        if isinstance(value, dict):
            return {k: clean(f"{key}.{k}", v) for k, v in value.items()}
        return value

    cleaned = {k: clean(k, v) for k, v in result.items() if k != "warnings"}
    if warnings:
        cleaned["warnings"] = warnings
    return json.dumps(cleaned, allow_nan=False)


def print_result(result: dict[str, Any], as_json: bool, width: int = 24) -> None:
    """One JSON object, or one aligned ``key: value`` line each."""
    if as_json:
        print(finite_json(result))
        return
    for key, value in result.items():
        print(f"{key:>{width}}: {value:.4f}" if isinstance(value, float) else f"{key:>{width}}: {value}")


def fail(message: str) -> BoltzkitError:
    """A one-line command-line error (exit code 2)."""
    return BoltzkitError(message)


def fit_status(fit: Any, *args: Any, **kwargs: Any) -> int:
    """Run a training call; 0 when it finishes, 1 (with the message logged) when it diverged —
    the trainer has then restored the last good state, which the command still saves."""
    try:
        fit(*args, **kwargs)
    except DivergenceError as e:
        import logging

        logging.getLogger("boltzkit").warning(str(e))
        return 1
    return 0


def save_run(out: Path, trainer: Any, extra: dict[str, Any], model: Any = None) -> None:
    """The checkpoint of ``model`` (default: ``trainer.model``) with the trainer's training state
    (optimizer, RNG, chains; ``epochs_done`` = ``trainer.epoch``).  On several processes every rank
    calls it (a collective): rank 0 gathers each rank's chains and RNG state
    (:func:`~boltzkit.training.distributed.gather_state`) and alone writes the one atomic
    checkpoint, recording ``"processes": W``."""
    from .. import checkpoint
    from ..training import distributed

    tensors, state = trainer.training_state()
    if trainer.distributed is not None:
        gathered = distributed.gather_state(trainer.distributed, tensors)
        if gathered is None:
            return
        tensors, extra = gathered, {**extra, "processes": trainer.distributed.world}
    checkpoint.save(out, trainer.model if model is None else model,
                    extra={**extra, "epochs_done": trainer.epoch, "training_state": state}, state=tensors)


class SaveEachEpoch(Callback):
    """A training callback: the checkpoint, with everything a bit-for-bit ``--resume`` needs, after
    every epoch (a crash leaves the last finished epoch loadable and resumable), and every
    ``keep_every`` epochs also a kept copy in ``DIR/epoch-NNNN``.  ``model`` (default: the
    trainer's) is what is saved, for commands whose trainer wraps the model."""

    def __init__(self, out: Path, extra: dict[str, Any], keep_every: int | None = None, model: Any = None) -> None:
        self.out, self.extra, self.keep_every, self.model = out, extra, keep_every, model

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, float]) -> None:
        if trainer.failing:  # a guard rejected this epoch: the trainer restores the last good one
            return
        save_run(self.out, trainer, self.extra, self.model)
        if self.keep_every and epoch % self.keep_every == 0:
            save_run(self.out / f"epoch-{epoch:04d}", trainer, self.extra, self.model)


def resumable(directory: str, device: torch.device | str, kind: Any) -> Any:
    """``--resume DIR``: its checkpoint (model, config, training-state tensors), refused in one line
    when it is of another kind or holds no training state."""
    from .. import checkpoint

    saved = checkpoint.load_checkpoint(directory, device, kind=kind, training_state=True)
    if "training_state" not in saved.config or not isinstance(saved.config.get("training"), dict):
        raise ConfigurationError(f"--resume {directory} holds no training state to resume from")
    return saved


def run_settings(args: argparse.Namespace, defaults: dict[str, tuple[str, Any]],
                 saved: dict[str, Any] | None = None, paths: tuple[str, ...] = ()) -> dict[str, Any]:
    """The settings that define a run, written into ``args`` and returned (for the checkpoint).

    ``defaults`` maps each argparse ``dest`` to (its flag, its default); the parser leaves them
    None so that a typed value is known.  A new run takes the typed value, else the default.
    A resumed run (``saved``: the settings its checkpoint recorded) takes the saved values, and
    a typed value that contradicts one is refused in one line rather than silently dropped.
    The ``paths`` (file flags) are kept absolute, so a run resumes from any directory and a
    typed path that names the same file agrees with the saved one.
    """
    settings, conflicts = {}, []
    for dest, (flag, default) in defaults.items():
        typed = getattr(args, dest, None)
        same = typed
        if dest in paths and typed is not None:  # compared and recorded absolute, used as typed
            same = str(Path(typed).resolve())
        if saved is not None and dest in saved:
            value = saved[dest]
            conflicts += contradiction(flag, same, value, shown=typed)
            settings[dest] = value
            setattr(args, dest, typed if typed is not None else value)
        else:
            settings[dest] = default if typed is None else same
            setattr(args, dest, default if typed is None else typed)
    refuse_conflicts(conflicts)
    return settings


def contradiction(flag: str, typed: Any, value: Any, shown: Any = None) -> list[str]:
    """``["--k 5 (the run has 3)"]`` when a flag typed with ``--resume`` (``typed`` not None) differs
    from the resumed run's ``value``, else ``[]``; ``shown`` replaces ``typed`` in the message."""
    if typed is None or typed == value:
        return []
    return [f"{flag} {_shown(typed if shown is None else shown)} (the run has {_shown(value)})"]


def refuse_conflicts(conflicts: list[str]) -> None:
    """One line naming the typed flags (``"--k 5 (the run has 3)"``) that contradict a resumed run."""
    if conflicts:
        raise ConfigurationError(f"--resume continues the saved run; these flags contradict it: "
                                 f"{'; '.join(conflicts)}. Drop them, or start a new run with --out")


def _shown(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def start_or_resume(args: argparse.Namespace, kind: Any, defaults: dict[str, tuple[str, Any]],
                    paths: tuple[str, ...] = ()) -> tuple[Any, dict[str, Any]]:
    """(the ``--resume`` checkpoint or None, the run's settings) for a training command: after
    ``torchrun``'s restart the run resumes from ``--out``; the checkpoint is read on the CPU (the
    processes that ``--nproc`` / ``torchrun`` start move the model to their own device); the
    settings are filled into ``args`` by :func:`run_settings`."""
    resume_on_restart(args)
    saved = resumable(args.resume, "cpu", kind) if args.resume else None
    settings = run_settings(args, defaults, saved_settings(saved.config, args.resume) if saved else None, paths)
    return saved, settings


def saved_settings(config: dict[str, Any], directory: str) -> dict[str, Any]:
    """The ``settings`` a resumable checkpoint recorded (refused when it has none)."""
    settings = config.get("settings")
    if not isinstance(settings, dict):
        raise ConfigurationError(f"--resume {directory}: the checkpoint records no run settings (it was written "
                                 f"before this command could resume); start a new run")
    return settings


def resume_on_restart(args: argparse.Namespace, allowed: bool = True) -> None:
    """After ``torchrun``'s elastic restart of a job (``TORCHELASTIC_RESTART_COUNT`` > 0) whose
    ``--out`` already holds a checkpoint, continue from it: ``args.resume = args.out`` (unless
    ``--resume`` was given, or the command cannot resume: ``allowed`` False)."""
    from ..checkpoint import CONFIG_FILE
    from ..training import distributed

    if (allowed and not args.resume and distributed.restart_count() > 0
            and (Path(args.out) / CONFIG_FILE).is_file()):
        import logging

        logging.getLogger("boltzkit").warning("restart %d of the job: resuming from %s",
                                              distributed.restart_count(), args.out)
        args.resume = args.out
