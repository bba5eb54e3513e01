"""Data-parallel training, sharded AIS and sampling on ``torch.distributed`` (gloo on CPUs, NCCL on GPUs).

PyTorch's own runtime is the engine: ``torchrun`` (or ``boltzkit … --nproc N``, which starts N
processes with the same environment variables) describes the group, :func:`init` joins it.

**Training.**  Under an initialised process group of W ranks the
:class:`~boltzkit.training.Trainer` holds a :class:`DataParallel` (``trainer.distributed``; None
in a single process, where nothing changes).  Per epoch every rank draws the *same* permutation
from the trainer's shuffle generator (seed + 1) and takes rows ``rank::W`` of it
(:meth:`DataParallel.shard`, padded like ``DistributedSampler`` so every rank runs as many
batches), in batches of B / W rows (:meth:`DataParallel.local_batch`).  Batch i of rank r is
then rows ``i·B + r :: W`` of the single-process batch i, so the ranks together see exactly the
single-process batch, and the mean over ranks of the per-rank mean gradients is the
single-process gradient (to rounding) when W divides B and the batch is full.  (A
``DataLoader`` is passed through unsharded: give it a ``DistributedSampler``.)  Between the
gradient step and the optimizer step :meth:`DataParallel.all_reduce_gradients` averages
``.grad`` in **one** collective per dtype: all gradients are flattened into one buffer (with one
presence flag per parameter, so a parameter without a gradient on every rank keeps ``.grad =
None``), all-reduced (sum), divided by W and copied back.

**Random streams and chains.**  Rank r samples with the seed ``seed + 1000·r`` (:func:`rank_seed`;
rank 0 keeps the single-process stream), so a run is reproducible for a given world size.
``n_chains`` (default: the batch size) counts chains over all ranks: each rank keeps
n_chains / W persistent chains (PT replicas, replay buffers) of its own.

**Checkpoints.**  :func:`gather_state` collects every rank's chains, estimator state and sampling
RNG on rank 0, which writes them with the parameters and config in the one atomic checkpoint
(``training_state.safetensors``: rank 0's state under the usual names, rank r's as
``rank<r>.<name>``), so the set switches at one instant as any checkpoint does.  On resume
:func:`local_training_state` gives each rank its own state back (same world size: bit for bit);
with another world size the persistent chains of all ranks are pooled and re-split, other
per-rank sampler state (PT ladders, replay buffers) is re-initialised, and ranks that did not
exist get fresh streams — a correct continuation, not a bit-identical one.

**Evaluation.**  :func:`run_blocks` runs chains in fixed-size blocks, block b with its own seed
:func:`block_seed` (seed, b), blocks dealt round-robin to the ranks and the results gathered in
block order: the same numbers whatever the number of processes (AIS: :func:`boltzkit.evaluation.
ais.ais` with ``chain_block``; ``boltzkit sample --chain-block``).

**Faults.**  Collectives time out (``--timeout``, default 120 s); a collective that fails
because another rank died or raised becomes :class:`~boltzkit.errors.DistributedError` (one
line, exit status ≠ 0).  Checkpoints are written by rank 0 through :mod:`boltzkit.checkpoint`,
so the last one is always whole.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from ..errors import BoltzkitError, ConfigurationError, DistributedError

logger = logging.getLogger("boltzkit")

#: seed offset between the sampling streams of consecutive ranks
RANK_SEED_STRIDE = 1000
#: default timeout (seconds) of every collective: a dead rank stops the job instead of hanging it
DEFAULT_TIMEOUT_S = 120.0
#: name prefix of another rank's tensors in a gathered training state: ``rank3.estimator.chains``
RANK_PREFIX = "rank"
#: set in the processes ``--nproc`` starts (gloo, the flag is theirs already)
LOCAL_CHILD = "BOLTZKIT_NPROC_CHILD"
#: the folder where a process of :func:`spawn_local` writes its status once its command has returned
STATUS_DIR = "BOLTZKIT_NPROC_STATUS_DIR"


def rank_seed(seed: int, rank: int) -> int:
    """The sampling seed of ``rank``: ``seed + 1000·rank`` (rank 0: the single-process seed)."""
    return seed + RANK_SEED_STRIDE * rank


def block_seed(seed: int, block: int) -> int:
    """The seed of chain block ``block`` of a run seeded with ``seed`` (NumPy's SeedSequence of
    (seed, block), 63 bits): independent streams, the same in every process."""
    return int(np.random.SeedSequence([int(seed), int(block)]).generate_state(1, np.uint64)[0] >> np.uint64(1))


# -- the group ---------------------------------------------------------------------------
def world_from_environment() -> int:
    """``WORLD_SIZE`` as ``torchrun`` sets it (1 when absent)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigurationError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer") from None


