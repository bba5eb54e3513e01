"""The restricted Boltzmann machine.

Energy, for any pair of unit types (see :mod:`boltzkit.units`)::

    E(v, h) = E_self^v(v) + E_self^h(h) − φ(v)ᵀ W ψ(h)

which for binary units is E(v,h) = −bᵀv − cᵀh − vᵀWh.  Summing out the hidden layer gives
the free energy F(v) = E_self^v(v) − log Σ_h exp(−E_self^h(h) + ψ(h)·(φ(v)W)); for binary
hidden units F(v) = −bᵀv − Σ_j softplus(c_j + (vᵀW)_j).  Both conditionals factorise, so a
Gibbs sweep is two matrix products and two draws.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..checkpoint import register
from ..errors import CheckpointError, ConfigurationError
from ..sampling.state import ChainState
from ..validation import check_float, check_int, is_integer, parse_dtype
from .base import EnergyModel, check_rows
from .units import Beta, Units, make_units


@register
class RBM(EnergyModel):
    """Restricted Boltzmann machine with visible and hidden layers of any unit types.

    Parameters
    ----------
    n_visible, n_hidden:
        Number of visible and hidden units (variables, not one-hot columns).
    visible, hidden:
        Unit type of each layer: a name (``"bernoulli"``, ``"gaussian"``, ``"softmax:5"``…)
        or a :class:`~boltzkit.units.Units` instance.
    weight_scale:
        Standard deviation of the N(0, σ²) initial weights (Hinton's guide: 0.01).
    seed:
        Seed of the weight initialisation (a fixed seed gives identical weights).

    Gradients follow PyTorch's conventions: ``rbm(v)`` (the free energy F(v)), :meth:`free_energy`,
    :meth:`hidden_mean` and :meth:`visible_mean` are differentiable and track gradients like any
    module's forward (use ``torch.no_grad()`` or ``.detach()`` before ``.numpy()``); the one-call
    helpers :meth:`transform`, :meth:`reconstruct`, :meth:`draw` and every draw
    (:meth:`sample_hidden`, :meth:`sample_visible`, :meth:`sample`) return detached tensors.

    Example
    -------
    >>> rbm = RBM(784, 64, seed=0)
    >>> v = torch.bernoulli(torch.full((10, 784), 0.1))
    >>> rbm.free_energy(v).shape
    torch.Size([10])
    """

    checkpoint_kind = "RBM"
    checkpoint_description = "plain RBM"

    def __init__(self, n_visible: int, n_hidden: int, visible: str | Units = "bernoulli",
                 hidden: str | Units = "bernoulli", *, weight_scale: float = 0.01,
                 seed: int | None = 0, dtype: torch.dtype = torch.float32,
                 device: str | torch.device | None = None) -> None:
        super().__init__()
        check_int("n_visible", n_visible, least=1)
        check_int("n_hidden", n_hidden, least=1)
        check_float("weight_scale", weight_scale, 0.0)
        try:
            self._build(n_visible, n_hidden, visible, hidden, weight_scale, seed)
        except (RuntimeError, MemoryError) as e:
            if "alloc" not in str(e).lower() and not isinstance(e, MemoryError):
                raise
            raise ConfigurationError(f"an RBM with {n_visible} visible and {n_hidden} hidden units is too "
                                     f"large to allocate on this machine") from None
        self.to(dtype=dtype, device=device)

    def _build(self, n_visible: int, n_hidden: int, visible: str | Units, hidden: str | Units,
               weight_scale: float, seed: int | None) -> None:
        self.visible = make_units(visible, n_visible)
        self.hidden = make_units(hidden, n_hidden)
        if self.visible.hidden_only:
            raise ConfigurationError(
                f"{self.visible.kind} units can only be the hidden layer; use e.g. bernoulli "
                "or gaussian visible units")
        if not (self.visible.discrete or self.hidden.discrete):
            raise ConfigurationError(
                f"an RBM with {self.visible.kind} visible and {self.hidden.kind} hidden units "
                "is not guaranteed a normalisable distribution and cannot be enumerated; make "
                "one layer discrete (e.g. bernoulli)")
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        weight = torch.randn(self.visible.dim, self.hidden.dim, generator=generator,
                             dtype=torch.float64) * weight_scale
        self.weight = nn.Parameter(weight)

    # -- sizes and names ------------------------------------------------------------------
    @property
    def n_visible(self) -> int:
        return self.visible.n

    @property
    def n_hidden(self) -> int:
        return self.hidden.n

    @property
    def visible_bias(self) -> nn.Parameter:
        return self.visible.bias

    @property
    def hidden_bias(self) -> nn.Parameter:
        return self.hidden.bias

    def named_tensors(self) -> dict[str, Tensor]:
        """Parameters under their checkpoint names: ``weight``, ``visible_bias``,
        ``hidden_bias`` and any unit parameter as ``<layer>_<name>``."""
        return {name.replace(".", "_"): p for name, p in self.named_parameters()}

    def extra_repr(self) -> str:
        return (f"n_visible={self.n_visible}, n_hidden={self.n_hidden}, visible={self.visible.spec()!r}, "
                f"hidden={self.hidden.spec()!r}, dtype={self.weight.dtype}, device={self.weight.device}")

    def checkpoint_tensors(self) -> dict[str, Tensor]:
        return self.named_tensors()

    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild an identical (untrained) model."""
        return {"model": self.checkpoint_kind, "n_visible": self.n_visible, "n_hidden": self.n_hidden,
                "visible": self.visible.spec(), "hidden": self.hidden.spec(),
                "dtype": str(self.weight.dtype).removeprefix("torch.")}

    @classmethod
    def from_checkpoint(cls, config: dict[str, Any], tensors: dict[str, Tensor],
                        device: str | torch.device | None = None) -> RBM:
        """Rebuild a saved RBM; the sizes config.json claims are checked against the tensor file
        before anything is allocated."""
        weight = tensors.get("weight")
        if weight is None or weight.dim() != 2:
            raise CheckpointError("model.safetensors lacks a 2-D tensor 'weight'")
        n_visible, n_hidden = config.get("n_visible"), config.get("n_hidden")
        for name, n in (("n_visible", n_visible), ("n_hidden", n_hidden)):
            if not is_integer(n) or n < 1:  # type: ignore[operator]  # n is an int here
                raise CheckpointError(f"config.json: {name} must be a positive integer, got {n!r}")
        assert isinstance(n_visible, int) and isinstance(n_hidden, int)  # checked above
        if n_visible > weight.shape[0] or n_hidden > weight.shape[1]:
            raise CheckpointError(f"config.json claims {n_visible} × {n_hidden} units but the weight "
                                  f"has shape {tuple(weight.shape)}")
        # Build the model config.json describes on the meta device (shapes, no storage) and compare
        # every tensor shape with the file's before allocating: a config claiming softmax:10⁹ or
        # 10¹² context units is refused, not allocated.
        try:
            with torch.device("meta"):
                shapes = {name: tuple(t.shape) for name, t in
                          cls.from_config(config, device="meta").checkpoint_tensors().items()}
        except (ConfigurationError, KeyError, ValueError, TypeError, RuntimeError, OverflowError) as e:
            raise CheckpointError(f"config.json describes no valid {cls.checkpoint_kind}: {e}") from None
        found = {name: tuple(t.shape) for name, t in tensors.items()}
        if set(found) != set(shapes):
            missing, extra = sorted(set(shapes) - set(found)), sorted(set(found) - set(shapes))
            raise CheckpointError("model tensors do not match the config: "
                                  + "; ".join(([f"missing {missing}"] if missing else [])
                                              + ([f"unexpected {extra}"] if extra else [])))
        for name, shape in shapes.items():
            if found[name] != shape:
                raise CheckpointError(f"tensor {name!r} has shape {found[name]}, the config implies {shape}")
        model: RBM = super().from_checkpoint(config, tensors, device)
        return model

    @classmethod
    def from_config(cls, config: dict[str, Any], device: str | torch.device | None = None) -> RBM:
        dtype = parse_dtype(config.get("dtype", "float32"))
        return cls(int(config["n_visible"]), int(config["n_hidden"]),
                   visible=config.get("visible", "bernoulli"), hidden=config.get("hidden", "bernoulli"),
                   seed=None, dtype=dtype, device=device)

    # -- fields and conditionals --------------------------------------------------------
    def hidden_field(self, v: Tensor) -> Tensor:
        """a_h = c + φ(v) W, the field each hidden unit sees."""
        return torch.addmm(self.hidden.bias, self.visible.statistic(v), self.weight)

    def visible_field(self, h: Tensor) -> Tensor:
        """a_v = b + W ψ(h), the field each visible unit sees."""
        return torch.addmm(self.visible.bias, self.hidden.statistic(h), self.weight.t())

    def hidden_mean(self, v: Tensor, beta: Beta = 1.0) -> Tensor:
        """E[h | v]; for binary units σ(c + vᵀW).

        Differentiable like any ``nn.Module`` forward (fine-tuning back-propagates through it):
        the result tracks gradients while the parameters require them.  For NumPy call it under
        ``torch.no_grad()`` or ``.detach()`` it, or use :meth:`transform`."""
        return self.hidden.mean(self.hidden_field(v), beta)

    def visible_mean(self, h: Tensor, beta: Beta = 1.0) -> Tensor:
        """E[v | h]; for binary units σ(b + W h).  Differentiable, as :meth:`hidden_mean`
        (``torch.no_grad()`` or ``.detach()`` before ``.numpy()``; :meth:`reconstruct` is the
        detached one-call form)."""
        return self.visible.mean(self.visible_field(h), beta)

    @torch.no_grad()
    def sample_hidden(self, v: Tensor, generator: torch.Generator | None = None,
                      beta: Beta = 1.0) -> Tensor:
        """h ~ p_β(h | v) (a draw: never tracks gradients)."""
        return self.hidden.sample(self.hidden_field(v), generator, beta)

    @torch.no_grad()
    def sample_visible(self, h: Tensor, generator: torch.Generator | None = None,
                       beta: Beta = 1.0, mask: Tensor | None = None) -> Tensor:
        """v ~ p_β(v | h); entries where ``mask`` is 0 are set to 0 (units that take no part).
        A draw: never tracks gradients."""
        v = self.visible.sample(self.visible_field(h), generator, beta)
        return v.mul_(mask) if mask is not None else v

    def gibbs_step(self, v: Tensor, generator: torch.Generator | None = None,
                   beta: Beta = 1.0, mask: Tensor | None = None) -> Tensor:
        """One block-Gibbs sweep v → h ~ p(h|v) → v' ~ p(v|h)."""
        return self.sample_visible(self.sample_hidden(v, generator, beta), generator, beta, mask)

    def sample(self, v: Tensor, steps: int, generator: torch.Generator | None = None,
               beta: Beta = 1.0, mask: Tensor | None = None) -> Tensor:
        """Run ``steps`` Gibbs sweeps from ``v`` (no gradient is tracked)."""
        return self.advance(ChainState(v), steps, generator, beta, mask).visible

    # -- the model protocol (boltzkit.models.base.EnergyModel) ---------------------------------
    def advance(self, state: ChainState, steps: int, generator: torch.Generator | None = None,
                beta: Beta = 1.0, mask: Tensor | None = None, final_mean: bool = False) -> ChainState:
        """``steps`` block-Gibbs sweeps h ~ p_β(h | v), v ~ p_β(v | h).

        A state that already holds ``hidden`` (a draw of h for its visible rows, as CD's start
        state from the positive phase) begins with the visible half-step; one that holds
        ``hidden_field`` (:meth:`tempered_field` of its visible rows, as parallel tempering
        leaves it) draws the first h from that field.  ``final_mean`` ends on E[v | h] instead
        of a sample (the reconstruction of Hinton's guide, §3).
        """
        with torch.no_grad():
            v, h, field = state.visible, state.get("hidden"), state.get("hidden_field")
            for step in range(steps):
                if h is None:
                    h = self.sample_hidden(v, generator, beta) if field is None else \
                        self.hidden.sample(field, generator, beta)
                    field = None
                if final_mean and step == steps - 1:
                    v = self.visible_mean(h, beta)
                    v = v.mul_(mask) if mask is not None else v
                else:
                    v = self.sample_visible(h, generator, beta, mask)
                h = None
        return state.replace(v, hidden=None, hidden_field=None)

    def chain_start(self, data: Tensor, positive: Tensor | None, generator: torch.Generator | None = None
                    ) -> ChainState:
        """CD's start: the data with h ~ p(h | v) drawn from the positive phase's field."""
        field = positive if positive is not None else self.hidden_field(data)
        return ChainState(data, {"hidden": self.hidden.sample(field, generator)})

    def positive_phase(self, data: Tensor) -> Tensor:
        """The hidden field of the data, shared by the gradient and CD's first half-step."""
        return self.hidden_field(data)

    def write_gradient(self, data: Tensor, negative: ChainState, positive: Tensor | None = None,
                       offsets: tuple[Tensor, Tensor] | None = None) -> None:
        """``p.grad = ∇θ [mean F(v⁺) − mean F(v⁻)]`` for every parameter, samples held fixed.

        For layers with E_self(x) = −biasᵀx and φ(x) = x (``Units.linear``) the closed form is
        used (μ = E[h|v], B± the batch sizes)::

            ∇W = −v⁺ᵀμ⁺/B⁺ + v⁻ᵀμ⁻/B⁻,   ∇b = −mean v⁺ + mean v⁻,   ∇c = −mean μ⁺ + mean μ⁻

        (two matrix products, written in place).  Other unit types take the autograd gradient
        of the same expression (the generic path of every energy model); a test checks that
        both agree to rounding.

        ``offsets = (μ_v, μ_h)`` writes the *centered* gradient instead (linear units only; see
        :class:`~boltzkit.training.regularisers.Centering`): the gradient in the parameters of
        the energy −(v−μ_v)ᵀb' − (h−μ_h)ᵀc' − (v−μ_v)ᵀW(h−μ_h), mapped back to W, b, c::

            ∇W' = ∇W − μ_v ∇cᵀ − ∇b μ_hᵀ        (= −⟨(v−μ_v)(μ−μ_h)ᵀ⟩_+ + ⟨…⟩_−)
            ∇b' = ∇b − ∇W' μ_h,   ∇c' = ∇c − ∇W'ᵀ μ_v

        i.e. J Jᵀ ∇θ with J the Jacobian of (W', b', c') ↦ (W', b' − W'μ_h, c' − W'ᵀμ_v), a
        positive semi-definite rescaling of the ordinary gradient.  Zero offsets give the
        ordinary gradient exactly.
        """
        v_neg = negative.visible
        if not (self.visible.linear and self.hidden.linear):
            if offsets is not None:
                raise ConfigurationError(
                    f"centering needs linear units (bernoulli, softmax); this model has "
                    f"{self.visible.kind} visible and {self.hidden.kind} hidden units")
            super().write_gradient(data, negative)
            return
        with torch.no_grad():
            mu_pos = self.hidden.mean(positive if positive is not None else self.hidden_field(data))
            mu_neg = self.hidden_mean(v_neg)
            n_pos, n_neg = data.shape[0], v_neg.shape[0]
            weight, b, c = self.weight, self.visible.bias, self.hidden.bias
            grads: list[Tensor] = []
            for p in (weight, b, c):
                if p.grad is None:
                    p.grad = torch.empty_like(p)
                grads.append(p.grad)
            grad_w, grad_b, grad_c = grads
            torch.addmm(grad_w, data.t(), mu_pos, beta=0, alpha=-1.0 / n_pos, out=grad_w)
            grad_w.addmm_(v_neg.t(), mu_neg, alpha=1.0 / n_neg)
            torch.sub(v_neg.mean(0), data.mean(0), out=grad_b)
            torch.sub(mu_neg.mean(0), mu_pos.mean(0), out=grad_c)
            if offsets is not None:
                center_gradient(grad_w, grad_b, grad_c, *offsets)
            self.write_extra_gradient(data, v_neg, mu_pos, mu_neg)

    def write_extra_gradient(self, data: Tensor, v_neg: Tensor, mu_pos: Tensor, mu_neg: Tensor) -> None:
        """Closed-form gradient of parameters beyond W, b, c (none here; see ConditionalRBM)."""

    def decay_parameters(self) -> list[nn.Parameter]:
        """Weight decay applies to the weights only (not the biases)."""
        return [self.weight]

    def init_from_data(self, mean: Tensor) -> None:
        """Visible biases from the data marginals (log-odds for binary units; Hinton's guide §8)."""
        self.visible.init_from_data(mean)

    def work_per_row(self) -> int:
        return self.visible.dim * self.hidden.dim

    # -- energies ------------------------------------------------------------------------
    def energy(self, v: Tensor, h: Tensor) -> Tensor:
        """E(v, h) = E_self^v(v) + E_self^h(h) − φ(v)ᵀ W ψ(h), per row."""
        interaction = ((self.visible.statistic(v) @ self.weight) * self.hidden.statistic(h)).sum(-1)
        return self.visible.self_energy(v) + self.hidden.self_energy(h) - interaction

    def free_energy(self, v: Tensor, beta: Beta = 1.0) -> Tensor:
        """F_β(v) = β E_self^v(v) − log Σ_h exp(−β E(v,h) + β E_self^v(v)), per row.

        For binary hidden units: F(v) = −bᵀv − Σ_j softplus(c_j + (vᵀW)_j).
        """
        return _per_row(beta) * self.visible.self_energy(v) - self.hidden.log_partition(
            self.hidden_field(v), beta)

    def free_energies(self, v: Tensor, betas: list[Tensor], field: Tensor | None = None) -> Tensor:
        """F_β(v) for several β from one hidden field c + φ(v)W (one matrix product in all, none
        when ``field`` is given)."""
        field = self.hidden_field(v) if field is None else field
        self_energy = self.visible.self_energy(v)
        return torch.stack([_per_row(beta) * self_energy - self.hidden.log_partition(field, beta)
                            for beta in betas])

    def tempered_field(self, v: Tensor) -> Tensor | None:
        """The hidden field c + φ(v)W: the same for every β (see :meth:`EnergyModel.tempered_field`)."""
        return self.hidden_field(v)

    def free_energy_hidden(self, h: Tensor, beta: Beta = 1.0) -> Tensor:
        """F_β(h) with the visible layer summed out: β E_self^h(h) − log Z_v(b + Wψ(h))."""
        return _per_row(beta) * self.hidden.self_energy(h) - self.visible.log_partition(
            self.visible_field(h), beta)

    def reconstruct(self, v: Tensor | Any) -> Tensor:
        """Mean-field reconstruction E[v | E[h | v]] (no gradient; NumPy input accepted)."""
        v = self._input(v)
        with torch.no_grad():
            return self.visible_mean(self.hidden_mean(v))

    def transform(self, v: Tensor | Any) -> Tensor:
        """Hidden features E[h | v] (no gradient; NumPy input accepted)."""
        v = self._input(v)
        with torch.no_grad():
            return self.hidden_mean(v)

    def draw(self, n: int, *, burn_in: int = 1000, thin: int = 1, chains: int | None = None,
             values: str = "sample", method: str = "gibbs", replicas: int = 10, seed: int | None = 0,
             generator: torch.Generator | None = None) -> Tensor:
        """``n`` samples of the model in one call: ``chains`` chains (default ``n``) start at
        p(v | h = 0), run ``burn_in`` sweeps, then every ``thin``-th sweep contributes one row per
        chain until ``n`` rows are collected.  ``values="mean"`` returns E[v | h] of the last
        half-step instead of a sample; ``method="pt"`` runs parallel tempering with ``replicas``
        temperatures (better mixing between modes).  No gradient is tracked."""
        from ..sampling import ParallelTempering, tempering_betas

        check_int("n", n, least=1)
        check_int("burn_in", burn_in, least=0)
        check_int("thin", thin, least=1)
        chains = check_int("chains", chains, least=1, optional=True) or n
        if values not in ("sample", "mean") or method not in ("gibbs", "pt"):
            raise ConfigurationError(f"values must be 'sample' or 'mean' and method 'gibbs' or 'pt', "
                                     f"got {values!r}, {method!r}")
        if generator is None:
            generator = torch.Generator(self.weight.device)
            generator.manual_seed(seed) if seed is not None else generator.seed()
        with torch.no_grad():
            start = self.visible.sample(self.visible.bias.detach().expand(chains, -1), generator)
            pt = None
            if method == "pt":
                pt = ParallelTempering(tempering_betas(replicas), chains)
                pt.initialise(self, start, generator)
            state = ChainState(start)

            def sweep(steps: int) -> ChainState:
                if pt is not None:
                    return pt.advance(self, start, steps, generator) if steps else ChainState(pt.model_samples())
                return self.advance(state, steps, generator)

            state = sweep(burn_in)
            rows: list[Tensor] = []
            while sum(r.shape[0] for r in rows) < n:
                state = sweep(thin) if rows else state
                h = self.sample_hidden(state.visible, generator)
                rows.append(self.visible_mean(h) if values == "mean" else self.sample_visible(h, generator))
            return torch.cat(rows)[:n]

    def _input(self, v: Tensor | Any) -> Tensor:
        from ..training.batches import as_tensor

        v = as_tensor(v).to(self.weight.device, self.weight.dtype)
        self.check_data(v)
        return v

    # -- validation at the edge -------------------------------------------------------------
    def check_data(self, v: Tensor, name: str = "data") -> None:
        """Raise :class:`DataError` unless ``v`` fits the visible layer of this model."""
        check_rows(v, name, self.visible.dim)
        self.visible.validate(v, name)


def _per_row(beta: Beta) -> Beta:
    """β shaped for per-row energies: a ``(batch, 1)`` tensor becomes ``(batch,)``."""
    return beta.reshape(-1) if isinstance(beta, Tensor) else beta


def center_gradient(g_w: Tensor, g_b: Tensor, g_c: Tensor, mu_v: Tensor, mu_h: Tensor) -> None:
    """Map the ordinary gradient (in place) to the centered one, see :meth:`RBM.write_gradient`."""
    g_w.sub_(torch.outer(mu_v, g_c)).sub_(torch.outer(g_b, mu_h))
    g_b.sub_(g_w @ mu_h)
    g_c.sub_(g_w.t() @ mu_v)
