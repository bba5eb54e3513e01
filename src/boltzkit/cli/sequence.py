"""``boltzkit sequence train|evaluate|diagnose``: recurrent next-step models of piano rolls.

Thin over :mod:`boltzkit.models.sequence` and :mod:`boltzkit.data.music`.  ``train`` fits an RNN
or LSTM with sigmoid outputs to predict each frame from the previous ones, with early stopping
on the validation split, and writes a checkpoint (the common format), ``metrics.csv``,
``curves.png`` and ``test_metrics.json``.  ``evaluate`` prints the negative log-likelihood per
time step (nats, pooled over all frames) and the frame accuracy TP/(TP+FP+FN).  ``diagnose``
plots ‖∂s_t/∂s_k‖₂ against the lag with the bound (β_W β_s)^{t−k}.  Bad input exits 2 with one
line, before anything is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from .. import checkpoint, plot
from ..data.music import N_NOTES, load_music
from ..errors import BoltzkitError, DataError, DivergenceError
from ..models.sequence import (LSTM, RNN, SequenceBatches, SequenceModel, evaluate_sequences, fit_sequences,
                               gradient_flow, plot_gradient_flow)
from ..training import Callback
from ..training.threads import torch_threads


def _splits(path: str, frames_per_beat: int) -> dict[str, list]:
    return load_music(path, frames_per_beat)


def _source(rolls: list, name: str) -> SequenceBatches:
    return SequenceBatches([torch.from_numpy(r.astype("float32")) for r in rolls], name=name)


def _pick(splits: dict[str, list], split: str, path: str) -> list:
    if split not in splits:
        raise DataError(f"{path} has no {split!r} split (it has {', '.join(splits)})")
    return splits[split]


def _load_model(directory: str) -> tuple[SequenceModel, dict[str, Any]]:
    model, config, _ = checkpoint.load_checkpoint(directory, "cpu", kind=SequenceModel)
    return model, config


class _SaveEachEpoch(Callback):
    """The model after every epoch (a crash leaves the last finished epoch loadable)."""

    def __init__(self, out: Path, extra: dict[str, Any]) -> None:
        self.out, self.extra = out, extra

    def on_epoch_end(self, trainer, epoch, metrics):
        checkpoint.save(self.out, trainer.model, extra={**self.extra, "epochs_done": epoch})


def cmd_train(args: argparse.Namespace) -> int:
    out = checkpoint.check_output_directory(args.out)
    frames = 1 if args.frames_per_beat is None else args.frames_per_beat
    splits = _splits(args.data, frames)
    train = _source(_pick(splits, args.split, args.data), f"{args.data} [{args.split}]")
    valid = None
    if args.valid_split != "none":
        if args.valid_split in splits:
            valid = _source(splits[args.valid_split], f"{args.data} [{args.valid_split}]")
        elif args.valid_split != "valid":
            raise DataError(f"{args.data} has no {args.valid_split!r} split (it has {', '.join(splits)})")
    common = dict(output="sigmoid", loss="cross_entropy", task="next_step", seed=args.seed)
    if args.model == "rnn":
        model: SequenceModel = RNN(N_NOTES, args.n_hidden, activation=args.activation, init=args.init, **common)
    else:
        if args.activation != "tanh" or args.init != "uniform":
            raise BoltzkitError("--activation and --init are options of --model rnn")
        model = LSTM(N_NOTES, args.n_hidden, **common)
    if args.method == "bptt" and args.model != "rnn":
        raise BoltzkitError("--method bptt (explicit back-propagation through time) is written for --model rnn")
    extra = {"data": str(args.data), "split": args.split, "frames_per_beat": frames,
             "training": {k: getattr(args, k) for k in ("epochs", "batch_size", "lr", "optimizer", "clip", "method",
                                                        "truncation", "patience", "seed")}}
    status = 0
    try:
        trainer = fit_sequences(model, train, valid, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                optimizer=args.optimizer, clip=args.clip, method=args.method,
                                truncation=args.truncation, patience=args.patience if valid is not None else None,
                                seed=args.seed, threads=args.threads, progress=not args.quiet,
                                callbacks=[_SaveEachEpoch(out, extra)])
        history = trainer.history
    except DivergenceError as e:
        print(f"boltzkit: {e}", file=sys.stderr)
        history, status = [], 1
    result: dict[str, Any] = {}
    with torch_threads(args.threads):
        for split in ("valid", "test"):
            if split in splits:
                metrics = evaluate_sequences(model, _source(splits[split], split))
                result[split] = {"nll_per_step": metrics["nll_per_step"],
                                 "frame_accuracy": metrics["frame_accuracy"], "frames": metrics["frames"]}
    checkpoint.save(out, model, extra={**extra, "epochs_done": len(history), "result": result})
    if history:
        checkpoint.write_metrics_csv(out / "metrics.csv", history)
        plot.save_curves(history, out / "curves.png")
    checkpoint.atomic_write_text(out / "test_metrics.json", json.dumps(result, indent=2) + "\n")
    summary = "; ".join(f"{s}: NLL {r['nll_per_step']:.3f} nats/step, frame accuracy {r['frame_accuracy']:.3f}"
                        for s, r in result.items())
    print(f"wrote {out}/ (model.safetensors, config.json, metrics.csv, curves.png, test_metrics.json); {summary}")
    return status


def cmd_evaluate(args: argparse.Namespace) -> int:
    model, config = _load_model(args.model)
    frames = config.get("frames_per_beat", 1) if args.frames_per_beat is None else args.frames_per_beat
    data = _source(_pick(_splits(args.data, frames), args.split, args.data), f"{args.data} [{args.split}]")
    model.check_source(data, f"{args.data} [{args.split}]")
    with torch_threads(args.threads):
        metrics = evaluate_sequences(model, data)
    result = {"nll_per_step": metrics["nll_per_step"], "frame_accuracy": metrics.get("frame_accuracy"),
              "frames": int(metrics["frames"]), "sequences": len(data), "split": args.split,
              "model": config.get("model")}
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>15}: {value:.4f}" if isinstance(value, float) else f"{key:>15}: {value}")
    return 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    model, config = _load_model(args.model)
    frames = config.get("frames_per_beat", 1) if args.frames_per_beat is None else args.frames_per_beat
    rolls = _pick(_splits(args.data, frames), args.split, args.data)
    if not 0 <= args.index < len(rolls):
        raise BoltzkitError(f"--index must be in 0..{len(rolls) - 1}, got {args.index}")
    roll = rolls[args.index][:args.steps] if args.steps else rolls[args.index]
    data = _source([roll], f"{args.data} [{args.split}]")
    model.check_source(data, f"{args.data} [{args.split}]")
    png = Path(args.png) if args.png else Path(args.model) / "diagnostics.png"
    checkpoint.check_output_directory(png.parent)
    with torch_threads(args.threads):
        flow = gradient_flow(model, data.all(), max_lag=args.max_lag, stride=args.stride)
    plot_gradient_flow(flow, png, title=f"{config.get('model')} on {Path(args.data).name} [{args.split}] "
                                        f"sequence {args.index} ({roll.shape[0]} steps)")
    summary = flow.to_dict()
    if args.json:
        print(json.dumps(summary))
    else:
        b = f"β_W = {flow.beta_w:.4g}, β_s = {flow.beta_s:g}; " if flow.beta_w is not None else ""
        print(f"wrote {png}; {b}mean ‖∂s_t/∂s_k‖₂ at lag 1: {summary['norm_mean_by_lag'][1]:.4g}, "
              f"at lag {len(summary['norm_mean_by_lag']) - 1}: {summary['norm_mean_by_lag'][-1]}")
    return 0


def add_parser(sub: Any) -> None:
    """Register ``boltzkit sequence …``."""
    p = sub.add_parser("sequence", help="recurrent networks (RNN, LSTM) on piano rolls")
    seq = p.add_subparsers(dest="sequence_command", required=True)

    def data_options(q: argparse.ArgumentParser) -> None:
        q.add_argument("--data", required=True, metavar="FILE",
                       help="piano rolls: .mat (traindata/validdata/testdata), .json note lists, a .mid file "
                            "or a directory of MIDI files (needs mido)")
        q.add_argument("--frames-per-beat", type=int, default=None, metavar="N",
                       help="MIDI only: frames per quarter note (default 1, or what the model was trained with)")
        q.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")

    t = seq.add_parser("train", help="train a next-step RNN or LSTM with sigmoid outputs, early stopping")
    data_options(t)
    t.add_argument("--model", choices=("rnn", "lstm"), default="rnn", help="cell (default rnn)")
    t.add_argument("--hidden", dest="n_hidden", type=int, default=100, metavar="N",
                   help="hidden units (default 100)")
    t.add_argument("--activation", choices=("tanh", "relu"), default="tanh", help="RNN activation (default tanh)")
    t.add_argument("--init", choices=("uniform", "identity"), default="uniform",
                   help="RNN recurrent weights: uniform(±1/√H) or identity (IRNN) (default uniform)")
    t.add_argument("--split", default="train", help="training split (default train)")
    t.add_argument("--valid-split", default="valid",
                   help="split for early stopping, or 'none' (default valid, when the file has one)")
    t.add_argument("--epochs", type=int, default=200, help="most epochs (default 200)")
    t.add_argument("--patience", type=int, default=10,
                   help="stop after this many epochs without a better validation NLL (default 10)")
    t.add_argument("--batch-size", type=int, default=8, help="sequences per update (default 8)")
    t.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 0.001)")
    t.add_argument("--optimizer", choices=("adam", "rmsprop", "sgd"), default="adam", help="default adam")
    t.add_argument("--clip", type=float, default=None, help="gradient-norm clipping threshold (default none)")
    t.add_argument("--method", choices=("autograd", "bptt"), default="autograd",
                   help="gradient: autograd through the fused kernel, or the explicit BPTT loop (rnn; slower) "
                        "(default autograd)")
    t.add_argument("--truncation", type=int, default=None,
                   help="truncated BPTT length (with --method bptt; default none: full)")
    t.add_argument("--seed", type=int, default=0, help="seed of initialisation and data order (default 0)")
    t.add_argument("--quiet", action="store_true", help="no progress bar (default: shown)")
    t.add_argument("--out", required=True, metavar="DIR", help="checkpoint directory")
    t.set_defaults(func=cmd_train)

    e = seq.add_parser("evaluate", help="NLL per time step and frame accuracy of a trained model")
    e.add_argument("model", metavar="DIR", help="checkpoint directory written by 'sequence train'")
    data_options(e)
    e.add_argument("--split", default="test", help="split to evaluate (default test)")
    e.add_argument("--json", action="store_true", help="print one JSON object (default: a table)")
    e.set_defaults(func=cmd_evaluate)

    d = seq.add_parser("diagnose", help="plot ‖∂s_t/∂s_k‖₂ against the lag with the bound (β_W β_s)^(t−k)")
    d.add_argument("model", metavar="DIR", help="checkpoint directory written by 'sequence train'")
    data_options(d)
    d.add_argument("--split", default="test", help="split to take the sequence from (default test)")
    d.add_argument("--index", type=int, default=0, help="which sequence of the split (default 0)")
    d.add_argument("--steps", type=int, default=None, help="use only its first N steps (default all)")
    d.add_argument("--max-lag", type=int, default=None, help="largest lag t − k measured (default all)")
    d.add_argument("--stride", type=int, default=1, help="measure from every stride-th k (default 1)")
    d.add_argument("--png", metavar="FILE", help="plot file (default DIR/diagnostics.png)")
    d.add_argument("--json", action="store_true", help="print the per-lag numbers as JSON")
    d.set_defaults(func=cmd_diagnose)
