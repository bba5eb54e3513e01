"""Rebuild ``binarized_mnist_test.npz``, the data set that ships inside boltzkit.

Not imported by the library; run it by hand when the embedded file must be regenerated::

    python src/boltzkit/datasets/build_embedded.py \\
        path/to/binarized_mnist_test.mat \\
        path/to/t10k-labels-idx1-ubyte.gz \\
        path/to/t10k-images-idx3-ubyte.gz \\
        [--out src/boltzkit/datasets/binarized_mnist_test.npz]

Inputs:
  * ``binarized_mnist_test.mat``: MATLAB file, ``X`` uint8 0/1 of shape (10000, 784); its rows are
    the raw MNIST test images stably sorted by label.
  * ``t10k-labels-idx1-ubyte(.gz)``: the official test labels; a stable argsort of them gives the
    row order of ``X``, and the sorted labels are stored.
  * ``t10k-images-idx3-ubyte(.gz)``: the raw test images, used only to check the pairing: after
    reordering, no binary pixel may be 1 where the raw value is 0, nor 0 where it is 255.

Output (``np.savez_compressed``):
  * ``pixels``: uint8 (10000, 98), ``np.packbits(X, axis=1)`` (big-endian bit order);
  * ``labels``: uint8 (10000,), digit labels 0..9 in row order;
  * ``shape``: int64 (2,), the unpacked shape (10000, 784).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import scipy.io


def _read_idx(path: Path, offset: int) -> np.ndarray:
    """Raw uint8 payload of an idx file (gzipped or not) after its ``offset``-byte header."""
    import gzip

    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return np.frombuffer(raw, dtype=np.uint8, offset=offset)


def build(mat_path: Path, labels_path: Path, images_path: Path, out_path: Path) -> dict[str, float]:
    """Check the binarised test set against the raw test set and write the packed .npz."""
    x = np.asarray(scipy.io.loadmat(str(mat_path))["X"], dtype=np.uint8)
    raw_labels = _read_idx(labels_path, 8)
    raw_images = _read_idx(images_path, 16).reshape(-1, 784)

    if x.shape != (10000, 784):
        raise SystemExit(f"{mat_path}: expected X of shape (10000, 784), got {x.shape}")
    if not np.isin(x, (0, 1)).all():
        raise SystemExit(f"{mat_path}: X is not 0/1")
    if raw_labels.shape != (10000,) or raw_images.shape != (10000, 784):
        raise SystemExit("raw test files do not hold 10,000 labels and 10,000 images of 784 pixels")

    order = np.argsort(raw_labels, kind="stable")
    labels = raw_labels[order]
    raw = raw_images[order]
    ones_on_black = int(((x == 1) & (raw == 0)).sum())
    zeros_on_white = int(((x == 0) & (raw == 255)).sum())
    if ones_on_black or zeros_on_white:
        raise SystemExit(
            f"pairing check failed: {ones_on_black} pixels are 1 where raw is 0 and "
            f"{zeros_on_white} are 0 where raw is 255; the row order is not the stable label sort"
        )

    packed = np.packbits(x, axis=1)
    np.savez_compressed(
        out_path,
        pixels=packed,
        labels=labels.astype(np.uint8),
        shape=np.asarray(x.shape, dtype=np.int64),
    )
    # Round-trip check of what was written.
    with np.load(out_path) as f:
        back = np.unpackbits(f["pixels"], axis=1, count=int(f["shape"][1]))
        if not np.array_equal(back, x) or not np.array_equal(f["labels"], labels):
            raise SystemExit(f"{out_path}: round trip failed")
    return {
        "bytes": out_path.stat().st_size,
        "pixel_mean": float(x.mean()),
        "ones_on_black": ones_on_black,
        "zeros_on_white": zeros_on_white,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mat", type=Path, help="binarized_mnist_test.mat")
    parser.add_argument("labels", type=Path, help="t10k-labels-idx1-ubyte(.gz)")
    parser.add_argument("images", type=Path, help="t10k-images-idx3-ubyte(.gz)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "binarized_mnist_test.npz",
        help="output .npz (default: next to this script)",
    )
    args = parser.parse_args(argv)
    info = build(args.mat, args.labels, args.images, args.out)
    print(
        f"wrote {args.out} ({info['bytes']:,} bytes); pixel mean {info['pixel_mean']:.4f}; "
        f"impossible pixels: {info['ones_on_black']} + {info['zeros_on_white']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
