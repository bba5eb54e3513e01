"""Data sets that ship with boltzkit, and the binarised-MNIST folder layout."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import DataError
from .formats import PathType, _npz_arrays, load_array
from .transforms import validate_data

DEFAULT_DATASET = "binarized_mnist_test.npz"
"""File name of the embedded data set inside ``boltzkit/data/embedded``."""

# --------------------------------------------------------------------------------------------
# Binarised MNIST
# --------------------------------------------------------------------------------------------


def load_default() -> tuple[np.ndarray, np.ndarray]:
    """The embedded default data set: binarised MNIST, test split, with labels.

    Returns ``(x, y)``: ``x`` float32 (10000, 784) of 0/1 pixels (28x28, row-major), ``y`` int64
    (10000,) digits 0..9. Rows are ordered by label. Fixed binarisation of Murray &
    Salakhutdinov (2009); MNIST by LeCun, Cortes & Burges (CC BY-SA 3.0).
    """
    resource = resources.files("boltzkit.data") / "embedded" / DEFAULT_DATASET
    try:
        raw = resource.read_bytes()
    except (FileNotFoundError, OSError) as exc:
        raise DataError(
            f"boltzkit/data/embedded/{DEFAULT_DATASET}: embedded data set not found; reinstall boltzkit"
        ) from exc
    where = Path(f"boltzkit/data/embedded/{DEFAULT_DATASET}")
    pixels, labels, shape = _npz_arrays(raw, where, ["pixels", "labels", "shape"])
    n, d = (int(s) for s in shape)
    if pixels.shape != (n, (d + 7) // 8) or labels.shape != (n,):
        raise DataError(f"{where}: corrupt embedded data set (inconsistent shapes); reinstall boltzkit")
    x = np.unpackbits(pixels, axis=1, count=d).astype(np.float32)
    return x, labels.astype(np.int64)


_BINARIZED_MNIST_SPLITS = ("train", "valid", "test")


def load_binarized_mnist(
    directory: PathType, split: Literal["train", "valid", "test"] = "test"
) -> np.ndarray:
    """One split of binarised MNIST from a folder of ``binarized_mnist_{train,valid,test}.mat``.

    Returns float32 (N, 784) of 0/1 pixels: N = 50,000 / 10,000 / 10,000. ``.amat`` files (the
    original text or MATLAB layout) are read when the ``.mat`` file is absent. The files carry no
    labels; the test rows are in the order of :func:`load_default`, whose labels apply.
    """
    if split not in _BINARIZED_MNIST_SPLITS:
        raise DataError(f"binarized MNIST: unknown split {split!r}; use 'train', 'valid' or 'test'")
    folder = Path(directory)
    if not folder.is_dir():
        raise DataError(f"{folder}: directory not found")
    candidates = [folder / f"binarized_mnist_{split}{ext}" for ext in (".mat", ".amat")]
    path = next((c for c in candidates if c.exists()), None)
    if path is None:
        raise DataError(f"{candidates[0]}: file not found (nor {candidates[1].name})")
    x, _ = load_array(path)
    return validate_data(x, n_features=784, binary=True, name=str(path))
