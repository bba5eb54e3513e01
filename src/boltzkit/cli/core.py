"""``boltzkit train | sample | evaluate | gradcheck``: the core commands, thin over the library.

Every bad input ends in one line ``boltzkit: error: …`` on stderr and exit code 2, before
anything is written; a run that diverges keeps its last good checkpoint and exits with 1.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import io as _io
import json
import math
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .. import __version__, checkpoint, data as datasets, plot
from ..errors import BoltzkitError, DivergenceError
from ..evaluation import ais, exact
from ..evaluation import gradient_quality as gradcheck
from ..evaluation import monitors as monitor
from ..models import RBM
from ..training import Callback, EarlyStopping, MetricCallback, Trainer, TrainingConfig, make_estimator

#: command groups beside the core commands: each module ``boltzkit.cli.<name>`` has ``add_parser(sub)``
COMMAND_GROUPS = ("recommend", "sequence", "energy", "gan")
#: exact log-likelihood is logged during training when the hidden layer has at most this many units
LIVE_EXACT_HIDDEN = 20
#: rows of the training data used for the per-epoch metrics
MONITOR_ROWS = 1000


def _device(name: str | None) -> torch.device:
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise BoltzkitError(f"unknown device {name!r} (use cpu, cuda, cuda:0, …)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BoltzkitError("--device cuda was asked for but no CUDA device is available")
    return device


def load_data(path: str | None, key: str | None = None, binarize: str | None = None,
              label_column: int | None = None) -> np.ndarray:
    """Data for the command line: the embedded set when ``path`` is None, else a file."""
    if path is None:
        x, _ = datasets.load_default()
    else:
        x, _ = datasets.load_array(path, key, label_column=label_column)
    if binarize:
        if binarize == "stochastic":
            x = datasets.binarize(datasets.scale_to_unit(x), method="stochastic", seed=0)
        else:
            x = datasets.binarize(datasets.scale_to_unit(x), threshold=float(binarize))
    return datasets.validate_data(x)


def _metric_callbacks(rbm: RBM, x: torch.Tensor, epochs: int, valid: torch.Tensor | None = None,
                      every: int | None = None, betas: int = 1000, chains: int = 100,
                      seed: int = 0) -> tuple[list[Callback], str | None]:
    """Per-epoch metrics, and the name of the log-likelihood they record (None if none).

    The log-likelihood of the first 1,000 training rows (and of ``valid``, as
    ``valid_log_likelihood``) is exact when hidden ≤ 20, at an interval kept cheap unless
    ``every`` is given; larger models get AIS (``ais_log_likelihood`` with ``_low``/``_high``)
    only when asked for, by ``every`` or ``valid``.
    """
    subset = x[:MONITOR_ROWS]
    callbacks: list[Callback] = [MetricCallback("reconstruction_error", monitor.reconstruction_error, subset)]
    sets = {"": subset} if valid is None else {"": subset, "valid_": valid}
    if rbm.n_hidden <= LIVE_EXACT_HIDDEN and exact.is_tractable(rbm):
        # log Z costs 2^H·V operations; keep it to a few seconds per training run
        every = every or max(1, min(epochs, (2 ** rbm.n_hidden * rbm.visible.dim) // 2 ** 27))
        callbacks.append(monitor.ExactLikelihood({f"{p}log_likelihood": d for p, d in sets.items()}, every))
        name = "log_likelihood"
    elif every is not None or valid is not None:
        callbacks.append(monitor.AISLikelihood({f"{p}ais_log_likelihood": d for p, d in sets.items()},
                                               every or 1, n_betas=betas, n_chains=chains, seed=seed))
        name = "ais_log_likelihood"
    else:
        return callbacks, None
    return callbacks, name if valid is None else f"valid_{name}"


def _model_samples(rbm: RBM, n: int, steps: int, seed: int) -> np.ndarray:
    """Visible means after ``steps`` Gibbs sweeps from random starts p(v | h = 0)."""
    g = torch.Generator(rbm.weight.device).manual_seed(seed)
    with torch.no_grad():
        start = rbm.visible.sample(rbm.visible.bias.expand(n, -1), g)
        v = rbm.sample(start, steps, g)
        return rbm.visible_mean(rbm.sample_hidden(v, g)).cpu().numpy()


class _SaveEachEpoch(Callback):
    """Writes the checkpoint, with everything a bit-for-bit resume needs, after every epoch."""

    def __init__(self, out: Path, extra: dict[str, Any]) -> None:
        self.out, self.extra = out, extra

    def on_epoch_end(self, trainer, epoch, metrics):
        save_run(self.out, trainer, self.extra)


def save_run(out: Path, trainer: Trainer, extra: dict[str, Any]) -> None:
    tensors, state = trainer.training_state()
    checkpoint.save(out, trainer.model, extra={**extra, "epochs_done": trainer.epoch, "training_state": state},
            state=tensors)


def _layer_types(values: list[str] | None) -> tuple[int, str]:
    """``--hidden`` may be given as a count, a unit type, or both (``--hidden 100 --hidden relu``)."""
    count, kind = 20, "bernoulli"
    for value in values or []:
        if value.isdigit() or value.lstrip("-").isdigit():
            count = int(value)
        else:
            kind = value
    return count, kind


def prepare_data(x: np.ndarray, visible: str, standardise: dict[str, list[float]] | None = None
                 ) -> tuple[np.ndarray, dict[str, Any]]:
    """Data in the form the visible units take: one-hot for ``softmax:K`` (from integer codes
    0..K−1), standardised columns for ``gaussian`` (statistics returned for config.json)."""
    name, _, argument = visible.partition(":")
    if name == "softmax":
        k = int(argument or 0)
        codes = np.asarray(x)
        if k < 2 or not np.all((codes == np.round(codes)) & (codes >= 0) & (codes < k)):
            raise BoltzkitError(f"softmax:{argument} data must be integer codes 0..{k - 1} (one column per variable)")
        return np.eye(k, dtype=np.float32)[codes.astype(np.int64)].reshape(len(codes), -1), {}
    if name == "gaussian":
        if standardise is None:
            mean, std = x.mean(0), x.std(0)
            # floor: a near-constant column (an MNIST border pixel) must not blow up to 50σ
            std = np.maximum(std, 0.1 * std.mean()) if std.mean() > 0 else np.ones_like(std)
            standardise = {"mean": mean.tolist(), "std": std.tolist()}
        mean, std = np.asarray(standardise["mean"]), np.asarray(standardise["std"])
        if mean.shape[0] != x.shape[1]:
            raise BoltzkitError(f"data has {x.shape[1]} columns but the model has {mean.shape[0]} visible units")
        return ((x - mean) / std).astype(np.float32), {"standardise": standardise}
    return x, {}


def to_data_units(samples: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    """Undo :func:`prepare_data`'s standardisation so samples come back in data units."""
    if "standardise" in config:
        return samples * np.asarray(config["standardise"]["std"]) + np.asarray(config["standardise"]["mean"])
    return samples


