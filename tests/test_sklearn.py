"""boltzkit.sklearn: scikit-learn's own estimator checks, the drop-in API, and the numbers
(exact log-likelihood against enumeration, pseudo-likelihood against scikit-learn's formula)."""

from __future__ import annotations

import inspect
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn")

from scipy import sparse  # noqa: E402
from sklearn import neural_network  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from boltzkit.errors import CheckpointError, DataError  # noqa: E402
from boltzkit.evaluation import exact  # noqa: E402
from boltzkit.sklearn import BernoulliRBM, CategoricalRBM, GaussianRBM  # noqa: E402

ESTIMATORS = [BernoulliRBM, GaussianRBM, CategoricalRBM]


# Every check scikit-learn has for a transformer, none expected to fail (its own BernoulliRBM
# is allowed to fail check_methods_subset_invariance and check_methods_sample_order_invariance
# because its score_samples is random; ours is not).  The one skip is scikit-learn's own:
# check_array_api_input runs only under SCIPY_ARRAY_API=1, so test_array_api_checks runs it in
# a fresh interpreter with that setting.
# The instances are the defaults with fewer hidden units and iterations, as scikit-learn's own
# test of its BernoulliRBM does (n_iter=5), to keep the ~50 checks per estimator fast.
@parametrize_with_checks([cls(n_components=16, n_iter=5) for cls in ESTIMATORS])
def test_sklearn_compatible(estimator, check):
    if "check_array_api_input" in str(check) and os.environ.get("SCIPY_ARRAY_API") != "1":
        pytest.skip("scikit-learn runs this check only under SCIPY_ARRAY_API=1: see test_array_api_checks")
    check(estimator)


