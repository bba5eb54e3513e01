"""Rating and ranking metrics: RMSE, MAE, precision/recall/NDCG at k."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import DataError
from .ratings import ArrayLike, RatingData, to_dense


def _float_array(x: ArrayLike, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{name} contains NaN or inf")
    return arr


def _pair(pred: ArrayLike, truth: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p, t = _float_array(pred, "pred"), _float_array(truth, "truth")
    if p.shape != t.shape:
        raise DataError(f"pred and truth must have the same shape, got {p.shape} and {t.shape}")
    if p.size == 0:
        raise DataError("pred and truth are empty")
    return p, t


def rmse(pred: ArrayLike, truth: ArrayLike) -> float:
    """Root mean squared error sqrt(mean((pred - truth)^2))."""
    p, t = _pair(pred, truth)
    return float(np.sqrt(np.mean((p - t) ** 2)))


def mae(pred: ArrayLike, truth: ArrayLike) -> float:
    """Mean absolute error mean(|pred - truth|)."""
    p, t = _pair(pred, truth)
    return float(np.mean(np.abs(p - t)))


def ranking_metrics(
    scores: ArrayLike,
    train: RatingData | ArrayLike,
    test: RatingData,
    k: int = 10,
    threshold: int = 4,
) -> dict[str, float]:
    """Top-k metrics on held-out items, averaged over evaluated users.

    scores: (n_users, n_items), higher = recommend first. train: the training RatingData or a
    bool (n_users, n_items) mask; training items are never ranked (score set to -inf).
    test: held-out ratings under the same id maps; the relevant set R_u is the test items of
    user u with rating >= threshold (default 4 of 5). Users with empty R_u are skipped; a test
    item the user also has in training raises DataError. With T_u the top-k ranked items
    (ties in an unspecified order), and binary gains:

        precision@k = |T_u ∩ R_u| / k
        recall@k    = |T_u ∩ R_u| / |R_u|
        ndcg@k      = sum_{j=1..k} [item at rank j in R_u] / log2(j + 1)
                      / sum_{j=1..min(k, |R_u|)} 1 / log2(j + 1)

    Returns {"precision": ..., "recall": ..., "ndcg": ..., "n_users": users evaluated}.
    """
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    s = torch.as_tensor(scores.detach().cpu() if isinstance(scores, torch.Tensor) else np.asarray(scores))
    if s.ndim != 2:
        raise DataError(f"scores must be 2-D (n_users, n_items), got shape {tuple(s.shape)}")
    if not s.is_floating_point():
        s = s.to(torch.float64)
    n_users, n_items = s.shape
    if (n_users, n_items) != (test.n_users, test.n_items):
        raise DataError(
            f"scores shape {(n_users, n_items)} does not match the test id maps "
            f"({test.n_users}, {test.n_items})"
        )
    if torch.isnan(s).any():
        raise DataError("scores contain NaN")
    if isinstance(train, RatingData):
        seen = to_dense(train, n_users, n_items, dtype=torch.int8) > 0
    else:
        seen = torch.as_tensor(train.detach().cpu() if isinstance(train, torch.Tensor) else np.asarray(train))
        if seen.shape != s.shape:
            raise DataError(f"train mask shape {tuple(seen.shape)} does not match scores {tuple(s.shape)}")
        seen = seen.to(torch.bool)
    tu, ti = torch.from_numpy(test.users), torch.from_numpy(test.items)
    if seen[tu, ti].any():
        raise DataError("some test (user, item) pairs are also in the training mask")

    relevant = torch.zeros(n_users, n_items, dtype=torch.bool)
    good = torch.from_numpy(test.ratings >= threshold)
    relevant[tu[good], ti[good]] = True
    n_rel = relevant.sum(dim=1)
    rows = torch.nonzero(n_rel > 0).squeeze(1)
    if rows.numel() == 0:
        raise DataError(f"no user has a test rating >= {threshold}; nothing to rank")

    kk = min(int(k), n_items)
    masked = s[rows].masked_fill(seen[rows], float("-inf"))
    top = torch.topk(masked, kk, dim=1).indices
    hits = relevant[rows].gather(1, top).to(torch.float64)  # (n_eval, kk)
    discount = 1.0 / torch.log2(torch.arange(2, kk + 2, dtype=torch.float64))
    n_hit = hits.sum(dim=1)
    rel = n_rel[rows].to(torch.float64)
    ideal = torch.cumsum(discount, 0)[(rel.clamp(max=kk) - 1).long()]
    return {
        "precision": float((n_hit / int(k)).mean()),
        "recall": float((n_hit / rel).mean()),
        "ndcg": float(((hits * discount).sum(dim=1) / ideal).mean()),
        "n_users": int(rows.numel()),
    }


def precision_at_k(
    scores: ArrayLike, train: RatingData | ArrayLike, test: RatingData, k: int = 10, threshold: int = 4
) -> float:
    """Mean over users with a relevant test item of |top-k ∩ relevant| / k; see ranking_metrics."""
    return ranking_metrics(scores, train, test, k, threshold)["precision"]


def recall_at_k(
    scores: ArrayLike, train: RatingData | ArrayLike, test: RatingData, k: int = 10, threshold: int = 4
) -> float:
    """Mean over users with a relevant test item of |top-k ∩ relevant| / |relevant|; see ranking_metrics."""
    return ranking_metrics(scores, train, test, k, threshold)["recall"]


def ndcg_at_k(
    scores: ArrayLike, train: RatingData | ArrayLike, test: RatingData, k: int = 10, threshold: int = 4
) -> float:
    """Mean binary-gain NDCG@k over users with a relevant test item; see ranking_metrics."""
    return ranking_metrics(scores, train, test, k, threshold)["ndcg"]


