"""``boltzkit recommend train|evaluate|top``: the collaborative-filtering RBM on the command line.

Registered by :func:`boltzkit.cli.build_parser` through :func:`add_parser`; errors follow the
core command line (a :class:`~boltzkit.errors.BoltzkitError` becomes one line
``boltzkit: error: …`` and exit code 2), and every input is read and checked before anything
is written.  Ids on the command line and in the output are the original ids of the ratings
files; a test rating is never an input when it is predicted.  ``train --nproc N`` (or
``torchrun``) is data parallel (:mod:`boltzkit.training.distributed`): each process takes
``--batch-size`` / N cases of every batch; process 0 writes.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import checkpoint
from ..errors import BoltzkitError, ConfigurationError, DataError, DivergenceError
from ..recommend import (
    CASE_DEFAULTS,
    CFRBM,
    RatingData,
    align_ratings,
    load_ratings,
    mae,
    ranking_metrics,
    rmse,
    split_ratings,
    to_dense,
)
from ..training import distributed
from ..training.threads import torch_threads
from . import common
from .common import HelpFormatter

#: the held-out split of ``recommend train --test-fraction``, saved so ``evaluate`` can rerun on it
SPLIT_FILES = ("train_ratings.tsv", "test_ratings.tsv")

#: help of ``--threads`` (every recommend command)
THREADS_HELP = ("torch CPU threads (default 1: batches of 10 cases gain little from more, and two threads "
                "on a busy 2-core machine were measured 10x slower)")

#: cut-off of the ranking metrics written by ``evaluate`` (precision@10, recall@10, ndcg@10)
TOP_K = 10


def _aligned(data: RatingData, reference: RatingData, what: str) -> RatingData:
    """``data`` under the reference's id maps; ratings of unknown users or items are dropped
    with a one-line note on stderr (the model has no input for them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        aligned, dropped = align_ratings(data, reference, unknown="drop")
    if dropped:
        logging.getLogger("boltzkit").warning(f"note: skipped {dropped} of {len(data)} {what} ratings whose user or "
                                              f"item is not in the training ratings")
    if len(aligned) == 0:
        raise DataError(f"no {what} rating has a user and item known from the training ratings")
    return aligned


def _check_held_out(seen: np.ndarray, test: RatingData) -> None:
    """Refuse test pairs that are inputs (``seen``: bool users × items): their rating would be
    predicted from itself."""
    overlap = seen[test.users, test.items]
    if overlap.any():
        j = int(np.flatnonzero(overlap)[0])
        raise DataError(f"{int(overlap.sum())} test (user, item) pairs are also in the input ratings, e.g. user "
                        f"{test.user_ids[test.users[j]]}, item {test.item_ids[test.items[j]]}; "
                        f"test ratings must be held out")


def test_metrics(model: CFRBM, test: RatingData) -> dict[str, Any]:
    """RMSE and MAE of the expected ratings on ``test`` (model id maps) and, when some user has
    a test rating ≥ K − 1, precision/recall/NDCG@10 of ranking the items that are not inputs."""
    pred = model.predict(test.users, test.items)
    result: dict[str, Any] = {"rmse": rmse(pred, test.ratings), "mae": mae(pred, test.ratings), "n": len(test)}
    threshold = max(1, model.n_levels_ - 1)
    if (test.ratings >= threshold).any():
        rank = ranking_metrics(model.scores(), model.input_mask().numpy(), test, k=TOP_K, threshold=threshold)
        result.update({f"precision@{TOP_K}": rank["precision"], f"recall@{TOP_K}": rank["recall"],
                       f"ndcg@{TOP_K}": rank["ndcg"], "ranked_users": rank["n_users"]})
    return result


def _print_result(result: dict[str, Any], as_json: bool) -> None:
    common.print_result(result, as_json, width=14)


def _ratings(path: str, flag: str, n_levels: int | None = None) -> RatingData:
    """A ratings file named by ``flag``: a regular file, parsed by :func:`load_ratings`."""
    common.input_file(path, flag)
    try:
        return load_ratings(path, n_levels=n_levels)
    except DataError as e:
        raise DataError(f"{flag}: {e}") from None


def _save_ratings(path: Path, data: RatingData) -> None:
    """``data`` as 'user item rating' lines under the original ids (atomic)."""
    lines = [f"{data.user_ids[u]}\t{data.item_ids[i]}\t{r}" for u, i, r in zip(data.users, data.items, data.ratings)]
    checkpoint.atomic_write_text(path, "\n".join(lines) + "\n")


def cmd_train(args: argparse.Namespace) -> int:
    out = common.output_directory(args.out, "--out")
    if args.test_fraction is not None and not 0 < args.test_fraction < 1:
        raise ConfigurationError(f"--test-fraction must be in (0, 1), got {args.test_fraction}")
    if args.levels is not None and args.levels < 2:
        raise ConfigurationError(f"--levels must be at least 2, got {args.levels}")
    for flag, value in (("--lr", args.lr), ("--weight-decay", args.weight_decay)):
        if value is not None and not (math.isfinite(value) and value >= 0 and (flag != "--lr" or value > 0)):
            raise ConfigurationError(f"{flag} must be a finite number {'> 0' if flag == '--lr' else '≥ 0'}, "
                                     f"got {value}")
    common.input_file(args.ratings, "--ratings")
    if args.test:
        common.input_file(args.test, "--test")
    world = distributed.planned_world(args)
    distributed.check_split(world, CFRBM().batch_size if args.batch_size is None else args.batch_size,
                            "--batch-size", "cases")
    launched = distributed.launch(args, cmd_train, getattr(args, "argv", None))
    if launched is not None:
        return launched
    data = _ratings(args.ratings, "--ratings", args.levels)
    test = None
    if args.test:
        test = _aligned(_ratings(args.test, "--test", data.n_levels), data, "test")
        _check_held_out((to_dense(data, dtype=torch.int8) > 0).numpy(), test)
        train = data
    elif args.test_fraction is not None:
        train, test = split_ratings(data, args.test_fraction, seed=args.seed)
    else:
        train = data
    options = {name: getattr(args, name) for name in ("n_hidden", "epochs", "lr", "batch_size", "weight_decay", "cases")
               if getattr(args, name) is not None}
    model = CFRBM(**options, conditional=args.conditional, seed=args.seed, verbose=False)
    history: list[dict[str, float]] = []
    bar = None
    if not args.quiet:
        from tqdm.auto import tqdm
        bar = tqdm(total=model.epochs, unit="epoch", dynamic_ncols=True, desc="recommend train")

    def record(m: CFRBM, epoch: int) -> None:
        row = dict(m.history_[-1])
        if test is not None and distributed.is_main():  # reported only; training never sees the test ratings
            pred = m.predict(test.users, test.items)
            row.update(test_rmse=rmse(pred, test.ratings), test_mae=mae(pred, test.ratings))
        history.append(row)
        if bar is not None:
            bar.update(1)
            bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k in ("val_rmse", "test_rmse")})

    try:
        model.fit(train, callback=record)
    except DivergenceError as e:
        logging.getLogger("boltzkit").warning(f"{e}; nothing written")
        return 1
    finally:
        if bar is not None:
            bar.close()
    if not distributed.is_main():  # rank 0 writes (every rank holds the same parameters: all-reduced)
        return 0
    checkpoint.save(out, model, extra={"processes": world} if world > 1 else None)
    checkpoint.write_metrics_csv(out / "metrics.csv", history)
    for name in SPLIT_FILES:
        (out / name).unlink(missing_ok=True)  # from an earlier run
    if args.test_fraction is not None:
        _save_ratings(out / SPLIT_FILES[0], train)
        _save_ratings(out / SPLIT_FILES[1], test)
    message = f"wrote {out}/ (model.safetensors, config.json, metrics.csv)"
    if test is not None:
        result = test_metrics(model, test)
        checkpoint.atomic_write_text(out / "test_metrics.json", common.finite_json(result) + "\n")
        message += f"; test RMSE {result['rmse']:.4f}, MAE {result['mae']:.4f} on {result['n']} ratings"
        if args.test_fraction is not None:
            message += (f"; the split is saved as {SPLIT_FILES[0]} / {SPLIT_FILES[1]}: rerun with 'boltzkit "
                        f"recommend evaluate {out} --ratings {out / SPLIT_FILES[0]} --test {out / SPLIT_FILES[1]}'")
    else:
        (out / "test_metrics.json").unlink(missing_ok=True)  # a stale one from an earlier run
    print(message)
    return 0


