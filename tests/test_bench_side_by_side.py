"""benchmarks/bench_side_by_side.py runs end to end on a tiny problem, missing anchors reported as such."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_side_by_side.py"
MODULES = {"boltzkit": "boltzkit", "torch": "torch", "scikit-learn": "sklearn", "rbms": "rbms",
           "learnergy": "learnergy"}


def test_side_by_side_tiny(tmp_path: Path) -> None:
    out = tmp_path / "side.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--n", "300", "--batch-sizes", "100", "--epochs", "1",
                           "--json", str(out)], capture_output=True, text=True, timeout=60, check=True)
    rows = json.loads(out.read_text())["rows"]
    assert done.stdout.startswith("`python benchmarks/bench_side_by_side.py --n 300")
    assert {r["package"] for r in rows} == set(MODULES)
    for r in rows:
        if importlib.util.find_spec(MODULES[r["package"]]) is None:
            assert r["seconds"] is None and r["error"].startswith("not installed")
        else:
            assert r["seconds"] > 0 and r["samples_per_s"] > 0 and r["roofline_fraction"] > 0
    cd = next(r for r in rows if r["library"] == "boltzkit CD")
    assert cd["ratio_vs_boltzkit_cd"] == 1.0
    assert done.stdout.count("\n| ") == len(rows) + 1  # header row and one row per result
