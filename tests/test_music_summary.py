"""benchmarks/music_summary.py: the §11 summary of BENCHMARKS.md is what the result files say."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def summary():
    spec = importlib.util.spec_from_file_location("music_summary", ROOT / "benchmarks" / "music_summary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_result_file_it_names_exists_and_every_row_is_filled():
    s = summary()
    for entry in s.ENTRIES.values():
        for name in {v[0] for v in entry.values() if isinstance(v, tuple)} | {f for f, _ in entry["train"]}:
            assert (s.RESULTS / name).exists(), name
    lines = s.table()
    assert len(lines) == 2 + len(s.SETS) * len(s.MODELS)
    assert not [line for line in lines if "(not run)" in line]


def test_cells_are_the_result_files_numbers():
    s = summary()
    row = json.loads((s.RESULTS / "rnn_rbm_JSB_transpose.json").read_text())["results"][0]
    nll, other, accuracy, seconds, _ = s.cells("JSB_Chorales", "rnn-rbm")
    assert nll == f"{row['test_nll_per_step']:.2f} (forward AIS)"
    assert accuracy == f"{row['frame_accuracy']:.3f}"
    assert seconds == f"{row['train_seconds']:,.0f}"
    raised = json.loads((s.RESULTS / "raise_jsb.json").read_text())["results"][0]["nll_raise"]
    assert other == f"RAISE {raised:.2f}"
    # a run continued from another adds both runs' training time
    long, more = (json.loads((s.RESULTS / f).read_text())["results"][0]["train_seconds"]
                  for f in ("rnn_rbm_MuseData_long.json", "rnn_rbm_MuseData_transpose.json"))
    assert s.cells("MuseData", "rnn-rbm")[3] == f"{long + more:,.0f}"


def test_benchmarks_md_shows_the_table_the_script_builds():
    text = (ROOT / "BENCHMARKS.md").read_text("utf-8")
    missing = [line for line in summary().table() if line not in text]
    assert not missing, missing
