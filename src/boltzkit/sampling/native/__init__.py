"""The compiled draw loop of :mod:`boltzkit.sampling.logistic`, built on first use.

``draws.c`` (next to this file) is compiled by the machine's C compiler (``$CC``, else the one
Python was built with, else ``cc``) with ``-O3 -march=native`` into a cache folder
(``$BOLTZKIT_CACHE``, else ``$XDG_CACHE_HOME/boltzkit``, else ``~/.cache/boltzkit``; a folder of
this user's that nobody else may write in), named by a hash of the source, the flags, the
compiler and the CPU's feature flags (``-march=native`` only where those can be read), and
loaded with :mod:`ctypes`: no build step at install, no Python headers, a fraction of a second
once per machine.  Where the cache cannot be used the library is built in a private temporary
folder of the process; a damaged cached file is rebuilt.  Where it all fails (no compiler,
``BOLTZKIT_NATIVE=0``, a big-endian machine) every function here returns None and the callers
use torch operations that give the same bits, more slowly (an INFO log line says so).
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


def _cpu() -> str | None:
    """The CPU's feature flags (a library built with -march=native runs only where they hold), or
    None where they cannot be read: then no -march=native build is made or used."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return None


def _cache() -> Path | None:
    """``$BOLTZKIT_CACHE``, else ``$XDG_CACHE_HOME/boltzkit``, else ``~/.cache/boltzkit``; None
    where none of them is an absolute path (no home directory, as in some containers)."""
    try:
        if os.environ.get("BOLTZKIT_CACHE"):
            folder = Path(os.environ["BOLTZKIT_CACHE"])
        else:
            xdg = os.environ.get("XDG_CACHE_HOME")
            folder = (Path(xdg) if xdg else Path.home() / ".cache") / "boltzkit"
    except RuntimeError:  # Path.home() without HOME or a passwd entry
        return None
    return folder if folder.is_absolute() else None


def _private(folder: Path) -> bool:
    """Whether ``folder`` belongs to this user and nobody else may write in it (else a library
    planted there could be loaded)."""
    if not hasattr(os, "getuid"):
        return True
    info = folder.stat()
    return info.st_uid == os.getuid() and not info.st_mode & 0o022


def _build(compiler: list[str], folder: Path) -> Path | None:
    """Compile (or find already compiled) ``draws.c`` in ``folder``; None if the compiler fails."""
    source = SOURCE.read_bytes()
    cpu = _cpu()
    for tuning in TUNING if cpu is not None else ((),):
        flags = [*FLAGS, *tuning]
        tag = hashlib.sha256(b"\0".join([source, " ".join(compiler + flags).encode(),
                                         (cpu or platform.machine()).encode()])).hexdigest()
        target = folder / f"draws-{tag[:20]}.so"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not _private(folder):
            raise OSError(f"{folder} is not this user's alone")
        if target.is_file():
            return target
        with tempfile.TemporaryDirectory(dir=folder) as tmp:  # compile aside, then one atomic rename
            built = Path(tmp) / target.name
            done = subprocess.run([*compiler, *flags, str(SOURCE), "-o", str(built)], capture_output=True,
                                  text=True, errors="replace", timeout=120)
            if done.returncode == 0:
                os.replace(built, target)
                return target
            log.debug("compiling %s with %s failed: %s", SOURCE.name, flags, done.stderr.strip()[:500])
    return None


def _load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    lib.boltzkit_draw_logistic.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_float,
                                           ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    lib.boltzkit_draw_logistic.restype = None
    lib.boltzkit_words.argtypes = [ctypes.c_uint64, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    lib.boltzkit_words.restype = None
    return lib


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled draw loop, or None where it cannot be built or loaded (see the module docstring)."""
    if os.environ.get("BOLTZKIT_NATIVE", "1") == "0" or sys.byteorder != "little":
        return None
    compiler = _compiler()
    if compiler is None:
        log.info("no C compiler found: Bernoulli draws use torch operations (the same bits, 2-4x slower)")
        return None
    cache = _cache()
    for folder in ([cache] if cache is not None else []) + [None]:  # None: a private folder of this process
        try:
            if folder is None:
                folder = Path(tempfile.mkdtemp(prefix="boltzkit-"))
            path = _build(compiler, folder)
            if path is None:
                break
            try:
                return _load(path)
            except (OSError, AttributeError):  # a damaged or foreign file: build it again, once
                path.unlink(missing_ok=True)
                path = _build(compiler, folder)
                if path is None:
                    break
                return _load(path)
        except (OSError, AttributeError, subprocess.SubprocessError) as error:
            log.debug("native draws unavailable in %s: %s", folder, error)
    log.info("the compiled draw loop could not be built: Bernoulli draws use torch operations (the same bits, "
             "2-4x slower)")
    return None


def available() -> bool:
    """Whether the compiled loop is in use."""
    return library() is not None


def draw_logistic(field: Tensor, beta: float, scaled: bool, key: Tensor, table: Tensor) -> Tensor | None:
    """The draws of :func:`boltzkit.sampling.logistic.bernoulli_logistic` for a float32 CPU field,
    computed in one compiled pass (``key``: one int64 on the CPU, read by the loop itself; ``table``:
    :func:`~boltzkit.sampling.logistic.logit_table`); None if the library is unavailable."""
    lib = library()
    if lib is None:
        return None
    if field.dtype != torch.float32 or field.device.type != "cpu":
        raise ValueError(f"the compiled draw takes a float32 CPU field, not {field.dtype} on {field.device}")
    if key.dtype != torch.int64 or key.numel() < 1 or key.device.type != "cpu":
        raise ValueError("the compiled draw's key must be an int64 CPU tensor")
    if table.dtype != torch.float32 or table.numel() != 1 << 16 or not table.is_contiguous() \
            or table.device.type != "cpu":
        raise ValueError("the compiled draw's table must be the 65,536 float32 entries of logit_table()")
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
    lib.boltzkit_words(key & ((1 << 64) - 1), first, n, out.data_ptr())
    return out