def init(backend: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> DataParallel | None:
    """Join the process group that the environment describes (``torchrun``'s ``env://``).

    Returns this rank's :class:`DataParallel`, or None in a single process.  The default backend
    is gloo for CPU tensors and, when CUDA is available, NCCL for CUDA tensors (each rank then
    on GPU ``LOCAL_RANK``); collectives time out after ``timeout_s`` seconds.
    """
    if not dist.is_initialized():
        if world_from_environment() <= 1:
            return None
        if backend is None:
            backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        if "nccl" in backend:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        try:
            dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
        except (RuntimeError, ValueError) as e:
            raise DistributedError(f"could not join the process group ({_first_line(e)})") from None
    return DataParallel.current()


def is_main() -> bool:
    """True in a single process and on rank 0: the process that logs and writes files."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


class DataParallel:
    """This process's place in the group: rank, world size, and the collectives training needs."""

    def __init__(self, rank: int, world: int, group: Any = None) -> None:
        self.rank, self.world, self.group = rank, world, group

    @classmethod
    def current(cls) -> DataParallel | None:
        """The default process group as a :class:`DataParallel`; None without one (or with one rank)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return None
        return cls(dist.get_rank(), dist.get_world_size())

    @property
    def main(self) -> bool:
        return self.rank == 0

    # -- data ------------------------------------------------------------------------------
    def local_batch(self, batch_size: int) -> int:
        """Rows per rank of a global batch of ``batch_size`` rows (W must divide it)."""
        return self._split(batch_size, "the batch size", "rows")

    def local_chains(self, n_chains: int) -> int:
        """Persistent chains per rank of ``n_chains`` over all ranks (W must divide it)."""
        return self._split(n_chains, "the number of chains", "chains")

    def _split(self, total: int, what: str, unit: str) -> int:
        return check_split(self.world, total, what, unit)

    def shard(self, order: Tensor) -> Tensor:
        """Rows ``rank::world`` of the epoch's permutation ``order`` (the same on every rank),
        padded from its start to a multiple of ``world`` so that every rank gets as many rows."""
        n = order.numel()
        total = -(-n // self.world) * self.world
        if total > n:
            order = torch.cat([order, order[:total - n]])
        return order[self.rank::self.world]

    # -- collectives -----------------------------------------------------------------------
    def all_reduce_gradients(self, parameters: torch.nn.Module | Iterable[torch.nn.Parameter]) -> None:
        """``.grad`` ← mean over ranks of ``.grad``: one flat all-reduce per (device, dtype).

        Each buffer carries one presence flag per parameter; a parameter without a gradient on
        some rank takes part with zeros, and keeps ``.grad = None`` when no rank had one (so the
        optimizer skips it, as in a single process).
        """
        if isinstance(parameters, torch.nn.Module):
            parameters = parameters.parameters()
        groups: dict[tuple[torch.device, torch.dtype], list[torch.nn.Parameter]] = {}
        for p in parameters:
            if p.requires_grad:
                groups.setdefault((p.device, p.dtype), []).append(p)
        for (device, dtype), params in groups.items():
            flags = torch.tensor([p.grad is not None for p in params], dtype=dtype, device=device)
            flat = torch.cat([*(p.grad.reshape(-1) if p.grad is not None else p.new_zeros(p.numel())
                                for p in params), flags])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=self.group)
            flat.div_(self.world)
            offset = 0
            for p, flag in zip(params, flat[-len(params):].tolist()):
                n = p.numel()
                if flag > 0:
                    chunk = flat[offset:offset + n].view_as(p)
                    if p.grad is None:
                        p.grad = chunk.clone()
                    else:
                        p.grad.copy_(chunk)
                offset += n

    def broadcast_parameters(self, module: torch.nn.Module) -> None:
        """Rank 0's parameters to every rank (one flat broadcast per device and dtype)."""
        tensors = list(module.parameters())
        groups: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
        for t in tensors:
            groups.setdefault((t.device, t.dtype), []).append(t)
        with torch.no_grad():
            for items in groups.values():
                flat = torch.cat([t.detach().reshape(-1) for t in items])
                dist.broadcast(flat, 0, group=self.group)
                offset = 0
                for t in items:
                    t.copy_(flat[offset:offset + t.numel()].view_as(t))
                    offset += t.numel()

    def gather_objects(self, value: Any) -> list[Any]:
        """``value`` of every rank, in rank order, on every rank (tensors travel on the CPU)."""
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value, group=self.group)
        return out

    def barrier(self) -> None:
        dist.barrier(group=self.group)


