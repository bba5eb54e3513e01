"""The simple recurrent network of the lecture.

    z_t = U x_t + W h_{t−1} + b,    h_t = f(z_t),    f = tanh or ReLU,    h_0 = 0,
    ŷ_t = g(V h_t + c)              (g: softmax, σ or identity; :mod:`.base`).

:meth:`RNN.step` is one step of the recurrence (so other models, e.g. an RNN-RBM, can drive the
cell themselves); :meth:`RNN.run` loops over it, or, with ``fused=True``, computes the same
hidden sequence with torch's C++ recurrent kernel (``nn.RNN`` through ``torch.func.functional_call``
with this model's U, W, b; several times faster, equal to rounding: tests/test_rnn.py).

``init="identity"`` is the IRNN of Le, Jaitly & Hinton (2015): W = I (times ``identity_scale``),
b = 0, U ~ N(0, 0.001²); meant for ReLU.  The default draws U and W from U(−1/√H, 1/√H) as torch does.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ...checkpoint import register
from ...validation import check_choice, check_float, parse_dtype
from .base import SequenceModel

ACTIVATIONS = ("tanh", "relu")
INITS = ("uniform", "identity")


@register
class RNN(SequenceModel):
    """Elman RNN z_t = U x_t + W h_{t−1} + b, h_t = f(z_t), ŷ_t = g(V h_t + c).

    Parameters
    ----------
    n_input, n_hidden, n_output:
        Sizes D, H, K (``n_output`` defaults to D for next-step prediction).
    activation: ``"tanh"`` or ``"relu"``.
    output: ``"softmax"``, ``"sigmoid"`` (multi-label frames) or ``"identity"``.
    loss: ``"cross_entropy"`` or ``"squared"``.
    task: ``"next_step"``, ``"many_to_many"``, ``"many_to_one"``, ``"one_to_many"`` (:mod:`.base`).
    init: ``"uniform"`` or ``"identity"`` (IRNN).

    Example
    -------
    >>> rnn = RNN(88, 32, output="sigmoid", task="next_step")
    >>> rnn(torch.zeros(2, 5, 88)).shape
    torch.Size([2, 5, 88])
    """

    checkpoint_kind = "RNN"
    checkpoint_description = "recurrent network (RNN)"

    def __init__(self, n_input: int, n_hidden: int, n_output: int | None = None, *,
                 activation: str = "tanh", output: str = "softmax", loss: str = "cross_entropy",
                 task: str = "next_step", bias: bool = True, init: str = "uniform",
                 identity_scale: float = 1.0, seed: int | None = 0, dtype: torch.dtype = torch.float32,
                 device: str | torch.device | None = None) -> None:
        super().__init__()
        self._setup(n_input, n_hidden, n_output, output, loss, task)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.init = check_choice("init", init, INITS)
        self.identity_scale = check_float("identity_scale", identity_scale, 0.0)
        g = torch.Generator()
        if seed is not None:
            g.manual_seed(seed)
        H, D = self.n_hidden, self.n_input
        bound = H ** -0.5
        if init == "identity":
            self.U = nn.Parameter(torch.randn(H, D, generator=g, dtype=torch.float64) * 1e-3)
            self.W = nn.Parameter(torch.eye(H, dtype=torch.float64) * self.identity_scale)
        else:
            self.U = nn.Parameter((torch.rand(H, D, generator=g, dtype=torch.float64) * 2 - 1) * bound)
            self.W = nn.Parameter((torch.rand(H, H, generator=g, dtype=torch.float64) * 2 - 1) * bound)
        self.b = nn.Parameter(torch.zeros(H, dtype=torch.float64), requires_grad=bias)
        self._output_parameters(g, bias)
        self.to(dtype=dtype, device=device)
        # a parameterless template for the fused kernel (kept out of the module tree)
        self.__dict__["_kernel"] = nn.RNN(D, H, nonlinearity=activation, batch_first=True, device="meta")

    # -- the cell -------------------------------------------------------------------------
    def f(self, z: Tensor) -> Tensor:
        """The activation f(z)."""
        return torch.tanh(z) if self.activation == "tanh" else torch.relu(z)

    def f_prime(self, z: Tensor) -> Tensor:
        """f′(z): 1 − tanh²(z) or 1[z > 0]."""
        if self.activation == "tanh":
            return 1 - torch.tanh(z) ** 2
        return (z > 0).to(z.dtype)

    @property
    def beta_s(self) -> float:
        """sup |f′|: 1 for both tanh and ReLU."""
        return 1.0

    def initial_state(self, batch_size: int) -> Tensor:
        return self.W.new_zeros(batch_size, self.n_hidden)

    def preactivation(self, x: Tensor, h: Tensor) -> Tensor:
        """z_t = U x_t + W h_{t−1} + b."""
        return x @ self.U.t() + h @ self.W.t() + self.b

    def step(self, x: Tensor, h: Tensor) -> Tensor:
        """h_t = f(U x_t + W h_{t−1} + b)."""
        return self.f(self.preactivation(x, h))

    def step_preactivation(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        z = self.preactivation(x, h)
        return self.f(z), z

    def hidden(self, state: Tensor) -> Tensor:
        return state

    def recurrent_weight(self) -> Tensor:
        return self.W

    def state_jacobian(self, x: Tensor, h: Tensor) -> Tensor:
        """∂h_t/∂h_{t−1} = diag(f′(z_t)) W, per row: (B, H, H)."""
        return self.f_prime(self.preactivation(x, h)).unsqueeze(-1) * self.W

    def _run_fused(self, inputs: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        params = {"weight_ih_l0": self.U, "weight_hh_l0": self.W, "bias_ih_l0": self.b,
                  "bias_hh_l0": torch.zeros_like(self.b)}
        kernel = self._kernel
        if kernel.weight_ih_l0.device != inputs.device or kernel.weight_ih_l0.dtype != inputs.dtype:
            kernel = nn.RNN(self.n_input, self.n_hidden, nonlinearity=self.activation, batch_first=True,
                            device=inputs.device, dtype=inputs.dtype)
            self.__dict__["_kernel"] = kernel
        hs, h_last = functional_call(kernel, params, (inputs, state.unsqueeze(0).contiguous()))
        return hs, h_last[0]

    # -- checkpoint -----------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {**self._base_config(), "activation": self.activation, "init": self.init,
                "identity_scale": self.identity_scale}

    @classmethod
    def from_config(cls, config: dict[str, Any], device: str | torch.device | None = None) -> RNN:
        return cls(int(config["n_input"]), int(config["n_hidden"]), int(config["n_output"]),
                   activation=config.get("activation", "tanh"), output=config.get("output", "softmax"),
                   loss=config.get("loss", "cross_entropy"), task=config.get("task", "next_step"),
                   bias=bool(config.get("bias", True)), init=config.get("init", "uniform"),
                   identity_scale=float(config.get("identity_scale", 1.0)), seed=None,
                   dtype=parse_dtype(config.get("dtype", "float32")), device=device)

    def extra_repr(self) -> str:
        return (f"n_input={self.n_input}, n_hidden={self.n_hidden}, n_output={self.n_output}, "
                f"activation={self.activation!r}, output={self.output_kind!r}, task={self.task!r}")
