"""File formats: every loader takes a path and returns numpy arrays.

Every loader takes a path and returns numpy arrays; every bad input (missing file, truncated or
corrupt content, wrong shape, NaN/inf, non-binary values where 0/1 are needed) raises
:class:`boltzkit.errors.DataError` with a one-line message naming the file and the problem.

Formats read by :func:`load_array` (detected from the content first, the extension second):

- MNIST idx, optionally gzipped (:func:`load_idx`); uint8 images are flattened and divided by 255;
- MATLAB .mat, versions 4 to 7.2 (:func:`load_mat`);
- NumPy .npy and .npz (:func:`load_npy`, :func:`load_npz`);
- CSV or whitespace-separated text, optionally gzipped (:func:`load_csv`).

The default data set, :func:`load_default`, is the binarised MNIST test set shipped inside the
package (10,000 digits of 784 binary pixels, with labels); see ``boltzkit/datasets/README.md``.

Hostile input (the rules every loader keeps):

- only regular files are read (:func:`read_regular_file`): a FIFO, a device such as
  ``/dev/zero``, a socket or a directory is refused at once, without reading from it;
- every size a header claims (idx dimensions, a .npy header's shape, a zip member) is checked
  against the bytes actually present before anything is allocated (:func:`_check_claimed_size`),
  with exact integer arithmetic, so a header claiming 2**40 elements is refused, not allocated;
- decompressed content (gzip, .npz members, compressed MATLAB variables) is read incrementally
  and refused beyond :data:`MAX_DECOMPRESSED_BYTES` (4 GiB), so a small "gzip bomb" cannot
  exhaust memory;
- .npy/.npz are never unpickled (object arrays are refused).
"""

from __future__ import annotations

import ast
import gzip
import io
import lzma
import math
import os
import stat
import struct
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from os import PathLike
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..errors import DataError
from .transforms import scale_to_unit

__all__ = ["MAX_DECOMPRESSED_BYTES", "load_array", "load_csv", "load_idx", "load_mat", "load_mnist", "load_npy",
           "load_npz", "read_regular_file"]

PathType = str | PathLike[str]


_GZIP_MAGIC = b"\x1f\x8b"
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

# idx type byte -> big-endian numpy dtype (the format stores every number big-endian).
_IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}

# Keys tried, in order, when an .npz or .mat file holds several arrays and none was named.
_DEFAULT_KEYS = ("X", "data")

_TEXT_EXTENSIONS = (".csv", ".txt", ".tsv", ".dat", ".amat")

#: The most bytes any decompression (gzip, an .npz member, MATLAB's compressed variables) may
#: produce: 4 GiB.  Decompression is incremental, so a "gzip bomb" is refused after at most this
#: much output instead of exhausting memory.  Raise it here for larger data sets.
MAX_DECOMPRESSED_BYTES = 4 << 30

_CHUNK = 1 << 20  # bytes per step of an incremental read or decompression

# What parsers of hostile bytes (numpy's header reader, zipfile, scipy.io) raise on corrupt input.
_CORRUPT = (ValueError, TypeError, KeyError, IndexError, OverflowError, MemoryError, RecursionError,
            SyntaxError, EOFError, OSError, struct.error, zlib.error, lzma.LZMAError, zipfile.BadZipFile,
            NotImplementedError, UnicodeDecodeError)


# --------------------------------------------------------------------------------------------
# File access
# --------------------------------------------------------------------------------------------


def read_regular_file(path: PathType, what: str = "data file") -> tuple[Path, bytes]:
    """``(Path(path), content)`` of a regular file; DataError naming the file otherwise.

    The file is opened without blocking and checked on the open descriptor (``fstat``), so a
    FIFO, ``/dev/zero``, a socket or a directory is refused at once, without reading from it
    (and a file swapped for a FIFO after a check cannot slip through).  ``what`` says what the
    file was meant to be (``"data file"``, ``"ratings file"``) in the message.
    """
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
                     | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise DataError(f"{p}: file not found (no such file or directory)") from None
    except IsADirectoryError:
        raise DataError(f"{p}: is a directory, expected a {what}") from None
    except OSError as exc:
        try:
            mode = os.stat(p).st_mode
        except OSError:
            mode = stat.S_IFREG
        if not stat.S_ISREG(mode):  # a socket cannot even be opened
            raise DataError(f"{p}: is not a regular file (a FIFO, device or socket cannot be read as a {what})") \
                from None
        raise DataError(f"{p}: cannot open the file ({exc.strerror or exc})") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise DataError(f"{p}: is a directory, expected a {what}")
        if not stat.S_ISREG(mode):
            raise DataError(f"{p}: is not a regular file (a FIFO, device or socket cannot be read as a {what})")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=True) as f:
            fd = -1
            return p, f.read()
    except OSError as exc:
        raise DataError(f"{p}: cannot read the file ({exc.strerror or exc})") from None
    finally:
        if fd >= 0:
            os.close(fd)


