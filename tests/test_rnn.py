"""The RNN: explicit BPTT against autograd, truncation, fused kernel, diagnostics bound, the
labelling configurations and the examples of docs/sequences.md.

Tolerances: BPTT and autograd compute the same float64 sums in a different order, so they
agree to a few ulps of the largest term (~1e-15 relative); 1e-10 leaves room and still fails on
any real error (a wrong f′ or a missing term changes gradients at O(1))."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from boltzkit import checkpoint
from boltzkit.errors import ConfigurationError, DataError
from boltzkit.models.sequence import (
    RNN,
    SequenceBatches,
    SequenceStep,
    bptt_gradients,
    gradient_flow,
    jacobian_norms,
    lag_contribution_matrices,
    plot_gradient_flow,
)
from boltzkit.training import Batch, Trainer, TrainingConfig

F64 = torch.float64
PAIRINGS = [("softmax", "cross_entropy"), ("sigmoid", "cross_entropy"), ("softmax", "squared"),
            ("sigmoid", "squared"), ("identity", "squared")]
TASKS = ["next_step", "many_to_many", "many_to_one", "one_to_many"]
DOCS = Path(__file__).resolve().parents[1] / "docs" / "sequences.md"


def make_case(task: str, output: str, loss: str, activation: str, seed: int = 0, B: int = 3, T: int = 7,
              D: int = 3, H: int = 5, K: int = 4, scale: float = 1.0) -> tuple[RNN, Batch]:
    """A random float64 RNN and a padded batch (rows of 7, 5 and 2 steps) for ``task``."""
    g = torch.Generator().manual_seed(seed)
    K = D if task == "next_step" else K
    model = RNN(D, H, K, activation=activation, output=output, loss=loss, task=task, seed=seed, dtype=F64)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=F64) * scale / max(1, p.shape[-1]) ** 0.5)
    mask = torch.ones(B, T, dtype=F64)
    mask[1, 5:] = 0
    mask[2, 2:] = 0

    def targets(*shape):
        y = torch.rand(*shape, generator=g, dtype=F64)
        return y / y.sum(-1, keepdim=True) if output == "softmax" else y

    if task == "next_step":
        x = torch.bernoulli(torch.full((B, T, D), 0.4, dtype=F64), generator=g) * mask[..., None]
        return model, Batch(x, mask)
    if task == "one_to_many":
        return model, Batch(torch.randn(B, D, generator=g, dtype=F64), mask, targets(B, T, K))
    x = torch.randn(B, T, D, generator=g, dtype=F64) * mask[..., None]
    y = targets(B, K) if task == "many_to_one" else targets(B, T, K)
    return model, Batch(x, mask, y)


def autograd_gradients(model: RNN, batch: Batch, fused: bool = False) -> dict[str, torch.Tensor]:
    total, _ = model.summed_loss(batch, fused=fused)
    names = ["U", "W", "b", "V", "c"]
    return dict(zip(names, torch.autograd.grad(total, [getattr(model, n) for n in names])))


def assert_close(a: dict, b: dict, rtol: float = 1e-10) -> None:
    for name in a:
        scale = max(1.0, float(b[name].abs().max()))
        assert float((a[name] - b[name]).abs().max()) <= rtol * scale, name


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("output,loss", PAIRINGS)
@pytest.mark.parametrize("task", TASKS)
def test_bptt_equals_autograd(task, output, loss, activation):
    model, batch = make_case(task, output, loss, activation)
    explicit = bptt_gradients(model, batch)
    assert_close(explicit, autograd_gradients(model, batch))
    assert all(float(g.abs().max()) > 1e-6 for g in explicit.values())   # no empty comparison


def truncated_reference(model: RNN, batch: Batch, tau: int) -> dict[str, torch.Tensor]:
    """Autograd of Σ_t w_t C_t where each C_t is recomputed from h_{t−τ} held fixed: exactly the
    terms t − k < τ of the lecture's double sum."""
    x, y, w = model.prepare(batch)
    with torch.no_grad():
        hs, _ = model.run(x, fused=False)
    h_all = torch.cat([model.initial_state(x.shape[0])[:, None], hs], 1)   # h_0..h_T
    total = 0.0
    for t in range(1, x.shape[1] + 1):
        start = max(0, t - tau)
        h = h_all[:, start].detach()
        for k in range(start + 1, t + 1):
            h = model.step(x[:, k - 1], h)
        c_t = model.step_losses(model.output_field(h)[:, None], y[:, t - 1:t])[:, 0]
        total = total + (c_t * w[:, t - 1]).sum()
    names = ["U", "W", "b", "V", "c"]
    return dict(zip(names, torch.autograd.grad(total, [getattr(model, n) for n in names])))


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("tau", [1, 2, 4])
@pytest.mark.parametrize("task", ["next_step", "many_to_one"])
def test_truncated_bptt_equals_autograd_of_truncated_loss(task, tau, activation):
    model, batch = make_case(task, "sigmoid", "cross_entropy", activation, seed=3)
    truncated = bptt_gradients(model, batch, truncation=tau)
    assert_close(truncated, truncated_reference(model, batch, tau))
    full = bptt_gradients(model, batch)
    assert float((truncated["W"] - full["W"]).abs().max()) > 1e-6   # truncation does cut something


