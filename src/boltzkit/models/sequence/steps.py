"""The trainer's gradient step for recurrent models: autograd or explicit BPTT, optional clipping.

:class:`SequenceStep` fills ``.grad`` with ∇θ of the model's per-step mean loss
(:meth:`~.base.SequenceModel.loss`), either by ``loss.backward()`` (``method="autograd"``, the
default: the fused kernel, fast) or by the written-out recursion of :mod:`.bptt`
(``method="bptt"``, RNN only; optional ``truncation``).  With ``clip`` it rescales the gradient
to norm ``clip`` when it is larger (gradient-norm clipping, Pascanu, Mikolov & Bengio 2013):
g ← g · min(1, clip/‖g‖₂).  ``metrics()`` reports the epoch's mean training loss, the mean
gradient norm before clipping and the fraction of updates that were clipped.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...errors import ConfigurationError
from ...training.batches import Batch
from ...validation import check_choice, check_float, check_int


class SequenceStep:
    """A step object for :class:`~boltzkit.training.Trainer` (see the module docstring)."""

    def __init__(self, method: str = "autograd", clip: float | None = None,
                 truncation: int | None = None) -> None:
        self.method = check_choice("method", method, ("autograd", "bptt"))
        self.clip = check_float("clip", clip, 0.0, low_open=True, optional=True)
        self.truncation = check_int("truncation", truncation, least=1, optional=True)
        if truncation is not None and method != "bptt":
            raise ConfigurationError("truncation is an option of the explicit BPTT (method='bptt')")
        self._reset()

    def _reset(self) -> None:
        self._loss, self._norm, self._clipped, self._n = 0.0, 0.0, 0, 0

    def step(self, model, values: Tensor, generator: torch.Generator | None = None,
             mask: Tensor | None = None, context: Tensor | None = None) -> Tensor:
        batch = Batch(values, mask, context)
        model.zero_grad(set_to_none=True)
        if self.method == "autograd":
            loss = model.loss(batch)
            loss.backward()
        else:
            from .bptt import bptt_gradients
            grads = bptt_gradients(model, batch, self.truncation)
            with torch.no_grad():
                total, count = model.summed_loss(batch)
                loss = total / count.clamp_min(1)
                for name, p in model.named_parameters():
                    if p.requires_grad:
                        p.grad = grads[name] / count.clamp_min(1)
        params = [p for p in model.parameters() if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        if self.clip is not None:
            scale = (self.clip / (norm + 1e-12)).clamp(max=1.0)
            for p in params:
                p.grad.mul_(scale)
            self._clipped += int(norm > self.clip)
        self._loss += float(loss.detach())
        self._norm += float(norm)
        self._n += 1
        return loss.detach()

    def rows(self, batch_size: int) -> int:
        return batch_size

    def metrics(self) -> dict[str, float]:
        """Means over the updates since the last call (one epoch), then reset."""
        if self._n == 0:
            return {}
        out = {"train_loss": self._loss / self._n, "grad_norm": self._norm / self._n}
        if self.clip is not None:
            out["clipped_fraction"] = self._clipped / self._n
        self._reset()
        return out

    def state_dict(self) -> dict[str, Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        pass
