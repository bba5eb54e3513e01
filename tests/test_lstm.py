"""The LSTM: the lecture's gate equations against torch.nn.LSTM with the same weights (float64,
to rounding: the same products summed in another order, ~1e-16; 1e-12 tolerance), the fused
path against the loop, diagnostics through autograd, checkpoints, a little training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from boltzkit import checkpoint
from boltzkit.models.sequence import LSTM, SequenceBatches, fit_sequences, gradient_flow, jacobian_norms
from boltzkit.training import Batch

F64 = torch.float64


def torch_pair(D: int = 3, H: int = 6, seed: int = 0) -> tuple[LSTM, torch.nn.LSTM]:
    """A torch.nn.LSTM with random weights and our LSTM given the same weights, moved from
    torch's (i, f, g, o) row blocks of W_ih, W_hh into the lecture's W_* acting on [h, x]."""
    g = torch.Generator().manual_seed(seed)
    ref = torch.nn.LSTM(D, H, batch_first=True, dtype=F64)
    ours = LSTM(D, H, output="sigmoid", dtype=F64)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.rand(p.shape, generator=g, dtype=F64) * 1.6 - 0.8)
        blocks = dict(zip("ifCo", range(4)))
        for gate, j in blocks.items():
            rows = slice(j * H, (j + 1) * H)
            getattr(ours, f"W_{gate}").copy_(torch.cat([ref.weight_hh_l0[rows], ref.weight_ih_l0[rows]], 1))
            getattr(ours, f"b_{gate}").copy_(ref.bias_ih_l0[rows] + ref.bias_hh_l0[rows])
    return ours, ref


@pytest.mark.parametrize("fused", [False, True])
def test_outputs_equal_torch_lstm(fused):
    ours, ref = torch_pair()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 9, 3, generator=g, dtype=F64)
    h0, c0 = torch.randn(4, 6, generator=g, dtype=F64), torch.randn(4, 6, generator=g, dtype=F64)
    hs, (h, c) = ours.run(x, (h0, c0), fused=fused)
    ref_hs, (ref_h, ref_c) = ref(x, (h0[None], c0[None]))
    assert torch.allclose(hs, ref_hs, rtol=0, atol=1e-12)
    assert torch.allclose(h, ref_h[0], atol=1e-12) and torch.allclose(c, ref_c[0], atol=1e-12)
    assert float(hs.detach().abs().max()) > 0.1


def test_gradients_of_loop_and_fused_agree():
    ours, _ = torch_pair()
    x = torch.bernoulli(torch.full((3, 8, 3), 0.5, dtype=F64), generator=torch.Generator().manual_seed(2))
    grads = []
    for fused in (False, True):
        total, _ = ours.summed_loss(Batch(x), fused=fused)
        grads.append(torch.autograd.grad(total, list(ours.parameters())))
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-12)


def test_step_is_the_gate_equations():
    ours, _ = torch_pair(D=2, H=3)
    g = torch.Generator().manual_seed(4)
    x, h, c = (torch.randn(1, n, generator=g, dtype=F64) for n in (2, 3, 3))
    hx = torch.cat([h, x], 1)
    sig = torch.sigmoid
    f = sig(hx @ ours.W_f.T + ours.b_f)
    i = sig(hx @ ours.W_i.T + ours.b_i)
    c_new = f * c + i * torch.tanh(hx @ ours.W_C.T + ours.b_C)
    h_new = sig(hx @ ours.W_o.T + ours.b_o) * torch.tanh(c_new)
    h_step, c_step = ours.step(x, (h, c))
    assert torch.allclose(h_step, h_new, atol=1e-14) and torch.allclose(c_step, c_new, atol=1e-14)


def test_jacobian_norms_match_autograd_of_the_unrolled_map():
    ours, _ = torch_pair(D=2, H=3)
    x = torch.randn(1, 6, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
    norms = jacobian_norms(ours, x[0])
    with torch.no_grad():
        state = ours.initial_state(1)
        states = [ours.state_vector(state)]
        for t in range(6):
            state = ours.step(x[:, t], state)
            states.append(ours.state_vector(state))
    k, t = 1, 5

    def unrolled(s):
        st = ours.vector_state(s[None])
        for j in range(k + 1, t + 1):
            st = ours.step(x[:, j - 1], st)
        return ours.state_vector(st)[0]
    jac = torch.autograd.functional.jacobian(unrolled, states[k][0])
    assert abs(norms[t, k] - float(torch.linalg.matrix_norm(jac, ord=2))) < 1e-10


def test_gradient_flow_has_no_rnn_bound():
    ours, _ = torch_pair(D=2, H=3)
    flow = gradient_flow(ours, Batch(torch.bernoulli(torch.full((1, 6, 2), 0.5, dtype=F64))))
    assert flow.bound is None and np.isfinite(flow.contributions).all() and flow.contributions[0] > 0
    assert flow.norms.shape == (7, 7) and np.isfinite(np.tril(flow.norms)).all()


def test_checkpoint_round_trip(tmp_path):
    ours, _ = torch_pair()
    checkpoint.save(tmp_path / "ck", ours)
    again = checkpoint.load(tmp_path / "ck")
    x = torch.rand(2, 5, 3, dtype=F64)
    assert isinstance(again, LSTM) and torch.equal(again(x), ours(x))


def test_training_learns_a_repeating_pattern():
    """Next-step prediction of a period-3 pattern: the per-step NLL falls far below the
    marginal-frequency baseline (3·H(1/3) ≈ 1.91 nats per frame of 3 notes)."""
    eye = torch.eye(3)
    seqs = [eye[[(i + s) % 3 for i in range(12)]] for s in range(3)] * 4
    model = LSTM(3, 8, output="sigmoid", seed=0)
    trainer = fit_sequences(model, SequenceBatches(seqs), epochs=60, batch_size=4, lr=0.03)
    assert trainer.history[-1]["train_loss"] < 0.5 * trainer.history[0]["train_loss"]
    assert trainer.history[-1]["train_loss"] < 0.6
