"""The piano-roll loader (.mat, .json, MIDI), its one-line errors, and the frame metrics."""

from __future__ import annotations

import builtins
import json
import math

import numpy as np
import pytest
import scipy.io
import torch

from boltzkit.data.music import (
    check_piano_rolls,
    distinct_frames,
    load_music,
    load_split,
    midi_to_piano_roll,
    music_statistics,
    piano_roll_to_midi,
    transposed,
)
from boltzkit.errors import ConfigurationError, DataError
from boltzkit.models.sequence import RNN, SequenceBatches, evaluate_sequences, fit_sequences

#: sequence counts of the published splits (Boulanger-Lewandowski et al. 2012)
SPLITS = {"JSB_Chorales.mat": (229, 76, 77), "Nottingham.mat": (694, 173, 170),
          "MuseData.mat": (524, 135, 124), "Piano_midi.mat": (87, 12, 25)}


def write_mat(path, **splits):
    cells = {}
    for key, rolls in splits.items():
        cell = np.empty((1, len(rolls)), dtype=object)
        for i, r in enumerate(rolls):
            cell[0, i] = r
        cells[key] = cell
    scipy.io.savemat(path, cells)
    return path


def rolls(n=3, seed=0, p=0.1):
    rng = np.random.default_rng(seed)
    return [(rng.random((rng.integers(5, 12), 88)) < p).astype(np.uint8) for _ in range(n)]


@pytest.mark.parametrize("name", sorted(SPLITS))
def test_shared_sets_have_the_published_splits(shared_data, name):
    data = load_music(shared_data / "polyphonic-music" / name)
    assert tuple(len(data[s]) for s in ("train", "valid", "test")) == SPLITS[name]
    assert all(r.dtype == np.uint8 and r.shape[1] == 88 for r in data["test"])


def test_json_note_lists_equal_the_mat_rolls(shared_data):
    folder = shared_data / "polyphonic-music"
    mat, js = load_music(folder / "JSB_Chorales.mat"), load_music(folder / "jsb-chorales-quarter.json")
    for split in ("train", "valid", "test"):
        assert len(mat[split]) == len(js[split])
        assert all(np.array_equal(a, b) for a, b in zip(mat[split], js[split]))
    assert music_statistics(mat["train"])["frames"] == 13807


def test_mat_round_trip(tmp_path):
    train, test = rolls(4), rolls(2, seed=1)
    data = load_music(write_mat(tmp_path / "m.mat", traindata=train, testdata=test))
    assert set(data) == {"train", "test"}
    assert all(np.array_equal(a, b) for a, b in zip(data["train"], train))
    with pytest.raises(DataError, match="no 'valid' split"):
        load_split(tmp_path / "m.mat", "valid")


@pytest.mark.parametrize("bad,message", [
    (np.full((4, 88), 2, np.uint8), "not a binary piano roll"),
    (np.full((4, 88), 0.5), r"binary piano roll \(value 0\.5; expected 0/1\)"),   # the value, not its repr
    (np.zeros((4, 87), np.uint8), "87 columns"),
    (np.zeros((0, 88), np.uint8), "empty"),
    (np.full((3, 88), np.nan), "NaN"),
])
def test_bad_rolls_are_refused_with_one_line(tmp_path, bad, message):
    path = write_mat(tmp_path / "bad.mat", traindata=rolls(2) + [bad])
    with pytest.raises(DataError, match=message) as info:
        load_music(path)
    assert "\n" not in str(info.value) and "sequence 2" in str(info.value)


