"""Markov-chain state and kernels: persistent chains, parallel tempering, MCMC kernels
(Langevin, MALA, HMC, Gibbs, Metropolis, Gibbs-with-gradients) and their diagnostics."""

from .chains import PersistentChains
from .mcmc import (
    HMC,
    MALA,
    Gibbs,
    GibbsWithGradients,
    Kernel,
    Langevin,
    Metropolis,
    autocorrelation_time,
    batch_means,
    make_kernel,
)
from .state import ChainState
from .tempering import ParallelTempering, tempering_betas

__all__ = ["ChainState", "PersistentChains", "ParallelTempering", "tempering_betas", "Kernel", "Langevin", "MALA",
           "HMC", "Gibbs", "Metropolis", "GibbsWithGradients", "make_kernel", "batch_means", "autocorrelation_time"]
