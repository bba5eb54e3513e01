"""Deep belief networks (Hinton, Osindero & Teh 2006): a stack of RBMs trained greedily.

A DBN with layers x_0 = v, x_1, …, x_L is the directed model

    p(v, h¹, …, h^L) = p(v | h¹) p(h¹ | h²) ⋯ p(h^{L−2} | h^{L−1}) p(h^{L−1}, h^L)

whose top two layers form an RBM and whose lower conditionals are the visible conditionals
p(x_{l−1} | x_l) of the RBMs below.  Training is greedy and layer-wise (:func:`greedy_train`):
RBM l is trained by the common :class:`~boltzkit.training.Trainer` on the hidden means (or
samples) of RBM l−1; no training loop is written here.  Any unit types that the RBM accepts
can be stacked (a layer's hidden type is the next RBM's visible type).

- :meth:`DBN.sample` — Gibbs sampling in the top RBM, then one downward pass;
- :meth:`DBN.transform` — features E[x_l | x_{l−1}] up to any layer (the recognition pass);
- :class:`DBNNet` — fine-tuning: the stack as a feed-forward ``torch.nn.Module`` with a
  classifier or regressor head, a :class:`~boltzkit.models.LossModel` trained by
  back-propagation through the same trainer (:class:`~boltzkit.training.LossStep`).

The log-likelihood lower bound of Salakhutdinov & Murray (2008) is
:func:`boltzkit.evaluation.deep.dbn_log_likelihood`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..checkpoint import register
from ..errors import CheckpointError, ConfigurationError, DataError
from ..training.batches import TensorBatches, as_tensor
from ..training.config import TrainingConfig
from ..validation import check_choice, check_int, parse_dtype
from .base import LossModel, Model, check_rows, check_training_data
from .rbm import RBM
from .units import Units

#: rows per block when features are computed for a whole data set
FEATURE_BLOCK = 4096


def log_conditional(units: Units, x: Tensor, field: Tensor) -> Tensor:
    """log p(x | field) = −E_self(x) + φ(x)·(field − bias) − log-partition(field), per row:
    the log-probability (or density) of a layer given the field from the other layer."""
    return -units.self_energy(x) + (units.statistic(x) * (field - units.bias)).sum(-1) - units.log_partition(field)


class FeatureBatches(TensorBatches):
    """The hidden means of the layer below as training data of the next RBM: real values in
    the range of the units' means (e.g. probabilities for Bernoulli units), so only shape and
    finiteness are checked, not membership in the units' states."""

    def check(self, model: Any, name: str | None = None) -> None:
        check_rows(self.values, name or self.name, model.visible.dim)

    def to(self, device: torch.device, dtype: torch.dtype) -> FeatureBatches:
        return FeatureBatches(self.values.to(device, dtype).contiguous(), name=self.name)


def up_pass(rbm: RBM, x: Tensor, how: str = "mean", generator: torch.Generator | None = None) -> Tensor:
    """E[h | x] (``how="mean"``) or a draw h ~ p(h | x) (``"sample"``) for every row, in blocks."""
    check_choice("propagate", how, ("mean", "sample"))
    w = rbm.weight
    with torch.no_grad():
        out = [rbm.hidden_mean(b.to(w.device, w.dtype)) if how == "mean"
               else rbm.sample_hidden(b.to(w.device, w.dtype), generator)
               for b in x.split(FEATURE_BLOCK)]
    return torch.cat(out)


def _layer_configs(config: TrainingConfig | Sequence[TrainingConfig] | None, n: int) -> list[TrainingConfig]:
    """One config per layer: a sequence as given, or one config with seed + layer index."""
    if config is None:
        config = TrainingConfig()
    if isinstance(config, TrainingConfig):
        return [dataclasses.replace(config, seed=config.seed + i) for i in range(n)]
    configs = list(config)
    if len(configs) != n or not all(isinstance(c, TrainingConfig) for c in configs):
        raise ConfigurationError(f"give one TrainingConfig or a list of {n} (one per layer), got {len(configs)}")
    return configs


