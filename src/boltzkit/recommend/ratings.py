"""Explicit ratings for collaborative filtering: loading, id maps, splits, dense layouts.

A data set is a list of triples (user, item, rating) with ratings r in {1, ..., K}. Users and
items are stored under 0-based internal ids; ``user_ids[u]`` / ``item_ids[i]`` give the
original id of internal index ``u`` / ``i``. Splits keep the id maps of the data they come
from, so train and test share one index space and ``n_users``/``n_items`` count users and
items that may have no rating in that particular split.

Example::

    data = load_ratings("u.data")                      # MovieLens 100k, K = 5
    train, test = split_ratings(data, test_fraction=0.2, seed=0)
    model = BiasBaseline().fit(train)
    rmse(model.predict(test.users, test.items), test.ratings)
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ..data.formats import read_regular_file
from ..errors import DataError

__all__ = ["RatingData", "load_ratings", "align_ratings", "split_ratings", "kfold_splits", "to_dense",
           "to_one_hot"]

ArrayLike = np.ndarray | torch.Tensor | list[Any] | tuple[Any, ...]


# --------------------------------------------------------------------------- data


def _int_array(x: ArrayLike, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise DataError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.floating) or not np.all(arr == np.round(arr)):
            raise DataError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


@dataclass(eq=False)
class RatingData:
    """Rating triples under 0-based internal ids.

    users, items, ratings: int64 arrays of equal length n; ``ratings[j]`` in 1..n_levels is the
    rating user ``users[j]`` gave item ``items[j]``; each (user, item) pair occurs at most once.
    user_ids, item_ids: original id of each internal index (length n_users / n_items); ids
    loaded from a file are int64.
    n_levels: K, the number of rating levels.
    """

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    n_levels: int

    def __post_init__(self) -> None:
        self.users = _int_array(self.users, "users")
        self.items = _int_array(self.items, "items")
        self.ratings = _int_array(self.ratings, "ratings")
        self.user_ids = np.asarray(self.user_ids)
        self.item_ids = np.asarray(self.item_ids)
        n = self.users.shape[0]
        if self.items.shape[0] != n or self.ratings.shape[0] != n:
            raise DataError(
                f"users, items and ratings must have equal length, got "
                f"{n}, {self.items.shape[0]}, {self.ratings.shape[0]}"
            )
        if self.user_ids.ndim != 1 or self.item_ids.ndim != 1:
            raise DataError("user_ids and item_ids must be 1-D")
        if isinstance(self.n_levels, bool) or int(self.n_levels) != self.n_levels or self.n_levels < 1:
            raise DataError(f"n_levels must be a positive integer, got {self.n_levels!r}")
        self.n_levels = int(self.n_levels)
        for name, idx, size in (("users", self.users, self.n_users), ("items", self.items, self.n_items)):
            if n and (idx.min() < 0 or idx.max() >= size):
                raise DataError(f"{name} must lie in [0, {size}), got range [{idx.min()}, {idx.max()}]")
        if n and (self.ratings.min() < 1 or self.ratings.max() > self.n_levels):
            raise DataError(
                f"ratings must lie in 1..{self.n_levels}, got range "
                f"[{self.ratings.min()}, {self.ratings.max()}]"
            )
        if len(np.unique(self.user_ids)) != self.n_users or len(np.unique(self.item_ids)) != self.n_items:
            raise DataError("user_ids and item_ids must not repeat an id")
        keys = self.users * max(self.n_items, 1) + self.items
        if np.unique(keys).shape[0] != n:
            raise DataError("each (user, item) pair may be rated at most once")

    @classmethod
    def _unchecked(cls, users: np.ndarray, items: np.ndarray, ratings: np.ndarray, user_ids: np.ndarray,
                   item_ids: np.ndarray, n_levels: int) -> RatingData:
        """Build without validation; for subsets of data that is already valid."""
        obj = object.__new__(cls)
        obj.users, obj.items, obj.ratings = users, items, ratings
        obj.user_ids, obj.item_ids, obj.n_levels = user_ids, item_ids, n_levels
        return obj

    @classmethod
    def from_triples(
        cls, users: ArrayLike, items: ArrayLike, ratings: ArrayLike, n_levels: int | None = None
    ) -> RatingData:
        """Build from original ids: internal ids are the ranks of the sorted distinct ids.

        n_levels defaults to the largest rating.
        """
        users_raw, items_raw = np.asarray(users), np.asarray(items)
        if users_raw.ndim != 1 or items_raw.ndim != 1:
            raise DataError("users and items must be 1-D")
        user_ids, u = np.unique(users_raw, return_inverse=True)
        item_ids, i = np.unique(items_raw, return_inverse=True)
        r = _int_array(ratings, "ratings")
        if n_levels is None:
            if r.size == 0:
                raise DataError("n_levels is required when there are no ratings")
            n_levels = int(r.max())
        return cls(u.reshape(-1), i.reshape(-1), r, user_ids, item_ids, n_levels)

    @property
    def n_users(self) -> int:
        """Number of users in the id map (some may have no rating in this split)."""
        return int(self.user_ids.shape[0])

    @property
    def n_items(self) -> int:
        """Number of items in the id map (some may have no rating in this split)."""
        return int(self.item_ids.shape[0])

    def __len__(self) -> int:
        return int(self.ratings.shape[0])

    def __repr__(self) -> str:
        return (
            f"RatingData(n_ratings={len(self)}, n_users={self.n_users}, "
            f"n_items={self.n_items}, n_levels={self.n_levels})"
        )

    def subset(self, index: ArrayLike) -> RatingData:
        """The ratings at ``index`` (integer positions or boolean mask), same id maps."""
        idx = np.asarray(index)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise DataError(f"boolean index must have shape ({len(self)},), got {idx.shape}")
        else:
            idx = _int_array(idx, "index")
            if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
                raise DataError(f"index out of range for {len(self)} ratings")
            if np.unique(idx % max(len(self), 1)).shape[0] != idx.shape[0]:
                raise DataError("index must not repeat a rating")
        return RatingData._unchecked(
            self.users[idx], self.items[idx], self.ratings[idx],
            self.user_ids, self.item_ids, self.n_levels,
        )


def align_ratings(
    data: RatingData, reference: RatingData, unknown: Literal["drop", "raise"] = "drop"
) -> tuple[RatingData, int]:
    """Re-express ``data`` under the id maps and K of ``reference`` (e.g. a test set under the
    training set's maps).

    Policy for ratings whose user or item is not in the reference maps: ``unknown="drop"``
    removes them, warns, and returns how many were dropped; ``unknown="raise"`` raises
    DataError. A rating above ``reference.n_levels`` raises DataError.
    Returns (aligned data, number of dropped ratings).
    """
    if unknown not in ("drop", "raise"):
        raise ValueError(f"unknown must be 'drop' or 'raise', got {unknown!r}")
    for name, a, b in (("user", data.user_ids, reference.user_ids), ("item", data.item_ids, reference.item_ids)):
        if a.size and b.size and (a.dtype.kind in "iu") != (b.dtype.kind in "iu"):
            raise DataError(f"{name} ids have different types ({a.dtype} vs {b.dtype}); cannot align")
    u, u_ok = _lookup(reference.user_ids, data.user_ids[data.users])
    i, i_ok = _lookup(reference.item_ids, data.item_ids[data.items])
    keep = u_ok & i_ok
    n_drop = int((~keep).sum())
    if n_drop and unknown == "raise":
        j = int(np.flatnonzero(~keep)[0])
        raise DataError(
            f"{n_drop} ratings have a user or item unknown to the reference, e.g. user "
            f"{data.user_ids[data.users[j]]!r}, item {data.item_ids[data.items[j]]!r}"
        )
    if n_drop:
        warnings.warn(
            f"dropped {n_drop} of {len(data)} ratings whose user or item is unknown to the reference",
            stacklevel=2,
        )
    r = data.ratings[keep]
    if r.size and r.max() > reference.n_levels:
        raise DataError(f"rating {r.max()} exceeds the reference's n_levels={reference.n_levels}")
    aligned = RatingData._unchecked(u[keep], i[keep], r, reference.user_ids, reference.item_ids, reference.n_levels)
    return aligned, n_drop


def _lookup(table: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``values`` in ``table`` (distinct ids) and a mask of those found."""
    if table.size == 0:
        return np.zeros(values.shape, np.int64), np.zeros(values.shape, bool)
    order = np.argsort(table, kind="stable")
    pos = np.searchsorted(table, values, sorter=order)
    pos = np.minimum(pos, table.size - 1)
    idx = order[pos]
    return idx.astype(np.int64), table[idx] == values


# --------------------------------------------------------------------------- loading


def _detect_sep(line: str) -> str | None:
    for sep in ("::", "\t", ",", ";"):
        if sep in line:
            return sep
    return None  # runs of whitespace


def _is_number(tok: str) -> bool:
    try:
        float(tok)
    except ValueError:
        return False
    return True


_INT64_MAX = np.iinfo(np.int64).max
_INTEGER = re.compile(r"[+-]?[0-9]+")  # ASCII digits only: no "1_000", no other scripts' digits


def _show(tok: str, limit: int = 40) -> str:
    """``repr(tok)``, shortened, for a one-line message."""
    return repr(tok) if len(tok) <= limit else repr(tok[:limit]) + "…"


def _parse_id(tok: str, what: str, where: str) -> int:
    """A user or item id: a decimal integer that fits int64 (negative ids are allowed)."""
    if not _INTEGER.fullmatch(tok):
        raise DataError(f"{where}: {what} id {_show(tok)} is not an integer")
    digits = tok.lstrip("+-").lstrip("0")
    value = int(tok) if len(digits) <= 19 else None  # 19 digits hold int64; never parse a huge token
    if value is None or not -_INT64_MAX - 1 <= value <= _INT64_MAX:
        raise DataError(f"{where}: {what} id {_show(tok)} does not fit a 64-bit integer")
    return value


def _parse_rating(tok: str, n_levels: int | None, where: str) -> int:
    """A rating: an integer (``4`` or ``4.0``) in 1..K, K = ``n_levels`` when given, else < 2**63."""
    if _INTEGER.fullmatch(tok):
        digits = tok.lstrip("+-").lstrip("0")
        value = int(tok) if len(digits) <= 19 else _INT64_MAX + 1
    else:
        try:
            number = float(tok)
        except ValueError:
            raise DataError(f"{where}: rating {_show(tok)} is not a number") from None
        if not math.isfinite(number) or number != round(number):
            raise DataError(f"{where}: rating {_show(tok)} is not an integer")
        value = int(number)
    upper = n_levels if n_levels is not None else _INT64_MAX
    if value < 1 or value > upper:
        bound = n_levels if n_levels is not None else "K"
        shown = value if len(str(value)) <= 40 else _show(tok)
        raise DataError(f"{where}: rating {shown} is outside 1..{bound}")
    return value


def load_ratings(path: str | Path, n_levels: int | None = None, sep: str | None = None) -> RatingData:
    """Read a ratings file of lines ``user SEP item SEP rating [SEP timestamp]``.

    Formats: MovieLens ``u.data`` (tab), ``ratings.dat`` (``::``), CSV with or without a header
    line. ``sep=None`` detects ``::``, tab, comma or semicolon from the first line, else splits
    on whitespace. The first line is a header when none of its fields is a number. Blank lines
    are skipped; every line must have the field count of the first (3 or 4).
    User and item ids must be decimal integers (ASCII digits, optionally signed) that fit int64;
    internal ids follow their sorted order. Ratings must be integers in 1..K (``4.0`` is
    accepted as 4); K is ``n_levels`` or else the largest rating.
    The timestamp, if present, must be numeric and is not kept.
    Only a regular file is read: a FIFO or device is refused at once, without reading.
    Raises DataError naming the file and line for a missing or empty file, a malformed line, an
    id beyond int64, a rating out of range, or a repeated (user, item) pair.
    """
    if n_levels is not None and (isinstance(n_levels, bool) or not isinstance(n_levels, (int, float, np.integer))
                                 or not math.isfinite(n_levels) or int(n_levels) != n_levels or n_levels < 1):
        raise DataError(f"n_levels must be a positive integer, got {n_levels!r}")
    if n_levels is not None:
        n_levels = int(n_levels)
    path, raw = read_regular_file(path, "ratings file")
    if raw.startswith(b"\xef\xbb\xbf"):  # UTF-8 byte-order mark written by some spreadsheet tools
        raw = raw[3:]

    users: list[int] = []
    items: list[int] = []
    ratings: list[int] = []
    linenos: list[int] = []
    n_fields = 0
    for lineno, bline in enumerate(raw.splitlines(), start=1):
        where = f"{path}:{lineno}"
        try:
            line = bline.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise DataError(f"{where}: not valid UTF-8 text") from None
        if not line:
            continue
        if not n_fields:  # first non-blank line: separator, field count, header
            if sep is None:
                sep = _detect_sep(line)
            fields = [f.strip() for f in line.split(sep)]
            if len(fields) not in (3, 4):
                raise DataError(
                    f"{where}: expected 3 or 4 fields (user, item, rating[, timestamp]) "
                    f"separated by {sep or 'whitespace'!r}, found {len(fields)}"
                )
            n_fields = len(fields)
            if not any(_is_number(f) for f in fields):
                continue  # header
        else:
            fields = [f.strip() for f in line.split(sep)]
            if len(fields) != n_fields:
                raise DataError(f"{where}: expected {n_fields} fields, found {len(fields)}")
        user = _parse_id(fields[0], "user", where)
        item = _parse_id(fields[1], "item", where)
        rating = _parse_rating(fields[2], n_levels, where)
        if n_fields == 4 and not _is_number(fields[3]):
            raise DataError(f"{where}: timestamp {_show(fields[3])} is not a number")
        users.append(user)
        items.append(item)
        ratings.append(rating)
        linenos.append(lineno)

    if not ratings:
        raise DataError(f"{path}: no ratings found (empty file or header only)")
    user_ids, u = np.unique(np.asarray(users, dtype=np.int64), return_inverse=True)
    item_ids, i = np.unique(np.asarray(items, dtype=np.int64), return_inverse=True)
    u, i = u.reshape(-1).astype(np.int64), i.reshape(-1).astype(np.int64)
    keys = u * item_ids.shape[0] + i  # < n_ratings**2, far inside int64
    order = np.argsort(keys, kind="stable")
    dup = np.flatnonzero(keys[order][1:] == keys[order][:-1])
    if dup.size:
        first, second = order[dup[0]], order[dup[0] + 1]
        raise DataError(
            f"{path}:{linenos[second]}: duplicate rating for user {users[second]}, item "
            f"{items[second]} (first on line {linenos[first]})"
        )
    r = np.asarray(ratings, dtype=np.int64)
    k = n_levels if n_levels is not None else int(r.max())
    return RatingData._unchecked(u, i, r, user_ids, item_ids, k)


# --------------------------------------------------------------------------- splits


def split_ratings(data: RatingData, test_fraction: float = 0.2, seed: int = 0) -> tuple[RatingData, RatingData]:
    """Random split of the rating triples into (train, test), both under ``data``'s id maps.

    The test set holds round(test_fraction * n) ratings drawn uniformly without replacement
    (``numpy.random.default_rng(seed)``); the same seed gives the same split. Ratings keep
    their original order inside each part. A user or item may end up with no training rating.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n = len(data)
    n_test = int(round(test_fraction * n))
    if not 0 < n_test < n:
        raise DataError(f"cannot split {n} ratings with test_fraction={test_fraction}: a part would be empty")
    perm = np.random.default_rng(seed).permutation(n)
    is_test = np.zeros(n, dtype=bool)
    is_test[perm[:n_test]] = True
    return data.subset(~is_test), data.subset(is_test)


def kfold_splits(data: RatingData, k: int = 5, seed: int = 0) -> Iterator[tuple[RatingData, RatingData]]:
    """Yield k (train, test) pairs; every rating is in exactly one test fold.

    The ratings are permuted with ``numpy.random.default_rng(seed)`` and cut into k folds whose
    sizes differ by at most one; fold f is the test set of pair f, the rest its training set.
    All parts share ``data``'s id maps.
    """
    if isinstance(k, bool) or int(k) != k or k < 2:
        raise ValueError(f"k must be an integer >= 2, got {k!r}")
    n = len(data)
    if n < k:
        raise DataError(f"cannot make {k} folds from {n} ratings")
    perm = np.random.default_rng(seed).permutation(n)
    fold = np.empty(n, dtype=np.int64)
    for f, part in enumerate(np.array_split(perm, int(k))):
        fold[part] = f
    for f in range(int(k)):
        yield data.subset(fold != f), data.subset(fold == f)


# --------------------------------------------------------------------------- dense layouts


def _dense_shape(data: RatingData, n_users: int | None, n_items: int | None) -> tuple[int, int]:
    n_users = data.n_users if n_users is None else int(n_users)
    n_items = data.n_items if n_items is None else int(n_items)
    if n_users < data.n_users or n_items < data.n_items:
        raise DataError(
            f"dense shape ({n_users}, {n_items}) is smaller than the id maps "
            f"({data.n_users}, {data.n_items})"
        )
    return n_users, n_items


def to_dense(
    data: RatingData,
    n_users: int | None = None,
    n_items: int | None = None,
    dtype: torch.dtype = torch.int64,
) -> torch.Tensor:
    """Rating codes as a (n_users, n_items) tensor: entry [u, i] is the rating 1..K, 0 if missing.

    The compact form of the softmax visible layer; a one-hot batch of rows is
    ``torch.nn.functional.one_hot(codes[rows], K + 1)[..., 1:]`` (drop the "missing" level).
    ``codes > 0`` is the observed mask. Sizes default to the id maps.
    """
    n_users, n_items = _dense_shape(data, n_users, n_items)
    codes = torch.zeros(n_users, n_items, dtype=dtype)
    codes[torch.from_numpy(data.users), torch.from_numpy(data.items)] = torch.from_numpy(data.ratings).to(dtype)
    return codes


def to_one_hot(
    data: RatingData,
    n_users: int | None = None,
    n_items: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot softmax visibles and the observed mask.

    Returns (v, mask): v has shape (n_users, n_items * K), item-major: column ``i * K + (k - 1)``
    is 1 when user u gave item i rating k; a missing rating is an all-zero block of K columns.
    mask is bool (n_users, n_items), True where a rating is observed; the per-column mask is
    ``mask.repeat_interleave(K, dim=1)``.
    """
    n_users, n_items = _dense_shape(data, n_users, n_items)
    k = data.n_levels
    v = torch.zeros(n_users, n_items * k, dtype=dtype)
    cols = torch.from_numpy(data.items * k + (data.ratings - 1))
    v[torch.from_numpy(data.users), cols] = 1
    mask = torch.zeros(n_users, n_items, dtype=torch.bool)
    mask[torch.from_numpy(data.users), torch.from_numpy(data.items)] = True
    return v, mask


# --------------------------------------------------------------------------- baselines


def _check_fit_data(train: RatingData) -> None:
    if not isinstance(train, RatingData):
        raise DataError(f"fit expects a RatingData, got {type(train).__name__}")
    if len(train) == 0:
        raise DataError("cannot fit on an empty RatingData")


def _check_query(users: ArrayLike, items: ArrayLike, n_users: int, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    u, i = _int_array(users, "users"), _int_array(items, "items")
    if u.shape != i.shape:
        raise DataError(f"users and items must have the same length, got {u.shape[0]} and {i.shape[0]}")
    if u.size and (u.min() < 0 or u.max() >= n_users):
        raise DataError(f"users must be internal ids in [0, {n_users})")
    if i.size and (i.min() < 0 or i.max() >= n_items):
        raise DataError(f"items must be internal ids in [0, {n_items})")
    return u, i


