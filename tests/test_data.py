"""Tests for boltzkit.data: loaders (round trips through temp files), checks, binarisation and
the embedded binarised-MNIST test set."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from boltzkit import data
from boltzkit.errors import DataError

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

MNIST_TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

_IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C,
              np.float32: 0x0D, np.float64: 0x0E}


def idx_bytes(arr: np.ndarray) -> bytes:
    """Encode ``arr`` in the idx format: 0, 0, type code, ndim, big-endian sizes, big-endian data."""
    code = _IDX_CODES[arr.dtype.type]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> Path:
    raw = idx_bytes(arr)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(7, 4, 3), dtype=np.uint8)


@pytest.fixture
def labels() -> np.ndarray:
    return np.array([3, 1, 4, 1, 5, 9, 2], dtype=np.uint8)


@pytest.fixture
def table() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, size=(6, 5)).astype(np.float64)


def shared(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not present")
    return path


# ------------------------------------------------------------------------------------------
# idx / MNIST
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, images, gz):
    path = write_idx(tmp_path / "img.idx", images, gz=gz)
    np.testing.assert_array_equal(data.load_idx(path), images)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_other_dtypes(tmp_path, dtype):
    arr = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    out = data.load_idx(write_idx(tmp_path / "a.idx", arr))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_idx_gzip_detected_by_content_not_name(tmp_path, images):
    gz_no_suffix = write_idx(tmp_path / "images-idx3-ubyte", images, gz=True)
    plain_with_gz = write_idx(tmp_path / "images-idx3-ubyte.gz", images, gz=False)
    np.testing.assert_array_equal(data.load_idx(gz_no_suffix), images)
    np.testing.assert_array_equal(data.load_idx(plain_with_gz), images)


def test_idx_truncated(tmp_path, images):
    raw = idx_bytes(images)
    (tmp_path / "cut.idx").write_bytes(raw[:-5])
    with pytest.raises(DataError, match="truncated"):
        data.load_idx(tmp_path / "cut.idx")
    (tmp_path / "cut_header.idx").write_bytes(raw[:9])
    with pytest.raises(DataError, match="truncated"):
        data.load_idx(tmp_path / "cut_header.idx")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(raw)[:-20])
    with pytest.raises(DataError, match="truncated"):
        data.load_idx(tmp_path / "cut.gz")


def test_idx_corrupt(tmp_path, images):
    (tmp_path / "long.idx").write_bytes(idx_bytes(images) + b"\x00\x00")
    with pytest.raises(DataError, match="corrupt"):
        data.load_idx(tmp_path / "long.idx")
    (tmp_path / "text.idx").write_bytes(b"hello world, this is not idx")
    with pytest.raises(DataError, match="not an idx file"):
        data.load_idx(tmp_path / "text.idx")


def test_load_mnist(tmp_path, images, labels):
    img = write_idx(tmp_path / "img.gz", images, gz=True)
    lab = write_idx(tmp_path / "lab.gz", labels, gz=True)
    x, y = data.load_mnist(img, lab)
    assert x.shape == (7, 12) and x.dtype == np.float32
    np.testing.assert_allclose(x, images.reshape(7, 12) / 255.0, rtol=1e-6)
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, labels)
    x2, y2 = data.load_mnist(img)
    assert y2 is None and np.array_equal(x, x2)


def test_load_mnist_errors(tmp_path, images, labels):
    img = write_idx(tmp_path / "img", images)
    lab = write_idx(tmp_path / "lab", labels[:5])
    with pytest.raises(DataError, match="5 labels but"):
        data.load_mnist(img, lab)
    with pytest.raises(DataError, match="label file"):
        data.load_mnist(lab, img)


# ------------------------------------------------------------------------------------------
# MATLAB, NumPy
# ------------------------------------------------------------------------------------------


def test_mat_round_trip_and_key_choice(tmp_path, table):
    single = tmp_path / "single.mat"
    scipy.io.savemat(single, {"digits": table})
    np.testing.assert_array_equal(data.load_mat(single), table)

    with_x = tmp_path / "with_x.mat"
    scipy.io.savemat(with_x, {"X": table, "y": np.arange(6)})
    np.testing.assert_array_equal(data.load_mat(with_x), table)
    np.testing.assert_array_equal(data.load_mat(with_x, key="y").ravel(), np.arange(6))

    ambiguous = tmp_path / "ambiguous.mat"
    scipy.io.savemat(ambiguous, {"train": table, "test": table})
    with pytest.raises(DataError, match="several arrays.*'test', 'train'"):
        data.load_mat(ambiguous)
    with pytest.raises(DataError, match="no array named 'valid'.*'test', 'train'"):
        data.load_mat(ambiguous, key="valid")


def test_mat_corrupt_and_v73(tmp_path, table):
    good = tmp_path / "good.mat"
    scipy.io.savemat(good, {"X": table}, do_compression=True)
    cut = tmp_path / "cut.mat"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(DataError, match="MATLAB"):
        data.load_mat(cut)
    v73 = tmp_path / "v73.mat"
    v73.write_bytes(b"MATLAB 7.3 MAT-file".ljust(512, b" ") + b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(DataError, match="v7.3"):
        data.load_mat(v73)


def test_npy_npz_round_trip(tmp_path, table):
    np.save(tmp_path / "a.npy", table)
    np.testing.assert_array_equal(data.load_npy(tmp_path / "a.npy"), table)

    np.savez(tmp_path / "one.npz", whatever=table)
    np.testing.assert_array_equal(data.load_npz(tmp_path / "one.npz"), table)
    np.savez_compressed(tmp_path / "xy.npz", data=table, labels=np.arange(6))
    np.testing.assert_array_equal(data.load_npz(tmp_path / "xy.npz"), table)
    np.testing.assert_array_equal(data.load_npz(tmp_path / "xy.npz", key="labels"), np.arange(6))

    np.savez(tmp_path / "two.npz", a=table, b=table)
    with pytest.raises(DataError, match="several arrays.*'a', 'b'"):
        data.load_npz(tmp_path / "two.npz")
    with pytest.raises(DataError, match="no array named 'c'"):
        data.load_npz(tmp_path / "two.npz", key="c")


def test_npy_npz_refuse_pickles_and_corruption(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="pickle"):
        data.load_npy(tmp_path / "obj.npy")
    np.savez(tmp_path / "good.npz", X=np.ones((50, 50)))
    (tmp_path / "cut.npz").write_bytes((tmp_path / "good.npz").read_bytes()[:300])
    with pytest.raises(DataError, match="corrupt"):
        data.load_npz(tmp_path / "cut.npz")
    np.save(tmp_path / "good.npy", np.ones((50, 50)))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "good.npy").read_bytes()[:300])
    with pytest.raises(DataError, match="corrupt"):
        data.load_npy(tmp_path / "cut.npy")


# ------------------------------------------------------------------------------------------
# CSV
# ------------------------------------------------------------------------------------------


def _csv_text(arr: np.ndarray, sep: str = ",") -> str:
    return "\n".join(sep.join(f"{v:g}" for v in row) for row in arr) + "\n"


@pytest.mark.parametrize("sep", [",", ";", "\t", " "])
def test_csv_round_trip_separators(tmp_path, table, sep):
    (tmp_path / "t.txt").write_text(_csv_text(table, sep))
    x, y = data.load_csv(tmp_path / "t.txt")
    assert y is None
    np.testing.assert_array_equal(x, table)


def test_csv_header_gzip_and_label_column(tmp_path, table):
    text = "a,b,c,d,label\n" + _csv_text(table)
    (tmp_path / "t.csv.gz").write_bytes(gzip.compress(text.encode()))
    x, y = data.load_csv(tmp_path / "t.csv.gz", label_column=-1)
    np.testing.assert_array_equal(x, table[:, :4])
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, table[:, 4])
    x0, y0 = data.load_csv(tmp_path / "t.csv.gz", label_column=0)
    np.testing.assert_array_equal(x0, table[:, 1:])
    np.testing.assert_array_equal(y0, table[:, 0])
    with pytest.raises(DataError, match="out of range"):
        data.load_csv(tmp_path / "t.csv.gz", label_column=5)


def test_csv_errors(tmp_path, table):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        data.load_csv(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("a,b,c\n")
    with pytest.raises(DataError, match="only a header"):
        data.load_csv(tmp_path / "header.csv")
    (tmp_path / "words.csv").write_text("1,2,3\n4,five,6\n")
    with pytest.raises(DataError, match="not a table of numbers"):
        data.load_csv(tmp_path / "words.csv")
    (tmp_path / "ragged.csv").write_text("1,2,3\n4,5\n")
    with pytest.raises(DataError, match="not a table of numbers"):
        data.load_csv(tmp_path / "ragged.csv")
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(DataError, match="not a text file"):
        data.load_csv(tmp_path / "binary.csv")


# ------------------------------------------------------------------------------------------
# load_array: dispatch on content, then extension
# ------------------------------------------------------------------------------------------


def test_load_array_every_format(tmp_path, table, images, labels):
    expected = table.astype(np.float32)
    np.save(tmp_path / "a.npy", table)
    np.savez(tmp_path / "a.npz", X=table, y=np.arange(6))
    scipy.io.savemat(tmp_path / "a.mat", {"X": table, "y": np.arange(6)})
    (tmp_path / "a.csv").write_text(_csv_text(table))
    (tmp_path / "a.csv.gz").write_bytes(gzip.compress(_csv_text(table).encode()))
    (tmp_path / "a.txt").write_text(_csv_text(table, " "))
    # Wrong or missing extensions: the content decides.
    for name in ["npy_named.csv", "no_extension"]:
        with open(tmp_path / name, "wb") as f:
            np.save(f, table)
    (tmp_path / "mat_no_extension").write_bytes((tmp_path / "a.mat").read_bytes())
    names = ["a.npy", "a.npz", "a.mat", "a.csv", "a.csv.gz", "a.txt", "npy_named.csv",
             "no_extension", "mat_no_extension"]
    for name in names:
        x, y = data.load_array(tmp_path / name)
        assert y is None, name
        assert x.dtype == np.float32 and x.flags.c_contiguous, name
        np.testing.assert_array_equal(x, expected, err_msg=name)


def test_load_array_idx_scaled_others_not(tmp_path, images):
    write_idx(tmp_path / "img-idx3-ubyte.gz", images, gz=True)
    x, y = data.load_array(tmp_path / "img-idx3-ubyte.gz")
    assert y is None and x.shape == (7, 12)
    np.testing.assert_allclose(x, images.reshape(7, 12) / 255.0, rtol=1e-6)
    np.save(tmp_path / "img.npy", images)  # 3-D uint8: flattened, not rescaled
    x, _ = data.load_array(tmp_path / "img.npy")
    np.testing.assert_array_equal(x, images.reshape(7, 12))
    write_idx(tmp_path / "labels-idx1", np.arange(5, dtype=np.uint8))
    with pytest.raises(DataError, match="1-D idx"):
        data.load_array(tmp_path / "labels-idx1")


def test_load_array_labels(tmp_path, table):
    (tmp_path / "a.csv").write_text(_csv_text(table))
    x, y = data.load_array(tmp_path / "a.csv", label_column=-1)
    assert x.shape == (6, 4)
    np.testing.assert_array_equal(y, table[:, -1])
    np.savez(tmp_path / "a.npz", X=table, y=np.arange(6))
    x, y = data.load_array(tmp_path / "a.npz", label_key="y")
    np.testing.assert_array_equal(y, np.arange(6))
    scipy.io.savemat(tmp_path / "a.mat", {"X": table, "y": np.arange(6)})  # stored as (1, 6)
    x, y = data.load_array(tmp_path / "a.mat", label_key="y")
    assert y.shape == (6,) and y.dtype == np.int64
    np.savez(tmp_path / "bad.npz", X=table, y=np.arange(5))
    with pytest.raises(DataError, match="do not match 6 rows"):
        data.load_array(tmp_path / "bad.npz", label_key="y")
    with pytest.raises(DataError, match="label_key applies only"):
        data.load_array(tmp_path / "a.csv", label_key="y")
    with pytest.raises(DataError, match="key='X' applies only"):
        data.load_array(tmp_path / "a.csv", key="X")


def test_load_array_bad_content(tmp_path):
    (tmp_path / "blob.bin").write_bytes(bytes(range(1, 256)) * 4)
    with pytest.raises(DataError, match="unrecognised data format"):
        data.load_array(tmp_path / "blob.bin")
    (tmp_path / "empty.npy").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        data.load_array(tmp_path / "empty.npy")
    np.save(tmp_path / "vec.npy", np.arange(4.0))
    with pytest.raises(DataError, match="1-D array"):
        data.load_array(tmp_path / "vec.npy")
    np.save(tmp_path / "none.npy", np.zeros((0, 4)))
    with pytest.raises(DataError, match="empty"):
        data.load_array(tmp_path / "none.npy")
    scipy.io.savemat(tmp_path / "cell.mat", {"X": np.array([np.ones(2), np.ones(3)], dtype=object)})
    with pytest.raises(DataError, match="expected numbers"):
        data.load_array(tmp_path / "cell.mat")


@pytest.mark.parametrize(
    "loader",
    [data.load_idx, data.load_mnist, data.load_mat, data.load_csv, data.load_npy, data.load_npz,
     data.load_array],
)
def test_missing_file(tmp_path, loader):
    with pytest.raises(DataError, match="nope.dat: file not found"):
        loader(tmp_path / "nope.dat")


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(DataError, match="is a directory"):
        data.load_array(tmp_path)


# ------------------------------------------------------------------------------------------
# scale_to_unit, binarize
# ------------------------------------------------------------------------------------------


def test_scale_to_unit():
    ints = np.array([[0, 128, 255]], dtype=np.uint8)
    out = data.scale_to_unit(ints)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.0, 128 / 255, 1.0]], rtol=1e-6)
    np.testing.assert_array_equal(data.scale_to_unit(np.array([[0.0, 255.0]])), [[0.0, 1.0]])
    unit = np.array([[0.0, 0.25, 1.0]])
    np.testing.assert_array_equal(data.scale_to_unit(unit), unit)
    with pytest.raises(DataError, match="cannot infer the scale"):
        data.scale_to_unit(np.array([[0.0, 2.5]]))
    with pytest.raises(DataError, match="cannot infer the scale"):
        data.scale_to_unit(np.array([[0, 300]]))
    with pytest.raises(DataError, match="cannot infer the scale"):
        data.scale_to_unit(np.array([[-1.0, 0.5]]))


def test_binarize_threshold():
    x = np.array([[0.0, 0.5, 0.51, 1.0]])
    np.testing.assert_array_equal(data.binarize(x), [[0, 0, 1, 1]])
    np.testing.assert_array_equal(data.binarize(x, threshold=0.2), [[0, 1, 1, 1]])
    assert data.binarize(x).dtype == np.float32
    np.testing.assert_array_equal(data.binarize(np.array([[3, 200]]), threshold=127), [[0, 1]])
    with pytest.raises(DataError, match="scale_to_unit"):
        data.binarize(np.array([[0, 255]]))
    with pytest.raises(DataError, match="unknown method"):
        data.binarize(x, method="coin")
    with pytest.raises(DataError, match="NaN/inf"):
        data.binarize(np.array([[0.1, np.nan]]))


def test_binarize_stochastic_reproducible_and_unbiased():
    p = np.tile(np.linspace(0.0, 1.0, 101), (2000, 1))  # 202,100 entries
    a = data.binarize(p, method="stochastic", seed=0)
    b = data.binarize(p, method="stochastic", seed=0)
    c = data.binarize(p, method="stochastic", seed=1)
    assert a.dtype == np.float32 and a.shape == p.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.all(a[:, 0] == 0) and np.all(a[:, -1] == 1)
    assert set(np.unique(a)) <= {0.0, 1.0}
    # Overall mean: E = mean(p), Var = sum p(1-p) / n^2.
    se = np.sqrt((p * (1 - p)).sum()) / p.size
    assert abs(a.mean() - p.mean()) < 5 * se
    # Per column (each column has one p): 2000 draws, 5 standard errors.
    col_se = np.sqrt(p[0] * (1 - p[0]) / p.shape[0])
    assert np.all(np.abs(a.mean(axis=0) - p[0]) <= 5 * col_se + 1e-12)
    gen = np.random.default_rng(7)
    np.testing.assert_array_equal(
        data.binarize(p, method="stochastic", seed=gen),
        data.binarize(p, method="stochastic", seed=np.random.default_rng(7)),
    )


def test_binarize_stochastic_needs_probabilities():
    with pytest.raises(DataError, match=r"\[0, 1\].*scale_to_unit"):
        data.binarize(np.array([[0.0, 255.0]]), method="stochastic", seed=0)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        data.binarize(np.array([[-0.1, 0.5]]), method="stochastic", seed=0)


# ------------------------------------------------------------------------------------------
# validate_data
# ------------------------------------------------------------------------------------------


def test_validate_data_returns_float32_contiguous():
    x = np.asfortranarray(np.random.default_rng(0).random((5, 3)))
    out = data.validate_data(x, n_features=3)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out, x, rtol=1e-6)
    b = data.validate_data(np.array([[0, 1], [1, 1]], dtype=bool), binary=True)
    assert b.dtype == np.float32


def test_validate_data_accepts_tensors():
    torch = pytest.importorskip("torch")
    t = torch.ones(3, 2, requires_grad=True)
    out = data.validate_data(t, n_features=2, binary=True)
    assert out.shape == (3, 2) and out.dtype == np.float32


def test_validate_data_shape_errors():
    with pytest.raises(DataError, match="must be 2-D.*reshape"):
        data.validate_data(np.ones(4))
    with pytest.raises(DataError, match="must be 2-D"):
        data.validate_data(np.ones((2, 2, 2)))
    with pytest.raises(DataError, match="empty"):
        data.validate_data(np.ones((0, 4)))
    with pytest.raises(DataError, match="expected numbers"):
        data.validate_data(np.array([["a", "b"]]))
    with pytest.raises(
        DataError, match="^data has 783 columns but the model has 784 visible units$"
    ):
        data.validate_data(np.zeros((2, 783)), n_features=784)
    with pytest.raises(DataError, match="^train has 3 columns"):
        data.validate_data(np.zeros((2, 3)), n_features=4, name="train")


def test_validate_data_non_finite():
    x = np.zeros((10, 4))
    x[3, 2] = np.nan
    x[7, 0] = np.inf
    x[7, 1] = -np.inf
    with pytest.raises(DataError, match=r"3 NaN/inf values \(first at row 3, column 2, in 2 rows\)"):
        data.validate_data(x)
    with pytest.raises(DataError, match="after conversion to float32"):
        data.validate_data(np.array([[1e300, 0.0]]))


def test_validate_data_binary():
    x = np.zeros((3, 4))
    x[1, 2] = 0.5
    with pytest.raises(DataError, match=r"binary.*first 0.5 at row 1, column 2.*binarize.*--binarize"):
        data.validate_data(x, binary=True)
    with pytest.raises(DataError, match="scale_to_unit"):
        data.validate_data(np.array([[0.0, 255.0]]), binary=True)
    out = data.validate_data(np.array([[0.0, 1.0]]), binary=True)
    np.testing.assert_array_equal(out, [[0.0, 1.0]])


# ------------------------------------------------------------------------------------------
# Embedded data set and the shared data folder
# ------------------------------------------------------------------------------------------


def test_load_default():
    x, y = data.load_default()
    assert x.shape == (10000, 784) and x.dtype == np.float32
    assert y.shape == (10000,) and y.dtype == np.int64
    assert set(np.unique(x)) == {0.0, 1.0}
    assert np.bincount(y, minlength=10).tolist() == MNIST_TEST_LABEL_COUNTS
    assert np.all(np.diff(y) >= 0)  # rows ordered by label
    assert abs(x.mean() - 0.1325) < 5e-4
    data.validate_data(x, n_features=784, binary=True)


def test_embedded_file_is_small_and_packed():
    path = Path(data.__file__).parent / "embedded" / data.DEFAULT_DATASET
    assert path.stat().st_size < 400_000
    with np.load(path) as f:
        assert f["pixels"].dtype == np.uint8 and f["pixels"].shape == (10000, 98)
        assert f["shape"].tolist() == [10000, 784]


def test_shared_mnist_csv_label_last():
    x, y = data.load_array(shared("mnist", "mnist_5k.csv.gz"), label_column=-1)
    assert x.shape == (5000, 784) and x.dtype == np.float32
    assert x.min() == 0 and x.max() == 255  # not rescaled by load_array
    assert y.dtype == np.int64 and set(np.unique(y)) == set(range(10))
    unit = data.scale_to_unit(x)
    assert unit.max() == 1.0
    data.validate_data(data.binarize(unit), n_features=784, binary=True)


def test_shared_binarized_mnist_matches_default_and_raw():
    folder = shared("binarized-mnist")
    test = data.load_binarized_mnist(folder, "test")
    x, y = data.load_default()
    np.testing.assert_array_equal(test, x)
    raw, raw_labels = data.load_mnist(
        shared("mnist", "t10k-images-idx3-ubyte.gz"), shared("mnist", "t10k-labels-idx1-ubyte.gz")
    )
    order = np.argsort(raw_labels, kind="stable")
    np.testing.assert_array_equal(raw_labels[order], y)
    raw = raw[order]
    assert not np.any((x == 1) & (raw == 0))
    assert not np.any((x == 0) & (raw == 1))
    with pytest.raises(DataError, match="unknown split"):
        data.load_binarized_mnist(folder, "dev")
    with pytest.raises(DataError, match="not found"):
        data.load_binarized_mnist(folder / "missing", "test")


def test_shared_mat_lists_keys_when_ambiguous():
    path = shared("binary-alphadigits", "binaryalphadigs.mat")
    with pytest.raises(DataError, match="several arrays.*'dat'"):
        data.load_mat(path)
