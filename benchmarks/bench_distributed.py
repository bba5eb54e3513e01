"""Data-parallel training on torch.distributed (gloo, one CPU thread per process), measured in one run.

1. Throughput (rows/s) of CD-1 and PCD-1 on a 784 × 500 RBM, global batch 100, at 1, 2 and 4
   processes (``Trainer`` in a gloo group, each rank B/W rows per step); 1 = a plain single
   process (no group).  The time of the second epoch; the time spent in the trainer's
   all-reduce of the gradients per step is measured inside the ranks.
2. The all-reduce alone against the size of the buffer (float32, median of repetitions).
3. Single-process speed before/after: the trainer of the last commit (``git show HEAD:``) and
   the current one, CD-1, alternated, one thread.

    OMP_NUM_THREADS=1 python benchmarks/bench_distributed.py     # ≈ 3 min on 2 cores

Binarised MNIST from ../shared/data/binarized-mnist (else the embedded digits).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import types
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from boltzkit.models.rbm import RBM
from boltzkit.training import Callback, TrainingConfig
from boltzkit.training.distributed import free_port
from boltzkit.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "binarized-mnist"
SIZES = (1_000, 10_000, 100_000, 784 * 500 + 784 + 500, 1_000_000, 4_000_000)


def load_rows(n: int) -> torch.Tensor:
    path = SHARED / "binarized_mnist_train.mat"
    if path.is_file():
        from scipy.io import loadmat

        x = loadmat(path)["X"][:n]
    else:
        from boltzkit.data import load_default

        x = load_default()[0][:n]
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


class EpochTimes(Callback):
    def on_epoch_begin(self, trainer, epoch):
        self.start, self.cpu_start = time.perf_counter(), time.process_time()
        self.reduce = self.wait = 0.0

    def on_epoch_end(self, trainer, epoch, metrics):
        self.last, self.last_cpu = time.perf_counter() - self.start, time.process_time() - self.cpu_start
        self.last_reduce, self.last_wait = self.reduce, self.wait


def train_once(x: torch.Tensor, method: str, batch: int, trainer_cls=Trainer) -> tuple[float, ...]:
    """(seconds of epoch 2, seconds in the all-reduce, seconds waiting for the slowest rank before
    it (a barrier the benchmark adds), steps per epoch, CPU seconds of this process in epoch 2)."""
    rbm = RBM(784, 500, seed=0)
    timer = EpochTimes()
    config = TrainingConfig(epochs=2, batch_size=batch, method=method, k=1, seed=0, threads=1, lr=0.05)
    trainer = trainer_cls(rbm, config, callbacks=[timer])
    par = getattr(trainer, "distributed", None)
    if par is not None:
        reduce = par.all_reduce_gradients

        def timed(params):
            t0 = time.perf_counter()
            dist.barrier()
            t1 = time.perf_counter()
            reduce(params)
            timer.reduce += time.perf_counter() - t1
            timer.wait += t1 - t0

        par.all_reduce_gradients = timed
    trainer.fit(x)
    return timer.last, timer.last_reduce, timer.last_wait, -(-x.shape[0] // batch), timer.last_cpu


def _rank(rank: int, world: int, port: int, rows: int, batch: int, out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if world > 1:
        dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=300))
    x = load_rows(rows)
    result = {}
    for method in ("cd", "pcd"):
        mine = train_once(x, method, batch)
        if world > 1:  # the busiest rank's CPU seconds: the epoch's time if each process had a core
            cpu = [None] * world
            dist.all_gather_object(cpu, mine[4])
            mine = (*mine[:4], max(cpu))
        result[method] = mine
    if world > 1:
        result["allreduce"] = {}
        for size in SIZES:
            buf = torch.ones(size)
            reps = 20 if size >= 1_000_000 else 100
            for _ in range(5):
                dist.all_reduce(buf)
            times = []
            for _ in range(reps):
                dist.barrier()
                t = time.perf_counter()
                dist.all_reduce(buf)
                times.append(time.perf_counter() - t)
            result["allreduce"][size] = statistics.median(times)
        dist.destroy_process_group()
    if rank == 0:
        Path(out).write_text(json.dumps(result))


def run_group(world: int, rows: int, batch: int, tmp: Path) -> dict:
    out = tmp / f"world-{world}.json"
    mp.spawn(_rank, args=(world, free_port(), rows, batch, str(out)), nprocs=world, join=True)
    return json.loads(out.read_text())


def head_trainer() -> type:
    """The ``Trainer`` of the last commit, loaded beside the current one."""
    source = subprocess.run(["git", "show", "HEAD:src/boltzkit/training/trainer.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    module = types.ModuleType("boltzkit.training._trainer_head")
    module.__package__ = "boltzkit.training"
    sys.modules[module.__name__] = module
    exec(compile(source, "HEAD:trainer.py", "exec"), module.__dict__)
    return module.Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=5, help="before/after alternations")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "distributed.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-distributed-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    groups = {w: run_group(w, args.rows, args.batch, tmp) for w in args.procs}

    print(f"## throughput, 784 x 500, global batch {args.batch}, {args.rows} rows per epoch, one thread per process")
    print("| processes | CD-1 rows/s | speed-up | PCD-1 rows/s | speed-up | CD-1 / PCD-1 rows/s per busiest "
          "rank's CPU second | all-reduce per step (CD-1 / PCD-1) | waiting for the slowest rank per step "
          "| all-reduce share of the epoch |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    base = groups[args.procs[0]]
    rows_out = []
    for w, g in groups.items():
        cells = [str(w)]
        shares = []
        for method in ("cd", "pcd"):
            seconds, reduce, wait, steps, cpu = g[method]
            rate = args.rows / seconds
            cells += [f"{rate:,.0f}", f"{(base[method][0] / seconds):.2f}×"]
            shares.append((reduce / steps * 1e3, wait / steps * 1e3, reduce / seconds, args.rows / cpu))
        cells.append(" / ".join(f"{r:,.0f}" for *_, r in shares))
        cells.append(" / ".join(f"{ms:.2f} ms" for ms, *_ in shares) if w > 1 else "—")
        cells.append(" / ".join(f"{ms:.2f} ms" for _, ms, *_ in shares) if w > 1 else "—")
        cells.append(" / ".join(f"{100 * s:.0f} %" for _, _, s, _ in shares) if w > 1 else "—")
        rows_out.append(cells)
        print("| " + " | ".join(cells) + " |")

    print("\n## all-reduce alone (gloo, 127.0.0.1, float32), median time")
    worlds = [w for w in groups if w > 1]
    print("| floats | MB | " + " | ".join(f"{w} processes" for w in worlds) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in worlds) + " |")
    for size in SIZES:
        cells = [f"{size:,}", f"{4 * size / 1e6:.2f}"] + [f"{groups[w]['allreduce'][str(size)] * 1e3:.3f} ms"
                                                          for w in worlds]
        print("| " + " | ".join(cells) + " |")

    x = load_rows(args.rows)
    old_cls = head_trainer()
    before, after = [], []
    for _ in range(args.repeats):
        before.append(train_once(x, "cd", args.batch, old_cls))
        after.append(train_once(x, "cd", args.batch, Trainer))
    for label, index in (("wall", 0), ("CPU", 4)):
        b = statistics.median(r[index] for r in before)
        a = statistics.median(r[index] for r in after)
        print(f"\n## single process, CD-1 epoch of {args.rows} rows, one thread, {label} time: HEAD {b:.3f} s, "
              f"now {a:.3f} s, now/HEAD = {a / b:.3f} (median of {args.repeats}, alternated)")
    print(f"\nload average during the run: {os.getloadavg()}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"groups": groups, "before": before, "after": after,
                                           "rows": args.rows, "batch": args.batch}, indent=1))


if __name__ == "__main__":
    main()
