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

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..errors import ConfigurationError, DataError
from ..sampling.logistic import bernoulli_logistic
from ..validation import check_int

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
    #: energy has the closed form used by :meth:`boltzkit.models.rbm.RBM.write_gradient`
    linear: bool = False
    #: True for types that can only be the hidden layer (e.g. relu)
    hidden_only: bool = False
    #: s when the layer's data can be redrawn as s · Bernoulli(x / s) from probabilities x/s
    #: (``TrainingConfig(sample_data=True)``, dynamic binarisation); None: it cannot
    data_scale: float | None = None

    def __init__(self, n: int) -> None:
        super().__init__()
        check_int("a layer's number of units", n, least=1)
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

    def log_partition_change(self, field: Tensor, beta: float, previous: float) -> Tensor:
        """log-partition(field, β) − log-partition(field, β'), per row, float64.

        The AIS weight increment.  The two terms are large and nearly equal when β ≈ β',
        so this default subtracts them in float64; types override it with a form that is
        accurate in the working precision.
        """
        field = field.double()
        return self.log_partition(field, beta) - self.log_partition(field, previous)

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
    data_scale = 1.0

    def self_energy(self, x: Tensor) -> Tensor:
        return -(x @ self.bias)

    def log_partition(self, field: Tensor, beta: Beta = 1.0) -> Tensor:
        return F.softplus(field * beta if _is_scaled(beta) else field).sum(-1)

    def log_partition_change(self, field: Tensor, beta: float, previous: float) -> Tensor:
        """Σ_i softplus(β a_i) − softplus(β' a_i) without cancellation.  With β_hi ≥ β_lo
        and Δ = β_hi − β_lo, softplus(z) = max(z, 0) + log1p(e^{−|z|}) gives the exact
        identity

            softplus(β_hi a) − softplus(β_lo a) = Δ·max(a, 0) + log1p(σ(−β_lo|a|)·expm1(−Δ|a|))

        whose log1p argument lies in (−½, 0]: every term is computed to the working
        precision's relative accuracy, however small Δ is (≈ 2× faster than float64
        softplus differences, and as accurate).  The sums over a row stay in the working
        precision: a float32 sum of H terms is off by ≈ 2·10⁻⁷ of itself (measured at H = 500:
        4·10⁻⁸ nats per β at field scale 1, 1.3·10⁻⁶ at scale 30, Δ = 10⁻³), far below AIS
        standard errors of 10⁻² nats; only the per-row result, which AIS accumulates over
        thousands of β, is float64."""
        sign, low, high = (1.0, previous, beta) if beta >= previous else (-1.0, beta, previous)
        step = high - low
        size = field.abs()
        tail = torch.log1p(torch.sigmoid(size * -low).mul_(torch.expm1(size.mul_(-step))))
        total = torch.relu(field).sum(-1).mul_(step).add_(tail.sum(-1))
        return total.to(torch.float64).mul_(sign)

    def mean(self, field: Tensor, beta: Beta = 1.0) -> Tensor:
        return torch.sigmoid(field * beta if _is_scaled(beta) else field)

    def sample(self, field: Tensor, generator: torch.Generator | None = None,
               beta: Beta = 1.0) -> Tensor:
        return bernoulli_logistic(field, generator, beta)

    @property
    def n_states(self) -> int:
        return int(2 ** self.n)

    def states(self, start: int, stop: int, dtype: torch.dtype,
               device: torch.device | None = None) -> Tensor:
        return _bits(start, stop, self.n, dtype, device)

    def validate(self, x: Tensor, name: str = "data") -> None:
        row = first_row_outside(x, (0.0, 1.0))
        if row is not None:
            raise DataError(
                f"{name} has values other than 0/1 (first in row {row}) but the units are "
                "binary; binarise it first (boltzkit.data.binarize, or --binarize on the "
                "command line)")

    def init_from_data(self, mean: Tensor) -> None:
        p = mean.clamp(1e-3, 1 - 1e-3)
        with torch.no_grad():
            self.bias.copy_(torch.log(p) - torch.log1p(-p))




