"""The compiled draw loop of :mod:`boltzkit.sampling.logistic`, built on first use.

``draws.c`` (next to this file) is compiled by the machine's C compiler (``$CC``, else the one
Python was built with, else ``cc``) with ``-O3 -march=native`` into a cache folder
(``$BOLTZKIT_CACHE``, else ``$XDG_CACHE_HOME/boltzkit``, else ``~/.cache/boltzkit``), named by
a hash of the source, the flags, the compiler and the CPU, and loaded with :mod:`ctypes`: no
build step at install, no Python headers, a fraction of a second once per machine.  Where
that fails (no compiler, a read-only home, ``BOLTZKIT_NATIVE=0``) every function here returns
None and the callers use torch operations that give the same bits, more slowly.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import torch
from torch import Tensor

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("draws.c")
FLAGS = ("-O3", "-std=c99", "-ffp-contract=off", "-fPIC", "-shared")
#: tried in turn: the first that compiles is kept (some compilers do not know -march=native)
TUNING = (("-march=native",), ())


def _compiler() -> list[str] | None:
    for candidate in (os.environ.get("CC"), sysconfig.get_config_var("CC"), "cc", "gcc", "clang"):
        if candidate:
            command = shlex.split(candidate)
            if command and shutil.which(command[0]):
                return command
    return None


def _cpu() -> str:
    """What the CPU can do (a library built with -march=native runs only where that holds)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()}"


def _cache() -> Path:
    if os.environ.get("BOLTZKIT_CACHE"):
        return Path(os.environ["BOLTZKIT_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "boltzkit"


def _build(compiler: list[str], folder: Path) -> Path | None:
    """Compile (or find already compiled) ``draws.c`` in ``folder``; None if the compiler fails."""
    source = SOURCE.read_bytes()
    for tuning in TUNING:
        flags = [*FLAGS, *tuning]
        tag = hashlib.sha256(b"\0".join([source, " ".join(compiler + flags).encode(), _cpu().encode()])).hexdigest()
        target = folder / f"draws-{tag[:20]}.so"
        if target.is_file():
            return target
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as tmp:  # compile aside, then one atomic rename
            built = Path(tmp) / target.name
            done = subprocess.run([*compiler, *flags, str(SOURCE), "-o", str(built)], capture_output=True,
                                  text=True, timeout=120)
            if done.returncode == 0:
                os.replace(built, target)
                return target
            log.debug("compiling %s with %s failed: %s", SOURCE.name, flags, done.stderr.strip()[:500])
    return None


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled draw loop, or None where it cannot be built or loaded (see the module docstring)."""
    if os.environ.get("BOLTZKIT_NATIVE", "1") == "0" or sys.byteorder != "little":
        return None
    compiler = _compiler()
    if compiler is None:
        log.debug("no C compiler found: Bernoulli draws use torch operations")
        return None
    for folder in (_cache(), Path(tempfile.gettempdir()) / f"boltzkit-{os.getuid() if hasattr(os, 'getuid') else 0}"):
        try:
            path = _build(compiler, folder)
            if path is None:
                return None
            lib = ctypes.CDLL(str(path))
        except (OSError, subprocess.SubprocessError) as error:
            log.debug("native draws unavailable in %s: %s", folder, error)
            continue
        lib.boltzkit_draw_logistic.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_float,
                                               ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        lib.boltzkit_draw_logistic.restype = None
        lib.boltzkit_words.argtypes = [ctypes.c_uint64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
        lib.boltzkit_words.restype = None
        return lib
    return None


def available() -> bool:
    """Whether the compiled loop is in use."""
    return library() is not None


def draw_logistic(field: Tensor, beta: float, scaled: bool, key: Tensor, table: Tensor) -> Tensor | None:
    """The draws of :func:`boltzkit.sampling.logistic.bernoulli_logistic` for a float32 CPU field,
    computed in one compiled pass (``key``: one int64 on the CPU, read by the loop itself); None if
    the library is unavailable."""
    lib = library()
    if lib is None:
        return None
    field = field.contiguous()
    out = torch.empty_like(field)
    key = key.contiguous()
    lib.boltzkit_draw_logistic(field.data_ptr(), out.data_ptr(), field.numel(), beta, int(scaled), key.data_ptr(),
                               table.data_ptr())
    return out


def words(key: int, first: int, n: int) -> Tensor | None:
    """SplitMix64 words ``first`` … ``first + n − 1`` of the stream with state ``key`` (int64,
    as :func:`boltzkit.sampling.logistic.splitmix_words`); None if the library is unavailable."""
    lib = library()
    if lib is None:
        return None
    out = torch.empty(n, dtype=torch.int64)
    lib.boltzkit_words(key, first, n, out.data_ptr())
    return out