def greedy_train(rbms: Sequence[RBM], data: Any, config: TrainingConfig | Sequence[TrainingConfig] | None = None,
                 propagate: str = "mean", progress: bool = False,
                 callbacks: Callable[[int, RBM], list] | None = None) -> list[list[dict[str, float]]]:
    """Train ``rbms`` bottom-up, each by :class:`~boltzkit.training.Trainer` on the output of
    the one below: ``data`` for the first, then E[h | x] (``propagate="mean"``) or one draw
    h ~ p(h | x) (``"sample"``, from a generator seeded with the layer's config seed).

    ``config``: one :class:`TrainingConfig` (layer i runs with seed + i) or one per layer;
    ``callbacks(i, rbm)`` returns the callbacks of layer i.  Returns each layer's history.
    """
    from ..training.trainer import Trainer

    how = check_choice("propagate", propagate, ("mean", "sample"))
    configs = _layer_configs(config, len(rbms))
    x = as_tensor(data)
    histories = []
    for i, (rbm, cfg) in enumerate(zip(rbms, configs)):
        source = x if i == 0 or how == "sample" else FeatureBatches(x, name=f"layer {i} features")
        trainer = Trainer(rbm, cfg, callbacks=list(callbacks(i, rbm)) if callbacks else [], progress=progress)
        trainer.fit(source)
        histories.append(trainer.history)
        if i < len(rbms) - 1:
            generator = torch.Generator(rbm.weight.device).manual_seed(cfg.seed + 7919)
            x = up_pass(rbm, x, how, generator)
    return histories


