"""Effect of ``TrainingConfig.precision`` on speed and on the test log-likelihood (exact, or AIS).

An RBM (784 visible, 20 hidden: log Z by enumerating the 2²⁰ hidden states, ≈ 30 s on one
thread; more hidden units: forward AIS with its interval, ``--ais-chains`` × ``--ais-betas``) is
trained on the first ``--rows`` binarised-MNIST training digits for ``--epochs`` epochs at each
precision with the same seed (same initial weights, shuffling and random stream), then scored on
the 10,000 test digits.  A second ``--seeds`` value gives the seed-to-seed spread of the same
run, the scale the precision effects compare with.  Prints one JSON object and a markdown table::

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/bench_precision.py
    python benchmarks/bench_precision.py --device cuda --rows 50000 --hidden 20 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from boltzkit import RBM, Trainer, TrainingConfig
from boltzkit.evaluation import ais, exact
from boltzkit.training import Callback
from boltzkit.training.config import PRECISIONS

sys.path.insert(0, str(Path(__file__).parent))
from bench_speed import SHARED, load_train  # noqa: E402

#: hidden units up to which the test log-likelihood is exact (enumeration); AIS beyond
EXACT_BITS = 20


def load_test() -> torch.Tensor:
    """The 10,000 binarised-MNIST test digits (needed: a log-likelihood of stand-in data means nothing)."""
    from scipy.io import loadmat

    path = SHARED / "binarized_mnist_test.mat"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: the test log-likelihood needs the real digits")
    return torch.from_numpy(np.ascontiguousarray(loadmat(path)["X"], dtype=np.float32))


class EpochTimes(Callback):
    """Wall-clock seconds of each epoch (the device is synchronised at both ends)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.seconds = device, []
        self._start = 0.0

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def on_epoch_begin(self, trainer: Any, epoch: int) -> None:
        self._start = self._now()

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, float]) -> None:
        self.seconds.append(self._now() - self._start)


def run(precision: str, seed: int, train: torch.Tensor, test: torch.Tensor, args: argparse.Namespace,
        device: torch.device) -> dict[str, Any]:
    rbm = RBM(train.shape[1], args.hidden, seed=seed, device=device)
    config = TrainingConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, method=args.method,
                            seed=seed, precision=precision)
    times = EpochTimes(device)
    Trainer(rbm, config, callbacks=[times]).fit(train)
    start = time.perf_counter()
    scored: dict[str, Any]
    if exact.is_tractable(rbm, EXACT_BITS):
        scored = {"test_log_likelihood": exact.log_likelihood(rbm, test), "estimate": "exact"}
    else:  # forward AIS on the float32 products (the precision applies to training only), same seed
        result = ais.ais(rbm, train, n_chains=args.ais_chains, betas=args.ais_betas, seed=0)
        ll = ais.log_likelihood(rbm, test, result)
        scored = {"test_log_likelihood": ll.mean, "interval": [ll.low, ll.high], "ess": result.ess,
                  "estimate": f"AIS {args.ais_chains} chains x {args.ais_betas} betas"}
    return {"precision": precision, "seed": seed, **scored,
            "first_epoch_s": times.seconds[0],
            "epoch_s": statistics.median(times.seconds[1:] or times.seconds),
            "score_s": time.perf_counter() - start}


def table(rows: list[dict[str, Any]]) -> str:
    reference = {r["seed"]: r["test_log_likelihood"] for r in rows if r["precision"] == "float32"}
    lines = ["| precision | seed | test LL (nats) | interval | Δ vs float32 | s / epoch (median) | first epoch (s) |",
             "|---|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        delta = r["test_log_likelihood"] - reference[r["seed"]] if r["seed"] in reference else float("nan")
        interval = "exact" if "interval" not in r else "[{:.2f}, {:.2f}]".format(*r["interval"])
        lines.append(f"| {r['precision']} | {r['seed']} | {r['test_log_likelihood']:.3f} | {interval} | "
                     f"{delta:+.3f} | {r['epoch_s']:.3f} | {r['first_epoch_s']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000, help="training rows (the first ones)")
    parser.add_argument("--hidden", type=int, default=20,
                        help=f"hidden units (exact log Z up to {EXACT_BITS}: 2^hidden states; AIS beyond)")
    parser.add_argument("--ais-chains", type=int, default=100, help="AIS chains beyond exact sizes")
    parser.add_argument("--ais-betas", type=int, default=10_000, help="AIS β values beyond exact sizes")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--method", default="pcd")
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds; a second gives the spread")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", metavar="FILE", help="also write the JSON here")
    args = parser.parse_args()
    device = torch.device(args.device)
    train, test = load_train(args.rows).to(device), load_test().to(device)
    rows = [run(p, s, train, test, args, device) for s in args.seeds for p in args.precisions]
    result = {"benchmark": "precision", "device": str(device), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "rows": train.shape[0], "n_visible": train.shape[1],
              "n_hidden": args.hidden, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
              "method": args.method, "results": rows}
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
