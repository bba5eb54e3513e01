"""``boltzkit energy train | evaluate``: an MLP energy on points, trained by CD / PCD / replay buffer.

``train`` fits p(x) ∝ exp(−MLP(x)) on a box (the support: the toy's box, or the data's range
widened by ``--margin``) to a toy density (``--toy``) or a ``.npy`` of points (one per row),
with Langevin, MALA or HMC negatives, and writes a checkpoint in the common format plus
``metrics.csv`` and, in 1-D or 2-D, ``density.png`` (learned density and samples beside the
truth or the data).  ``evaluate`` prints the exact mean test log-likelihood, log Z by
quadrature on the support (1-D or 2-D).  Every bad input ends in one line
``boltzkit: error: …`` and exit code 2 before anything is written.  ``train --nproc N`` (or
``torchrun``) is data parallel (:mod:`boltzkit.training.distributed`): each process takes 1/N of
every batch and keeps ``--chains`` / N persistent chains (or a replay buffer of ``--buffer-size``
/ N, rounded up) of its own; process 0 writes the checkpoint with every process's chains.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import checkpoint
from ..data import formats
from ..data.toy import TOY_BOX, TOYS, sample_toy, toy_log_density
from ..errors import BoltzkitError, DataError
from ..evaluation import quadrature
from ..models.energy import EnergyFunctionModel, MLPEnergy
from ..sampling.mcmc import make_kernel
from ..training import Trainer, TrainingConfig, distributed, make_estimator
from ..training.replay import ReplayBuffer
from ..training.threads import torch_threads
from . import common

logger = logging.getLogger("boltzkit")

#: default step size per sampler (for data of unit scale; MALA and HMC adapt it)
STEP_SIZES = {"langevin": 0.01, "mala": 0.05, "hmc": 0.1}
#: quadrature nodes per axis (Simpson) for the evaluation and the pictures
GRID_POINTS = {1: 2001, 2: 301}


def load_points(path: str, flag: str = "--data") -> np.ndarray:
    """A finite 2-D float array of points from a ``.npy`` file, read by the checked loader
    (regular files only, header claims checked against the bytes present, no pickle)."""
    x = formats.load_npy(common.input_file(path, flag))
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise DataError(f"{path} must hold points one per row (shape (n, d)), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{path} holds {x.dtype} values, not numbers")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise DataError(f"{path} contains NaN or inf")
    return x


def support_of(x: np.ndarray, margin: float) -> tuple[list[float], list[float]]:
    """The data's range widened by ``margin`` × range on each side (at least 1e-3)."""
    low, high = x.min(0), x.max(0)
    pad = margin * np.maximum(high - low, 1e-3)
    return (low - pad).tolist(), (high + pad).tolist()


def _train_points(args: argparse.Namespace) -> tuple[np.ndarray, tuple[list[float], list[float]], str]:
    if args.toy:
        x = sample_toy(args.toy, args.n, seed=args.seed).astype(np.float64)
        return x, (list(TOY_BOX[0]), list(TOY_BOX[1])), f"toy:{args.toy}"
    x = load_points(args.data)
    return x, support_of(x, args.margin), args.data


