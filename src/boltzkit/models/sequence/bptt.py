"""Back-propagation through time, written out (the lecture's derivation; docs/sequences.md).

For the RNN z_t = U x_t + W h_{t−1} + b, h_t = f(z_t), o_t = V h_t + c, ŷ_t = g(o_t) and the
summed loss C = Σ_t w_t C_t:

1. output error       δo_t = w_t ∂C_t/∂o_t          (= w_t (ŷ_t − y_t) for softmax or σ with
                                                      cross-entropy; other pairings: :func:`output_error`)
   ∂C/∂V = Σ_t δo_t h_tᵀ,   ∂C/∂c = Σ_t δo_t
2. hidden error, backwards from t = T:
       δh_t = Vᵀ δo_t + Wᵀ δz_{t+1}                  (δz_{T+1} = 0)
       δz_t = δh_t ⊙ f′(z_t)
   ∂C/∂W = Σ_t δz_t h_{t−1}ᵀ,   ∂C/∂U = Σ_t δz_t x_tᵀ,   ∂C/∂b = Σ_t δz_t

Unrolled, the W-gradient is the lecture's double sum

    ∂C/∂W = Σ_t Σ_{k ≤ t} (∂C_t/∂h_t) (Π_{j=k+1..t} ∂h_j/∂h_{j−1}) ∂h_k/∂W,
            ∂h_j/∂h_{j−1} = diag(f′(z_j)) W,

and *truncation* τ keeps only the terms with t − k < τ: each C_t sends its error back at most
τ − 1 steps (:func:`bptt_gradients` with ``truncation``).  τ ≥ T is the full gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...errors import ConfigurationError
from ...training.batches import Batch
from ...validation import check_int
from .rnn import RNN


def output_error(model: RNN, field: Tensor, targets: Tensor) -> Tensor:
    """∂C_t/∂o_t for every step (B, T, K), from the output fields o_t and targets y_t.

    softmax/σ + cross-entropy: ŷ − y;  identity + squared: 2(ŷ − y);
    σ + squared: 2(ŷ − y) ⊙ ŷ(1 − ŷ);  softmax + squared: J_softmaxᵀ e = ŷ ⊙ (e − ŷ·e), e = 2(ŷ − y).
    """
    if model.output_kind == "softmax":
        y_hat = torch.softmax(field, -1)
        if model.loss_kind == "cross_entropy":
            # −Σ y log softmax(o): the gradient is ŷ Σ_i y_i − y (= ŷ − y for one-hot or normalised y)
            return y_hat * targets.sum(-1, keepdim=True) - targets
        e = 2 * (y_hat - targets)
        return y_hat * (e - (y_hat * e).sum(-1, keepdim=True))
    if model.output_kind == "sigmoid":
        y_hat = torch.sigmoid(field)
        if model.loss_kind == "cross_entropy":
            return y_hat - targets
        return 2 * (y_hat - targets) * y_hat * (1 - y_hat)
    return 2 * (field - targets)


@torch.no_grad()
def bptt_gradients(model: RNN, batch: Batch | Tensor, truncation: int | None = None) -> dict[str, Tensor]:
    """∂C/∂θ of the summed loss C = Σ_b Σ_t w_t C_t by the backward recursion (module docstring).

    Returns a dict with the parameter names of :class:`~.rnn.RNN` (``U``, ``W``, ``b``, ``V``, ``c``).
    ``truncation`` τ (None: full BPTT) cuts each error signal after τ steps back.
    """
    if not isinstance(model, RNN):
        raise ConfigurationError(f"explicit BPTT is written for the RNN, not {type(model).__name__}")
    check_int("truncation", truncation, least=1, optional=True)
    x, y, w = model.prepare(batch)
    B, T, _ = x.shape
    # forward pass, keeping every z_t and h_t (h[0] = h_0 = 0, h[t] = h_t)
    h = [model.initial_state(B)]
    z = [None]
    for t in range(1, T + 1):
        z.append(model.preactivation(x[:, t - 1], h[t - 1]))
        h.append(model.f(z[t]))
    hs = torch.stack(h[1:], 1)
    # 1. output layer: δo_t = w_t ∂C_t/∂o_t
    delta_o = output_error(model, model.output_field(hs), y) * w.unsqueeze(-1)   # (B, T, K)
    grads = {"V": torch.einsum("btk,bth->kh", delta_o, hs), "c": delta_o.sum((0, 1)),
             "U": torch.zeros_like(model.U), "W": torch.zeros_like(model.W), "b": torch.zeros_like(model.b)}
    from_output = [None] + [delta_o[:, t - 1] @ model.V for t in range(1, T + 1)]   # Vᵀ δo_t, (B, H)

    def accumulate(k: int, delta_z: Tensor) -> None:
        """Add a δz_k term: ∂z_k/∂W = h_{k−1}, ∂z_k/∂U = x_k, ∂z_k/∂b = 1."""
        grads["W"] += delta_z.t() @ h[k - 1]
        grads["U"] += delta_z.t() @ x[:, k - 1]
        grads["b"] += delta_z.sum(0)

    if truncation is None or truncation >= T:
        # 2. full BPTT: one backward sweep, δh_t = Vᵀδo_t + Wᵀδz_{t+1}
        delta_z_next = torch.zeros_like(h[0])
        for t in range(T, 0, -1):
            delta_h = from_output[t] + delta_z_next @ model.W
            delta_z = delta_h * model.f_prime(z[t])
            accumulate(t, delta_z)
            delta_z_next = delta_z
    else:
        # 2'. truncated: each C_t's error goes back through k = t, t−1, …, t−τ+1 only
        for t in range(T, 0, -1):
            delta_h = from_output[t]
            for k in range(t, max(0, t - truncation), -1):
                delta_z = delta_h * model.f_prime(z[k])
                accumulate(k, delta_z)
                delta_h = delta_z @ model.W          # ∂h_k/∂h_{k−1} = diag(f′(z_k)) W, transposed
    return grads
