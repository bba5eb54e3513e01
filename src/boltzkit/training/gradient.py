"""Gradient estimators: a negative phase (model samples) and the model's gradient writer.

The log-likelihood gradient of an energy model with free energy F is

    ∂ ln p(v)/∂θ = −∂F(v)/∂θ + E_{p(v)}[∂F/∂θ]

(for an RBM: −E_{p(h|v)}[∂E/∂θ] + E_{p(v,h)}[∂E/∂θ]).  Every estimator replaces the model
expectation by an average over samples ``v⁻`` from the model's Markov chain and has the model
fill ``.grad`` with the gradient of the *loss* ``mean F(v⁺) − mean F(v⁻)`` (the negative
log-likelihood gradient estimate; :meth:`~boltzkit.models.base.EnergyModel.write_gradient`),
so any ``torch.optim`` optimizer can step it.  Estimators know nothing of RBM internals: the
model starts and advances its own chains (:class:`~boltzkit.sampling.ChainState`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..errors import ConfigurationError
from ..sampling import ChainState, ParallelTempering, PersistentChains, tempering_betas
from ..validation import check_choice, check_float, check_int
from .regularisers import Centering, SparsityPenalty

if TYPE_CHECKING:
    from ..models.base import EnergyModel


def write_gradient(model: EnergyModel, v_pos: Tensor, v_neg: Tensor, pos_field: Tensor | None = None,
                   offsets: tuple[Tensor, Tensor] | None = None) -> None:
    """Set ``p.grad = ∇θ [mean F(v⁺) − mean F(v⁻)]`` (see the model's ``write_gradient``)."""
    model.write_gradient(v_pos, ChainState(v_neg), pos_field, offsets)


class Estimator:
    """Base class: subclasses supply :meth:`negative_phase`; :meth:`step` writes ``.grad``."""

    name = "base"
    #: offsets of the centered gradient, or None for the ordinary gradient (see :meth:`center`)
    centering: Centering | None = None
    #: sparsity penalty added to the gradient, or None (see :meth:`sparsify`)
    sparsity: SparsityPenalty | None = None

    def negative_phase(self, model: EnergyModel, v_data: Tensor, positive: Any,
                       generator: torch.Generator | None, mask: Tensor | None) -> ChainState:
        """Chain state whose visible rows v⁻ stand in for the model distribution."""
        raise NotImplementedError

    def rows(self, batch_size: int) -> int:
        """Rows one update pushes through the model (for the thread rule)."""
        return batch_size

    def step(self, model: EnergyModel, v_data: Tensor, generator: torch.Generator | None = None,
             mask: Tensor | None = None, context: Tensor | None = None) -> Tensor:
        """Fill ``.grad`` of ``model``'s parameters for one batch; returns the negative samples.

        ``mask`` (same shape as ``v_data``) marks visible entries that take part; the
        others stay 0 in every sample (missing ratings in the collaborative-filtering RBM).
        ``context`` conditions the model for this batch (the conditional RBM's r).
        """
        with model.conditioned(context):
            with torch.no_grad():
                positive = model.positive_phase(v_data)
                offsets = self.centering.update(model, v_data, positive) if self.centering else None
                negative = self.negative_phase(model, v_data, positive, generator, mask)
                if isinstance(negative, Tensor):  # an estimator that returns visible rows only
                    negative = ChainState(negative)
            model.write_gradient(v_data, negative, positive, offsets)
            if self.sparsity is not None:
                self.sparsity.add_gradient(model, v_data, positive)
        return negative.visible

    def center(self, rate: float = 0.01) -> Estimator:
        """Write centered gradients from now on (see :class:`Centering`); returns ``self``."""
        self.centering = Centering(rate)
        return self

    def metrics(self) -> dict[str, float]:
        """Diagnostics of the negative phase for the training log (none by default)."""
        return {}

    def sparsify(self, target: float, cost: float = 0.1, decay: float = 0.95) -> Estimator:
        """Add the sparsity penalty of :class:`SparsityPenalty` to every gradient; returns ``self``."""
        self.sparsity = SparsityPenalty(target, cost, decay)
        return self

    def state_dict(self) -> dict[str, Tensor]:
        """What a bit-for-bit resume needs: centering offsets and sparsity estimate (if used),
        plus the subclass's chains."""
        state: dict[str, Tensor] = {}
        if self.centering is not None and self.centering.visible_offset is not None \
                and self.centering.hidden_offset is not None:
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
        self.k = check_int("k", k, least=1)
        self.visible = check_choice("visible", visible, ("sample", "mean"))

    def negative_phase(self, model: EnergyModel, v_data: Tensor, positive: Any,
                       generator: torch.Generator | None, mask: Tensor | None) -> ChainState:
        start = model.chain_start(v_data, positive, generator)  # RBM: h from the data-side field
        return model.advance(start, self.k, generator, mask=mask, final_mean=self.visible == "mean")


class PersistentContrastiveDivergence(Estimator):
    """PCD-k (Tieleman 2008): chains persist across updates and move k sweeps per update."""

    name = "pcd"

    def __init__(self, k: int = 1, n_chains: int | None = None) -> None:
        self.k = check_int("k", k, least=1)
        check_int("n_chains", n_chains, least=1, optional=True)
        self.chains = PersistentChains(n_chains)

    def rows(self, batch_size: int) -> int:
        return max(batch_size, self.chains.n_chains or 0)

    def negative_phase(self, model: EnergyModel, v_data: Tensor, positive: Any,
                       generator: torch.Generator | None, mask: Tensor | None) -> ChainState:
        if mask is not None:
            raise ConfigurationError("persistent chains cannot follow per-example masks; use CD")
        return self.chains.advance(model, v_data, self.k, generator)

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
                   sparsity_decay: float = 0.95, **options: Any) -> Estimator:
    """Build an estimator by name (``cd``, ``pcd``, ``pt``, ``fpcd`` and any registered in
    :data:`ESTIMATORS`); ``options`` go to its constructor (``pt``: ``replicas``, ``betas``,
    ``spacing``, ``beta_min``; ``fpcd``: ``fast_lr``, ``fast_decay``).  ``centered=True``
    makes any of them write the centered gradient (:class:`Centering`, sliding factor
    ``centering_rate``); a ``sparsity_target`` adds :class:`SparsityPenalty`."""
    if method not in ESTIMATORS:
        raise ConfigurationError(f"unknown method {method!r}; choose from {', '.join(ESTIMATORS)}")
    cls: Any = ESTIMATORS[method]  # constructors differ: CD takes no n_chains
    estimator: Estimator
    if cls is ContrastiveDivergence:
        estimator = cls(k=k, **options)
    else:
        estimator = cls(k=k, n_chains=n_chains, **options)
    if sparsity_target is not None:
        estimator.sparsify(sparsity_target, sparsity_cost, sparsity_decay)
    return estimator.center(centering_rate) if centered else estimator


