"""The TensorBoard logger writes exactly the per-epoch rows of metrics.csv (read back from the
event file), and without the optional package it refuses in one line before any work."""

from __future__ import annotations

import csv
import importlib.util
import math

import pytest
import torch

from boltzkit import RBM, Trainer, TrainingConfig, checkpoint
from boltzkit.errors import ConfigurationError, DivergenceError
from boltzkit.evaluation import ExactLikelihood
from boltzkit.training import LikelihoodGuard, MetricCallback, TensorBoardLogger

HAVE_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None
needs_tensorboard = pytest.mark.skipif(not HAVE_TENSORBOARD, reason="needs the optional 'tensorboard' package")


def _scalars(log_dir) -> dict[str, dict[int, float]]:
    """Every scalar of every event file under ``log_dir``: tag → {step: value}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, dict[int, float]] = {}
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, {}).update({e.step: e.value for e in acc.Scalars(tag)})
    return out


def _data() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (torch.rand(200, 8, generator=g) < torch.linspace(0.1, 0.9, 8)).float()


@needs_tensorboard
def test_event_file_holds_the_metrics_csv_rows(tmp_path):
    data = _data()
    rbm = RBM(8, 4, seed=0)
    config = TrainingConfig(epochs=4, batch_size=20, lr=0.1, seed=0)
    # the logger comes first: the metrics of callbacks after it must still reach the event file
    callbacks = [TensorBoardLogger(tmp_path / "tb"),
                 ExactLikelihood({"train_log_likelihood": data}, every=2),
                 MetricCallback("mean_weight", lambda model, d: float(model.weight.detach().mean()), data)]
    history = Trainer(rbm, config, callbacks=callbacks).fit(data)
    checkpoint.write_metrics_csv(tmp_path / "metrics.csv", history)
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))

    scalars = _scalars(tmp_path / "tb")
    assert set(scalars) == set(rows[0]) - {"epoch"}
    assert {"lr", "train_log_likelihood", "mean_weight"} <= set(scalars)
    for row in rows:
        epoch = int(row["epoch"])
        for name, text in row.items():
            if name == "epoch" or text == "":
                assert name == "epoch" or epoch not in scalars[name]   # not measured that epoch
                continue
            # TensorBoard stores float32: agree to float32 resolution
            assert scalars[name][epoch] == pytest.approx(float(text), rel=2e-7, abs=1e-30), (name, epoch)
    assert sorted(scalars["train_log_likelihood"]) == [2, 4]
    assert sorted(scalars["mean_weight"]) == [1, 2, 3, 4]
    assert all(math.isfinite(v) for v in scalars["lr"].values())


@needs_tensorboard
def test_resumed_run_writes_only_its_own_epochs(tmp_path):
    data = _data()
    rbm = RBM(8, 4, seed=0)
    trainer = Trainer(rbm, TrainingConfig(epochs=2, batch_size=20, seed=0),
                      callbacks=[TensorBoardLogger(tmp_path / "tb")])
    trainer.fit(data)
    trainer.config = TrainingConfig(epochs=3, batch_size=20, seed=0)
    trainer.fit(data)
    assert sorted(_scalars(tmp_path / "tb")["lr"]) == [1, 2, 3]


@needs_tensorboard
def test_diverged_epoch_is_not_written_and_finish_writes_the_last_good_one(tmp_path):
    data = _data()
    calls = []

    def collapsing(model, d):  # fine for two epochs, then a collapse the guard catches
        calls.append(1)
        return -1.0 if len(calls) < 3 else -1e9

    board = TensorBoardLogger(tmp_path / "tb")
    trainer = Trainer(RBM(8, 4, seed=0), TrainingConfig(epochs=5, batch_size=20, seed=0),
                      callbacks=[board, MetricCallback("score", collapsing, data), LikelihoodGuard("score", floor=-10)])
    with pytest.raises(DivergenceError):
        trainer.fit(data)
    board.finish(trainer)
    assert [row["epoch"] for row in trainer.history] == [1, 2]
    scalars = _scalars(tmp_path / "tb")
    assert sorted(scalars["score"]) == [1, 2] and sorted(scalars["lr"]) == [1, 2]
    assert scalars["score"][2] == -1.0


def test_without_tensorboard_one_line_error_naming_the_extra(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(ConfigurationError, match=r"boltzkit\[tensorboard\]") as info:
        TensorBoardLogger(tmp_path / "tb")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "tb").exists()


@needs_tensorboard
def test_cli_train_tensorboard_flag(tmp_path):
    from boltzkit import cli

    out, board = tmp_path / "run", tmp_path / "tb"
    assert cli.main(["train", "--hidden", "4", "--epochs", "2", "--batch-size", "500", "--holdout", "500",
                     "--quiet", "--out", str(out), "--tensorboard", str(board)]) == 0
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    scalars = _scalars(board)
    assert set(scalars) == {name for name, text in rows[-1].items() if text != ""} - {"epoch"}
    for row in rows:
        for name, text in row.items():
            if name != "epoch" and text != "":
                assert scalars[name][int(row["epoch"])] == pytest.approx(float(text), rel=2e-7)


def test_cli_tensorboard_refused_in_one_line_without_the_package(tmp_path, monkeypatch, capsys):
    from boltzkit import cli

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else real(name, *a))
    assert cli.main(["train", "--epochs", "1", "--quiet", "--out", str(tmp_path / "run"),
                     "--tensorboard", str(tmp_path / "tb")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("boltzkit: error:") and "boltzkit[tensorboard]" in err and "\n" not in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "tb").exists()
