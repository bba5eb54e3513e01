"""The adding problem (Hochreiter & Schmidhuber 1997; the set-up of Le, Jaitly & Hinton 2015).

Each input step is (u_t, m_t): u_t ~ U(0, 1) and a marker m_t that is 1 at two steps, one drawn
in the first half of the sequence and one in the second; the target is the sum of the two marked
u's.  Predicting 1 always gives MSE Var(u₁ + u₂) = 2/12 ≈ 0.167 (the trivial baseline); a model
"solves" a length when its test MSE is far below that (we say < 0.01).

Models (all H hidden units, Adam, one output ŷ_T = V h_T + c, squared error, many-to-one):
tanh RNN (lr 1e-3); ReLU RNN (lr 1e-4); IRNN (ReLU, W = I, Le et al. 2015; lr 1e-4); tanh RNN
with gradient-norm clipping at 1 (which allows lr 1e-2); LSTM (forget bias 1, lr 1e-2, clipping 1).
Each trains on a fixed training set for the same **wall-clock budget** per length (``--seconds``,
checked at epoch ends; the number of updates each got is recorded), the epoch with the best
validation MSE is kept, and the test MSE is reported, with the gradient-flow
diagnostics (‖∂s_t/∂s_k‖₂ vs lag with the bound (β_W β_s)^{t−k}; per-lag contributions) of each
model at initialisation and after training, one plot per length.

Run time is bounded (defaults ≈ 16 min on one thread: 30 / 60 / 90 s per model at T = 50 / 100 / 200,
far fewer updates than Le et al. ran, so "not solved" here means "not within this budget").

    OMP_NUM_THREADS=1 python benchmarks/bench_adding.py
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from boltzkit.models.sequence import (
    LSTM,
    RNN,
    SequenceBatches,
    evaluate_sequences,
    fit_sequences,
    gradient_flow,
    plot_gradient_flow,
)
from boltzkit.models.sequence.training import flush_denormals
from boltzkit.training import Batch, Callback

RESULTS = Path(__file__).resolve().parent / "results"
BASELINE = 2 / 12
SOLVED = 0.01


def adding_data(n: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n sequences (n, T, 2) and targets (n, 1) of the adding problem (module docstring)."""
    u = torch.rand(n, length, generator=generator)
    half = length // 2
    first = torch.randint(0, half, (n,), generator=generator)
    second = torch.randint(half, length, (n,), generator=generator)
    marks = torch.zeros(n, length)
    rows = torch.arange(n)
    marks[rows, first] = 1
    marks[rows, second] = 1
    return torch.stack([u, marks], -1), (u[rows, first] + u[rows, second]).unsqueeze(1)


def models(hidden: int) -> dict[str, tuple[Callable[[], Any], dict[str, Any]]]:
    """name → (factory, training options)."""
    common = dict(output="identity", loss="squared", task="many_to_one", seed=0)
    return {
        "tanh RNN": (lambda: RNN(2, hidden, 1, activation="tanh", **common), {"lr": 1e-3}),
        "ReLU RNN": (lambda: RNN(2, hidden, 1, activation="relu", **common), {"lr": 1e-4}),
        "IRNN (ReLU, W = I)": (lambda: RNN(2, hidden, 1, activation="relu", init="identity", **common),
                               {"lr": 1e-4}),
        # clipping is what lets the larger step size be used without blowing up
        "tanh RNN + clipping (1.0)": (lambda: RNN(2, hidden, 1, activation="tanh", **common),
                                      {"lr": 1e-2, "clip": 1.0}),
        "LSTM (+ clipping 1.0)": (lambda: LSTM(2, hidden, 1, **common), {"lr": 1e-2, "clip": 1.0}),
    }


