"""Persistent Markov chains: explicit state kept between parameter updates (Tieleman 2008)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .state import ChainState

if TYPE_CHECKING:
    from ..models.base import EnergyModel


class PersistentChains:
    """Fantasy particles kept between parameter updates (Tieleman 2008).

    The chains start from training rows (``n_chains`` of them, drawn from the first batch
    they see, with repetition when the batch is smaller; :meth:`EnergyModel.init_chains`)
    and then only move by the model's kernel: state ← advance^k(state).  :attr:`chains` is
    the :class:`ChainState` (every layer the model keeps); :attr:`state` its visible layer.
    """

    def __init__(self, n_chains: int | None = None) -> None:
        self.n_chains = n_chains
        self.chains: ChainState | None = None

    @property
    def state(self) -> Tensor | None:
        return None if self.chains is None else self.chains.visible

    @state.setter
    def state(self, value: Tensor | None) -> None:
        self.chains = None if value is None else ChainState(value)

    def initialise(self, model: EnergyModel, v_data: Tensor,
                   generator: torch.Generator | None = None) -> ChainState:
        self.chains = model.init_chains(v_data, self.n_chains or v_data.shape[0], generator)
        return self.chains

    def _ready(self, model: EnergyModel, v_data: Tensor, generator: torch.Generator | None) -> ChainState:
        if self.chains is None or self.chains.visible.shape[1] != v_data.shape[1]:
            return self.initialise(model, v_data, generator)
        return self.chains

    def advance(self, model: EnergyModel, v_data: Tensor, steps: int,
                generator: torch.Generator | None = None) -> ChainState:
        """Move every chain ``steps`` transitions and return the new state."""
        self.chains = model.advance(self._ready(model, v_data, generator), steps, generator)
        return self.chains

    def state_dict(self) -> dict[str, Tensor]:
        return {} if self.chains is None else self.chains.state_dict()

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.chains = ChainState.from_state_dict(state)