def test_array_api_checks():
    """scikit-learn skips check_array_api_input unless SCIPY_ARRAY_API=1 is set before scipy is
    imported, so it runs here in a fresh interpreter with that setting."""
    code = ("from sklearn.utils.estimator_checks import check_array_api_input\n"
            "from boltzkit.sklearn import BernoulliRBM, CategoricalRBM, GaussianRBM\n"
            "for cls in (BernoulliRBM, GaussianRBM, CategoricalRBM):\n"
            "    check_array_api_input(cls.__name__, cls(n_components=16, n_iter=5), 'numpy',"
            " expect_only_array_outputs=False)\n"
            "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "SCIPY_ARRAY_API": "1", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def _binary(n=200, d=8, seed=0, dtype=np.float64):
    rng = np.random.RandomState(seed)
    prototypes = rng.rand(3, d) > 0.5
    rows = prototypes[rng.randint(3, size=n)] ^ (rng.rand(n, d) < 0.1)
    return rows.astype(dtype)


def test_drop_in_signature_matches_scikit_learn():
    ours = inspect.signature(BernoulliRBM).parameters
    theirs = inspect.signature(neural_network.BernoulliRBM).parameters
    for name, parameter in theirs.items():
        assert name in ours, name
        assert ours[name].default == parameter.default, name
        assert ours[name].kind == parameter.kind, name
    X = _binary()
    mine = BernoulliRBM(n_components=4, random_state=0).fit(X)
    sk = neural_network.BernoulliRBM(n_components=4, random_state=0).fit(X)
    for attribute in ("components_", "intercept_hidden_", "intercept_visible_", "h_samples_", "n_features_in_"):
        assert np.shape(getattr(mine, attribute)) == np.shape(getattr(sk, attribute)), attribute
    for method in ("transform", "score_samples", "gibbs"):
        assert getattr(mine, method)(X).shape == getattr(sk, method)(X).shape, method
    assert list(mine.get_feature_names_out()) == list(sk.get_feature_names_out())
    fresh = neural_network.BernoulliRBM(n_components=4, random_state=0)
    fresh.partial_fit(X[:10])     # scikit-learn's partial_fit returns None; ours returns self
    assert BernoulliRBM(n_components=4, random_state=0).partial_fit(X[:10]).components_.shape == fresh.components_.shape


def test_learns_what_scikit_learn_learns():
    """Same algorithm (PCD-1, SGD, constant rate): on data with 3 prototypes both models reach the
    same exact log-likelihood (−4.24 nats over 3 seeds, spread < 0.002), far above the untrained
    model (−6.93) and above one iteration (≈ −5.5)."""
    X = _binary(600, 10)
    settings = dict(n_components=6, n_iter=20, learning_rate=0.01, random_state=0)
    mine = BernoulliRBM(**settings).fit(X)
    sk = neural_network.BernoulliRBM(**settings).fit(X)
    assert mine._trainer.epoch == 20
    # scikit-learn's parameters scored by our exact log-likelihood (same parametrisation)
    theirs = BernoulliRBM(**{**settings, "n_iter": 0}).fit(X)
    theirs.components_, theirs.intercept_hidden_, theirs.intercept_visible_ = (
        sk.components_, sk.intercept_hidden_, sk.intercept_visible_)
    untrained = BernoulliRBM(**{**settings, "n_iter": 0}).fit(X)
    one = BernoulliRBM(**{**settings, "n_iter": 1}).fit(X)
    ll = {name: float(m.log_likelihood(X).mean()) for name, m in
          (("mine", mine), ("sklearn", theirs), ("untrained", untrained), ("one", one))}
    assert ll["untrained"] < -6.9   # 10 bits at p = 1/2: −6.93 nats
    assert ll["mine"] > ll["one"] + 1.0 and ll["sklearn"] > ll["one"] + 1.0, ll
    assert abs(ll["mine"] - ll["sklearn"]) < 0.05, ll


def test_score_samples_is_scikit_learns_pseudo_likelihood_averaged_over_sites():
    """scikit-learn's score flips one random site i: n·log σ(F(ṽ_i) − F(v)); ours is the sum over
    all sites, i.e. its mean over i.  Computed here from scikit-learn's own free energy."""
    X = _binary(20, 6)
    rbm = BernoulliRBM(n_components=3, n_iter=3, random_state=0).fit(X)
    sk = neural_network.BernoulliRBM(n_components=3)
    sk.components_, sk.intercept_hidden_, sk.intercept_visible_ = (
        rbm.components_.copy(), rbm.intercept_hidden_.copy(), rbm.intercept_visible_.copy())
    fe = sk._free_energy(X)
    expected = np.zeros(len(X))
    for i in range(X.shape[1]):
        flipped = X.copy()
        flipped[:, i] = 1 - flipped[:, i]
        expected += -np.logaddexp(0, -(sk._free_energy(flipped) - fe))
    np.testing.assert_allclose(rbm.score_samples(X), expected, rtol=1e-10)


def test_log_likelihood_exact_matches_enumeration_and_ais_brackets_it():
    X = _binary(300, 12)
    rbm = BernoulliRBM(n_components=5, n_iter=10, random_state=0).fit(X)
    per_row = rbm.log_likelihood(X)
    assert per_row.shape == (300,) and per_row.dtype == np.float64
    assert per_row.mean() == pytest.approx(exact.log_likelihood(rbm.model_, torch.from_numpy(X)), abs=1e-9)
    assert rbm.log_partition("exact").method == "exact"
    # AIS: the exact log Z lies inside the ±3 s.e. interval (a fixed seed; the interval is
    # that of mean(w), so a failure here means the estimate is off by > 3 standard errors)
    estimate = rbm.log_partition("ais", X=X, n_chains=200, n_betas=1000, random_state=0)
    log_z = exact.log_partition(rbm.model_)
    assert estimate.low <= log_z <= estimate.high and estimate.high - estimate.low < 0.1
    ais_rows = rbm.log_likelihood(X, "ais", n_chains=200, n_betas=1000, random_state=0)
    np.testing.assert_allclose(ais_rows - per_row, log_z - estimate.log_z, atol=1e-9)
    with pytest.raises(DataError, match="0/1"):
        rbm.log_likelihood(X * 0.5)   # probabilities are data for training, not for log p(v)


def test_gaussian_log_likelihood_is_the_density_of_x():
    """log p(x) from the standardised model + Jacobian integrates to 1 in 1-D (quadrature)."""
    rng = np.random.RandomState(0)
    X = np.concatenate([rng.normal(-2, 0.5, 200), rng.normal(3, 1.0, 200)])[:, None] * 10
    rbm = GaussianRBM(n_components=3, n_iter=20, learning_rate=0.05, random_state=0).fit(X)
    grid = np.linspace(X.min() - 60, X.max() + 60, 20001)[:, None]
    density = np.exp(rbm.log_likelihood(grid))
    assert np.trapezoid(density[:, 0] if density.ndim > 1 else density, grid[:, 0]) == pytest.approx(1.0, abs=1e-4)
    samples = rbm.gibbs(X[:5])
    assert samples.shape == (5, 1) and np.abs(samples).max() < 200   # in the units of X


def test_categorical_codes_and_exact_log_likelihood():
    rng = np.random.RandomState(0)
    codes = rng.randint(0, 3, size=(200, 4))
    codes[:, 1] = codes[:, 0]                                   # a dependency to learn
    rbm = CategoricalRBM(n_components=4, n_iter=50, random_state=0).fit(codes)
    assert rbm.n_categories_ == 3 and rbm.components_.shape == (4, 12)
    one_hot = torch.from_numpy(np.eye(3)[codes].reshape(200, -1))
    assert rbm.log_likelihood(codes).mean() == pytest.approx(exact.log_likelihood(rbm.model_, one_hot), abs=1e-9)
    # independent uniform codes: 4 log(1/3) = −4.39 nats; a perfect copy: 3 log(1/3) = −3.30
    assert rbm.log_likelihood(codes).mean() > 4 * np.log(1 / 3) + 0.6
    unseen = codes[:2].copy()
    unseen[0, 2] = 7
    assert rbm.transform(unseen).shape == (2, 4)                 # handle_unknown="ignore"
    with pytest.raises(DataError, match="not seen in fit"):
        rbm.log_likelihood(unseen)
    with pytest.raises(DataError, match="not seen in fit"):
        clone(rbm).set_params(handle_unknown="error").fit(codes).transform(unseen)
    with pytest.raises(DataError, match="integer codes"):
        CategoricalRBM(n_categories=3, n_iter=1).fit(codes + 1)
    assert set(np.unique(rbm.gibbs(codes[:10]))) <= {0, 1, 2}


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_dtype_preserved_like_scikit_learn(dtype):
    X = _binary(50, 6).astype(dtype)
    rbm = BernoulliRBM(n_components=3, n_iter=2, random_state=0).fit(X)
    expected = np.float32 if dtype == np.float32 else np.float64
    assert rbm.components_.dtype == expected and rbm.transform(X).dtype == expected
    assert rbm.model_.weight.dtype == (torch.float32 if dtype == np.float32 else torch.float64)


def test_sparse_input_equals_dense():
    X = _binary(60, 7)
    dense = BernoulliRBM(n_components=3, n_iter=3, random_state=0).fit(X)
    for form in (sparse.csr_matrix, sparse.csc_matrix, sparse.csr_array):
        fitted = BernoulliRBM(n_components=3, n_iter=3, random_state=0).fit(form(X))
        np.testing.assert_allclose(fitted.components_, dense.components_, atol=1e-12)
        np.testing.assert_allclose(fitted.transform(form(X)), dense.transform(X), atol=1e-12)
        np.testing.assert_allclose(fitted.score_samples(form(X)), dense.score_samples(X), atol=1e-10)


def test_partial_fit_continues_and_fit_is_reproducible():
    X = _binary(100, 6)
    a = BernoulliRBM(n_components=3, random_state=0, batch_size=20)
    for chunk in np.array_split(X, 5):
        a.partial_fit(chunk)
    assert a._trainer.epoch == 5 and a.h_samples_.shape == (20, 3)
    b = BernoulliRBM(n_components=3, n_iter=2, random_state=0, momentum=0.5, lr_schedule="linear").fit(X)
    c = clone(b).fit(X)
    np.testing.assert_array_equal(b.components_, c.components_)
    b.partial_fit(X[:20])     # after a linear schedule: continues at the constant rate
    assert not np.array_equal(b.components_, c.components_)
    assert not hasattr(BernoulliRBM(method="cd", n_iter=1).fit(X), "h_samples_")


def test_boltzkit_options_reach_the_trainer():
    X = _binary(80, 6)
    rbm = BernoulliRBM(n_components=3, n_iter=2, method="pt", k=2, n_chains=7, centered=True, momentum=0.5,
                       weight_decay=1e-3, init_visible_bias=True, random_state=0).fit(X)
    config = rbm._trainer.config
    assert (config.method, config.k, config.n_chains, config.centered, config.weight_decay) == ("pt", 2, 7, True, 1e-3)
    assert rbm._trainer.estimator.centering is not None and rbm.h_samples_.shape == (7, 3)
    with pytest.raises(ValueError, match="method"):
        BernoulliRBM(method="bogus").fit(X)
    with pytest.raises(ValueError, match="device"):
        BernoulliRBM(device="nonsense", n_iter=1).fit(X)


def test_verbose_output_like_scikit_learn(capsys):
    BernoulliRBM(n_components=3, n_iter=2, verbose=1, random_state=0).fit(_binary(30, 5))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].startswith("[BernoulliRBM] Iteration 2, pseudo-likelihood = ")


