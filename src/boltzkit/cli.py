"""The ``boltzkit`` command line: a thin layer over the library.

Every bad input ends in one line ``boltzkit: error: …`` on stderr and exit code 2, before
anything is written; a run that diverges keeps its last good checkpoint and exits with 1.
"""

from __future__ import annotations

import argparse
import csv
import io as _io
import json
import math
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from . import __version__, data as datasets, exact, io, monitor, plot
from .errors import BoltzkitError, DivergenceError
from .rbm import RBM
from .train import MetricCallback, Trainer, TrainingConfig

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


def _metric_callbacks(rbm: RBM, x: torch.Tensor, epochs: int) -> list[MetricCallback]:
    subset = x[:MONITOR_ROWS]
    callbacks = [MetricCallback("reconstruction_error", monitor.reconstruction_error, subset)]
    if rbm.n_hidden <= LIVE_EXACT_HIDDEN and exact.is_tractable(rbm):
        # log Z costs 2^H·V operations; keep it to a few seconds per training run
        every = max(1, min(epochs, (2 ** rbm.n_hidden * rbm.visible.dim) // 2 ** 27))
        callbacks.append(MetricCallback("log_likelihood", exact.log_likelihood, subset, every=every))
    return callbacks


def _write_metrics(path: Path, history: list[dict[str, float]]) -> None:
    keys = list(dict.fromkeys(k for row in history for k in row))
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    io.atomic_write_text(path, buffer.getvalue())


def _model_samples(rbm: RBM, n: int, steps: int, seed: int) -> np.ndarray:
    """Visible means after ``steps`` Gibbs sweeps from random starts p(v | h = 0)."""
    g = torch.Generator(rbm.weight.device).manual_seed(seed)
    with torch.no_grad():
        start = rbm.visible.sample(rbm.visible.bias.expand(n, -1), g)
        v = rbm.sample(start, steps, g)
        return rbm.visible_mean(rbm.sample_hidden(v, g)).cpu().numpy()


def cmd_train(args: argparse.Namespace) -> int:
    device = _device(args.device)
    x_np = load_data(args.data, args.key, args.binarize)
    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    config = TrainingConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                            momentum=args.momentum, initial_momentum=args.momentum,
                            weight_decay=args.weight_decay, method=args.method, k=args.k,
                            n_chains=args.chains, seed=args.seed)
    rbm = RBM(x_np.shape[1], args.hidden, seed=args.seed, dtype=dtype, device=device)
    x = torch.from_numpy(x_np).to(device, dtype)
    rbm.check_data(x, args.data or "embedded data")
    out = Path(args.out)
    trainer = Trainer(rbm, config, callbacks=_metric_callbacks(rbm, x, config.epochs),
                      progress=not args.quiet)
    extra = {"training": config.to_dict(), "data": args.data or "embedded:binarized_mnist_test"}
    status = 0
    try:
        trainer.fit(x)
    except DivergenceError as e:
        print(f"boltzkit: {e}", file=sys.stderr)
        status = 1
    io.save(out, rbm, extra={**extra, "epochs_done": trainer.epoch})
    _write_metrics(out / "metrics.csv", trainer.history)
    if trainer.history:
        plot.save_curves(trainer.history, out / "curves.png")
    if rbm.visible.kind == "bernoulli" or rbm.visible.kind.startswith("gauss"):
        plot.save_filters(rbm.weight.detach().cpu().numpy(), out / "filters.png")
        plot.save_grid(_model_samples(rbm, 64, 1000, args.seed), out / "samples.png",
                       title="samples (1000 Gibbs sweeps)", normalise=False)
    last = trainer.history[-1] if trainer.history else {}
    summary = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k not in ("epoch", "lr"))
    print(f"wrote {out}/ (model.safetensors, config.json, metrics.csv, PNGs); {summary}")
    return status


def cmd_sample(args: argparse.Namespace) -> int:
    rbm, _, _ = io.load(args.model, device=_device(args.device))
    samples = _model_samples(rbm, args.n, args.steps, args.seed)
    png = Path(args.png) if args.png else Path(args.model) / "samples.png"
    plot.save_grid(samples, png, title=f"{args.n} samples, {args.steps} Gibbs sweeps", normalise=False)
    if args.npy:
        buffer = _io.BytesIO()
        np.save(buffer, samples)
        io.atomic_write_bytes(Path(args.npy), buffer.getvalue())
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
        from . import ais  # AIS lands with its own module

        result.update(ais.evaluate(rbm, x, method=method, n_chains=chains, n_betas=betas, seed=seed))
    result["reconstruction_error"] = monitor.reconstruction_error(rbm, x)
    if rbm.visible.kind == "bernoulli":
        result["pseudo_log_likelihood"] = monitor.pseudo_log_likelihood(rbm, x)
    return result


def cmd_evaluate(args: argparse.Namespace) -> int:
    rbm, _, _ = io.load(args.model, device=_device(args.device))
    x = torch.from_numpy(load_data(args.data, args.key, args.binarize)).to(rbm.weight.device, rbm.weight.dtype)
    rbm.check_data(x, args.data)
    result = evaluate(rbm, x, args.method, args.chains, args.betas, args.seed)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value:.4f}" if isinstance(value, float) else f"{key:>24}: {value}")
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
    t.add_argument("--hidden", type=int, default=20, help="hidden units (default 20)")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--batch-size", type=int, default=100)
    t.add_argument("--lr", type=float, default=0.05)
    t.add_argument("--momentum", type=float, default=TrainingConfig.momentum)
    t.add_argument("--weight-decay", type=float, default=TrainingConfig.weight_decay)
    t.add_argument("--method", choices=["cd", "pcd"], default="pcd")
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
    return parser


def _check_positive(args: argparse.Namespace) -> None:
    for name in ("hidden", "epochs", "batch_size", "k", "chains", "n", "steps"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise BoltzkitError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    for name in ("lr",):
        value = getattr(args, name, None)
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise BoltzkitError(f"--{name} must be a positive number, got {value}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _check_positive(args)
        return args.func(args)
    except BoltzkitError as e:
        print(f"boltzkit: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