@register
class DBN(Model):
    """A deep belief network: a stack of RBMs, ``sizes[0]`` visible units and one hidden
    layer per further entry.

    Parameters
    ----------
    sizes:
        Units per layer, visible first (at least two entries).
    units:
        One unit type for every layer, or a list with one per layer (``"bernoulli"``,
        ``"gaussian"`` for real-valued data, ``"relu"`` for the top layer only, …).
    weight_scale, seed, dtype, device:
        As for :class:`~boltzkit.models.RBM` (RBM i gets seed + i).

    Example
    -------
    >>> dbn = DBN([784, 500, 1000], seed=0)
    >>> dbn.transform(torch.zeros(3, 784), layer=1).shape
    torch.Size([3, 500])
    """

    checkpoint_kind = "DBN"
    checkpoint_description = "deep belief network"

    def __init__(self, sizes: Sequence[int], units: str | Sequence[str] = "bernoulli", *,
                 weight_scale: float = 0.01, seed: int | None = 0, dtype: torch.dtype = torch.float32,
                 device: str | torch.device | None = None) -> None:
        super().__init__()
        sizes = list(sizes)
        if len(sizes) < 2:
            raise ConfigurationError(f"a DBN needs a visible and at least one hidden layer, got sizes {sizes}")
        for i, n in enumerate(sizes):
            check_int(f"layer {i} size", n, least=1)
        kinds = [units] * len(sizes) if isinstance(units, str) else list(units)
        if len(kinds) != len(sizes):
            raise ConfigurationError(f"give one unit type or {len(sizes)} (one per layer), got {len(kinds)}")
        self.rbms = nn.ModuleList()
        for i in range(len(sizes) - 1):
            rbm = RBM(sizes[i], sizes[i + 1], visible=kinds[i], hidden=kinds[i + 1], weight_scale=weight_scale,
                      seed=None if seed is None else seed + i, dtype=dtype, device=device)
            if rbm.hidden.hidden_only and i < len(sizes) - 2:
                raise ConfigurationError(f"{kinds[i + 1]} units can only be the top layer of a DBN (layer {i + 1} "
                                         f"is the visible layer of the RBM above); use e.g. bernoulli or gaussian")
            self.rbms.append(rbm)

    # -- description ---------------------------------------------------------------------------
    @property
    def sizes(self) -> list[int]:
        return [self.rbms[0].n_visible] + [rbm.n_hidden for rbm in self.rbms]

    @property
    def units(self) -> list[str]:
        return [self.rbms[0].visible.spec()] + [rbm.hidden.spec() for rbm in self.rbms]

    @property
    def top(self) -> RBM:
        """The top RBM (layers L−1 and L): the undirected part of the DBN."""
        return self.rbms[-1]

    def config(self) -> dict[str, Any]:
        return {"model": self.checkpoint_kind, "sizes": self.sizes, "units": self.units,
                "dtype": str(self.rbms[0].weight.dtype).removeprefix("torch.")}

    @classmethod
    def from_config(cls, config: dict[str, Any], device: str | torch.device | None = None) -> DBN:
        sizes, units = config.get("sizes"), config.get("units", "bernoulli")
        if not isinstance(sizes, list) or len(sizes) < 2:
            raise CheckpointError(f"config.json: sizes must list at least two layer sizes, got {sizes!r}")
        return cls(sizes, units, seed=None, dtype=parse_dtype(config.get("dtype", "float32")), device=device)

    def decay_parameters(self) -> list[nn.Parameter]:
        return [rbm.weight for rbm in self.rbms]

    def check_data(self, x: Tensor, name: str = "data") -> None:
        self.rbms[0].check_data(x, name)

    # -- training ------------------------------------------------------------------------------
    def fit(self, data: Any, config: TrainingConfig | Sequence[TrainingConfig] | None = None,
            propagate: str = "mean", progress: bool = False,
            callbacks: Callable[[int, RBM], list] | None = None) -> list[list[dict[str, float]]]:
        """Greedy layer-wise training (:func:`greedy_train`); returns each layer's history."""
        x = as_tensor(data)
        check_training_data(self, x, config)
        return greedy_train(list(self.rbms), x, config, propagate=propagate, progress=progress,
                            callbacks=callbacks)

    # -- features and samples ------------------------------------------------------------------
    def transform(self, x: Tensor, layer: int | None = None) -> Tensor:
        """Features E[x_l | x_{l−1}] applied up to ``layer`` (1 … L; default the top), no gradient."""
        layer = len(self.rbms) if layer is None else check_int("layer", layer, least=1, most=len(self.rbms))
        x = as_tensor(x)
        for rbm in self.rbms[:layer]:
            x = up_pass(rbm, x, "mean")
        return x

    def sample(self, n: int, steps: int = 1000, generator: torch.Generator | None = None,
               mean: bool = True) -> Tensor:
        """``n`` samples: ``steps`` Gibbs sweeps in the top RBM (from x_{L−1} ~ p(x | h = 0)),
        then x_{l−1} ~ p(x_{l−1} | x_l) down to the visible layer, which is E[v | h¹] when
        ``mean`` (else a draw)."""
        check_int("n", n, least=1)
        check_int("steps", steps, least=0)
        top = self.top
        with torch.no_grad():
            x = top.visible.sample(top.visible.bias.detach().expand(n, -1).contiguous(), generator)
            x = top.sample(x, steps, generator) if steps else x
            for i, rbm in enumerate(reversed(self.rbms[:-1])):
                last = i == len(self.rbms) - 2
                x = rbm.visible_mean(x) if (last and mean) else rbm.sample_visible(x, generator)
            if len(self.rbms) == 1 and mean:
                x = top.visible_mean(top.sample_hidden(x, generator))
        return x

    def network(self, n_outputs: int, task: str = "classification", seed: int = 0) -> DBNNet:
        """The stack as a feed-forward network with a head for fine-tuning (shares the weights)."""
        return DBNNet(self, n_outputs, task, seed=seed)


