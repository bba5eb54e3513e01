"""Where the trainer's batches come from: in-memory tensors or a ``torch.utils.data.DataLoader``.

A batch is :class:`Batch` — the visible values, optionally a mask (entries that take part;
the CF-RBM's rated items) and a per-row context (the conditional RBM's r).  A
:class:`BatchSource` is indexable: the trainer shuffles its rows with its own generator (so a
seed fixes the order and a resumed run continues it bit for bit) and asks for each batch by
row indices.  A DataLoader is iterated as it is (its own sampler shuffles); its items may be
tensors, :class:`Batch` tuples (``default_collate`` keeps the type), dicts with those keys, or
tuples whose first element is the values (labels after it are ignored).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from ..sampling.bits import bernoulli


class Batch(NamedTuple):
    """One training batch: ``values`` (rows × visible columns), optional ``mask`` and ``context``."""

    values: Tensor
    mask: Tensor | None = None
    context: Tensor | None = None


class BatchSource:
    """Rows the trainer can shuffle: ``len(source)`` rows, :meth:`batch` by row indices."""

    def __len__(self) -> int:
        raise NotImplementedError

    def batch(self, rows: Tensor) -> Batch:
        raise NotImplementedError

    def check(self, model: Any, name: str = "data") -> None:
        """Validate the data against the model once, before training (with ``sample_data`` the
        trainer checks the rows as probabilities instead and does not call this)."""

    def to(self, device: torch.device, dtype: torch.dtype) -> BatchSource:
        return self

    def mean(self) -> Tensor | None:
        """Column means of the values (for ``model.init_from_data``), None if unknown."""
        return None


class TensorBatches(BatchSource):
    """Batches gathered from tensors held in memory (rows gathered per batch: they stay in cache)."""

    def __init__(self, values: Tensor, mask: Tensor | None = None, context: Tensor | None = None,
                 name: str = "data") -> None:
        self.values, self.mask, self.context, self.name = as_tensor(values, name), mask, context, name
        for what, t in (("mask", mask), ("context", context)):
            if t is not None and t.shape[0] != self.values.shape[0]:
                raise DataError(f"{name}: the {what} has {t.shape[0]} rows, the values {self.values.shape[0]}")

    def __len__(self) -> int:
        return self.values.shape[0]

    def batch(self, rows: Tensor) -> Batch:
        def pick(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.index_select(0, rows)
        return Batch(self.values.index_select(0, rows), pick(self.mask), pick(self.context))

    def check(self, model: Any, name: str | None = None) -> None:
        model.check_data(self.values, name or self.name)

    def to(self, device: torch.device, dtype: torch.dtype) -> TensorBatches:
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device, dtype).contiguous()

        return TensorBatches(self.values.to(device, dtype).contiguous(), move(self.mask), move(self.context),
                             self.name)

    def mean(self) -> Tensor:
        return self.values.mean(0)


class LoaderBatches:
    """A DataLoader (or any re-iterable of batches), iterated in its own order each epoch."""

    def __init__(self, loader: Any, name: str = "data") -> None:
        self.loader, self.name = loader, name

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        for item in self.loader:
            yield as_batch(item, self.name)

    def mean(self) -> Tensor | None:
        """Column means over one pass of the loader."""
        total, rows = None, 0
        for batch in self:
            s = batch.values.double().sum(0)
            total = s if total is None else total + s
            rows += batch.values.shape[0]
        return None if total is None else total / max(rows, 1)


def check_probabilities(x: Tensor, scale: float, name: str = "data") -> None:
    """Raise :class:`DataError` unless every entry of ``x`` lies in [0, ``scale``]: the data of
    ``TrainingConfig(sample_data=True)`` are ``scale`` times probabilities."""
    low, high = (float(t) for t in torch.aminmax(x)) if x.numel() else (0.0, 0.0)
    if not (0.0 <= low and high <= scale):  # also false for NaN
        raise DataError(f"{name}: sample_data draws Bernoulli rows from probabilities, so the values must lie in "
                        f"[0, {scale:g}], got [{low:g}, {high:g}]; scale them first (boltzkit.data.scale_to_unit)")


def redraw(x: Tensor, scale: float, generator: torch.Generator | None = None) -> Tensor:
    """s · Bernoulli(x / s): a fresh binary draw of rows given as probabilities (times s).

    Dynamic binarisation: every pass over grey-level data sees another binary sample of it,
    as in Salakhutdinov & Hinton's DBM code, instead of one fixed draw the model can over-fit.
    s = 1 for Bernoulli units; s = N for N tied binary copies (binomial:N, the DBM's doubled
    first pre-training layer), which keeps the copies equal.
    """
    if scale == 1.0:
        return bernoulli(x, generator)
    return bernoulli(x / scale, generator, inplace=True).mul_(scale)


def as_tensor(x: Any, name: str = "data") -> Tensor:
    """``x`` as a tensor: tensors pass, NumPy arrays are converted (float64 stays float64,
    other numbers become float32), anything else is refused with one line."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "biuf":
            raise DataError(f"{name}: expected numbers, got a NumPy array of dtype {x.dtype}")
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64 if x.dtype == np.float64
                                                     else np.float32))
    raise DataError(f"{name} must be a torch.Tensor, a NumPy array or a DataLoader, got {type(x).__name__}")


def as_batch(item: Any, name: str = "data") -> Batch:
    """One loader item as a :class:`Batch` (see the module docstring)."""
    if isinstance(item, Batch):
        return item
    if isinstance(item, dict):
        return Batch(as_tensor(item["values"], name), item.get("mask"), item.get("context"))
    if isinstance(item, (list, tuple)):
        if not item:
            raise DataError(f"{name}: the loader yielded an empty batch")
        return Batch(as_tensor(item[0], name))
    return Batch(as_tensor(item, name))


def batch_source(data: Any, name: str = "data") -> BatchSource | LoaderBatches:
    """The trainer's view of ``data``: a source as is, a DataLoader/iterable, or a tensor/array."""
    if isinstance(data, (BatchSource, LoaderBatches)):
        return data
    if isinstance(data, torch.utils.data.DataLoader):
        return LoaderBatches(data, name)
    return TensorBatches(as_tensor(data, name), name=name)