def test_other_bad_inputs(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_music(tmp_path / "missing.mat")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(DataError, match="unknown music format"):
        load_music(tmp_path / "x.txt")
    scipy.io.savemat(tmp_path / "other.mat", {"X": np.zeros((3, 88))})
    with pytest.raises(DataError, match="traindata"):
        load_music(tmp_path / "other.mat")
    (tmp_path / "n.json").write_text(json.dumps({"train": [[[60, 200]]]}))
    with pytest.raises(DataError, match="outside the piano range"):
        load_music(tmp_path / "n.json")
    with pytest.raises(DataError, match="holds no sequences"):
        check_piano_rolls([])


def test_midi_round_trip(tmp_path):
    pytest.importorskip("mido")
    roll = np.zeros((8, 88), np.uint8)
    roll[0:4, 39] = 1            # middle C held four frames
    roll[2, 43] = roll[5, 46] = 1
    roll[6:8, [0, 87]] = 1       # the lowest and highest keys
    path = piano_roll_to_midi(roll, tmp_path / "a.mid", frames_per_beat=2)
    again = midi_to_piano_roll(path, frames_per_beat=2)
    assert np.array_equal(again, roll)
    assert np.array_equal(load_music(tmp_path, frames_per_beat=2)["all"][0], roll)   # a directory of MIDI files
    (tmp_path / "bad.mid").write_bytes(b"not midi")
    with pytest.raises(DataError, match="not a readable MIDI file"):
        midi_to_piano_roll(tmp_path / "bad.mid")


def test_missing_mido_gives_one_line(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_mido(name, *args, **kwargs):
        if name == "mido":
            raise ImportError("no mido")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_mido)
    (tmp_path / "a.mid").write_bytes(b"MThd")
    with pytest.raises(DataError, match="pip install mido"):
        load_music(tmp_path / "a.mid")


def test_transposed_shifts_every_piece_without_cutting_a_note():
    low = np.zeros((3, 88), np.uint8)
    low[:, [0, 5]] = 1            # lowest key sounds: no downward shift
    mid = np.zeros((2, 88), np.uint8)
    mid[0, 40] = mid[1, 47] = 1
    out = transposed([low, mid], 2)
    # shift 0 first (the pieces themselves), then −1, +1, −2, +2, each skipped where a note would fall off
    assert [r.shape for r in out] == [(3, 88), (2, 88), (2, 88), (3, 88), (2, 88), (2, 88), (3, 88), (2, 88)]
    assert out[0] is not low and np.array_equal(out[0], low) and np.array_equal(out[1], mid)
    assert np.flatnonzero(out[2][0]).tolist() == [39] and np.flatnonzero(out[2][1]).tolist() == [46]
    assert np.flatnonzero(out[3][0]).tolist() == [1, 6]
    assert np.flatnonzero(out[7][1]).tolist() == [49]
    assert all(r.sum() == (low if r.shape[0] == 3 else mid).sum() for r in out)  # no note lost
    assert len(transposed([low, mid], 0)) == 2
    with pytest.raises(ConfigurationError, match="semitones"):
        transposed([mid], -1)


def test_nll_and_frame_accuracy_by_hand():
    """A model with V = 0 predicts p_i = σ(c_i) at every step: the NLL per step is
    −Σ_i [y log p + (1 − y) log(1 − p)] averaged over frames, computed here directly; the frame
    accuracy counts TP/FP/FN of the prediction p > 0.5."""
    model = RNN(4, 3, output="sigmoid", dtype=torch.float64)
    p = torch.tensor([0.9, 0.2, 0.6, 0.1], dtype=torch.float64)
    with torch.no_grad():
        model.V.zero_()
        model.c.copy_(torch.log(p / (1 - p)))
    seqs = [torch.tensor([[1, 0, 1, 0], [1, 1, 0, 0]], dtype=torch.float64),
            torch.tensor([[0, 0, 1, 1]], dtype=torch.float64)]
    frames = torch.cat(seqs)
    nll = float(-(frames * p.log() + (1 - frames) * (1 - p).log()).sum() / 3)
    result = evaluate_sequences(model, SequenceBatches(seqs))
    assert math.isclose(result["nll_per_step"], nll, rel_tol=1e-12)
    guess = (p > 0.5).expand(3, -1)
    truth = frames > 0.5
    tp, fp, fn = (guess & truth).sum(), (guess & ~truth).sum(), (~guess & truth).sum()
    assert math.isclose(result["frame_accuracy"], float(tp / (tp + fp + fn)))
    assert result["frames"] == 3


def test_next_step_rnn_beats_the_marginal_baseline_on_jsb(shared_data):
    """A few epochs on 60 JSB chorales: the validation NLL beats independent notes with the
    training marginals (the output bias alone), and early stopping keeps the best epoch."""
    data = load_music(shared_data / "polyphonic-music" / "JSB_Chorales.mat")
    def to_source(rs):
        return SequenceBatches([torch.from_numpy(r).float() for r in rs])

    train, valid = to_source(data["train"][:60]), to_source(data["valid"][:20])
    marginal = RNN(88, 32, output="sigmoid")
    with torch.no_grad():
        marginal.V.zero_()
    marginal.init_from_data(train.mean().float())
    baseline = evaluate_sequences(marginal, valid)["nll_per_step"]
    model = RNN(88, 32, output="sigmoid", seed=0)
    trainer = fit_sequences(model, train, valid, epochs=8, batch_size=8, lr=3e-3, patience=3)
    best = min(h["valid_loss"] for h in trainer.history)
    assert best < baseline - 0.5
    assert math.isclose(evaluate_sequences(model, valid)["nll_per_step"], best, rel_tol=1e-6)


def test_distinct_frames_are_the_unique_rows_in_every_key():
    a = np.zeros((3, 88), np.float32)
    a[0, 40] = a[2, 40] = 1
    a[1, [40, 44]] = 1                                            # frames: {40}, {40, 44}, {40}
    assert distinct_frames([a]).shape == (2, 88)
    shifted = distinct_frames([a, a.copy()], 1)             # the same frames at −1, 0, +1
    assert shifted.shape == (6, 88) and shifted.dtype == np.float32
    assert {tuple(np.flatnonzero(f)) for f in shifted} == {(39,), (40,), (41,), (39, 43), (40, 44), (41, 45)}
    assert distinct_frames([]).shape == (0, 88)


def test_music_statistics_count_new_frames_and_accompaniment_changes():
    """Two hand-written pieces: piece 1 holds a low C for 3 frames then a low D for 2 while the melody
    moves every frame; piece 2 repeats one frame 3 times.  New frames: 4 of 4 steps, then 0 of 2;
    accompaniment changes: 1, then 0, so 8 frames / (1 change + 2 pieces)."""
    from boltzkit.data.music import LOW_KEYS, LOWEST_NOTE

    c3, d3, melody = 48 - LOWEST_NOTE, 50 - LOWEST_NOTE, [72 - LOWEST_NOTE + i for i in range(5)]
    one = np.zeros((5, 88), np.uint8)
    one[:3, c3] = one[3:, d3] = 1
    one[np.arange(5), melody] = 1
    two = np.zeros((3, 88), np.uint8)
    two[:, [c3, melody[0]]] = 1
    stats = music_statistics([one, two])
    assert c3 < LOW_KEYS <= melody[0]
    assert stats["frames"] == 8 and stats["notes_per_frame"] == pytest.approx(16 / 8)
    assert stats["new_frame_rate"] == pytest.approx(4 / 6)
    assert stats["frames_per_low_change"] == pytest.approx(8 / 3)