def _read_bytes(path: PathType) -> tuple[Path, bytes]:
    """Whole content of the regular file ``path`` (see :func:`read_regular_file`)."""
    return read_regular_file(path, "data file")


def _check_claimed_size(path: Path, what: str, claimed: int, present: int) -> None:
    """The one "claimed size vs bytes present" check: DataError unless a header's claim of
    ``claimed`` bytes (exact Python integers, no overflow) equals the ``present`` bytes, so
    nothing is allocated for a size the file does not back."""
    if claimed < 0:
        raise DataError(f"{path}: corrupt {what} (claims a negative size)")
    if claimed > present:
        raise DataError(f"{path}: truncated or corrupt file ({what} claims {claimed:,} bytes of data, "
                        f"found {present:,})")
    if claimed < present:
        raise DataError(f"{path}: corrupt file ({present - claimed:,} bytes after the {claimed:,} bytes of "
                        f"data {what} announces)")


def _check_decompressed(path: Path, size: int, what: str = "decompressed data") -> None:
    """DataError when ``size`` bytes of decompressed content exceed MAX_DECOMPRESSED_BYTES."""
    if size > MAX_DECOMPRESSED_BYTES:
        raise DataError(f"{path}: {what} would exceed {MAX_DECOMPRESSED_BYTES:,} bytes "
                        f"(boltzkit.data.formats.MAX_DECOMPRESSED_BYTES); refusing a possible "
                        f"decompression bomb")


def _read_limited(stream: Any, path: Path, what: str) -> bytes:
    """Everything ``stream`` yields, read in chunks, refused beyond MAX_DECOMPRESSED_BYTES."""
    parts: list[bytes] = []
    total = 0
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            return b"".join(parts)
        total += len(chunk)
        _check_decompressed(path, total, what)
        parts.append(chunk)


def _gunzip(raw: bytes, path: Path) -> bytes:
    """Decompress ``raw`` if it starts with the gzip magic bytes, else return it unchanged.

    Read incrementally and refused beyond MAX_DECOMPRESSED_BYTES (a gzip bomb)."""
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw), mode="rb") as f:
            return _read_limited(f, path, "gzip content")
    except DataError:
        raise
    except (EOFError, OSError, zlib.error, struct.error, ValueError, OverflowError) as exc:
        raise DataError(f"{path}: truncated or corrupt gzip data ({_short(exc)})") from None


def _short(exc: BaseException | str, limit: int = 160) -> str:
    """``exc`` as one short line for a message (parsers may echo whole headers)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _pick_key(names: list[str], key: str | None, path: Path) -> str:
    """The array to read from a multi-array file: ``key``, the only one, or "X"/"data"."""
    if key is not None:
        if key not in names:
            raise DataError(f"{path}: no array named {key!r}; the file holds {_fmt_keys(names)}")
        return key
    if len(names) == 1:
        return names[0]
    if not names:
        raise DataError(f"{path}: holds no arrays")
    for candidate in _DEFAULT_KEYS:
        if candidate in names:
            return candidate
    raise DataError(
        f"{path}: holds several arrays ({_fmt_keys(names)}); choose one with key=..."
    )


def _fmt_keys(names: list[str], most: int = 10) -> str:
    """The names, quoted and shortened, for a one-line message (a corrupt file's names are junk)."""
    if not names:
        return "no arrays"
    shown = [repr(n) if len(n) <= 40 else repr(n[:40]) + "…" for n in names[:most]]
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(shown) + more


# --------------------------------------------------------------------------------------------
# idx (MNIST)
# --------------------------------------------------------------------------------------------


def _looks_like_idx(raw: bytes) -> bool:
    """True when ``raw`` starts with a plausible idx header: 0, 0, type code, 1 <= ndim <= 4."""
    return (
        len(raw) >= 8
        and raw[0] == 0
        and raw[1] == 0
        and raw[2] in _IDX_DTYPES
        and 1 <= raw[3] <= 4
    )


def _parse_idx(raw: bytes, path: Path) -> np.ndarray:
    """Decode an (already decompressed) idx file.

    Layout: two zero bytes, a type byte (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), a byte with the number of dimensions d, then d big-endian
    uint32 sizes, then the values in C order, big-endian.
    """
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an idx file (bad magic number)")
    if raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an idx file (unknown type code 0x{raw[2]:02X})")
    ndim = raw[3]
    if not 1 <= ndim <= 4:
        raise DataError(f"{path}: corrupt idx header ({ndim} dimensions; idx files have 1 to 4)")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DataError(f"{path}: truncated idx file (header cut short)")
    shape = struct.unpack_from(f">{ndim}I", raw, 4)
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = math.prod(shape)  # exact: four uint32 sizes may overflow int64
    if count == 0:  # also keeps numpy from multiplying the other (possibly huge) sizes
        raise DataError(f"{path}: the idx file holds no values (shape {shape})")
    _check_claimed_size(path, f"the idx header (shape {shape})", count * dtype.itemsize, len(raw) - header_len)
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=header_len)
    return data.reshape(shape).astype(dtype.newbyteorder("="))


