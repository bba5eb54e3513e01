"""The ``boltzkit`` command line: one module per command group, thin over the library.

Every bad input ends in one line ``boltzkit: error: …`` on stderr and exit code 2, before
anything is written; a run that diverges keeps its last good checkpoint and exits with 1.
Library messages (``logging`` under the ``boltzkit`` logger) go to stderr, silenced by
``--quiet``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from ..errors import BoltzkitError
from .core import _check_positive, build_parser

__all__ = ["main", "build_parser"]


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the message (tests and notebooks
    replace it)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _log_to_stderr(quiet: bool) -> None:
    logger = logging.getLogger("boltzkit")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("boltzkit: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for --nproc, which starts the command again
    _log_to_stderr(bool(getattr(args, "quiet", False)))
    try:
        _check_positive(args)
        return args.func(args)
    except BoltzkitError as e:
        print(f"boltzkit: error: {e}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as e:  # a size no check foresaw: one line, not a traceback
        if not _out_of_memory(e):
            raise
        print(f"boltzkit: error: out of memory ({_first_line(e) or type(e).__name__}); "
              "use a smaller model, batch, number of chains or samples", file=sys.stderr)
        return 2
    except BrokenPipeError:  # stdout closed early (`boltzkit … | head`)
        _silence_stdout()
        print("boltzkit: error: the output was closed before the command finished", file=sys.stderr)
        return 2


def _out_of_memory(error: BaseException) -> bool:
    """NumPy's MemoryError, torch's OutOfMemoryError, or the CPU allocator's RuntimeError."""
    import torch

    oom = getattr(torch, "OutOfMemoryError", None)
    return (isinstance(error, MemoryError) or (oom is not None and isinstance(error, oom))
            or "can't allocate memory" in str(error) or "out of memory" in str(error).lower())


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    line = text.splitlines()[0] if text else ""
    return line.split("DefaultCPUAllocator: ", 1)[-1]  # drop torch's "[enforce fail at …]" prefix


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush raises no second error."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no file descriptor (captured output)
        pass
