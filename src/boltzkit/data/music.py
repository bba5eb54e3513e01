"""Polyphonic music as binary piano rolls: one (T, 88) 0/1 array per piece, column j = MIDI note 21 + j.

:func:`load_music` reads a file and returns its splits as ``{"train": [...], "valid": [...],
"test": [...]}`` (or ``{"all": [...]}`` for MIDI without splits):

- ``.mat`` — the piano rolls of Boulanger-Lewandowski, Bengio & Vincent (2012): keys
  ``traindata`` / ``validdata`` / ``testdata``, each a cell array of (T_i, 88) arrays;
- ``.json`` — the same sets as note lists, ``{"train": [[[60, 64, 67], [..]], ...], ...}``
  (each step a list of MIDI note numbers);
- ``.mid`` / ``.midi`` — one file (via ``mido``, imported only then: ``pip install mido``), or a
  directory of MIDI files, with ``train`` / ``valid`` / ``test`` subdirectories if it has them.
  A note sounds in frame n when it is on during any part of [n, n+1)·(1 / frames_per_beat) beats.

Every bad input raises :class:`~boltzkit.errors.DataError` with one line: a file that is not
there or not a regular file, values other than 0/1, a width other than 88, an empty piece, NaN,
a MIDI piece of more than :data:`MAX_FRAMES` frames.  Files are read whole and parsed from
memory; ``.mat`` files go through the checked MATLAB reader of :mod:`boltzkit.data.formats`.
"""

from __future__ import annotations

import io
import json
import logging
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..validation import check_int
from .formats import _fmt_keys, load_mat_variables, read_regular_file

logger = logging.getLogger("boltzkit")

#: piano range: MIDI 21 (A0) … 108 (C8)
N_NOTES = 88
LOWEST_NOTE = 21
SPLITS = ("train", "valid", "test")
_MAT_KEYS = {"traindata": "train", "validdata": "valid", "testdata": "test"}
MIDI_SUFFIXES = (".mid", ".midi")
#: largest transposition (:func:`transposed`): −6…+6 semitones reach every key of the octave
MAX_TRANSPOSE = 6
#: keys of the piano roll below A3 (MIDI 57): :func:`music_statistics`' accompaniment
LOW_KEYS = 57 - LOWEST_NOTE
#: longest MIDI piece read, in frames (17.6 MB as a piano roll; 27 hours at 1 frame per beat and
#: 120 bpm): a few damaged bytes can claim 2^28 ticks, which would be a 22 GiB roll
MAX_FRAMES = 200_000

PathType = str | PathLike[str]


def check_piano_rolls(rolls: list[Any], name: str = "data") -> list[np.ndarray]:
    """The pieces as uint8 (T, 88) arrays, after checking each is a non-empty binary 2-D array
    of 88 columns without NaN (:class:`DataError` naming the piece otherwise)."""
    if len(rolls) == 0:
        raise DataError(f"{name}: holds no sequences")
    out = []
    for i, roll in enumerate(rolls):
        a = np.asarray(roll)
        if a.dtype.kind not in "biuf":
            raise DataError(f"{name}: sequence {i} is not numeric (dtype {a.dtype})")
        if a.ndim != 2:
            raise DataError(f"{name}: sequence {i} must be 2-D (steps × 88 notes), got shape {a.shape}")
        if a.shape[0] == 0:
            raise DataError(f"{name}: sequence {i} is empty (0 steps)")
        if a.shape[1] != N_NOTES:
            raise DataError(f"{name}: sequence {i} has {a.shape[1]} columns; a piano roll has {N_NOTES} "
                            f"(MIDI {LOWEST_NOTE}..{LOWEST_NOTE + N_NOTES - 1})")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise DataError(f"{name}: sequence {i} contains NaN or inf")
        if not np.isin(a, (0, 1)).all():
            bad = a[~np.isin(a, (0, 1))].flat[0].item()
            raise DataError(f"{name}: sequence {i} is not a binary piano roll (value {bad:g}; expected 0/1)")
        out.append(a.astype(np.uint8))
    return out


