"""Exact log Z, log-likelihood and log-likelihood gradient by enumeration.

The smaller discrete layer is enumerated and the other layer is summed (or integrated)
out analytically through its log-partition term.  Enumerating the hidden layer::

    log Z = logsumexp_h [ −F(h) ],   F(h) = E_self^h(h) − log Z_v(b + W ψ(h))

(for binary units −F(h) = cᵀh + Σ_i softplus(b_i + (W h)_i)), and then
log p(v) = −F(v) − log Z.  Everything runs in float64, in chunks of states, with
logsumexp, so it is the ground truth the stochastic estimators are tested against.

**Split enumeration** (log Z of a layer whose energy is linear and whose states are a
product of per-unit digits in base K — bernoulli, spin, softmax:K): state s = k·L + l
(L = K^m low states) has ψ(s) = ψ(k·L) + ψ(l) − ψ(0), so the field of the other layer is

    a(s) = a(k·L) + t(l),   t(l) = W (ψ(l) − ψ(0)),

one table t of L rows computed once plus one broadcast add per k: no product with W per
state.  Bernoulli on the other side goes further: with s_i = max_l t_i(l),
u = exp(t − s) ≤ 1 and B_k = exp(a(k·L) + s),

    Σ_i softplus(a_i(s)) = Σ_groups log Π_{i ∈ group} (1 + B_k,i u_i(l)),

one multiply-add per term and one log per group of :data:`PRODUCT_GROUP` terms instead of
an exp and a log each, all in float64 (the factors are ≥ 1, and a block whose products
could overflow takes the plain path).  On 784 × 20 this is ≈ 5× faster than the float64
GEMM + softplus floor; see ``benchmarks/bench_exact.py``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigurationError
from ..models.rbm import RBM
from ..models.units import Bernoulli, Units
from ..training.batches import as_tensor

#: enumerate a layer only up to this many binary-equivalent units (2**25 states)
MAX_ENUMERATED_BITS = 25
#: elements (states × width of the other layer) per chunk: 2**24 float64 = 128 MiB
CHUNK_ELEMENTS = 2 ** 24
#: elements (low states × width of the other layer) of the split enumeration's table:
#: 2**17 float64 = 1 MiB, so the table and one block of terms stay in the L2 cache
TABLE_ELEMENTS = 2 ** 17
#: high states k·L handled per block of the split enumeration (their fields in one product)
HIGH_BLOCK = 64
#: factors 1 + B u multiplied before one log (each ≤ e^{softplus(a)}; see _product_group)
PRODUCT_GROUP = 16
#: log of the largest product allowed before a log (float64 overflows above e^709.8)
_MAX_LOG_PRODUCT = 700.0


def enumerated_layer(rbm: RBM, max_bits: int = MAX_ENUMERATED_BITS) -> str:
    """``"hidden"`` or ``"visible"``: the discrete layer with fewer states.

    Raises :class:`ConfigurationError` when neither layer has at most 2**max_bits states.
    """
    options = [(layer.n_states, name) for name, layer in (("hidden", rbm.hidden), ("visible", rbm.visible))
               if layer.discrete]
    if not options:
        raise ConfigurationError("exact enumeration needs a discrete layer")
    n_states, name = min(options)
    if math.log2(n_states) > max_bits:
        raise ConfigurationError(
            f"exact enumeration needs a layer with at most 2^{max_bits} states; the smaller "
            f"discrete layer ({name}) has 2^{math.log2(n_states):.0f}; use AIS instead")
    return name


def is_tractable(rbm: RBM, max_bits: int = MAX_ENUMERATED_BITS) -> bool:
    """Whether :func:`log_partition` can enumerate this model."""
    try:
        enumerated_layer(rbm, max_bits)
    except ConfigurationError:
        return False
    return True


def _as_float64(rbm: RBM) -> RBM:
    return copy.deepcopy(rbm).to(torch.float64)


def _roles(rbm: RBM, layer: str) -> tuple[Units, Units, Callable[[Tensor], Tensor]]:
    """(enumerated units, the other units, the other layer's field as a function of a state)."""
    if layer == "hidden":
        return rbm.hidden, rbm.visible, rbm.visible_field
    return rbm.visible, rbm.hidden, rbm.hidden_field


def _progress_bar(units: Units, layer: str, size: int, progress: bool) -> Any:
    """A tqdm bar over the states of ``units`` when ``progress`` and there is more than one chunk."""
    if not progress or units.n_states <= size:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=units.n_states, unit="state", unit_scale=True, dynamic_ncols=True,
                desc=f"exact log Z: {units.n_states:,} {layer} states")


