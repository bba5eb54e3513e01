"""``boltzkit sequence train|evaluate|diagnose`` end to end on a small synthetic .mat, and the
one-line exit-2 errors (nothing written)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.io
import torch

from boltzkit import checkpoint
from boltzkit.cli import main
from boltzkit.models.sequence import LSTM, RNN


def write_mat(path, **splits):
    out = {}
    for key, rolls in splits.items():
        cell = np.empty((1, len(rolls)), dtype=object)
        for i, r in enumerate(rolls):
            cell[0, i] = r
        out[key] = cell
    scipy.io.savemat(path, out)
    return path


def pieces(n, seed):
    """Arpeggios with a random start: predictable enough to learn in a few epochs."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        roll = np.zeros((int(rng.integers(10, 20)), 88), np.uint8)
        start = int(rng.integers(0, 4))
        for t in range(roll.shape[0]):
            roll[t, 40 + 4 * ((start + t) % 4)] = 1
        out.append(roll)
    return out


@pytest.fixture
def music(tmp_path):
    return write_mat(tmp_path / "toy.mat", traindata=pieces(24, 0), validdata=pieces(6, 1), testdata=pieces(6, 2))


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_train_evaluate_diagnose(tmp_path, music, capsys, kind):
    out = tmp_path / kind
    assert main(["sequence", "train", "--data", str(music), "--model", kind, "--hidden", "16", "--epochs", "15",
                 "--lr", "0.02", "--batch-size", "4", "--out", str(out), "--quiet"]) == 0
    for name in ("config.json", "model.safetensors", "metrics.csv", "curves.png", "test_metrics.json"):
        assert (out / name).is_file(), name
    model = checkpoint.load(out)
    assert isinstance(model, RNN if kind == "rnn" else LSTM)
    capsys.readouterr()
    assert main(["sequence", "evaluate", str(out), "--data", str(music), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["frames"] == sum(p.shape[0] for p in pieces(6, 2))
    # far below independent notes at the marginals (4 notes equally often: ≈ 4·H(1/4) ≈ 2.25 nats)
    assert result["nll_per_step"] < 1.5 and 0 <= result["frame_accuracy"] <= 1
    saved = json.loads((out / "test_metrics.json").read_text())
    assert abs(saved["test"]["nll_per_step"] - result["nll_per_step"]) < 1e-6
    for flags, message in ((["--predict", "map"], "--predict map"), (["--predict", "frame-mean"], "frame-mean"),
                           (["--lower-bound"], "--lower-bound"),
                           (["--accuracy-only"], "--accuracy-only"), (["--raise-chains", "2"], "--raise-chains"),
                           (["--lower-bound", "--mass-chains", "2"], "--lower-bound")):   # RNN-RBM options only
        assert main(["sequence", "evaluate", str(out), "--data", str(music), *flags]) == 2
        assert message in capsys.readouterr().err
    for flag in (["--frames-from", str(music)], ["--gibbs-steps", "5"]):     # RNN-RBM options only
        assert main(["sequence", "generate", str(out), *flag, "--npy", str(tmp_path / "x.npy")]) == 2
        assert flag[0] in capsys.readouterr().err and not (tmp_path / "x.npy").exists()
    assert main(["sequence", "diagnose", str(out), "--data", str(music), "--json"]) == 0
    flow = json.loads(capsys.readouterr().out)
    assert (out / "diagnostics.png").read_bytes()[:4] == b"\x89PNG"
    if kind == "rnn":
        bound = flow["bound_by_lag"]
        assert all(m <= b * (1 + 1e-6) for m, b in zip(flow["norm_max_by_lag"], bound) if m is not None)


def test_bptt_method_and_progress(tmp_path, music):
    out = tmp_path / "b"
    assert main(["sequence", "train", "--data", str(music), "--hidden", "8", "--epochs", "2", "--method", "bptt",
                 "--truncation", "5", "--clip", "1", "--out", str(out)]) == 0
    assert (out / "config.json").is_file()


@pytest.mark.parametrize("bad,message", [
    (np.full((4, 88), 3, np.uint8), "not a binary piano roll"),
    (np.zeros((4, 80), np.uint8), "80 columns"),
    (np.zeros((0, 88), np.uint8), "empty"),
    (np.full((4, 88), np.nan), "NaN"),
])
def test_bad_data_exits_2_and_writes_nothing(tmp_path, capsys, bad, message):
    data = write_mat(tmp_path / "bad.mat", traindata=pieces(2, 0) + [bad])
    out = tmp_path / "never"
    assert main(["sequence", "train", "--data", str(data), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("boltzkit: error:") and message in err and "\n" not in err
    assert not out.exists()


def test_other_errors_exit_2(tmp_path, music, capsys):
    assert main(["sequence", "train", "--data", str(tmp_path / "none.mat"), "--out", str(tmp_path / "x")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["sequence", "train", "--data", str(music), "--model", "lstm", "--method", "bptt",
                 "--out", str(tmp_path / "x")]) == 2
    assert "--model rnn" in capsys.readouterr().err
    assert main(["sequence", "evaluate", str(tmp_path / "nothing"), "--data", str(music)]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["sequence", "train", "--data", str(music), "--epochs", "0", "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_midi_directory_data(tmp_path, capsys):
    pytest.importorskip("mido")
    from boltzkit.data.music import piano_roll_to_midi

    folder = tmp_path / "midi"
    for split, seed in (("train", 0), ("valid", 1), ("test", 2)):
        (folder / split).mkdir(parents=True)
        for i, roll in enumerate(pieces(3, seed)):
            piano_roll_to_midi(roll, folder / split / f"{i}.mid", frames_per_beat=2)
    out = tmp_path / "m"
    assert main(["sequence", "train", "--data", str(folder), "--frames-per-beat", "2", "--hidden", "8",
                 "--epochs", "2", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["sequence", "evaluate", str(out), "--data", str(folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["frames"] == sum(p.shape[0] for p in pieces(3, 2))
    assert main(["sequence", "train", "--data", str(folder), "--frames-per-beat", "0",
                 "--out", str(tmp_path / "z")]) == 2
    assert "frames_per_beat" in capsys.readouterr().err


def test_evaluate_refuses_an_rbm_checkpoint(tmp_path, music, capsys):
    from boltzkit.models import RBM

    checkpoint.save(tmp_path / "rbm", RBM(88, 4))
    assert main(["sequence", "evaluate", str(tmp_path / "rbm"), "--data", str(music)]) == 2
    assert "not a recurrent network" in capsys.readouterr().err


@pytest.mark.parametrize("kind,extra", [("rnn-rbm", []), ("rnn-rbm", ["--recurrence", "lstm"]),
                                        ("rtrbm", ["--pretrain-epochs", "2", "--lr", "0.1"])])
def test_rbm_models_train_evaluate_generate(tmp_path, music, capsys, kind, extra):
    """RNN-RBM / RTRBM end to end; 8 hidden units, so every step's log Z is exact."""
    from boltzkit.models.sequence import RNNRBM, RTRBM

    out = tmp_path / "m"
    assert main(["sequence", "train", "--data", str(music), "--model", kind, "--hidden", "8", "--recurrent", "16",
                 "--epochs", "12", "--lr", "0.02", "--batch-size", "4", "--k", "5", "--out", str(out), "--quiet",
                 *extra]) == 0
    model = checkpoint.load(out)
    assert isinstance(model, RTRBM if kind == "rtrbm" else RNNRBM)
    if "lstm" in extra:
        assert model.recurrence == "lstm"
    capsys.readouterr()
    assert main(["sequence", "evaluate", str(out), "--data", str(music), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["log_z"] == "exact" and "nll_interval" not in result
    assert result["frames"] == sum(p.shape[0] for p in pieces(6, 2))
    # far below independent notes at the marginals (≈ 2.25 nats, see above)
    assert result["nll_per_step"] < 1.5 and 0 <= result["frame_accuracy"] <= 1
    saved = json.loads((out / "test_metrics.json").read_text())
    assert abs(saved["test"]["nll_per_step"] - result["nll_per_step"]) < 1e-6
    assert main(["sequence", "generate", str(out), "-n", "2", "--steps", "12", "--midi", str(tmp_path / "g.mid"),
                 "--png", str(tmp_path / "g.png"), "--npy", str(tmp_path / "g.npy")]) == 0
    rolls = np.load(tmp_path / "g.npy")
    assert rolls.shape == (2, 12, 88) and set(np.unique(rolls)) <= {0, 1}
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
    from boltzkit.data.music import distinct_frames, load_music, midi_to_piano_roll
    roll = midi_to_piano_roll(tmp_path / "g-1.mid")
    assert np.array_equal(roll[:12], rolls[0][:len(roll)])
    # every frame an exact draw among the training split's distinct frames in every key
    assert main(["sequence", "generate", str(out), "-n", "3", "--steps", "10", "--frames-from", str(music),
                 "--npy", str(tmp_path / "r.npy")]) == 0
    restricted = np.load(tmp_path / "r.npy")
    frames = torch.from_numpy(distinct_frames(load_music(music)["train"], 6))
    expected = model.generate(3, 10, generator=torch.Generator().manual_seed(0), candidates=frames)
    assert np.array_equal(restricted, expected.numpy().astype(np.uint8))
    assert main(["sequence", "generate", str(out), "--frames-from", str(music), "--gibbs-steps", "5",
                 "--npy", str(tmp_path / "x.npy")]) == 2
    assert "--gibbs-steps" in capsys.readouterr().err and not (tmp_path / "x.npy").exists()


def test_rbm_evaluate_with_ais_reports_an_interval(tmp_path, music, capsys):
    from boltzkit.models.sequence import RTRBM

    checkpoint.save(tmp_path / "m", RTRBM(88, 6, seed=0))
    assert main(["sequence", "evaluate", str(tmp_path / "m"), "--data", str(music), "--json", "--max-bits", "2",
                 "--ais-chains", "4", "--ais-betas", "20"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["log_z"] == "ais"
    low, high = result["nll_interval"]
    assert (low is None or low <= result["nll_per_step"]) and result["nll_per_step"] <= high
    assert main(["sequence", "evaluate", str(tmp_path / "m"), "--data", str(music), "--json", "--max-bits", "2",
                 "--accuracy-only"]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert alone["nll_per_step"] is None and "log_z" not in alone
    assert (alone["frame_accuracy"], alone["frames"]) == (result["frame_accuracy"], result["frames"])
    assert "nll_raise" not in result
    assert main(["sequence", "evaluate", str(tmp_path / "m"), "--data", str(music), "--json", "--max-bits", "2",
                 "--ais-chains", "4", "--ais-betas", "20", "--raise-chains", "2"]) == 0
    both = json.loads(capsys.readouterr().out)
    assert both["nll_per_step"] == result["nll_per_step"]          # the forward run is unchanged
    low, high = both["nll_raise_interval"]
    assert low < both["nll_raise"] < high
    assert main(["sequence", "evaluate", str(tmp_path / "m"), "--data", str(music), "--json", "--lower-bound"]) == 0
    exact = json.loads(capsys.readouterr().out)                    # 6 hidden units: log Z_t exact
    assert exact["log_z"] == "exact" and exact["nll_lower_bound"] < exact["nll_per_step"]
    assert main(["sequence", "evaluate", str(tmp_path / "m"), "--data", str(music), "--json", "--lower-bound",
                 "--accuracy-only"]) == 0
    assert json.loads(capsys.readouterr().out)["nll_lower_bound"] == exact["nll_lower_bound"]
    assert main(["sequence", "evaluate", str(tmp_path / "m"), "--data", str(music), "--raise-chains", "-1"]) == 2
    assert "--raise-chains" in capsys.readouterr().err
    # the most probable frame among the training split's distinct frames in every key
    from boltzkit.data.music import MAX_TRANSPOSE, distinct_frames, load_music
    from boltzkit.models.sequence import SequenceBatches, evaluate_recurrent_rbm

    # a model that favours the four arpeggio keys: the mode is one of them (accuracy > 0), while no
    # note reaches probability ½, so the thresholded mean predicts empty frames (accuracy 0)
    biased = RTRBM(88, 6, seed=0)
    with torch.no_grad():
        biased.rbm.visible.bias.fill_(-6.0)
        biased.rbm.visible.bias[[40, 44, 48, 52]] = 1.0
    checkpoint.save(tmp_path / "biased", biased)
    assert main(["sequence", "evaluate", str(tmp_path / "biased"), "--data", str(music), "--json", "--predict", "map",
                 "--accuracy-only"]) == 0
    mapped = json.loads(capsys.readouterr().out)
    splits = load_music(music)
    modes = torch.from_numpy(distinct_frames(splits["train"], MAX_TRANSPOSE))
    test = SequenceBatches([torch.from_numpy(r).float() for r in splits["test"]])
    expected = evaluate_recurrent_rbm(biased, test, predict_candidates=modes, nll=False)
    assert mapped["frame_accuracy"] == pytest.approx(expected["frame_accuracy"], abs=1e-12)
    assert main(["sequence", "evaluate", str(tmp_path / "biased"), "--data", str(music), "--json", "--predict",
                 "frame-mean", "--accuracy-only"]) == 0
    meaned = json.loads(capsys.readouterr().out)
    expected = evaluate_recurrent_rbm(biased, test, predict_candidates=modes, predict_rule="mean", nll=False)
    assert meaned["frame_accuracy"] == pytest.approx(expected["frame_accuracy"], abs=1e-12)
    assert mapped["frame_accuracy"] > 0.1 and meaned["frame_accuracy"] == 0.0
    assert main(["sequence", "evaluate", str(tmp_path / "m"), "--data", str(music), "--json", "--lower-bound",
                 "--mass-chains", "4", "--mass-sweeps", "3"]) == 0
    massed = json.loads(capsys.readouterr().out)
    assert massed["nll_lower_bound"] == pytest.approx(exact["nll_lower_bound"], abs=1e-12)
    # an untrained RTRBM spreads over all 2^88 frames: no chain stays on a candidate, no tighter bound
    assert massed["candidate_mass"] == 0.0 and massed["nll_lower_bound_mass"] is None
    model = checkpoint.load(tmp_path / "m")
    with torch.no_grad():                        # nearly every step's mass on one test frame, a candidate
        model.rbm.visible.bias.copy_(torch.from_numpy(splits["test"][0][0]).double() * 16 - 8)
    checkpoint.save(tmp_path / "sharp", model)
    assert main(["sequence", "evaluate", str(tmp_path / "sharp"), "--data", str(music), "--json", "--lower-bound",
                 "--mass-chains", "4", "--mass-sweeps", "3"]) == 0
    sharp = json.loads(capsys.readouterr().out)
    assert 0.5 < sharp["candidate_mass"] <= 1 and sharp["candidate_mass_se"] >= 0
    assert sharp["nll_lower_bound_mass"] == pytest.approx(
        sharp["nll_lower_bound"] - math.log(sharp["candidate_mass"]), abs=1e-12)
    noise = 4 * sharp["candidate_mass_se"] / sharp["candidate_mass"]      # of −log candidate_mass
    assert sharp["nll_lower_bound"] <= sharp["nll_lower_bound_mass"] <= sharp["nll_per_step"] + noise
    assert main(["sequence", "evaluate", str(tmp_path / "m"), "--data", str(music), "--mass-chains", "4"]) == 2
    assert "--lower-bound" in capsys.readouterr().err
    assert main(["sequence", "evaluate", str(tmp_path / "m"), "--data", str(music), "--lower-bound",
                 "--mass-sweeps", "5"]) == 2
    assert "--mass-chains" in capsys.readouterr().err


def test_rbm_bad_options_exit_2_and_write_nothing(tmp_path, music, capsys):
    for args, message in ((["--model", "rtrbm", "--recurrence", "lstm"], "--recurrence"),
                          (["--model", "rnn", "--recurrence", "lstm"], "--recurrence"),
                          (["--model", "rnn-rbm", "--k", "0"], "--k"),
                          (["--model", "rnn-rbm", "--method", "bptt"], "--method"),
                          (["--model", "lstm", "--valid-bound"], "--valid-bound"),
                          (["--model", "rnn", "--k", "3"], "--k is an option of --model rnn-rbm|rtrbm"),
                          (["--model", "lstm", "--pretrain-epochs", "2"], "--pretrain-epochs"),
                          (["--model", "rtrbm", "--pretrain-rnn-epochs", "2"], "--pretrain-rnn-epochs"),
                          (["--model", "rnn-rbm", "--pretrain-rnn-epochs", "-1"], "--pretrain-rnn-epochs"),
                          (["--model", "rnn-rbm", "--valid-bound", "--valid-split", "none"], "--valid-bound")):
        out = tmp_path / "never"
        assert main(["sequence", "train", "--data", str(music), "--out", str(out), "--quiet", *args]) == 2
        assert message in capsys.readouterr().err
        assert not (out / "config.json").exists()
    checkpoint.save(tmp_path / "m", __import__("boltzkit").models.sequence.RTRBM(88, 4))
    assert main(["sequence", "generate", str(tmp_path / "m"), "--steps", "0", "--png", str(tmp_path / "x.png")]) == 2
    assert main(["sequence", "generate", str(tmp_path / "m")]) == 2
    assert "--midi" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_rbm_validation_by_the_certain_bound_with_a_linear_schedule(tmp_path, music, capsys):
    """--valid-bound: the validation NLL of each epoch is the certain lower bound over the training
    split's distinct frames (here with --transpose 1: the shifted frames too), the best epoch is kept,
    and both settings are recorded for --resume."""
    from boltzkit.data.music import distinct_frames, load_music
    from boltzkit.models.sequence import SequenceBatches, evaluate_recurrent_rbm

    out = tmp_path / "m"
    assert main(["sequence", "train", "--data", str(music), "--model", "rnn-rbm", "--hidden", "6", "--recurrent",
                 "8", "--epochs", "3", "--lr", "0.02", "--batch-size", "4", "--k", "2", "--transpose", "1",
                 "--valid-bound", "--lr-schedule", "linear", "--out", str(out), "--quiet"]) == 0
    settings = json.loads((out / "config.json").read_text())["settings"]
    assert settings["valid_bound"] is True and settings["lr_schedule"] == "linear"
    rows = (out / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    valid = [float(r.split(",")[header.index("valid_nll")]) for r in rows[1:]]
    lrs = [float(r.split(",")[header.index("lr")]) for r in rows[1:]]
    assert lrs == pytest.approx([0.02 * (1 - e / 3) for e in (1, 2, 3)], abs=1e-9)
    splits = load_music(music)
    candidates = torch.from_numpy(distinct_frames(splits["train"], 1))
    kept = checkpoint.load(out)
    bound = evaluate_recurrent_rbm(kept, SequenceBatches([torch.from_numpy(r).float() for r in splits["valid"]]),
                                   candidates=candidates, nll=False)["nll_lower_bound"]
    assert min(valid) == pytest.approx(bound, abs=1e-6)


def test_transpose_augments_the_training_split_only(tmp_path, music, capsys, monkeypatch):
    """--transpose N trains on every training piece at −N..+N semitones (the toy arpeggios sit in
    keys 40–52: all shifts fit), is a setting of the run, and is refused outside 0..6."""
    import boltzkit.cli.sequence as sequence_cli

    seen = {}
    real_fit = sequence_cli.fit_sequences

    def spy(model, train, valid, **kwargs):
        seen["train"], seen["valid"] = len(train), len(valid)
        return real_fit(model, train, valid, **kwargs)

    monkeypatch.setattr(sequence_cli, "fit_sequences", spy)
    base = ["sequence", "train", "--data", str(music), "--hidden", "6", "--batch-size", "4", "--epochs", "1",
            "--quiet"]
    assert main([*base, "--transpose", "2", "--out", str(tmp_path / "run")]) == 0
    assert seen == {"train": 24 * 5, "valid": 6}
    assert json.loads((tmp_path / "run" / "config.json").read_text())["settings"]["transpose"] == 2
    capsys.readouterr()
    assert main([*base, "--epochs", "2", "--transpose", "1", "--resume", str(tmp_path / "run"),
                 "--out", str(tmp_path / "again")]) == 2
    assert "--transpose 1 (the run has 2)" in capsys.readouterr().err
    # a run written before --lr-schedule existed ran at a constant rate: a typed schedule contradicts it
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    del config["settings"]["lr_schedule"]
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    assert main([*base, "--epochs", "2", "--lr-schedule", "linear", "--resume", str(tmp_path / "run"),
                 "--out", str(tmp_path / "again")]) == 2
    assert "--lr-schedule linear (the run has constant)" in capsys.readouterr().err
    for bad in ("-1", "7"):
        assert main([*base, "--transpose", bad, "--out", str(tmp_path / "never")]) == 2
        assert "--transpose" in capsys.readouterr().err
        assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("kind,extra", [("rnn", ["--hidden", "12"]), ("rnn", ["--hidden", "12", "--transpose", "1"]),
                                        ("rnn-rbm", ["--hidden", "6", "--recurrent", "8", "--k", "2",
                                                     "--pretrain-epochs", "1", "--pretrain-rnn-epochs", "1"]),
                                        ("rnn-rbm", ["--hidden", "6", "--recurrent", "8", "--k", "2",
                                                     "--recurrence", "lstm"]),
                                        ("rtrbm", ["--hidden", "6", "--k", "2", "--pretrain-epochs", "1"])])
def test_resumed_run_equals_the_uninterrupted_run_bit_for_bit(tmp_path, music, kind, extra):
    """Every epoch's checkpoint carries the trainer's state; --resume continues it (settings from the
    checkpoint, --epochs the new total) and ends exactly where the uninterrupted run ends, with the
    whole history.  Validation and early stopping stay on (patience not reached)."""
    def train(epochs, out, *more):
        argv = ["sequence", "train", "--data", str(music), "--model", kind, "--epochs", str(epochs), "--lr", "0.02",
                "--batch-size", "4", "--patience", "50", "--out", str(out), "--quiet", *more]
        assert main(argv) == 0

    train(4, tmp_path / "full", *extra)
    train(2, tmp_path / "half", *extra)
    train(4, tmp_path / "resumed", "--resume", str(tmp_path / "half"))   # no model options: from the checkpoint
    full, resumed = checkpoint.load(tmp_path / "full"), checkpoint.load(tmp_path / "resumed")
    assert type(full) is type(resumed)
    for (name, a), b in zip(full.checkpoint_tensors().items(), resumed.checkpoint_tensors().values()):
        assert torch.equal(a, b), name
    half = checkpoint.load(tmp_path / "half")
    assert not torch.equal(next(iter(half.checkpoint_tensors().values())),
                           next(iter(full.checkpoint_tensors().values())))     # the second half did train
    rows = (tmp_path / "resumed" / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 4


def test_resume_without_training_state_exits_2_and_writes_nothing(tmp_path, music, capsys):
    checkpoint.save(tmp_path / "bare", RNN(88, 4, output="sigmoid", loss="cross_entropy", task="next_step"))
    assert main(["sequence", "train", "--data", str(music), "--resume", str(tmp_path / "bare"), "--out",
                 str(tmp_path / "never"), "--quiet"]) == 2
    assert "holds no training state" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_rnn_run_saved_with_an_rbm_only_setting_still_resumes(tmp_path, music):
    """Runs written before --model rnn refused --k and the like saved the value it ignored: --resume
    takes the run's settings as they were accepted, so such a run continues instead of failing."""
    base = ["sequence", "train", "--data", str(music), "--hidden", "6", "--batch-size", "4", "--quiet"]
    assert main([*base, "--epochs", "1", "--out", str(tmp_path / "run")]) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    config["settings"]["k"] = 3
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    assert main([*base, "--epochs", "2", "--resume", str(tmp_path / "run"), "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "model.safetensors").exists()


def test_resume_refuses_a_flag_that_contradicts_the_run(tmp_path, music, capsys):
    """The saved run's settings are the run's: a typed one that differs is an error (it was
    silently replaced by the saved value), repeating the saved value is fine."""
    base = ["sequence", "train", "--data", str(music), "--hidden", "6", "--batch-size", "4", "--quiet"]
    assert main([*base, "--epochs", "1", "--lr", "0.02", "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    for flags, named in ((["--lr", "0.5"], "--lr 0.5 (the run has 0.02)"),
                         (["--model", "lstm"], "--model lstm (the run has rnn)"),
                         (["--patience", "3"], "--patience 3 (the run has 10)")):
        out = tmp_path / "again"
        assert main([*base, "--epochs", "2", "--resume", str(tmp_path / "run"), *flags, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert named in err and len(err.strip().splitlines()) == 1
        assert not out.exists()
    assert main([*base, "--epochs", "2", "--lr", "0.02", "--resume", str(tmp_path / "run"),
                 "--out", str(tmp_path / "ok")]) == 0


def test_resume_keeps_a_run_without_validation_without_it(tmp_path, music, capsys):
    """--valid-split none is a setting of the run: the resumed run keeps it (no early stopping
    switched on behind the user's back) and a typed --valid-split valid is refused."""
    base = ["sequence", "train", "--data", str(music), "--hidden", "6", "--batch-size", "4", "--quiet"]
    assert main([*base, "--epochs", "1", "--valid-split", "none", "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    assert main([*base, "--epochs", "2", "--valid-split", "valid", "--resume", str(tmp_path / "run"),
                 "--out", str(tmp_path / "no")]) == 2
    assert "--valid-split valid (the run has none)" in capsys.readouterr().err
    assert main([*base, "--epochs", "2", "--resume", str(tmp_path / "run"), "--out", str(tmp_path / "ok")]) == 0
    config = json.loads((tmp_path / "ok" / "config.json").read_text())
    assert config["settings"]["valid_split"] == "none"
