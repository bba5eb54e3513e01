"""Device handling: every sampler, estimator and evaluation runs with the model, its data and its
generator on CUDA (skipped without a GPU), and on CPU the same code keeps every tensor and
generator on one device."""

from __future__ import annotations

import pytest
import torch

from boltzkit import RBM, Trainer, TrainingConfig, ais, exact
from boltzkit.recommend import CFRBM, RatingData

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _data(device: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (torch.rand(200, 12, generator=g) < 0.3).float().to(device)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))])
@pytest.mark.parametrize("method", ["cd", "pcd", "pt", "fpcd"])
def test_every_estimator_trains_on_the_models_device(device, method):
    rbm = RBM(12, 5, seed=0, device=device)
    trainer = Trainer(rbm, TrainingConfig(epochs=2, batch_size=50, method=method, replicas=3, centered=method == "pcd"))
    assert trainer.generator.device.type == device
    trainer.fit(_data(device))
    assert all(p.device.type == device for p in rbm.parameters())
    state = trainer.estimator.state_dict()
    assert all(t.device.type == device for k, t in state.items() if k.startswith("chains") and k == "chains")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))])
def test_ais_exact_and_sampling_on_the_models_device(device):
    rbm = RBM(12, 5, seed=0, device=device)
    data = _data(device)
    Trainer(rbm, TrainingConfig(epochs=1, batch_size=50)).fit(data)
    est = ais.ais(rbm, data, n_chains=50, betas=300, seed=0)
    assert abs(est.log_z - exact.log_partition(rbm)) < 0.5
    rev = ais.reverse_ais(rbm, data, n_chains=50, betas=300, seed=0)
    assert rev.log_weights.numel() == 50
    samples = rbm.draw(8, burn_in=5, method="pt", replicas=3)
    assert samples.device.type == device


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_a_cuda_generator_with_persistent_chains_starts_on_the_gpu():
    """The bug the engine issue found: PCD drew its chain indices on the CPU with a CUDA generator."""
    rbm = RBM(12, 5, seed=0, device="cuda")
    chains = rbm.init_chains(_data("cuda"), 7, torch.Generator("cuda").manual_seed(0))
    assert chains.visible.device.type == "cuda" and chains.n_chains == 7


def test_cf_rbm_trains_on_cpu_with_one_generator_device():
    import numpy as np

    rng = np.random.default_rng(0)
    cells = rng.choice(20 * 15, 120, replace=False)
    data = RatingData(users=cells // 15, items=cells % 15, ratings=rng.integers(1, 6, 120),
                      user_ids=np.arange(20), item_ids=np.arange(15), n_levels=5)
    model = CFRBM(n_hidden=4, epochs=1).fit(data)
    assert model.rbm_.weight.device.type == "cpu"
