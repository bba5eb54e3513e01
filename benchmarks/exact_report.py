"""Shared scoring and reporting of the exact-likelihood benchmarks."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from boltzkit import exact
from boltzkit.models.rbm import RBM


def add_setting_arguments(parser) -> None:
    """The shared benchmark setting: 20 hidden, 20 epochs, batch 100, lr 0.05, seed 0."""
    parser.add_argument("--hidden", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)


def score(name: str, rbm: RBM, test: torch.Tensor, seconds: float, **extra) -> dict:
    """Exact test log-likelihood and log Z of one trained model, printed as a JSON line."""
    log_z = exact.log_partition(rbm)
    row = {"model": name, "test_log_likelihood": exact.log_likelihood(rbm, test, log_z),
           "log_partition": log_z, "train_seconds": seconds, **extra}
    print(json.dumps(row), flush=True)
    return row


def report(rows: list[dict], out: str | None) -> None:
    """A markdown table of the rows, and the rows as JSON in ``out``."""
    print("\n| model | exact test LL (nats) | log Z | training s |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['test_log_likelihood']:.2f} | {r['log_partition']:.2f} "
              f"| {r['train_seconds']:.0f} |")
    if out:
        Path(out).write_text(json.dumps(rows, indent=2))
