"""RTRBM and RNN-RBM against exact enumeration and autograd (tiny models: D = 4 visible units)."""

from __future__ import annotations

import math

import pytest
import torch

from boltzkit import checkpoint
from boltzkit.errors import ConfigurationError, DataError
from boltzkit.evaluation import exact
from boltzkit.models.sequence import (
    RNNRBM,
    RTRBM,
    RecurrentRBMStep,
    SequenceBatches,
    evaluate_recurrent_rbm,
    exact_log_likelihood,
    fit_recurrent_rbm,
    log_partition_enumerated,
    most_probable_candidate,
)

MODELS = {
    "rtrbm": lambda scale=0.8: RTRBM(4, 3, weight_scale=scale, seed=1, dtype=torch.float64),
    "rnn-rbm": lambda scale=0.8: RNNRBM(4, 3, 2, weight_scale=scale, seed=1, dtype=torch.float64),
    "rnn-rbm-lstm": lambda scale=0.8: RNNRBM(4, 3, 2, recurrence="lstm", weight_scale=scale, seed=1,
                                             dtype=torch.float64),
}


def data(n: int = 3, t: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, t, 4), 0.4, dtype=torch.float64), generator=g)


def reference_log_likelihood(model, x):
    """Σ log p(v_t | v_<t) written out from the papers' equations, independently of the model's code:
    u_t = σ(c + u_{t−1}W_uh + v_tW) (RTRBM), tanh(U v_t + W u_{t−1} + b_u) (RNN-RBM) or the LSTM's
    u_t = o_t ⊙ tanh(C_t), C_t = f_t ⊙ C_{t−1} + i_t ⊙ tanh(W_C[u_{t−1}, v_t] + b_C) with the gates
    σ(W_g[u_{t−1}, v_t] + b_g), u_0 = C_0 = 0; log Z_t by enumerating the 2^D visible states."""
    W, b, c = model.rbm.weight, model.rbm.visible.bias, model.rbm.hidden.bias
    states = torch.tensor([[(s >> i) & 1 for i in range(x.shape[2])] for s in range(2 ** x.shape[2])],
                          dtype=x.dtype)
    u = x.new_zeros(x.shape[0], model.n_recurrent)
    memory = torch.zeros_like(u)
    total = x.new_zeros(())
    for t in range(x.shape[1]):
        b_t, c_t = b + u @ model.W_uv, c + u @ model.W_uh

        def neg_f(v, b_t=b_t, c_t=c_t):  # −F_t(v) for v (B, S, D)
            return (v * b_t.unsqueeze(1)).sum(-1) + torch.nn.functional.softplus(
                c_t.unsqueeze(1) + v @ W).sum(-1)

        log_z = torch.logsumexp(neg_f(states.expand(x.shape[0], -1, -1)), -1)
        total = total + (neg_f(x[:, t:t + 1])[:, 0] - log_z).sum()
        if isinstance(model, RTRBM):
            u = torch.sigmoid(c_t + x[:, t] @ W)
        elif model.recurrence == "lstm":
            cell = model.cell
            hx = torch.cat([u, x[:, t]], -1)
            gate = {g: hx @ getattr(cell, f"W_{g}").t() + getattr(cell, f"b_{g}") for g in "fiCo"}
            memory = torch.sigmoid(gate["f"]) * memory + torch.sigmoid(gate["i"]) * torch.tanh(gate["C"])
            u = torch.sigmoid(gate["o"]) * torch.tanh(memory)
        else:
            cell = model.cell
            u = torch.tanh(x[:, t] @ cell.U.t() + u @ cell.W.t() + cell.b)
    return total


