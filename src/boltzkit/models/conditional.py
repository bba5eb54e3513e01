"""The conditional RBM: a per-row context r drives the hidden units through a matrix D."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from ..checkpoint import register
from ..validation import parse_dtype
from .rbm import RBM


@register
class ConditionalRBM(RBM):
    """An :class:`RBM` whose hidden field also receives ``r D`` for a per-row context ``r``::

        a_h = c + φ(v) W + r D,      ∇D = rᵀ(μ⁻ − μ⁺)/B

    (μ± the hidden means on the data and on the negative samples, the context held fixed).
    Inside ``with model.conditioned(r):`` — the trainer does this for a batch that carries a
    context — the Gibbs sampler, the estimators and the gradient use the conditional field
    unchanged; :meth:`set_context` does the same without a block.
    """

    checkpoint_kind = "ConditionalRBM"
    checkpoint_description = "conditional RBM"

    def __init__(self, n_visible: int, n_hidden: int, n_context: int, **kwargs: Any) -> None:
        super().__init__(n_visible, n_hidden, **kwargs)
        self.n_context = n_context
        self.context_weight = nn.Parameter(torch.zeros(n_context, n_hidden, dtype=self.weight.dtype,
                                                       device=self.weight.device))
        self.context: Tensor | None = None

    def config(self) -> dict[str, Any]:
        return {**super().config(), "n_context": self.n_context}

    @classmethod
    def from_config(cls, config: dict[str, Any], device: str | torch.device | None = None) -> ConditionalRBM:
        dtype = parse_dtype(config.get("dtype", "float32"))
        return cls(int(config["n_visible"]), int(config["n_hidden"]), int(config["n_context"]),
                   visible=config.get("visible", "bernoulli"), hidden=config.get("hidden", "bernoulli"),
                   seed=None, dtype=dtype, device=device)

    def set_context(self, r: Tensor | None) -> None:
        """Rows of r (batch × n_context) that condition the next calls; None switches it off."""
        self.context = r

    @contextlib.contextmanager
    def conditioned(self, context: Tensor | None) -> Iterator[None]:
        previous, self.context = self.context, context
        try:
            yield
        finally:
            self.context = previous

    def hidden_field(self, v: Tensor) -> Tensor:
        field = super().hidden_field(v)
        if self.context is not None:
            field = field.addmm_(self.context, self.context_weight)
        return field

    def tempered_field(self, v: Tensor) -> Tensor | None:
        """None while a context is set: its rows belong to row positions, which tempering swaps
        permute, so the field is not shared between the swaps and the sweep then."""
        return super().tempered_field(v) if self.context is None else None

    def decay_parameters(self) -> list[nn.Parameter]:
        return [self.weight, self.context_weight]

    def write_extra_gradient(self, data: Tensor, v_neg: Tensor, mu_pos: Tensor, mu_neg: Tensor) -> None:
        """``D.grad = rᵀ(μ⁻ − μ⁺)/B`` (zero without a context)."""
        if self.context is None:
            self.context_weight.grad = torch.zeros_like(self.context_weight)
            return
        grad = self.context.t() @ (mu_neg - mu_pos)
        grad.div_(data.shape[0])
        self.context_weight.grad = grad