# -- checkpoints -------------------------------------------------------------------------
def per_rank(name: str) -> bool:
    """Training-state tensors that differ between ranks (the rest is identical on all ranks)."""
    return name.startswith("estimator.") or name == "rng.sampling"


def gather_state(par: DataParallel | None, tensors: dict[str, Tensor]) -> dict[str, Tensor] | None:
    """The training state of all ranks for rank 0 to write: ``tensors`` (this rank's
    :meth:`~boltzkit.training.Trainer.training_state`) with rank r's per-rank tensors added as
    ``rank<r>.<name>``.  A collective; returns None on ranks other than 0."""
    if par is None:
        return tensors
    own = {k: v.detach().cpu() for k, v in tensors.items() if per_rank(k)}
    everyone = par.gather_objects(own)
    if not par.main:
        return None
    merged = dict(tensors)
    for rank in range(1, par.world):
        merged.update({f"{RANK_PREFIX}{rank}.{k}": v for k, v in everyone[rank].items()})
    return merged


def split_ranks(tensors: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[dict[str, Tensor]]]:
    """(shared tensors, per-rank tensors of rank 0, 1, …) of a gathered training state."""
    shared: dict[str, Tensor] = {}
    ranks: dict[int, dict[str, Tensor]] = {0: {}}
    for name, value in tensors.items():
        head, _, rest = name.partition(".")
        if head.startswith(RANK_PREFIX) and head[len(RANK_PREFIX):].isdigit() and rest:
            ranks.setdefault(int(head[len(RANK_PREFIX):]), {})[rest] = value
        elif per_rank(name):
            ranks[0][name] = value
        else:
            shared[name] = value
    saved = max(ranks) + 1
    return shared, [ranks.get(r, {}) for r in range(saved)]


def saved_world_size(tensors: dict[str, Tensor]) -> int:
    """The number of processes that wrote a (gathered) training state."""
    return len(split_ranks(tensors)[1])


