"""A GAN beside the RBM on binarised MNIST (50k train / 10k test), measured in nats and by sample quality.

One script, one table.  On the standard binarised MNIST it trains, with boltzkit:

- an MLP GAN (latent 10, one hidden layer of 256 per network, Bernoulli outputs) by the
  lecture's algorithm (k = 1, m = 100, non-saturating, Adam 2e-4), and estimates its test
  log-likelihood log p(x) = log ∫ p(z) p(x | G(z)) dz by AIS over z with HMC (Wu et al. 2017)
  on a random subset of test rows, after checking the schedule by bidirectional Monte Carlo on
  rows simulated from the trained GAN (forward and reverse must bracket the truth);
- a 784 × 500 RBM by centered PCD-1 (the command-line defaults: batch 100, lr 0.05 decaying
  linearly, momentum 0.5, weight decay 1e-4; 30 epochs by default, not §3's 200, to fit the
  time budget), test log-likelihood by AIS for log Z (or loaded from ``--rbm-checkpoint`` when
  a run with the same epochs saved it there);
- optionally (``--dbm-epochs N``) a DBM 784–500–500 (greedy pre-training, centered PCD-1),
  mean-field bound with AIS for log Z;
- a small MNIST classifier (:class:`boltzkit.evaluation.sample_quality.FeatureClassifier`,
  784–256–64–10, trained once (5 epochs) on the 60,000 labelled MNIST training digits, stochastically
  binarised) whose penultimate features give each model's Fréchet distance to the test digits
  and whose class probabilities give the class-entropy ("inception-style") score, beside the
  same scores of held-out real digits; and each model's mean Hamming distance from a sample to
  its nearest training digit (0 would be copies).

It also writes a side-by-side grid of samples (GAN | RBM) and, on real-valued MNIST (official
60k training digits: first 50k train, last 10k validation; 10k test; pixels in [0, 1]), trains
a Gaussian-output GAN and reports the Parzen-window estimate with the GAN paper's protocol
(10,000 generator samples G(z), σ chosen on the validation set, mean log-likelihood of the test
set) beside the published 225 ± 2 nats — with the caveat of Theis et al. 2016 that this is a
poor likelihood estimate, never the headline.

Reproduce (one thread)::

    OMP_NUM_THREADS=1 python benchmarks/bench_gan.py --out benchmarks/results/gan.json

or in three processes (``--parts rbm`` trains and saves the RBM that a later ``--parts main``
run loads from ``--rbm-checkpoint``; ``--parts parzen`` is the real-valued figure alone)::

    OMP_NUM_THREADS=1 python benchmarks/bench_gan.py --parts rbm
    OMP_NUM_THREADS=1 python benchmarks/bench_gan.py --parts parzen --out benchmarks/results/gan_parzen.json
    OMP_NUM_THREADS=1 python benchmarks/bench_gan.py --parts main --out benchmarks/results/gan.json

Prints the Markdown table and the command line.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from boltzkit import checkpoint
from boltzkit import data as datasets
from boltzkit.evaluation import ais as rbm_ais
from boltzkit.evaluation.decoder_ais import bidirectional, decoder_ais
from boltzkit.evaluation.parzen import nearest_neighbour_distance, parzen_log_likelihood, select_sigma
from boltzkit.evaluation.sample_quality import FeatureClassifier, sample_quality
from boltzkit.models.gan import GAN, gan_trainer, make_optimizer
from boltzkit.models.rbm import RBM
from boltzkit.training import Trainer, TrainingConfig

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
#: the published 500-hidden RBM figure beside boltzkit's 200-epoch run (BENCHMARKS.md §3)
RBM_200_EPOCHS = -86.48
#: the GAN paper's Parzen figure on real-valued MNIST (Goodfellow et al. 2014, Table 1)
PUBLISHED_GAN_PARZEN = (225.0, 2.0)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


#: CPU seconds of this process per timed call (wall seconds are inflated on a shared machine)
CPU_SECONDS: dict[str, float] = {}


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """(fn(...), wall seconds); the process CPU seconds go to ``CPU_SECONDS[fn name]`` (summed)."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    name = getattr(fn, "__qualname__", str(fn))
    CPU_SECONDS[name] = CPU_SECONDS.get(name, 0.0) + time.process_time() - cpu
    return out, time.perf_counter() - start


