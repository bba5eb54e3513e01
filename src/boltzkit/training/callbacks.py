"""Callbacks of the trainer: periodic metrics, early stopping."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from torch import Tensor

from ..validation import check_choice, check_float, check_int

if TYPE_CHECKING:
    from ..models.base import Model
    from .trainer import Trainer

logger = logging.getLogger("boltzkit")


class Callback:
    """Hooks called by :class:`~boltzkit.training.Trainer`; override what you need."""

    def on_train_begin(self, trainer: Trainer) -> None:
        pass

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        """Before epoch ``epoch`` (1-based) runs: change the estimator, the schedule, …"""

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        """Add entries to ``metrics`` or set ``trainer.stop = True``."""

    def on_train_end(self, trainer: Trainer) -> None:
        """After the last epoch (or a stop); not called when training diverged."""


class PeriodicCallback(Callback):
    """Runs :meth:`measure` at the end of every ``every``-th epoch and of the last one."""

    def __init__(self, every: int = 1) -> None:
        self.every = check_int("every", every, least=1)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        if epoch % self.every == 0 or epoch == trainer.config.epochs:
            self.measure(trainer, metrics)

    def measure(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        """Add entries to ``metrics``."""
        raise NotImplementedError


class MetricCallback(PeriodicCallback):
    """Records ``name: fn(rbm, data)`` at the end of every ``every``-th epoch."""

    def __init__(self, name: str, fn: Callable[[Model, Tensor], float], data: Tensor, every: int = 1) -> None:
        super().__init__(every)
        self.name, self.fn, self.data = name, fn, data

    def measure(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        data = self.data.to(trainer.device, trainer.dtype) if isinstance(self.data, Tensor) else self.data
        metrics[self.name] = self.fn(trainer.model, data)


class EarlyStopping(Callback):
    """Stops training when ``monitor`` has not improved for ``patience`` evaluations.

    An evaluation is an epoch whose metrics contain ``monitor`` (a callback listed *before*
    this one must record it, e.g. every N epochs).  It improves when it beats the best so far
    by more than ``min_delta`` (upwards for ``mode="max"``, e.g. a log-likelihood; downwards
    for ``"min"``).  On stopping it sets ``trainer.stop`` and, with ``restore_best``, goes back
    to the :meth:`Trainer.snapshot` taken at the best evaluation (parameters, momentum
    buffers, chains; the epoch counter and history keep what was run).  ``patience=None``
    never stops: training runs to the end and the best evaluation is restored then (keep the
    best epoch).  :attr:`message` says what happened (logged to ``boltzkit`` when ``verbose``).
    """

    def __init__(self, monitor: str, patience: int | None = 5, min_delta: float = 0.0, mode: str = "max",
                 restore_best: bool = True, verbose: bool = True) -> None:
        check_int("patience", patience, least=1, optional=True)
        check_float("min_delta", min_delta, 0.0)
        check_choice("mode", mode, ("max", "min"))
        self.monitor, self.patience, self.min_delta, self.mode = monitor, patience, min_delta, mode
        self.restore_best, self.verbose = restore_best, verbose
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self.message: str | None = None
        self._best_state: dict[str, Any] | None = None
        self._waited = 0

    def on_train_begin(self, trainer: Trainer) -> None:
        self._waited, self.stopped_epoch, self.message = 0, None, None

    def _improves(self, value: float) -> bool:
        if self.best is None:
            return math.isfinite(value)
        return (value > self.best + self.min_delta if self.mode == "max"
                else value < self.best - self.min_delta)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        if self.monitor not in metrics:
            return
        value = float(metrics[self.monitor])
        if self._improves(value):
            self.best, self.best_epoch, self._waited = value, epoch, 0
            if self.restore_best:
                self._best_state = trainer.snapshot()
            return
        self._waited += 1
        if self.patience is None or self._waited < self.patience:
            return
        trainer.stop, self.stopped_epoch = True, epoch
        self.message = (f"early stopping after epoch {epoch}: {self.monitor} has not improved by more "
                        f"than {self.min_delta:g} for {self.patience} evaluation(s)")
        self._finish(trainer)

    def on_train_end(self, trainer: Trainer) -> None:
        if self.patience is None and self.best_epoch is not None and self.best_epoch != trainer.epoch:
            self.message = f"kept the epoch with the best {self.monitor}"
            self._finish(trainer)

    def _finish(self, trainer: Trainer) -> None:
        if self.best_epoch is not None:
            self.message = f"{self.message or ''}; best {self.best:.6g} at epoch {self.best_epoch}"
            if self.restore_best and self._best_state is not None:
                trainer.restore(self._best_state)
                self.message += (f"; restored the parameters (with momentum buffers and chains) "
                                 f"of epoch {self.best_epoch}")
        if self.verbose:
            logger.info(self.message)


class LikelihoodGuard(Callback):
    """Stops training when a monitored log-likelihood collapses (the divergence guard for what
    NaN checks and the weight bound cannot see: a model that is finite but useless).

    ``floor`` is the lowest acceptable value, e.g. the log-likelihood of independent units with
    the data's marginals less a generous margin (:func:`independent_bernoulli_log_likelihood`):
    a model trained by any sensible setting stays above it.  A value below the floor, or not
    finite, makes the trainer restore the last good epoch and raise
    :class:`~boltzkit.errors.DivergenceError`.
    """

    def __init__(self, monitor: str, floor: float | None = None) -> None:
        self.monitor = monitor
        self.floor = check_float("floor", floor, optional=True)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        value = metrics.get(self.monitor)
        if value is None:
            return
        if not math.isfinite(value):
            trainer.fail(f"{self.monitor} is {value}")
        elif self.floor is not None and value < self.floor:
            trainer.fail(f"{self.monitor} collapsed to {value:.6g} nats, below {self.floor:.6g} (far worse "
                         f"than independent units with the data's marginals)")


def independent_bernoulli_log_likelihood(data: Tensor, smoothing: float = 0.01) -> float:
    """Mean log-likelihood (nats) of binary rows under independent units with the (smoothed)
    column marginals p: Σ_i [v_i log p_i + (1 − v_i) log(1 − p_i)] — the model an RBM starts
    near, and a floor no trained model should fall far below."""
    data = data.double()
    p = (data.mean(0) + smoothing) / (1 + 2 * smoothing)
    return float((data @ p.log() + (1 - data) @ (1 - p).log()).mean())
