"""Annealed importance sampling (AIS) of log Z, forward and reverse.

Salakhutdinov & Murray (2008), "On the quantitative analysis of deep belief networks".
A *base* model A has the RBM's unit types, zero weights, zero hidden biases and visible
biases ``b_A`` (smoothed data marginals, or uniform); its partition function is exact::

    log Z_A = log-partition_v(b_A) + log-partition_h(0)

The chains move through unnormalised distributions over v (hidden units summed out)::

    log f_β(v) = −(1−β) E_self^{v}(v; b_A) − β E_self^{v}(v; b_B) + log-partition_h(β(c + φ(v)W))

which for binary units reads (1−β) b_Aᵀv + β b_Bᵀv + Σ_j softplus(β(c_j + (vᵀW)_j)).  At β = 0
it is A (the target's hidden units at β = 0 are independent of v and give A's hidden term),
at β = 1 it is the target B.  With 0 = β_0 < β_1 < … < β_K = 1, v_1 ~ p_A and v_{k+1} drawn
by a transition T_k that leaves p_{β_k} invariant, the importance weight

    w = Π_{k=1..K} f_{β_k}(v_k) / f_{β_{k−1}}(v_k)

satisfies E[w] = Z_B / Z_A.  T_k is one block-Gibbs sweep of the joint at β_k:
h ~ p_β(h | v) with the hidden field scaled by β, then v from the visible field
(1−β) b_A + β (b_B + W ψ(h)).  That visible field is exact when E_self^v is linear in its
bias (Bernoulli, softmax, spin…); other visible types raise :class:`ConfigurationError`.

Because E[w] = Z_B/Z_A, log Ẑ_B = log Z_A + log mean(w) is, by Jensen's inequality, a
stochastic *lower* bound on log Z_B (its expectation is ≤ log Z_B), so the test
log-likelihood −mean F(v) − log Ẑ_B from it tends to be *over*-estimated.
:func:`reverse_ais` runs the chain the other way (from data, β: 1 → 0) and brackets it from
the other side.

Example
-------
>>> result = ais(rbm, data=train, n_chains=100, seed=0)            # doctest: +SKIP
>>> result.log_z, result.log_z_low, result.log_z_high               # doctest: +SKIP
>>> log_likelihood(rbm, test, result)                               # doctest: +SKIP

Sharding: with ``chain_block=M`` the chains run in blocks of M, block b with its own generator
seeded by :func:`~boltzkit.training.distributed.block_seed` (seed, b), so the log-weights depend
on (seed, M) only; with ``distributed`` (a :class:`~boltzkit.training.distributed.DataParallel`)
the blocks are dealt to the ranks and the weights gathered, giving the same log Z, interval and
ESS as one process running every block.  Without ``chain_block`` all chains share one stream
(the single-process default, unchanged).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigurationError
from ..models.rbm import RBM
from ..training.batches import as_tensor
from ..training.distributed import DataParallel, run_blocks
from ..training.threads import threads_for_update, torch_threads
from ..validation import check_int

#: number of β values of the default schedule (Salakhutdinov & Murray 2008)
DEFAULT_N_BETAS = 14_500
#: the paper's schedule: 500 β in [0, 0.5), 4,000 in [0.5, 0.9), 10,000 in [0.9, 1]
_KNOTS_FRACTION = (0.0, 500 / 14_500, 4_500 / 14_500, 1.0)
_KNOTS_BETA = (0.0, 0.5, 0.9, 1.0)
#: half-width of the confidence interval, in standard errors of mean(w)
N_STANDARD_ERRORS = 3.0


@dataclass
class AISResult:
    """An AIS estimate of log Z.

    Attributes
    ----------
    log_z:
        The estimate: forward, log Z_A + log mean(w); reverse, log Z_A − log mean(w).
    log_z_low, log_z_high:
        log Z for mean(w) ± 3 standard errors of mean(w) (an end is ∓inf when the
        shifted mean is ≤ 0).
    ess:
        Effective sample size (Σw)² / Σw², between 1 and ``n_chains``.
    log_weights:
        log w per chain, float64, shape ``(n_chains,)``.
    n_chains, n_betas:
        Chains run, and β values in the schedule (both ends included).
    log_z_base:
        Exact log Z_A of the base model.
    direction:
        ``"forward"`` (β: 0 → 1, E[w] = Z_B/Z_A) or ``"reverse"`` (β: 1 → 0, E[w] = Z_A/Z_B).
    """

    log_z: float
    log_z_low: float
    log_z_high: float
    ess: float
    log_weights: Tensor = field(repr=False)
    n_chains: int
    n_betas: int
    log_z_base: float = 0.0
    direction: str = "forward"

    def __str__(self) -> str:
        return (f"{self.direction} AIS: log Z = {self.log_z:.4f} [{self.log_z_low:.4f}, {self.log_z_high:.4f}] "
                f"(±{N_STANDARD_ERRORS:g} s.e.), ESS {self.ess:.1f} of {self.n_chains} chains, {self.n_betas} β")


class LikelihoodEstimate(NamedTuple):
    """Mean test log-likelihood in nats, with the interval carried over from log Z."""

    mean: float
    low: float
    high: float


# --------------------------------------------------------------------------------------------
# schedule and base model
# --------------------------------------------------------------------------------------------


def default_betas(n_betas: int = DEFAULT_N_BETAS) -> Tensor:
    """β_0 = 0 < … < β_{n−1} = 1 with the shape of the paper's schedule, float64.

    With the default 14,500 values: 500 in [0, 0.5), 4,000 in [0.5, 0.9) and 10,000 in
    [0.9, 1] (steps of 1e-3, 1e-4 and 1e-5); other counts keep the same proportions.
    """
    check_int("an AIS schedule's number of β values", n_betas, least=2)
    u = np.linspace(0.0, 1.0, n_betas)
    betas = torch.from_numpy(np.interp(u, _KNOTS_FRACTION, _KNOTS_BETA))
    betas[0], betas[-1] = 0.0, 1.0
    return betas


def _schedule(betas: int | Tensor | None) -> Tensor:
    """The β schedule as a float64 CPU tensor from 0 to 1, validated."""
    if betas is None:
        return default_betas()
    if isinstance(betas, int) and not isinstance(betas, bool):
        return default_betas(betas)
    b = torch.as_tensor(betas, dtype=torch.float64).detach().cpu().reshape(-1)
    if b.numel() < 2:
        raise ConfigurationError(f"an AIS schedule needs at least 2 β values, got {b.numel()}")
    if not bool(torch.isfinite(b).all()) or float(b[0]) != 0.0 or float(b[-1]) != 1.0:
        raise ConfigurationError("an AIS schedule must run from β = 0 to β = 1 (finite values)")
    if bool((b[1:] < b[:-1]).any()):
        raise ConfigurationError("an AIS schedule must be non-decreasing in β")
    return b


def check_model(rbm: RBM) -> None:
    """Raise :class:`ConfigurationError` unless AIS supports ``rbm`` (a discrete hidden layer)."""
    if not rbm.hidden.discrete:
        raise ConfigurationError(
            f"AIS needs a discrete hidden layer (its β = 0 term must be finite); "
            f"{rbm.hidden.kind} hidden units are not supported")


def base_visible_bias(rbm: RBM, data: Tensor | np.ndarray | None = None, smoothing: float = 0.01) -> Tensor:
    """Visible biases b_A of the base model, shape ``(visible.dim,)``, in the model's dtype.

    With ``data``, the layer's own :meth:`~boltzkit.units.Units.init_from_data` applied to
    the smoothed marginals (1−ε)·mean(data) + ε·mean_uniform (for binary units: the log-odds
    of (1−ε) p̂ + ε/2), so that no pixel that is always 0 in the data gets an infinite bias.
    Without data, zeros (the uniform distribution for linear units).
    """
    bias = rbm.visible.bias.detach()
    if data is None:
        return torch.zeros_like(bias)
    if not 0.0 < smoothing <= 1.0:
        raise ConfigurationError(f"smoothing must be in (0, 1], got {smoothing}")
    data = as_tensor(data)  # NumPy arrays as everywhere else (forward AIS's data, reverse AIS's base_data)
    rbm.check_data(data)
    with torch.no_grad():
        data = data.to(bias.device, bias.dtype)
        uniform = rbm.visible.mean(torch.zeros(1, rbm.visible.dim, dtype=bias.dtype,
                                               device=bias.device))[0]
        smoothed = (1.0 - smoothing) * data.mean(0) + smoothing * uniform
        layer = copy.deepcopy(rbm.visible)
        layer.bias.zero_()                 # a type without init_from_data keeps the uniform base
        layer.init_from_data(smoothed)
        return layer.bias.detach().clone()


def base_log_partition(rbm: RBM, base_bias: Tensor) -> float:
    """Exact log Z_A = log-partition_v(b_A) + log-partition_h(0) of the base model (float64).

    The hidden term is taken at β = 0, where the path's hidden units no longer see v; for
    linear hidden units it equals A's hidden layer with c_A = 0 (log 2 per binary unit).
    """
    return float(base_log_partitions(rbm, base_bias.reshape(1, -1))[0])


def base_log_partitions(rbm: RBM, base_bias: Tensor) -> Tensor:
    """:func:`base_log_partition` for each row of ``base_bias`` (R × V), float64, shape (R,)."""
    with torch.no_grad():
        zeros = torch.zeros(base_bias.shape[0], rbm.hidden.dim, dtype=torch.float64, device=base_bias.device)
        return rbm.visible.log_partition(base_bias.detach().double()) + rbm.hidden.log_partition(zeros, 0.0)


# --------------------------------------------------------------------------------------------
# the annealing loop
# --------------------------------------------------------------------------------------------


Biases = tuple[Tensor, Tensor]


def _anneal(rbm: RBM, v: Tensor, betas: list[float], base_bias: Tensor,
            generator: torch.Generator | None, progress: bool, biases: Biases | None = None) -> Tensor:
    """Σ_k log f_{β_k}(v_k) − log f_{β_{k−1}}(v_k) per row of ``v``, on one CPU thread when the
    GEMMs are small (the trainer's thread rule, :mod:`boltzkit.training.threads`; torch's setting is
    restored afterwards), see :func:`_anneal_chains`."""
    threads = threads_for_update(v.shape[0], rbm.visible.dim, rbm.hidden.dim, v.device)
    with torch_threads(threads):
        return _anneal_chains(rbm, v, betas, base_bias, generator, progress, biases)


def _anneal_chains(rbm: RBM, v: Tensor, betas: list[float], base_bias: Tensor,
                   generator: torch.Generator | None, progress: bool, biases: Biases | None = None) -> Tensor:
    """Σ_k log f_{β_k}(v_k) − log f_{β_{k−1}}(v_k) along the chain, per row of ``v`` (float64).

    ``betas`` runs from β_0 to β_K (increasing: forward, decreasing: reverse); v is the state
    at β_0 and, after each weight update at β_k (k < K), moves by one Gibbs sweep at β_k.
    Per β: one hidden GEMM (which also yields (b_B − b_A)ᵀv through an extra column), one
    visible GEMM, and elementwise work; no host synchronisation.  ``biases`` = (visible,
    hidden) bias rows, one per chain, replace the model's (with ``base_bias`` rows too): the
    chains then anneal towards RBMs that share W but not their biases (:func:`ais_many`), and
    (b_B − b_A)ᵀv is a row-wise product instead of the GEMM's extra column.
    """
    visible, hidden = rbm.visible, rbm.hidden
    weight = rbm.weight.detach()
    n_chains, n_h = v.shape[0], hidden.dim
    target_bias, hidden_bias = (visible.bias.detach(), hidden.bias.detach()) if biases is None else biases
    diff = target_bias - base_bias                                    # b_B − b_A
    per_row = diff.dim() == 2
    if per_row:
        weight_aug, bias_aug = weight, hidden_bias
    else:  # [W | b_B − b_A] and [c | 0]: one GEMM gives the hidden field and (b_B − b_A)ᵀv
        weight_aug = torch.cat([weight, diff.unsqueeze(1)], 1)
        bias_aug = torch.cat([hidden_bias, diff.new_zeros(1)])
    weight_t = weight.t()
    hidden_buf = weight.new_empty(n_chains, n_h + (0 if per_row else 1))
    visible_buf = weight.new_empty(n_chains, visible.dim)
    linear64 = torch.empty(n_chains, dtype=torch.float64, device=weight.device)
    log_w = torch.zeros(n_chains, dtype=torch.float64, device=weight.device)

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(betas) - 1, unit="β", dynamic_ncols=True)
    last = len(betas) - 1
    for k in range(1, len(betas)):
        beta, previous = betas[k], betas[k - 1]
        torch.addmm(bias_aug, visible.statistic(v), weight_aug, out=hidden_buf)
        field = hidden_buf[:, :n_h]
        # log f_β(v) − log f_β'(v) = (β − β')(b_B − b_A)ᵀv + lp_h(β a) − lp_h(β' a); the two
        # log-partitions are large and nearly equal, so the layer computes their difference
        log_w.add_(hidden.log_partition_change(field, beta, previous))
        linear64.copy_((diff * visible.statistic(v)).sum(1) if per_row else hidden_buf[:, n_h])
        log_w.add_(linear64, alpha=beta - previous)
        if k < last:
            h = hidden.sample(field, generator, beta)
            # visible field (1−β) b_A + β (b_B + W ψ(h)) = b_A + β (b_B − b_A + W ψ(h))
            torch.addmm(diff, hidden.statistic(h), weight_t, out=visible_buf)
            visible_buf.mul_(beta).add_(base_bias)
            v = visible.sample(visible_buf, generator)
        if bar is not None and (k % 100 == 0 or k == last):
            bar.update(k - bar.n)
    if bar is not None:
        bar.close()
    return log_w


def _summary(log_w: Tensor) -> tuple[float, float, float, float]:
    """log mean(w), log(mean ± 3 se), and the ESS, computed stably from log w."""
    n = log_w.numel()
    top = float(log_w.max())
    if not math.isfinite(top):
        raise ConfigurationError("AIS weights are not finite; check the model parameters")
    w = torch.exp(log_w - top)
    mean = float(w.mean())
    se = float(w.std(unbiased=True)) / math.sqrt(n) if n > 1 else math.inf
    high = top + math.log(mean + N_STANDARD_ERRORS * se) if math.isfinite(se) else math.inf
    low_mean = mean - N_STANDARD_ERRORS * se
    low = top + math.log(low_mean) if low_mean > 0 else -math.inf
    ess = float(w.sum()) ** 2 / float((w * w).sum())
    return top + math.log(mean), low, high, ess


def _setup(rbm: RBM, data: Tensor | None, base_bias: Tensor | None, smoothing: float,
           n_chains: int, seed: int | None,
           generator: torch.Generator | None,
           chain_block: int | None = None) -> tuple[Tensor, torch.Generator | None]:
    check_model(rbm)
    check_int("n_chains", n_chains, least=1)
    check_int("chain_block", chain_block, least=1, optional=True)
    if chain_block is not None and (seed is None or generator is not None):
        raise ConfigurationError("chain_block needs a seed (each block's stream is derived from it), not a generator")
    if data is not None and base_bias is not None:
        raise ConfigurationError("give the base model either as data or as base_bias, not both")
    device, dtype = rbm.weight.device, rbm.weight.dtype
    if not rbm.visible.linear:
        # (1−β) b_A + β b_B interpolates the visible bias exactly only when E_self(v) = −bᵀv;
        # other visible types (Gaussian) keep the model's own visible layer in the base
        # model, b_A = b_B, and only the couplings are annealed.
        base_bias = rbm.visible.bias.detach().clone()
    elif base_bias is None:
        base_bias = base_visible_bias(rbm, data, smoothing)
    else:
        base_bias = torch.as_tensor(base_bias).detach().to(device, dtype).reshape(-1)
        if base_bias.numel() != rbm.visible.dim or not bool(torch.isfinite(base_bias).all()):
            raise ConfigurationError(
                f"base_bias must hold {rbm.visible.dim} finite values, got shape "
                f"{tuple(base_bias.shape)}")
    if generator is None and seed is not None:
        generator = torch.Generator(device).manual_seed(seed)
    return base_bias, generator


# --------------------------------------------------------------------------------------------
# public estimators
# --------------------------------------------------------------------------------------------


def _blocked(n_chains: int, chain_block: int, seed: int, distributed: DataParallel | None, start_states,
             schedule: list[float], rbm: RBM, base_bias: Tensor, progress: bool) -> Tensor:
    """log w of ``n_chains`` chains run in blocks of ``chain_block``, block b on its own generator
    (seed of (seed, b)) from ``start_states(start, stop, generator)``, sharded over ``distributed``."""
    device = rbm.weight.device

    def run(start: int, stop: int, block_seed: int) -> Tensor:
        g = torch.Generator(device).manual_seed(block_seed)
        return _anneal(rbm, start_states(start, stop, g), schedule, base_bias, g, progress)

    return run_blocks(n_chains, chain_block, seed, run, distributed).to(device)


def ais(rbm: RBM, data: Tensor | np.ndarray | None = None, *, n_chains: int = 100,
        betas: int | Tensor | None = None, base_bias: Tensor | None = None,
        smoothing: float = 0.01, seed: int | None = None,
        generator: torch.Generator | None = None, progress: bool = False,
        chain_block: int | None = None, distributed: DataParallel | None = None) -> AISResult:
    """Forward AIS estimate of log Z of ``rbm``: anneal β from 0 (base model) to 1.

    Parameters
    ----------
    data:
        Training data (a tensor or NumPy array) for the base model's visible biases (smoothed
        marginals, see :func:`base_visible_bias`); without it (and without ``base_bias``) the
        base is uniform.
    n_chains:
        Independent AIS runs M, moved together as one batch.
    betas:
        The schedule: a tensor from 0 to 1 (non-decreasing), or a count for
        :func:`default_betas`; default the paper's 14,500 values.
    base_bias:
        Explicit visible biases b_A of the base model instead of ``data``.
    seed, generator:
        Randomness: a generator on the model's device, or a seed for a new one.  A fixed
        seed gives identical results.
    progress:
        Show a progress bar.
    chain_block, distributed:
        Run the chains in blocks of ``chain_block`` with per-block seeds (needs ``seed``), dealt
        to the ranks of ``distributed`` (module docstring): the same result on any number of
        processes.

    Returns
    -------
    AISResult
        ``log_z`` = log Z_A + log mean(w); in expectation a lower bound on log Z (Jensen),
        and the interval log(mean(w) ± 3 se) around it.
    """
    base_bias, generator = _setup(rbm, data, base_bias, smoothing, n_chains, seed, generator, chain_block)
    schedule = _schedule(betas)
    log_z_base = base_log_partition(rbm, base_bias)
    with torch.no_grad():
        if chain_block is not None:
            assert seed is not None  # _setup refuses chain_block without a seed

            def start(first: int, stop: int, g: torch.Generator) -> Tensor:
                return rbm.visible.sample(base_bias.expand(stop - first, -1).contiguous(), g)

            log_w = _blocked(n_chains, chain_block, seed, distributed, start, schedule.tolist(), rbm, base_bias,
                             progress)
        else:
            field = base_bias.expand(n_chains, -1).contiguous()
            v = rbm.visible.sample(field, generator)              # exact draws from p_A
            log_w = _anneal(rbm, v, schedule.tolist(), base_bias, generator, progress)
    log_mean, low, high, ess = _summary(log_w)
    return AISResult(log_z=log_z_base + log_mean, log_z_low=log_z_base + low,
                     log_z_high=log_z_base + high, ess=ess, log_weights=log_w.cpu(),
                     n_chains=n_chains, n_betas=len(schedule), log_z_base=log_z_base,
                     direction="forward")


def _many_setup(name: str, rbm: RBM, visible_bias: Tensor, hidden_bias: Tensor, n_chains: int,
                betas: int | Tensor | None, base_bias: Tensor | None
                ) -> tuple[Tensor, Tensor, Callable[[Tensor], Tensor]]:
    """Checked (base biases R × V, schedule, repeat each row ``n_chains`` times) for
    :func:`ais_many` and :func:`raise_many`."""
    if visible_bias.dim() != 2 or hidden_bias.dim() != 2 or visible_bias.shape[0] != hidden_bias.shape[0] \
            or visible_bias.shape[1] != rbm.visible.dim or hidden_bias.shape[1] != rbm.hidden.dim:
        raise ConfigurationError(f"{name} needs biases of shapes (R, {rbm.visible.dim}) and (R, {rbm.hidden.dim}), "
                                 f"got {tuple(visible_bias.shape)} and {tuple(hidden_bias.shape)}")
    check_int("n_chains", n_chains, least=1)
    base = visible_bias if base_bias is None else base_bias.reshape(visible_bias.shape)

    def rows(t: Tensor) -> Tensor:
        return t.detach().repeat_interleave(n_chains, 0)

    return base, _schedule(betas), rows


def ais_many(rbm: RBM, visible_bias: Tensor, hidden_bias: Tensor, *, n_chains: int = 100,
             betas: int | Tensor | None = None, base_bias: Tensor | None = None,
             generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Forward AIS for R RBMs that share ``rbm``'s weights and unit types, RBM r having the
    biases ``visible_bias[r]`` (R × V) and ``hidden_bias[r]`` (R × H): all R · ``n_chains``
    chains anneal as one batch (one pair of matrix products per β for all of them, where R
    separate :func:`ais` runs would pay R times the per-β overhead of small products) — the
    steps of an RNN-RBM or RTRBM, whose biases follow the recurrence.  ``base_bias`` (R × V,
    default ``visible_bias``): each base model's visible biases.

    Returns (log Ẑ_r as float64, shape (R,); the log-weights, shape (R, n_chains)), with
    log Ẑ_r = log Z_A,r + log mean_m w_rm, in expectation a lower bound on log Z_r.
    """
    base, schedule, rows = _many_setup("ais_many", rbm, visible_bias, hidden_bias, n_chains, betas, base_bias)
    n = visible_bias.shape[0]
    with torch.no_grad():
        base_rows = rows(base)
        v = rbm.visible.sample(base_rows, generator)             # exact draws from each p_A
        log_w = _anneal(rbm, v, schedule.tolist(), base_rows, generator, False,
                        (rows(visible_bias), rows(hidden_bias))).reshape(n, n_chains)
        log_z_base = base_log_partitions(rbm, base)
    return log_z_base + torch.logsumexp(log_w, 1) - math.log(n_chains), log_w


