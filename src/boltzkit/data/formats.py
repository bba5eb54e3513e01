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
"""

from __future__ import annotations

import gzip
import io
import zipfile
import zlib
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import DataError
from .transforms import scale_to_unit

__all__ = ["load_array", "load_csv", "load_idx", "load_mat", "load_mnist", "load_npy", "load_npz"]

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


# --------------------------------------------------------------------------------------------
# File access
# --------------------------------------------------------------------------------------------


def _read_bytes(path: PathType) -> tuple[Path, bytes]:
    """Whole content of ``path``; DataError when it is missing or unreadable."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    if p.is_dir():
        raise DataError(f"{p}: is a directory, expected a data file")
    try:
        return p, p.read_bytes()
    except OSError as exc:
        raise DataError(f"{p}: cannot read the file ({exc.strerror or exc})") from exc


def _gunzip(raw: bytes, path: Path) -> bytes:
    """Decompress ``raw`` if it starts with the gzip magic bytes, else return it unchanged."""
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise DataError(f"{path}: truncated or corrupt gzip data ({exc})") from exc


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


def _fmt_keys(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names) if names else "no arrays"


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
    if ndim == 0:
        raise DataError(f"{path}: corrupt idx header (zero dimensions)")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DataError(f"{path}: truncated idx file (header cut short)")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(raw) - header_len
    if actual < expected:
        raise DataError(
            f"{path}: truncated idx file (header says shape {shape}, {expected:,} bytes of data, "
            f"found {actual:,})"
        )
    if actual > expected:
        raise DataError(
            f"{path}: corrupt idx file ({actual - expected:,} bytes after the {expected:,} "
            f"announced by the header, shape {shape})"
        )
    data = np.frombuffer(raw, dtype=dtype, count=expected // dtype.itemsize, offset=header_len)
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


def _mat_arrays(raw: bytes, path: Path) -> dict[str, Any]:
    """The user variables (names not starting with ``__``) of a MATLAB file."""
    import scipy.io

    if raw.startswith(b"MATLAB 7.3") or raw[512:520] == _HDF5_MAGIC:
        raise DataError(
            f"{path}: MATLAB v7.3 (HDF5) files are not supported; re-save it in MATLAB with "
            f"save(..., '-v7') or convert it to .npz"
        )
    try:
        contents = scipy.io.loadmat(io.BytesIO(raw))
    except NotImplementedError as exc:  # scipy's way of refusing v7.3 files
        raise DataError(
            f"{path}: unsupported MATLAB file ({exc}); re-save it with save(..., '-v7')"
        ) from exc
    except Exception as exc:  # the .mat parser raises many exception types on corrupt input
        raise DataError(f"{path}: not a readable MATLAB file ({type(exc).__name__}: {exc})") from exc
    return {k: v for k, v in contents.items() if not k.startswith("__")}


def load_mat(path: PathType, key: str | None = None) -> np.ndarray:
    """Read one array from a MATLAB .mat file (versions 4 to 7.2, via ``scipy.io.loadmat``).

    ``key`` names the variable; by default the file's only variable is taken, else ``"X"`` or
    ``"data"`` if present, else :class:`DataError` lists the variables to choose from.
    """
    p, raw = _read_bytes(path)
    arrays = _mat_arrays(raw, p)
    name = _pick_key(sorted(arrays), key, p)
    return np.asarray(arrays[name])


def _parse_npy(raw: bytes, path: Path) -> np.ndarray:
    try:
        return np.load(io.BytesIO(raw), allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise DataError(
                f"{path}: holds Python objects, which are not loaded (no pickle); save a numeric array"
            ) from exc
        raise DataError(f"{path}: corrupt .npy file ({exc})") from exc
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: corrupt .npy file ({exc})") from exc


def load_npy(path: PathType) -> np.ndarray:
    """Read a NumPy ``.npy`` file (object arrays are refused: no pickle)."""
    p, raw = _read_bytes(path)
    return _parse_npy(raw, p)


def _npz_arrays(raw: bytes, path: Path, keys: list[str | None]) -> list[np.ndarray]:
    """Arrays named by ``keys`` (None = the default choice) from an .npz archive."""
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
            names = list(archive.files)
            out = []
            for key in keys:
                out.append(np.asarray(archive[_pick_key(names, key, path)]))
            return out
    except DataError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise DataError(
                f"{path}: holds Python objects, which are not loaded (no pickle); save numeric arrays"
            ) from exc
        raise DataError(f"{path}: corrupt .npz file ({exc})") from exc
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path}: corrupt .npz file ({exc})") from exc


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
        table = np.loadtxt(
            io.StringIO(text),
            delimiter=delimiter,
            skiprows=skip,
            ndmin=2,
            dtype=np.float64,
            quotechar='"',
        )
    except ValueError as exc:
        raise DataError(f"{path}: not a table of numbers ({exc})") from exc
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
        names = sorted(mat)
        x = np.asarray(mat[_pick_key(names, key, p)])
        if label_key is not None:
            labels = np.asarray(mat[_pick_key(names, label_key, p)])
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


