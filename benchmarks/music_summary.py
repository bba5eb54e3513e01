"""The summary table of BENCHMARKS.md §11 (issue 14): the best RTRBM, RNN-RBM and RNN-RBM with
LSTM recurrence on each of the four polyphonic-music sets, beside the frame-level RNN and LSTM and
the published figures, read from the result files in ``benchmarks/results/``.

Every number is taken from a JSON written by ``bench_rnn_rbm.py``, ``rescore_rnn_rbm.py``,
``bench_music_rnn.py`` or ``boltzkit sequence evaluate --json``.  The benchmark scripts' files
record the command that produced them, with the paths of the machine that ran it
(``--commands`` prints them); the ``sequence evaluate`` outputs do not, their commands are in
BENCHMARKS.md §11.4–11.5.  Whole test sets throughout.  Forward AIS
errs low and RAISE errs high, so the NLL lies between them; the certain lower bound (each Z_t summed
over the distinct training frames in every key) needs no sampling; "+ mass" tightens it by the
candidate mass the chains find (a lower bound up to its standard error).

    python benchmarks/music_summary.py              # the markdown table
    python benchmarks/music_summary.py --commands   # and the command behind every file
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

SETS = {"JSB_Chorales": "JSB Chorales", "Nottingham": "Nottingham", "MuseData": "MuseData",
        "Piano_midi": "Piano-midi.de"}
#: Boulanger-Lewandowski, Bengio & Vincent 2012 (the issue's figures)
PUBLISHED = {"JSB_Chorales": (6.27, 6.35), "Nottingham": (2.39, 2.62), "MuseData": (6.01, 6.35),
             "Piano_midi": (7.09, 7.36)}
MODELS = {"rtrbm": "RTRBM", "rnn-rbm": "RNN-RBM", "rnn-rbm-lstm": "RNN-RBM + LSTM", "rnn": "RNN (§7.2)",
          "lstm": "LSTM (§7.2)"}

# (set, model): where each cell comes from — (file, model name in the file or None for its only
# row, field); "ais": forward AIS (the benchmark's own 16 chains per frame).  "train" lists the
# runs whose training seconds add up (a run continued from another).  "predict": how the
# accuracy's frame was predicted (default: the mean of 20 Gibbs sweeps from the previous frame).
# "note": the row's training.
ENTRIES: dict[tuple[str, str], dict[str, Any]] = {
    ("JSB_Chorales", "rtrbm"): {
        "ais": ("rnn_rbm_JSB_transpose_rtrbm.json", "rtrbm", "test_nll_per_step"),
        "raise": ("raise_jsb_rtrbm.json", None, "nll_raise"),
        "accuracy": ("rnn_rbm_JSB_transpose_rtrbm.json", "rtrbm", "frame_accuracy"),
        "train": [("rnn_rbm_JSB_transpose_rtrbm.json", "rtrbm")], "note": "§11.3, --transpose 6"},
    ("JSB_Chorales", "rnn-rbm"): {
        "ais": ("rnn_rbm_JSB_transpose.json", "rnn-rbm", "test_nll_per_step"),
        "raise": ("raise_jsb.json", None, "nll_raise"),
        "accuracy": ("rnn_rbm_JSB_transpose.json", "rnn-rbm", "frame_accuracy"),
        "train": [("rnn_rbm_JSB_transpose.json", "rnn-rbm")], "note": "§11.3, --transpose 6"},
    ("JSB_Chorales", "rnn-rbm-lstm"): {
        "ais": ("rnn_rbm_JSB_transpose_lstm.json", "rnn-rbm-lstm", "test_nll_per_step"),
        "raise": ("raise_jsb_lstm.json", None, "nll_raise"),
        "accuracy": ("rnn_rbm_JSB_transpose_lstm.json", "rnn-rbm-lstm", "frame_accuracy"),
        "train": [("rnn_rbm_JSB_transpose_lstm.json", "rnn-rbm-lstm")], "note": "§11.3, --transpose 6"},
    ("Nottingham", "rtrbm"): {
        "bound": ("rescore_nott_rtrbm150_whole.json", None, "nll_lower_bound"),
        "mass": ("rescore_nott_rtrbm150_whole.json", None, "nll_lower_bound_mass"),
        "accuracy": ("rescore_nott_rtrbm150_whole.json", None, "frame_accuracy"), "predict": "restricted mean",
        "train": [("rnn_rbm_Nottingham_rtrbm150.json", "rtrbm")], "note": "§11.5, --transpose 3"},
    ("Nottingham", "rnn-rbm"): {
        "bound": ("bound_nott.json", None, "nll_lower_bound"),
        "accuracy": ("bound_nott.json", None, "frame_accuracy"),
        "train": [("rnn_rbm_Nottingham_long.json", "rnn-rbm"), ("rnn_rbm_Nottingham_transpose.json", "rnn-rbm")],
        "note": "§11.3–11.4, --transpose 3; forward AIS below its bound"},
    ("Nottingham", "rnn-rbm-lstm"): {
        "bound": ("rescore_nott_lstm300_whole.json", None, "nll_lower_bound"),
        "mass": ("rescore_nott_lstm300_whole.json", None, "nll_lower_bound_mass"),
        "accuracy": ("nott_lstm300_whole_frame_mean_accuracy.json", None, "frame_accuracy"),
        "predict": "restricted mean",
        "train": [("rnn_rbm_Nottingham_lstm300.json", "rnn-rbm-lstm")],
        "note": "§11.5, 300 hidden, --transpose 3; RAISE on the first pieces: within 0.03 of the bound + mass"},
    ("MuseData", "rtrbm"): {
        "ais": ("rnn_rbm_MuseData_transpose_rtrbm.json", "rtrbm", "test_nll_per_step"),
        "accuracy": ("rnn_rbm_MuseData_transpose_rtrbm.json", "rtrbm", "frame_accuracy"),
        "train": [("rnn_rbm_MuseData_transpose_rtrbm.json", "rtrbm")], "note": "§11.6, --transpose 3"},
    ("MuseData", "rnn-rbm"): {
        "ais": ("rnn_rbm_MuseData_transpose.json", "rnn-rbm", "test_nll_per_step"),
        "raise": ("raise_muse.json", None, "nll_raise"),
        "accuracy": ("rnn_rbm_MuseData_transpose.json", "rnn-rbm", "frame_accuracy"),
        "train": [("rnn_rbm_MuseData_long.json", "rnn-rbm"), ("rnn_rbm_MuseData_transpose.json", "rnn-rbm")],
        "note": "§11.3, --transpose 3"},
    ("MuseData", "rnn-rbm-lstm"): {
        "ais": ("rnn_rbm_MuseData_transpose_lstm.json", "rnn-rbm-lstm", "test_nll_per_step"),
        "accuracy": ("rnn_rbm_MuseData_transpose_lstm.json", "rnn-rbm-lstm", "frame_accuracy"),
        "train": [("rnn_rbm_MuseData_transpose_lstm.json", "rnn-rbm-lstm")], "note": "§11.6, --transpose 3"},
    ("Piano_midi", "rtrbm"): {
        "ais": ("rnn_rbm_Piano_midi_transpose_rtrbm.json", "rtrbm", "test_nll_per_step"),
        "accuracy": ("rnn_rbm_Piano_midi_transpose_rtrbm.json", "rtrbm", "frame_accuracy"),
        "train": [("rnn_rbm_Piano_midi_transpose_rtrbm.json", "rtrbm")], "note": "§11.6, --transpose 6"},
    ("Piano_midi", "rnn-rbm"): {
        "ais": ("rnn_rbm_Piano_midi_transpose.json", "rnn-rbm", "test_nll_per_step"),
        "raise": ("raise_piano.json", None, "nll_raise"),
        "accuracy": ("rnn_rbm_Piano_midi_transpose.json", "rnn-rbm", "frame_accuracy"),
        "train": [("rnn_rbm_Piano_midi_long.json", "rnn-rbm"), ("rnn_rbm_Piano_midi_transpose.json", "rnn-rbm")],
        "note": "§11.3, --transpose 6"},
    ("Piano_midi", "rnn-rbm-lstm"): {
        "ais": ("rnn_rbm_Piano_midi_lstm_full.json", "rnn-rbm-lstm", "test_nll_per_step"),
        "accuracy": ("rnn_rbm_Piano_midi_lstm_full.json", "rnn-rbm-lstm", "frame_accuracy"),
        "train": [("rnn_rbm_Piano_midi_lstm_full.json", "rnn-rbm-lstm")], "note": "§11.2, no shifts"},
}


def load(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / name).read_text())


def value(source: tuple[str, str | None, str]) -> float:
    """One number of a result file: the row of ``model`` (or the file's only row / the file itself)."""
    name, model, field = source
    data = load(name)
    rows = data["results"] if isinstance(data.get("results"), list) else [data]
    if model is not None:
        rows = [r for r in rows if r.get("model") == model]
    if len(rows) != 1:
        raise SystemExit(f"{name}: expected one row for model {model!r}, found {len(rows)}")
    return float(rows[0][field])


def baseline(set_name: str, model: str) -> dict[str, float]:
    """The frame-level RNN / LSTM of §7.2 (exact NLL) from ``music.json``."""
    r = load("music.json")["results"][set_name][model]
    return {"nll": r["test_nll_per_step"], "accuracy": r["test_frame_accuracy"], "seconds": r["seconds"],
            "cut": r["time_limit_hit"]}


def cells(set_name: str, model: str) -> tuple[str, str, str, str, str] | None:
    """(NLL, its other side, frame accuracy, training seconds, note) of one row; None when its files are absent."""
    if model in ("rnn", "lstm"):
        b = baseline(set_name, model)
        return f"{b['nll']:.2f} (exact)", "—", f"{b['accuracy']:.3f}", f"{b['seconds']:.0f}", \
            "§7.2, " + ("stopped by its time limit" if b["cut"] else "early-stopped")
    entry = ENTRIES[(set_name, model)]
    files = {v[0] for k, v in entry.items() if isinstance(v, tuple)} | {f for f, _ in entry["train"]}
    if not all((RESULTS / f).exists() for f in files):
        return None
    if "ais" in entry:
        nll = f"{value(entry['ais']):.2f} (forward AIS)"
    else:
        nll = f"≈ {value(entry['mass']):.2f} (bound + mass)" if "mass" in entry else "—"
    other = []
    if "raise" in entry:
        other.append(f"RAISE {value(entry['raise']):.2f}")
    if "bound" in entry:
        other.append(f"≥ {value(entry['bound']):.3f} for certain")
    accuracy = f"{value(entry['accuracy']):.3f}" + (f" ({entry['predict']})" if "predict" in entry else "")
    seconds = sum(value((f, m, "train_seconds")) for f, m in entry["train"])
    return nll, "; ".join(other) or "—", accuracy, f"{seconds:,.0f}", entry["note"]


def table() -> list[str]:
    lines = ["| set | model | test NLL per step | other side | frame accuracy | training (s, 1 thread) | "
             "published RNN-RBM / RTRBM | run |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for set_name, label in SETS.items():
        rnn_rbm, rtrbm = PUBLISHED[set_name]
        for model, model_label in MODELS.items():
            row = cells(set_name, model)
            if row is None:
                lines.append(f"| {label} | {model_label} | (not run) | | | | {rnn_rbm} / {rtrbm} | |")
                continue
            nll, other, accuracy, seconds, note = row
            lines.append(f"| {label} | {model_label} | {nll} | {other} | {accuracy} | {seconds} | "
                         f"{rnn_rbm} / {rtrbm} | {note} |")
    return lines


def commands() -> list[str]:
    names = sorted({v[0] for e in ENTRIES.values() for v in e.values() if isinstance(v, tuple)}
                   | {f for e in ENTRIES.values() for f, _ in e["train"]} | {"music.json"})
    out = []
    for name in names:
        if (RESULTS / name).exists():
            command = load(name).get("command", "(boltzkit sequence evaluate --json; BENCHMARKS.md §11)")
            out.append(f"{name}: {command if isinstance(command, str) else ' '.join(command)}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--commands", action="store_true", help="also print the command behind every result file")
    args = p.parse_args()
    print("\n".join(table()))
    if args.commands:
        print()
        print("\n".join(commands()))


if __name__ == "__main__":
    main()