def first_row_outside(x: Tensor, values: tuple[float, float], rows: int = 4096) -> int | None:
    """Index of the first row of ``x`` holding an entry other than the two ``values``, or None.

    Checked in blocks of ``rows`` rows so the boolean temporaries stay in cache (≈ 1.5×
    faster than one pass over a 50,000 × 784 data set).
    """
    low, high = values
    for start in range(0, x.shape[0], rows):
        block = x[start:start + rows]
        bad = block.ne(low).logical_and_(block.ne(high))
        if bool(bad.any()):
            return start + int(bad.any(1).nonzero()[0, 0])
    return None


def all_finite(x: Tensor) -> bool:
    """True when no entry is NaN or ±inf: min and max propagate NaN, so two reductions
    suffice (≈ 10× faster than ``isfinite(x).all()``, which writes a boolean copy)."""
    if x.numel() == 0 or not x.is_floating_point():
        return True
    low, high = torch.aminmax(x)
    return bool(torch.isfinite(low)) and bool(torch.isfinite(high))


def unit_count(kind: str, value: int | str, what: str, least: int) -> int:
    """The integer parameter of a unit type written in its name (``softmax:K``, ``binomial:N``),
    at least ``least``; :class:`ConfigurationError` naming the unit type otherwise."""
    try:
        k = int(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{kind} units need an integer number of {what}, got {value!r}") from None
    if k < least:
        raise ConfigurationError(f"{kind} units need at least {least} {what.removesuffix('s') if least == 1 else what}"
                                 f", got {k}")
    return k


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


@register
class Softmax(Units):
    """Categorical (softmax, Potts) units: ``n`` variables, each in one of ``K`` states.

    A row holds the one-hot codes of the ``n`` variables side by side, item-major: column
    ``i*K + k`` is 1 when variable ``i`` takes state ``k`` (0-based), so :attr:`dim` = n·K.
    E_self(x) = −bᵀx and φ(x) = x (``linear``), hence with a = b + input::

        p_β(x_i = k | a) = exp(β a_ik) / Σ_l exp(β a_il)          (softmax within group i)
        log-partition     = Σ_i logsumexp_k (β a_ik)

    Built by ``make_units("softmax:K", n)``.  Limitation: every variable has the same
    number of states K.
    """

    kind = "softmax"
    discrete = True
    linear = True

    def __init__(self, n: int, n_states: int | str = 2) -> None:
        self.n_levels = unit_count("softmax", n_states, "states", least=2)
        super().__init__(n)

    @property
    def dim(self) -> int:
        return self.n * self.n_levels

    def spec(self) -> str:
        return f"{self.kind}:{self.n_levels}"

    def _groups(self, x: Tensor) -> Tensor:
        """View a ``(..., n·K)`` tensor as ``(..., n, K)``."""
        return x.reshape(*x.shape[:-1], self.n, self.n_levels)

    def self_energy(self, x: Tensor) -> Tensor:
        return -(x @ self.bias)

    def _states_first(self, x: Tensor) -> Tensor:
        """View a ``(..., n·K)`` tensor as ``(..., K, n)``: torch's softmax and logsumexp over a
        short last dimension (K ≈ 5) are ≈ 10× slower than over a middle one."""
        return self._groups(x).transpose(-1, -2)

    def log_partition(self, field: Tensor, beta: Beta = 1.0) -> Tensor:
        scaled = field * beta if _is_scaled(beta) else field
        return torch.logsumexp(self._states_first(scaled), -2).sum(-1)

    def mean(self, field: Tensor, beta: Beta = 1.0) -> Tensor:
        scaled = field * beta if _is_scaled(beta) else field
        return torch.softmax(self._states_first(scaled), -2).transpose(-1, -2).reshape(field.shape)

    def sample(self, field: Tensor, generator: torch.Generator | None = None,
               beta: Beta = 1.0) -> Tensor:
        """One state per group by inverse CDF: k = #{l : P(x ≤ l) < u}, u ~ U(0,1)."""
        cdf = self._groups(self.mean(field, beta)).cumsum(-1)
        u = torch.rand(cdf.shape[:-1] + (1,), generator=generator, dtype=cdf.dtype, device=cdf.device)
        index = (cdf < u).sum(-1, keepdim=True).clamp_(max=self.n_levels - 1)
        x = torch.zeros_like(cdf).scatter_(-1, index, 1.0)
        return x.reshape(field.shape)

    @property
    def n_states(self) -> int:
        return int(self.n_levels ** self.n)

    def states(self, start: int, stop: int, dtype: torch.dtype,
               device: torch.device | None = None) -> Tensor:
        """State number s has digit ``(s // K**i) % K`` for variable i (mixed radix, i = 0 first)."""
        index = torch.arange(start, stop, device=device, dtype=torch.int64)
        powers = self.n_levels ** torch.arange(self.n, device=device, dtype=torch.int64)
        digits = (index.unsqueeze(1) // powers) % self.n_levels
        return F.one_hot(digits, self.n_levels).to(dtype).reshape(stop - start, self.dim)

    def validate(self, x: Tensor, name: str = "data") -> None:
        row = first_row_outside(x, (0.0, 1.0))
        if row is not None:
            raise DataError(f"{name} has values other than 0/1 (first in row {row}) but the "
                            f"units are one-hot softmax groups of {self.n_levels} columns")
        not_one_hot = self._groups(x).sum(-1) != 1
        if bool(not_one_hot.any()):
            row, group = (int(i) for i in not_one_hot.nonzero()[0])
            raise DataError(
                f"{name} row {row}, variable {group}: columns {group * self.n_levels}.."
                f"{(group + 1) * self.n_levels - 1} must hold exactly one 1 (one-hot); missing "
                "values are not allowed here (the collaborative-filtering RBM masks them)")

    def init_from_data(self, mean: Tensor, smoothing: float = 1e-3) -> None:
        """b_ik = log p_ik, p the per-group frequencies of ``mean`` (renormalised, so counts
        work too), smoothed as (p + α)/(1 + Kα); an all-zero group gets the uniform bias."""
        groups = self._groups(mean.to(self.bias.dtype).clamp_min(0))
        total = groups.sum(-1, keepdim=True)
        freq = torch.where(total > 0, groups / total.clamp_min(1e-30),
                           torch.full_like(groups, 1.0 / self.n_levels))
        p = (freq + smoothing) / (1 + self.n_levels * smoothing)
        with torch.no_grad():
            self.bias.copy_(torch.log(p).reshape(-1))


@register
class Spin(Units):
    """Ising spins x ∈ {−1, +1}: E_self(x) = −bᵀx, φ(x) = x (``linear``), so with a = b + input::

        p_β(x_i = +1 | a) = σ(2β a_i),   E[x_i | a] = tanh(β a_i)
        log-partition     = Σ_i log(2 cosh(β a_i)) = Σ_i [ |β a_i| + softplus(−2|β a_i|) ]

    Enumerable (2**n states, bit 0 ↦ −1, bit 1 ↦ +1).
    """

    kind = "spin"
    discrete = True
    linear = True

    def self_energy(self, x: Tensor) -> Tensor:
        return -(x @ self.bias)

    def log_partition(self, field: Tensor, beta: Beta = 1.0) -> Tensor:
        s = (field * beta if _is_scaled(beta) else field).abs()
        return (s + F.softplus(-2.0 * s)).sum(-1)

    def mean(self, field: Tensor, beta: Beta = 1.0) -> Tensor:
        return torch.tanh(field * beta if _is_scaled(beta) else field)

    def sample(self, field: Tensor, generator: torch.Generator | None = None,
               beta: Beta = 1.0) -> Tensor:
        return bernoulli_logistic(field, generator, 2.0 * beta).mul_(2.0).sub_(1.0)  # P(+1) = σ(2βa)

    @property
    def n_states(self) -> int:
        return int(2 ** self.n)

    def states(self, start: int, stop: int, dtype: torch.dtype,
               device: torch.device | None = None) -> Tensor:
        return _bits(start, stop, self.n, dtype, device).mul_(2.0).sub_(1.0)

    def validate(self, x: Tensor, name: str = "data") -> None:
        row = first_row_outside(x, (-1.0, 1.0))
        if row is not None:
            raise DataError(
                f"{name} has values other than −1/+1 (first in row {row}) but the units are "
                "spins; map 0/1 data with 2·x − 1 (or use bernoulli units)")

    def init_from_data(self, mean: Tensor) -> None:
        """b = artanh(m): the bias whose spins, without weights, have the data mean m."""
        m = mean.to(self.bias.dtype).clamp(-1 + 2e-3, 1 - 2e-3)
        with torch.no_grad():
            self.bias.copy_(torch.atanh(m))


@register
class Gaussian(Units):
    """Real-valued units in the parametrisation of Cho, Ilin & Raiko (2011)::

        E_self(v) = Σ_i (v_i − b_i)² / (2σ_i²),   φ(v) = v / σ²

    so that an RBM with binary hidden units has E(v,h) = Σ_i (v_i − b_i)²/(2σ_i²) − cᵀh
    − Σ_ij (v_i/σ_i²) W_ij h_j.  With a = b + input (input = W ψ(h))::

        p_β(v | a) = N(a, σ²/β)       (mean a for every β)
        log-partition = Σ_i [ β(a_i² − b_i²)/(2σ_i²) + ½ log(2πσ_i²/β) ]

    The scale is stored as ``log_sigma`` = log σ (so Cho et al.'s z = log σ² is
    2·log_sigma).  ``Gaussian(n)`` (spec ``"gaussian"``) keeps σ = 1 as a buffer: saved in
    the ``state_dict`` but not trained, so the data should be standardised.
    ``Gaussian(n, "learned")`` (spec ``"gaussian:learned"``) makes it an ``nn.Parameter``
    trained with the rest.  E_self is not −bᵀv, so ``linear`` is False and gradients are
    the autograd gradient of the free energy.  Continuous: a Gaussian layer can never be
    enumerated, and the other layer must be discrete.
    """

    kind = "gaussian"
    discrete = False
    linear = False

    def __init__(self, n: int, sigma: str = "fixed") -> None:
        sigma = str(sigma).lower()
        if sigma not in ("fixed", "learned"):
            raise ConfigurationError(
                f"gaussian units take 'fixed' or 'learned' (e.g. 'gaussian:learned'), got {sigma!r}")
        super().__init__(n)
        self.learn_sigma = sigma == "learned"
        log_sigma = torch.zeros(self.dim)
        if self.learn_sigma:
            self.log_sigma = nn.Parameter(log_sigma)
        else:
            self.register_buffer("log_sigma", log_sigma)

    def spec(self) -> str:
        return f"{self.kind}:learned" if self.learn_sigma else self.kind

    def variance(self) -> Tensor:
        """σ² = exp(2·log_sigma), per unit."""
        return torch.exp(2.0 * self.log_sigma)

    def statistic(self, x: Tensor) -> Tensor:
        return x * torch.exp(-2.0 * self.log_sigma)

    def self_energy(self, x: Tensor) -> Tensor:
        return ((x - self.bias) ** 2 * (0.5 * torch.exp(-2.0 * self.log_sigma))).sum(-1)

    def log_partition(self, field: Tensor, beta: Beta = 1.0) -> Tensor:
        variance = self.variance()
        quadratic = (field ** 2 - self.bias ** 2) / (2.0 * variance)
        if _is_scaled(beta):
            quadratic = quadratic * beta
            normaliser = 0.5 * torch.log(2.0 * math.pi * variance / beta)
        else:
            normaliser = 0.5 * torch.log(2.0 * math.pi * variance)
        return (quadratic + normaliser).sum(-1)

    def mean(self, field: Tensor, beta: Beta = 1.0) -> Tensor:
        return field

    def sample(self, field: Tensor, generator: torch.Generator | None = None,
               beta: Beta = 1.0) -> Tensor:
        std = torch.exp(self.log_sigma)
        if _is_scaled(beta):
            std = std / (beta ** 0.5)
        noise = torch.randn(field.shape, generator=generator, dtype=field.dtype, device=field.device)
        return noise.mul_(std).add_(field)

    def init_from_data(self, mean: Tensor) -> None:
        """b = data mean (the mean of the units when the weights are zero)."""
        with torch.no_grad():
            self.bias.copy_(mean.to(self.bias.dtype))


@register
class ReLU(Units):
    """Noisy rectified linear units (Nair & Hinton 2010); hidden layer only.

    The model behind them is a unit made of infinitely many tied binary copies with bias
    offsets −½, −1½, −2½, …; summing them out gives, with a = c + input::

        log-partition = Σ_i Σ_{k≥1} softplus(β(a_i − k + ½))

    evaluated as Σ_k max(0, y_k) in closed form (m = max(0, ⌊a + ½⌋) positive terms give
    β[m(a + ½) − m(m+1)/2]) plus the remainders softplus(−|β y_k|) for the
    :attr:`window` = 24 values of k on each side of a (y_k = a − k + ½; the sign is taken
    from k ≤ m rather than from y_k, so the result is smooth in a).  The remainders left
    out add at most 2·exp(−24β)/(1 − exp(−β)) per unit: ≈ 1e-10 at β = 1, 3e-6 at β = 0.6,
    6e-3 at β = 0.3; at β = 0 the infinite sum diverges, so these units do not suit
    annealing from β = 0.

    Sampling follows Nair & Hinton: h = max(0, a + N(0, σ(a))), tempered as
    max(0, a + N(0, σ(βa)/β)).  :meth:`mean` returns their approximation max(0, a)
    (the exact E[h] of the noisy draw is larger near a = 0, and ∂ log-partition/∂a =
    Σ_k σ(a − k + ½) ≈ softplus(a)); gradients use autograd of the free energy
    (``linear`` is False), so training is consistent with the log-partition above.
    E_self(h) is not a function of h alone, so :meth:`self_energy` (and ``RBM.energy``)
    is not available; continuous, so never enumerated.
    """

    kind = "relu"
    discrete = False
    linear = False
    hidden_only = True
    #: number of k on each side of a summed explicitly in :meth:`log_partition`
    window = 24

    def self_energy(self, x: Tensor) -> Tensor:
        raise ConfigurationError(
            "relu units have no energy for a given h (they stand for infinitely many binary "
            "copies); use the free energy, which sums them out")

    def log_partition(self, field: Tensor, beta: Beta = 1.0) -> Tensor:
        shifted = field + 0.5
        m = torch.floor(shifted.detach()).clamp_(min=0)
        positive = m * shifted - 0.5 * m * (m + 1)
        if _is_scaled(beta):
            positive = positive * beta
        correction = torch.zeros_like(field)
        for offset in range(1 - self.window, self.window + 1):
            k = m + offset
            y = field - k + 0.5  # ≥ 0 exactly when k ≤ m, whose max(0, y) is in `positive`
            y = torch.where(k <= m, -y, y)
            term = F.softplus(y * beta if _is_scaled(beta) else y)
            correction = correction + torch.where(k >= 1, term, torch.zeros_like(term))
        return (positive + correction).sum(-1)

    def mean(self, field: Tensor, beta: Beta = 1.0) -> Tensor:
        return field.clamp(min=0)

    def sample(self, field: Tensor, generator: torch.Generator | None = None,
               beta: Beta = 1.0) -> Tensor:
        if _is_scaled(beta):
            variance = torch.sigmoid(field * beta) / beta
        else:
            variance = torch.sigmoid(field)
        noise = torch.randn(field.shape, generator=generator, dtype=field.dtype, device=field.device)
        return noise.mul_(variance.sqrt()).add_(field).clamp_(min=0)