@register
class DBNNet(LossModel):
    """A DBN fine-tuned by back-propagation: x ↦ head(σ(⋯σ(x W_1 + c_1)⋯ W_L + c_L)).

    Each layer is the RBM's mean E[h | x] (so any hidden unit type works), the head is a
    linear layer; ``task="classification"`` minimises the cross-entropy of integer labels,
    ``"regression"`` the mean squared error of real targets.  The targets travel as the
    batch's ``context`` (see :meth:`fit`), so the common trainer runs it with
    :class:`~boltzkit.training.LossStep`.

    Example
    -------
    >>> net = DBN([784, 500, 500]).network(10)
    >>> history = net.fit(x, labels, TrainingConfig(epochs=10, lr=0.1))   # doctest: +SKIP
    >>> error = (net.predict(x_test) != y_test).float().mean()           # doctest: +SKIP
    """

    checkpoint_kind = "DBNNet"
    checkpoint_description = "fine-tuned deep belief network"

    def __init__(self, dbn: DBN, n_outputs: int, task: str = "classification", seed: int | None = 0) -> None:
        super().__init__()
        check_int("n_outputs", n_outputs, least=1)
        self.task = check_choice("task", task, ("classification", "regression"))
        self.dbn = dbn
        w = dbn.rbms[0].weight
        self.head = nn.Linear(dbn.sizes[-1], n_outputs, dtype=w.dtype, device=w.device)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(self.head.weight.shape, generator=generator) * 0.01)
            self.head.bias.zero_()

    @property
    def n_outputs(self) -> int:
        return self.head.out_features

    def config(self) -> dict[str, Any]:
        return {"model": self.checkpoint_kind, "dbn": self.dbn.config(), "n_outputs": self.n_outputs,
                "task": self.task}

    @classmethod
    def from_config(cls, config: dict[str, Any], device: str | torch.device | None = None) -> DBNNet:
        if not isinstance(config.get("dbn"), dict):
            raise CheckpointError("config.json: a DBNNet needs the 'dbn' entry describing its stack")
        return cls(DBN.from_config(config["dbn"], device), int(config["n_outputs"]),
                   config.get("task", "classification"), seed=None)

    def check_data(self, x: Tensor, name: str = "data") -> None:
        self.dbn.check_data(x, name)

    def features(self, x: Tensor) -> Tensor:
        """The top layer's means, with gradient."""
        for rbm in self.dbn.rbms:
            x = rbm.hidden_mean(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        """Logits (classification) or predictions (regression), shape ``(batch, n_outputs)``."""
        return self.head(self.features(x))

    def loss(self, batch: Any) -> Tensor:
        """Cross-entropy of the labels in ``batch.context`` (or their squared error)."""
        out = self(batch.values)
        if batch.context is None:
            raise DataError("fine-tuning needs targets: pass them as the batch context (DBNNet.fit does)")
        if self.task == "classification":
            return F.cross_entropy(out, batch.context.reshape(-1).long())
        return F.mse_loss(out, batch.context.reshape(out.shape).to(out.dtype))

    def predict(self, x: Tensor) -> Tensor:
        """Class indices (classification) or predictions (regression), no gradient."""
        x = as_tensor(x)
        w = self.head.weight
        with torch.no_grad():
            out = torch.cat([self(b.to(w.device, w.dtype)) for b in x.split(FEATURE_BLOCK)])
        return out.argmax(1) if self.task == "classification" else out

    def targets(self, y: Any, rows: int) -> Tensor:
        """``y`` checked against the task: integer labels 0 … n_outputs−1 (classification), or
        one real row per case (regression); returned as a float tensor (the batch context)."""
        y = as_tensor(y, "labels")
        if y.shape[0] != rows:
            raise DataError(f"labels: {y.shape[0]} rows for {rows} data rows")
        if self.task == "classification":
            y = y.reshape(-1)
            bad = (y != torch.round(y)) | (y < 0) | (y >= self.n_outputs)
            if bool(bad.any()):
                raise DataError(f"labels must be integers 0..{self.n_outputs - 1} (first bad row "
                                f"{int(bad.nonzero()[0, 0])}, value {float(y[bad][0]):g})")
        elif y.reshape(rows, -1).shape[1] != self.n_outputs:
            raise DataError(f"targets have {y.reshape(rows, -1).shape[1]} columns, "
                            f"the network {self.n_outputs} outputs")
        return y.to(self.head.weight.dtype)

    def fit(self, x: Any, y: Any, config: TrainingConfig | None = None, progress: bool = False,
            callbacks: Sequence[Any] = ()) -> list[dict[str, float]]:
        """Fine-tune on ``(x, y)`` with the common trainer (shuffled, seeded, resumable)."""
        from ..training.trainer import Trainer

        x = as_tensor(x)
        self.check_data(x)
        source = TensorBatches(x, context=self.targets(y, x.shape[0]), name="data")
        config = config or TrainingConfig(epochs=10, lr=0.1, momentum=0.9, weight_decay=0.0)
        trainer = Trainer(self, config, callbacks=list(callbacks), progress=progress)
        return trainer.fit(source)


__all__ = ["DBN", "DBNNet", "greedy_train", "up_pass", "log_conditional", "FeatureBatches"]
