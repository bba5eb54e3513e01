"""scikit-learn estimators over boltzkit's RBM and its one trainer (``pip install 'boltzkit[sklearn]'``).

* :class:`BernoulliRBM` — a drop-in for ``sklearn.neural_network.BernoulliRBM``: the same
  constructor parameters and defaults, methods and fitted attributes, scipy sparse input,
  float32 kept float32; plus boltzkit's options (``method``, ``k``, ``centered``,
  ``momentum``, ``weight_decay``, ``device``, …) and :meth:`~_RBMEstimator.log_likelihood`,
  the log-likelihood in nats with an exact or AIS log Z.
* :class:`GaussianRBM` — real-valued inputs, standardised inside (Gaussian visible units, σ = 1).
* :class:`CategoricalRBM` — categorical inputs (integer codes), softmax:K visible units.

Every estimator builds a :class:`boltzkit.models.rbm.RBM` and trains it with
:class:`boltzkit.training.Trainer` (no training loop of its own); the core model is the fitted
attribute ``model_``.  Persistence: ``pickle``/``joblib`` as for any scikit-learn estimator,
or :meth:`~_RBMEstimator.save` / :meth:`~_RBMEstimator.load`, a safetensors checkpoint (no
pickle: safe to load from untrusted sources) that ``boltzkit evaluate``/``sample`` also read.

``score_samples`` keeps scikit-learn's meaning, the pseudo-log-likelihood
PL(v) = Σ_i log p(v_i | v_{−i}), but computed over all n_features sites (deterministic), where
scikit-learn flips one random site i and returns n_features · log p(v_i | v_{−i}), an unbiased
but noisy one-sample estimate of the same sum.  Neither is the log-likelihood (scikit-learn
issue #23179: PL grows with the number of features and is no density);
:meth:`~_RBMEstimator.log_likelihood` is log p(v) = −F(v) − log Z.
"""

from __future__ import annotations

import copy
import sys
import time
from numbers import Integral, Real
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

try:
    from scipy import sparse
    from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin, _fit_context
    from sklearn.utils import check_random_state
    from sklearn.utils._param_validation import Interval, StrOptions
    from sklearn.utils.validation import check_is_fitted
except ImportError:  # pragma: no cover - exercised only without the extra
    raise ImportError("boltzkit.sklearn needs scikit-learn: pip install 'boltzkit[sklearn]'") from None
try:
    from sklearn.utils.validation import validate_data
except ImportError:  # pragma: no cover - scikit-learn < 1.6
    def validate_data(estimator: Any, X: Any, **kwargs: Any) -> Any:
        return estimator._validate_data(X, **kwargs)

from . import checkpoint
from .errors import CheckpointError, ConfigurationError, DataError
from .evaluation import ais, exact
from .evaluation.monitors import pseudo_log_likelihood_rows
from .models.rbm import RBM
from .training import Callback, Trainer, TrainingConfig
from .training.batches import Batch, BatchSource, TensorBatches, check_probabilities
from .validation import check_choice, check_int

__all__ = ["BernoulliRBM", "GaussianRBM", "CategoricalRBM", "LogPartition"]

#: ``method="auto"`` enumerates log Z exactly when the smaller discrete layer has ≤ 2^20 states
AUTO_EXACT_BITS = 20
#: rows × columns densified at once from sparse input
_CHUNK_ELEMENTS = 2 ** 22
#: ``verbose``: the pseudo-likelihood of each iteration is the mean over this many rows of X at most
VERBOSE_ROWS = 500


class LogPartition(NamedTuple):
    """log Z of a fitted estimator's model: the value, an interval (± 3 standard errors of the
    AIS weights; equal to the value when exact) and how it was obtained."""

    log_z: float
    low: float
    high: float
    method: str


# --------------------------------------------------------------------------------------------
# data sources for the trainer
# --------------------------------------------------------------------------------------------


class _DenseRows(TensorBatches):
    """Rows already validated by scikit-learn's ``validate_data`` (2-D, finite, right width).

    The value check of the core is not applied: like scikit-learn's BernoulliRBM, the
    estimators take real values (e.g. grey levels in [0, 1]) as data for binary units.
    """

    def check(self, model: Any, name: str | None = None) -> None:
        pass


