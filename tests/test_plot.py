"""Pictures that explain themselves: shared colour scales, labelled axes with units, PNGs."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from boltzkit import plot
from boltzkit.errors import ConfigurationError, DataError
from boltzkit.evaluation.gradient_quality import gradient_quality_figure, gradient_quality_rows, plot_gradient_quality

PNG = b"\x89PNG\r\n\x1a\n"


def is_png(path) -> bool:
    from matplotlib.image import imread

    return path.read_bytes()[:8] == PNG and imread(path).ndim == 3


def weight(n_visible: int = 16, n_hidden: int = 5, seed: int = 0) -> np.ndarray:
    """Columns on very different scales, so per-tile scaling and a shared scale differ."""
    w = np.random.default_rng(seed).normal(size=(n_visible, n_hidden))
    return w * (10.0 ** np.arange(n_hidden))[None, :] / 10 ** (n_hidden - 1)


def history(epochs: int = 3) -> list[dict[str, float]]:
    rows = []
    for e in range(1, epochs + 1):
        rows.append({"epoch": e, "lr": 0.1, "seconds": 2.0, "cd_steps": 1,
                     "reconstruction_error": 0.1 / e, "log_likelihood": -200.0 + e,
                     "valid_log_likelihood": -210.0 + e, "ais_log_likelihood": -205.0 + e,
                     "ais_log_likelihood_low": -207.0 + e, "ais_log_likelihood_high": -204.0 + e})
    return rows


def panels(fig) -> dict[str, object]:
    """Visible data axes of a curves figure by title (colour bars and blanks left out)."""
    return {ax.get_title(): ax for ax in fig.axes if ax.axison and ax.get_title()}


# -- filters ----------------------------------------------------------------------------------
def test_filter_tiles_share_one_symmetric_scale_over_the_shown_columns():
    w = weight(16, 5)
    w[3, 4] = 1e6  # column 5 is not shown with max_filters=4: it must not set the scale
    grid, (lo, hi) = plot.filter_grid(w, max_filters=4)
    assert lo == -hi
    assert hi == pytest.approx(np.abs(w[:, :4]).max())
    # tiles are in weight units (not rescaled one by one): tile j is column j as 4×4
    for j in range(4):
        r, c = divmod(j, 2)
        np.testing.assert_array_equal(grid[1 + 5 * r:5 + 5 * r, 1 + 5 * c:5 + 5 * c], w[:, j].reshape(4, 4))
    assert np.nanmax(np.abs(grid)) == pytest.approx(hi)
    assert plot.filter_grid(np.zeros((4, 2)))[1] == (-1.0, 1.0)


def test_filters_figure_has_a_weight_colour_bar_and_says_how_many_filters():
    w = weight(16, 5)
    fig = plot.filters_figure(w, max_filters=3)
    image_ax = fig.axes[0]
    (image,) = image_ax.get_images()
    _, (lo, hi) = plot.filter_grid(w, 3)
    assert (image.norm.vmin, image.norm.vmax) == (lo, hi)
    assert image.get_cmap().name.startswith("RdBu")  # diverging, white at 0
    title = image_ax.get_title()
    assert "columns 1–3 of 5" in title and "16 visible × 5 hidden" in title
    assert len(fig.axes) == 2 and fig.axes[1].get_ylabel() == "weight"


def test_save_filters_keeps_its_old_call_and_checks_its_input(tmp_path):
    assert is_png(plot.save_filters(weight(16, 4), tmp_path / "f.png"))
    assert is_png(plot.save_filters(weight(12, 3), tmp_path / "g.png", shape=(3, 4)))
    assert [p.name for p in tmp_path.iterdir()] != [] and not list(tmp_path.glob(".*tmp"))
    with pytest.raises(ConfigurationError):
        plot.save_filters(weight(12, 3), tmp_path / "h.png", shape=(5, 5))
    with pytest.raises(ConfigurationError):
        plot.filter_grid(weight(12, 3), max_filters=0)
    assert not (tmp_path / "h.png").exists()


# -- grids ------------------------------------------------------------------------------------
def test_probabilities_and_binary_samples_are_drawn_on_a_fixed_unit_scale(tmp_path):
    probs = np.random.default_rng(1).uniform(0.2, 0.4, size=(6, 16))  # narrow range: not stretched
    fig = plot.grid_figure(probs, title="E[v | h] after 10 Gibbs sweeps", kind="probabilities")
    (image,) = fig.axes[0].get_images()
    assert (image.norm.vmin, image.norm.vmax) == (0.0, 1.0)
    np.testing.assert_array_equal(image.get_array().filled(np.nan), plot.tile(probs, normalise=False))
    assert "probabilities" in fig.axes[0].get_title() and fig.axes[1].get_ylabel() == "probability"

    binary = (probs > 0.3).astype(float)
    fig = plot.grid_figure(binary, title="6 samples", kind="binary samples")
    (image,) = fig.axes[0].get_images()
    assert (image.norm.vmin, image.norm.vmax) == (0.0, 1.0)
    assert fig.axes[0].get_title().startswith("6 samples (binary samples)")
    with pytest.raises(DataError, match="binary samples"):
        plot.grid_figure(probs, kind="binary samples")
    with pytest.raises(DataError, match="probabilities"):
        plot.grid_figure(probs * 3, kind="probabilities")
    with pytest.raises(ConfigurationError, match="kind"):
        plot.grid_figure(probs, kind="samples")
    assert is_png(plot.save_grid(binary, tmp_path / "s.png", title="6 samples", kind="binary samples"))


def test_real_values_share_the_range_of_all_tiles():
    values = np.random.default_rng(2).normal(size=(5, 9)) * np.arange(1, 6)[:, None] + 3
    fig = plot.grid_figure(values, kind="values", normalise=True)  # normalise is ignored with a kind
    (image,) = fig.axes[0].get_images()
    assert (image.norm.vmin, image.norm.vmax) == (values.min(), values.max())
    np.testing.assert_array_equal(image.get_array().filled(np.nan), plot.tile(values, normalise=False))
    assert "real values" in fig.axes[0].get_title() and "data units" in fig.axes[1].get_ylabel()


def test_old_save_grid_calls_still_work_and_say_how_tiles_are_scaled(tmp_path):
    samples = np.random.default_rng(3).uniform(size=(4, 16))
    assert is_png(plot.save_grid(samples, tmp_path / "a.png", title="samples (1000 Gibbs sweeps)",
                                 normalise=True))
    assert is_png(plot.save_grid(samples, tmp_path / "b.png", title="x", normalise=False))
    fig = plot.grid_figure(samples, title="t", normalise=True)
    assert "own range" in fig.axes[0].get_title() and len(fig.axes) == 1  # no colour bar to misread
    fig = plot.grid_figure(samples, title="t", normalise=False)
    assert len(fig.axes) == 2


# -- learning curves --------------------------------------------------------------------------
def test_curves_have_units_data_and_fold_ais_intervals():
    fig = plot.curves_figure(history(), descriptions={"valid_log_likelihood": "on 1,000 held-out digits"})
    by_title = panels(fig)
    assert len(by_title) == 4  # reconstruction, log-likelihood ×2, AIS (low/high folded in)
    assert not any(word in t for t in by_title for word in ("lr", "seconds", "cd steps", "epoch", "_low"))
    ll = next(ax for t, ax in by_title.items() if t.startswith("log-likelihood (exact)\non training"))
    assert "nats" in ll.get_ylabel()
    assert any("on 1,000 held-out digits" in t for t in by_title)
    recon = next(ax for t, ax in by_title.items() if t.startswith("reconstruction"))
    assert recon.get_ylabel() == "mean squared error per pixel"
    ais_ax = next(ax for t, ax in by_title.items() if "AIS" in t)
    assert "nats" in ais_ax.get_ylabel() and ais_ax.collections  # the shaded interval
    band = ais_ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(-206.0) and band.max() == pytest.approx(-201.0)


def test_metric_names_map_to_titles_with_units_and_data():
    assert plot.describe_metric("valid_log_likelihood")[0].endswith("on validation data")
    assert plot.describe_metric("val_rmse")[1] == "RMSE (ratings)"
    assert "validation" in plot.describe_metric("val_rmse")[0]
    assert plot.describe_metric("swap_rate_min")[1].startswith("swap acceptance")
    title, label = plot.describe_metric("log_likelihood", "on 500 test digits")
    assert title.endswith("on 500 test digits") and "nats per example" in label
    assert plot.describe_metric("my_score") == ("my score", "my score")
    assert plot.describe_metric("heldout_reconstruction_error", "1,000 held-out rows")[0].endswith(
        "\non 1,000 held-out rows")
    assert plot.describe_metric("heldout_log_likelihood")[0].endswith("on held-out data")
    assert plot.describe_metric("log_partition")[1] == "log Z (nats)"


def test_epoch_ticks_are_integers():
    # a log-likelihood measured only after the last epoch is one point at epoch 4: its panel
    # still spans epochs 1–4 (not 3.8 … 4.2)
    rows = history(4)
    for row in rows[:-1]:
        del row["log_likelihood"]
    fig = plot.curves_figure(rows)
    fig.canvas.draw()
    for ax in panels(fig).values():
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks
        assert lo < 1 and hi > 4


def test_a_one_epoch_run_is_readable(tmp_path):
    fig = plot.curves_figure(history(1))
    for ax in panels(fig).values():
        assert list(ax.get_xticks()) == [1]
        texts = [t.get_text() for t in ax.texts]
        assert any("epoch 1" in t for t in texts)
    ll = next(ax for t, ax in panels(fig).items() if t.startswith("log-likelihood (exact)\non training"))
    assert any(t.get_text().startswith("−199 ") for t in ll.texts)  # the single value, in words
    assert is_png(plot.save_curves(history(1), tmp_path / "c.png"))


def test_save_curves_old_call_and_odd_histories(tmp_path):
    assert is_png(plot.save_curves(history(2), tmp_path / "a.png"))
    assert is_png(plot.save_curves([{"epoch": 1, "lr": 0.1}], tmp_path / "b.png"))  # nothing to draw
    sparse = [{"epoch": e, "reconstruction_error": 1.0 / e, **({"log_likelihood": -e} if e % 2 else {})}
              for e in range(1, 6)]
    fig = plot.curves_figure(sparse)
    ll = next(ax for t, ax in panels(fig).items() if t.startswith("log-likelihood"))
    np.testing.assert_array_equal(ll.lines[0].get_xdata(), [1, 3, 5])
    inf_low = [{"epoch": 1, "ais_log_likelihood": -100.0, "ais_log_likelihood_low": -math.inf,
                "ais_log_likelihood_high": -99.0}]
    assert is_png(plot.save_curves(inf_low, tmp_path / "c.png"))


# -- gradient quality -------------------------------------------------------------------------
RESULT = {"CD-1": {"bias_norm": 0.3, "variance": 0.04, "cosine": 0.8},
          "PCD-1": {"bias_norm": 0.05, "variance": 0.25, "cosine": -0.2}}


def test_gradient_quality_plots_the_numbers_it_prints(tmp_path):
    rows = gradient_quality_rows(RESULT)
    assert rows["CD-1"] == {"bias_norm": 0.3, "std_dev": pytest.approx(0.2), "cosine": 0.8}
    assert rows["PCD-1"]["std_dev"] == pytest.approx(0.5)
    fig = gradient_quality_figure(RESULT)
    axes = [ax for ax in fig.axes if ax.patches]
    for ax, key in zip(axes, ("bias_norm", "std_dev", "cosine")):
        heights = [bar.get_height() for bar in ax.patches]
        assert heights == pytest.approx([rows[n][key] for n in RESULT])
        assert ax.get_ylabel()
    assert "√tr Cov" in axes[1].get_ylabel() and axes[2].get_ylim()[0] < -0.2
    assert is_png(plot_gradient_quality(RESULT, tmp_path / "q.png"))


# -- no process-wide side effects -------------------------------------------------------------
def test_no_pyplot_after_drawing_everything(tmp_path):
    code = ("import sys, numpy as np; from boltzkit import plot; "
            "from boltzkit.evaluation.gradient_quality import plot_gradient_quality; "
            f"d = r'{tmp_path}'; "
            "plot.save_filters(np.random.rand(16, 4) - 0.5, d + '/f.png'); "
            "plot.save_grid(np.random.rand(4, 16), d + '/g.png', kind='probabilities'); "
            "plot.save_grid((np.random.rand(4, 16) > 0.5) * 1.0, d + '/b.png', kind='binary samples'); "
            "plot.save_curves([{'epoch': 1, 'log_likelihood': -3.0}], d + '/c.png'); "
            f"plot_gradient_quality({RESULT!r}, d + '/q.png'); "
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.png", "c.png", "f.png", "g.png", "q.png"]
