"""The shortest loop of a CD-k / PCD-k epoch of boltzkit's draws and torch calls: a floor for torch-built code.

A yardstick beside the matrix-product roofline.  The roofline times the products alone; this
loop adds only what an update cannot skip — gathering the batch, the sigmoids of the hidden
means, boltzkit's Bernoulli draws from a field (:func:`boltzkit.sampling.logistic.bernoulli_logistic`,
the compiled loop where a C compiler is), the bias-gradient means and torch's fused SGD step —
written inline with no framework around it (no estimator, no model protocol, no checks).  What
boltzkit's epoch spends beyond this loop is the library's own overhead; what this loop spends
beyond the roofline is the price of the elementwise passes over memory, one call each, that
sit between the products.
"""

from __future__ import annotations

import torch
from torch import Tensor

from boltzkit.sampling.bits import bernoulli
from boltzkit.sampling.logistic import bernoulli_logistic
from roofline import timed


class EagerLoop:
    """Binary RBM (V × H) trained by CD-k, or PCD-k with ``persistent=True`` (B chains), in
    float32 with SGD (momentum 0.5, the trainer's default first-epochs momentum)."""

    def __init__(self, data: Tensor, hidden: int, batch: int, k: int = 1, persistent: bool = False,
                 lr: float = 0.01, seed: int = 0) -> None:
        self.data, self.batch, self.k, self.persistent = data, batch, k, persistent
        device = data.device
        self.generator = torch.Generator(device).manual_seed(seed)
        self.weight = torch.randn(data.shape[1], hidden, device=device, generator=self.generator) * 0.01
        self.visible_bias = torch.zeros(data.shape[1], device=device)
        self.hidden_bias = torch.zeros(hidden, device=device)
        params = (self.weight, self.visible_bias, self.hidden_bias)
        for p in params:
            p.grad = torch.empty_like(p)
        self.optimizer = torch.optim.SGD(params, lr=lr, momentum=0.5, fused=True)
        self.chains = bernoulli(torch.full((batch, data.shape[1]), 0.5, device=device), self.generator)

    def update(self, x: Tensor) -> None:
        """One CD-k / PCD-k update on the rows ``x``."""
        w, b, c = self.weight, self.visible_bias, self.hidden_bias
        field = torch.addmm(c, x, w)
        mu_pos = torch.sigmoid(field)
        if self.persistent:
            v = self.chains
            field = torch.addmm(c, v, w)
        h = bernoulli_logistic(field, self.generator)
        for step in range(self.k):
            v = bernoulli_logistic(torch.addmm(b, h, w.t()), self.generator)
            if step < self.k - 1:
                h = bernoulli_logistic(torch.addmm(c, v, w), self.generator)
        mu_neg = torch.addmm(c, v, w).sigmoid_()
        if self.persistent:
            self.chains = v
        n = x.shape[0]
        grad_w, grad_b, grad_c = (p.grad for p in (w, b, c))
        assert grad_w is not None and grad_b is not None and grad_c is not None
        torch.addmm(grad_w, x.t(), mu_pos, beta=0, alpha=-1.0 / n, out=grad_w)
        grad_w.addmm_(v.t(), mu_neg, alpha=1.0 / v.shape[0])
        torch.sub(v.mean(0), x.mean(0), out=grad_b)
        torch.sub(mu_neg.mean(0), mu_pos.mean(0), out=grad_c)
        self.optimizer.step()

    def epoch(self) -> float:
        """Seconds of one shuffled epoch over the data."""
        def epoch() -> None:
            order = torch.randperm(self.data.shape[0], generator=self.generator, device=self.generator.device)
            for rows in order.split(self.batch):
                self.update(self.data.index_select(0, rows))

        return timed(epoch, self.data.device)
