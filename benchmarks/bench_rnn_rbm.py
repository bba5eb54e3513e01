"""RNN-RBM and RTRBM on polyphonic music (Boulanger-Lewandowski, Bengio & Vincent 2012): test NLL per
time step pooled over all test frames (nats; each step's log Z by AIS, with the interval NLL ± 3 s.e.
over the independent per-step AIS runs) and frame accuracy TP/(TP+FP+FN), next to the published
RNN-RBM 6.27 / RTRBM 6.35.

Bounded: each model trains for at most ``--seconds`` (wall clock, 1 thread), with CD-k per step +
BPTT (Adam), optional RBM pre-training, and early stopping on the validation NLL of the first
``--valid-pieces`` validation pieces (cheap AIS: ``--valid-ais-betas``); the best evaluation is
kept.  AIS underestimates log Z in expectation, so a short schedule makes the NLL optimistic:
``--check-betas`` re-scores the first test pieces with a longer schedule to show the size of that
bias.  ``--test-frames F`` scores only the first test pieces (published order) up to at least F
frames, a fixed subset for the sets whose test split is too long to score within the budget;
``--save-dir`` keeps each trained model as a checkpoint (``boltzkit sequence generate DIR``).
``--models`` may also name the frame-level ``rnn`` and ``lstm`` baselines of
``bench_music_rnn.py`` (sigmoid outputs, exact NLL; Adam ``--baseline-lr``, early stopping on the
whole validation split), scored on the same test frames as the RNN-RBMs.

    OMP_NUM_THREADS=1 python benchmarks/bench_rnn_rbm.py
    OMP_NUM_THREADS=1 python benchmarks/bench_rnn_rbm.py --models rnn-rbm rtrbm rnn-rbm-lstm --seconds 120
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from bench_music_rnn import PUBLISHED_RNN, TimeLimit, source
from boltzkit import checkpoint
from boltzkit.data.music import N_NOTES, load_music, split_frames, transposed
from boltzkit.models.sequence import (
    LSTM,
    RNN,
    RNNRBM,
    RTRBM,
    RecurrentRBMValidation,
    SequenceBatches,
    evaluate_recurrent_rbm,
    evaluate_sequences,
    fit_recurrent_rbm,
    fit_sequences,
)
from boltzkit.training import Callback, EarlyStopping

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "polyphonic-music"
RESULTS = ROOT / "benchmarks" / "results"
#: NLL per time step, Boulanger-Lewandowski et al. (2012), Table 1 (the LSTM variant: their RNN-RBM)
PUBLISHED_BY_SET = {"JSB_Chorales": {"rnn-rbm": 6.27, "rtrbm": 6.35}, "Nottingham": {"rnn-rbm": 2.39, "rtrbm": 2.62},
                    "MuseData": {"rnn-rbm": 6.01, "rtrbm": 6.35}, "Piano_midi": {"rnn-rbm": 7.09, "rtrbm": 7.36}}
PUBLISHED = {**PUBLISHED_BY_SET["JSB_Chorales"], "rnn-rbm-lstm": 6.27}
#: frame-level baselines (``bench_music_rnn.py``): exact NLL, no AIS
BASELINES = ("rnn", "lstm")
#: early-stopping patience of the baselines (epochs; as in ``bench_music_rnn.py``)
BASELINE_PATIENCE = 8


class EpochLog(Callback):
    """Prints each epoch's metrics as one JSON line (long runs: watch the validation NLL)."""

    def on_epoch_end(self, trainer, epoch, metrics):
        print(json.dumps({"epoch": epoch, **{k: float(f"{float(v):.4g}") for k, v in metrics.items()}}), flush=True)


def published(data: Path, name: str) -> float | None:
    """The paper's NLL per step for this data set and model (None for an unknown set)."""
    if name in BASELINES:
        return PUBLISHED_RNN.get(data.stem)
    table = PUBLISHED_BY_SET.get(data.stem)
    return None if table is None else table["rtrbm" if name == "rtrbm" else "rnn-rbm"]


def first_pieces(data: SequenceBatches, frames: int) -> SequenceBatches:
    """The first pieces of ``data`` (in order) up to at least ``frames`` frames; all when ``frames`` <= 0."""
    if frames <= 0:
        return data
    pieces, total = [], 0
    for piece in data.inputs:
        if total >= frames:
            break
        pieces.append(piece)
        total += int(piece.shape[0])
    return SequenceBatches(pieces)