def _load_with_inputs(args: argparse.Namespace) -> CFRBM:
    """The checkpoint, with ``--ratings`` (if given) as the users' input ratings."""
    model = CFRBM.load(args.model)
    if args.ratings:
        inputs = _aligned(_ratings(args.ratings, "--ratings", model.n_levels_), model.id_reference(), "input")
        model.use_ratings(inputs)
    return model


def cmd_evaluate(args: argparse.Namespace) -> int:
    model = _load_with_inputs(args)
    test = _aligned(_ratings(args.test, "--test", model.n_levels_), model.id_reference(), "test")
    _check_held_out(model.input_mask().numpy(), test)
    _print_result(test_metrics(model, test), args.json)
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    model = _load_with_inputs(args)
    ids = model.user_ids_
    try:
        user_id = int(args.user) if ids.dtype.kind in "iu" else args.user
    except ValueError:
        raise BoltzkitError(f"--user {args.user!r} is not an integer id") from None
    found = np.flatnonzero(ids == user_id)
    if found.size == 0:
        raise BoltzkitError(f"user {args.user} is not in the model ({len(ids)} users, ids {ids.min()}..{ids.max()})")
    items, scores = model.top_items(int(found[0]), args.n)
    rows = [(model.item_ids_[i].item(), float(s)) for i, s in zip(items, scores)]
    if args.json:
        print(json.dumps([{"item": item, "score": score} for item, score in rows]))
    else:
        for item, score in rows:
            print(f"{item}\t{score:.4f}")
    return 0


