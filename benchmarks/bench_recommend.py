"""K-fold cross-validated rating prediction (RMSE, MAE) on a ratings file, MovieLens 100k by default.

Each model is a zero-argument factory in MODELS returning an object with
``fit(train: RatingData) -> self`` and ``predict(users, items) -> np.ndarray`` (internal ids).
Adding a row takes two lines, e.g.::

    from boltzkit.recommend import CFRBM
    MODELS["RBM (CF)"] = lambda: CFRBM(n_hidden=100)

Usage::

    python benchmarks/bench_recommend.py --folds 5 --seed 0 --out results.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from boltzkit.recommend import BiasBaseline, GlobalMean, RatingData, kfold_splits, load_ratings, mae, rmse

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RATINGS = REPO_ROOT.parent / "shared" / "data" / "movielens-100k" / "u.data"

MODELS: dict[str, Callable[[], Any]] = {
    "global mean": GlobalMean,
    "bias baseline (μ + b_u + b_i)": BiasBaseline,
}
SKIPPED: dict[str, str] = {}

from boltzkit.recommend import CFRBM  # noqa: E402

# the library defaults (one case per item, 5% of the training ratings to pick the epoch)
MODELS["RBM (CF, one case per item; default)"] = CFRBM
MODELS["conditional RBM (CF, one case per item)"] = lambda: CFRBM(conditional=True)
# one case per user, as the paper (its defaults: weight decay 0.01, mean-field CD negatives)
MODELS["RBM (CF, one case per user, as the paper)"] = lambda: CFRBM(cases="users")
MODELS["conditional RBM (CF, one case per user)"] = lambda: CFRBM(cases="users", conditional=True)


class SurpriseSVD:
    """scikit-surprise's SVD with its default hyper-parameters behind the fit/predict protocol.

    Only users and items with a training rating enter surprise's training set, so unknown ones
    get surprise's own fallback; ``random_state`` fixes its initialisation.
    """

    def __init__(self, random_state: int = 0) -> None:
        self.random_state = random_state

    def fit(self, train: RatingData) -> SurpriseSVD:
        from surprise import SVD, Trainset

        u_inner = {int(u): j for j, u in enumerate(np.unique(train.users))}
        i_inner = {int(i): j for j, i in enumerate(np.unique(train.items))}
        ur: dict[int, list] = {j: [] for j in u_inner.values()}
        ir: dict[int, list] = {j: [] for j in i_inner.values()}
        for u, i, r in zip(train.users.tolist(), train.items.tolist(), train.ratings.tolist()):
            ur[u_inner[u]].append((i_inner[i], float(r)))
            ir[i_inner[i]].append((u_inner[u], float(r)))
        trainset = Trainset(ur, ir, len(u_inner), len(i_inner), len(train), (1, train.n_levels), u_inner, i_inner)
        self.algo_ = SVD(random_state=self.random_state).fit(trainset)
        return self

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.array([self.algo_.predict(int(u), int(i)).est for u, i in zip(users, items)])


try:
    import surprise

    MODELS["surprise SVD (defaults)"] = SurpriseSVD
except ImportError as exc:  # optional comparison only
    surprise = None
    SKIPPED["surprise SVD (defaults)"] = f"scikit-surprise not importable ({exc})"


def run(data: RatingData, models: dict[str, Callable[[], Any]], folds: int, seed: int) -> dict[str, dict]:
    """Per model: rmse, mae, fit_seconds lists over the folds (same folds for every model)."""
    results = {name: {"rmse": [], "mae": [], "fit_seconds": []} for name in models}
    for f, (train, test) in enumerate(kfold_splits(data, k=folds, seed=seed)):
        for name, make in models.items():
            model = make()
            t0 = time.perf_counter()
            model.fit(train)
            fit_s = time.perf_counter() - t0
            pred = model.predict(test.users, test.items)
            res = results[name]
            res["rmse"].append(rmse(pred, test.ratings))
            res["mae"].append(mae(pred, test.ratings))
            res["fit_seconds"].append(fit_s)
            print(f"fold {f + 1}/{folds}  {name:<32} rmse {res['rmse'][-1]:.4f}  mae {res['mae'][-1]:.4f}",
                  file=sys.stderr)
    for res in results.values():
        for key in ("rmse", "mae", "fit_seconds"):
            vals = np.asarray(res[key])
            res[key + "_mean"] = float(vals.mean())
            res[key + "_std"] = float(vals.std(ddof=1)) if vals.size > 1 else 0.0
    return results


def markdown_table(results: dict[str, dict], skipped: dict[str, str]) -> str:
    lines = [
        "| model | RMSE | MAE | fit time (s) |",
        "| --- | --- | --- | --- |",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['rmse_mean']:.4f} ± {r['rmse_std']:.4f} | "
            f"{r['mae_mean']:.4f} ± {r['mae_std']:.4f} | {r['fit_seconds_mean']:.2f} |"
        )
    for name, why in skipped.items():
        lines.append(f"| {name} | skipped: {why} | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratings", type=Path, default=DEFAULT_RATINGS, help="ratings file (default: %(default)s)")
    parser.add_argument("--folds", type=int, default=5, help="number of CV folds (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fold assignment (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=None, help="write the per-fold results as JSON here")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default %(default)s: the RBM's small GEMMs gain little from "
                             "more, and lose a lot on a busy machine)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)

    data = load_ratings(args.ratings)
    print(f"{args.ratings}: {data}", file=sys.stderr)
    results = run(data, MODELS, args.folds, args.seed)
    print(
        f"{args.folds}-fold CV on {args.ratings.name}: {len(data)} ratings, {data.n_users} users, "
        f"{data.n_items} items, K={data.n_levels}, seed {args.seed}; mean ± std over folds\n"
    )
    print(markdown_table(results, SKIPPED))
    if args.out is not None:
        report = {
            "ratings": str(args.ratings),
            "n_ratings": len(data),
            "n_users": data.n_users,
            "n_items": data.n_items,
            "n_levels": data.n_levels,
            "folds": args.folds,
            "seed": args.seed,
            "threads": args.threads,
            "versions": {
                "python": platform.python_version(),
                "numpy": np.__version__,
                "torch": torch.__version__,
                "surprise": getattr(surprise, "__version__", None),
            },
            "results": results,
            "skipped": SKIPPED,
        }
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
