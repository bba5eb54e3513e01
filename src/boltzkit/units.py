"""Unit (layer) types of an RBM.

A layer of units with values ``x`` (a row of width :attr:`Units.dim`) contributes a
*self-energy* ``E_self(x)`` (its bias terms) and takes part in the interaction
``-φ(v)ᵀ W ψ(h)`` through its *statistic* ``φ`` (the identity for most types).  Every
conditional an RBM needs is written on the **field** ``a = bias + input``, where ``input``
is the weighted statistic of the other layer::

    p_β(x | a) ∝ exp(β · (−E_self(x) + φ(x)·input))

with inverse temperature ``β`` (1 for the model itself; tempering and AIS use other values).
Each type knows, for a given field, its mean ``E[x]``, how to sample, and its
log-partition ``log Σ_x exp(β(−E_self(x) + φ(x)·input))`` summed over the layer — the term
that appears in the free energy when the layer is summed (or integrated) out.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .errors import ConfigurationError, DataError

Beta = float | Tensor


class Units(nn.Module):
    """Base class of a layer of ``n`` units, stored as rows of width :attr:`dim`.

    Subclasses own their parameters (at least ``bias`` of shape ``(dim,)``) and implement
    :meth:`self_energy`, :meth:`log_partition`, :meth:`mean` and :meth:`sample`.
    """

    #: short name used in configs and on the command line
    kind: str = ""
    #: True when the layer takes finitely many values and can be enumerated
    discrete: bool = False
    #: True when E_self(x) = −biasᵀx and φ(x) = x, so that the gradient of the free
    #: energy has the closed form used by :func:`boltzkit.estimators.write_gradient`
    linear: bool = False

    def __init__(self, n: int) -> None:
        super().__init__()
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigurationError(f"a layer needs a positive number of units, got {n!r}")
        self.n = n
        self.bias = nn.Parameter(torch.zeros(self.dim))

    # -- shape -------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Width of a row of this layer (rows of the weight matrix it owns)."""
        return self.n

    def spec(self) -> str:
        """The string :func:`make_units` turns back into this type (e.g. ``"softmax:5"``)."""
        return self.kind

    # -- the math ------------------------------------------------------------------------
    def statistic(self, x: Tensor) -> Tensor:
        """φ(x), the quantity that meets the weights: the identity unless overridden."""
        return x

    def self_energy(self, x: Tensor) -> Tensor:
        """E_self(x) per row, shape ``(batch,)``."""
        raise NotImplementedError

    def log_partition(self, field: Tensor, beta: Beta = 1.0) -> Tensor:
        """log Σ_x exp(β(−E_self(x) + φ(x)·input)) summed over the layer, shape ``(batch,)``."""
        raise NotImplementedError

    def mean(self, field: Tensor, beta: Beta = 1.0) -> Tensor:
        """E[x | field] under p_β."""
        raise NotImplementedError

    def sample(self, field: Tensor, generator: torch.Generator | None = None,
               beta: Beta = 1.0) -> Tensor:
        """One draw of x from p_β(x | field)."""
        raise NotImplementedError

    # -- enumeration (discrete layers) -------------------------------------------------
    @property
    def n_states(self) -> int:
        """Number of joint configurations of the layer (discrete layers only)."""
        raise ConfigurationError(f"{self.kind} units are continuous and cannot be enumerated")

    def states(self, start: int, stop: int, dtype: torch.dtype,
               device: torch.device | None = None) -> Tensor:
        """Configurations number ``start``..``stop-1`` of the layer, one per row."""
        raise ConfigurationError(f"{self.kind} units are continuous and cannot be enumerated")

    # -- data ---------------------------------------------------------------------------
    def validate(self, x: Tensor, name: str = "data") -> None:
        """Raise :class:`DataError` if ``x`` holds values this layer cannot take."""

    def init_from_data(self, mean: Tensor) -> None:
        """Set the bias from the data mean of this layer (Hinton's practical guide, §8)."""


def _bits(start: int, stop: int, n: int, dtype: torch.dtype, device: torch.device | None) -> Tensor:
    """Binary expansion (least significant bit first) of the integers start..stop-1."""
    index = torch.arange(start, stop, device=device, dtype=torch.int64)
    shifts = torch.arange(n, device=device, dtype=torch.int64)
    return ((index.unsqueeze(1) >> shifts) & 1).to(dtype)


class Bernoulli(Units):
    """Binary units x ∈ {0,1}: E_self(x) = −bᵀx, p_β(x_i = 1 | a) = σ(β a_i).

    log-partition: Σ_i softplus(β a_i).
    """

    kind = "bernoulli"
    discrete = True
    linear = True

    def self_energy(self, x: Tensor) -> Tensor:
        return -(x @ self.bias)

    def log_partition(self, field: Tensor, beta: Beta = 1.0) -> Tensor:
        return F.softplus(field * beta if _is_scaled(beta) else field).sum(-1)

    def mean(self, field: Tensor, beta: Beta = 1.0) -> Tensor:
        return torch.sigmoid(field * beta if _is_scaled(beta) else field)

    def sample(self, field: Tensor, generator: torch.Generator | None = None,
               beta: Beta = 1.0) -> Tensor:
        return torch.bernoulli(self.mean(field, beta), generator=generator)

    @property
    def n_states(self) -> int:
        return 2 ** self.n

    def states(self, start: int, stop: int, dtype: torch.dtype,
               device: torch.device | None = None) -> Tensor:
        return _bits(start, stop, self.n, dtype, device)

    def validate(self, x: Tensor, name: str = "data") -> None:
        bad = (x != 0) & (x != 1)
        if bool(bad.any()):
            row = int(bad.any(1).nonzero()[0, 0])
            raise DataError(
                f"{name} has values other than 0/1 (first in row {row}) but the units are "
                "binary; binarise it first (boltzkit.data.binarize, or --binarize on the "
                "command line)")

    def init_from_data(self, mean: Tensor) -> None:
        p = mean.clamp(1e-3, 1 - 1e-3)
        with torch.no_grad():
            self.bias.copy_(torch.log(p) - torch.log1p(-p))


def _is_scaled(beta: Beta) -> bool:
    """False when β is the plain number 1, so the common case skips a multiplication."""
    return isinstance(beta, Tensor) or beta != 1.0


#: registry of unit types by name; new types register themselves with :func:`register`
UNIT_TYPES: dict[str, Callable[..., Units]] = {}


def register(cls: type[Units]) -> type[Units]:
    """Class decorator adding a unit type to :data:`UNIT_TYPES` under ``cls.kind``."""
    UNIT_TYPES[cls.kind] = cls
    return cls


register(Bernoulli)


def make_units(spec: str | Units, n: int) -> Units:
    """Build a layer from a spec such as ``"bernoulli"`` or ``"softmax:5"`` (name[:argument])."""
    if isinstance(spec, Units):
        if spec.n != n:
            raise ConfigurationError(f"layer has {spec.n} units, expected {n}")
        return spec
    name, _, argument = str(spec).lower().partition(":")
    if name not in UNIT_TYPES:
        raise ConfigurationError(
            f"unknown unit type {spec!r}; choose from {', '.join(sorted(UNIT_TYPES))}")
    cls = UNIT_TYPES[name]
    return cls(n, argument) if argument else cls(n)

