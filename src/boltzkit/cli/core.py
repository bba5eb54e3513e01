"""``boltzkit train | sample | evaluate | gradcheck``: the core commands, thin over the library.

Every bad input ends in one line ``boltzkit: error: …`` on stderr and exit code 2, before
anything is written; a run that diverges keeps its last good checkpoint and exits with 1.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import io as _io
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__, checkpoint, plot
from .. import data as datasets
from ..errors import ConfigurationError, DataError
from ..evaluation import ais, exact
from ..evaluation import gradient_quality as gradcheck
from ..evaluation import monitors as monitor
from ..models import RBM
from ..models.base import check_training_data
from ..models.units import make_units
from ..sampling import ParallelTempering, tempering_betas
from ..training import (
    Callback,
    EarlyStopping,
    LikelihoodGuard,
    MetricCallback,
    Trainer,
    TrainingConfig,
    distributed,
    independent_bernoulli_log_likelihood,
    make_estimator,
)
from ..training.batches import redraw
from ..training.config import PRECISIONS
from ..validation import check_choice
from . import common
from .common import HelpFormatter

logger = logging.getLogger("boltzkit")

#: command groups beside the core commands: each module ``boltzkit.cli.<name>`` has ``add_parser(sub)``
COMMAND_GROUPS = ("recommend", "sequence", "energy", "gan")
#: exact log-likelihood is logged during training when the hidden layer has at most this many units
LIVE_EXACT_HIDDEN = 20
#: rows of the training data used for the per-epoch metrics
MONITOR_ROWS = 1000
#: rows of the embedded digits held out of training for the demo's honest log-likelihood
EMBEDDED_HOLDOUT = 1000
EMBEDDED_NAME = "the embedded binarised-MNIST digits"
#: the training flags a resumed run takes from its checkpoint (giving a different value is refused)
RUN_FLAGS = {"batch_size": "batch_size", "lr": "lr", "momentum": "momentum", "initial_momentum": "initial_momentum",
             "momentum_epochs": "momentum_epochs", "weight_decay": "weight_decay", "method": "method", "k": "k",
             "chains": "n_chains", "seed": "seed", "lr_schedule": "lr_schedule", "centered": "centered",
             "replicas": "replicas", "sparsity_target": "sparsity_target", "sparsity_cost": "sparsity_cost",
             "sparsity_decay": "sparsity_decay"}
#: defaults of the training flags (None in the parser, so that flags given with --resume are known)
TRAIN_DEFAULTS = {"batch_size": 100, "lr": 0.05, "momentum": TrainingConfig.momentum, "momentum_epochs": 0,
                  "weight_decay": TrainingConfig.weight_decay, "method": "pcd", "k": 1, "seed": 0,
                  "lr_schedule": "linear", "replicas": 10, "sparsity_cost": TrainingConfig.sparsity_cost,
                  "sparsity_decay": TrainingConfig.sparsity_decay, "epochs": 20, "hidden": None,
                  "visible": "bernoulli", "dtype": "float32"}
#: chains per random stream of ``evaluate --method ais`` and ``sample`` on several processes
#: (``--chain-block``): the results then do not depend on the number of processes
CHAIN_BLOCK = 10



# -- inputs -------------------------------------------------------------------------------------
def parse_binarize(value: str | None, training: bool = False) -> str | float | None:
    """``--binarize``: ``stochastic`` or a threshold strictly between 0 and 1 (pixels scaled first);
    when ``training``, also ``resample`` (grey levels, drawn afresh every batch: sample_data)."""
    if value == "resample":
        if not training:
            raise ConfigurationError("--binarize resample draws new binary rows while an RBM, DBN or DBM trains; "
                                     "here the rows must be fixed: use stochastic or a threshold")
        return value
    if value is None or value == "stochastic":
        return value
    try:
        threshold = float(value)
    except ValueError:
        choices = "a threshold in (0, 1), 'stochastic' or 'resample'" if training else \
            "a threshold in (0, 1) or 'stochastic'"
        raise ConfigurationError(f"--binarize must be {choices}, got {value!r}") from None
    if not 0.0 < threshold < 1.0:
        raise ConfigurationError(f"--binarize threshold must lie in (0, 1) (pixels are scaled to [0, 1] first), "
                                 f"got {value}")
    return threshold


def parse_visible(spec: str) -> str:
    """``--visible``: a unit type the visible layer can take (checked before any work)."""
    name, _, argument = spec.partition(":")
    if name == "softmax" and not argument:
        raise ConfigurationError("--visible softmax needs the number of states, e.g. softmax:4 (codes 0..3)")
    try:
        units = make_units(spec, 1)
    except (ConfigurationError, ValueError) as e:
        raise ConfigurationError(f"--visible {spec}: {e}") from None
    if units.hidden_only:
        raise ConfigurationError(f"--visible {spec}: {units.kind} units can only be the hidden layer")
    return spec


def load_data(path: str | None, key: str | None = None, binarize: str | float | None = None,
              label_column: int | None = None, flag: str = "--data") -> np.ndarray:
    """Data for the command line: the embedded set when ``path`` is None, else a file."""
    name = f"{flag} {path}" if path else EMBEDDED_NAME
    if path is None:
        x, _ = datasets.load_default()
    else:
        common.input_file(path, flag)
        try:
            x, _ = datasets.load_array(path, key, label_column=label_column)
        except DataError as e:
            raise DataError(f"{flag}: {str(e).replace('key=', '--key ')}") from None
    if binarize is not None:
        x = datasets.scale_to_unit(x)
        if binarize == "resample":  # grey levels in [0, 1]: the trainer draws the binary rows
            pass
        elif binarize == "stochastic":
            x = datasets.binarize(x, method="stochastic", seed=0)
        else:
            lo, hi = float(x.min()), float(x.max())
            if not lo <= float(binarize) < hi:
                raise DataError(f"{name}: --binarize {binarize} lies outside the data's range [{lo:g}, {hi:g}] "
                                f"(after scaling to [0, 1]): every value would become {int(float(binarize) < lo)}")
            x = datasets.binarize(x, threshold=float(binarize))
    return datasets.validate_data(x, name=name)


def prepare_data(x: np.ndarray, visible: str, standardise: dict[str, list[float]] | None = None,
                 name: str = "data") -> tuple[np.ndarray, dict[str, Any]]:
    """Data in the form the visible units take: one-hot for ``softmax:K`` (from integer codes
    0..K−1), standardised columns for ``gaussian`` (statistics returned for config.json)."""
    kind, _, argument = visible.partition(":")
    if kind == "softmax":
        k = int(argument)
        codes = np.asarray(x)
        if not np.all((codes == np.round(codes)) & (codes >= 0) & (codes < k)):
            raise DataError(f"{name}: softmax:{k} data must be integer codes 0..{k - 1} (one column per variable)")
        # one-hot by index assignment: row i, block j gets a 1 at column j·K + code (no K × K table
        # indexed into an (N, V, K) temporary)
        rows, width = codes.shape[0], codes.shape[1] if codes.ndim > 1 else 1
        onehot = np.zeros((rows, width * k), dtype=np.float32)
        columns = np.arange(width, dtype=np.int64) * k + codes.reshape(rows, width).astype(np.int64)
        onehot[np.arange(rows)[:, None], columns] = 1.0
        return onehot, {}
    if kind == "gaussian":
        x64 = np.asarray(x, dtype=np.float64)
        if standardise is None:
            mean, std = x64.mean(0), x64.std(0)
            # floor: a near-constant column (an MNIST border pixel) must not blow up to 50σ
            std = np.maximum(std, 0.1 * std.mean()) if std.mean() > 0 else np.ones_like(std)
            standardise = {"mean": mean.tolist(), "std": std.tolist()}
        mean, std = np.asarray(standardise["mean"]), np.asarray(standardise["std"])
        if mean.shape[0] != x.shape[1]:
            raise DataError(f"{name} has {x.shape[1]} columns but the model has {mean.shape[0]} visible units")
        with np.errstate(all="ignore"):
            z = (x64 - mean) / std
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all() and np.isfinite(z).all()
                and np.abs(z).max() < 1e6):
            raise DataError(f"{name}: cannot standardise the columns (values up to {np.abs(x64).max():.3g}; their "
                            f"mean or spread overflows or vanishes); rescale the data first")
        return z.astype(np.float32), {"standardise": standardise}
    return x, {}


def to_data_units(samples: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    """Undo :func:`prepare_data`'s standardisation so samples come back in data units."""
    if "standardise" in config:
        return samples * np.asarray(config["standardise"]["std"]) + np.asarray(config["standardise"]["mean"])
    return samples


