"""``boltzkit recommend train|evaluate|top``: round trip on tiny ratings files, original ids,
and exit code 2 with one line and nothing written on every kind of bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from boltzkit import checkpoint as io
from boltzkit import cli
from boltzkit.models.rbm import RBM

USER0, ITEM0 = 100, 500  # original ids are offset so that internal indices cannot pass for them


def write_ratings(path, users, items, ratings) -> None:
    path.write_text("".join(f"{u}\t{i}\t{r}\t881250949\n" for u, i, r in zip(users, items, ratings)))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Two user groups × two item groups (5 within, 1 across), split 80/20 into two files."""
    rng = np.random.default_rng(0)
    n_users, n_items = 30, 20
    gu, gi = rng.integers(0, 2, n_users), rng.integers(0, 2, n_items)
    users, items = np.nonzero(rng.random((n_users, n_items)) < 0.5)
    ratings = np.where(gu[users] == gi[items], 5, 1)
    ratings[rng.random(ratings.shape[0]) < 0.1] = 3
    test = rng.random(ratings.shape[0]) < 0.2
    root = tmp_path_factory.mktemp("ratings")
    write_ratings(root / "train.tsv", users[~test] + USER0, items[~test] + ITEM0, ratings[~test])
    write_ratings(root / "test.tsv", users[test] + USER0, items[test] + ITEM0, ratings[test])
    return root


