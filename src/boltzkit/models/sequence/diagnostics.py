"""Gradient-flow diagnostics: how far back the error signal of a recurrent network reaches.

For a state s_t (RNN: h_t; LSTM: [h_t, C_t]) the error that reaches step k from a loss at t is
carried by the Jacobian product

    ∂s_t/∂s_k = Π_{j=k+1..t} ∂s_j/∂s_{j−1},     RNN: ∂h_j/∂h_{j−1} = diag(f′(z_j)) W,

and for the RNN the lecture's inequality bounds its spectral norm:

    ‖∂h_t/∂h_k‖₂ ≤ Π_j ‖diag(f′(z_j))‖₂ ‖W‖₂ ≤ (β_s β_W)^{t−k},   β_W = ‖W‖₂,  β_s = sup|f′| (= 1
    for tanh and ReLU).

With β_s β_W < 1 the gradient vanishes exponentially in the lag t − k (sufficient condition);
exploding needs β_s β_W > 1 (necessary condition).  :func:`gradient_flow` measures the norms for
every pair t ≥ k of one sequence next to the bound, and the norm of each lag's contribution
to the gradient of the recurrent weights,

    G_ℓ = ‖ Σ_t Σ_b w_t (∂C_t/∂a_{t−ℓ}) h_{t−ℓ−1}ᵀ ‖_F,     Σ_ℓ (the matrices) = ∂C/∂W_rec,

with a_k the pre-activation that h_{k−1} enters (RNN: z_k; LSTM: the four gate fields).
:func:`plot_gradient_flow` draws both against the lag.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ...training.batches import Batch
from ...validation import check_int
from .base import SequenceModel


@dataclass
class GradientFlow:
    """What :func:`gradient_flow` measured on one sequence.

    ``norms[t, k]`` = ‖∂s_t/∂s_k‖₂ for 0 ≤ k ≤ t ≤ T (NaN where not measured; s_0 the initial
    state); ``bound[ℓ]`` = (β_s β_W)^ℓ (RNN only, else None); ``contributions[ℓ]`` = G_ℓ.
    """

    norms: np.ndarray
    beta_w: float | None
    beta_s: float | None
    contributions: np.ndarray
    model: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def lags(self) -> np.ndarray:
        return np.arange(self.norms.shape[0])

    @property
    def bound(self) -> np.ndarray | None:
        if self.beta_w is None or self.beta_s is None:
            return None
        return (self.beta_w * self.beta_s) ** self.lags.astype(np.float64)

    def by_lag(self, reduce: str = "mean") -> np.ndarray:
        """The norms summarised over all pairs with the same lag t − k ("mean", "max", "min")."""
        T = self.norms.shape[0]
        fn = {"mean": np.nanmean, "max": np.nanmax, "min": np.nanmin}[reduce]
        out = np.full(T, np.nan)
        for lag in range(T):
            diag = np.diagonal(self.norms, -lag)
            if np.isfinite(diag).any():
                out[lag] = fn(diag)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (per-lag mean/max norms, bound, contributions)."""
        bound = self.bound
        def clean(a: Iterable[float]) -> list[float | None]:
            return [None if not math.isfinite(v) else float(v) for v in a]
        return {"model": self.model, "beta_w": self.beta_w, "beta_s": self.beta_s,
                "norm_mean_by_lag": clean(self.by_lag("mean")), "norm_max_by_lag": clean(self.by_lag("max")),
                "bound_by_lag": None if bound is None else clean(bound),
                "contribution_by_lag": clean(self.contributions), **self.extra}


def _one(batch: Batch | Tensor) -> Batch:
    return batch if isinstance(batch, Batch) else Batch(batch.unsqueeze(0) if batch.dim() == 2 else batch)


def jacobian_norms(model: SequenceModel, inputs: Tensor, max_lag: int | None = None,
                   stride: int = 1) -> np.ndarray:
    """‖∂s_t/∂s_k‖₂ for one sequence of inputs (T, D) (or (1, T, D)): a (T+1, T+1) array, row t,
    column k, for k ≤ t, t − k ≤ ``max_lag`` and k a multiple of ``stride`` (NaN elsewhere)."""
    check_int("stride", stride, least=1)
    check_int("max_lag", max_lag, least=1, optional=True)
    x = inputs if inputs.dim() == 3 else inputs.unsqueeze(0)
    T = x.shape[1]
    max_lag = T if max_lag is None else min(max_lag, T)
    with torch.no_grad():
        state = model.initial_state(1)
        jac = []
        for t in range(T):
            jac.append(model.state_jacobian(x[:, t], state)[0])    # ∂s_{t+1}/∂s_t
            state = model.step(x[:, t], state)
    J = torch.stack(jac)                                            # J[i] = ∂s_{i+1}/∂s_i
    norms = np.full((T + 1, T + 1), np.nan)
    starts = torch.arange(0, T, stride)
    np.fill_diagonal(norms, 1.0)
    P = J[starts]                                                   # lag 1: ∂s_{k+1}/∂s_k
    for lag in range(1, max_lag + 1):
        keep = starts + lag <= T
        starts, P = starts[keep], P[keep]
        if not len(starts):
            break
        if lag > 1:
            P = J[starts + lag - 1] @ P                             # ∂s_{k+ℓ}/∂s_k
        values = torch.linalg.matrix_norm(P, ord=2).cpu().numpy()
        norms[(starts + lag).numpy(), starts.numpy()] = values
    return norms


