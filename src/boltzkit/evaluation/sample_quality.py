"""Sample-quality scores from a small classifier: Fréchet distance and class-entropy score.

For models whose likelihood is not the whole story (a GAN beside an RBM), two scores computed
with a classifier trained once on labelled data (:class:`FeatureClassifier`, an MLP):

* **Fréchet distance** of its penultimate features (the FID of Heusel et al. 2017, with a
  small MNIST classifier in place of Inception): fit Gaussians N(μ_1, Σ_1) to the features of
  model samples and N(μ_2, Σ_2) to those of test data, and report

      d² = |μ_1 − μ_2|² + Tr(Σ_1 + Σ_2 − 2 (Σ_1 Σ_2)^{1/2})

  (:func:`gaussian_frechet_distance`); 0 for identical Gaussians, lower is better.  The trace of
  (Σ_1 Σ_2)^{1/2} is Σ_i √λ_i over the eigenvalues of the symmetric PSD Σ_1^{1/2} Σ_2 Σ_1^{1/2}
  (same spectrum as Σ_1 Σ_2).  The estimate from finite samples is biased upwards, so compare
  scores computed from the same number of samples.

* **Class-entropy score** (the "Inception score" of Salimans et al. 2016 with this classifier):

      exp(E_x KL(p(y | x) ‖ p(y))),   p(y) = E_x p(y | x),

  i.e. exp(H[p(y)] − E_x H[p(y | x)]): high when each sample is confidently one class and the
  classes are used evenly; between 1 and the number of classes K.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .. import checkpoint
from ..errors import DataError
from ..models.base import LossModel, check_rows
from ..validation import check_int, parse_dtype

#: rows per block when features are computed without gradient
FEATURE_BLOCK = 4096


def _symmetric_sqrt(a: Tensor) -> Tensor:
    """A^{1/2} of a symmetric PSD matrix by its eigen-decomposition (negative rounding clamped)."""
    values, vectors = torch.linalg.eigh(a)
    return (vectors * values.clamp_min(0.0).sqrt()) @ vectors.T


def gaussian_frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """d² = |μ_1 − μ_2|² + Tr(Σ_1 + Σ_2 − 2 (Σ_1 Σ_2)^{1/2}) between N(μ_1, Σ_1) and N(μ_2, Σ_2) (float64)."""
    mu1, mu2, sigma1, sigma2 = (t.double() for t in (mu1, mu2, sigma1, sigma2))
    if mu1.dim() != 1 or mu1.shape != mu2.shape or sigma1.shape != (mu1.numel(),) * 2 or sigma1.shape != sigma2.shape:
        raise DataError(f"gaussian_frechet_distance: means {tuple(mu1.shape)}, {tuple(mu2.shape)} and covariances "
                        f"{tuple(sigma1.shape)}, {tuple(sigma2.shape)} do not match")
    root1 = _symmetric_sqrt(0.5 * (sigma1 + sigma1.T))
    middle = root1 @ (0.5 * (sigma2 + sigma2.T)) @ root1
    trace_sqrt = torch.linalg.eigvalsh(0.5 * (middle + middle.T)).clamp_min(0.0).sqrt().sum()
    value = (mu1 - mu2).pow(2).sum() + torch.trace(sigma1) + torch.trace(sigma2) - 2 * trace_sqrt
    return max(float(value), 0.0)


def feature_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """(mean, unbiased covariance) of the rows of ``features`` (float64)."""
    if features.dim() != 2 or features.shape[0] < 2:
        raise DataError(f"feature statistics need at least 2 rows of features, got shape {tuple(features.shape)}")
    f = features.double()
    return f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])


def frechet_distance(features1: Tensor, features2: Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to two sets of feature rows."""
    if features1.dim() != 2 or features2.dim() != 2 or features1.shape[1] != features2.shape[1]:
        raise DataError(f"frechet_distance: features {tuple(features1.shape)} and {tuple(features2.shape)} must be "
                        f"2-D with the same number of columns")
    return gaussian_frechet_distance(*feature_statistics(features1), *feature_statistics(features2))


def class_entropy_score(probabilities: Tensor) -> float:
    """exp(E_x KL(p(y | x) ‖ p(y))) from rows of class probabilities p(y | x), ``(n, K)``."""
    if probabilities.dim() != 2 or probabilities.shape[0] == 0:
        raise DataError(f"class_entropy_score needs (n, K) probabilities, got shape {tuple(probabilities.shape)}")
    p = probabilities.double()
    if bool((p < 0).any()) or not torch.allclose(p.sum(1), torch.ones_like(p[:, 0]), atol=1e-6):
        raise DataError("class_entropy_score: rows must be probability vectors (non-negative, summing to 1)")
    marginal = p.mean(0)
    kl = torch.special.xlogy(p, p).sum(1) - (p * torch.log(marginal.clamp_min(1e-300))).sum(1)
    return math.exp(float(kl.mean()))