def _run(args: argparse.Namespace) -> int:
    with torch_threads(args.threads):
        return args.command_func(args)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``recommend train|evaluate|top`` on the core command line's subparsers."""
    from .core import add_process_arguments

    r = sub.add_parser("recommend", formatter_class=HelpFormatter,
                       help="collaborative filtering with an RBM (Salakhutdinov, Mnih & Hinton 2007)")
    rsub = r.add_subparsers(dest="recommend_command", required=True, metavar="COMMAND")
    defaults = CFRBM()

    t = rsub.add_parser("train", formatter_class=HelpFormatter,
                        help="train a collaborative-filtering RBM on a ratings file")
    t.add_argument("--ratings", required=True, metavar="FILE",
                   help="lines 'user item rating [timestamp]' (MovieLens u.data, ratings.dat, CSV)")
    held_out = t.add_mutually_exclusive_group()
    held_out.add_argument("--test", metavar="FILE", help="held-out ratings to report RMSE/MAE on")
    held_out.add_argument("--test-fraction", type=float, metavar="F",
                          help="hold out this random fraction of --ratings (seeded by --seed)")
    t.add_argument("--levels", type=int, metavar="K", help="rating levels 1..K (default: the largest rating)")
    t.add_argument("--hidden", type=int, dest="n_hidden", metavar="N",
                   help=f"hidden units (default {defaults.n_hidden})")
    t.add_argument("--epochs", type=int, help=f"passes over the training cases (default {defaults.epochs})")
    t.add_argument("--lr", type=float, help=f"learning rate, decaying linearly over the epochs (default {defaults.lr})")
    t.add_argument("--batch-size", type=int, help=f"cases (items or users) per update (default {defaults.batch_size})")
    t.add_argument("--weight-decay", type=float,
                   help=f"L2 penalty on the weights (default {CASE_DEFAULTS['items']['weight_decay']} with item "
                        f"cases, {CASE_DEFAULTS['users']['weight_decay']} with user cases)")
    t.add_argument("--conditional", action="store_true", help="also condition on which items each user rated")
    t.add_argument("--cases", choices=["users", "items"],
                   help=f"one training case per item or per user (default {defaults.cases})")
    t.add_argument("--seed", type=int, default=0, help="seed of the weights, the splits and the sampling")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--out", required=True, metavar="DIR", help="checkpoint directory (created)")
    t.add_argument("--threads", type=int, default=1, help=THREADS_HELP)
    add_process_arguments(t)
    t.set_defaults(func=_run, command_func=cmd_train)

    e = rsub.add_parser("evaluate", formatter_class=HelpFormatter,
                        help="RMSE, MAE and top-10 metrics on held-out ratings")
    e.add_argument("model", metavar="DIR", help="checkpoint directory written by 'boltzkit recommend train'")
    e.add_argument("--ratings", required=True, metavar="FILE", help="the users' input ratings (the training ratings)")
    e.add_argument("--test", required=True, metavar="FILE", help="held-out ratings to predict")
    e.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    e.add_argument("--threads", type=int, default=1, help=THREADS_HELP)
    e.set_defaults(func=_run, command_func=cmd_evaluate)

    p = rsub.add_parser("top", formatter_class=HelpFormatter,
                        help="a user's best-predicted items that the user has not rated")
    p.add_argument("model", metavar="DIR", help="checkpoint directory written by 'boltzkit recommend train'")
    p.add_argument("--user", required=True, metavar="ID", help="original user id")
    p.add_argument("-n", type=int, default=10, help="items to list")
    p.add_argument("--ratings", metavar="FILE",
                   help="the users' current ratings: used as input and excluded (default: the training ratings)")
    p.add_argument("--json", action="store_true", help="print one JSON array instead of lines")
    p.add_argument("--threads", type=int, default=1, help=THREADS_HELP)
    p.set_defaults(func=_run, command_func=cmd_top)