def lag_contribution_matrices(model: SequenceModel, batch: Batch | Tensor) -> list[Tensor]:
    """The matrices Σ_t Σ_b w_t (∂C_t/∂a_{t−ℓ}) h_{t−ℓ−1}ᵀ for ℓ = 0..T−1, by autograd of each
    scored C_t; they sum to ∂C/∂W_rec of the summed loss (tests/test_rnn.py)."""
    x, y, w = model.prepare(_one(batch))
    T = x.shape[1]
    with torch.enable_grad():
        state = model.initial_state(x.shape[0])
        hidden_prev, pre, hs = [], [], []
        for t in range(T):
            hidden_prev.append(model.hidden(state).detach())
            state, a = model.step_preactivation(x[:, t], state)
            pre.append(a)
            hs.append(model.hidden(state))
        losses = model.step_losses(model.output_field(torch.stack(hs, 1)), y) * w
        total = [torch.zeros_like(model.recurrent_weight()).detach() for _ in range(T)]
        for t in range(T):
            if not bool((w[:, t] != 0).any()):
                continue
            grads = torch.autograd.grad(losses[:, t].sum(), pre[:t + 1], retain_graph=True)
            for k, g in enumerate(grads):
                total[t - k] += g.t() @ hidden_prev[k]
    return total


def lag_contributions(model: SequenceModel, batch: Batch | Tensor) -> np.ndarray:
    """G_ℓ = ‖:func:`lag_contribution_matrices` [ℓ]‖_F for ℓ = 0..T−1 (module docstring)."""
    return np.array([float(torch.linalg.matrix_norm(m)) for m in lag_contribution_matrices(model, batch)])


def gradient_flow(model: SequenceModel, batch: Batch | Tensor, max_lag: int | None = None,
                  stride: int = 1) -> GradientFlow:
    """Jacobian norms, the RNN bound and per-lag contributions for the first sequence of ``batch``."""
    batch = _one(batch)
    first = Batch(*(None if t is None else t[:1] for t in batch))
    if first.mask is not None:   # drop padding
        steps = int(first.mask[0].sum())
        first = Batch(first.values[:, :steps] if first.values.dim() == 3 else first.values, first.mask[:, :steps],
                      first.context[:, :steps] if first.context is not None and first.context.dim() == 3
                      else first.context)
    x, _, _ = model.prepare(first)
    norms = jacobian_norms(model, x, max_lag, stride)
    beta_w = beta_s = None
    if hasattr(model, "beta_s"):
        beta_w = float(torch.linalg.matrix_norm(model.W.detach(), ord=2))
        beta_s = float(model.beta_s)
    contributions = lag_contributions(model, first)
    name = type(model).__name__ + (f" ({model.activation})" if hasattr(model, "activation") else "")
    return GradientFlow(norms, beta_w, beta_s, contributions, name)


def plot_gradient_flow(flows: dict[str, GradientFlow] | GradientFlow, path: str | Path, title: str = "") -> Path:
    """Two panels against the lag t − k: mean (line) and max (dots) ‖∂s_t/∂s_k‖₂ with the bound
    (β_W β_s)^{t−k} dashed; and the per-lag gradient contribution G_ℓ.  Log scale."""
    from ...plot import new_figure, save_figure

    if isinstance(flows, GradientFlow):
        flows = {flows.model: flows}
    fig, (left, right) = new_figure((11, 4), 2)
    for i, (name, flow) in enumerate(flows.items()):
        colour = f"C{i % 10}"
        lags = flow.lags
        mean, top = flow.by_lag("mean"), flow.by_lag("max")
        ok = np.isfinite(mean) & (mean > 0)
        left.plot(lags[ok], mean[ok], color=colour, label=f"{name}")
        ok = np.isfinite(top) & (top > 0)
        left.plot(lags[ok], top[ok], ".", color=colour, markersize=2)
        bound = flow.bound
        if bound is not None:
            shown = bound < 1e30
            left.plot(lags[shown], bound[shown], "--", color=colour, linewidth=1,
                      label=f"bound ({flow.beta_w * flow.beta_s:.3g})^lag")
        c = flow.contributions
        ok = np.isfinite(c) & (c > 0)
        right.plot(np.arange(len(c))[ok], c[ok], color=colour, label=name)
    left.set_yscale("log")
    left.set_xlabel("lag t − k")
    left.set_ylabel("‖∂s_t/∂s_k‖₂ (line: mean, dots: max)")
    left.set_title("Jacobian norms and the bound")
    left.grid(alpha=0.3)
    left.legend(fontsize=7)
    right.set_yscale("log")
    right.set_xlabel("lag ℓ")
    right.set_ylabel("‖contribution to ∂C/∂W_rec‖_F")
    right.set_title("gradient contribution per lag")
    right.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)
