"""Modifiers of the RBM gradient: centering offsets and the sparsity penalty."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..validation import check_float


class Centering:
    """Offsets (μ_v, μ_h) of the centered gradient (Montavon & Müller 2012; Melchior et al. 2016).

    The model is the ordinary RBM; only the gradient changes: it is taken in the parameters
    of the centered energy −(v−μ_v)ᵀb' − (h−μ_h)ᵀc' − (v−μ_v)ᵀW(h−μ_h) and mapped back to
    W, b, c (see :func:`write_gradient`), so a saved model is a normal RBM.  Keeping the
    ordinary parameters fixed while the offsets move is the reparametrisation that leaves
    the distribution unchanged.

    The offsets are sliding averages of the data means, μ ← (1−ν)μ + ν·(batch mean), with
    μ_v the mean of the visible data and μ_h the mean of E[h | v_data] (Melchior et al.'s
    recommended "data mean" variant); they start at the first batch's means.  ν = ``rate``
    (0.01 by default, the value in Melchior et al.) trades noise for lag.
    """

    def __init__(self, rate: float = 0.01) -> None:
        check_float("centering rate", rate, 0.0, 1.0, low_open=True)
        self.rate = rate
        self.visible_offset: Tensor | None = None
        self.hidden_offset: Tensor | None = None

    def update(self, rbm: Any, v_data: Tensor, hidden_field: Tensor) -> tuple[Tensor, Tensor]:
        """Slide the offsets towards this batch's means and return (μ_v, μ_h).

        A model with ``centering_means(v_data, positive)`` gives the two batch means itself
        (a DBM: every hidden layer's mean-field means side by side)."""
        centering_means = getattr(rbm, "centering_means", None)
        if centering_means is not None:
            mean_v, mean_h = centering_means(v_data, hidden_field)
        else:
            mean_v, mean_h = v_data.mean(0), rbm.hidden.mean(hidden_field).mean(0)
        visible, hidden = self.visible_offset, self.hidden_offset
        if visible is None or hidden is None or visible.shape != mean_v.shape:
            visible, hidden = self.visible_offset, self.hidden_offset = mean_v.clone(), mean_h.clone()
        else:
            visible.lerp_(mean_v, self.rate)
            hidden.lerp_(mean_h, self.rate)
        return visible, hidden


class SparsityPenalty:
    """Sparsity target for the hidden units (Hinton's practical guide, 2010, §11).

    A running estimate of each hidden unit's mean activity on the data,

        q ← λ q + (1−λ) mean_batch E[h | v_data]      (q starts at the first batch's mean),

    is pulled towards the target p by the derivative of the cross-entropy penalty with
    respect to each unit's total input, q − p, scaled by ``cost``.  It is added to the loss
    gradient in ``.grad`` (so a descent step lowers the activity of units above target)::

        ∇c += cost · (q − p),      ∇W += cost · φ̄(v) (q − p)ᵀ

    with φ̄(v) the batch mean of the visible statistic φ(v_data) (v itself for binary units).
    ``decay`` = λ (0.9–0.99 in the guide) trades noise for lag.
    """

    def __init__(self, target: float, cost: float = 0.1, decay: float = 0.95) -> None:
        check_float("sparsity target", target, 0.0, 1.0, low_open=True, high_open=True)
        check_float("sparsity cost", cost, 0.0)
        check_float("sparsity decay", decay, 0.0, 1.0, high_open=True)
        self.target, self.cost, self.decay = float(target), float(cost), float(decay)
        self.estimate: Tensor | None = None

    def update(self, rbm: Any, v_data: Tensor, hidden_field: Tensor) -> Tensor:
        """Slide q towards this batch's mean hidden activity and return it."""
        mean_h = rbm.hidden.mean(hidden_field).mean(0)
        if self.estimate is None or self.estimate.shape != mean_h.shape:
            self.estimate = mean_h.clone()
        else:
            self.estimate.lerp_(mean_h, 1.0 - self.decay)
        return self.estimate

    def add_gradient(self, rbm: Any, v_data: Tensor, hidden_field: Tensor) -> None:
        """Update q, then add cost·(q − p) to ∇c and cost·φ̄(v)(q − p)ᵀ to ∇W in place."""
        with torch.no_grad():
            excess = (self.update(rbm, v_data, hidden_field) - self.target) * self.cost
            grad_c, grad_w = rbm.hidden.bias.grad, rbm.weight.grad
            assert grad_c is not None and grad_w is not None  # the estimator has written the loss gradient
            grad_c.add_(excess)
            grad_w.add_(torch.outer(rbm.visible.statistic(v_data).mean(0), excess))