def raise_many(rbm: RBM, visible: Tensor, visible_bias: Tensor, hidden_bias: Tensor, *, n_chains: int = 1,
               betas: int | Tensor | None = None, base_bias: Tensor | None = None,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """RAISE (Burda, Grosse & Salakhutdinov 2015), the conservative side of :func:`ais_many`: for
    R RBMs that share ``rbm``'s weights (biases as in :func:`ais_many`) and one observed row
    ``visible[r]`` (R × V) each, ``n_chains`` reverse chains start at v_r and anneal β: 1 → 0.

    The annealing model q draws x_0 ~ p_A and then one Gibbs sweep T_k at each β_1, …, β_K; its
    probability of v is q(v) = E[q̂] with q̂ = f_B(v) w / Z_A, where the chain first moves by
    T_K from v, then by T_{K−1}, …, and w = Π_k f_{β_{k−1}}(x) / f_{β_k}(x) along it (each T_k is
    reversible for p_{β_k}, so it is its own reversal).  Returns (log Ẑ_r, shape (R,), float64;
    the log-weights, shape (R, n_chains)) with log Ẑ_r = log Z_A,r − log mean_m w_rm, so that
    −F_r(v_r) − log Ẑ_r = log mean q̂: by Jensen's inequality its expectation is ≤ log q(v_r),
    and q → p_r as the schedule lengthens — a log-likelihood estimate that errs low where
    forward AIS errs high.
    """
    base, schedule, rows = _many_setup("raise_many", rbm, visible_bias, hidden_bias, n_chains, betas, base_bias)
    if visible.shape != visible_bias.shape:
        raise ConfigurationError(f"raise_many needs one observed row per RBM, shape {tuple(visible_bias.shape)}, "
                                 f"got {tuple(visible.shape)}")
    n = visible_bias.shape[0]
    with torch.no_grad():
        # β_K = 1 twice: the first step adds log f_1 − log f_1 = 0 and makes the first move, T_K
        log_w = _anneal(rbm, rows(visible).to(rbm.weight.dtype), [1.0, *schedule.flip(0).tolist()], rows(base),
                        generator, False, (rows(visible_bias), rows(hidden_bias))).reshape(n, n_chains)
        log_z_base = base_log_partitions(rbm, base)
    return log_z_base - torch.logsumexp(log_w, 1) + math.log(n_chains), log_w


def reverse_ais(rbm: RBM, data: Tensor | np.ndarray, *, n_chains: int = 100,
                betas: int | Tensor | None = None, base_data: Tensor | np.ndarray | None = None,
                base_bias: Tensor | None = None, smoothing: float = 0.01,
                seed: int | None = None, generator: torch.Generator | None = None,
                progress: bool = False, chain_block: int | None = None,
                distributed: DataParallel | None = None) -> AISResult:
    """Reverse AIS estimate of log Z: chains start at rows of ``data`` and anneal β from 1 to 0.

    The reverse weight w = Π_k f_{β_{k−1}}(v_k) / f_{β_k}(v_k) has E[w] = Z_A / Z_B when the
    chains start at exact samples of the model, so log Ẑ = log Z_A − log mean(w) is then, by
    Jensen's inequality, a stochastic **upper** bound on log Z: the log-likelihood
    −mean F − log Ẑ computed from it is a stochastic **lower** bound, the conservative side
    of the bracket whose other side is the forward :func:`ais`.  Starting from data rather
    than model samples makes the bound approximate: it holds to the degree that the data
    (e.g. held-out test rows) look like samples of the model.

    ``data`` supplies the starting states: ``n_chains`` rows drawn without replacement by
    the generator (cycled when there are fewer rows).  The base model comes from
    ``base_data`` or ``base_bias`` as in :func:`ais` (default: uniform).  ``log_z_low`` and
    ``log_z_high`` are log Z_A − log(mean(w) ± 3 se).  ``chain_block`` and ``distributed``
    shard the chains as in :func:`ais` (the starting rows then come from a permutation drawn
    with ``seed``, the same on every rank).
    """
    base_bias, generator = _setup(rbm, base_data, base_bias, smoothing, n_chains, seed, generator, chain_block)
    schedule = _schedule(betas)
    data = as_tensor(data)
    rbm.check_data(data)
    log_z_base = base_log_partition(rbm, base_bias)
    device, dtype = rbm.weight.device, rbm.weight.dtype
    with torch.no_grad():
        rows = data.shape[0]
        if chain_block is not None:
            assert seed is not None  # _setup refuses chain_block without a seed
            index = (torch.randperm(rows, generator=torch.Generator().manual_seed(seed))[:n_chains]
                     if rows >= n_chains else torch.arange(n_chains) % rows)

            def start(first: int, stop: int, g: torch.Generator) -> Tensor:
                return data[index[first:stop].to(data.device)].to(device, dtype)

            log_w = _blocked(n_chains, chain_block, seed, distributed, start, schedule.flip(0).tolist(), rbm,
                             base_bias, progress)
        else:
            if rows >= n_chains:
                cpu_generator = torch.Generator().manual_seed(
                    int(torch.randint(2 ** 62, (1,), generator=generator, device=device)))
                index = torch.randperm(rows, generator=cpu_generator)[:n_chains]
            else:
                index = torch.arange(n_chains) % rows
            v = data[index.to(data.device)].to(device, dtype)
            log_w = _anneal(rbm, v, schedule.flip(0).tolist(), base_bias, generator, progress)
    log_mean, low, high, ess = _summary(log_w)
    return AISResult(log_z=log_z_base - log_mean, log_z_low=log_z_base - high,
                     log_z_high=log_z_base - low, ess=ess, log_weights=log_w.cpu(),
                     n_chains=n_chains, n_betas=len(schedule), log_z_base=log_z_base,
                     direction="reverse")


def log_likelihood(rbm: RBM, data: Tensor | np.ndarray, result: AISResult,
                   batch_size: int = 4096) -> LikelihoodEstimate:
    """Mean log-likelihood −mean F(v) − log Ẑ of ``data``, with the interval of ``result``.

    ``low`` uses ``result.log_z_high`` and ``high`` uses ``result.log_z_low``.
    """
    data = as_tensor(data)
    rbm.check_data(data)
    weight = rbm.weight
    with torch.no_grad():
        total = sum(float(rbm.free_energy(batch.to(weight.device, weight.dtype)).double().sum())
                    for batch in data.split(batch_size))
    mean_free = total / data.shape[0]
    return LikelihoodEstimate(mean=-mean_free - result.log_z, low=-mean_free - result.log_z_high,
                              high=-mean_free - result.log_z_low)


__all__ = ["AISResult", "LikelihoodEstimate", "ais", "ais_many", "raise_many", "reverse_ais", "log_likelihood",
           "default_betas", "base_visible_bias", "base_log_partition", "base_log_partitions", "DEFAULT_N_BETAS"]
