"""``TrainingConfig.precision`` (float32 / tf32 / bf16) and the host-synchronisation audit of the batch loop.

tf32 and bf16 are real on this CPU only where oneDNN has bf16 kernels (AMX, avx512_bf16); elsewhere
torch emulates them, and the tests still hold: they compare with the float32 run, not with numbers.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from boltzkit import RBM, Trainer, TrainingConfig, cli, exact
from boltzkit.errors import ConfigurationError
from boltzkit.models.rbm import RBM as RBMClass
from boltzkit.training.callbacks import Callback
from boltzkit.training.gradient import ContrastiveDivergence
from conftest import record_host_reads

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _data(rows: int = 400, width: int = 16) -> torch.Tensor:
    """Four noisy prototypes: a distribution an RBM with a few hidden units learns visibly."""
    g = torch.Generator().manual_seed(0)
    proto = (torch.rand(4, width, generator=g) < 0.5).float()
    pick = proto[torch.randint(4, (rows,), generator=g)]
    return torch.where(torch.rand(rows, width, generator=g) < 0.1, 1 - pick, pick)


def _train(data: torch.Tensor, **options) -> RBM:
    rbm = RBM(data.shape[1], 6, seed=0)
    config = dict(epochs=10, batch_size=20, lr=0.1, replicas=3) | options
    Trainer(rbm, TrainingConfig(**config)).fit(data)
    return rbm


def _matmul_setting() -> tuple[str, ...]:
    """Every global knob the tf32 precision may turn (the new per-backend API where torch has it)."""
    mkldnn = getattr(torch.backends.mkldnn, "matmul", None)
    if mkldnn is not None and hasattr(mkldnn, "fp32_precision"):
        return mkldnn.fp32_precision, torch.backends.cuda.matmul.fp32_precision
    return (torch.get_float32_matmul_precision(),)


# -- the option ------------------------------------------------------------------------------
def test_an_unknown_precision_is_refused_in_one_line():
    with pytest.raises(ConfigurationError) as info:
        TrainingConfig(precision="fp8")
    assert str(info.value) == "precision must be one of 'float32', 'tf32', 'bf16', got 'fp8'"


def test_float32_is_bit_identical_to_not_giving_the_option():
    data = _data()
    default, explicit = _train(data, method="pcd"), _train(data, method="pcd", precision="float32")
    for name, p in default.named_tensors().items():
        assert torch.equal(explicit.named_tensors()[name], p), name


@pytest.mark.parametrize("method", ["pcd", "cd", "pt"])
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_reduced_precision_trains_close_to_float32(method, precision):
    """Tolerance: the float32 run with another sampling seed.  Rounding the products (≤ 2⁻⁸ relative)
    flips only draws whose uniform lies within that margin of p, and the runs share their random
    stream, so the reduced-precision run must stay well inside the estimator's own seed-to-seed
    noise: max |ΔW| below half of it (measured: ≈ 0.05 of it for bf16, 0 for tf32 on this CPU,
    where oneDNN keeps a 16 × 6 product in float32), and the exact log-likelihood within 0.05 nats
    (measured: ≤ 0.006)."""
    data = _data()
    reference = _train(data, method=method)
    other_seed = _train(data, method=method, seed=1)
    reduced = _train(data, method=method, precision=precision)
    assert all(bool(torch.isfinite(p).all()) and p.dtype == torch.float32 for p in reduced.parameters())
    noise = float((other_seed.weight - reference.weight).detach().abs().max())
    assert float((reduced.weight - reference.weight).detach().abs().max()) < 0.5 * noise
    assert abs(exact.log_likelihood(reduced, data) - exact.log_likelihood(reference, data)) < 0.05


def test_bf16_runs_the_chains_in_bfloat16_and_keeps_the_rest_float32(monkeypatch):
    fields: list[torch.dtype] = []
    hidden_field = RBMClass.hidden_field

    def spy(self, v):
        field = hidden_field(self, v)
        fields.append(field.dtype)
        return field

    monkeypatch.setattr(RBMClass, "hidden_field", spy)
    rbm = RBM(16, 6, seed=0)
    trainer = Trainer(rbm, TrainingConfig(epochs=1, batch_size=20, precision="bf16"))
    trainer.fit(_data(100))
    assert torch.bfloat16 in fields and torch.float32 in fields  # chains, and the positive phase
    assert "advance" not in vars(rbm)  # the model is left as it was
    assert all(t.dtype == torch.float32 for t in trainer.estimator.state_dict().values())
    assert all(s["momentum_buffer"].dtype == torch.float32 for s in trainer.optimizer.state_dict()["state"].values())


class _StopAt(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer, epoch, metrics):
        trainer.stop = trainer.stop or epoch == self.epoch


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_a_reduced_precision_run_resumes_bit_for_bit(tmp_path, precision):
    from boltzkit import checkpoint as io

    data = _data(60)
    config = TrainingConfig(epochs=4, batch_size=20, lr=0.1, precision=precision)
    whole = RBM(16, 5, seed=2)
    Trainer(whole, config).fit(data)
    first = Trainer(RBM(16, 5, seed=2), config, callbacks=[_StopAt(2)])
    first.fit(data)
    tensors, state = first.training_state()
    io.save(tmp_path, first.rbm, extra={"training": config.to_dict(), "training_state": state}, state=tensors)
    rbm, saved, saved_tensors = io.load_checkpoint(tmp_path, training_state=True)
    assert saved["training"]["precision"] == precision
    second = Trainer(rbm, TrainingConfig.from_dict(saved["training"]))
    second.load_training_state(saved_tensors, saved["training_state"])
    second.fit(data)
    for name, p in whole.named_tensors().items():
        assert torch.equal(rbm.named_tensors()[name], p), name


def test_reduced_precision_needs_a_float32_model_and_bf16_needs_chains():
    with pytest.raises(ConfigurationError, match="applies to float32 models; this one is float64"):
        Trainer(RBM(8, 3, dtype=torch.float64), TrainingConfig(precision="tf32"))

    class Regression(nn.Linear):
        """The least a loss-trained model needs (as the RNN and GAN models have)."""

        def loss(self, batch):
            return self(batch.values).pow(2).mean()

        def decay_parameters(self):
            return [self.weight]

        def check_data(self, values, name="data"):
            pass

        def init_from_data(self, mean):
            pass

    with pytest.raises(ConfigurationError, match="has none"):
        Trainer(Regression(4, 1), TrainingConfig(precision="bf16"))
    with pytest.raises(ConfigurationError, match="round the chains' gaussian values"):
        Trainer(RBM(8, 3, visible="gaussian"), TrainingConfig(precision="bf16"))
    Trainer(Regression(4, 1), TrainingConfig(epochs=1, batch_size=10, precision="tf32")).fit(torch.rand(30, 4))


# -- the global matmul setting ---------------------------------------------------------------
def test_tf32_sets_the_matmul_precision_only_while_the_batches_run(monkeypatch):
    before = _matmul_setting()
    inside: list[tuple[str, ...]] = []
    run_epoch = Trainer._run_epoch

    def spy(self, *args, **kwargs):
        inside.append(_matmul_setting())
        return run_epoch(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_run_epoch", spy)
    seen_by_callbacks: list[tuple[str, ...]] = []

    class Watch(Callback):
        def on_epoch_end(self, trainer, epoch, metrics):
            seen_by_callbacks.append(_matmul_setting())

    Trainer(RBM(16, 6, seed=0), TrainingConfig(epochs=2, batch_size=20, precision="tf32"),
            callbacks=[Watch()]).fit(_data(100))
    assert inside and all(s != before for s in inside)
    assert seen_by_callbacks == [before, before] and _matmul_setting() == before


def test_code_inside_a_tf32_epoch_can_still_read_the_matmul_setting(monkeypatch):
    """torch.compile and user callbacks call torch.get_float32_matmul_precision(); the context must not
    put torch into its 'mixed legacy and new API' state, where that call raises."""
    read: list[str] = []
    step = ContrastiveDivergence.step

    def reading_step(self, *args, **kwargs):
        read.append(torch.get_float32_matmul_precision())
        return step(self, *args, **kwargs)

    monkeypatch.setattr(ContrastiveDivergence, "step", reading_step)
    Trainer(RBM(16, 6, seed=0), TrainingConfig(epochs=1, batch_size=20, method="cd", precision="tf32")).fit(_data(60))
    assert read == ["medium"] * 3 and torch.get_float32_matmul_precision() != "medium"


def test_bf16_chains_are_undone_after_an_error(monkeypatch):
    rbm = RBM(16, 6, seed=0)
    trainer = Trainer(rbm, TrainingConfig(epochs=1, batch_size=20, method="cd", precision="bf16"))

    def broken(*args, **kwargs):
        assert "advance" in vars(rbm)  # the bf16 sweeps are in place while the batches run
        raise ValueError("boom")

    monkeypatch.setattr(trainer.estimator, "step", broken)
    with pytest.raises(ValueError, match="boom"):
        trainer.fit(_data(60))
    assert "advance" not in vars(rbm)


def test_the_matmul_setting_is_restored_after_an_error_and_from_a_non_default_value(monkeypatch):
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        before = _matmul_setting()
        trainer = Trainer(RBM(16, 6, seed=0), TrainingConfig(epochs=1, batch_size=20, precision="tf32"))

        def broken(*args, **kwargs):
            raise ValueError("boom")

        monkeypatch.setattr(trainer.estimator, "step", broken)
        with pytest.raises(ValueError, match="boom"):
            trainer.fit(_data(100))
        assert _matmul_setting() == before and torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(previous)


# -- host synchronisation in the batch loop --------------------------------------------------


@pytest.mark.parametrize("method", ["cd", "pcd", "fpcd"])
@pytest.mark.parametrize("precision", ["float32", "bf16"])
def test_the_batch_loop_reads_nothing_back_to_the_host(monkeypatch, method, precision):
    """On the CPU a read-back is free, but the same call on CUDA waits for the GPU: count the Tensor
    methods that read a value (item, float(t), if t, int(t), tolist) while the batches of an epoch
    run, with the divergence check (every ``check_every`` batches) out of reach."""
    calls = record_host_reads(monkeypatch)
    run_epoch = Trainer._run_epoch
    counting: list[int] = []

    def spy(self, *args, **kwargs):
        start = len(calls)
        run_epoch(self, *args, **kwargs)
        counting.append(len(calls) - start)

    monkeypatch.setattr(Trainer, "_run_epoch", spy)
    config = TrainingConfig(epochs=2, batch_size=10, method=method, precision=precision)
    Trainer(RBM(16, 6, seed=0), config).fit(_data(100), check_every=1000)
    assert counting == [0, 0], calls
    Trainer(RBM(16, 6, seed=0), config).fit(_data(100), check_every=1)  # the counter sees the check's reads
    assert counting[2] == 100 // 10  # the divergence check reads its numbers back once per check


@cuda
@pytest.mark.parametrize("method", ["cd", "pcd", "fpcd"])
@pytest.mark.parametrize("precision", ["float32", "tf32", "bf16"])
def test_the_batch_loop_never_synchronises_with_the_gpu(monkeypatch, method, precision):
    """torch's sync debug mode turns every synchronising call (a read-back, a blocking copy) into an
    error while an epoch's batches run (the first epoch too: chains start on the device)."""
    run_epoch = Trainer._run_epoch

    def strict(self, *args, **kwargs):
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            return run_epoch(self, *args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    monkeypatch.setattr(Trainer, "_run_epoch", strict)
    data = _data(200).to("cuda")
    rbm = RBM(16, 6, seed=0, device="cuda")
    Trainer(rbm, TrainingConfig(epochs=2, batch_size=20, method=method, precision=precision)).fit(
        data, check_every=1000)
    assert all(bool(torch.isfinite(p).all()) for p in rbm.parameters())


# -- the command line ------------------------------------------------------------------------
def test_cli_trains_with_bf16_and_saves_the_setting(tmp_path, small_data):
    out = tmp_path / "run"
    assert cli.main(["train", "--data", str(small_data), "--hidden", "4", "--epochs", "2", "--batch-size", "20",
                     "--precision", "bf16", "--quiet", "--out", str(out), "--device", "cpu"]) == 0
    assert json.loads((out / "config.json").read_text())["training"]["precision"] == "bf16"
    assert cli.main(["train", "--data", str(small_data), "--epochs", "3", "--resume", str(out),
                     "--quiet", "--out", str(out), "--device", "cpu"]) == 0
    assert json.loads((out / "config.json").read_text())["training"]["precision"] == "bf16"


def test_cli_refuses_an_unknown_precision_in_one_line(tmp_path, small_data, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "--data", str(small_data), "--precision", "fp8", "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "boltzkit: error: --precision must be one of 'float32', 'tf32', 'bf16', got 'fp8'"
    assert not out.exists()
