"""Property-based (hypothesis) tests of every file loader on hostile bytes (issue #21, items 3, 5, 8).

For idx (plain and gzipped), MATLAB .mat (v4, v5, v5 compressed), .npy, .npz (stored and
deflated), CSV/text (plain and gzipped) and the MovieLens-style ratings loader, random bytes and
mutations of a valid file (bytes flipped, cut, inserted or deleted; header numbers replaced by
0, 2**31, 2**32 - 1, 2**40, 2**63 - 1, ...; text tokens replaced by NaN, 1e999, huge integers)
must end in one of two ways:

- a valid result (a numeric float32 matrix from ``load_array``; a consistent ``RatingData``), or
- a one-line :class:`boltzkit.errors.DataError` naming the file,

never another exception type, never a hang (a 10 s alarm per call), and never an allocation far
beyond the file: the peak of traced allocations (numpy registers its buffers with tracemalloc)
must stay under ``32 MiB + 16 x file size``.  Gzip bombs, FIFOs, devices and headers that claim
more than the file holds are also checked directly.

``pytest -m slow tests/test_fuzz_loaders.py`` runs ten times as many examples per loader.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import signal
import socket
import struct
import tempfile
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from boltzkit.data import formats
from boltzkit.errors import BoltzkitError, DataError
from boltzkit.recommend.ratings import RatingData, load_ratings

# CI replays a fixed set of examples (derandomize) so that a run is repeatable; locally each
# run draws new ones, and `pytest -m slow` draws ten times as many.
FAST = settings(max_examples=150, deadline=None, database=None, derandomize=bool(os.environ.get("CI")),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SLOW = settings(FAST, max_examples=1500)

HANG_SECONDS = 10
ALLOC_SLACK = 32 << 20   # numpy, scipy and zipfile bookkeeping
ALLOC_FACTOR = 16        # a legitimate parse copies the content a few times (bytes, array, float32)

# Numbers a mutated header field is set to: zero, one, sign and width boundaries, huge claims.
INTERESTING = [0, 1, 2, 7, 255, 256, 2**15, 2**16 - 1, 2**31 - 1, 2**31, 2**32 - 1, 2**40, 2**62,
               2**63 - 1, 2**64 - 1]
# Tokens a mutated text field is set to.
TOKENS = ["nan", "NaN", "inf", "-inf", "1e999", "-1e999", "9" * 25, "-" + "9" * 25, "1" * 5000, "1e308",
          "1_000", "0x10", "", " ", ",", ";", "\t", "::", '"', '"1"', "#", "\x00", "é", "\u0663", "1.5",
          "-3", "+4", "4.0", "0", "-0", "9223372036854775807", "9223372036854775808", "-9223372036854775809"]


class Hang(Exception):
    """A loader ran past HANG_SECONDS."""


@contextlib.contextmanager
def hang_alarm(seconds: int = HANG_SECONDS) -> Iterator[None]:
    def ring(signum, frame):  # noqa: ARG001
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def memory_cap(extra: int = 2 << 30) -> Iterator[None]:
    """Limit the address space to its current size plus ``extra`` bytes while the block runs, so
    a loader that regresses into reading /dev/zero or allocating a header's claim fails with
    MemoryError instead of exhausting the machine (Linux; elsewhere a no-op)."""
    try:
        import resource

        status = Path("/proc/self/status").read_text()
        vm_size = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmSize:"))) * 1024
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, StopIteration, ValueError):
        yield
        return
    cap = vm_size + extra if hard == resource.RLIM_INFINITY else min(vm_size + extra, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def outcome(load: Callable[[Path], object], path: Path):
    """``load(path)``'s result, or the DataError it raised, after checking the contract: only
    BoltzkitError escapes, its message is one line naming the file, no hang, and the peak of
    traced allocations stays within ALLOC_SLACK + ALLOC_FACTOR x the file's size."""
    size = path.stat().st_size if path.is_file() else 0
    tracemalloc.start()
    try:
        with hang_alarm(), memory_cap():
            try:
                result = load(path)
            except BoltzkitError as e:
                result = e
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= ALLOC_SLACK + ALLOC_FACTOR * size, f"allocated {peak:,} bytes for a {size:,}-byte file"
    if isinstance(result, BoltzkitError):
        assert isinstance(result, DataError), type(result)
        message = str(result)
        assert "\n" not in message and len(message) < 600, message
        assert path.name in message, message
    return result


