"""Thread control: small updates run on one thread, the caller's setting is always restored."""

from __future__ import annotations

import pytest
import torch

from boltzkit.errors import ConfigurationError
from boltzkit.models.rbm import RBM
from boltzkit.training import Callback, Trainer, TrainingConfig
from boltzkit.training.threads import SINGLE_THREAD_BELOW, threads_for_update, torch_threads


def test_torch_threads_sets_and_restores_even_on_error():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(1):
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ConfigurationError, match="threads"):
            with torch_threads(bad):
                pass


def test_small_cpu_updates_get_one_thread_large_ones_keep_torch_setting():
    cpu = torch.device("cpu")
    assert threads_for_update(100, 784, 20, cpu) == 1
    assert threads_for_update(100, 784, 500, cpu) is None
    assert SINGLE_THREAD_BELOW > 100 * 784 * 20 and SINGLE_THREAD_BELOW < 100 * 784 * 500
    assert threads_for_update(100, 784, 20, torch.device("meta")) is None  # not a CPU


class _Spy(Callback):
    """Records the thread count the callbacks run with (the caller's, not the update's)."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_epoch_end(self, trainer, epoch, metrics):
        self.seen.append(torch.get_num_threads())


def test_fit_uses_one_thread_for_small_models_and_restores_the_setting(monkeypatch):
    data = torch.bernoulli(torch.full((40, 8), 0.3), generator=torch.Generator().manual_seed(0))
    used: list[int] = []
    original = Trainer._run_epoch

    def spy(self, *args):
        used.append(torch.get_num_threads())
        return original(self, *args)

    monkeypatch.setattr(Trainer, "_run_epoch", spy)
    before = torch.get_num_threads()
    callback = _Spy()
    Trainer(RBM(8, 4, seed=0), TrainingConfig(epochs=2, batch_size=20), callbacks=[callback]).fit(data)
    assert used == [1, 1] and callback.seen == [before, before] and torch.get_num_threads() == before
    used.clear()
    Trainer(RBM(8, 4, seed=0), TrainingConfig(epochs=1, batch_size=20, threads=2)).fit(data)
    assert used == [2] and torch.get_num_threads() == before  # an explicit count wins
    with pytest.raises(ConfigurationError, match="threads"):
        TrainingConfig(threads=0)