def _layer_types(values: list[str] | None) -> tuple[int, str]:
    """``--hidden`` may be given as a count, a unit type, or both (``--hidden 100 --hidden relu``)."""
    count, kind = 20, "bernoulli"
    for value in values or []:
        if value.lstrip("-").isdigit():
            count = int(value)
        else:
            kind = value
    return count, kind


def _load_rbm(directory: str, device: torch.device, training_state: bool = False) -> tuple[RBM, dict, dict]:
    return checkpoint.load_checkpoint(directory, device, kind=RBM, training_state=training_state)


# -- monitoring -----------------------------------------------------------------------------------
def _metric_callbacks(rbm: RBM, monitored: dict[str, torch.Tensor], epochs: int, every: int | None,
                      betas: int, chains: int, seed: int, quiet: bool) -> tuple[list[Callback], str | None]:
    """Per-epoch metrics on ``monitored`` ({prefix: data}), and the log-likelihood they record.

    Reconstruction error every epoch (cheap).  The log-likelihood is exact when hidden ≤ 20
    (log Z enumerates 2^H states), measured every ``every`` epochs and at the last one
    (default: once after training, by :func:`final_likelihood`, so per-epoch monitoring stays a
    small part of training); larger models get
    AIS only when ``every`` or validation data is given.  ``every`` = 0 turns log-likelihood
    monitoring off.
    """
    callbacks: list[Callback] = [MetricCallback(f"{p}reconstruction_error", monitor.reconstruction_error, d)
                                 for p, d in monitored.items()]
    if every == 0:
        return callbacks, None
    if rbm.n_hidden <= LIVE_EXACT_HIDDEN and exact.is_tractable(rbm):
        if every is not None:
            callbacks.append(monitor.ExactLikelihood({f"{p}log_likelihood": d for p, d in monitored.items()}, every))
        name = "log_likelihood"  # without --monitor-every: measured once, after training (final_likelihood)
    elif every is not None or "valid_" in monitored:
        callbacks.append(monitor.AISLikelihood({f"{p}ais_log_likelihood": d for p, d in monitored.items()},
                                               every or epochs, n_betas=betas, n_chains=chains, seed=seed))
        name = "ais_log_likelihood"
    else:
        return callbacks, None
    held_out = [p for p in monitored if p]
    return callbacks, f"{held_out[0]}{name}" if held_out else name


