"""Evaluation beside training: exact enumeration, AIS and reverse AIS, monitors, gradient quality."""

from . import ais, exact
from .monitors import AISLikelihood, ExactLikelihood, pseudo_log_likelihood, reconstruction_error

__all__ = ["ais", "exact", "AISLikelihood", "ExactLikelihood", "pseudo_log_likelihood", "reconstruction_error"]
