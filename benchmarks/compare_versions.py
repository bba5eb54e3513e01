"""Speed before and after a change, measured in one run: CD-1/PCD-1/PT-1 (10 replicas) epochs and
AIS of the same 784 × 500 RBM under two checkouts of boltzkit, alternating, each against its GEMM roofline.

    python benchmarks/compare_versions.py --before 255866b        # a commit, checked out to a temp worktree
    python benchmarks/compare_versions.py --before /path/to/src   # or a source folder

Each round runs one child process per version (same machine, same moment); the table reports
the median over rounds of each version's time and its ratio to the roofline measured in the same
child, so machine load shifts both alike.  Only the stable API is used (``boltzkit.RBM``,
``boltzkit.fit``, ``boltzkit.ais``), so any version since 0.1 can be measured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r'''
import json, sys, time, torch
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
import boltzkit
from boltzkit import RBM, fit, ais
from roofline import GemmWorkload
rows, batch, v, h = 10000, 100, 784, 500
g = torch.Generator().manual_seed(0)
data = torch.bernoulli(torch.full((rows, v), 0.13), generator=g)
out = {"version": boltzkit.__version__}
for method in ("cd", "pcd", "pt"):
    rbm = RBM(v, h, seed=0)
    fit(rbm, data[:batch * 5], epochs=1, batch_size=batch, method=method)        # warm-up
    rows_used = data if method != "pt" else data[: rows // 5]                   # PT: 10 replicas
    start = time.perf_counter()
    fit(rbm, rows_used, epochs=1, batch_size=batch, method=method, init_visible_bias=False)
    out[method] = time.perf_counter() - start
gemms = GemmWorkload(batch, v, h, torch.device("cpu"))
def epoch():
    for _ in range(rows // batch):
        gemms.sweep(False)
        gemms.gradient()
out["cd_roofline"] = gemms.seconds(epoch, 1)
rbm = RBM(v, h, seed=0)
betas = 1000
start = time.perf_counter()
ais.ais(rbm, data[:1000], n_chains=100, betas=betas, seed=0)
out["ais_ms_per_beta"] = (time.perf_counter() - start) / betas * 1e3
print(json.dumps(out))
'''


def source_of(before: str, keep: list[tempfile.TemporaryDirectory]) -> str:
    """A src folder for ``before``: as given, or a temporary worktree of that commit."""
    if Path(before).is_dir():
        return str(Path(before).resolve())
    tmp = tempfile.TemporaryDirectory()
    keep.append(tmp)
    subprocess.run(["git", "worktree", "add", "--detach", tmp.name, before], check=True, capture_output=True)
    return str(Path(tmp.name) / "src")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--before", default="255866b", help="commit or src folder of the earlier version")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", help="write the raw measurements as JSON")
    args = p.parse_args()
    keep: list[tempfile.TemporaryDirectory] = []
    here = Path(__file__).resolve().parent
    sources = {"before": source_of(args.before, keep), "after": str(here.parent / "src")}
    results: dict[str, list[dict]] = {"before": [], "after": []}
    try:
        for _ in range(args.rounds):
            for name, src in sources.items():
                env = {**os.environ, "PYTHONPATH": ""}
                done = subprocess.run([sys.executable, "-c", CHILD, src, str(here)], capture_output=True,
                                      text=True, env=env, check=True)
                results[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    finally:
        for tmp in keep:
            subprocess.run(["git", "worktree", "remove", "--force", tmp.name], capture_output=True)
            tmp.cleanup()
    keys = ("cd", "pcd", "pt", "cd_roofline", "ais_ms_per_beta")
    med = {n: {k: statistics.median(r[k] for r in rows if k in r) for k in keys if all(k in r for r in rows)}
           for n, rows in results.items()}
    print(f"python benchmarks/compare_versions.py --before {args.before} --rounds {args.rounds}")
    print(f"{'':>22} {'before':>10} {'after':>10} {'after/before':>13}")
    for key, label in (("cd", "CD-1 epoch (s)"), ("pcd", "PCD-1 epoch (s)"), ("pt", "PT-1 epoch, 2,000 rows (s)"),
                       ("ais_ms_per_beta", "AIS (ms per β)")):
        print(f"{label:>22} {med['before'][key]:10.3f} {med['after'][key]:10.3f} "
              f"{med['after'][key] / med['before'][key]:13.3f}")
    for name in ("before", "after"):
        print(f"{name}: CD-1 roofline ratio {med[name]['cd_roofline'] / med[name]['cd']:.3f}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