def local_training_state(tensors: dict[str, Tensor], par: DataParallel | None, seed: int, epoch: int,
                         device: torch.device | str = "cpu") -> tuple[dict[str, Tensor], bool]:
    """This rank's training state from a gathered one, and whether its chains start afresh.

    Same world size: exactly what this rank saved (a bit-for-bit resume).  Another world size:
    persistent chains (every ``estimator.chains…`` layer) of all saved ranks are pooled in rank
    order and re-split evenly; PT ladders and replay buffers are re-initialised; the sampling
    RNG of a rank that was not saved is seeded from (seed, rank, epoch) on ``device``; other per-rank
    statistics (centering offsets, sparsity estimate, fast weights) are taken from rank 0.
    """
    rank, world = (par.rank, par.world) if par is not None else (0, 1)
    shared, saved = split_ranks(tensors)
    if len(saved) == world:
        return {**shared, **saved[rank]}, False
    logger.warning("resuming a run of %d process(es) with %d: the persistent chains are re-split (or "
                   "re-initialised); the run continues correctly but not bit for bit", len(saved), world)
    own = {k: v for k, v in saved[0].items() if k.startswith("estimator.")}
    for k in [k for k in own if k == "estimator.chains" or k.startswith("estimator.chains.")]:
        del own[k]
    tempered = any(k in own for k in ("estimator.betas", "estimator.replay_buffer"))
    restarted = True
    if not tempered:
        layers = [k for k in saved[0] if k == "estimator.chains" or k.startswith("estimator.chains.")]
        if layers and all(all(k in s for k in layers) for s in saved):
            pooled = {k: torch.cat([s[k] for s in saved]) for k in layers}
            rows = pooled[layers[0]].shape[0]
            if rows % world == 0:
                part = rows // world
                own.update({k: v[rank * part:(rank + 1) * part].clone() for k, v in pooled.items()})
                restarted = False
    else:
        own = {k: v for k, v in own.items() if k not in ("estimator.betas", "estimator.swap_accepted",
                                                            "estimator.swap_attempts", "estimator.parity",
                                                            "estimator.replay_buffer")}
    if rank < len(saved) and "rng.sampling" in saved[rank]:
        own["rng.sampling"] = saved[rank]["rng.sampling"]
    else:
        own["rng.sampling"] = torch.Generator(device).manual_seed(rank_seed(seed, rank) + 7919 * epoch).get_state()
    return {**shared, **own}, restarted


