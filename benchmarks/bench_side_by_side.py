"""Side by side: boltzkit, scikit-learn's BernoulliRBM, rbms and learnergy against one GEMM roofline.

One run trains a 784 × 500 Bernoulli RBM on the first ``--n`` binarised-MNIST training rows
(random 13%-ones rows without ``../shared``) with each library at each batch size B, and
times a steady-state epoch: n/B updates of one B-row minibatch, one-time setup and imports
excluded, fastest of ``--epochs`` timed epochs after a warm-up.  Every library runs the
one-step sampler its RBM trains with by default:

* boltzkit ``fit``, ``method="cd"`` and ``method="pcd"`` (B persistent chains), k = 1;
* scikit-learn ``BernoulliRBM.fit`` (PCD-1, B persistent chains), once on float32 rows, as
  given, and once on float64; the epoch is ``fit(n_iter=1)`` minus ``fit(n_iter=0)``;
* rbms 0.5.0 PCD with ``num_chains=B``, ``gibbs_steps=1`` (its defaults, 2000 × 100, are
  ~100× the work): its update loop alone (``anchors.rbms_pcd_updates``), and one epoch
  of its ``train`` entry point including its setup and per-update HDF5 logging;
* learnergy ``models.bernoulli.RBM.fit`` (CD-1, autograd gradient, shuffled DataLoader,
  and a pseudo-likelihood estimate per batch, all part of its ``fit``).

boltzkit also runs CD-1 with ``precision="tf32"`` (float32 tensors whose matrix products may round
their inputs: bf16 through oneDNN on a CPU with AMX or avx512_bf16), beside a roofline of the same
products under that setting; its effect on the log-likelihood is ``bench_precision.py``'s.

The roofline (``bench_speed.roofline_seconds``) is the time of the 5 float32 GEMMs of 2·B·784·500
flops that one CD-1 update needs (v→h, h→v, the model-side hidden means, the two outer
products), run alone on preallocated tensors: one yardstick for every row (a PCD-1 update
needs one product more, so PCD rows would sit 6/5 higher against their own roofline).  Reported per library and batch:
seconds per epoch, samples/s, fraction of the roofline (roofline_s / library_s, 1 = nothing
but GEMMs) and ratios library_s / boltzkit_s against boltzkit CD and PCD.  Threads: torch's
default (printed); NumPy's BLAS as the machine gives (printed).  Run in the benchmark venv
(``benchmarks/requirements-bench.txt``); a library that is not installed is reported so::

    /work/anchors-venv/bin/python benchmarks/bench_side_by_side.py --n 10000 --batch-sizes 100,1000
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from anchors import rbms_pcd_updates, train_rbms  # noqa: E402
from bench_speed import SHARED, boltzkit_seconds, load_train, roofline_seconds  # noqa: E402

HIDDEN = 500
CPU = torch.device("cpu")


def fastest(work: Callable[[], object], repeats: int) -> float:
    """Fastest of ``repeats`` timed calls of ``work``, after one untimed warm-up call."""
    work()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


# Each timer: (data, batch, repeats) -> seconds of one steady-state epoch of the data's rows.

def time_boltzkit(method: str, **options: str) -> Callable[[torch.Tensor, int, int], float]:
    def timer(data: torch.Tensor, batch: int, repeats: int) -> float:
        return boltzkit_seconds(data, HIDDEN, batch, 1, method, repeats + 1, **options)[0]
    return timer


def time_sklearn(dtype: type) -> Callable[[torch.Tensor, int, int], float]:
    def timer(data: torch.Tensor, batch: int, repeats: int) -> float:
        from sklearn.neural_network import BernoulliRBM

        x = data.numpy().astype(dtype)

        def fit(n_iter: int) -> Callable[[], object]:
            return lambda: BernoulliRBM(n_components=HIDDEN, batch_size=batch, n_iter=n_iter,
                                        random_state=0).fit(x)

        return fastest(fit(1), repeats) - fastest(fit(0), repeats)
    return timer


def time_rbms_updates(data: torch.Tensor, batch: int, repeats: int) -> float:
    run, _ = rbms_pcd_updates(data.numpy(), HIDDEN, batch, num_chains=batch, gibbs_steps=1, device="cpu")
    updates = math.ceil(data.shape[0] / batch)
    return fastest(lambda: run(updates), repeats)


def time_rbms_train(data: torch.Tensor, batch: int, repeats: int) -> float:
    from rbms.parser import default_args

    return min(train_rbms(data.numpy(), HIDDEN, epochs=1, batch_size=batch, lr=default_args["learning_rate"],
                          num_chains=batch, gibbs_steps=1, device="cpu")["seconds"]
               for _ in range(repeats))


def time_learnergy(data: torch.Tensor, batch: int, repeats: int) -> float:
    from learnergy.core import Dataset
    from learnergy.models.bernoulli import RBM as LearnergyRBM

    torch.manual_seed(0)
    model = LearnergyRBM(n_visible=data.shape[1], n_hidden=HIDDEN)
    rows = Dataset(data, torch.zeros(data.shape[0]), show_log=False)
    return fastest(lambda: model.fit(rows, batch_size=batch, epochs=1), repeats)


# (row name, package, algorithm, dtype, timer)
LIBRARIES: list[tuple[str, str, str, str, Callable[[torch.Tensor, int, int], float]]] = [
    ("boltzkit CD", "boltzkit", "CD-1", "float32", time_boltzkit("cd")),
    ("boltzkit PCD", "boltzkit", "PCD-1, B chains", "float32", time_boltzkit("pcd")),
    ("boltzkit CD, precision tf32", "boltzkit", "CD-1", "float32, bf16 products",
     time_boltzkit("cd", precision="tf32")),
    ("scikit-learn BernoulliRBM", "scikit-learn", "PCD-1, B chains", "float32", time_sklearn(np.float32)),
    ("scikit-learn BernoulliRBM", "scikit-learn", "PCD-1, B chains", "float64", time_sklearn(np.float64)),
    ("rbms (update loop)", "rbms", "PCD-1, B chains, centred", "float32", time_rbms_updates),
    ("rbms (train(), setup + HDF5 log)", "rbms", "PCD-1, B chains, centred", "float32", time_rbms_train),
    ("learnergy RBM.fit", "learnergy", "CD-1 (+ pseudo-likelihood)", "float32", time_learnergy),
]


def blas_threads() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl not installed)"
    return ", ".join(f"{i['prefix']} {i['num_threads']}" for i in threadpool_info()) or "none loaded"


def measure(data: torch.Tensor, batches: list[int], repeats: int) -> list[dict]:
    rows = []
    n = data.shape[0]
    for batch in batches:
        print(f"batch {batch}: roofline", file=sys.stderr, flush=True)
        roof = roofline_seconds(n, batch, data.shape[1], HIDDEN, 1, CPU, repeats=repeats)
        rows.append({"library": "roofline (5 GEMMs)", "package": "torch", "version": torch.__version__,
                     "algorithm": "GEMMs of CD-1/PCD-1", "dtype": "float32", "batch": batch, "seconds": roof})
        rows.append({"library": "roofline (5 GEMMs), bf16 products", "package": "torch",
                     "version": torch.__version__, "algorithm": "GEMMs of CD-1/PCD-1",
                     "dtype": "float32, bf16 products", "batch": batch,
                     "seconds": roofline_seconds(n, batch, data.shape[1], HIDDEN, 1, CPU, repeats=repeats,
                                                 precision="tf32")})
        for name, package, algorithm, dtype, timer in LIBRARIES:
            print(f"batch {batch}: {name} {dtype}", file=sys.stderr, flush=True)
            row = {"library": name, "package": package, "version": package_version(package),
                   "algorithm": algorithm, "dtype": dtype, "batch": batch}
            try:
                row["seconds"] = timer(data, batch, repeats)
            except ImportError as err:
                row.update(seconds=None, error=f"not installed ({err})")
            rows.append(row)
        base = {r["library"]: r["seconds"] for r in rows if r["batch"] == batch and r["package"] == "boltzkit"}
        for r in rows:
            if r["batch"] != batch or r["seconds"] is None:
                continue
            r["samples_per_s"] = n / r["seconds"]
            r["roofline_fraction"] = roof / r["seconds"]
            for key, label in (("ratio_vs_boltzkit_cd", "boltzkit CD"), ("ratio_vs_boltzkit_pcd", "boltzkit PCD")):
                r[key] = r["seconds"] / base[label]
    return rows


def markdown(rows: list[dict], header: str) -> str:
    def cell(row: dict, key: str, fmt: str) -> str:
        if row["seconds"] is None:
            return "not installed" if key == "seconds" else "–"
        return format(row[key], fmt)

    lines = [header, "",
             "| library | version | algorithm | dtype | batch | s / epoch | samples/s | roofline fraction "
             "| × boltzkit CD | × boltzkit PCD |",
             "|---|---|---|---|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        lines.append(f"| {r['library']} | {r['version']} | {r['algorithm']} | {r['dtype']} | {r['batch']} "
                     f"| {cell(r, 'seconds', '.3f')} | {cell(r, 'samples_per_s', ',.0f')} "
                     f"| {cell(r, 'roofline_fraction', '.2f')} | {cell(r, 'ratio_vs_boltzkit_cd', '.2f')} "
                     f"| {cell(r, 'ratio_vs_boltzkit_pcd', '.2f')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=10000, help="training rows per epoch")
    p.add_argument("--batch-sizes", default="100,1000", help="comma-separated batch sizes")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs per library (fastest reported)")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    a = p.parse_args(argv)
    batches = [int(b) for b in a.batch_sizes.split(",")]
    if any(b < 1 or a.n % b for b in batches):
        p.error(f"--n {a.n} must be a positive multiple of every batch size {batches}")
    data = load_train(a.n)
    command = "python benchmarks/bench_side_by_side.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    rows = measure(data, batches, a.epochs)
    source = "binarised MNIST" if (SHARED / "binarized_mnist_train.mat").is_file() else "random (no ../shared)"
    header = (f"`{command}`  \n{data.shape[0]} × {data.shape[1]} {source} rows, {HIDDEN} hidden, CPU; "
              f"torch threads {torch.get_num_threads()}; BLAS threads: {blas_threads()}; "
              f"roofline = 5 float32 GEMMs of 2·B·{data.shape[1]}·{HIDDEN} flops per update")
    print(markdown(rows, header))
    if a.json is not None:
        a.json.write_text(json.dumps({"command": command, "data": source, "n": data.shape[0], "hidden": HIDDEN,
                                      "torch_threads": torch.get_num_threads(), "blas_threads": blas_threads(),
                                      "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
