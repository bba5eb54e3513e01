"""Speed of AIS against its matrix-product roofline, measured in one run.

Each β of the annealing loop costs two GEMM-equivalents of 2·M·V·H flops (the hidden
field of the M chains, and the visible field of their hidden states); the roofline is the
time of exactly those two products on tensors of the same shapes, run alone with
preallocated outputs.  The ratio roofline / AIS is reported (1.0 = nothing but GEMMs), and
the same ratio for the GEMMs plus the uniform random numbers the sampler must draw.  AIS runs
and the roofline alternate for ``--rounds`` rounds (a slow spell of a shared machine hits both);
the median of the rounds' ratios is reported, with the fastest of each and every round::

    python benchmarks/bench_ais.py                      # 784 × 500, 100 chains, 14,500 β
    python benchmarks/bench_ais.py --betas 2000         # a shorter run, same per-β cost
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from boltzkit.evaluation.ais import ais
from boltzkit.models.rbm import RBM

sys.path.insert(0, str(Path(__file__).parent))
from roofline import GemmWorkload, timed  # noqa: E402


def roofline_seconds(n_betas: int, chains: int, v: int, h: int, device: torch.device,
                     draws: bool = False) -> float:
    """Time of the 2 GEMM-equivalents per β of the whole schedule, alone; with ``draws``,
    also the uniform random numbers of the two Gibbs half-steps (the floor that a sampler
    built on torch's generator cannot go below)."""
    gemms = GemmWorkload(chains, v, h, device)

    def schedule() -> None:
        for _ in range(n_betas - 1):
            gemms.sweep(draws)

    return gemms.seconds(schedule)


def ais_seconds(rbm: RBM, data: torch.Tensor, n_betas: int, chains: int) -> tuple[float, float]:
    results = []
    seconds = timed(lambda: results.append(ais(rbm, data, n_chains=chains, betas=n_betas, seed=0)), data.device)
    return seconds, results[0].log_z


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--visible", type=int, default=784)
    p.add_argument("--hidden", type=int, default=500)
    p.add_argument("--chains", type=int, default=100)
    p.add_argument("--betas", type=int, default=14_500)
    p.add_argument("--rounds", type=int, default=3,
                   help="interleaved rounds of (AIS run, roofline of the same schedule)")
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    device = torch.device(a.device)
    g = torch.Generator().manual_seed(0)
    rbm = RBM(a.visible, a.hidden, weight_scale=0.05, device=device)
    data = torch.bernoulli(torch.full((1000, a.visible), 0.13), generator=g).to(device)
    ais(rbm, data, n_chains=a.chains, betas=100, seed=0)  # warm-up
    rounds = []
    for _ in range(a.rounds):
        seconds, log_z = ais_seconds(rbm, data, a.betas, a.chains)
        rounds.append({"ais_s": seconds, "roofline_s": roofline_seconds(a.betas, a.chains, a.visible, a.hidden,
                                                                         device)})
    fastest = min(r["ais_s"] for r in rounds)
    floor = roofline_seconds(a.betas, a.chains, a.visible, a.hidden, device, draws=True)
    print(json.dumps({"device": str(device), "threads": torch.get_num_threads(),
                      "model": f"{a.visible}x{a.hidden}", "chains": a.chains, "betas": a.betas,
                      "ais_s": fastest, "ms_per_beta": 1e3 * fastest / (a.betas - 1),
                      "roofline_s": min(r["roofline_s"] for r in rounds),
                      "ratio_roofline_over_ais": statistics.median(r["roofline_s"] / r["ais_s"] for r in rounds),
                      "ratio_fastest_roofline_over_fastest_ais": min(r["roofline_s"] for r in rounds) / fastest,
                      "gemm_and_draws_s": floor, "ratio_gemm_and_draws_over_ais": floor / fastest,
                      "log_z": log_z, "rounds": rounds}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