@pytest.mark.parametrize("name", MODELS)
def test_exact_log_likelihood_matches_the_written_out_equations(name):
    model = MODELS[name]()
    x = data()
    ours = exact_log_likelihood(model, x)
    torch.testing.assert_close(ours, reference_log_likelihood(model, x), rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("name", MODELS)
def test_log_z_matches_exact_enumeration_of_the_step_rbm(name):
    model = MODELS[name]()
    b, c = model.biases(data())
    with torch.no_grad():
        ours = log_partition_enumerated(model, b, c)
    for i, t in [(0, 0), (1, 2), (2, 3)]:
        assert float(ours[i, t]) == pytest.approx(exact.log_partition(model.step_rbm(b[i, t], c[i, t])), abs=1e-10)


def test_rnn_rbm_fused_biases_equal_the_step_loop():
    model = MODELS["rnn-rbm"]()
    x = data()
    fused = model.biases(x)
    loop = super(RNNRBM, model).biases(x)
    for a, b in zip(fused, loop):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", MODELS)
def test_step_gradient_equals_autograd_of_the_surrogate(name):
    """The closed-form CD part plus the BPTT of ∂L/∂(b_t, c_t) equals autograd of L exactly."""
    model = MODELS[name]()
    x = data()
    mask = torch.ones(3, 4, dtype=torch.float64)
    mask[0, 3] = mask[2, 2:] = 0
    step = RecurrentRBMStep(k=2)
    b, c = model.biases(x)
    neg = step.negatives(model, x, b, c, torch.Generator().manual_seed(3))
    step.write_gradient(model, x, neg, mask)
    ours = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    model.surrogate(x, neg, mask).backward()
    for n, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(ours[n], p.grad, rtol=1e-10, atol=1e-12, msg=n)
    assert any(float(g.abs().max()) > 1e-3 for n, g in ours.items() if "W_u" in n or "cell" in n)


@pytest.mark.parametrize("name", MODELS)
def test_cd_expectation_approaches_the_exact_gradient_as_k_grows(name):
    """Mean of R CD-k gradients vs −∇(1/N) Σ log p(v_t | v_<t) by autograd of the exact
    enumeration (of the written-out equations, so a recurrence cut off from the gradient fails).  For large k
    the chain is mixed (4 units), so the mean must lie within 4.5
    standard errors of the exact gradient in every coordinate (R = 1000 → a false alarm over the
    ~60–120 coordinates has probability < 1e-3); CD-1 is visibly biased for these strong weights and the
    error shrinks with k (k = 1, 5, 50)."""
    model = MODELS[name](3.0)
    x = data(n=2, t=3)
    model.zero_grad(set_to_none=True)
    (-reference_log_likelihood(model, x) / x.shape[0] / x.shape[1]).backward()
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    truth = torch.cat([dict(model.named_parameters())[n].grad.reshape(-1) for n in names])
    generator = torch.Generator().manual_seed(0)
    errors = {}
    R = 1000
    for k in (1, 5, 50):
        step = RecurrentRBMStep(k)
        xs = x.repeat(R, 1, 1)  # R independent negatives per sequence in one batch
        with torch.no_grad():
            b, c = model.biases(xs)
        neg = step.negatives(model, xs, b, c, generator).reshape(R, *x.shape)
        grads = []
        for r in range(R):
            step.write_gradient(model, x, neg[r])
            grads.append(torch.cat([dict(model.named_parameters())[n].grad.reshape(-1) for n in names]))
        g = torch.stack(grads)
        mean, se = g.mean(0), g.std(0) / R ** 0.5
        errors[k] = float(((mean - truth).abs() / (se + 1e-12)).max())
        if k == 50:
            assert errors[k] < 4.5
    assert errors[1] > errors[5] > errors[50], errors


@pytest.mark.parametrize("name", MODELS)
def test_evaluation_is_exact_nll_per_step(name):
    model = MODELS[name]()
    seqs = [data(1, 4, 0)[0], data(1, 2, 1)[0]]
    result = evaluate_recurrent_rbm(model, SequenceBatches(seqs))
    with torch.no_grad():
        exact_total = sum(float(exact_log_likelihood(model, s.unsqueeze(0))) for s in seqs)
    assert result["log_z"] == "exact" and result["frames"] == 6
    assert result["nll_per_step"] == pytest.approx(-exact_total / 6, abs=1e-9)
    assert 0 <= result["frame_accuracy"] <= 1


def test_evaluation_by_ais_brackets_the_exact_value():
    model = MODELS["rtrbm"]()
    seqs = [data(1, 3, 0)[0]]
    truth = evaluate_recurrent_rbm(model, SequenceBatches(seqs))["nll_per_step"]
    result = evaluate_recurrent_rbm(model, SequenceBatches(seqs), max_bits=1, ais_chains=64, ais_betas=200)
    assert result["log_z"] == "ais"
    assert result["nll_low"] <= truth <= result["nll_high"]
    assert result["nll_per_step"] == pytest.approx(truth, abs=0.05)


def test_raise_is_the_conservative_side_of_the_bracket():
    """A sharp RTRBM (weights ×2) and a short schedule (20 β): forward AIS's NLL errs low and
    RAISE's high, each by more than 3 of its standard errors, with the exact NLL between them;
    1,000 β bring RAISE to the exact value within 4 standard errors."""
    model = RTRBM(10, 8, weight_scale=2.0, seed=1, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    seqs = SequenceBatches([torch.bernoulli(torch.full((6, 10), 0.4, dtype=torch.float64), generator=g)
                            for _ in range(2)])
    truth = evaluate_recurrent_rbm(model, seqs)["nll_per_step"]
    short = evaluate_recurrent_rbm(model, seqs, max_bits=1, ais_chains=8, ais_betas=20, raise_chains=8)
    assert short["nll_per_step"] + 3 * short["nll_se"] < truth < short["nll_raise"] - 3 * short["nll_raise_se"]
    long = evaluate_recurrent_rbm(model, seqs, max_bits=1, ais_chains=8, ais_betas=1000, raise_chains=8)
    assert abs(long["nll_raise"] - truth) <= 4 * long["nll_raise_se"]
    assert "nll_raise" not in evaluate_recurrent_rbm(model, seqs, max_bits=1, ais_chains=2, ais_betas=5)


@pytest.mark.parametrize("name", MODELS)
def test_candidate_lower_bound_is_exact_on_every_frame_and_below_on_a_subset(name):
    """Summing each step's Z_t over all 2^4 frames is exact enumeration; over a subset it must stay
    below the exact NLL (Z_t ≥ the partial sum), by more the fewer frames it keeps."""
    model = MODELS[name]()
    seqs = SequenceBatches([data(1, 5, 0)[0], data(1, 3, 1)[0]])
    every = torch.tensor([[(s >> i) & 1 for i in range(4)] for s in range(16)], dtype=torch.float64)
    truth = evaluate_recurrent_rbm(model, seqs)["nll_per_step"]
    assert evaluate_recurrent_rbm(model, seqs, candidates=every)["nll_lower_bound"] == pytest.approx(truth, abs=1e-9)
    half = evaluate_recurrent_rbm(model, seqs, candidates=every[::2])["nll_lower_bound"]
    quarter = evaluate_recurrent_rbm(model, seqs, candidates=every[::4])["nll_lower_bound"]
    assert quarter < half < truth - 1e-6
    alone = evaluate_recurrent_rbm(model, seqs, candidates=every[::2], nll=False)   # no log Z, same bound
    assert alone["nll_lower_bound"] == half and "nll_per_step" not in alone


@pytest.mark.parametrize("name", MODELS)
def test_map_prediction_is_the_exact_mode_of_each_step_and_scores_as_written_out(name):
    """With all 2^4 frames as candidates the predicted frame is the exact mode of p(v_t | v_<t)
    (free energies written out with softplus, independently of the model's code); with a subset it
    is the best frame of the subset; the frame accuracy counts TP/(TP+FP+FN) of those modes."""
    model = MODELS[name]()
    x = data(2, 5, 3)
    every = torch.tensor([[(s >> i) & 1 for i in range(4)] for s in range(16)], dtype=torch.float64)
    b, c = (t.reshape(-1, t.shape[-1]) for t in model.biases(x))
    W = model.rbm.weight
    neg_f = b @ every.t() + torch.nn.functional.softplus(c.unsqueeze(1) + (every @ W).unsqueeze(0)).sum(-1)
    assert torch.equal(most_probable_candidate(model, every, b, c, block=3), every[neg_f.argmax(1)])
    from boltzkit.models.sequence import candidate_log_partition, rnn_rbm

    whole = candidate_log_partition(model, every, b, c)
    assert torch.allclose(whole, torch.logsumexp(neg_f.detach().double(), 1), atol=1e-12)
    rnn_rbm.SCORE_CHUNK, saved = 7, rnn_rbm.SCORE_CHUNK      # 2 candidates per hidden-term chunk
    try:
        assert torch.allclose(candidate_log_partition(model, every, b, c, block=2), whole, atol=1e-12)
    finally:
        rnn_rbm.SCORE_CHUNK = saved
    subset = every[1::3]
    assert torch.equal(most_probable_candidate(model, subset, b, c), subset[neg_f[:, 1::3].argmax(1)])
    guess, truth = every[neg_f.argmax(1)] > 0.5, x.reshape(-1, 4) > 0.5
    tp, fp, fn = (guess & truth).sum(), (guess & ~truth).sum(), (~guess & truth).sum()
    expected = int(tp) / int(tp + fp + fn)
    result = evaluate_recurrent_rbm(model, SequenceBatches(list(x)), predict_candidates=every, nll=False)
    assert result["frame_accuracy"] == pytest.approx(expected, abs=1e-12)
    # with the bound over a superset (one shared pass) or a set that misses some (two passes): the same
    seqs = SequenceBatches(list(x))
    alone = evaluate_recurrent_rbm(model, seqs, predict_candidates=subset, nll=False)
    bound = evaluate_recurrent_rbm(model, seqs, candidates=every[::2], nll=False)["nll_lower_bound"]
    for superset, expected_bound in ((every, evaluate_recurrent_rbm(model, seqs)["nll_per_step"]), (every[::2], bound)):
        both = evaluate_recurrent_rbm(model, seqs, candidates=superset, predict_candidates=subset, nll=False)
        assert both["frame_accuracy"] == alone["frame_accuracy"]
        assert both["nll_lower_bound"] == pytest.approx(expected_bound, abs=1e-9)


@pytest.mark.parametrize("name", MODELS)
def test_mean_prediction_is_the_restricted_mean_of_each_step_thresholded(name):
    """``candidate_mean`` over all 2^4 frames is the exact E[v_t | v_<t] (probabilities written out
    with softplus); over a subset S it is Σ_S s p_t(s) / Σ_S p_t(s); ``predict_rule="mean"`` scores
    that mean thresholded at ½, alone or in the pass it shares with the bound over a superset."""
    from boltzkit.models.sequence import candidate_mean

    model = MODELS[name]()
    x = data(2, 5, 3)
    every = torch.tensor([[(s >> i) & 1 for i in range(4)] for s in range(16)], dtype=torch.float64)
    b, c = (t.reshape(-1, t.shape[-1]) for t in model.biases(x))
    W = model.rbm.weight
    neg_f = (b @ every.t() + torch.nn.functional.softplus(c.unsqueeze(1) + (every @ W).unsqueeze(0)).sum(-1)).detach()
    p = torch.softmax(neg_f, 1)
    assert torch.allclose(candidate_mean(model, every, b, c, block=3), p @ every, atol=1e-12)
    subset = every[[1, 4, 6, 7, 12]]
    p_s = torch.softmax(neg_f[:, [1, 4, 6, 7, 12]], 1)
    mean = p_s @ subset
    assert torch.allclose(candidate_mean(model, subset, b, c), mean, atol=1e-12)
    guess, truth = mean > 0.5, x.reshape(-1, 4) > 0.5
    tp, fp, fn = (guess & truth).sum(), (guess & ~truth).sum(), (~guess & truth).sum()
    expected = int(tp) / int(tp + fp + fn)
    seqs = SequenceBatches(list(x))
    alone = evaluate_recurrent_rbm(model, seqs, predict_candidates=subset, predict_rule="mean", nll=False)
    assert alone["frame_accuracy"] == pytest.approx(expected, abs=1e-12)
    shared = evaluate_recurrent_rbm(model, seqs, candidates=every, predict_candidates=subset, predict_rule="mean",
                                    nll=False)
    assert shared["frame_accuracy"] == alone["frame_accuracy"]
    with pytest.raises(ConfigurationError, match="predict_rule"):
        evaluate_recurrent_rbm(model, seqs, predict_candidates=subset, predict_rule="median", nll=False)
    with pytest.raises(ConfigurationError, match="predict_candidates"):
        evaluate_recurrent_rbm(model, seqs, predict_rule="mean", nll=False)
    doubled = torch.cat([subset, subset[:2]])                         # a repeated candidate counts once
    assert torch.allclose(candidate_mean(model, doubled, b, c), mean, atol=1e-12)
    # accuracy=False: the same bound and NLL, no predicted frames
    full = evaluate_recurrent_rbm(model, seqs, candidates=every[::2])
    bare = evaluate_recurrent_rbm(model, seqs, candidates=every[::2], accuracy=False)
    assert "frame_accuracy" not in bare and bare == {k: v for k, v in full.items() if k != "frame_accuracy"}
    with pytest.raises(ConfigurationError, match="accuracy=False"):
        evaluate_recurrent_rbm(model, seqs, predict_candidates=subset, accuracy=False)
    from boltzkit.models.sequence.rbm_evaluation import _positions

    assert _positions(torch.cat([every[[5, 0]], every[[9]] + 2]), every).tolist() == [5, 0, -1]


@pytest.mark.parametrize("name", MODELS)
def test_generation_restricted_to_candidates_draws_the_exact_restricted_law(name):
    """With ``candidates`` S, a generated 2-step sequence (v_1, v_2) has the law
    p_1(v_1 | S) p_2(v_2 | v_1, S), p_t(· | S) ∝ e^{−F_t} on S (enumerated through the model's own
    recurrence): 20,000 draws match each of the 25 pair probabilities within 4.5 standard errors (a
    miss has chance < 2e-4 over all pairs), never leave S, and repeat under the same seed."""
    model = MODELS[name]()
    every = torch.tensor([[(s >> i) & 1 for i in range(4)] for s in range(16)], dtype=torch.float64)
    chosen = [0, 3, 5, 10, 15]
    subset = every[chosen]
    with torch.no_grad():
        pairs = torch.stack([torch.stack([subset[i], subset[j]]) for i in range(5) for j in range(5)])   # (25, 2, 4)
        b, c = model.biases(pairs)
        neg_f = [(b[:, t] @ subset.t() + torch.nn.functional.softplus(c[:, t].unsqueeze(1) + subset @ model.rbm.weight)
                  .sum(-1)) for t in range(2)]                                        # (25, 5) each
        p1, p2 = torch.softmax(neg_f[0][0], 0), torch.softmax(neg_f[1], 1)
        law = torch.tensor([float(p1[i] * p2[5 * i + j, j]) for i in range(5) for j in range(5)], dtype=torch.float64)
    n = 20000
    draws = model.generate(n, 2, generator=torch.Generator().manual_seed(0), candidates=torch.cat([subset, subset]))
    code = (draws * torch.tensor([1.0, 2, 4, 8], dtype=draws.dtype)).sum(-1).long()      # frame → 0..15
    position = torch.full((16,), -1, dtype=torch.long)
    position[chosen] = torch.arange(5)
    index = position[code]
    assert bool((index >= 0).all())
    counts = torch.bincount(5 * index[:, 0] + index[:, 1], minlength=25).double() / n
    se = torch.sqrt(law * (1 - law) / n)
    assert torch.all((counts - law).abs() < 4.5 * se + 1e-9), (counts, law)
    again = model.generate(n, 2, generator=torch.Generator().manual_seed(0), candidates=subset)
    assert torch.equal(draws, again)
    for bad, message in ((every[:, :3], "candidates"), (every * 0.5, "binary"), (every.numpy(), "torch tensor")):
        with pytest.raises(DataError, match=message):
            model.generate(2, 2, candidates=bad)
    with pytest.raises(ConfigurationError, match="gibbs_steps"):
        model.generate(2, 2, gibbs_steps=5, candidates=subset)


def test_candidate_mass_from_chains_started_in_the_candidates_tightens_the_bound_and_stays_below(monkeypatch):
    """f_K, the probability of the candidate set S after K Gibbs sweeps from p_t restricted to S, by
    the exact transition matrix of the sweep (16 visible × 8 hidden states): it falls with K and stays
    ≥ P_t(S) (the sweep is reversible and positive semi-definite).  The steps mix slowly (weights ×3:
    second eigenvalue ≈ 0.5), so f_1 and f_3 stand many standard errors above P_t(S), and the chains'
    estimate must match f_K, not P_t(S), within 4 standard errors on two steps with different biases;
    bound − log f̂ lies between the candidate bound and the exact NLL."""
    from boltzkit.models.sequence import rbm_evaluation
    from boltzkit.models.sequence.rbm_evaluation import _candidate_pass, candidate_mass

    model = MODELS["rnn-rbm"]()
    with torch.no_grad():
        model.rbm.weight.mul_(3.0)
    every = torch.tensor([[(s >> i) & 1 for i in range(4)] for s in range(16)], dtype=torch.float64)
    hiddens = torch.tensor([[(s >> i) & 1 for i in range(3)] for s in range(8)], dtype=torch.float64)
    chosen = torch.tensor([0, 2, 3, 11])
    in_s = torch.zeros(16, dtype=torch.float64)
    in_s[chosen] = 1
    W = model.rbm.weight.detach()
    with torch.no_grad():
        b, c = (t.reshape(-1, t.shape[-1])[[0, 2]] for t in model.biases(data(1, 3, 0)))   # two steps
        log_p = torch.cat(list(model.frame_scores(every, b, c)))
    exact_f = []
    for row in range(2):
        field_h = c[row] + every @ W                                         # (16, 3)
        p_h = torch.exp((hiddens.unsqueeze(0) * field_h.unsqueeze(1)).sum(-1)
                        - torch.nn.functional.softplus(field_h).sum(-1, keepdim=True))   # p(h | v), (16, 8)
        field_v = b[row] + hiddens @ W.t()                                   # (8, 4)
        p_v = torch.exp((every.unsqueeze(0) * field_v.unsqueeze(1)).sum(-1)
                        - torch.nn.functional.softplus(field_v).sum(-1, keepdim=True))   # p(v | h), (8, 16)
        sweep = p_h @ p_v
        p = torch.softmax(log_p[row], 0)
        assert torch.allclose(p @ sweep, p, atol=1e-12)                    # p_t is the sweep's invariant law
        start = p * in_s / (p * in_s).sum()
        f = [float(start @ torch.linalg.matrix_power(sweep, k) @ in_s) for k in range(12)]
        assert f[0] == pytest.approx(1.0) and all(a >= b - 1e-12 for a, b in zip(f, f[1:]))
        assert f[-1] >= float(p @ in_s) - 1e-12
        exact_f.append((f, float(p @ in_s), start[chosen]))
    g = torch.Generator().manual_seed(0)
    chains = 40000
    _, _, starts = _candidate_pass(model, every[chosen], b, c, None, "map", chains, g)   # the evaluation's own draws
    monkeypatch.setattr(rbm_evaluation, "MASS_BLOCK", 30000)                 # several row blocks
    for k in (1, 3):
        hits = candidate_mass(model, every[chosen], b, c, starts, k, g).double().mean(1)
        for row, (f, p_s, _) in enumerate(exact_f):
            se = math.sqrt(f[k] * (1 - f[k]) / chains)
            assert f[k] - p_s > 5 * se                                      # the test tells f_K from P(S)
            assert abs(float(hits[row]) - f[k]) < 4 * se, (k, row, float(hits[row]), f[k])
    for row, (_, _, start) in enumerate(exact_f):
        counts = torch.bincount(starts[row], minlength=len(chosen)).double() / chains
        assert torch.all((counts - start).abs() < 4 * torch.sqrt(start * (1 - start) / chains) + 1e-9)
    seqs = SequenceBatches([data(1, 5, 0)[0], data(1, 3, 1)[0]])
    truth = evaluate_recurrent_rbm(model, seqs)["nll_per_step"]
    r = evaluate_recurrent_rbm(model, seqs, candidates=every[chosen], mass_chains=400, mass_sweeps=5, nll=False)
    assert r["nll_lower_bound_mass_se"] == pytest.approx(r["candidate_mass_se"] / r["candidate_mass"])
    tolerance = 4 * r["nll_lower_bound_mass_se"]
    assert r["nll_lower_bound"] < r["nll_lower_bound_mass"] < truth + tolerance
    assert r["nll_lower_bound_mass"] > r["nll_lower_bound"] + 2 * tolerance     # a real tightening here
    doubled = evaluate_recurrent_rbm(model, seqs, candidates=torch.cat([every[chosen], every[chosen]]), nll=False)
    assert doubled["nll_lower_bound"] == r["nll_lower_bound"]               # repeated frames count once
    full = evaluate_recurrent_rbm(model, seqs, candidates=every, mass_chains=3, nll=False)
    assert full["candidate_mass"] == 1.0 and full["nll_lower_bound_mass"] == pytest.approx(truth, abs=1e-9)
    with pytest.raises(ConfigurationError, match="mass_chains"):
        evaluate_recurrent_rbm(model, seqs, mass_chains=3)
    for bad in (every[:0], every[:, :3]):
        with pytest.raises(DataError, match="candidates"):
            evaluate_recurrent_rbm(model, seqs, candidates=bad, nll=False)


def test_ais_interval_is_finite_and_its_standard_error_matches_the_spread_over_seeds():
    """With 3 chains and 5 β most frames have mean(w) − 3 se(w) ≤ 0: adding the per-frame intervals
    gave a lower end of −inf.  The interval is NLL ± 3σ with σ² = Σ_t (se_t/mean_t)² / N² (independent
    runs, delta method); σ must match the standard deviation of the NLL over 40 seeds.  That sample
    deviation has relative standard error 1/√(2·39) ≈ 11 %, and the delta method is itself
    approximate at 3 chains, so the ratio must lie in [0.6, 1.6] (the old summed half-widths were
    ≈ √N ≈ 4.5 times too wide and fail this)."""
    model = MODELS["rtrbm"]()
    seqs = SequenceBatches([data(1, 10, s)[0] for s in range(2)])
    runs = [evaluate_recurrent_rbm(model, seqs, max_bits=1, ais_chains=3, ais_betas=5, predict_steps=1, seed=s)
            for s in range(40)]
    nll = torch.tensor([r["nll_per_step"] for r in runs], dtype=torch.float64)
    se = torch.tensor([r["nll_se"] for r in runs], dtype=torch.float64)
    for r in runs:
        assert r["nll_low"] == pytest.approx(r["nll_per_step"] - 3 * r["nll_se"])
        assert r["nll_high"] == pytest.approx(r["nll_per_step"] + 3 * r["nll_se"])
        assert torch.isfinite(torch.tensor([r["nll_low"], r["nll_high"]])).all()
    ratio = float(se.mean() / nll.std())
    assert 0.6 <= ratio <= 1.6, ratio


@pytest.mark.parametrize("name", ["rtrbm", "rnn-rbm-lstm"])
def test_training_on_the_trainer_raises_exact_likelihood_and_checkpoints(name, tmp_path):
    model = MODELS[name]()
    # a deterministic pattern: frame t+1 is frame t shifted by one unit
    base = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.float64)
    seqs = [torch.roll(base, s, 0) for s in range(4)] * 4
    source = SequenceBatches(seqs)
    before = evaluate_recurrent_rbm(model, source)["nll_per_step"]
    trainer = fit_recurrent_rbm(model, source, source, epochs=30, batch_size=4, lr=0.05, k=5, patience=None,
                                pretrain_epochs=2 if name == "rtrbm" else 0)
    # the validation NLL is the exact one here, and the best epoch is kept
    assert len(trainer.history) == 30
    assert min(h["valid_nll"] for h in trainer.history) < before - 0.5
    after = evaluate_recurrent_rbm(model, source)["nll_per_step"]
    assert after < before - 0.5
    checkpoint.save(tmp_path / "m", model)
    loaded = checkpoint.load(tmp_path / "m")
    assert type(loaded) is type(model)
    assert evaluate_recurrent_rbm(loaded, source)["nll_per_step"] == pytest.approx(after, abs=1e-9)


@pytest.mark.parametrize("name", ["rnn-rbm", "rnn-rbm-lstm"])
def test_pretraining_the_recurrence_fits_the_cell_as_a_next_step_predictor(name):
    """The second pre-training stage trains the cell (with its own σ output layer) on next-step
    prediction: on a deterministic pattern its cross-entropy falls far; the RBM and the bias maps
    are untouched, and the cell's output layer is frozen again afterwards."""
    from boltzkit.models.sequence import evaluate_sequences, pretrain_recurrence

    model = MODELS[name]()
    base = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.float64)
    source = SequenceBatches([torch.roll(base, s, 0) for s in range(4)] * 4)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    others = {n: p.detach().clone() for n, p in model.named_parameters() if not n.startswith("cell.")}
    cell_before = {n: p.detach().clone() for n, p in model.cell.named_parameters()}
    before = evaluate_sequences(model.cell, source)["nll_per_step"]
    trainer = pretrain_recurrence(model, source, 60, lr=0.05, batch_size=4)
    assert len(trainer.history) == 60
    after = evaluate_sequences(model.cell, source)["nll_per_step"]
    assert after < 0.5 * before, (before, after)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == trainable
    assert all(p.grad is None for p in (model.cell.V, model.cell.c))
    for n, p in model.named_parameters():
        if n in others:
            assert torch.equal(p, others[n]), n
    changed = [n for n, p in model.cell.named_parameters() if not torch.equal(p, cell_before[n])]
    assert any(n not in ("V", "c") for n in changed), changed     # the recurrence itself learned
    # fit_recurrent_rbm runs the stage when asked: the cell's output layer moves only there
    plain, pretrained = MODELS[name](), MODELS[name]()
    fit_recurrent_rbm(plain, source, epochs=1, batch_size=4, k=1, patience=None)
    fit_recurrent_rbm(pretrained, source, epochs=1, batch_size=4, k=1, patience=None, pretrain_rnn_epochs=3)
    assert torch.equal(plain.cell.V, MODELS[name]().cell.V)
    assert not torch.equal(pretrained.cell.V, plain.cell.V)