def _load_mat(path: Path) -> dict[str, list[np.ndarray]]:
    # the checked reader of boltzkit.data.formats (sizes, codes and inflated bytes bounded), not
    # scipy's, whose C reader trusts the file's type codes
    contents = load_mat_variables(path)
    found = {key: split for key, split in _MAT_KEYS.items() if key in contents}
    if not found:
        raise DataError(f"{path}: no traindata/validdata/testdata variables (found {_fmt_keys(sorted(contents))})")
    out = {}
    for key, split in found.items():
        cell = contents[key]
        if cell is None:
            raise DataError(f"{path}: {key} is neither a numeric matrix nor a cell array of them")
        items = list(cell.ravel()) if cell.dtype == object else [cell]
        for i, item in enumerate(items):
            if not isinstance(item, np.ndarray) or item.dtype == object:
                raise DataError(f"{path} [{split}]: sequence {i} is not a numeric matrix")
        out[split] = check_piano_rolls(items, f"{path} [{split}]")
    return out


def _notes_to_roll(steps: list[list[int]], name: str) -> np.ndarray:
    roll = np.zeros((len(steps), N_NOTES), dtype=np.uint8)
    for t, notes in enumerate(steps):
        for note in notes:
            if not isinstance(note, (int, float)) or not float(note).is_integer():
                raise DataError(f"{name}: step {t} has a note {note!r} that is not a MIDI number")
            j = int(note) - LOWEST_NOTE
            if not 0 <= j < N_NOTES:
                raise DataError(f"{name}: step {t} has MIDI note {int(note)} outside the piano range "
                                f"{LOWEST_NOTE}..{LOWEST_NOTE + N_NOTES - 1}")
            roll[t, j] = 1
    return roll


