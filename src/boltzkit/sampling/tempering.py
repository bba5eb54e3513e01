"""Parallel tempering: persistent chains at a ladder of inverse temperatures that swap states."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..errors import ConfigurationError
from .chains import PersistentChains
from .state import ChainState

if TYPE_CHECKING:
    from ..models.base import EnergyModel


def tempering_betas(replicas: int, spacing: str = "linear", beta_min: float | None = None) -> list[float]:
    """Inverse temperatures 1 = β_1 > … > β_R ≥ 0 for :class:`ParallelTempering`.

    ``"linear"``: β_r = 1 − (1 − β_min)(r−1)/(R−1), β_min defaults to 0 (at β = 0 every
    configuration is equally likely).  ``"geometric"``: β_r =
    β_min^((r−1)/(R−1)), β_min defaults to 0.1 and must be positive.
    """
    if replicas < 1:
        raise ConfigurationError(f"parallel tempering needs at least 1 replica, got {replicas}")
    if replicas == 1:
        return [1.0]
    steps = [r / (replicas - 1) for r in range(replicas)]
    if spacing == "linear":
        low = 0.0 if beta_min is None else float(beta_min)
        if not 0.0 <= low < 1.0:
            raise ConfigurationError(f"beta_min must be in [0, 1), got {low}")
        return [1.0 - (1.0 - low) * t for t in steps]
    if spacing == "geometric":
        low = 0.1 if beta_min is None else float(beta_min)
        if not 0.0 < low < 1.0:
            raise ConfigurationError(f"geometric spacing needs beta_min in (0, 1), got {low}")
        return [low ** t for t in steps]
    raise ConfigurationError(f"unknown spacing {spacing!r}; choose linear or geometric")


class ParallelTempering(PersistentChains):
    """Persistent chains with R tempered replicas each (Desjardins et al. 2010).

    Replica r of every chain samples p_βr(v) ∝ exp(−F_βr(v)), where F_β is the free energy
    of the model with energy βE (hidden units summed out; for binary hidden units
    F_β(v) = −β bᵀv − Σ_j softplus(β(c_j + (vᵀW)_j)), which is *not* β F(v)).  The state
    holds the replicas temperature-major: rows ``r·n … (r+1)·n − 1`` are the n chains at β_r,
    so rows ``0 … n−1`` (β_1 = 1) are samples of the model itself.

    One :meth:`advance` step is a round of swaps between neighbouring temperatures (pairs
    (1,2), (3,4), … and (2,3), (4,5), … on alternate steps) followed by a block-Gibbs sweep of
    all replicas at once (β passed as a ``(rows, 1)`` tensor); each kernel leaves the tempered
    product distribution invariant, so their composition does.  A model whose free energies
    share β-independent work (:meth:`~boltzkit.models.base.EnergyModel.tempered_field`: an
    RBM's hidden field) computes it once per step, for the swaps and for the sweep's first
    half-step.  States v_i at β_i and v_j at β_j are exchanged with the Metropolis
    probability of the product distribution::

        log A = [−F_βi(v_j) − F_βj(v_i)] − [−F_βi(v_i) − F_βj(v_j)],   accept if u < e^{log A}

    using the model's ``free_energy`` at each β (exact for every unit type).  Acceptance counts
    per neighbouring pair are kept in :attr:`swap_accepted` / :attr:`swap_attempts`;
    :attr:`swap_rates` is their ratio.

    Parameters
    ----------
    betas:
        Inverse temperatures, β_1 = 1 ≥ β_2 ≥ … ≥ β_R ≥ 0 (default: 10 linearly spaced
        from 1 to 0, see :func:`tempering_betas`).
    n_chains:
        Chains per temperature (default: the first batch size).
    """

    def __init__(self, betas: list[float] | None = None, n_chains: int | None = None) -> None:
        super().__init__(n_chains)
        betas = tempering_betas(10) if betas is None else [float(b) for b in betas]
        if not betas or betas[0] != 1.0:
            raise ConfigurationError(f"the first inverse temperature must be 1, got {betas[:1]}")
        if any(b < 0 for b in betas) or any(a < b for a, b in zip(betas, betas[1:])):
            raise ConfigurationError(f"inverse temperatures must be non-increasing and ≥ 0, got {betas}")
        self.betas = torch.tensor(betas, dtype=torch.float64)
        self.swap_accepted = torch.zeros(max(len(betas) - 1, 0), dtype=torch.int64)
        self.swap_attempts = torch.zeros_like(self.swap_accepted)
        self.parity = 0
        self._pair_cache: dict[tuple[int, int, int, torch.device], tuple[Tensor, Tensor, Tensor]] = {}

    @property
    def replicas(self) -> int:
        return len(self.betas)

    @property
    def swap_rates(self) -> Tensor:
        """Fraction of accepted swaps for each pair (β_r, β_r+1); NaN where none was tried."""
        return self.swap_accepted.double() / self.swap_attempts.double()

    def initialise(self, model: EnergyModel, v_data: Tensor,
                   generator: torch.Generator | None = None) -> ChainState:
        """Every replica of a chain starts at the same training row."""
        rows = super().initialise(model, v_data, generator)
        self.chains = ChainState(rows.visible.repeat(self.replicas, 1),
                                 {k: v.repeat(self.replicas, 1) for k, v in rows.layers.items()})
        return self.chains

    def model_samples(self) -> Tensor:
        """The β = 1 replicas (a view of the visible state)."""
        state = self._live().visible
        return state[: state.shape[0] // self.replicas]

    def _live(self) -> ChainState:
        if self.chains is None:
            raise RuntimeError("the tempered chains have not started: call advance() or initialise() first")
        return self.chains

    def advance(self, model: EnergyModel, v_data: Tensor, steps: int,
                generator: torch.Generator | None = None) -> ChainState:
        """``steps`` times: one round of swaps, then one transition of every replica.

        Returns the β = 1 replicas.
        """
        start = self._ready(model, v_data, generator).visible
        n = start.shape[0] // self.replicas
        beta = self.betas.to(start.device, start.dtype).repeat_interleave(n).unsqueeze(1)
        with torch.no_grad():
            for _ in range(steps):
                self.swap(model, generator)
                state = model.advance(self._live(), 1, generator, beta)
                # dropped here too, for a model whose advance does not consume the shared field
                self.chains = state.replace(state.visible, hidden_field=None)
        chains = self._live()
        return chains.index(torch.arange(n, device=chains.visible.device)) if chains.layers \
            else ChainState(self.model_samples())

    def swap(self, model: EnergyModel, generator: torch.Generator | None = None) -> None:
        """One round of Metropolis swaps between pairs (r, r+1) with r ≡ parity (mod 2).

        No value is read back to the host (the pair indices are built once per shape and
        device), so on CUDA a round runs without synchronisation.  The model's
        :meth:`~boltzkit.models.base.EnergyModel.tempered_field` of every row, when it has one,
        is left in the chains (``hidden_field``, permuted with them) for the next sweep."""
        R = self.replicas
        parity, self.parity = self.parity, 1 - self.parity
        if parity >= R - 1:  # no pair (r, r+1) with r ≡ parity
            return
        chains = self._live()
        state, device = chains.visible, chains.visible.device
        field = model.tempered_field(state)
        if field is not None:
            chains = chains.replace(state, hidden_field=field)
        n = state.shape[0] // R
        lower, rows_i, rows_j = self._pairs(parity, n, device)  # replicas at β_i, neighbours at β_j
        betas = self.betas.to(device, state.dtype)
        beta_i = betas[lower].repeat_interleave(n)
        beta_j = betas[lower + 1].repeat_interleave(n)
        # rows (v_i, v_j) at their own and at the neighbour's temperature: one field for both
        own, other = torch.cat([beta_i, beta_j]).unsqueeze(1), torch.cat([beta_j, beta_i]).unsqueeze(1)
        pair_field = None if field is None else torch.cat([field[rows_i], field[rows_j]])
        f = model.free_energies(torch.cat([state[rows_i], state[rows_j]]), [own, other],
                                pair_field).reshape(2, 2, -1)
        log_accept = (f[0, 0] + f[0, 1]) - (f[1, 0] + f[1, 1])  # F_βi(v_i) + F_βj(v_j) − F_βj(v_i) − F_βi(v_j)
        u = torch.rand(log_accept.shape, generator=generator, dtype=state.dtype, device=device)
        accept = u < torch.exp(log_accept)
        perm = torch.arange(state.shape[0], device=device)
        perm[rows_i] = torch.where(accept, rows_j, rows_i)
        perm[rows_j] = torch.where(accept, rows_i, rows_j)
        self.chains = chains.index(perm)
        if self.swap_accepted.device != device:  # counted where the chains live
            self.swap_accepted, self.swap_attempts = self.swap_accepted.to(device), self.swap_attempts.to(device)
        self.swap_accepted.index_add_(0, lower, accept.reshape(len(lower), n).sum(1))
        self.swap_attempts.index_add_(0, lower, torch.full_like(lower, n))

    def _pairs(self, parity: int, n: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """(lower replicas r ≡ parity, their rows, their neighbours' rows) for n chains per
        replica, on ``device``; made once per ladder size, parity, n and device."""
        key, cache = (self.replicas, parity, n, device), self._pair_cache
        if key not in cache:
            pairs = torch.arange(parity, self.replicas - 1, 2, device=device)
            rows_i = (pairs.unsqueeze(1) * n + torch.arange(n, device=device)).reshape(-1)
            cache[key] = (pairs, rows_i, rows_i + n)
        return cache[key]

    def state_dict(self) -> dict[str, Tensor]:
        return {"betas": self.betas, "swap_accepted": self.swap_accepted,
                "swap_attempts": self.swap_attempts, "parity": torch.tensor(self.parity),
                **super().state_dict()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        super().load_state_dict(state)
        for name in ("betas", "swap_accepted", "swap_attempts"):
            if name in state:
                setattr(self, name, state[name].cpu().clone())
        self.parity = int(state["parity"]) if "parity" in state else 0