def load_idx(path: PathType) -> np.ndarray:
    """Read an idx file (the MNIST format), gzipped or not, as an array of its stored dtype.

    Compression is detected from the content (gzip magic bytes), not the file name. The header
    is validated against the file size: a truncated file raises :class:`DataError`.

    >>> images = load_idx("t10k-images-idx3-ubyte.gz")   # uint8, shape (10000, 28, 28)
    """
    p, raw = _read_bytes(path)
    return _parse_idx(_gunzip(raw, p), p)


def load_mnist(
    images: PathType, labels: PathType | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read MNIST idx images (and optionally labels).

    Returns ``(x, y)``: ``x`` float32 of shape (N, rows*cols) = (N, 784) for MNIST, pixel values
    divided by 255 so they lie in [0, 1]; ``y`` int64 of shape (N,), or None without a label file.
    """
    img_path = Path(images)
    raw = load_idx(img_path)
    if raw.ndim != 3:
        hint = "; did you pass the label file as images?" if raw.ndim == 1 else ""
        raise DataError(
            f"{img_path}: expected idx images of shape (N, rows, cols), got shape {raw.shape}{hint}"
        )
    x = raw.reshape(raw.shape[0], -1).astype(np.float32)
    if raw.dtype == np.uint8:
        x /= 255.0
    else:
        x = scale_to_unit(x)
    if labels is None:
        return x, None
    lab_path = Path(labels)
    y = load_idx(lab_path)
    if y.ndim != 1:
        raise DataError(f"{lab_path}: expected idx labels of shape (N,), got shape {y.shape}")
    if y.shape[0] != x.shape[0]:
        raise DataError(
            f"{lab_path}: {y.shape[0]} labels but {img_path} holds {x.shape[0]} images"
        )
    return x, y.astype(np.int64)


# --------------------------------------------------------------------------------------------
# MATLAB, NumPy
# --------------------------------------------------------------------------------------------


# MATLAB 5 data types (miINT8 ...) of numeric elements -> numpy dtype (byte order added per file)
_MI_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}
_MI_INT8, _MI_INT32, _MI_UINT32, _MI_MATRIX, _MI_COMPRESSED, _MI_UTF8 = 1, 5, 6, 14, 15, 16
_MX_NUMERIC = range(6, 16)  # mxDOUBLE_CLASS ... mxUINT64_CLASS
_MX_NAMES = {1: "cell array", 2: "struct", 3: "object", 4: "char array", 5: "sparse matrix",
             16: "function handle", 17: "opaque object", 18: "object"}


class _MatVariable(NamedTuple):
    """A top-level MATLAB variable: its array, or None with what it is when it is not numeric;
    for a cell array, ``cells`` holds the cells' variables (an object array of the cell's shape)."""

    value: np.ndarray | None
    kind: str
    cells: np.ndarray | None = None


#: cell arrays inside cell arrays are read this deep (the piano-roll sets use one level)
_MAX_CELL_DEPTH = 4


def _mat5_elements(buf: memoryview, order: str, path: Path, pad: bool) -> Iterator[tuple[int, memoryview]]:
    """(type, data) of each tagged data element in ``buf``.

    A tag is two uint32 (type, byte count) in the file's byte order, or, when the count sits in
    the upper 16 bits of the first word, a "small element" with up to 4 bytes of data inside the
    tag.  Inside a matrix (``pad``) each element is padded to a multiple of 8 bytes."""
    pos = 0
    while pos < len(buf):
        if len(buf) - pos < 8:
            raise DataError(f"{path}: truncated MATLAB file (a data element is cut short)")
        first, count = struct.unpack_from(f"{order}II", buf, pos)
        if first >> 16:
            count, mdtype = first >> 16, first & 0xFFFF
            if count > 4:
                raise DataError(f"{path}: corrupt MATLAB file (small data element of {count} bytes)")
            yield mdtype, buf[pos + 4:pos + 4 + count]
            pos += 8
            continue
        end = pos + 8 + count
        if end > len(buf):
            raise DataError(f"{path}: truncated MATLAB file (a data element claims {count:,} bytes, "
                            f"{len(buf) - pos - 8:,} remain)")
        yield first, buf[pos + 8:end]
        pos = end + ((-count) % 8 if pad else 0)


def _mat5_matrix(data: memoryview, order: str, path: Path, depth: int = 0) -> tuple[str, _MatVariable]:
    """(name, variable) of one miMATRIX element: array flags, dimensions, name, real part.

    Only numeric classes are decoded (logical ones as bool); cells, structs, chars, sparse and
    complex matrices are named but not read.  The real part's byte count must equal the
    product of the dimensions times its item size."""
    if not len(data):
        return "", _MatVariable(None, "empty matrix")
    parts = _mat5_elements(data, order, path, pad=True)
    try:
        (flags_type, flags), (dims_type, dims_raw), (name_type, name_raw) = next(parts), next(parts), next(parts)
    except StopIteration:
        raise DataError(f"{path}: corrupt MATLAB file (a matrix lacks its flags, dimensions or name)") from None
    if flags_type != _MI_UINT32 or len(flags) != 8:
        raise DataError(f"{path}: corrupt MATLAB file (bad array flags)")
    flags_class = struct.unpack_from(f"{order}I", flags)[0]
    mclass = flags_class & 0xFF
    if mclass == 17:  # opaque objects have no dimensions: not data we read
        return "", _MatVariable(None, _MX_NAMES[17])
    if dims_type not in (_MI_INT32, _MI_UINT32) or len(dims_raw) % 4 or not 1 <= len(dims_raw) // 4 <= 32:
        raise DataError(f"{path}: corrupt MATLAB file (bad dimensions element)")
    dims = struct.unpack_from(f"{order}{len(dims_raw) // 4}i", dims_raw)
    if any(d < 0 for d in dims):
        raise DataError(f"{path}: corrupt MATLAB file (negative dimension in {dims})")
    if name_type not in (_MI_INT8, _MI_UTF8):
        raise DataError(f"{path}: corrupt MATLAB file (bad variable name element)")
    try:
        name = bytes(name_raw).decode("ascii")
    except UnicodeDecodeError:
        raise DataError(f"{path}: corrupt MATLAB file (variable name is not ASCII)") from None
    if mclass == 1 and depth < _MAX_CELL_DEPTH:
        return name, _mat5_cells(parts, dims, name, order, path, depth)
    if mclass not in _MX_NUMERIC:
        return name, _MatVariable(None, _MX_NAMES.get(mclass, f"MATLAB class {mclass}"))
    if flags_class >> 11 & 1:
        return name, _MatVariable(None, "complex matrix")
    try:
        real_type, real = next(parts)
    except StopIteration:
        raise DataError(f"{path}: corrupt MATLAB file (variable {name!r} has no data)") from None
    if real_type not in _MI_DTYPES:
        raise DataError(f"{path}: corrupt MATLAB file (variable {name!r} has data type code {real_type})")
    dtype = np.dtype(order + _MI_DTYPES[real_type])
    count = math.prod(dims)
    _check_claimed_size(path, f"variable {name!r} (dimensions {dims}, {dtype.name})", count * dtype.itemsize,
                        len(real))
    values = np.frombuffer(real, dtype=dtype, count=count).astype(dtype.newbyteorder("="))
    values = values.reshape(dims, order="F")
    return name, _MatVariable(values.astype(bool) if flags_class >> 9 & 1 else values, "numeric matrix")


def _mat5_cells(parts: Iterator[tuple[int, memoryview]], dims: tuple[int, ...], name: str, order: str,
                path: Path, depth: int) -> _MatVariable:
    """A cell array: after its name, one miMATRIX element per cell in column-major order, each
    read (and checked) like a top-level matrix; their number must match the dimensions."""
    cells: list[_MatVariable] = []
    for kind, body in parts:
        if kind != _MI_MATRIX:
            raise DataError(f"{path}: corrupt MATLAB file (cell {len(cells)} of {name!r} has element type {kind})")
        cells.append(_mat5_matrix(body, order, path, depth + 1)[1])
    if len(cells) != math.prod(dims):
        raise DataError(f"{path}: corrupt MATLAB file (cell array {name!r} of dimensions {dims} holds "
                        f"{len(cells)} cells)")
    grid = np.empty(len(cells), dtype=object)
    for i, cell in enumerate(cells):  # one by one: numpy would unpack the tuples
        grid[i] = cell
    return _MatVariable(None, _MX_NAMES[1], grid.reshape(dims, order="F"))


def _inflate(data: memoryview, budget: int, path: Path) -> bytes:
    """One complete zlib stream, refused when it would produce more than ``budget`` bytes."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, budget + 1)
    except zlib.error as exc:
        raise DataError(f"{path}: corrupt MATLAB file (compressed variable: {_short(exc)})") from None
    if len(out) > budget:
        _check_decompressed(path, MAX_DECOMPRESSED_BYTES + 1, "the compressed MATLAB variables")
    if not inflater.eof:
        raise DataError(f"{path}: truncated or corrupt MATLAB file (a compressed variable is cut short)")
    return out