@pytest.fixture(scope="module")
def trained(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "cf"
    assert cli.main(["recommend", "train", "--ratings", str(files / "train.tsv"), "--test", str(files / "test.tsv"),
                     "--hidden", "6", "--epochs", "4", "--quiet", "--out", str(out)]) == 0
    return out


def run_error(argv, capsys) -> str:
    """Run the command line, assert exit code 2 and one ``boltzkit: error:`` line; return it."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("boltzkit: error:") and len(err.splitlines()) == 1, err
    return err


def test_train_writes_checkpoint_metrics_and_test_scores(trained):
    assert {p.name for p in trained.iterdir()} == {"config.json", "model.safetensors", "metrics.csv",
                                                   "test_metrics.json"}
    config = json.loads((trained / "config.json").read_text())
    assert config["model"] == "CFRBM" and config["format"] == io.FORMAT and config["params"]["n_hidden"] == 6
    rows = (trained / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 5 and "test_rmse" in rows[0]
    scores = json.loads((trained / "test_metrics.json").read_text())
    assert 0 < scores["mae"] <= scores["rmse"] < 4


def test_evaluate_json_matches_training_report(trained, files, capsys):
    assert cli.main(["recommend", "evaluate", str(trained), "--ratings", str(files / "train.tsv"),
                     "--test", str(files / "test.tsv"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    saved = json.loads((trained / "test_metrics.json").read_text())
    for key in ("rmse", "mae", "precision@10", "recall@10", "ndcg@10"):
        assert result[key] == pytest.approx(saved[key], abs=1e-12), key
    assert 0 <= result["precision@10"] <= 1 and 0 <= result["ndcg@10"] <= 1


def test_top_prints_original_ids_of_unrated_items(trained, files, capsys):
    user = USER0 + 3
    assert cli.main(["recommend", "top", str(trained), "--user", str(user), "-n", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    items = [int(line.split("\t")[0]) for line in lines]
    scores = [float(line.split("\t")[1]) for line in lines]
    rated = {int(f[1]) for f in (line.split("\t") for line in (files / "train.tsv").read_text().splitlines())
             if int(f[0]) == user}
    assert len(items) == 4 and all(i >= ITEM0 for i in items) and not rated & set(items)
    assert scores == sorted(scores, reverse=True) and all(1 <= s <= 5 for s in scores)
    # --ratings: the user's ratings in that file are the input and are excluded
    current = files / "current.tsv"
    write_ratings(current, [user, user], items[:2], [5, 5])
    assert cli.main(["recommend", "top", str(trained), "--user", str(user), "-n", "30", "--ratings", str(current),
                     "--json"]) == 0
    listed = [row["item"] for row in json.loads(capsys.readouterr().out)]
    assert not set(items[:2]) & set(listed) and len(listed) == 18


def test_test_fraction_and_conditional(files, tmp_path, capsys):
    out = tmp_path / "cond"
    assert cli.main(["recommend", "train", "--ratings", str(files / "train.tsv"), "--test-fraction", "0.2",
                     "--conditional", "--hidden", "4", "--epochs", "2", "--quiet", "--out", str(out)]) == 0
    assert "test RMSE" in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["params"]["conditional"] is True


@pytest.mark.parametrize("name,contents,message", [
    ("missing.tsv", None, "not found"),
    ("malformed.tsv", "1\t2\t5\n1\t3\n", "expected 3 fields"),
    ("zero.tsv", "1\t2\t5\n1\t3\t0\n", "outside 1.."),
    ("words.tsv", "1\t2\t5\nalice\t3\t4\n", "not an integer"),
])
def test_bad_training_ratings_exit_2_and_write_nothing(tmp_path, capsys, name, contents, message):
    path = tmp_path / name
    if contents is not None:
        path.write_text(contents)
    out = tmp_path / "out"
    err = run_error(["recommend", "train", "--ratings", str(path), "--epochs", "1", "--quiet", "--out", str(out)],
                    capsys)
    assert message in err
    assert not out.exists()


def test_bad_test_files_and_options_exit_2(files, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["recommend", "train", "--ratings", str(files / "train.tsv"), "--epochs", "1", "--quiet", "--out", str(out)]
    high = tmp_path / "high.tsv"
    write_ratings(high, [USER0], [ITEM0], [7])
    assert "outside 1..5" in run_error(base + ["--test", str(high)], capsys)
    assert "held out" in run_error(base + ["--test", str(files / "train.tsv")], capsys)
    assert "--test-fraction" in run_error(base + ["--test-fraction", "1.5"], capsys)
    assert "--epochs" in run_error(base[:-2] + ["--epochs", "0", "--out", str(out)], capsys)
    assert "--threads" in run_error(base + ["--threads", "0"], capsys)
    assert not out.exists()


def test_threads_are_restored(files, tmp_path):
    import torch

    before = torch.get_num_threads()
    assert cli.main(["recommend", "train", "--ratings", str(files / "train.tsv"), "--hidden", "3", "--epochs", "1",
                     "--threads", "1", "--quiet", "--out", str(tmp_path / "t")]) == 0
    assert torch.get_num_threads() == before


def test_bad_evaluate_and_top_inputs_exit_2(trained, files, tmp_path, capsys):
    train, test = str(files / "train.tsv"), str(files / "test.tsv")
    assert "not in the model" in run_error(["recommend", "top", str(trained), "--user", "9999"], capsys)
    assert "not an integer" in run_error(["recommend", "top", str(trained), "--user", "bob"], capsys)
    assert "not found" in run_error(["recommend", "top", str(tmp_path / "nope"), "--user", "100"], capsys)
    assert "not found" in run_error(["recommend", "evaluate", str(trained), "--ratings", train,
                                        "--test", str(tmp_path / "none.tsv")], capsys)
    high = tmp_path / "high.tsv"
    write_ratings(high, [USER0], [ITEM0], [6])
    assert "outside 1..5" in run_error(["recommend", "evaluate", str(trained), "--ratings", train,
                                        "--test", str(high)], capsys)
    assert "held out" in run_error(["recommend", "evaluate", str(trained), "--ratings", test, "--test", test], capsys)


def test_core_and_cf_checkpoints_refuse_each_other(trained, files, tmp_path, capsys):
    data = tmp_path / "x.npy"
    np.save(data, np.zeros((3, 4), np.float32))
    assert "CFRBM checkpoint" in run_error(["evaluate", str(trained), "--data", str(data)], capsys)
    core = tmp_path / "core"
    io.save(core, RBM(4, 3))
    err = run_error(["recommend", "evaluate", str(core), "--ratings", str(files / "train.tsv"),
                     "--test", str(files / "test.tsv")], capsys)
    assert "not a collaborative-filtering model" in err
    assert "not a collaborative-filtering model" in run_error(["recommend", "top", str(core), "--user", "100"], capsys)


def test_movielens_round_trip(shared_data, tmp_path, capsys):
    """The real u.data (skipped without ../shared/data): one short epoch, then top with original ids."""
    ratings = shared_data / "movielens-100k" / "u.data"
    if not ratings.is_file():
        pytest.skip("MovieLens-100k is not in ../shared/data")
    out = tmp_path / "ml"
    assert cli.main(["recommend", "train", "--ratings", str(ratings), "--test-fraction", "0.2", "--hidden", "4",
                     "--epochs", "1", "--quiet", "--out", str(out)]) == 0
    assert json.loads((out / "test_metrics.json").read_text())["rmse"] < 1.2
    capsys.readouterr()
    assert cli.main(["recommend", "top", str(out), "--user", "943", "-n", "3"]) == 0
    items = [int(line.split("\t")[0]) for line in capsys.readouterr().out.strip().splitlines()]
    assert len(items) == 3 and all(1 <= i <= 1682 for i in items)
