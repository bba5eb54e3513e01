"""The 16-bit Bernoulli sampler: its exact law, the bias bound, the bit source, reproducibility."""

import pytest
import torch

from boltzkit.sampling import bits

LEVELS = 1 << bits.UNIFORM_BITS


def every_level(n: int, generator=None, device=None) -> torch.Tensor:
    """Every value of s once per block of 2¹⁶: the sampler's law becomes an exact average."""
    return torch.arange(-(LEVELS // 2), LEVELS // 2, dtype=torch.int16).repeat(n // LEVELS + 1)[:n]


PROBABILITIES = [0.0, 1.0, 1e-9, 1 - 1e-9, 0.5, 0.3, 1 / 3, 2 ** -17, 3 * 2 ** -17, 0.999, 1e-5, 0.123456,
                 (0.5 + 2 ** -12) / LEVELS, (100.5 + 2 ** -10) / LEVELS]  # the last two: 2¹⁶p just above a half


def exact_law(p: torch.Tensor) -> torch.Tensor:
    """round(2¹⁶ p)/2¹⁶ with halves rounded down, in float64."""
    return torch.ceil(p.double() * LEVELS - 0.5) / LEVELS


def frequencies(monkeypatch, p: torch.Tensor) -> torch.Tensor:
    """P(x = 1) of each entry of ``p``, exactly: every level of s once per row."""
    monkeypatch.setattr(bits, "uniform_levels", every_level)
    return bits.bernoulli(p[:, None].expand(len(p), LEVELS).contiguous()).double().mean(1)


def test_law_is_the_rounded_probability_in_float64(monkeypatch):
    p = torch.tensor(PROBABILITIES, dtype=torch.float64)
    frequency = frequencies(monkeypatch, p)
    assert torch.equal(frequency, exact_law(p))
    assert float((frequency - p).abs().max()) <= 2.0 ** -17 + 1e-15
    assert float(frequency[0]) == 0.0 and float(frequency[1]) == 1.0  # deterministic units stay so


def test_float32_law_is_within_2_to_minus_17_plus_2_to_minus_25(monkeypatch):
    p = torch.tensor(PROBABILITIES, dtype=torch.float32)
    frequency = frequencies(monkeypatch, p)
    assert float((frequency - exact_law(p)).abs().max()) <= 1 / LEVELS  # at most one level off
    assert float((frequency - p.double()).abs().max()) <= 2.0 ** -17 + 2.0 ** -25
    assert float(frequency[0]) == 0.0 and float(frequency[1]) == 1.0


def test_half_precision_is_compared_in_float32(monkeypatch):
    monkeypatch.setattr(bits, "uniform_levels", every_level)
    p = torch.tensor([0.3, 0.7, 1e-3], dtype=torch.bfloat16)
    x = bits.bernoulli(p[:, None].expand(3, LEVELS).contiguous())
    assert x.dtype == torch.bfloat16
    assert torch.equal(x.double().mean(1), exact_law(p))


def test_inplace_writes_over_the_probabilities():
    g = torch.Generator().manual_seed(0)
    p = torch.full((10, 7), 0.5)
    x = bits.bernoulli(p, g, inplace=True)
    assert x.data_ptr() == p.data_ptr() and set(x.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("n_words", [1000, 100_000])
def test_every_16_bit_lane_is_uniform_and_independent(n_words):
    g = torch.Generator().manual_seed(3)
    lanes = bits.random_words(n_words, g).view(torch.int16).reshape(n_words, 4).double()
    se = (LEVELS ** 2 / 12 / n_words) ** 0.5
    assert (lanes.mean(0) + 0.5).abs().max() < 5 * se  # a lane missing its top bit is off by 2¹⁴
    sigma = LEVELS / 12 ** 0.5  # a uniform's std; its estimate has s.e. √(4/5)σ/(2√n) ≈ 0.45σ/√n
    assert ((lanes.std(0) - sigma).abs() < 5 * 0.45 * sigma / n_words ** 0.5).all()
    corr = torch.corrcoef(lanes.t())
    assert (corr - torch.eye(4, dtype=corr.dtype)).abs().max() < 5 / n_words ** 0.5


def test_frequencies_match_p_within_their_standard_error():
    g = torch.Generator().manual_seed(7)
    p = torch.tensor([0.01, 0.2, 0.5, 0.9])
    n = 400_000
    x = bits.bernoulli(p.expand(n, 4).contiguous(), g)
    se = (p * (1 - p) / n).sqrt()
    assert ((x.mean(0) - p).abs() < 5 * se).all()


@pytest.mark.parametrize("n", [100, 200_000])
def test_a_seed_fixes_the_draws_and_a_saved_generator_resumes_them(n):
    p = torch.full((n,), 0.4)
    g = torch.Generator().manual_seed(11)
    first = bits.bernoulli(p, g)
    state = g.get_state()
    second = bits.bernoulli(p, g)
    assert torch.equal(first, bits.bernoulli(p, torch.Generator().manual_seed(11)))
    assert not torch.equal(first, second)
    g.set_state(state)
    assert torch.equal(second, bits.bernoulli(p, g))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_draws_stay_on_the_device():
    g = torch.Generator("cuda").manual_seed(0)
    x = bits.bernoulli(torch.full((1000, 100), 0.25, device="cuda"), g)
    assert x.device.type == "cuda" and abs(float(x.mean()) - 0.25) < 0.01