def _mat5_variables(raw: bytes, path: Path) -> dict[str, _MatVariable]:
    """The variables of a MATLAB 5 / 7 (not 7.3) file, read by boltzkit itself.

    Layout: a 128-byte header (text, subsystem offset, version, ``IM``/``MI`` byte-order mark),
    then top-level elements: miMATRIX (14), or miCOMPRESSED (15) holding a zlib stream of
    miMATRIX elements.  scipy's reader of this format indexes C arrays with type codes from the
    file, so a crafted file could crash the interpreter; this reader checks every code and
    size, and the total inflated size against MAX_DECOMPRESSED_BYTES."""
    order = "<" if raw[126:128] == b"IM" else ">"
    variables: dict[str, _MatVariable] = {}
    budget = MAX_DECOMPRESSED_BYTES
    for mdtype, data in _mat5_elements(memoryview(raw)[128:], order, path, pad=False):
        if mdtype == _MI_COMPRESSED:
            inflated = _inflate(data, budget, path)
            budget -= len(inflated)
            elements = list(_mat5_elements(memoryview(inflated), order, path, pad=False))
        else:
            elements = [(mdtype, data)]
        for kind, body in elements:
            if kind != _MI_MATRIX:
                raise DataError(f"{path}: corrupt MATLAB file (top-level element of type {kind}, expected a matrix)")
            name, variable = _mat5_matrix(body, order, path)
            if name:
                variables[name] = variable
    return variables