def test_pretraining_the_recurrence_refuses_the_rtrbm():
    from boltzkit.models.sequence import pretrain_recurrence

    source = SequenceBatches(list(data(2, 3)))
    with pytest.raises(ConfigurationError, match="RTRBM"):
        pretrain_recurrence(MODELS["rtrbm"](), source, 1)
    with pytest.raises(ConfigurationError, match="RTRBM"):
        fit_recurrent_rbm(MODELS["rtrbm"](), source, epochs=1, pretrain_rnn_epochs=1)
    with pytest.raises(ConfigurationError, match="pretrain_rnn_epochs"):
        fit_recurrent_rbm(MODELS["rnn-rbm"](), source, epochs=1, pretrain_rnn_epochs=-1)


def test_validation_by_the_candidate_bound_and_a_linear_learning_rate_decay():
    """``RecurrentRBMValidation(candidates=…)`` records the certain lower bound of that epoch's model
    (equal to the exact NLL when every frame is a candidate); ``lr_schedule="linear"`` takes Adam's
    learning rate from ``lr`` down towards 0 over the epochs."""
    from boltzkit.models.sequence import RecurrentRBMValidation
    from boltzkit.training import Callback

    model = MODELS["rnn-rbm"]()
    source = SequenceBatches(list(data(8, 5, 4)))
    every = torch.tensor([[(s >> i) & 1 for i in range(4)] for s in range(16)], dtype=torch.float64)
    seen = []

    class Exact(Callback):
        def on_epoch_end(self, trainer, epoch, metrics):
            seen.append((metrics["bound"], evaluate_recurrent_rbm(trainer.model, source)["nll_per_step"],
                         trainer.optimizer.param_groups[0]["lr"]))

    trainer = fit_recurrent_rbm(model, source, None, epochs=4, batch_size=4, lr=0.02, k=2, lr_schedule="linear",
                                callbacks=[RecurrentRBMValidation(source, name="bound", candidates=every), Exact()])
    assert len(trainer.history) == 4
    for bound, exact_nll, _ in seen:
        assert bound == pytest.approx(exact_nll, abs=1e-9)
    rates = [lr for *_, lr in seen]
    assert rates == pytest.approx([0.02 * (1 - e / 4) for e in range(1, 5)], abs=1e-12)
    partial = RecurrentRBMValidation(source, name="bound", candidates=every[::3])
    metrics: dict = {}
    partial.measure(trainer, metrics)
    assert metrics["bound"] < seen[-1][1] - 1e-6           # fewer candidates: strictly below the NLL


def test_generate_shapes_and_seed():
    model = MODELS["rnn-rbm"]()
    a = model.generate(3, 5, generator=torch.Generator().manual_seed(0))
    b = model.generate(3, 5, generator=torch.Generator().manual_seed(0))
    assert a.shape == (3, 5, 4) and torch.equal(a, b) and set(a.unique().tolist()) <= {0.0, 1.0}


def test_frame_accuracy_alone_equals_the_accuracy_beside_the_nll():
    """``nll=False`` skips log Z but predicts the same frames (AIS draws from its own generator)."""
    torch.manual_seed(0)
    model = RNNRBM(6, 5, 4, seed=0)
    seqs = SequenceBatches([(torch.rand(n, 6) < 0.4).float() for n in (7, 5, 9)])
    full = evaluate_recurrent_rbm(model, seqs, max_bits=1, ais_chains=4, ais_betas=10, predict_steps=3, batch_size=1)
    alone = evaluate_recurrent_rbm(model, seqs, max_bits=1, predict_steps=3, batch_size=1, nll=False)
    assert full["frames"] == 21 and full["log_z"] == "ais"
    assert alone == {"frame_accuracy": full["frame_accuracy"], "frames": 21}
