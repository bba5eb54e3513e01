"""The fit loop: batches → estimator (fills ``.grad``) → ``torch.optim`` step → callbacks.

Callbacks log metrics, checkpoint and stop early (:class:`EarlyStopping`); an optional
sparsity target (Hinton's guide, §11) is part of the estimator's gradient.
Defaults follow Hinton's practical guide (2010) and Tieleman (2008): PCD-1, SGD with
momentum 0.5 (0.9 was measured worse for PCD: BENCHMARKS.md), L2 weight decay on the weights only, visible
biases started at the log-odds of the data marginals, and a learning rate that decays
linearly to zero (``torch.optim.lr_scheduler.LambdaLR``).
"""

from __future__ import annotations

import copy
import math
import numbers
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

import torch
from torch import Tensor

from .errors import ConfigurationError, DivergenceError
from .estimators import Estimator, SparsityPenalty, make_estimator
from .rbm import RBM
from .threads import threads_for_update, torch_threads
from .units import all_finite


@dataclass
class TrainingConfig:
    """Hyper-parameters of :class:`Trainer` (all have working defaults)."""

    epochs: int = 20
    batch_size: int = 100
    lr: float = 0.05
    momentum: float = 0.5
    initial_momentum: float = 0.5
    momentum_epochs: int = 0            #: epochs run with ``initial_momentum``
    weight_decay: float = 1e-4          #: L2 penalty on the weights (not the biases)
    method: str = "pcd"
    k: int = 1
    n_chains: int | None = None         #: persistent chains; default: the batch size
    centered: bool = False              #: centered gradient (Melchior et al. 2016)
    replicas: int = 10                  #: parallel tempering: temperatures per chain
    fast_lr: float | None = None        #: fast PCD: learning rate of the fast weights (default: lr)
    sparsity_target: float | None = None  #: target mean hidden activity p (None: no penalty)
    sparsity_cost: float = 0.1          #: weight of the sparsity penalty (estimators.SparsityPenalty)
    sparsity_decay: float = 0.95        #: λ of the running activity estimate q
    lr_schedule: str = "linear"         #: "linear" (decay to 0) or "constant"
    init_visible_bias: bool = True      #: log-odds of the data marginals
    seed: int = 0
    max_weight: float = 1e4             #: |W| above this counts as divergence
    threads: int | None = None          #: CPU threads for the updates; None: 1 for small models (threads.py)

    def __post_init__(self) -> None:
        for name, least in (("epochs", 1), ("batch_size", 1), ("k", 1), ("momentum_epochs", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
                raise ConfigurationError(f"{name} must be an integer ≥ {least}, got {value!r}")
        if self.n_chains is not None and (not isinstance(self.n_chains, numbers.Integral)
                                          or isinstance(self.n_chains, bool) or self.n_chains < 1):
            raise ConfigurationError(f"n_chains must be None or an integer ≥ 1, got {self.n_chains!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigurationError(f"lr must be a positive number, got {self.lr}")
        if not 0 <= self.momentum < 1 or not 0 <= self.initial_momentum < 1:
            raise ConfigurationError("momentum must be in [0, 1)")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ConfigurationError(f"weight_decay must be ≥ 0, got {self.weight_decay}")
        if self.lr_schedule not in ("linear", "constant"):
            raise ConfigurationError(f"lr_schedule must be 'linear' or 'constant', got {self.lr_schedule!r}")
        if not self.max_weight > 0:
            raise ConfigurationError(f"max_weight must be positive, got {self.max_weight}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, numbers.Integral)
                                         or self.threads < 1):
            raise ConfigurationError(f"threads must be None or an integer ≥ 1, got {self.threads!r}")
        if self.sparsity_target is not None:
            SparsityPenalty(self.sparsity_target, self.sparsity_cost, self.sparsity_decay)  # validates

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Callback:
    """Hooks called by :class:`Trainer`; override what you need."""

    def on_train_begin(self, trainer: "Trainer") -> None:
        pass

    def on_epoch_end(self, trainer: "Trainer", epoch: int, metrics: dict[str, float]) -> None:
        """Add entries to ``metrics`` or set ``trainer.stop = True``."""


class PeriodicCallback(Callback):
    """Runs :meth:`measure` at the end of every ``every``-th epoch and of the last one."""

    def __init__(self, every: int = 1) -> None:
        if isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 1:
            raise ConfigurationError(f"every must be an integer ≥ 1, got {every!r}")
        self.every = int(every)

    def on_epoch_end(self, trainer, epoch, metrics):
        if epoch % self.every == 0 or epoch == trainer.config.epochs:
            self.measure(trainer, metrics)

    def measure(self, trainer: "Trainer", metrics: dict[str, float]) -> None:
        """Add entries to ``metrics``."""
        raise NotImplementedError


class MetricCallback(PeriodicCallback):
    """Records ``name: fn(rbm, data)`` at the end of every ``every``-th epoch."""

    def __init__(self, name: str, fn: Callable[[RBM, Tensor], float], data: Tensor, every: int = 1) -> None:
        super().__init__(every)
        self.name, self.fn, self.data = name, fn, data

    def measure(self, trainer, metrics):
        metrics[self.name] = self.fn(trainer.rbm, self.data.to(trainer.device, trainer.dtype))


class EarlyStopping(Callback):
    """Stops training when ``monitor`` has not improved for ``patience`` evaluations.

    An evaluation is an epoch whose metrics contain ``monitor`` (a callback listed *before*
    this one must record it, e.g. every N epochs).  It improves when it beats the best so far
    by more than ``min_delta`` (upwards for ``mode="max"``, e.g. a log-likelihood; downwards
    for ``"min"``).  On stopping it sets ``trainer.stop`` and, with ``restore_best``, goes back
    to the :meth:`Trainer.snapshot` taken at the best evaluation (parameters, momentum
    buffers, chains; the epoch counter and history keep what was run).  :attr:`message` says
    what happened (printed to stderr when ``verbose``).
    """

    def __init__(self, monitor: str, patience: int = 5, min_delta: float = 0.0, mode: str = "max",
                 restore_best: bool = True, verbose: bool = True) -> None:
        if isinstance(patience, bool) or not isinstance(patience, numbers.Integral) or patience < 1:
            raise ConfigurationError(f"patience must be an integer ≥ 1, got {patience!r}")
        if not (min_delta >= 0 and math.isfinite(min_delta)):
            raise ConfigurationError(f"min_delta must be ≥ 0, got {min_delta}")
        if mode not in ("max", "min"):
            raise ConfigurationError(f"mode must be 'max' or 'min', got {mode!r}")
        self.monitor, self.patience, self.min_delta, self.mode = monitor, int(patience), min_delta, mode
        self.restore_best, self.verbose = restore_best, verbose
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self.message: str | None = None
        self._best_state: dict[str, Any] | None = None
        self._waited = 0

    def on_train_begin(self, trainer):
        self._waited, self.stopped_epoch, self.message = 0, None, None

    def _improves(self, value: float) -> bool:
        if self.best is None:
            return math.isfinite(value)
        return (value > self.best + self.min_delta if self.mode == "max"
                else value < self.best - self.min_delta)

    def on_epoch_end(self, trainer, epoch, metrics):
        if self.monitor not in metrics:
            return
        value = float(metrics[self.monitor])
        if self._improves(value):
            self.best, self.best_epoch, self._waited = value, epoch, 0
            if self.restore_best:
                self._best_state = trainer.snapshot()
            return
        self._waited += 1
        if self._waited < self.patience:
            return
        trainer.stop, self.stopped_epoch = True, epoch
        self.message = (f"early stopping after epoch {epoch}: {self.monitor} has not improved by more "
                        f"than {self.min_delta:g} for {self.patience} evaluation(s)")
        if self.best_epoch is not None:
            self.message += f"; best {self.best:.6g} at epoch {self.best_epoch}"
            if self.restore_best and self._best_state is not None:
                trainer.restore(self._best_state)
                self.message += (f"; restored the parameters (with momentum buffers and chains) "
                                 f"of epoch {self.best_epoch}")
        if self.verbose:
            print(f"boltzkit: {self.message}", file=sys.stderr)


@dataclass
class Trainer:
    """Trains an :class:`RBM` on a data tensor.

    Example
    -------
    >>> rbm = RBM(784, 64)
    >>> history = Trainer(rbm, TrainingConfig(epochs=1)).fit(data)   # doctest: +SKIP
    """

    rbm: RBM
    config: TrainingConfig = field(default_factory=TrainingConfig)
    estimator: Estimator | None = None
    optimizer: torch.optim.Optimizer | None = None
    scheduler: Any = None
    callbacks: list[Callback] = field(default_factory=list)
    progress: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    epoch: int = 0

    def __post_init__(self) -> None:
        cfg = self.config
        self.device, self.dtype = self.rbm.weight.device, self.rbm.weight.dtype
        self.stop = False
        self._pending_scheduler: dict[str, Any] | None = None
        self.generator = torch.Generator(self.device).manual_seed(cfg.seed)
        self.shuffle_generator = torch.Generator().manual_seed(cfg.seed + 1)
        if self.estimator is None:
            options: dict[str, Any] = {}
            if cfg.method == "pt":
                options["replicas"] = cfg.replicas
            if cfg.method == "fpcd":
                options["fast_lr"] = cfg.lr if cfg.fast_lr is None else cfg.fast_lr
            self.estimator = make_estimator(cfg.method, cfg.k, cfg.n_chains or cfg.batch_size,
                                            centered=cfg.centered, **options)
        if cfg.sparsity_target is not None and self.estimator.sparsity is None:
            self.estimator.sparsify(cfg.sparsity_target, cfg.sparsity_cost, cfg.sparsity_decay)
        if self.optimizer is None:
            decay = [self.rbm.weight]
            rest = [p for p in self.rbm.parameters() if p is not self.rbm.weight]
            groups = [{"params": decay, "weight_decay": cfg.weight_decay},
                      {"params": rest, "weight_decay": 0.0}]
            momentum = cfg.initial_momentum if cfg.momentum_epochs > 0 else cfg.momentum
            try:  # the fused kernel is ≈ 2.5× faster than the loop over parameters
                self.optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=momentum, fused=True)
            except (RuntimeError, TypeError, ValueError):
                self.optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=momentum)

    # -- schedule -------------------------------------------------------------------------
    def _make_scheduler(self, batches_per_epoch: int) -> None:
        if self.scheduler is not None or self.config.lr_schedule == "constant":
            return
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
        opt = self.optimizer.state_dict()
        tensors = {f"optimizer.{i}.{key}": value for i, state in opt["state"].items()
                   for key, value in state.items() if isinstance(value, Tensor)}
        tensors.update({f"estimator.{k}": v for k, v in self.estimator.state_dict().items()})
        tensors["rng.sampling"] = self.generator.get_state()
        tensors["rng.shuffle"] = self.shuffle_generator.get_state()
        numbers = {f"{i}.{key}": value for i, state in opt["state"].items()
                   for key, value in state.items() if not isinstance(value, Tensor)}
        scheduler = self.scheduler.state_dict() if self.scheduler is not None else None
        return tensors, {"epoch": self.epoch, "history": self.history, "param_groups": opt["param_groups"],
                         "optimizer_numbers": numbers, "scheduler": scheduler}

    def load_training_state(self, tensors: dict[str, Tensor], state: dict[str, Any]) -> None:
        """Restore what :meth:`training_state` returned (after the parameters are loaded)."""
        per_param: dict[int, dict[str, Any]] = {}
        for name, value in tensors.items():
            if name.startswith("optimizer."):
                _, index, key = name.split(".", 2)
                per_param.setdefault(int(index), {})[key] = value.to(self.device)
        for name, value in state.get("optimizer_numbers", {}).items():
            index, key = name.split(".", 1)
            per_param.setdefault(int(index), {})[key] = value
        self.optimizer.load_state_dict({"state": per_param, "param_groups": state["param_groups"]})
        self.estimator.load_state_dict({k.removeprefix("estimator."): v.to(self.device)
                                        for k, v in tensors.items() if k.startswith("estimator.")})
        self.generator.set_state(tensors["rng.sampling"])
        self.shuffle_generator.set_state(tensors["rng.shuffle"])
        self.epoch = int(state["epoch"])
        self.history = list(state.get("history", []))
        self._pending_scheduler = state.get("scheduler")

    def snapshot(self) -> dict[str, Any]:
        """Copies of the parameters, the optimizer's per-parameter state (momentum buffers) and
        the estimator's state (chains, fast weights, offsets): a consistent point to go back to
        with :meth:`restore`.  Counters, schedule, history and RNG states are not included."""
        return {"rbm": _clone(self.rbm.state_dict()),
                "optimizer": copy.deepcopy(self.optimizer.state_dict()["state"]),
                "estimator": _clone(self.estimator.state_dict())}

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Go back to a :meth:`snapshot` (copied again, so it can be restored more than once)."""
        self.rbm.load_state_dict(snapshot["rbm"])
        groups = self.optimizer.state_dict()["param_groups"]   # hyper-parameters stay as they are
        self.optimizer.load_state_dict({"state": copy.deepcopy(snapshot["optimizer"]),
                                        "param_groups": groups})
        self.estimator.load_state_dict(_clone(snapshot["estimator"]))

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
        bad = [name for name, p in self.rbm.named_tensors().items() if not all_finite(p)]
        largest = float(self.rbm.weight.detach().abs().max())
        if bad or largest > self.config.max_weight:
            self.restore(good)
            problem = (f"non-finite values in {', '.join(bad)}" if bad
                       else f"weights exploded (max |W| = {largest:.3g} > {self.config.max_weight:g})")
            raise DivergenceError(
                f"training diverged {where}: {problem}; the parameters, momentum buffers and "
                f"chains were restored to the last good state (end of epoch {self.epoch}). "
                f"Try a smaller learning rate.")

    # -- the loop -------------------------------------------------------------------------
    def fit(self, data: Tensor, check_every: int = 100) -> list[dict[str, float]]:
        """Train for ``config.epochs`` epochs in total (resuming from ``self.epoch``)."""
        cfg = self.config
        self.rbm.check_data(data)
        data = data.to(self.device, self.dtype).contiguous()
        n = data.shape[0]
        batches = math.ceil(n / cfg.batch_size)
        if self.epoch == 0 and cfg.init_visible_bias:
            self.rbm.visible.init_from_data(data.mean(0))
        self._make_scheduler(batches)
        for callback in self.callbacks:
            callback.on_train_begin(self)
        bar = _progress(cfg.epochs * batches, self.epoch * batches, self.progress)
        good = self.snapshot()
        rows = max(cfg.batch_size, cfg.n_chains or 0) * (cfg.replicas if cfg.method == "pt" else 1)
        threads = cfg.threads or threads_for_update(rows, *self.rbm.weight.shape, self.device)
        while self.epoch < cfg.epochs and not self.stop:
            epoch = self.epoch + 1
            self._set_momentum(epoch)
            order = torch.randperm(n, generator=self.shuffle_generator).to(self.device)
            with torch_threads(threads):
                self._run_epoch(data, order, epoch, good, bar, check_every)
            self._check(good, f"in epoch {epoch}")
            self.epoch = epoch
            metrics: dict[str, float] = {"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"],
                                         **self.estimator.metrics()}
            self.history.append(metrics)  # callbacks fill it in place (and may save it)
            for callback in self.callbacks:
                callback.on_epoch_end(self, epoch, metrics)
            good = self.snapshot()  # after the callbacks: one may have restored earlier parameters
            if bar is not None:
                bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items() if k not in ("epoch", "lr")})
        if bar is not None:
            bar.close()
        return self.history

    def _run_epoch(self, data: Tensor, order: Tensor, epoch: int, good: dict[str, Any], bar: Any,
                   check_every: int) -> None:
        """One pass over ``data`` in the order ``order``: estimator → optimizer → scheduler."""
        for i, rows in enumerate(order.split(self.config.batch_size)):
            v = data.index_select(0, rows)  # gathered per batch: stays in cache
            try:
                self.estimator.step(self.rbm, v, self.generator)
            except RuntimeError:  # e.g. NaN probabilities from diverged parameters
                self._check(good, f"in epoch {epoch}, batch {i + 1}")
                raise
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            if (i + 1) % check_every == 0:
                self._check(good, f"in epoch {epoch}, batch {i + 1}")
            if bar is not None:
                bar.update(1)

def _clone(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in tensors.items()}


def _progress(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, unit="batch", dynamic_ncols=True)


def fit(rbm: RBM, data: Tensor, callbacks: Iterable[Callback] = (), progress: bool = False,
        **config: Any) -> list[dict[str, float]]:
    """Train ``rbm`` on ``data`` with :class:`TrainingConfig` fields given as keywords."""
    return Trainer(rbm, TrainingConfig(**config), callbacks=list(callbacks), progress=progress).fit(data)
