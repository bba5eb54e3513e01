"""Gradient estimators: a negative phase (model samples) and the one function writing ``.grad``.

The log-likelihood gradient of an RBM is

    ∂ ln p(v)/∂θ = −E_{p(h|v)}[∂E/∂θ] + E_{p(v,h)}[∂E/∂θ] = −∂F(v)/∂θ + E_{p(v)}[∂F/∂θ].

Every estimator replaces the model expectation by an average over samples ``v⁻`` and fills
``.grad`` with the gradient of the *loss* ``mean F(v⁺) − mean F(v⁻)`` (the negative
log-likelihood gradient estimate), so any ``torch.optim`` optimizer can step it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .errors import ConfigurationError
from .rbm import RBM
from .samplers import ParallelTempering, PersistentChains, tempering_betas


def write_gradient(rbm: RBM, v_pos: Tensor, v_neg: Tensor, pos_field: Tensor | None = None,
                   offsets: tuple[Tensor, Tensor] | None = None) -> None:
    """Set ``p.grad = ∇θ [mean F(v⁺) − mean F(v⁻)]`` for every parameter, samples held fixed.

    For layers with E_self(x) = −biasᵀx and φ(x) = x (``Units.linear``) the closed form is
    used (μ = E[h|v], B± the batch sizes)::

        ∇W = −v⁺ᵀμ⁺/B⁺ + v⁻ᵀμ⁻/B⁻,   ∇b = −mean v⁺ + mean v⁻,   ∇c = −mean μ⁺ + mean μ⁻

    (two matrix products, written in place).  Other unit types take the autograd gradient
    of the same expression; a test checks that both agree to rounding.

    ``offsets = (μ_v, μ_h)`` writes the *centered* gradient instead (linear units only; see
    :class:`Centering`): the gradient in the parameters of the energy
    −(v−μ_v)ᵀb' − (h−μ_h)ᵀc' − (v−μ_v)ᵀW(h−μ_h), mapped back to the ordinary W, b, c::

        ∇W' = ∇W − μ_v ∇cᵀ − ∇b μ_hᵀ        (= −⟨(v−μ_v)(μ−μ_h)ᵀ⟩_+ + ⟨…⟩_−)
        ∇b' = ∇b − ∇W' μ_h,   ∇c' = ∇c − ∇W'ᵀ μ_v

    i.e. J Jᵀ ∇θ with J the Jacobian of (W', b', c') ↦ (W', b' − W'μ_h, c' − W'ᵀμ_v), a
    positive semi-definite rescaling of the ordinary gradient.  Zero offsets give the
    ordinary gradient exactly.
    """
    if not (rbm.visible.linear and rbm.hidden.linear):
        if offsets is not None:
            raise ConfigurationError(
                f"centering needs linear units (bernoulli, softmax); this model has "
                f"{rbm.visible.kind} visible and {rbm.hidden.kind} hidden units")
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
        if offsets is not None:
            _center_gradient(weight.grad, b.grad, c.grad, *offsets)


def _center_gradient(g_w: Tensor, g_b: Tensor, g_c: Tensor, mu_v: Tensor, mu_h: Tensor) -> None:
    """Map the ordinary gradient (in place) to the centered one, see :func:`write_gradient`."""
    g_w.sub_(torch.outer(mu_v, g_c)).sub_(torch.outer(g_b, mu_h))
    g_b.sub_(g_w @ mu_h)
    g_c.sub_(g_w.t() @ mu_v)


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
    #: offsets of the centered gradient, or None for the ordinary gradient (see :meth:`center`)
    centering: "Centering | None" = None
    #: sparsity penalty added to the gradient, or None (see :meth:`sparsify`)
    sparsity: "SparsityPenalty | None" = None

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
            offsets = self.centering.update(rbm, v_data, field) if self.centering else None
            v_neg = self.negative_phase(rbm, v_data, field, generator, mask)
        write_gradient(rbm, v_data, v_neg, field, offsets)
        if self.sparsity is not None:
            self.sparsity.add_gradient(rbm, v_data, field)
        return v_neg

    def center(self, rate: float = 0.01) -> "Estimator":
        """Write centered gradients from now on (see :class:`Centering`); returns ``self``."""
        self.centering = Centering(rate)
        return self

    def metrics(self) -> dict[str, float]:
        """Diagnostics of the negative phase for the training log (none by default)."""
        return {}

    def sparsify(self, target: float, cost: float = 0.1, decay: float = 0.95) -> "Estimator":
        """Add the sparsity penalty of :class:`SparsityPenalty` to every gradient; returns ``self``."""
        self.sparsity = SparsityPenalty(target, cost, decay)
        return self

    def state_dict(self) -> dict[str, Tensor]:
        """What a bit-for-bit resume needs: centering offsets and sparsity estimate (if used),
        plus the subclass's chains."""
        state: dict[str, Tensor] = {}
        if self.centering is not None and self.centering.visible_offset is not None:
            state["centering_visible"] = self.centering.visible_offset
            state["centering_hidden"] = self.centering.hidden_offset
        if self.sparsity is not None and self.sparsity.estimate is not None:
            state["sparsity_estimate"] = self.sparsity.estimate
        return state

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if self.centering is not None:
            self.centering.visible_offset = _cloned(state.get("centering_visible"))
            self.centering.hidden_offset = _cloned(state.get("centering_hidden"))
        if self.sparsity is not None:
            self.sparsity.estimate = _cloned(state.get("sparsity_estimate"))


