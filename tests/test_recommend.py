"""The collaborative-filtering RBM: masking, shapes, reproducibility, persistence, learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from boltzkit.errors import ConfigurationError
from boltzkit.estimators import ContrastiveDivergence
from boltzkit.ratings import BiasBaseline, GlobalMean, RatingData, rmse, split_ratings
from boltzkit.recommend import CFRBM, ConditionalRBM
from boltzkit.rbm import RBM

K = 5


def block_ratings(n_users: int = 80, n_items: int = 40, density: float = 0.5, noise: float = 0.1,
                  seed: int = 0) -> RatingData:
    """Two user groups and two item groups: 5 within a group, 1 across, some ratings random."""
    rng = np.random.default_rng(seed)
    gu, gi = rng.integers(0, 2, n_users), rng.integers(0, 2, n_items)
    users, items = np.nonzero(rng.random((n_users, n_items)) < density)
    ratings = np.where(gu[users] == gi[items], 5, 1)
    flip = rng.random(ratings.shape[0]) < noise
    ratings[flip] = rng.integers(1, K + 1, int(flip.sum()))
    return RatingData(users, items, ratings, np.arange(n_users), np.arange(n_items), K)


@pytest.fixture(scope="module")
def split():
    return split_ratings(block_ratings(), test_fraction=0.2, seed=0)


@pytest.fixture(scope="module")
def fitted(split):
    return CFRBM(n_hidden=10, epochs=30, lr=0.1, batch_size=10, seed=0).fit(split[0])


def test_learns_block_structure(split, fitted):
    train, test = split
    pred = fitted.predict(test.users, test.items)
    assert pred.shape == (len(test),)
    assert np.all((pred >= 1) & (pred <= K))
    ours = rmse(pred, test.ratings)
    assert ours < 0.8 * rmse(GlobalMean().fit(train).predict(test.users, test.items), test.ratings)
    assert ours < rmse(BiasBaseline().fit(train).predict(test.users, test.items), test.ratings)
    exact = fitted.predict(test.users, test.items, method="exact")
    assert abs(rmse(exact, test.ratings) - ours) < 0.1


def test_evaluation_uses_training_ratings_only(split, fitted):
    train, test = split
    codes = fitted.codes_
    assert int(codes[torch.from_numpy(test.users), torch.from_numpy(test.items)].abs().sum()) == 0
    assert int((codes > 0).sum()) == len(train)
    # a pair's prediction does not depend on the other pairs asked in the same call
    alone = np.array([fitted.predict(test.users[j:j + 1], test.items[j:j + 1])[0] for j in range(20)])
    np.testing.assert_allclose(alone, fitted.predict(test.users, test.items)[:20], rtol=0, atol=1e-6)


def test_exact_prediction_leaves_the_queried_rating_out(split, fitted):
    train, _ = split
    j = 0
    u, i = train.users[j:j + 1], train.items[j:j + 1]
    before = fitted.predict(u, i, method="exact")
    saved = fitted.codes_[u[0], i[0]].item()
    try:
        fitted.codes_[u[0], i[0]] = 1 if saved != 1 else 5  # change the very rating asked for
        after = fitted.predict(u, i, method="exact")
    finally:
        fitted.codes_[u[0], i[0]] = saved
    np.testing.assert_allclose(before, after, rtol=0, atol=1e-5)


def test_masked_items_never_change_the_gradient():
    n_items, hidden = 6, 4
    rbm = RBM(n_items, hidden, visible=f"softmax:{K}", dtype=torch.float64, seed=0)
    codes = torch.tensor([[1, 0, 3, 0, 5, 2], [0, 0, 4, 4, 0, 1], [2, 0, 0, 0, 5, 0]])
    model = CFRBM()
    model.n_levels_, model.dtype = K, torch.float64
    v, mask = model._one_hot(codes)
    unrated_by_all = torch.arange(K * 1, K * 2)                   # item 1: nobody rated it
    grads = []
    for trial in range(2):
        if trial:
            with torch.no_grad():                                    # change the unrated item only
                rbm.weight[unrated_by_all] += torch.randn(K, hidden, dtype=torch.float64) * 3
                rbm.visible.bias[unrated_by_all] -= 2.0
        v_neg = ContrastiveDivergence(3).step(rbm, v, torch.Generator().manual_seed(7), mask=mask)
        assert torch.all(v_neg[mask == 0] == 0)
        grads.append({name: p.grad.clone() for name, p in rbm.named_parameters()})
        assert torch.all(grads[-1]["weight"][unrated_by_all] == 0)
        assert torch.all(grads[-1]["visible.bias"][unrated_by_all] == 0)
    for name in grads[0]:
        assert torch.equal(grads[0][name], grads[1][name]), name
    # per user, the columns the user did not rate get no data or sample term
    assert torch.all((v * (1 - mask)) == 0)


def test_context_gradient_matches_autograd():
    rbm = ConditionalRBM(4, 3, 4, visible="softmax:3", dtype=torch.float64, seed=0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        rbm.context_weight.normal_(generator=g)
    r = (torch.rand(5, 4, generator=g) < 0.5).double()
    v_pos = rbm.visible.sample(torch.zeros(5, 12, dtype=torch.float64), g)
    v_neg = rbm.visible.sample(torch.zeros(5, 12, dtype=torch.float64), g)
    rbm.set_context(r)
    rbm.write_context_gradient(v_pos, v_neg)
    closed = rbm.context_weight.grad.clone()
    loss = rbm.free_energy(v_pos).mean() - rbm.free_energy(v_neg).mean()
    (auto,) = torch.autograd.grad(loss, [rbm.context_weight])
    torch.testing.assert_close(closed, auto, rtol=1e-12, atol=1e-12)
    rbm.set_context(None)
    torch.testing.assert_close(rbm.hidden_field(v_pos), RBM.hidden_field(rbm, v_pos))


def test_conditional_model_trains_and_predicts(split):
    train, test = split
    model = CFRBM(n_hidden=10, epochs=10, lr=0.1, batch_size=10, conditional=True, seed=0).fit(train)
    assert float(model.rbm_.context_weight.detach().abs().sum()) > 0
    pred = model.predict(test.users, test.items)
    assert np.all((pred >= 1) & (pred <= K))
    assert rmse(pred, test.ratings) < rmse(GlobalMean().fit(train).predict(test.users, test.items), test.ratings)


def test_reproducible_by_seed(split):
    train, test = split
    runs = [CFRBM(n_hidden=5, epochs=3, seed=s).fit(train).predict(test.users, test.items) for s in (1, 1, 2)]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_recommend_excludes_rated_items(split, fitted):
    train, _ = split
    top = fitted.recommend(0, n=5)
    assert top.shape == (5,)
    rated = set(train.items[train.users == 0].tolist())
    assert not rated & set(top.tolist())
    assert len(fitted.recommend(0, n=10_000)) == train.n_items - len(rated)


@pytest.mark.parametrize("conditional", [False, True])
def test_save_and_load_round_trip(split, tmp_path, conditional):
    train, test = split
    model = CFRBM(n_hidden=6, epochs=2, conditional=conditional, cd_schedule=((1, 1), (2, 3))).fit(train)
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    again = CFRBM.load(tmp_path / "m")
    np.testing.assert_array_equal(model.predict(test.users, test.items), again.predict(test.users, test.items))
    assert again.cd_schedule == ((1, 1), (2, 3)) and again.conditional == conditional


def test_cd_schedule_and_errors(split):
    model = CFRBM(epochs=10)
    assert [model._steps(e) for e in (1, 4, 5, 6, 7, 8, 9, 10)] == [1, 1, 3, 3, 5, 5, 9, 9]
    with pytest.raises(ConfigurationError):
        CFRBM().predict([0], [0])
    with pytest.raises(ConfigurationError):
        CFRBM(n_hidden=0).fit(split[0])
    with pytest.raises(ConfigurationError):
        CFRBM(lr=-1.0).fit(split[0])