def _load_json(path: Path) -> dict[str, list[np.ndarray]]:
    try:
        contents = json.loads(read_regular_file(path, "JSON file")[1].decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply (a piano roll is three levels)") from None
    if not isinstance(contents, dict) or not any(s in contents for s in SPLITS):
        raise DataError(f"{path}: expected an object with 'train', 'valid' and/or 'test' lists of note lists")
    out = {}
    for split in SPLITS:
        if split in contents:
            pieces = contents[split]
            if not isinstance(pieces, list):
                raise DataError(f"{path}: '{split}' must be a list of sequences")
            rolls = []
            for i, piece in enumerate(pieces):
                if not isinstance(piece, list) or not all(isinstance(s, list) for s in piece):
                    raise DataError(f"{path} [{split}]: sequence {i} must be a list of note lists")
                rolls.append(_notes_to_roll(piece, f"{path} [{split}] sequence {i}"))
            out[split] = check_piano_rolls(rolls, f"{path} [{split}]")
    return out


def _mido() -> Any:
    try:
        import mido
    except ImportError:
        raise DataError("MIDI files need the optional mido package: pip install mido (or boltzkit[music])") from None
    return mido


def midi_to_piano_roll(path: PathType, frames_per_beat: int = 1) -> np.ndarray:
    """One MIDI file as a (T, 88) piano roll at ``frames_per_beat`` frames per quarter note
    (all tracks and channels merged; notes outside the piano range are dropped)."""
    check_int("frames_per_beat", frames_per_beat, least=1)
    mido = _mido()
    # read here (regular files only) and parsed from memory: mido reading the file itself would
    # allocate whatever chunk length a damaged header claims (up to 4 GiB) before reading it
    path, raw = read_regular_file(path, "MIDI file")
    try:
        midi = mido.MidiFile(file=io.BytesIO(raw))
    except (OSError, EOFError, ValueError, KeyError, IndexError) as exc:
        raise DataError(f"{path}: not a readable MIDI file ({exc})") from None
    if midi.type == 2:
        raise DataError(f"{path}: MIDI type 2 (independent tracks) is not supported")
    if not 1 <= midi.ticks_per_beat < 0x8000:
        raise DataError(f"{path}: time division {midi.ticks_per_beat} is not 1..32767 ticks per beat "
                        f"(SMPTE timing is not supported)")
    ticks_per_frame = midi.ticks_per_beat / frames_per_beat
    on: dict[Any, Any] = {}
    tick, notes, dropped = 0, [], 0
    for message in mido.merge_tracks(midi.tracks):
        tick += message.time
        if message.type not in ("note_on", "note_off"):
            continue
        key = (getattr(message, "channel", 0), message.note)
        if message.type == "note_on" and message.velocity > 0:
            on.setdefault(key, tick)
        elif key in on:
            notes.append((message.note, on.pop(key), tick))
    notes += [(k[1], start, tick) for k, start in on.items()]   # never switched off
    if not notes:
        raise DataError(f"{path}: holds no notes")
    frames = int(np.ceil(max(end for _, _, end in notes) / ticks_per_frame))
    if frames > MAX_FRAMES:
        raise DataError(f"{path}: the notes span {frames:,} frames at {frames_per_beat} per beat, more than "
                        f"{MAX_FRAMES:,} (a damaged delta time?)")
    roll = np.zeros((max(frames, 1), N_NOTES), dtype=np.uint8)
    for note, start, end in notes:
        j = note - LOWEST_NOTE
        if not 0 <= j < N_NOTES:
            dropped += 1
            continue
        first = int(start // ticks_per_frame)
        last = max(first + 1, int(np.ceil(end / ticks_per_frame)))
        roll[first:last, j] = 1
    if dropped:
        logger.info("%s: dropped %d notes outside the piano range", path, dropped)
    return roll


def piano_roll_to_midi(roll: np.ndarray, path: PathType, frames_per_beat: int = 1, tempo_bpm: float = 120.0,
                       velocity: int = 80) -> Path:
    """Write a (T, 88) piano roll as a one-track MIDI file (a note held over consecutive frames
    is one note)."""
    check_int("frames_per_beat", frames_per_beat, least=1)
    mido = _mido()
    (roll,) = check_piano_rolls([roll], "piano roll")
    midi = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm), time=0))
    ticks = 480 // frames_per_beat
    padded = np.vstack([np.zeros((1, N_NOTES), np.int8), roll.astype(np.int8), np.zeros((1, N_NOTES), np.int8)])
    change = np.diff(padded, axis=0)          # +1: note starts at frame t, −1: ends at frame t
    last = 0
    for t in range(change.shape[0]):
        for j in np.flatnonzero(change[t] == -1):
            track.append(mido.Message("note_off", note=int(j) + LOWEST_NOTE, velocity=0, time=t * ticks - last))
            last = t * ticks
        for j in np.flatnonzero(change[t] == 1):
            track.append(mido.Message("note_on", note=int(j) + LOWEST_NOTE, velocity=velocity,
                                      time=t * ticks - last))
            last = t * ticks
    path = Path(path)
    midi.save(str(path))
    return path


def _load_midi_dir(path: Path, frames_per_beat: int) -> dict[str, list[np.ndarray]]:
    def files(folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in MIDI_SUFFIXES and p.is_file())

    subdirs = {s: path / s for s in SPLITS if (path / s).is_dir()}
    groups = {s: files(d) for s, d in subdirs.items()} if subdirs else {"all": files(path)}
    out = {}
    for split, found in groups.items():
        if not found:
            raise DataError(f"{path}: no .mid/.midi files" + (f" in {split}/" if subdirs else ""))
        out[split] = [midi_to_piano_roll(p, frames_per_beat) for p in found]
    return out


