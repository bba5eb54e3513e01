"""Scaling, binarisation and validation of data matrices (numpy in, numpy out)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from ..errors import DataError

# --------------------------------------------------------------------------------------------
# Scaling, binarisation, validation
# --------------------------------------------------------------------------------------------


def _to_numpy(x: Any, name: str) -> np.ndarray:
    """``x`` as a numeric numpy array (torch tensors are detached and moved to the CPU)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{name}: expected numbers, got an array of dtype {arr.dtype}")
    return arr


def _float_dtype(arr: np.ndarray) -> np.dtype:
    """float64 stays float64; everything else becomes float32."""
    return np.dtype(np.float64) if arr.dtype == np.float64 else np.dtype(np.float32)


def _first_index(mask: np.ndarray) -> tuple[int, ...]:
    """Index of the first True of ``mask`` in C order."""
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), mask.shape))


def _where(mask: np.ndarray) -> str:
    """'row r, column c' for a 2-D mask, else 'index (i, j, ...)', of its first True."""
    idx = _first_index(mask)
    if len(idx) == 2:
        return f"row {idx[0]}, column {idx[1]}"
    return f"index {idx[0] if len(idx) == 1 else idx}"


def scale_to_unit(x: Any) -> np.ndarray:
    """Bring integer intensities 0..255 to [0, 1] by dividing by 255; [0, 1] data is kept.

    Rule: if max(x) <= 1 and min(x) >= 0 the values are returned unchanged (as float); if they
    are integers in 0..255 with max > 1 they are divided by 255; anything else raises
    :class:`DataError` (the scale cannot be inferred). Returns float32 (float64 input stays float64).
    """
    arr = _to_numpy(x, "data")
    out = arr.astype(_float_dtype(arr))
    if out.size == 0:
        return out
    bad = ~np.isfinite(out)
    if bad.any():
        raise DataError(f"data: {int(bad.sum())} NaN/inf values (first at {_where(bad)}); cannot scale")
    lo, hi = float(out.min()), float(out.max())
    if lo >= 0.0 and hi <= 1.0:
        return out
    if lo >= 0.0 and hi <= 255.0 and np.all(out == np.round(out)):
        scaled: np.ndarray = out / out.dtype.type(255.0)
        return scaled
    raise DataError(
        f"data: cannot infer the scale of values in [{lo:g}, {hi:g}]; scale_to_unit only divides "
        f"integer data in 0..255 by 255; rescale it yourself (e.g. x / x.max())"
    )


def binarize(
    x: Any,
    threshold: float = 0.5,
    *,
    method: Literal["threshold", "stochastic"] = "threshold",
    seed: int | np.random.Generator | None = None,
) -> np.ndarray:
    """Map data to 0/1 values (float32, same shape).

    ``method="threshold"``: ``b = 1[x > threshold]``.
    ``method="stochastic"``: ``b ~ Bernoulli(x)`` independently per entry, which needs x in
    [0, 1]; ``seed`` (an int or a ``numpy.random.Generator``) makes it reproducible.

    Data on a 0..255 scale must be brought to [0, 1] first (:func:`scale_to_unit`): a threshold
    in (0, 1) applied to values above 1 is refused as a likely mistake.
    """
    arr = _to_numpy(x, "data")
    vals = arr.astype(_float_dtype(arr))
    bad = ~np.isfinite(vals)
    if bad.any():
        raise DataError(
            f"data: {int(bad.sum())} NaN/inf values (first at {_where(bad)}); cannot binarise"
        )
    if method == "threshold":
        if 0.0 < threshold < 1.0 and vals.size and float(vals.max()) > 1.0:
            raise DataError(
                f"data: values up to {float(vals.max()):g} but threshold={threshold:g}; scale them "
                f"to [0, 1] first with boltzkit.data.scale_to_unit(x), or pass a threshold on "
                f"the data's own scale"
            )
        return (vals > threshold).astype(np.float32)
    if method == "stochastic":
        if vals.size and (float(vals.min()) < 0.0 or float(vals.max()) > 1.0):
            raise DataError(
                f"data: stochastic binarisation needs probabilities in [0, 1], got values in "
                f"[{float(vals.min()):g}, {float(vals.max()):g}]; scale them first with "
                f"boltzkit.data.scale_to_unit(x)"
            )
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        return (rng.random(vals.shape) < vals).astype(np.float32)
    raise DataError(f"binarize: unknown method {method!r}; use 'threshold' or 'stochastic'")


def validate_data(
    x: Any,
    n_features: int | None = None,
    binary: bool = False,
    name: str = "data",
) -> np.ndarray:
    """Check a data matrix at the library's edge and return it as float32, C-contiguous.

    Checks, each failing with a :class:`DataError` that says what and where: numeric, 2-D
    (n_samples, n_features), at least one row and one column, every value finite (NaN/inf are
    counted and the first one located), ``n_features`` columns when given (the model's visible
    units), and values exactly 0 or 1 when ``binary``.
    """
    arr = _to_numpy(x, name)
    if arr.ndim != 2:
        hint = "; for a single sample use x.reshape(1, -1)" if arr.ndim == 1 else ""
        raise DataError(
            f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}{hint}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"{name} is empty (shape {arr.shape})")
    with np.errstate(over="ignore"):  # overflow to inf is reported just below
        out = np.ascontiguousarray(arr, dtype=np.float32)
    bad = ~np.isfinite(out)
    if bad.any():
        extra = " after conversion to float32" if np.isfinite(arr).all() else ""
        raise DataError(
            f"{name} has {int(bad.sum())} NaN/inf values{extra} (first at {_where(bad)}, in "
            f"{int(bad.any(axis=1).sum())} rows); drop or impute those rows"
        )
    if n_features is not None and out.shape[1] != n_features:
        raise DataError(
            f"{name} has {out.shape[1]} columns but the model has {n_features} visible units"
        )
    if binary:
        nonbinary = (out != 0.0) & (out != 1.0)
        if nonbinary.any():
            r, c = _first_index(nonbinary)
            scale_hint = (
                " (values exceed 1: scale to [0, 1] first with boltzkit.data.scale_to_unit)"
                if float(out.max()) > 1.0
                else ""
            )
            raise DataError(
                f"{name} must be binary (0/1) but has {int(nonbinary.sum())} other values (first "
                f"{out[r, c]:g} at row {r}, column {c}); binarize it with boltzkit.data.binarize(x) "
                f"or the CLI flag --binarize{scale_hint}"
            )
    return out


