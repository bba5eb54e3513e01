"""Exact ground truth for energies in one or two dimensions: log Z by quadrature on a grid.

For p(x) = exp(−U(x))/Z on a box B = [a₁, b₁] × … (d ≤ 2),

    log Z = log ∫_B exp(−U(x)) dx ≈ logsumexp_g (−U(x_g) + log w_g),

with the tensor product of composite Simpson weights w_g (error O(h⁴) for smooth U) or of the
midpoint rule (O(h²); exact for densities constant on the cells, e.g. a checkerboard).  With
log Z come the exact test log-likelihood (1/N) Σ_i −U(x_i) − log Z and the exact gradient of
the negative log-likelihood,

    ∇θ [mean U(x⁺) + log Z] = mean ∇θU(x⁺) − E_p[∇θU],

which autograd of the quadrature sum gives directly (E_p under the grid's weights).
:func:`boundary_mass` says how much probability sits in the outermost cells: a large value
means the box cuts off the density (widen it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import ConfigurationError, DataError
from ..validation import check_choice, check_int

Energy = Callable[[Tensor], Tensor]

#: rows of the grid pushed through the energy at once
CHUNK = 65536


@dataclass
class Grid:
    """Quadrature nodes ``points`` ``(M, d)`` with ``log_weights`` ``(M,)`` on the box
    [low, high]; ``axes`` are the 1-D nodes (points = their product, last axis fastest)."""

    points: Tensor
    log_weights: Tensor
    axes: list[Tensor]
    low: list[float]
    high: list[float]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(a) for a in self.axes)


def _rule(low: float, high: float, n: int, rule: str) -> tuple[Tensor, Tensor]:
    if rule == "midpoint":
        h = (high - low) / n
        nodes = low + h * (torch.arange(n, dtype=torch.float64) + 0.5)
        return nodes, torch.full((n,), h, dtype=torch.float64)
    if n % 2 == 0:
        n += 1  # Simpson needs an even number of intervals
    nodes = torch.linspace(low, high, n, dtype=torch.float64)
    h = (high - low) / (n - 1)
    w = torch.ones(n, dtype=torch.float64)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    return nodes, w * h / 3


def make_grid(low: float | Sequence[float], high: float | Sequence[float], points: int = 401,
              rule: str = "simpson") -> Grid:
    """A tensor-product grid on the box [low, high] (1-D or 2-D; ``points`` per axis, made odd
    for Simpson)."""
    check_int("points", points, least=3)
    check_choice("rule", rule, ("simpson", "midpoint"))
    low_l = [float(v) for v in (low if isinstance(low, Sequence) else [low])]
    high_l = [float(v) for v in (high if isinstance(high, Sequence) else [high])]
    if len(low_l) != len(high_l) or not 1 <= len(low_l) <= 2:
        raise ConfigurationError(f"quadrature needs a 1-D or 2-D box, got low={low!r}, high={high!r}")
    if not all(math.isfinite(a) and math.isfinite(b) and a < b for a, b in zip(low_l, high_l)):
        raise ConfigurationError(f"the box must be finite with low < high, got low={low!r}, high={high!r}")
    rules = [_rule(a, b, points, rule) for a, b in zip(low_l, high_l)]
    axes = [nodes for nodes, _ in rules]
    mesh = torch.meshgrid(*axes, indexing="ij")
    pts = torch.stack([m.reshape(-1) for m in mesh], 1)
    logw = torch.zeros((), dtype=torch.float64)
    for k, (_, w) in enumerate(rules):  # log w(x) = Σ_k log w_k(x_k) on the mesh
        logw = logw + torch.log(w).reshape([-1 if i == k else 1 for i in range(len(rules))])
    logw = logw.reshape(-1)
    return Grid(pts, logw, axes, low_l, high_l)


def grid_energies(energy: Energy, grid: Grid, like: Tensor | None = None) -> Tensor:
    """U at every node, ``(M,)``, computed in chunks in the dtype/device of ``like``."""
    dtype = like.dtype if like is not None else torch.float64
    device = like.device if like is not None else torch.device("cpu")
    out = [energy(chunk.to(device, dtype)) for chunk in grid.points.split(CHUNK)]
    return torch.cat(out).reshape(-1)


def log_partition(energy: Energy, grid: Grid, like: Tensor | None = None) -> Tensor:
    """log Z = log Σ_g w_g exp(−U(x_g)) (a float64 0-d tensor; differentiable in θ)."""
    u = grid_energies(energy, grid, like).double()
    finite = torch.isfinite(u) | (u == math.inf)
    if not bool(finite.all()):
        raise DataError("the energy is NaN on the quadrature grid; it must be finite (or +inf outside the support)")
    return torch.logsumexp(-u + grid.log_weights.to(u.device), 0)


def log_likelihood(energy: Energy, x: Tensor, log_z: Tensor | float) -> float:
    """Mean exact log-likelihood (nats per row): (1/N) Σ_i −U(x_i) − log Z."""
    with torch.no_grad():
        return float(-energy(x).double().mean() - float(log_z))


def density(energy: Energy, grid: Grid, like: Tensor | None = None) -> Tensor:
    """Normalised density p(x_g) = exp(−U(x_g) − log Z) on the grid, shaped like ``grid.shape``."""
    with torch.no_grad():
        u = grid_energies(energy, grid, like).double()
        log_z = torch.logsumexp(-u + grid.log_weights.to(u.device), 0)
        return torch.exp(-u - log_z).reshape(grid.shape).cpu()


def boundary_mass(energy: Energy, grid: Grid, like: Tensor | None = None) -> float:
    """Probability, under the grid's normalised p, of the nodes on the outermost ring of the box
    (relative to a uniform density's share of it: above 1 means the density is still high at the
    edge, i.e. the box likely truncates it)."""
    with torch.no_grad():
        u = grid_energies(energy, grid, like).double()
        logp = -u + grid.log_weights.to(u.device)
        p = torch.softmax(logp, 0).reshape(grid.shape).cpu()
        uniform = torch.softmax(grid.log_weights, 0).reshape(grid.shape)
        edge = torch.zeros(grid.shape, dtype=torch.bool)
        for axis in range(len(grid.shape)):
            index: list[int | slice] = [slice(None)] * len(grid.shape)
            index[axis] = 0
            edge[tuple(index)] = True
            index[axis] = -1
            edge[tuple(index)] = True
        return float(p[edge].sum() / uniform[edge].sum())


def exact_gradient(model: nn.Module, data: Tensor, grid: Grid,
                   energy: Energy | None = None) -> dict[str, Tensor]:
    """∇θ of the negative mean log-likelihood, mean ∇θU(x⁺) − E_p[∇θU], by autograd of
    mean U(x⁺) + log Z(θ) with log Z by quadrature; keyed by parameter name."""
    energy = energy or model
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.enable_grad():
        nll = energy(data).double().mean() + log_partition(energy, grid, data)
        grads = torch.autograd.grad(nll, params, allow_unused=True)
    return {n: (torch.zeros_like(p) if g is None else g) for n, p, g in zip(names, params, grads)}
