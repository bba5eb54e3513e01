"""Exact log Z of a 784 × H binary RBM against its floor, measured in one run.

The floor is what a direct evaluation of −F(h) = cᵀh + Σ_i softplus(b_i + (W h)_i) over the
2^H hidden states must do at least: the GEMM of the states (2^H × H) by Wᵀ (H × 784) and
the 2^H × 784 softplus terms, run alone on preallocated chunks, in float64 and in float32.
Reported: seconds of the generic float64 path ("before": the free energy, chunk by chunk),
of :func:`boltzkit.exact.log_partition` ("after", the split enumeration), both floors, the
ratios floor / after, and |Δ log Z| between the two paths; one JSON object::

    python benchmarks/bench_exact.py                    # 784 × 20, weights N(0, 0.1²)
    python benchmarks/bench_exact.py --hidden 16        # a short run
    python benchmarks/bench_exact.py --skip-before      # without the slow generic path
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.nn import functional as F

from boltzkit import exact
from boltzkit.models.rbm import RBM

#: rows of the floor's chunks: 4096 × 784 float64 = 25 MiB
FLOOR_ROWS = 4096


def make_rbm(n_visible: int, n_hidden: int, scale: float, seed: int) -> RBM:
    """Weights N(0, scale²), visible and hidden biases N(0, 1), float64."""
    rbm = RBM(n_visible, n_hidden, weight_scale=scale, seed=seed, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for bias in (rbm.visible.bias, rbm.hidden.bias):
            bias.copy_(torch.randn(bias.shape, generator=g, dtype=torch.float64))
    return rbm


def floor_seconds(rbm: RBM, dtype: torch.dtype) -> dict[str, float]:
    """Seconds of the 2^H × H by H × 784 GEMM and of the 2^H × 784 softplus terms, alone."""
    n = rbm.hidden.n_states
    rows = min(FLOOR_ROWS, n)
    states = rbm.hidden.states(0, rows, dtype)
    weight = rbm.weight.detach().t().to(dtype).contiguous()
    field = torch.empty(rows, rbm.visible.dim, dtype=dtype)
    terms = torch.empty_like(field)
    gemm = softplus = 0.0
    for _ in range(n // rows):
        start = time.perf_counter()
        torch.mm(states, weight, out=field)
        middle = time.perf_counter()
        F.softplus(field, out=terms)
        softplus += time.perf_counter() - middle
        gemm += middle - start
    return {"gemm": gemm, "softplus": softplus, "total": gemm + softplus}


def timed(fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    return time.perf_counter() - start, value


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--visible", type=int, default=784)
    p.add_argument("--hidden", type=int, default=20)
    p.add_argument("--scale", type=float, default=0.1, help="standard deviation of the weights")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-before", action="store_true", help="do not time the generic path")
    a = p.parse_args(argv)
    rbm = make_rbm(a.visible, a.hidden, a.scale, a.seed)
    row: dict = {"visible": a.visible, "hidden": a.hidden, "scale": a.scale, "threads": torch.get_num_threads(),
                 "method": exact.enumeration_method(rbm)}
    with torch.no_grad():
        floor64, floor32 = floor_seconds(rbm, torch.float64), floor_seconds(rbm, torch.float32)
        after, log_z = timed(exact.log_partition, rbm)
        row.update(after_seconds=after, log_z=log_z, floor_float64=floor64, floor_float32=floor32,
                   floor64_over_after=floor64["total"] / after, floor32_over_after=floor32["total"] / after)
        if not a.skip_before:
            before, reference = timed(lambda: float(exact._generic_log_partition(rbm, "hidden")))
            row.update(before_seconds=before, speedup=before / after, abs_difference=abs(log_z - reference))
    print(json.dumps(row, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
