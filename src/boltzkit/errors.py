"""Exceptions raised at the library's edges; each message names the problem and the fix."""


class BoltzkitError(Exception):
    """Base class for every error boltzkit raises on bad input."""


class DataError(BoltzkitError, ValueError):
    """Data that cannot be used: missing file, wrong shape, NaN/inf, empty, wrong value range."""


class CheckpointError(BoltzkitError, ValueError):
    """A checkpoint directory that is missing, truncated, corrupt or not written by boltzkit."""


class ConfigurationError(BoltzkitError, ValueError):
    """An invalid model or training configuration (unsupported unit combination, bad size)."""


class DivergenceError(BoltzkitError, RuntimeError):
    """Training produced NaN/inf or exploding parameters; the last good state was kept."""


class DistributedError(BoltzkitError, RuntimeError):
    """A multi-process job stopped: another process died, raised, or a collective timed out."""
