"""Tests for boltzkit.ratings: loading, id maps, splits, dense layouts, metrics, baselines."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from boltzkit.errors import DataError
from boltzkit.recommend import (
    BiasBaseline,
    GlobalMean,
    RatingData,
    align_ratings,
    kfold_splits,
    load_ratings,
    mae,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
    rmse,
    split_ratings,
    to_dense,
    to_one_hot,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write(tmp_path: Path, text: str, name: str = "ratings.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def triples(data: RatingData) -> set[tuple[int, int, int]]:
    """Ratings as (original user, original item, rating) tuples."""
    return {
        (int(data.user_ids[u]), int(data.item_ids[i]), int(r))
        for u, i, r in zip(data.users, data.items, data.ratings)
    }


def keys(data: RatingData) -> np.ndarray:
    return data.users * data.n_items + data.items


# --------------------------------------------------------------------------- parsing

EXPECTED = {(196, 242, 3), (186, 302, 3), (22, 377, 1), (196, 51, 5)}


@pytest.mark.parametrize(
    "name, text",
    [
        ("u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n196\t51\t5\t1\n"),
        ("ratings.dat", "196::242::3::881250949\n186::302::3::891717742\n22::377::1::1\n196::51::5::2\n"),
        ("with_header.csv", "userId,movieId,rating,timestamp\n196,242,3.0,1\n186,302,3,2\n22,377,1,3\n196,51,5,4\n"),
        ("no_header.csv", "196,242,3\n186,302,3\n22,377,1\n196,51,5\n"),
        ("spaced.csv", "user, item, rating\n196, 242, 3\r\n186, 302, 3\r\n\n22, 377, 1\r\n196, 51, 5\r\n\n"),
        ("whitespace.txt", "196 242 3\n186  302 3\n22 377 1\n196 51 5\n"),
    ],
)
def test_load_formats(tmp_path, name, text):
    data = load_ratings(write(tmp_path, text, name))
    assert len(data) == 4
    assert triples(data) == EXPECTED
    assert data.n_levels == 5
    assert data.users.dtype == np.int64 and data.items.dtype == np.int64 and data.ratings.dtype == np.int64
    assert data.user_ids.tolist() == [22, 186, 196]  # internal ids follow sorted original ids
    assert data.item_ids.tolist() == [51, 242, 302, 377]


def test_load_explicit_sep_and_levels(tmp_path):
    data = load_ratings(write(tmp_path, "1|2|3\n2|2|1\n"), n_levels=10, sep="|")
    assert data.n_levels == 10
    assert triples(data) == {(1, 2, 3), (2, 2, 1)}


def test_load_skips_utf8_byte_order_mark(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf1,2,3\n2,2,4\n")
    assert triples(load_ratings(path)) == {(1, 2, 3), (2, 2, 4)}


def test_levels_inferred_as_max(tmp_path):
    assert load_ratings(write(tmp_path, "1,1,2\n1,2,7\n")).n_levels == 7


@pytest.mark.parametrize(
    "text, line, fragment",
    [
        ("1\t1\t3\t5\n1\t2\t4\n", 2, "expected 4 fields"),  # wrong field count later
        ("1\t1\t3\t5\t9\n", 1, "expected 3 or 4 fields"),  # wrong field count first
        ("1,1,3\n1,2\n", 2, "expected 3 fields"),
        ("1,1,3\nabc,2,4\n", 2, "user id"),
        ("1,1,3\n1,x,4\n", 2, "item id"),
        ("1,1,3\n1,2,four\n", 2, "not a number"),
        ("1,1,3\n1,2,3.5\n", 2, "not an integer"),
        ("1,1,3\n1,2,nan\n", 2, "not an integer"),
        ("1,1,3\n1,2,0\n", 2, "outside 1.."),
        ("1,1,3\n1,2,-2\n", 2, "outside 1.."),
        ("1,1,3,10\n1,2,4,yesterday\n", 2, "timestamp"),
        ("user,item,rating\n1,1,3\n2,1,5\n1,1,4\n", 4, "duplicate rating for user 1, item 1 (first on line 2)"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, text, line, fragment):
    path = write(tmp_path, text)
    with pytest.raises(DataError) as info:
        load_ratings(path)
    msg = str(info.value)
    assert f"{path}:{line}:" in msg
    assert fragment in msg
    assert "\n" not in msg


def test_rating_above_given_levels(tmp_path):
    path = write(tmp_path, "1::1::5::0\n1::2::6::0\n")
    with pytest.raises(DataError, match=rf"{path}:2: rating 6 is outside 1..5"):
        load_ratings(path, n_levels=5)
    assert load_ratings(path).n_levels == 6


@pytest.mark.parametrize("text", ["", "\n\n  \n", "user,item,rating\n"])
def test_empty_file(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(DataError, match="no ratings found"):
        load_ratings(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_ratings(tmp_path / "absent.data")
    with pytest.raises(DataError, match="is a directory"):
        load_ratings(tmp_path)


def test_data_error_is_value_error(tmp_path):
    with pytest.raises(ValueError):
        load_ratings(tmp_path / "absent.data")


# --------------------------------------------------------------------------- RatingData and id maps


def test_from_triples_and_validation():
    data = RatingData.from_triples([7, 3, 7], [20, 20, 10], [1, 2, 3])
    assert data.user_ids.tolist() == [3, 7] and data.item_ids.tolist() == [10, 20]
    assert data.users.tolist() == [1, 0, 1] and data.items.tolist() == [1, 1, 0]
    assert (data.n_users, data.n_items, data.n_levels, len(data)) == (2, 2, 3, 3)
    with pytest.raises(DataError, match="at most once"):
        RatingData.from_triples([1, 1], [2, 2], [1, 2])
    with pytest.raises(DataError, match="ratings must lie in 1..2"):
        RatingData.from_triples([1, 2], [2, 2], [1, 3], n_levels=2)
    with pytest.raises(DataError, match="items must lie in"):
        RatingData(np.array([0]), np.array([5]), np.array([1]), np.array([1]), np.array([1]), 5)
    with pytest.raises(DataError, match="equal length"):
        RatingData(np.array([0, 0]), np.array([0]), np.array([1]), np.array([1]), np.array([1]), 5)


def test_align_uses_training_maps_and_drops_unknown(tmp_path):
    train = load_ratings(write(tmp_path, "1,10,5\n2,20,3\n3,10,1\n", "train.csv"))
    test = load_ratings(write(tmp_path, "3,20,4\n4,10,2\n1,30,5\n2,10,2\n", "test.csv"))
    with pytest.warns(UserWarning, match="dropped 2 of 4"):
        aligned, n_drop = align_ratings(test, train)
    assert n_drop == 2
    assert aligned.user_ids is train.user_ids and aligned.item_ids is train.item_ids
    assert triples(aligned) == {(3, 20, 4), (2, 10, 2)}
    assert aligned.n_levels == 5
    with pytest.raises(DataError, match="unknown to the reference"):
        align_ratings(test, train, unknown="raise")


def test_align_without_unknowns_is_silent_and_checks_levels(tmp_path):
    train = load_ratings(write(tmp_path, "1,10,3\n2,20,3\n", "train.csv"))
    test = load_ratings(write(tmp_path, "2,10,2\n", "test.csv"))
    aligned, n_drop = align_ratings(test, train, unknown="raise")
    assert n_drop == 0 and triples(aligned) == {(2, 10, 2)}
    high = load_ratings(write(tmp_path, "2,10,5\n", "high.csv"))
    with pytest.raises(DataError, match="exceeds"):
        align_ratings(high, train)


# --------------------------------------------------------------------------- splits


def random_data(n_users=40, n_items=30, density=0.5, seed=0) -> RatingData:
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    u, i = np.nonzero(mask)
    return RatingData.from_triples(u, i, rng.integers(1, 6, size=u.size), n_levels=5)


def test_split_reproducible_disjoint_complete():
    data = random_data()
    train, test = split_ratings(data, test_fraction=0.25, seed=3)
    train2, test2 = split_ratings(data, test_fraction=0.25, seed=3)
    _, test3 = split_ratings(data, test_fraction=0.25, seed=4)
    assert np.array_equal(keys(test), keys(test2)) and np.array_equal(keys(train), keys(train2))
    assert not np.array_equal(keys(test), keys(test3))
    assert len(test) == round(0.25 * len(data)) and len(train) + len(test) == len(data)
    assert not set(keys(train)) & set(keys(test))
    assert triples(train) | triples(test) == triples(data)
    assert train.user_ids is data.user_ids and test.item_ids is data.item_ids


def test_split_rejects_bad_fraction():
    with pytest.raises(ValueError):
        split_ratings(random_data(), test_fraction=1.0)
    with pytest.raises(DataError):
        split_ratings(RatingData.from_triples([1, 2], [1, 1], [1, 1]), test_fraction=0.1)


def test_kfold_covers_every_rating_once():
    data = random_data()
    folds = list(kfold_splits(data, k=5, seed=1))
    assert len(folds) == 5
    counts = np.zeros(data.n_users * data.n_items, dtype=int)
    sizes = []
    for train, test in folds:
        assert len(train) + len(test) == len(data)
        assert not set(keys(train)) & set(keys(test))
        assert triples(train) | triples(test) == triples(data)
        np.add.at(counts, keys(test), 1)
        sizes.append(len(test))
    assert np.array_equal(counts[keys(data)], np.ones(len(data), dtype=int))
    assert counts.sum() == len(data)
    assert max(sizes) - min(sizes) <= 1
    again = [keys(test) for _, test in kfold_splits(data, k=5, seed=1)]
    assert all(np.array_equal(a, keys(t)) for a, (_, t) in zip(again, folds))


# --------------------------------------------------------------------------- dense layouts


def test_dense_and_one_hot_layout():
    data = RatingData.from_triples([0, 0, 1], [0, 2, 1], [3, 1, 2], n_levels=3)
    codes = to_dense(data)
    assert codes.dtype == torch.int64
    assert codes.tolist() == [[3, 0, 1], [0, 2, 0]]
    assert to_dense(data, n_users=3, dtype=torch.int8).shape == (3, 3)
    v, mask = to_one_hot(data)
    assert v.shape == (2, 9) and v.dtype == torch.float32
    expected = torch.zeros(2, 9)
    expected[0, 0 * 3 + 2] = 1  # item 0, rating 3
    expected[0, 2 * 3 + 0] = 1  # item 2, rating 1
    expected[1, 1 * 3 + 1] = 1  # item 1, rating 2
    assert torch.equal(v, expected)
    assert torch.equal(mask, codes > 0)
    recipe = torch.nn.functional.one_hot(codes, 4)[..., 1:].reshape(2, 9).float()
    assert torch.equal(recipe, v)
    with pytest.raises(DataError):
        to_dense(data, n_users=1)


# --------------------------------------------------------------------------- metrics


def test_rmse_mae_by_hand():
    pred, truth = [1.0, 2.0, 4.0, 5.0], [2, 2, 2, 5]
    assert rmse(pred, truth) == pytest.approx(math.sqrt((1 + 0 + 4 + 0) / 4))
    assert mae(np.array(pred), torch.tensor(truth)) == pytest.approx(3 / 4)
    with pytest.raises(DataError, match="same shape"):
        rmse([1.0], [1.0, 2.0])
    with pytest.raises(DataError, match="empty"):
        mae([], [])
    with pytest.raises(DataError, match="NaN"):
        rmse([float("nan")], [1.0])


def tiny_ranking_case():
    """3 users x 5 items; see test_ranking_metrics_by_hand for the hand computation."""
    ids_u, ids_i = np.array([10, 11, 12]), np.arange(100, 105)
    train = RatingData(np.array([0, 1, 2]), np.array([0, 0, 4]), np.array([5, 5, 5]), ids_u, ids_i, 5)
    test = RatingData(
        np.array([0, 0, 0, 1, 2]), np.array([1, 3, 2, 4, 0]), np.array([5, 4, 2, 3, 4]), ids_u, ids_i, 5
    )
    scores = np.array(
        [
            [0.9, 0.8, 0.7, 0.6, 0.5],  # item 0 is a training item: never ranked
            [0.1, 0.2, 0.3, 0.4, 0.5],  # no test rating >= 4: user skipped
            [0.1, 0.2, 0.3, 0.4, 0.5],  # item 4 is a training item
        ]
    )
    return scores, train, test


def test_ranking_metrics_by_hand():
    scores, train, test = tiny_ranking_case()
    # user 0: ranked 1,2,3,4 with relevant {1, 3}; user 2: ranked 3,2,1,0 with relevant {0}.
    # k=2: user 0 top [1, 2] -> 1 hit; user 2 top [3, 2] -> 0 hits.
    idcg2 = 1 + 1 / math.log2(3)
    m = ranking_metrics(scores, train, test, k=2)
    assert m["n_users"] == 2
    assert m["precision"] == pytest.approx((1 / 2 + 0) / 2)
    assert m["recall"] == pytest.approx((1 / 2 + 0) / 2)
    assert m["ndcg"] == pytest.approx((1 / idcg2 + 0) / 2)
    assert m["ndcg"] == pytest.approx(0.30657, abs=1e-5)
    # k=4: user 0 hits at ranks 1 and 3; user 2 hit at rank 4.
    ndcg0 = (1 + 1 / math.log2(4)) / idcg2
    ndcg2 = 1 / math.log2(5)
    assert precision_at_k(scores, train, test, k=4) == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert recall_at_k(scores, train, test, k=4) == pytest.approx(1.0)
    assert ndcg_at_k(scores, train, test, k=4) == pytest.approx((ndcg0 + ndcg2) / 2)
    assert ndcg_at_k(scores, train, test, k=4) == pytest.approx((0.919721 + 0.430677) / 2, abs=1e-6)
    # k=1: user 0 has 2 relevant items and 1 hit -> recall 1/2 (denominator |R_u|, not min(k, |R_u|))
    assert recall_at_k(scores, train, test, k=1) == pytest.approx((1 / 2 + 0) / 2)
    assert precision_at_k(scores, train, test, k=1) == pytest.approx((1 + 0) / 2)
    # k above the number of items: the denominator of precision stays k
    assert precision_at_k(scores, train, test, k=10) == pytest.approx((2 / 10 + 1 / 10) / 2)
    assert ndcg_at_k(scores, train, test, k=10) == pytest.approx((ndcg0 + ndcg2) / 2)


def test_training_items_never_ranked_whatever_the_scores():
    scores, train, test = tiny_ranking_case()
    for k in (1, 2, 4):
        assert ranking_metrics(scores - 10.0, train, test, k=k) == ranking_metrics(scores, train, test, k=k)


def test_ranking_inputs_and_threshold():
    scores, train, test = tiny_ranking_case()
    mask = to_dense(train) > 0
    a = ranking_metrics(scores, train, test, k=2)
    b = ranking_metrics(torch.tensor(scores, dtype=torch.float32), mask, test, k=2)
    c = ranking_metrics(scores, mask.numpy(), test, k=2)
    assert a == pytest.approx(b) and a == pytest.approx(c)
    # threshold 5: only user 0's item 1 is relevant, ranked first
    m = ranking_metrics(scores, train, test, k=2, threshold=5)
    assert (m["n_users"], m["precision"], m["recall"], m["ndcg"]) == (1, 0.5, 1.0, 1.0)
    with pytest.raises(DataError, match="nothing to rank"):
        ranking_metrics(scores, train, test, threshold=6)
    with pytest.raises(DataError, match="also in the training"):
        ranking_metrics(scores, train, train, k=2)  # test overlaps training
    with pytest.raises(DataError, match="does not match"):
        ranking_metrics(scores[:, :4], train, test)


def test_perfect_scores_give_ndcg_one():
    data = random_data(seed=5)
    train, test = split_ratings(data, seed=0)
    perfect = (to_dense(test) >= 4).double()
    m = ranking_metrics(perfect, train, test, k=10)
    assert m["ndcg"] == pytest.approx(1.0)
    assert m["recall"] <= 1.0 and m["precision"] <= 1.0


# --------------------------------------------------------------------------- baselines


def synthetic_effects(seed=0, n_users=200, n_items=150, density=0.3) -> RatingData:
    """Ratings round(3 + a_u + c_i + noise) clipped to 1..5, with strong user and item effects."""
    rng = np.random.default_rng(seed)
    a, c = rng.normal(0, 0.8, n_users), rng.normal(0, 0.8, n_items)
    u, i = np.nonzero(rng.random((n_users, n_items)) < density)
    r = np.clip(np.rint(3 + a[u] + c[i] + rng.normal(0, 0.3, u.size)), 1, 5).astype(int)
    return RatingData.from_triples(u, i, r, n_levels=5)


def test_bias_baseline_beats_global_mean():
    train, test = split_ratings(synthetic_effects(), seed=0)
    base = rmse(GlobalMean().fit(train).predict(test.users, test.items), test.ratings)
    bias_model = BiasBaseline().fit(train)
    pred = bias_model.predict(test.users, test.items)
    assert rmse(pred, test.ratings) < 0.7 * base
    assert pred.min() >= 1 and pred.max() <= 5


def test_bias_baseline_recovers_exact_additive_ratings():
    # fully observed r_ui = 3 + a_u + c_i: with no regularisation the fit is exact
    a, c = np.array([-1, 0, 1]), np.array([1, 0, -1, 0])
    u, i = np.meshgrid(np.arange(3), np.arange(4), indexing="ij")
    r = 3 + a[u] + c[i]
    data = RatingData.from_triples(u.ravel(), i.ravel(), r.ravel(), n_levels=5)
    model = BiasBaseline(reg_user=0.0, reg_item=0.0, n_iters=50).fit(data)
    assert np.allclose(model.predict(data.users, data.items), data.ratings, atol=1e-6)


def test_bias_baseline_solves_the_stated_ridge_problem():
    # on sparse data the alternating updates converge to the minimiser of the docstring's objective
    rng = np.random.default_rng(2)
    u, i = np.nonzero(rng.random((12, 9)) < 0.45)
    data = RatingData.from_triples(u, i, rng.integers(1, 6, size=u.size), n_levels=5)
    reg_u, reg_i = 2.0, 3.0
    model = BiasBaseline(reg_user=reg_u, reg_item=reg_i, n_iters=500).fit(data)
    n, nu, ni = len(data), data.n_users, data.n_items
    design = np.zeros((n + nu + ni, nu + ni))
    design[np.arange(n), data.users] = 1
    design[np.arange(n), nu + data.items] = 1
    design[n + np.arange(nu), np.arange(nu)] = math.sqrt(reg_u)
    design[n + nu + np.arange(ni), nu + np.arange(ni)] = math.sqrt(reg_i)
    target = np.concatenate([data.ratings - data.ratings.mean(), np.zeros(nu + ni)])
    b = np.linalg.lstsq(design, target, rcond=None)[0]
    assert model.mean_ == pytest.approx(data.ratings.mean())
    assert np.allclose(model.user_bias_, b[:nu], atol=1e-8)
    assert np.allclose(model.item_bias_, b[nu:], atol=1e-8)


def test_bias_baseline_unrated_users_and_clipping():
    ids = np.arange(3)
    train = RatingData(np.array([0, 0, 1]), np.array([0, 1, 0]), np.array([5, 5, 5]), ids, ids, 5)
    model = BiasBaseline(reg_user=0.0, reg_item=0.0).fit(train)
    assert model.user_bias_[2] == 0.0 and model.item_bias_[2] == 0.0
    assert model.predict([2], [2]).tolist() == [5.0]
    with pytest.raises(DataError, match="internal ids"):
        model.predict([3], [0])
    with pytest.raises(DataError, match="same length"):
        GlobalMean().fit(train).predict([0, 1], [0])


# --------------------------------------------------------------------------- real data


@pytest.mark.skipif(
    not (SHARED_DATA / "movielens-100k" / "u.data").is_file(), reason="MovieLens 100k not available"
)
def test_movielens_100k():
    data = load_ratings(SHARED_DATA / "movielens-100k" / "u.data")
    assert (len(data), data.n_users, data.n_items, data.n_levels) == (100_000, 943, 1682, 5)
    assert data.user_ids.tolist() == list(range(1, 944))
    assert data.item_ids.tolist() == list(range(1, 1683))
    train, test = split_ratings(data, seed=0)
    pred = BiasBaseline().fit(train).predict(test.users, test.items)
    assert rmse(pred, test.ratings) < 0.96
