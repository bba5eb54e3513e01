"""Hyper-parameters of the trainer, validated once at construction."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import ConfigurationError
from ..validation import check_choice, check_float, check_int
from .regularisers import SparsityPenalty

#: learning-rate schedules: decay per update, decay per epoch (constant within it), none
LR_SCHEDULES = ("linear", "epoch-linear", "constant")
#: arithmetic of the updates: exact float32 products; float32 tensors with reduced-precision products
#: (TF32 on CUDA, bf16 on a CPU with oneDNN); the Gibbs chains under bf16 autocast (trainer.py)
PRECISIONS = ("float32", "tf32", "bf16")


@dataclass
class TrainingConfig:
    """Hyper-parameters of :class:`~boltzkit.training.Trainer` (all have working defaults)."""

    epochs: int = 20
    batch_size: int = 100
    lr: float = 0.05
    momentum: float = 0.5
    initial_momentum: float = 0.5
    momentum_epochs: int = 0            #: epochs run with ``initial_momentum``
    weight_decay: float = 1e-4          #: L2 penalty on ``model.decay_parameters()`` (an RBM's weights)
    method: str = "pcd"
    k: int = 1
    n_chains: int | None = None         #: persistent chains; default: the batch size
    centered: bool = False              #: centered gradient (Melchior et al. 2016)
    replicas: int = 10                  #: parallel tempering: temperatures per chain
    fast_lr: float | None = None        #: fast PCD: learning rate of the fast weights (default: lr)
    sparsity_target: float | None = None  #: target mean hidden activity p in (0, 1) (None: no penalty)
    sparsity_cost: float = 0.1          #: weight of the sparsity penalty (regularisers.SparsityPenalty)
    sparsity_decay: float = 0.95        #: λ of the running activity estimate q
    #: "linear": lr·(1 − step/steps) per update; "epoch-linear": lr·(1 − (e−1)/E) in epoch e; "constant"
    lr_schedule: str = "linear"
    init_visible_bias: bool = True      #: ``model.init_from_data`` (an RBM: log-odds of the data marginals)
    seed: int = 0
    max_weight: float = 1e4             #: |weight| above this counts as divergence
    threads: int | None = None          #: CPU threads for the updates; None: 1 for small models (threads.py)
    precision: str = "float32"          #: "float32", "tf32" or "bf16" (:data:`PRECISIONS`; float32 models only)
    #: the data are probabilities p: every batch draws fresh binary rows v ~ Bernoulli(p)
    #: (dynamic binarisation; bernoulli or binomial visible units, see batches.redraw)
    sample_data: bool = False

    def __post_init__(self) -> None:
        for name, least in (("epochs", 1), ("batch_size", 1), ("k", 1), ("momentum_epochs", 0),
                            ("replicas", 1)):
            check_int(name, getattr(self, name), least=least)
        check_int("n_chains", self.n_chains, least=1, optional=True)
        check_int("threads", self.threads, least=1, optional=True)
        check_int("seed", self.seed, least=0)
        check_float("lr", self.lr, 0.0, low_open=True)
        check_float("momentum", self.momentum, 0.0, 1.0, high_open=True)
        check_float("initial_momentum", self.initial_momentum, 0.0, 1.0, high_open=True)
        check_float("weight_decay", self.weight_decay, 0.0)
        check_float("max_weight", self.max_weight, 0.0, low_open=True)
        check_float("fast_lr", self.fast_lr, 0.0, optional=True)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_choice("precision", self.precision, PRECISIONS)
        if not isinstance(self.sample_data, bool):
            raise ConfigurationError(f"sample_data must be True or False, got {self.sample_data!r}")
        if not isinstance(self.method, str):
            raise ConfigurationError(f"method must be a string, got {self.method!r}")
        if self.sparsity_target is not None:
            SparsityPenalty(self.sparsity_target, self.sparsity_cost, self.sparsity_decay)  # validates

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainingConfig:
        """A config from saved values; unknown names are refused with the list of known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigurationError(f"unknown training settings {unknown}; known: {sorted(known)}")
        return cls(**values)
