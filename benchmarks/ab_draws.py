"""Two ways to draw Bernoulli units from their field, alternating in one process: AIS and a CD-1 epoch.

``table``: boltzkit's draw (:func:`boltzkit.sampling.logistic.bernoulli_logistic`, a 16-bit
SplitMix64 level against a table of logits, in the compiled loop where a C compiler is);
``sigmoid``: σ(βa) compared with 16-bit levels of torch's generator
(:func:`boltzkit.sampling.bits.bernoulli`, boltzkit's draw before 2026-12-08).  Each round runs
AIS (100 chains, 784 × ``--hidden``) and one epoch of :class:`eager_loop.EagerLoop` (CD-1, batch
100) with each, then the roofline of each; the fastest of the rounds is reported, since on a
shared machine every disturbance only adds time::

    python benchmarks/ab_draws.py --rounds 8
    python benchmarks/ab_draws.py --rounds 6 --threads 1 --hidden 20     # a small model, one thread
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

import boltzkit.models.units as units
from boltzkit.evaluation.ais import ais
from boltzkit.models.rbm import RBM
from boltzkit.sampling.bits import bernoulli
from boltzkit.sampling.logistic import bernoulli_logistic

sys.path.insert(0, str(Path(__file__).parent))
import bench_ais  # noqa: E402
import eager_loop  # noqa: E402
from bench_speed import load_train, roofline_epoch  # noqa: E402
from roofline import timed  # noqa: E402


def sigmoid_draw(field: torch.Tensor, generator: torch.Generator | None = None, beta=1.0) -> torch.Tensor:
    return bernoulli(torch.sigmoid(field * beta), generator, inplace=True)


DRAWS = {"table": bernoulli_logistic, "sigmoid": sigmoid_draw}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--betas", type=int, default=1000)
    p.add_argument("--n", type=int, default=20000, help="rows of the CD-1 epoch")
    p.add_argument("--hidden", type=int, default=500)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's setting)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    cpu = torch.device("cpu")
    g = torch.Generator().manual_seed(0)
    rbm = RBM(784, a.hidden, weight_scale=0.05)
    data = torch.bernoulli(torch.full((1000, 784), 0.13), generator=g)
    rows = load_train(a.n)
    loop = eager_loop.EagerLoop(rows, a.hidden, 100)
    _, cd_roofline = roofline_epoch(a.n, 100, 784, a.hidden, 1, cpu)
    original = units.Bernoulli.sample
    times: dict[str, list[float]] = {f"{w}_{d}": [] for w in ("ais_ms_per_beta", "cd_epoch_s") for d in DRAWS}
    times.update(ais_roofline_ms_per_beta=[], cd_roofline_s=[])
    ais(rbm, data, n_chains=100, betas=100, seed=0)  # warm-up (and the compiled loop built)
    try:
        for _ in range(a.rounds):
            for name, draw in DRAWS.items():
                units.Bernoulli.sample = lambda self, field, generator=None, beta=1.0, draw=draw: \
                    draw(field, generator, beta)
                eager_loop.bernoulli_logistic = draw
                seconds = timed(lambda: ais(rbm, data, n_chains=100, betas=a.betas, seed=0), cpu)
                times[f"ais_ms_per_beta_{name}"].append(seconds / (a.betas - 1) * 1e3)
                times[f"cd_epoch_s_{name}"].append(loop.epoch())
            times["ais_roofline_ms_per_beta"].append(
                bench_ais.roofline_seconds(a.betas, 100, 784, a.hidden, cpu) / (a.betas - 1) * 1e3)
            times["cd_roofline_s"].append(timed(cd_roofline, cpu))
    finally:
        units.Bernoulli.sample = original
        eager_loop.bernoulli_logistic = bernoulli_logistic
    fastest = {k: min(v) for k, v in times.items()}
    ratios = {f"{w}_ratio_to_roofline_{d}": fastest[f"{roof}"] / fastest[f"{w}_{d}"]
              for w, roof in (("ais_ms_per_beta", "ais_roofline_ms_per_beta"), ("cd_epoch_s", "cd_roofline_s"))
              for d in DRAWS}
    print(json.dumps({"threads": torch.get_num_threads(), "hidden": a.hidden, "fastest": fastest, **ratios,
                      "rounds": times}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
