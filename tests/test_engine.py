"""The common engine: one trainer, one checkpoint reader for every kind, explicit chain state,
batch sources, no process-wide side effects, draws on the generator's device."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from boltzkit import checkpoint, exact
from boltzkit.models import RBM, LossModel
from boltzkit.recommend import CFRBM
from boltzkit.sampling import ChainState, PersistentChains
from boltzkit.training import Batch, EarlyStopping, MetricCallback, Trainer, TrainingConfig, make_estimator

V1 = Path(__file__).parent / "data" / "checkpoints_v1"


def binary(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return (torch.rand(n, d, generator=torch.Generator().manual_seed(seed)) < 0.3).float()


# -- checkpoints written by boltzkit 0.1 (commit 255866b) still load -------------------------
def test_version_1_rbm_checkpoint_loads_evaluates_and_resumes():
    model, config, state = checkpoint.load_checkpoint(V1 / "rbm", training_state=True)
    assert isinstance(model, RBM) and config["format_version"] == 1
    assert np.isfinite(exact.log_likelihood(model, binary(50, 12, seed=3)))
    trainer = Trainer(model, TrainingConfig.from_dict({**config["training"], "epochs": 3}))
    trainer.load_training_state(state, config["training_state"])
    assert trainer.epoch == 2 and "chains" in trainer.estimator.state_dict()
    trainer.fit(binary(200, 12))
    assert trainer.epoch == 3


def test_version_1_cf_checkpoint_loads_and_predicts_the_same():
    model = checkpoint.load(V1 / "cfrbm")
    assert isinstance(model, CFRBM)
    saved = np.load(V1 / "cfrbm_predictions.npy")
    config = checkpoint.read_config(V1 / "cfrbm")
    assert config["format_version"] == 1
    codes = model.codes_
    users, items = np.nonzero((codes > 0).numpy().T if model.cases == "items" else (codes > 0).numpy())
    # the predictions were made for the first ten training pairs of the fixture
    assert saved.shape == (10,) and np.isfinite(saved).all()
    rng = np.random.default_rng(0)
    u, i = rng.integers(0, 20, 150), rng.integers(0, 15, 150)
    keep = np.unique(u * 100 + i, return_index=True)[1]
    # the parameters reload bit for bit; predictions agree to float32 rounding (kernels such as the
    # softmax over rating levels may change between releases)
    np.testing.assert_allclose(model.predict(u[keep][:10], i[keep][:10]), saved, rtol=1e-6)


def test_one_reader_returns_every_kind(tmp_path):
    rbm = RBM(6, 3, seed=1)
    checkpoint.save(tmp_path / "rbm", rbm)
    assert type(checkpoint.load(tmp_path / "rbm")) is RBM
    assert checkpoint.load(V1 / "cfrbm").__class__ is CFRBM
    with pytest.raises(checkpoint.CheckpointError, match="not a plain RBM"):
        checkpoint.load_checkpoint(V1 / "cfrbm", kind=RBM)


# -- chain state --------------------------------------------------------------------------------
def test_multi_layer_chain_state_round_trips_through_a_state_dict():
    chains = PersistentChains(4)
    chains.chains = ChainState(torch.zeros(4, 3), {"hidden_1": torch.ones(4, 2), "hidden_2": torch.full((4, 5), 2.0)})
    state = chains.state_dict()
    assert set(state) == {"chains", "chains.hidden_1", "chains.hidden_2"}
    again = PersistentChains(4)
    again.load_state_dict(state)
    assert torch.equal(again.chains.layers["hidden_2"], chains.chains.layers["hidden_2"])
    assert torch.equal(again.state, chains.state)


def test_pcd_chains_start_with_indices_drawn_on_the_generators_device(monkeypatch):
    """Every random draw names the generator's device (a CUDA generator cannot draw on the CPU)."""
    seen = []
    real = torch.randint

    def spy(*args, generator=None, device=None, **kwargs):
        if generator is not None:
            seen.append(device)
            assert device is not None and torch.device(device) == generator.device, \
                "a draw with a generator must name the generator's device"
        return real(*args, generator=generator, device=device, **kwargs)

    monkeypatch.setattr(torch, "randint", spy)
    for method in ("pcd", "pt", "fpcd"):
        Trainer(RBM(8, 3, seed=0), TrainingConfig(epochs=1, batch_size=20, method=method)).fit(binary(40, 8))
    assert len(seen) >= 3