def test_truncation_at_least_T_is_full_bptt():
    model, batch = make_case("next_step", "sigmoid", "cross_entropy", "tanh")
    assert_close(bptt_gradients(model, batch, truncation=7), bptt_gradients(model, batch))
    assert_close(bptt_gradients(model, batch, truncation=100), bptt_gradients(model, batch))


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_fused_kernel_equals_the_step_loop(activation):
    model, batch = make_case("many_to_many", "softmax", "cross_entropy", activation)
    x, _, _ = model.prepare(batch)
    fused, h_fused = model.run(x, fused=True)
    loop, h_loop = model.run(x, fused=False)
    assert torch.allclose(fused, loop, rtol=0, atol=1e-12) and torch.allclose(h_fused, h_loop, atol=1e-12)
    assert_close(autograd_gradients(model, batch, fused=True), autograd_gradients(model, batch, fused=False))


def test_bptt_step_gives_the_same_update_as_the_autograd_step():
    """Two trainers from the same initial model, one by autograd (fused kernel), one by the
    explicit loop: the same parameters after an epoch of 4 SGD updates."""
    g = torch.Generator().manual_seed(1)
    seqs = [torch.bernoulli(torch.full((n, 6), 0.3, dtype=F64), generator=g) for n in (5, 9, 3, 7, 8, 4, 6, 2)]
    source = SequenceBatches(seqs)
    results = []
    for method in ("autograd", "bptt"):
        model = RNN(6, 5, output="sigmoid", seed=2, dtype=F64)
        config = TrainingConfig(epochs=1, batch_size=2, lr=0.5, seed=0)
        Trainer(model, config, estimator=SequenceStep(method)).fit(source)
        results.append({n: p.detach().clone() for n, p in model.named_parameters()})
    start = {n: p.detach() for n, p in RNN(6, 5, output="sigmoid", seed=2, dtype=F64).named_parameters()}
    for name in results[0]:
        assert torch.allclose(results[0][name], results[1][name], rtol=0, atol=1e-12), name
    assert float((results[0]["W"] - start["W"]).abs().max()) > 1e-3   # the update is not empty


def test_clipping_bounds_the_gradient_norm():
    model, batch = make_case("next_step", "sigmoid", "cross_entropy", "tanh", scale=3.0)
    step = SequenceStep(clip=0.01)
    step.step(model, *batch[:1], mask=batch.mask)
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert abs(float(norm) - 0.01) < 1e-12
    assert step.metrics()["clipped_fraction"] == 1.0


