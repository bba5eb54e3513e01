"""The one fit loop: batches → gradient step (fills ``.grad``) → ``torch.optim`` step → callbacks.

Every model kind trains here.  An :class:`~boltzkit.models.base.EnergyModel` gets a gradient
estimator (CD, PCD, PT, FPCD: :mod:`.gradient`) built from the config; a
:class:`~boltzkit.models.base.LossModel` gets :class:`LossStep` (``loss.backward()``).  The
trainer knows no model internals: weight decay goes to ``model.decay_parameters()``, data
checks to ``model.check_data``, the initial biases to ``model.init_from_data``.

Defaults follow Hinton's practical guide (2010) and Tieleman (2008): PCD-1, SGD with
momentum 0.5 (0.9 was measured worse for PCD: BENCHMARKS.md), L2 weight decay on the weights
only, visible biases started at the log-odds of the data marginals, and a learning rate that
decays linearly to zero (``torch.optim.lr_scheduler.LambdaLR``).

Under an initialised ``torch.distributed`` process group the loop is data parallel
(:mod:`.distributed`): each rank takes its shard of every batch and the gradients are averaged
by one all-reduce before the optimizer step; in a single process nothing changes.

``config.precision`` sets the arithmetic of the batches, only while they run (the divergence checks
at the end of an epoch and the callbacks' evaluations use the default): ``"tf32"`` keeps float32
tensors and results but lets matrix products round their inputs (TF32, 10-bit mantissa, on CUDA;
bf16, 8-bit mantissa, with float32 accumulation through oneDNN on a CPU that has it), ``"bf16"``
runs every Gibbs sweep under bf16 autocast (:func:`bf16_chains`).  Nothing in the batch loop reads
a value back to the host (no ``.item()``, ``float(t)``, ``if t``): on CUDA the only
synchronisations are the divergence checks every ``check_every`` batches and at each epoch's end.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..errors import CheckpointError, ConfigurationError, DivergenceError
from ..models.base import check_rows
from ..models.units import Units, all_finite
from ..sampling import ChainState
from .batches import Batch, BatchSource, LoaderBatches, TensorBatches, batch_source, check_probabilities, redraw
from .callbacks import Callback
from .config import TrainingConfig
from .distributed import RANK_PREFIX, DataParallel, local_training_state, rank_seed, split_ranks
from .gradient import build_estimator
from .threads import threads_for_update, torch_threads

logger = logging.getLogger("boltzkit")


class LossStep:
    """The gradient step of a model trained by a loss: ``.grad = ∇θ model.loss(batch)``."""

    def step(self, model: Any, values: Tensor, generator: torch.Generator | None = None,
             mask: Tensor | None = None, context: Tensor | None = None) -> Tensor:
        model.zero_grad(set_to_none=True)
        loss = model.loss(Batch(values, mask, context))
        loss.backward()
        self.last_loss = loss.detach()
        return loss.detach()

    def rows(self, batch_size: int) -> int:
        return batch_size

    def metrics(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        pass


def default_step(model: Any, config: TrainingConfig) -> Any:
    """The gradient step a model gets when none is given: an estimator or :class:`LossStep`."""
    return LossStep() if hasattr(model, "loss") else build_estimator(config)


@dataclass
class Trainer:
    """Trains any boltzkit model (an RBM, a CF-RBM's RBM, later kinds) on a batch source.

    Example
    -------
    >>> rbm = RBM(784, 64)
    >>> history = Trainer(rbm, TrainingConfig(epochs=1)).fit(data)   # doctest: +SKIP
    """

    model: Any
    config: TrainingConfig = field(default_factory=TrainingConfig)
    estimator: Any = None
    optimizer: torch.optim.Optimizer | None = None
    scheduler: Any = None
    callbacks: list[Callback] = field(default_factory=list)
    progress: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    epoch: int = 0
    #: more optimizers, by name, for models with several networks (a GAN's discriminator);
    #: checkpointed and restored with the main one
    extra_optimizers: dict[str, torch.optim.Optimizer] = field(default_factory=dict)

    def __post_init__(self) -> None:
        cfg = self.config
        first = next(self.model.parameters())
        self.device, self.dtype = first.device, first.dtype
        self.stop = False
        self._failure: str | None = None
        self._pending_scheduler: dict[str, Any] | None = None
        self._scheduler_per_epoch = False
        self.generator = torch.Generator(self.device).manual_seed(cfg.seed)
        self.shuffle_generator = torch.Generator().manual_seed(cfg.seed + 1)
        #: data parallelism under an initialised torch.distributed process group (else None):
        #: per-rank sampling stream (all ranks shuffle alike), B / W rows and n_chains / W chains
        self.distributed = DataParallel.current()
        if self.distributed is not None:
            self.generator.manual_seed(rank_seed(cfg.seed, self.distributed.rank))
            self.distributed.local_batch(cfg.batch_size)
        self._check_precision()
        if self.estimator is None:
            self.estimator = default_step(self.model, self._local_config())
        elif cfg.sparsity_target is not None and getattr(self.estimator, "sparsity", False) is None:
            self.estimator.sparsify(cfg.sparsity_target, cfg.sparsity_cost, cfg.sparsity_decay)
        if self.optimizer is None:
            self.optimizer = make_sgd(self.model, cfg)
        if hasattr(self.estimator, "bind"):  # a step that needs the trainer (a GAN's extra optimizers)
            self.estimator.bind(self)

    def _local_config(self) -> TrainingConfig:
        """The config one rank's estimator is built from: n_chains / W persistent chains."""
        if self.distributed is None or hasattr(self.model, "loss"):
            return self.config
        return dataclasses.replace(self.config, n_chains=self.distributed.local_chains(
            self.config.n_chains or self.config.batch_size))

    def _check_precision(self) -> None:
        """tf32 and bf16 change float32 arithmetic only; bf16 needs a model with Gibbs chains."""
        precision = self.config.precision
        if precision == "float32":
            return
        if self.dtype != torch.float32:
            raise ConfigurationError(f"precision {precision!r} applies to float32 models; this one is "
                                     f"{str(self.dtype).removeprefix('torch.')} (use precision 'float32')")
        if precision == "bf16" and not callable(getattr(self.model, "advance", None)):
            raise ConfigurationError(f"precision 'bf16' runs the Gibbs chains in bfloat16; "
                                     f"{type(self.model).__name__} has none (use 'float32' or 'tf32')")
        continuous = [units.kind for units in self.model.modules()
                      if isinstance(units, Units) and not units.discrete]
        if precision == "bf16" and continuous:
            raise ConfigurationError(f"precision 'bf16' would round the chains' {continuous[0]} values to "
                                     f"8 bits; it suits discrete units only (use 'float32' or 'tf32')")

    def _precision(self) -> AbstractContextManager[None]:
        """The arithmetic of ``config.precision``, set while the batches of an epoch run."""
        if self.config.precision == "tf32":
            return reduced_float32_matmul(self.device)
        if self.config.precision == "bf16":
            return bf16_chains(self.model, self.device)
        return nullcontext()

    @property
    def rbm(self) -> Any:
        """The model (the name of the first releases, when every model was an RBM)."""
        return self.model

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer, **{f"optimizer_{k}": o for k, o in self.extra_optimizers.items()}}

    # -- schedule -------------------------------------------------------------------------
    def _make_scheduler(self, batches_per_epoch: int) -> None:
        if self.scheduler is not None or self.config.lr_schedule == "constant":
            return
        if self.config.lr_schedule == "epoch-linear":
            epochs = self.config.epochs
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda e: 1 - e / epochs)
            self._scheduler_per_epoch = True
        else:
            total = self.config.epochs * batches_per_epoch
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(
                self.optimizer, lambda step: max(0.0, 1.0 - step / total))
        if self._pending_scheduler is not None:
            self.scheduler.load_state_dict(self._pending_scheduler)
            for group, lr in zip(self.optimizer.param_groups, self.scheduler.get_last_lr()):
                group["lr"] = lr  # the constructor reset it to the initial value

    # -- resume ---------------------------------------------------------------------------
    def training_state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """Everything beyond the parameters that a bit-for-bit resume needs.

        Tensors: optimizer buffers, estimator state (persistent chains, PT swap state, fast
        weights, centering offsets, sparsity estimate), both RNG states.
        JSON: epoch, history, optimizer hyper-parameters, scheduler counters.
        """
        tensors: dict[str, Tensor] = {}
        json_state: dict[str, Any] = {"epoch": self.epoch, "history": self.history}
        for prefix, optimizer in self._optimizers().items():
            opt = optimizer.state_dict()
            tensors.update({f"{prefix}.{i}.{key}": value for i, state in opt["state"].items()
                            for key, value in state.items() if isinstance(value, Tensor)})
            numbers = {f"{i}.{key}": value for i, state in opt["state"].items()
                       for key, value in state.items() if not isinstance(value, Tensor)}
            key = "" if prefix == "optimizer" else prefix.removeprefix("optimizer") + "."
            json_state[f"{key}param_groups" if key else "param_groups"] = opt["param_groups"]
            json_state[f"{key}optimizer_numbers" if key else "optimizer_numbers"] = numbers
        tensors.update({f"estimator.{k}": v for k, v in self.estimator.state_dict().items()})
        tensors["rng.sampling"] = self.generator.get_state()
        tensors["rng.shuffle"] = self.shuffle_generator.get_state()
        json_state["scheduler"] = self.scheduler.state_dict() if self.scheduler is not None else None
        return tensors, json_state

    def load_training_state(self, tensors: dict[str, Tensor], state: dict[str, Any]) -> None:
        """Restore what :meth:`training_state` returned (after the parameters are loaded).

        Everything is checked first — known fields only, tensors of the right shapes, the chains
        a persistent method needs, RNG states of the right size — and a damaged state raises
        :class:`~boltzkit.errors.CheckpointError` with nothing changed.
        """
        restarted = False
        if self.distributed is not None or any(name.startswith("rank") for name in tensors):
            self._check_saved_ranks(tensors)
            epoch = state.get("epoch", 0) if isinstance(state, dict) else 0
            tensors, restarted = local_training_state(tensors, self.distributed, self.config.seed,
                                                      epoch if isinstance(epoch, int) else 0, self.device)
        self._check_training_state(tensors, state, chains_required=not restarted)
        try:
            self._load_training_state(tensors, state)
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as e:
            raise CheckpointError(f"the training state is damaged ({e}); start a new run") from None

    def _check_training_state(self, tensors: dict[str, Tensor], state: dict[str, Any],
                              chains_required: bool = True) -> None:
        bad = _damaged

        if not isinstance(state, dict):
            raise bad("its description is not a JSON object")
        own_tensors, own_state = self.training_state()
        unknown = sorted(set(state) - set(own_state))
        if unknown:
            raise bad(f"unknown fields {unknown}")
        epoch = state.get("epoch")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise bad(f"epoch must be a non-negative integer, got {epoch!r}")
        if not isinstance(state.get("history", []), list):
            raise bad("history must be a list")
        prefixes = {name.split(".", 1)[0] for name in own_tensors} | {"estimator"} | set(self._optimizers())
        for name, value in tensors.items():
            if name.split(".", 1)[0] not in prefixes:
                raise bad(f"unknown tensor {name!r}")
            expected = own_tensors.get(name)
            if expected is not None and tuple(value.shape) != tuple(expected.shape):
                raise bad(f"{name!r} has shape {tuple(value.shape)}, expected {tuple(expected.shape)}")
            if value.dtype.is_floating_point and not all_finite(value):
                raise bad(f"{name!r} contains NaN or inf")
        # optimizer state is indexed in param-group order (make_sgd: decayed weights first)
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        for name, value in tensors.items():
            if name.startswith("optimizer.") and name.endswith(".momentum_buffer"):
                index = name.split(".")[1]
                if not index.isdigit() or int(index) >= len(params) or value.shape != params[int(index)].shape:
                    raise bad(f"{name!r} does not fit the model's parameters")
        for name in ("rng.sampling", "rng.shuffle"):
            if name not in tensors:
                raise bad(f"the random-generator state {name!r} is missing")
        chains = tensors.get("estimator.chains")
        width = getattr(getattr(self.model, "visible", None), "dim", None)
        if chains is not None and width is not None and (chains.dim() != 2 or chains.shape[1] != width):
            raise bad(f"the persistent chains have shape {tuple(chains.shape)}, the model {width} visible columns")
        if chains is None and epoch > 0 and hasattr(self.estimator, "chains") and chains_required:
            raise bad("the persistent chains are missing")
        self._check_estimator_shapes(tensors)

    def _estimator_rows(self) -> tuple[int | None, int]:
        """(chains per temperature this process keeps, temperatures): rows of a chain tensor are
        their product (PT keeps R replicas of n chains; PCD R = 1); None when not fixed yet."""
        sampler = getattr(self.estimator, "chains", None)
        betas = getattr(sampler, "betas", None)
        return getattr(sampler, "n_chains", None), (len(betas) if betas is not None else 1)

    def _check_estimator_shapes(self, tensors: dict[str, Tensor], n_chains: int | None = None,
                                prefix: str = "") -> None:
        """Estimator tensors the trainer cannot compare with its own before the first update:
        chain rows = n_chains × temperatures, ``swap_*`` = (temperatures − 1,), each ``fast_<p>``
        the shape of parameter p, centering offsets (V,) and (H,), sparsity estimate (H,).
        ``n_chains`` defaults to this process's; ``prefix`` names another rank's tensors."""
        local, replicas = self._estimator_rows()
        n = n_chains if n_chains is not None else local
        params = {name.replace(".", "_"): tuple(p.shape) for name, p in self.model.named_parameters()}
        visible = getattr(getattr(self.model, "visible", None), "dim", None)
        hidden = getattr(getattr(self.model, "hidden", None), "dim", None)
        sizes = {"centering_visible": visible, "centering_hidden": hidden, "sparsity_estimate": hidden}
        for name, value in tensors.items():
            if not name.startswith("estimator."):
                continue
            key, shown = name.removeprefix("estimator."), prefix + name
            shape = tuple(value.shape)
            if key == "chains" or key.startswith("chains."):
                if n and (value.dim() < 1 or shape[0] != n * replicas):  # rows: chains (any event shape)
                    held = shape[0] if value.dim() else 0
                    raise _damaged(f"{shown!r} holds {held} chains, the run keeps {n * replicas}"
                                   + (f" ({n} at each of {replicas} temperatures)" if replicas > 1 else ""))
            elif key in ("swap_accepted", "swap_attempts"):
                if shape != (max(replicas - 1, 0),):
                    raise _damaged(f"{shown!r} has shape {shape} for {replicas} temperatures")
            elif key.startswith("fast_"):
                want = params.get(key[len("fast_"):])
                if want is None:
                    raise _damaged(f"{shown!r} names no parameter of the model")
                if shape != want:
                    raise _damaged(f"{shown!r} has shape {shape}, expected {want}")
            elif isinstance(sizes.get(key), int) and shape != (sizes[key],):
                raise _damaged(f"{shown!r} has shape {shape}, expected ({sizes[key]},)")

    def _check_saved_ranks(self, tensors: dict[str, Tensor]) -> None:
        """A state gathered from W' processes (``rank<r>.estimator.…``): every saved rank's
        estimator tensors fit the run (n_chains / W' chains each, the same layer widths), checked
        before they are pooled or split, so every process refuses a damaged state alike."""
        _, saved = split_ranks(tensors)
        local, _ = self._estimator_rows()
        total = local * (self.distributed.world if self.distributed is not None else 1) if local else None
        if total is not None and total % len(saved):
            raise _damaged(f"it was written by {len(saved)} processes, which cannot share the run's {total} chains")
        first = saved[0]
        for rank, part in enumerate(saved):
            self._check_estimator_shapes(part, total // len(saved) if total else None,
                                         f"{RANK_PREFIX}{rank}." if rank else "")
            for name, value in part.items():
                if name.startswith("estimator.chains") and name in first \
                        and tuple(value.shape[1:]) != tuple(first[name].shape[1:]):
                    raise _damaged(f"'{RANK_PREFIX}{rank}.{name}' has shape {tuple(value.shape)}, rank 0's "
                                   f"{tuple(first[name].shape)}")

    def _load_training_state(self, tensors: dict[str, Tensor], state: dict[str, Any]) -> None:
        for prefix, optimizer in self._optimizers().items():
            key = "" if prefix == "optimizer" else prefix.removeprefix("optimizer") + "."
            per_param: dict[int, dict[str, Any]] = {}
            for name, value in tensors.items():
                head, _, rest = name.partition(".")
                if head == prefix:
                    index, param_key = rest.split(".", 1)
                    per_param.setdefault(int(index), {})[param_key] = value.to(self.device)
            for name, value in state.get(f"{key}optimizer_numbers", {}).items():
                index, param_key = name.split(".", 1)
                per_param.setdefault(int(index), {})[param_key] = value
            optimizer.load_state_dict({"state": per_param, "param_groups": state[f"{key}param_groups"]})
        self.estimator.load_state_dict({k.removeprefix("estimator."): v.to(self.device)
                                        for k, v in tensors.items() if k.startswith("estimator.")})
        self.generator.set_state(tensors["rng.sampling"])
        self.shuffle_generator.set_state(tensors["rng.shuffle"])
        self.epoch = int(state["epoch"])
        self.history = list(state.get("history", []))
        self._pending_scheduler = state.get("scheduler")

    def snapshot(self) -> dict[str, Any]:
        """Copies of the parameters, the optimizers' per-parameter state (momentum buffers) and
        the estimator's state (chains, fast weights, offsets): a consistent point to go back to
        with :meth:`restore`.  Counters, schedule, history and RNG states are not included."""
        return {"model": _clone(self.model.state_dict()),
                "optimizers": {k: copy.deepcopy(o.state_dict()["state"]) for k, o in self._optimizers().items()},
                "estimator": _clone(self.estimator.state_dict())}

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Go back to a :meth:`snapshot` (copied again, so it can be restored more than once)."""
        self.model.load_state_dict(snapshot["model"])
        for key, optimizer in self._optimizers().items():
            groups = optimizer.state_dict()["param_groups"]   # hyper-parameters stay as they are
            optimizer.load_state_dict({"state": copy.deepcopy(snapshot["optimizers"][key]),
                                       "param_groups": groups})
        self.estimator.load_state_dict(_clone(snapshot["estimator"]))

    def fail(self, message: str) -> None:
        """Called by a callback that finds training diverged (e.g. a collapsed log-likelihood):
        after the callbacks, the trainer restores the last good state and raises
        :class:`DivergenceError` with ``message``."""
        self._failure = message

    @property
    def failing(self) -> bool:
        """True between a callback's :meth:`fail` and the restore at the end of the epoch's
        callbacks: later callbacks must not keep this epoch's state (e.g. write it)."""
        return self._failure is not None

    def _set_momentum(self, epoch: int) -> None:
        cfg = self.config
        momentum = cfg.initial_momentum if epoch <= cfg.momentum_epochs else cfg.momentum
        for group in self.optimizer.param_groups:
            if "momentum" in group:
                group["momentum"] = momentum

    # -- divergence guard -----------------------------------------------------------------
    def _check(self, good: dict[str, Any], where: str) -> None:
        """Raise :class:`DivergenceError` after restoring ``good`` (a :meth:`snapshot`: the
        parameters with their momentum buffers and chains) if the parameters went bad."""
        bad, largest, free_energy_finite = self._health()
        exploded = not bad and largest <= self.config.max_weight and not free_energy_finite
        if bad or largest > self.config.max_weight or exploded:
            self.restore(good)
            problem = (f"non-finite values in {', '.join(n.replace('.', '_') for n in bad)}" if bad
                       else "the free energy of the data overflowed (not finite)" if exploded
                       else f"weights exploded (max |W| = {largest:.3g} > {self.config.max_weight:g})")
            raise DivergenceError(
                f"training diverged {where}: {problem}; the parameters, momentum buffers and "
                f"chains were restored to the last good state (end of epoch {self.epoch}). "
                f"Try a smaller learning rate.")

    def _health(self) -> tuple[list[str], float, bool]:
        """(parameters holding NaN/inf, max |w| over the decayed weights — 0 when some are bad —,
        whether F of a few data rows kept at the start of :meth:`fit` is finite), from one
        read-back of every parameter's (min, max) and the probe's finiteness: on CUDA one
        synchronisation per check."""
        named = [(n, p) for n, p in self.model.named_parameters() if p.numel() and p.is_floating_point()]
        decayed = {id(p) for p in self.model.decay_parameters()}
        with torch.no_grad():
            values = [v.to(self.dtype) for _, p in named for v in torch.aminmax(p.detach())]
            probe = getattr(self, "_probe", None)
            if probe is not None:
                try:  # 1 when every row's F is finite (a sum could overflow with finite rows)
                    values.append(torch.isfinite(self.model.free_energy(probe)).all().to(self.dtype))
                except ConfigurationError:  # no tractable free energy (a DBM too large to enumerate)
                    probe = None
            numbers = torch.stack(values).tolist() if values else []
        low_high = [(numbers[2 * i], numbers[2 * i + 1]) for i in range(len(named))]
        bad = [name for (name, _), (low, high) in zip(named, low_high)
               if not (math.isfinite(low) and math.isfinite(high))]
        largest = 0.0 if bad else max((max(-low, high) for (_, p), (low, high) in zip(named, low_high)
                                       if id(p) in decayed), default=0.0)
        return bad, largest, probe is None or numbers[-1] == 1.0

    # -- the loop -------------------------------------------------------------------------
    def fit(self, data: Any, check_every: int = 100) -> list[dict[str, float]]:
        """Train for ``config.epochs`` epochs in total (resuming from ``self.epoch``).

        ``data``: a tensor or NumPy array of rows, a :class:`~boltzkit.training.BatchSource`
        (values with masks and contexts), or a ``torch.utils.data.DataLoader``.
        """
        cfg = self.config
        source = batch_source(data)
        shuffled = isinstance(source, BatchSource)
        scale = self._data_scale()
        if shuffled:
            if scale is None:
                source.check(self.model)
            source = source.to(self.device, self.dtype)
            if scale is not None:
                self._check_source_probabilities(source, scale)
            n = len(source)
            if hasattr(self.model, "free_energy") and isinstance(source, TensorBatches):
                self._probe = source.values[: min(n, 64)]
            batches = math.ceil(n / cfg.batch_size)
        else:
            batches = len(source)
        if self.epoch == 0 and cfg.init_visible_bias:
            mean = source.mean()
            if mean is not None:
                self.model.init_from_data(mean.to(self.device, self.dtype))
        self._make_scheduler(batches)
        for callback in self.callbacks:
            callback.on_train_begin(self)
        bar = _progress(cfg.epochs * batches, self.epoch * batches, self.progress)
        good = self.snapshot()
        work = self.model.work_per_row() if hasattr(self.model, "work_per_row") else None
        rows = cfg.batch_size if self.distributed is None else self.distributed.local_batch(cfg.batch_size)
        threads = cfg.threads or (threads_for_update(self.estimator.rows(rows), work, 1, self.device)
                                  if work else None)
        if self.distributed is not None:  # every rank starts from rank 0's parameters
            self.distributed.broadcast_parameters(self.model)
        while self.epoch < cfg.epochs and not self.stop:
            epoch = self.epoch + 1
            for callback in self.callbacks:
                callback.on_epoch_begin(self, epoch)
            self._set_momentum(epoch)
            if bar is not None:
                bar.set_description(f"epoch {epoch}/{cfg.epochs}")
            if shuffled:
                order = torch.randperm(n, generator=self.shuffle_generator).to(self.device)
                size = cfg.batch_size
                if self.distributed is not None:  # this rank's rows, B / world per batch
                    order, size = self.distributed.shard(order), self.distributed.local_batch(size)
                epoch_batches: Iterable[Batch] = (source.batch(rows) for rows in order.split(size))
            else:
                epoch_batches = self._checked(source, scale)
            with torch_threads(threads), self._precision():
                self._run_epoch(epoch_batches, epoch, good, bar, check_every, scale)
            self._check(good, f"in epoch {epoch}")
            if self._scheduler_per_epoch:
                self.scheduler.step()
            self.epoch = epoch
            metrics: dict[str, float] = {"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"],
                                         **self.estimator.metrics(), **_sampler_metrics(self.model)}
            self.history.append(metrics)  # callbacks fill it in place (and may save it)
            for callback in self.callbacks:
                callback.on_epoch_end(self, epoch, metrics)
            if self._failure is not None:
                message, self._failure = self._failure, None
                self.restore(good)
                self.epoch, _ = epoch - 1, self.history.pop()
                raise DivergenceError(f"training diverged in epoch {epoch}: {message}; the parameters, momentum "
                                      f"buffers and chains were restored to the end of epoch {epoch - 1}. "
                                      f"Try a smaller learning rate.")
            good = self.snapshot()  # after the callbacks: one may have restored earlier parameters
            if bar is not None:
                bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items() if k not in ("epoch", "lr")})
        for callback in self.callbacks:
            callback.on_train_end(self)
        if bar is not None:
            bar.close()
        return self.history

    def _data_scale(self) -> float | None:
        """s of ``sample_data`` (the visible units' :attr:`~boltzkit.models.units.Units.data_scale`), or None."""
        if not self.config.sample_data:
            return None
        visible = getattr(self.model, "visible", None)
        scale = getattr(visible, "data_scale", None)
        if scale is None:
            has = f"{visible.kind} visible units" if isinstance(visible, Units) else "no visible units"
            raise ConfigurationError(f"sample_data draws binary rows, so it needs bernoulli or binomial visible "
                                     f"units; this {type(self.model).__name__} has {has}")
        return float(scale)

    def _check_probabilities(self, values: Tensor, scale: float, name: str) -> None:
        check_rows(values, name, self.model.visible.dim)
        check_probabilities(values, scale, name)

    def _check_source_probabilities(self, source: BatchSource, scale: float) -> None:
        """Every row of ``source`` as ``sample_data`` probabilities, once, before training: at once
        when the rows are in memory, else (e.g. sparse rows) in blocks of at most 4 M values."""
        name = getattr(source, "name", "data")
        if isinstance(source, TensorBatches):
            self._check_probabilities(source.values, scale, name)
            return
        block = max(self.config.batch_size, 2 ** 22 // max(1, self.model.visible.dim))
        for rows in torch.arange(len(source), device=self.device).split(block):
            self._check_probabilities(source.batch(rows).values, scale, name)

    def _checked(self, source: LoaderBatches, scale: float | None) -> Iterable[Batch]:
        """A loader's batches, each checked against the model (or, with ``scale``, as
        probabilities for :func:`redraw`) and moved to its device."""
        for batch in source:
            if scale is None:
                self.model.check_data(batch.values, source.name)
            else:
                self._check_probabilities(batch.values, scale, source.name)
            yield Batch(batch.values.to(self.device, self.dtype), self._move(batch.mask), self._move(batch.context))

    def _move(self, t: Tensor | None) -> Tensor | None:
        return None if t is None else t.to(self.device, self.dtype)

    def _run_epoch(self, batches: Iterable[Batch], epoch: int, good: dict[str, Any], bar: Any,
                   check_every: int, scale: float | None = None) -> None:
        """One pass over the batches: gradient step → optimizer → per-update scheduler; with
        ``scale`` (``sample_data``) each batch is first redrawn as binary rows."""
        per_update = self.scheduler is not None and not self._scheduler_per_epoch
        for i, batch in enumerate(batches):
            values = batch.values if scale is None else redraw(batch.values, scale, self.generator)
            try:
                self.estimator.step(self.model, values, self.generator, mask=batch.mask,
                                    context=batch.context)
            except RuntimeError:  # e.g. NaN probabilities from diverged parameters
                self._check(good, f"in epoch {epoch}, batch {i + 1}")
                raise
            if self.distributed is not None:
                self.distributed.all_reduce_gradients(self.model)
            self.optimizer.step()
            if per_update:
                self.scheduler.step()
            if (i + 1) % check_every == 0:
                self._check(good, f"in epoch {epoch}, batch {i + 1}")
            if bar is not None:
                bar.update(1)


def make_sgd(model: Any, config: TrainingConfig) -> torch.optim.Optimizer:
    """SGD with momentum, weight decay on ``model.decay_parameters()`` only (fused when available:
    ≈ 2.5× faster than the loop over parameters)."""
    decay = list(model.decay_parameters())
    ids = {id(p) for p in decay}
    rest = [p for p in model.parameters() if id(p) not in ids]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": rest, "weight_decay": 0.0}]
    momentum = config.initial_momentum if config.momentum_epochs > 0 else config.momentum
    try:
        return torch.optim.SGD(groups, lr=config.lr, momentum=momentum, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.SGD(groups, lr=config.lr, momentum=momentum)


@contextmanager
def reduced_float32_matmul(device: torch.device) -> Iterator[None]:
    """While inside, float32 matrix products on ``device`` may round their inputs: TF32 on CUDA
    (``"high"``), bf16 through oneDNN on a CPU (``"medium"``; AMX / avx512_bf16, elsewhere oneDNN
    keeps float32).  Tensors and results stay float32; the previous setting is restored on the way
    out, also after an error.  It goes through ``torch.set_float32_matmul_precision`` so that code
    inside (``torch.compile``, a callback) may still read it; only where the caller has already
    used torch's per-backend ``fp32_precision`` settings (the two APIs cannot be mixed) is the
    device's backend setting changed instead."""
    cuda = device.type == "cuda"
    try:
        previous = torch.get_float32_matmul_precision()
    except RuntimeError:  # the caller set per-backend precisions: keep to that API
        backend = torch.backends.cuda.matmul if cuda else torch.backends.mkldnn.matmul
        saved = backend.fp32_precision
        backend.fp32_precision = "tf32" if cuda else "bf16"
        try:
            yield
        finally:
            backend.fp32_precision = saved
        return
    torch.set_float32_matmul_precision("high" if cuda else "medium")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


@contextmanager
def bf16_chains(model: Any, device: torch.device) -> Iterator[None]:
    """While inside, ``model.advance`` — every Gibbs sweep of every estimator — runs under
    ``torch.autocast(device, bfloat16)``: its matrix products take bf16 inputs, and the states it
    returns are cast back to the model's dtype (exact for 0/1 and ±1 units; a chain that ends on
    means, CD's ``visible="mean"``, returns them rounded to bf16).  The positive phase,
    the gradient writer (in-place ``addmm(out=…)``, which autocast cannot take), the optimizer,
    tempering swaps and saved chains stay float32."""
    dtype = next(model.parameters()).dtype
    own = model.__dict__.get("advance")  # an advance set on the instance, put back afterwards
    advance: Callable[..., ChainState] = model.advance

    def bf16_advance(*args: Any, **kwargs: Any) -> ChainState:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            state = advance(*args, **kwargs)
        layers = {k: _cast_float(v, dtype) for k, v in state.layers.items()}
        return ChainState(_cast_float(state.visible, dtype), layers)

    model.advance = bf16_advance
    try:
        yield
    finally:
        del model.advance
        if own is not None:
            model.advance = own


def _cast_float(t: Tensor, dtype: torch.dtype) -> Tensor:
    return t.to(dtype) if t.is_floating_point() else t


def _sampler_metrics(model: Any) -> dict[str, float]:
    """The model's own chain diagnostics (an MCMC kernel's acceptance rate, step size), if any."""
    return model.sampler_metrics() if hasattr(model, "sampler_metrics") else {}


def _damaged(why: str) -> CheckpointError:
    """The one-line error of a training state that cannot be resumed."""
    return CheckpointError(f"the training state is damaged: {why}; start a new run")


def _clone(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in tensors.items()}


def _progress(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, unit="batch", dynamic_ncols=True)


def fit(model: Any, data: Any, callbacks: Iterable[Callback] = (), progress: bool = False,
        **config: Any) -> list[dict[str, float]]:
    """Train ``model`` on ``data`` with :class:`TrainingConfig` fields given as keywords."""
    return Trainer(model, TrainingConfig(**config), callbacks=list(callbacks), progress=progress).fit(data)
