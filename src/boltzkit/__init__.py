"""boltzkit: restricted Boltzmann machines on PyTorch, with exact ground truth."""

from .rbm import RBM
from .train import Trainer, TrainingConfig, fit

__version__ = "0.1.0"
__all__ = ["RBM", "Trainer", "TrainingConfig", "fit", "__version__"]
