"""Explicit Markov-chain state: named tensors, one row per chain.

A kernel is a function of (model, state, randomness) returning a new state, so chains can
persist across parameter updates, swap between temperatures, be checkpointed and resumed.
An RBM's state holds ``visible`` (and, between the two half-steps of a sweep, ``hidden``);
a deep Boltzmann machine adds one entry per hidden layer, a sequence model its recurrent
state.  Checkpoints store the visible layer under ``chains`` (the name used since the
first release) and every other layer under ``chains.<layer>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class ChainState:
    """Named layers of a batch of chains; ``visible`` is the layer the data lives in."""

    visible: Tensor
    layers: dict[str, Tensor] = field(default_factory=dict)

    @property
    def n_chains(self) -> int:
        return self.visible.shape[0]

    def get(self, name: str) -> Tensor | None:
        return self.visible if name == "visible" else self.layers.get(name)

    def replace(self, visible: Tensor, **layers: Tensor | None) -> ChainState:
        """A new state with ``visible`` and the given layers (a layer set to None is dropped)."""
        merged = {**self.layers, **layers}
        return ChainState(visible, {k: v for k, v in merged.items() if v is not None})

    def clone(self) -> ChainState:
        return ChainState(self.visible.clone(), {k: v.clone() for k, v in self.layers.items()})

    def to(self, device: torch.device | str) -> ChainState:
        return ChainState(self.visible.to(device), {k: v.to(device) for k, v in self.layers.items()})

    def index(self, rows: Tensor) -> ChainState:
        """The chains at ``rows`` (reordering, as for tempering swaps)."""
        return ChainState(self.visible[rows], {k: v[rows] for k, v in self.layers.items()})

    def state_dict(self, prefix: str = "chains") -> dict[str, Tensor]:
        return {prefix: self.visible, **{f"{prefix}.{k}": v for k, v in self.layers.items()}}

    @classmethod
    def from_state_dict(cls, tensors: dict[str, Tensor], prefix: str = "chains") -> ChainState | None:
        if prefix not in tensors:
            return None
        layers = {k.removeprefix(prefix + "."): v for k, v in tensors.items() if k.startswith(prefix + ".")}
        return cls(tensors[prefix], layers)
