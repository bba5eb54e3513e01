"""Non-RBM rating predictors: the global mean and the bias baseline μ + b_u + b_i."""

from __future__ import annotations

import numpy as np

from .ratings import ArrayLike, RatingData, _check_fit_data, _check_query


class GlobalMean:
    """Predicts r̂ = μ, the mean training rating, for every (user, item)."""

    def fit(self, train: RatingData) -> GlobalMean:
        _check_fit_data(train)
        self.mean_ = float(train.ratings.mean())
        self.n_users_, self.n_items_ = train.n_users, train.n_items
        return self

    def predict(self, users: ArrayLike, items: ArrayLike) -> np.ndarray:
        """μ for each (users[j], items[j]) pair of internal ids."""
        u, _ = _check_query(users, items, self.n_users_, self.n_items_)
        return np.full(u.shape, self.mean_, dtype=np.float64)


class BiasBaseline:
    """Baseline predictor r̂_ui = μ + b_u + b_i, clipped to [1, K].

    μ is the mean training rating; the biases minimise

        sum_{(u,i) observed} (r_ui - μ - b_u - b_i)^2 + reg_user * sum_u b_u^2 + reg_item * sum_i b_i^2

    by ``n_iters`` alternating exact minimisations, starting from b = 0:

        b_i = sum_{u in R(i)} (r_ui - μ - b_u) / (reg_item + |R(i)|)
        b_u = sum_{i in R(u)} (r_ui - μ - b_i) / (reg_user + |R(u)|)

    Users or items with no training rating get bias 0.
    """

    def __init__(self, reg_user: float = 5.0, reg_item: float = 5.0, n_iters: int = 10) -> None:
        self.reg_user = reg_user
        self.reg_item = reg_item
        self.n_iters = n_iters

    def fit(self, train: RatingData) -> BiasBaseline:
        _check_fit_data(train)
        if self.reg_user < 0 or self.reg_item < 0:
            raise ValueError("reg_user and reg_item must be >= 0")
        if isinstance(self.n_iters, bool) or int(self.n_iters) != self.n_iters or self.n_iters < 1:
            raise ValueError(f"n_iters must be a positive integer, got {self.n_iters!r}")
        u, i = train.users, train.items
        r = train.ratings.astype(np.float64)
        mu = float(r.mean())
        n_u = np.bincount(u, minlength=train.n_users).astype(np.float64)
        n_i = np.bincount(i, minlength=train.n_items).astype(np.float64)
        b_u = np.zeros(train.n_users)
        b_i = np.zeros(train.n_items)
        # an unrated user/item has numerator 0; a denominator of 1 then gives bias 0
        den_u = np.where(n_u > 0, self.reg_user + n_u, 1.0)
        den_i = np.where(n_i > 0, self.reg_item + n_i, 1.0)
        resid = r - mu
        for _ in range(int(self.n_iters)):
            b_i = np.bincount(i, resid - b_u[u], minlength=train.n_items) / den_i
            b_u = np.bincount(u, resid - b_i[i], minlength=train.n_users) / den_u
        self.user_bias_ = b_u
        self.item_bias_ = b_i
        self.mean_ = mu
        self.n_levels_ = train.n_levels
        return self

    def predict(self, users: ArrayLike, items: ArrayLike) -> np.ndarray:
        """μ + b_u + b_i for each (users[j], items[j]) pair of internal ids, clipped to [1, K]."""
        u, i = _check_query(users, items, self.user_bias_.shape[0], self.item_bias_.shape[0])
        predicted: np.ndarray = np.clip(self.mean_ + self.user_bias_[u] + self.item_bias_[i], 1.0, self.n_levels_)
        return predicted