def cmd_train(args: argparse.Namespace) -> int:
    device = _device(args.device)
    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    n_hidden, hidden_type = _layer_types(args.hidden)
    x_raw = load_data(args.data, args.key, args.binarize)
    resume_config, resume_tensors = None, None
    if args.resume:
        rbm, resume_config, resume_tensors = checkpoint.load_checkpoint(args.resume, device, kind=RBM,
                                                                        training_state=True)
        if "training_state" not in resume_config:
            raise BoltzkitError(f"{args.resume} holds no training state to resume from")
        x_np, data_info = prepare_data(x_raw, rbm.visible.spec(), resume_config.get("standardise"))
        saved = dict(resume_config["training"])
        saved["epochs"] = args.epochs
        if args.threads is not None:
            saved["threads"] = args.threads
        config = TrainingConfig.from_dict(saved)
    else:
        x_np, data_info = prepare_data(x_raw, args.visible)
        config = TrainingConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                momentum=args.momentum,
                                initial_momentum=(args.momentum if args.initial_momentum is None
                                                  else args.initial_momentum),
                                momentum_epochs=args.momentum_epochs, threads=args.threads,
                                weight_decay=args.weight_decay, method=args.method, k=args.k,
                                n_chains=args.chains, seed=args.seed, lr_schedule=args.lr_schedule,
                                centered=args.centered, replicas=args.replicas,
                                sparsity_target=args.sparsity_target, sparsity_cost=args.sparsity_cost,
                                sparsity_decay=args.sparsity_decay)
        n_visible = x_np.shape[1] // max(1, int(args.visible.partition(":")[2] or 1)) \
            if args.visible.startswith("softmax") else x_np.shape[1]
        rbm = RBM(n_visible, n_hidden, visible=args.visible, hidden=hidden_type, seed=args.seed,
                  dtype=dtype, device=device)
    x = torch.from_numpy(x_np).to(device, rbm.weight.dtype)
    rbm.check_data(x, args.data or "embedded data")
    valid = None
    if args.valid:
        valid_np, _ = prepare_data(load_data(args.valid, args.key, args.binarize), rbm.visible.spec(),
                                   data_info.get("standardise"))
        valid = torch.from_numpy(valid_np).to(device, rbm.weight.dtype)
        rbm.check_data(valid, args.valid)
    callbacks, watched = _metric_callbacks(rbm, x, config.epochs, valid, args.monitor_every,
                                           args.monitor_betas, args.monitor_chains, config.seed)
    early = None
    if args.early_stopping is not None:
        if watched is None:
            raise BoltzkitError("--early-stopping needs a monitored log-likelihood: give --valid FILE "
                                "or --monitor-every N")
        early = EarlyStopping(watched, args.early_stopping, args.min_delta, verbose=False)
        callbacks.append(early)  # after the metrics, before the checkpoint
    out = Path(args.out)
    extra = {"training": config.to_dict(), "data": args.data or "embedded:binarized_mnist_test", **data_info}
    trainer = Trainer(rbm, config, callbacks=callbacks + [_SaveEachEpoch(out, extra)],
                      progress=not args.quiet)
    if resume_config is not None:
        trainer.load_training_state(resume_tensors, resume_config["training_state"])
    status = 0
    try:
        trainer.fit(x)
    except DivergenceError as e:
        print(f"boltzkit: {e}", file=sys.stderr)
        status = 1
    if early is not None and early.message:
        print(f"boltzkit: {early.message}", file=sys.stderr)
    save_run(out, trainer, extra)
    checkpoint.write_metrics_csv(out / "metrics.csv", trainer.history)
    if trainer.history:
        plot.save_curves(trainer.history, out / "curves.png")
    if rbm.visible.kind in ("bernoulli", "gaussian", "spin"):
        plot.save_filters(rbm.weight.detach().cpu().numpy(), out / "filters.png")
        samples = to_data_units(_model_samples(rbm, 64, 1000, config.seed), data_info)
        plot.save_grid(samples, out / "samples.png", title="samples (1000 Gibbs sweeps)",
                       normalise=rbm.visible.kind != "bernoulli")
    last = trainer.history[-1] if trainer.history else {}
    summary = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k not in ("epoch", "lr"))
    print(f"wrote {out}/ (model.safetensors, config.json, metrics.csv, PNGs); {summary}")
    return status


