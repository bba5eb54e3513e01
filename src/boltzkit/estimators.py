"""Gradient estimators: a negative phase (model samples) and the one function writing ``.grad``.

The log-likelihood gradient of an RBM is

    ∂ ln p(v)/∂θ = −E_{p(h|v)}[∂E/∂θ] + E_{p(v,h)}[∂E/∂θ] = −∂F(v)/∂θ + E_{p(v)}[∂F/∂θ].

Every estimator replaces the model expectation by an average over samples ``v⁻`` and fills
``.grad`` with the gradient of the *loss* ``mean F(v⁺) − mean F(v⁻)`` (the negative
log-likelihood gradient estimate), so any ``torch.optim`` optimizer can step it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .errors import ConfigurationError
from .rbm import RBM
from .samplers import PersistentChains


def write_gradient(rbm: RBM, v_pos: Tensor, v_neg: Tensor, pos_field: Tensor | None = None) -> None:
    """Set ``p.grad = ∇θ [mean F(v⁺) − mean F(v⁻)]`` for every parameter, samples held fixed.

    For layers with E_self(x) = −biasᵀx and φ(x) = x (``Units.linear``) the closed form is
    used (μ = E[h|v], B± the batch sizes)::

        ∇W = −v⁺ᵀμ⁺/B⁺ + v⁻ᵀμ⁻/B⁻,   ∇b = −mean v⁺ + mean v⁻,   ∇c = −mean μ⁺ + mean μ⁻

    (two matrix products, written in place).  Other unit types take the autograd gradient
    of the same expression; a test checks that both agree to rounding.
    """
    if not (rbm.visible.linear and rbm.hidden.linear):
        _autograd_gradient(rbm, v_pos, v_neg)
        return
    with torch.no_grad():
        mu_pos = rbm.hidden.mean(pos_field if pos_field is not None else rbm.hidden_field(v_pos))
        mu_neg = rbm.hidden_mean(v_neg)
        n_pos, n_neg = v_pos.shape[0], v_neg.shape[0]
        weight, b, c = rbm.weight, rbm.visible.bias, rbm.hidden.bias
        for p in (weight, b, c):
            if p.grad is None:
                p.grad = torch.empty_like(p)
        torch.addmm(weight.grad, v_pos.t(), mu_pos, beta=0, alpha=-1.0 / n_pos, out=weight.grad)
        weight.grad.addmm_(v_neg.t(), mu_neg, alpha=1.0 / n_neg)
        torch.sub(v_neg.mean(0), v_pos.mean(0), out=b.grad)
        torch.sub(mu_neg.mean(0), mu_pos.mean(0), out=c.grad)


def _autograd_gradient(rbm: RBM, v_pos: Tensor, v_neg: Tensor) -> None:
    """∇θ [mean F(v⁺) − mean F(v⁻)] by autograd (the free-energy form of the CD gradient)."""
    params = list(rbm.parameters())
    with torch.enable_grad():
        loss = rbm.free_energy(v_pos).mean() - rbm.free_energy(v_neg.detach()).mean()
        grads = torch.autograd.grad(loss, params, allow_unused=True)
    for p, g in zip(params, grads):
        p.grad = torch.zeros_like(p) if g is None else g


def free_energy_gap(rbm: RBM, v_pos: Tensor, v_neg: Tensor) -> Tensor:
    """mean F(v⁺) − mean F(v⁻): the surrogate whose gradient every estimator writes."""
    return rbm.free_energy(v_pos).mean() - rbm.free_energy(v_neg).mean()


class Estimator:
    """Base class: subclasses supply :meth:`negative_phase`; :meth:`step` writes ``.grad``."""

    name = "base"

    def negative_phase(self, rbm: RBM, v_data: Tensor, hidden_field: Tensor,
                       generator: torch.Generator | None, mask: Tensor | None) -> Tensor:
        """Samples v⁻ that stand in for the model distribution."""
        raise NotImplementedError

    def step(self, rbm: RBM, v_data: Tensor, generator: torch.Generator | None = None,
             mask: Tensor | None = None) -> Tensor:
        """Fill ``.grad`` of ``rbm``'s parameters for one batch; returns the negative samples.

        ``mask`` (same shape as ``v_data``) marks visible entries that take part; the
        others stay 0 in every sample (missing ratings in the collaborative-filtering RBM).
        """
        with torch.no_grad():
            field = rbm.hidden_field(v_data)
            v_neg = self.negative_phase(rbm, v_data, field, generator, mask)
        write_gradient(rbm, v_data, v_neg, field)
        return v_neg

    def state_dict(self) -> dict[str, Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        pass


class ContrastiveDivergence(Estimator):
    """CD-k (Hinton 2002): chains start at the data and run k Gibbs sweeps."""

    name = "cd"

    def __init__(self, k: int = 1) -> None:
        if k < 1:
            raise ConfigurationError(f"k must be at least 1, got {k}")
        self.k = k

    def negative_phase(self, rbm, v_data, hidden_field, generator, mask):
        h = rbm.hidden.sample(hidden_field, generator)  # reuse the data-side field
        v = rbm.sample_visible(h, generator, mask=mask)
        for _ in range(self.k - 1):
            v = rbm.gibbs_step(v, generator, mask=mask)
        return v


class PersistentContrastiveDivergence(Estimator):
    """PCD-k (Tieleman 2008): chains persist across updates and move k sweeps per update."""

    name = "pcd"

    def __init__(self, k: int = 1, n_chains: int | None = None) -> None:
        if k < 1:
            raise ConfigurationError(f"k must be at least 1, got {k}")
        self.k = k
        self.chains = PersistentChains(n_chains)

    def negative_phase(self, rbm, v_data, hidden_field, generator, mask):
        if mask is not None:
            raise ConfigurationError("persistent chains cannot follow per-example masks; use CD")
        return self.chains.advance(rbm, v_data, self.k, generator)

    def state_dict(self) -> dict[str, Tensor]:
        return self.chains.state_dict()

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.chains.load_state_dict(state)


ESTIMATORS: dict[str, type[Estimator]] = {"cd": ContrastiveDivergence,
                                          "pcd": PersistentContrastiveDivergence}


def make_estimator(method: str, k: int = 1, n_chains: int | None = None, **options) -> Estimator:
    """Build an estimator by name (``cd``, ``pcd``, and any registered in :data:`ESTIMATORS`)."""
    if method not in ESTIMATORS:
        raise ConfigurationError(f"unknown method {method!r}; choose from {', '.join(ESTIMATORS)}")
    cls = ESTIMATORS[method]
    if cls is ContrastiveDivergence:
        return cls(k=k, **options)
    return cls(k=k, n_chains=n_chains, **options)