def _cloned(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.clone()


class ContrastiveDivergence(Estimator):
    """CD-k (Hinton 2002): chains start at the data and run k Gibbs sweeps.

    ``visible="mean"`` ends the chain on the probabilities E[v | h_k] instead of a sample of
    v (the reconstruction of Hinton's practical guide, §3): the same expected statistics
    with less variance.
    """

    name = "cd"

    def __init__(self, k: int = 1, visible: str = "sample") -> None:
        if k < 1:
            raise ConfigurationError(f"k must be at least 1, got {k}")
        if visible not in ("sample", "mean"):
            raise ConfigurationError(f"visible must be 'sample' or 'mean', got {visible!r}")
        self.k, self.visible = k, visible

    def negative_phase(self, rbm, v_data, hidden_field, generator, mask):
        h = rbm.hidden.sample(hidden_field, generator)  # reuse the data-side field
        for _ in range(self.k - 1):
            h = rbm.sample_hidden(rbm.sample_visible(h, generator, mask=mask), generator)
        if self.visible == "sample":
            return rbm.sample_visible(h, generator, mask=mask)
        v = rbm.visible_mean(h)
        return v.mul_(mask) if mask is not None else v


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
        return {**super().state_dict(), **self.chains.state_dict()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        super().load_state_dict(state)
        self.chains.load_state_dict(state)


ESTIMATORS: dict[str, type[Estimator]] = {"cd": ContrastiveDivergence,
                                          "pcd": PersistentContrastiveDivergence}


def make_estimator(method: str, k: int = 1, n_chains: int | None = None, *,
                   centered: bool = False, centering_rate: float = 0.01,
                   sparsity_target: float | None = None, sparsity_cost: float = 0.1,
                   sparsity_decay: float = 0.95, **options) -> Estimator:
    """Build an estimator by name (``cd``, ``pcd``, ``pt``, ``fpcd`` and any registered in
    :data:`ESTIMATORS`); ``options`` go to its constructor (``pt``: ``replicas``, ``betas``,
    ``spacing``, ``beta_min``; ``fpcd``: ``fast_lr``, ``fast_decay``).  ``centered=True``
    makes any of them write the centered gradient (:class:`Centering`, sliding factor
    ``centering_rate``); a ``sparsity_target`` adds :class:`SparsityPenalty`."""
    if method not in ESTIMATORS:
        raise ConfigurationError(f"unknown method {method!r}; choose from {', '.join(ESTIMATORS)}")
    cls = ESTIMATORS[method]
    if cls is ContrastiveDivergence:
        estimator = cls(k=k, **options)
    else:
        estimator = cls(k=k, n_chains=n_chains, **options)
    if sparsity_target is not None:
        estimator.sparsify(sparsity_target, sparsity_cost, sparsity_decay)
    return estimator.center(centering_rate) if centered else estimator


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
        if not 0.0 < rate <= 1.0:
            raise ConfigurationError(f"centering rate must be in (0, 1], got {rate}")
        self.rate = rate
        self.visible_offset: Tensor | None = None
        self.hidden_offset: Tensor | None = None

    def update(self, rbm: RBM, v_data: Tensor, hidden_field: Tensor) -> tuple[Tensor, Tensor]:
        """Slide the offsets towards this batch's means and return (μ_v, μ_h)."""
        mean_v, mean_h = v_data.mean(0), rbm.hidden.mean(hidden_field).mean(0)
        if self.visible_offset is None or self.visible_offset.shape != mean_v.shape:
            self.visible_offset, self.hidden_offset = mean_v.clone(), mean_h.clone()
        else:
            self.visible_offset.lerp_(mean_v, self.rate)
            self.hidden_offset.lerp_(mean_h, self.rate)
        return self.visible_offset, self.hidden_offset


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
        if not (target > 0 and math.isfinite(target)):
            raise ConfigurationError(f"sparsity target must be a positive number, got {target}")
        if not (cost >= 0 and math.isfinite(cost)):
            raise ConfigurationError(f"sparsity cost must be ≥ 0, got {cost}")
        if not 0.0 <= decay < 1.0:
            raise ConfigurationError(f"sparsity decay must be in [0, 1), got {decay}")
        self.target, self.cost, self.decay = float(target), float(cost), float(decay)
        self.estimate: Tensor | None = None

    def update(self, rbm: RBM, v_data: Tensor, hidden_field: Tensor) -> Tensor:
        """Slide q towards this batch's mean hidden activity and return it."""
        mean_h = rbm.hidden.mean(hidden_field).mean(0)
        if self.estimate is None or self.estimate.shape != mean_h.shape:
            self.estimate = mean_h.clone()
        else:
            self.estimate.lerp_(mean_h, 1.0 - self.decay)
        return self.estimate

    def add_gradient(self, rbm: RBM, v_data: Tensor, hidden_field: Tensor) -> None:
        """Update q, then add cost·(q − p) to ∇c and cost·φ̄(v)(q − p)ᵀ to ∇W in place."""
        with torch.no_grad():
            excess = (self.update(rbm, v_data, hidden_field) - self.target) * self.cost
            rbm.hidden.bias.grad.add_(excess)
            rbm.weight.grad.add_(torch.outer(rbm.visible.statistic(v_data).mean(0), excess))


class ParallelTemperingEstimator(PersistentContrastiveDivergence):
    """PT (Desjardins et al. 2010): persistent chains with tempered replicas that swap.

    Each update moves every replica ``k`` Gibbs sweeps (each followed by a round of swaps,
    see :class:`~boltzkit.samplers.ParallelTempering`) and uses the β = 1 replicas as v⁻.
    Inverse temperatures: ``betas`` if given, else ``replicas`` values spaced ``spacing``
    (``"linear"`` or ``"geometric"``) from 1 down to ``beta_min``.
    """

    name = "pt"

    def __init__(self, k: int = 1, n_chains: int | None = None, replicas: int = 10,
                 betas: list[float] | None = None, spacing: str = "linear",
                 beta_min: float | None = None) -> None:
        super().__init__(k, n_chains)
        if betas is None:
            betas = tempering_betas(replicas, spacing, beta_min)
        self.chains = ParallelTempering(betas, n_chains)

    @property
    def swap_rates(self) -> Tensor:
        return self.chains.swap_rates

    def metrics(self) -> dict[str, float]:
        """Swap acceptance since the chains started: mean and lowest over neighbouring pairs
        (a pair near 0 cuts the temperature ladder in two: add replicas there)."""
        rates = self.swap_rates
        rates = rates[~rates.isnan()]
        if rates.numel() == 0:
            return {}
        return {"swap_rate_mean": float(rates.mean()), "swap_rate_min": float(rates.min())}


PT = ParallelTemperingEstimator


class FastPersistentContrastiveDivergence(PersistentContrastiveDivergence):
    """FPCD (Tieleman & Hinton 2009): persistent chains driven by weights θ + θ_fast.

    The chains move under the model with every parameter θ replaced by θ + θ_fast; the
    gradient written to ``.grad`` is the ordinary PCD one (for θ).  After each update the
    fast parameters follow the same gradient g with their own rate and a strong decay::

        θ_fast ← fast_decay · θ_fast − fast_lr · g

    Defaults as in the paper: ``fast_decay`` = 19/20 and ``fast_lr`` equal to the regular
    learning rate (0.05, the :class:`~boltzkit.train.TrainingConfig` default; set it when you
    change ``lr``).  With ``fast_lr = 0`` it is PCD exactly.  The chains reuse the model's
    own Gibbs code: θ_fast is added to the parameters in place around the chain advance and
    the saved parameters are copied back afterwards (bit-exact).
    """

    name = "fpcd"

    def __init__(self, k: int = 1, n_chains: int | None = None, fast_lr: float = 0.05,
                 fast_decay: float = 19 / 20) -> None:
        super().__init__(k, n_chains)
        if fast_lr < 0:
            raise ConfigurationError(f"fast_lr must be non-negative, got {fast_lr}")
        if not 0.0 <= fast_decay <= 1.0:
            raise ConfigurationError(f"fast_decay must be in [0, 1], got {fast_decay}")
        self.fast_lr, self.fast_decay = fast_lr, fast_decay
        self.fast: dict[str, Tensor] = {}
        self._loaded: dict[str, Tensor] = {}

    def _fast(self, rbm: RBM) -> dict[str, Tensor]:
        """θ_fast under the parameter names of ``rbm`` (zeros, or what was loaded)."""
        named = dict(rbm.named_parameters())
        if self.fast.keys() != named.keys() or any(
                self.fast[n].shape != p.shape for n, p in named.items()):
            fast = {}
            for n, p in named.items():
                loaded = self._loaded.get(f"fast_{n.replace('.', '_')}")
                fast[n] = (loaded.to(p.device, p.dtype).clone() if loaded is not None
                           and loaded.shape == p.shape else torch.zeros_like(p).detach())
            self.fast, self._loaded = fast, {}
        return self.fast

    def negative_phase(self, rbm, v_data, hidden_field, generator, mask):
        fast = self._fast(rbm)
        params = dict(rbm.named_parameters())
        with torch.no_grad():
            saved = {n: p.detach().clone() for n, p in params.items()}
            try:
                for n, p in params.items():
                    p.add_(fast[n])
                return super().negative_phase(rbm, v_data, hidden_field, generator, mask)
            finally:
                for n, p in params.items():
                    p.copy_(saved[n])

    def step(self, rbm: RBM, v_data: Tensor, generator: torch.Generator | None = None,
             mask: Tensor | None = None) -> Tensor:
        v_neg = super().step(rbm, v_data, generator, mask)
        with torch.no_grad():
            for n, p in rbm.named_parameters():
                self.fast[n].mul_(self.fast_decay)
                if p.grad is not None:
                    self.fast[n].sub_(p.grad, alpha=self.fast_lr)
        return v_neg

    def state_dict(self) -> dict[str, Tensor]:
        state = super().state_dict()
        state.update(self._loaded)  # loaded and not yet matched to a model: still the state
        state.update({f"fast_{n.replace('.', '_')}": t for n, t in self.fast.items()})
        return state

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        super().load_state_dict(state)
        # matched to the model's parameters by name on the next update
        self.fast, self._loaded = {}, {k: v for k, v in state.items() if k.startswith("fast_")}


ESTIMATORS["pt"] = ParallelTemperingEstimator
ESTIMATORS["fpcd"] = FastPersistentContrastiveDivergence
