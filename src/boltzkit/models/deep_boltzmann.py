"""The deep Boltzmann machine (Salakhutdinov & Hinton, AISTATS 2009), binary units.

Layers x_0 = v, x_1 = h¹, …, x_L = h^L (L ≥ 2), each connected only to its neighbours::

    E(v, h) = −Σ_l b_lᵀ x_l − Σ_{l=1..L} x_{l−1}ᵀ W_l x_l

The graph is bipartite between the *even* layers (v, h², h⁴, …) and the *odd* ones
(h¹, h³, …): given the even layers the odd units are independent, and vice versa.  So a DBM
is an RBM whose "visible" side is the even layers and whose "hidden" side is the odd layers,
with a block-structured weight matrix (:meth:`DBM.as_rbm`).  Summing the odd layers out
analytically gives the free energy of an even state::

    F_β(v, h², …) = −β Σ_{l even} b_lᵀ x_l − Σ_{l odd} Σ_j softplus(β (b_l + x_{l−1} W_l + x_{l+1} W_{l+1}ᵀ)_j)

which is what AIS anneals (:mod:`boltzkit.evaluation.deep`).  Training (Salakhutdinov &
Hinton 2009, §3):

- **positive phase** — mean field: q(h) = Π_l Π_j μ_lj^{h}(1−μ_lj)^{1−h} at the fixed point
  μ_l = σ(b_l + μ_{l−1} W_l + μ_{l+1} W_{l+1}ᵀ) (μ_0 = v), started from a bottom-up pass
  with doubled weights below the top layer; it maximises the bound
  log p(v) ≥ −F_MF(v) − log Z with F_MF(v) = E_q[E(v, h)] − H(q) (:meth:`variational_free_energy`);
- **negative phase** — persistent chains over every layer, alternating the odd and the even
  layers (:meth:`advance`); the unchanged :class:`~boltzkit.training.PersistentContrastiveDivergence`
  drives them through :meth:`init_chains` / :meth:`advance`;
- **gradient** — :meth:`write_gradient`: mean-field data statistics minus chain statistics,
  optionally centered (Montavon & Müller 2012) with offsets from the trainer's centering;
- **pre-training** — :meth:`DBM.pretrain`: a stack of RBMs trained greedily, the first with
  doubled visible input and the last with doubled hidden input (binomial units with two
  trials stand for the two tied copies), middle ones halved when composed.

The chain state is a :class:`~boltzkit.sampling.ChainState` with ``visible`` and layers
``hidden_1`` … ``hidden_L``; the trainer checkpoints it (``chains``, ``chains.hidden_1``, …)
and a resumed run is bit-identical.  The mean-field state needs no storage: it is a
deterministic function of the batch and the parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..checkpoint import register
from ..errors import CheckpointError, ConfigurationError, DataError
from ..sampling.bits import bernoulli
from ..sampling.state import ChainState
from ..validation import check_float, check_int, is_integer, parse_dtype
from .base import EnergyModel, check_rows, check_training_data
from .rbm import RBM
from .units import Bernoulli, Beta, Units, _bits, _is_scaled, unit_count
from .units import register as register_units

#: enumerate the even hidden layers in :meth:`DBM.free_energy` only up to this many units
MAX_FREE_ENERGY_BITS = 20
#: rows × states × width per chunk of the exact free energy
_CHUNK = 2 ** 22


@register_units
class Binomial(Units):
    """Binomial units: ``n`` variables, each the sum s ∈ {0, …, N} of N tied binary copies.

    E_self(s) = −bᵀs − Σ_i log C(N, s_i) (the multiplicity of the copies), φ(s) = s, so with
    a = b + input::

        p_β(s_i | a) ∝ C(N, s_i)^β exp(β a_i s_i)      (β = 1: Binomial(N, σ(a_i)))
        log-partition = Σ_i log Σ_s C(N, s)^β e^{β a_i s}   (β = 1: N · softplus(a_i))

    An RBM with ``binomial:2`` visible units is the RBM with two tied copies of its visible
    layer that pre-trains the first layer of a DBM (data 2·v); ``binomial:2`` hidden units
    give the top layer's two copies.  The base measure C(N, s) does not depend on the
    parameters, so the RBM's closed-form gradient applies (``linear``).
    """

    kind = "binomial"
    discrete = True
    linear = True

    def __init__(self, n: int, trials: int | str = 2) -> None:
        self.trials = k = unit_count("binomial", trials, "trials", least=1)
        super().__init__(n)
        self.data_scale = float(k)  # N tied copies of one binary draw: N · Bernoulli(x / N)
        log_choose = [math.lgamma(k + 1) - math.lgamma(s + 1) - math.lgamma(k - s + 1) for s in range(k + 1)]
        self.register_buffer("log_choose", torch.tensor(log_choose), persistent=False)

    def spec(self) -> str:
        return f"{self.kind}:{self.trials}"

    def _levels(self, field: Tensor) -> Tensor:
        return torch.arange(self.trials + 1, dtype=field.dtype, device=field.device)

    def _logits(self, field: Tensor, beta: Beta) -> Tensor:
        """β (log C(N, s) + a s) for every level s, shape ``(..., n, N+1)``."""
        logits = self.log_choose.to(field.dtype) + field.unsqueeze(-1) * self._levels(field)
        return logits * (beta.unsqueeze(-1) if isinstance(beta, Tensor) else beta) if _is_scaled(beta) else logits

    def self_energy(self, x: Tensor) -> Tensor:
        log_choose = torch.lgamma(torch.full_like(x, self.trials + 1.0)) - torch.lgamma(x + 1) - torch.lgamma(
            self.trials - x + 1)
        return -(x @ self.bias) - log_choose.sum(-1)

    def log_partition(self, field: Tensor, beta: Beta = 1.0) -> Tensor:
        if not _is_scaled(beta):
            return F.softplus(field).sum(-1) * self.trials
        return torch.logsumexp(self._logits(field, beta), -1).sum(-1)

    def mean(self, field: Tensor, beta: Beta = 1.0) -> Tensor:
        if not _is_scaled(beta):
            return torch.sigmoid(field) * self.trials
        return (torch.softmax(self._logits(field, beta), -1) * self._levels(field)).sum(-1)

    def sample(self, field: Tensor, generator: torch.Generator | None = None, beta: Beta = 1.0) -> Tensor:
        if not _is_scaled(beta):
            p = torch.sigmoid(field)
            total = bernoulli(p, generator)
            for _ in range(self.trials - 1):
                total.add_(bernoulli(p, generator))
            return total
        cdf = torch.softmax(self._logits(field, beta), -1).cumsum(-1)
        u = torch.rand(cdf.shape[:-1] + (1,), generator=generator, dtype=cdf.dtype, device=cdf.device)
        return (cdf < u).sum(-1).clamp_(max=self.trials).to(field.dtype)

    @property
    def n_states(self) -> int:
        return (self.trials + 1) ** self.n

    def states(self, start: int, stop: int, dtype: torch.dtype, device: torch.device | None = None) -> Tensor:
        """State number s has level ``(s // (N+1)**i) % (N+1)`` for variable i."""
        index = torch.arange(start, stop, device=device, dtype=torch.int64)
        powers = (self.trials + 1) ** torch.arange(self.n, device=device, dtype=torch.int64)
        return ((index.unsqueeze(1) // powers) % (self.trials + 1)).to(dtype)

    def validate(self, x: Tensor, name: str = "data") -> None:
        bad = (x != torch.round(x)) | (x < 0) | (x > self.trials)
        if bool(bad.any()):
            raise DataError(f"{name} has values outside the integers 0..{self.trials} (first in row "
                            f"{int(bad.any(1).nonzero()[0, 0])}) but the units are binomial:{self.trials}")

    def init_from_data(self, mean: Tensor) -> None:
        """b = logit(m / N): the bias whose units, without weights, have the data mean m."""
        p = (mean.to(self.bias.dtype) / self.trials).clamp(1e-3, 1 - 1e-3)
        with torch.no_grad():
            self.bias.copy_(torch.log(p) - torch.log1p(-p))


def _entropy(mu: Tensor) -> Tensor:
    """H of independent Bernoulli(μ) units, summed per row: −Σ μ log μ + (1−μ) log(1−μ)."""
    return -(torch.special.xlogy(mu, mu) + torch.special.xlogy(1 - mu, 1 - mu)).sum(-1)


@register
class DBM(EnergyModel):
    """Deep Boltzmann machine with Bernoulli units on every layer; see the module docstring.

    Parameters
    ----------
    n_visible:
        Visible units.
    hidden:
        Units per hidden layer, bottom first (at least two layers; one layer is an RBM).
    mean_field_steps:
        Fixed-point sweeps of the positive phase (each updates the odd, then the even layers).
    weight_scale, seed, dtype, device:
        N(0, σ²) initial weights from a seeded generator, as for :class:`~boltzkit.models.RBM`.

    Example
    -------
    >>> dbm = DBM(784, [500, 1000], seed=0)
    >>> dbm.mean_field(torch.zeros(2, 784))[1].shape
    torch.Size([2, 1000])
    """

    checkpoint_kind = "DBM"
    checkpoint_description = "deep Boltzmann machine"

    def __init__(self, n_visible: int, hidden: Sequence[int], *, mean_field_steps: int = 10,
                 weight_scale: float = 0.01, seed: int | None = 0, dtype: torch.dtype = torch.float32,
                 device: str | torch.device | None = None) -> None:
        super().__init__()
        check_int("n_visible", n_visible, least=1)
        hidden = list(hidden)
        if len(hidden) < 2:
            raise ConfigurationError(f"a DBM needs at least 2 hidden layers, got {len(hidden)} "
                                     "(a single hidden layer is an RBM: boltzkit.models.RBM)")
        for i, n in enumerate(hidden):
            check_int(f"hidden layer {i + 1} size", n, least=1)
        self.mean_field_steps = check_int("mean_field_steps", mean_field_steps, least=1)
        check_float("weight_scale", weight_scale, 0.0)
        sizes = [n_visible, *hidden]
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        # the weights first: parameters() then lists them in the optimizer's order (decayed group first)
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn(sizes[i], sizes[i + 1], generator=generator, dtype=torch.float64) * weight_scale)
            for i in range(len(hidden)))
        self.visible = Bernoulli(n_visible)
        self.hidden_layers = nn.ModuleList(Bernoulli(n) for n in hidden)
        self.to(dtype=dtype, device=device)

    # -- sizes and names ---------------------------------------------------------------------
    @property
    def sizes(self) -> list[int]:
        """Units per layer, visible first."""
        return [self.visible.n] + [layer.n for layer in self.hidden_layers]

    @property
    def n_layers(self) -> int:
        """Hidden layers L."""
        return len(self.hidden_layers)

    @property
    def n_visible(self) -> int:
        return self.visible.n

    def layers(self) -> list[Units]:
        """The L + 1 layers, visible first."""
        return [self.visible, *self.hidden_layers]

    def biases(self) -> list[nn.Parameter]:
        return [layer.bias for layer in self.layers()]

    def extra_repr(self) -> str:
        return f"sizes={self.sizes}, mean_field_steps={self.mean_field_steps}, dtype={self.weights[0].dtype}"

    def checkpoint_tensors(self) -> dict[str, Tensor]:
        """``weight_1`` … ``weight_L`` (W_l: layer l−1 × layer l), ``visible_bias``,
        ``hidden_bias_1`` … ``hidden_bias_L``."""
        tensors: dict[str, Tensor] = {f"weight_{l + 1}": w for l, w in enumerate(self.weights)}
        tensors["visible_bias"] = self.visible.bias
        tensors.update({f"hidden_bias_{l + 1}": layer.bias for l, layer in enumerate(self.hidden_layers)})
        return tensors

    def config(self) -> dict[str, Any]:
        return {"model": self.checkpoint_kind, "n_visible": self.n_visible,
                "hidden": [layer.n for layer in self.hidden_layers], "mean_field_steps": self.mean_field_steps,
                "dtype": str(self.weights[0].dtype).removeprefix("torch.")}

    @classmethod
    def from_config(cls, config: dict[str, Any], device: str | torch.device | None = None) -> DBM:
        hidden = config.get("hidden")
        if not isinstance(hidden, list) or not all(is_integer(n) for n in hidden):
            raise CheckpointError(f"config.json: hidden must be a list of layer sizes, got {hidden!r}")
        return cls(int(config["n_visible"]), hidden, mean_field_steps=int(config.get("mean_field_steps", 10)),
                   seed=None, dtype=parse_dtype(config.get("dtype", "float32")), device=device)

    def decay_parameters(self) -> list[nn.Parameter]:
        return list(self.weights)

    def init_from_data(self, mean: Tensor) -> None:
        """Visible biases from the data marginals (log-odds), as for the RBM."""
        self.visible.init_from_data(mean)

    def work_per_row(self) -> int:
        return sum(w.numel() for w in self.weights)

    def check_data(self, x: Tensor, name: str = "data") -> None:
        check_rows(x, name, self.n_visible)
        self.visible.validate(x, name)

    # -- fields and conditionals -----------------------------------------------------------
    def field(self, layer: int, states: Sequence[Tensor | None]) -> Tensor:
        """b_l + x_{l−1} W_l + x_{l+1} W_{l+1}ᵀ, the field of layer ``layer`` given its
        neighbours in ``states`` (a list over all layers, visible first)."""
        bias = self.layers()[layer].bias
        below = states[layer - 1] if layer > 0 else None
        above = states[layer + 1] if layer < self.n_layers else None
        if below is not None:
            out = torch.addmm(bias, below, self.weights[layer - 1])
            return out if above is None else torch.addmm(out, above, self.weights[layer].t())
        return torch.addmm(bias, above, self.weights[layer].t())

    def _bottom_up(self, v: Tensor, draw: torch.Generator | None = None, sample: bool = False) -> list[Tensor]:
        """μ_l = σ(b_l + 2 μ_{l−1} W_l) below the top, σ(b_L + μ_{L−1} W_L) at the top: the
        recognition pass of the DBM paper (the doubling stands in for the missing input from
        above).  ``sample`` draws binary states instead of means."""
        out, below = [], v
        for l in range(1, self.n_layers + 1):
            scale = 2.0 if l < self.n_layers else 1.0
            mu = torch.sigmoid(torch.addmm(self.layers()[l].bias, below, self.weights[l - 1], alpha=scale))
            below = bernoulli(mu, draw) if sample else mu
            out.append(below)
        return out

    def mean_field(self, v: Tensor, steps: int | None = None, init: Sequence[Tensor] | None = None
                   ) -> list[Tensor]:
        """The mean-field fixed point [μ_1, …, μ_L] for each row of ``v`` (see the module docstring).

        Started from :meth:`_bottom_up` (or ``init``), then ``steps`` (default
        :attr:`mean_field_steps`) sweeps μ_l ← σ(field_l(μ)) over the odd, then the even
        hidden layers (each sweep increases the bound)."""
        steps = self.mean_field_steps if steps is None else steps
        mu = list(init) if init is not None else self._bottom_up(v)
        states: list[Tensor] = [v, *mu]
        for _ in range(steps):
            for parity in (1, 0):
                for l in range(1, self.n_layers + 1):
                    if l % 2 == parity:
                        states[l] = torch.sigmoid(self.field(l, states))
        return states[1:]

    # -- energies and bounds ----------------------------------------------------------------
    def energy(self, states: Sequence[Tensor]) -> Tensor:
        """E(v, h) = −Σ_l b_lᵀ x_l − Σ_l x_{l−1}ᵀ W_l x_l per row (``states`` visible first)."""
        total = -sum(x @ layer.bias for x, layer in zip(states, self.layers()))
        for l, w in enumerate(self.weights):
            total = total - ((states[l] @ w) * states[l + 1]).sum(-1)
        return total

    def variational_free_energy(self, v: Tensor, mu: Sequence[Tensor] | None = None) -> Tensor:
        """F_MF(v) = E_q[E(v, h)] − H(q) ≥ F(v) per row, for the factorised q of ``mu``
        (default: the mean-field fixed point).  Because q factorises and E is linear in each
        layer, E_q[E] is E evaluated at the means."""
        mu = self.mean_field(v) if mu is None else list(mu)
        return self.energy([v, *mu]) - sum(_entropy(m) for m in mu)

    def even_layers(self) -> list[int]:
        return list(range(0, self.n_layers + 1, 2))

    def odd_layers(self) -> list[int]:
        return list(range(1, self.n_layers + 1, 2))

    def free_energy_parity(self, states: Sequence[Tensor | None], parity: int, beta: Beta = 1.0) -> Tensor:
        """F_β of the layers of one parity (0: even, 1: odd) with the others summed out::

            −β Σ_{l kept} b_lᵀ x_l − Σ_{l summed} Σ_j softplus(β field_l)

        ``states`` lists every layer (entries of the summed parity are ignored)."""
        keep = [l for l in range(self.n_layers + 1) if l % 2 == parity]
        summed = [l for l in range(self.n_layers + 1) if l % 2 != parity]
        per_row = beta.reshape(-1) if isinstance(beta, Tensor) else beta
        linear = sum(states[l] @ self.layers()[l].bias for l in keep)
        softplus = sum(self.layers()[l].log_partition(self.field(l, states), beta) for l in summed)
        return -per_row * linear - softplus

    def free_energy(self, v: Tensor, beta: Beta = 1.0) -> Tensor:
        """F_β(v) = −log Σ_h exp(−β E(v, h)), exactly: the odd layers summed analytically and
        the even hidden layers (h², h⁴, …) enumerated, so only for up to
        :data:`MAX_FREE_ENERGY_BITS` even hidden units (larger models: use
        :meth:`variational_free_energy`, an upper bound)."""
        even_hidden = [l for l in self.even_layers() if l > 0]
        bits = sum(self.sizes[l] for l in even_hidden)
        if bits > MAX_FREE_ENERGY_BITS:
            raise ConfigurationError(
                f"the exact DBM free energy enumerates the even hidden layers (2^{bits} states here, at most "
                f"2^{MAX_FREE_ENERGY_BITS}); use variational_free_energy (an upper bound) for larger models")
        n_states = 2 ** bits
        per_state = max(1, _CHUNK // max(1, v.shape[0] * (sum(self.sizes))))
        chunks = []
        for start in range(0, n_states, per_state):
            stop = min(start + per_state, n_states)
            codes = _bits(start, stop, bits, v.dtype, v.device)                  # (S, bits)
            s = stop - start
            states: list[Tensor | None] = [None] * (self.n_layers + 1)
            states[0] = v.repeat_interleave(s, 0)
            offset = 0
            for l in even_hidden:
                states[l] = codes[:, offset:offset + self.sizes[l]].repeat(v.shape[0], 1)
                offset += self.sizes[l]
            if isinstance(beta, Tensor):
                b = beta.reshape(-1, 1).repeat_interleave(s, 0)
            else:
                b = beta
            chunks.append(-self.free_energy_parity(states, 0, b).reshape(v.shape[0], s))
        return -torch.logsumexp(torch.cat(chunks, 1), 1)

    def as_rbm(self) -> RBM:
        """The same distribution as an RBM: visible = the even layers [v, h², …], hidden = the
        odd layers [h¹, h³, …], weights in blocks (zero between non-adjacent layers).  Its
        log Z is the DBM's; its free energy is :meth:`free_energy_parity` of the even layers.
        A detached copy (same dtype and device)."""
        even, odd = self.even_layers(), self.odd_layers()
        sizes = self.sizes
        w0 = self.weights[0]
        rbm = RBM(sum(sizes[l] for l in even), sum(sizes[l] for l in odd), seed=None, dtype=w0.dtype,
                  device=w0.device)
        starts_e = {l: sum(sizes[m] for m in even if m < l) for l in even}
        starts_o = {l: sum(sizes[m] for m in odd if m < l) for l in odd}
        with torch.no_grad():
            rbm.weight.zero_()
            for l, w in enumerate(self.weights, start=1):        # W_l joins layers l−1 and l
                low, high = l - 1, l
                if low % 2 == 0:    # low even, high odd
                    rows = slice(starts_e[low], starts_e[low] + sizes[low])
                    rbm.weight[rows, starts_o[high]:starts_o[high] + sizes[high]] = w
                else:               # low odd, high even
                    rows = slice(starts_e[high], starts_e[high] + sizes[high])
                    rbm.weight[rows, starts_o[low]:starts_o[low] + sizes[low]] = w.t()
            rbm.visible.bias.copy_(torch.cat([self.layers()[l].bias for l in even]))
            rbm.hidden.bias.copy_(torch.cat([self.layers()[l].bias for l in odd]))
        return rbm

    def split_even(self, x: Tensor) -> list[Tensor | None]:
        """A row of the even layers [v, h², …] (as :meth:`as_rbm` orders them) as a list over all layers."""
        states: list[Tensor | None] = [None] * (self.n_layers + 1)
        start = 0
        for l in self.even_layers():
            states[l] = x[:, start:start + self.sizes[l]]
            start += self.sizes[l]
        return states

    # -- sampling -----------------------------------------------------------------------------
    def init_chains(self, data: Tensor, n: int, generator: torch.Generator | None = None) -> ChainState:
        """``n`` chains at data rows (drawn with repetition), hidden layers drawn bottom-up."""
        v = super().init_chains(data, n, generator).visible
        with torch.no_grad():
            hidden = self._bottom_up(v, generator, sample=True)
        return ChainState(v, {f"hidden_{l + 1}": h for l, h in enumerate(hidden)})

    def chain_start(self, data: Tensor, positive: Any, generator: torch.Generator | None = None) -> ChainState:
        """CD's start: the data with hidden states drawn from the mean-field posterior."""
        mu = positive if positive is not None else self.mean_field(data)
        return ChainState(data, {f"hidden_{l + 1}": bernoulli(m, generator) for l, m in enumerate(mu)})

    def _states(self, state: ChainState, generator: torch.Generator | None) -> list[Tensor]:
        hidden = [state.layers.get(f"hidden_{l}") for l in range(1, self.n_layers + 1)]
        if any(h is None for h in hidden):
            hidden = self._bottom_up(state.visible, generator, sample=True)
        return [state.visible, *hidden]

    def advance(self, state: ChainState, steps: int, generator: torch.Generator | None = None,
                beta: Beta = 1.0, mask: Tensor | None = None, final_mean: bool = False) -> ChainState:
        """``steps`` sweeps at inverse temperature β, each drawing the odd layers given the even
        ones, then the even layers (v included) given the odd ones; both half-steps are exact
        block-Gibbs updates (the graph is bipartite), so p_β is invariant.  ``mask`` keeps
        masked visible entries at 0; ``final_mean`` ends on E[v | h¹]."""
        with torch.no_grad():
            x = self._states(state, generator)
            for step in range(steps):
                for parity in (1, 0):
                    for l in range(parity, self.n_layers + 1, 2):
                        layer = self.layers()[l]
                        field = self.field(l, x)
                        if l == 0 and final_mean and step == steps - 1:
                            x[0] = layer.mean(field, beta)
                        else:
                            x[l] = layer.sample(field, generator, beta)
                        if l == 0 and mask is not None:
                            x[0] = x[0].mul_(mask)
        return ChainState(x[0], {**state.layers, **{f"hidden_{l}": x[l] for l in range(1, self.n_layers + 1)}})

    def sample(self, n: int, steps: int, generator: torch.Generator | None = None) -> Tensor:
        """E[v | h¹] after ``steps`` sweeps from independent draws v ~ σ(b_0), hidden bottom-up."""
        with torch.no_grad():
            device = generator.device if generator is not None else self.visible.bias.device
            v = bernoulli(torch.sigmoid(self.visible.bias.detach()).to(device).expand(n, -1).contiguous(), generator)
            state = ChainState(v, {f"hidden_{l + 1}": h for l, h in enumerate(self._bottom_up(v, generator, True))})
            state = self.advance(state, steps, generator, final_mean=True)
        return state.visible

    # -- the gradient -------------------------------------------------------------------------
    def positive_phase(self, data: Tensor) -> list[Tensor]:
        """The mean-field state [μ_1, …, μ_L] of the batch."""
        return self.mean_field(data)

    def centering_means(self, data: Tensor, positive: Sequence[Tensor] | None) -> tuple[Tensor, Tensor]:
        """Batch means for the centering offsets: the data, and every hidden layer's mean-field
        mean side by side (the trainer's :class:`~boltzkit.training.Centering` slides them)."""
        mu = positive if positive is not None else self.mean_field(data)
        return data.mean(0), torch.cat([m.mean(0) for m in mu])

    def statistics(self, states: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Sufficient statistics ⟨x_{l−1}ᵀ x_l⟩ and ⟨x_l⟩ over the rows of ``states``."""
        n = states[0].shape[0]
        pairs = [states[l].t() @ states[l + 1] / n for l in range(self.n_layers)]
        return pairs, [x.mean(0) for x in states]

    def negative_statistics(self, negative: ChainState) -> tuple[list[Tensor], list[Tensor]]:
        """Chain statistics, Rao-Blackwellised: the odd layers replaced by their conditional
        means given the chains' even layers (every pair has one odd and one even end, so
        E[x_e x_oᵀ | even] = x_e E[x_o | even]ᵀ exactly)."""
        x = self._states(negative, None)
        for l in self.odd_layers():
            x[l] = torch.sigmoid(self.field(l, x))
        return self.statistics(x)

    def write_gradient(self, data: Tensor, negative: ChainState, positive: Sequence[Tensor] | None = None,
                       offsets: tuple[Tensor, Tensor] | None = None) -> None:
        """``.grad`` = −(data statistics under q) + (model statistics from the chains)::

            ∇W_l = −⟨μ_{l−1} μ_lᵀ⟩_data + ⟨x_{l−1} x_lᵀ⟩_chains,   ∇b_l = −⟨μ_l⟩_data + ⟨x_l⟩_chains

        (μ_0 = v): the negative gradient of the mean-field bound with its log Z term
        estimated by the chains.  ``offsets = (μ_0, [μ_1 | … | μ_L])`` writes the centered
        gradient instead (Montavon & Müller 2012): the gradient in the parameters of
        E' = −Σ b'_lᵀ(x_l − m_l) − Σ (x_{l−1} − m_{l−1})ᵀ W'_l (x_l − m_l), mapped back::

            ∇W'_l = ∇W_l − m_{l−1} ∇b_lᵀ − ∇b_{l−1} m_lᵀ
            ∇b'_l = ∇b_l − ∇W'_lᵀ m_{l−1} − ∇W'_{l+1} m_{l+1}

        i.e. J Jᵀ ∇θ with J the Jacobian of θ(θ'), as for the RBM; zero offsets give the
        ordinary gradient exactly."""
        with torch.no_grad():
            mu = positive if positive is not None else self.mean_field(data)
            pos_pairs, pos_means = self.statistics([data, *mu])
            neg_pairs, neg_means = self.negative_statistics(negative)
            g_w = [n - p for p, n in zip(pos_pairs, neg_pairs)]
            g_b = [n - p for p, n in zip(pos_means, neg_means)]
            if offsets is not None:
                g_w, g_b = self.center_gradient(g_w, g_b, self._split_offsets(offsets))
            for p, g in zip([*self.weights, *self.biases()], [*g_w, *g_b]):
                p.grad = g.to(p.dtype)

    def _split_offsets(self, offsets: tuple[Tensor, Tensor]) -> list[Tensor]:
        visible, hidden = offsets
        return [visible, *hidden.split([layer.n for layer in self.hidden_layers])]

    @staticmethod
    def center_gradient(g_w: list[Tensor], g_b: list[Tensor], m: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """The centered gradient of :meth:`write_gradient` from the ordinary one (new tensors)."""
        w = [gw - torch.outer(m[l], g_b[l + 1]) - torch.outer(g_b[l], m[l + 1]) for l, gw in enumerate(g_w)]
        b = []
        for l, gb in enumerate(g_b):
            out = gb.clone()
            if l > 0:
                out -= w[l - 1].t() @ m[l - 1]
            if l < len(w):
                out -= w[l] @ m[l + 1]
            b.append(out)
        return w, b

    # -- greedy pre-training --------------------------------------------------------------------
    def pretraining_rbms(self) -> list[RBM]:
        """The RBMs of the DBM paper's greedy pre-training, bottom first: the first with
        ``binomial:2`` visible units (two tied copies of v: trained on 2·v, so h¹ gets twice
        the input from v), the last with ``binomial:2`` hidden units (two tied copies of the
        top layer), plain RBMs between.  Initial weights are the DBM's."""
        sizes, rbms = self.sizes, []
        w0 = self.weights[0]
        for l in range(self.n_layers):
            visible = "binomial:2" if l == 0 else "bernoulli"
            hidden = "binomial:2" if l == self.n_layers - 1 else "bernoulli"
            rbm = RBM(sizes[l], sizes[l + 1], visible=visible, hidden=hidden, seed=None, dtype=w0.dtype,
                      device=w0.device)
            with torch.no_grad():
                rbm.weight.copy_(self.weights[l])
            rbms.append(rbm)
        return rbms

    def load_pretrained(self, rbms: Sequence[RBM]) -> None:
        """Compose the DBM from pre-trained RBMs: W_1 and W_L as trained, middle weights halved
        (those layers get input from both sides in the DBM), b_0 from the first RBM, b_L from
        the last, and each inner layer's bias the mean of the two RBMs that share it."""
        if len(rbms) != self.n_layers or any(r.weight.shape != w.shape for r, w in zip(rbms, self.weights)):
            raise ConfigurationError("the pre-trained RBMs do not match the DBM's layer sizes")
        with torch.no_grad():
            for l, rbm in enumerate(rbms):
                scale = 1.0 if l in (0, self.n_layers - 1) else 0.5
                self.weights[l].copy_(rbm.weight * scale)
            self.visible.bias.copy_(rbms[0].visible.bias)
            self.hidden_layers[-1].bias.copy_(rbms[-1].hidden.bias)
            for l in range(1, self.n_layers):
                self.hidden_layers[l - 1].bias.copy_((rbms[l - 1].hidden.bias + rbms[l].visible.bias) / 2)

    def pretrain(self, data: Tensor, config: Any = None, propagate: str = "mean", progress: bool = False,
                 callbacks: Any = None) -> list[list[dict[str, float]]]:
        """Greedy layer-wise pre-training (Salakhutdinov & Hinton 2009, §3.1) through the common
        trainer: :meth:`pretraining_rbms` trained bottom-up by
        :func:`boltzkit.models.dbn.greedy_train` (the first on 2·v), then
        :meth:`load_pretrained`.  Returns each RBM's training history."""
        from .dbn import greedy_train

        check_training_data(self, data, config)
        rbms = self.pretraining_rbms()
        histories = greedy_train(rbms, 2.0 * data, config, propagate=propagate, progress=progress,
                                 callbacks=callbacks)
        self.load_pretrained(rbms)
        return histories


__all__ = ["DBM", "Binomial"]
