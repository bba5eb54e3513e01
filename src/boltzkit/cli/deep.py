"""Deep models on the command line: what ``boltzkit train|sample|evaluate`` run for
``--model dbn|dbm`` (the core commands call these functions; see docs/deep.md).

- :func:`train_deep` — ``boltzkit train --model dbn|dbm --hidden 500,1000 [--labels FILE] --out DIR``:
  a DBN is trained greedily (``--pretrain-epochs`` per layer, default ``--epochs``) and, with
  ``--labels``, fine-tuned as a classifier (``--finetune-epochs``, ``--finetune-lr``); a DBM is
  pre-trained greedily (``--pretrain-epochs``, 0 skips it) and then trained by PCD for
  ``--epochs``, checkpointed after every epoch with its chains, so ``--resume DIR`` continues
  it bit for bit (the layer sizes and settings come from the checkpoint; ``--hidden`` may be left out).
- :func:`sample_deep` — samples of a DBN / DBM checkpoint as a PNG (and ``--npy``).
- :func:`evaluate_deep` — the mean test log-likelihood in nats with the keys of the RBM path.

Every bad input raises a :class:`~boltzkit.errors.BoltzkitError` before anything is written.
"""

from __future__ import annotations

import argparse
import io as _io
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import checkpoint, plot
from ..data import formats
from ..errors import ConfigurationError, DataError, DivergenceError
from ..evaluation import deep
from ..models.base import check_training_data
from ..models.dbn import DBN, DBNNet
from ..models.deep_boltzmann import DBM
from ..models.units import make_units
from ..training import Trainer, TrainingConfig, distributed
from . import common
from .core import _new_config, flag_conflicts, load_data, parse_binarize, resample_conflict, save_run

#: the model kinds of ``--model`` this module trains
KINDS = ("dbn", "dbm")


def parse_layer_sizes(values: list[str] | str | None, flag: str = "--hidden") -> tuple[list[int], str]:
    """``--hidden 500,1000`` (or repeated ``--hidden 500 --hidden 1000``, plus an optional unit
    type such as ``--hidden relu`` for a DBN) → ([500, 1000], "bernoulli")."""
    if values is None:
        raise ConfigurationError(f"{flag} is required for a deep model: the hidden layer sizes, e.g. {flag} 500,1000")
    if isinstance(values, str):
        values = [values]
    sizes, kind = [], "bernoulli"
    for value in values:
        for part in str(value).split(","):
            part = part.strip()
            if not part:
                raise ConfigurationError(f"{flag} {value!r}: empty layer size (write e.g. 500,1000)")
            if part.lstrip("+-").isdigit():
                n = int(part)
                if n < 1:
                    raise ConfigurationError(f"{flag}: every layer needs at least 1 unit, got {n}")
                sizes.append(n)
            else:
                try:
                    make_units(part, 1)
                except (ConfigurationError, ValueError) as e:
                    raise ConfigurationError(f"{flag} {part}: {e}") from None
                kind = part
    if not sizes:
        raise ConfigurationError(f"{flag} gives no layer sizes; write e.g. {flag} 500,1000")
    return sizes, kind


