"""Shared fixtures: small random models and the location of ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from boltzkit.models.rbm import RBM

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def random_rbm(n_visible: int, n_hidden: int, scale: float = 1.0, seed: int = 0,
               dtype: torch.dtype = torch.float64, **kwargs) -> RBM:
    """An RBM with N(0, scale²) weights and biases, so that its distribution is far from uniform."""
    rbm = RBM(n_visible, n_hidden, seed=seed, dtype=dtype, **kwargs)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in rbm.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * scale)
    return rbm


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA
