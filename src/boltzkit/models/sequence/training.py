"""Training recurrent models on the common trainer, with early stopping on a validation set.

:func:`evaluate_sequences` gives the pooled per-step loss (for σ outputs with cross-entropy:
the negative log-likelihood in nats per time step, Σ_frames −log p(v_t | v_<t) / #frames, as
Boulanger-Lewandowski et al. 2012) and, for multi-label frames, the frame accuracy of
Bay et al. (2009), TP / (TP + FP + FN) summed over all frames, the prediction being
ŷ_{t,i} > ``threshold``.  :class:`ValidationLoss` records it per epoch so that
:class:`~boltzkit.training.EarlyStopping` can keep the best epoch; :func:`fit_sequences` wires
model, :class:`~.batches.SequenceBatches`, :class:`~.steps.SequenceStep` and the callbacks
into one :class:`~boltzkit.training.Trainer` run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from ...training import Callback, EarlyStopping, Trainer, TrainingConfig
from ...training.callbacks import PeriodicCallback
from ...training.threads import threads_for_update, torch_threads
from ...validation import check_choice, check_float, check_int
from .base import SequenceModel
from .batches import SequenceBatches
from .steps import SequenceStep


def _flushing() -> bool:
    """Whether the CPU currently flushes denormal floats to zero (no getter exists: test it)."""
    return float(torch.tensor([1e-20]) * torch.tensor([1e-20])) == 0.0


@contextlib.contextmanager
def flush_denormals() -> Iterator[None]:
    """Flush denormal floats to zero inside the block, then restore the previous setting.

    Vanishing gradients of a recurrent net reach the denormal range (< 1.2e-38 in float32) after
    a few hundred steps, where CPU arithmetic takes a slow path: the backward pass of a tanh RNN
    at T = 200 was measured 8× slower without flushing.  Values that small carry no gradient."""
    before = _flushing()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


@torch.no_grad()
def evaluate_sequences(model: SequenceModel, data: SequenceBatches, batch_size: int = 64,
                       threshold: float = 0.5) -> dict[str, float]:
    """``loss_per_step`` (= ``nll_per_step`` for cross-entropy), ``frames`` and, for sigmoid
    outputs, ``frame_accuracy`` (module docstring); squared-error models report ``mse``."""
    check_float("threshold", threshold, 0.0, 1.0)
    first = next(model.parameters())
    data = data.to(first.device, first.dtype)
    total, count, tp, fp, fn, correct = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    for batch in data.chunks(batch_size):
        x, y, w = model.prepare(batch)
        hs, _ = model.run(x)
        field = model.output_field(hs)
        total += float((model.step_losses(field, y) * w).sum())
        count += float(w.sum())
        scored = w.unsqueeze(-1) > 0
        if model.output_kind == "sigmoid":
            guess = (torch.sigmoid(field) > threshold) & scored
            truth = (y > 0.5) & scored
            tp += float((guess & truth).sum())
            fp += float((guess & ~truth).sum())
            fn += float((~guess & truth).sum())
        elif model.output_kind == "softmax":
            correct += float(((field.argmax(-1) == y.argmax(-1)) & scored[..., 0]).sum())
    out: dict[str, float] = {"frames": count}
    mean = total / max(count, 1.0)
    if model.loss_kind == "cross_entropy":
        out["nll_per_step"] = mean
    else:
        out["mse"] = mean
    out["loss_per_step"] = mean
    if model.output_kind == "sigmoid":
        out["frame_accuracy"] = tp / max(tp + fp + fn, 1.0)
    elif model.output_kind == "softmax":
        out["accuracy"] = correct / max(count, 1.0)
    return out


class ValidationLoss(PeriodicCallback):
    """Records ``valid_loss`` (per step) of a held-out :class:`SequenceBatches` every ``every`` epochs."""

    def __init__(self, data: SequenceBatches, every: int = 1, name: str = "valid_loss",
                 batch_size: int = 64) -> None:
        super().__init__(every)
        self.data, self.name, self.batch_size = data, name, batch_size

    def measure(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        model = trainer.model
        threads = trainer.config.threads or threads_for_update(self.batch_size, model.work_per_row(), 1,
                                                               trainer.device)
        with torch_threads(threads):
            metrics[self.name] = evaluate_sequences(model, self.data, self.batch_size)["loss_per_step"]


def make_optimizer(model: SequenceModel, name: str, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam (default for recurrent nets), RMSprop or SGD with momentum 0.9 on every parameter."""
    check_choice("optimizer", name, ("adam", "rmsprop", "sgd"))
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)


def fit_sequences(model: SequenceModel, train: SequenceBatches, valid: SequenceBatches | None = None, *,
                  epochs: int = 50, batch_size: int = 16, lr: float = 1e-3, optimizer: str = "adam",
                  clip: float | None = None, method: str = "autograd", truncation: int | None = None,
                  patience: int | None = 5, lr_schedule: str = "constant", seed: int = 0,
                  threads: int | None = None, callbacks: list[Callback] = (), progress: bool = False,
                  max_weight: float = 1e4, init_output_bias: bool = True,
                  resume: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None) -> Trainer:
    """Train on ``train`` with the common trainer; with ``valid``, early stopping on the
    validation loss per step (``patience`` epochs; the best epoch is restored); the output bias
    starts at the targets' mean (``init_output_bias``, the trainer's ``init_from_data``).
    ``resume`` = ``trainer.training_state()`` of an interrupted run of the same settings: training
    continues from its epoch up to ``epochs`` in all (early stopping starts a new patience window).
    Returns the trainer (``trainer.history``, ``trainer.model``)."""
    check_int("epochs", epochs, least=1)
    config = TrainingConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, lr_schedule=lr_schedule,
                            weight_decay=0.0, init_visible_bias=init_output_bias, threads=threads,
                            max_weight=max_weight)
    step = SequenceStep(method, clip, truncation)
    extra: list[Callback] = []
    if valid is not None:
        extra.append(ValidationLoss(valid))
        extra.append(EarlyStopping("valid_loss", patience, mode="min", verbose=True))
    trainer = Trainer(model, config, estimator=step, optimizer=make_optimizer(model, optimizer, lr),
                      callbacks=extra + list(callbacks), progress=progress)
    if resume is not None:
        trainer.load_training_state(*resume)
    with flush_denormals():
        trainer.fit(train)
    return trainer
