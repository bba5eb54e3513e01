"""Model kinds: the protocol (:mod:`.base`), unit types, the RBM and the conditional RBM."""

from .base import EnergyModel, LossModel, check_rows, free_energy_gap, free_energy_gradient
from .conditional import ConditionalRBM
from .rbm import RBM
from .units import UNIT_TYPES, Units, make_units

__all__ = ["EnergyModel", "LossModel", "RBM", "ConditionalRBM", "Units", "UNIT_TYPES", "make_units",
           "check_rows", "free_energy_gap", "free_energy_gradient"]
