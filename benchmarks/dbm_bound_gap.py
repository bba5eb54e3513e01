"""The over-fitting gap of saved DBMs: the mean-field lower bound −F_MF(v) − log Z per digit,
averaged over the first N training digits, the validation digits and the test digits of the
standard binarised MNIST, with log Z from each run's forward AIS (``bench_deep.py --save DIR
--out JSON``).  A training bound far above the validation and test bounds means the model has
learnt its training draws rather than the digits.

    OMP_NUM_THREADS=1 python benchmarks/dbm_bound_gap.py \\
        runs/dbm250_resample=benchmarks/results/deep_dbm250_resample.json --out benchmarks/results/dbm_gap.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from boltzkit import checkpoint
from boltzkit.data import load_mat
from boltzkit.evaluation import deep

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "binarized-mnist"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", metavar="DIR=JSON",
                   help="a saved DBM (bench_deep.py --save) and the results JSON of the same run (--out)")
    p.add_argument("--train-rows", type=int, default=10_000, help="training digits scored (default 10,000)")
    p.add_argument("--data", default=str(DATA), help="folder of binarized_mnist_{train,valid,test}.mat")
    p.add_argument("--out", default=None, help="write the bounds as JSON here")
    a = p.parse_args(argv)
    sets = {name: torch.from_numpy(load_mat(Path(a.data) / f"binarized_mnist_{name}.mat").astype(np.float32))
            for name in ("train", "valid", "test")}
    sets["train"] = sets["train"][:a.train_rows]
    out = {}
    for run in a.runs:
        directory, _, results = run.partition("=")
        if not results:
            raise SystemExit(f"{run}: write DIR=JSON (the saved DBM and its run's results)")
        log_z = json.loads(Path(results).read_text())["dbm"]["ais"]["log_partition"]
        dbm = checkpoint.load(directory)
        out[directory] = {name: float(deep.variational_bound(dbm, x, log_z).mean()) for name, x in sets.items()}
        out[directory]["log_partition"] = log_z
        print(directory, {k: round(v, 2) for k, v in out[directory].items()}, flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
