"""``boltzkit gan train | sample | evaluate``: the adversarial baseline, measured in nats.

``train`` (``--architecture mlp|conv``) runs the lecture's algorithm (k discriminator steps on m
noise samples and m data rows, then one generator step; :mod:`boltzkit.models.gan`) on the
common trainer and writes a
checkpoint (with both optimizers' state), ``metrics.csv``, ``curves.png`` (losses, D(x),
D(G(z))) and ``samples.png``.  ``evaluate`` estimates the test log-likelihood of
p(x) = ∫ p(z) p(x | G(z)) dz by AIS over z with HMC (``--method ais``, the headline, with an
interval) or the Parzen window of the GAN paper (``--method parzen``: σ chosen on held-out
validation rows; a poor likelihood estimate, Theis et al. 2016).  Every bad input ends in one
line ``boltzkit: error: …`` and exit code 2 before anything is written; a run that diverges
keeps its last good state, writes it, and exits with 1.  ``train --nproc N`` (or ``torchrun``)
is data parallel (:mod:`boltzkit.training.distributed`): each process takes m / N rows and noise
samples of every discriminator and generator step, both networks' gradients are averaged, and
process 0 alone writes.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import checkpoint, plot
from .. import data as datasets
from ..errors import ConfigurationError, DataError
from ..evaluation.decoder_ais import DEFAULT_OBSERVATION_SIGMAS, decoder_ais, select_observation_sigma
from ..evaluation.parzen import nearest_neighbour_distance, parzen_log_likelihood, select_sigma
from ..models.gan import GAN, GENERATOR_LOSSES, OPTIMIZERS, ModeCollapseGuard, gan_trainer, make_optimizer
from ..training import TrainingConfig, distributed
from ..training.threads import torch_threads
from ..validation import check_int
from . import common
from .common import HelpFormatter

logger = logging.getLogger("boltzkit")

PARZEN_CAVEAT = ("Parzen-window estimates are poor log-likelihood estimates in high dimensions "
                 "(Theis, van den Oord & Bethge 2016); the AIS estimate is the one to report")


def _load(path: str | None, key: str | None, binarize: str | None, flag: str = "--data") -> np.ndarray:
    from .core import load_data, parse_binarize

    return load_data(path, key, parse_binarize(binarize), flag=flag)


def _prepared(x: np.ndarray, output: str, name: str) -> np.ndarray:
    """Binary rows for a Bernoulli GAN (refused otherwise); rows scaled to [0, 1] for a Gaussian one."""
    if output == "bernoulli":
        if not np.isin(x, (0.0, 1.0)).all():
            raise DataError(f"{name}: a Bernoulli GAN needs 0/1 pixels; pass --binarize 0.5 (or stochastic), "
                            f"or train with --output gaussian")
        return x.astype(np.float32)
    return datasets.scale_to_unit(x).astype(np.float32)


def _name(path: str | None) -> str:
    from .core import EMBEDDED_NAME

    return path if path else EMBEDDED_NAME


#: the flags that define a ``gan train`` run (dest: (flag, default)); a resumed run takes them
#: from its checkpoint
RUN_SETTINGS: dict[str, tuple[str, Any]] = {
    "data": ("--data", None), "key": ("--key", None), "binarize": ("--binarize", None),
    "output": ("--output", "bernoulli"), "sigma": ("--sigma", 0.1), "latent": ("--latent", 10),
    "architecture": ("--architecture", "mlp"), "gan_hidden": ("--hidden", 256), "channels": ("--channels", 32),
    "k": ("--k", 1), "m": ("--m", 100), "loss": ("--loss", "minimax"), "optimizer": ("--optimizer", "adam"),
    "lr": ("--lr", 2e-4), "d_lr": ("--d-lr", None), "collapse_threshold": ("--collapse-threshold", 0.05),
    "seed": ("--seed", 0),
}


def cmd_train(args: argparse.Namespace) -> int:
    device = common.device(args.device)
    saved, settings = common.start_or_resume(args, GAN, RUN_SETTINGS, paths=("data",))
    for flag, value in (("--m", args.m), ("--latent", args.latent), ("--hidden", args.gan_hidden)):
        check_int(flag, value, least=1)
    if args.d_lr is not None and not (math.isfinite(args.d_lr) and args.d_lr > 0):
        raise ConfigurationError(f"--d-lr must be a positive number, got {args.d_lr}")
    if not (math.isfinite(args.sigma) and args.sigma > 0):
        raise ConfigurationError(f"--sigma must be a positive number, got {args.sigma}")
    out = common.output_directory(args.out)
    check_int("--channels", args.channels, least=1)
    if not (math.isfinite(args.collapse_threshold) and args.collapse_threshold >= 0):
        raise ConfigurationError(f"--collapse-threshold must be a number ≥ 0, got {args.collapse_threshold}")
    if args.data:
        common.input_file(args.data, "--data")
    distributed.check_split(distributed.planned_world(args), args.m, "--m")  # each process: m / W rows
    launched = distributed.launch(args, cmd_train, getattr(args, "argv", None))
    if launched is not None:
        return launched
    x_np = _prepared(_load(args.data, args.key, args.binarize), args.output, _name(args.data))
    if saved is not None:
        model = saved.model.to(device)  # its check_data refuses data of another width
    else:
        model = GAN(x_np.shape[1], args.latent, (args.gan_hidden,), (args.gan_hidden,), args.output, args.sigma,
                    seed=args.seed, device=device, architecture=args.architecture, channels=args.channels)
    x = torch.from_numpy(x_np).to(device)
    model.check_data(x, _name(args.data))
    config = TrainingConfig(epochs=args.epochs, batch_size=args.k * args.m, lr=args.lr, momentum=0.0,
                            initial_momentum=0.0, weight_decay=0.0, lr_schedule="constant",
                            init_visible_bias=False, seed=args.seed)
    guards = [ModeCollapseGuard(x, args.collapse_threshold, seed=args.seed)] if args.collapse_threshold > 0 else []
    extra: dict[str, Any] = {
        "data": _name(args.data), "n": int(x.shape[0]), "training": config.to_dict(), "settings": settings,
        "gan": {"architecture": args.architecture, "k": args.k, "m": args.m, "loss": args.loss,
                "optimizer": args.optimizer, "lr": args.lr, "d_lr": args.d_lr or args.lr}}
    trainer = gan_trainer(model, config, k=args.k, m=args.m, loss=args.loss, progress=not args.quiet,
                          callbacks=[*guards, common.SaveEachEpoch(out, extra)],  # a crash keeps the last epoch
                          generator_optimizer=make_optimizer(model.generator_parameters(), args.optimizer, args.lr),
                          discriminator_optimizer=make_optimizer(model.discriminator_parameters(), args.optimizer,
                                                                 args.d_lr or args.lr))
    if saved is not None:
        trainer.load_training_state(saved.state, saved.config["training_state"])
    start = time.perf_counter()
    with torch_threads(args.threads):
        status = common.fit_status(trainer.fit, x)
    seconds = time.perf_counter() - start
    extra["seconds"] = seconds
    common.save_run(out, trainer, extra)
    if not distributed.is_main():
        return status
    written = "config.json, model.safetensors, training_state.safetensors"
    if trainer.history:
        checkpoint.write_metrics_csv(out / "metrics.csv", trainer.history)
        plot.save_curves(trainer.history, out / "curves.png",
                         {"d_real": "mean D(x) on data", "d_fake": "mean D(G(z)) on samples"})
        written += ", metrics.csv, curves.png"
    _sample_grid(model, 100, args.seed + 1, out / "samples.png")
    print(f"wrote {out}/ ({written}, samples.png) after {trainer.epoch} epochs in {seconds:.1f} s")
    return status


def _samples(model: GAN, n: int, seed: int) -> np.ndarray:
    p = next(model.parameters())
    with torch.no_grad():
        return model.generate(model.noise(n, torch.Generator(p.device).manual_seed(seed))).cpu().numpy()


def _sample_grid(model: GAN, n: int, seed: int, png: Path) -> None:
    kind = "probabilities" if model.output == "bernoulli" else "values"
    plot.save_grid(_samples(model, n, seed), png, kind=kind, title=f"{n} GAN samples G(z)")


def cmd_sample(args: argparse.Namespace) -> int:
    png = common.output_file(args.png or Path(args.model) / "samples.png", "--png")
    model = checkpoint.load_checkpoint(args.model, common.device(args.device), kind=GAN).model
    _sample_grid(model, args.n, args.seed, png)
    print(f"wrote {png} ({args.n} samples G(z), z ~ N(0, I))")
    return 0


def _rows(x: np.ndarray, rows: int | None, seed: int) -> np.ndarray:
    if rows is None or rows >= len(x):
        return x
    order = np.random.default_rng(seed).permutation(len(x))[:rows]
    return x[np.sort(order)]


def cmd_evaluate(args: argparse.Namespace) -> int:
    for flag, value in (("--leapfrog", args.leapfrog), ("--samples", args.samples)):
        check_int(flag, value, least=1)
    if args.valid_fraction is not None and not 0 < args.valid_fraction < 1:
        raise ConfigurationError(f"--valid-fraction must lie in (0, 1), got {args.valid_fraction}")
    model, config, _ = checkpoint.load_checkpoint(args.model, common.device(args.device), kind=GAN)
    p = next(model.parameters())
    name = _name(args.data)
    x_np = _prepared(_load(args.data, args.key, args.binarize), model.output, name)
    if x_np.shape[1] != model.n_visible:
        raise DataError(f"{name} has {x_np.shape[1]} columns but the GAN has {model.n_visible} pixels")
    result: dict[str, Any] = {"method": args.method}
    warnings = []
    if name == config.get("data"):
        warnings.append(f"{name} is the data the GAN was trained on (not a test set)")
    with torch_threads(args.threads):
        if args.method == "ais":
            x = torch.from_numpy(_rows(x_np, args.rows, args.seed)).to(p.device, p.dtype)
            if args.valid and model.output == "gaussian":     # σ of N(G(z), σ²I) chosen on validation rows
                valid_np = _prepared(_load(args.valid, args.key, args.binarize, "--valid"), model.output, args.valid)
                if valid_np.shape[1] != model.n_visible:
                    raise DataError(f"{args.valid} has {valid_np.shape[1]} columns but the GAN has "
                                    f"{model.n_visible} pixels")
                valid = torch.from_numpy(_rows(valid_np, min(args.rows or 100, 100), args.seed)).to(p.device, p.dtype)
                sigma, scores = select_observation_sigma(model, valid, n_chains=args.chains, betas=args.betas,
                                                         n_leapfrog=args.leapfrog, seed=args.seed + 1)
                result.update({"sigma": sigma, "sigma_validation": dict(zip(map(str, DEFAULT_OBSERVATION_SIGMAS),
                                                                            scores)),
                               "validation_rows": int(valid.shape[0])})
            res = decoder_ais(model, x, n_chains=args.chains, betas=args.betas, n_leapfrog=args.leapfrog,
                              seed=args.seed, progress=not args.quiet)
            est = res.estimate()
            result.update({"log_likelihood": est.mean, "log_likelihood_interval": [est.low, est.high],
                           "n": int(x.shape[0]), "chains": args.chains, "betas": res.n_betas,
                           "leapfrog": args.leapfrog, "hmc_acceptance": res.accept,
                           "observation_model": model.output})
        else:
            rng = np.random.default_rng(args.seed)
            order = rng.permutation(len(x_np))
            n_valid = max(1, int(round(args.valid_fraction * len(x_np))))
            if args.valid:
                valid = _prepared(_load(args.valid, args.key, args.binarize, "--valid"), model.output, args.valid)
                test = x_np
            else:
                if len(x_np) < 2:
                    raise DataError(f"{name}: the Parzen estimate needs at least 2 rows (validation and test)")
                valid, test = x_np[order[:n_valid]], x_np[order[n_valid:]]
            test = _rows(test, args.rows, args.seed)
            samples = torch.from_numpy(_samples(model, args.samples, args.seed + 1)).double()
            sigma, _ = select_sigma(samples, torch.from_numpy(valid).double())
            ll = parzen_log_likelihood(samples, torch.from_numpy(test).double(), sigma)
            nn_dist = nearest_neighbour_distance(samples[:1000], torch.from_numpy(test).double())
            result.update({"log_likelihood": float(ll.mean()),
                           "log_likelihood_se": float(ll.std()) / math.sqrt(ll.numel()) if ll.numel() > 1 else math.nan,
                           "sigma": sigma, "n": int(len(test)), "samples": args.samples,
                           "validation_rows": int(len(valid)),
                           "sample_nearest_neighbour_distance": float(nn_dist.mean())})
            warnings.append(PARZEN_CAVEAT)
    if warnings:
        result["warnings"] = warnings
    common.print_result(result, args.json)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``gan train|sample|evaluate`` on the core command line's subparsers."""
    from .core import add_process_arguments

    g = sub.add_parser("gan", help="generative adversarial networks, with test log-likelihood in nats")
    gsub = g.add_subparsers(dest="gan_command", required=True)

    def data_options(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument("--data", metavar="FILE", help=f"{what} (.npy, .npz, .mat, .csv, IDX; default: the embedded "
                                                      f"binarised-MNIST digits)")
        p.add_argument("--key", help="array name inside an .npz/.mat file (default: the only array)")
        p.add_argument("--binarize", metavar="THRESHOLD|stochastic",
                       help="binarise pixels (scaled to [0, 1]) at a threshold or stochastically (default: as stored)")
        p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
        p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (default auto)")
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    t = gsub.add_parser("train", help="train an MLP GAN by the adversarial algorithm", formatter_class=HelpFormatter)
    data_options(t, "training rows, one image per row")
    # the run's settings default to None so that a typed value is known (RUN_SETTINGS has the defaults)
    t.add_argument("--output", choices=["bernoulli", "gaussian"],
                   help="observation model p(x | G(z)): Bernoulli for 0/1 pixels, Gaussian for real values "
                        "(default bernoulli)")
    t.add_argument("--sigma", type=float, help="σ of the Gaussian observation model (default 0.1)")
    t.add_argument("--latent", type=int, help="latent dimension of z ~ N(0, I) (default 10)")
    t.add_argument("--architecture", choices=["mlp", "conv"],
                   help="MLP pair, or a small convolutional pair for square images (side a multiple of 4) "
                        "(default mlp)")
    t.add_argument("--hidden", type=int, dest="gan_hidden",
                   help="hidden units of each network's one hidden layer (--architecture mlp; default 256)")
    t.add_argument("--channels", type=int,
                   help="feature maps C of the convolutional pair (C and 2C; --architecture conv; default 32)")
    t.add_argument("--k", type=int, help="discriminator steps per generator step (default 1)")
    t.add_argument("--m", type=int, help="minibatch size m (noise samples and data rows per step; default 100)")
    t.add_argument("--loss", choices=GENERATOR_LOSSES,
                   help="generator loss: minimax log(1 − D(G(z))) or non-saturating −log D(G(z)) "
                        "(default minimax)")
    t.add_argument("--optimizer", choices=sorted(OPTIMIZERS),
                   help="torch.optim optimizer of each network (adam: betas 0.5, 0.999; default adam)")
    t.add_argument("--lr", type=float, help="generator learning rate (default 0.0002)")
    t.add_argument("--d-lr", type=float, help="discriminator learning rate (default: --lr)")
    t.add_argument("--epochs", type=int, default=10, help="passes over the data in total")
    t.add_argument("--collapse-threshold", type=float,
                   help="stop (exit 1, last good epoch kept) when the samples' mean pairwise distance falls "
                        "below this fraction of the data's (mode collapse); 0 turns the check off (default 0.05)")
    t.add_argument("--seed", type=int, help="seed of the weights, noise and shuffling (default 0)")
    t.add_argument("--resume", metavar="DIR",
                   help="continue the run saved in DIR (both networks, both optimizers, random state and "
                        "settings; giving a setting that differs is refused) up to --epochs in total "
                        "(default: a new run)")
    t.add_argument("--out", required=True, metavar="DIR", help="checkpoint directory (rewritten after each epoch)")
    add_process_arguments(t)
    t.set_defaults(func=cmd_train)

    s = gsub.add_parser("sample", help="a PNG grid of generator samples", formatter_class=HelpFormatter)
    s.add_argument("model", metavar="DIR", help="checkpoint directory written by 'gan train'")
    s.add_argument("--n", type=int, default=100, help="samples")
    s.add_argument("--seed", type=int, default=0, help="seed of z (default 0)")
    s.add_argument("--png", metavar="FILE", help="picture to write (default: DIR/samples.png)")
    s.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (default auto)")
    s.set_defaults(func=cmd_sample)

    v = gsub.add_parser("evaluate", help="test log-likelihood in nats (AIS over z, or Parzen)",
                        formatter_class=HelpFormatter)
    v.add_argument("model", metavar="DIR", help="checkpoint directory written by 'gan train'")
    data_options(v, "test rows")
    v.add_argument("--method", choices=["ais", "parzen"], default="ais",
                   help="AIS with HMC over z (Wu et al. 2017), or the Parzen window (a poor estimate)")
    v.add_argument("--rows", type=int, help="evaluate this many rows drawn at random (default: all)")
    v.add_argument("--chains", type=int, default=16, help="AIS chains per row")
    v.add_argument("--betas", type=int, default=1000, help="AIS β values (sigmoidal schedule)")
    v.add_argument("--leapfrog", type=int, default=10, help="HMC leapfrog steps per transition")
    v.add_argument("--samples", type=int, default=10000, help="Parzen: generator samples in the window")
    v.add_argument("--valid", metavar="FILE", help="validation rows that choose σ: Parzen (default: a random "
                                                   "--valid-fraction of --data, not evaluated), or, with --method ais "
                                                   "and a Gaussian GAN, the observation σ (up to 100 rows; default: "
                                                   "the σ the GAN was trained with)")
    v.add_argument("--valid-fraction", type=float, default=0.2, help="Parzen: share of --data held out to choose σ")
    v.add_argument("--seed", type=int, default=0, help="seed of the chains / samples and row choice (default 0)")
    v.add_argument("--json", action="store_true", help="one JSON object (log_likelihood, log_likelihood_interval, "
                                                       "method, …)")
    v.set_defaults(func=cmd_evaluate)
