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

Frame accuracy (Bay et al. 2009) = TP / (TP + FP + FN) summed over frames.  The predicted frame
is by default E[v_t | v_<t] > 0.5, E estimated by the mean of E[v | h] over ``predict_steps``
Gibbs sweeps of the step's RBM started at v_{t−1}; with ``predict_candidates`` (take them from
the training split only) it is instead, by ``predict_rule``, the most probable of those frames,
argmax_s p(s | v_<t) = argmin_s F_t(s) ("map": the mode of the step's distribution when its mass
sits on recurring frames), or the exact mean of p_t restricted to them thresholded at ½ ("mean").
The mean rule suits the measure: the expected TP, FP and FN of a predicted frame are linear in
its notes, so with each note's probability p_i the note is worth predicting when p_i > A/(1 + A),
A the accuracy reached (≈ 0.4–0.45 at A ≈ 0.7–0.8; ½ sits close, and on Nottingham's test set
scored 0.688 against 0.687 at the self-consistent 0.44, and 0.671 for the mode).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ...errors import ConfigurationError
from ...evaluation import exact
from ...evaluation.ais import ais_many, raise_many
from ...validation import check_choice, check_int
from .batches import SequenceBatches
from .rnn_rbm import RecurrentRBM

#: half-width of the NLL interval, in standard errors (as the AIS intervals of boltzkit.evaluation.ais)
N_STANDARD_ERRORS = 3.0
#: time steps whose AIS chains anneal as one batch (:func:`boltzkit.evaluation.ais.ais_many`)
AIS_BLOCK = 256
#: how ``predict_candidates`` give the predicted frame: their mode, or their mean thresholded at ½
PREDICT_RULES = ("map", "mean")
#: chains of :func:`candidate_mass` run as one batch
MASS_BLOCK = 16384


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
                            block: int = 4) -> Tensor:
    """log Σ_{s ∈ S} exp(−F_t(s)) for each row of (b_t, c_t), float64: the step partition functions
    summed over the candidate frames S only (rows of ``candidates``).  Z_t ≥ Σ_S exp(−F_t), so this
    is a *certain* lower bound on each log Z_t (no sampling), and F_t(v_t) + it a certain lower
    bound on −log p(v_t | v_<t); it is tight when the steps put their mass on S (music whose frames
    recur: 98.5 % of Nottingham's test frames occur among its 1,252 distinct training frames).  A
    repeated candidate counts once."""
    return _log_partition(model, model.check_frames(candidates), b_t, c_t, block)


def _log_partition(model: RecurrentRBM, candidates: Tensor, b_t: Tensor, c_t: Tensor, block: int = 4) -> Tensor:
    """:func:`candidate_log_partition` over candidates already made distinct (:meth:`check_frames`)."""
    parts = [torch.logsumexp(log_f.double(), 1) for log_f in model.frame_scores(candidates, b_t, c_t, block)]
    return torch.cat(parts) if parts else b_t.new_zeros(0, dtype=torch.float64)


@torch.no_grad()
def most_probable_candidate(model: RecurrentRBM, candidates: Tensor, b_t: Tensor, c_t: Tensor,
                            block: int = 4) -> Tensor:
    """For each row of (b_t, c_t), the candidate frame of lowest free energy, argmax_s p_t(s):
    (rows, D), the step's mode among the candidates."""
    return _candidate_prediction(model, model.check_frames(candidates), b_t, c_t, "map", block)


def _positions(rows: Tensor, table: Tensor) -> Tensor:
    """The index in ``table`` (distinct rows) of each row of ``rows``, −1 where it is not there
    (frames compared exactly)."""
    _, inverse = torch.unique(torch.cat([table, rows.to(table)]), dim=0, return_inverse=True)
    where = torch.full((int(inverse.max()) + 1,), -1, dtype=torch.long, device=table.device)
    where[inverse[:table.shape[0]]] = torch.arange(table.shape[0], device=table.device)
    return where[inverse[table.shape[0]:]]


def _prediction(log_f: Tensor, frames: Tensor, rule: str) -> Tensor:
    """From the scores ``log_f`` (rows, S) of ``frames`` (S, D): the best frame ("map") or the mean
    of the frames under p_t restricted to them ("mean"), (rows, D)."""
    if rule == "map":
        return frames[log_f.argmax(1)]
    return torch.softmax(log_f.double(), 1).to(frames.dtype) @ frames


