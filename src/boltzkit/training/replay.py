"""The replay-buffer negative phase (Du & Mordatch 2019; Grathwohl et al. 2020, JEM).

A buffer of ``buffer_size`` past negative samples, filled with noise at the start.  Each
update takes ``n_chains`` distinct buffer entries, replaces each with fresh noise with
probability ``reinit`` (5 % in both papers), runs ``k`` MCMC transitions of the model's kernel
from them and writes the results back to the same entries; the moved samples are x⁻.  Fresh
noise comes from the model's ``random_states(n, data, generator)`` (an
:class:`~boltzkit.models.energy.EnergyFunctionModel`: uniform on its support or the data's
range, uniform 0/1 or categories).  Compared with PCD the chains are many more than the
batch, and the restarts keep some negatives exploring away from the modes the chains found.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..errors import ConfigurationError
from ..sampling import ChainState
from ..validation import check_float, check_int
from .gradient import ESTIMATORS, Estimator

if TYPE_CHECKING:
    from ..models.base import EnergyModel


class ReplayBuffer(Estimator):
    """Replay-buffer estimator; see the module docstring.  ``n_chains`` defaults to the batch size."""

    name = "replay"

    def __init__(self, k: int = 20, n_chains: int | None = None, buffer_size: int = 10000,
                 reinit: float = 0.05) -> None:
        self.k = check_int("k", k, least=1)
        self.n_chains = check_int("n_chains", n_chains, least=1, optional=True)
        self.buffer_size = check_int("buffer_size", buffer_size, least=1)
        self.reinit = check_float("reinit", reinit, 0.0, 1.0)
        if self.n_chains is not None and self.n_chains > self.buffer_size:
            raise ConfigurationError(f"n_chains ({self.n_chains}) must not exceed buffer_size ({self.buffer_size})")
        self.buffer: Tensor | None = None
        self._fresh: Tensor | int = 0
        self._drawn = 0

    def rows(self, batch_size: int) -> int:
        return self.n_chains or batch_size

    def negative_phase(self, model: EnergyModel, v_data: Tensor, positive: Any,
                       generator: torch.Generator | None, mask: Tensor | None) -> ChainState:
        if mask is not None:
            raise ConfigurationError("the replay buffer cannot follow per-example masks")
        random_states = getattr(model, "random_states", None)
        if random_states is None:
            raise ConfigurationError(f"the replay buffer needs fresh noise from the model: {type(model).__name__} has "
                                     f"no random_states(n, data, generator); use cd or pcd")
        n = min(self.n_chains or v_data.shape[0], self.buffer_size)
        buffer = self.buffer
        if buffer is None or buffer.shape[1] != v_data.shape[1]:
            buffer = self.buffer = random_states(self.buffer_size, v_data, generator).visible.clone()
        device = generator.device if generator is not None else v_data.device
        index = torch.randperm(self.buffer_size, generator=generator, device=device)[:n].to(buffer.device)
        fresh = torch.rand(n, generator=generator, device=device) < self.reinit
        noise = random_states(n, v_data, generator).visible
        start = torch.where(fresh.to(noise.device).unsqueeze(1), noise, buffer[index])
        state = model.advance(ChainState(start), self.k, generator)
        buffer[index] = state.visible.detach()
        self._fresh = self._fresh + fresh.sum()  # on the device: read once per epoch, by metrics()
        self._drawn += n
        return state

    def metrics(self) -> dict[str, float]:
        """Fraction of negatives restarted from noise since the last call."""
        out = {"replay_fresh_fraction": float(self._fresh) / self._drawn} if self._drawn else {}
        self._fresh = self._drawn = 0
        return out

    def state_dict(self) -> dict[str, Tensor]:
        state = super().state_dict()
        if self.buffer is not None:
            state["replay_buffer"] = self.buffer
        return state

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        super().load_state_dict(state)
        buffer = state.get("replay_buffer")
        self.buffer = None if buffer is None else buffer.clone()


ESTIMATORS["replay"] = ReplayBuffer