def _mat_version(raw: bytes, path: Path) -> int:
    """4, 5 (versions 5 to 7.2) or 73 (HDF5), read from the header as scipy.io.matfile_version does."""
    if len(raw) < 4:
        raise DataError(f"{path}: not a MATLAB file (too short)")
    if 0 in raw[:4]:
        return 4
    if len(raw) < 128 or raw[126:128] not in (b"IM", b"MI"):
        raise DataError(f"{path}: not a readable MATLAB file (no MATLAB 5 header)")
    major = raw[125] if raw[126:128] == b"IM" else raw[124]
    if major == 1:
        return 5
    if major == 2:
        return 73
    raise DataError(f"{path}: not a readable MATLAB file (unknown version {major})")


def _mat_arrays(raw: bytes, path: Path) -> dict[str, _MatVariable]:
    """The user variables (names not starting with ``__``) of a MATLAB file.

    Versions 5 to 7.2 are read by :func:`_mat5_variables`; version 4 by ``scipy.io.loadmat``
    (its version 4 reader is pure Python and NumPy, so corrupt input raises, never crashes)."""
    version = 73 if raw.startswith(b"MATLAB 7.3") or raw[512:520] == _HDF5_MAGIC else _mat_version(raw, path)
    if version == 73:
        raise DataError(
            f"{path}: MATLAB v7.3 (HDF5) files are not supported; re-save it in MATLAB with "
            f"save(..., '-v7') or convert it to .npz"
        )
    if version == 5:
        contents = _mat5_variables(raw, path)
        return {k: v for k, v in contents.items() if not k.startswith("__")}
    import scipy.io

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns on odd but readable headers
            loaded = scipy.io.loadmat(io.BytesIO(raw))
    except Exception as exc:  # scipy's .mat parser raises many exception types on corrupt input
        raise DataError(f"{path}: not a readable MATLAB file ({type(exc).__name__}: {_short(exc)})") from None
    out = {}
    for k, v in loaded.items():
        if not k.startswith("__"):
            value = np.asarray(v)
            out[k] = _MatVariable(value, "numeric matrix") if value.dtype.kind in "biuf" else _MatVariable(
                None, "char array" if value.dtype.kind in "US" else "sparse matrix")
    return out


def _mat_value(variables: dict[str, _MatVariable], key: str | None, path: Path) -> np.ndarray:
    """The numeric array of the chosen variable; DataError naming what else it is."""
    name = _pick_key(sorted(variables), key, path)
    variable = variables[name]
    if variable.value is None:
        raise DataError(f"{path}: variable {name!r} is a MATLAB {variable.kind}, expected numbers "
                        f"(a numeric matrix; a MATLAB cell array or struct is not read)")
    return variable.value


def load_mat_variables(path: PathType) -> dict[str, Any]:
    """The user variables of a MATLAB file, read by the checked reader: each a numeric array,
    an object array of the same for a cell array (cells of cells likewise), or None for
    anything else (structs, chars, sparse, complex)."""
    p, raw = _read_bytes(path)

    def value(variable: _MatVariable) -> Any:
        if variable.cells is None:
            return variable.value
        out = np.empty(variable.cells.shape, dtype=object)
        for index in np.ndindex(variable.cells.shape):
            out[index] = value(variable.cells[index])  # type: ignore[arg-type]  # object array
        return out

    return {k: value(v) for k, v in _mat_arrays(raw, p).items()}


