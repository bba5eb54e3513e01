"""What the recurrent models share: the labelling configurations, the output layer and the losses.

A recurrent model maps inputs x_1..x_T to hidden states h_1..h_T through its cell (RNN or LSTM,
driven one step at a time by ``step``) and reads each out as

    ŷ_t = g(o_t),   o_t = V h_t + c,

with g = softmax (one class per step), σ (multi-label frames: piano rolls) or the identity
(regression).  The loss of a sequence is summed over the steps that carry a target,

    C = Σ_t w_t C_t,   C_t = −Σ_i y_{t,i} log ŷ_{t,i}                       (softmax, cross-entropy)
                       C_t = −Σ_i [y log ŷ + (1 − y) log(1 − ŷ)]_{t,i}      (sigmoid, cross-entropy)
                       C_t = Σ_i (y_{t,i} − ŷ_{t,i})²                        (squared error)

where w_t ∈ {0, 1} says which steps are scored.  The labelling configuration (``task``) decides
the inputs, targets and w from a :class:`~boltzkit.training.Batch` (values, mask, context):

======================  ==============================  ==========================  ===============
task                    inputs x_t                      targets y_t                 scored steps
======================  ==============================  ==========================  ===============
``next_step``           0, v_1, …, v_{T−1}              v_1, …, v_T (the values)    every real step
``many_to_many``        the values                      the context (B, T, K)       every real step
``many_to_one``         the values                      the context (B, K)          the last real step
``one_to_many``         s, 0, …, 0 (s = values (B, D))  the context (B, T, K)       every real step
======================  ==============================  ==========================  ===============

The training loss is the mean over scored steps, C_batch / Σ w (per-step mean, so the learning
rate does not depend on the sequence length); :meth:`summed_loss` gives Σ C itself.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ConfigurationError, DataError
from ...training.batches import Batch
from ...validation import check_choice, check_int
from ..base import LossModel

TASKS = ("next_step", "many_to_many", "many_to_one", "one_to_many")
OUTPUTS = ("softmax", "sigmoid", "identity")
LOSSES = ("cross_entropy", "squared")


class Prepared(NamedTuple):
    """A batch in the model's terms: inputs (B, T, D), targets (B, T, K), weights w (B, T)."""

    inputs: Tensor
    targets: Tensor
    weights: Tensor