@checkpoint.register
class FeatureClassifier(LossModel):
    """An MLP classifier x ↦ logits whose last hidden layer gives the features of the scores.

    Layers ``[n_inputs, *hidden, n_classes]`` with ReLU between them; :meth:`features` is the
    last hidden layer (after its ReLU).  Trained by the cross-entropy of integer labels with
    the common trainer (:meth:`fit`; labels travel as the batch context).
    """

    checkpoint_kind: ClassVar[str] = "FeatureClassifier"
    checkpoint_description: ClassVar[str] = "feature classifier for sample-quality scores"

    def __init__(self, n_inputs: int = 784, n_classes: int = 10, hidden: Sequence[int] = (256, 64), seed: int = 0,
                 dtype: torch.dtype = torch.float32, device: str | torch.device | None = None) -> None:
        super().__init__()
        self.n_inputs: int = check_int("n_inputs", n_inputs, least=1) or n_inputs
        self.n_classes: int = check_int("n_classes", n_classes, least=2) or n_classes
        self.hidden: list[int] = [check_int("hidden", h, least=1) or h for h in hidden]
        if not self.hidden:
            raise DataError("FeatureClassifier needs at least one hidden layer (its features)")
        self.seed: int = check_int("seed", seed, least=0) or 0
        sizes = [self.n_inputs, *self.hidden]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            layers: list[nn.Module] = []
            for a, b in zip(sizes[:-1], sizes[1:]):
                layers += [nn.Linear(a, b), nn.ReLU()]
            self.body = nn.Sequential(*layers)
            self.head = nn.Linear(sizes[-1], self.n_classes)
        self.to(dtype=dtype, device=device)

    def check_data(self, x: Tensor, name: str = "data") -> None:
        check_rows(x, name, self.n_inputs)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(n, n_classes)``."""
        return self.head(self.body(x))

    def loss(self, batch: Any) -> Tensor:
        """Mean cross-entropy of the labels in ``batch.context``."""
        if batch.context is None:
            raise DataError("FeatureClassifier needs labels: pass them as the batch context (fit does)")
        return F.cross_entropy(self(batch.values), batch.context.reshape(-1).long())

    def decay_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if name.endswith("weight")]

    def _blocks(self, x: Tensor, fn: Any) -> Tensor:
        p = next(self.parameters())
        self.check_data(x, "rows")
        with torch.no_grad():
            return torch.cat([fn(b.to(p.device, p.dtype)) for b in x.split(FEATURE_BLOCK)])

    def features(self, x: Tensor) -> Tensor:
        """The last hidden layer's activations ``(n, hidden[-1])``, no gradient."""
        return self._blocks(x, self.body)

    def probabilities(self, x: Tensor) -> Tensor:
        """p(y | x) ``(n, n_classes)``, no gradient."""
        return self._blocks(x, lambda b: torch.softmax(self(b), 1))

    def predict(self, x: Tensor) -> Tensor:
        """The most probable class of each row."""
        return self.probabilities(x).argmax(1)

    def fit(self, x: Tensor, labels: Tensor, config: Any = None, progress: bool = False) -> list[dict[str, float]]:
        """Minimise the cross-entropy on ``(x, labels)`` with the common trainer (default: 5 epochs of
        Adam 1e-3, batch 100); returns the training history."""
        from ..training import Trainer, TrainingConfig
        from ..training.batches import TensorBatches

        self.check_data(x)
        labels = torch.as_tensor(labels).reshape(-1)
        if labels.shape[0] != x.shape[0]:
            raise DataError(f"labels: {labels.shape[0]} labels for {x.shape[0]} rows")
        if bool(((labels != labels.round()) | (labels < 0) | (labels >= self.n_classes)).any()):
            raise DataError(f"labels must be integers 0..{self.n_classes - 1}")
        p = next(self.parameters())
        config = config or TrainingConfig(epochs=5, batch_size=100, lr=1e-3, momentum=0.0, initial_momentum=0.0,
                                          weight_decay=0.0, lr_schedule="constant", init_visible_bias=False,
                                          seed=self.seed)
        source = TensorBatches(x.to(p.device, p.dtype), context=labels.to(p.device, p.dtype), name="data")
        trainer = Trainer(self, config, optimizer=torch.optim.Adam(self.parameters(), lr=config.lr),
                          progress=progress)
        return trainer.fit(source)

    def config(self) -> dict[str, Any]:
        p = next(self.parameters())
        return {"model": self.checkpoint_kind, "n_inputs": self.n_inputs, "n_classes": self.n_classes,
                "hidden": self.hidden, "seed": self.seed, "dtype": str(p.dtype).removeprefix("torch.")}

    @classmethod
    def from_config(cls, config: dict[str, Any], device: str | torch.device | None = None) -> FeatureClassifier:
        return cls(config["n_inputs"], config["n_classes"], config["hidden"], config.get("seed", 0),
                   parse_dtype(config.get("dtype", "float32")), device)


def sample_quality(classifier: FeatureClassifier, samples: Tensor, reference: Tensor) -> dict[str, float]:
    """``{"frechet_distance": …, "class_entropy_score": …}`` of ``samples`` against ``reference``
    rows (e.g. test data), both through ``classifier``."""
    return {"frechet_distance": frechet_distance(classifier.features(samples), classifier.features(reference)),
            "class_entropy_score": class_entropy_score(classifier.probabilities(samples))}


__all__ = ["FeatureClassifier", "class_entropy_score", "feature_statistics", "frechet_distance",
           "gaussian_frechet_distance", "sample_quality"]