@torch.no_grad()
def candidate_mean(model: RecurrentRBM, candidates: Tensor, b_t: Tensor, c_t: Tensor, block: int = 4) -> Tensor:
    """For each row of (b_t, c_t), E[v] under p_t restricted to the candidate frames S,
    Σ_{s ∈ S} s e^{−F_t(s)} / Σ_{s ∈ S} e^{−F_t(s)}: (rows, D), each unit's probability of being on
    given that the frame is one of S (exact, no sampling; a repeated candidate counts once)."""
    return _candidate_prediction(model, model.check_frames(candidates), b_t, c_t, "mean", block)


def _candidate_prediction(model: RecurrentRBM, candidates: Tensor, b_t: Tensor, c_t: Tensor, rule: str,
                          block: int = 4) -> Tensor:
    """:func:`_prediction` by ``rule`` for every row of (b_t, c_t), over candidates already made
    distinct (:meth:`~.rnn_rbm.RecurrentRBM.check_frames`)."""
    candidates = candidates.to(b_t.device, b_t.dtype)
    out = [_prediction(log_f, candidates, rule) for log_f in model.frame_scores(candidates, b_t, c_t, block)]
    return torch.cat(out) if out else b_t.new_zeros(0, candidates.shape[1])


@torch.no_grad()
def _candidate_pass(model: RecurrentRBM, candidates: Tensor, b_t: Tensor, c_t: Tensor, among: Tensor | None,
                    rule: str, chains: int, generator: torch.Generator) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """One pass over the candidates' scores −F_t(s): per row the log of the candidate sum
    (:func:`candidate_log_partition`), the prediction from the candidates indexed by ``among`` by
    ``rule`` (the mode, :func:`most_probable_candidate`, or the restricted mean,
    :func:`candidate_mean`), and ``chains`` exact draws from p_t restricted to the candidates,
    p_t(s) / Σ_S p_t (indices, (rows, chains))."""
    sums, predictions, starts = [], [], []
    among = None if among is None else among.to(b_t.device)
    chosen = None if among is None else candidates.to(b_t)[among]       # once, not per row block
    for log_f in model.frame_scores(candidates, b_t, c_t):
        log_f = log_f.double()
        sums.append(torch.logsumexp(log_f, 1))
        if among is not None:
            predictions.append(_prediction(log_f[:, among], chosen, rule))
        if chains:
            starts.append(torch.multinomial(torch.softmax(log_f, 1), chains, replacement=True, generator=generator))
    return (torch.cat(sums), torch.cat(predictions) if predictions else None, torch.cat(starts) if starts else None)


