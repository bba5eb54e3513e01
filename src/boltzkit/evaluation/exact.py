"""Exact log Z, log-likelihood and log-likelihood gradient by enumeration.

The smaller discrete layer is enumerated and the other layer is summed (or integrated)
out analytically through its log-partition term.  Enumerating the hidden layer::

    log Z = logsumexp_h [ −F(h) ],   F(h) = E_self^h(h) − log Z_v(b + W ψ(h))

(for binary units −F(h) = cᵀh + Σ_i softplus(b_i + (W h)_i)), and then
log p(v) = −F(v) − log Z.  Everything runs in float64, in chunks of states, with
logsumexp, so it is the ground truth the stochastic estimators are tested against.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator

import torch
from torch import Tensor

from ..errors import ConfigurationError
from ..models.rbm import RBM
from ..training.batches import as_tensor

#: enumerate a layer only up to this many binary-equivalent units (2**25 states)
MAX_ENUMERATED_BITS = 25
#: elements (states × width of the other layer) per chunk: 2**24 float64 = 128 MiB
CHUNK_ELEMENTS = 2 ** 24


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


def _chunks(rbm: RBM, layer: str, progress: bool = False) -> Iterator[Tensor]:
    """−F(s) for every state s of the enumerated layer, chunk by chunk."""
    units, other = (rbm.hidden, rbm.visible) if layer == "hidden" else (rbm.visible, rbm.hidden)
    free_energy = rbm.free_energy_hidden if layer == "hidden" else rbm.free_energy
    size = max(1, CHUNK_ELEMENTS // max(other.dim, units.dim))
    device = rbm.weight.device
    bar = None
    if progress and units.n_states > size:
        from tqdm.auto import tqdm
        bar = tqdm(total=units.n_states, unit="state", unit_scale=True, dynamic_ncols=True,
                   desc=f"exact log Z: {units.n_states:,} {layer} states")
    for start in range(0, units.n_states, size):
        stop = min(start + size, units.n_states)
        states = units.states(start, stop, torch.float64, device)
        yield -free_energy(states)
        if bar is not None:
            bar.update(stop - start)
    if bar is not None:
        bar.close()


def _log_partition(rbm: RBM, layer: str, progress: bool = False) -> Tensor:
    return torch.logsumexp(torch.stack([torch.logsumexp(c, 0) for c in _chunks(rbm, layer, progress)]), 0)


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
