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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigurationError
from ..models.rbm import RBM
from ..plot import new_figure, save_figure
from ..training.gradient import Estimator
from . import exact


def _flat(tensors: Mapping[str, Tensor]) -> Tensor:
    return torch.cat([t.detach().reshape(-1).to(torch.float64) for t in tensors.values()])


def gradient_quality(rbm: RBM, data: Tensor, estimators: Mapping[str, Estimator],
                     repeats: int = 20, seed: int = 0, burn_in: int = 100,
                     progress: bool = False) -> dict[str, dict[str, float]]:
    """Bias norm, variance and cosine of each estimator's gradient on ``data``.

    Each estimator runs on its own copies with one generator seeded ``seed``: ``burn_in``
    warm-up updates (skipped for stateless estimators), then ``repeats`` measured ones.  The
    model must be tractable (see :func:`boltzkit.exact.is_tractable`).  ``progress`` shows a
    bar over the estimators' updates.

    Example
    -------
    >>> from boltzkit.training import ContrastiveDivergence
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
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(estimators) * (burn_in + repeats), unit="update", dynamic_ncols=True,
                   desc="gradient quality")
    for name, estimator in estimators.items():
        if bar is not None:
            bar.set_postfix_str(name)
        model, est = copy.deepcopy(rbm), copy.deepcopy(estimator)
        generator = torch.Generator(rbm.weight.device).manual_seed(seed)
        for step in range(burn_in):  # the parameters are not stepped: only the state moves
            est.step(model, data, generator)
            if bar is not None:
                bar.update(1)
            if step == 0 and not est.state_dict():
                if bar is not None:
                    bar.update(burn_in - 1)
                break
        draws = []
        for _ in range(repeats):
            est.step(model, data, generator)
            draws.append(-_flat({n: exact._grad(p) for n, p in model.named_tensors().items()}))
            if bar is not None:
                bar.update(1)
        draws_t = torch.stack(draws)
        mean = draws_t.mean(0)
        cosines = (draws_t @ truth) / (draws_t.norm(dim=1) * truth_norm).clamp_min(1e-300)
        result[name] = {
            "bias_norm": float((mean - truth).norm()),
            "variance": float(((draws_t - mean) ** 2).sum(1).sum() / (repeats - 1)),
            "cosine": float(cosines.mean()),
        }
    if bar is not None:
        bar.close()
    return result


#: the columns of :func:`gradient_quality_rows`: key, name, formula, how to read it
GRADIENT_QUALITY_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("bias_norm", "bias norm", "‖E ĝ − g‖", "lower is better"),
    ("std_dev", "standard deviation", "√tr Cov ĝ", "lower is better"),
    ("cosine", "cosine", "mean cos(ĝ, g)", "1 = the exact direction"),
)


def gradient_quality_rows(result: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """The three numbers that are printed and plotted for each estimator of ``result``
    (from :func:`gradient_quality`): ``bias_norm`` ‖E ĝ − g‖, ``std_dev`` √tr Cov ĝ (the
    spread of one update, in the units of the gradient like the bias) and ``cosine``.

    >>> gradient_quality_rows({"cd1": {"bias_norm": 0.5, "variance": 4.0, "cosine": 0.9}})
    {'cd1': {'bias_norm': 0.5, 'std_dev': 2.0, 'cosine': 0.9}}
    """
    return {name: {"bias_norm": float(row["bias_norm"]),
                   "std_dev": math.sqrt(max(float(row["variance"]), 0.0)),
                   "cosine": float(row["cosine"])}
            for name, row in result.items()}


def plot_gradient_quality(result: Mapping[str, Mapping[str, float]], path: str | Path) -> Path:
    """Bar charts of the numbers of :func:`gradient_quality_rows` (bias norm, standard
    deviation √tr Cov ĝ, cosine) per estimator, each bar labelled with its value, as PNG."""
    return save_figure(gradient_quality_figure(result), path)


def gradient_quality_figure(result: Mapping[str, Mapping[str, float]]) -> Any:
    """The matplotlib ``Figure`` of :func:`plot_gradient_quality`."""
    rows = gradient_quality_rows(result)
    names = list(rows)
    fig, axes = new_figure((5 + 1.8 * len(names), 4.2), 3)
    for ax, (key, name, formula, reading) in zip(axes, GRADIENT_QUALITY_COLUMNS):
        values = [rows[n][key] for n in names]
        bars = ax.bar(range(len(names)), values, color="tab:blue")
        ax.bar_label(bars, labels=[f"{v:.3f}" if key == "cosine" else f"{v:.4g}" for v in values],
                     fontsize=8, padding=2)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_title(f"{name} ({reading})", fontsize=10)
        ax.set_ylabel(f"{name}  {formula}")
        ax.margins(y=0.15)
    cosines = [rows[n]["cosine"] for n in names]
    axes[2].axhline(1.0, color="grey", lw=0.8, ls="--")
    axes[2].set_ylim(min([0.0] + cosines) - (0.1 if min([0.0] + cosines) < 0 else 0.0), 1.12)
    fig.suptitle("gradient estimates ĝ against the exact log-likelihood gradient g", fontsize=11)
    fig.tight_layout()
    return fig
