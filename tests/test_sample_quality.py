"""Sample-quality scores: the Fréchet distance against closed forms for Gaussians, the
class-entropy score on toy probabilities, and the feature classifier on separable toy data."""

from __future__ import annotations

import math

import pytest
import torch

from boltzkit import checkpoint
from boltzkit.errors import DataError
from boltzkit.evaluation.sample_quality import (
    FeatureClassifier,
    class_entropy_score,
    frechet_distance,
    gaussian_frechet_distance,
    sample_quality,
)
from boltzkit.training import TrainingConfig
from boltzkit.training.threads import torch_threads


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


def random_covariance(d: int, g: torch.Generator) -> torch.Tensor:
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def test_frechet_distance_closed_forms():
    g = torch.Generator().manual_seed(0)
    d = 5
    mu1, mu2 = torch.randn(d, generator=g, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64)
    # diagonal (commuting) covariances: d² = |μ1 − μ2|² + Σ_i (√a_i − √b_i)²
    a, b = torch.rand(d, generator=g, dtype=torch.float64) + 0.1, torch.rand(d, generator=g, dtype=torch.float64) + 0.1
    expected = float((mu1 - mu2).pow(2).sum() + (a.sqrt() - b.sqrt()).pow(2).sum())
    assert gaussian_frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b)) == pytest.approx(expected, rel=1e-10)
    # a common rotation of both leaves it unchanged (non-diagonal, still commuting)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    rotated = gaussian_frechet_distance(q @ mu1, q @ torch.diag(a) @ q.T, q @ mu2, q @ torch.diag(b) @ q.T)
    assert rotated == pytest.approx(expected, rel=1e-9)
    # general covariances: the trace of (Σ1 Σ2)^{1/2} is Σ √λ over the eigenvalues of Σ1 Σ2 (real, ≥ 0)
    s1, s2 = random_covariance(d, g), random_covariance(d, g)
    trace_sqrt = torch.linalg.eigvals(s1 @ s2).real.clamp_min(0).sqrt().sum()
    general = float((mu1 - mu2).pow(2).sum() + torch.trace(s1) + torch.trace(s2) - 2 * trace_sqrt)
    assert gaussian_frechet_distance(mu1, s1, mu2, s2) == pytest.approx(general, rel=1e-9)
    # identical Gaussians: 0; the distance is symmetric
    assert gaussian_frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)
    assert gaussian_frechet_distance(mu2, s2, mu1, s1) == pytest.approx(general, rel=1e-9)


def test_frechet_distance_from_samples_converges_to_the_closed_form():
    """Sample moments of n = 20,000 rows: the estimate's error is O(d/√n) ≈ 0.03 here; 0.15 leaves room."""
    g = torch.Generator().manual_seed(1)
    n, d = 20_000, 3
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = 2.0 * torch.randn(n, d, generator=g, dtype=torch.float64) + 1.0    # N(1, 4I) against N(0, I)
    assert frechet_distance(x, y) == pytest.approx(d * 1.0 + d * (2.0 - 1.0) ** 2, abs=0.15)
    with pytest.raises(DataError):
        frechet_distance(x, y[:, :2])


def test_class_entropy_score_toy_cases():
    k = 4
    confident = torch.eye(k).repeat(25, 1)                     # each row one class, classes used evenly
    assert class_entropy_score(confident) == pytest.approx(k)
    assert class_entropy_score(torch.full((10, k), 1 / k)) == pytest.approx(1.0)  # no confidence
    assert class_entropy_score(torch.eye(k)[[2] * 10]) == pytest.approx(1.0)     # one class only (collapse)
    # two classes, each row (0.9, 0.1) or (0.1, 0.9): exp(log 2 − H(0.9))
    p = torch.tensor([[0.9, 0.1], [0.1, 0.9]]).repeat(5, 1)
    h = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    assert class_entropy_score(p) == pytest.approx(math.exp(math.log(2) - h))
    with pytest.raises(DataError):
        class_entropy_score(torch.tensor([[0.5, 0.6]]))


def test_classifier_learns_toy_classes_and_round_trips(tmp_path):
    """Three classes of 12-pixel binary rows (a block of 4 on pixels each, with flips): the trained
    classifier separates them; perfect samples score ≈ 3 and a small Fréchet distance, one-class
    samples score ≈ 1 and a larger distance."""
    g = torch.Generator().manual_seed(2)
    labels = torch.arange(600) % 3
    prototypes = torch.zeros(3, 12, dtype=torch.float64)
    for c in range(3):
        prototypes[c, 4 * c:4 * c + 4] = 1.0
    flips = (torch.rand(600, 12, generator=g, dtype=torch.float64) < 0.05).double()
    x = (prototypes[labels] + flips) % 2
    clf = FeatureClassifier(12, 3, hidden=(16, 8), seed=0, dtype=torch.float64)
    untrained = float((clf.predict(x[400:]) == labels[400:]).double().mean())
    config = TrainingConfig(epochs=20, batch_size=50, lr=1e-2, momentum=0.0, initial_momentum=0.0, weight_decay=0.0,
                            lr_schedule="constant", init_visible_bias=False)
    assert len(clf.fit(x[:400], labels[:400], config)) == 20
    assert untrained < 0.7
    assert float((clf.predict(x[400:]) == labels[400:]).double().mean()) > 0.95
    good = sample_quality(clf, x[400:500], x[500:])
    collapsed = sample_quality(clf, x[400:500][labels[400:500] == 0], x[500:])
    assert good["class_entropy_score"] > 2.7 and collapsed["class_entropy_score"] < 1.2
    assert good["frechet_distance"] < collapsed["frechet_distance"]
    checkpoint.save(tmp_path / "clf", clf)
    loaded = checkpoint.load(tmp_path / "clf")
    assert isinstance(loaded, FeatureClassifier)
    torch.testing.assert_close(loaded.features(x[:5]), clf.features(x[:5]))
    with pytest.raises(DataError, match="labels"):
        clf.fit(x[:10], torch.full((10,), 3))
