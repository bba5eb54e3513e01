"""The ``boltzkit`` command line: one module per command group, thin over the library.

Every bad input ends in one line ``boltzkit: error: …`` on stderr and exit code 2, before
anything is written; a run that diverges keeps its last good checkpoint and exits with 1.
Library messages (``logging`` under the ``boltzkit`` logger) go to stderr, silenced by
``--quiet``.
"""

from __future__ import annotations

import logging
import sys
from typing import Sequence

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
    _log_to_stderr(bool(getattr(args, "quiet", False)))
    try:
        _check_positive(args)
        return args.func(args)
    except BoltzkitError as e:
        print(f"boltzkit: error: {e}", file=sys.stderr)
        return 2