def cmd_sample(args: argparse.Namespace) -> int:
    rbm, config, _ = checkpoint.load_checkpoint(args.model, _device(args.device), kind=RBM)
    samples = to_data_units(_model_samples(rbm, args.n, args.steps, args.seed), config)
    png = Path(args.png) if args.png else Path(args.model) / "samples.png"
    plot.save_grid(samples, png, title=f"{args.n} samples, {args.steps} Gibbs sweeps",
                   normalise=rbm.visible.kind != "bernoulli")
    if args.npy:
        buffer = _io.BytesIO()
        np.save(buffer, samples)
        checkpoint.atomic_write_bytes(Path(args.npy), buffer.getvalue())
    print(f"wrote {png}" + (f" and {args.npy}" if args.npy else ""))
    return 0


def evaluate(rbm: RBM, x: torch.Tensor, method: str = "auto", chains: int = 100,
             betas: int = 14500, seed: int = 0) -> dict[str, Any]:
    """Mean test log-likelihood (nats) with the method used, reconstruction error, PL."""
    if method == "auto":
        method = "exact" if exact.is_tractable(rbm) else "ais"
    result: dict[str, Any] = {"method": method, "n": int(x.shape[0])}
    if method == "exact":
        log_z = exact.log_partition(rbm)
        result.update(log_partition=log_z, log_likelihood=exact.log_likelihood(rbm, x, log_z))
    else:
        run = ais.ais if method == "ais" else ais.reverse_ais
        estimate = run(rbm, x, n_chains=chains, betas=betas, seed=seed)
        ll = ais.log_likelihood(rbm, x, estimate)
        result.update(log_partition=estimate.log_z,
                      log_partition_interval=[estimate.log_z_low, estimate.log_z_high],
                      log_likelihood=ll.mean, log_likelihood_interval=[ll.low, ll.high],
                      ess=estimate.ess, chains=chains, betas=estimate.n_betas)
    result["reconstruction_error"] = monitor.reconstruction_error(rbm, x)
    if rbm.visible.kind == "bernoulli":
        result["pseudo_log_likelihood"] = monitor.pseudo_log_likelihood(rbm, x)
    return result


