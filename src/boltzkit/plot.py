"""Pictures a person would rather look at: filters, samples, learning curves (PNG).

Every picture says what it shows without the code next to it: filters share one symmetric
colour scale with a colour bar and say how many of how many columns of W are drawn; a grid
of model images says whether it holds binary samples, probabilities or real values, on a
scale with a colour bar; learning curves have y-axis labels with units and say which data
each curve is measured on.  Each ``save_*`` function has a ``*_figure`` twin that returns
the matplotlib ``Figure`` (object-oriented matplotlib on an Agg canvas: pyplot is never
imported and the global backend is left alone); files are written atomically.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import atomic_write_bytes
from .errors import ConfigurationError, DataError
from .validation import check_int

#: what :func:`save_grid` may be told it shows (``kind``)
GRID_KINDS = ("binary samples", "probabilities", "values")

#: history columns that are bookkeeping, not curves
SKIPPED_COLUMNS = frozenset({"epoch", "lr", "cd_steps", "seconds"})

#: metric name (without a ``valid_`` / ``val_`` / ``test_`` / ``train_`` prefix) →
#: (panel title, y-axis label with its unit)
METRICS: dict[str, tuple[str, str]] = {
    "log_likelihood": ("log-likelihood (exact)", "log-likelihood (nats per example)"),
    "ais_log_likelihood": ("log-likelihood (AIS estimate)", "log-likelihood (nats per example)"),
    "pseudo_log_likelihood": ("pseudo-log-likelihood", "pseudo-log-likelihood (nats per example)"),
    "reconstruction_error": ("reconstruction error ‖v − E[v | E[h | v]]‖²",
                             "mean squared error per pixel"),
    "swap_rate_mean": ("swap acceptance, mean over neighbouring temperatures",
                       "swap acceptance (fraction accepted)"),
    "swap_rate_min": ("swap acceptance, lowest neighbouring pair", "swap acceptance (fraction accepted)"),
    "rmse": ("rating prediction error", "RMSE (ratings)"),
    "log_partition": ("log partition function log Z of the model", "log Z (nats)"),
}

#: name prefix → which data a metric is measured on
DATA_PREFIXES: dict[str, str] = {"valid_": "on validation data", "val_": "on validation data",
                                 "heldout_": "on held-out data",
                                 "test_": "on test data", "train_": "on training data"}

#: data description of unprefixed metrics that are measured on data (boltzkit's monitors
#: record training rows under the plain name and held-out rows under ``valid_``)
DEFAULT_DATA = "on training data"
_DATA_METRICS = frozenset({"log_likelihood", "ais_log_likelihood", "pseudo_log_likelihood",
                           "reconstruction_error", "rmse"})


def new_figure(figsize: tuple[float, float], ncols: int = 1, nrows: int = 1) -> tuple[Any, Any]:
    """A matplotlib ``Figure`` on its own Agg canvas and its axes (a row of ``ncols``; with
    ``nrows`` > 1, all ``nrows × ncols`` flattened row by row): no pyplot, no global
    backend, nothing that touches a user's open figures."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes[0] if nrows == 1 else axes.ravel()