def load_mat(path: PathType, key: str | None = None) -> np.ndarray:
    """Read one array from a MATLAB .mat file (versions 4 to 7.2, via ``scipy.io.loadmat``).

    ``key`` names the variable; by default the file's only variable is taken, else ``"X"`` or
    ``"data"`` if present, else :class:`DataError` lists the variables to choose from.
    """
    p, raw = _read_bytes(path)
    return _mat_value(_mat_arrays(raw, p), key, p)


_NPY_HEADER_LENGTH = {1: "<H", 2: "<I", 3: "<I"}  # format version -> struct of the header length
_NPY_MAX_HEADER = 10_000  # numpy's own limit on a header it parses safely


def _npy_header(raw: bytes, path: Path) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran_order, dtype, offset of the data) of a .npy file's header.

    Layout: ``\\x93NUMPY``, major and minor version bytes, the header length (uint16 for
    version 1, uint32 for 2 and 3, little-endian), then a Python dict literal with ``descr``,
    ``fortran_order`` and ``shape``.  Parsed with ``ast.literal_eval`` (no code runs)."""
    if not raw.startswith(_NPY_MAGIC) or len(raw) < 10:
        raise DataError(f"{path}: corrupt .npy file (bad magic string)")
    major = raw[6]
    if major not in _NPY_HEADER_LENGTH:
        raise DataError(f"{path}: corrupt .npy file (unknown format version {major}.{raw[7]})")
    fmt = _NPY_HEADER_LENGTH[major]
    start = 8 + struct.calcsize(fmt)
    if len(raw) < start:
        raise DataError(f"{path}: truncated .npy file (header cut short)")
    (length,) = struct.unpack_from(fmt, raw, 8)
    if length > _NPY_MAX_HEADER:
        raise DataError(f"{path}: corrupt .npy file (header of {length:,} bytes; numpy writes at most "
                        f"{_NPY_MAX_HEADER:,})")
    if len(raw) < start + length:
        raise DataError(f"{path}: truncated .npy file (header cut short)")
    try:
        text = raw[start:start + length].decode("utf-8" if major == 3 else "latin1")
        header = ast.literal_eval(text)
    except _CORRUPT as exc:
        raise DataError(f"{path}: corrupt .npy file (unreadable header: {_short(exc, 80)})") from None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise DataError(f"{path}: corrupt .npy file (the header is not numpy's dict of descr, fortran_order, shape)")
    shape, fortran = header["shape"], header["fortran_order"]
    if (not isinstance(shape, tuple) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                                for n in shape)):
        raise DataError(f"{path}: corrupt .npy file (shape {_short(repr(shape), 80)} is not a tuple of sizes)")
    if not isinstance(fortran, bool):
        raise DataError(f"{path}: corrupt .npy file (fortran_order {fortran!r} is not a bool)")
    try:
        dtype = np.lib.format.descr_to_dtype(header["descr"])
    except _CORRUPT as exc:
        raise DataError(f"{path}: corrupt .npy file (descr is not a dtype: {_short(exc, 80)})") from None
    if dtype.hasobject:
        raise DataError(f"{path}: holds Python objects, which are not loaded (no pickle); save a numeric array")
    return shape, fortran, dtype, start + length


def _parse_npy(raw: bytes, path: Path) -> np.ndarray:
    """Decode a .npy file after checking the size its header claims against the bytes present."""
    shape, fortran, dtype, offset = _npy_header(raw, path)
    count = math.prod(shape)
    _check_claimed_size(path, f"the .npy header (shape {shape}, {dtype})", count * dtype.itemsize,
                        len(raw) - offset)
    try:
        if count == 0 or dtype.itemsize == 0:
            return np.empty(shape, dtype=dtype, order="F" if fortran else "C")
        flat = np.frombuffer(raw, dtype=dtype, count=count, offset=offset).copy()
        return flat.reshape(shape, order="F" if fortran else "C")
    except _CORRUPT as exc:
        raise DataError(f"{path}: corrupt .npy file ({_short(exc)})") from None


def load_npy(path: PathType) -> np.ndarray:
    """Read a NumPy ``.npy`` file (object arrays are refused: no pickle)."""
    p, raw = _read_bytes(path)
    return _parse_npy(raw, p)


def _npz_arrays(raw: bytes, path: Path, keys: list[str | None]) -> list[np.ndarray]:
    """Arrays named by ``keys`` (None = the default choice) from an .npz archive.

    A member ``name.npy`` is the array ``name`` (as ``numpy.load`` names them).  Each member's
    declared size is capped by MAX_DECOMPRESSED_BYTES and zipfile never inflates more than it
    declares; the member is then decoded like a .npy file, header claims checked."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            members = {(info.filename[:-4] if info.filename.endswith(".npy") else info.filename): info
                       for info in archive.infolist() if not info.is_dir()}
            out = []
            for key in keys:
                info = members[_pick_key(list(members), key, path)]
                _check_decompressed(path, info.file_size, f"member {info.filename!r}")
                with archive.open(info) as member:
                    blob = _read_limited(member, path, f"member {info.filename!r}")
                if not blob.startswith(_NPY_MAGIC):
                    raise DataError(f"{path}: member {info.filename!r} is not a .npy array")
                out.append(_parse_npy(blob, path))
            return out
    except DataError:
        raise
    except _CORRUPT + (RuntimeError,) as exc:  # zipfile: RuntimeError for encrypted members
        raise DataError(f"{path}: corrupt .npz file ({type(exc).__name__}: {_short(exc)})") from None


