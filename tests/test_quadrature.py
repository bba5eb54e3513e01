"""Grid quadrature against closed forms, and the toy densities against their own samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from boltzkit.data.toy import TOY_BOX, TOYS, sample_toy, toy_log_density
from boltzkit.errors import ConfigurationError, DataError
from boltzkit.evaluation import quadrature
from boltzkit.models.energy import EnergyFunctionModel, GaussianEnergy, MLPEnergy

DT = torch.float64
PRECISION = torch.tensor([[2.0, 0.7], [0.7, 1.0]], dtype=DT)


def gaussian_2d(x: torch.Tensor) -> torch.Tensor:
    d = x - torch.tensor([0.3, -0.2], dtype=DT)
    return 0.5 * ((d @ PRECISION) * d).sum(1)


def test_log_partition_of_gaussians_is_exact():
    """Simpson on ±10 sd: log Z = ½ log((2π)^d / det A) to 1e-8 (error O(h⁴), tails < e^-50)."""
    g1 = quadrature.make_grid(-10.0, 10.0, 801)
    assert abs(float(quadrature.log_partition(lambda x: 0.5 * x[:, 0] ** 2, g1)) - 0.5 * math.log(2 * math.pi)) < 1e-10
    g2 = quadrature.make_grid([-8.0, -10.0], [8.0, 10.0], 401)
    exact = 0.5 * math.log((2 * math.pi) ** 2 / float(torch.linalg.det(PRECISION)))
    assert abs(float(quadrature.log_partition(gaussian_2d, g2)) - exact) < 1e-8
    mid = quadrature.make_grid([-8.0, -10.0], [8.0, 10.0], 400, rule="midpoint")
    assert abs(float(quadrature.log_partition(gaussian_2d, mid)) - exact) < 1e-6


def test_exact_gradient_of_the_gaussian_mean():
    """For U = τ(x − μ)²/2: ∂NLL/∂μ = −τ(x̄ − μ) exactly (log Z does not depend on μ)."""
    tau = 3.0
    model = GaussianEnergy(1, precision=tau, mean=0.4).double()
    x = torch.linspace(-1, 2, 50, dtype=DT).unsqueeze(1)
    grad = quadrature.exact_gradient(model, x, quadrature.make_grid(-9.0, 9.0, 1201))["mean"]
    mu = float(model.mean.detach())  # 0.4 rounded to float32 when the parameter was made
    assert abs(float(grad) - (-tau * (float(x.mean()) - mu))) < 1e-9


def test_exact_gradient_matches_finite_differences():
    torch.manual_seed(0)
    model = EnergyFunctionModel(MLPEnergy(2, hidden=[6], seed=3).double(), 2, support=(-2.0, 2.0))
    grid = quadrature.make_grid([-2.0, -2.0], [2.0, 2.0], 101)
    x = torch.rand(30, 2, dtype=DT) * 2 - 1
    grad = quadrature.exact_gradient(model, x, grid, model.energy)["module.net.0.weight"]

    def nll() -> float:
        return float(model.energy(x).mean() + quadrature.log_partition(model.energy, grid, x))
    p = model.module.net[0].weight
    with torch.no_grad():
        for i, j in [(0, 0), (3, 1)]:
            p[i, j] += 1e-6
            up = nll()
            p[i, j] -= 2e-6
            down = nll()
            p[i, j] += 1e-6
            assert abs((up - down) / 2e-6 - float(grad[i, j])) < 1e-6


def test_boundary_mass_flags_a_truncating_box():
    wide = quadrature.make_grid([-8.0, -8.0], [8.0, 8.0], 161)
    narrow = quadrature.make_grid([-1.0, -1.0], [1.0, 1.0], 161)
    assert quadrature.boundary_mass(gaussian_2d, wide) < 1e-6
    assert quadrature.boundary_mass(gaussian_2d, narrow) > 0.1


def test_bad_boxes_and_nan_energies_are_refused():
    with pytest.raises(ConfigurationError, match="1-D or 2-D"):
        quadrature.make_grid([0, 0, 0], [1, 1, 1])
    with pytest.raises(ConfigurationError, match="low < high"):
        quadrature.make_grid(1.0, 0.0)
    with pytest.raises(DataError, match="NaN"):
        quadrature.log_partition(lambda x: x[:, 0] * math.nan, quadrature.make_grid(0.0, 1.0, 11))


@pytest.mark.parametrize("name", TOYS)
def test_toy_densities_normalise_and_match_their_samples(name):
    """∫p = 1 on the box, and a χ² test of 100,000 samples in 30 × 30 cells against the cell
    probabilities (midpoint rule, 6 × 6 nodes per cell; cells expecting ≥ 20 counts).  Under
    the right density χ² ≈ K ± √(2K); |χ² − K|/√(2K) < 5 is the 5σ bound.  Dropping the
    pinwheel's Jacobian factor 1 + 0.25eʳt was measured at 14σ (normalisation alone misses it)."""
    cells, sub, n = 30, 6, 100000
    low, high = TOY_BOX[0][0], TOY_BOX[1][0]
    grid = quadrature.make_grid(*TOY_BOX, cells * sub, rule="midpoint")
    w = np.exp(grid.log_weights.numpy() + toy_log_density(name, grid.points.numpy()))
    assert abs(w.sum() - 1) < 2e-3
    prob = w.reshape(cells, sub, cells, sub).sum((1, 3))
    x = sample_toy(name, n, seed=2)
    assert np.isfinite(toy_log_density(name, x[:2000])).all()
    counts, _, _ = np.histogram2d(x[:, 0], x[:, 1], bins=cells, range=[[low, high], [low, high]])
    expected = prob * n
    keep = expected >= 20
    chi2, k = float(((counts - expected)[keep] ** 2 / expected[keep]).sum()), int(keep.sum())
    assert abs(chi2 - k) / math.sqrt(2 * k) < 5, f"{name}: χ² = {chi2:.0f} on {k} cells"


def test_toy_sampling_is_seeded_and_checked():
    assert np.array_equal(sample_toy("pinwheel", 50, 3), sample_toy("pinwheel", 50, 3))
    assert not np.array_equal(sample_toy("pinwheel", 50, 3), sample_toy("pinwheel", 50, 4))
    with pytest.raises(ConfigurationError):
        sample_toy("spirals", 10)
    with pytest.raises(DataError, match="2-D"):
        toy_log_density("rings", np.zeros((3, 3)))