def _model_samples(rbm: RBM, n: int, steps: int, seed: int, mean: bool = True, method: str = "gibbs",
                   replicas: int = 10, chain_block: int | None = None,
                   par: distributed.DataParallel | None = None, progress: bool = False) -> np.ndarray:
    """Visible states after ``steps`` sweeps from random starts p(v | h = 0): binary samples, or
    with ``mean`` the probabilities E[v | h] of the last half-step.  ``method="pt"`` runs
    parallel tempering (``replicas`` temperatures) and returns the β = 1 replicas.

    With ``chain_block`` the chains run in blocks with per-block seeds, dealt to the ranks of
    ``par`` and gathered (:func:`boltzkit.training.distributed.run_blocks`): the same samples on
    any number of processes.  ``progress`` shows a bar over the sweeps (on stderr, rank 0 only)."""
    bars: list[Any] = []

    def tick(sweeps: int) -> None:  # the bar appears once the chains exist (not before a failed allocation)
        if not bars:
            from tqdm.auto import tqdm

            blocks = 1
            if chain_block is not None:
                rank, world = (par.rank, par.world) if par is not None else (0, 1)
                blocks = len(range(rank, -(-n // chain_block), world))
            bars.append(tqdm(total=steps * blocks, unit="sweep", dynamic_ncols=True, desc="sample"))
        bars[0].update(sweeps)

    shown = tick if progress and distributed.is_main() else None
    try:
        if chain_block is not None:
            def block(start: int, stop: int, block_seed: int) -> torch.Tensor:
                return torch.from_numpy(_sweeps(rbm, stop - start, steps, block_seed, mean, method, replicas, shown))

            return distributed.run_blocks(n, chain_block, seed, block, par).numpy()
        return _sweeps(rbm, n, steps, seed, mean, method, replicas, shown)
    finally:
        for bar in bars:
            bar.close()


def _sweeps(rbm: RBM, n: int, steps: int, seed: int, mean: bool, method: str, replicas: int,
            tick: Callable[[int], None] | None = None) -> np.ndarray:
    """One stream of :func:`_model_samples`: ``n`` chains, ``steps`` sweeps, in chunks of about
    1 % of the sweeps, each reported to ``tick`` (the same draws as one call: the chains carry no
    state between sweeps but the visible layer)."""
    g = torch.Generator(rbm.weight.device).manual_seed(seed)
    chunk = max(1, steps // 100) if tick is not None else steps
    with torch.no_grad():
        v = rbm.visible.sample(rbm.visible.bias.expand(n, -1), g)
        pt = None
        if method == "pt":
            pt = ParallelTempering(tempering_betas(replicas), n)
            pt.initialise(rbm, v, g)
        for done in range(0, steps, chunk):
            todo = min(chunk, steps - done)
            v = pt.advance(rbm, v, todo, g).visible if pt is not None else rbm.sample(v, todo, g)
            if tick is not None:
                tick(todo)
        h = rbm.sample_hidden(v, g)
        out = rbm.visible_mean(h) if mean else rbm.sample_visible(h, g)
        return out.cpu().numpy()


def save_run(out: Path, trainer: Trainer, extra: dict[str, Any]) -> None:
    """The checkpoint with the training state (:func:`boltzkit.cli.common.save_run`: on several
    processes rank 0 gathers each rank's chains and RNG state and writes the one checkpoint)."""
    common.save_run(out, trainer, extra)


# -- train --------------------------------------------------------------------------------------------
def flag_conflicts(args: argparse.Namespace, saved: dict[str, Any]) -> list[str]:
    """Training flags (:data:`RUN_FLAGS`) given with --resume whose value differs from the saved
    run's training config ``saved``."""
    conflicts = []
    for flag, field in RUN_FLAGS.items():
        value = getattr(args, flag, None)  # a switch not given is False, a typed 0 counts
        conflicts += common.contradiction(f"--{flag.replace('_', '-')}", None if value is False else value,
                                          saved.get(field))
    return conflicts


def fixed_rows(x: torch.Tensor, config: TrainingConfig) -> torch.Tensor:
    """Rows to score: ``x`` as it is, or for ``--binarize resample`` (grey levels the trainer
    draws afresh) one fixed binary draw of them, seeded by the run's seed."""
    if not config.sample_data:
        return x
    return redraw(x, 1.0, torch.Generator(x.device).manual_seed(config.seed + 3))


def resample_conflict(args: argparse.Namespace, saved: dict[str, Any]) -> list[str]:
    """``--binarize`` typed with ``--resume`` that contradicts whether the run redraws its rows."""
    typed = getattr(args, "binarize", None)
    redraws = bool(saved.get("sample_data", False))
    if typed is None or (typed == "resample") == redraws:
        return []
    return [f"--binarize {typed} (the run {'draws its rows afresh: resample' if redraws else 'has fixed rows'})"]


def _resume_conflicts(args: argparse.Namespace, saved: dict[str, Any], model_config: dict[str, Any]) -> list[str]:
    """Flags given with --resume whose value differs from the saved run's."""
    hidden = None if args.hidden is None else _layer_types(args.hidden)
    return (flag_conflicts(args, saved) + resample_conflict(args, saved)
            + common.contradiction("--hidden", hidden, (model_config.get("n_hidden"), model_config.get("hidden")))
            + common.contradiction("--visible", args.visible, model_config.get("visible"))
            + common.contradiction("--dtype", args.dtype, model_config.get("dtype")))


def _new_config(args: argparse.Namespace) -> TrainingConfig:
    def value(name: str) -> Any:
        return TRAIN_DEFAULTS[name] if getattr(args, name) is None else getattr(args, name)

    momentum = value("momentum")
    return TrainingConfig(epochs=args.epochs, batch_size=value("batch_size"), lr=value("lr"), momentum=momentum,
                          initial_momentum=momentum if args.initial_momentum is None else args.initial_momentum,
                          momentum_epochs=value("momentum_epochs"), threads=args.threads,
                          precision=args.precision or TrainingConfig.precision,
                          weight_decay=value("weight_decay"), method=value("method"), k=value("k"),
                          n_chains=args.chains, seed=value("seed"), lr_schedule=value("lr_schedule"),
                          centered=bool(args.centered), replicas=value("replicas"),
                          sparsity_target=args.sparsity_target, sparsity_cost=value("sparsity_cost"),
                          sparsity_decay=value("sparsity_decay"),
                          sample_data=getattr(args, "binarize", None) == "resample")


def _memory_bytes(device: torch.device) -> int | None:
    """Memory of ``device``: the CUDA card's, else this machine's physical memory (None if unknown)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _check_run_sizes(args: argparse.Namespace, config: TrainingConfig, rbm: RBM, rows: int) -> None:
    """Before any data are prepared or trained on: a ``--batch-size`` the user typed takes at most
    the training rows, and the persistent chains (n_chains × temperatures × (V + H) numbers) fit
    in the device's memory."""
    if args.batch_size is not None and config.batch_size > rows:
        raise ConfigurationError(f"--batch-size {config.batch_size} is larger than the {rows:,} training rows "
                                 f"(each update takes one batch); give at most {rows:,}")
    if config.method == "cd":
        return  # CD's chains start at the batch: no persistent chains
    n_chains = config.n_chains or config.batch_size
    temperatures = config.replicas if config.method == "pt" else 1
    width = int(rbm.visible.spec().partition(":")[2]) if rbm.visible.kind == "softmax" else 1
    need = n_chains * temperatures * (rbm.n_visible * width + rbm.n_hidden) * rbm.weight.element_size()
    memory = _memory_bytes(rbm.weight.device)
    if memory is not None and need > memory:
        what = f"--chains {n_chains}" if config.n_chains else f"--batch-size {n_chains} (the default --chains)"
        raise ConfigurationError(f"{what}: the persistent chains would need {need / 2 ** 30:,.1f} GiB, more than "
                                 f"the {memory / 2 ** 30:,.1f} GiB of this {rbm.weight.device.type} device; "
                                 f"use fewer chains")


def cmd_train(args: argparse.Namespace) -> int:
    board = None
    if getattr(args, "tensorboard", None) is not None:  # checked before any work
        from ..training.tensorboard import TensorBoardLogger

        if args.model != "rbm":
            raise ConfigurationError("--tensorboard logs RBM training (--model rbm); not DBN/DBM training yet")
        board = TensorBoardLogger(args.tensorboard)
    if args.precision is not None:  # one line, not argparse's usage text
        check_choice("--precision", args.precision, PRECISIONS)
    if not args.resume:  # checked once, before any process starts (a resumed run keeps its batch size)
        world = distributed.planned_world(args)
        batch = args.batch_size if args.batch_size is not None or args.model != "rbm" else TRAIN_DEFAULTS["batch_size"]
        if batch is not None:
            distributed.check_split(world, batch, "--batch-size")
        if args.chains is not None:
            distributed.check_split(world, args.chains, "--chains", "chains")
    launched = distributed.launch(args, cmd_train, getattr(args, "argv", None))
    if launched is not None:
        return launched
    common.resume_on_restart(args, args.model in ("rbm", "dbm"))  # torchrun restarted the job
    if args.model != "rbm":
        from .deep import train_deep

        return train_deep(args)
    device = common.device(args.device)
    out = common.output_directory(args.out, "--out")
    binarize = parse_binarize(args.binarize, training=True)
    if args.resume:
        rbm, resume_config, resume_tensors = common.resumable(args.resume, device, RBM)
        saved = dict(resume_config["training"])
        common.refuse_conflicts(_resume_conflicts(args, saved, resume_config))
        saved["epochs"] = args.epochs
        if args.threads is not None:
            saved["threads"] = args.threads
        if args.precision is not None:  # how the run computes, like --threads: may change on resume
            saved["precision"] = args.precision
        config = TrainingConfig.from_dict(saved)
        binarize = "resample" if config.sample_data else binarize
        visible = rbm.visible.spec()
    else:
        visible = parse_visible(args.visible or "bernoulli")
        n_hidden, hidden_type = _layer_types(args.hidden)
        common.positive("--hidden", n_hidden)
        config = _new_config(args)
    if binarize is not None and visible.startswith("softmax"):
        raise ConfigurationError("--binarize cannot be used with --visible softmax:K (the data are integer codes)")
    if binarize == "resample" and visible != "bernoulli":
        raise ConfigurationError(f"--binarize resample draws binary rows for bernoulli visible units, "
                                 f"not --visible {visible}")
    x_raw = load_data(args.data, args.key, binarize)
    holdout = args.holdout if args.holdout is not None else (EMBEDDED_HOLDOUT if args.data is None else 0)
    if not 0 <= holdout < x_raw.shape[0]:
        raise ConfigurationError(f"--holdout {holdout} must leave rows to train on (the data has {x_raw.shape[0]})")
    name = f"--data {args.data}" if args.data else EMBEDDED_NAME
    if not args.resume:  # the model's size is checked (allocated) before the data are prepared
        dtype = torch.float64 if (args.dtype or "float32") == "float64" else torch.float32
        n_visible = x_raw.shape[1] if x_raw.ndim > 1 else 1  # softmax:K: one column of codes per unit
        rbm = RBM(n_visible, n_hidden, visible=visible, hidden=hidden_type, seed=config.seed, dtype=dtype,
                  device=device)
    _check_run_sizes(args, config, rbm, x_raw.shape[0] - holdout)
    x_np, data_info = prepare_data(x_raw, visible, resume_config.get("standardise") if args.resume else None, name)
    x_all = torch.from_numpy(x_np).to(device, rbm.weight.dtype)
    check_training_data(rbm, x_all, config, name)
    held_out = None
    if holdout:
        order = torch.randperm(x_all.shape[0], generator=torch.Generator().manual_seed(config.seed + 2))
        held_out, x = x_all[order[:holdout].to(device)], x_all[order[holdout:].to(device)]
    else:
        x = x_all
    monitored: dict[str, torch.Tensor] = {"": fixed_rows(x[:MONITOR_ROWS], config)}
    descriptions = {"": f"first {min(MONITOR_ROWS, x.shape[0]):,} training rows"}
    if held_out is not None:
        monitored["heldout_"] = fixed_rows(held_out, config)
        source = "the embedded digits" if args.data is None else name
        descriptions["heldout_"] = f"{holdout:,} held-out rows of {source}"
    if args.valid:
        valid_np, _ = prepare_data(load_data(args.valid, args.key, binarize, flag="--valid"), visible,
                                   data_info.get("standardise"), f"--valid {args.valid}")
        valid = fixed_rows(torch.from_numpy(valid_np).to(device, rbm.weight.dtype), config)
        rbm.check_data(valid, f"--valid {args.valid}")
        monitored["valid_"] = valid
        descriptions["valid_"] = f"{valid.shape[0]:,} rows of --valid {args.valid}"
    callbacks, watched = _metric_callbacks(rbm, monitored, config.epochs, args.monitor_every, args.monitor_betas,
                                           args.monitor_chains, config.seed, args.quiet)
    final = watched is not None and watched.endswith("log_likelihood") and "ais" not in watched \
        and args.monitor_every is None  # exact, measured once after training
    floor = None
    if watched is not None and rbm.visible.kind == "bernoulli":
        baseline = independent_bernoulli_log_likelihood(fixed_rows(x, config))
        floor = baseline - 0.5 * abs(baseline)
        callbacks.append(LikelihoodGuard(watched, floor=floor))
    early = None
    if args.early_stopping is not None:
        if watched is None or final:
            raise ConfigurationError("--early-stopping needs a monitored log-likelihood, measured during training: "
                                     "give --monitor-every N (and --valid FILE)")
        early = EarlyStopping(watched, args.early_stopping, args.min_delta, verbose=False)
        callbacks.append(early)  # after the metrics, before the checkpoint
    if board is not None and distributed.is_main():
        callbacks.append(board)  # writes each epoch's metrics.csv row once the other callbacks filled it
    extra = {"training": config.to_dict(), "data": args.data or "embedded:binarized_mnist_test",
             "holdout": holdout, "monitored_on": descriptions, **data_info}
    trainer = Trainer(rbm, config, callbacks=callbacks + [common.SaveEachEpoch(out, extra, args.save_every)],
                      progress=not args.quiet)
    if args.resume:
        trainer.load_training_state(resume_tensors, resume_config["training_state"])
    start = time.perf_counter()
    status = common.fit_status(trainer.fit, x)
    seconds = time.perf_counter() - start
    if status == 0 and final:
        status = final_likelihood(trainer, monitored, floor, progress=not args.quiet)
    if board is not None and distributed.is_main():
        board.finish(trainer)  # the likelihood measured after training; a diverged run's last good epoch
    if early is not None and early.message:
        logger.warning(early.message)
    save_run(out, trainer, extra)
    if not distributed.is_main():
        return status
    checkpoint.write_metrics_csv(out / "metrics.csv", trainer.history)
    labels = {f"{p}{m}": d for p, d in descriptions.items()
              for m in ("log_likelihood", "ais_log_likelihood", "reconstruction_error")}
    _write_pictures(rbm, trainer, out, config.seed, data_info, labels)
    print(_summary(trainer, out, seconds, descriptions))
    return status


def final_likelihood(trainer: Trainer, monitored: dict[str, torch.Tensor], floor: float | None,
                     progress: bool) -> int:
    """The exact log-likelihood of every monitored set after training (one log Z), added to the
    last epoch's metrics; 1 (with a warning) when it collapsed below ``floor``, else 0."""
    rbm = trainer.model
    if not trainer.history:
        return 0
    start = time.perf_counter()
    log_z = exact.log_partition(rbm, progress=progress)
    row = trainer.history[-1]
    for prefix, data in monitored.items():
        row[f"{prefix}log_likelihood"] = exact.log_likelihood(rbm, data, log_z)
    row["log_partition"] = log_z
    logger.info(f"exact log-likelihood after training: log Z by enumerating {2 ** rbm.n_hidden:,} hidden "
                f"states in {time.perf_counter() - start:.1f} s")
    worst = min(row[f"{p}log_likelihood"] for p in monitored)
    if floor is not None and (not math.isfinite(worst) or worst < floor):
        logger.warning(f"training diverged: the log-likelihood collapsed to {worst:.6g} nats (below {floor:.6g}, far "
                       f"worse than independent units with the data's marginals); try a smaller learning rate")
        return 1
    return 0


def _write_pictures(rbm: RBM, trainer: Trainer, out: Path, seed: int, data_info: dict[str, Any],
                    labels: dict[str, str]) -> None:
    if trainer.history:
        plot.save_curves(trainer.history, out / "curves.png", descriptions=labels)
    if rbm.visible.kind in ("bernoulli", "gaussian", "spin"):
        plot.save_filters(rbm.weight.detach().cpu().numpy(), out / "filters.png")
        samples = to_data_units(_model_samples(rbm, 64, 1000, seed), data_info)
        kind = "probabilities" if rbm.visible.kind == "bernoulli" else "values"
        plot.save_grid(samples, out / "samples.png", kind=kind,
                       title="64 model samples after 1000 Gibbs sweeps from noise")


def _summary(trainer: Trainer, out: Path, seconds: float, descriptions: dict[str, str]) -> str:
    last = trainer.history[-1] if trainer.history else {}
    parts = []
    for prefix, where in descriptions.items():
        for metric, unit in (("log_likelihood", "nats"), ("ais_log_likelihood", "nats (AIS)")):
            if f"{prefix}{metric}" in last:
                parts.append(f"log-likelihood {last[prefix + metric]:.2f} {unit} per example on {where}")
    recon = last.get("heldout_reconstruction_error", last.get("reconstruction_error"))
    if recon is not None:
        parts.append(f"reconstruction error {recon:.4f}")
    return (f"trained {trainer.epoch} epochs in {seconds:.1f} s; wrote {out}/ (model.safetensors, config.json, "
            f"metrics.csv, PNGs)" + ("\n" + "\n".join(f"  {p}" for p in parts) if parts else ""))


# -- sample ---------------------------------------------------------------------------------------------
def cmd_sample(args: argparse.Namespace) -> int:
    launched = distributed.launch(args, cmd_sample, getattr(args, "argv", None))
    if launched is not None:
        return launched
    par = distributed.DataParallel.current()
    png = common.output_file(args.png or Path(args.model) / "samples.png", "--png")
    npy = common.output_file(args.npy, "--npy") if args.npy else None
    rbm, config, _ = checkpoint.load_checkpoint(args.model, common.device(args.device), kind=_SAMPLED_KINDS())
    if not isinstance(rbm, RBM):
        from .deep import sample_deep

        return sample_deep(rbm, config, args) if distributed.is_main() else 0  # deep models: one process
    mean = args.values == "probabilities"
    block = args.chain_block or (CHAIN_BLOCK if par is not None else None)
    samples = _model_samples(rbm, args.n, args.steps, args.seed, mean, args.method, args.replicas, block, par,
                             progress=not args.quiet)
    if not distributed.is_main():
        return 0
    samples = to_data_units(samples, config)
    what = "E[v | h] (probabilities)" if mean else "binary samples"
    if rbm.visible.kind == "bernoulli":
        kind = "probabilities" if mean else "binary samples"
    else:
        kind, what = "values", "E[v | h]" if mean else "samples"
    plot.save_grid(samples, png, kind=kind, title=f"{args.n} model samples after {args.steps} {args.method} sweeps")
    if npy is not None:
        buffer = _io.BytesIO()
        np.save(buffer, samples)
        checkpoint.atomic_write_bytes(npy, buffer.getvalue())
    print(f"wrote {png}" + (f" and {npy}" if npy else "") + f" ({what})")
    return 0


# -- evaluate -----------------------------------------------------------------------------------------------
def evaluate(rbm: RBM, x: torch.Tensor, method: str = "auto", chains: int = 100,
             betas: int = 14500, seed: int = 0, progress: bool = False, chain_block: int | None = None,
             par: distributed.DataParallel | None = None) -> dict[str, Any]:
    """Mean test log-likelihood (nats) with the method used, reconstruction error, PL.

    ``chain_block`` and ``par`` shard AIS over processes (:func:`boltzkit.evaluation.ais.ais`)."""
    if method == "auto":
        method = "exact" if exact.is_tractable(rbm) else "ais"
    result: dict[str, Any] = {"method": method, "n": int(x.shape[0])}
    if method == "exact":
        log_z = exact.log_partition(rbm, progress=progress)
        result.update(log_partition=log_z, log_likelihood=exact.log_likelihood(rbm, x, log_z))
    else:
        run = ais.ais if method == "ais" else ais.reverse_ais
        estimate = run(rbm, x, n_chains=chains, betas=betas, seed=seed, progress=progress, chain_block=chain_block,
                       distributed=par)
        ll = ais.log_likelihood(rbm, x, estimate)
        result.update(log_partition=estimate.log_z,
                      log_partition_interval=[estimate.log_z_low, estimate.log_z_high],
                      log_likelihood=ll.mean, log_likelihood_interval=[ll.low, ll.high],
                      ess=estimate.ess, chains=chains, betas=estimate.n_betas)
    result["reconstruction_error"] = monitor.reconstruction_error(rbm, x)
    if rbm.visible.kind == "bernoulli":
        result["pseudo_log_likelihood"] = monitor.pseudo_log_likelihood(rbm, x)
    return result


def _SAMPLED_KINDS() -> tuple[type, ...]:
    """The model kinds ``sample`` and ``evaluate`` take: RBMs and the deep models."""
    from ..models import DBM, DBN, DBNNet

    return (RBM, DBN, DBNNet, DBM)


def cmd_evaluate(args: argparse.Namespace) -> int:
    launched = distributed.launch(args, cmd_evaluate, getattr(args, "argv", None))
    if launched is not None:
        return launched
    par = distributed.DataParallel.current()
    rbm, config, _ = checkpoint.load_checkpoint(args.model, common.device(args.device), kind=_SAMPLED_KINDS())
    name = f"--data {args.data}" if args.data else EMBEDDED_NAME
    if not isinstance(rbm, RBM) and not distributed.is_main():
        return 0  # deep models are evaluated by one process
    if not isinstance(rbm, RBM):
        from .deep import evaluate_deep

        x_np = load_data(args.data, args.key, parse_binarize(args.binarize))
        result = evaluate_deep(rbm, torch.from_numpy(x_np), args.method, args.chains, args.betas, args.seed)
        result["data"] = args.data or "embedded:binarized_mnist_test"
        common.print_result(result, args.json)
        return 0
    x_np, _ = prepare_data(load_data(args.data, args.key, parse_binarize(args.binarize)), rbm.visible.spec(),
                           config.get("standardise"), name)
    x = torch.from_numpy(x_np).to(rbm.weight.device, rbm.weight.dtype)
    rbm.check_data(x, name)
    sharded = args.method in ("ais", "raise") or (args.method == "auto" and not exact.is_tractable(rbm))
    if not sharded and not distributed.is_main():
        return 0  # exact enumeration: one process
    result = evaluate(rbm, x, args.method, args.chains, args.betas, args.seed, progress=not args.quiet,
                      chain_block=args.chain_block or (CHAIN_BLOCK if par is not None and sharded else None),
                      par=par)
    if not distributed.is_main():
        return 0
    result["data"] = args.data or "embedded:binarized_mnist_test"
    if "standardise" in config:
        # density of the data, not of the standardised data: log p(x) = log p(z) − Σ_i log σ_i
        shift = -float(np.log(np.asarray(config["standardise"]["std"])).sum())
        result["log_likelihood"] += shift
        if "log_likelihood_interval" in result:
            result["log_likelihood_interval"] = [v + shift for v in result["log_likelihood_interval"]]
        result["log_likelihood_units"] = "data units (standardisation Jacobian included)"
    common.print_result(result, args.json)
    return 0


# -- gradcheck ----------------------------------------------------------------------------------------------
def cmd_gradcheck(args: argparse.Namespace) -> int:
    png = common.output_file(args.png or Path(args.model) / "gradcheck.png", "--png")
    rbm, config, _ = _load_rbm(args.model, common.device(args.device))
    name = f"--data {args.data}" if args.data else EMBEDDED_NAME
    x_np, _ = prepare_data(load_data(args.data, args.key, parse_binarize(args.binarize)), rbm.visible.spec(),
                           config.get("standardise"), name)
    x = torch.from_numpy(x_np[: args.rows]).to(rbm.weight.device, rbm.weight.dtype)
    rbm.check_data(x, name)
    if not exact.is_tractable(rbm):
        raise ConfigurationError("gradcheck needs the exact gradient: the smaller layer must have ≤ 25 units")
    chains = x.shape[0]
    estimators = {f"CD-{k}": make_estimator("cd", k) for k in args.k}
    estimators.update({"PCD-1": make_estimator("pcd", 1, chains), "FPCD-1": make_estimator("fpcd", 1, chains),
                       "PT-1 (10 replicas)": make_estimator("pt", 1, chains),
                       "centered PCD-1": make_estimator("pcd", 1, chains, centered=True)})
    result = gradcheck.gradient_quality(rbm, x, estimators, repeats=args.repeats, seed=args.seed,
                                        burn_in=args.burn_in, progress=not args.quiet)
    gradcheck.plot_gradient_quality(result, png)
    if args.json:
        print(common.finite_json(result))
    else:
        print(f"{'estimator':>20} {'|bias|':>10} {'std dev':>10} {'cosine':>8}")
        for row_name, row in gradcheck.gradient_quality_rows(result).items():
            print(f"{row_name:>20} {row['bias_norm']:10.4g} {row['std_dev']:10.4g} {row['cosine']:8.3f}")
        print(f"wrote {png}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="boltzkit", formatter_class=HelpFormatter,
        description="Energy-based models on PyTorch: train, sample and evaluate RBMs (exact log-likelihood or "
                    "AIS), collaborative filtering, and the command groups listed below.")
    parser.add_argument("--version", action="version", version=f"boltzkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def data_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", metavar="FILE", default=None,
                       help="idx(.gz), .mat, .csv(.gz), .npy or .npz file (default: the embedded binarised "
                            "MNIST test digits)")
        p.add_argument("--key", help="array name inside a .mat/.npz file that holds several (default: X or data)")
        p.add_argument("--binarize", metavar="THRESHOLD|stochastic|resample",
                       help="binarise the data after scaling pixels to [0, 1]: 1 where x > THRESHOLD, or "
                            "stochastic Bernoulli(x) draws (one fixed draw); for train only, resample draws "
                            "the rows afresh in every batch (dynamic binarisation; default: off)")
        p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (CUDA when available)")

    t = sub.add_parser("train", formatter_class=HelpFormatter,
                       help="train an RBM and write a checkpoint with pictures",
                       description="Train an RBM. Writes DIR/model.safetensors, config.json, "
                                   "training_state.safetensors (for --resume), metrics.csv, filters.png, "
                                   "samples.png and curves.png.")
    data_options(t)
    t.add_argument("--out", required=True, metavar="DIR", help="checkpoint directory (created; rewritten each epoch)")
    t.add_argument("--model", choices=["rbm", "dbn", "dbm"], default="rbm",
                   help="an RBM, a deep belief network or a deep Boltzmann machine (layer sizes as "
                        "--hidden 500,1000)")
    t.add_argument("--hidden", action="append", metavar="N|TYPE",
                   help="hidden units (default 20) and/or their type: bernoulli (default), relu, spin; "
                        "repeat to give both, e.g. --hidden 100 --hidden relu; for --model dbn|dbm a "
                        "comma list of layer sizes, e.g. 500,1000 (a resumed DBM keeps its own)")
    t.add_argument("--visible", metavar="TYPE",
                   help="visible units: bernoulli (default), spin, gaussian, gaussian:learned, softmax:K "
                        "(data as integer codes 0..K-1)")
    t.add_argument("--resume", metavar="DIR", help="continue the run saved in DIR up to --epochs in total; "
                   "training flags come from the run (giving a different value is refused)")
    t.add_argument("--epochs", type=int, default=20, help="epochs in total (passes over the training rows)")
    t.add_argument("--batch-size", type=int, help="rows per update (default 100)")
    t.add_argument("--lr", type=float, help="learning rate of SGD (default 0.05)")
    t.add_argument("--lr-schedule", choices=["linear", "constant"],
                   help="linear decay to 0 over the planned epochs (default), or constant")
    t.add_argument("--momentum", type=float, help=f"SGD momentum (default {TrainingConfig.momentum})")
    t.add_argument("--initial-momentum", type=float, metavar="M",
                   help="momentum for the first --momentum-epochs epochs (Hinton's guide: 0.5, then 0.9; "
                        "default: --momentum)")
    t.add_argument("--momentum-epochs", type=int, metavar="E", help="epochs run with --initial-momentum (default 0)")
    t.add_argument("--weight-decay", type=float,
                   help=f"L2 penalty on the weights, not the biases (default {TrainingConfig.weight_decay})")
    t.add_argument("--method", choices=["cd", "pcd", "pt", "fpcd"],
                   help="negative phase: CD-k, persistent CD (default pcd), parallel tempering, fast PCD")
    t.add_argument("--k", type=int, help="Gibbs sweeps per update (default 1)")
    t.add_argument("--chains", type=int, help="persistent chains (default: the batch size)")
    t.add_argument("--replicas", type=int, help="temperatures for --method pt (default 10)")
    t.add_argument("--centered", action="store_true", default=None, help="centered gradient (Melchior et al. 2016)")
    t.add_argument("--sparsity-target", type=float, metavar="P",
                   help="target mean activity in (0, 1) of the hidden units (Hinton's sparsity penalty; default off)")
    t.add_argument("--sparsity-cost", type=float, metavar="C",
                   help=f"weight of the sparsity penalty (default {TrainingConfig.sparsity_cost})")
    t.add_argument("--sparsity-decay", type=float, metavar="λ",
                   help=f"decay of the running activity estimate (default {TrainingConfig.sparsity_decay})")
    t.add_argument("--seed", type=int, help="seed of the weights, the shuffling and the sampling (default 0)")
    t.add_argument("--dtype", choices=["float32", "float64"], help="parameter precision (default float32)")
    t.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads for the updates (default: 1 for small models, else torch's setting)")
    t.add_argument("--precision", metavar="{" + ",".join(PRECISIONS) + "}",
                   help="arithmetic of the updates: float32 (default), tf32 (float32 tensors, reduced-precision "
                        "products: TF32 on CUDA, bf16 on a CPU with oneDNN) or bf16 (Gibbs sampling under "
                        "bfloat16 autocast); a resumed run keeps its own unless given")
    t.add_argument("--holdout", type=int, metavar="N",
                   help="rows held out of training and monitored (default: 1000 for the embedded digits, 0 for "
                        "--data)")
    t.add_argument("--valid", metavar="FILE", help="validation data, monitored like the held-out rows "
                   "(valid_log_likelihood; valid_ais_log_likelihood when hidden > 20)")
    t.add_argument("--monitor-every", type=int, metavar="N",
                   help="log the log-likelihood every N epochs and at the last: exact when hidden ≤ 20, else AIS; "
                        "0 turns it off (default: exact at the last epoch only; AIS only when asked)")
    t.add_argument("--monitor-betas", type=int, default=1000, metavar="T", help="AIS β values when monitoring")
    t.add_argument("--monitor-chains", type=int, default=100, metavar="M", help="AIS chains when monitoring")
    t.add_argument("--early-stopping", type=int, metavar="PATIENCE",
                   help="stop when the monitored log-likelihood (held-out or validation if present) has not "
                        "improved for PATIENCE measurements, and keep the best parameters (default: off)")
    t.add_argument("--min-delta", type=float, default=0.0, help="smallest improvement that counts (nats)")
    t.add_argument("--save-every", type=int, metavar="N",
                   help="also keep a checkpoint every N epochs in DIR/epoch-NNNN (default: only the latest)")
    t.add_argument("--tensorboard", metavar="LOGDIR",
                   help="also write the per-epoch metrics of metrics.csv as TensorBoard scalars to LOGDIR "
                        "(needs: pip install 'boltzkit[tensorboard]'; default: off)")
    t.add_argument("--quiet", action="store_true", help="no progress bars or messages")
    add_process_arguments(t)
    from .deep import add_train_arguments

    add_train_arguments(t)
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", formatter_class=HelpFormatter, help="draw samples from a trained model")
    s.add_argument("model", metavar="DIR", help="checkpoint directory written by 'boltzkit train'")
    s.add_argument("-n", type=int, default=64, help="samples (independent chains)")
    s.add_argument("--steps", type=int, default=1000, help="Gibbs sweeps per chain from a random start")
    s.add_argument("--method", choices=["gibbs", "pt"], default="gibbs",
                   help="plain block Gibbs, or parallel tempering (better mixing between modes)")
    s.add_argument("--replicas", type=int, default=10, help="temperatures for --method pt")
    s.add_argument("--values", choices=["probabilities", "binary"], default="probabilities",
                   help="what the PNG and .npy hold: E[v | h] of the last half-step, or binary samples")
    s.add_argument("--seed", type=int, default=0, help="seed of the chains")
    s.add_argument("--png", metavar="FILE", help="picture to write (default: DIR/samples.png)")
    s.add_argument("--npy", metavar="FILE", help="also write the samples as a .npy array (default: off)")
    s.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    add_process_arguments(s, blocks=True)
    s.set_defaults(func=cmd_sample)

    e = sub.add_parser("evaluate", formatter_class=HelpFormatter,
                       help="test log-likelihood (exact or AIS), reconstruction error, pseudo-likelihood")
    e.add_argument("model", metavar="DIR", help="checkpoint directory written by 'boltzkit train'")
    data_options(e)
    e.add_argument("--method", choices=["auto", "exact", "ais", "raise"], default="auto",
                   help="exact enumeration (smaller layer ≤ 25 units), forward AIS (a stochastic lower bound "
                        "on log Z), or 'raise': reverse AIS started from the data (an approximate upper bound "
                        "on log Z, so a conservative log-likelihood); auto = exact when tractable, else AIS")
    e.add_argument("--chains", type=int, default=100, help="AIS chains")
    e.add_argument("--betas", type=int, default=14500, help="AIS inverse temperatures (the schedule's length)")
    e.add_argument("--seed", type=int, default=0, help="seed of the AIS chains")
    e.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    add_process_arguments(e, blocks=True)
    e.set_defaults(func=cmd_evaluate)

    g = sub.add_parser("gradcheck", formatter_class=HelpFormatter,
                       help="bias, standard deviation and cosine of CD/PCD/FPCD/PT gradients against the exact one")
    g.add_argument("model", metavar="DIR", help="checkpoint directory of a model small enough for the exact gradient")
    data_options(g)
    g.add_argument("--k", type=int, nargs="+", default=[1, 10], help="CD-k variants to compare")
    g.add_argument("--repeats", type=int, default=20, help="independent estimates per estimator")
    g.add_argument("--rows", type=int, default=1000, help="data rows used")
    g.add_argument("--burn-in", type=int, default=100, metavar="N",
                   help="warm-up updates of the persistent chains under the model before measuring")
    g.add_argument("--seed", type=int, default=0, help="seed of the estimators")
    g.add_argument("--png", metavar="FILE", help="picture to write (default: DIR/gradcheck.png)")
    g.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g.set_defaults(func=cmd_gradcheck)

    for group in COMMAND_GROUPS:
        if importlib.util.find_spec(f"{__package__}.{group}") is not None:
            importlib.import_module(f"{__package__}.{group}").add_parser(sub)
    return parser


def add_process_arguments(p: argparse.ArgumentParser, blocks: bool = False) -> None:
    """--nproc and --timeout (and --chain-block for the sharded chains of sample/evaluate)."""
    p.add_argument("--nproc", type=int, metavar="N",
                   help="run on N processes of this machine (gloo, one CPU thread each; under torchrun "
                        "leave it out). Training: data parallel, each process takes 1/N of every batch")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help=f"on several processes: how long a process waits for the others before the job stops "
                        f"(default {distributed.DEFAULT_TIMEOUT_S:g})")
    if blocks:
        p.add_argument("--chain-block", type=int, metavar="M",
                       help=f"run the chains in blocks of M, each with its own seed, so the result is the same "
                            f"on any number of processes (default: one stream in one process, {CHAIN_BLOCK} on "
                            f"several)")


def _check_positive(args: argparse.Namespace) -> None:
    """Counts and rates checked once, before any command runs (flag names as typed)."""
    if getattr(args, "hidden", None) is not None:
        common.positive("--hidden", _layer_types(args.hidden)[0])
    for name in ("epochs", "batch_size", "k", "chains", "n", "steps", "monitor_chains", "monitor_betas",
                 "early_stopping", "threads", "replicas", "save_every", "repeats", "rows", "betas", "nproc",
                 "chain_block"):
        value = getattr(args, name, None)
        common.positive(f"--{name.replace('_', '-')}", min(value) if isinstance(value, list) else value)
    for name in ("monitor_every", "holdout", "burn_in", "momentum_epochs"):
        common.positive(f"--{name.replace('_', '-')}", getattr(args, name, None), least=0)
    for name in ("lr", "weight_decay", "momentum", "initial_momentum", "sparsity_cost", "sparsity_decay",
                 "sparsity_target", "min_delta"):
        value = getattr(args, name, None)
        if value is not None and not math.isfinite(value):
            raise ConfigurationError(f"--{name.replace('_', '-')} must be a finite number, got {value}")
    timeout = getattr(args, "timeout", None)
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise ConfigurationError(f"--timeout must be a positive number of seconds, got {timeout}")
    if getattr(args, "lr", None) is not None and args.lr <= 0:
        raise ConfigurationError(f"--lr must be a positive number, got {args.lr}")
