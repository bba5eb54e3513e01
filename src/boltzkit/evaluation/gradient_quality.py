"""How good is a gradient estimator?  Bias, variance and direction against the exact gradient.

For a model small enough to enumerate, :func:`boltzkit.exact.log_likelihood_gradient` gives
g = ∇θ mean log p(v).  An estimator fills ``.grad`` with an estimate of −g (the gradient of
the loss), so its estimate of g is ĝ = −``.grad``.  Over ``repeats`` draws ĝ_1 … ĝ_R (made
on a copy of the model and of the estimator, so neither the caller's parameters nor its
persistent chains move)::

    bias_norm = ‖ mean_r ĝ_r − g ‖
    variance  = (1/(R−1)) Σ_r ‖ ĝ_r − mean ĝ ‖²        (trace of the covariance)
    cosine    = mean_r  ĝ_r·g / (‖ĝ_r‖ ‖g‖)              (alignment of one update)

Stateful estimators are measured in their stationary regime under the current model: each
copy first makes ``burn_in`` warm-up updates with the parameters held fixed (``.grad`` is
written, no optimizer steps), so persistent chains (PCD, PT), fast weights (FPCD) and
centering offsets have forgotten their start (fresh PCD chains start at data rows and
would look like CD).  A stateless estimator (empty ``state_dict()`` after one update) skips
the warm-up.  The R measured updates follow one another, so for persistent chains they
are correlated and the Monte-Carlo part of ``bias_norm`` exceeds the √(variance / R) of
independent draws (CD).  With θ held fixed, FPCD's fast weights settle near
−fast_lr·ḡ/(1 − fast_decay) (ḡ the mean loss gradient), so its row shows the bias they
add in that regime; in training θ follows ḡ and they stay smaller.  A centered estimator
(``centered=True``) writes a rescaled direction J Jᵀ g on purpose, so its ``bias_norm``
measures that rescaling too; compare it by ``cosine`` instead.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor

from . import exact
from ..errors import ConfigurationError
from ..training.gradient import Estimator
from ..plot import new_figure, save_figure
from ..models.rbm import RBM


def _flat(tensors: Mapping[str, Tensor]) -> Tensor:
    return torch.cat([t.detach().reshape(-1).to(torch.float64) for t in tensors.values()])


def gradient_quality(rbm: RBM, data: Tensor, estimators: Mapping[str, Estimator],
                     repeats: int = 20, seed: int = 0, burn_in: int = 100) -> dict[str, dict[str, float]]:
    """Bias norm, variance and cosine of each estimator's gradient on ``data``.

    Each estimator runs on its own copies with one generator seeded ``seed``: ``burn_in``
    warm-up updates (skipped for stateless estimators), then ``repeats`` measured ones.  The
    model must be tractable (see :func:`boltzkit.exact.is_tractable`).

    Example
    -------
    >>> from boltzkit.estimators import ContrastiveDivergence
    >>> rbm = RBM(6, 4, seed=0)
    >>> data = torch.bernoulli(torch.full((32, 6), 0.5))
    >>> q = gradient_quality(rbm, data, {"cd1": ContrastiveDivergence(1)}, repeats=3)
    >>> sorted(q["cd1"])
    ['bias_norm', 'cosine', 'variance']
    """
    if repeats < 2:
        raise ConfigurationError(f"repeats must be at least 2 to estimate a variance, got {repeats}")
    if burn_in < 0:
        raise ConfigurationError(f"burn_in must be ≥ 0, got {burn_in}")
    rbm.check_data(data)
    data = data.to(rbm.weight.device, rbm.weight.dtype)
    truth = _flat(exact.log_likelihood_gradient(rbm, data))
    truth_norm = float(truth.norm())
    result: dict[str, dict[str, float]] = {}
    for name, estimator in estimators.items():
        model, est = copy.deepcopy(rbm), copy.deepcopy(estimator)
        generator = torch.Generator(rbm.weight.device).manual_seed(seed)
        for step in range(burn_in):  # the parameters are not stepped: only the state moves
            est.step(model, data, generator)
            if step == 0 and not est.state_dict():
                break
        draws = []
        for _ in range(repeats):
            est.step(model, data, generator)
            draws.append(-_flat({n: p.grad for n, p in model.named_tensors().items()}))
        draws_t = torch.stack(draws)
        mean = draws_t.mean(0)
        cosines = (draws_t @ truth) / (draws_t.norm(dim=1) * truth_norm).clamp_min(1e-300)
        result[name] = {
            "bias_norm": float((mean - truth).norm()),
            "variance": float(((draws_t - mean) ** 2).sum(1).sum() / (repeats - 1)),
            "cosine": float(cosines.mean()),
        }
    return result


def plot_gradient_quality(result: Mapping[str, Mapping[str, float]], path: str | Path) -> Path:
    """Bar charts of bias norm, standard deviation (√variance) and cosine per estimator, as PNG."""
    names = list(result)
    panels = [("bias norm ‖E ĝ − g‖", [result[n]["bias_norm"] for n in names]),
              ("std. deviation √tr Cov ĝ", [math.sqrt(max(result[n]["variance"], 0.0)) for n in names]),
              ("cosine(ĝ, g)", [result[n]["cosine"] for n in names])]
    fig, axes = new_figure((4 + 1.2 * len(names), 3.5), 3)
    for ax, (title, values) in zip(axes, panels):
        ax.bar(range(len(names)), values, color="tab:blue")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_title(title, fontsize=10)
    axes[2].axhline(1.0, color="grey", lw=0.8, ls="--")
    fig.suptitle("gradient quality against the exact log-likelihood gradient", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)
