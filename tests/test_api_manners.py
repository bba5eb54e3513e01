"""PyTorch's manners in the Python API: repr, forward, NumPy input, no gradient on draws,
one-call sampling, save/load where a user looks for them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from boltzkit import RBM, exact, load, save
from boltzkit.errors import DataError


def test_repr_forward_and_numpy_input():
    rbm = RBM(6, 3, visible="bernoulli", hidden="bernoulli", seed=0)
    assert "n_visible=6, n_hidden=3" in repr(rbm) and "bernoulli" in repr(rbm)
    v = (torch.rand(5, 6, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    assert torch.equal(rbm(v), rbm.free_energy(v))                    # forward = free energy
    x = v.numpy()
    assert torch.equal(rbm.transform(x), rbm.transform(v))
    assert not rbm.transform(x).requires_grad and not rbm.reconstruct(x).requires_grad
    assert np.isfinite(exact.log_likelihood(rbm, x))
    with pytest.raises(DataError, match="columns"):
        rbm.transform(np.zeros((2, 5), dtype=np.float32))
    with pytest.raises(DataError, match="torch.Tensor, a NumPy array"):
        rbm.transform([[0, 1]])


def test_draws_never_track_gradients():
    rbm = RBM(6, 3)
    h = rbm.sample_hidden(torch.zeros(4, 6))
    v = rbm.sample_visible(h)
    assert not h.requires_grad and not v.requires_grad
    v.numpy()  # works without .detach()


def test_draw_collects_n_samples_with_burn_in_and_thinning():
    rbm = RBM(5, 2, seed=1)
    with torch.no_grad():
        rbm.visible.bias.fill_(3.0)                                     # p(v_i = 1) ≈ σ(3) ≈ 0.95
    samples = rbm.draw(4000, burn_in=20, thin=2, chains=500, seed=3)
    assert samples.shape == (4000, 5) and set(samples.unique().tolist()) <= {0.0, 1.0}
    # exact marginal from enumeration; 4000 rows (correlated within a chain) → a loose 5σ bound
    states = rbm.visible.states(0, rbm.visible.n_states, torch.float64)
    p = torch.softmax(-rbm.free_energy(states.float()).double(), 0)
    marginal = (p.unsqueeze(1) * states).sum(0)
    assert (samples.double().mean(0) - marginal).abs().max() < 5 * 0.5 / (500 ** 0.5)
    means = rbm.draw(10, burn_in=5, values="mean", method="pt", replicas=3)
    assert ((means > 0) & (means < 1)).all()
    assert torch.equal(rbm.draw(6, burn_in=3, seed=7), rbm.draw(6, burn_in=3, seed=7))


def test_save_and_load_are_where_users_look(tmp_path):
    rbm = RBM(6, 3, seed=2)
    rbm.save(tmp_path / "a")
    assert torch.equal(RBM.load(tmp_path / "a").weight, rbm.weight)
    save(tmp_path / "b", rbm)
    assert torch.equal(load(tmp_path / "b").weight, rbm.weight)
    # state_dict names and checkpoint names: one documented mapping ('.' → '_')
    assert set(rbm.checkpoint_tensors()) == {k.replace(".", "_") for k, _ in rbm.named_parameters()}


def test_conditionals_are_differentiable_and_the_one_call_helpers_are_detached():
    """hidden_mean/visible_mean behave like a module's forward (gradients while the parameters
    require them, none under no_grad); transform, reconstruct and draw hand back plain tensors."""
    rbm = RBM(6, 3, seed=0)
    v = (torch.rand(5, 6, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    h = rbm.hidden_mean(v)
    assert h.grad_fn is not None and rbm.visible_mean(h).grad_fn is not None
    h.sum().backward()                                                  # fine-tuning goes through it
    torch.testing.assert_close(rbm.hidden.bias.grad, (h * (1 - h)).sum(0).detach())  # dσ(a)/dc = σ(1 − σ)
    with torch.no_grad():
        assert rbm.hidden_mean(v).grad_fn is None
    np.testing.assert_array_equal(rbm.transform(v).numpy(), h.detach().numpy())
    rbm.reconstruct(v.numpy()).numpy()
    rbm.draw(3, burn_in=2).numpy()
    for p in rbm.parameters():
        p.requires_grad_(False)
    assert rbm.hidden_mean(v).grad_fn is None                           # nothing asked for a gradient