def check_matrix(result, labels: bool = False) -> None:
    """A result of load_array: a DataError, or (float32 2-D non-empty contiguous matrix, labels)."""
    if isinstance(result, DataError):
        return
    x, y = result
    assert isinstance(x, np.ndarray) and x.dtype == np.float32 and x.ndim == 2 and x.size > 0
    assert x.flags.c_contiguous
    if labels:
        assert isinstance(y, np.ndarray) and y.shape == (x.shape[0],)
    else:
        assert y is None


def check_array(result) -> None:
    if not isinstance(result, DataError):
        assert isinstance(result, np.ndarray)


def check_ratings(result) -> None:
    """A result of load_ratings: a DataError, or RatingData whose invariants hold (rebuilt checked)."""
    if isinstance(result, DataError):
        return
    assert isinstance(result, RatingData) and len(result) > 0
    RatingData(result.users, result.items, result.ratings, result.user_ids, result.item_ids,
               result.n_levels)  # the validating constructor: ids in range, ratings in 1..K, no repeats
    assert result.user_ids.dtype == np.int64 and result.item_ids.dtype == np.int64


# -- mutations ----------------------------------------------------------------------------------
@st.composite
def mutated(draw, seed: bytes, text: bool = False, max_ops: int = 4) -> bytes:
    """``seed`` with a few random edits: flip, cut, insert, delete, or overwrite a header number
    (4 or 8 bytes, either byte order); with ``text`` also replace a field by a hostile token."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, max_ops))):
        kinds = ["flip", "cut", "insert", "delete", "number"] + (["token"] * 3 if text else [])
        kind = draw(st.sampled_from(kinds))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        elif kind == "number":
            width, order = draw(st.sampled_from([(4, ">"), (4, "<"), (8, ">"), (8, "<"), (2, "<"), (1, ">")]))
            value = draw(st.sampled_from(INTERESTING)) % (1 << (8 * width))
            data[at:at + width] = value.to_bytes(width, "big" if order == ">" else "little")
        elif kind == "token":
            text_now = data.decode("latin1")
            fields = [i for i, c in enumerate(text_now) if c in ",\t\n:; "]
            stop = draw(st.sampled_from(fields)) if fields else len(text_now)
            start = text_now.rfind(",", 0, stop) + 1 if "," in text_now[:stop] else max(
                text_now.rfind("\n", 0, stop) + 1, text_now.rfind("\t", 0, stop) + 1)
            token = draw(st.sampled_from(TOKENS)).encode("utf-8")
            data[start:stop] = token
    return bytes(data)


def maybe_random(seed: bytes, text: bool = False) -> st.SearchStrategy[bytes]:
    """Mostly mutations of ``seed``; sometimes random bytes behind its first 8 bytes (the magic)."""
    return st.one_of(mutated(seed, text), mutated(seed, text), mutated(seed, text),
                     st.binary(max_size=600).map(lambda b: seed[:8] + b), st.binary(max_size=300))


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="boltzkit-fuzz-") as d:
        yield Path(d)


def write(directory: Path, name: str, raw: bytes) -> Path:
    path = directory / name
    path.write_bytes(raw)
    return path


# -- valid seed files -----------------------------------------------------------------------------
def idx_bytes(arr: np.ndarray) -> bytes:
    code = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D,
            np.float64: 0x0E}[arr.dtype.type]
    return (bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
            + arr.astype(arr.dtype.newbyteorder(">")).tobytes())


RNG = np.random.default_rng(0)
IDX = idx_bytes(RNG.integers(0, 256, size=(5, 3, 4), dtype=np.uint8))
IDX_F64 = idx_bytes(RNG.normal(size=(4, 6)))
MATRIX = RNG.integers(0, 2, size=(6, 5)).astype(np.float64)


def npy_bytes(arr: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, arr)
    return buffer.getvalue()


def npz_bytes(compressed: bool, **arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def mat_bytes(**kwargs) -> bytes:
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"X": MATRIX, "y": np.arange(6.0)}, **kwargs)
    return buffer.getvalue()


NPY = npy_bytes(MATRIX)
NPY_F = npy_bytes(np.asfortranarray(MATRIX.astype(">i4")))
NPZ = npz_bytes(False, X=MATRIX, y=np.arange(6))
NPZ_DEFLATED = npz_bytes(True, X=MATRIX, y=np.arange(6))
MAT5 = mat_bytes()
MAT5_COMPRESSED = mat_bytes(do_compression=True)
MAT4 = mat_bytes(format="4")
CSV = b"a,b,c,d,e\n" + b"".join(b",".join(b"%g" % v for v in row) + b"\n" for row in MATRIX)
TEXT = b"# comment\n" + b"".join(b" ".join(b"%g" % v for v in row) + b"\n" for row in MATRIX)
RATINGS_TSV = b"".join(b"%d\t%d\t%d\t8811%d\n" % (u, i, 1 + (u * i) % 5, u) for u in range(1, 5)
                       for i in (3, 7, 9))
RATINGS_DAT = RATINGS_TSV.replace(b"\t", b"::")
RATINGS_CSV = b"userId,movieId,rating\n" + b"".join(b"%d,%d,%d.0\n" % (u, i, 1 + (u + i) % 5)
                                                     for u in (-2, 10, 11) for i in (1, 2))


def test_seed_files_are_valid(workdir):
    """The mutation seeds load (so a mutation starts from a valid file)."""
    for name, raw in [("s.idx", IDX), ("s2.idx", IDX_F64), ("s.npy", NPY), ("f.npy", NPY_F), ("s.npz", NPZ),
                      ("d.npz", NPZ_DEFLATED), ("s.mat", MAT5), ("c.mat", MAT5_COMPRESSED), ("v4.mat", MAT4),
                      ("s.csv", CSV), ("s.txt", TEXT), ("s.csv.gz", gzip.compress(CSV))]:
        x, _ = formats.load_array(write(workdir, name, raw), **({"key": "X"} if name.endswith(("npz", "mat"))
                                                                 else {}))
        assert x.ndim == 2 and x.shape[0] >= 4
    np.testing.assert_array_equal(formats.load_npy(write(workdir, "f.npy", NPY_F)), MATRIX)
    for raw in (RATINGS_TSV, RATINGS_DAT, RATINGS_CSV):
        assert len(load_ratings(write(workdir, "r.data", raw))) == 12 if raw is not RATINGS_CSV else 6


# -- idx ------------------------------------------------------------------------------------------
@FAST
@given(raw=st.one_of(maybe_random(IDX), maybe_random(IDX_F64)), gz=st.booleans())
def test_fuzz_idx(workdir, raw, gz):
    path = write(workdir, "images-idx3-ubyte" + (".gz" if gz else ""), gzip.compress(raw, 1) if gz else raw)
    check_array(outcome(formats.load_idx, path))
    check_matrix(outcome(formats.load_array, path))


@FAST
@given(raw=mutated(gzip.compress(IDX)))
def test_fuzz_gzip_stream(workdir, raw):
    """Mutations of the compressed bytes themselves (CRC, lengths, deflate blocks)."""
    path = write(workdir, "images.idx.gz", raw)
    check_array(outcome(formats.load_idx, path))
    check_matrix(outcome(formats.load_array, path))


@pytest.mark.parametrize("dims", [
    (2**32 - 1,) * 4,                  # product 2**128: overflows int64
    (2**16,) * 4,                      # product exactly 2**64: wrapped to 0 in int64 before the fix
    (2**31, 2**31, 4),                 # wraps to 0 times the item size
    (2**20, 2**20),                    # 2**40 elements
])
def test_idx_header_overflowing_int64_is_refused_before_allocating(workdir, dims):
    raw = bytes([0, 0, 0x08, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + bytes(64)
    path = write(workdir, "huge-idx3-ubyte", raw)
    for load in (formats.load_idx, formats.load_array):
        result = outcome(load, path)
        assert isinstance(result, DataError) and "claims" in str(result), result


# -- MATLAB -----------------------------------------------------------------------------------------
@FAST
@given(raw=st.one_of(maybe_random(MAT5), maybe_random(MAT5_COMPRESSED), maybe_random(MAT4)))
def test_fuzz_mat(workdir, raw):
    path = write(workdir, "data.mat", raw)
    check_array(outcome(lambda p: formats.load_mat(p, "X"), path))
    check_matrix(outcome(lambda p: formats.load_array(p, "X"), path))


# -- NumPy ----------------------------------------------------------------------------------------
@FAST
@given(raw=st.one_of(maybe_random(NPY), maybe_random(NPY_F)))
def test_fuzz_npy(workdir, raw):
    path = write(workdir, "data.npy", raw)
    check_array(outcome(formats.load_npy, path))
    check_matrix(outcome(formats.load_array, path))


@FAST
@given(raw=st.one_of(maybe_random(NPZ), maybe_random(NPZ_DEFLATED)))
def test_fuzz_npz(workdir, raw):
    path = write(workdir, "data.npz", raw)
    check_array(outcome(lambda p: formats.load_npz(p, "X"), path))
    check_matrix(outcome(lambda p: formats.load_array(p, "X", label_key="y"), path), labels=True)


@FAST
@given(raw=mutated(NPY, max_ops=3), deflate=st.booleans())
def test_fuzz_npz_members(workdir, raw, deflate):
    """A mutated .npy inside a valid zip archive (so the member parser, not zipfile, sees it)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED) as z:
        z.writestr("X.npy", raw)
    path = write(workdir, "members.npz", buffer.getvalue())
    check_array(outcome(formats.load_npz, path))
    check_matrix(outcome(formats.load_array, path))


