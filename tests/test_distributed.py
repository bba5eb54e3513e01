"""Data parallelism with real gloo processes on 127.0.0.1.

One spawn of 2 ranks (a module fixture) runs every multi-process job the fast tests check:

- exact gradient: ``.grad = ∇θ [mean F(x) + log Z]`` with log Z by enumeration of a 6-visible
  RBM, i.e. the exact negative log-likelihood gradient.  Its positive term is linear in the
  batch mean and its negative term is the same on every rank, so the mean over W ranks of
  the per-rank gradients on B/W rows equals the single-process gradient on B rows up to
  float64 rounding: the tolerance 1e-10 is ~10⁵ ulps of parameters of order 1 after 24
  updates, while a wrong shard, a missing division by W or a skipped all-reduce moves the
  parameters by > 1e-3.
- PCD-1 checkpoint at epoch 2 (gathered chains and RNGs of both ranks), resumed to epoch 4,
  against 4 epochs straight: bit for bit.
- PCD-1 on a tiny RBM whose test log-likelihood is exact: compared with single-process runs of
  several seeds.
- AIS with chain blocks, sharded: compared with the same blocks in this process.

The command line (``--nproc 2``, ``torchrun``-style processes killed or failing) runs as
separate processes.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from boltzkit import checkpoint
from boltzkit.errors import DistributedError
from boltzkit.evaluation import ais, exact
from boltzkit.models.rbm import RBM
from boltzkit.training import TrainingConfig, distributed
from boltzkit.training.distributed import (
    DataParallel,
    free_port,
    gather_state,
    local_training_state,
    rank_seed,
    saved_world_size,
)
from boltzkit.training.trainer import Trainer

N_VISIBLE, N_HIDDEN, ROWS, BATCH, EPOCHS = 6, 4, 48, 12, 6
LL_SEEDS = (0, 1, 2, 3)


class ExactStep:
    """Test-only step: ``.grad`` = ∇θ [mean F(x) + log Z] with log Z by enumeration (2^6 states)."""

    def __init__(self) -> None:
        self.states = torch.tensor(list(itertools.product([0.0, 1.0], repeat=N_VISIBLE)), dtype=torch.float64)

    def step(self, model, values, generator=None, mask=None, context=None):
        model.zero_grad(set_to_none=True)
        loss = model.free_energy(values).mean() + torch.logsumexp(-model.free_energy(self.states), 0)
        loss.backward()
        return loss.detach()

    def rows(self, batch_size: int) -> int:
        return batch_size

    def metrics(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state) -> None:
        pass


def _data() -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    probs = torch.rand(N_VISIBLE, generator=g, dtype=torch.float64)
    return torch.bernoulli(probs.expand(ROWS, -1), generator=g)


def _train(epochs: int = EPOCHS, estimator=None, method: str = "cd", out: Path | None = None,
           resume: Path | None = None) -> Trainer:
    rbm = RBM(N_VISIBLE, N_HIDDEN, seed=3, dtype=torch.float64)
    config = TrainingConfig(epochs=epochs, batch_size=BATCH, lr=0.1, seed=11, method=method, lr_schedule="constant")
    trainer = Trainer(rbm, config, estimator=estimator)
    if resume is not None:
        saved = checkpoint.load_checkpoint(resume, training_state=True)
        rbm.load_state_dict(saved.model.state_dict())
        trainer.load_training_state(saved.state, saved.config["training_state"])
    trainer.fit(_data())
    if out is not None:
        tensors, state = trainer.training_state()
        tensors = gather_state(trainer.distributed, tensors)
        if tensors is not None:
            checkpoint.save(out, rbm, extra={"training_state": state}, state=tensors)
    return trainer


# -- a tiny RBM with an exact test log-likelihood -----------------------------------------
LL_VISIBLE, LL_HIDDEN = 10, 6


def _ll_data(rows: int, seed: int) -> torch.Tensor:
    """Four prototypes with 10 % of the bits flipped."""
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1, 1, 1, 1, 1],
                               [1, 0, 1, 0, 1, 0, 1, 0, 1, 0], [1, 1, 0, 0, 1, 1, 0, 0, 1, 1]], dtype=torch.float64)
    x = prototypes[torch.randint(4, (rows,), generator=g)]
    flips = torch.rand(x.shape, generator=g, dtype=torch.float64) < 0.1
    return torch.where(flips, 1 - x, x)


def _pcd_log_likelihood(seed: int) -> float:
    rbm = RBM(LL_VISIBLE, LL_HIDDEN, seed=seed, dtype=torch.float64)
    config = TrainingConfig(epochs=20, batch_size=20, lr=0.2, seed=seed, method="pcd")
    Trainer(rbm, config).fit(_ll_data(600, 1))
    return exact.log_likelihood(rbm, _ll_data(600, 2))


def _ais_model() -> RBM:
    return RBM(16, 8, seed=4, dtype=torch.float64)


AIS_ARGS = dict(n_chains=30, betas=300, seed=7, chain_block=4)


# -- workers ------------------------------------------------------------------------------
def _worker(rank: int, world: int, port: int, jobs: tuple[str, ...], out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=30))
    out_dir = Path(out)
    finished = False
    try:
        for job in jobs:
            if job == "exact":
                trainer = _train(estimator=ExactStep())
                torch.save(trainer.model.state_dict(), out_dir / f"exact-{world}-{rank}.pt")
            elif job == "pcd-resume":
                _train(epochs=2, method="pcd", out=out_dir / "pcd")
                dist.barrier()
                trainer = _train(epochs=4, method="pcd", resume=out_dir / "pcd")
                torch.save(trainer.model.state_dict(), out_dir / f"resumed-{rank}.pt")
                trainer = _train(epochs=4, method="pcd")
                torch.save(trainer.model.state_dict(), out_dir / f"straight-{rank}.pt")
            elif job == "pcd-ll":
                lls = [_pcd_log_likelihood(seed) for seed in LL_SEEDS[:2]]
                if rank == 0:
                    (out_dir / "ll.json").write_text(json.dumps(lls))
            elif job == "ais":
                result = ais.ais(_ais_model(), distributed=DataParallel.current(), **AIS_ARGS)
                if rank == 0:
                    torch.save(result.log_weights, out_dir / "ais.pt")
        finished = True
    finally:
        distributed.leave_group(finished)


def _spawn(world: int, jobs: tuple[str, ...], out: Path) -> None:
    mp.spawn(_worker, args=(world, free_port(), jobs, str(out)), nprocs=world, join=True)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("two-ranks")
    _spawn(2, ("exact", "pcd-resume", "pcd-ll", "ais"), out)
    return out


# -- training -----------------------------------------------------------------------------
def _check_exact(out: Path, world: int) -> None:
    single = _train(estimator=ExactStep()).model.state_dict()
    start = RBM(N_VISIBLE, N_HIDDEN, seed=3, dtype=torch.float64).state_dict()
    for rank in range(world):
        params = torch.load(out / f"exact-{world}-{rank}.pt")
        for name, value in single.items():
            assert (value - start[name]).abs().max() > 1e-3   # training moved it: the check can fail
            torch.testing.assert_close(params[name], value, rtol=0, atol=1e-10)


def test_exact_gradient_across_two_ranks_equals_single_process(two_ranks: Path) -> None:
    _check_exact(two_ranks, 2)


@pytest.mark.slow
def test_exact_gradient_across_three_ranks_equals_single_process(tmp_path: Path) -> None:
    _spawn(3, ("exact",), tmp_path)
    _check_exact(tmp_path, 3)


def test_pcd_resume_with_the_same_world_size_is_bit_for_bit(two_ranks: Path) -> None:
    saved = checkpoint.load_checkpoint(two_ranks / "pcd", training_state=True)
    assert saved_world_size(saved.state) == 2
    assert saved.state["estimator.chains"].shape == saved.state["rank1.estimator.chains"].shape == (BATCH // 2,
                                                                                                  N_VISIBLE)
    for rank in range(2):
        resumed, straight = (torch.load(two_ranks / f"{kind}-{rank}.pt") for kind in ("resumed", "straight"))
        for name in straight:
            assert torch.equal(resumed[name], straight[name]), name
    first, second = (torch.load(two_ranks / f"straight-{rank}.pt") for rank in range(2))
    assert all(torch.equal(first[k], second[k]) for k in first)   # the ranks hold the same parameters


def test_resume_in_one_process_pools_the_chains_of_both_ranks(two_ranks: Path) -> None:
    saved = checkpoint.load_checkpoint(two_ranks / "pcd", training_state=True)
    tensors, restarted = local_training_state(saved.state, None, seed=11, epoch=2)
    assert not restarted and not any(k.startswith("rank") for k in tensors)
    torch.testing.assert_close(tensors["estimator.chains"], torch.cat([saved.state["estimator.chains"],
                                                                       saved.state["rank1.estimator.chains"]]))
    trainer = _train(epochs=3, method="pcd", resume=two_ranks / "pcd")   # continues, one process
    assert trainer.epoch == 3 and trainer.estimator.chains.chains.visible.shape == (BATCH, N_VISIBLE)
    # three processes from two: 12 pooled chains, 4 each; rank 2 gets a fresh stream
    part, _ = local_training_state(saved.state, DataParallel(2, 3), seed=11, epoch=2)
    torch.testing.assert_close(part["estimator.chains"], saved.state["rank1.estimator.chains"][2:])
    assert not torch.equal(part["rng.sampling"], saved.state["rng.sampling"])


def test_pcd_on_two_ranks_reaches_the_single_process_log_likelihood(two_ranks: Path) -> None:
    """Same config, global batch 20 split 10 + 10: the exact test log-likelihood of 2-rank runs
    lies within the seed-to-seed spread of single-process runs (4 seeds)."""
    single = np.array([_pcd_log_likelihood(seed) for seed in LL_SEEDS])
    parallel = np.array(json.loads((two_ranks / "ll.json").read_text()))
    uniform = -LL_VISIBLE * math.log(2)
    assert single.mean() > uniform + 1.5          # training learned something (the check can fail)
    assert parallel.min() > uniform + 1.5
    # 3 standard errors of the difference of the two means, from the single-process spread
    spread = max(single.std(ddof=1), 0.02)
    assert abs(parallel.mean() - single.mean()) < 3 * spread * math.sqrt(1 / len(single) + 1 / len(parallel)), \
        (parallel, single)


def test_shards_cover_the_permutation_once_per_rank() -> None:
    for world in (2, 3):
        order = torch.randperm(ROWS + 1, generator=torch.Generator().manual_seed(0))
        shards = [DataParallel(rank, world).shard(order) for rank in range(world)]
        assert len({s.numel() for s in shards}) == 1 and shards[0].numel() == -(-(ROWS + 1) // world)
        torch.testing.assert_close(torch.stack(shards, 1).reshape(-1)[:ROWS + 1], order)
        assert DataParallel(0, world).local_batch(BATCH) * world == BATCH


def test_rank_seeds_differ_and_rank_zero_keeps_the_single_stream() -> None:
    assert rank_seed(7, 0) == 7 and len({rank_seed(7, r) for r in range(4)}) == 4


# -- sharded AIS --------------------------------------------------------------------------
def test_sharded_ais_equals_the_same_blocks_in_one_process(two_ranks: Path) -> None:
    sharded = torch.load(two_ranks / "ais.pt")
    one = ais.ais(_ais_model(), **AIS_ARGS)
    assert sharded.shape == (AIS_ARGS["n_chains"],)
    torch.testing.assert_close(sharded, one.log_weights, rtol=0, atol=1e-12)
    assert abs(one.log_z - exact.log_partition(_ais_model())) < 0.05   # and it estimates log Z


def test_chain_blocks_are_independent_of_the_process_split() -> None:
    """Blocks dealt to 3 'ranks' by hand give the single-process weights: the seed of a block
    depends on (seed, block) only."""
    from boltzkit.training.distributed import block_seed

    assert len({block_seed(7, b) for b in range(100)}) == 100 and block_seed(7, 0) != block_seed(8, 0)
    whole = ais.ais(_ais_model(), **AIS_ARGS).log_weights
    shorter = ais.ais(_ais_model(), **{**AIS_ARGS, "n_chains": 12}).log_weights
    torch.testing.assert_close(shorter, whole[:12], rtol=0, atol=0)   # blocks 0-2 are the same chains


# -- the command line ---------------------------------------------------------------------
def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "x.npy"
    np.save(path, _ll_data(2000, 3).numpy().astype(np.float32))
    return path


def _main_output(argv: list[str], capfd) -> str:
    """``boltzkit ARGV`` in this process (with --nproc it starts the ranks); stdout of all."""
    from boltzkit.cli import main

    capfd.readouterr()
    assert main(argv) == 0, capfd.readouterr().err
    return capfd.readouterr().out


def test_cli_nproc_2_trains_and_evaluates_like_one_process(tiny_data: Path, tmp_path: Path, capfd,
                                                           monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "run"
    printed = _main_output(["train", "--data", str(tiny_data), "--hidden", "6", "--epochs", "2", "--batch-size",
                            "20", "--out", str(out), "--quiet", "--nproc", "2"], capfd)
    assert "trained 2 epochs" in printed and printed.count("trained") == 1   # rank 0 reports
    saved = checkpoint.load_checkpoint(out, training_state=True)
    assert saved.config["processes"] == 2 and saved_world_size(saved.state) == 2
    assert (out / "samples.png").is_file() and (out / "metrics.csv").is_file()
    ais_flags = ["evaluate", str(out), "--data", str(tiny_data), "--method", "ais", "--chains", "20",
                 "--betas", "200", "--json", "--quiet"]
    sharded = json.loads(_main_output([*ais_flags, "--nproc", "2"], capfd))
    single = json.loads(_main_output([*ais_flags, "--chain-block", "10"], capfd))
    for key in ("log_partition", "log_partition_interval", "log_likelihood", "ess"):
        np.testing.assert_allclose(sharded[key], single[key], rtol=0, atol=1e-9)
    # a single-process resume of the 2-process run continues (chains pooled, not bit for bit)
    _main_output(["train", "--data", str(tiny_data), "--epochs", "3", "--resume", str(out), "--out",
                  str(tmp_path / "one-process"), "--quiet", "--monitor-every", "0"], capfd)
    assert checkpoint.read_config(tmp_path / "one-process")["epochs_done"] == 3


@pytest.mark.slow
def test_cli_nproc_2_samples_like_one_process(tiny_data: Path, tmp_path: Path, capfd) -> None:
    out = tmp_path / "run"
    _main_output(["train", "--data", str(tiny_data), "--hidden", "6", "--epochs", "1", "--out", str(out),
                  "--quiet"], capfd)
    flags = ["sample", str(out), "-n", "25", "--steps", "20", "--chain-block", "5"]
    _main_output([*flags, "--npy", str(tmp_path / "two.npy"), "--nproc", "2"], capfd)
    _main_output([*flags, "--npy", str(tmp_path / "one.npy")], capfd)
    np.testing.assert_array_equal(np.load(tmp_path / "two.npy"), np.load(tmp_path / "one.npy"))


def _ranks(commands: list[list[str]], log: Path) -> list[subprocess.Popen]:
    """``torchrun``-style processes (env://), one command line per rank, stderr to files."""
    port = str(free_port())
    procs = []
    for rank, command in enumerate(commands):
        env = _env(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, RANK=str(rank), LOCAL_RANK=str(rank),
                   WORLD_SIZE=str(len(commands)))
        procs.append(subprocess.Popen([sys.executable, "-m", "boltzkit", *command], env=env,
                                      stdout=subprocess.DEVNULL, stderr=open(log / f"err-{rank}.txt", "w")))
    return procs


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.parametrize("how", ["SIGKILL", pytest.param("SIGSTOP", marks=pytest.mark.slow)])
def test_a_killed_rank_ends_the_job_within_the_timeout_and_the_checkpoint_loads(how: str, tiny_data: Path,
                                                                                 tmp_path: Path) -> None:
    """SIGKILL: the peer's socket closes and rank 0 stops at its next collective; SIGSTOP (a hung
    rank): rank 0 stops when its collective times out."""
    out = tmp_path / "run"
    timeout = 20 if how == "SIGKILL" else 6
    command = ["train", "--data", str(tiny_data), "--hidden", "6", "--epochs", "100000", "--batch-size", "2",
               "--out", str(out), "--quiet", "--monitor-every", "0", "--timeout", str(timeout)]
    procs = _ranks([command, command], tmp_path)
    try:
        deadline = time.monotonic() + 90
        while not (out / "config.json").is_file():   # epoch 1 is saved: training is under way
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "no checkpoint"
            time.sleep(0.1)
        time.sleep(0.3)                              # mid-epoch 2
        os.kill(procs[1].pid, getattr(signal, how))
        killed = time.monotonic()
        code = procs[0].wait(timeout=timeout + 15)
        assert time.monotonic() - killed < timeout + 5
    finally:
        _stop(procs)
    assert code not in (0, None)
    errors = [line for line in (tmp_path / "err-0.txt").read_text().splitlines() if line.startswith("boltzkit: error")]
    assert len(errors) == 1 and "process 0 of 2" in errors[0] and "intact" in errors[0], errors
    saved = checkpoint.load_checkpoint(out, training_state=True)
    assert saved.config["epochs_done"] >= 1 and saved_world_size(saved.state) == 2


@pytest.mark.slow
def test_a_rank_that_raises_stops_the_job_with_one_line_on_rank_zero(tiny_data: Path, tmp_path: Path) -> None:
    command = ["train", "--data", str(tiny_data), "--hidden", "6", "--epochs", "3", "--out",
               str(tmp_path / "run"), "--quiet", "--timeout", "20"]
    failing = [*command[:2], str(tmp_path / "missing.npy"), *command[3:]]   # rank 1 cannot read its data
    procs = _ranks([command, failing], tmp_path)
    try:
        codes = [p.wait(timeout=60) for p in procs]
    finally:
        _stop(procs)
    assert codes[0] != 0 and codes[1] == 2
    errors = [line for line in (tmp_path / "err-0.txt").read_text().splitlines() if line.startswith("boltzkit: error")]
    assert len(errors) == 1 and "process 0 of 2" in errors[0], errors
    assert "missing.npy" in (tmp_path / "err-1.txt").read_text()


# -- the other command groups on --nproc 2 (each: one spawn of 2 ranks on tiny data) ------------
def _one_report(printed: str) -> None:
    """Rank 0 alone reports (and writes): one 'wrote DIR/' line from the whole job."""
    assert printed.count("wrote ") == 1, printed


@pytest.fixture(scope="module")
def rolls(tmp_path_factory) -> Path:
    """A .mat of piano rolls, all 8 frames long: a batch's loss per frame is then the mean of
    its per-sequence means, so the mean of two ranks' gradients is the one-process gradient."""
    import scipy.io

    rng = np.random.default_rng(0)

    def split(n: int) -> np.ndarray:
        cell = np.empty((1, n), dtype=object)
        for i in range(n):
            cell[0, i] = (rng.random((8, 88)) < 0.05).astype(np.uint8)
        return cell

    path = tmp_path_factory.mktemp("rolls") / "toy.mat"
    scipy.io.savemat(path, {"traindata": split(8), "validdata": split(2), "testdata": split(2)})
    return path


SEQUENCE_FLAGS = ["--hidden", "8", "--epochs", "3", "--batch-size", "4", "--optimizer", "sgd", "--lr", "0.1",
                  "--quiet"]


def test_cli_nproc_2_sequence_train_equals_one_process(rolls: Path, tmp_path: Path, capfd, monkeypatch) -> None:
    """An RNN has no sampling noise: 6 SGD updates on 2 ranks × 2 sequences give the 1-process
    parameters on batches of 4 up to float32 rounding (measured 3e-8 with |θ| ≤ 7; atol 1e-5 is
    ~20 ulps of the largest parameter; a missing average moves them by 4e-2)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    base = ["sequence", "train", "--data", str(rolls), *SEQUENCE_FLAGS]
    _one_report(_main_output([*base, "--out", str(tmp_path / "two"), "--nproc", "2"], capfd))
    _main_output([*base, "--out", str(tmp_path / "one")], capfd)
    two = checkpoint.load_checkpoint(tmp_path / "two", training_state=True)
    one = checkpoint.load_checkpoint(tmp_path / "one")
    assert two.config["processes"] == 2 and two.config["epochs_done"] == 3 and saved_world_size(two.state) == 2
    for name, value in one.model.state_dict().items():
        torch.testing.assert_close(two.model.state_dict()[name], value, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_cli_sequence_run_of_2_processes_resumes_in_one(rolls: Path, tmp_path: Path, capfd, monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "two"
    _main_output(["sequence", "train", "--data", str(rolls), *SEQUENCE_FLAGS, "--out", str(out), "--nproc", "2"],
                 capfd)
    _main_output(["sequence", "train", "--data", str(rolls), "--epochs", "4", "--resume", str(out), "--out",
                  str(tmp_path / "one"), "--quiet"], capfd)   # the ranks' RNG states pooled: not bit for bit
    assert checkpoint.read_config(tmp_path / "one")["epochs_done"] == 4


def test_cli_nproc_2_energy_train_gathers_the_replay_buffers(tmp_path: Path, capfd, monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "run"
    _one_report(_main_output(["energy", "train", "--toy", "8gaussians", "--n", "400", "--epochs", "2",
                              "--batch-size", "100", "--hidden", "16", "--k", "3", "--buffer-size", "200",
                              "--samples", "50", "--sample-steps", "5", "--out", str(out), "--quiet",
                              "--nproc", "2"], capfd))
    saved = checkpoint.load_checkpoint(out, training_state=True)
    assert saved.config["processes"] == 2 and saved.config["epochs_done"] == 2
    buffers = [saved.state[f"{prefix}estimator.replay_buffer"] for prefix in ("", "rank1.")]
    assert all(b.shape == (100, 2) for b in buffers)          # 200 over 2 ranks
    assert not torch.equal(*buffers)                          # each rank's own chains
    assert (out / "density.png").is_file() and (out / "metrics.csv").is_file()


def test_cli_nproc_2_gan_train(tmp_path: Path, capfd, monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    rng = np.random.default_rng(0)
    x = np.zeros((200, 64), np.float32)
    for i in range(200):
        x[i].reshape(8, 8)[int(rng.integers(0, 8))] = 1.0
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "run"
    _one_report(_main_output(["gan", "train", "--data", str(tmp_path / "x.npy"), "--epochs", "2", "--hidden", "8",
                              "--latent", "2", "--m", "20", "--k", "2", "--collapse-threshold", "0",
                              "--out", str(out), "--quiet", "--nproc", "2"], capfd))
    saved = checkpoint.load_checkpoint(out, training_state=True)
    assert saved.config["processes"] == 2 and saved.config["epochs_done"] == 2
    assert saved_world_size(saved.state) == 2
    assert (out / "samples.png").is_file() and len((out / "metrics.csv").read_text().splitlines()) == 3


def test_cli_nproc_2_recommend_train(tmp_path: Path, capfd, monkeypatch) -> None:
    from boltzkit.recommend import CFRBM

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    rng = np.random.default_rng(0)
    users, items = np.nonzero(rng.random((30, 20)) < 0.5)
    (tmp_path / "r.tsv").write_text("".join(f"{u}\t{i}\t{1 + (u + i) % 5}\n" for u, i in zip(users, items)))
    out = tmp_path / "run"
    _one_report(_main_output(["recommend", "train", "--ratings", str(tmp_path / "r.tsv"), "--test-fraction", "0.2",
                              "--hidden", "6", "--epochs", "2", "--batch-size", "10", "--out", str(out), "--quiet",
                              "--nproc", "2"], capfd))
    assert checkpoint.read_config(out)["processes"] == 2
    assert CFRBM.load(out).n_items_ == 20 and (out / "test_metrics.json").is_file()


@pytest.mark.parametrize("argv, message", [
    (["train", "--batch-size", "99"], "--batch-size 99 must be a multiple of the number of processes (2)"),
    (["train", "--chains", "3"], "--chains 3 must be a multiple"),
    (["gan", "train", "--m", "5"], "--m 5 must be a multiple of the number of processes (2)"),
    (["gan", "train", "--data", "missing.npy"], "--data missing.npy: file not found"),
    (["energy", "train", "--toy", "moons", "--batch-size", "7"], "--batch-size 7 must be a multiple"),
    (["energy", "train", "--toy", "moons", "--chains", "9"], "--chains 9 must be a multiple"),
    (["sequence", "train", "--data", "missing.mat", "--batch-size", "4"], "missing.mat: file not found"),
    (["recommend", "train", "--ratings", "missing.tsv"], "--ratings missing.tsv: file not found"),
    (["recommend", "train", "--ratings", __file__, "--batch-size", "3"], "--batch-size 3 must be a multiple"),
])
def test_bad_input_to_the_other_groups_fails_in_one_line_before_any_process_starts(argv, message, tmp_path: Path,
                                                                                   capfd, monkeypatch) -> None:
    from boltzkit.cli import main
    from boltzkit.training import distributed

    def no_spawn(*args, **kwargs):
        raise AssertionError("processes were started")

    monkeypatch.setattr(distributed, "spawn_local", no_spawn)
    monkeypatch.chdir(tmp_path)
    capfd.readouterr()
    assert main([*argv, "--out", str(tmp_path / "never"), "--nproc", "2"]) == 2
    err = capfd.readouterr().err.strip()
    assert err.startswith("boltzkit: error:") and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "never").exists()


def test_nproc_refuses_bad_values(tmp_path: Path) -> None:
    from boltzkit.cli import main

    assert main(["train", "--out", str(tmp_path / "x"), "--nproc", "0"]) == 2
    assert main(["train", "--out", str(tmp_path / "x"), "--timeout", "-1"]) == 2
    assert main(["evaluate", str(tmp_path), "--chain-block", "0"]) == 2


def test_a_batch_that_does_not_split_is_refused_before_training() -> None:
    from boltzkit.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="multiple of the number of processes"):
        DataParallel(0, 2).local_batch(7)
    with pytest.raises(ConfigurationError, match="chains 9 must be a multiple"):
        DataParallel(1, 2).local_chains(9)


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2,
                    reason="the NCCL path needs 2 GPUs")
def test_exact_gradient_over_nccl(tmp_path: Path) -> None:
    mp.spawn(_nccl_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    single = _train(estimator=ExactStep()).model.state_dict()
    for rank in range(2):
        params = torch.load(tmp_path / f"nccl-{rank}.pt")
        for name, value in single.items():
            torch.testing.assert_close(params[name].cpu(), value, rtol=0, atol=1e-10)


def _nccl_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", rank=rank, world_size=world, timeout=timedelta(seconds=60))
    try:
        rbm = RBM(N_VISIBLE, N_HIDDEN, seed=3, dtype=torch.float64).to(f"cuda:{rank}")
        step = ExactStep()
        step.states = step.states.to(f"cuda:{rank}")
        config = TrainingConfig(epochs=EPOCHS, batch_size=BATCH, lr=0.1, seed=11, method="cd",
                                lr_schedule="constant")
        Trainer(rbm, config, estimator=step).fit(_data().to(f"cuda:{rank}"))
        torch.save({k: v.cpu() for k, v in rbm.state_dict().items()}, Path(out) / f"nccl-{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("reported", [True, False])
def test_a_process_killed_after_its_command_returned_does_not_fail_the_job(monkeypatch, reported):
    """gloo can abort a rank while the group is torn down after the work is done ("terminate called
    without an active exception"): a process that reported its status first counts with it."""
    popen = subprocess.Popen
    report = ("import os, pathlib; "
              "pathlib.Path(os.environ['BOLTZKIT_NPROC_STATUS_DIR'], 'rank' + os.environ['RANK']).write_text('0'); ")

    def fake(command, env):  # rank 1 finishes, (maybe) reports, then aborts as gloo does
        code = "pass" if env["RANK"] == "0" else (report if reported else "") + "import os; os.abort()"
        return popen([sys.executable, "-c", code], env=env)

    monkeypatch.setattr(distributed.subprocess, "Popen", fake)
    if reported:
        assert distributed.spawn_local(2, ["train"], grace_s=5) == 0
    else:
        with pytest.raises(DistributedError, match="process 1 of 2 was killed by SIGABRT"):
            distributed.spawn_local(2, ["train"], grace_s=5)


def test_a_rank_reports_its_status_where_spawn_local_reads_it(tmp_path, monkeypatch):
    monkeypatch.setenv(distributed.STATUS_DIR, str(tmp_path))
    monkeypatch.setenv("RANK", "1")
    distributed.report_status(2)
    assert distributed.finished_statuses([0, -6], str(tmp_path)) == [0, 2]
    assert distributed.finished_statuses([-6, 1], str(tmp_path)) == [-6, 1]  # rank 0 reported nothing
