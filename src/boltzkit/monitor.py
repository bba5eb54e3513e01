"""Quantities to watch during and after training: reconstruction error, pseudo-likelihood."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from .errors import ConfigurationError
from .rbm import RBM


def reconstruction_error(rbm: RBM, data: Tensor) -> float:
    """Mean squared error per visible column between v and E[v | E[h|v]]."""
    with torch.no_grad():
        return float(((rbm.reconstruct(data) - data) ** 2).mean())


def pseudo_log_likelihood(rbm: RBM, data: Tensor, chunk_rows: int | None = None) -> float:
    """Mean over rows of Σ_i log p(v_i | v_{−i}), over *all* visible sites (binary units).

    Flipping site i changes the free energy by ΔF_i = F(v^{(i)}) − F(v), and
    log p(v_i | v_{−i}) = log σ(ΔF_i).  The flipped hidden fields are
    a + (1 − 2v_i) W_i, so every site costs one extra log-partition, no extra matrix product.
    """
    if rbm.visible.kind != "bernoulli":
        raise ConfigurationError("pseudo-likelihood is implemented for binary visible units")
    n_v, n_h = rbm.weight.shape
    rows = chunk_rows or max(1, 2 ** 22 // (n_v * n_h))
    total = 0.0
    with torch.no_grad():
        for v in data.split(rows):
            field = rbm.hidden_field(v)                                  # (B, H)
            sign = 1 - 2 * v                                             # +1 turns 0→1
            flipped = field.unsqueeze(1) + sign.unsqueeze(2) * rbm.weight  # (B, V, H)
            # ΔF_i = −b_i·sign_i − [logZ_h(flipped_i) − logZ_h(field)]
            delta = (-rbm.visible.bias * sign
                     - rbm.hidden.log_partition(flipped) + rbm.hidden.log_partition(field).unsqueeze(1))
            total += float(F.logsigmoid(delta).sum())
    return total / data.shape[0]
