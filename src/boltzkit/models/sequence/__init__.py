"""Recurrent networks (and the RTRBM / RNN-RBM of :mod:`.rnn_rbm`): the lecture's RNN with explicit BPTT,
the LSTM, gradient-flow diagnostics.

- :class:`RNN`, :class:`LSTM` (:mod:`.rnn`, :mod:`.lstm`): cells driven one step at a time
  (``initial_state``, ``step``, ``hidden``) plus an output layer and the labelling
  configurations (:mod:`.base`); both are :class:`~boltzkit.models.LossModel` s.
- :func:`bptt_gradients` (:mod:`.bptt`): back-propagation through time written out, optionally
  truncated; :class:`SequenceStep` (:mod:`.steps`) trains by it or by autograd, with clipping.
- :func:`gradient_flow`, :func:`plot_gradient_flow` (:mod:`.diagnostics`): ‖∂h_t/∂h_k‖ against
  the bound (β_W β_s)^{t−k}, and per-lag gradient contributions.
- :class:`SequenceBatches` (:mod:`.batches`): padded batches with a mask for the trainer;
  :func:`fit_sequences`, :func:`evaluate_sequences` (:mod:`.training`).
"""

from .base import LOSSES, OUTPUTS, TASKS, SequenceModel
from .batches import SequenceBatches, pad_sequences
from .bptt import bptt_gradients, output_error
from .diagnostics import (
    GradientFlow,
    gradient_flow,
    jacobian_norms,
    lag_contribution_matrices,
    lag_contributions,
    plot_gradient_flow,
)
from .lstm import LSTM
from .rbm_evaluation import (
    candidate_log_partition,
    candidate_mass,
    candidate_mean,
    evaluate_recurrent_rbm,
    most_probable_candidate,
)
from .rbm_training import RecurrentRBMValidation, fit_recurrent_rbm, pretrain_rbm, pretrain_recurrence
from .rnn import RNN
from .rnn_rbm import RNNRBM, RTRBM, RecurrentRBM, RecurrentRBMStep, exact_log_likelihood, log_partition_enumerated
from .steps import SequenceStep
from .training import ValidationLoss, evaluate_sequences, fit_sequences, make_optimizer

__all__ = ["RNN", "LSTM", "SequenceModel", "SequenceBatches", "SequenceStep", "GradientFlow", "TASKS", "OUTPUTS",
           "LOSSES", "bptt_gradients", "output_error", "gradient_flow", "jacobian_norms", "lag_contributions",
           "lag_contribution_matrices",
           "plot_gradient_flow", "pad_sequences", "evaluate_sequences", "fit_sequences", "make_optimizer",
           "ValidationLoss", "RNNRBM", "RTRBM", "RecurrentRBM", "RecurrentRBMStep", "exact_log_likelihood",
           "log_partition_enumerated", "evaluate_recurrent_rbm", "candidate_log_partition", "most_probable_candidate",
           "candidate_mass", "candidate_mean",
           "RecurrentRBMValidation", "fit_recurrent_rbm", "pretrain_rbm", "pretrain_recurrence"]
