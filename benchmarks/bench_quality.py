"""Quality benchmark: exact test log-likelihood of 20-hidden RBMs on binarised MNIST.

boltzkit (PCD-1, its defaults), scikit-learn's BernoulliRBM and rbms 0.5.0 are trained with
the same epochs, batch size and learning rate (each library's defaults otherwise) and scored
by the same exact enumeration (boltzkit.exact, 2^20 hidden states).  Run with the
benchmark environment of requirements-bench.txt::

    /work/anchors-venv/bin/python benchmarks/bench_quality.py --out bench_quality.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from anchors import load_binarized_mnist, train_rbms, train_sklearn  # noqa: E402
from boltzkit.models.rbm import RBM  # noqa: E402
from boltzkit.training import fit  # noqa: E402
from exact_report import add_setting_arguments, report, score  # noqa: E402


def train_boltzkit(x_train: np.ndarray, n_hidden: int, epochs: int, batch_size: int, lr: float,
                   seed: int, **options) -> dict:
    rbm = RBM(x_train.shape[1], n_hidden, seed=seed)
    start = time.perf_counter()
    fit(rbm, torch.from_numpy(x_train.astype(np.float32)), epochs=epochs, batch_size=batch_size,
        lr=lr, seed=seed, **options)
    return {"rbm": rbm, "seconds": time.perf_counter() - start}


def as_rbm(out: dict) -> RBM:
    w = torch.from_numpy(np.asarray(out["weight"], np.float64))
    rbm = RBM(*w.shape, seed=None, dtype=torch.float64)
    with torch.no_grad():
        rbm.weight.copy_(w)
        rbm.visible_bias.copy_(torch.from_numpy(np.asarray(out["visible_bias"], np.float64)))
        rbm.hidden_bias.copy_(torch.from_numpy(np.asarray(out["hidden_bias"], np.float64)))
    return rbm


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_setting_arguments(p)
    p.add_argument("--which", nargs="+", default=["boltzkit", "sklearn", "rbms"])
    p.add_argument("--rbms-chains", type=int, nargs="+", default=[2000, 100],
                   help="rbms runs (its defaults need k=100: ~4 h on 2 cores, so PCD-1 is used)")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    torch.manual_seed(a.seed)
    x_train, x_test = load_binarized_mnist("train"), load_binarized_mnist("test")
    test = torch.from_numpy(x_test.astype(np.float64))
    common = dict(n_hidden=a.hidden, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, seed=a.seed)
    runs: list[tuple[str, dict]] = []
    for which in a.which:
        if which == "boltzkit":
            out = train_boltzkit(x_train, **common)
            runs.append(("boltzkit PCD-1 (defaults)", out))
        elif which == "sklearn":
            out = train_sklearn(x_train, **common)
            runs.append(("scikit-learn BernoulliRBM (defaults)", {"rbm": as_rbm(out), **out}))
        elif which == "rbms":
            for chains in a.rbms_chains:
                out = train_rbms(x_train, num_chains=chains, gibbs_steps=1, **common)
                runs.append((f"rbms 0.5.0, PCD-1, {chains} chains", {"rbm": as_rbm(out), **out}))
    rows = [score(name, out["rbm"], test, out["seconds"]) for name, out in runs]
    report(rows, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
