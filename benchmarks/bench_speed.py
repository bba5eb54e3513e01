"""Speed of one CD-k training epoch against its matrix-product roofline, measured in one run.

One CD-k update of a B×V×H RBM is 2k+3 GEMM-equivalents of 2·B·V·H flops: k Gibbs sweeps
(v→h, h→v), the model-side hidden means, and the two outer products vᵀμ; PCD-k adds the
positive field (its sweeps start from the chains), PT runs the sweeps on every replica
(see :func:`roofline_seconds`).  The roofline is
the time of exactly those products, on tensors of the same shapes, run alone with
preallocated outputs; the ratio roofline / boltzkit is reported (1.0 = nothing but GEMMs).

The three are measured in interleaved rounds, so that a slow spell of a shared machine hits
all of them alike: every round is one boltzkit epoch of a default ``fit`` (timed between
epoch ends, the first epoch with its one-time data checks reported apart), then one epoch of
the roofline's products, then — for CD and PCD — one epoch of :class:`eager_loop.EagerLoop`,
the same update written as the shortest eager-PyTorch loop (the floor for code made of torch
ops).  Reported: the median over rounds of each round's ratio, the fastest epochs and their
ratio, and every round.  Also once, after the rounds: the products plus float uniforms for
the Gibbs sweeps (the floor of a sampler drawing one float per unit)::

    python benchmarks/bench_speed.py            # 50,000 × 784 binarised MNIST, 500 hidden, CD-1
    python benchmarks/bench_speed.py --method pcd --batch-size 1000
    python benchmarks/bench_speed.py --method pt --replicas 10
    python benchmarks/bench_speed.py --cf --hidden 200 --batch-size 10   # the CF-RBM, MovieLens-100k
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from boltzkit.models.rbm import RBM
from boltzkit.training import Callback, fit
from boltzkit.training.trainer import reduced_float32_matmul

sys.path.insert(0, str(Path(__file__).parent))
from eager_loop import EagerLoop  # noqa: E402
from roofline import GemmWorkload, timed  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "binarized-mnist"


def load_train(n: int) -> torch.Tensor:
    path = SHARED / "binarized_mnist_train.mat"
    if path.is_file():
        from scipy.io import loadmat

        return torch.from_numpy(np.ascontiguousarray(loadmat(path)["X"][:n], dtype=np.float32))
    g = torch.Generator().manual_seed(0)
    return torch.bernoulli(torch.full((n, 784), 0.13), generator=g)


def roofline_seconds(n: int, batch: int, v: int, h: int, k: int, device: torch.device,
                     draws: bool = False, repeats: int = 1, chain_rows: int | None = None,
                     precision: str = "float32") -> float:
    """Time of the GEMMs of one epoch, alone; with ``draws``, also float uniforms for the k Gibbs
    sweeps (the floor of a sampler drawing one float per unit from torch's generator; boltzkit's
    16-bit draws, four per random word, can go below it).  ``precision="tf32"`` runs the
    products as ``TrainingConfig(precision="tf32")`` lets training run them (bf16 inputs on
    AMX / avx512_bf16 CPUs, TF32 on CUDA).

    CD-k: 2k+3 GEMM-equivalents per update on B rows (the first v→h product is the positive
    field).  Persistent chains (``chain_rows``: PCD's chains, PT's chains × replicas): 2k on
    the chains plus 4 on B rows (positive field, E[h | v⁻] of the model rows, two outer
    products); PT's swaps are not counted (their free energies are work beyond the minimum).
    """
    data, epoch = roofline_epoch(n, batch, v, h, k, device, draws, chain_rows)
    with reduced_float32_matmul(device) if precision == "tf32" else nullcontext():
        return data.seconds(epoch, repeats)


def roofline_epoch(n: int, batch: int, v: int, h: int, k: int, device: torch.device, draws: bool = False,
                   chain_rows: int | None = None) -> tuple[GemmWorkload, Callable[[], None]]:
    """The workload and the function that runs one epoch of :func:`roofline_seconds`' products."""
    data = GemmWorkload(batch, v, h, device)
    chains = GemmWorkload(chain_rows, v, h, device) if chain_rows else None

    def epoch() -> None:
        for _ in range(n // batch):
            for _ in range(k):
                (chains or data).sweep(draws)
            if chains is not None:
                data.field()
            data.gradient()

    return data, epoch


class EpochClock(Callback):
    """Wall-clock seconds of every epoch (end of one epoch to the end of the next); ``between``,
    if given, runs at every epoch end outside the clock (the yardsticks of interleaved rounds)."""

    def __init__(self, between: Callable[[], None] | None = None) -> None:
        self.seconds: list[float] = []
        self.between = between
        self.start = time.perf_counter()

    def on_train_begin(self, trainer) -> None:
        self.start = time.perf_counter()

    def on_epoch_end(self, trainer, epoch, metrics) -> None:
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        self.seconds.append(time.perf_counter() - self.start)
        if self.between is not None:
            self.between()
        self.start = time.perf_counter()


def boltzkit_epochs(data: torch.Tensor, hidden: int, batch: int, k: int, method: str, epochs: int,
                    between: Callable[[], None] | None = None, **options) -> list[float]:
    """Seconds of each of ``epochs`` epochs of a default ``fit`` (the first with fit's one-time
    setup), after a short warm-up fit; ``between`` runs after every epoch, outside the clock."""
    rbm = RBM(data.shape[1], hidden, device=data.device)
    fit(rbm, data[: batch * 20], epochs=1, batch_size=batch, method=method, k=k, **options)  # warm-up
    rbm = RBM(data.shape[1], hidden, device=data.device)
    clock = EpochClock(between)
    fit(rbm, data, epochs=epochs, batch_size=batch, method=method, k=k, callbacks=[clock], **options)
    return clock.seconds


def boltzkit_seconds(data: torch.Tensor, hidden: int, batch: int, k: int, method: str,
                     epochs: int, **options) -> tuple[float, float]:
    """(steady-state epoch, first epoch including fit's one-time setup) in seconds."""
    times = boltzkit_epochs(data, hidden, batch, k, method, epochs, **options)
    return min(times[1:] or times), times[0]


def cf_rbm(hidden: int, batch: int, epochs: int, device: torch.device, repeats: int) -> dict:
    """The collaborative-filtering RBM on MovieLens-100k (items as cases, softmax:5 over the
    users' ratings, CD-1, masks): a steady-state epoch against the 5 GEMM-equivalents per
    update of its B × 5·users × H products (the masks and softmax draws are work beyond)."""
    from boltzkit.recommend import CFRBM, load_ratings

    ratings = load_ratings(SHARED.parent / "movielens-100k" / "u.data")
    model = CFRBM(n_hidden=hidden, epochs=epochs, batch_size=batch, validation_fraction=0.0).fit(ratings)
    seconds = min(row["seconds"] for row in model.history_[1:])
    cases, width = model.codes_.shape[0], model.rbm_.visible.dim
    roof = roofline_seconds(cases, batch, width, model.rbm_.hidden.dim, 1, device, repeats=repeats)
    return {"model": f"CF-RBM {cases} items × softmax:5 over {width // 5} users × {hidden} hidden",
            "batch": batch, "boltzkit_epoch_s": seconds, "roofline_s": roof,
            "ratio_roofline_over_boltzkit": roof / seconds}


def interleaved_rounds(data: torch.Tensor, a: argparse.Namespace, chain_rows: int | None,
                       options: dict) -> dict:
    """``a.rounds`` rounds of (boltzkit epoch, roofline epoch, eager-loop epoch) and their ratios."""
    device = data.device
    _, roofline = roofline_epoch(data.shape[0], a.batch_size, data.shape[1], a.hidden, a.k, device,
                                 chain_rows=chain_rows)
    loop = None if a.method == "pt" else EagerLoop(data, a.hidden, a.batch_size, a.k, persistent=a.method == "pcd")
    yardsticks: list[dict[str, float]] = []

    def measure() -> None:
        with reduced_float32_matmul(device) if a.precision == "tf32" else nullcontext():
            row = {"roofline_s": timed(roofline, device)}
            if loop is not None:
                row["eager_loop_s"] = loop.epoch()
        yardsticks.append(row)

    measure()  # warm-up of the yardsticks
    yardsticks.clear()
    epochs = boltzkit_epochs(data, a.hidden, a.batch_size, a.k, a.method, a.rounds + 1, between=measure,
                             precision=a.precision, **options)
    rounds = [{"boltzkit_s": ours, **row} for ours, row in zip(epochs[1:], yardsticks[1:])]
    return {"first_epoch_with_setup_s": epochs[0], **summarise_rounds(rounds, data.shape[0])}


def summarise_rounds(rounds: list[dict[str, float]], n: int) -> dict:
    """Median over rounds of each round's ratio (roofline / boltzkit, roofline / eager loop,
    eager loop / boltzkit), the fastest epoch of each and the ratio of the fastest, and the rounds."""
    def fastest(key: str) -> float:
        return min(r[key] for r in rounds)

    def median_ratio(top: str, bottom: str) -> float:
        return statistics.median(r[top] / r[bottom] for r in rounds)

    ours = fastest("boltzkit_s")
    summary = {"boltzkit_epoch_s": ours, "samples_per_s": n / ours, "roofline_s": fastest("roofline_s"),
               "ratio_roofline_over_boltzkit": median_ratio("roofline_s", "boltzkit_s"),
               "ratio_fastest_roofline_over_fastest_boltzkit": fastest("roofline_s") / ours}
    if "eager_loop_s" in rounds[0]:
        summary.update(eager_loop_s=fastest("eager_loop_s"),
                       ratio_roofline_over_eager_loop=median_ratio("roofline_s", "eager_loop_s"),
                       ratio_eager_loop_over_boltzkit=median_ratio("eager_loop_s", "boltzkit_s"))
    return {**summary, "rounds": rounds}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=50000)
    p.add_argument("--hidden", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--k", type=int, default=1)
    p.add_argument("--method", default="cd", help="cd, pcd or pt")
    p.add_argument("--replicas", type=int, default=10, help="pt: temperatures per chain")
    p.add_argument("--device", default="cpu")
    p.add_argument("--rounds", type=int, default=5,
                   help="interleaved rounds (boltzkit epoch, roofline epoch, eager-loop epoch), after one "
                        "first boltzkit epoch reported apart; --cf: epochs timed after the first")
    p.add_argument("--repeats", type=int, default=3, help="repeats of the products-plus-draws floor")
    p.add_argument("--precision", default="float32", choices=("float32", "tf32"),
                   help="tf32: boltzkit trains with precision='tf32' and the roofline's products run under the "
                        "same setting (bf16 inputs through oneDNN on AMX / avx512_bf16 CPUs, TF32 on CUDA)")
    p.add_argument("--cf", action="store_true", help="the CF-RBM on MovieLens-100k (use --hidden 200 --batch-size 10)")
    a = p.parse_args(argv)
    device = torch.device(a.device)
    if a.cf:
        result = cf_rbm(a.hidden, a.batch_size, a.rounds + 1, device, a.repeats)
        print(json.dumps({"device": str(device), "threads": torch.get_num_threads(), **result}, indent=2))
        return 0
    data = load_train(a.n).to(device)
    options = {"replicas": a.replicas} if a.method == "pt" else {}
    chain_rows = {"cd": None, "pcd": a.batch_size, "pt": a.batch_size * a.replicas}[a.method]
    shape = (data.shape[0], a.batch_size, data.shape[1], a.hidden, a.k, device)
    result = {"device": str(device), "threads": torch.get_num_threads(), "n": data.shape[0],
              "hidden": a.hidden, "batch": a.batch_size, "method": f"{a.method}-{a.k}", **options,
              "precision": a.precision, **interleaved_rounds(data, a, chain_rows, options)}
    floor = roofline_seconds(*shape, draws=True, repeats=a.repeats, chain_rows=chain_rows, precision=a.precision)
    result.update(gemm_and_draws_s=floor, ratio_gemm_and_draws_over_boltzkit=floor / result["boltzkit_epoch_s"])
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
