"""Re-score saved RNN-RBM / RTRBM checkpoints (``bench_rnn_rbm.py --save-dir``) on the same test
frames with a longer AIS schedule: forward AIS under-estimates each step's log Z, by more the
shorter the schedule and the sharper the trained model, so a benchmark's short-schedule NLL is
optimistic; this reports the NLL per step at each of ``--ais-betas`` so the remaining bias shows
as the change between the last two schedules.  ``--raise-chains N`` adds RAISE's NLL, the
conservative side of the bracket (it errs high where forward AIS errs low).  ``--lower-bound`` adds the
certain lower bound over candidate frames (``--mass-chains N``: tightened by the mass the chains find
on them), ``--predict map`` scores the most probable training frame (``frame-mean``: their exact
mean), and ``--ais-betas 0`` skips AIS.

    OMP_NUM_THREADS=1 python benchmarks/rescore_rnn_rbm.py --data ../shared/data/polyphonic-music/Nottingham.mat \\
        --test-frames 3000 --ais-betas 2000,10000 runs/music/Nottingham-rnn-rbm-lstm --out rescore.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from bench_music_rnn import source
from bench_rnn_rbm import first_pieces
from boltzkit import checkpoint
from boltzkit.cli.sequence import PREDICT_RULES
from boltzkit.data.music import load_music, split_frames
from boltzkit.models.sequence import SequenceBatches, evaluate_recurrent_rbm


def piece_slice(text: str) -> slice:
    """``START:STOP`` (either may be empty) as a slice of the test pieces."""
    start, colon, stop = text.partition(":")
    if not colon:
        raise ValueError(text)
    return slice(int(start) if start else None, int(stop) if stop else None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", type=Path, help="checkpoint directories")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--test-frames", type=int, default=0, help="the first test pieces up to ≥ this many frames (0: all)")
    p.add_argument("--pieces", default=None, metavar="START:STOP",
                   help="score only these test pieces (a Python slice of the published order, after "
                        "--test-frames), e.g. to split a long test set over processes")
    p.add_argument("--ais-betas", default="2000,10000", help="comma-separated schedules (default 2000,10000)")
    p.add_argument("--ais-chains", type=int, default=16)
    p.add_argument("--raise-chains", type=int, default=0,
                   help="also RAISE with this many reverse chains per frame: the conservative NLL (default 0: off)")
    p.add_argument("--lower-bound", action="store_true",
                   help="also the certain lower bound over the distinct frames of every split in every key "
                        "(as `boltzkit sequence evaluate --lower-bound`)")
    p.add_argument("--mass-chains", type=int, default=0,
                   help="with --lower-bound: chains per frame measuring the mass on the candidates "
                        "(nll_lower_bound_mass, a tighter lower bound) (default 0: off)")
    p.add_argument("--mass-sweeps", type=int, default=100)
    p.add_argument("--predict", choices=tuple(PREDICT_RULES), default="mean",
                   help="predicted frame: thresholded Gibbs mean, the most probable distinct training frame in "
                        "any key, or the exact mean over those frames thresholded at 0.5 (default mean)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    splits = load_music(args.data)
    test = first_pieces(source(splits["test"]), args.test_frames)
    candidates = torch.from_numpy(split_frames(splits)) if args.lower_bound else None
    modes = torch.from_numpy(split_frames(splits, ["train"])) if PREDICT_RULES[args.predict] else None
    if args.pieces is not None:
        try:
            pieces = test.inputs[piece_slice(args.pieces)]
        except ValueError:
            p.error(f"--pieces: expected START:STOP, e.g. 0:92 or 92:, got {args.pieces!r}")
        if not pieces:
            p.error(f"--pieces {args.pieces}: no test piece there ({len(test.inputs)} pieces)")
        test = SequenceBatches(pieces)
    rows = []
    for directory in args.models:
        model = checkpoint.load(directory)
        for betas in [int(b) for b in args.ais_betas.split(",")]:   # 0: no AIS (bound, mass, accuracy only)
            start = time.perf_counter()
            r = evaluate_recurrent_rbm(model, test, ais_chains=args.ais_chains, ais_betas=max(betas, 2),
                                       seed=args.seed, nll=betas > 0, raise_chains=args.raise_chains,
                                       candidates=candidates, predict_candidates=modes,
                                       predict_rule=PREDICT_RULES[args.predict],
                                       mass_chains=args.mass_chains, mass_sweeps=args.mass_sweeps)
            row = {"model": directory.name, "ais_betas": betas, "nll_per_step": r.get("nll_per_step"),
                   "nll_interval": [r["nll_low"], r["nll_high"]] if "nll_low" in r else None,
                   "frame_accuracy": r["frame_accuracy"], "predict": args.predict,
                   "frames": r["frames"], "test_pieces": len(test.inputs), "pieces": args.pieces,
                   "nll_se": r.get("nll_se"), "raise_chains": args.raise_chains,
                   **({"nll_raise": r["nll_raise"], "nll_raise_se": r["nll_raise_se"]} if args.raise_chains else {}),
                   **{k: r[k] for k in ("nll_lower_bound", "candidate_mass", "candidate_mass_se",
                                        "nll_lower_bound_mass", "nll_lower_bound_mass_se") if k in r},
                   "mass_sweeps": args.mass_sweeps if args.mass_chains else None,
                   "seconds": round(time.perf_counter() - start, 1), "threads": torch.get_num_threads()}
            rows.append(row)
            print(json.dumps(row), flush=True)
    command = "OMP_NUM_THREADS=1 python benchmarks/" + Path(__file__).name + " " + shlex.join(argv or sys.argv[1:])
    args.out.write_text(json.dumps({"command": command, "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
