"""Model kinds: the protocol (:mod:`.base`), unit types, the RBM and the conditional RBM, deep
belief networks and deep Boltzmann machines, energy models from any module, recurrent networks
(:mod:`.sequence`)."""

from .base import EnergyModel, LossModel, Model, check_rows, free_energy_gap, free_energy_gradient
from .conditional import ConditionalRBM
from .dbn import DBN, DBNNet  # noqa: E402
from .deep_boltzmann import DBM, Binomial  # noqa: E402  (registers the binomial:N units)
from .energy import EnergyFunctionModel, GaussianEnergy, MLPEnergy, register_energy  # noqa: E402
from .rbm import RBM
from .units import UNIT_TYPES, Units, make_units

__all__ = ["EnergyModel", "LossModel", "Model", "RBM", "ConditionalRBM", "DBN", "DBNNet", "DBM", "Binomial",
           "EnergyFunctionModel", "MLPEnergy", "GaussianEnergy", "register_energy", "Units", "UNIT_TYPES",
           "make_units", "check_rows", "free_energy_gap", "free_energy_gradient"]