class _SparseRows(BatchSource):
    """A scipy CSR matrix, densified one batch at a time."""

    def __init__(self, matrix: Any, device: torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        self.matrix, self.device, self.dtype = matrix, device, dtype

    def __len__(self) -> int:
        return self.matrix.shape[0]

    def batch(self, rows: Tensor) -> Batch:
        dense = torch.from_numpy(self.matrix[rows.cpu().numpy()].toarray())
        return Batch(dense.to(self.device, self.dtype))

    def to(self, device: torch.device, dtype: torch.dtype) -> _SparseRows:
        return _SparseRows(self.matrix, device, dtype)

    def mean(self) -> Tensor:
        return torch.from_numpy(np.asarray(self.matrix.mean(axis=0), dtype=np.float64).ravel())


def _chunks(V: Any, n_columns: int) -> Any:
    """Dense row blocks of ``V`` (an array or a CSR matrix) as NumPy arrays."""
    rows = max(1, _CHUNK_ELEMENTS // max(1, n_columns))
    for start in range(0, V.shape[0], rows):
        block = V[start:start + rows]
        yield block.toarray() if sparse.issparse(block) else block


class _Verbose(Callback):
    """scikit-learn's verbose line after every iteration (written to stdout, as scikit-learn
    does, only when the user asked for it with ``verbose > 0``)."""

    def __init__(self, estimator: _RBMEstimator, V: Any) -> None:
        self.estimator, self.V, self.begin = estimator, V, time.time()

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        name, value = self.estimator._progress_metric(self.V)
        end = time.time()
        sys.stdout.write(f"[{type(self.estimator).__name__}] Iteration {epoch}, {name} = {value:.2f}, "
                         f"time = {end - self.begin:.2f}s\n")
        self.begin = end


# --------------------------------------------------------------------------------------------
# the shared estimator
# --------------------------------------------------------------------------------------------


class _RBMEstimator(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """What the three estimators share: parameters, fit/partial_fit through the trainer,
    transform, gibbs, log-likelihood, checkpoints.  Subclasses say how X becomes visible rows."""

    #: unit type of the visible layer (softmax gets its K from the data)
    _visible_kind = "bernoulli"
    _sparse = False

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "n_iter": [Interval(Integral, 0, None, closed="left")],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
        "method": [StrOptions({"cd", "pcd", "pt", "fpcd"})],
        "k": [Interval(Integral, 1, None, closed="left")],
        "n_chains": [Interval(Integral, 1, None, closed="left"), None],
        "centered": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "lr_schedule": [StrOptions({"constant", "linear", "epoch-linear"})],
        "init_visible_bias": ["boolean"],
        "device": [str],
    }

    def __init__(self, n_components: int = 256, *, learning_rate: float = 0.1, batch_size: int = 10,
                 n_iter: int = 10, verbose: int = 0, random_state: Any = None, method: str = "pcd",
                 k: int = 1, n_chains: int | None = None, centered: bool = False, momentum: float = 0.0,
                 weight_decay: float = 0.0, lr_schedule: str = "constant", init_visible_bias: bool = False,
                 device: str = "cpu") -> None:
        self.n_components = n_components
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.n_iter = n_iter
        self.verbose = verbose
        self.random_state = random_state
        self.method = method
        self.k = k
        self.n_chains = n_chains
        self.centered = centered
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.lr_schedule = lr_schedule
        self.init_visible_bias = init_visible_bias
        self.device = device

    # -- what subclasses define ------------------------------------------------------------
    def _encode(self, X: Any, reset: bool) -> Any:
        """Validated visible rows (a float array or CSR matrix); ``reset`` learns the
        preprocessing (``fit``) instead of applying it."""
        raise NotImplementedError

    def _visible_spec(self) -> str:
        return self._visible_kind

    def _decode(self, v: np.ndarray) -> np.ndarray:
        """Visible rows back in the units of X (inverse of :meth:`_encode`)."""
        return v

    def _log_jacobian(self) -> float:
        """log |d(visible)/dX| per row: added to log p(visible) to give the density of X."""
        return 0.0

    def _checkpoint_extra(self) -> dict[str, Any]:
        return {}

    def _restore_extra(self, info: dict[str, Any], config: dict[str, Any]) -> None:
        pass

    def _progress_metric(self, V: Any) -> tuple[str, float]:
        """The verbose line's number: mean squared reconstruction error of the visible rows."""
        total, n = 0.0, 0
        with torch.no_grad():
            for block in _chunks(V, V.shape[1]):
                v = self._tensor(block)
                total += float((self.model_.visible_mean(self.model_.hidden_mean(v)) - v).pow(2).sum())
                n += v.numel()
        return "reconstruction error", total / max(n, 1)

    # -- fitting ---------------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any = None) -> _RBMEstimator:
        """Fit the model to X: ``n_iter`` passes over X in mini-batches of ``batch_size``
        (the gradient estimator ``method``, PCD-1 by default as in scikit-learn)."""
        V = self._encode(X, reset=True)
        self._initialise(V)
        if self.n_iter > 0:
            self._train(V, self.n_iter, schedule=True)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X: Any, y: Any = None) -> _RBMEstimator:
        """Fit the model to the segment X: one pass over X in mini-batches of ``batch_size``
        (one update when X has at most ``batch_size`` rows, as in scikit-learn), continuing the
        persistent chains and momentum of earlier calls, at the constant ``learning_rate``."""
        first = not hasattr(self, "model_")
        V = self._encode(X, reset=first)
        if first:
            self._initialise(V)
        self._train(V, 1, schedule=False)
        return self

    def _torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            device = torch.device(self.device)
            torch.empty(0, device=device)
        except (RuntimeError, AssertionError) as e:
            raise ConfigurationError(f"device {self.device!r} is not usable here ({str(e).splitlines()[0]}); "
                                     f"use 'cpu', 'cuda' or 'auto'") from None
        return device

    def _initialise(self, V: Any) -> None:
        """A fresh core model and trainer (weights N(0, 0.01²) as in scikit-learn)."""
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        dtype = torch.float32 if V.dtype == np.float32 else torch.float64
        self.model_ = RBM(V.shape[1] // self._group_size(), self.n_components, visible=self._visible_spec(),
                          hidden="bernoulli", weight_scale=0.01, seed=seed, dtype=dtype,
                          device=self._torch_device())
        self._n_features_out = self.n_components
        self._seed = seed
        self._trainer = self._make_trainer(seed)
        self._gibbs_generator: torch.Generator | None = None

    def _group_size(self) -> int:
        return 1

    def _make_trainer(self, seed: int) -> Trainer:
        config = TrainingConfig(
            epochs=1, batch_size=self.batch_size, lr=self.learning_rate, momentum=self.momentum,
            initial_momentum=self.momentum, weight_decay=self.weight_decay, method=self.method, k=self.k,
            n_chains=self.n_chains, centered=self.centered, lr_schedule=self.lr_schedule,
            init_visible_bias=self.init_visible_bias, sample_data=self._sample_data(), seed=seed)
        return Trainer(self.model_, config)

    def _sample_data(self) -> bool:
        """``sample_data`` as a Python bool (BernoulliRBM's parameter; False for the others)."""
        return bool(getattr(self, "sample_data", False))

    def _source(self, V: Any) -> BatchSource:
        if sparse.issparse(V):
            return _SparseRows(V)
        return _DenseRows(self._tensor(V, device=False))

    def _train(self, V: Any, epochs: int, schedule: bool) -> None:
        """``epochs`` more passes of the one trainer over V."""
        trainer = self._trainer
        if not schedule:  # partial_fit: no known end, so a constant learning rate
            trainer.config.lr_schedule = "constant"
            for group in trainer.optimizer.param_groups:
                group["lr"] = self.learning_rate
        trainer.config.epochs = trainer.epoch + epochs
        trainer.config.sample_data = self._sample_data()  # set_params between partial_fit calls counts
        trainer.callbacks = [_Verbose(self, V)] if self.verbose and schedule else []
        try:
            trainer.fit(self._source(V))
        finally:
            # the schedule has run its course; what is kept (and pickled) continues at the
            # constant learning rate in partial_fit
            trainer.scheduler, trainer.config.lr_schedule, trainer.callbacks = None, "constant", []
            trainer._probe = None
            for group in trainer.optimizer.param_groups:
                group["lr"] = self.learning_rate

    # -- using the model -------------------------------------------------------------------
    def _tensor(self, block: np.ndarray, device: bool = True) -> Tensor:
        array = np.asarray(block)
        if not array.flags.writeable or not array.flags.c_contiguous:
            array = np.array(array, order="C")
        t = torch.from_numpy(array)
        if hasattr(self, "model_"):
            weight = self.model_.weight
            t = t.to(weight.device if device else "cpu", weight.dtype)
        return t

    def _numpy(self, t: Tensor) -> np.ndarray:
        return t.detach().cpu().numpy()

    def transform(self, X: Any) -> np.ndarray:
        """Hidden-unit probabilities P(h = 1 | v = X), shape (n_samples, n_components), in the
        dtype of the training data (float32 or float64)."""
        check_is_fitted(self)
        V = self._encode(X, reset=False)
        with torch.no_grad():
            out = [self._numpy(self.model_.hidden_mean(self._tensor(b))) for b in _chunks(V, V.shape[1])]
        return np.concatenate(out) if out else np.zeros((0, self.n_components), self._model_dtype)

    @property
    def _model_dtype(self) -> np.dtype:
        return np.dtype(str(self.model_.weight.dtype).removeprefix("torch."))

    def gibbs(self, v: Any) -> np.ndarray:
        """One Gibbs step from v: h ~ p(h | v), then v' ~ p(v | h); returns v' in the units of X.

        (scikit-learn's BernoulliRBM returns a boolean array; this one returns 0/1 floats.)
        Successive calls continue one random stream seeded by ``random_state``."""
        check_is_fitted(self)
        V = self._encode(v, reset=False)
        if getattr(self, "_gibbs_generator", None) is None:
            self._gibbs_generator = torch.Generator(self.model_.weight.device).manual_seed(self._seed + 2)
        generator = self._gibbs_generator
        out = []
        for block in _chunks(V, V.shape[1]):
            h = self.model_.sample_hidden(self._tensor(block), generator)
            out.append(self._numpy(self.model_.sample_visible(h, generator)))
        return self._decode(np.concatenate(out))

    # -- parameters as scikit-learn names them ---------------------------------------------
    @property
    def components_(self) -> np.ndarray:
        """Weight matrix, shape (n_components, n_visible columns): Wᵀ of the core model (a view
        on the CPU: writing into it changes the model)."""
        check_is_fitted(self)
        return self._numpy(self.model_.weight.data.t())

    @components_.setter
    def components_(self, value: Any) -> None:
        check_is_fitted(self)
        self._set(self.model_.weight, np.asarray(value).T, "components_")

    @property
    def intercept_hidden_(self) -> np.ndarray:
        """Biases of the hidden units, shape (n_components,)."""
        check_is_fitted(self)
        return self._numpy(self.model_.hidden_bias.data)

    @intercept_hidden_.setter
    def intercept_hidden_(self, value: Any) -> None:
        check_is_fitted(self)
        self._set(self.model_.hidden_bias, value, "intercept_hidden_")

    @property
    def intercept_visible_(self) -> np.ndarray:
        """Biases of the visible units, shape (n_visible columns,)."""
        check_is_fitted(self)
        return self._numpy(self.model_.visible_bias.data)

    @intercept_visible_.setter
    def intercept_visible_(self, value: Any) -> None:
        check_is_fitted(self)
        self._set(self.model_.visible_bias, value, "intercept_visible_")

    def _set(self, parameter: Tensor, value: Any, name: str) -> None:
        value = torch.as_tensor(np.asarray(value, dtype=np.float64))
        if tuple(value.shape) != tuple(parameter.shape):
            shape = tuple(parameter.shape)[::-1]  # as scikit-learn names it (components_ is Wᵀ)
            raise DataError(f"{name} must have shape {shape}, got {tuple(value.shape)[::-1]}")
        with torch.no_grad():
            parameter.copy_(value)

    @property
    def h_samples_(self) -> np.ndarray:
        """Hidden states h ~ p(h | v) of the persistent chains (shape (n_chains, n_components),
        n_chains = batch_size by default), drawn with a fixed seed; persistent methods only."""
        check_is_fitted(self)
        chains = getattr(self._trainer.estimator, "chains", None)
        state = None
        if chains is not None and chains.state is not None:
            state = chains.model_samples() if hasattr(chains, "model_samples") else chains.state
        if state is None:
            raise AttributeError("h_samples_ exists after training with persistent chains "
                                 "(method 'pcd', 'pt' or 'fpcd')")
        generator = torch.Generator(state.device).manual_seed(self._seed + 1)
        return self._numpy(self.model_.sample_hidden(state, generator))

    # -- likelihood ------------------------------------------------------------------------
    def log_partition(self, method: str = "auto", *, X: Any = None, n_chains: int = 100,
                      n_betas: int | None = None, random_state: Any = None) -> LogPartition:
        """log Z of the fitted model, exactly or by AIS.

        ``method="exact"`` enumerates the smaller discrete layer (≤ 2^25 states; float64);
        ``"ais"`` runs annealed importance sampling (``n_chains`` runs, ``n_betas``
        temperatures, default 14,500) from a base model fitted to X when given (else uniform),
        seeded by ``random_state`` (default: the estimator's); ``"auto"`` is exact when the
        smaller layer has ≤ 2^20 states, else AIS.
        """
        check_is_fitted(self)
        check_choice("method", method, ("auto", "exact", "ais"))
        if method == "auto":
            method = "exact" if exact.is_tractable(self.model_, AUTO_EXACT_BITS) else "ais"
        if method == "exact":
            log_z = exact.log_partition(self.model_)
            return LogPartition(log_z, log_z, log_z, "exact")
        check_int("n_chains", n_chains, least=1)
        base = None if X is None else self._checked_visible(X)
        seed = int(check_random_state(self.random_state if random_state is None else random_state)
                   .randint(np.iinfo(np.int32).max))
        result = ais.ais(self.model_, base, n_chains=n_chains, betas=n_betas, seed=seed)
        return LogPartition(result.log_z, result.log_z_low, result.log_z_high, "ais")

    def log_likelihood(self, X: Any, method: str = "auto", *, n_chains: int = 100, n_betas: int | None = None,
                       random_state: Any = None) -> np.ndarray:
        """log p(x) per sample in nats (float64): −F(v) − log Z, log Z from :meth:`log_partition`
        (exact for small models, AIS otherwise; the AIS base model is fitted to X).

        Unlike ``score_samples`` this is the model's log-likelihood: comparable across models
        and data sets, and its mean over held-out data is what RBM papers report.  For
        :class:`GaussianRBM` it is the density of X in its own units (the standardisation's
        Jacobian included).
        """
        check_is_fitted(self)
        v = self._checked_visible(X)
        log_z = self.log_partition(method, X=X, n_chains=n_chains, n_betas=n_betas,
                                   random_state=random_state).log_z
        model = copy.deepcopy(self.model_).to(torch.float64)
        with torch.no_grad():
            free = torch.cat([model.free_energy(b.to(model.weight.device, torch.float64))
                              for b in v.split(4096)])
        return self._numpy(-free - log_z) + self._log_jacobian()

    def _checked_visible(self, X: Any) -> Tensor:
        """X as visible rows that the units can take (binary, one-hot), checked by the core."""
        V = self._encode(X, reset=False)
        v = self._tensor(V.toarray() if sparse.issparse(V) else V)
        self.model_.check_data(v, "X")
        return v

    # -- checkpoints -----------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write the fitted estimator as a safetensors checkpoint (atomic, SHA-256 checked, no
        pickle): the core RBM plus the estimator's parameters and preprocessing in config.json.
        :meth:`load` reads it back; ``boltzkit evaluate DIR`` reads it as any RBM checkpoint."""
        check_is_fitted(self)
        params = {k: v.item() if isinstance(v, np.generic) else v for k, v in self.get_params().items()}
        params = {k: v for k, v in params.items() if isinstance(v, (str, int, float, bool)) or v is None}
        info: dict[str, Any] = {"estimator": type(self).__name__, "params": params,
                                "n_features_in": int(self.n_features_in_), "seed": self._seed}
        if hasattr(self, "feature_names_in_"):
            info["feature_names_in"] = [str(n) for n in self.feature_names_in_]
        info.update(self._checkpoint_extra())
        extra = {"sklearn": info, **self._checkpoint_top_level()}
        return checkpoint.save(directory, self.model_, extra=extra)

    def _checkpoint_top_level(self) -> dict[str, Any]:
        return {}

    @classmethod
    def load(cls, directory: str | Path, device: str | None = None) -> _RBMEstimator:
        """The estimator :meth:`save` wrote (fitted; ``partial_fit`` continues with fresh chains)."""
        config = checkpoint.read_config(directory)
        info = config.get("sklearn")
        if not isinstance(info, dict) or info.get("estimator") != cls.__name__:
            found = info.get("estimator") if isinstance(info, dict) else None
            raise CheckpointError(f"{directory} holds no {cls.__name__} written by {cls.__name__}.save"
                                  + (f" (it holds a {found})" if found else ""))
        try:
            estimator = cls(**info["params"])
            if device is not None:
                estimator.device = device
            model = checkpoint.load_checkpoint(directory, estimator._torch_device(), kind=RBM).model
            estimator.model_ = model
            estimator.n_features_in_ = int(info["n_features_in"])
            if "feature_names_in" in info:
                estimator.feature_names_in_ = np.asarray(info["feature_names_in"], dtype=object)
            estimator._n_features_out = model.n_hidden
            estimator._seed = int(info["seed"])
            estimator._restore_extra(info, config)
            estimator._trainer = estimator._make_trainer(estimator._seed)
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, CheckpointError):
                raise
            raise CheckpointError(f"{directory}/config.json: the estimator description is damaged ({e})") from None
        return estimator

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = self._sparse
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


# --------------------------------------------------------------------------------------------
# the three estimators
# --------------------------------------------------------------------------------------------


class BernoulliRBM(_RBMEstimator):
    """Bernoulli RBM, a drop-in for ``sklearn.neural_network.BernoulliRBM`` trained by boltzkit.

    E(v, h) = −bᵀv − cᵀh − vᵀWh with binary hidden units; X holds binary values or
    probabilities in [0, 1] (dense or scipy sparse).  The defaults train what scikit-learn
    trains: PCD-1 with ``batch_size`` persistent chains, plain SGD at a constant
    ``learning_rate``, weights N(0, 0.01²), zero biases.

    Parameters
    ----------
    n_components, learning_rate, batch_size, n_iter, verbose, random_state:
        As in scikit-learn (same names, same defaults).  ``verbose`` prints scikit-learn's line
        per iteration, its pseudo-likelihood averaged over ≤ ``VERBOSE_ROWS`` rows of X.
    method:
        Gradient estimator: ``"pcd"`` (default), ``"cd"``, ``"pt"`` (parallel tempering),
        ``"fpcd"`` (fast PCD).
    k:
        Gibbs sweeps per update.
    n_chains:
        Persistent chains (default ``batch_size``).
    centered:
        Centered gradient (Melchior et al. 2016).
    momentum, weight_decay:
        SGD momentum and L2 penalty on the weights (0 as in scikit-learn; Hinton's guide uses
        0.5–0.9 and 1e-4).
    lr_schedule:
        ``"constant"`` (scikit-learn), ``"linear"`` (decay to 0 over ``fit``) or
        ``"epoch-linear"``; ``partial_fit`` always uses the constant rate.
    init_visible_bias:
        Start the visible biases at the log-odds of the data marginals (Hinton's guide §8);
        scikit-learn starts at 0.
    sample_data:
        Treat X as probabilities and train on a fresh binary draw v ~ Bernoulli(X) of every
        batch (dynamic binarisation, :class:`~boltzkit.training.TrainingConfig`'s
        ``sample_data``); values outside [0, 1] are refused.  Default False: the values are
        used as they are, as scikit-learn does.
    device:
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, … or ``"auto"``.

    Attributes
    ----------
    model_ : boltzkit.models.rbm.RBM
        The trained core model (``model_.save(dir)``, ``boltzkit.exact.log_partition(model_)``…).
    components_, intercept_hidden_, intercept_visible_, h_samples_, n_features_in_,
    feature_names_in_:
        As in scikit-learn (``components_`` is Wᵀ, shape (n_components, n_features)).
    """

    _sparse = True
    _parameter_constraints: dict = {**_RBMEstimator._parameter_constraints, "sample_data": ["boolean"]}
    #: the default for an estimator pickled before the parameter existed
    sample_data = False

    def __init__(self, n_components: int = 256, *, learning_rate: float = 0.1, batch_size: int = 10,
                 n_iter: int = 10, verbose: int = 0, random_state: Any = None, method: str = "pcd",
                 k: int = 1, n_chains: int | None = None, centered: bool = False, momentum: float = 0.0,
                 weight_decay: float = 0.0, lr_schedule: str = "constant", init_visible_bias: bool = False,
                 sample_data: bool = False, device: str = "cpu") -> None:
        super().__init__(n_components, learning_rate=learning_rate, batch_size=batch_size, n_iter=n_iter,
                         verbose=verbose, random_state=random_state, method=method, k=k, n_chains=n_chains,
                         centered=centered, momentum=momentum, weight_decay=weight_decay,
                         lr_schedule=lr_schedule, init_visible_bias=init_visible_bias, device=device)
        self.sample_data = sample_data

    def _encode(self, X: Any, reset: bool) -> Any:
        if reset:
            V = validate_data(self, X, accept_sparse="csr", dtype=(np.float64, np.float32), reset=True)
        else:
            dtype = self._model_dtype if hasattr(self, "model_") else (np.float64, np.float32)
            V = validate_data(self, X, accept_sparse="csr", dtype=dtype, reset=False)
        if self._sample_data():  # probabilities, checked before a fit replaces anything
            values = V.data if sparse.issparse(V) else V  # a CSR matrix's unstored entries are 0
            check_probabilities(torch.from_numpy(np.ascontiguousarray(values)), 1.0, "X")
        return V

    def score_samples(self, X: Any) -> np.ndarray:
        """Pseudo-log-likelihood Σ_i log p(x_i | x_{−i}) of each sample over all features
        (float64; deterministic).

        scikit-learn returns n_features · log p(x_i | x_{−i}) for one random feature i, a noisy
        estimate of the same sum at 1/n_features of the cost (here one softplus per feature and
        hidden unit per row: ≈ 5 ms per row for 784 × 256 in float64 on one core, 2.5 ms in
        float32).  This is not log p(x) (scikit-learn issue #23179): use :meth:`log_likelihood`.
        """
        check_is_fitted(self)
        return self._pseudo_log_likelihood(self._encode(X, reset=False))

    def _pseudo_log_likelihood(self, V: Any) -> np.ndarray:
        out = [self._numpy(pseudo_log_likelihood_rows(self.model_, self._tensor(b)))
               for b in _chunks(V, V.shape[1])]
        return np.concatenate(out)

    def _progress_metric(self, V: Any) -> tuple[str, float]:
        """Mean pseudo-log-likelihood of at most ``VERBOSE_ROWS`` evenly spaced rows of X (the
        exact sum over sites costs n_features free energies per row)."""
        rows = np.unique(np.linspace(0, V.shape[0] - 1, min(V.shape[0], VERBOSE_ROWS)).astype(np.int64))
        return "pseudo-likelihood", float(self._pseudo_log_likelihood(V[rows]).mean())


class GaussianRBM(_RBMEstimator):
    """Gaussian–Bernoulli RBM for real-valued X, standardised inside.

    The columns are standardised with the training mean and spread (``mean_``, ``scale_``; a
    spread is floored at 0.1 × the mean spread, as ``boltzkit train --visible gaussian``
    does), and z = (x − mean_)/scale_ is modelled with unit-variance Gaussian visible units:
    E(z, h) = ½‖z − b‖² − cᵀh − zᵀWh.  ``log_likelihood`` returns the density of x itself
    (log p(z) − Σ log scale_).  ``gibbs`` returns samples in the units of X.

    Same parameters as :class:`BernoulliRBM` except ``learning_rate=0.01`` (real-valued
    visible units need a rate 10–100× smaller: Hinton's guide §13.2).
    """

    _visible_kind = "gaussian"

    def __init__(self, n_components: int = 256, *, learning_rate: float = 0.01, batch_size: int = 10,
                 n_iter: int = 10, verbose: int = 0, random_state: Any = None, method: str = "pcd",
                 k: int = 1, n_chains: int | None = None, centered: bool = False, momentum: float = 0.0,
                 weight_decay: float = 0.0, lr_schedule: str = "constant", init_visible_bias: bool = False,
                 device: str = "cpu") -> None:
        super().__init__(n_components, learning_rate=learning_rate, batch_size=batch_size, n_iter=n_iter,
                         verbose=verbose, random_state=random_state, method=method, k=k, n_chains=n_chains,
                         centered=centered, momentum=momentum, weight_decay=weight_decay,
                         lr_schedule=lr_schedule, init_visible_bias=init_visible_bias, device=device)

    def _encode(self, X: Any, reset: bool) -> Any:
        if reset:
            X = validate_data(self, X, dtype=(np.float64, np.float32), reset=True)
            x64 = X.astype(np.float64)
            mean, std = x64.mean(0), x64.std(0)
            std = np.maximum(std, 0.1 * std.mean()) if std.mean() > 0 else np.ones_like(std)
            self.mean_, self.scale_ = mean, std
        else:
            dtype = self._model_dtype if hasattr(self, "model_") else (np.float64, np.float32)
            X = validate_data(self, X, dtype=dtype, reset=False)
        with np.errstate(all="ignore"):
            z = ((X - self.mean_) / self.scale_).astype(X.dtype)
        if not np.isfinite(z).all():
            raise DataError("X cannot be standardised (values overflow after centring and scaling)")
        return z

    def _decode(self, v: np.ndarray) -> np.ndarray:
        return (v * self.scale_ + self.mean_).astype(v.dtype)

    def _log_jacobian(self) -> float:
        return -float(np.log(self.scale_).sum())

    def _checkpoint_top_level(self) -> dict[str, Any]:
        return {"standardise": {"mean": self.mean_.tolist(), "std": self.scale_.tolist()}}

    def _restore_extra(self, info: dict[str, Any], config: dict[str, Any]) -> None:
        stats = config["standardise"]
        self.mean_, self.scale_ = np.asarray(stats["mean"], np.float64), np.asarray(stats["std"], np.float64)


class CategoricalRBM(_RBMEstimator):
    """RBM over categorical X (one column per variable), softmax:K visible units.

    Each variable is one-hot encoded into K columns (row i·K + k of the weight is variable i
    in state k): E(v, h) = −Σ_i b_{i,x_i} − cᵀh − Σ_i W_{i,x_i}ᵀh.

    Parameters
    ----------
    n_categories:
        ``"auto"``: the categories of each column are the sorted distinct values seen by
        ``fit`` (``categories_``; K = the most of any column); an integer K: X holds integer
        codes 0..K−1.
    handle_unknown:
        A value not among a column's categories at ``transform``/``partial_fit``:
        ``"ignore"`` (default) encodes it as an all-zero group, so the variable adds nothing
        to the hidden field (as the collaborative-filtering RBM treats a missing rating);
        ``"error"`` refuses it.  ``log_likelihood`` always refuses it.

    Other parameters as :class:`BernoulliRBM`.
    """

    _visible_kind = "softmax"

    _parameter_constraints: dict = {**_RBMEstimator._parameter_constraints,
                                    "n_categories": [StrOptions({"auto"}), Interval(Integral, 2, None, closed="left")],
                                    "handle_unknown": [StrOptions({"ignore", "error"})]}

    def __init__(self, n_components: int = 256, *, n_categories: Any = "auto", handle_unknown: str = "ignore",
                 learning_rate: float = 0.1, batch_size: int = 10, n_iter: int = 10, verbose: int = 0,
                 random_state: Any = None, method: str = "pcd", k: int = 1, n_chains: int | None = None,
                 centered: bool = False, momentum: float = 0.0, weight_decay: float = 0.0,
                 lr_schedule: str = "constant", init_visible_bias: bool = False, device: str = "cpu") -> None:
        super().__init__(n_components, learning_rate=learning_rate, batch_size=batch_size, n_iter=n_iter,
                         verbose=verbose, random_state=random_state, method=method, k=k, n_chains=n_chains,
                         centered=centered, momentum=momentum, weight_decay=weight_decay,
                         lr_schedule=lr_schedule, init_visible_bias=init_visible_bias, device=device)
        self.n_categories = n_categories
        self.handle_unknown = handle_unknown

    def _visible_spec(self) -> str:
        return f"softmax:{self.n_categories_}"

    def _group_size(self) -> int:
        return self.n_categories_

    def _encode(self, X: Any, reset: bool, unknown: str | None = None) -> np.ndarray:
        X = validate_data(self, X, dtype="numeric", reset=reset)
        if reset:
            if self.n_categories == "auto":
                self.categories_ = [np.unique(column) for column in X.T]
                self.n_categories_ = max(2, max(len(c) for c in self.categories_))
            else:
                codes = np.arange(self.n_categories)
                self.categories_ = [codes.astype(X.dtype) for _ in range(X.shape[1])]
                self.n_categories_ = int(self.n_categories)
        unknown = unknown or ("error" if reset else self.handle_unknown)
        K, (n, m) = self.n_categories_, X.shape
        out = np.zeros((n, m * K), dtype=np.float64)
        for j, categories in enumerate(self.categories_):
            index = np.searchsorted(categories, X[:, j])
            known = (index < len(categories)) & (categories[np.minimum(index, len(categories) - 1)] == X[:, j])
            if unknown == "error" and not known.all():
                row = int(np.flatnonzero(~known)[0])
                raise DataError(f"X has a category not seen in fit ({X[row, j]!r} in row {row}, column {j})"
                                + ("; with n_categories=K, X must hold integer codes 0..K−1"
                                   if self.n_categories != "auto" else ""))
            rows = np.flatnonzero(known)
            out[rows, j * K + index[rows]] = 1.0
        return out

    def _checked_visible(self, X: Any) -> Tensor:
        v = self._tensor(self._encode(X, reset=False, unknown="error"))
        self.model_.check_data(v, "X")
        return v

    def _decode(self, v: np.ndarray) -> np.ndarray:
        """One-hot rows back to the categories (a state beyond a column's categories maps to
        its last category)."""
        K = self.n_categories_
        states = v.reshape(v.shape[0], -1, K).argmax(-1)
        return np.stack([c[np.minimum(states[:, j], len(c) - 1)] for j, c in enumerate(self.categories_)], 1) \
            if len(v) else np.zeros((0, len(self.categories_)))

    def _checkpoint_extra(self) -> dict[str, Any]:
        return {"categories": [c.tolist() for c in self.categories_], "n_categories": int(self.n_categories_),
                "categories_dtype": str(self.categories_[0].dtype)}

    def _restore_extra(self, info: dict[str, Any], config: dict[str, Any]) -> None:
        dtype = np.dtype(info.get("categories_dtype", "float64"))
        if dtype.kind not in "biuf":
            raise CheckpointError(f"categories_dtype must be numeric, got {dtype}")
        self.categories_ = [np.asarray(c, dtype=dtype) for c in info["categories"]]
        self.n_categories_ = int(info["n_categories"])

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.categorical = True
        tags.transformer_tags.preserves_dtype = ["float64"]
        return tags