def npy_header_bytes(shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


@pytest.mark.parametrize("shape", [(2**40,), (2**31,), (2**20, 2**20), (2**62, 4), (2**32 - 1,) * 4])
def test_npy_header_claiming_more_than_the_file_is_refused_before_allocating(workdir, shape):
    """Before the fix numpy allocated the claimed array first: 17 GB for shape (2**31,), MemoryError
    (a traceback) for 2**40."""
    raw = npy_header_bytes(shape) + bytes(64)
    npy = write(workdir, "huge.npy", raw)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("X.npy", raw)
    npz = write(workdir, "huge.npz", buffer.getvalue())
    for load, path in [(formats.load_npy, npy), (formats.load_array, npy), (formats.load_npz, npz),
                       (formats.load_array, npz)]:
        result = outcome(load, path)
        assert isinstance(result, DataError) and "claims" in str(result), result


def test_npy_header_oddities(workdir):
    """Negative sizes, non-dict headers, unknown versions, object dtypes: one-line DataError each."""
    good = npy_header_bytes((2, 3))
    cases = {
        "negative": npy_header_bytes((-1, 3)) + bytes(48),
        "tuple": good.replace(b"{'descr'", b"('descr'").replace(b"(2, 3), }", b"(2, 3), )") + bytes(48),
        "version": b"\x93NUMPY\x09\x00" + good[8:] + bytes(48),
        "object": npy_header_bytes((2,), "|O") + bytes(16),
        "descr": good.replace(b"'<f8'", b"'<q9'") + bytes(48),
        "long header": b"\x93NUMPY\x01\x00\xff\xff" + b" " * 100,
    }
    for name, raw in cases.items():
        result = outcome(formats.load_npy, write(workdir, f"{name}.npy", raw))
        assert isinstance(result, DataError), (name, result)
    assert "pickle" in str(outcome(formats.load_npy, workdir / "object.npy"))


def test_npy_matches_numpy_on_valid_files(workdir):
    """The own header parser reads what numpy wrote: dtypes, byte orders, Fortran order, 0-d, empty."""
    arrays = [np.arange(12.0).reshape(3, 4), np.asfortranarray(np.arange(6, dtype=">i2").reshape(2, 3)),
              np.array(3.5), np.zeros((0, 4), np.float32), np.array([True, False]),
              np.arange(24, dtype=np.uint8).reshape(2, 3, 4)]
    for i, arr in enumerate(arrays):
        path = workdir / f"ok{i}.npy"
        np.save(path, arr)
        out = formats.load_npy(path)
        assert out.dtype == arr.dtype and out.shape == arr.shape and out.flags.writeable
        assert out.flags.f_contiguous == arr.flags.f_contiguous or arr.ndim < 2
        np.testing.assert_array_equal(out, np.load(path))


# -- CSV / text -----------------------------------------------------------------------------------
@FAST
@given(raw=st.one_of(mutated(CSV, text=True), mutated(TEXT, text=True), st.binary(max_size=300),
                     st.text(alphabet=st.sampled_from("0123456789.,;-+eE \t\n#\"nafi"), max_size=200)
                     .map(str.encode)),
       gz=st.booleans())
def test_fuzz_csv(workdir, raw, gz):
    path = write(workdir, "table.csv" + (".gz" if gz else ""), gzip.compress(raw, 1) if gz else raw)
    result = outcome(formats.load_csv, path)
    if not isinstance(result, DataError):
        x, y = result
        assert x.dtype == np.float64 and x.ndim == 2 and y is None
    check_matrix(outcome(formats.load_array, path))


# -- ratings --------------------------------------------------------------------------------------
@FAST
@given(raw=st.one_of(mutated(RATINGS_TSV, text=True), mutated(RATINGS_DAT, text=True),
                     mutated(RATINGS_CSV, text=True), st.binary(max_size=200)),
       n_levels=st.sampled_from([None, 5, 10]))
def test_fuzz_ratings(workdir, raw, n_levels):
    path = write(workdir, "u.data", raw)
    result = outcome(lambda p: load_ratings(p, n_levels=n_levels), path)
    check_ratings(result)
    if n_levels is not None and not isinstance(result, DataError):
        assert result.n_levels == n_levels


@pytest.mark.parametrize("line,message", [
    ("99999999999999999999999\t2\t3", "user id '99999999999999999999999' does not fit a 64-bit integer"),
    ("1\t9223372036854775808\t3", "item id '9223372036854775808' does not fit a 64-bit integer"),
    ("-9223372036854775809\t2\t3", "does not fit a 64-bit integer"),
    ("1" * 5000 + "\t2\t3", "does not fit a 64-bit integer"),   # before: the 5000 digits in the message
    ("1\t2\t1e300", "rating '1e300' is outside 1..K"),              # before: OverflowError traceback
    ("1\t2\t99999999999999999999", "is outside 1..K"),              # before: OverflowError traceback
    ("1_0\t2\t3", "user id '1_0' is not an integer"),               # before: read as user 10
    ("\u0663\t2\t3", "user id '\u0663' is not an integer"),         # before: read as user 3
    ("1.5\t2\t3", "user id '1.5' is not an integer"),
    ("1\t2\tnan", "rating 'nan' is not an integer"),
])
def test_ratings_ids_beyond_int64_and_odd_integers_are_refused(workdir, line, message):
    path = write(workdir, "ids.tsv", f"1\t1\t1\n{line}\n".encode())
    with pytest.raises(DataError) as info:
        load_ratings(path)
    text = str(info.value)
    assert text.startswith(f"{path}:2: ") and message in text and len(text) < 200, text


def test_ratings_keep_their_promises(workdir):
    """What the loader promised before the fix still holds: negative and int64-extreme ids are
    ids, ``4.0`` is 4, a repeated pair is refused with both line numbers, K defaults to the max."""
    path = write(workdir, "ok.tsv", b"-5\t9223372036854775807\t4.0\n-9223372036854775808\t1\t2\n")
    data = load_ratings(path)
    assert data.user_ids.tolist() == [-9223372036854775808, -5]
    assert data.item_ids.tolist() == [1, 9223372036854775807] and data.n_levels == 4
    dup = write(workdir, "dup.tsv", b"1\t2\t3\n4\t5\t1\n1\t2\t4\n")
    with pytest.raises(DataError, match=r"dup.tsv:3: duplicate rating for user 1, item 2 \(first on line 1\)"):
        load_ratings(dup)
    for bad in ("abc", 0, -1, 2.5, float("nan"), True):
        with pytest.raises(DataError, match="n_levels must be a positive integer"):
            load_ratings(path, n_levels=bad)


# -- inputs that never end: FIFOs, devices, sockets, directories ----------------------------------
LOADERS: dict[str, Callable[[Path], object]] = {
    "load_array": formats.load_array, "load_idx": formats.load_idx, "load_mat": formats.load_mat,
    "load_npy": formats.load_npy, "load_npz": formats.load_npz, "load_csv": formats.load_csv,
    "load_mnist": formats.load_mnist, "load_ratings": load_ratings,
}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("name", sorted(LOADERS))
def test_fifo_is_refused_at_once(tmp_path, name):
    """Before the fix a FIFO with no writer blocked open() forever (the alarm turns that into Hang)."""
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    with hang_alarm(5), memory_cap(), pytest.raises(DataError, match=r"pipe.csv: is not a regular file \(a FIFO"):
        LOADERS[name](fifo)


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_devices_sockets_and_directories_are_refused(tmp_path, name):
    targets = [Path("/dev/zero"), Path("/dev/null")] if Path("/dev/zero").exists() else []
    with socket.socket(socket.AF_UNIX) as server:
        sock = tmp_path / "s.sock"
        server.bind(str(sock))
        for target in targets + [sock]:
            with hang_alarm(5), memory_cap(), pytest.raises(DataError, match="is not a regular file"):
                LOADERS[name](target)
    with pytest.raises(DataError, match="is a directory"):
        LOADERS[name](tmp_path)
    with pytest.raises(DataError, match="file not found"):
        LOADERS[name](tmp_path / "absent")


def test_symlink_to_a_fifo_is_refused(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    (tmp_path / "link.npy").symlink_to(fifo)
    with hang_alarm(5), memory_cap(), pytest.raises(DataError, match="is not a regular file"):
        formats.load_array(tmp_path / "link.npy")


# -- decompression bombs ----------------------------------------------------------------------------
@pytest.fixture
def small_cap(monkeypatch) -> int:
    cap = 1 << 20
    monkeypatch.setattr(formats, "MAX_DECOMPRESSED_BYTES", cap)
    return cap


def test_gzip_bomb_is_refused_without_inflating_it_all(workdir, small_cap):
    """2 MiB of zeros (a 2 KB gzip) against a 1 MiB cap: refused after at most cap + one chunk."""
    header = idx_bytes(np.zeros((2048, 32, 32), np.uint8))[:16]
    path = write(workdir, "bomb-idx3-ubyte.gz", gzip.compress(header + bytes(2 << 20)))
    for load in (formats.load_idx, formats.load_array, formats.load_csv):
        result = outcome(load, path)
        assert isinstance(result, DataError) and "would exceed 1,048,576 bytes" in str(result), result


def test_npz_member_bomb_is_refused(workdir, small_cap):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("X.npy", npy_bytes(np.zeros((512, 512))))   # 2 MiB inflated
    path = write(workdir, "bomb.npz", buffer.getvalue())
    result = outcome(formats.load_npz, path)
    assert isinstance(result, DataError) and "would exceed" in str(result), result


def test_npz_member_lying_about_its_size_is_refused(workdir):
    """A member whose zip header claims fewer bytes than it inflates to: zipfile stops at the
    claim, and the .npy header's claim then exceeds the bytes present."""
    raw = npy_bytes(np.zeros((64, 64)))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("X.npy", raw)
    blob = bytearray(buffer.getvalue())
    local = blob.index(b"PK\x03\x04")
    central = blob.index(b"PK\x01\x02")
    for offset in (local + 22, central + 24):  # uncompressed size fields
        struct.pack_into("<I", blob, offset, 200)
    result = outcome(formats.load_npz, write(workdir, "liar.npz", bytes(blob)))
    assert isinstance(result, DataError), result


def test_mat_compressed_bomb_is_refused(workdir, small_cap):
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"X": np.zeros((512, 512))}, do_compression=True)  # 2 MiB inflated
    path = write(workdir, "bomb.mat", buffer.getvalue())
    result = outcome(formats.load_mat, path)
    assert isinstance(result, DataError) and "compressed MATLAB variables would exceed" in str(result), result