@torch.no_grad()
def candidate_mass(model: RecurrentRBM, candidates: Tensor, b_t: Tensor, c_t: Tensor, starts: Tensor,
                   sweeps: int, generator: torch.Generator | None = None) -> Tensor:
    """Per row of (b_t, c_t), whether each chain is on a candidate frame after ``sweeps`` Gibbs sweeps
    of the step's RBM, started at the candidates indexed by ``starts`` (rows, chains): a bool tensor
    (rows, chains).

    Started from exact draws of p_t restricted to the candidates S, its mean f̂_K estimates f_K, the
    probability of S after K sweeps.  The sweep v → h → v is reversible and positive semi-definite
    under p_t, so f_K ≥ P_t(S) for every K and falls to it as K grows: −log f_K ≤ −log P_t(S) =
    log Z_t − log Σ_S e^{−F_t}, and adding it to the candidate bound keeps a lower bound on the NLL,
    a tighter one (mass the chains do not reach within K sweeps stays uncounted).  Runs
    :data:`MASS_BLOCK` chains at a time."""
    chains, candidates = starts.shape[1], candidates.to(b_t)
    rows = max(1, MASS_BLOCK // chains)
    parts = []
    for start in range(0, b_t.shape[0], rows):
        block = slice(start, start + rows)
        v = candidates[starts[block].reshape(-1)]
        v = model.gibbs(v, b_t[block].repeat_interleave(chains, 0), c_t[block].repeat_interleave(chains, 0),
                        sweeps, generator)
        parts.append((_positions(v, candidates) >= 0).reshape(-1, chains))
    return torch.cat(parts) if parts else torch.zeros(0, chains, dtype=torch.bool, device=b_t.device)


@torch.no_grad()
def evaluate_recurrent_rbm(model: RecurrentRBM, data: SequenceBatches, *, max_bits: int = 20,
                           ais_chains: int = 32, ais_betas: int = 1000, predict_steps: int = 20,
                           seed: int = 0, batch_size: int = 32, nll: bool = True,
                           raise_chains: int = 0, candidates: Tensor | None = None,
                           predict_candidates: Tensor | None = None, predict_rule: str | None = None,
                           mass_chains: int = 0, mass_sweeps: int = 100, accuracy: bool = True) -> dict[str, Any]:
    """``nll_per_step``, ``frame_accuracy``, ``frames``, ``log_z`` ("exact" or "ais") and, with
    AIS, ``nll_se`` and the interval ``nll_low`` / ``nll_high`` = NLL ∓ 3 ``nll_se`` (module docstring);
    with ``raise_chains`` > 0 also ``nll_raise`` and ``nll_raise_se``, the conservative side; with
    ``candidates`` (frames, rows of an (S, D) tensor) also ``nll_lower_bound``, a certain lower
    bound on the NLL from :func:`candidate_log_partition`; with ``predict_candidates`` the predicted
    frame is the most probable of those frames (``predict_rule="map"``, :func:`most_probable_candidate`)
    or their mean under p_t thresholded at ½ (``"mean"``, :func:`candidate_mean`), no sampling, instead
    of the thresholded Gibbs mean; with ``candidates`` and ``mass_chains`` > 0 also ``candidate_mass``
    (± ``candidate_mass_se``, the binomial standard error of the pooled chains, conservative for
    frames with different f_t), the pooled f̂_K of :func:`candidate_mass` (K = ``mass_sweeps``), and
    ``nll_lower_bound_mass`` = ``nll_lower_bound`` − log ``candidate_mass`` (± ``nll_lower_bound_mass_se``
    = se / f̂): with the exact pooled f_K a lower bound on the NLL (−log is convex: the mean of
    −log f_t is at least −log of their mean), a tighter one; f̂ carries sampling error, so it is a
    lower bound up to about that standard error (None when no chain stayed on a candidate).
    ``candidates`` are made distinct first (a repeated frame would count twice in the bound).
    ``nll=False`` skips the log-likelihood (no log Z: seconds instead of minutes on long test
    sets) and returns ``frame_accuracy`` and ``frames`` only (and ``nll_lower_bound`` with
    ``candidates``), the same accuracy (the predictions and AIS draw from separate generators,
    seeded ``seed`` and ``seed + 1``); ``accuracy=False`` skips the predicted frames (no
    ``frame_accuracy``: the bound alone, as validation needs)."""
    check_int("predict_steps", predict_steps, least=1)
    check_int("raise_chains", raise_chains, least=0)
    check_int("mass_chains", mass_chains, least=0)
    check_int("mass_sweeps", mass_sweeps, least=1)
    if predict_rule is not None:
        check_choice("predict_rule", predict_rule, PREDICT_RULES)
        if predict_candidates is None:
            raise ConfigurationError("predict_rule chooses among predict_candidates: give them too")
    predict_rule = predict_rule or "map"
    if mass_chains and candidates is None:
        raise ConfigurationError("mass_chains needs candidates (the frames whose mass it measures)")
    if predict_candidates is not None and not accuracy:
        raise ConfigurationError("predict_candidates give the predicted frames of the accuracy: not with "
                                 "accuracy=False")
    if candidates is not None:
        candidates = model.check_frames(candidates, "candidates")
    if predict_candidates is not None:
        predict_candidates = model.check_frames(predict_candidates, "predict_candidates")
    w = model.rbm.weight
    data = data.to(w.device, w.dtype)
    generator = torch.Generator(w.device).manual_seed(seed)  # the frame predictions' draws
    ais_generator = torch.Generator(w.device).manual_seed(seed + 1)  # AIS's own: nll=False predicts alike
    raise_generator = torch.Generator(w.device).manual_seed(seed + 2)
    mass_generator = torch.Generator(w.device).manual_seed(seed + 3)
    probe = model.step_rbm(model.rbm.visible.bias, model.rbm.hidden.bias)
    use_exact = exact.is_tractable(probe, max_bits)
    total, variance, frames, tp, fp, fn = 0.0, 0.0, 0, 0.0, 0.0, 0.0
    total_raise, variance_raise, total_bound, inside, chains_run = 0.0, 0.0, 0.0, 0, 0
    # predicting among a subset of the bound's candidates: both from one pass over their scores
    among = None if candidates is None or predict_candidates is None else _positions(predict_candidates, candidates)
    if among is not None and bool((among < 0).any()):
        among = None                          # not all among the bound's candidates: their own pass
    for batch in data.chunks(batch_size):
        values, mask = batch.values, batch.mask
        b, c = model.biases(values)
        previous = torch.cat([torch.zeros_like(values[:, :1]), values[:, :-1]], 1)
        real = mask > 0
        vb, vc, vp, vv = b[real], c[real], previous[real], values[real]
        log_bound = predicted = None
        if candidates is not None and (among is not None or mass_chains):
            log_bound, predicted, starts = _candidate_pass(model, candidates, vb, vc, among, predict_rule,
                                                           mass_chains, mass_generator)
            if starts is not None:
                on = candidate_mass(model, candidates, vb, vc, starts, mass_sweeps, mass_generator)
                inside, chains_run = inside + int(on.sum()), chains_run + on.numel()
        if not accuracy:
            guess = None
        elif predicted is not None:
            guess = predicted > 0.5
        elif predict_candidates is not None:   # the step's mode among the candidate frames, or their mean
            guess = _candidate_prediction(model, predict_candidates, vb, vc, predict_rule) > 0.5
        else:   # mean of E[v | h] over Gibbs sweeps of each step's RBM, thresholded
            v, mean = vp, torch.zeros_like(vv)
            for _ in range(predict_steps):
                h = model.rbm.hidden.sample(model.hidden_field(v, vc), generator)
                p = model.visible_mean(h, vb)
                mean += p
                v = model.rbm.visible.sample(model.visible_field(h, vb), generator)
            guess = mean / predict_steps > 0.5
        if guess is not None:
            truth = vv > 0.5
            tp += float((guess & truth).sum())
            fp += float((guess & ~truth).sum())
            fn += float((~guess & truth).sum())
        frames += int(vb.shape[0])
        if not nll and candidates is None:
            continue
        free = float(model.free_energy(values, b, c)[real].double().sum())   # −log p = F_t + log Z_t
        if candidates is not None:
            if log_bound is None:
                log_bound = _log_partition(model, candidates, vb, vc)   # checked once, above
            total_bound += free + float(log_bound.sum())
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
    scores: dict[str, Any] = {"frame_accuracy": tp / max(tp + fp + fn, 1.0)} if accuracy else {}
    scores["frames"] = frames
    if candidates is not None:
        scores["nll_lower_bound"] = total_bound / frames
    if chains_run:
        mass = inside / chains_run
        scores["candidate_mass"] = mass
        scores["candidate_mass_se"] = math.sqrt(mass * (1 - mass) / chains_run)
        # no chain stayed: −log f_K is not measured (f_K > 0 always), so no tighter bound is claimed
        scores["nll_lower_bound_mass"] = scores["nll_lower_bound"] - math.log(mass) if mass > 0 else None
        scores["nll_lower_bound_mass_se"] = scores["candidate_mass_se"] / mass if mass > 0 else None
    if not nll:
        return scores
    out: dict[str, Any] = {"nll_per_step": total / frames, **scores, "log_z": "exact" if use_exact else "ais"}
    if not use_exact:
        half = N_STANDARD_ERRORS * math.sqrt(variance) / frames
        out["nll_se"] = math.sqrt(variance) / frames
        out["nll_low"], out["nll_high"] = out["nll_per_step"] - half, out["nll_per_step"] + half
        if raise_chains:
            out["nll_raise"], out["nll_raise_se"] = total_raise / frames, math.sqrt(variance_raise) / frames
    return out
