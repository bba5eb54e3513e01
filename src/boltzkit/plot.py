"""Pictures a person would rather look at: filters, samples, learning curves (PNG)."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .checkpoint import atomic_write_bytes


def new_figure(figsize: tuple[float, float], ncols: int = 1) -> tuple[Any, Any]:
    """A matplotlib ``Figure`` on its own Agg canvas and a row of axes: no pyplot, no global
    backend, nothing that touches a user's open figures."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, axes


def image_shape(n_pixels: int) -> tuple[int, int]:
    """(rows, cols) of a square-ish image with ``n_pixels`` pixels (28×28 for 784)."""
    side = int(math.isqrt(n_pixels))
    if side * side == n_pixels:
        return side, side
    for rows in range(side, 0, -1):
        if n_pixels % rows == 0:
            return rows, n_pixels // rows
    return 1, n_pixels


def tile(images: np.ndarray, shape: tuple[int, int] | None = None, columns: int | None = None,
         normalise: bool = True) -> np.ndarray:
    """Arrange rows of ``images`` (N × pixels) into one grid with 1-pixel gaps."""
    images = np.asarray(images, dtype=np.float64)
    n = images.shape[0]
    rows_px, cols_px = shape or image_shape(images.shape[1])
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


def save_figure(fig: Any, path: str | Path) -> Path:
    """Render ``fig`` as a PNG and write it atomically to ``path``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def save_grid(images: np.ndarray, path: str | Path, title: str = "", normalise: bool = True,
              shape: tuple[int, int] | None = None, cmap: str = "gray") -> Path:
    """Save a grid of images (rows of ``images``) as a PNG."""
    grid = tile(images, shape, normalise=normalise)
    fig, (ax,) = new_figure((min(12, 1 + grid.shape[1] / 30), min(12, 1 + grid.shape[0] / 30)))
    ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def save_filters(weight: np.ndarray, path: str | Path, max_filters: int = 100,
                 shape: tuple[int, int] | None = None) -> Path:
    """Receptive fields: column j of W (visible × hidden) as an image, each scaled to its range."""
    weight = np.asarray(weight)
    return save_grid(weight[:, :max_filters].T, path, title="filters (columns of W)", shape=shape)


def save_curves(history: Sequence[dict[str, float]], path: str | Path) -> Path:
    """One panel per metric recorded in ``history`` (a list of per-epoch dicts) against epoch."""
    keys = [k for k in dict.fromkeys(k for row in history for k in row) if k not in ("epoch", "lr")]
    fig, axes = new_figure((4 * max(1, len(keys)), 3), max(1, len(keys)))
    for ax, key in zip(axes, keys):
        points = [(row["epoch"], row[key]) for row in history if key in row]
        if points:
            ax.plot(*zip(*points), marker="o")
        ax.set_xlabel("epoch")
        ax.set_title(key.replace("_", " "))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)
