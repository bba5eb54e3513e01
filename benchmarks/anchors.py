"""Reference ("anchor") RBM trainers for the binarised-MNIST quality benchmark.

Two third-party implementations are trained with the benchmark settings and
every other knob left at the package's own default:

* scikit-learn's ``BernoulliRBM``            -> :func:`train_sklearn`
* the ``rbms`` package, version 0.5.0          -> :func:`train_rbms`

Both return parameters in boltzkit's convention

    E(v, h) = -b^T v - c^T h - v^T W h,   W of shape (n_visible, n_hidden),

so that boltzkit's exact module scores them on the same footing
(``benchmarks/bench_quality.py``).

The anchors are imported lazily, inside the functions, so importing this
module needs only numpy and torch.  They are meant to run in a separate
environment (see ``requirements-bench.txt``), e.g.::

    /work/anchors-venv/bin/python benchmarks/bench_quality.py

"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

MNIST_DIR = Path(os.environ.get("BOLTZKIT_MNIST_DIR", "/work/shared/data/binarized-mnist"))


def load_binarized_mnist(split: str, data_dir: str | os.PathLike | None = None) -> np.ndarray:
    """Return the binarised MNIST ``split`` ("train", "valid", "test") as uint8 (N, 784)."""
    from scipy.io import loadmat

    root = Path(data_dir) if data_dir is not None else MNIST_DIR
    x = loadmat(str(root / f"binarized_mnist_{split}.mat"))["X"]
    return np.ascontiguousarray(x, dtype=np.uint8)


# ---------------------------------------------------------------------------
# exact log-likelihood (stand-in; to be replaced by boltzkit's exact module)
# ---------------------------------------------------------------------------


def train_sklearn(x_train, n_hidden: int = 20, epochs: int = 20, batch_size: int = 100,
                  lr: float = 0.05, seed: int = 0) -> dict:
    """Train ``sklearn.neural_network.BernoulliRBM`` with its own defaults otherwise."""
    import sklearn
    from sklearn.neural_network import BernoulliRBM

    x = np.asarray(x_train, dtype=np.float64)
    model = BernoulliRBM(n_components=n_hidden, learning_rate=lr, batch_size=batch_size,
                         n_iter=epochs, random_state=seed)
    t0 = time.perf_counter()
    model.fit(x)
    seconds = time.perf_counter() - t0
    notes = (
        f"scikit-learn {sklearn.__version__} BernoulliRBM: PCD-1 (SML) with batch_size={batch_size} "
        "persistent chains kept as hidden states (initialised to h=0); negative phase samples v from "
        "the stored h, uses P(h|v) means in the update, then re-samples h; "
        "W ~ N(0, 0.01^2), visible and hidden biases 0; plain SGD on the batch-mean gradient, "
        "no momentum, no weight decay, constant learning rate; minibatches are fixed contiguous "
        "slices of x_train in the given order (no shuffling); float64."
    )
    return {
        "weight": np.array(model.components_.T, dtype=np.float64),
        "visible_bias": np.array(model.intercept_visible_, dtype=np.float64),
        "hidden_bias": np.array(model.intercept_hidden_, dtype=np.float64),
        "seconds": seconds,
        "notes": notes,
    }


# ---------------------------------------------------------------------------
# rbms 0.5.0
# ---------------------------------------------------------------------------


def train_rbms(x_train, n_hidden: int = 20, epochs: int = 20, batch_size: int = 100,
               lr: float = 0.05, seed: int = 0, num_chains: int | None = None,
               gibbs_steps: int | None = None, device: str | None = None,
               dtype: str = "float", workdir: str | os.PathLike | None = None) -> dict:
    """Train a Bernoulli-Bernoulli RBM with ``rbms`` (0.5.0) PCD, through its Python API.

    This mirrors what ``rbms train`` does (same argument parser, so the same
    defaults) except for data loading: the CLI de-duplicates and shuffles the
    rows of its .h5 file, while here all rows of ``x_train`` are used as given.

    ``num_chains`` / ``gibbs_steps`` left as None take rbms's defaults (2000
    persistent chains, 100 Gibbs sweeps per update).  rbms counts gradient
    updates, not epochs: each update draws a fresh random minibatch, and
    ``epochs * ceil(N / batch_size)`` updates are run.

    Cost: with the defaults (2000 chains x 100 sweeps) one update takes about
    1.4 s on a 2-core CPU, i.e. roughly 4 hours for the 10,000 updates of the
    benchmark; use a GPU, or override ``gibbs_steps``/``num_chains`` and say so.
    The reported ``seconds`` include rbms's own per-update HDF5 bookkeeping
    (it reopens its archive every update to log the learning rate, and saves
    50 checkpoints); with 100 chains x 1 sweep that is about 15% of the time.
    """
    import rbms.parser as rbms_parser
    from rbms.dataset.dataset_class import RBMDataset
    from rbms.scripts.train_rbm import create_parser
    from rbms.training.pcd import train
    from rbms.training.utils import get_checkpoints

    try:
        from importlib.metadata import version
        rbms_version = version("rbms")
    except Exception:  # pragma: no cover
        rbms_version = "unknown"

    x = np.asarray(x_train)
    n_samples = x.shape[0]
    num_updates = epochs * math.ceil(n_samples / batch_size)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"

    tmp = tempfile.TemporaryDirectory(dir=workdir)
    filename = str(Path(tmp.name) / "rbms_model.h5")
    argv = [
        "-d", "unused.h5",
        "--num_hiddens", str(n_hidden),
        "--batch_size", str(batch_size),
        "--learning_rate", repr(float(lr)),
        "--num_updates", str(num_updates),
        "--seed", str(seed),
        "--device", device,
        "--dtype", dtype,
        "-o", filename,
    ]
    if num_chains is not None:
        argv += ["--num_chains", str(num_chains)]
    if gibbs_steps is not None:
        argv += ["--gibbs_steps", str(gibbs_steps)]
    args = rbms_parser.match_args_dtype(vars(create_parser().parse_args(argv)))
    args = rbms_parser.set_args_default(args, rbms_parser.default_args)
    checkpoints = get_checkpoints(num_updates=args["num_updates"], n_save=args["n_save"],
                                  spacing=args["spacing"])

    def dataset(arr, name):
        return RBMDataset(
            data=np.asarray(arr, dtype=np.float32),
            labels=-np.ones(arr.shape[0], dtype=np.int32),
            weights=np.ones(arr.shape[0], dtype=np.float32),
            names=np.arange(arr.shape[0]),
            dataset_name=name,
            is_binary=True,
            device=device,
            dtype=args["dtype"],
        )

    train_ds = dataset(x, "x_train")
    # rbms never uses the test set during training; passing one stops it from
    # splitting the training data (train_size defaults to 0.6).
    test_ds = dataset(x[:1], "unused")

    # Silence rbms's progress bar (its setup_training builds a tqdm bar).
    import functools

    import rbms.training.utils as rbms_training_utils

    old_tqdm = rbms_training_utils.tqdm
    rbms_training_utils.tqdm = functools.partial(old_tqdm, disable=True)
    torch.manual_seed(seed)
    np.random.seed(seed)
    try:
        t0 = time.perf_counter()
        train(train_dataset=train_ds, test_dataset=test_ds, model_type="BBRBM", args=args,
              dtype=args["dtype"], checkpoints=checkpoints)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    finally:
        rbms_training_utils.tqdm = old_tqdm

    import h5py

    with h5py.File(filename, "r") as f:
        grp = f[f"update_{args['num_updates']}"]["params"]
        weight = np.array(grp["weight_matrix"][()], dtype=np.float64)  # (n_visible, n_hidden)
        vbias = np.array(grp["vbias"][()], dtype=np.float64)
        hbias = np.array(grp["hbias"][()], dtype=np.float64)
    tmp.cleanup()

    notes = (
        f"rbms {rbms_version} BBRBM, training_type=pcd, {args['num_updates']} updates of a random "
        f"minibatch of {args['batch_size']} (torch.randperm each update), "
        f"num_chains={args['num_chains']} persistent chains (initialised uniform-random v, "
        f"then run {args['gibbs_steps']} sweeps before training), gibbs_steps={args['gibbs_steps']} "
        "full sweeps per update (negative statistics: sampled v, P(h|v) means); centred gradient "
        f"(no_center={args['no_center']}: data means of v and P(h|v) of the minibatch as offsets); "
        "gradient rescaled to unit global L2 norm (all parameters together) every update; "
        "torch.optim.SGD(maximize=True), no momentum, no weight decay, constant lr; "
        f"L1={args['L1']}, L2={args['L2']}, beta={args['beta']}; "
        "init W ~ 1e-4 * N(0,1), visible bias = logit(clamped training pixel means), hidden bias 0; "
        f"dtype={args['dtype']}, device={device}; W stored as (n_visible, n_hidden) with "
        "E = -vbias.v - hbias.h - v W h (same convention as boltzkit)."
    )
    return {"weight": weight, "visible_bias": vbias, "hidden_bias": hbias,
            "seconds": seconds, "notes": notes}
