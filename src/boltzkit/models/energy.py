"""An energy model from any ``torch.nn.Module``: p_θ(x) = f_θ(x)/Z(θ) = exp(−U_θ(x))/Z(θ).

The user's module gives the energy U_θ(x) (``output="energy"``) or the unnormalised
log-density log f_θ(x) = −U_θ(x) (``output="log_density"``), one number per row, for
continuous, binary or categorical (one-hot) x.  The negative log-likelihood gradient is the
lecture's

    ∂/∂θ [−(1/N) Σ_i log p_θ(x_i)] = (1/N) Σ_i ∂U_θ(x_i)/∂θ − E_{p_θ}[∂U_θ/∂θ],

(the sample mean minus the population mean of the score ∂ log f/∂θ, with the sign flipped):
:meth:`EnergyFunctionModel.write_gradient` fills ``.grad`` with the autograd gradient of
mean U(x⁺) − mean U(x⁻), the negatives x⁻ held fixed, so the model trains with the same
:class:`~boltzkit.training.Trainer` and estimators (CD-k, PCD-k,
:class:`~boltzkit.training.replay.ReplayBuffer`) as the RBMs.  x⁻ come from an MCMC kernel of
:mod:`boltzkit.sampling.mcmc` (Langevin, MALA, HMC; Gibbs, Metropolis, Gibbs-with-gradients).

Checkpoints: modules registered with :func:`register_energy` (:class:`MLPEnergy`,
:class:`GaussianEnergy`) are rebuilt from config.json by :func:`boltzkit.checkpoint.load`;
for any other module, build it yourself and call ``EnergyFunctionModel.load(directory,
module=module)`` (or ``model.load_state_dict`` on the model you built).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..checkpoint import register
from ..errors import CheckpointError, ConfigurationError, DataError, DivergenceError
from ..sampling.mcmc import Kernel, make_kernel
from ..sampling.state import ChainState
from ..validation import check_choice, check_float, check_int, parse_dtype
from .base import EnergyModel, check_rows
from .units import Beta

logger = logging.getLogger("boltzkit")

#: energy modules that config.json can name (``register_energy``)
ENERGY_MODULES: dict[str, type[nn.Module]] = {}


def register_energy(cls: type[nn.Module]) -> type[nn.Module]:
    """Class decorator: a module with ``config()`` (keyword arguments of its constructor) that
    checkpoints of :class:`EnergyFunctionModel` can rebuild by name."""
    ENERGY_MODULES[cls.__name__] = cls
    return cls


def parse_domain(spec: str) -> tuple[str, int | None]:
    """``"continuous"``, ``"binary"`` or ``"categorical:K"`` → (kind, K or None)."""
    if not isinstance(spec, str):
        raise ConfigurationError(f"domain must be a string, got {spec!r}")
    kind, _, argument = spec.partition(":")
    check_choice("domain", kind, ("continuous", "binary", "categorical"))
    if kind != "categorical":
        if argument:
            raise ConfigurationError(f"domain {spec!r}: only categorical takes ':K'")
        return kind, None
    if not argument.isdigit() or int(argument) < 2:
        raise ConfigurationError(f"domain {spec!r}: write categorical:K with K ≥ 2 categories")
    return kind, int(argument)


_ACTIVATIONS = {"silu": nn.SiLU, "relu": nn.ReLU, "tanh": nn.Tanh, "softplus": nn.Softplus, "elu": nn.ELU}


@register_energy
class MLPEnergy(nn.Module):
    """U(x) = MLP(x): linear layers of ``hidden`` sizes with ``activation`` between, one output.

    Weights start U(−1/√fan_in, 1/√fan_in) from ``seed`` (PyTorch's default law, an explicit
    generator), biases 0.
    """

    def __init__(self, n_features: int, hidden: Sequence[int] = (64, 64), activation: str = "silu",
                 seed: int = 0) -> None:
        super().__init__()
        check_int("n_features", n_features, least=1)
        for h in hidden:
            check_int("hidden", h, least=1)
        check_choice("activation", activation, _ACTIVATIONS)
        self.n_features, self.hidden, self.activation, self.seed = n_features, list(hidden), activation, seed
        sizes = [n_features, *hidden, 1]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(_ACTIVATIONS[activation]())
        self.net = nn.Sequential(*layers)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for layer in self.net:
                if isinstance(layer, nn.Linear):
                    bound = 1 / math.sqrt(layer.in_features)
                    layer.weight.copy_(torch.rand(layer.weight.shape, generator=g) * 2 * bound - bound)
                    layer.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)

    def config(self) -> dict[str, Any]:
        return {"n_features": self.n_features, "hidden": self.hidden, "activation": self.activation,
                "seed": self.seed}


@register_energy
class GaussianEnergy(nn.Module):
    """The lecture's example: U(x) = τ/2 · Σ_j (x_j − μ_j)², known precision τ, learned mean μ.

    log f = −τ(x − μ)²/2, so ∂ log f/∂μ = τ(x − μ) and the likelihood gradient is
    τ(x̄ − μ) − τ(E_p[x] − μ) = τ(x̄ − E_p[x]): the maximum-likelihood μ is the sample mean x̄.
    """

    def __init__(self, n_features: int = 1, precision: float = 1.0, mean: float = 0.0) -> None:
        super().__init__()
        check_int("n_features", n_features, least=1)
        check_float("precision", precision, 0.0, low_open=True)
        check_float("mean", mean)
        self.n_features, self.precision_value = n_features, float(precision)
        self.mean = nn.Parameter(torch.full((n_features,), float(mean)))
        self.register_buffer("precision", torch.tensor(float(precision)))

    def forward(self, x: Tensor) -> Tensor:
        return 0.5 * self.precision * ((x - self.mean) ** 2).sum(-1)

    def config(self) -> dict[str, Any]:
        return {"n_features": self.n_features, "precision": self.precision_value}


@register
class EnergyFunctionModel(EnergyModel):
    """p_θ(x) ∝ exp(−U_θ(x)) for a user-defined energy module; see the module docstring.

    Parameters
    ----------
    energy:
        ``nn.Module`` mapping a batch ``(n, n_features)`` to ``(n,)`` (or ``(n, 1)``) numbers.
    n_features:
        Columns of x (for ``categorical:K``: K one-hot columns per variable).
    domain:
        ``"continuous"`` (default), ``"binary"`` (0/1 columns) or ``"categorical:K"``.
    output:
        ``"energy"`` (the module returns U) or ``"log_density"`` (it returns log f = −U).
    sampler:
        A kernel of :mod:`boltzkit.sampling.mcmc` or its name (default ``"mala"`` for
        continuous x, ``"gibbs"`` for discrete x).
    support:
        ``(low, high)`` numbers or per-column sequences: the density lives on this box (U = +∞
        outside; MALA/HMC reject moves out of it, Langevin is clamped to it).  Default: ℝ^d.
    energy_penalty:
        α of the regulariser α·(mean U(x⁺)² + mean U(x⁻)²) (Du & Mordatch 2019), default 0.
    warn_after:
        Warn when a Metropolis kernel accepted nothing in this many consecutive updates.

    Example
    -------
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.SiLU(), torch.nn.Linear(32, 1))
    >>> model = EnergyFunctionModel(net, 2, sampler="mala")
    >>> model.free_energy(torch.zeros(5, 2)).shape
    torch.Size([5])
    """

    checkpoint_kind = "EnergyFunctionModel"
    checkpoint_description = "energy-function model"

    def __init__(self, energy: nn.Module, n_features: int, *, domain: str = "continuous",
                 output: str = "energy", sampler: Kernel | str | None = None,
                 support: tuple[Any, Any] | None = None, energy_penalty: float = 0.0,
                 warn_after: int = 20) -> None:
        super().__init__()
        if not isinstance(energy, nn.Module):
            raise ConfigurationError(f"energy must be a torch.nn.Module, got {type(energy).__name__}; wrap a "
                                     f"function in a Module whose forward returns one energy per row")
        check_int("n_features", n_features, least=1)
        self.kind, self.categories = parse_domain(domain)
        self.domain = domain
        self.output = check_choice("output", output, ("energy", "log_density"))
        self.energy_penalty = check_float("energy_penalty", energy_penalty, 0.0)
        self.warn_after = check_int("warn_after", warn_after, least=1)
        self.n_features = n_features
        if self.kind == "categorical" and n_features % self.categories:
            raise ConfigurationError(f"n_features = {n_features} is not a whole number of one-hot blocks "
                                     f"of {self.categories} categories")
        self.module = energy
        first = next(iter(energy.parameters()), None)
        dtype = first.dtype if first is not None else torch.get_default_dtype()
        device = first.device if first is not None else torch.device("cpu")
        self.sampler = self._bind(sampler)
        if hasattr(self.sampler, "step_size"):
            self.register_buffer("sampler_step_size",
                                 torch.tensor(float(self.sampler.step_size), dtype=dtype, device=device))
        self.support = None
        if support is not None:
            if self.kind != "continuous":
                raise ConfigurationError("support is for continuous x; binary and categorical x have their own domain")
            low, high = (torch.as_tensor(v, dtype=torch.float64).expand(n_features).clone() for v in support)
            if not bool((low < high).all()) or not bool(torch.isfinite(low).all() & torch.isfinite(high).all()):
                raise ConfigurationError(f"support must be finite (low, high) with low < high in every column, "
                                         f"got {support!r}")
            self.register_buffer("support_low", low.to(dtype=dtype, device=device), persistent=False)
            self.register_buffer("support_high", high.to(dtype=dtype, device=device), persistent=False)
            self.support = [low.tolist(), high.tolist()]
        # acceptance bookkeeping of _record, on the chains' device (no read-back per update)
        self._accept_sum: Tensor | None = None
        self._stuck: Tensor | None = None     # updates in a row that accepted nothing
        self._longest: Tensor | None = None   # the longest such run since the last check
        self._accept_runs = self._since_check = 0
        self._warned = False

    def _bind(self, sampler: Kernel | str | None) -> Kernel:
        """The kernel, checked against the domain (discrete kernels learn K from it)."""
        if sampler is None:
            sampler = "mala" if self.kind == "continuous" else "gibbs"
        if isinstance(sampler, (str, dict)):
            options = {"categories": self.categories} if self.kind == "categorical" else {}
            name = sampler if isinstance(sampler, str) else sampler.get("name")
            sampler = make_kernel(sampler, **(options if name in ("gibbs", "metropolis", "gwg") else {}))
        if not isinstance(sampler, Kernel):
            raise ConfigurationError(f"sampler must be a kernel of boltzkit.sampling.mcmc or its name, got "
                                     f"{type(sampler).__name__}")
        if sampler.continuous != (self.kind == "continuous"):
            what = "continuous" if sampler.continuous else "discrete"
            raise ConfigurationError(f"the {sampler.name} sampler is for {what} x but the domain is {self.domain}; "
                                     "use " + ("langevin, mala or hmc" if self.kind == "continuous"
                                               else "gibbs, metropolis or gwg"))
        if not sampler.continuous:
            k = self.categories or 2
            if sampler.categories is None and k > 2:
                sampler.categories = k
            if (sampler.categories or 2) != k:
                raise ConfigurationError(f"the {sampler.name} sampler has {sampler.categories} categories but the "
                                         f"domain is {self.domain}")
        return sampler

    # -- the density -------------------------------------------------------------------------
    def energy(self, x: Tensor) -> Tensor:
        """U_θ(x) per row, shape ``(n,)`` (+∞ outside the support)."""
        return self.free_energy(x)

    def free_energy(self, x: Tensor, beta: Beta = 1.0) -> Tensor:
        """β·U_θ(x) per row; U is the module's output (negated for ``output="log_density"``)."""
        out = self.module(x)
        if not isinstance(out, Tensor):
            raise ConfigurationError(f"the energy module returned a {type(out).__name__}; it must return a "
                                     f"tensor with one number per row")
        n = x.shape[0]
        if out.shape not in ((n,), (n, 1)):
            raise ConfigurationError(
                f"the energy module returned shape {tuple(out.shape)} for {n} rows of shape {tuple(x.shape[1:])}; "
                f"it must return one number per row, shape ({n},) or ({n}, 1): end it with a layer of one "
                f"output (e.g. nn.Linear(hidden, 1)) and sum over any other dimension")
        u = out.reshape(n)
        if self.output == "log_density":
            u = -u
        if self.support is not None:
            inside = ((x >= self.support_low) & (x <= self.support_high)).all(1)
            u = torch.where(inside, u, torch.full_like(u, math.inf))
        if isinstance(beta, Tensor) or beta != 1.0:
            u = u * (beta.reshape(-1) if isinstance(beta, Tensor) and beta.dim() > 1 else beta)
        return u

    def log_density(self, x: Tensor) -> Tensor:
        """log f_θ(x) = −U_θ(x), the unnormalised log-density."""
        return -self.free_energy(x)

    def check_data(self, x: Tensor, name: str = "data") -> None:
        """A finite 2-D batch of ``n_features`` columns, in the domain (0/1, one-hot, support)."""
        check_rows(x, name, width=self.n_features)
        if self.kind == "binary" and not bool(((x == 0) | (x == 1)).all()):
            raise DataError(f"{name} must be 0/1 for a binary domain")
        if self.kind == "categorical":
            blocks = x.reshape(x.shape[0], -1, self.categories)
            if not bool((((blocks == 0) | (blocks == 1)).all()) and bool((blocks.sum(-1) == 1).all())):
                raise DataError(f"{name} must be one-hot blocks of {self.categories} columns for {self.domain}")
        if self.support is not None:
            outside = ~((x >= self.support_low) & (x <= self.support_high)).all(1)
            if bool(outside.any()):
                i = int(outside.nonzero()[0, 0])
                raise DataError(f"{int(outside.sum())} rows of {name} lie outside the model's support "
                                f"{self.support} (e.g. row {i}); widen the support")

    # -- sampling ------------------------------------------------------------------------------
    def _bounds(self) -> tuple[Tensor, Tensor] | None:
        return None if self.support is None else (self.support_low, self.support_high)

    def random_states(self, n: int, reference: Tensor, generator: torch.Generator | None = None) -> ChainState:
        """``n`` fresh chain states from the noise law the replay buffer restarts from: uniform on
        the support (else on the box of ``reference``'s range, widened by 10 % each side) for
        continuous x, uniform 0/1 or categories for discrete x."""
        device = generator.device if generator is not None else reference.device
        dtype = reference.dtype
        if self.kind == "continuous":
            if self.support is not None:
                low, high = self.support_low.to(dtype), self.support_high.to(dtype)
            else:
                low, high = reference.min(0).values, reference.max(0).values
                pad = 0.1 * (high - low).clamp_min(1e-3)
                low, high = low - pad, high + pad
            u = torch.rand((n, self.n_features), generator=generator, device=device, dtype=dtype).to(reference.device)
            return ChainState(low + (high - low) * u)
        if self.kind == "binary":
            u = torch.rand((n, self.n_features), generator=generator, device=device, dtype=dtype)
            return ChainState((u < 0.5).to(dtype).to(reference.device))
        k = self.categories
        codes = torch.randint(k, (n, self.n_features // k), generator=generator, device=device)
        return ChainState(nn.functional.one_hot(codes, k).reshape(n, -1).to(dtype).to(reference.device))

    def _prepared(self, state: ChainState) -> ChainState:
        if hasattr(self, "sampler_step_size"):
            return self.sampler.init(state, self.sampler_step_size)  # type: ignore[call-arg]
        return self.sampler.init(state)

    def advance(self, state: ChainState, steps: int, generator: torch.Generator | None = None,
                beta: Beta = 1.0, mask: Tensor | None = None, final_mean: bool = False) -> ChainState:
        """``steps`` transitions of the model's kernel on p_β ∝ exp(−β U); records acceptance and
        the adapted step size (the next new chains start from it)."""
        if mask is not None:
            raise ConfigurationError("an energy-function model takes no per-example masks")
        if final_mean:
            raise ConfigurationError("an energy-function model has no conditional mean to end a chain on; "
                                     "use CD with visible='sample'")
        state = self.sampler.run(lambda x: self.free_energy(x, beta), self._prepared(state), steps, generator,
                                 self._bounds())
        self._record(state)
        return state

    def _record(self, state: ChainState) -> None:
        """Adapted step size and acceptance kept on the device; read back once every
        ``warn_after`` updates (for the no-mixing warning) and by :meth:`sampler_metrics`."""
        step = state.get("step_size")
        if step is not None and hasattr(self, "sampler_step_size"):
            self.sampler_step_size.fill_(step.mean())
        if not self.sampler.metropolis:
            return
        rate = state.layers["accept"].mean().double()
        self._accept_sum = rate if self._accept_sum is None else self._accept_sum + rate
        self._accept_runs += 1
        stuck = (rate < 1e-4).long() if self._stuck is None else (self._stuck + 1) * (rate < 1e-4)
        self._longest = stuck if self._longest is None else torch.maximum(self._longest, stuck)
        self._stuck = stuck
        self._since_check += 1
        if self._since_check == self.warn_after:
            self._warn_if_stuck()

    def _warn_if_stuck(self) -> None:
        """One warning per streak of ``warn_after`` or more updates without an accepted proposal."""
        assert self._longest is not None and self._stuck is not None
        longest, ongoing = (int(v) for v in torch.stack([self._longest, self._stuck]).tolist())
        if longest >= self.warn_after and not self._warned:
            hint = (f"lower its step size (now {float(self.sampler_step_size):.3g}) or raise adapt_rate"
                    if hasattr(self, "sampler_step_size") else
                    "check the energy module: it may be infinite or NaN next to every state")
            logger.warning(f"the {self.sampler.name} sampler accepted no proposal in {self.warn_after} "
                           f"consecutive updates: the chains do not mix; {hint}")
        self._warned = ongoing >= self.warn_after  # the warned streak goes on: no second warning
        self._longest = self._stuck.clone()
        self._since_check = 0

    def work_per_row(self) -> int:
        """Multiply-adds per row of one energy evaluation, ≈ the module's parameter count (for the
        trainer's thread rule: small energies run on one thread)."""
        return max(1, sum(p.numel() for p in self.parameters()))

    def sampler_metrics(self) -> dict[str, float]:
        """Mean acceptance rate of the kernel since the last call and the current step size."""
        out: dict[str, float] = {}
        if self._accept_runs and self._accept_sum is not None:
            out["acceptance_rate"] = float(self._accept_sum) / self._accept_runs
        if hasattr(self, "sampler_step_size"):
            out["step_size"] = float(self.sampler_step_size)
        self._accept_sum, self._accept_runs = None, 0
        return out

    def sample(self, n: int, steps: int, generator: torch.Generator | None = None,
               start: Tensor | None = None, reference: Tensor | None = None) -> Tensor:
        """``n`` samples after ``steps`` kernel transitions from ``start`` rows (default: fresh noise,
        :meth:`random_states`, on the range of ``reference``)."""
        check_int("n", n, least=1)
        check_int("steps", steps, least=1)
        param = next(self.parameters(), None)
        dtype = param.dtype if param is not None else torch.get_default_dtype()
        with torch.no_grad():
            if start is None:
                if reference is None and self.support is None and self.kind == "continuous":
                    raise ConfigurationError("sample needs start rows or reference data when the model has no support")
                ref = reference if reference is not None else torch.zeros(1, self.n_features, dtype=dtype)
                state = self.random_states(n, ref, generator)
            else:
                state = ChainState(start)
            return self.advance(state, steps, generator).visible

    # -- the gradient --------------------------------------------------------------------------
    def write_gradient(self, data: Tensor, negative: ChainState, positive: Any = None,
                       offsets: tuple[Tensor, Tensor] | None = None) -> None:
        """``.grad`` = ∇θ [mean U(x⁺) − mean U(x⁻) + α(mean U(x⁺)² + mean U(x⁻)²)], x⁻ fixed."""
        if offsets is not None:
            raise ConfigurationError("an energy-function model has no centered gradient")
        params = [p for p in self.parameters() if p.requires_grad]
        with torch.enable_grad():
            e_pos, e_neg = self.free_energy(data), self.free_energy(negative.visible.detach())
            loss = e_pos.mean() - e_neg.mean()
            if self.energy_penalty:
                loss = loss + self.energy_penalty * ((e_pos ** 2).mean() + (e_neg ** 2).mean())
            grads = torch.autograd.grad(loss, params, allow_unused=True)
        # one read-back for every check (on CUDA one synchronisation per update); details only on failure
        checked = [e_pos.detach(), e_neg.detach(), *(g for g in grads if g is not None)]
        if not bool(torch.stack([torch.isfinite(t).all() for t in checked]).all()):
            self._divergence(e_pos.detach(), e_neg.detach(), grads)
        for p, g in zip(params, grads):
            p.grad = torch.zeros_like(p) if g is None else g

    def _divergence(self, e_pos: Tensor, e_neg: Tensor, grads: Sequence[Tensor | None]) -> None:
        """The :class:`DivergenceError` naming what is not finite: the energies, else a gradient."""
        for e, what in ((e_pos, "data"), (e_neg, "negative samples")):
            bad = ~torch.isfinite(e)
            if bool(bad.any()):
                raise DivergenceError(
                    f"the energy is NaN or infinite on {int(bad.sum())} of {e.numel()} {what}: check the "
                    f"module for log/sqrt/division of non-positive values; if it trained for a while, "
                    f"lower the learning rate or set energy_penalty (e.g. 0.1)")
        names = [n for n, p in self.named_parameters() if p.requires_grad]
        for name, g in zip(names, grads):
            if g is not None and not bool(torch.isfinite(g).all()):
                raise DivergenceError(f"the gradient of {name} is NaN or infinite: lower the learning rate, "
                                      f"set energy_penalty (e.g. 0.1), or make the energy smooth in θ")

    # -- checkpoints -----------------------------------------------------------------------------
    def checkpoint_tensors(self) -> dict[str, Tensor]:
        """Every parameter and persistent buffer (the adapted step size included), '.' → '_'."""
        tensors = {name.replace(".", "_"): t for name, t in self.state_dict(keep_vars=True).items()}
        if len(tensors) != len(self.state_dict()):
            raise CheckpointError("two tensor names of the energy module differ only in '.' versus '_'; "
                                  "rename one to checkpoint the model")
        return tensors

    def config(self) -> dict[str, Any]:
        """Everything but the tensors: domain, sampler, support, and the energy module's class and
        config when it is registered (:func:`register_energy`), else its type name only."""
        module = type(self.module)
        if module.__name__ in ENERGY_MODULES and hasattr(self.module, "config"):
            energy = {"class": module.__name__, **self.module.config()}
        else:
            energy = {"class": None, "type": f"{module.__module__}.{module.__qualname__}"}
        param = next(self.parameters(), None)
        dtype = param.dtype if param is not None else torch.get_default_dtype()
        return {"model": self.checkpoint_kind, "n_features": self.n_features, "domain": self.domain,
                "output": self.output, "sampler": self.sampler.config(), "support": self.support,
                "energy_penalty": self.energy_penalty, "energy": energy,
                "dtype": str(dtype).removeprefix("torch.")}

    @classmethod
    def from_config(cls, config: dict[str, Any], device: str | torch.device | None = None,
                    module: nn.Module | None = None) -> EnergyFunctionModel:
        """Rebuild an (untrained) model; ``module`` is the energy module when it is user-defined."""
        if module is None:
            energy = dict(config.get("energy") or {})
            name = energy.pop("class", None)
            if name not in ENERGY_MODULES:
                raise CheckpointError(
                    f"the energy module is user-defined ({energy.get('type', name)}) and cannot be rebuilt from "
                    f"config.json: construct it yourself and call EnergyFunctionModel.load(directory, module=module)")
            module = ENERGY_MODULES[name](**energy)
        module = module.to(dtype=parse_dtype(config.get("dtype", "float32")), device=device)
        return cls(module, int(config["n_features"]), domain=config.get("domain", "continuous"),
                   output=config.get("output", "energy"), sampler=make_kernel(config["sampler"]),
                   support=config.get("support"), energy_penalty=config.get("energy_penalty", 0.0))

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device | None = None,
             module: nn.Module | None = None) -> EnergyFunctionModel:
        """The model saved in ``directory``; pass ``module`` (constructed like the saved one) when the
        energy module is user-defined."""
        from .. import checkpoint

        config = checkpoint.read_config(directory)
        if config.get("model") != cls.checkpoint_kind:
            raise CheckpointError(f"{directory} holds a {config.get('model', 'RBM')} checkpoint, not an "
                                  f"{cls.checkpoint_description}")
        tensors = checkpoint.load_tensors(directory, config)
        try:
            model = cls.from_config(config, device, module)
            model.load_checkpoint_tensors(tensors)
        except CheckpointError as e:
            raise CheckpointError(f"{directory}: {e}") from None
        return model