def test_pipeline_grid_search_and_persistence(tmp_path):
    from boltzkit.data import load_default

    x, labels = load_default()
    rows = np.random.RandomState(0).permutation(len(x))[:300]   # the digits are sorted by label
    X, y = x[rows].astype(np.float64), labels[rows]
    pipe = Pipeline([("rbm", BernoulliRBM(n_components=64, n_iter=10, random_state=0)),
                     ("clf", LogisticRegression(max_iter=500, C=10))])
    search = GridSearchCV(pipe, {"rbm__learning_rate": [1e-4, 0.06]}, cv=2).fit(X, y)
    # 150 updates at 1e-4 leave the features untrained (≈ chance, 0.1); at 0.06 they separate digits
    assert search.best_params_["rbm__learning_rate"] == 0.06 and search.best_score_ > 0.5
    rbm = search.best_estimator_.named_steps["rbm"]
    again = pickle.loads(pickle.dumps(rbm))
    np.testing.assert_array_equal(again.transform(X), rbm.transform(X))
    again.partial_fit(X[:20])                                   # a pickled estimator keeps training
    real, codes = X[:, 300:310], y[:, None] % 4
    for cls, fitted, data in ((BernoulliRBM, rbm, X),
                              (GaussianRBM, GaussianRBM(n_components=3, n_iter=1, random_state=0).fit(real), real),
                              (CategoricalRBM, CategoricalRBM(n_components=3, n_iter=1).fit(codes), codes)):
        fitted.save(tmp_path / cls.__name__)
        loaded = cls.load(tmp_path / cls.__name__)
        np.testing.assert_array_equal(loaded.transform(data), fitted.transform(data))
        assert loaded.get_params() == fitted.get_params()
    with pytest.raises(CheckpointError, match="no GaussianRBM"):
        GaussianRBM.load(tmp_path / "BernoulliRBM")


def test_missing_scikit_learn_gives_one_line(monkeypatch):
    import builtins
    import importlib
    import sys

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "sklearn" or name.startswith("sklearn."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.delitem(sys.modules, "boltzkit.sklearn")
    with pytest.raises(ImportError, match=r"pip install 'boltzkit\[sklearn\]'"):
        importlib.import_module("boltzkit.sklearn")
    monkeypatch.undo()
    importlib.import_module("boltzkit.sklearn")
