"""Speed of one CD-k training epoch against its matrix-product roofline, measured in one run.

One CD-k update of a B×V×H RBM is 2k+3 GEMM-equivalents of 2·B·V·H flops: k Gibbs sweeps
(v→h, h→v), the model-side hidden means, and the two outer products vᵀμ.  The roofline is
the time of exactly those products, on tensors of the same shapes, run alone with
preallocated outputs; the ratio roofline / boltzkit is reported (1.0 = nothing but GEMMs),
and the same ratio for the GEMMs plus the uniform random numbers of the Gibbs sweeps.  The
boltzkit time is a steady-state epoch (the fastest after the first) of a default
``fit``; the first epoch, with the one-time data checks, is reported apart::

    python benchmarks/bench_speed.py            # 50,000 × 784 binarised MNIST, 500 hidden, CD-1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from boltzkit.models.rbm import RBM
from boltzkit.training import Callback, fit

sys.path.insert(0, str(Path(__file__).parent))
from roofline import GemmWorkload  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "binarized-mnist"


def load_train(n: int) -> torch.Tensor:
    path = SHARED / "binarized_mnist_train.mat"
    if path.is_file():
        from scipy.io import loadmat

        return torch.from_numpy(np.ascontiguousarray(loadmat(path)["X"][:n], dtype=np.float32))
    g = torch.Generator().manual_seed(0)
    return torch.bernoulli(torch.full((n, 784), 0.13), generator=g)


def roofline_seconds(n: int, batch: int, v: int, h: int, k: int, device: torch.device,
                     draws: bool = False, repeats: int = 1) -> float:
    """Time of the 2k+3 GEMM-equivalents of one epoch, alone; with ``draws``, also the
    uniform random numbers of the k Gibbs sweeps (a floor for any sampler built on torch's
    generator)."""
    gemms = GemmWorkload(batch, v, h, device)

    def epoch() -> None:
        for _ in range(n // batch):
            for _ in range(k):
                gemms.sweep(draws)
            gemms.gradient()

    return gemms.seconds(epoch, repeats)


class EpochClock(Callback):
    """Wall-clock time of every epoch (end of one epoch to the end of the next)."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_begin(self, trainer) -> None:
        self.ends = [time.perf_counter()]

    def on_epoch_end(self, trainer, epoch, metrics) -> None:
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        self.ends.append(time.perf_counter())


def boltzkit_seconds(data: torch.Tensor, hidden: int, batch: int, k: int, method: str,
                     epochs: int) -> tuple[float, float]:
    """(steady-state epoch, first epoch including fit's one-time setup) in seconds."""
    rbm = RBM(data.shape[1], hidden, device=data.device)
    fit(rbm, data[: batch * 20], epochs=1, batch_size=batch, method=method, k=k)  # warm-up
    rbm = RBM(data.shape[1], hidden, device=data.device)
    clock = EpochClock()
    fit(rbm, data, epochs=epochs, batch_size=batch, method=method, k=k, callbacks=[clock])
    times = [b - a for a, b in zip(clock.ends, clock.ends[1:])]
    return min(times[1:] or times), times[0]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=50000)
    p.add_argument("--hidden", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--k", type=int, default=1)
    p.add_argument("--method", default="cd")
    p.add_argument("--device", default="cpu")
    p.add_argument("--epochs", type=int, default=3, help="epochs timed; the first is reported apart")
    p.add_argument("--repeats", type=int, default=3, help="roofline repeats")
    a = p.parse_args(argv)
    device = torch.device(a.device)
    data = load_train(a.n).to(device)
    ours, first = boltzkit_seconds(data, a.hidden, a.batch_size, a.k, a.method, a.epochs)
    shape = (data.shape[0], a.batch_size, data.shape[1], a.hidden, a.k, device)
    roof = roofline_seconds(*shape, repeats=a.repeats)
    floor = roofline_seconds(*shape, draws=True, repeats=a.repeats)
    result = {"device": str(device), "threads": torch.get_num_threads(), "n": data.shape[0],
              "hidden": a.hidden, "batch": a.batch_size, "method": f"{a.method}-{a.k}",
              "boltzkit_epoch_s": ours, "first_epoch_with_setup_s": first, "roofline_s": roof,
              "samples_per_s": data.shape[0] / ours, "ratio_roofline_over_boltzkit": roof / ours,
              "ratio_first_epoch": roof / first, "gemm_and_draws_s": floor,
              "ratio_gemm_and_draws_over_boltzkit": floor / ours}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
