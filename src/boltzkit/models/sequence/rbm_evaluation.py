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
def evaluate_recurrent_rbm(model: RecurrentRBM, data: SequenceBatches, *, max_bits: int = 20,
                           ais_chains: int = 32, ais_betas: int = 1000, predict_steps: int = 20,
                           seed: int = 0, batch_size: int = 32, nll: bool = True,
                           raise_chains: int = 0) -> dict[str, Any]:
    """``nll_per_step``, ``frame_accuracy``, ``frames``, ``log_z`` ("exact" or "ais") and, with
    AIS, ``nll_se`` and the interval ``nll_low`` / ``nll_high`` = NLL ∓ 3 ``nll_se`` (module docstring);
    with ``raise_chains`` > 0 also ``nll_raise`` and ``nll_raise_se``, the conservative side.
    ``nll=False`` skips the log-likelihood (no log Z: seconds instead of minutes on long test
    sets) and returns ``frame_accuracy`` and ``frames`` only, the same accuracy (the predictions
    and AIS draw from separate generators, seeded ``seed`` and ``seed + 1``)."""
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
    total_raise, variance_raise = 0.0, 0.0
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
        free = float(model.free_energy(values, b, c)[real].double().sum())   # −log p = F_t + log Z_t
        total, total_raise = total + free, total_raise + free
    accuracy = {"frame_accuracy": tp / max(tp + fp + fn, 1.0), "frames": frames}
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
