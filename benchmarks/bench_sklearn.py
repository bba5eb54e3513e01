"""scikit-learn drop-in: RBM features + LogisticRegression in one Pipeline, boltzkit vs scikit-learn.

The example of docs/sklearn.md at full size: the 10,000 embedded binarised digits
(boltzkit.data.load_default, labels included), a stratified 8,000 / 2,000 split, the same
Pipeline with scikit-learn's ``BernoulliRBM`` and with ``boltzkit.sklearn.BernoulliRBM`` (its
defaults: the same algorithm, PCD-1 with plain SGD; and with boltzkit's options), and
logistic regression on the raw pixels.  Same data, same run, one thread::

    OMP_NUM_THREADS=1 python benchmarks/bench_sklearn.py --seeds 0 1 2

Prints a Markdown table (accuracy mean ± std over seeds, RBM fit time) and writes JSON with --out.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from sklearn import neural_network
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from boltzkit.data import load_default
from boltzkit.sklearn import BernoulliRBM


def models(args: argparse.Namespace) -> dict:
    shared = dict(n_components=args.hidden, learning_rate=args.lr, batch_size=args.batch_size, n_iter=args.iter)
    return {
        "logistic regression on pixels": None,
        "scikit-learn BernoulliRBM": neural_network.BernoulliRBM(**shared),
        "boltzkit BernoulliRBM (defaults = scikit-learn's algorithm)": BernoulliRBM(**shared),
        "boltzkit BernoulliRBM (momentum 0.5, data-initialised biases, linear lr decay)":
            BernoulliRBM(**shared, momentum=0.5, init_visible_bias=True, lr_schedule="linear"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.06)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--iter", type=int, default=10)
    parser.add_argument("--C", type=float, default=10.0, help="inverse regularisation of the classifier")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out")
    args = parser.parse_args()
    torch.set_num_threads(1)

    x, labels = load_default()
    X = x.astype(np.float64)   # both libraries then train in float64
    results: dict[str, dict[str, list[float]]] = {}
    for seed in args.seeds:
        x_train, x_test, y_train, y_test = train_test_split(X, labels, test_size=2000, stratify=labels,
                                                            random_state=seed)
        for name, rbm in models(args).items():
            clf = LogisticRegression(C=args.C, max_iter=2000)
            row = results.setdefault(name, {"accuracy": [], "rbm_seconds": [], "total_seconds": []})
            start = time.perf_counter()
            if rbm is None:
                pipe = Pipeline([("clf", clf)]).fit(x_train, y_train)
                rbm_seconds = float("nan")
            else:
                rbm = clone(rbm).set_params(random_state=seed)
                pipe = Pipeline([("rbm", rbm), ("clf", clf)])
                t0 = time.perf_counter()
                features = pipe.named_steps["rbm"].fit_transform(x_train)
                rbm_seconds = time.perf_counter() - t0
                pipe.named_steps["clf"].fit(features, y_train)
            row["total_seconds"].append(time.perf_counter() - start)
            row["rbm_seconds"].append(rbm_seconds)
            row["accuracy"].append(float(pipe.score(x_test, y_test)))
            print(f"seed {seed}: {name}: accuracy {row['accuracy'][-1]:.4f}, RBM fit {rbm_seconds:.1f} s",
                  flush=True)

    sk = np.mean(results["scikit-learn BernoulliRBM"]["rbm_seconds"])
    print(f"\n{len(args.seeds)} seed(s), {args.hidden} hidden units, learning rate {args.lr}, batch {args.batch_size}, "
          f"{args.iter} iterations, LogisticRegression(C={args.C:g})\n")
    print("| pipeline | test accuracy | RBM fit time (s) | vs scikit-learn |")
    print("| --- | --- | --- | --- |")
    for name, row in results.items():
        acc, secs = np.array(row["accuracy"]), np.array(row["rbm_seconds"])
        spread = f" ± {acc.std(ddof=1):.4f}" if len(acc) > 1 else ""
        timing = "—" if np.isnan(secs).all() else f"{secs.mean():.1f}"
        ratio = "—" if np.isnan(secs).all() else f"{secs.mean() / sk:.2f}×"
        print(f"| {name} | {acc.mean():.4f}{spread} | {timing} | {ratio} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"settings": vars(args), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