def _chunks(rbm: RBM, layer: str, progress: bool = False) -> Iterator[Tensor]:
    """−F(s) for every state s of the enumerated layer, chunk by chunk."""
    units, other, _ = _roles(rbm, layer)
    free_energy = rbm.free_energy_hidden if layer == "hidden" else rbm.free_energy
    size = max(1, CHUNK_ELEMENTS // max(other.dim, units.dim))
    device = rbm.weight.device
    bar = _progress_bar(units, layer, size, progress)
    for start in range(0, units.n_states, size):
        stop = min(start + size, units.n_states)
        states = units.states(start, stop, torch.float64, device)
        yield -free_energy(states)
        if bar is not None:
            bar.update(stop - start)
    if bar is not None:
        bar.close()


def _generic_log_partition(rbm: RBM, layer: str, progress: bool = False) -> Tensor:
    """log Z = logsumexp over the chunks of −F(s), each computed by the model's free energy."""
    return torch.logsumexp(torch.stack([torch.logsumexp(c, 0) for c in _chunks(rbm, layer, progress)]), 0)


def _splits(units: Units, size: int, device: torch.device) -> bool:
    """Whether ψ(k·L + l) = ψ(k·L) + ψ(l) − ψ(0) for L = ``size``, checked on the last L states."""
    low = units.states(0, size, torch.float64, device)
    last = units.states(units.n_states - size, units.n_states, torch.float64, device)
    return torch.equal(last, last[:1] + low - low[:1])


def _digit_base(units: Units) -> int | None:
    """K when the layer is ``linear`` and discrete with K^n states (K ≥ 2), else None."""
    if not units.linear or not units.discrete:
        return None
    base = round(units.n_states ** (1.0 / units.n))
    return base if base >= 2 and base ** units.n == units.n_states else None


def _largest_power(base: int, limit: int) -> int:
    """The largest base^m ≤ ``limit`` (m ≥ 0; 1 when limit < base)."""
    size = 1
    while size * base <= limit:
        size *= base
    return size


def split_size(rbm: RBM, layer: str) -> int | None:
    """L, the number of low states of the split enumeration of ``layer``, or None where it does not apply.

    It applies when the layer is ``linear`` (E_self = −biasᵀx, ψ = identity) and its K^n states
    are a product of per-unit digits, unit 0 the least significant: ψ(k·L + l) = ψ(k·L) + ψ(l)
    − ψ(0), checked on the last L states.  L = K^m is the largest power with
    L × (width of the other layer) ≤ :data:`TABLE_ELEMENTS` (at least K).
    """
    units, other, _ = _roles(rbm, layer)
    base = _digit_base(units)
    if base is None:
        return None
    size = max(base, _largest_power(base, min(TABLE_ELEMENTS // other.dim, units.n_states)))
    return size if _splits(units, size, rbm.weight.device) else None


def enumeration_method(rbm: RBM) -> str:
    """How :func:`log_partition` enumerates this model: ``"product"`` (split enumeration with
    the softplus-product kernel: bernoulli on the other side), ``"split"`` (split enumeration,
    the other layer's own log-partition) or ``"generic"`` (the free energy, chunk by chunk)."""
    layer = enumerated_layer(rbm)
    if split_size(rbm, layer) is None:
        return "generic"
    return "product" if type(_roles(rbm, layer)[1]) is Bernoulli else "split"


def _product_group(c: Tensor) -> bool:
    """Whether every product of :data:`PRODUCT_GROUP` factors 1 + e^{c_i} u (u ≤ 1) of the rows
    of ``c`` stays finite: log of each factor ≤ softplus(c_i) ≤ softplus(max c)."""
    return PRODUCT_GROUP * float(torch.nn.functional.softplus(c.amax())) <= _MAX_LOG_PRODUCT


def _split_log_partition(rbm: RBM, layer: str, size: int, progress: bool = False) -> Tensor:
    """log Z by the split enumeration (module docstring) with ``size`` = L low states."""
    units, other, field = _roles(rbm, layer)
    device = rbm.weight.device
    low = units.states(0, size, torch.float64, device)
    table = field(low) - field(low[:1])                       # t(l) = W (ψ(l) − ψ(0))
    low_energy = units.self_energy(low[:1]) - units.self_energy(low)  # −E_self(l) + E_self(0)
    product = type(other) is Bernoulli
    if product:
        shift = table.amax(0)                                  # s_i = max_l t_i(l)
        width = -(-other.dim // PRODUCT_GROUP) * PRODUCT_GROUP  # padded with u = 0 (factor 1)
        u = torch.zeros(size, width, dtype=torch.float64, device=device)
        torch.exp(table - shift, out=u[:, :other.dim])
        groups = u.view(size, width // PRODUCT_GROUP, PRODUCT_GROUP)
        factors = torch.empty_like(u)
        one = torch.ones((), dtype=torch.float64, device=device)
    # the high states k·L of a block [start, start + step) are ψ(start) + ψ(j·L) − ψ(0), j < step / L
    base = _digit_base(units)
    assert base is not None  # split_size checked it
    step = size * _largest_power(base, min(HIGH_BLOCK, units.n_states // size))
    if not _splits(units, step, device):
        step = size
    middle = units.states(0, step, torch.float64, device)[::size]
    middle_field = field(middle) - field(middle[:1])
    middle_energy = units.self_energy(middle[:1]) - units.self_energy(middle)
    bar = _progress_bar(units, layer, step, progress)
    results = []
    for start in range(0, units.n_states, step):
        first = units.states(start, start + 1, torch.float64, device)
        top_field = field(first) + middle_field               # a(k·L), one row per k
        top_energy = middle_energy - units.self_energy(first)  # −E_self(ψ(k·L))
        terms = torch.empty(top_field.shape[0], size, dtype=torch.float64, device=device)
        if product and _product_group(top_field + shift):
            scale = torch.zeros(top_field.shape[0], width, dtype=torch.float64, device=device)
            torch.exp(top_field + shift, out=scale[:, :other.dim])  # B_k = e^{a(k·L) + s}
            for k in range(top_field.shape[0]):
                torch.addcmul(one, u, scale[k], out=factors)         # 1 + B_k u(l)
                torch.sum(factors.view_as(groups).prod(-1).log_(), -1, out=terms[k])
        else:
            for k in range(top_field.shape[0]):
                terms[k] = other.log_partition(table + top_field[k])
        results.append(torch.logsumexp(terms.add_(low_energy), 1).add_(top_energy))
        if bar is not None:
            bar.update(step)
    if bar is not None:
        bar.close()
    return torch.logsumexp(torch.cat(results), 0)


def _log_partition(rbm: RBM, layer: str, progress: bool = False) -> Tensor:
    """log Z of a float64 model: the split enumeration where it applies, else the generic one."""
    size = split_size(rbm, layer)
    if size is None:
        return _generic_log_partition(rbm, layer, progress)
    return _split_log_partition(rbm, layer, size, progress)


def log_partition(rbm: RBM, progress: bool = False) -> float:
    """log Z = log Σ_{v,h} exp(−E(v,h)), exactly (float64); ``progress`` shows a bar."""
    model = _as_float64(rbm)
    with torch.no_grad():
        return float(_log_partition(model, enumerated_layer(model), progress))


def log_likelihood(rbm: RBM, data: Tensor, log_z: float | None = None,
                   batch_size: int = 4096, progress: bool = False) -> float:
    """Mean exact log-likelihood (1/N) Σ_n log p(v_n) = −mean F(v_n) − log Z, in nats.

    ``data`` (a tensor or NumPy array) is checked like training data: width, finiteness,
    values the visible units can take."""
    data = as_tensor(data)
    rbm.check_data(data)
    model = _as_float64(rbm)
    with torch.no_grad():
        if log_z is None:
            log_z = float(_log_partition(model, enumerated_layer(model), progress))
        total = 0.0
        for batch in data.split(batch_size):
            total += float(model.free_energy(batch.to(model.weight.device, torch.float64)).sum())
    return -total / data.shape[0] - log_z


def _grad(p: Tensor) -> Tensor:
    """``p.grad`` after a backward pass that reached ``p``."""
    if p.grad is None:
        raise RuntimeError("a parameter received no gradient")
    return p.grad


def log_likelihood_gradient(rbm: RBM, data: Tensor) -> dict[str, Tensor]:
    """∇θ of the mean log-likelihood, exactly: −E_data[∂F/∂θ] + E_model[∂F/∂θ].

    Returned under the names of :meth:`RBM.named_tensors`, in the model's dtype.  The model
    term is ∇ log Z = Σ_chunks exp(lse_c − log Z) ∇ lse_c, computed chunk by chunk so that
    memory stays bounded.
    """
    model = _as_float64(rbm)
    layer = enumerated_layer(model)
    with torch.no_grad():
        log_z = _log_partition(model, layer)
    model.zero_grad(set_to_none=True)
    for chunk in _chunks(model, layer):
        # d/dθ exp(lse_c − log Z) = exp(lse_c − log Z) ∇ lse_c; summed over chunks: ∇ log Z
        torch.exp(torch.logsumexp(chunk, 0) - log_z).backward()
    data64 = data.to(model.weight.device, torch.float64)
    model.free_energy(data64).mean().backward()  # adds E_data[∂F/∂θ]
    # accumulated: ∇ log Z + E_data[∂F/∂θ] = −∇ mean log p
    return {name: -_grad(p).to(rbm.weight.dtype) for name, p in model.named_tensors().items()}