def load_music(path: PathType, frames_per_beat: int = 1) -> dict[str, list[np.ndarray]]:
    """The pieces of ``path`` by split (module docstring): lists of uint8 (T, 88) arrays."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    if p.is_dir():
        return _load_midi_dir(p, frames_per_beat)
    suffix = p.suffix.lower()
    if suffix == ".mat":
        return _load_mat(p)
    if suffix == ".json":
        return _load_json(p)
    if suffix in MIDI_SUFFIXES:
        return {"all": [midi_to_piano_roll(p, frames_per_beat)]}
    raise DataError(f"{p}: unknown music format {suffix or '(no extension)'!r}; expected .mat, .json, "
                    f".mid/.midi or a directory of MIDI files")


def load_split(path: PathType, split: str = "train", frames_per_beat: int = 1) -> list[np.ndarray]:
    """One split of :func:`load_music` (``"all"`` for MIDI without splits)."""
    splits = load_music(path, frames_per_beat)
    if split not in splits:
        raise DataError(f"{path}: has no {split!r} split (has {', '.join(splits)})")
    return splits[split]


def music_statistics(rolls: list[np.ndarray], low_keys: int = LOW_KEYS) -> dict[str, float]:
    """Pieces, frames and mean notes per frame of a split (or of generated pieces), and two
    measures of motion: ``new_frame_rate``, the fraction of steps whose frame differs from the one
    before, and ``frames_per_low_change``, the frames per change of the notes on the lowest
    ``low_keys`` keys (below A3 by default: the accompaniment of Nottingham's tunes), pooled as
    frames / (changes + pieces)."""
    frames = sum(r.shape[0] for r in rolls)
    steps = sum(max(r.shape[0] - 1, 0) for r in rolls)
    new = sum(int((r[1:] != r[:-1]).any(-1).sum()) for r in rolls)
    low = sum(int((r[1:, :low_keys] != r[:-1, :low_keys]).any(-1).sum()) for r in rolls)
    return {"sequences": len(rolls), "frames": frames,
            "notes_per_frame": float(sum(r.sum() for r in rolls)) / max(frames, 1),
            "new_frame_rate": new / max(steps, 1), "frames_per_low_change": frames / max(low + len(rolls), 1)}


def transposed(rolls: list[np.ndarray], semitones: int) -> list[np.ndarray]:
    """Every piece at every shift s ∈ {−semitones, …, +semitones} (s = 0 first, so the pieces
    themselves come first), as training-data augmentation: column j of the shifted roll is
    column j − s of the original.  A shift that would move a sounding note off the 88-key
    range is skipped for that piece, so no note is ever cut.  ``semitones`` ≤
    :data:`MAX_TRANSPOSE` (each shift is a copy of the pieces)."""
    check_int("semitones", semitones, least=0, most=MAX_TRANSPOSE)
    shifts = [0, *(s for k in range(1, semitones + 1) for s in (-k, k))]
    ranges = []  # the shifts each piece allows: [−lowest sounding key, 87 − highest]
    for roll in rolls:
        sounding = np.flatnonzero(roll.any(axis=0))
        ranges.append((-sounding[0], roll.shape[1] - 1 - sounding[-1]) if sounding.size else (-np.inf, np.inf))
    return [np.roll(roll, s, axis=1) for s in shifts for roll, (down, up) in zip(rolls, ranges) if down <= s <= up]


def distinct_frames(rolls: list[np.ndarray], semitones: int = 0) -> np.ndarray:
    """The distinct frames (rows) of ``rolls`` and of their :func:`transposed` copies up to
    ``semitones``, as one (S, keys) float32 array: candidate frames for the certain lower bound
    on an RNN-RBM's NLL (:func:`boltzkit.models.sequence.candidate_log_partition`)."""
    shifted = transposed(rolls, semitones)
    if not shifted:
        return np.zeros((0, N_NOTES), np.float32)
    return np.unique(np.concatenate(shifted).astype(np.uint8), axis=0).astype(np.float32)


def split_frames(splits: dict[str, list[np.ndarray]], names: list[str] | None = None,
                 semitones: int = MAX_TRANSPOSE, source: str = "data") -> np.ndarray:
    """:func:`distinct_frames` of the named splits of :func:`load_music`'s ``splits`` (default every
    split) in every key up to ``semitones``: the candidate frames of an RNN-RBM's certain bound (every
    split), of its map or mean prediction and of restricted generation (the training split only).
    A missing split is a :class:`DataError` naming ``source``."""
    names = list(splits) if names is None else names
    return distinct_frames([roll for name in names for roll in pick_split(splits, name, source)], semitones)


def pick_split(splits: dict[str, list[np.ndarray]], name: str, source: str = "data") -> list[np.ndarray]:
    """The ``name`` split of :func:`load_music`'s ``splits``; a missing one is a :class:`DataError`
    naming ``source`` and the splits it has."""
    if name not in splits:
        raise DataError(f"{source} has no {name!r} split (it has {', '.join(splits)})")
    return splits[name]