def build_model(n_features: int, support, sampler: str, step_size: float | None, leapfrog: int,
                hidden: list[int], activation: str, seed: int, energy_penalty: float,
                dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> EnergyFunctionModel:
    """The command line's model: an :class:`MLPEnergy` on ``support`` with the named kernel."""
    options: dict[str, Any] = {"step_size": step_size or STEP_SIZES[sampler]}
    if sampler == "hmc":
        options["n_leapfrog"] = leapfrog
    module = MLPEnergy(n_features, hidden, activation, seed=seed).to(dtype=dtype, device=device)
    return EnergyFunctionModel(module, n_features, sampler=make_kernel(sampler, **options), support=support,
                               energy_penalty=energy_penalty)


def make_negative_phase(method: str, k: int, chains: int | None, buffer_size: int, reinit: float):
    """CD-k, PCD-k or the replay buffer, by name."""
    if method == "replay":
        return ReplayBuffer(k=k, n_chains=chains, buffer_size=buffer_size, reinit=reinit)
    return make_estimator(method, k, chains)


def evaluate_model(model: EnergyFunctionModel, x: torch.Tensor, points: int | None = None) -> dict[str, Any]:
    """Exact mean log-likelihood (nats per point) with log Z by Simpson quadrature on the support."""
    d = model.n_features
    if d > 2 or model.support is None:
        raise DataError(f"the exact log-likelihood needs log Z by quadrature: a 1-D or 2-D model on a box; "
                        f"this model has {d} dimensions" + ("" if model.support else " and no support"))
    n = points or GRID_POINTS[d]
    grid = quadrature.make_grid(model.support[0], model.support[1], n)
    with torch.no_grad():
        log_z = quadrature.log_partition(model.energy, grid, x)
        ll = quadrature.log_likelihood(model.energy, x, log_z)
    return {"log_likelihood": ll, "method": f"quadrature (Simpson, {len(grid.axes[0])} nodes per axis on the support)",
            "log_partition": float(log_z), "n": int(x.shape[0]), "support": model.support}


def save_density_plot(path: Path, model: EnergyFunctionModel, data: np.ndarray, samples: np.ndarray,
                      true_log_density: Any = None, title: str = "") -> Path:
    """Truth (if known) or data, learned density exp(−U)/Z, and model samples, side by side."""
    from .. import plot

    low, high = model.support
    param = next(model.parameters())
    grid = quadrature.make_grid(low, high, 201)
    learned = quadrature.density(model.energy, grid, torch.zeros(1, dtype=param.dtype, device=param.device)).numpy()
    panels = 3
    fig, axes = plot.new_figure((4.2 * panels, 4.0), ncols=panels)
    if model.n_features == 1:
        xs = grid.axes[0].numpy()
        axes[0].hist(data[:, 0], bins=80, range=(low[0], high[0]), density=True, color="0.7")
        if true_log_density is not None:
            axes[0].plot(xs, np.exp(true_log_density(xs[:, None])), "k")
        axes[0].set_title("data" + (" and true density" if true_log_density is not None else ""))
        axes[1].plot(xs, learned, "C0")
        axes[1].set_title("learned density exp(−U)/Z")
        axes[2].hist(samples[:, 0], bins=80, range=(low[0], high[0]), density=True, color="C1")
        axes[2].set_title(f"{len(samples)} model samples")
    else:
        extent = (low[0], high[0], low[1], high[1])
        if true_log_density is not None:
            truth = np.exp(true_log_density(grid.points.numpy())).reshape(grid.shape)
            axes[0].imshow(truth.T, origin="lower", extent=extent, cmap="viridis")
            axes[0].set_title("true density")
        else:
            axes[0].scatter(data[:2000, 0], data[:2000, 1], s=1, c="k")
            axes[0].set_title("data (first 2,000 points)")
        axes[1].imshow(learned.T, origin="lower", extent=extent, cmap="viridis")
        axes[1].set_title("learned density exp(−U)/Z")
        axes[2].scatter(samples[:, 0], samples[:, 1], s=1, c="C1")
        axes[2].set_title(f"{len(samples)} model samples")
        for ax in axes:
            ax.set_xlim(low[0], high[0])
            ax.set_ylim(low[1], high[1])
            ax.set_aspect("equal")
    if title:
        fig.suptitle(title)
    return plot.save_figure(fig, path)


#: the flags that define an ``energy train`` run (dest: (flag, default)); a resumed run takes
#: them from its checkpoint
RUN_SETTINGS: dict[str, tuple[str, Any]] = {
    "toy": ("--toy", None), "data": ("--data", None), "n": ("--n", 10000), "margin": ("--margin", 0.25),
    "sampler": ("--sampler", "mala"), "step_size": ("--step-size", None), "leapfrog": ("--leapfrog", 5),
    "method": ("--method", "replay"), "k": ("--k", 10), "chains": ("--chains", None),
    "buffer_size": ("--buffer-size", 10000), "reinit": ("--reinit", 0.05), "layers": ("--hidden", [64, 64]),
    "activation": ("--activation", "silu"), "energy_penalty": ("--energy-penalty", 0.0),
    "batch_size": ("--batch-size", 200), "lr": ("--lr", 1e-3), "seed": ("--seed", 0), "dtype": ("--dtype", "float32"),
}


def cmd_train(args: argparse.Namespace) -> int:
    device = common.device(args.device)
    saved, settings = common.start_or_resume(args, EnergyFunctionModel, RUN_SETTINGS, paths=("data",))
    if not (args.toy or args.data):
        raise BoltzkitError("give the training points: --toy NAME or --data POINTS.npy")
    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    if min(args.layers) < 1:
        raise BoltzkitError(f"--hidden sizes must be at least 1, got {args.layers}")
    for name in ("n", "epochs", "batch_size", "k", "leapfrog", "buffer_size", "samples", "sample_steps"):
        if getattr(args, name) < 1:
            raise BoltzkitError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.chains is not None and args.chains < 1:
        raise BoltzkitError(f"--chains must be at least 1, got {args.chains}")
    if not (args.lr > 0 and math.isfinite(args.lr)):
        raise BoltzkitError(f"--lr must be a positive number, got {args.lr}")
    if not (args.margin >= 0 and math.isfinite(args.margin)):
        raise BoltzkitError(f"--margin must be ≥ 0, got {args.margin}")
    out = checkpoint.check_output_directory(args.out)
    if args.data:
        common.input_file(args.data, "--data")
    world = distributed.planned_world(args)
    distributed.check_split(world, args.batch_size, "--batch-size")
    chains = None if args.chains is None else distributed.check_split(world, args.chains, "--chains", "chains")
    launched = distributed.launch(args, cmd_train, getattr(args, "argv", None))
    if launched is not None:
        return launched
    x_np, support, source = _train_points(args)
    d = x_np.shape[1]
    if saved is not None:
        model = saved.model.to(device)  # its check_data refuses points of another dimension
    else:
        model = build_model(d, support, args.sampler, args.step_size, args.leapfrog, args.layers, args.activation,
                            args.seed, args.energy_penalty, dtype, device)
    x = torch.from_numpy(x_np).to(device, dtype)
    model.check_data(x, source)
    config = TrainingConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                            method="pcd" if args.method == "replay" else args.method, k=args.k,
                            n_chains=args.chains, weight_decay=0.0, init_visible_bias=False)
    # n_chains and the buffer count over all ranks: each of W ranks keeps 1/W of them
    estimator = make_negative_phase(args.method, args.k, chains, -(-args.buffer_size // world), args.reinit)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.0, 0.999))
    extra = {"training": config.to_dict(), "data": source, "n": int(x.shape[0]), "settings": settings,
             "negative_phase": {"method": args.method, "k": args.k, "chains": args.chains,
                                "buffer_size": args.buffer_size, "reinit": args.reinit},
             "optimizer": {"name": "Adam", "lr": args.lr, "betas": [0.0, 0.999]}}
    trainer = Trainer(model, config, estimator=estimator, optimizer=optimizer, progress=not args.quiet,
                      callbacks=[common.SaveEachEpoch(out, extra)])  # a crash keeps the last epoch
    if saved is not None:
        trainer.load_training_state(saved.state, saved.config["training_state"])
    with torch_threads(args.threads):
        status = common.fit_status(trainer.fit, x)
    common.save_run(out, trainer, extra)  # with every rank's chains / replay buffer
    if not distributed.is_main():
        return status
    with torch_threads(args.threads):
        result = evaluate_model(model, x) if d <= 2 else {}
        g = torch.Generator(device).manual_seed(args.seed + 2)
        samples = model.sample(args.samples, args.sample_steps, g, reference=x).cpu().numpy()
    checkpoint.write_metrics_csv(out / "metrics.csv", trainer.history)
    written = "model.safetensors, config.json, training_state.safetensors, metrics.csv"
    if d <= 2:
        truth = (lambda pts: toy_log_density(args.toy, pts)) if args.toy else None
        save_density_plot(out / "density.png", model, x_np, samples, truth,
                          f"{source}: {args.method} k={args.k}, {args.sampler}, {trainer.epoch} epochs")
        written += ", density.png"
    summary = f"; training log-likelihood {result['log_likelihood']:.4f} nats (exact)" if result else ""
    print(f"wrote {out}/ ({written}){summary}")
    return status


def cmd_evaluate(args: argparse.Namespace) -> int:
    model, config, _ = checkpoint.load_checkpoint(args.model, common.device(args.device), kind=EnergyFunctionModel)
    if args.grid is not None and args.grid < 3:
        raise BoltzkitError(f"--grid must be at least 3, got {args.grid}")
    if args.toy:
        if args.n < 1:
            raise BoltzkitError(f"--n must be at least 1, got {args.n}")
        x_np = sample_toy(args.toy, args.n, seed=args.seed).astype(np.float64)
        source = f"toy:{args.toy} (seed {args.seed})"
    else:
        x_np, source = load_points(args.data), args.data
    param = next(model.parameters())
    x = torch.from_numpy(x_np).to(param.device, param.dtype)
    model.check_data(x, source)
    with torch_threads(args.threads):
        result = evaluate_model(model, x, args.grid)
    if args.toy:
        result["true_log_likelihood"] = float(toy_log_density(args.toy, x_np).mean())
    common.print_result(result, args.json, width=20)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``energy train|evaluate`` on the core command line's subparsers."""
    from .core import add_process_arguments

    e = sub.add_parser("energy", help="energy-based models p(x) ∝ exp(−U(x)) with an MLP energy on points",
                        formatter_class=common.HelpFormatter)
    esub = e.add_subparsers(dest="energy_command", required=True)

    t = esub.add_parser("train", help="train an MLP energy on points by CD / PCD / replay buffer",
                        formatter_class=common.HelpFormatter)
    source = t.add_mutually_exclusive_group()
    source.add_argument("--toy", choices=TOYS, help="a 2-D toy density (FFJORD's); this or --data is needed")
    source.add_argument("--data", metavar="POINTS.npy", help="a .npy of points, one per row")
    t.add_argument("--n", type=int, help="points drawn from --toy (default 10000)")
    t.add_argument("--margin", type=float,
                   help="the support is the data's range widened by this fraction per side (default 0.25; "
                        "--toy uses the box [-4.5, 4.5]^2)")
    t.add_argument("--sampler", choices=["langevin", "mala", "hmc"],
                   help="MCMC kernel of the negative phase (default mala)")
    t.add_argument("--step-size", type=float, metavar="EPS",
                   help="initial step size (default langevin 0.01, mala 0.05, hmc 0.1; MALA and HMC adapt it)")
    t.add_argument("--leapfrog", type=int, help="HMC leapfrog steps (default 5)")
    t.add_argument("--method", choices=["cd", "pcd", "replay"],
                   help="negative phase: CD-k from the data, persistent chains, or a replay buffer (default)")
    t.add_argument("--k", type=int, help="MCMC steps per update (default 10)")
    t.add_argument("--chains", type=int, help="persistent/replay chains per update (default: the batch size)")
    t.add_argument("--buffer-size", type=int, help="replay buffer size (default 10000)")
    t.add_argument("--reinit", type=float, help="replay: fraction restarted from noise (default 0.05)")
    t.add_argument("--hidden", type=int, nargs="+", dest="layers", metavar="N",
                   help="MLP hidden sizes (default 64 64)")
    t.add_argument("--activation", choices=["silu", "relu", "tanh", "softplus", "elu"],
                   help="MLP activation (default silu)")
    t.add_argument("--energy-penalty", type=float,
                   help="α of α(U(x⁺)² + U(x⁻)²) (Du & Mordatch 2019; default 0)")
    t.add_argument("--epochs", type=int, default=20, help="passes over the points in total (default 20)")
    t.add_argument("--batch-size", type=int, help="points per update (default 200)")
    t.add_argument("--lr", type=float, help="Adam learning rate, decayed linearly to 0 (default 1e-3)")
    t.add_argument("--samples", type=int, default=2000, help="model samples drawn for the picture (default 2000)")
    t.add_argument("--sample-steps", type=int, default=500,
                   help="kernel steps from uniform noise for those samples (default 500)")
    t.add_argument("--seed", type=int, help="seed of the toy points, weights and chains (default 0)")
    t.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: small updates)")
    t.add_argument("--dtype", choices=["float32", "float64"], help="default float32")
    t.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (default auto)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--resume", metavar="DIR",
                   help="continue the run saved in DIR (model, chains or buffer, optimizer, random state and "
                        "settings; giving a setting that differs is refused) up to --epochs in total "
                        "(default: a new run)")
    t.add_argument("--out", required=True, metavar="DIR", help="checkpoint directory (rewritten after each epoch)")
    add_process_arguments(t)
    t.set_defaults(func=cmd_train)

    v = esub.add_parser("evaluate", help="exact test log-likelihood (log Z by quadrature; 1-D or 2-D)",
                        formatter_class=common.HelpFormatter)
    v.add_argument("model", metavar="DIR", help="checkpoint directory written by 'energy train'")
    data = v.add_mutually_exclusive_group(required=True)
    data.add_argument("--data", metavar="POINTS.npy", help="test points, one per row")
    data.add_argument("--toy", choices=TOYS, help="fresh points of a toy density (reports its true log-likelihood too)")
    v.add_argument("--n", type=int, default=10000, help="points drawn from --toy (default 10000)")
    v.add_argument("--seed", type=int, default=1, help="seed of the --toy test points (default 1; training used 0)")
    v.add_argument("--grid", type=int, help="quadrature nodes per axis (default 2001 in 1-D, 301 in 2-D)")
    v.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    v.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (default auto)")
    v.add_argument("--json", action="store_true", help="one JSON object (log_likelihood, method, …)")
    v.set_defaults(func=cmd_evaluate)
