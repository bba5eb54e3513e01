"""A checkpoint switches as a whole: a crash before or after any file operation of a save leaves
the previous checkpoint or the new one — loadable, evaluable, resumable bit for bit — never a mix."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from boltzkit import checkpoint, exact
from boltzkit.models import RBM
from boltzkit.recommend import CFRBM, RatingData
from boltzkit.training import Trainer, TrainingConfig


class Crash(BaseException):
    """Stands for the process dying (BaseException: nothing may catch and tidy up)."""


def _data() -> torch.Tensor:
    return (torch.rand(120, 10, generator=torch.Generator().manual_seed(0)) < 0.3).float()


def _trainer(epochs: int) -> Trainer:
    # a constant rate: a run planned for 1 epoch and resumed to 2 then equals one planned for 2
    return Trainer(RBM(10, 4, seed=0), TrainingConfig(epochs=epochs, batch_size=30, method="pcd",
                                                      lr_schedule="constant"))


def _save_run(directory: Path, trainer: Trainer) -> None:
    tensors, state = trainer.training_state()
    checkpoint.save(directory, trainer.model, extra={"training": trainer.config.to_dict(), "training_state": state},
                    state=tensors)


def _snapshot(directory: Path) -> dict[str, torch.Tensor]:
    model, config, state = checkpoint.load_checkpoint(directory, training_state=True)
    tensors = {f"model.{k}": v.detach().clone() for k, v in model.checkpoint_tensors().items()}
    tensors.update({f"state.{k}": v for k, v in state.items()})
    return tensors


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _operations(monkeypatch, crash_at: int | None, after: bool) -> list[str]:
    """Count (and at ``crash_at`` interrupt) the file operations a save makes."""
    done: list[str] = []
    real = {"replace": os.replace, "unlink": Path.unlink, "mkstemp": checkpoint.tempfile.mkstemp,
            "fsync": os.fsync}

    def wrap(name, fn):
        def op(*args, **kwargs):
            index = len(done)
            done.append(name)
            if index == crash_at and not after:
                raise Crash(name)
            result = fn(*args, **kwargs)
            if index == crash_at and after:
                raise Crash(name)
            return result
        return op

    monkeypatch.setattr(checkpoint.os, "replace", wrap("replace", real["replace"]))
    monkeypatch.setattr(checkpoint.os, "fsync", wrap("fsync", real["fsync"]))
    monkeypatch.setattr(checkpoint.tempfile, "mkstemp", wrap("mkstemp", real["mkstemp"]))
    monkeypatch.setattr(Path, "unlink", wrap("unlink", real["unlink"]))
    return done


def test_a_crash_at_any_file_operation_leaves_the_old_or_the_new_rbm_checkpoint(tmp_path, monkeypatch):
    data = _data()
    first = _trainer(1)
    first.fit(data)
    old_dir = tmp_path / "old"
    _save_run(old_dir, first)
    second = _trainer(2)
    second.fit(data)
    new_dir = tmp_path / "new"
    _save_run(new_dir, second)
    old, new = _snapshot(old_dir), _snapshot(new_dir)
    with monkeypatch.context() as m:                       # how many operations does a save make?
        shutil.copytree(old_dir, tmp_path / "count")
        operations = _operations(m, None, False)
        _save_run(tmp_path / "count", second)
    assert len(operations) >= 10, operations
    seen = {"old": 0, "new": 0}
    for crash_at in range(len(operations)):
        for after in (False, True):
            target = tmp_path / f"crash{crash_at}{after}"
            shutil.copytree(old_dir, target)
            with monkeypatch.context() as m:
                _operations(m, crash_at, after)
                try:
                    _save_run(target, second)
                except Crash:
                    pass
            got = _snapshot(target)
            assert _same(got, old) or _same(got, new), f"mixed checkpoint after a crash at operation {crash_at}"
            seen["old" if _same(got, old) else "new"] += 1
            model = checkpoint.load(target)
            assert np.isfinite(exact.log_likelihood(model, data))
    assert seen["old"] and seen["new"], seen  # the crashes fell on both sides of the commit point


def test_the_checkpoint_left_by_a_crash_resumes_bit_for_bit(tmp_path, monkeypatch):
    data = _data()
    first = _trainer(1)
    first.fit(data)
    directory = tmp_path / "run"
    _save_run(directory, first)
    second = _trainer(2)
    second.fit(data)
    with monkeypatch.context() as m:
        _operations(m, 2, False)              # dies while writing the new set
        with pytest.raises(Crash):
            _save_run(directory, second)
    model, config, state = checkpoint.load_checkpoint(directory, training_state=True)
    resumed = Trainer(model, TrainingConfig.from_dict({**config["training"], "epochs": 2}))
    resumed.load_training_state(state, config["training_state"])
    resumed.fit(data)
    for p, q in zip(resumed.model.parameters(), second.model.parameters()):
        assert torch.equal(p, q)


def test_a_crash_during_a_cf_rbm_save_leaves_a_loadable_model(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    cells = rng.choice(30 * 20, 200, replace=False)
    data = RatingData(users=cells // 20, items=cells % 20, ratings=rng.integers(1, 6, 200),
                      user_ids=np.arange(30), item_ids=np.arange(20), n_levels=5)
    old_model = CFRBM(n_hidden=4, epochs=1).fit(data)
    new_model = CFRBM(n_hidden=4, epochs=2).fit(data)
    old_dir = tmp_path / "old"
    old_model.save(old_dir)
    query = (np.arange(10), np.arange(10))
    want = {"old": old_model.predict(*query), "new": new_model.predict(*query)}
    for crash_at in range(8):
        for after in (False, True):
            target = tmp_path / f"cf{crash_at}{after}"
            shutil.copytree(old_dir, target)
            with monkeypatch.context() as m:
                _operations(m, crash_at, after)
                try:
                    new_model.save(target)
                except Crash:
                    pass
            got = CFRBM.load(target).predict(*query)
            assert np.array_equal(got, want["old"]) or np.array_equal(got, want["new"])


def test_files_get_the_users_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        checkpoint.save(tmp_path / "ck", RBM(4, 2))
    finally:
        os.umask(previous)
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / "ck" / name).stat().st_mode & 0o777 == 0o644


def test_evaluate_does_not_need_the_training_state(tmp_path):
    trainer = _trainer(1)
    trainer.fit(_data())
    _save_run(tmp_path / "run", trainer)
    state_file = tmp_path / "run" / "training_state.safetensors"
    state_file.write_bytes(state_file.read_bytes()[:-10])          # damaged
    assert isinstance(checkpoint.load(tmp_path / "run"), RBM)       # parameters still load
    with pytest.raises(checkpoint.CheckpointError, match="does not match"):
        checkpoint.load_checkpoint(tmp_path / "run", training_state=True)


def test_an_epoch_a_guard_rejects_is_never_written(tmp_path):
    """The per-epoch checkpoint skips an epoch that a callback failed (the trainer restores the
    last good one), so a crash right after it leaves the good epoch to resume from."""
    from boltzkit.cli.common import SaveEachEpoch
    from boltzkit.errors import DivergenceError
    from boltzkit.training import Callback, Trainer, TrainingConfig

    class RejectSecond(Callback):
        def on_epoch_end(self, trainer, epoch, metrics):
            if epoch == 2:
                trainer.fail("rejected by the test")

    out = tmp_path / "run"
    trainer = Trainer(RBM(12, 4, seed=0), TrainingConfig(epochs=3, batch_size=20),
                      callbacks=[RejectSecond(), SaveEachEpoch(out, {}, keep_every=1)])
    with pytest.raises(DivergenceError, match="rejected by the test"):
        trainer.fit(torch.bernoulli(torch.full((60, 12), 0.3), generator=torch.Generator().manual_seed(0)))
    assert checkpoint.read_config(out)["epochs_done"] == 1
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("epoch-")) == ["epoch-0001"]