def test_state_jacobian_is_the_autograd_jacobian():
    model, batch = make_case("many_to_many", "softmax", "cross_entropy", "tanh")
    x, h = batch.values[:1, 0], torch.randn(1, 5, dtype=F64)
    auto = torch.autograd.functional.jacobian(lambda v: model.step(x, v[None])[0], h[0])
    assert torch.allclose(model.state_jacobian(x, h)[0], auto, atol=1e-12)


def test_jacobian_norms_match_autograd_of_the_unrolled_map():
    """‖∂h_t/∂h_k‖₂ from the chained per-step Jacobians equals the norm of autograd's Jacobian
    of h_t as a function of h_k (the map unrolled from k to t)."""
    model, batch = make_case("many_to_many", "softmax", "cross_entropy", "tanh", scale=2.0)
    x = batch.values[:1]
    norms = jacobian_norms(model, x[0])
    with torch.no_grad():
        hs, _ = model.run(x, fused=False)
    h_all = torch.cat([torch.zeros(1, 1, 5, dtype=F64), hs], 1)
    for k, t in [(0, 3), (2, 7), (4, 5), (1, 6)]:
        def unrolled(h, k=k, t=t):
            h = h[None]
            for j in range(k + 1, t + 1):
                h = model.step(x[:, j - 1], h)
            return h[0]
        jac = torch.autograd.functional.jacobian(unrolled, h_all[0, k])
        assert abs(norms[t, k] - float(torch.linalg.matrix_norm(jac, ord=2))) < 1e-10


@pytest.mark.parametrize("activation,scale,init", [("tanh", 0.5, "uniform"), ("tanh", 3.0, "uniform"),
                                                   ("relu", 1.5, "uniform"), ("relu", 1.0, "identity")])
def test_measured_norms_never_exceed_the_bound(activation, scale, init):
    g = torch.Generator().manual_seed(5)
    model = RNN(4, 12, 2, activation=activation, init=init, task="many_to_one", output="identity",
                loss="squared", seed=5, dtype=F64)
    if init == "uniform":
        with torch.no_grad():
            model.W.mul_(scale / torch.linalg.matrix_norm(model.W, ord=2))
    x = torch.randn(1, 40, 4, generator=g, dtype=F64)
    flow = gradient_flow(model, Batch(x, None, torch.randn(1, 2, generator=g, dtype=F64)))
    bound = flow.bound
    T = flow.norms.shape[0]
    measured = 0
    for t in range(T):
        for k in range(t + 1):
            if np.isfinite(flow.norms[t, k]):
                assert flow.norms[t, k] <= bound[t - k] * (1 + 1e-10)
                measured += 1
    assert measured == T * (T + 1) // 2 and flow.beta_s == 1.0


def test_tanh_decays_and_the_irnn_does_not():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 30, 2, generator=g, dtype=F64)
    tanh = RNN(2, 20, 1, task="many_to_one", output="identity", loss="squared", seed=0, dtype=F64)
    with torch.no_grad():
        tanh.W.mul_(0.9 / torch.linalg.matrix_norm(tanh.W, ord=2))
    irnn = RNN(2, 20, 1, activation="relu", init="identity", task="many_to_one", output="identity",
               loss="squared", seed=0, dtype=F64)
    lag = 20
    tanh_norm = np.diagonal(jacobian_norms(tanh, x[0]), -lag)
    irnn_norm = np.diagonal(jacobian_norms(irnn, x[0]), -lag)
    assert tanh_norm.max() <= 0.9 ** lag
    assert irnn_norm.min() > 0.999


@pytest.mark.parametrize("task", ["next_step", "many_to_one"])
def test_lag_contributions_sum_to_the_recurrent_gradient(task):
    model, batch = make_case(task, "sigmoid", "cross_entropy", "tanh")
    one = Batch(*(None if t is None else t[:1] for t in batch))
    parts = lag_contribution_matrices(model, one)
    assert torch.allclose(sum(parts), bptt_gradients(model, one)["W"], atol=1e-12)
    if task == "many_to_one":   # one loss at the end: lag ℓ is step T − ℓ alone; every lag but the
        # last (whose h_0 = 0) contributes
        assert all(float(p.abs().max()) > 0 for p in parts[:-1]) and float(parts[-1].abs().max()) == 0


