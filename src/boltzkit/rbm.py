"""The restricted Boltzmann machine.

Energy, for any pair of unit types (see :mod:`boltzkit.units`)::

    E(v, h) = E_self^v(v) + E_self^h(h) − φ(v)ᵀ W ψ(h)

which for binary units is E(v,h) = −bᵀv − cᵀh − vᵀWh.  Summing out the hidden layer gives
the free energy F(v) = E_self^v(v) − log Σ_h exp(−E_self^h(h) + ψ(h)·(φ(v)W)); for binary
hidden units F(v) = −bᵀv − Σ_j softplus(c_j + (vᵀW)_j).  Both conditionals factorise, so a
Gibbs sweep is two matrix products and two draws.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .errors import ConfigurationError, DataError
from .units import Beta, Units, all_finite, make_units


class RBM(nn.Module):
    """Restricted Boltzmann machine with visible and hidden layers of any unit types.

    Parameters
    ----------
    n_visible, n_hidden:
        Number of visible and hidden units (variables, not one-hot columns).
    visible, hidden:
        Unit type of each layer: a name (``"bernoulli"``, ``"gaussian"``, ``"softmax:5"``…)
        or a :class:`~boltzkit.units.Units` instance.
    weight_scale:
        Standard deviation of the N(0, σ²) initial weights (Hinton's guide: 0.01).
    seed:
        Seed of the weight initialisation (a fixed seed gives identical weights).

    Example
    -------
    >>> rbm = RBM(784, 64, seed=0)
    >>> v = torch.bernoulli(torch.full((10, 784), 0.1))
    >>> rbm.free_energy(v).shape
    torch.Size([10])
    """

    def __init__(self, n_visible: int, n_hidden: int, visible: str | Units = "bernoulli",
                 hidden: str | Units = "bernoulli", *, weight_scale: float = 0.01,
                 seed: int | None = 0, dtype: torch.dtype = torch.float32,
                 device: str | torch.device | None = None) -> None:
        super().__init__()
        self.visible = make_units(visible, n_visible)
        self.hidden = make_units(hidden, n_hidden)
        if self.visible.hidden_only:
            raise ConfigurationError(
                f"{self.visible.kind} units can only be the hidden layer; use e.g. bernoulli "
                "or gaussian visible units")
        if not (self.visible.discrete or self.hidden.discrete):
            raise ConfigurationError(
                f"an RBM with {self.visible.kind} visible and {self.hidden.kind} hidden units "
                "is not guaranteed a normalisable distribution and cannot be enumerated; make "
                "one layer discrete (e.g. bernoulli)")
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        weight = torch.randn(self.visible.dim, self.hidden.dim, generator=generator,
                             dtype=torch.float64) * weight_scale
        self.weight = nn.Parameter(weight)
        self.to(dtype=dtype, device=device)

    # -- sizes and names ------------------------------------------------------------------
    @property
    def n_visible(self) -> int:
        return self.visible.n

    @property
    def n_hidden(self) -> int:
        return self.hidden.n

    @property
    def visible_bias(self) -> nn.Parameter:
        return self.visible.bias

    @property
    def hidden_bias(self) -> nn.Parameter:
        return self.hidden.bias

    def named_tensors(self) -> dict[str, Tensor]:
        """Parameters under their checkpoint names: ``weight``, ``visible_bias``,
        ``hidden_bias`` and any unit parameter as ``<layer>_<name>``."""
        return {name.replace(".", "_"): p for name, p in self.named_parameters()}

    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild an identical (untrained) model."""
        return {"model": "RBM", "n_visible": self.n_visible, "n_hidden": self.n_hidden,
                "visible": self.visible.spec(), "hidden": self.hidden.spec(),
                "dtype": str(self.weight.dtype).removeprefix("torch.")}

    @classmethod
    def from_config(cls, config: dict[str, Any], device: str | torch.device | None = None) -> "RBM":
        dtype = getattr(torch, str(config.get("dtype", "float32")))
        return cls(int(config["n_visible"]), int(config["n_hidden"]),
                   visible=config.get("visible", "bernoulli"), hidden=config.get("hidden", "bernoulli"),
                   seed=None, dtype=dtype, device=device)

    # -- fields and conditionals --------------------------------------------------------
    def hidden_field(self, v: Tensor) -> Tensor:
        """a_h = c + φ(v) W, the field each hidden unit sees."""
        return torch.addmm(self.hidden.bias, self.visible.statistic(v), self.weight)

    def visible_field(self, h: Tensor) -> Tensor:
        """a_v = b + W ψ(h), the field each visible unit sees."""
        return torch.addmm(self.visible.bias, self.hidden.statistic(h), self.weight.t())

    def hidden_mean(self, v: Tensor, beta: Beta = 1.0) -> Tensor:
        """E[h | v]; for binary units σ(c + vᵀW)."""
        return self.hidden.mean(self.hidden_field(v), beta)

    def visible_mean(self, h: Tensor, beta: Beta = 1.0) -> Tensor:
        """E[v | h]; for binary units σ(b + W h)."""
        return self.visible.mean(self.visible_field(h), beta)

    def sample_hidden(self, v: Tensor, generator: torch.Generator | None = None,
                      beta: Beta = 1.0) -> Tensor:
        """h ~ p_β(h | v)."""
        return self.hidden.sample(self.hidden_field(v), generator, beta)

    def sample_visible(self, h: Tensor, generator: torch.Generator | None = None,
                       beta: Beta = 1.0, mask: Tensor | None = None) -> Tensor:
        """v ~ p_β(v | h); entries where ``mask`` is 0 are set to 0 (units that take no part)."""
        v = self.visible.sample(self.visible_field(h), generator, beta)
        return v.mul_(mask) if mask is not None else v

    def gibbs_step(self, v: Tensor, generator: torch.Generator | None = None,
                   beta: Beta = 1.0, mask: Tensor | None = None) -> Tensor:
        """One block-Gibbs sweep v → h ~ p(h|v) → v' ~ p(v|h)."""
        return self.sample_visible(self.sample_hidden(v, generator, beta), generator, beta, mask)

    def sample(self, v: Tensor, steps: int, generator: torch.Generator | None = None,
               beta: Beta = 1.0, mask: Tensor | None = None) -> Tensor:
        """Run ``steps`` Gibbs sweeps from ``v`` (no gradient is tracked)."""
        with torch.no_grad():
            for _ in range(steps):
                v = self.gibbs_step(v, generator, beta, mask)
        return v

    # -- energies ------------------------------------------------------------------------
    def energy(self, v: Tensor, h: Tensor) -> Tensor:
        """E(v, h) = E_self^v(v) + E_self^h(h) − φ(v)ᵀ W ψ(h), per row."""
        interaction = ((self.visible.statistic(v) @ self.weight) * self.hidden.statistic(h)).sum(-1)
        return self.visible.self_energy(v) + self.hidden.self_energy(h) - interaction

    def free_energy(self, v: Tensor, beta: Beta = 1.0) -> Tensor:
        """F_β(v) = β E_self^v(v) − log Σ_h exp(−β E(v,h) + β E_self^v(v)), per row.

        For binary hidden units: F(v) = −bᵀv − Σ_j softplus(c_j + (vᵀW)_j).
        """
        return _per_row(beta) * self.visible.self_energy(v) - self.hidden.log_partition(
            self.hidden_field(v), beta)

    def free_energy_hidden(self, h: Tensor, beta: Beta = 1.0) -> Tensor:
        """F_β(h) with the visible layer summed out: β E_self^h(h) − log Z_v(b + Wψ(h))."""
        return _per_row(beta) * self.hidden.self_energy(h) - self.visible.log_partition(
            self.visible_field(h), beta)

    def reconstruct(self, v: Tensor) -> Tensor:
        """Mean-field reconstruction E[v | E[h | v]]."""
        with torch.no_grad():
            return self.visible_mean(self.hidden_mean(v))

    def transform(self, v: Tensor) -> Tensor:
        """Hidden features E[h | v] (no gradient)."""
        with torch.no_grad():
            return self.hidden_mean(v)

    # -- validation at the edge -------------------------------------------------------------
    def check_data(self, v: Tensor, name: str = "data") -> None:
        """Raise :class:`DataError` unless ``v`` fits the visible layer of this model."""
        if v.dim() != 2:
            raise DataError(f"{name} must be 2-D (samples × features), got shape {tuple(v.shape)}")
        if v.shape[0] == 0:
            raise DataError(f"{name} is empty (0 rows)")
        if v.shape[1] != self.visible.dim:
            raise DataError(f"{name} has {v.shape[1]} columns but the model has "
                            f"{self.visible.dim} visible columns")
        if not all_finite(v):
            raise DataError(f"{name} contains NaN or inf")
        self.visible.validate(v, name)


def _per_row(beta: Beta) -> Beta:
    """β shaped for per-row energies: a ``(batch, 1)`` tensor becomes ``(batch,)``."""
    return beta.reshape(-1) if isinstance(beta, Tensor) else beta