# -- sharded chains (AIS, sampling) ------------------------------------------------------
def run_blocks(n: int, block: int, seed: int, run: Callable[[int, int, int], Tensor],
               par: DataParallel | None = None) -> Tensor:
    """``run(start, stop, block_seed)`` for chain blocks [b·block, (b+1)·block) of ``n`` chains,
    blocks dealt round-robin to the ranks, concatenated in block order (on every rank).

    The result depends on ``n``, ``block`` and ``seed`` only, not on the number of processes.
    """
    if block < 1:
        raise ConfigurationError(f"the chain block must be a positive integer, got {block}")
    blocks = -(-n // block)
    rank, world = (par.rank, par.world) if par is not None else (0, 1)
    mine = {b: run(b * block, min(n, (b + 1) * block), block_seed(seed, b)).detach()
            for b in range(rank, blocks, world)}
    if par is None:
        return torch.cat([mine[b] for b in range(blocks)])
    device = next(iter(mine.values())).device if mine else None
    everyone = par.gather_objects({b: t.cpu() for b, t in mine.items()})
    merged = {b: t for part in everyone for b, t in part.items()}
    out = torch.cat([merged[b] for b in range(blocks)])
    return out.to(device) if device is not None else out


# -- launching ---------------------------------------------------------------------------
def restart_count() -> int:
    """How often ``torchrun``'s elastic agent has restarted this job (0 on the first run)."""
    try:
        return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    except ValueError:
        return 0


def _first_line(error: BaseException) -> str:
    """The gist of an error from gloo/NCCL: its first sentence, without the source location."""
    text = str(error).strip()
    if not text:
        return type(error).__name__
    line = text.splitlines()[0]
    if line.startswith("[") and "] " in line:   # "[.../gloo/transport/tcp/pair.cc:537] Read error …"
        line = line.split("] ", 1)[1]
    line = line.split(". ", 1)[0].rstrip(".")
    return line if len(line) <= 160 else line[:159] + "…"


def launch(args: Any, command: Callable[[Any], int], argv: list[str] | None = None) -> int | None:
    """Run a command-line command (``train``, ``evaluate``, ``sample``) on several processes.

    - ``--nproc N`` (N > 1) outside ``torchrun``: start N processes on this machine
      (:func:`spawn_local`) and return the job's exit status;
    - under ``torchrun`` (``WORLD_SIZE`` > 1): join the group, run ``command`` on this rank
      and return its status (a collective that fails raises :class:`DistributedError`);
    - otherwise None: the caller runs as one process.
    """
    nproc = getattr(args, "nproc", None)
    timeout = float(getattr(args, "timeout", None) or DEFAULT_TIMEOUT_S)
    if dist.is_available() and dist.is_initialized():
        return None
    if world_from_environment() > 1:
        child = os.environ.get(LOCAL_CHILD) == "1"
        if nproc is not None and not child:
            raise ConfigurationError("--nproc starts processes on this machine; under torchrun leave it out "
                                     "(torchrun's --nproc-per-node sets the processes)")
        par = init("gloo" if child else None, timeout_s=timeout)
        finished = False
        try:
            status = _run_rank(args, command, par)
            finished = True
            report_status(status)
            return status
        finally:
            leave_group(finished)
    if nproc is not None and nproc > 1:
        if argv is None:
            raise ConfigurationError("--nproc needs the command line (run it through boltzkit's main)")
        return spawn_local(nproc, argv, timeout)
    return None


def report_status(status: int) -> None:
    """Tell :func:`spawn_local` (through :data:`STATUS_DIR`) that this rank's command returned
    ``status``, before the group is torn down: gloo can still abort a finished rank while its
    peers close their connections, and the job must not fail for that."""
    folder = os.environ.get(STATUS_DIR)
    if folder:
        with open(os.path.join(folder, f"rank{os.environ.get('RANK', '0')}"), "w") as f:
            f.write(str(int(status)))


def finished_statuses(codes: list[int], folder: str) -> list[int]:
    """Each process's exit status, where one killed by a signal after it reported its command's
    status (:func:`report_status`) counts with the reported status."""
    out = []
    for rank, code in enumerate(codes):
        path = os.path.join(folder, f"rank{rank}")
        if code < 0 and os.path.exists(path):
            with open(path) as f:
                text = f.read().strip()
            code = int(text) if text.lstrip("-").isdigit() else code
        out.append(code)
    return out


def leave_group(finished: bool = True) -> None:
    """Destroy the process group; after a run that ``finished`` on this rank, first wait at a
    barrier for the others, so that no rank tears its connections down while a peer still uses
    them (gloo then aborts the peer: "terminate called without an active exception")."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if finished:
        try:
            dist.barrier()
        except RuntimeError:  # a peer died after its work: nothing left to wait for
            pass
    dist.destroy_process_group()


def planned_world(args: Any) -> int:
    """The number of processes a command runs on: the initialised group's size, else torchrun's
    ``WORLD_SIZE`` when it is above 1, else ``--nproc`` (1 without either)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    world = world_from_environment()
    if world > 1:
        return world
    nproc = getattr(args, "nproc", None)
    return nproc if nproc is not None and nproc > 1 else 1


def check_split(world: int, total: int, flag: str, unit: str = "rows") -> int:
    """``total`` / ``world``, the share of one process, of a value named ``flag`` (e.g.
    ``--batch-size``; the command line checks it before any process starts).  Raises
    :class:`~boltzkit.errors.ConfigurationError` unless ``world`` divides ``total``."""
    if world > 1 and total % world:
        raise ConfigurationError(f"{flag} {total} must be a multiple of the number of processes ({world}): each "
                                 f"process takes {total} / {world} {unit}")
    return total // max(world, 1)


def _run_rank(args: Any, command: Callable[[Any], int], par: DataParallel | None) -> int:
    if par is not None and not par.main:
        args.quiet = True
        logging.getLogger("boltzkit").setLevel(logging.ERROR)
    where = f"process {par.rank} of {par.world}" if par is not None else "process 0 of 1"
    try:
        return command(args)
    except BoltzkitError:
        raise
    except RuntimeError as e:  # DistBackendError and gloo/NCCL errors: another rank died or timed out
        out = getattr(args, "out", None)
        kept = f"; the last checkpoint in {out} is intact" if out else ""
        raise DistributedError(f"{where} stopped: {_first_line(e)} (another process probably died, raised or "
                               f"stopped answering){kept}") from None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn_local(nproc: int, argv: list[str], timeout_s: float = DEFAULT_TIMEOUT_S,
                grace_s: float | None = None) -> int:
    """``python -m boltzkit ARGV`` in ``nproc`` processes on 127.0.0.1, with the environment
    ``torchrun --standalone --nproc-per-node N`` gives (gloo, one CPU thread each unless
    ``OMP_NUM_THREADS`` is set; ARGV keeps its ``--nproc``, which the processes ignore); waits
    for them and returns the job's exit status.

    When a process fails, the others end by themselves (their next collective fails) or, after
    ``grace_s`` (default: the collective timeout + 10 s), are terminated; the job then fails with
    one line naming the process that failed first.
    """
    if nproc < 1:
        raise ConfigurationError(f"--nproc must be a positive integer, got {nproc}")
    grace = timeout_s + 10.0 if grace_s is None else grace_s
    port = free_port()
    base = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(nproc),
            "LOCAL_WORLD_SIZE": str(nproc), "GROUP_RANK": "0", "TORCHELASTIC_RESTART_COUNT": "0", LOCAL_CHILD: "1"}
    base.setdefault("OMP_NUM_THREADS", "1")
    command = [sys.executable, "-m", "boltzkit", *argv]
    with tempfile.TemporaryDirectory(prefix="boltzkit-nproc-") as folder:
        base[STATUS_DIR] = folder
        procs = [subprocess.Popen(command, env={**base, "RANK": str(r), "LOCAL_RANK": str(r)})
                 for r in range(nproc)]
        first = _wait(procs, grace)
        codes = finished_statuses([p.returncode for p in procs], folder)
    if first is None or all(c == 0 for c in codes):
        return 0
    if codes[first[0]] == 0:  # the first to end badly had finished its work: name the next
        first = next((r, c) for r, c in enumerate(codes) if c != 0)
    if len(set(codes)) == 1 and codes[0] > 0:  # every process ended alike (e.g. 1: diverged), each said why
        return codes[0]
    rank, code = first
    if code < 0:
        try:
            why = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            why = f"was killed by signal {-code}"
    else:
        why = f"ended with exit status {code}"
    raise DistributedError(f"process {rank} of {nproc} {why}; the job was stopped"
                           + (" (its message is above)" if code > 0 else ""))


def _wait(procs: list[subprocess.Popen], grace: float) -> tuple[int, int] | None:
    """Wait for the processes; the (rank, status) of the first to end badly, if any.  Once one
    has, the others get ``grace`` seconds before they are terminated."""
    first: tuple[int, int] | None = None
    deadline = None
    try:
        while True:
            codes = [p.poll() for p in procs]
            if first is None:
                failed = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
                if failed:
                    first = failed[0]
                    deadline = time.monotonic() + grace
            if all(c is not None for c in codes):
                break
            if deadline is not None and time.monotonic() > deadline:
                _stop(procs)
                break
            time.sleep(0.05)
    except BaseException:
        _stop(procs)
        raise
    return first


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    end = time.monotonic() + 5.0
    for p in procs:
        try:
            p.wait(max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


__all__ = ["DataParallel", "init", "is_main", "launch", "planned_world", "check_split",
           "spawn_local", "rank_seed", "block_seed", "run_blocks",
           "gather_state", "local_training_state", "saved_world_size", "DEFAULT_TIMEOUT_S"]
