"""Property-based tests of the music loader (issue #21, item 8) on hostile bytes: MIDI, the JSON
note lists and the .mat piano-roll sets (cell arrays, read by boltzkit's checked MATLAB reader).

Random bytes and mutations of a valid file end in a valid result (``{split: [uint8 (T, 88)
0/1 arrays]}``) or a one-line :class:`~boltzkit.errors.DataError` naming the file — never
another exception, a hang, or an allocation far beyond the file (the contract and mutation
strategies of ``test_fuzz_loaders.py``).  A few hand-made cells pin what the fuzzer found: a
zero or SMPTE time division, a 2^28-tick delta time (a 22 GiB roll from 37 bytes), JSON nested
100,000 deep.
"""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest
import scipy.io
from hypothesis import given
from hypothesis import strategies as st

from boltzkit.data.music import MAX_FRAMES, N_NOTES, load_music
from boltzkit.errors import DataError
from test_fuzz_loaders import FAST, SLOW, maybe_random, mutated, outcome, workdir, write  # noqa: F401

pytest.importorskip("mido")

RNG = np.random.default_rng(0)


def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    return bytes(reversed(out))


def midi_bytes(ticks_per_beat: int, events: list[bytes]) -> bytes:
    """A type-0 MIDI file with one track of ``events`` (delta time + message) and end of track."""
    track = b"".join(events) + b"\x00\xff\x2f\x00"
    return (b"MThd" + struct.pack(">IHHH", 6, 0, 1, ticks_per_beat) + b"MTrk" + struct.pack(">I", len(track))
            + track)


def _rolls(n: int) -> list[np.ndarray]:
    return [(RNG.random((int(RNG.integers(2, 6)), N_NOTES)) < 0.05).astype(np.float64) for _ in range(n)]


def _mat_bytes(**kwargs) -> bytes:
    buffer = io.BytesIO()
    cells = {}
    for key, rolls in (("traindata", _rolls(3)), ("testdata", _rolls(2))):
        cell = np.empty((1, len(rolls)), dtype=object)
        for i, roll in enumerate(rolls):
            cell[0, i] = roll
        cells[key] = cell
    scipy.io.savemat(buffer, cells, **kwargs)
    return buffer.getvalue()


MIDI = midi_bytes(4, [b"\x00\x90\x3c\x40", b"\x00\x90\x40\x40", b"\x04\x80\x3c\x00", b"\x04\x80\x40\x00",
                      b"\x00\x90\x43\x40", b"\x08\x80\x43\x00"])
JSON = json.dumps({"train": [[[60, 64], [67], []], [[21], [108]]], "test": [[[62]]]}).encode()
MAT = _mat_bytes()
MAT_COMPRESSED = _mat_bytes(do_compression=True)


def check_music(result) -> None:
    if isinstance(result, DataError):
        return
    assert isinstance(result, dict) and result
    for pieces in result.values():
        assert pieces
        for roll in pieces:
            assert roll.dtype == np.uint8 and roll.ndim == 2 and roll.shape[1] == N_NOTES and roll.shape[0] >= 1
            assert roll.shape[0] <= MAX_FRAMES and set(np.unique(roll)) <= {0, 1}


def test_seed_files_load(workdir):  # noqa: F811
    assert [r.shape for r in load_music(write(workdir, "s.mid", MIDI))["all"]] == [(4, N_NOTES)]
    assert len(load_music(write(workdir, "s.json", JSON))["train"]) == 2
    for name, raw in (("s.mat", MAT), ("c.mat", MAT_COMPRESSED)):
        data = load_music(write(workdir, name, raw))
        assert sorted(data) == ["test", "train"] and len(data["train"]) == 3 and len(data["test"]) == 2


@FAST
@given(raw=maybe_random(MIDI))
def test_fuzz_midi(workdir, raw):  # noqa: F811
    check_music(outcome(load_music, write(workdir, "f.mid", raw)))


@FAST
@given(raw=st.one_of(mutated(JSON, text=True), st.binary(max_size=300)))
def test_fuzz_json(workdir, raw):  # noqa: F811
    check_music(outcome(load_music, write(workdir, "f.json", raw)))


@FAST
@given(raw=st.one_of(maybe_random(MAT), maybe_random(MAT_COMPRESSED)))
def test_fuzz_mat(workdir, raw):  # noqa: F811
    check_music(outcome(load_music, write(workdir, "f.mat", raw)))


@pytest.mark.slow
@SLOW
@given(raw=st.one_of(maybe_random(MIDI), maybe_random(MAT), maybe_random(MAT_COMPRESSED)))
def test_fuzz_music_long(workdir, raw):  # noqa: F811
    name = "f.mid" if raw[:4] == b"MThd" else "f.mat"
    check_music(outcome(load_music, write(workdir, name, raw)))


@pytest.mark.parametrize("name, raw, message", [
    ("zero.mid", midi_bytes(0, [b"\x00\x90\x3c\x40", b"\x10\x80\x3c\x00"]), "time division"),
    ("smpte.mid", midi_bytes(0xE728, [b"\x00\x90\x3c\x40", b"\x10\x80\x3c\x00"]), "SMPTE"),
    ("bomb.mid", midi_bytes(1, [b"\x00\x90\x3c\x40", _vlq(0x0FFFFFFF) + b"\x80\x3c\x00"]), "frames"),
    ("deep.json", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ("deep2.json", b'{"train": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
])
def test_found_by_the_fuzzer(workdir, name, raw, message):  # noqa: F811
    result = outcome(load_music, write(workdir, name, raw))
    assert isinstance(result, DataError) and message in str(result), result


def test_mat_cells_match_scipy(workdir):  # noqa: F811
    path = write(workdir, "ref.mat", MAT_COMPRESSED)
    ours, theirs = load_music(path), scipy.io.loadmat(str(path))
    for key, split in (("traindata", "train"), ("testdata", "test")):
        expected = [np.asarray(x).astype(np.uint8) for x in theirs[key].ravel()]
        assert len(ours[split]) == len(expected)
        assert all(np.array_equal(a, b) for a, b in zip(ours[split], expected))


def test_mat_without_cells_or_with_nested_cells(workdir):  # noqa: F811
    plain = io.BytesIO()
    scipy.io.savemat(plain, {"traindata": np.zeros((3, N_NOTES))})
    assert [r.shape for r in load_music(write(workdir, "p.mat", plain.getvalue()))["train"]] == [(3, N_NOTES)]
    nested = np.empty((1, 1), dtype=object)
    inner = np.empty((1, 1), dtype=object)
    inner[0, 0] = np.zeros((2, N_NOTES))
    nested[0, 0] = inner
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"traindata": nested})
    with pytest.raises(DataError, match="sequence 0 is not a numeric matrix"):
        load_music(write(workdir, "n.mat", buffer.getvalue()))
    text = io.BytesIO()
    scipy.io.savemat(text, {"traindata": "abc"})
    with pytest.raises(DataError, match="neither a numeric matrix nor a cell array"):
        load_music(write(workdir, "t.mat", text.getvalue()))
