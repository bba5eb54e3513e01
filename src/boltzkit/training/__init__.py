"""Training: the config, the one trainer, gradient estimators, batch sources and callbacks."""

from .batches import Batch, BatchSource, LoaderBatches, TensorBatches
from .callbacks import (
    Callback,
    EarlyStopping,
    LikelihoodGuard,
    MetricCallback,
    PeriodicCallback,
    independent_bernoulli_log_likelihood,
)
from .config import TrainingConfig
from .gradient import (
    ESTIMATORS,
    ContrastiveDivergence,
    Estimator,
    FastPersistentContrastiveDivergence,
    ParallelTemperingEstimator,
    PersistentContrastiveDivergence,
    build_estimator,
    make_estimator,
    write_gradient,
)
from .regularisers import Centering, SparsityPenalty
from .replay import ReplayBuffer  # noqa: E402  (registers method='replay')
from .tensorboard import TensorBoardLogger
from .trainer import LossStep, Trainer, fit, make_sgd

__all__ = ["Batch", "BatchSource", "LoaderBatches", "TensorBatches", "Callback", "EarlyStopping",
           "MetricCallback", "PeriodicCallback", "LikelihoodGuard", "independent_bernoulli_log_likelihood",
           "TrainingConfig", "ESTIMATORS", "ContrastiveDivergence",
           "Estimator", "FastPersistentContrastiveDivergence", "ParallelTemperingEstimator",
           "PersistentContrastiveDivergence", "build_estimator", "make_estimator", "write_gradient",
           "Centering", "SparsityPenalty", "ReplayBuffer", "LossStep", "Trainer", "fit", "make_sgd",
           "TensorBoardLogger"]