def load_npz(path: PathType, key: str | None = None) -> np.ndarray:
    """Read one array from a NumPy ``.npz`` archive.

    ``key`` names the array; by default the archive's only array is taken, else ``"X"`` or
    ``"data"`` if present, else :class:`DataError` lists the names to choose from.
    """
    p, raw = _read_bytes(path)
    return _npz_arrays(raw, p, [key])[0]


# --------------------------------------------------------------------------------------------
# CSV / text
# --------------------------------------------------------------------------------------------


def _is_number(field: str) -> bool:
    try:
        float(field.strip().strip('"').strip("'"))
    except ValueError:
        return False
    return True


def _parse_csv(raw: bytes, path: Path) -> np.ndarray:
    """Decode a table of numbers; a first row that is not all numbers is taken as a header."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a text file (cannot decode as UTF-8)") from exc
    lines = text.splitlines()
    first = next(
        (i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")),
        None,
    )
    if first is None:
        raise DataError(f"{path}: empty file (no data rows)")
    head = lines[first]
    delimiter: str | None
    for delimiter in (",", ";", "\t"):
        if delimiter in head:
            break
    else:
        delimiter = None  # any whitespace
    fields = head.split(delimiter)
    skip = first + 1 if not all(_is_number(f) for f in fields if f.strip()) else 0
    if skip and not any(
        line.strip() and not line.lstrip().startswith("#") for line in lines[skip:]
    ):
        raise DataError(f"{path}: only a header row, no data rows")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": reported below
            table = np.loadtxt(
                io.StringIO(text),
                delimiter=delimiter,
                skiprows=skip,
                ndmin=2,
                dtype=np.float64,
                quotechar='"',
            )
    except ValueError as exc:
        raise DataError(f"{path}: not a table of numbers ({_short(exc)})") from None
    if table.size == 0:
        raise DataError(f"{path}: empty file (no data rows)")
    return table


def _split_label_column(
    x: np.ndarray, label_column: int | None, path: Path
) -> tuple[np.ndarray, np.ndarray | None]:
    """Remove column ``label_column`` (negative counts from the end) from ``x`` as the labels."""
    if label_column is None:
        return x, None
    if x.ndim != 2:
        raise DataError(f"{path}: label_column needs a 2-D table, got shape {x.shape}")
    n_cols = x.shape[1]
    if not -n_cols <= label_column < n_cols:
        raise DataError(
            f"{path}: label_column={label_column} is out of range for a table of {n_cols} columns"
        )
    col = label_column % n_cols
    y = x[:, col]
    x = np.delete(x, col, axis=1)
    return x, _as_labels(y)


def _as_labels(y: np.ndarray) -> np.ndarray:
    """Labels as int64 when every value is an integer, else unchanged."""
    y = np.asarray(y)
    if y.dtype.kind in "biu":
        return y.astype(np.int64)
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        return y.astype(np.int64)
    return y


def load_csv(
    path: PathType, label_column: int | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a table of numbers from a CSV or text file, gzipped or not.

    No header is assumed; a first row that is not all numbers is skipped as a header. The
    separator is a comma, semicolon or tab if the first row has one, else whitespace; lines
    starting with ``#`` are comments. ``label_column`` (e.g. -1 for the last column) is removed
    from the table and returned as labels (int64 when integral). Values are not rescaled.

    Returns ``(x, y)``: ``x`` float64 of shape (N, D), ``y`` of shape (N,) or None.
    """
    p, raw = _read_bytes(path)
    table = _parse_csv(_gunzip(raw, p), p)
    return _split_label_column(table, label_column, p)


# --------------------------------------------------------------------------------------------
# Any format
# --------------------------------------------------------------------------------------------


def _suffixes(path: Path) -> str:
    """Lower-case extension without a trailing ``.gz`` (``a.csv.gz`` -> ``.csv``)."""
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return Path(name).suffix


