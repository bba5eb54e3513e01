"""Training RTRBMs and RNN-RBMs on the common trainer, with optional pre-training and early
stopping on the validation NLL per step.

:func:`fit_recurrent_rbm` (Boulanger-Lewandowski et al. 2012, §5): optionally pre-train the
shared RBM (W, b, c) with CD-k on all training frames as one plain :class:`~boltzkit.models.RBM`
(one :class:`~boltzkit.training.Trainer` run), then, for the RNN-RBM, optionally its recurrent
cell alone as a next-step predictor with σ outputs (:func:`pretrain_recurrence`, one
:func:`~.training.fit_sequences` run), then train the whole model with
:class:`~.rnn_rbm.RecurrentRBMStep` (CD-k per step + BPTT of the free-energy surrogate) and an
optimizer over every parameter, keeping the epoch with the best validation NLL
(:class:`RecurrentRBMValidation`, exact log Z when small, else AIS).
"""

from __future__ import annotations

from typing import Any

import torch

from ...errors import ConfigurationError
from ...training import Callback, EarlyStopping, Trainer, TrainingConfig
from ...training.callbacks import PeriodicCallback
from ...validation import check_int
from .batches import SequenceBatches
from .rbm_evaluation import evaluate_recurrent_rbm
from .rnn_rbm import RNNRBM, RecurrentRBM, RecurrentRBMStep
from .training import fit_sequences, flush_denormals, make_optimizer


