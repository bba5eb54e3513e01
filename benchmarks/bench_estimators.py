"""Negative-phase comparison on binarised MNIST: exact test log-likelihood of 20-hidden RBMs
trained with CD-1, CD-10, PCD-1, fast PCD, parallel tempering and centered PCD, each with the
same number of parameter updates and otherwise boltzkit's defaults, in one run::

    python benchmarks/bench_estimators.py --out bench_estimators.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from boltzkit.models.rbm import RBM
from boltzkit.training import fit

sys.path.insert(0, str(Path(__file__).parent))
from exact_report import add_setting_arguments, report, score  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "binarized-mnist"

METHODS = {
    "CD-1": dict(method="cd", k=1),
    "CD-10": dict(method="cd", k=10),
    "PCD-1": dict(method="pcd", k=1),
    "fast PCD-1": dict(method="fpcd", k=1),
    "PT-1 (10 replicas)": dict(method="pt", k=1, replicas=10),
    "centered PCD-1": dict(method="pcd", k=1, centered=True),
}


def main(argv=None) -> int:
    from scipy.io import loadmat

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_setting_arguments(p)
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument("--out")
    a = p.parse_args(argv)
    train = torch.from_numpy(loadmat(DATA / "binarized_mnist_train.mat")["X"].astype(np.float32))
    test = torch.from_numpy(loadmat(DATA / "binarized_mnist_test.mat")["X"].astype(np.float64))
    rows = []
    for name in a.methods:
        rbm = RBM(784, a.hidden, seed=a.seed)
        start = time.perf_counter()
        fit(rbm, train, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, seed=a.seed, **METHODS[name])
        seconds = time.perf_counter() - start
        rows.append(score(name, rbm, test, seconds, updates=a.epochs * (train.shape[0] // a.batch_size)))
    report(rows, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