def load(a: argparse.Namespace) -> dict[str, torch.Tensor]:
    folder = Path(a.data) / "binarized-mnist"
    out = {split: torch.from_numpy(datasets.load_binarized_mnist(folder, split))
           for split in ("train", "valid", "test")}
    x, y = datasets.load_mnist(Path(a.data) / "mnist" / "train-images-idx3-ubyte.gz",
                               Path(a.data) / "mnist" / "train-labels-idx1-ubyte.gz")
    xt, _ = datasets.load_mnist(Path(a.data) / "mnist" / "t10k-images-idx3-ubyte.gz")
    out["real_train"], out["real_labels"] = torch.from_numpy(x), torch.from_numpy(y)
    out["real_test"] = torch.from_numpy(xt)
    out["test_labels"] = torch.from_numpy(datasets.load_default()[1])   # the binarised test rows' labels
    return out


def classifier(a: argparse.Namespace, d: dict[str, torch.Tensor], results: dict) -> FeatureClassifier:
    g = torch.Generator().manual_seed(a.seed + 40)
    binary = torch.bernoulli(d["real_train"], generator=g)          # labelled digits, binarised like the data
    clf = FeatureClassifier(784, 10, (256, 64), seed=a.seed)
    config = TrainingConfig(epochs=a.classifier_epochs, batch_size=100, lr=1e-3, momentum=0.0, initial_momentum=0.0,
                            weight_decay=0.0, lr_schedule="constant", init_visible_bias=False, seed=a.seed)
    _, seconds = timed(clf.fit, binary, d["real_labels"], config)
    error = float((clf.predict(d["test"]) != d["test_labels"]).double().mean())
    results["classifier"] = {"layers": [784, 256, 64, 10], "epochs": a.classifier_epochs, "seconds": seconds,
                             "binarised_test_error": error}
    log(f"classifier: test error {100 * error:.2f} % on the binarised test digits ({seconds:.0f} s)")
    return clf


def scores(name: str, samples: torch.Tensor, clf: FeatureClassifier, d: dict[str, torch.Tensor]) -> dict[str, float]:
    """Fréchet distance to the test digits, class-entropy score, nearest-training-neighbour distance."""
    q = sample_quality(clf, samples, d["test"])
    nn = nearest_neighbour_distance(samples.double(), d["train"].double())
    q.update(nearest_neighbour_hamming=float((nn ** 2).mean()), nearest_neighbour_copies=int((nn == 0).sum()))
    log(f"{name}: Fréchet {q['frechet_distance']:.2f}, class-entropy score {q['class_entropy_score']:.2f}, "
        f"nearest-neighbour Hamming {q['nearest_neighbour_hamming']:.1f}")
    return q


def train_gan(a: argparse.Namespace, train: torch.Tensor, output: str, epochs: int,
              hidden: int) -> tuple[GAN, list[dict], float]:
    gan = GAN(784, a.latent, (hidden,), (hidden,), output=output, seed=a.seed)
    trainer = gan_trainer(gan, k=1, m=100, loss="non-saturating", epochs=epochs, seed=a.seed,
                          generator_optimizer=make_optimizer(gan.generator_parameters(), "adam", 2e-4),
                          discriminator_optimizer=make_optimizer(gan.discriminator_parameters(), "adam", 2e-4))
    cpu = time.process_time()
    history, seconds = timed(trainer.fit, train)
    gan.train_cpu_seconds = time.process_time() - cpu     # type: ignore[attr-defined]
    return gan, history, seconds