class TimeLimit(Callback):
    """Stops a run after ``seconds`` (checked at epoch ends) so the whole benchmark stays bounded."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.start, self.hit = seconds, 0.0, False

    def on_train_begin(self, trainer):
        self.start = time.perf_counter()

    def on_epoch_end(self, trainer, epoch, metrics):
        if time.perf_counter() - self.start > self.seconds:
            trainer.stop, self.hit = True, True


def summary(flow) -> dict[str, Any]:
    d = flow.to_dict()
    mean = d["norm_mean_by_lag"]
    T = len(mean) - 1
    lags = sorted({1, 10, T // 2, T})
    return {"beta_w": d["beta_w"], "norm_mean_at_lag": {str(l): mean[l] for l in lags},
            "bound_at_lag": None if d["bound_by_lag"] is None else {str(l): d["bound_by_lag"][l] for l in lags},
            "contribution_at_lag": {str(l): d["contribution_by_lag"][l] for l in lags if l < T}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", type=int, nargs="+", default=[50, 100, 200])
    p.add_argument("--hidden", type=int, default=100)
    p.add_argument("--train", type=int, default=10000, help="training sequences (default 10000)")
    p.add_argument("--valid", type=int, default=1000)
    p.add_argument("--test", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--epochs", type=int, default=1000, help="most epochs per model and length (default 1000)")
    p.add_argument("--seconds", type=float, nargs="+", default=[30, 60, 90],
                   help="training budget per model, one per length (default 30 60 90)")
    p.add_argument("--models", nargs="+", default=None, help="subset of the model names")
    p.add_argument("--stride", type=int, default=10, help="diagnostics: measure from every stride-th k")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS / "adding.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    command = ("OMP_NUM_THREADS=1 python benchmarks/bench_adding.py "
               + shlex.join(argv if argv is not None else sys.argv[1:]))
    print(command, flush=True)
    specs = models(args.hidden)
    names = args.models or list(specs)
    report: dict[str, Any] = {"command": command, "baseline_mse": BASELINE, "solved_below": SOLVED,
                              "hidden": args.hidden, "train": args.train, "batch_size": args.batch_size,
                              "epochs": args.epochs, "machine": platform.platform(),
                              "torch": torch.__version__, "results": {}}
    started = time.perf_counter()
    budgets = args.seconds if len(args.seconds) == len(args.lengths) else [args.seconds[0]] * len(args.lengths)
    report["seconds_per_model"] = dict(zip(map(str, args.lengths), budgets))
    for length, budget in zip(args.lengths, budgets):
        g = torch.Generator().manual_seed(args.seed + length)
        train, valid, test = (SequenceBatches(*adding_data(n, length, g)) for n in (args.train, args.valid, args.test))
        probe = Batch(*test.batch(torch.arange(1)))
        trivial = float(((test.all().context - 1.0) ** 2).mean())
        flows_init, flows_trained, rows = {}, {}, {}
        for name in names:
            factory, options = specs[name]
            model = factory()
            with flush_denormals():
                flows_init[name] = gradient_flow(model, probe, stride=args.stride)
            limit = TimeLimit(budget)
            t0 = time.perf_counter()
            trainer = fit_sequences(model, train, valid, epochs=args.epochs, batch_size=args.batch_size,
                                    patience=None, seed=args.seed, threads=1, callbacks=[limit], **options)
            seconds = time.perf_counter() - t0
            with flush_denormals():
                mse = evaluate_sequences(model, test, batch_size=500)["mse"]
                flows_trained[name] = gradient_flow(model, probe, stride=args.stride)
            valid_curve = [h.get("valid_loss") for h in trainer.history]
            rows[name] = {"test_mse": mse, "solved": mse < SOLVED, "epochs_run": trainer.epoch,
                          "updates": trainer.epoch * (args.train // args.batch_size), "seconds": round(seconds, 1),
                          "time_limit_hit": limit.hit, "valid_mse_by_epoch": valid_curve, **options,
                          "diagnostics_init": summary(flows_init[name]),
                          "diagnostics_trained": summary(flows_trained[name])}
            print(f"T={length:4d} {name:28s} test MSE {mse:.4f} (baseline {trivial:.4f}) "
                  f"{trainer.epoch} epochs {seconds:.0f}s", flush=True)
        plot_gradient_flow(flows_init, args.out.parent / f"{args.out.stem}_T{length}_init.png",
                           title=f"adding problem T = {length}: at initialisation (one test sequence)")
        plot_gradient_flow(flows_trained, args.out.parent / f"{args.out.stem}_T{length}_trained.png",
                           title=f"adding problem T = {length}: after training")
        report["results"][str(length)] = {"trivial_test_mse": trivial, "models": rows}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print("\n| T | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for length, r in report["results"].items():
        print(f"| {length} | " + " | ".join(f"{r['models'][n]['test_mse']:.4f}" + (" ✓" if r["models"][n]["solved"]
                                                                                  else "") for n in names) + " |")
    print(f"trivial baseline 0.167; ✓ = test MSE < {SOLVED}; total {report['total_seconds']:.0f}s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
