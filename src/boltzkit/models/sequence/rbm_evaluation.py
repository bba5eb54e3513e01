"""Evaluation of RTRBMs and RNN-RBMs in nats: NLL per time step and frame accuracy.

NLL per step = −(1/N) Σ_{frames} log p(v_t | v_<t),  log p = −F_t(v_t) − log Z_t, pooled over all
N real frames.  Each step's log Z_t is exact (:func:`boltzkit.evaluation.exact.log_partition` on
the step's :class:`~boltzkit.models.RBM`) when its smaller layer has at most ``max_bits`` units,
else forward AIS (:func:`boltzkit.evaluation.ais.ais_many`: the steps share W, so the chains of
up to :data:`AIS_BLOCK` steps anneal as one batch, each step from the base with its own visible
biases b_t).  With AIS, the steps' runs are
independent, so the NLL's standard error is σ = √(Σ_t s_t²) / N with s_t = se(w_t) / mean(w_t),
the delta-method standard error of log Ẑ_t, and the interval is NLL ± 3σ.  (Adding each step's
own interval log(mean ± 3 se) instead would treat the N errors as perfectly correlated — √N
times too wide — and give −∞ as soon as one step has mean − 3 se ≤ 0, as a step with a single
dominant weight among a few chains does.)  Forward AIS under-estimates log Z in expectation
(Jensen), so a short schedule makes the NLL optimistic beyond this interval.

The other side: with ``raise_chains`` > 0, RAISE (:func:`boltzkit.evaluation.ais.raise_many`)
also starts that many reverse chains at each observed frame v_t and anneals β: 1 → 0 on the same
schedule, giving ``nll_raise`` = −(1/N) Σ log q̂_t(v_t), whose expectation is ≥ the NLL of the
annealing model q (Jensen), q → p as the schedule lengthens: forward AIS errs low in NLL, RAISE
high, and the true NLL lies between them up to their standard errors and q's distance from p.
With ``candidates`` (e.g. every distinct frame of the data), ``nll_lower_bound`` sums each step's
Z_t over those frames only: a bound without sampling error that forward AIS must not undercut.

Frame accuracy (Bay et al. 2009) = TP / (TP + FP + FN) summed over frames, the predicted frame
being E[v_t | v_<t] > 0.5, E estimated by the mean of E[v | h] over ``predict_steps`` Gibbs
sweeps of the step's RBM started at v_{t−1}.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ...evaluation import exact
from ...evaluation.ais import ais_many, raise_many
from ...validation import check_int
from .batches import SequenceBatches
from .rnn_rbm import RecurrentRBM

#: half-width of the NLL interval, in standard errors (as the AIS intervals of boltzkit.evaluation.ais)
N_STANDARD_ERRORS = 3.0
#: time steps whose AIS chains anneal as one batch (:func:`boltzkit.evaluation.ais.ais_many`)
AIS_BLOCK = 256


def log_mean_variance(log_weights: Tensor) -> float:
    """(se(w) / mean(w))², the delta-method variance of log mean(w), from the log-weights of one AIS
    run (inf for a single chain)."""
    n = log_weights.numel()
    if n < 2:
        return math.inf
    w = torch.exp(log_weights.double() - log_weights.max())
    return float(w.var(unbiased=True) / (n * w.mean() ** 2))


@torch.no_grad()
def candidate_log_partition(model: RecurrentRBM, candidates: Tensor, b_t: Tensor, c_t: Tensor,
                            block: int = 16) -> Tensor:
    """log Σ_{s ∈ S} exp(−F_t(s)) for each row of (b_t, c_t), float64: the step partition functions
    summed over the candidate frames S only (rows of ``candidates``).  Z_t ≥ Σ_S exp(−F_t), so this
    is a *certain* lower bound on each log Z_t (no sampling), and F_t(v_t) + it a certain lower
    bound on −log p(v_t | v_<t); it is tight when the steps put their mass on S (music whose frames
    recur: 98.5 % of Nottingham's test frames occur among its 1,252 distinct training frames)."""
    candidates = candidates.to(b_t.device, b_t.dtype)
    field = model.rbm.visible.statistic(candidates) @ model.rbm.weight          # (S, H), once
    parts = []
    for start in range(0, b_t.shape[0], block):
        b, c = b_t[start:start + block], c_t[start:start + block]
        log_f = b @ candidates.t() + model.rbm.hidden.log_partition(field + c.unsqueeze(1))   # (rows, S)
        parts.append(torch.logsumexp(log_f.double(), 1))
    return torch.cat(parts) if parts else b_t.new_zeros(0, dtype=torch.float64)


@torch.no_grad()
def evaluate_recurrent_rbm(model: RecurrentRBM, data: SequenceBatches, *, max_bits: int = 20,
                           ais_chains: int = 32, ais_betas: int = 1000, predict_steps: int = 20,
                           seed: int = 0, batch_size: int = 32, nll: bool = True,
                           raise_chains: int = 0, candidates: Tensor | None = None) -> dict[str, Any]:
    """``nll_per_step``, ``frame_accuracy``, ``frames``, ``log_z`` ("exact" or "ais") and, with
    AIS, ``nll_se`` and the interval ``nll_low`` / ``nll_high`` = NLL ∓ 3 ``nll_se`` (module docstring);
    with ``raise_chains`` > 0 also ``nll_raise`` and ``nll_raise_se``, the conservative side; with
    ``candidates`` (frames, rows of an (S, D) tensor) also ``nll_lower_bound``, a certain lower
    bound on the NLL from :func:`candidate_log_partition`.
    ``nll=False`` skips the log-likelihood (no log Z: seconds instead of minutes on long test
    sets) and returns ``frame_accuracy`` and ``frames`` only (and ``nll_lower_bound`` with
    ``candidates``), the same accuracy (the predictions and AIS draw from separate generators,
    seeded ``seed`` and ``seed + 1``)."""
    check_int("predict_steps", predict_steps, least=1)
    check_int("raise_chains", raise_chains, least=0)
    w = model.rbm.weight
    data = data.to(w.device, w.dtype)
    generator = torch.Generator(w.device).manual_seed(seed)  # the frame predictions' draws
    ais_generator = torch.Generator(w.device).manual_seed(seed + 1)  # AIS's own: nll=False predicts alike
    raise_generator = torch.Generator(w.device).manual_seed(seed + 2)
    probe = model.step_rbm(model.rbm.visible.bias, model.rbm.hidden.bias)
    use_exact = exact.is_tractable(probe, max_bits)
    total, variance, frames, tp, fp, fn = 0.0, 0.0, 0, 0.0, 0.0, 0.0
    total_raise, variance_raise, total_bound = 0.0, 0.0, 0.0
    for batch in data.chunks(batch_size):
        values, mask = batch.values, batch.mask
        b, c = model.biases(values)
        previous = torch.cat([torch.zeros_like(values[:, :1]), values[:, :-1]], 1)
        real = mask > 0
        vb, vc, vp, vv = b[real], c[real], previous[real], values[real]
        # predicted frames: mean of E[v | h] over Gibbs sweeps of each step's RBM
        v, mean = vp, torch.zeros_like(vv)
        for _ in range(predict_steps):
            h = model.rbm.hidden.sample(model.hidden_field(v, vc), generator)
            p = model.visible_mean(h, vb)
            mean += p
            v = model.rbm.visible.sample(model.visible_field(h, vb), generator)
        guess, truth = mean / predict_steps > 0.5, vv > 0.5
        tp += float((guess & truth).sum())
        fp += float((guess & ~truth).sum())
        fn += float((~guess & truth).sum())
        frames += int(vb.shape[0])
        if not nll and candidates is None:
            continue
        free = float(model.free_energy(values, b, c)[real].double().sum())   # −log p = F_t + log Z_t
        if candidates is not None:
            total_bound += free + float(candidate_log_partition(model, candidates, vb, vc).sum())
        if not nll:
            continue
        if use_exact:
            total += sum(exact.log_partition(model.step_rbm(vb[i], vc[i])) for i in range(vb.shape[0]))
        else:  # the steps share W: their AIS chains anneal together, AIS_BLOCK steps at a time
            template = model.step_rbm(vb[0], vc[0])
            for start in range(0, vb.shape[0], AIS_BLOCK):
                block = slice(start, start + AIS_BLOCK)
                log_z, log_w = ais_many(template, vb[block], vc[block], n_chains=ais_chains, betas=ais_betas,
                                        generator=ais_generator)
                total += float(log_z.sum())
                variance += sum(log_mean_variance(row) for row in log_w)
                if raise_chains:
                    log_z, log_w = raise_many(template, vv[block], vb[block], vc[block], n_chains=raise_chains,
                                              betas=ais_betas, generator=raise_generator)
                    total_raise += float(log_z.sum())
                    variance_raise += sum(log_mean_variance(row) for row in log_w)
        total, total_raise = total + free, total_raise + free
    accuracy: dict[str, Any] = {"frame_accuracy": tp / max(tp + fp + fn, 1.0), "frames": frames}
    if candidates is not None:
        accuracy["nll_lower_bound"] = total_bound / frames
    if not nll:
        return accuracy
    out: dict[str, Any] = {"nll_per_step": total / frames, **accuracy, "log_z": "exact" if use_exact else "ais"}
    if not use_exact:
        half = N_STANDARD_ERRORS * math.sqrt(variance) / frames
        out["nll_se"] = math.sqrt(variance) / frames
        out["nll_low"], out["nll_high"] = out["nll_per_step"] - half, out["nll_per_step"] + half
        if raise_chains:
            out["nll_raise"], out["nll_raise_se"] = total_raise / frames, math.sqrt(variance_raise) / frames
    return out
