"""A small GAN on binarised MNIST (50k train / 10k test), its AIS test log-likelihood in nats beside the RBM's.

Trains an MLP GAN (latent 10, one hidden layer of 256 per network, Bernoulli outputs) with the
lecture's algorithm on the common trainer, then estimates log p(x) = log ∫ p(z) p(x | G(z)) dz on
a random subset of test rows by AIS over z with HMC (Wu et al. 2017).  Before that, bidirectional
Monte Carlo on rows simulated from the trained GAN checks the schedule: forward and reverse AIS
must bracket the (unknown) truth, and their gap says how far the forward estimate can be from it.
Bounded: about 10 minutes on one CPU thread with the defaults.

Reproduce::

    OMP_NUM_THREADS=1 python benchmarks/bench_gan.py --data ../shared/data/binarized-mnist

Prints one Markdown table row per quantity and the command line.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from boltzkit import data as datasets
from boltzkit.evaluation.decoder_ais import bidirectional, decoder_ais
from boltzkit.evaluation.parzen import nearest_neighbour_distance
from boltzkit.models.gan import GAN, gan_trainer, make_optimizer

#: the 500-hidden RBM's AIS test log-likelihood in BENCHMARKS.md
RBM_REFERENCE = -86.48


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"
                                         / "binarized-mnist"), help="folder of binarized_mnist_*.mat")
    p.add_argument("--epochs", type=int, default=30, help="GAN epochs (default 30)")
    p.add_argument("--latent", type=int, default=10, help="latent dimension (default 10)")
    p.add_argument("--hidden", type=int, default=256, help="hidden units per network (default 256)")
    p.add_argument("--rows", type=int, default=200, help="test rows evaluated by AIS (default 200)")
    p.add_argument("--chains", type=int, default=16, help="AIS chains per row (default 16)")
    p.add_argument("--betas", type=int, default=1000, help="AIS β values (default 1000)")
    p.add_argument("--leapfrog", type=int, default=5, help="HMC leapfrog steps (default 5)")
    p.add_argument("--bdmc-rows", type=int, default=20, help="simulated rows for BDMC (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    folder = Path(args.data)
    if not folder.is_dir():
        print(f"{folder} not found; pass --data", file=sys.stderr)
        return 2
    train = torch.from_numpy(datasets.load_binarized_mnist(folder, "train"))
    test = torch.from_numpy(datasets.load_binarized_mnist(folder, "test"))

    gan = GAN(784, args.latent, (args.hidden,), (args.hidden,), seed=args.seed)
    trainer = gan_trainer(gan, k=1, m=100, loss="non-saturating", epochs=args.epochs, seed=args.seed,
                          generator_optimizer=make_optimizer(gan.generator_parameters(), "adam", 2e-4),
                          discriminator_optimizer=make_optimizer(gan.discriminator_parameters(), "adam", 2e-4))
    start = time.perf_counter()
    history = trainer.fit(train)
    train_seconds = time.perf_counter() - start
    last = history[-1]

    options = dict(n_chains=args.chains, betas=args.betas, n_leapfrog=args.leapfrog)
    start = time.perf_counter()
    _, forward_sim, reverse_sim = bidirectional(gan, args.bdmc_rows, seed=args.seed + 10, **options)
    bdmc_seconds = time.perf_counter() - start

    rows = torch.randperm(len(test), generator=torch.Generator().manual_seed(args.seed))[: args.rows]
    start = time.perf_counter()
    result = decoder_ais(gan, test[rows], seed=args.seed + 20, **options)
    ais_seconds = time.perf_counter() - start
    est = result.estimate()
    with torch.no_grad():
        samples = gan.generate(gan.noise(500, torch.Generator().manual_seed(args.seed + 30)))
    nn = nearest_neighbour_distance((samples > 0.5).double(), train.double())

    print("| quantity | value |")
    print("| --- | --- |")
    print(f"| GAN training ({args.epochs} epochs, k=1, m=100, non-saturating, Adam 2e-4) | {train_seconds:.0f} s, "
          f"final D(x) {last['d_real']:.3f}, D(G(z)) {last['d_fake']:.3f} |")
    print(f"| BDMC on {args.bdmc_rows} simulated rows: forward / reverse | {forward_sim.mean:.2f} / "
          f"{reverse_sim.mean:.2f} nats (gap {reverse_sim.mean - forward_sim.mean:.2f}; {bdmc_seconds:.0f} s) |")
    print(f"| GAN AIS test log-likelihood ({args.rows} test rows, {args.chains} chains, {result.n_betas} β, "
          f"HMC L={args.leapfrog}) | {est.mean:.2f} [{est.low:.2f}, {est.high:.2f}] nats ({ais_seconds:.0f} s, "
          f"HMC acceptance {result.accept:.2f}) |")
    print(f"| RBM (500 hidden) AIS test log-likelihood (BENCHMARKS.md) | {RBM_REFERENCE:.2f} nats |")
    print(f"| mean nearest-training-neighbour distance of 500 thresholded samples | {float(nn.mean()):.2f} "
          f"(Hamming {float((nn ** 2).mean()):.1f} pixels; 0 would be copies) |")
    print()
    print(f"reproduce: OMP_NUM_THREADS=1 python benchmarks/bench_gan.py --data {args.data} --epochs {args.epochs} "
          f"--latent {args.latent} --hidden {args.hidden} --rows {args.rows} --chains {args.chains} "
          f"--betas {args.betas} "
          f"--leapfrog {args.leapfrog} --bdmc-rows {args.bdmc_rows} --seed {args.seed} --threads {args.threads}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
