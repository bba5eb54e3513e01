"""The model protocol every trainable model of boltzkit implements.

Two families share one trainer (:class:`boltzkit.training.Trainer`):

- :class:`EnergyModel` — a density p(x) = e^{−F(x)}/Z over the visible data, with F the
  free energy (hidden units summed out, or the energy itself when there are none).  The
  log-likelihood gradient is

      ∂ ln p(x)/∂θ = −∂F(x)/∂θ + E_{p}[∂F/∂θ],

  so a gradient estimator needs only samples x⁻ from a Markov chain that the model knows how
  to start and advance (:meth:`EnergyModel.init_chains`, :meth:`EnergyModel.advance`) and
  writes ``.grad`` = ∇θ [mean F(x⁺) − mean F(x⁻)] (:meth:`EnergyModel.write_gradient`; the
  generic path is autograd, models with a closed form override it).
- :class:`LossModel` — a model trained by a differentiable loss (RNN, LSTM, the GAN's two
  networks): the trainer's :class:`~boltzkit.training.LossStep` calls ``loss.backward()``.

Both give :meth:`config` / :meth:`from_config` and their checkpoint tensors, so one
checkpoint format (:mod:`boltzkit.checkpoint`) saves and loads every kind.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..errors import ConfigurationError, DataError
from ..sampling.state import ChainState
from .units import Beta, all_finite


class Model(nn.Module):
    """What every model kind shares: the checkpoint parts (a registered kind name, config and
    tensors) and the hooks the trainer calls (weight decay, initialisation from data)."""

    #: the ``"model"`` entry of config.json, the key of the checkpoint registry
    checkpoint_kind: ClassVar[str] = ""
    #: how error messages name the kind ("plain RBM", "collaborative-filtering model", …)
    checkpoint_description: ClassVar[str] = "model"

    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild an identical (untrained) model, JSON-serialisable."""
        raise NotImplementedError

    def checkpoint_tensors(self) -> dict[str, Tensor]:
        """The tensors saved in ``model.safetensors`` (default: parameters, '.' → '_')."""
        return {name.replace(".", "_"): p for name, p in self.named_parameters()}

    @classmethod
    def from_config(cls, config: dict[str, Any], device: str | torch.device | None = None) -> Model:
        """An untrained model as :meth:`config` describes it."""
        raise NotImplementedError

    @classmethod
    def from_checkpoint(cls, config: dict[str, Any], tensors: dict[str, Tensor],
                        device: str | torch.device | None = None) -> Any:
        """Rebuild the saved model: :meth:`from_config`, then copy the tensors in (checked)."""
        model = cls.from_config(config, device=device)
        model.load_checkpoint_tensors(tensors)
        return model

    def save(self, directory: str | Path) -> Path:
        """Write this model to ``directory`` (:func:`boltzkit.checkpoint.save`: atomic, no pickle)."""
        from .. import checkpoint

        return checkpoint.save(directory, self)

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device | None = None) -> Model:
        """The model saved in ``directory``, bit for bit; refuses a checkpoint of another kind."""
        from .. import checkpoint

        model: Model = checkpoint.load_checkpoint(directory, device, kind=cls).model
        return model

    # -- training hooks -----------------------------------------------------------------------
    def decay_parameters(self) -> list[nn.Parameter]:
        """Parameters that get weight decay (default: every parameter of two or more dimensions)."""
        return [p for p in self.parameters() if p.dim() >= 2]

    def init_from_data(self, mean: Tensor) -> None:
        """Set parameters from the data's column means before training (default: nothing)."""

    def sampler_metrics(self) -> dict[str, float]:
        """Diagnostics of the model's own MCMC kernel since the last call (acceptance rate, step
        size), merged into the trainer's per-epoch metrics; none by default."""
        return {}

    def work_per_row(self) -> int | None:
        """Multiply-adds per data row of one matrix product, for the thread rule (None: unknown)."""
        return None

    def load_checkpoint_tensors(self, tensors: dict[str, Tensor]) -> None:
        """Copy ``tensors`` into :meth:`checkpoint_tensors` in place; names and shapes must match."""
        from ..errors import CheckpointError

        own = self.checkpoint_tensors()
        missing, extra = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
        if missing or extra:
            raise CheckpointError("model tensors do not match the config: "
                                  + (f"missing {missing}" if missing else "")
                                  + ("; " if missing and extra else "")
                                  + (f"unexpected {extra}" if extra else ""))
        with torch.no_grad():
            for name, p in own.items():
                t = tensors[name]
                if tuple(t.shape) != tuple(p.shape):
                    raise CheckpointError(f"tensor {name!r} has shape {tuple(t.shape)}, "
                                          f"the config implies {tuple(p.shape)}")
                if not t.dtype.is_floating_point and p.dtype.is_floating_point:
                    raise CheckpointError(f"tensor {name!r} has dtype {t.dtype}; expected a float tensor")
                if t.dtype.is_floating_point and not all_finite(t):
                    raise CheckpointError(f"tensor {name!r} contains NaN or inf")
                p.copy_(t)


