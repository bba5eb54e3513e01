"""Evaluation beside training: exact enumeration, AIS and reverse AIS, monitors, gradient quality."""

from . import ais, deep, exact, quadrature
from .monitors import AISLikelihood, ExactLikelihood, pseudo_log_likelihood, reconstruction_error

__all__ = ["ais", "deep", "exact", "quadrature", "AISLikelihood", "ExactLikelihood", "pseudo_log_likelihood",
           "reconstruction_error"]