def load_labels(path: str, rows: int, flag: str = "--labels") -> np.ndarray:
    """Integer class labels, one per data row: an idx labels file, a 1-D (or one-column) .npy
    array, or a one-column table."""
    common.input_file(path, flag)
    raw = Path(path).read_bytes()
    try:
        content = formats._gunzip(raw, Path(path))
        if formats._looks_like_idx(content):
            y = np.asarray(formats.load_idx(path)).reshape(-1)
        elif content.startswith(b"\x93NUMPY") and raw.startswith(b"\x93NUMPY"):
            y = formats.load_npy(path)
            if y.ndim == 2 and y.shape[1] == 1:
                y = y.reshape(-1)
            if y.ndim != 1 or y.dtype.kind not in "biuf":
                raise DataError(f"holds an array of shape {y.shape} and dtype {y.dtype}; expected one number "
                                "per data row")
        else:
            x, _ = formats.load_array(path)
            if x.shape[1] != 1:
                raise DataError(f"has {x.shape[1]} columns; expected one label per line")
            y = x.reshape(-1)
    except DataError as e:
        raise DataError(f"{flag} {path}: {e}") from None
    if y.shape[0] != rows:
        raise DataError(f"{flag} {path}: {y.shape[0]} labels for {rows} data rows")
    if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)) or y.min() < 0:
        raise DataError(f"{flag} {path}: labels must be non-negative integers (class indices)")
    return y.astype(np.int64)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``train`` options only deep models use (for the core parser to add)."""
    parser.add_argument("--labels", metavar="FILE",
                        help="--model dbn: class labels of the training rows (idx or one column); fine-tunes "
                             "the DBN as a classifier after the greedy training (default: no fine-tuning)")
    parser.add_argument("--pretrain-epochs", type=int, metavar="E",
                        help="epochs of each greedily trained RBM (DBN layers, DBM pre-training; 0 skips the "
                             "DBM's pre-training; default: --epochs)")
    parser.add_argument("--finetune-epochs", type=int, metavar="E",
                        help="epochs of DBN fine-tuning with --labels (default: --epochs)")
    parser.add_argument("--finetune-lr", type=float, metavar="LR", help="learning rate of fine-tuning (default 0.1)")
    parser.add_argument("--mean-field-steps", type=int, metavar="N",
                        help="mean-field sweeps of the DBM's positive phase (default 10)")


def _option(args: argparse.Namespace, name: str, default: Any) -> Any:
    value = getattr(args, name, None)
    return default if value is None else value


class _Timed:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __str__(self) -> str:
        return f"{time.perf_counter() - self.start:.1f} s"


def train_deep(args: argparse.Namespace) -> int:
    """``boltzkit train --model dbn|dbm``: see the module docstring; returns the exit status."""
    kind = common_kind(args)
    device = common.device(getattr(args, "device", None))
    out = common.output_directory(args.out, "--out")
    resume = getattr(args, "resume", None)
    if resume and kind != "dbm":
        raise ConfigurationError("--resume continues a DBM run; a DBN is trained layer by layer in one go")
    typed_sizes = getattr(args, "hidden", None)
    sizes: list[int] | None = None  # a resumed DBM without --hidden: its own layers, once it is read
    hidden_type = "bernoulli"
    if typed_sizes is not None or not resume:
        sizes, hidden_type = parse_layer_sizes(typed_sizes)
    dtype = torch.float64 if _option(args, "dtype", "float32") == "float64" else torch.float32
    labels_path = getattr(args, "labels", None)
    if labels_path and kind != "dbn":
        raise ConfigurationError("--labels fine-tunes a DBN; a DBM is trained without labels (use --model dbn)")
    if kind == "dbm" and hidden_type != "bernoulli":
        raise ConfigurationError(f"a DBM has bernoulli units on every layer; --hidden {hidden_type} is not supported")
    visible = _option(args, "visible", "bernoulli")
    if kind == "dbm" and visible != "bernoulli":
        raise ConfigurationError(f"a DBM has bernoulli visible units; --visible {visible} is not supported")
    for name in ("pretrain_epochs",):
        common.positive(f"--{name.replace('_', '-')}", getattr(args, name, None), least=0)
    for name in ("finetune_epochs", "mean_field_steps"):
        common.positive(f"--{name.replace('_', '-')}", getattr(args, name, None))
    finetune_lr = float(_option(args, "finetune_lr", 0.1))
    if not finetune_lr > 0 or not np.isfinite(finetune_lr):
        raise ConfigurationError(f"--finetune-lr must be a positive number, got {finetune_lr}")
    resumed = common.resumable(resume, device, DBM) if resume else None  # read once: sizes, settings, state
    if sizes is None:
        sizes = list(resumed[0].sizes[1:])
    saved_resample = resumed is not None and resumed[1]["training"].get("sample_data")
    x_np = load_data(getattr(args, "data", None), getattr(args, "key", None),
                     parse_binarize(getattr(args, "binarize", None), training=True)
                     or ("resample" if saved_resample else None))
    y = load_labels(labels_path, x_np.shape[0]) if labels_path else None
    progress = not getattr(args, "quiet", False)
    timer = _Timed()
    data_name = getattr(args, "data", None) or "embedded:binarized_mnist_test"

    if kind == "dbn":
        config = _new_config(args)
        units = [visible] + [hidden_type] * len(sizes)
        dbn = DBN([x_np.shape[1], *sizes], units, seed=config.seed, dtype=dtype, device=device)
        x = torch.from_numpy(np.ascontiguousarray(x_np)).to(device, dtype)
        check_training_data(dbn, x, config, f"--data {data_name}")
        layer_config = TrainingConfig.from_dict({**config.to_dict(),
                                                 "epochs": int(_option(args, "pretrain_epochs", config.epochs))})
        if layer_config.epochs < 1:
            raise ConfigurationError("--pretrain-epochs must be at least 1 for a DBN (its layers are its training)")
        histories = dbn.fit(x, layer_config, progress=progress)
        history = [{"stage": f"layer {i + 1}", **row} for i, h in enumerate(histories) for row in h]
        model: Any = dbn
        extra: dict[str, Any] = {"training": layer_config.to_dict(), "data": data_name}
        if y is not None:
            net = dbn.network(int(y.max()) + 1, seed=config.seed)
            tune = TrainingConfig(epochs=int(_option(args, "finetune_epochs", config.epochs)), lr=finetune_lr,
                                  momentum=0.9, weight_decay=0.0, batch_size=config.batch_size, seed=config.seed,
                                  threads=config.threads)
            tuned = net.fit(x, torch.from_numpy(y), tune, progress=progress)
            error = float((net.predict(x).cpu().numpy() != y).mean())
            history += [{"stage": "fine-tune", **row} for row in tuned]
            history[-1]["train_error"] = error
            extra.update(finetune=tune.to_dict(), labels=labels_path, train_error=error)
            model = net
        if distributed.is_main():
            checkpoint.save(out, model, extra=extra)
        status = 0
    else:
        if resumed is not None:
            model, saved, state = resumed
            typed_hidden = ",".join(map(str, sizes)) if getattr(args, "hidden", None) is not None else None
            common.refuse_conflicts(
                flag_conflicts(args, saved["training"]) + resample_conflict(args, saved["training"])
                + common.contradiction("--hidden", typed_hidden, ",".join(map(str, model.sizes[1:])))
                + common.contradiction("--mean-field-steps", getattr(args, "mean_field_steps", None),
                                       model.mean_field_steps)
                + common.contradiction("--dtype", getattr(args, "dtype", None),
                                       str(model.weights[0].dtype).removeprefix("torch.")))
            config = TrainingConfig.from_dict({**saved["training"], "epochs": args.epochs})
            x = torch.from_numpy(np.ascontiguousarray(x_np)).to(device, model.weights[0].dtype)
            check_training_data(model, x, config, f"--data {data_name}")
            history: list[dict[str, Any]] = []
            extra = {k: saved[k] for k in ("training", "data", "pretraining") if k in saved}
            extra["training"] = config.to_dict()
        else:
            config = _new_config(args)
            model = DBM(x_np.shape[1], sizes, mean_field_steps=int(_option(args, "mean_field_steps", 10)),
                        seed=config.seed, dtype=dtype, device=device)
            x = torch.from_numpy(np.ascontiguousarray(x_np)).to(device, dtype)
            check_training_data(model, x, config, f"--data {data_name}")
            pre_epochs = int(_option(args, "pretrain_epochs", config.epochs))
            history = []
            pre_config = None
            if pre_epochs > 0:
                pre_config = TrainingConfig.from_dict({**config.to_dict(), "epochs": pre_epochs, "centered": False})
                histories = model.pretrain(x, pre_config, progress=progress)
                config = TrainingConfig.from_dict({**config.to_dict(), "init_visible_bias": False})  # keep b_0
                history = [{"stage": f"pre-training RBM {i + 1}", **row} for i, h in enumerate(histories) for row in h]
            extra = {"training": config.to_dict(), "data": data_name,
                     "pretraining": pre_config.to_dict() if pre_config else None}
        trainer = Trainer(model, config, callbacks=[common.SaveEachEpoch(out, extra)], progress=progress)
        if resumed is not None:
            trainer.load_training_state(state, saved["training_state"])
        status = 0
        try:
            trainer.fit(x)
        except DivergenceError as e:
            print(f"boltzkit: {e}", file=sys.stderr)
            status = 1
        save_run(out, trainer, extra)
        history += [{"stage": "DBM", **row} for row in trainer.history]
    if not distributed.is_main():  # on several processes rank 0 writes the files
        return status
    if history:
        checkpoint.write_metrics_csv(out / "metrics.csv", history)
    base = model.dbn if isinstance(model, DBNNet) else model
    seed = int(_option(args, "seed", 0))
    plot.save_grid(_samples(base, 64, 1000, seed), out / "samples.png", kind="probabilities",
                   title=f"{kind.upper()} samples (1000 Gibbs sweeps, then E[v | h¹])")
    plot.save_filters(base.rbms[0].weight.detach().cpu().numpy() if isinstance(base, DBN)
                      else base.weights[0].detach().cpu().numpy(), out / "filters.png")
    what = {"dbn": "DBN", "dbm": "DBM"}[kind]
    extra_line = f", training error {history[-1]['train_error']:.4f}" if y is not None else ""
    print(f"wrote {out}/ ({what} {[x_np.shape[1], *sizes]}: model.safetensors, config.json, metrics.csv, PNGs) "
          f"in {timer}{extra_line}")
    return status


def common_kind(args: argparse.Namespace) -> str:
    kind = getattr(args, "model", None)
    if kind not in KINDS:
        raise ConfigurationError(f"--model must be one of {', '.join(KINDS)} for a deep model, got {kind!r}")
    return kind


def _samples(model: Any, n: int, steps: int, seed: int) -> np.ndarray:
    device = model.rbms[0].weight.device if isinstance(model, DBN) else model.weights[0].device
    generator = torch.Generator(device).manual_seed(seed)
    return model.sample(n, steps, generator).cpu().numpy()


def sample_deep(model: Any, config: dict[str, Any], args: argparse.Namespace) -> int:
    """``boltzkit sample DIR`` for a DBN / DBM checkpoint: ``-n`` samples after ``--steps`` Gibbs
    sweeps (in the top RBM for a DBN, over all layers for a DBM), shown as E[v | h¹]."""
    png = common.output_file(getattr(args, "png", None) or Path(args.model) / "samples.png", "--png")
    npy = common.output_file(args.npy, "--npy") if getattr(args, "npy", None) else None
    base = model.dbn if isinstance(model, DBNNet) else model
    if not isinstance(base, (DBN, DBM)):
        raise ConfigurationError(f"sample_deep takes a DBN or DBM checkpoint, got {config.get('model')!r}")
    n, steps, seed = int(_option(args, "n", 64)), int(_option(args, "steps", 1000)), int(_option(args, "seed", 0))
    common.positive("-n", n)
    common.positive("--steps", steps, least=0)
    samples = _samples(base, n, steps, seed)
    plot.save_grid(samples, png, kind="probabilities",
                   title=f"{n} {base.checkpoint_kind} samples after {steps} Gibbs sweeps")
    if npy is not None:
        buffer = _io.BytesIO()
        np.save(buffer, samples)
        checkpoint.atomic_write_bytes(npy, buffer.getvalue())
    print(f"wrote {png}" + (f" and {npy}" if npy else "") + " (E[v | h¹], probabilities)")
    return 0


def evaluate_deep(model: Any, x: torch.Tensor, method: str = "auto", chains: int = 100, betas: int = 14500,
                  seed: int = 0) -> dict[str, Any]:
    """``boltzkit evaluate DIR`` for a DBN / DBM: :func:`boltzkit.evaluation.deep.evaluate`
    (keys ``log_likelihood``, ``log_partition``, ``log_partition_interval``, ``method``, …)."""
    base = model.dbn if isinstance(model, DBNNet) else model
    if not isinstance(base, (DBN, DBM)):
        raise ConfigurationError(f"evaluate_deep takes a DBN or DBM, got {type(model).__name__}")
    common.positive("--chains", chains)
    common.positive("--betas", betas, least=2)
    w = base.rbms[0].weight if isinstance(base, DBN) else base.weights[0]
    x = torch.as_tensor(x).to(w.device, w.dtype)
    return deep.evaluate(base, x, method, chains, betas, seed)


__all__ = ["train_deep", "sample_deep", "evaluate_deep", "parse_layer_sizes", "load_labels", "add_train_arguments",
           "KINDS"]