def test_diagnostics_plot(tmp_path):
    model, batch = make_case("next_step", "sigmoid", "cross_entropy", "tanh")
    flow = gradient_flow(model, batch, max_lag=4, stride=2)
    assert np.isnan(flow.norms[6, 0]) and np.isfinite(flow.norms[4, 2])
    path = plot_gradient_flow({"tanh": flow}, tmp_path / "flow.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    summary = flow.to_dict()
    assert summary["norm_mean_by_lag"][0] == 1.0 and summary["bound_by_lag"][0] == 1.0


def test_step_drives_the_model_step_by_step():
    model, batch = make_case("many_to_many", "softmax", "cross_entropy", "relu")
    x = batch.values
    state = model.initial_state(x.shape[0])
    outputs = []
    for t in range(x.shape[1]):
        state = model.step(x[:, t], state)
        outputs.append(model.output(model.hidden(state)))
    assert torch.allclose(torch.stack(outputs, 1), model(x), atol=1e-12)


def test_generate_one_to_many_and_next_step():
    model, batch = make_case("one_to_many", "softmax", "cross_entropy", "tanh")
    out = model.generate(batch.values, 5)
    x, _, _ = model.prepare(Batch(batch.values, None, torch.zeros(3, 5, 4, dtype=F64)))
    assert torch.allclose(out, model(x), atol=1e-12)
    music = RNN(6, 4, output="sigmoid", seed=0)
    frames = music.generate(torch.zeros(2, 6), 8, torch.Generator().manual_seed(0))
    assert frames.shape == (2, 8, 6) and set(frames.unique().tolist()) <= {0.0, 1.0}


def test_checkpoint_round_trip(tmp_path):
    model, batch = make_case("many_to_one", "identity", "squared", "relu")
    checkpoint.save(tmp_path / "ck", model)
    again = checkpoint.load(tmp_path / "ck")
    assert isinstance(again, RNN) and again.config() == model.config()
    assert torch.equal(again(batch.values), model(batch.values))


def test_bad_configurations_and_data():
    with pytest.raises(ConfigurationError, match="cross-entropy"):
        RNN(3, 4, 2, output="identity", loss="cross_entropy", task="many_to_one")
    with pytest.raises(ConfigurationError, match="activation"):
        RNN(3, 4, activation="sigmoid")
    with pytest.raises(ConfigurationError, match="n_output"):
        RNN(3, 4, 5, task="next_step")
    model = RNN(3, 4, output="sigmoid")
    with pytest.raises(DataError, match="columns"):
        Trainer(model, TrainingConfig(epochs=1)).fit(SequenceBatches([torch.zeros(4, 5)]))
    with pytest.raises(DataError, match="empty"):
        SequenceBatches([torch.zeros(0, 3)])
    with pytest.raises(DataError, match="NaN"):
        SequenceBatches([torch.full((2, 3), float("nan"))])
    with pytest.raises(DataError, match="targets"):
        Trainer(RNN(3, 4, 2, task="many_to_one"), TrainingConfig(epochs=1)).fit(SequenceBatches([torch.zeros(4, 3)]))


def _doc_blocks() -> list[str]:
    text = DOCS.read_text("utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_docs_exist_with_examples():
    assert len(_doc_blocks()) >= 3


@pytest.mark.parametrize("index", range(5))
def test_docs_examples_run(index):
    """Each ```python block of docs/sequences.md runs (the blocks assert what they claim)."""
    blocks = _doc_blocks()
    if index >= len(blocks):
        pytest.skip("no such block")
    exec(compile(blocks[index], f"docs/sequences.md block {index}", "exec"), {"__name__": "docs"})
