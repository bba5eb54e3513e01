"""boltzkit: energy-based models on PyTorch — RBMs of every unit type with exact ground truth,
CD/PCD/PT/FPCD training through one trainer, AIS, collaborative filtering, a command line."""

__version__ = "0.2.0"

from .checkpoint import load, save  # noqa: E402
from .evaluation import ais, exact  # noqa: E402
from .models import RBM, ConditionalRBM, EnergyModel  # noqa: E402
from .training import Trainer, TrainingConfig, fit  # noqa: E402

__all__ = ["RBM", "ConditionalRBM", "EnergyModel", "Trainer", "TrainingConfig", "fit", "save", "load",
           "ais", "exact", "__version__"]
