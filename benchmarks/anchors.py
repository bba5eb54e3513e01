"""Reference ("anchor") RBM trainers for the binarised-MNIST quality benchmark.

Two third-party implementations are trained with the benchmark settings and
every other knob left at the package's own default:

* scikit-learn's ``BernoulliRBM``            -> :func:`train_sklearn`
* the ``rbms`` package, version 0.5.0          -> :func:`train_rbms`

Both return parameters in boltzkit's convention

    E(v, h) = -b^T v - c^T h - v^T W h,   W of shape (n_visible, n_hidden),

so that boltzkit's exact module scores them on the same footing
(``benchmarks/bench_quality.py``).

``rbms_pcd_updates`` gives rbms's update loop alone, for timing
(``benchmarks/bench_side_by_side.py``).

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
from collections.abc import Callable
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


def rbms_args(n_hidden: int, batch_size: int, num_updates: int, seed: int, device: str,
              dtype: str = "float", lr: float | None = None, num_chains: int | None = None,
              gibbs_steps: int | None = None, filename: str = "unused.h5") -> dict:
    """rbms's own training arguments, parsed by its ``rbms train`` parser, defaults filled in.

    Arguments left as None take rbms's defaults (learning rate 0.01, 2000 chains, 100 sweeps).
    """
    import rbms.parser as rbms_parser
    from rbms.scripts.train_rbm import create_parser

    argv = [
        "-d", "unused.h5",
        "--num_hiddens", str(n_hidden),
        "--batch_size", str(batch_size),
        *(["--learning_rate", repr(float(lr))] if lr is not None else []),
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
    return rbms_parser.set_args_default(args, rbms_parser.default_args)


def _rbms_dataset(arr, name: str, device: str, dtype):
    """All rows of ``arr`` as an rbms ``RBMDataset`` of binary data, unit weights, no labels."""
    from rbms.dataset.dataset_class import RBMDataset

    return RBMDataset(
        data=np.asarray(arr, dtype=np.float32),
        labels=-np.ones(arr.shape[0], dtype=np.int32),
        weights=np.ones(arr.shape[0], dtype=np.float32),
        names=np.arange(arr.shape[0]),
        dataset_name=name,
        is_binary=True,
        device=device,
        dtype=dtype,
    )


def rbms_pcd_updates(x_train, n_hidden: int, batch_size: int, seed: int = 0,
                     num_chains: int | None = None, gibbs_steps: int | None = None,
                     lr: float | None = None, device: str = "cpu",
                     dtype: str = "float") -> tuple[Callable[[int], None], dict]:
    """An rbms (0.5.0) BBRBM in its initial training state, and ``run(m)`` doing ``m`` PCD updates.

    Setup is rbms's: ``init_parameters`` on the data, ``num_chains`` uniform-random chains
    run ``gibbs_steps`` sweeps, ``init_grad``, ``SGD(maximize=True)``.  One update is the body
    of rbms's ``train`` loop: a random minibatch (``torch.randperm``), ``fit_batch_pcd``
    (``gibbs_steps`` sweeps of the persistent chains, centred gradient rescaled to unit norm)
    and ``optimizer.step()`` - without the HDF5 logging and checkpoints ``train`` adds.
    Returns ``(run, args)``, ``args`` being rbms's full argument dict.
    """
    from rbms.map_model import map_model
    from rbms.training.pcd import fit_batch_pcd

    args = rbms_args(n_hidden, batch_size, 1, seed, device, dtype, lr, num_chains, gibbs_steps)
    data = _rbms_dataset(np.asarray(x_train), "x_train", device, args["dtype"])
    torch.manual_seed(seed)
    np.random.seed(seed)
    with torch.no_grad():
        params = map_model["BBRBM"].init_parameters(num_hiddens=args["num_hiddens"], dataset=data,
                                                    device=device, dtype=args["dtype"])
        chains = params.sample_state(chains=params.init_chains(num_samples=args["num_chains"]),
                                     n_steps=args["gibbs_steps"])
    params.init_grad()
    optimizer = torch.optim.SGD(params.parameters(), lr=args["learning_rate"], maximize=True)

    def run(num_updates: int) -> None:
        nonlocal chains
        with torch.no_grad():
            for _ in range(num_updates):
                idx = torch.randperm(len(data))[: args["batch_size"]]
                optimizer.zero_grad(set_to_none=False)
                chains, _ = fit_batch_pcd(batch=(data.data[idx], data.weights[idx]), parallel_chains=chains,
                                          params=params, gibbs_steps=args["gibbs_steps"], beta=args["beta"],
                                          centered=not args["no_center"], lambda_l1=args["L1"],
                                          lambda_l2=args["L2"])
                optimizer.step()
            if device.startswith("cuda"):
                torch.cuda.synchronize()

    return run, args


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
    args = rbms_args(n_hidden, batch_size, num_updates, seed, device, dtype, lr, num_chains, gibbs_steps,
                     filename)
    checkpoints = get_checkpoints(num_updates=args["num_updates"], n_save=args["n_save"],
                                  spacing=args["spacing"])

    train_ds = _rbms_dataset(x, "x_train", device, args["dtype"])
    # rbms never uses the test set during training; passing one stops it from
    # splitting the training data (train_size defaults to 0.6).
    test_ds = _rbms_dataset(x[:1], "unused", device, args["dtype"])

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
