"""Deep models on MNIST: test log-likelihood of a 2-layer DBN and a 2-layer DBM in nats, and
the test error of a fine-tuned DBN classifier, next to the published figures.

Density: the standard binarised MNIST (Murray & Salakhutdinov 2009 binarisation; 50,000
training and 10,000 test rows from ../shared/data/binarized-mnist).  Reported:

- DBN 784–h1–h2: greedy PCD-1 (centered) per layer, then the Salakhutdinov & Murray (2008)
  lower bound with AIS on the top RBM (forward and reverse AIS for log Z);
- DBM 784–h1–h2: greedy pre-training (doubled first/last RBM), centered PCD-1 with
  mean-field positive phase, then AIS over the even layers (odd layers summed out), forward
  and reverse, with the mean-field bound per test case — the quantity of the DBM paper.
  Published: −84.62 nats (2-layer DBM 500–1000, Salakhutdinov & Hinton 2009); boltzkit's
  500-hidden RBM: −86.48 (BENCHMARKS.md, §3).

Classification: the raw MNIST idx files (60,000 / 10,000 with labels, ../shared/data/mnist),
pixels scaled to [0, 1] and thresholded at 0.5; a DBN 784–h–h pre-trained greedily and
fine-tuned by back-propagation with a softmax head (published ≈ 1.2 % for a fine-tuned DBN,
Hinton, Osindero & Teh 2006; 0.95 % for a fine-tuned DBM), next to scikit-learn's
LogisticRegression on the raw pixels and on the first RBM's features.

The run is bounded for a shared 2-core CPU (one thread): hidden sizes, epochs and the AIS
schedule are flags, and the defaults are far below the published training budgets (the DBM
paper trains for hundreds of epochs), so the published bars are not expected to be reached
at the defaults.  The command that reproduces a run is printed with its results::

    OMP_NUM_THREADS=1 python benchmarks/bench_deep.py --out benchmarks/results/deep.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from boltzkit.data import load_mat
from boltzkit.evaluation import deep
from boltzkit.models.dbn import DBN
from boltzkit.models.deep_boltzmann import DBM
from boltzkit.training import TrainingConfig

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PUBLISHED = {"dbm_2layer_nats": -84.62, "dbm_3layer_nats": -85.10, "boltzkit_rbm500_nats": -86.48,
             "dbn_finetuned_error": 0.012, "dbm_finetuned_error": 0.0095}


def idx(path: Path, offset: int) -> np.ndarray:
    return np.frombuffer(gzip.open(path).read(), np.uint8, offset=offset)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def grey_originals(binary: np.ndarray, chunk: int = 5000) -> tuple[np.ndarray, dict]:
    """The grey-level MNIST training image behind each fixed binary digit.

    The binarised set is one Bernoulli draw of every MNIST training image, shuffled: each
    binary row is matched to the grey image p that gives it the highest likelihood
    Σ v log p + (1 − v) log(1 − p) (p clipped to [10⁻⁴, 1 − 10⁻⁴]).  Returns the images
    (float32 in [0, 1]) and the match's statistics (the margin to the second-best image).
    """
    grey = torch.from_numpy(idx(DATA / "mnist" / "train-images-idx3-ubyte.gz", 16).reshape(-1, 784)
                            .astype(np.float32) / 255.0)
    clipped = grey.clamp(1e-4, 1 - 1e-4)
    log_on, log_off = clipped.log().t().contiguous(), torch.log1p(-clipped).t().contiguous()
    gain, base = log_on - log_off, log_off.sum(0)
    best, margin = [], []
    for start in range(0, binary.shape[0], chunk):
        scores = torch.from_numpy(binary[start:start + chunk]) @ gain + base
        top = scores.topk(2, dim=1)
        best.append(top.indices[:, 0])
        margin.append(top.values[:, 0] - top.values[:, 1])
    rows, gaps = torch.cat(best), torch.cat(margin)
    stats = {"distinct_images": int(rows.unique().numel()), "rows": int(rows.numel()),
             "median_margin_nats": float(gaps.median()), "min_margin_nats": float(gaps.min())}
    return grey[rows].numpy(), stats


def density(a: argparse.Namespace, results: dict) -> None:
    train_np = load_mat(DATA / "binarized-mnist" / "binarized_mnist_train.mat").astype(np.float32)
    test = torch.from_numpy(load_mat(DATA / "binarized-mnist" / "binarized_mnist_test.mat").astype(np.float32))
    train_np = train_np[:a.train_rows] if a.train_rows else train_np
    if a.with_valid:  # the DBM paper trained on all 60,000 MNIST training digits
        valid = load_mat(DATA / "binarized-mnist" / "binarized_mnist_valid.mat").astype(np.float32)
        train_np = np.concatenate([train_np, valid])
    if a.resample:  # the same digits as grey levels, drawn afresh in every batch (TrainingConfig.sample_data)
        train_np, results["grey_match"] = grey_originals(train_np)
        print(f"grey originals: {results['grey_match']}", flush=True)
    train = torch.from_numpy(train_np)
    hidden = [int(n) for n in a.hidden.split(",")]
    cfg = TrainingConfig(epochs=a.rbm_epochs, batch_size=100, lr=0.05, centered=True, seed=0, precision=a.precision,
                         sample_data=a.resample)

    if "dbn" in a.models:
        dbn = DBN([784, *hidden], seed=0)
        _, seconds = timed(dbn.fit, train, cfg, propagate=a.dbn_propagate)
        forward, s_f = timed(deep.evaluate, dbn, test, "ais", a.chains, a.betas, 0, a.samples)
        reverse, s_r = timed(deep.evaluate, dbn, test, "raise", a.chains, a.betas, 1, a.samples)
        results["dbn"] = {"sizes": dbn.sizes, "train_seconds": seconds, "epochs_per_layer": a.rbm_epochs,
                          "propagate": a.dbn_propagate, "precision": a.precision, "resample": a.resample,
                          "ais": forward,
                          "reverse_ais": reverse, "ais_seconds": s_f + s_r}
        print(f"DBN {dbn.sizes}: bound {forward['log_likelihood']:.2f} nats "
              f"[{forward['log_likelihood_interval'][0]:.2f}, {forward['log_likelihood_interval'][1]:.2f}]; "
              f"reverse {reverse['log_likelihood']:.2f}; trained in {seconds:.0f} s", flush=True)

    if "dbm" in a.models:
        if a.init_from:  # continue from a saved DBM (its weights; fresh chains, optimizer and schedule)
            from boltzkit import checkpoint

            dbm, pre_seconds = checkpoint.load(a.init_from), 0.0
            if not isinstance(dbm, DBM) or dbm.sizes != [784, *hidden]:
                raise SystemExit(f"--init-from {a.init_from}: not a DBM of sizes {[784, *hidden]} (--hidden)")
            dbm.mean_field_steps = a.mean_field_steps
        else:
            dbm = DBM(784, hidden, mean_field_steps=a.mean_field_steps, seed=0)
            _, pre_seconds = timed(dbm.pretrain, train, TrainingConfig(epochs=a.pretrain_epochs, batch_size=100,
                                                                       lr=0.05, centered=True, seed=0,
                                                                       precision=a.precision,
                                                                       sample_data=a.resample),
                                   progress=a.progress)
        from boltzkit.training import Trainer
        trainer = Trainer(dbm, TrainingConfig(epochs=a.dbm_epochs, batch_size=100, lr=a.dbm_lr, centered=True,
                                              seed=0, init_visible_bias=False, k=a.dbm_k,
                                              momentum=a.dbm_momentum, initial_momentum=0.5,
                                              weight_decay=a.dbm_weight_decay,
                                              momentum_epochs=5 if a.dbm_momentum != 0.5 else 0,
                                              precision=a.precision, sample_data=a.resample),
                          progress=a.progress)
        _, seconds = timed(trainer.fit, train)
        if a.save:  # the command line's checkpoint of a run, resumable with train --resume
            from boltzkit.cli.common import save_run

            save_run(Path(a.save), trainer, {"training": trainer.config.to_dict()})
        forward, s_f = timed(deep.evaluate, dbm, test, "ais", a.chains, a.betas, 0)
        reverse, s_r = timed(deep.evaluate, dbm, test, "raise", a.chains, a.betas, 1)
        results["dbm"] = {"sizes": dbm.sizes, "pretrain_seconds": pre_seconds, "train_seconds": seconds,
                          "pretrain_epochs_per_rbm": 0 if a.init_from else a.pretrain_epochs,
                          "pcd_epochs": a.dbm_epochs,
                          "mean_field_steps": a.mean_field_steps, "lr": a.dbm_lr, "k": a.dbm_k,
                          "momentum": a.dbm_momentum, "weight_decay": a.dbm_weight_decay,
                          "train_rows": train.shape[0], "resample": a.resample,
                          "init_from": a.init_from, "precision": a.precision,
                          "ais": forward,
                          "reverse_ais": reverse, "ais_seconds": s_f + s_r}
        print(f"DBM {dbm.sizes}: bound {forward['log_likelihood']:.2f} nats "
              f"[{forward['log_likelihood_interval'][0]:.2f}, {forward['log_likelihood_interval'][1]:.2f}]; "
              f"reverse {reverse['log_likelihood']:.2f}; trained in {pre_seconds + seconds:.0f} s", flush=True)


def classification(a: argparse.Namespace, results: dict) -> None:
    from sklearn.linear_model import LogisticRegression

    mnist = DATA / "mnist"
    x_train = (idx(mnist / "train-images-idx3-ubyte.gz", 16).reshape(-1, 784) > 127).astype(np.float32)
    y_train = idx(mnist / "train-labels-idx1-ubyte.gz", 8).astype(np.int64)
    x_test = (idx(mnist / "t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784) > 127).astype(np.float32)
    y_test = idx(mnist / "t10k-labels-idx1-ubyte.gz", 8).astype(np.int64)
    if a.train_rows:
        x_train, y_train = x_train[:a.train_rows], y_train[:a.train_rows]
    sizes = [784, *[int(n) for n in a.class_hidden.split(",")]]
    dbn = DBN(sizes, seed=1)
    xt = torch.from_numpy(x_train)
    _, pre = timed(dbn.fit, xt, TrainingConfig(epochs=a.class_pretrain_epochs, batch_size=100, lr=0.05,
                                               centered=True, seed=1))
    net = dbn.network(10, seed=1)
    _, tune = timed(net.fit, xt, torch.from_numpy(y_train),
                    TrainingConfig(epochs=a.finetune_epochs, batch_size=100, lr=0.1, momentum=0.9,
                                   weight_decay=1e-5, seed=1))
    error = float((net.predict(torch.from_numpy(x_test)).numpy() != y_test).mean())
    out = {"dbn_sizes": sizes, "pretrain_epochs_per_layer": a.class_pretrain_epochs,
           "finetune_epochs": a.finetune_epochs, "pretrain_seconds": pre, "finetune_seconds": tune,
           "dbn_finetuned_test_error": error}
    print(f"fine-tuned DBN {sizes}: test error {100 * error:.2f} % (pre-training {pre:.0f} s, "
          f"fine-tuning {tune:.0f} s)", flush=True)
    clf, s = timed(LogisticRegression(max_iter=a.logreg_iter).fit, x_train, y_train)
    out["logreg_raw_test_error"] = float((clf.predict(x_test) != y_test).mean())
    out["logreg_raw_seconds"] = s
    print(f"LogisticRegression, raw pixels: {100 * out['logreg_raw_test_error']:.2f} %", flush=True)
    results["classification"] = out


def rbm_feature_logreg(a: argparse.Namespace, results: dict) -> None:
    """LogisticRegression on the hidden means of a single RBM (784–h) trained like a DBN layer."""
    from sklearn.linear_model import LogisticRegression

    mnist = DATA / "mnist"
    x_train = (idx(mnist / "train-images-idx3-ubyte.gz", 16).reshape(-1, 784) > 127).astype(np.float32)
    y_train = idx(mnist / "train-labels-idx1-ubyte.gz", 8).astype(np.int64)
    x_test = (idx(mnist / "t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784) > 127).astype(np.float32)
    y_test = idx(mnist / "t10k-labels-idx1-ubyte.gz", 8).astype(np.int64)
    if a.train_rows:
        x_train, y_train = x_train[:a.train_rows], y_train[:a.train_rows]
    h = int(a.class_hidden.split(",")[0])
    dbn = DBN([784, h], seed=1)
    dbn.fit(torch.from_numpy(x_train), TrainingConfig(epochs=a.class_pretrain_epochs, batch_size=100, lr=0.05,
                                                      centered=True, seed=1))
    f_train = dbn.transform(torch.from_numpy(x_train)).numpy()
    f_test = dbn.transform(torch.from_numpy(x_test)).numpy()
    clf, s = timed(LogisticRegression(max_iter=a.logreg_iter).fit, f_train, y_train)
    error = float((clf.predict(f_test) != y_test).mean())
    results.setdefault("classification", {}).update(logreg_rbm_features_test_error=error, logreg_rbm_hidden=h,
                                                    logreg_rbm_seconds=s)
    print(f"LogisticRegression, {h} RBM features: {100 * error:.2f} %", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="dbn,dbm,classify", help="what to run (default: dbn,dbm,classify)")
    p.add_argument("--hidden", default="500,1000", help="hidden sizes of the density DBN and DBM (default 500,1000)")
    p.add_argument("--rbm-epochs", type=int, default=5, help="epochs per DBN layer (default 5)")
    p.add_argument("--pretrain-epochs", type=int, default=3, help="epochs per DBM pre-training RBM (default 3)")
    p.add_argument("--dbm-epochs", type=int, default=5, help="DBM PCD epochs (default 5)")
    p.add_argument("--dbm-lr", type=float, default=0.01, help="DBM learning rate (default 0.01)")
    p.add_argument("--dbm-k", type=int, default=1,
                   help="Gibbs sweeps of the DBM's persistent chains per update (default 1)")
    p.add_argument("--dbm-momentum", type=float, default=0.5,
                   help="DBM momentum (default 0.5; another value is reached after 5 epochs at 0.5)")
    p.add_argument("--dbm-weight-decay", type=float, default=1e-4,
                   help="L2 penalty on the DBM's weights during PCD training (default 1e-4, TrainingConfig's)")
    p.add_argument("--dbn-propagate", default="mean", choices=("mean", "sample"),
                   help="what each DBN layer trains on: the hidden means of the layer below (default) or "
                        "binary samples of them (the states the DBN's bound scores)")
    p.add_argument("--precision", default="float32", choices=("float32", "tf32"),
                   help="training precision of the DBN's RBMs and the DBM (tf32: bf16 products on AMX CPUs, "
                        "≈ 2× faster DBM epochs here; evaluation stays float32)")
    p.add_argument("--init-from", default=None, metavar="DIR",
                   help="start the DBM from this checkpoint instead of pre-training (fresh chains and schedule)")
    p.add_argument("--mean-field-steps", type=int, default=5, help="DBM mean-field sweeps (default 5)")
    p.add_argument("--chains", type=int, default=100, help="AIS chains (default 100)")
    p.add_argument("--betas", type=int, default=5000, help="AIS β values (default 5000)")
    p.add_argument("--samples", type=int, default=5, help="draws from Q per case for the DBN bound (default 5)")
    p.add_argument("--class-hidden", default="500,500", help="hidden sizes of the classifier DBN (default 500,500)")
    p.add_argument("--class-pretrain-epochs", type=int, default=2, help="epochs per classifier layer (default 2)")
    p.add_argument("--finetune-epochs", type=int, default=10, help="fine-tuning epochs (default 10)")
    p.add_argument("--logreg-iter", type=int, default=200, help="LogisticRegression max_iter (default 200)")
    p.add_argument("--train-rows", type=int, default=None, help="use only the first N training rows (default all)")
    p.add_argument("--with-valid", action="store_true",
                   help="train the DBN/DBM on the 50,000 training rows and the 10,000 validation rows (60,000 "
                        "as in the DBM paper; the test rows stay held out)")
    p.add_argument("--resample", action="store_true",
                   help="train the DBN/DBM on the grey-level originals of the same training digits, drawing a "
                        "fresh binary sample of every batch (dynamic binarisation, TrainingConfig.sample_data; as "
                        "in the DBM paper's code); the test digits stay the fixed binary ones")
    p.add_argument("--progress", action="store_true", help="show the trainer's progress bars (on stderr)")
    p.add_argument("--save", default=None, metavar="DIR",
                   help="write the trained DBM (with its training state) to this checkpoint directory")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    a = p.parse_args(argv)
    a.models = a.models.split(",")
    if not DATA.is_dir():
        print(f"{DATA} not found; the benchmark needs ../shared/data", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    command = ("OMP_NUM_THREADS=1 python benchmarks/bench_deep.py "
               + " ".join(shlex.quote(x) for x in (argv or sys.argv[1:])))
    results: dict = {"command": command, "threads": torch.get_num_threads(), "published": PUBLISHED}
    start = time.perf_counter()
    if "dbn" in a.models or "dbm" in a.models:
        density(a, results)
    if "classify" in a.models:
        classification(a, results)
        rbm_feature_logreg(a, results)
    results["total_seconds"] = time.perf_counter() - start
    print(f"total {results['total_seconds']:.0f} s on {results['threads']} thread(s)\nreproduce: {command}")
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
