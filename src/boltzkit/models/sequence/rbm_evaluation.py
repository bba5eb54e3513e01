"""Evaluation of RTRBMs and RNN-RBMs in nats: NLL per time step and frame accuracy.

NLL per step = −(1/N) Σ_{frames} log p(v_t | v_<t),  log p = −F_t(v_t) − log Z_t, pooled over all
N real frames.  Each step's log Z_t is exact (:func:`boltzkit.evaluation.exact.log_partition` on
the step's :class:`~boltzkit.models.RBM`) when its smaller layer has at most ``max_bits`` units,
else forward AIS (:func:`boltzkit.evaluation.ais.ais`); the AIS intervals (±3 s.e. of each
step's mean weight) are summed over frames into an interval of the NLL (a conservative union).

Frame accuracy (Bay et al. 2009) = TP / (TP + FP + FN) summed over frames, the predicted frame
being E[v_t | v_<t] > 0.5, E estimated by the mean of E[v | h] over ``predict_steps`` Gibbs
sweeps of the step's RBM started at v_{t−1}.
"""

from __future__ import annotations

from typing import Any

import torch

from ...evaluation import exact
from ...evaluation.ais import ais
from ...validation import check_int
from .batches import SequenceBatches
from .rnn_rbm import RecurrentRBM


@torch.no_grad()
def evaluate_recurrent_rbm(model: RecurrentRBM, data: SequenceBatches, *, max_bits: int = 20,
                           ais_chains: int = 32, ais_betas: int = 1000, predict_steps: int = 20,
                           seed: int = 0, batch_size: int = 32) -> dict[str, Any]:
    """``nll_per_step``, ``frame_accuracy``, ``frames``, ``log_z`` ("exact" or "ais") and, with
    AIS, ``nll_low`` / ``nll_high`` (module docstring)."""
    check_int("predict_steps", predict_steps, least=1)
    w = model.rbm.weight
    data = data.to(w.device, w.dtype)
    generator = torch.Generator(w.device).manual_seed(seed)
    probe = model.step_rbm(model.rbm.visible.bias, model.rbm.hidden.bias)
    use_exact = exact.is_tractable(probe, max_bits)
    total, low, high, frames, tp, fp, fn = 0.0, 0.0, 0.0, 0, 0.0, 0.0, 0.0
    for batch in data.chunks(batch_size):
        values, mask = batch.values, batch.mask
        b, c = model.biases(values)
        neg_f = -model.free_energy(values, b, c)
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
        for i in range(vb.shape[0]):
            rbm = model.step_rbm(vb[i], vc[i])
            if use_exact:
                log_z = lo = hi = exact.log_partition(rbm)
            else:
                r = ais(rbm, n_chains=ais_chains, betas=ais_betas, base_bias=vb[i], generator=generator)
                log_z, lo, hi = r.log_z, r.log_z_low, r.log_z_high
            f = float(neg_f[real][i])
            total += log_z - f
            low += lo - f
            high += hi - f
        frames += int(vb.shape[0])
    out: dict[str, Any] = {"nll_per_step": total / frames, "frame_accuracy": tp / max(tp + fp + fn, 1.0),
                           "frames": frames, "log_z": "exact" if use_exact else "ais"}
    if not use_exact:
        out["nll_low"], out["nll_high"] = low / frames, high / frames
    return out