class RecurrentRBMValidation(PeriodicCallback):
    """Records ``valid_nll`` (nats per step, :func:`evaluate_recurrent_rbm`) every ``every`` epochs;
    with AIS its cost is ``ais_chains × ais_betas`` Gibbs sweeps per validation frame.

    With ``candidates`` (frames, e.g. the distinct training frames) it records instead the certain
    lower bound on the NLL (each Z_t summed over the candidates; no sampling, so no noise between
    epochs).  Where the steps put nearly all their mass on recurring frames (Nottingham) this is
    close to the NLL, whereas a short AIS schedule there is optimistic by a varying amount."""

    def __init__(self, data: SequenceBatches, every: int = 1, ais_chains: int = 8, ais_betas: int = 100,
                 max_bits: int = 20, name: str = "valid_nll", candidates: torch.Tensor | None = None) -> None:
        super().__init__(every)
        self.data, self.name, self.candidates = data, name, candidates
        self.options = dict(ais_chains=ais_chains, ais_betas=ais_betas, max_bits=max_bits, accuracy=False)

    def measure(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        if self.candidates is None:
            metrics[self.name] = evaluate_recurrent_rbm(trainer.model, self.data, **self.options)["nll_per_step"]
        else:
            metrics[self.name] = evaluate_recurrent_rbm(trainer.model, self.data, nll=False, accuracy=False,
                                                        candidates=self.candidates)["nll_lower_bound"]


def pretrain_rbm(model: RecurrentRBM, train: SequenceBatches, epochs: int, *, k: int = 1, lr: float = 0.01,
                 batch_size: int = 100, seed: int = 0, progress: bool = False) -> Trainer:
    """CD-k on every training frame for the shared RBM ``model.rbm`` (a plain RBM Trainer run)."""
    check_int("pretrain epochs", epochs, least=1)
    w = model.rbm.weight
    frames = torch.cat([s.reshape(-1, s.shape[-1]) for s in train.inputs]).to(w.device, w.dtype)
    trainer = Trainer(model.rbm, TrainingConfig(epochs=epochs, batch_size=batch_size, lr=lr, k=k, seed=seed),
                      progress=progress)
    trainer.fit(frames)
    return trainer


def pretrain_recurrence(model: RNNRBM, train: SequenceBatches, epochs: int, *, lr: float = 1e-3,
                        batch_size: int = 8, optimizer: str = "adam", seed: int = 0, threads: int | None = None,
                        progress: bool = False) -> Trainer:
    """The RNN-RBM's cell trained alone as a next-step predictor, ŷ_t = σ(V u_{t−1} + c) against
    v_t with cross-entropy (:func:`~.training.fit_sequences`, no early stopping): its input and
    recurrent weights start out carrying what predicts the next frame.  Only this stage uses the
    cell's output layer (V, c); it is frozen again afterwards.  The RTRBM has no separate
    recurrence (its state is the RBM's hidden means) and is refused."""
    check_int("pretrain_rnn_epochs", epochs, least=1)
    if not isinstance(model, RNNRBM):
        raise ConfigurationError("pre-training the recurrence is for the RNN-RBM: the RTRBM's recurrence is its "
                                 "RBM's hidden means")
    head = (model.cell.V, model.cell.c)
    for p in head:
        p.requires_grad_(True)
    try:
        return fit_sequences(model.cell, train, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                             patience=None, seed=seed, threads=threads, progress=progress)
    finally:
        for p in head:
            p.requires_grad_(False)
            p.grad = None


def fit_recurrent_rbm(model: RecurrentRBM, train: SequenceBatches, valid: SequenceBatches | None = None, *,
                      epochs: int = 50, batch_size: int = 8, lr: float = 1e-3, optimizer: str = "adam", k: int = 15,
                      patience: int | None = 5, pretrain_epochs: int = 0, pretrain_rnn_epochs: int = 0,
                      validate_every: int = 1,
                      ais_chains: int = 8, ais_betas: int = 100, valid_candidates: torch.Tensor | None = None,
                      lr_schedule: str = "constant", seed: int = 0, threads: int | None = None,
                      callbacks: list[Callback] = (), progress: bool = False,
                      resume: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None) -> Trainer:
    """Train ``model`` (module docstring); returns the trainer (``trainer.history``).  ``resume`` =
    ``trainer.training_state()`` of an interrupted run of the same settings: no pre-training,
    training continues from its epoch up to ``epochs`` in all.  ``valid_candidates``: validate with the
    certain lower bound over these frames (:class:`RecurrentRBMValidation`).  ``lr_schedule``: "constant" or a
    linear decay to zero over ``epochs`` (:data:`~boltzkit.training.config.LR_SCHEDULES`).
    ``pretrain_epochs`` / ``pretrain_rnn_epochs``: the two pre-training stages, RBM first, then the
    RNN-RBM's cell (:func:`pretrain_rbm`, :func:`pretrain_recurrence` at ``lr``)."""
    check_int("epochs", epochs, least=1)
    check_int("pretrain_epochs", pretrain_epochs, least=0)
    check_int("pretrain_rnn_epochs", pretrain_rnn_epochs, least=0)
    if valid_candidates is not None and valid is None:
        raise ConfigurationError("valid_candidates validates with the certain bound: give valid data too")
    if pretrain_rnn_epochs and not isinstance(model, RNNRBM):
        raise ConfigurationError("pretrain_rnn_epochs is for the RNN-RBM: the RTRBM's recurrence is its RBM's "
                                 "hidden means")
    if pretrain_epochs and resume is None:
        pretrain_rbm(model, train, pretrain_epochs, seed=seed, progress=progress)
    if pretrain_rnn_epochs and resume is None:
        pretrain_recurrence(model, train, pretrain_rnn_epochs, lr=lr, batch_size=batch_size, optimizer=optimizer,
                            seed=seed, threads=threads, progress=progress)
    config = TrainingConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, weight_decay=0.0,
                            lr_schedule=lr_schedule, init_visible_bias=not pretrain_epochs, threads=threads,
                            max_weight=1e4)
    extra: list[Callback] = []
    if valid is not None:
        extra.append(RecurrentRBMValidation(valid, validate_every, ais_chains, ais_betas, candidates=valid_candidates))
        extra.append(EarlyStopping("valid_nll", patience, mode="min", verbose=True))
    trainer = Trainer(model, config, estimator=RecurrentRBMStep(k), optimizer=make_optimizer(model, optimizer, lr),
                      callbacks=extra + list(callbacks), progress=progress)
    if resume is not None:
        trainer.load_training_state(*resume)
    with flush_denormals():
        trainer.fit(train)
    return trainer
