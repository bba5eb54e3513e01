"""Frame-level next-step RNN and LSTM on the four polyphonic-music sets (Boulanger-Lewandowski,
Bengio & Vincent 2012): test negative log-likelihood per time step, pooled over all test frames
(nats), and frame accuracy TP/(TP+FP+FN), next to the published RNN figures.

Each model: H hidden units, sigmoid outputs, cross-entropy, Adam, batches of 8 pieces, early
stopping on the validation split (the best epoch is kept), at most ``--epochs`` epochs and
``--seconds`` per model (JSB Chorales gets no time limit by default: it is the set run fully).

    OMP_NUM_THREADS=1 python benchmarks/bench_music_rnn.py                    # JSB fully, others bounded
    OMP_NUM_THREADS=1 python benchmarks/bench_music_rnn.py --sets JSB_Chorales
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from boltzkit.data.music import load_music, music_statistics
from boltzkit.models.sequence import LSTM, RNN, SequenceBatches, evaluate_sequences, fit_sequences
from boltzkit.training import Callback

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "polyphonic-music"
RESULTS = ROOT / "benchmarks" / "results"
#: NLL per time step of the RNN in Boulanger-Lewandowski et al. (2012), Table 1
PUBLISHED_RNN = {"JSB_Chorales": 8.71, "Nottingham": 4.46, "Piano_midi": 8.37, "MuseData": 8.13}


class TimeLimit(Callback):
    """Stops after ``seconds`` (checked at epoch ends); None: no limit."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds, self.start, self.hit = seconds, 0.0, False

    def on_train_begin(self, trainer):
        self.start = time.perf_counter()

    def on_epoch_end(self, trainer, epoch, metrics):
        if self.seconds is not None and time.perf_counter() - self.start > self.seconds:
            trainer.stop, self.hit = True, True


def source(rolls: list) -> SequenceBatches:
    return SequenceBatches([torch.from_numpy(r).float() for r in rolls])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--sets", nargs="+", default=list(PUBLISHED_RNN))
    p.add_argument("--models", nargs="+", default=["rnn", "lstm"], choices=["rnn", "lstm"])
    p.add_argument("--hidden", type=int, default=100)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--patience", type=int, default=8)
    p.add_argument("--seconds", type=float, default=150,
                   help="training budget per model on the sets other than JSB (default 150)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS / "music.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    command = "OMP_NUM_THREADS=1 python benchmarks/bench_music_rnn.py " + shlex.join(
        argv if argv is not None else sys.argv[1:])
    print(command, flush=True)
    report: dict[str, Any] = {"command": command, "hidden": args.hidden, "lr": args.lr, "batch_size": args.batch_size,
                              "patience": args.patience, "seconds_per_model_except_jsb": args.seconds,
                              "machine": platform.platform(), "torch": torch.__version__, "results": {}}
    for name in args.sets:
        path = args.data / f"{name}.mat"
        if not path.is_file():
            print(f"skipped {name}: {path} not found", flush=True)
            continue
        splits = load_music(path)
        train, valid, test = (source(splits[s]) for s in ("train", "valid", "test"))
        row: dict[str, Any] = {"published_rnn_nll": PUBLISHED_RNN.get(name),
                               "test_frames": music_statistics(splits["test"])["frames"]}
        for kind in args.models:
            cls = RNN if kind == "rnn" else LSTM
            model = cls(88, args.hidden, output="sigmoid", loss="cross_entropy", task="next_step", seed=args.seed)
            limit = TimeLimit(None if name == "JSB_Chorales" else args.seconds)
            t0 = time.perf_counter()
            trainer = fit_sequences(model, train, valid, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                    patience=args.patience, seed=args.seed, threads=1, callbacks=[limit])
            seconds = time.perf_counter() - t0
            result = evaluate_sequences(model, test)
            best = min(h["valid_loss"] for h in trainer.history)
            row[kind] = {"test_nll_per_step": result["nll_per_step"], "test_frame_accuracy": result["frame_accuracy"],
                         "best_valid_nll_per_step": best, "epochs_run": trainer.epoch,
                         "seconds": round(seconds, 1), "time_limit_hit": limit.hit}
            print(f"{name:13s} {kind:4s} test NLL {result['nll_per_step']:.3f} nats/step "
                  f"(published RNN {PUBLISHED_RNN.get(name)}), frame accuracy {result['frame_accuracy']:.3f}, "
                  f"{trainer.epoch} epochs, {seconds:.0f}s{' (time limit)' if limit.hit else ''}", flush=True)
        report["results"][name] = row
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    print("\n| set | published RNN | RNN (ours) | LSTM (ours) | frame acc. RNN / LSTM |\n|---|---|---|---|---|")
    for name, row in report["results"].items():
        cells = [f"{row[k]['test_nll_per_step']:.2f}" if k in row else "—" for k in ("rnn", "lstm")]
        acc = " / ".join(f"{row[k]['test_frame_accuracy']:.3f}" if k in row else "—" for k in ("rnn", "lstm"))
        print(f"| {name} | {row['published_rnn_nll']} | {cells[0]} | {cells[1]} | {acc} |")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