class EnergyModel(Model):
    """A density over visible rows given by its free energy F_θ(x); see the module docstring.

    Subclasses implement :meth:`free_energy` and :meth:`advance` (one or more steps of an
    MCMC kernel that leaves p_β ∝ e^{−F_β} invariant) and may override the rest.
    ``forward(x)`` is the free energy, as for energy-based models in PyTorch generally.
    """

    def forward(self, x: Tensor) -> Tensor:
        """F(x) per row (see :meth:`free_energy`)."""
        return self.free_energy(x)

    def free_energy(self, x: Tensor, beta: Beta = 1.0) -> Tensor:
        """F_β(x) per row, shape ``(batch,)``."""
        raise NotImplementedError

    def free_energies(self, x: Tensor, betas: list[Tensor], field: Tensor | None = None) -> Tensor:
        """F_β(x) for each β of ``betas`` (``(batch, 1)`` tensors), stacked: ``(len(betas), batch)``.
        Models override it to share the work that does not depend on β: ``field`` is what
        :meth:`tempered_field` returned for ``x`` (None: computed here)."""
        return torch.stack([self.free_energy(x, beta) for beta in betas])

    def tempered_field(self, x: Tensor) -> Tensor | None:
        """The work on rows ``x`` that does not depend on β and that both :meth:`free_energies`
        and the next sweep of :meth:`advance` can reuse — an RBM's hidden field, which a chain
        state carries as its ``hidden_field`` layer; None (the default): nothing is shared."""
        return None

    # -- sampling ---------------------------------------------------------------------------
    def init_chains(self, data: Tensor, n: int, generator: torch.Generator | None = None) -> ChainState:
        """Start ``n`` chains at rows of ``data`` drawn uniformly with repetition.

        The indices are drawn on the generator's device (a CUDA generator cannot draw on the
        CPU), so the same code runs on every device.
        """
        device = generator.device if generator is not None else data.device
        index = torch.randint(data.shape[0], (n,), generator=generator, device=device)
        return ChainState(data[index.to(data.device)].clone())

    def chain_start(self, data: Tensor, positive: Any, generator: torch.Generator | None = None
                    ) -> ChainState:
        """The state CD-k starts from: the data itself (a model may add layers it already knows,
        e.g. the RBM's hidden sample from the positive phase's field)."""
        return ChainState(data)

    def advance(self, state: ChainState, steps: int, generator: torch.Generator | None = None,
                beta: Beta = 1.0, mask: Tensor | None = None, final_mean: bool = False) -> ChainState:
        """``steps`` transitions of the model's MCMC kernel at inverse temperature β.

        ``mask`` keeps masked visible entries at 0; ``final_mean`` ends on the conditional
        mean of the visible layer instead of a sample (where the model has one)."""
        raise NotImplementedError

    # -- the gradient -----------------------------------------------------------------------
    def positive_phase(self, data: Tensor) -> Any:
        """What the positive phase computes once and the negative phase may reuse (RBM: the
        hidden field); None by default."""
        return None

    def write_gradient(self, data: Tensor, negative: ChainState, positive: Any = None,
                       offsets: tuple[Tensor, Tensor] | None = None) -> None:
        """``p.grad = ∇θ [mean F(x⁺) − mean F(x⁻)]`` for every parameter, samples held fixed."""
        if offsets is not None:
            raise ConfigurationError(f"{type(self).__name__} has no centered gradient")
        free_energy_gradient(self, data, negative.visible)

    @contextlib.contextmanager
    def conditioned(self, context: Tensor | None) -> Iterator[None]:
        """Condition the model on a per-row context for the block (models without one refuse)."""
        if context is not None:
            raise ConfigurationError(f"{type(self).__name__} takes no context; drop the batch's context")
        yield

    def check_data(self, x: Tensor, name: str = "data") -> None:
        """Raise :class:`DataError` unless ``x`` is a non-empty, finite 2-D batch."""
        check_rows(x, name)


class LossModel(Model):
    """A model trained by minimising :meth:`loss` of a batch (RNN, LSTM, GAN networks)."""

    def loss(self, batch: Any) -> Tensor:
        """A scalar whose gradient the trainer back-propagates."""
        raise NotImplementedError

    def check_data(self, x: Tensor, name: str = "data") -> None:
        if not all_finite(x):
            raise DataError(f"{name} contains NaN or inf")


def check_training_data(model: Any, x: Any, config: Any, name: str = "data") -> None:
    """``model.check_data(x)``; for ``config.sample_data`` (rows of probabilities, drawn afresh
    by the trainer) only the shape and finiteness: the trainer checks their range.  A list of
    configs (one per layer of a stack) is judged by the first, which sees ``x``."""
    first = config[0] if isinstance(config, (list, tuple)) and config else config
    if getattr(first, "sample_data", False):
        check_rows(x, name)
    else:
        model.check_data(x, name)


def check_rows(x: Any, name: str = "data", width: int | None = None) -> None:
    """The checks every model does first: a 2-D tensor, rows, the right width, finite values."""
    if not isinstance(x, Tensor):
        raise DataError(f"{name} must be a torch.Tensor (got {type(x).__name__}); convert NumPy "
                        f"arrays with torch.from_numpy(x)")
    if x.dim() != 2:
        raise DataError(f"{name} must be 2-D (samples × features), got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise DataError(f"{name} is empty (0 rows)")
    if width is not None and x.shape[1] != width:
        raise DataError(f"{name} has {x.shape[1]} columns but the model has {width} visible columns")
    if not all_finite(x):
        raise DataError(f"{name} contains NaN or inf")


def free_energy_gradient(model: EnergyModel, data: Tensor, negative: Tensor) -> None:
    """``.grad`` = ∇θ [mean F(x⁺) − mean F(x⁻)] by autograd, x⁻ held fixed (the generic path)."""
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.enable_grad():
        loss = model.free_energy(data).mean() - model.free_energy(negative.detach()).mean()
        grads = torch.autograd.grad(loss, params, allow_unused=True)
    for p, g in zip(params, grads):
        p.grad = torch.zeros_like(p) if g is None else g


def free_energy_gap(model: EnergyModel, data: Tensor, negative: Tensor) -> Tensor:
    """mean F(x⁺) − mean F(x⁻): the surrogate whose gradient every estimator writes."""
    return model.free_energy(data).mean() - model.free_energy(negative).mean()
