"""Sequences of different lengths as trainer batches: padded values with a mask.

:class:`SequenceBatches` is a :class:`~boltzkit.training.BatchSource` over N sequences.  A batch
of rows is padded at the end to its longest member:

- ``values``  (B, T, D) the input frames (or (B, D) start vectors for one-to-many models),
- ``mask``    (B, T)    1 at real steps, 0 at padding,
- ``context`` the targets: (B, T, K) per-step targets, (B, K) one target per sequence, or None
  when the targets are the inputs themselves (next-step prediction).

The trainer shuffles sequence indices with its own generator; each batch is gathered and padded
on demand, so memory holds the sequences once, unpadded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ...errors import DataError
from ...training.batches import Batch, BatchSource


def _as_list(items: Any, name: str) -> list[Tensor]:
    """A list of 1-D/2-D tensors from a list of arrays/tensors or a stacked 2-D/3-D tensor."""
    if isinstance(items, np.ndarray) and items.dtype != object:
        items = torch.from_numpy(np.ascontiguousarray(items))
    if isinstance(items, Tensor):
        if items.dim() not in (2, 3):
            raise DataError(f"{name} must be a list of sequences or a 2-D/3-D tensor, got shape "
                            f"{tuple(items.shape)}")
        return list(items.unbind(0))
    if not isinstance(items, (list, tuple)) and not (isinstance(items, np.ndarray)):
        raise DataError(f"{name} must be a list of sequences or a tensor, got {type(items).__name__}")
    out = []
    for i, item in enumerate(items):
        t = torch.from_numpy(np.ascontiguousarray(item)) if isinstance(item, np.ndarray) else item
        if not isinstance(t, Tensor):
            raise DataError(f"{name}[{i}] must be an array or tensor, got {type(item).__name__}")
        if t.dim() not in (1, 2):
            raise DataError(f"{name}[{i}] must be 1-D (one vector) or 2-D (steps × features), got shape "
                            f"{tuple(t.shape)}")
        out.append(t)
    return out


def pad_sequences(seqs: Sequence[Tensor], dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
    """Stack (T_i, D) tensors into (B, max T_i, D) zero-padded at the end, with the (B, T) mask."""
    length = max(s.shape[0] for s in seqs)
    dtype = dtype or seqs[0].dtype
    out = torch.zeros(len(seqs), length, seqs[0].shape[1], dtype=dtype, device=seqs[0].device)
    mask = torch.zeros(len(seqs), length, dtype=dtype, device=seqs[0].device)
    for i, s in enumerate(seqs):
        out[i, :s.shape[0]] = s
        mask[i, :s.shape[0]] = 1
    return out, mask


class SequenceBatches(BatchSource):
    """N sequences (and optional targets) the trainer can shuffle; see the module docstring.

    ``inputs``: a list of (T_i, D) sequences, a (N, T, D) tensor, or (N, D) start vectors
    (one-to-many).  ``targets``: None, a list of (T_i, K) sequences / (N, T, K) tensor (one
    target per step; lengths must equal the inputs' when those are sequences) or (N, K) rows
    (one target per sequence).
    """

    def __init__(self, inputs: Any, targets: Any = None, name: str = "data") -> None:
        self.name = name
        self.inputs = _as_list(inputs, name)
        if not self.inputs:
            raise DataError(f"{name} holds no sequences")
        self.targets = None if targets is None else _as_list(targets, f"{name} targets")
        self.input_steps = self.inputs[0].dim() == 2
        if any((s.dim() == 2) != self.input_steps for s in self.inputs):
            raise DataError(f"{name}: mixes sequences and single vectors")
        if self.targets is not None:
            if len(self.targets) != len(self.inputs):
                raise DataError(f"{name}: {len(self.targets)} targets for {len(self.inputs)} sequences")
            self.target_steps = self.targets[0].dim() == 2
            if any((t.dim() == 2) != self.target_steps for t in self.targets):
                raise DataError(f"{name} targets: mix sequences and single vectors")
            if self.input_steps and self.target_steps:
                for i, (s, t) in enumerate(zip(self.inputs, self.targets)):
                    if s.shape[0] != t.shape[0]:
                        raise DataError(f"{name}: sequence {i} has {s.shape[0]} steps but its targets "
                                        f"{t.shape[0]}")
        else:
            self.target_steps = False
        if not self.input_steps and not self.target_steps:
            raise DataError(f"{name}: neither the inputs nor the targets are sequences")
        self._check_shapes()

    def _check_shapes(self) -> None:
        for what, items in (("sequence", self.inputs), ("target", self.targets or [])):
            if not items:
                continue
            width = items[0].shape[-1]
            for i, t in enumerate(items):
                if t.dim() == 2 and t.shape[0] == 0:
                    raise DataError(f"{self.name}: {what} {i} is empty (0 steps)")
                if t.shape[-1] != width:
                    raise DataError(f"{self.name}: {what} {i} has {t.shape[-1]} columns, {what} 0 has {width}")
                if t.dtype.is_floating_point and not bool(torch.isfinite(t).all()):
                    raise DataError(f"{self.name}: {what} {i} contains NaN or inf")

    # -- BatchSource ----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def n_input(self) -> int:
        return int(self.inputs[0].shape[-1])

    @property
    def n_target(self) -> int | None:
        return None if self.targets is None else int(self.targets[0].shape[-1])

    def lengths(self) -> list[int]:
        """Steps of each sequence (from the inputs, or the targets for one-to-many)."""
        steps = self.inputs if self.input_steps else self.targets
        return [int(s.shape[0]) for s in steps]

    def batch(self, rows: Tensor) -> Batch:
        idx = [int(i) for i in rows.tolist()]
        dtype = torch.get_default_dtype() if not self.inputs[0].dtype.is_floating_point else self.inputs[0].dtype
        mask = None
        if self.input_steps:
            values, mask = pad_sequences([self.inputs[i] for i in idx], dtype)
        else:
            values = torch.stack([self.inputs[i] for i in idx]).to(dtype)
        context = None
        if self.targets is not None:
            if self.target_steps:
                context, target_mask = pad_sequences([self.targets[i] for i in idx], dtype)
                mask = target_mask if mask is None else mask
            else:
                context = torch.stack([self.targets[i] for i in idx]).to(dtype)
        return Batch(values, mask, context)

    def check(self, model: Any, name: str | None = None) -> None:
        """Widths against the model (``model.check_source``)."""
        model.check_source(self, name or self.name)

    def to(self, device: torch.device, dtype: torch.dtype) -> SequenceBatches:
        def move(ts: list[Tensor] | None) -> list[Tensor] | None:
            return None if ts is None else [t.to(device, dtype) for t in ts]
        out = object.__new__(SequenceBatches)
        out.__dict__.update(self.__dict__)
        out.inputs, out.targets = move(self.inputs), move(self.targets)
        return out

    def mean(self) -> Tensor:
        """Mean of the target columns over all steps (of the inputs for next-step data): what
        :meth:`~.base.SequenceModel.init_from_data` sets the output bias from."""
        items = self.targets if self.targets is not None else self.inputs
        total = sum(t.double().reshape(-1, t.shape[-1]).sum(0) for t in items)
        return total / sum(t.reshape(-1, t.shape[-1]).shape[0] for t in items)

    def all(self) -> Batch:
        """Every sequence in one padded batch (evaluation)."""
        return self.batch(torch.arange(len(self)))

    def chunks(self, size: int) -> list[Batch]:
        """Padded batches of ``size`` sequences in order (evaluation without padding blow-up;
        sequences of similar length are not grouped, so padding stays at most ``size`` rows)."""
        return [self.batch(rows) for rows in torch.arange(len(self)).split(size)]
