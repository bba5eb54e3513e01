"""Deep models in nats: exact enumeration for tiny DBMs and DBNs, AIS, variational bounds.

**DBM** (:class:`~boltzkit.models.deep_boltzmann.DBM`).  The layers split into even (v, h², …) and odd
(h¹, h³, …) ones and the graph is bipartite between them, so the DBM *is* an RBM over
[even | odd] (:meth:`DBM.as_rbm`).  Hence

- exact log Z enumerates the layers of one parity (whichever has fewer units) and sums the
  other parity analytically (:func:`dbm_log_partition`, differentiable);
- exact log p(v) = −F(v) − log Z with F(v) from :meth:`DBM.free_energy` (odd layers summed
  analytically, even hidden layers enumerated);
- AIS anneals the even layers with the odd ones summed out, exactly as Salakhutdinov &
  Hinton (2009) do: it is :func:`boltzkit.evaluation.ais.ais` on :meth:`DBM.as_rbm`, with a
  base model whose biases are the smoothed marginals of v and of the even hidden layers'
  mean-field states (:func:`dbm_ais`); :func:`dbm_reverse_ais` is the other side;
- the test log-likelihood is bounded per case by the mean-field bound
  log p(v) ≥ −F_MF(v) − log Z (:func:`variational_bound`), the number the DBM paper reports.

**DBN** (:class:`~boltzkit.models.dbn.DBN`), Salakhutdinov & Murray (2008): with the
recognition distribution Q(h¹, …, h^{L−1} | v) = Π_l q(x_l | x_{l−1}) of the RBMs' hidden
conditionals and the top RBM's marginal p(x_{L−1}) = e^{−F_top(x_{L−1})}/Z_top,

    log p(v) ≥ E_Q[ Σ_{l<L} (log p(x_{l−1} | x_l) − log q(x_l | x_{l−1})) − F_top(x_{L−1}) ] − log Z_top

estimated with ``samples`` draws from Q per case and log Z_top by AIS on the top RBM
(:func:`dbn_log_likelihood`).  Exact log p(v) for tiny DBNs sums the intermediate layers by
enumeration (:func:`dbn_exact_log_likelihood`).

:func:`evaluate` returns the keys of the RBM path (``log_likelihood``, ``log_partition``,
``log_partition_interval``, ``method``) for either kind.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigurationError
from ..models.dbn import DBN, log_conditional, up_pass
from ..models.deep_boltzmann import DBM
from ..models.units import _bits
from ..sampling.bits import bernoulli
from ..training.batches import as_tensor
from . import ais, exact
from .ais import AISResult, LikelihoodEstimate

#: enumerate at most this many binary units jointly (2**22 states)
MAX_ENUMERATED_BITS = 22
#: states × width per chunk of an enumeration
_CHUNK = 2 ** 22
#: Gibbs sweeps with v clamped that give reverse AIS its start states for the even hidden layers
REVERSE_START_SWEEPS = 50


# --------------------------------------------------------------------------------------------
# DBM: exact
# --------------------------------------------------------------------------------------------


def _parity_bits(dbm: DBM, parity: int) -> int:
    return sum(n for l, n in enumerate(dbm.sizes) if l % 2 == parity)


def dbm_enumerated_parity(dbm: DBM, max_bits: int = MAX_ENUMERATED_BITS) -> int:
    """0 (even layers, v included) or 1 (odd layers): the side with fewer units, if small enough."""
    parity = min((0, 1), key=lambda p: _parity_bits(dbm, p))
    bits = _parity_bits(dbm, parity)
    if bits > max_bits:
        raise ConfigurationError(f"exact DBM enumeration needs one parity of layers with at most {max_bits} "
                                 f"units; the smaller has {bits}; use AIS instead")
    return parity


def dbm_log_partition(dbm: DBM, parity: int | None = None) -> Tensor:
    """log Z = logsumexp over the states of one parity's layers of −F(those layers), the
    other parity summed analytically (:meth:`DBM.free_energy_parity`); a differentiable
    0-d tensor in the model's dtype (use a float64 model for ground truth)."""
    parity = dbm_enumerated_parity(dbm) if parity is None else parity
    layers = [l for l in range(dbm.n_layers + 1) if l % 2 == parity]
    bits = sum(dbm.sizes[l] for l in layers)
    w = dbm.weights[0]
    size = max(1, _CHUNK // sum(dbm.sizes))
    parts = []
    for start in range(0, 2 ** bits, size):
        stop = min(start + size, 2 ** bits)
        codes = _bits(start, stop, bits, w.dtype, w.device)
        states: list[Tensor | None] = [None] * (dbm.n_layers + 1)
        offset = 0
        for l in layers:
            states[l] = codes[:, offset:offset + dbm.sizes[l]]
            offset += dbm.sizes[l]
        parts.append(torch.logsumexp(-dbm.free_energy_parity(states, parity), 0))
    return torch.logsumexp(torch.stack(parts), 0)


def _float64(model: Any) -> Any:
    return copy.deepcopy(model).to(torch.float64)


def dbm_exact_log_likelihood(dbm: DBM, data: Tensor, log_z: float | None = None) -> Tensor:
    """Exact log p(v) = −F(v) − log Z per row, float64."""
    model = _float64(dbm)
    data = as_tensor(data)
    dbm.check_data(data)
    with torch.no_grad():
        log_z = float(dbm_log_partition(model)) if log_z is None else log_z
        return -model.free_energy(data.to(model.weights[0].device, torch.float64)) - log_z


def dbm_log_likelihood_gradient(dbm: DBM, data: Tensor) -> dict[str, Tensor]:
    """∇θ of the mean exact log-likelihood, −mean ∇F(v) − ∇ log Z, by autograd in float64,
    under the names of :meth:`DBM.checkpoint_tensors`, in the model's dtype."""
    model = _float64(dbm)
    data = as_tensor(data).to(model.weights[0].device, torch.float64)
    tensors = model.checkpoint_tensors()
    objective = -model.free_energy(data).mean() - dbm_log_partition(model)
    grads = torch.autograd.grad(objective, list(tensors.values()))
    return {name: g.to(dbm.weights[0].dtype) for name, g in zip(tensors, grads)}


def variational_bound(dbm: DBM, data: Tensor, log_z: float) -> Tensor:
    """The mean-field lower bound −F_MF(v) − log Z ≤ log p(v), per row (float64)."""
    data = as_tensor(data)
    dbm.check_data(data)
    w = dbm.weights[0]
    with torch.no_grad():
        out = [-dbm.variational_free_energy(b.to(w.device, w.dtype)).double() for b in data.split(4096)]
    return torch.cat(out) - log_z


# --------------------------------------------------------------------------------------------
# DBM: AIS
# --------------------------------------------------------------------------------------------


def _even_states(dbm: DBM, data: Tensor, generator: torch.Generator | None, sweeps: int = 0) -> Tensor:
    """Rows [v, h², …] for the rows of ``data``: the even hidden layers drawn from the
    mean-field posterior, then ``sweeps`` Gibbs sweeps of the hidden layers with v clamped
    (approximate draws from p(h | v))."""
    w = dbm.weights[0]
    rows = []
    with torch.no_grad():
        for v in data.split(4096):
            v = v.to(w.device, w.dtype)
            x: list[Tensor] = [v, *[bernoulli(m, generator) for m in dbm.mean_field(v)]]
            for _ in range(sweeps):
                for parity in (1, 0):
                    for l in range(1, dbm.n_layers + 1):
                        if l % 2 == parity:
                            x[l] = dbm.layers()[l].sample(dbm.field(l, x), generator)
            rows.append(torch.cat([x[l] for l in dbm.even_layers()], 1))
    return torch.cat(rows)


def _dbm_setup(dbm: DBM, data: Tensor, seed: int | None, generator: torch.Generator | None
               ) -> tuple[Any, Tensor, torch.Generator | None]:
    data = as_tensor(data)
    dbm.check_data(data)
    device = dbm.weights[0].device
    if generator is None and seed is not None:
        generator = torch.Generator(device).manual_seed(seed)
    rbm = dbm.as_rbm()
    base_bias = ais.base_visible_bias(rbm, _even_states(dbm, data, generator))
    return rbm, base_bias, generator


def dbm_ais(dbm: DBM, data: Tensor, *, n_chains: int = 100, betas: int | Tensor | None = None,
            seed: int | None = None, generator: torch.Generator | None = None, progress: bool = False) -> AISResult:
    """Forward AIS estimate of the DBM's log Z (β: 0 → 1 over the even layers, odd layers summed
    out); the base model's biases come from ``data`` (v) and its mean-field states (even
    hidden layers).  As for RBMs, log Ẑ is a stochastic lower bound on log Z."""
    rbm, base_bias, generator = _dbm_setup(dbm, data, seed, generator)
    return ais.ais(rbm, n_chains=n_chains, betas=betas, base_bias=base_bias, generator=generator,
                   progress=progress)


def dbm_reverse_ais(dbm: DBM, data: Tensor, *, n_chains: int = 100, betas: int | Tensor | None = None,
                    seed: int | None = None, generator: torch.Generator | None = None,
                    sweeps: int = REVERSE_START_SWEEPS, progress: bool = False) -> AISResult:
    """Reverse AIS (β: 1 → 0) from rows of ``data`` with even hidden layers drawn by ``sweeps``
    clamped Gibbs sweeps: the other side of the bracket (a stochastic upper bound on log Z to
    the degree that those states look like model samples)."""
    rbm, base_bias, generator = _dbm_setup(dbm, data, seed, generator)
    start = _even_states(dbm, as_tensor(data), generator, sweeps)
    return ais.reverse_ais(rbm, start, n_chains=n_chains, betas=betas, base_bias=base_bias,
                           generator=generator, progress=progress)


def dbm_log_likelihood(dbm: DBM, data: Tensor, result: AISResult) -> LikelihoodEstimate:
    """Mean variational bound −mean F_MF(v) − log Ẑ with the interval of ``result``."""
    per_case = variational_bound(dbm, data, 0.0)
    mean = float(per_case.mean())
    return LikelihoodEstimate(mean - result.log_z, mean - result.log_z_high, mean - result.log_z_low)


# --------------------------------------------------------------------------------------------
# DBN
# --------------------------------------------------------------------------------------------


def _top_features(dbn: DBN, data: Tensor, generator: torch.Generator | None) -> Tensor:
    """One draw of x_{L−1} ~ Q(· | v) per row: the top RBM's visible layer."""
    x = as_tensor(data)
    for rbm in dbn.rbms[:-1]:
        x = up_pass(rbm, x, "sample", generator)
    return x


def dbn_top_ais(dbn: DBN, data: Tensor, *, n_chains: int = 100, betas: int | Tensor | None = None,
                seed: int | None = None, reverse: bool = False, progress: bool = False) -> AISResult:
    """AIS (or reverse AIS) for log Z of the top RBM, the base model (and reverse start states)
    from draws of its visible layer under Q given ``data``."""
    data = as_tensor(data)
    dbn.check_data(data)
    top = dbn.top
    generator = torch.Generator(top.weight.device).manual_seed(seed) if seed is not None else None
    features = _top_features(dbn, data, generator) if len(dbn.rbms) > 1 else data
    if reverse:
        return ais.reverse_ais(top, features, n_chains=n_chains, betas=betas, base_data=features,
                               generator=generator, progress=progress)
    return ais.ais(top, features, n_chains=n_chains, betas=betas, generator=generator, progress=progress)


def dbn_bound_terms(dbn: DBN, data: Tensor, samples: int = 10, generator: torch.Generator | None = None
                    ) -> Tensor:
    """Per case and per draw x ~ Q(· | v): Σ_l [log p(x_{l−1} | x_l) − log q(x_l | x_{l−1})] −
    F_top(x_{L−1}), shape ``(rows, samples)``, float64.  Its mean minus log Z_top is the bound."""
    data = as_tensor(data)
    dbn.check_data(data)
    w = dbn.rbms[0].weight
    out = []
    with torch.no_grad():
        for v in data.split(max(1, 4096 // samples)):
            x = v.to(w.device, w.dtype).repeat_interleave(samples, 0)
            total = torch.zeros(x.shape[0], dtype=torch.float64, device=w.device)
            for rbm in dbn.rbms[:-1]:
                h_field = rbm.hidden_field(x)
                h = rbm.hidden.sample(h_field, generator)
                total += (log_conditional(rbm.visible, x, rbm.visible_field(h))
                          - log_conditional(rbm.hidden, h, h_field)).double()
                x = h
            total -= dbn.top.free_energy(x).double()
            out.append(total.reshape(v.shape[0], samples))
    return torch.cat(out)


def dbn_log_likelihood(dbn: DBN, data: Tensor, log_z: AISResult | float, samples: int = 10,
                       seed: int | None = 0) -> tuple[LikelihoodEstimate, float]:
    """The Salakhutdinov & Murray (2008) lower bound on the mean log-likelihood (module
    docstring) with the interval of ``log_z`` (an :class:`AISResult` or an exact float), and the
    Monte Carlo standard error of the bound's estimate (from the ``samples`` draws per case)."""
    if len(dbn.rbms) == 1:
        raise ConfigurationError("a one-layer DBN is an RBM: use boltzkit.evaluation.ais.log_likelihood")
    generator = torch.Generator(dbn.rbms[0].weight.device).manual_seed(seed) if seed is not None else None
    terms = dbn_bound_terms(dbn, data, samples, generator)
    mean = float(terms.mean())
    within = terms.var(1, unbiased=True) / samples if samples > 1 else torch.zeros(terms.shape[0])
    se = float(within.sum().sqrt()) / terms.shape[0]
    if isinstance(log_z, AISResult):
        return LikelihoodEstimate(mean - log_z.log_z, mean - log_z.log_z_high, mean - log_z.log_z_low), se
    return LikelihoodEstimate(mean - log_z, mean - log_z, mean - log_z), se


def dbn_exact_log_likelihood(dbn: DBN, data: Tensor, max_bits: int = MAX_ENUMERATED_BITS) -> Tensor:
    """Exact log p(v) per row, float64: the top RBM's marginal with exact log Z, then
    log m_{l−1}(x) = logsumexp_s [log p(x | s) + log m_l(s)] down to v over every state s of
    the intermediate layers (which must be discrete and have at most 2^max_bits states each)."""
    model = _float64(dbn)
    data = as_tensor(data)
    dbn.check_data(data)
    rbms = list(model.rbms)
    if len(rbms) == 1:
        raise ConfigurationError("a one-layer DBN is an RBM: use boltzkit.evaluation.exact.log_likelihood")
    for rbm in rbms[1:]:
        if not rbm.visible.discrete or math.log2(rbm.visible.n_states) > max_bits:
            raise ConfigurationError(f"exact DBN log-likelihood enumerates the intermediate layers; a "
                                     f"{rbm.visible.kind} layer of {rbm.n_visible} units is too large or continuous")
    device = rbms[0].weight.device
    with torch.no_grad():
        top = rbms[-1]
        states = top.visible.states(0, top.visible.n_states, torch.float64, device)
        log_m = -top.free_energy(states) - exact.log_partition(top)
        for rbm in reversed(rbms[:-1]):
            field = rbm.visible_field(states)                                   # (S, dim)
            below = (rbm.visible.states(0, rbm.visible.n_states, torch.float64, device) if rbm is not rbms[0]
                     else data.to(device, torch.float64))
            log_p = (-rbm.visible.self_energy(below).unsqueeze(1)
                     + rbm.visible.statistic(below) @ (field - rbm.visible.bias).t()
                     - rbm.visible.log_partition(field).unsqueeze(0))           # (rows, S)
            log_m = torch.logsumexp(log_p + log_m.unsqueeze(0), 1)
            states = below
    return log_m


# --------------------------------------------------------------------------------------------
# one entry point
# --------------------------------------------------------------------------------------------


def is_tractable(model: Any) -> bool:
    """Whether ``method="exact"`` can enumerate ``model`` (a DBM or DBN)."""
    try:
        if isinstance(model, DBM):
            dbm_enumerated_parity(model)
            return sum(model.sizes[l] for l in model.even_layers() if l > 0) <= 20
        if isinstance(model, DBN):
            if len(model.rbms) < 2 or not exact.is_tractable(model.top):
                return False
            return all(r.visible.discrete and math.log2(r.visible.n_states) <= MAX_ENUMERATED_BITS
                       for r in model.rbms[1:])
    except ConfigurationError:
        return False
    return False


METHODS = ("auto", "exact", "ais", "raise", "reverse")


def evaluate(model: Any, data: Tensor, method: str = "auto", chains: int = 100, betas: int | Tensor | None = 14500,
             seed: int = 0, samples: int = 10, progress: bool = False) -> dict[str, Any]:
    """Mean test log-likelihood of a DBM or DBN in nats, with the keys of the RBM path.

    ``method``: ``exact`` (enumeration; tiny models), ``ais`` (forward AIS for log Z),
    ``raise``/``reverse`` (reverse AIS), ``auto`` (exact when tractable, else AIS).  With
    AIS the log-likelihood is the variational lower bound per case (DBM: mean field; DBN:
    Salakhutdinov & Murray) minus log Ẑ, ``log_likelihood_interval`` from the log Z interval.
    """
    if method not in METHODS:
        raise ConfigurationError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if not isinstance(model, (DBM, DBN)):
        raise ConfigurationError(f"evaluate takes a DBM or a DBN, got {type(model).__name__}")
    data = as_tensor(data)
    model.check_data(data)
    if method == "auto":
        method = "exact" if is_tractable(model) else "ais"
    result: dict[str, Any] = {"method": method, "n": int(data.shape[0]),
                              "model": model.checkpoint_kind, "sizes": model.sizes}
    if method == "exact":
        if not is_tractable(model):
            raise ConfigurationError(f"this {model.checkpoint_kind} ({model.sizes}) is too large to enumerate; "
                                     "use --method ais")
        if isinstance(model, DBM):
            log_z = float(dbm_log_partition(_float64(model)).detach())
            bound = variational_bound(model, data, log_z)
            result.update(log_partition=log_z,
                          log_likelihood=float(dbm_exact_log_likelihood(model, data, log_z).mean()),
                          variational_bound=float(bound.mean()))
        else:
            log_z = exact.log_partition(model.top)
            estimate, se = dbn_log_likelihood(model, data, log_z, samples, seed)
            result.update(log_partition=log_z, log_likelihood=float(dbn_exact_log_likelihood(model, data).mean()),
                          variational_bound=estimate.mean, variational_bound_standard_error=se)
        return result
    reverse = method in ("raise", "reverse")
    if isinstance(model, DBM):
        run = dbm_reverse_ais if reverse else dbm_ais
        estimate = run(model, data, n_chains=chains, betas=betas, seed=seed, progress=progress)
        ll = dbm_log_likelihood(model, data, estimate)
        result["bound"] = "mean-field variational lower bound per case, minus the AIS log Z"
    else:
        if len(model.rbms) == 1:
            raise ConfigurationError("a one-layer DBN is an RBM; evaluate it as an RBM")
        estimate = dbn_top_ais(model, data, n_chains=chains, betas=betas, seed=seed, reverse=reverse,
                               progress=progress)
        ll, se = dbn_log_likelihood(model, data, estimate, samples, seed)
        result["bound"] = "Salakhutdinov & Murray (2008) variational lower bound, minus the top RBM's AIS log Z"
        result["bound_standard_error"] = se
    result.update(log_partition=estimate.log_z, log_partition_interval=[estimate.log_z_low, estimate.log_z_high],
                  log_likelihood=ll.mean, log_likelihood_interval=[ll.low, ll.high], ess=estimate.ess,
                  chains=chains, betas=estimate.n_betas)
    return result


__all__ = ["dbm_log_partition", "dbm_exact_log_likelihood", "dbm_log_likelihood_gradient", "variational_bound",
           "dbm_ais", "dbm_reverse_ais", "dbm_log_likelihood", "dbn_top_ais", "dbn_bound_terms",
           "dbn_log_likelihood", "dbn_exact_log_likelihood", "is_tractable", "evaluate", "METHODS"]
