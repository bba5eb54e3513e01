"""The LSTM with the lecture's gates and cell state (Hochreiter & Schmidhuber 1997; Gers et al. 2000).

With [h_{t−1}, x_t] the concatenation of the previous output and the input:

    f_t = σ(W_f [h_{t−1}, x_t] + b_f)          forget gate
    i_t = σ(W_i [h_{t−1}, x_t] + b_i)          input gate
    C̃_t = tanh(W_C [h_{t−1}, x_t] + b_C)       candidate cell
    C_t = f_t ⊙ C_{t−1} + i_t ⊙ C̃_t            cell state
    o_t = σ(W_o [h_{t−1}, x_t] + b_o)          output gate
    h_t = o_t ⊙ tanh(C_t)

and ŷ_t = g(V h_t + c) as for every recurrent model (:mod:`.base`).  Gradients are by autograd.
:meth:`LSTM.step` is the loop body written as above; :meth:`LSTM.run` with ``fused=True`` hands
the same weights, rearranged to torch's (i, f, g, o) layout, to ``nn.LSTM``'s kernel.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ...checkpoint import register
from ...validation import check_float, parse_dtype
from .base import SequenceModel

GATES = ("f", "i", "C", "o")


@register
class LSTM(SequenceModel):
    """LSTM cell + output layer; parameters ``W_f, W_i, W_C, W_o`` (H × (H + D)) acting on
    [h_{t−1}, x_t], biases ``b_f, b_i, b_C, b_o`` (the forget bias starts at ``forget_bias``),
    and V, c.  Same options as :class:`~.rnn.RNN` otherwise.

    Example
    -------
    >>> lstm = LSTM(88, 32, output="sigmoid")
    >>> lstm(torch.zeros(2, 5, 88)).shape
    torch.Size([2, 5, 88])
    """

    checkpoint_kind = "LSTM"
    checkpoint_description = "recurrent network (LSTM)"
    gates = 4

    def __init__(self, n_input: int, n_hidden: int, n_output: int | None = None, *,
                 output: str = "softmax", loss: str = "cross_entropy", task: str = "next_step",
                 bias: bool = True, forget_bias: float = 1.0, seed: int | None = 0,
                 dtype: torch.dtype = torch.float32, device: str | torch.device | None = None) -> None:
        super().__init__()
        self._setup(n_input, n_hidden, n_output, output, loss, task)
        self.forget_bias = check_float("forget_bias", forget_bias)
        g = torch.Generator()
        if seed is not None:
            g.manual_seed(seed)
        H, D = self.n_hidden, self.n_input
        bound = H ** -0.5
        for gate in GATES:
            setattr(self, f"W_{gate}", nn.Parameter((torch.rand(H, H + D, generator=g, dtype=torch.float64)
                                                     * 2 - 1) * bound))
            b = torch.full((H,), self.forget_bias if gate == "f" else 0.0, dtype=torch.float64)
            setattr(self, f"b_{gate}", nn.Parameter(b, requires_grad=bias))
        self._output_parameters(g, bias)
        self.to(dtype=dtype, device=device)
        self.__dict__["_kernel"] = nn.LSTM(D, H, batch_first=True, device="meta")

    # -- the cell -------------------------------------------------------------------------
    def initial_state(self, batch_size: int) -> tuple[Tensor, Tensor]:
        """(h_0, C_0) = (0, 0)."""
        zero = self.W_f.new_zeros(batch_size, self.n_hidden)
        return zero, zero.clone()

    def gate_preactivations(self, x: Tensor, h: Tensor) -> Tensor:
        """W_* [h_{t−1}, x_t] + b_* for the four gates, stacked (B, 4H) in the order f, i, C, o."""
        hx = torch.cat([h, x], -1)
        weight = torch.cat([getattr(self, f"W_{g}") for g in GATES], 0)
        bias = torch.cat([getattr(self, f"b_{g}") for g in GATES], 0)
        return hx @ weight.t() + bias

    def _update(self, a: Tensor, cell: Tensor) -> tuple[Tensor, Tensor]:
        f_pre, i_pre, c_pre, o_pre = a.chunk(4, -1)
        f_t, i_t, o_t = torch.sigmoid(f_pre), torch.sigmoid(i_pre), torch.sigmoid(o_pre)
        c_tilde = torch.tanh(c_pre)
        cell = f_t * cell + i_t * c_tilde
        return o_t * torch.tanh(cell), cell

    def step(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """(h_t, C_t) from x_t and (h_{t−1}, C_{t−1}) by the gate equations (module docstring)."""
        h, cell = state
        return self._update(self.gate_preactivations(x, h), cell)

    def step_preactivation(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Any, Tensor]:
        a = self.gate_preactivations(x, state[0])
        return self._update(a, state[1]), a

    def hidden(self, state: tuple[Tensor, Tensor]) -> Tensor:
        return state[0]

    def recurrent_weight(self) -> Tensor:
        """The h_{t−1} columns of the stacked gate weights (4H × H)."""
        return torch.cat([getattr(self, f"W_{g}")[:, :self.n_hidden] for g in GATES], 0)

    def state_vector(self, state: tuple[Tensor, Tensor]) -> Tensor:
        return torch.cat(state, -1)

    def vector_state(self, vector: Tensor) -> tuple[Tensor, Tensor]:
        return vector[..., :self.n_hidden], vector[..., self.n_hidden:]

    def state_jacobian(self, x: Tensor, state: tuple[Tensor, Tensor]) -> Tensor:
        """∂[h_t, C_t]/∂[h_{t−1}, C_{t−1}] per row (B, 2H, 2H), by autograd."""
        def one(xi: Tensor, si: Tensor) -> Tensor:
            return self.state_vector(self.step(xi[None], self.vector_state(si[None])))[0]
        s = self.state_vector(state)
        return torch.stack([torch.autograd.functional.jacobian(lambda v, i=i: one(x[i], v), s[i], vectorize=True)
                            for i in range(s.shape[0])])

    def torch_layout(self) -> dict[str, Tensor]:
        """The same weights as ``nn.LSTM`` names them (gate order i, f, g, o; input and hidden
        columns apart; the bias in ``bias_ih``, ``bias_hh`` = 0)."""
        H = self.n_hidden
        order = ("i", "f", "C", "o")
        return {"weight_ih_l0": torch.cat([getattr(self, f"W_{g}")[:, H:] for g in order], 0),
                "weight_hh_l0": torch.cat([getattr(self, f"W_{g}")[:, :H] for g in order], 0),
                "bias_ih_l0": torch.cat([getattr(self, f"b_{g}") for g in order], 0),
                "bias_hh_l0": self.W_f.new_zeros(4 * H)}

    def _run_fused(self, inputs: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Any]:
        kernel = self._kernel
        if kernel.weight_ih_l0.device != inputs.device or kernel.weight_ih_l0.dtype != inputs.dtype:
            kernel = nn.LSTM(self.n_input, self.n_hidden, batch_first=True, device=inputs.device,
                             dtype=inputs.dtype)
            self.__dict__["_kernel"] = kernel
        h0, c0 = (s.unsqueeze(0).contiguous() for s in state)
        hs, (h, cell) = functional_call(kernel, self.torch_layout(), (inputs, (h0, c0)))
        return hs, (h[0], cell[0])

    # -- checkpoint -----------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {**self._base_config(), "forget_bias": self.forget_bias}

    @classmethod
    def from_config(cls, config: dict[str, Any], device: str | torch.device | None = None) -> LSTM:
        return cls(int(config["n_input"]), int(config["n_hidden"]), int(config["n_output"]),
                   output=config.get("output", "softmax"), loss=config.get("loss", "cross_entropy"),
                   task=config.get("task", "next_step"), bias=bool(config.get("bias", True)),
                   forget_bias=float(config.get("forget_bias", 1.0)), seed=None,
                   dtype=parse_dtype(config.get("dtype", "float32")), device=device)

    def extra_repr(self) -> str:
        return (f"n_input={self.n_input}, n_hidden={self.n_hidden}, n_output={self.n_output}, "
                f"output={self.output_kind!r}, task={self.task!r}")
