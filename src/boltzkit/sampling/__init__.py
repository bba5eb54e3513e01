"""Markov-chain state and kernels: persistent chains, parallel tempering."""

from .chains import PersistentChains
from .state import ChainState
from .tempering import ParallelTempering, tempering_betas

__all__ = ["ChainState", "PersistentChains", "ParallelTempering", "tempering_betas"]
