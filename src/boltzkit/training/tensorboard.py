"""TensorBoard logging: the per-epoch metrics of ``metrics.csv`` as TensorBoard scalars.

Needs the optional ``tensorboard`` package (``pip install 'boltzkit[tensorboard]'``); this module
imports without it and :class:`TensorBoardLogger` raises a one-line
:class:`~boltzkit.errors.ConfigurationError` when it is constructed without it.

>>> from boltzkit import RBM, Trainer, TrainingConfig                       # doctest: +SKIP
>>> logger = TensorBoardLogger("runs/tb")                                   # doctest: +SKIP
>>> Trainer(RBM(784, 16), TrainingConfig(epochs=3), callbacks=[logger]).fit(data)  # doctest: +SKIP

then ``tensorboard --logdir runs/tb``.
"""

from __future__ import annotations

import importlib.util
import numbers
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from .callbacks import Callback

if TYPE_CHECKING:
    from .trainer import Trainer

#: the message when the optional dependency is missing
MISSING = ("TensorBoard logging needs the optional 'tensorboard' package: "
           "pip install 'boltzkit[tensorboard]'")


def tensorboard_available() -> bool:
    """True when ``torch.utils.tensorboard.SummaryWriter`` can be used (the ``tensorboard`` package is installed)."""
    return importlib.util.find_spec("tensorboard") is not None


class TensorBoardLogger(Callback):
    """Writes every numeric entry of each epoch's metrics row (the row ``metrics.csv`` gets: the
    trainer's ``lr`` and estimator metrics plus what the other callbacks measured) as the scalar
    ``tag = column name`` at ``step = epoch``, through ``torch.utils.tensorboard.SummaryWriter``.

    A row is written once it is final: at the end of the next epoch (so the metrics of callbacks
    listed after this one are included, whatever the order) and at the end of training.  An epoch
    that diverges is taken back by the trainer and never written; after a
    :class:`~boltzkit.errors.DivergenceError` call :meth:`finish` to write the last good epoch
    (the trainer keeps it).  A resumed run writes only the epochs it trains.  ``log_dir`` is
    created when training begins.
    """

    def __init__(self, log_dir: str | Path, flush_secs: int = 10) -> None:
        if not tensorboard_available():
            raise ConfigurationError(MISSING)
        self.log_dir = Path(log_dir)
        self.flush_secs = flush_secs
        self.writer: Any = None
        self._pending: dict[str, float] | None = None
        self._written: dict[int, set[str]] = {}
        self._first_epoch = 1

    def on_train_begin(self, trainer: Trainer) -> None:
        self._open()
        self._pending = None
        self._first_epoch = trainer.epoch + 1  # a resumed run: earlier epochs are not this run's

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        self._write_pending()
        self._pending = metrics  # the trainer's row, filled in place by later callbacks

    def on_train_end(self, trainer: Trainer) -> None:
        self.finish(trainer)

    def finish(self, trainer: Trainer) -> None:
        """Write what is not yet written of the last row of ``trainer.history`` and close the file.

        Called at the end of training; call it yourself after a run that stopped with
        :class:`~boltzkit.errors.DivergenceError` (the diverged epoch's row is dropped, the last
        good one written) or after adding entries to the last row (the command line's final
        log-likelihood)."""
        self._pending = None
        if trainer.history and int(trainer.history[-1]["epoch"]) >= self._first_epoch:
            self.write(trainer.history[-1])
        self.close()

    def write(self, row: dict[str, float]) -> None:
        """Write the numeric entries of ``row`` (a metrics row with its ``epoch``) not written yet
        for that epoch — e.g. a log-likelihood measured once after training — and flush."""
        epoch = int(row["epoch"])
        done = self._written.setdefault(epoch, set())
        self._open()
        for name, value in row.items():
            if name != "epoch" and name not in done and isinstance(value, numbers.Real) \
                    and not isinstance(value, bool):
                self.writer.add_scalar(name, float(value), epoch)
                done.add(name)
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file (a later write opens a new one in the same folder)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def _open(self) -> None:
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.log_dir), flush_secs=self.flush_secs)

    def _write_pending(self) -> None:
        if self._pending is not None:
            row, self._pending = self._pending, None
            self.write(row)
