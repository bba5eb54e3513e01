"""Bernoulli draws from a field (boltzkit.sampling.logistic) and their compiled loop (boltzkit.sampling.native).

The law is checked exactly, by counting over all 2¹⁶ levels; the random words against a
pure-Python SplitMix64; the compiled loop against the torch operations, bit for bit, on
ordinary and special values (±0, ±inf, NaN) and on sizes that do not fill a block.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys

import pytest
import torch

from boltzkit.sampling import logistic, native
from boltzkit.sampling.logistic import bernoulli_logistic, logit_table, splitmix_words

MASK = (1 << 64) - 1


def reference_words(key: int, first: int, n: int) -> list[int]:
    """SplitMix64 as published (Steele, Lea & Flood 2014), on Python integers."""
    out = []
    for i in range(first, first + n):
        z = (key + (i + 1) * 0x9E3779B97F4A7C15) & MASK
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        out.append(z ^ (z >> 31))
    return out


@pytest.mark.parametrize(("key", "first"), [(0, 0), (1234567, 5), (MASK, 0), ((1 << 63) + 17, 1 << 40)])
def test_words_are_splitmix64(key: int, first: int) -> None:
    words = [w & MASK for w in splitmix_words(key, first, 40).tolist()]
    assert words == reference_words(key, first, 40)
    as_tensor = splitmix_words(torch.tensor([logistic._int64(key)]), first, 40)
    assert torch.equal(as_tensor, splitmix_words(key, first, 40))
    compiled = native.words(key, first, 40)
    if compiled is not None:
        assert torch.equal(compiled, splitmix_words(key, first, 40))


def test_the_law_over_every_level() -> None:
    """#{u : t[u] < a} / 2¹⁶ is within 2⁻¹⁷ + 2⁻²² of σ(a): a grid, every table entry and its two
    float32 neighbours (where float32 rounding of the table matters), and the ends."""
    table = logit_table()
    assert bool((table[1:] > table[:-1]).all())
    entries = table.clone()
    grid = torch.cat([torch.linspace(-14.0, 14.0, 20001), entries, torch.nextafter(entries, entries + 1),
                      torch.nextafter(entries, entries - 1), torch.tensor([0.0, -0.0, 30.0, -30.0])])
    counts = torch.searchsorted(table, grid, side="left").double()   # entries strictly below a
    exact = torch.sigmoid(grid.double()) * 65536
    worst = (counts - exact).abs().max().item()
    assert worst <= 0.5 + 2 ** -6, worst
    assert worst > 0.49  # the bound is reached: the grid is fine enough to see the quantisation


def test_ends_and_nan() -> None:
    g = torch.Generator().manual_seed(0)
    field = torch.tensor([math.inf, -math.inf, math.nan, 40.0, -40.0] * 200)
    x = bernoulli_logistic(field, g).view(200, 5)
    assert x[:, 0].eq(1).all() and x[:, 1].eq(0).all() and x[:, 2].eq(0).all()
    assert x[:, 3].eq(1).all() and x[:, 4].eq(0).all()


def test_draws_match_probabilities() -> None:
    """Means of 200,000 draws at several fields and temperatures, within 4.5 standard errors."""
    g = torch.Generator().manual_seed(1)
    a = torch.tensor([-3.0, -0.7, 0.0, 0.4, 2.2]).repeat(200_000, 1)
    for beta in (1.0, 0.35, 2.0):
        p = torch.sigmoid(beta * a[0].double())
        mean = bernoulli_logistic(a, g, beta).double().mean(0)
        se = (p * (1 - p) / a.shape[0]).sqrt()
        assert ((mean - p).abs() <= 4.5 * se).all(), (beta, mean, p)


def test_per_row_temperatures() -> None:
    g = torch.Generator().manual_seed(2)
    a = torch.full((3, 100_000), 1.5)
    beta = torch.tensor([[0.0], [1.0], [-1.0]])
    mean = bernoulli_logistic(a, g, beta).double().mean(1)
    p = torch.sigmoid(1.5 * beta.squeeze(1).double())
    assert ((mean - p).abs() <= 4.5 * (p * (1 - p) / 100_000).sqrt()).all()


def test_a_seed_fixes_the_draws_and_one_word_is_consumed() -> None:
    a = torch.randn(50, 30, generator=torch.Generator().manual_seed(3))
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    assert torch.equal(bernoulli_logistic(a, g1), bernoulli_logistic(a, g2))
    g3 = torch.Generator().manual_seed(4)
    logistic.draw_key(g3)
    assert torch.equal(g1.get_state(), g3.get_state())


def test_float64_and_half_fields() -> None:
    g = torch.Generator().manual_seed(5)
    for dtype in (torch.float64, torch.bfloat16):
        x = bernoulli_logistic(torch.zeros(4000, dtype=dtype), g)
        assert x.dtype == dtype and set(x.unique().tolist()) <= {0.0, 1.0}
        assert abs(x.double().mean().item() - 0.5) < 4.5 * 0.5 / math.sqrt(4000)


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler here")
def test_the_compiled_loop_is_built_where_a_compiler_is() -> None:
    assert native.available()


@pytest.mark.parametrize("n", [1, 3, 4, 1023, 1024, 1025, 5003])
@pytest.mark.parametrize("beta", [1.0, 0.37, 2.5, -1.0])
def test_compiled_loop_equals_torch_operations(n: int, beta: float) -> None:
    if not native.available():
        pytest.skip("the compiled loop is not available here")
    g = torch.Generator().manual_seed(n)
    field = torch.randn(n, generator=g) * 4
    table = logit_table()
    entries = table[torch.randint(0, 1 << 16, (32,), generator=g)]
    special = torch.cat([torch.tensor([0.0, -0.0, math.inf, -math.inf, math.nan, -math.nan, 1e-30, -1e-30, 3e38,
                                       1e-40, -1e-45]),
                         entries, torch.nextafter(entries, entries + 1), torch.nextafter(entries, entries - 1)])
    special = special / beta  # so that β·a lands on the table entries and beside them
    field[: min(n, len(special))] = special[: min(n, len(special))]
    for key in (0, 987654321, MASK):
        compiled = native.draw_logistic(field, beta, beta != 1.0, torch.tensor([logistic._int64(key)]), table)
        assert compiled is not None
        assert torch.equal(compiled, logistic._draw_logistic(field, beta, beta != 1.0, key))


def test_strided_fields_draw_in_logical_order() -> None:
    """A column slice (AIS's hidden field) draws as its contiguous copy would."""
    wide = torch.randn(40, 31, generator=torch.Generator().manual_seed(6))
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(bernoulli_logistic(wide[:, :30], g1), bernoulli_logistic(wide[:, :30].contiguous(), g2))


def test_without_the_compiled_loop_the_draws_are_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    a = torch.randn(64, 100, generator=torch.Generator().manual_seed(8))
    with_loop = bernoulli_logistic(a, torch.Generator().manual_seed(9), 0.8)
    monkeypatch.setattr(native, "library", lambda: None)
    assert not native.available()
    assert torch.equal(bernoulli_logistic(a, torch.Generator().manual_seed(9), 0.8), with_loop)


def test_a_failing_compiler_leaves_torch_operations(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("CC", "false")   # a "compiler" that always fails
    monkeypatch.setenv("BOLTZKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(native.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    native.library.cache_clear()
    try:
        assert native.library() is None
        assert native.draw_logistic(torch.zeros(3), 1.0, False, torch.tensor([1]), logit_table()) is None
        assert bernoulli_logistic(torch.zeros(8), torch.Generator().manual_seed(0)).shape == (8,)
    finally:
        monkeypatch.undo()
        native.library.cache_clear()


def test_switched_off_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOLTZKIT_NATIVE", "0")
    native.library.cache_clear()
    try:
        assert native.library() is None
    finally:
        monkeypatch.undo()
        native.library.cache_clear()


def test_draws_against_a_python_reference() -> None:
    """The format pinned: level i = bits 16·(i mod 4) … of SplitMix64 word i // 4 of the key drawn
    from the generator, x = 1 where t[level] < β·a (so a permuted table, or levels taken in
    another order, would fail here even though the law would not change)."""
    g = torch.Generator().manual_seed(11)
    a = torch.randn(3, 7, generator=g)
    state = g.get_state()
    key = logistic.draw_key(g).item() & MASK
    words = reference_words(key, 0, 6)
    table = logit_table().tolist()
    beta = 0.75
    scaled = (a * beta).flatten().tolist()   # β·a in float32, as the draw computes it
    want = [float(table[(words[i // 4] >> (16 * (i % 4))) & 0xFFFF] < scaled[i]) for i in range(21)]
    g.set_state(state)
    assert bernoulli_logistic(a, g, beta).flatten().tolist() == want


def test_compiled_loop_checks_its_arguments() -> None:
    if not native.available():
        pytest.skip("the compiled loop is not available here")
    key, table = torch.tensor([1]), logit_table()
    with pytest.raises(ValueError, match="float32 CPU field"):
        native.draw_logistic(torch.zeros(4, dtype=torch.float64), 1.0, False, key, table)
    with pytest.raises(ValueError, match="key"):
        native.draw_logistic(torch.zeros(4), 1.0, False, torch.tensor([1], dtype=torch.int32), table)
    with pytest.raises(ValueError, match="table"):
        native.draw_logistic(torch.zeros(4), 1.0, False, key, table[:100])


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_a_shared_or_damaged_cache_is_not_trusted(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    if not native.available():
        pytest.skip("the compiled loop is not available here")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)   # anyone may write here: a planted library must not be loaded from it
    monkeypatch.setenv("BOLTZKIT_CACHE", str(shared))
    native.library.cache_clear()
    try:
        assert native.library() is not None      # built in a private folder instead
        assert not list(shared.glob("draws-*.so"))
        private = tmp_path / "private"
        monkeypatch.setenv("BOLTZKIT_CACHE", str(private))
        native.library.cache_clear()
        assert native.library() is not None
        (built,) = private.glob("draws-*.so")
        built.unlink()                            # a new file (this process keeps the old one mapped)
        built.write_bytes(b"not a library")       # damaged: a fresh process rebuilds it, then loads it
        check = "from boltzkit.sampling import native; assert native.library() is not None"
        subprocess.run([sys.executable, "-c", check], check=True, timeout=120,
                       env={**os.environ, "BOLTZKIT_CACHE": str(private)})
        assert built.read_bytes() != b"not a library"
    finally:
        monkeypatch.undo()
        native.library.cache_clear()


def test_no_home_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BOLTZKIT_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)

    def no_home() -> None:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(native.Path, "home", staticmethod(no_home))
    assert native._cache() is None
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")
    assert native._cache() is None
