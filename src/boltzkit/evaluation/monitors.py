"""Quantities to watch during and after training: reconstruction error, pseudo-likelihood,
and callbacks that log the log-likelihood (exact for small models, AIS for large ones)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.nn import functional as F

from ..errors import ConfigurationError
from ..models.base import check_rows
from ..models.rbm import RBM
from ..training.batches import as_tensor
from ..training.callbacks import PeriodicCallback
from ..validation import check_int
from . import ais, exact

if TYPE_CHECKING:
    from ..training.trainer import Trainer


def reconstruction_error(rbm: RBM, data: Tensor) -> float:
    """Mean squared error per visible column between v and E[v | E[h|v]]."""
    with torch.no_grad():
        return float(((rbm.reconstruct(data) - data) ** 2).mean())


def pseudo_log_likelihood(rbm: RBM, data: Tensor, chunk_rows: int | None = None) -> float:
    """Mean over rows of Σ_i log p(v_i | v_{−i}), over *all* visible sites (binary units);
    see :func:`pseudo_log_likelihood_rows` (a tensor or NumPy array, checked like training data)."""
    rows = pseudo_log_likelihood_rows(rbm, data, chunk_rows)
    return float(rows.sum()) / rows.shape[0]


def pseudo_log_likelihood_rows(rbm: RBM, data: Tensor, chunk_rows: int | None = None) -> Tensor:
    """Σ_i log p(v_i | v_{−i}) per row (float64), over *all* visible sites (binary units).

    Flipping site i (v_i → 1 − v_i) changes the free energy by ΔF_i = F(v^{(i)}) − F(v), and
    log p(v_i | v_{−i}) = log σ(ΔF_i).  The flipped hidden fields are
    a + (1 − 2v_i) W_i, so every site costs one extra log-partition, no extra matrix product.
    """
    if rbm.visible.kind != "bernoulli":
        raise ConfigurationError("pseudo-likelihood is implemented for binary visible units")
    # NumPy arrays too, on the model's device and dtype; 2-D, the model's width, finite (values
    # in [0, 1] other than 0/1 are allowed: scikit-learn's BernoulliRBM scores probabilities)
    data = as_tensor(data).to(rbm.weight.device, rbm.weight.dtype)
    check_rows(data, "data", rbm.visible.dim)
    n_v, n_h = rbm.weight.shape
    rows = chunk_rows or max(1, 2 ** 22 // (n_v * n_h))
    out = []
    with torch.no_grad():
        for v in data.split(rows):
            field = rbm.hidden_field(v)                                  # (B, H)
            sign = 1 - 2 * v                                             # +1 turns 0→1
            flipped = field.unsqueeze(1) + sign.unsqueeze(2) * rbm.weight  # (B, V, H)
            # ΔF_i = −b_i·sign_i − [logZ_h(flipped_i) − logZ_h(field)]
            delta = (-rbm.visible.bias * sign
                     - rbm.hidden.log_partition(flipped) + rbm.hidden.log_partition(field).unsqueeze(1))
            out.append(F.logsigmoid(delta).sum(-1, dtype=torch.float64))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def _named_sets(data: Tensor | Mapping[str, Tensor], default: str) -> dict[str, Tensor]:
    sets = dict(data) if isinstance(data, Mapping) else {default: data}
    if not sets:
        raise ConfigurationError("give at least one data set to monitor")
    return sets


class ExactLikelihood(PeriodicCallback):
    """Records the exact mean log-likelihood −mean F(v) − log Z of each data set.

    ``data`` is a tensor (recorded as ``log_likelihood``) or a mapping metric name → tensor;
    log Z is enumerated once per evaluation (:func:`boltzkit.exact.log_partition`), so the
    model must be tractable.
    """

    def __init__(self, data: Tensor | Mapping[str, Tensor], every: int = 1) -> None:
        super().__init__(every)
        self.sets = _named_sets(data, "log_likelihood")

    def on_train_begin(self, trainer: Trainer) -> None:
        exact.enumerated_layer(trainer.model)  # raises before training if log Z is intractable

    def measure(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        log_z = exact.log_partition(trainer.model)
        for name, x in self.sets.items():
            metrics[name] = exact.log_likelihood(trainer.model, x, log_z)


class AISLikelihood(PeriodicCallback):
    """Records the AIS estimate of the mean log-likelihood of each data set, with its interval.

    Every ``every`` epochs, forward :func:`boltzkit.ais.ais` estimates log Ẑ with a short
    schedule (``n_betas`` β in the paper's proportions, ``n_chains`` chains; base model from
    the marginals of ``base_data``, default the first set) and each set ``name`` gets
    ``name`` = −mean F(v) − log Ẑ and ``name_low`` / ``name_high`` from log Ẑ ± 3 standard
    errors of mean(w) (:func:`boltzkit.ais.log_likelihood`).  ``data`` is a tensor (recorded as
    ``ais_log_likelihood``) or a mapping metric name → tensor.

    The chains draw from a generator of their own, seeded ``seed`` afresh at every
    evaluation: training (its generator, its parameters) is untouched, and the estimates at
    different epochs share their random numbers, so their differences are less noisy than
    the estimates.  AIS tends to underestimate log Z (Jensen), i.e. to overstate the
    log-likelihood, the more so the shorter the schedule.
    """

    def __init__(self, data: Tensor | Mapping[str, Tensor], every: int = 1, *, n_betas: int = 1000,
                 n_chains: int = 100, seed: int = 0, base_data: Tensor | None = None) -> None:
        super().__init__(every)
        self.sets = _named_sets(data, "ais_log_likelihood")
        ais.default_betas(n_betas)  # validates the count
        check_int("n_chains", n_chains, least=1)
        self.n_betas, self.n_chains, self.seed = n_betas, n_chains, seed
        self.base_data = next(iter(self.sets.values())) if base_data is None else base_data
        self.last: ais.AISResult | None = None

    def on_train_begin(self, trainer: Trainer) -> None:
        ais.check_model(trainer.model)  # raises before training for unsupported hidden units

    def measure(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        rbm = trainer.model
        generator = torch.Generator(trainer.device).manual_seed(self.seed)
        base = self.base_data.to(trainer.device, trainer.dtype)
        self.last = ais.ais(rbm, base, n_chains=self.n_chains, betas=self.n_betas, generator=generator)
        for name, x in self.sets.items():
            ll = ais.log_likelihood(rbm, x.to(trainer.device, trainer.dtype), self.last)
            metrics[name], metrics[f"{name}_low"], metrics[f"{name}_high"] = ll.mean, ll.low, ll.high