def build(name: str, args: argparse.Namespace):
    """A new model, or with ``--init-from`` the saved one (its weights; fresh optimizer, no
    pre-training) when it is that model of those sizes."""
    if name == "rtrbm":
        model = RTRBM(N_NOTES, args.hidden, seed=args.seed)
    else:
        model = RNNRBM(N_NOTES, args.hidden, args.recurrent, recurrence="lstm" if name.endswith("lstm") else "rnn",
                       seed=args.seed)
    if args.init_from is None:
        return model
    saved = checkpoint.load(args.init_from)
    if type(saved) is not type(model) or saved.config() != model.config():
        raise SystemExit(f"--init-from {args.init_from}: not {name} with {args.hidden} hidden / "
                         f"{args.recurrent} recurrent units (--models, --hidden, --recurrent)")
    return saved


def baseline_row(name: str, args: argparse.Namespace, train: SequenceBatches, valid: SequenceBatches,
                 test: SequenceBatches) -> dict:
    """Train and score the frame-level RNN or LSTM baseline on the same test frames."""
    cls = RNN if name == "rnn" else LSTM
    model = cls(N_NOTES, args.baseline_hidden, output="sigmoid", loss="cross_entropy", task="next_step",
                seed=args.seed)
    limit = TimeLimit(args.seconds)
    start = time.perf_counter()
    trainer = fit_sequences(model, train, valid, epochs=args.epochs, batch_size=args.batch_size,
                            lr=args.baseline_lr, patience=BASELINE_PATIENCE, seed=args.seed, threads=1,
                            callbacks=[limit])
    seconds = time.perf_counter() - start
    result = evaluate_sequences(model, test)
    return {"model": name, "epochs": trainer.epoch, "train_seconds": round(seconds, 1),
            "time_limit_hit": limit.hit, "test_nll_per_step": result["nll_per_step"], "test_nll_interval": None,
            "frame_accuracy": result["frame_accuracy"], "frames": int(result["frames"]),
            "test_pieces": len(test.inputs), "data": args.data.stem, "published_nll": published(args.data, name),
            "best_valid_nll": min(h["valid_loss"] for h in trainer.history)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DATA / "JSB_Chorales.mat")
    p.add_argument("--models", nargs="+", default=["rnn-rbm", "rtrbm"], choices=[*PUBLISHED, *BASELINES])
    p.add_argument("--hidden", type=int, default=150)
    p.add_argument("--recurrent", type=int, default=100)
    p.add_argument("--k", type=int, default=15)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--epochs", type=int, default=500)
    p.add_argument("--baseline-hidden", type=int, default=100, help="hidden units of the rnn/lstm baselines")
    p.add_argument("--baseline-lr", type=float, default=2e-3, help="Adam learning rate of the rnn/lstm baselines")
    p.add_argument("--pretrain-epochs", type=int, default=10)
    p.add_argument("--pretrain-rnn-epochs", type=int, default=0,
                   help="rnn-rbm models: epochs of the recurrent cell alone as a next-step predictor after the RBM's")
    p.add_argument("--seconds", type=float, default=120.0, help="training wall-clock limit per model")
    p.add_argument("--valid-every", type=int, default=5)
    p.add_argument("--valid-pieces", type=int, default=20)
    p.add_argument("--valid-ais-betas", type=int, default=200)  # 50 misled early stopping (BENCHMARKS §11)
    p.add_argument("--patience", type=int, default=4)
    p.add_argument("--keep-last", action="store_true",
                   help="keep the last epoch rather than the best validated one, and never stop early (with "
                        "--lr-schedule linear; a lower bound over candidates rises while an early, broad model "
                        "sharpens)")
    p.add_argument("--valid-bound", action="store_true",
                   help="validate with the certain lower bound over the distinct training frames instead of AIS "
                        "(no sampling noise; for sets whose frames recur, e.g. Nottingham)")
    p.add_argument("--lr-schedule", default="constant", choices=["constant", "linear", "epoch-linear"],
                   help="Adam's learning rate: constant, or decaying linearly to 0 over --epochs")
    p.add_argument("--ais-chains", type=int, default=16)
    p.add_argument("--ais-betas", type=int, default=200)
    p.add_argument("--check-pieces", type=int, default=3)
    p.add_argument("--check-betas", type=int, default=2000)
    p.add_argument("--test-frames", type=int, default=0,
                   help="score only the first test pieces up to at least this many frames (default 0: all)")
    p.add_argument("--save-dir", type=Path, default=None,
                   help="save each trained model to SAVE_DIR/<data>-<model> (default: not saved)")
    p.add_argument("--init-from", type=Path, default=None, metavar="DIR",
                   help="continue training this saved model (one of --models; fresh optimizer, no pre-training)")
    p.add_argument("--transpose", type=int, default=0, metavar="N",
                   help="train on every training piece shifted by -N..+N semitones (shifts that would move a note "
                        "off the keyboard skipped; validation and test pieces are never shifted)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS / "rnn_rbm.json")
    args = p.parse_args(argv)
    rbm_models = [m for m in args.models if m not in BASELINES]
    if args.init_from is not None and len(rbm_models) != 1:
        p.error("--init-from continues one model: give exactly one of rnn-rbm, rtrbm, rnn-rbm-lstm in --models")
    torch.set_num_threads(1)
    splits = load_music(args.data)
    train = source(transposed(splits["train"], args.transpose))
    test = first_pieces(source(splits["test"]), args.test_frames)
    valid = SequenceBatches(source(splits["valid"]).inputs[: args.valid_pieces])
    candidates = torch.from_numpy(split_frames(splits, ["train"], args.transpose)) \
        if args.valid_bound else None
    rows = []
    for name in args.models:
        if name in BASELINES:
            rows.append(baseline_row(name, args, train, source(splits["valid"]), test))
            print(json.dumps(rows[-1]), flush=True)
            continue
        model = build(name, args)
        limit = TimeLimit(args.seconds)
        start = time.perf_counter()
        trainer = fit_recurrent_rbm(
            model, train, None, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, k=args.k,
            pretrain_epochs=0 if args.init_from else args.pretrain_epochs,
            pretrain_rnn_epochs=0 if args.init_from or name == "rtrbm" else args.pretrain_rnn_epochs,
            seed=args.seed, lr_schedule=args.lr_schedule,
            callbacks=[RecurrentRBMValidation(valid, args.valid_every, ais_chains=8, ais_betas=args.valid_ais_betas,
                                              candidates=candidates),
                       *([] if args.keep_last else [EarlyStopping("valid_nll", args.patience, mode="min",
                                                                  verbose=False)]), limit, EpochLog()])
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        result = evaluate_recurrent_rbm(model, test, ais_chains=args.ais_chains, ais_betas=args.ais_betas,
                                        seed=args.seed)
        eval_seconds = time.perf_counter() - start
        if args.save_dir is not None:
            checkpoint.save(args.save_dir / f"{args.data.stem}-{name}", model,
                            extra={"data": str(args.data), "split": "train", "frames_per_beat": 1})
        check = SequenceBatches(test.inputs[: args.check_pieces]) if args.check_pieces > 0 else None
        short = evaluate_recurrent_rbm(model, check, ais_chains=args.ais_chains, ais_betas=args.ais_betas) \
            if check else {"nll_per_step": None}
        long = evaluate_recurrent_rbm(model, check, ais_chains=args.ais_chains, ais_betas=args.check_betas) \
            if check else {"nll_per_step": None}
        row = {"model": name, "epochs": len(trainer.history), "train_seconds": round(seconds, 1),
               "time_limit_hit": limit.hit, "eval_seconds": round(eval_seconds, 1),
               "test_nll_per_step": result["nll_per_step"],
               "test_nll_interval": [result["nll_low"], result["nll_high"]],
               "frame_accuracy": result["frame_accuracy"], "frames": result["frames"],
               "test_pieces": len(test.inputs), "train_pieces": len(train.inputs), "data": args.data.stem,
               "published_nll": published(args.data, name),
               "ais_check": {"pieces": args.check_pieces, f"nll_{args.ais_betas}_betas": short["nll_per_step"],
                             f"nll_{args.check_betas}_betas": long["nll_per_step"]},
               "best_valid_nll": min((h["valid_nll"] for h in trainer.history if "valid_nll" in h), default=None)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    command = "OMP_NUM_THREADS=1 python benchmarks/" + Path(__file__).name + " " + shlex.join(argv or sys.argv[1:])
    report = {"command": command.strip(), "machine": platform.processor() or platform.machine(),
              "torch": torch.__version__, "settings": {k: str(v) for k, v in vars(args).items()}, "results": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print("| model | test NLL/step (AIS interval) | frame acc. | published NLL | epochs | train s |")
    for r in rows:
        interval = "(exact)" if r["test_nll_interval"] is None else "[{:.2f}, {:.2f}]".format(*r["test_nll_interval"])
        print(f"| {r['model']} | {r['test_nll_per_step']:.2f} {interval} | {r['frame_accuracy']:.3f} | "
              f"{r['published_nll']} | {r['epochs']} | {r['train_seconds']} |")
    print(f"reproduce: {command.strip()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