# -- batch sources --------------------------------------------------------------------------------
def test_a_dataloader_trains_exactly_as_the_same_batches_by_hand():
    data = binary(60, 8, seed=4)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data), batch_size=20, shuffle=False)
    config = TrainingConfig(epochs=2, batch_size=20, method="cd", lr_schedule="constant", init_visible_bias=False)
    trained = RBM(8, 3, seed=0)
    Trainer(trained, config).fit(loader)
    by_hand = RBM(8, 3, seed=0)
    reference = Trainer(by_hand, config)
    for _ in range(2):
        for (batch,) in loader:
            reference.estimator.step(by_hand, batch, reference.generator)
            reference.optimizer.step()
    for p, q in zip(trained.parameters(), by_hand.parameters()):
        assert torch.equal(p, q)


def test_numpy_arrays_are_accepted_and_other_objects_refused():
    Trainer(RBM(8, 3), TrainingConfig(epochs=1, batch_size=20)).fit(binary(40, 8).numpy())
    with pytest.raises(Exception, match="must be a torch.Tensor, a NumPy array or a DataLoader"):
        Trainer(RBM(8, 3), TrainingConfig(epochs=1)).fit([[0, 1]] * 3)


class _Regression(LossModel):
    """y = w x + b under squared error: a model trained by a loss through the same trainer."""

    checkpoint_kind = "test-regression"

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 1)

    def loss(self, batch: Batch) -> torch.Tensor:
        x, y = batch.values[:, :3], batch.values[:, 3:]
        return ((self.linear(x) - y) ** 2).mean()


def test_a_loss_model_trains_through_the_same_trainer():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3
    model = _Regression()
    config = TrainingConfig(epochs=60, batch_size=32, lr=0.1, momentum=0.5, weight_decay=0.0, lr_schedule="constant")
    history = Trainer(model, config).fit(torch.cat([x, y], 1))
    assert history[-1]["epoch"] == 60
    torch.testing.assert_close(model.linear.weight.detach(), torch.tensor([[1.0, -2.0, 0.5]]), atol=1e-3, rtol=0)


# -- no process-wide side effects -------------------------------------------------------------------
def test_pictures_leave_matplotlib_state_alone(tmp_path):
    # rcParams read without resolving the backend (get_backend() itself may import pyplot)
    code = ("import matplotlib, sys; before = dict.__getitem__(matplotlib.rcParams, 'backend'); "
            "from boltzkit import plot; import numpy as np; "
            f"plot.save_filters(np.random.rand(16, 4), r'{tmp_path / 'f.png'}'); "
            "plot.save_curves([{'epoch': 1, 'x': 1.0}], " f"r'{tmp_path / 'c.png'}'); "
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'; "
            "assert dict.__getitem__(matplotlib.rcParams, 'backend') == before, 'backend changed'")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (tmp_path / "f.png").stat().st_size > 0


def test_early_stopping_logs_instead_of_printing(capsys, caplog, monkeypatch):
    import logging

    monkeypatch.setattr(logging.getLogger("boltzkit"), "handlers", [])  # the CLI's handler, if a test installed it
    data = binary(40, 8)
    scores = iter([3.0, 2.0, 1.0, 0.0])
    callbacks = [MetricCallback("score", lambda m, d: next(scores), data), EarlyStopping("score", patience=1)]
    with caplog.at_level("INFO", logger="boltzkit"):
        Trainer(RBM(8, 3), TrainingConfig(epochs=4, batch_size=20), callbacks=callbacks).fit(data)
    assert "early stopping" in caplog.text
    assert capsys.readouterr().err == ""


def test_the_thread_rule_restores_the_users_setting():
    before = torch.get_num_threads()
    Trainer(RBM(8, 3), TrainingConfig(epochs=1, batch_size=20)).fit(binary(40, 8))
    assert torch.get_num_threads() == before


def test_estimators_are_built_from_the_config_not_by_the_trainer():
    trainer = Trainer(RBM(8, 3), TrainingConfig(method="pt", replicas=3, n_chains=7))
    assert trainer.estimator.name == "pt" and trainer.estimator.chains.replicas == 3
    assert trainer.estimator.rows(20) == 60  # max(batch, chains) × replicas
    assert make_estimator("cd", 2).rows(20) == 20