def gan_binary(a: argparse.Namespace, d: dict[str, torch.Tensor], clf: FeatureClassifier,
               results: dict) -> tuple[torch.Tensor, torch.Tensor]:
    gan, history, seconds = train_gan(a, d["train"], "bernoulli", a.epochs, a.hidden)
    log(f"GAN trained in {seconds:.0f} s")
    options = dict(n_chains=a.chains, betas=a.betas, n_leapfrog=a.leapfrog)
    (_, forward_sim, reverse_sim), bdmc_seconds = timed(bidirectional, gan, a.bdmc_rows, seed=a.seed + 10, **options)
    rows = torch.randperm(len(d["test"]), generator=torch.Generator().manual_seed(a.seed))[: a.rows]
    result, ais_seconds = timed(decoder_ais, gan, d["test"][rows], seed=a.seed + 20, **options)
    est = result.estimate()
    d["ais_rows"] = rows
    rows_se = float(result.log_likelihood.std()) / math.sqrt(len(rows))   # spread over the random test rows
    log(f"GAN AIS {est.mean:.2f} [{est.low:.2f}, {est.high:.2f}] ({ais_seconds:.0f} s); BDMC "
        f"{forward_sim.mean:.2f} / {reverse_sim.mean:.2f}")
    _, samples = gan.sample_observations(a.samples, torch.Generator().manual_seed(a.seed + 30))
    with torch.no_grad():
        means = gan.generate(gan.noise(a.samples, torch.Generator().manual_seed(a.seed + 30)))
    results["gan"] = {"train_seconds": seconds, "train_cpu_seconds": gan.train_cpu_seconds, "epochs": a.epochs,
                      "final": history[-1],
                      "ais": {"log_likelihood": est.mean, "interval": [est.low, est.high], "rows": a.rows,
                              "chains": a.chains, "betas": result.n_betas, "leapfrog": a.leapfrog,
                              "hmc_acceptance": result.accept, "seconds": ais_seconds,
                              "rows_standard_error": rows_se},
                      "bdmc": {"rows": a.bdmc_rows, "forward": forward_sim.mean, "reverse": reverse_sim.mean,
                               "seconds": bdmc_seconds},
                      "samples": scores("GAN", samples, clf, d),
                      "thresholded_means": scores("GAN G(z) > 0.5", (means > 0.5).float(), clf, d)}
    return means, samples


def rbm_model(a: argparse.Namespace, train: torch.Tensor) -> tuple[RBM, float, bool]:
    """(the 784 × 500 RBM, its training seconds, whether it was loaded): loaded from
    ``--rbm-checkpoint`` when that holds a run of ``--rbm-epochs``, else trained and saved there."""
    folder = Path(a.rbm_checkpoint) if a.rbm_checkpoint else None
    lock = Path(f"{folder}.training") if folder is not None else None
    while lock is not None and lock.exists():        # a --parts rbm run is training it: wait for it
        time.sleep(10)
    if folder is not None and (folder / "config.json").is_file():
        saved = checkpoint.read_config(folder)
        if saved.get("epochs_done") == a.rbm_epochs:
            log(f"RBM loaded from {folder} (trained earlier in {float(saved['seconds']):.0f} s)")
            a.rbm_cpu_seconds = saved.get("cpu_seconds")
            return checkpoint.load(folder), float(saved["seconds"]), True
    rbm = RBM(784, 500, seed=a.seed)
    trainer = Trainer(rbm, TrainingConfig(epochs=a.rbm_epochs, centered=True, seed=a.seed))
    if lock is not None:
        lock.parent.mkdir(parents=True, exist_ok=True)
        lock.touch()
    try:
        cpu = time.process_time()
        _, seconds = timed(trainer.fit, train)
        cpu = time.process_time() - cpu
        a.rbm_cpu_seconds = cpu
        log(f"RBM trained in {seconds:.0f} s ({cpu:.0f} s CPU, {a.rbm_epochs} epochs)")
        if folder is not None:
            checkpoint.save(folder, rbm, extra={"epochs_done": a.rbm_epochs, "seconds": seconds,
                                                "cpu_seconds": cpu})
    finally:
        if lock is not None:
            lock.unlink(missing_ok=True)
    return rbm, seconds, False


def rbm_row(a: argparse.Namespace, d: dict[str, torch.Tensor], clf: FeatureClassifier, results: dict) -> torch.Tensor:
    rbm, seconds, loaded = rbm_model(a, d["train"])
    result, ais_seconds = timed(rbm_ais.ais, rbm, d["train"], n_chains=a.rbm_chains, betas=a.rbm_betas, seed=a.seed)
    est = rbm_ais.log_likelihood(rbm, d["test"], result)
    same_rows = rbm_ais.log_likelihood(rbm, d["test"][d["ais_rows"]], result).mean if "ais_rows" in d else None
    log(f"RBM AIS {est.mean:.2f} [{est.low:.2f}, {est.high:.2f}] ({ais_seconds:.0f} s)")
    samples, draw_seconds = timed(rbm.draw, a.samples, burn_in=a.rbm_burn_in, seed=a.seed + 30)
    results["rbm"] = {"epochs": a.rbm_epochs, "train_seconds": seconds, "loaded_from_checkpoint": loaded,
                      "train_cpu_seconds": getattr(a, "rbm_cpu_seconds", None),
                      "ais": {"log_likelihood": est.mean, "interval": [est.low, est.high], "rows": len(d["test"]),
                              "chains": a.rbm_chains, "betas": a.rbm_betas, "seconds": ais_seconds,
                              "on_the_gan_rows": same_rows},
                      "sampling": {"chains": a.samples, "burn_in": a.rbm_burn_in, "seconds": draw_seconds},
                      "samples": scores("RBM", samples, clf, d)}
    return samples