def cmd_evaluate(args: argparse.Namespace) -> int:
    rbm, config, _ = checkpoint.load_checkpoint(args.model, _device(args.device), kind=RBM)
    x_np, _ = prepare_data(load_data(args.data, args.key, args.binarize), rbm.visible.spec(),
                           config.get("standardise"))
    x = torch.from_numpy(x_np).to(rbm.weight.device, rbm.weight.dtype)
    rbm.check_data(x, args.data)
    result = evaluate(rbm, x, args.method, args.chains, args.betas, args.seed)
    if "standardise" in config:
        # density of the data, not of the standardised data: log p(x) = log p(z) − Σ_i log σ_i
        shift = -float(np.log(np.asarray(config["standardise"]["std"])).sum())
        result["log_likelihood"] += shift
        if "log_likelihood_interval" in result:
            result["log_likelihood_interval"] = [v + shift for v in result["log_likelihood_interval"]]
        result["log_likelihood_units"] = "data units (standardisation Jacobian included)"
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value:.4f}" if isinstance(value, float) else f"{key:>24}: {value}")
    return 0


def cmd_gradcheck(args: argparse.Namespace) -> int:
    rbm, config, _ = checkpoint.load_checkpoint(args.model, _device(args.device), kind=RBM)
    x_np, _ = prepare_data(load_data(args.data, args.key, args.binarize), rbm.visible.spec(),
                           config.get("standardise"))
    x = torch.from_numpy(x_np[: args.rows]).to(rbm.weight.device, rbm.weight.dtype)
    rbm.check_data(x, args.data)
    if not exact.is_tractable(rbm):
        raise BoltzkitError("gradcheck needs the exact gradient: the smaller layer must have ≤ 25 units")
    chains = x.shape[0]
    estimators = {f"CD-{k}": make_estimator("cd", k) for k in args.k}
    estimators.update({"PCD-1": make_estimator("pcd", 1, chains), "FPCD-1": make_estimator("fpcd", 1, chains),
                       "PT-1 (10 replicas)": make_estimator("pt", 1, chains),
                       "centered PCD-1": make_estimator("pcd", 1, chains, centered=True)})
    result = gradcheck.gradient_quality(rbm, x, estimators, repeats=args.repeats, seed=args.seed,
                                        burn_in=args.burn_in)
    png = Path(args.png) if args.png else Path(args.model) / "gradcheck.png"
    gradcheck.plot_gradient_quality(result, png)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{'estimator':>20} {'|bias|':>10} {'variance':>10} {'cosine':>8}")
        for name, row in result.items():
            print(f"{name:>20} {row['bias_norm']:10.4g} {row['variance']:10.4g} {row['cosine']:8.3f}")
        print(f"wrote {png}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="boltzkit", description="Restricted Boltzmann machines.")
    parser.add_argument("--version", action="version", version=f"boltzkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def data_options(p: argparse.ArgumentParser, required: bool) -> None:
        p.add_argument("--data", required=required, metavar="FILE",
                       help="idx(.gz), .mat, .csv(.gz), .npy or .npz file" + ("" if required else
                            "; default: the embedded binarised MNIST test set"))
        p.add_argument("--key", help="array name inside a .mat/.npz file")
        p.add_argument("--binarize", metavar="THRESHOLD|stochastic",
                       help="binarise the data (pixels scaled to [0,1] first)")
        p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (default: auto)")

    t = sub.add_parser("train", help="train an RBM and write a checkpoint with pictures")
    data_options(t, required=False)
    t.add_argument("--hidden", action="append", metavar="N|TYPE",
                   help="hidden units (default 20) and/or their type: bernoulli (default), relu, spin; "
                        "repeat to give both, e.g. --hidden 100 --hidden relu")
    t.add_argument("--visible", default="bernoulli", metavar="TYPE",
                   help="bernoulli (default), spin, gaussian, gaussian:learned, softmax:K (data as codes 0..K-1)")
    t.add_argument("--resume", metavar="DIR", help="continue the run saved in DIR up to --epochs in total")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--batch-size", type=int, default=100)
    t.add_argument("--lr", type=float, default=0.05)
    t.add_argument("--momentum", type=float, default=TrainingConfig.momentum)
    t.add_argument("--initial-momentum", type=float, metavar="M",
                   help="momentum for the first --momentum-epochs epochs (Hinton's guide: 0.5, then 0.9)")
    t.add_argument("--momentum-epochs", type=int, default=0, metavar="E",
                   help="epochs run with --initial-momentum (default 0)")
    t.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads for the updates (default: 1 for small models, else torch's setting)")
    t.add_argument("--weight-decay", type=float, default=TrainingConfig.weight_decay)
    t.add_argument("--lr-schedule", choices=["linear", "constant"], default="linear",
                   help="linear decay to 0 over the planned epochs (default), or constant")
    t.add_argument("--method", choices=["cd", "pcd", "pt", "fpcd"], default="pcd",
                   help="negative phase: CD-k, persistent CD (default), parallel tempering, fast PCD")
    t.add_argument("--replicas", type=int, default=10, help="temperatures for --method pt")
    t.add_argument("--centered", action="store_true", help="centered gradient")
    t.add_argument("--sparsity-target", type=float, metavar="P",
                   help="target mean activity of the hidden units (Hinton's sparsity penalty; default off)")
    t.add_argument("--sparsity-cost", type=float, default=TrainingConfig.sparsity_cost, metavar="C",
                   help=f"weight of the sparsity penalty (default {TrainingConfig.sparsity_cost})")
    t.add_argument("--sparsity-decay", type=float, default=TrainingConfig.sparsity_decay, metavar="λ",
                   help=f"decay of the running activity estimate (default {TrainingConfig.sparsity_decay})")
    t.add_argument("--valid", metavar="FILE", help="validation data: its log-likelihood is logged "
                   "(valid_log_likelihood, or valid_ais_log_likelihood when hidden > 20)")
    t.add_argument("--monitor-every", type=int, metavar="N",
                   help="log the log-likelihood every N epochs: exact when hidden ≤ 20, else AIS "
                        "(default: exact at a cheap interval; AIS only with --valid, then every epoch)")
    t.add_argument("--monitor-betas", type=int, default=1000, metavar="T", help="AIS β values (default 1000)")
    t.add_argument("--monitor-chains", type=int, default=100, metavar="M", help="AIS chains (default 100)")
    t.add_argument("--early-stopping", type=int, metavar="PATIENCE",
                   help="stop when the monitored log-likelihood (validation if given) has not improved "
                        "for PATIENCE evaluations, and keep the best parameters")
    t.add_argument("--min-delta", type=float, default=0.0, help="smallest improvement that counts (nats)")
    t.add_argument("--k", type=int, default=1, help="Gibbs sweeps per update")
    t.add_argument("--chains", type=int, default=None, help="persistent chains (default: batch size)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--out", required=True, metavar="DIR")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="draw samples from a trained model")
    s.add_argument("model", metavar="DIR")
    s.add_argument("-n", type=int, default=64)
    s.add_argument("--steps", type=int, default=1000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--png", metavar="FILE", help="default: DIR/samples.png")
    s.add_argument("--npy", metavar="FILE")
    s.add_argument("--device", default="auto")
    s.set_defaults(func=cmd_sample)

    e = sub.add_parser("evaluate", help="test log-likelihood (exact or AIS), reconstruction, PL")
    e.add_argument("model", metavar="DIR")
    data_options(e, required=True)
    e.add_argument("--method", choices=["auto", "exact", "ais", "raise"], default="auto")
    e.add_argument("--chains", type=int, default=100)
    e.add_argument("--betas", type=int, default=14500)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_evaluate)

    g = sub.add_parser("gradcheck", help="bias, variance and cosine of CD/PCD/FPCD/PT gradients vs exact")
    g.add_argument("model", metavar="DIR")
    data_options(g, required=True)
    g.add_argument("--k", type=int, nargs="+", default=[1, 10], help="CD-k variants to compare")
    g.add_argument("--repeats", type=int, default=20)
    g.add_argument("--rows", type=int, default=1000, help="data rows used (default 1000)")
    g.add_argument("--burn-in", type=int, default=100, metavar="N",
                   help="warm-up updates of the persistent chains under the model before measuring (default 100)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--png", metavar="FILE", help="default: DIR/gradcheck.png")
    g.add_argument("--json", action="store_true")
    g.set_defaults(func=cmd_gradcheck)

    for group in COMMAND_GROUPS:
        if importlib.util.find_spec(f"{__package__}.{group}") is not None:
            importlib.import_module(f"{__package__}.{group}").add_parser(sub)
    return parser


def _check_positive(args: argparse.Namespace) -> None:
    if getattr(args, "hidden", None) is not None:
        n_hidden, _ = _layer_types(args.hidden)
        if n_hidden < 1:
            raise BoltzkitError(f"--hidden must be at least 1, got {n_hidden}")
    for name in ("epochs", "batch_size", "k", "chains", "n", "steps", "monitor_every", "monitor_chains",
                 "early_stopping", "threads"):
        value = getattr(args, name, None)
        value = min(value) if isinstance(value, list) else value
        if value is not None and value < 1:
            raise BoltzkitError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    for name in ("lr",):
        value = getattr(args, name, None)
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise BoltzkitError(f"--{name} must be a positive number, got {value}")
