"""Markov chains over the visible layer: explicit state, advanced by Gibbs kernels.

A chain's state is a tensor of visible configurations (one row per chain); a kernel is a
function of (model, state, randomness) returning the new state, so chains can persist
across parameter updates, be swapped between temperatures, or be saved and resumed.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .rbm import RBM


class PersistentChains:
    """Fantasy particles kept between parameter updates (Tieleman 2008).

    The chains start from training rows (``n_chains`` of them, drawn from the first batch
    they see, with repetition when the batch is smaller) and then only move by Gibbs
    sweeps under the current model: v ← Gibbs^k(v).
    """

    def __init__(self, n_chains: int | None = None) -> None:
        self.n_chains = n_chains
        self.state: Tensor | None = None

    def initialise(self, v_data: Tensor, generator: torch.Generator | None = None) -> Tensor:
        n = self.n_chains or v_data.shape[0]
        index = torch.randint(v_data.shape[0], (n,), generator=generator, device="cpu")
        self.state = v_data[index.to(v_data.device)].clone()
        return self.state

    def advance(self, rbm: RBM, v_data: Tensor, steps: int,
                generator: torch.Generator | None = None) -> Tensor:
        """Move every chain ``steps`` Gibbs sweeps and return the new state."""
        if self.state is None or self.state.shape[1] != v_data.shape[1]:
            self.initialise(v_data, generator)
        self.state = rbm.sample(self.state, steps, generator)
        return self.state

    def state_dict(self) -> dict[str, Tensor]:
        return {} if self.state is None else {"chains": self.state}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.state = state.get("chains")
