"""Reference tensors of boltzkit at commit 33f1706, for a bit-for-bit regression test.

``reference_main.safetensors`` (next to this file) was written by this script run against the
code of commit 33f17067b844d65eda8092ba33676238c40234b1 (Bernoulli draws from a field by a
SplitMix64 level against a table of logits, :mod:`boltzkit.sampling.logistic`: every case
changed on purpose, as the 16-bit draws of a9c7a3d and the swap-then-sweep of a3df88b had
changed them before), torch 2.13.0+cpu, numpy 2.4.6, on an AMD EPYC CPU with one torch thread::

    git worktree add /tmp/old 33f1706
    PYTHONPATH=/tmp/old/src python tests/data/make_reference.py    # [--out FILE]

``tests/test_reference_main.py`` runs the same case functions with the *current* code and
compares every tensor with ``torch.equal`` (bit for bit, dtype and shape included).  A change
that alters any number here, even in the last bit, fails that test; if the change is meant,
regenerate the file with the new code and say so in the commit.

Every case trains on CPU, float32, under one torch thread (set and restored by
:func:`_one_thread`).  Keys (``<case>.<name>``):

Binary RBM(784, 16, seed=0) on the first 600 rows of ``boltzkit.data.load_default()`` (the
embedded binarised MNIST test digits; rows are ordered by label, so all 600 show the digit 0),
``boltzkit.fit(rbm, data, epochs=2, batch_size=50, method=..., k=..., ...)``, every other
TrainingConfig field at its default (lr 0.05 linear decay, momentum 0.5, weight decay 1e-4,
n_chains = batch size, seed 0).  Each case stores ``<case>.weight`` (784 × 16),
``<case>.visible_bias`` (784) and ``<case>.hidden_bias`` (16):

- ``pcd1``:      method="pcd", k=1
- ``cd10``:      method="cd", k=10
- ``pt``:        method="pt", k=1, replicas=4
- ``fpcd``:      method="fpcd", k=1 (fast_lr defaults to lr)
- ``centered``:  method="pcd", k=1, centered=True
- ``cd_sparse``: method="cd", k=1, sparsity_target=0.1 (sparsity cost and decay at defaults)

Gaussian–Bernoulli RBM:

- ``gauss``: RBM(12, 6, visible="gaussian", seed=0) on 300 × 12 column-standardised values
  from ``numpy.random.default_rng(0).normal`` (see :func:`gaussian_data`), method="cd", k=1,
  epochs=2, batch_size=50, lr=0.01.  Keys ``gauss.weight`` (12 × 6), ``gauss.visible_bias``
  (12), ``gauss.hidden_bias`` (6).  (σ = 1 is a buffer, not a parameter, so not stored.)

Collaborative-filtering RBM, ``boltzkit.recommend.CFRBM`` with its defaults except
``n_hidden=20, epochs=3``, fitted on :func:`synthetic_ratings` (60 users × 40 items, 600
ratings in 1..5 from ``numpy.random.default_rng(0)``, a ``boltzkit.ratings.RatingData``):

- ``cfrbm``: default (``cases="items"``, not conditional).  Keys: the fitted ``rbm_``'s
  ``named_tensors()`` — ``cfrbm.weight`` (60·5 × 20), ``cfrbm.visible_bias`` (300),
  ``cfrbm.hidden_bias`` (20) — and ``cfrbm.predictions``: float64 (50,), ``model.predict``
  of the 50 unrated (user, item) pairs of :func:`query_pairs`.
- ``cfrbm_cond``: ``conditional=True, cases="users"``.  Keys ``cfrbm_cond.weight``
  (40·5 × 20), ``cfrbm_cond.visible_bias`` (200), ``cfrbm_cond.hidden_bias`` (20),
  ``cfrbm_cond.context_weight`` (40 × 20), ``cfrbm_cond.predictions`` (float64, 50).

The file's metadata entry ``reference`` (a JSON object) records the commit, torch and numpy
versions.  Bit-for-bit equality is
only promised on the same torch build and CPU kind; a different torch may change the last
bits of a matrix product (regenerate with the old code there rather than loosen the test).
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

REFERENCE_COMMIT = "33f17067b844d65eda8092ba33676238c40234b1"
REFERENCE_FILE = Path(__file__).resolve().with_name("reference_main.safetensors")

# -- inputs ---------------------------------------------------------------------------------------


def digits(rows: int = 600) -> Tensor:
    """The first ``rows`` rows of the embedded binarised digits, float32 0/1."""
    from boltzkit.data import load_default

    x, _ = load_default()
    return torch.from_numpy(np.ascontiguousarray(x[:rows], dtype=np.float32))


def gaussian_data() -> Tensor:
    """300 × 12 standard normal draws, standardised per column (in float64), as float32."""
    x = np.random.default_rng(0).normal(size=(300, 12))
    x = (x - x.mean(0)) / x.std(0)
    return torch.from_numpy(x.astype(np.float32))


N_USERS, N_ITEMS, N_RATINGS, N_QUERIES = 60, 40, 600, 50


def _pairs() -> tuple[np.ndarray, np.ndarray]:
    """650 distinct (user, item) cells: the first 600 are rated, the last 50 are the queries."""
    rng = np.random.default_rng(0)
    cells = rng.choice(N_USERS * N_ITEMS, size=N_RATINGS + N_QUERIES, replace=False)
    ratings = rng.integers(1, 6, size=N_RATINGS)
    return cells, ratings


def synthetic_ratings():
    """600 ratings 1..5 of 60 users × 40 items (internal ids = original ids 0..59, 0..39)."""
    from boltzkit.recommend import RatingData

    cells, ratings = _pairs()
    cells = cells[:N_RATINGS]
    return RatingData(users=cells // N_ITEMS, items=cells % N_ITEMS, ratings=ratings,
                      user_ids=np.arange(N_USERS), item_ids=np.arange(N_ITEMS), n_levels=5)


def query_pairs() -> tuple[np.ndarray, np.ndarray]:
    """50 (user, item) pairs with no rating in :func:`synthetic_ratings`."""
    cells, _ = _pairs()
    cells = cells[N_RATINGS:]
    return cells // N_ITEMS, cells % N_ITEMS


# -- cases ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _params(rbm) -> dict[str, Tensor]:
    return {"weight": rbm.weight, "visible_bias": rbm.visible_bias, "hidden_bias": rbm.hidden_bias}


def _binary(**config) -> dict[str, Tensor]:
    from boltzkit import RBM, fit

    rbm = RBM(784, 16, seed=0)
    fit(rbm, digits(600), epochs=2, batch_size=50, **config)
    return _params(rbm)


def case_pcd1() -> dict[str, Tensor]:
    return _binary(method="pcd", k=1)


def case_cd10() -> dict[str, Tensor]:
    return _binary(method="cd", k=10)


def case_pt() -> dict[str, Tensor]:
    return _binary(method="pt", k=1, replicas=4)


def case_fpcd() -> dict[str, Tensor]:
    return _binary(method="fpcd", k=1)


def case_centered() -> dict[str, Tensor]:
    return _binary(method="pcd", k=1, centered=True)


def case_cd_sparse() -> dict[str, Tensor]:
    return _binary(method="cd", k=1, sparsity_target=0.1)


def case_gauss() -> dict[str, Tensor]:
    from boltzkit import RBM, fit

    rbm = RBM(12, 6, visible="gaussian", seed=0)
    fit(rbm, gaussian_data(), method="cd", k=1, epochs=2, batch_size=50, lr=0.01)
    return _params(rbm)


def _cfrbm(**options) -> dict[str, Tensor]:
    from boltzkit.recommend import CFRBM

    model = CFRBM(n_hidden=20, epochs=3, **options).fit(synthetic_ratings())
    out = dict(model.rbm_.named_tensors())
    users, items = query_pairs()
    out["predictions"] = torch.from_numpy(np.asarray(model.predict(users, items), dtype=np.float64))
    return out


def case_cfrbm() -> dict[str, Tensor]:
    return _cfrbm()


def case_cfrbm_cond() -> dict[str, Tensor]:
    return _cfrbm(conditional=True, cases="users")


CASES: dict[str, Callable[[], dict[str, Tensor]]] = {
    "pcd1": case_pcd1,
    "cd10": case_cd10,
    "pt": case_pt,
    "fpcd": case_fpcd,
    "centered": case_centered,
    "cd_sparse": case_cd_sparse,
    "gauss": case_gauss,
    "cfrbm": case_cfrbm,
    "cfrbm_cond": case_cfrbm_cond,
}


def run_case(name: str) -> dict[str, Tensor]:
    """Tensors of case ``name`` under ``<name>.<key>``: detached, contiguous CPU copies."""
    with _one_thread():
        tensors = CASES[name]()
    return {f"{name}.{key}": t.detach().cpu().contiguous().clone() for key, t in tensors.items()}


def all_tensors() -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for name in CASES:
        out.update(run_case(name))
    return out


def main() -> None:
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REFERENCE_FILE)
    args = parser.parse_args()

    from safetensors.torch import save_file

    import boltzkit

    tensors = all_tensors()
    # one metadata entry: safetensors writes several in hash-map order, which varies per run
    info = {"commit": REFERENCE_COMMIT, "torch": torch.__version__, "numpy": np.__version__,
            "generator": "tests/data/make_reference.py"}
    save_file(tensors, str(args.out), metadata={"reference": json.dumps(info, sort_keys=True)})
    print(f"boltzkit from {Path(boltzkit.__file__).parent}")
    for key, t in tensors.items():
        print(f"{key:28s} {str(t.dtype):14s} {tuple(t.shape)}")
    print(f"wrote {len(tensors)} tensors to {args.out}")


if __name__ == "__main__":
    main()