def save_figure(fig: Any, path: str | Path) -> Path:
    """Render ``fig`` as a PNG and write it atomically to ``path``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def image_shape(n_pixels: int) -> tuple[int, int]:
    """(rows, cols) of a square-ish image with ``n_pixels`` pixels (28×28 for 784)."""
    side = int(math.isqrt(n_pixels))
    if side * side == n_pixels:
        return side, side
    for rows in range(side, 0, -1):
        if n_pixels % rows == 0:
            return rows, n_pixels // rows
    return 1, n_pixels


def _check_shape(n_pixels: int, shape: tuple[int, int] | None) -> tuple[int, int]:
    if shape is None:
        return image_shape(n_pixels)
    rows, cols = (int(s) for s in shape)
    if rows * cols != n_pixels:
        raise ConfigurationError(f"shape {rows}×{cols} does not hold images of {n_pixels} pixels")
    return rows, cols


def tile(images: np.ndarray, shape: tuple[int, int] | None = None, columns: int | None = None,
         normalise: bool = True) -> np.ndarray:
    """Arrange rows of ``images`` (N × pixels) into one grid with 1-pixel gaps (NaN).

    ``normalise`` maps each tile to [0, 1] by its own min and max; otherwise values are
    kept as they are, so that one colour scale serves every tile."""
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 2 or images.shape[0] == 0:
        raise DataError(f"expected a non-empty (images × pixels) array, got shape {images.shape}")
    n = images.shape[0]
    rows_px, cols_px = _check_shape(images.shape[1], shape)
    columns = columns or int(math.ceil(math.sqrt(n)))
    grid_rows = int(math.ceil(n / columns))
    out = np.full((grid_rows * (rows_px + 1) + 1, columns * (cols_px + 1) + 1), np.nan)
    for i, img in enumerate(images):
        img = img.reshape(rows_px, cols_px)
        if normalise:
            lo, hi = img.min(), img.max()
            img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
        r, c = divmod(i, columns)
        out[1 + r * (rows_px + 1):(r + 1) * (rows_px + 1), 1 + c * (cols_px + 1):(c + 1) * (cols_px + 1)] = img
    return out


def _grid_size(grid: np.ndarray, extra_width: float = 1.5) -> tuple[float, float]:
    """Figure inches for a tiled grid: about 30 grid pixels per inch, at least readable text."""
    width = min(12.0, max(4.0, 1 + grid.shape[1] / 30))
    height = min(12.0, max(3.0, 1 + grid.shape[0] / 30))
    return width + extra_width, height


def _colour_bar(fig: Any, ax: Any, image: Any, label: str) -> Any:
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
    bar.set_label(label)
    return bar


# -- filters ----------------------------------------------------------------------------------
def filter_grid(weight: np.ndarray, max_filters: int = 100,
                shape: tuple[int, int] | None = None) -> tuple[np.ndarray, tuple[float, float]]:
    """The first ``max_filters`` columns of W (visible × hidden) tiled as images, in weight
    units, and the one colour range (−m, m) they share, m = max |W_ij| over the tiles shown
    (1 when they are all zero), so that equal colours are equal weights in every tile."""
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim != 2 or 0 in weight.shape:
        raise DataError(f"expected a (visible × hidden) weight matrix, got shape {weight.shape}")
    check_int("max_filters", max_filters, least=1)
    shown = weight[:, :max_filters].T
    grid = tile(shown, shape, normalise=False)
    limit = float(np.abs(shown).max())
    limit = limit if limit > 0 and math.isfinite(limit) else 1.0
    return grid, (-limit, limit)


def filters_figure(weight: np.ndarray, max_filters: int = 100,
                   shape: tuple[int, int] | None = None, cmap: str = "RdBu_r") -> Any:
    """The ``Figure`` of :func:`save_filters`."""
    weight = np.asarray(weight)
    grid, (lo, hi) = filter_grid(weight, max_filters, shape)
    n_visible, n_hidden = weight.shape
    shown = min(max_filters, n_hidden)
    rows_px, cols_px = _check_shape(n_visible, shape)
    from matplotlib import colormaps

    fig, (ax,) = new_figure(_grid_size(grid))
    colours = colormaps[cmap].with_extremes(bad="0.7")  # grey gaps: white is a weight of 0
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=colours, vmin=lo, vmax=hi, interpolation="nearest")
    ax.set_axis_off()
    which = f"columns 1–{shown} of {n_hidden}" if shown > 1 else f"column 1 of {n_hidden}"
    ax.set_title(f"filters: {which} of W ({n_visible} visible × {n_hidden} hidden)\n"
                 f"one tile per hidden unit: its weights to the visible units as {rows_px}×{cols_px}\n"
                 f"one colour scale for all tiles, 0 = white", fontsize=9)
    _colour_bar(fig, ax, image, "weight")
    return fig


def save_filters(weight: np.ndarray, path: str | Path, max_filters: int = 100,
                 shape: tuple[int, int] | None = None) -> Path:
    """Receptive fields: column j of W (visible × hidden) as an image, all tiles on one
    symmetric colour scale ±max|W| (see :func:`filter_grid`) with a colour bar, titled with
    how many of how many filters are shown.  ``shape`` is (rows, cols) of one tile; default
    :func:`image_shape`.  For visible layers that are not images, the caller decides."""
    return save_figure(filters_figure(weight, max_filters, shape), path)


# -- grids of model images --------------------------------------------------------------------
def _grid_scale(images: np.ndarray, kind: str | None, normalise: bool) -> tuple[float, float] | None:
    """The colour range of :func:`save_grid` (None: each tile scaled to its own range)."""
    if kind is None:
        if normalise:
            return None
        finite = images[np.isfinite(images)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)
    if kind not in GRID_KINDS:
        raise ConfigurationError(f"kind must be one of {', '.join(repr(k) for k in GRID_KINDS)}, got {kind!r}")
    if kind == "binary samples" and not np.isin(images, (0.0, 1.0)).all():
        raise DataError("kind='binary samples' but the images hold values other than 0 and 1 "
                        "(probabilities? use kind='probabilities')")
    if kind == "probabilities" and not ((images >= 0) & (images <= 1)).all():
        raise DataError("kind='probabilities' but the images hold values outside [0, 1] "
                        "(use kind='values')")
    if kind == "values":
        return _grid_scale(images, None, normalise=False)
    return 0.0, 1.0


def grid_figure(images: np.ndarray, title: str = "", normalise: bool = True,
                shape: tuple[int, int] | None = None, cmap: str = "gray", kind: str | None = None) -> Any:
    """The ``Figure`` of :func:`save_grid`."""
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 2:
        raise DataError(f"expected an (images × pixels) array, got shape {images.shape}")
    scale = _grid_scale(images, kind, normalise)
    grid = tile(images, shape, normalise=scale is None)
    fig, (ax,) = new_figure(_grid_size(grid, 0.0 if scale is None else 1.5))
    lo, hi = scale if scale is not None else (0.0, 1.0)
    from matplotlib import colormaps

    colours = colormaps[cmap]
    if kind == "binary samples":  # two colours, and a colour bar of two blocks
        colours = colours.resampled(2)
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=colours, vmin=lo, vmax=hi, interpolation="nearest")
    ax.set_axis_off()
    heading = title
    if kind is not None and kind.lower() not in title.lower():
        shown = "real values" if kind == "values" else kind
        heading = f"{title} ({shown})" if title else f"{images.shape[0]} {shown}"
    if scale is None:
        note = "each tile scaled to its own range (colours not comparable between tiles)"
    elif kind is None:
        note = "one colour scale for all tiles"
    else:
        note = {"binary samples": "each pixel is a sampled unit state: black = 0, white = 1",
                "probabilities": "each pixel is a probability, on a fixed 0–1 scale",
                "values": "real values in data units, one colour scale for all tiles"}[kind]
    ax.set_title(f"{heading}\n{note}" if heading else note, fontsize=9)
    if scale is not None:
        label = {"binary samples": "unit state", "probabilities": "probability",
                 "values": "value (data units)"}.get(kind or "", "value")
        bar = _colour_bar(fig, ax, image, label)
        if kind == "binary samples":
            bar.set_ticks([0.25, 0.75], labels=["0 (off)", "1 (on)"])
    return fig


def save_grid(images: np.ndarray, path: str | Path, title: str = "", normalise: bool = True,
              shape: tuple[int, int] | None = None, cmap: str = "gray", kind: str | None = None) -> Path:
    """Save a grid of images (rows of ``images``) as a PNG.

    ``kind`` says what the pixels are and goes into the title: ``"binary samples"`` (0/1
    states) and ``"probabilities"`` (e.g. E[v | h]) are drawn on the fixed scale [0, 1],
    ``"values"`` (e.g. Gaussian units in data units) on one scale shared by all tiles; each
    with a colour bar, and ``normalise`` is ignored.  Without ``kind`` (older callers)
    ``normalise`` scales every tile to its own range (said in the title) and
    ``normalise=False`` uses one shared scale with a colour bar.
    """
    return save_figure(grid_figure(images, title, normalise, shape, cmap, kind), path)


# -- learning curves --------------------------------------------------------------------------
_PREPOSITIONS = ("on ", "of ", "over ", "from ", "at ", "after ", "during ", "in ")


def describe_metric(name: str, description: str | None = None) -> tuple[str, str]:
    """(panel title, y-axis label) of history column ``name``: the quantity, its unit and
    which data it is measured on (``description`` given by the caller wins over the one
    read from a ``valid_`` / ``val_`` / ``heldout_`` / ``test_`` / ``train_`` prefix; one
    that does not start with a preposition gets "on " in front)."""
    base, data = name, None
    for prefix, prefixed in DATA_PREFIXES.items():
        if name.startswith(prefix) and name[len(prefix):]:
            base, data = name[len(prefix):], prefixed
            break
    if base not in METRICS and base != name and name in METRICS:
        base, data = name, None
    title, ylabel = METRICS.get(base, (base.replace("_", " "), base.replace("_", " ")))
    if data is None and base in _DATA_METRICS:
        data = DEFAULT_DATA
    where = description if description is not None else data
    if where and not where.startswith(_PREPOSITIONS):
        where = f"on {where}"  # "first 1,000 training rows" → "on first 1,000 training rows"
    return (f"{title}\n{where}" if where else title), ylabel


def _curve_columns(history: Sequence[Mapping[str, Any]]) -> list[str]:
    """Columns drawn as panels: numeric, not bookkeeping, ``*_low``/``*_high`` folded into
    the estimate they bracket."""
    keys = list(dict.fromkeys(k for row in history for k in row))
    numeric = [k for k in keys if k not in SKIPPED_COLUMNS
               and any(isinstance(row.get(k), (int, float)) and not isinstance(row.get(k), bool)
                       for row in history)]
    present = set(numeric)
    return [k for k in numeric
            if not (re.search(r"_(low|high)$", k) and re.sub(r"_(low|high)$", "", k) in present)]


def _format(value: float) -> str:
    return f"{value:.4g}".replace("-", "−")


def curves_figure(history: Sequence[Mapping[str, Any]],
                  descriptions: Mapping[str, str] | None = None) -> Any:
    """The ``Figure`` of :func:`save_curves`."""
    from matplotlib.ticker import MaxNLocator

    descriptions = dict(descriptions or {})
    keys = _curve_columns(history)
    ncols = min(3, max(1, len(keys)))
    nrows = max(1, math.ceil(len(keys) / ncols))
    fig, axes = new_figure((4.6 * ncols, 3.4 * nrows), ncols, nrows)
    if not keys:
        axes[0].text(0.5, 0.5, "no metrics were recorded", ha="center", va="center",
                     transform=axes[0].transAxes)
        axes[0].set_axis_off()
    epochs_all = [row["epoch"] for row in history if "epoch" in row]
    for ax, key in zip(axes, keys):
        rows = [(row.get("epoch", i + 1), row) for i, row in enumerate(history)
                if isinstance(row.get(key), (int, float))]
        x = np.array([e for e, _ in rows], dtype=np.float64)
        y = np.array([float(r[key]) for _, r in rows])
        low, high = (np.array([float(r.get(f"{key}_{side}", np.nan)) for _, r in rows])
                     for side in ("low", "high"))
        has_interval = bool(np.isfinite(low).any() or np.isfinite(high).any())
        single = len(x) == 1
        lo_f = hi_f = y
        if has_interval:
            # an infinite end (log of a non-positive bound) is drawn up to the estimate
            lo_f = np.where(np.isfinite(low), low, y)
            hi_f = np.where(np.isfinite(high), high, y)
            band = "interval (±3 standard errors)"
            if single:
                ax.errorbar(x, y, yerr=[y - lo_f, hi_f - y], fmt="none", ecolor="tab:blue", capsize=6,
                            label=band)
            else:
                ax.fill_between(x, lo_f, hi_f, color="tab:blue", alpha=0.2, lw=0, label=band)
        ax.plot(x, y, marker="o", markersize=4, color="tab:blue", label="estimate" if has_interval else None)
        if has_interval:
            ax.legend(fontsize=8, loc="lower right")
        finite = np.isfinite(y)
        if finite.any():  # the last value in words: one-epoch runs are readable at a glance
            i = int(np.flatnonzero(finite)[-1])
            text = f"{_format(y[i])} (epoch {int(x[i])})"
            if has_interval:
                text += f"\ninterval {_format(lo_f[i])} to {_format(hi_f[i])}"
            if single:  # beside the point, on the side with room (the last epoch is at the right)
                left = len(epochs_all) > 1 and x[i] >= max(epochs_all)
                ax.annotate(text, (x[i], y[i]), xytext=(-10 if left else 10, 0), textcoords="offset points",
                            ha="right" if left else "left", va="center", fontsize=8)
            else:  # above a rising curve's end, below a falling one's: clear of the line
                earlier = y[:i][np.isfinite(y[:i])]
                rising = earlier.size == 0 or y[i] >= earlier[-1]
                ax.annotate(text, (x[i], y[i]), xytext=(0, 8 if rising else -8), textcoords="offset points",
                            ha="right", va="bottom" if rising else "top", fontsize=8)
        title, ylabel = describe_metric(key, descriptions.get(key))
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        # every panel spans the epochs of the run, also when a metric was measured only
        # at some of them (a single point would otherwise get ticks like 3.8 … 4.2)
        first, last = min(epochs_all or list(x) or [1]), max(epochs_all or list(x) or [1])
        if first == last:  # one epoch: one tick, not epochs 0 and 2 that never ran
            ax.set_xticks([first])
            ax.set_xlim(first - 0.6, last + 0.6)
        else:
            pad = max(0.2, 0.05 * (last - first))
            ax.set_xlim(first - pad, last + pad)
        ax.margins(y=0.2)
        ax.grid(alpha=0.3)
    for ax in axes[max(1, len(keys)):]:
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def save_curves(history: Sequence[Mapping[str, Any]], path: str | Path,
                descriptions: Mapping[str, str] | None = None) -> Path:
    """One panel per metric recorded in ``history`` (a list of per-epoch dicts) against epoch.

    Y-axis labels carry units (:data:`METRICS`); panel titles say which data a curve is
    measured on (from the name's prefix, or ``descriptions[metric]``, e.g. ``{"valid_log_likelihood":
    "on 1,000 held-out digits"}``); ``name_low`` / ``name_high`` are drawn as a band around
    ``name``; epoch, lr, cd_steps and seconds are not drawn.  Epoch ticks are integers and the
    last value of each curve is written next to it.
    """
    return save_figure(curves_figure(history, descriptions), path)