def load_array(
    path: PathType,
    key: str | None = None,
    *,
    label_column: int | None = None,
    label_key: str | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a data matrix from any supported file; returns ``(x, y)``.

    The format is detected from the content (gzip, idx, .npy, .npz/zip and MATLAB 5 headers),
    then from the extension (.mat for MATLAB v4; .csv, .txt, .tsv, .dat, .amat for text).
    ``x`` is float32 and 2-D (N, D): arrays with more dimensions, such as (N, 28, 28) images,
    are flattened to (N, 28*28).

    Scale: values are returned as stored, with one exception: idx files of uint8 images are
    divided by 255 (as :func:`load_mnist` does). Use :func:`scale_to_unit` for 0..255 data in
    other formats. NaN/inf are not checked here; :func:`validate_data` does that.

    Labels ``y`` (int64 when integral) come from ``label_column`` (a column of the table, e.g.
    -1 for CSV rows ending with the label) or ``label_key`` (a second array of an .npz or .mat
    file); otherwise ``y`` is None.

    >>> x, y = load_array("mnist_5k.csv.gz", label_column=-1)   # x: (5000, 784), 0..255
    """
    p, raw = _read_bytes(path)
    if not raw:
        raise DataError(f"{p}: empty file")
    labels: np.ndarray | None = None
    scaled_idx = False
    ext = _suffixes(p)
    content = _gunzip(raw, p)

    if content.startswith(_NPY_MAGIC):
        kind = "npy"
    elif content.startswith(_ZIP_MAGICS):
        kind = "npz"
    elif content.startswith(b"MATLAB") or (ext == ".mat" and not raw.startswith(_GZIP_MAGIC)):
        kind = "mat"
    elif _looks_like_idx(content):
        kind = "idx"
    elif ext in _TEXT_EXTENSIONS or raw.startswith(_GZIP_MAGIC) or _looks_like_text(content):
        kind = "csv"
    else:
        raise DataError(
            f"{p}: unrecognised data format; supported: .mat, .npy, .npz, .csv/.txt (optionally "
            f".gz) and MNIST idx files"
        )

    if key is not None and kind in ("idx", "csv"):
        raise DataError(f"{p}: key={key!r} applies only to .npz and .mat files")
    if label_key is not None and kind not in ("npz", "mat"):
        raise DataError(f"{p}: label_key applies only to .npz and .mat files; use label_column")
    if label_key is not None and label_column is not None:
        raise DataError(f"{p}: give label_column or label_key, not both")

    if kind == "npy":
        if key is not None:
            raise DataError(f"{p}: key={key!r} given, but a .npy file holds a single array")
        x = _parse_npy(content, p)
    elif kind == "npz":
        keys: list[str | None] = [key] if label_key is None else [key, label_key]
        arrays = _npz_arrays(content, p, keys)
        x = arrays[0]
        if label_key is not None:
            labels = arrays[1]
    elif kind == "mat":
        mat = _mat_arrays(content, p)
        x = _mat_value(mat, key, p)
        if label_key is not None:
            labels = _mat_value(mat, label_key, p)
    elif kind == "idx":
        x = _parse_idx(content, p)
        if x.ndim == 1:
            raise DataError(
                f"{p}: is a 1-D idx file (labels?); pass the image file, or use load_mnist(images, labels)"
            )
        scaled_idx = x.dtype == np.uint8
    else:
        x = _parse_csv(content, p)

    x = _as_matrix(x, p)
    if label_column is not None:
        x, labels = _split_label_column(x, label_column, p)
    if labels is not None:
        if labels.ndim == 2 and 1 in labels.shape:  # MATLAB stores vectors as (N, 1) or (1, N)
            labels = labels.reshape(-1)
        labels = _as_labels(labels)
        if labels.ndim != 1 or labels.shape[0] != x.shape[0]:
            raise DataError(
                f"{p}: labels of shape {labels.shape} do not match {x.shape[0]} rows of data"
            )
    with np.errstate(over="ignore", invalid="ignore"):  # beyond float32 becomes inf: validate_data reports it
        out = x.astype(np.float32)
    if scaled_idx:
        out /= 255.0
    return np.ascontiguousarray(out), labels


def _looks_like_text(raw: bytes) -> bool:
    """True when the first KB decodes as UTF-8 with no NUL bytes."""
    head = raw[:1024]
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start > len(head) - 4  # a multi-byte character cut at the 1 KB boundary
    return True


def _as_matrix(x: np.ndarray, path: Path) -> np.ndarray:
    """Numeric, non-empty, 2-D (more dimensions flattened per row)."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise DataError(
            f"{path}: holds {x.dtype} values, expected numbers (a MATLAB cell array or struct?)"
        )
    if x.ndim < 2:
        raise DataError(
            f"{path}: holds a {x.ndim}-D array of shape {x.shape}; expected a 2-D (samples, "
            f"features) matrix"
        )
    if x.ndim > 2:
        x = x.reshape(x.shape[0], -1)
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise DataError(f"{path}: empty data (shape {x.shape})")
    return x