def test_decompression_under_the_cap_still_loads(workdir, small_cap):
    x = RNG.integers(0, 256, size=(20, 8, 8), dtype=np.uint8)
    path = write(workdir, "ok-idx3-ubyte.gz", gzip.compress(idx_bytes(x)))
    np.testing.assert_array_equal(formats.load_idx(path), x)
    concatenated = write(workdir, "two.csv.gz", gzip.compress(b"1,2\n") + gzip.compress(b"3,4\n"))
    np.testing.assert_array_equal(formats.load_csv(concatenated)[0], [[1, 2], [3, 4]])


def test_zlib_errors_are_data_errors(workdir):
    raw = bytearray(gzip.compress(CSV))
    raw[12] ^= 0xFF  # inside the deflate stream
    result = outcome(formats.load_csv, write(workdir, "bad.csv.gz", bytes(raw)))
    assert isinstance(result, DataError), result
    assert zlib  # (the module the parser's errors come from)


# -- a larger run -------------------------------------------------------------------------------------
@pytest.mark.slow
@SLOW
@given(raw=st.one_of(maybe_random(IDX), maybe_random(NPY), maybe_random(NPZ_DEFLATED), maybe_random(MAT5),
                     maybe_random(MAT5_COMPRESSED), maybe_random(MAT4), mutated(CSV, text=True),
                     mutated(gzip.compress(CSV)), mutated(gzip.compress(IDX))),
       name=st.sampled_from(["data.idx", "data.npy", "data.npz", "data.mat", "data.csv", "data.csv.gz",
                             "data"]))
def test_fuzz_every_format_larger_run(workdir, raw, name):
    path = write(workdir, name, raw)
    check_matrix(outcome(formats.load_array, path))
    check_ratings(outcome(load_ratings, path))


@pytest.mark.slow
@SLOW
@given(raw=st.one_of(mutated(RATINGS_TSV, text=True, max_ops=8), mutated(RATINGS_CSV, text=True, max_ops=8)))
def test_fuzz_ratings_larger_run(workdir, raw):
    check_ratings(outcome(load_ratings, write(workdir, "ratings.dat", raw)))
