"""How generated pieces move, beside a data split: notes per frame, the fraction of steps with a
new frame, and frames per change of the accompaniment (the notes below A3), by
:func:`boltzkit.data.music.music_statistics`.  The pieces are ``.npy`` files written by
``boltzkit sequence generate --npy``.

    boltzkit sequence generate DIR -n 50 --steps 200 --seed 1 --frames-from Nottingham.mat --npy restricted.npy
    boltzkit sequence generate DIR -n 50 --steps 200 --seed 1 --gibbs-steps 200 --npy gibbs.npy
    python benchmarks/music_sample_stats.py --data ../shared/data/polyphonic-music/Nottingham.mat \\
        restricted.npy gibbs.npy
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from boltzkit.data.music import load_music, music_statistics, pick_split
from boltzkit.errors import DataError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pieces", nargs="+", type=Path, help=".npy files of generated rolls (n, steps, 88)")
    p.add_argument("--data", type=Path, required=True, help="the data set the model was trained on")
    p.add_argument("--split", default="test", help="the split to compare with (default test)")
    p.add_argument("--steps", type=int, default=200, help="compare the first N frames of each data piece "
                   "(default 200, as generated)")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error(f"--steps must be at least 1, got {args.steps}")
    try:
        data = pick_split(load_music(args.data), args.split, str(args.data))
    except DataError as error:
        p.error(str(error))
    rows = {f"{args.split} data": music_statistics([r[:args.steps] for r in data])}
    for path in args.pieces:
        rows[path.name] = music_statistics(list(np.load(path)))
    for name, row in rows.items():
        print(json.dumps({"pieces": name, **{k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