class SequenceModel(LossModel):
    """Base of :class:`~.rnn.RNN` and :class:`~.lstm.LSTM`: tasks, outputs, losses (module docstring).

    A subclass defines the cell: :meth:`initial_state`, :meth:`step`, :meth:`hidden` and
    optionally a fused :meth:`_run_fused` used by :meth:`run` for speed.
    """

    checkpoint_description: ClassVar[str] = "recurrent network"
    #: pre-activations per hidden unit and step (RNN 1, LSTM 4: the gates)
    gates: ClassVar[int] = 1

    def _setup(self, n_input: int, n_hidden: int, n_output: int | None, output: str, loss: str,
               task: str) -> None:
        check_int("n_input", n_input, least=1)
        check_int("n_hidden", n_hidden, least=1)
        check_choice("task", task, TASKS)
        check_choice("output", output, OUTPUTS)
        check_choice("loss", loss, LOSSES)
        if n_output is None:
            if task != "next_step":
                raise ConfigurationError(f"n_output is needed for task {task!r}")
            n_output = n_input
        check_int("n_output", n_output, least=1)
        if task == "next_step" and n_output != n_input:
            raise ConfigurationError(f"next_step predicts the next input: n_output must equal n_input "
                                     f"({n_input}), got {n_output}")
        if loss == "cross_entropy" and output == "identity":
            raise ConfigurationError("cross-entropy needs probabilities: use output 'softmax' or 'sigmoid', "
                                     "or loss 'squared'")
        self.n_input, self.n_hidden, self.n_output = int(n_input), int(n_hidden), int(n_output)
        self.output_kind, self.loss_kind, self.task = output, loss, task

    def _output_parameters(self, generator: torch.Generator, bias: bool) -> None:
        bound = self.n_hidden ** -0.5
        self.V = nn.Parameter((torch.rand(self.n_output, self.n_hidden, generator=generator,
                                          dtype=torch.float64) * 2 - 1) * bound)
        self.c = nn.Parameter(torch.zeros(self.n_output, dtype=torch.float64), requires_grad=bias)

    # -- the cell: subclasses ---------------------------------------------------------------
    def initial_state(self, batch_size: int) -> Any:
        """The state before the first step (zeros)."""
        raise NotImplementedError

    def step(self, x: Tensor, state: Any) -> Any:
        """One step of the recurrence: the new state from the input x_t (B, D) and the old state."""
        raise NotImplementedError

    def hidden(self, state: Any) -> Tensor:
        """h_t (B, H) of a state."""
        raise NotImplementedError

    def recurrent_weight(self) -> Tensor:
        """The matrix that multiplies h_{t−1} in the pre-activation (for per-lag diagnostics)."""
        raise NotImplementedError

    def step_preactivation(self, x: Tensor, state: Any) -> tuple[Any, Tensor]:
        """(new state, pre-activation a_t that h_{t−1} enters linearly through
        :meth:`recurrent_weight`): ∂C/∂W_rec = Σ_t (∂C/∂a_t) h_{t−1}ᵀ."""
        raise NotImplementedError

    def state_vector(self, state: Any) -> Tensor:
        """The state as one (B, S) tensor (RNN: h; LSTM: [h, C])."""
        return self.hidden(state)

    def vector_state(self, vector: Tensor) -> Any:
        """Inverse of :meth:`state_vector`."""
        return vector

    def _run_fused(self, inputs: Tensor, state: Any) -> tuple[Tensor, Any] | None:
        """The hidden sequence by a fused kernel (None: not available)."""
        return None

    # -- running ----------------------------------------------------------------------------
    def run(self, inputs: Tensor, state: Any = None, fused: bool = True) -> tuple[Tensor, Any]:
        """Hidden states (B, T, H) for inputs (B, T, D), and the final state.

        ``fused=True`` uses torch's recurrent kernel where the cell has one (same equations,
        several times faster on the CPU); ``fused=False`` is the plain loop over :meth:`step`.
        """
        if state is None:
            state = self.initial_state(inputs.shape[0])
        if fused:
            out = self._run_fused(inputs, state)
            if out is not None:
                return out
        hs = []
        for t in range(inputs.shape[1]):
            state = self.step(inputs[:, t], state)
            hs.append(self.hidden(state))
        return torch.stack(hs, 1), state

    def output_field(self, h: Tensor) -> Tensor:
        """o_t = V h_t + c."""
        return F.linear(h, self.V, self.c)

    def output(self, h: Tensor) -> Tensor:
        """ŷ_t = g(V h_t + c): softmax, σ or the identity."""
        o = self.output_field(h)
        if self.output_kind == "softmax":
            return torch.softmax(o, -1)
        if self.output_kind == "sigmoid":
            return torch.sigmoid(o)
        return o

    def forward(self, inputs: Tensor, state: Any = None) -> Tensor:
        """ŷ_1..ŷ_T (B, T, K) for inputs (B, T, D)."""
        hs, _ = self.run(inputs, state)
        return self.output(hs)

    # -- tasks and losses -------------------------------------------------------------------
    def prepare(self, batch: Batch | Tensor) -> Prepared:
        """Inputs, targets and scored steps of a batch for the model's task (module docstring)."""
        if isinstance(batch, Tensor):
            batch = Batch(batch)
        values, mask, context = batch
        if self.task == "one_to_many":
            if context is None or context.dim() != 3:
                raise DataError("one_to_many needs per-step targets (B, T, K) in the batch context")
            if values.dim() != 2:
                raise DataError(f"one_to_many takes start vectors (B, D), got shape {tuple(values.shape)}")
            steps = context.shape[1]
            inputs = values.new_zeros(values.shape[0], steps, values.shape[1])
            inputs[:, 0] = values
            weights = values.new_ones(values.shape[0], steps) if mask is None else mask
            return Prepared(inputs, context, weights)
        if values.dim() != 3:
            raise DataError(f"{self.task} takes sequences (B, T, D), got shape {tuple(values.shape)}")
        weights = values.new_ones(values.shape[:2]) if mask is None else mask.to(values.dtype)
        if self.task == "next_step":
            inputs = torch.cat([values.new_zeros(values.shape[0], 1, values.shape[2]), values[:, :-1]], 1)
            return Prepared(inputs, values, weights)
        if self.task == "many_to_many":
            if context is None or context.dim() != 3 or context.shape[:2] != values.shape[:2]:
                raise DataError("many_to_many needs per-step targets (B, T, K) in the batch context")
            return Prepared(values, context, weights)
        if context is None or context.dim() != 2:
            raise DataError("many_to_one needs one target per sequence (B, K) in the batch context")
        # w_t = 1 at the last real step only: mask_t − mask_{t+1}
        last = weights - torch.cat([weights[:, 1:], weights.new_zeros(weights.shape[0], 1)], 1)
        return Prepared(values, context.unsqueeze(1).expand(-1, values.shape[1], -1), last)

    def step_losses(self, field: Tensor, targets: Tensor) -> Tensor:
        """C_t per step (B, T) from the output fields o_t (B, T, K) and targets y_t."""
        if self.loss_kind == "cross_entropy":
            if self.output_kind == "softmax":
                return -(targets * torch.log_softmax(field, -1)).sum(-1)
            return F.binary_cross_entropy_with_logits(field, targets, reduction="none").sum(-1)
        y_hat = (torch.softmax(field, -1) if self.output_kind == "softmax"
                 else torch.sigmoid(field) if self.output_kind == "sigmoid" else field)
        return ((targets - y_hat) ** 2).sum(-1)

    def summed_loss(self, batch: Batch | Tensor, fused: bool = True) -> tuple[Tensor, Tensor]:
        """(Σ_b Σ_t w_t C_t, Σ w): the loss summed over the batch's scored steps, and their count."""
        inputs, targets, weights = self.prepare(batch)
        hs, _ = self.run(inputs, fused=fused)
        per_step = self.step_losses(self.output_field(hs), targets)
        return (per_step * weights).sum(), weights.sum()

    def loss(self, batch: Batch | Tensor) -> Tensor:
        """Mean loss per scored step, Σ w_t C_t / Σ w_t (what the trainer minimises)."""
        total, count = self.summed_loss(batch)
        return total / count.clamp_min(1)

    # -- generation -------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, start: Tensor, steps: int, generator: torch.Generator | None = None,
                 sample: bool | None = None) -> Tensor:
        """Outputs (B, steps, K) driven from ``start``.

        one_to_many: x_1 = start (B, D), x_t = 0 after, ŷ_t returned (deterministic).
        next_step: the first input is 0, then each step's output is fed back as the next input;
        ``sample`` (default: True for sigmoid/softmax outputs) draws a frame from ŷ_t
        (Bernoulli per unit or one class) with ``generator`` instead of feeding the mean; the
        fed-back frames are returned (start is (B, D) and ignored beyond its batch size).
        """
        check_int("steps", steps, least=1)
        state = self.initial_state(start.shape[0])
        outs = []
        if self.task == "one_to_many":
            x = start
            for _ in range(steps):
                state = self.step(x, state)
                outs.append(self.output(self.hidden(state)))
                x = torch.zeros_like(start)
            return torch.stack(outs, 1)
        if self.task != "next_step":
            raise ConfigurationError(f"generate is for next_step and one_to_many models, not {self.task}")
        sample = self.output_kind != "identity" if sample is None else sample
        x = start.new_zeros(start.shape[0], self.n_input)
        for _ in range(steps):
            state = self.step(x, state)
            y = self.output(self.hidden(state))
            if sample and self.output_kind == "sigmoid":
                y = torch.bernoulli(y, generator=generator)
            elif sample and self.output_kind == "softmax":
                idx = torch.multinomial(y, 1, generator=generator).squeeze(1)
                y = F.one_hot(idx, self.n_output).to(y.dtype)
            outs.append(y)
            x = y
        return torch.stack(outs, 1)

    # -- checks and config ------------------------------------------------------------------
    def check_source(self, source: Any, name: str = "data") -> None:
        """Widths of a :class:`~.batches.SequenceBatches` against the model."""
        if source.n_input != self.n_input:
            raise DataError(f"{name} has {source.n_input} columns per step but the model takes {self.n_input}")
        if self.task != "next_step":
            if source.n_target is None:
                raise DataError(f"{name} has no targets; a {self.task} model needs them")
            if source.n_target != self.n_output:
                raise DataError(f"{name} targets have {source.n_target} columns but the model has "
                                f"{self.n_output} outputs")
        if self.task == "one_to_many" and source.input_steps:
            raise DataError(f"{name}: one_to_many takes one start vector per sequence, not input sequences")
        if self.task in ("next_step", "many_to_many", "many_to_one") and not source.input_steps:
            raise DataError(f"{name}: a {self.task} model takes input sequences")

    def check_data(self, x: Tensor, name: str = "data") -> None:
        if not bool(torch.isfinite(x).all()):
            raise DataError(f"{name} contains NaN or inf")

    def _base_config(self) -> dict[str, Any]:
        return {"model": self.checkpoint_kind, "n_input": self.n_input, "n_hidden": self.n_hidden,
                "n_output": self.n_output, "output": self.output_kind, "loss": self.loss_kind,
                "task": self.task, "bias": bool(self.c.requires_grad),
                "dtype": str(self.V.dtype).removeprefix("torch.")}

    @torch.no_grad()
    def init_from_data(self, mean: Tensor) -> None:
        """Start the output bias c where the outputs match the targets' mean m with h = 0:
        c = logit(m) (σ), log m (softmax), m (identity); m clamped to [10⁻³, 1 − 10⁻³] for logs."""
        if mean.shape != self.c.shape or not self.c.requires_grad:
            return
        m = mean.to(self.c)
        if self.output_kind == "sigmoid":
            m = m.clamp(1e-3, 1 - 1e-3)
            self.c.copy_(torch.log(m) - torch.log1p(-m))
        elif self.output_kind == "softmax":
            self.c.copy_(torch.log(m.clamp_min(1e-3)))
        else:
            self.c.copy_(m)

    def work_per_row(self) -> int:
        """Multiply-adds per row of one step's recurrent product (gates × H × (H + D)): small, so
        the trainer's thread rule runs the updates on one CPU thread (two were measured ~15×
        slower for a small LSTM on the busy 2-core machine)."""
        return self.gates * self.n_hidden * (self.n_hidden + self.n_input)

    def decay_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.dim() >= 2]