def dbm_row(a: argparse.Namespace, d: dict[str, torch.Tensor], clf: FeatureClassifier, results: dict) -> None:
    from boltzkit.evaluation import deep
    from boltzkit.models.deep_boltzmann import DBM

    dbm = DBM(784, [500, 500], seed=a.seed)
    _, pre = timed(dbm.pretrain, d["train"], TrainingConfig(epochs=a.dbm_pretrain_epochs, centered=True, seed=a.seed))
    trainer = Trainer(dbm, TrainingConfig(epochs=a.dbm_epochs, lr=0.01, centered=True, seed=a.seed,
                                          init_visible_bias=False))
    _, seconds = timed(trainer.fit, d["train"])
    forward, ais_seconds = timed(deep.evaluate, dbm, d["test"], "ais", a.rbm_chains, a.dbm_betas, a.seed)
    g = torch.Generator().manual_seed(a.seed + 30)
    samples = torch.bernoulli(dbm.sample(a.samples, a.rbm_burn_in, g), generator=g)
    results["dbm"] = {"sizes": dbm.sizes, "pretrain_epochs": a.dbm_pretrain_epochs, "pcd_epochs": a.dbm_epochs,
                      "train_seconds": pre + seconds,
                      "ais": {"log_likelihood": forward["log_likelihood"],
                              "interval": forward["log_likelihood_interval"], "betas": a.dbm_betas,
                              "chains": a.rbm_chains, "seconds": ais_seconds},
                      "samples": scores("DBM", samples, clf, d)}
    log(f"DBM bound {forward['log_likelihood']:.2f} ({pre + seconds:.0f} s training)")


def parzen_real(a: argparse.Namespace, d: dict[str, torch.Tensor], results: dict) -> None:
    """The GAN paper's protocol on real-valued MNIST (pixels in [0, 1])."""
    train, valid, test = d["real_train"][:50_000], d["real_train"][50_000:], d["real_test"]
    gan, _, seconds = train_gan(a, train, "gaussian", a.parzen_epochs, a.parzen_hidden or a.hidden)
    with torch.no_grad():
        samples = gan.generate(gan.noise(a.parzen_samples, torch.Generator().manual_seed(a.seed + 50))).double()
    (sigma, _), select_seconds = timed(select_sigma, samples, valid.double())
    ll = parzen_log_likelihood(samples, test.double(), sigma)
    se = float(ll.std()) / math.sqrt(ll.numel())
    # the same estimator applied to 10,000 *training digits* instead of samples: a memorising "model"
    (sigma_copy, _), _ = timed(select_sigma, train[:a.parzen_samples].double(), valid.double())
    ll_copy = parzen_log_likelihood(train[:a.parzen_samples].double(), test.double(), sigma_copy)
    copy = {"sigma": sigma_copy, "log_likelihood": float(ll_copy.mean()),
            "standard_error": float(ll_copy.std()) / math.sqrt(ll_copy.numel())}
    results["parzen_real"] = {"train_seconds": seconds, "train_cpu_seconds": gan.train_cpu_seconds,
                              "hidden": a.parzen_hidden or a.hidden, "epochs": a.parzen_epochs,
                              "samples": a.parzen_samples, "sigma": sigma, "log_likelihood": float(ll.mean()),
                              "standard_error": se,
                              "select_seconds": select_seconds, "training_digits_as_samples": copy,
                              "published_gan": list(PUBLISHED_GAN_PARZEN)}
    log(f"Parzen (real-valued): {float(ll.mean()):.1f} ± {se:.1f} nats, σ = {sigma:.3f}; 10k training digits as "
        f"'samples': {float(ll_copy.mean()):.1f}")