class ParallelTemperingEstimator(PersistentContrastiveDivergence):
    """PT (Desjardins et al. 2010): persistent chains with tempered replicas that swap.

    Each update moves every replica ``k`` Gibbs sweeps (each followed by a round of swaps,
    see :class:`~boltzkit.sampling.ParallelTempering`) and uses the β = 1 replicas as v⁻.
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
        self.chains: ParallelTempering = ParallelTempering(betas, n_chains)

    @property
    def swap_rates(self) -> Tensor:
        return self.chains.swap_rates

    def rows(self, batch_size: int) -> int:
        return super().rows(batch_size) * self.chains.replicas

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
    learning rate (0.05, the :class:`~boltzkit.training.TrainingConfig` default; set it when you
    change ``lr``).  With ``fast_lr = 0`` it is PCD exactly.  The chains reuse the model's
    own Gibbs code: θ_fast is added to the parameters in place around the chain advance and
    the saved parameters are copied back afterwards (bit-exact).
    """

    name = "fpcd"

    def __init__(self, k: int = 1, n_chains: int | None = None, fast_lr: float = 0.05,
                 fast_decay: float = 19 / 20) -> None:
        super().__init__(k, n_chains)
        check_float("fast_lr", fast_lr, 0.0)
        check_float("fast_decay", fast_decay, 0.0, 1.0)
        self.fast_lr, self.fast_decay = fast_lr, fast_decay
        self.fast: dict[str, Tensor] = {}
        self._loaded: dict[str, Tensor] = {}

    def _fast(self, model: EnergyModel) -> dict[str, Tensor]:
        """θ_fast under the parameter names of ``model`` (zeros, or what was loaded)."""
        named = dict(model.named_parameters())
        if self.fast.keys() != named.keys() or any(
                self.fast[n].shape != p.shape for n, p in named.items()):
            fast = {}
            for n, p in named.items():
                loaded = self._loaded.get(f"fast_{n.replace('.', '_')}")
                fast[n] = (loaded.to(p.device, p.dtype).clone() if loaded is not None
                           and loaded.shape == p.shape else torch.zeros_like(p).detach())
            self.fast, self._loaded = fast, {}
        return self.fast

    def negative_phase(self, model: EnergyModel, v_data: Tensor, positive: Any,
                       generator: torch.Generator | None, mask: Tensor | None) -> ChainState:
        fast = self._fast(model)
        params = dict(model.named_parameters())
        with torch.no_grad():
            saved = {n: p.detach().clone() for n, p in params.items()}
            try:
                for n, p in params.items():
                    p.add_(fast[n])
                return super().negative_phase(model, v_data, positive, generator, mask)
            finally:
                for n, p in params.items():
                    p.copy_(saved[n])

    def step(self, model: EnergyModel, v_data: Tensor, generator: torch.Generator | None = None,
             mask: Tensor | None = None, context: Tensor | None = None) -> Tensor:
        v_neg = super().step(model, v_data, generator, mask, context)
        with torch.no_grad():
            for n, p in model.named_parameters():
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


def build_estimator(config: Any) -> Estimator:
    """The estimator a :class:`~boltzkit.training.TrainingConfig` describes (method, k, chains,
    replicas, fast learning rate, centering, sparsity)."""
    options: dict[str, Any] = {}
    if config.method == "pt":
        options["replicas"] = config.replicas
    if config.method == "fpcd":
        options["fast_lr"] = config.lr if config.fast_lr is None else config.fast_lr
    return make_estimator(config.method, config.k, config.n_chains or config.batch_size,
                          centered=config.centered, sparsity_target=config.sparsity_target,
                          sparsity_cost=config.sparsity_cost, sparsity_decay=config.sparsity_decay,
                          **options)
