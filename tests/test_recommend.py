"""The collaborative-filtering RBM: masking, shapes, reproducibility, persistence, learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from boltzkit.errors import CheckpointError, ConfigurationError
from boltzkit.models.rbm import RBM
from boltzkit.recommend import CFRBM, BiasBaseline, ConditionalRBM, GlobalMean, RatingData, rmse, split_ratings
from boltzkit.sampling import ChainState
from boltzkit.training.gradient import ContrastiveDivergence

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
    return CFRBM(n_hidden=10, epochs=12, lr=0.3, batch_size=10, seed=0).fit(split[0])


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
    seen = fitted.input_mask()
    assert not seen[torch.from_numpy(test.users), torch.from_numpy(test.items)].any()
    assert int(seen.sum()) == len(train) and seen[torch.from_numpy(train.users), torch.from_numpy(train.items)].all()
    # a pair's prediction does not depend on the other pairs asked in the same call
    alone = np.array([fitted.predict(test.users[j:j + 1], test.items[j:j + 1])[0] for j in range(20)])
    np.testing.assert_allclose(alone, fitted.predict(test.users, test.items)[:20], rtol=0, atol=1e-6)


def test_exact_prediction_leaves_the_queried_rating_out(split, fitted):
    train, _ = split
    j = 0
    u, i = train.users[j:j + 1], train.items[j:j + 1]
    before = fitted.predict(u, i, method="exact")
    row, col = (int(x[0]) for x in fitted._orient(u, i))
    saved = fitted.codes_[row, col].item()
    try:
        fitted.codes_[row, col] = 1 if saved != 1 else 5  # change the very rating asked for
        after = fitted.predict(u, i, method="exact")
    finally:
        fitted.codes_[row, col] = saved
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
    rbm.write_gradient(v_pos, ChainState(v_neg))
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


@pytest.mark.parametrize("cases,conditional", [("users", False), ("items", False), ("items", True)])
def test_save_and_load_round_trip_is_bit_for_bit(split, tmp_path, cases, conditional):
    train, test = split
    model = CFRBM(n_hidden=6, epochs=2, cases=cases, conditional=conditional, cd_schedule=((1, 1), (2, 3))).fit(train)
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    again = CFRBM.load(tmp_path / "m")
    for name, tensor in model._tensors().items():
        assert torch.equal(again._tensors()[name], tensor), name
    np.testing.assert_array_equal(again.user_ids_, train.user_ids)
    np.testing.assert_array_equal(model.predict(test.users, test.items), again.predict(test.users, test.items))
    np.testing.assert_array_equal(model.scores([0, 3]), again.scores([0, 3]))
    assert again.cd_schedule == ((1, 1), (2, 3)) and again.conditional == conditional and again.cases == cases
    again.save(tmp_path / "m2")
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / "m2" / name).read_bytes() == (tmp_path / "m" / name).read_bytes(), name


def test_string_ids_are_kept_in_the_config(tmp_path):
    data = RatingData.from_triples(["ann", "bob", "bob", "cy"], ["x", "x", "y", "y"], [5, 1, 4, 2], n_levels=5)
    model = CFRBM(n_hidden=3, epochs=1).fit(data)
    model.save(tmp_path)
    again = CFRBM.load(tmp_path)
    assert again.user_ids_.tolist() == ["ann", "bob", "cy"] and again.item_ids_.tolist() == ["x", "y"]
    np.testing.assert_array_equal(model.scores(), again.scores())


def test_corrupt_or_foreign_checkpoints_are_refused(split, tmp_path):
    from boltzkit import checkpoint as io

    model = CFRBM(n_hidden=3, epochs=1).fit(split[0])
    model.save(tmp_path / "cf")
    blob = (tmp_path / "cf" / "model.safetensors").read_bytes()
    (tmp_path / "cf" / "model.safetensors").write_bytes(blob[:-8])
    with pytest.raises(CheckpointError, match="truncated"):
        CFRBM.load(tmp_path / "cf")
    io.save(tmp_path / "core", RBM(4, 3))
    with pytest.raises(CheckpointError, match="not a collaborative-filtering model"):
        CFRBM.load(tmp_path / "core")
    model.save(tmp_path / "cf2")
    with pytest.raises(CheckpointError, match="not a plain RBM"):
        io.load_checkpoint(tmp_path / "cf2", kind=RBM)
    # the one reader returns whatever kind was saved
    again = io.load(tmp_path / "cf2")
    assert isinstance(again, CFRBM) and torch.equal(again.rbm_.weight, model.rbm_.weight)


def test_validation_split_keeps_the_best_epoch_and_all_inputs(split):
    train, test = split
    model = CFRBM(n_hidden=8, epochs=6, lr=0.1, validation_fraction=0.2, seed=0).fit(train)
    val = [row["val_rmse"] for row in model.history_]
    assert model.best_epoch_ == int(np.argmin(val)) + 1
    assert int(model.input_mask().sum()) == len(train)  # the held-out slice is an input again


def test_both_orientations_agree_on_the_layout(split):
    train, test = split
    by_user = CFRBM(n_hidden=4, epochs=1, cases="users").fit(train)
    by_item = CFRBM(n_hidden=4, epochs=1, cases="items").fit(train)
    assert by_user.codes_.shape == (train.n_users, train.n_items)
    assert by_item.codes_.shape == (train.n_items, train.n_users)
    assert torch.equal(by_user.input_mask(), by_item.input_mask())
    scores = by_item.scores([2, 5])
    np.testing.assert_allclose(scores[1, [0, 7]], by_item.predict([5, 5], [0, 7]), rtol=0, atol=1e-6)


def test_cd_schedule_and_errors(split):
    model = CFRBM(epochs=10, cd_schedule="paper")
    assert [model._steps(e) for e in (1, 4, 5, 6, 7, 8, 9, 10)] == [1, 1, 3, 3, 5, 5, 9, 9]
    assert CFRBM(epochs=10)._steps(10) == 1
    assert [CFRBM(epochs=4, lr=0.1)._lr(e) for e in (1, 4)] == [0.1, pytest.approx(0.025)]
    with pytest.raises(ConfigurationError):
        CFRBM().predict([0], [0])
    with pytest.raises(ConfigurationError):
        CFRBM(n_hidden=0).fit(split[0])
    with pytest.raises(ConfigurationError):
        CFRBM(lr=-1.0).fit(split[0])
    for bad in ({"cases": "movies"}, {"validation_fraction": 1.0}, {"lr_schedule": "cosine"},
                {"negative": "exact"}, {"weight_decay": -1.0}):
        with pytest.raises(ConfigurationError):
            CFRBM(**bad).fit(split[0])


def test_orientation_defaults_and_mean_field_negatives(split):
    from boltzkit.recommend import CASE_DEFAULTS

    assert CFRBM(cases="items")._option("weight_decay") == 1e-3
    assert CFRBM(cases="items")._option("negative") == "sample"
    assert CFRBM(cases="users")._option("weight_decay") == 1e-2
    assert CFRBM(cases="users")._option("negative") == "mean"
    assert CFRBM(cases="users", weight_decay=0.0, negative="sample")._option("weight_decay") == 0.0
    assert set(CASE_DEFAULTS) == {"users", "items"}
    # an explicit setting equal to the default trains the same model bit for bit
    train, _ = split
    a = CFRBM(n_hidden=4, epochs=2, cases="users").fit(train)
    b = CFRBM(n_hidden=4, epochs=2, cases="users", weight_decay=1e-2, negative="mean").fit(train)
    assert torch.equal(a.rbm_.weight, b.rbm_.weight)
    # the mean-field negative phase returns masked softmax probabilities, not samples
    rbm = a.rbm_
    v, mask = a._one_hot(a.codes_[:3])
    neg = ContrastiveDivergence(2, visible="mean").negative_phase(rbm, v, rbm.hidden_field(v),
                                                                  torch.Generator().manual_seed(0), mask).visible
    groups = neg.view(3, -1, a.n_levels_).sum(-1)
    rated = mask.view(3, -1, a.n_levels_)[..., 0]
    torch.testing.assert_close(groups, rated)
    assert ((neg > 0) & (neg < 1)).sum() > 0


def test_divergence_stops_with_a_clear_error_and_keeps_the_last_good_epoch(split, monkeypatch):
    """NaN injected into the weights during epoch 3: DivergenceError names the epoch, and the
    model holds exactly the parameters an uninterrupted 2-epoch run ends with."""
    from boltzkit.errors import DivergenceError

    options = dict(n_hidden=6, lr=0.3, batch_size=10, seed=0, validation_fraction=0.0, lr_schedule="constant")
    two = CFRBM(epochs=2, **options).fit(split[0])
    steps = {"n": 0}
    original = torch.optim.SGD.step
    batches = int(np.ceil(two.codes_.ne(0).any(1).sum().item() / 10))

    def poisoned(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        steps["n"] += 1
        if steps["n"] == 2 * batches + 1:  # first update of epoch 3
            with torch.no_grad():
                self.param_groups[0]["params"][0][0, 0] = float("nan")
        return out

    monkeypatch.setattr(torch.optim.SGD, "step", poisoned)
    model = CFRBM(epochs=4, **options)
    with pytest.raises(DivergenceError, match="epoch 3.*keeps the state of epoch 2"):
        model.fit(split[0])
    for (name, a), b in zip(model.rbm_.named_parameters(), two.rbm_.parameters()):
        assert torch.equal(a, b), name