def grid(panels: list[torch.Tensor], path: Path, captions: list[str]) -> None:
    """Side-by-side 10 × 10 grids, one per model, on the fixed scale [0, 1]."""
    from matplotlib.figure import Figure

    from boltzkit.plot import save_figure

    fig = Figure(figsize=(5 * len(panels), 5.4))
    for i, (samples, caption) in enumerate(zip(panels, captions)):
        tiles = samples[:100].reshape(10, 10, 28, 28).permute(0, 2, 1, 3).reshape(280, 280).numpy()
        ax = fig.add_subplot(1, len(panels), i + 1)
        ax.imshow(tiles, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(caption, fontsize=10)
        ax.set_axis_off()
    fig.suptitle("binarised MNIST: samples of each model (the same z in the two GAN panels)")
    save_figure(fig, path)


def table(results: dict) -> str:
    def row(name: str, r: dict, training: str) -> str:
        ais, s = r["ais"], r["samples"]
        return (f"| {name} | {ais['log_likelihood']:.2f} [{ais['interval'][0]:.2f}, {ais['interval'][1]:.2f}] | "
                f"{s['frechet_distance']:.2f} | {s['class_entropy_score']:.2f} | "
                f"{s['nearest_neighbour_hamming']:.1f} | {training} |")

    g, r = results["gan"], results["rbm"]
    t = g["thresholded_means"]
    lines = ["| model | test log-likelihood (nats) | Fréchet distance ↓ | class-entropy score ↑ | "
             "nearest-neighbour Hamming | training (1 thread) |", "| --- | --- | --- | --- | --- | --- |",
             row("GAN, MLP 10–256–784, Bernoulli", g, f"{g['epochs']} epochs, {g['train_seconds']:.0f} s wall, "
                 f"{g['train_cpu_seconds']:.0f} s CPU"),
             f"| same GAN, G(z) > 0.5 (thresholded means, not samples of p(x)) | – | "
             f"{t['frechet_distance']:.2f} | {t['class_entropy_score']:.2f} | "
             f"{t['nearest_neighbour_hamming']:.1f} | – |",
             row("RBM 784 × 500, centered PCD-1", r,
                 f"{r['epochs']} epochs, {r['train_seconds']:.0f} s wall"
                 + (f", {r['train_cpu_seconds']:.0f} s CPU" if r["train_cpu_seconds"] is not None else "")
                 + (" (saved run)" if r["loaded_from_checkpoint"] else ""))]
    if "dbm" in results:
        m = results["dbm"]
        lines.append(row(f"DBM {'–'.join(map(str, m['sizes']))} (mean-field bound)", m,
                         f"{m['pretrain_epochs']} + {m['pcd_epochs']} epochs, {m['train_seconds']:.0f} s"))
    ref = results["reference"]
    ga = g["ais"]
    if "rows_standard_error" in ga and r["ais"].get("on_the_gan_rows") is not None:
        lines.append(f"| (on the GAN's {ga['rows']} random test rows: GAN {ga['log_likelihood']:.2f} ± "
                     f"{ga['rows_standard_error']:.2f} s.e. over rows, RBM {r['ais']['on_the_gan_rows']:.2f}) "
                     f"| | | | | |")
    lines.append(f"| held-out real digits ({ref['n']} validation rows) | – | {ref['frechet_distance']:.2f} | "
                 f"{ref['class_entropy_score']:.2f} | {ref['nearest_neighbour_hamming']:.1f} | – |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DATA), help="the shared data folder (binarized-mnist/, mnist/)")
    p.add_argument("--epochs", type=int, default=30, help="GAN epochs (default 30)")
    p.add_argument("--latent", type=int, default=10, help="GAN latent dimension (default 10)")
    p.add_argument("--hidden", type=int, default=256, help="GAN hidden units per network (default 256)")
    p.add_argument("--rows", type=int, default=200, help="test rows evaluated by decoder AIS (default 200)")
    p.add_argument("--chains", type=int, default=16, help="decoder AIS chains per row (default 16)")
    p.add_argument("--betas", type=int, default=1000, help="decoder AIS β values (default 1000)")
    p.add_argument("--leapfrog", type=int, default=5, help="HMC leapfrog steps (default 5)")
    p.add_argument("--bdmc-rows", type=int, default=20, help="simulated rows for BDMC (default 20)")
    p.add_argument("--rbm-epochs", type=int, default=30, help="RBM epochs of centered PCD-1 (default 30)")
    p.add_argument("--rbm-checkpoint", default=str(ROOT / "runs" / "bench_gan_rbm"),
                   help="where the RBM is saved, and loaded from when it holds a run of --rbm-epochs ('' = never)")
    p.add_argument("--rbm-chains", type=int, default=100, help="AIS chains for log Z (default 100)")
    p.add_argument("--rbm-betas", type=int, default=14500, help="AIS β for log Z (default 14,500)")
    p.add_argument("--rbm-burn-in", type=int, default=1000,
                   help="Gibbs sweeps before the RBM/DBM samples (default 1000)")
    p.add_argument("--dbm-epochs", type=int, default=0, help="DBM PCD epochs; 0 leaves the DBM row out (default 0)")
    p.add_argument("--dbm-pretrain-epochs", type=int, default=3, help="epochs per DBM pre-training RBM (default 3)")
    p.add_argument("--dbm-betas", type=int, default=5000, help="AIS β for the DBM (default 5000)")
    p.add_argument("--samples", type=int, default=2000, help="samples per model for the scores (default 2000)")
    p.add_argument("--classifier-epochs", type=int, default=5, help="classifier epochs (default 5)")
    p.add_argument("--parzen-samples", type=int, default=10_000, help="generator samples in the Parzen window "
                                                                    "(default 10,000; 0 skips the real-valued run)")
    p.add_argument("--parzen-epochs", type=int, default=30, help="epochs of the real-valued GAN (default 30)")
    p.add_argument("--parzen-hidden", type=int, default=512, help="hidden units of the real-valued GAN "
                                                                  "(default 512)")
    p.add_argument("--parts", default="main,parzen",
                   help="what to run: main (the binarised-MNIST table and grid), parzen (the real-valued Parzen "
                        "figure), rbm (only train and save the RBM to --rbm-checkpoint, for a later main run); "
                        "default main,parzen")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--png", default=str(ROOT / "benchmarks" / "results" / "gan_vs_rbm.png"), help="sample grid")
    a = p.parse_args(argv)
    if not (Path(a.data) / "binarized-mnist").is_dir():
        log(f"{a.data}/binarized-mnist not found; pass --data")
        return 2
    torch.manual_seed(a.seed)
    command = ("OMP_NUM_THREADS=1 python benchmarks/bench_gan.py "
               + " ".join(shlex.quote(x) for x in (argv or sys.argv[1:])))
    results: dict = {"command": command, "threads": torch.get_num_threads()}
    start = time.perf_counter()
    parts = set(a.parts.split(","))
    d = load(a)
    if parts == {"rbm"}:
        rbm_model(a, d["train"])
        return 0
    if "main" in parts:
        clf = classifier(a, d, results)
        reference = d["valid"][: a.samples]
        results["reference"] = {"n": int(reference.shape[0]), **scores("held-out digits", reference, clf, d)}
        gan_means, gan_samples = gan_binary(a, d, clf, results)
        rbm_samples = rbm_row(a, d, clf, results)
        if a.dbm_epochs > 0:
            dbm_row(a, d, clf, results)
        grid([gan_means, gan_samples, rbm_samples], Path(a.png),
             [f"GAN ({a.epochs} epochs): G(z), pixel probabilities", "GAN: x ~ Bernoulli(G(z))",
              f"RBM ({a.rbm_epochs} epochs): v after {a.rbm_burn_in} Gibbs sweeps"])
    if "parzen" in parts and a.parzen_samples > 0:
        parzen_real(a, d, results)
    results["total_seconds"] = time.perf_counter() - start
    results["cpu_seconds"] = {**CPU_SECONDS, "total": time.process_time()}
    if "main" in parts:
        print(table(results))
    if "parzen_real" in results:
        pr = results["parzen_real"]
        print(f"\nParzen, real-valued MNIST (10k test): GAN {pr['log_likelihood']:.1f} ± {pr['standard_error']:.1f} "
              f"nats (σ = {pr['sigma']:.3f}); 10k training digits as samples "
              f"{pr['training_digits_as_samples']['log_likelihood']:.1f}; "
              f"published GAN {PUBLISHED_GAN_PARZEN[0]:.0f} ± {PUBLISHED_GAN_PARZEN[1]:.0f}")
    print(f"\ntotal {results['total_seconds']:.0f} s on {results['threads']} thread(s); reproduce: {command}")
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
