"""Shared fixtures: small random models and the location of ../shared/data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    """300 × 16 binary rows with column means 0.1 … 0.9, saved as ``x.npy`` (for command-line tests)."""
    rng = np.random.default_rng(0)
    x = (rng.random((300, 16)) < np.linspace(0.1, 0.9, 16)).astype(np.float32)
    path = tmp_path_factory.mktemp("data") / "x.npy"
    np.save(path, x)
    return path


class Crash(Exception):
    """Stands for the process dying (power cut, kill -9) just after a checkpoint was written."""


@pytest.fixture
def crash_after_epoch(monkeypatch):
    """``crash_after_epoch(n)``: the command line's per-epoch checkpoint callback raises
    :class:`Crash` right after writing epoch ``n`` — what a crash leaves behind for ``--resume``."""
    from boltzkit.cli import common

    def arm(n: int) -> type[Crash]:
        write = common.SaveEachEpoch.on_epoch_end

        def written_then_crash(self, trainer, epoch, metrics):
            write(self, trainer, epoch, metrics)
            if epoch == n:
                raise Crash(f"crash after epoch {n}")

        monkeypatch.setattr(common.SaveEachEpoch, "on_epoch_end", written_then_crash)
        return Crash

    yield arm
    monkeypatch.undo()


#: the Tensor methods that read a value back to the host (each a synchronisation on CUDA)
HOST_READS = ("item", "__float__", "__bool__", "__int__", "tolist")


def record_host_reads(monkeypatch) -> list[str]:
    """Patch the :data:`HOST_READS` methods of ``torch.Tensor`` on ``monkeypatch`` (a fixture or a
    ``monkeypatch.context()``) to log each call's name; returns the log."""
    calls: list[str] = []
    for name in HOST_READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return calls
