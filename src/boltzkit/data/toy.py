"""The 2-D test densities popularised by FFJORD (Grathwohl et al. 2019), with exact log-densities.

:func:`sample_toy` draws points as FFJORD's ``toy_data.inf_train_gen`` does (same constants),
except that the angles of ``moons`` and ``rings`` are drawn uniformly instead of on an even
``linspace``, so that the data have a density; :func:`toy_log_density` is that density:

- ``8gaussians``: ½·(mixture of 8 N(4u_k, 0.5²I), u_k the unit vectors at 45° steps)/1.414;
- ``moons``: two half-circle arcs of radius 2 (centres (−1, −0.2) and (1, 0.8)), angle
  uniform, plus N(0, 0.2²I) noise (sklearn's make_moons(noise=0.1), ×2, shifted);
- ``rings``: four circles of radii 3, 2.25, 1.5, 0.75 with equal weight, plus N(0, 0.08²I):
  a Rice density per ring, p_R(x) = exp(−(ρ − R)²/2σ²)·I₀e(ρR/σ²)/(2πσ²), ρ = |x|;
- ``checkerboard``: uniform on the 8 squares of side 2 in [−4, 4]² whose ⌊x₁/2⌋ + ⌊x₂/2⌋
  is even (density 1/32);
- ``pinwheel``: five arms; (r, t) ~ N(1, 0.3²) × N(0, 0.1²) mapped to
  x = 2·Rot(−φ(r))·(r, t), φ(r) = 2πc/5 + 0.25·eʳ.  The density is
  p(x) = ⅕ Σ_c Σ_{(r,t) ↦ x} N(r)N(t)/|4(1 + 0.25eʳt)|, the preimages found on the circle
  |(r, t)| = |x|/2 by bracketing and Newton steps.

All five live inside :data:`TOY_BOX` = [−4.5, 4.5]² up to a negligible tail.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from ..errors import DataError
from ..validation import check_choice, check_int

TOYS = ("8gaussians", "moons", "rings", "checkerboard", "pinwheel")
#: the box every toy density is plotted and integrated on
TOY_BOX = ((-4.5, -4.5), (4.5, 4.5))

_SQ2 = 1.414  # FFJORD divides the 8 Gaussians by 1.414, not √2
_MOON_SIGMA = 0.2
_RING_SIGMA, _RING_RADII = 0.08, (3.0, 2.25, 1.5, 0.75)
_PIN_CLASSES, _PIN_RADIAL, _PIN_TANGENTIAL, _PIN_RATE = 5, 0.3, 0.1, 0.25


def _eight_centres() -> np.ndarray:
    s = 1 / math.sqrt(2)
    units = [(1, 0), (-1, 0), (0, 1), (0, -1), (s, s), (s, -s), (-s, s), (-s, -s)]
    return 4.0 * np.asarray(units) / _SQ2


def sample_toy(name: str, n: int, seed: int = 0) -> np.ndarray:
    """``n`` points ``(n, 2)`` float32 of the toy density ``name`` (see :data:`TOYS`)."""
    check_choice("toy", name, TOYS)
    check_int("n", n, least=1)
    rng = np.random.default_rng(seed)
    if name == "8gaussians":
        centres = _eight_centres()[rng.integers(8, size=n)]
        x = centres + rng.standard_normal((n, 2)) * 0.5 / _SQ2
    elif name == "moons":
        t = rng.uniform(0, math.pi, n)
        outer = np.arange(n) < n // 2
        arc = np.stack([np.cos(t), np.sin(t)], 1) * 2.0
        x = np.where(outer[:, None], arc + [-1.0, -0.2], [1.0, 0.8] - arc)
        x = rng.permutation(x) + rng.standard_normal((n, 2)) * _MOON_SIGMA
    elif name == "rings":
        radius = np.asarray(_RING_RADII)[rng.integers(4, size=n)]
        t = rng.uniform(0, 2 * math.pi, n)
        x = radius[:, None] * np.stack([np.cos(t), np.sin(t)], 1) + rng.standard_normal((n, 2)) * _RING_SIGMA
    elif name == "checkerboard":
        x1 = rng.uniform(0, 1, n) * 4 - 2
        x2 = rng.uniform(0, 1, n) - rng.integers(0, 2, n) * 2
        x = np.stack([x1, x2 + np.floor(x1) % 2], 1) * 2
    else:
        label = rng.integers(_PIN_CLASSES, size=n)
        r = 1 + rng.standard_normal(n) * _PIN_RADIAL
        t = rng.standard_normal(n) * _PIN_TANGENTIAL
        phi = 2 * math.pi * label / _PIN_CLASSES + _PIN_RATE * np.exp(r)
        x = 2 * np.stack([r * np.cos(phi) + t * np.sin(phi), -r * np.sin(phi) + t * np.cos(phi)], 1)
    return x.astype(np.float32)


def _log_normal(z: np.ndarray, sd: float) -> np.ndarray:
    return -0.5 * (z / sd) ** 2 - math.log(sd) - 0.5 * math.log(2 * math.pi)


def _arc_log_density(x: np.ndarray, centre: tuple[float, float], sign: float, nodes: int = 513) -> np.ndarray:
    """log ∫₀^π N(x; c + sign·2(cos t, sin t), σ²I) dt/π by Simpson's rule in t (node spacing
    0.006 rad against a kernel width σ/2 = 0.1 rad: relative error far below 1e-6)."""
    t = np.linspace(0, math.pi, nodes)
    w = np.ones(nodes)
    w[1:-1:2], w[2:-1:2] = 4, 2
    w *= (math.pi / (nodes - 1)) / 3 / math.pi
    out = np.empty(len(x))
    for s in range(0, len(x), 2048):
        chunk = x[s:s + 2048]
        px = centre[0] + sign * 2 * np.cos(t)
        py = centre[1] + sign * 2 * np.sin(t)
        d2 = (chunk[:, :1] - px) ** 2 + (chunk[:, 1:] - py) ** 2
        logk = -d2 / (2 * _MOON_SIGMA ** 2) - math.log(2 * math.pi * _MOON_SIGMA ** 2)
        out[s:s + 2048] = special.logsumexp(logk + np.log(w), axis=1)
    return out


def _pinwheel_density(x: np.ndarray, nodes: int = 512) -> np.ndarray:
    """Σ over classes and preimages; h(ψ) changes by at most ~25 per radian inside the box, so
    preimages are ≥ 0.25 rad apart and a 512-node scan of ψ brackets each one."""
    rho = np.hypot(x[:, 0], x[:, 1]) / 2
    alpha = np.arctan2(x[:, 1], x[:, 0])
    psi = np.linspace(-math.pi, math.pi, nodes)
    out = np.zeros(len(x))
    for c in range(_PIN_CLASSES):
        theta = 2 * math.pi * c / _PIN_CLASSES

        def h(p: np.ndarray, rho: np.ndarray, alpha: np.ndarray, theta: float = theta) -> np.ndarray:
            # ≡ 0 (mod 2π) at preimages
            value: np.ndarray = p - theta - _PIN_RATE * np.exp(rho * np.cos(p)) - alpha
            return value

        for s in range(0, len(x), 4096):
            r_, a_ = rho[s:s + 4096, None], alpha[s:s + 4096, None]
            f = np.sin(h(psi, r_, a_) / 2)
            row, col = np.nonzero(np.sign(f[:, :-1]) * np.sign(f[:, 1:]) < 0)
            if row.size == 0:
                continue
            f0, f1 = f[row, col], f[row, col + 1]
            p = psi[col] - f0 * (psi[col + 1] - psi[col]) / (f1 - f0)
            r0, a0 = r_[row, 0], a_[row, 0]
            for _ in range(4):  # Newton on sin(h/2)
                hp = h(p, r0, a0)
                dh = 1 + _PIN_RATE * np.exp(r0 * np.cos(p)) * r0 * np.sin(p)
                p = p - np.sin(hp / 2) / (0.5 * np.cos(hp / 2) * dh)
            r, t = r0 * np.cos(p), r0 * np.sin(p)
            jac = np.abs(4 * (1 + _PIN_RATE * np.exp(r) * t))
            dens = np.exp(_log_normal(r - 1, _PIN_RADIAL) + _log_normal(t, _PIN_TANGENTIAL)) / jac
            np.add.at(out, s + row, dens)
    return out / _PIN_CLASSES


def toy_log_density(name: str, x: np.ndarray) -> np.ndarray:
    """The exact log-density (nats) of the toy ``name`` at the rows of ``x`` ``(n, 2)``."""
    check_choice("toy", name, TOYS)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise DataError(f"toy densities are 2-D: points must have shape (n, 2), got {x.shape}")
    if name == "8gaussians":
        sd = 0.5 / _SQ2
        d2 = ((x[:, None, :] - _eight_centres()[None]) ** 2).sum(-1)
        gaussians: np.ndarray = special.logsumexp(-d2 / (2 * sd * sd), axis=1) - math.log(8 * 2 * math.pi * sd * sd)
        return gaussians
    if name == "moons":
        outer = _arc_log_density(x, (-1.0, -0.2), 1.0)
        inner = _arc_log_density(x, (1.0, 0.8), -1.0)
        moons: np.ndarray = np.logaddexp(outer, inner) - math.log(2)
        return moons
    if name == "rings":
        rho = np.hypot(x[:, 0], x[:, 1])
        s2 = _RING_SIGMA ** 2
        logs = [-(rho - r) ** 2 / (2 * s2) + np.log(special.i0e(rho * r / s2)) - math.log(2 * math.pi * s2)
                for r in _RING_RADII]
        rings: np.ndarray = special.logsumexp(np.stack(logs, 1), axis=1) - math.log(4)
        return rings
    if name == "checkerboard":
        inside = np.all((x >= -4) & (x < 4), axis=1)
        black = (np.floor(x[:, 0] / 2) + np.floor(x[:, 1] / 2)) % 2 == 0
        with np.errstate(divide="ignore"):
            return np.where(inside & black, -math.log(32), -np.inf)
    with np.errstate(divide="ignore"):
        pinwheel: np.ndarray = np.log(_pinwheel_density(x))
    return pinwheel
