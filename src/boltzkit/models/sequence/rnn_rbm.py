"""Sequences of RBMs: the RTRBM (Sutskever, Hinton & Taylor 2008) and the RNN-RBM
(Boulanger-Lewandowski, Bengio & Vincent 2012).

At step t an RBM over the frame v_t (weights W, shared) has biases set by the recurrent state
u_{t−1} (u_0 = 0)::

    b_t = b + u_{t−1} W_uv,      c_t = c + u_{t−1} W_uh,
    F_t(v) = −b_tᵀv − Σ_j softplus(c_{t,j} + (vᵀW)_j),   p(v_t | v_<t) = e^{−F_t(v_t)} / Z_t

and the state follows the data:

- RNN-RBM: u_t = the state of a separate recurrent cell (:class:`~.rnn.RNN` or
  :class:`~.lstm.LSTM`) driven by v_t;
- RTRBM: u_t = E[h_t | v_t] = σ(c_t + v_tᵀW), the step's hidden means (so W_uh is H × H).

Training (:class:`RecurrentRBMStep`): negatives v⁻_t by CD-k (or longer Gibbs chains) on each
step's RBM with its biases held fixed, then the gradient of the free-energy surrogate

    L = (1/N) Σ_{b,t} m_{b,t} [F_t(v_t) − F_t(v⁻_t)]      (N = Σ m, the real frames)

with v⁻ held fixed.  The step writes it in two parts: the closed-form CD gradient of W on each
step's RBM (∂F_t/∂W = −v μ_tᵀ), and ∂L/∂b_t = −v_t + v⁻_t, ∂L/∂c_t = −μ_t⁺ + μ_t⁻ propagated
back through b_t(θ), c_t(θ) and the recurrence by autograd (BPTT).  With exact negatives
E[∇L] = −∇ (1/N) Σ log p(v_t | v_<t): ∇ log Z_t = −E_{p_t}[∇F_t] along every path.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ...checkpoint import register
from ...errors import ConfigurationError, DataError
from ...validation import check_choice, check_int, parse_dtype
from ..base import Model
from ..rbm import RBM
from .lstm import LSTM
from .rnn import RNN

RECURRENCES = ("rnn", "lstm")
#: Gibbs sweeps per frame of :meth:`RecurrentRBM.generate` (see its docstring)
GENERATE_GIBBS_STEPS = 100
#: rows × frames × hidden units of one hidden-term tensor in :meth:`RecurrentRBM.frame_scores`
SCORE_CHUNK = 1 << 19


class RecurrentRBM(Model):
    """What the RTRBM and the RNN-RBM share (module docstring): the shared RBM ``self.rbm``
    (W, b, c), the bias maps W_uv, W_uh, the per-step free energy and the Gibbs kernel on
    per-row biases.  Subclasses define the recurrence (:meth:`initial_state`, :meth:`advance_state`,
    :meth:`state_vector`)."""

    checkpoint_description: ClassVar[str] = "recurrent RBM"

    def _setup(self, n_visible: int, n_hidden: int, n_recurrent: int, weight_scale: float,
               seed: int | None) -> torch.Generator:
        check_int("n_visible", n_visible, least=1)
        check_int("n_hidden", n_hidden, least=1)
        check_int("n_recurrent", n_recurrent, least=1)
        self.n_visible, self.n_hidden, self.n_recurrent = int(n_visible), int(n_hidden), int(n_recurrent)
        self.weight_scale = float(weight_scale)
        self.rbm = RBM(n_visible, n_hidden, weight_scale=weight_scale, seed=seed, dtype=torch.float64)
        g = torch.Generator().manual_seed(0 if seed is None else seed + 1)
        self.W_uv = nn.Parameter(torch.randn(n_recurrent, n_visible, generator=g, dtype=torch.float64)
                                 * weight_scale)
        self.W_uh = nn.Parameter(torch.randn(n_recurrent, n_hidden, generator=g, dtype=torch.float64)
                                 * weight_scale)
        return g

    # -- the recurrence: subclasses ----------------------------------------------------------
    def initial_state(self, batch_size: int) -> Any:
        raise NotImplementedError

    def advance_state(self, v: Tensor, c_t: Tensor, state: Any) -> Any:
        """The state after frame v_t (c_t: the step's hidden bias, the RTRBM's input)."""
        raise NotImplementedError

    def state_vector(self, state: Any) -> Tensor:
        """u_t (B, n_recurrent) of a state."""
        raise NotImplementedError

    # -- per-step RBM math on per-row biases -----------------------------------------------
    def step_biases(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """(b_t, c_t) = (b + u W_uv, c + u W_uh) per row."""
        return (torch.addmm(self.rbm.visible.bias, u, self.W_uv),
                torch.addmm(self.rbm.hidden.bias, u, self.W_uh))

    def hidden_field(self, v: Tensor, c_t: Tensor) -> Tensor:
        """c_t + vᵀW (the RBM's field with the step's hidden bias)."""
        return self.rbm.visible.statistic(v) @ self.rbm.weight + c_t

    def visible_field(self, h: Tensor, b_t: Tensor) -> Tensor:
        """b_t + W h (the RBM's field with the step's visible bias)."""
        return self.rbm.hidden.statistic(h) @ self.rbm.weight.t() + b_t

    def free_energy(self, v: Tensor, b_t: Tensor, c_t: Tensor) -> Tensor:
        """F_t(v) = −b_tᵀv − log Z_h(c_t + vᵀW) per row (the RBM's layers' own log-partition)."""
        return -(v * b_t).sum(-1) - self.rbm.hidden.log_partition(self.hidden_field(v, c_t))

    def hidden_mean(self, v: Tensor, c_t: Tensor) -> Tensor:
        return self.rbm.hidden.mean(self.hidden_field(v, c_t))

    def visible_mean(self, h: Tensor, b_t: Tensor) -> Tensor:
        return self.rbm.visible.mean(self.visible_field(h, b_t))

    @torch.no_grad()
    def gibbs(self, v: Tensor, b_t: Tensor, c_t: Tensor, steps: int,
              generator: torch.Generator | None = None) -> Tensor:
        """``steps`` block-Gibbs sweeps h ~ p_t(h | v), v ~ p_t(v | h) on each row's RBM."""
        rbm = self.rbm
        for _ in range(steps):
            h = rbm.hidden.sample(self.hidden_field(v, c_t), generator)
            v = rbm.visible.sample(self.visible_field(h, b_t), generator)
        return v

    def step_rbm(self, b_t: Tensor, c_t: Tensor) -> RBM:
        """The plain :class:`RBM` of one step (1-D biases), for exact enumeration and AIS."""
        out = RBM(self.n_visible, self.n_hidden, seed=None, dtype=self.rbm.weight.dtype,
                  device=self.rbm.weight.device)
        with torch.no_grad():
            out.weight.copy_(self.rbm.weight)
            out.visible.bias.copy_(b_t)
            out.hidden.bias.copy_(c_t)
        return out

    # -- running over sequences ---------------------------------------------------------------
    def biases(self, values: Tensor) -> tuple[Tensor, Tensor]:
        """(b_t, c_t) for t = 1..T of a batch (B, T, D) of data sequences, each (B, T, n):
        differentiable (the BPTT path)."""
        state = self.initial_state(values.shape[0])
        bs, cs = [], []
        for t in range(values.shape[1]):
            b_t, c_t = self.step_biases(self.state_vector(state))
            bs.append(b_t)
            cs.append(c_t)
            if t + 1 < values.shape[1]:
                state = self.advance_state(values[:, t], c_t, state)
        return torch.stack(bs, 1), torch.stack(cs, 1)

    def surrogate(self, values: Tensor, negatives: Tensor, mask: Tensor | None = None) -> Tensor:
        """L = (1/N) Σ m [F_t(v_t) − F_t(v⁻_t)], negatives held fixed (module docstring)."""
        b, c = self.biases(values)
        m = values.new_ones(values.shape[:2]) if mask is None else mask.to(values.dtype)
        gap = self.free_energy(values, b, c) - self.free_energy(negatives.detach(), b, c)
        return (gap * m).sum() / m.sum().clamp_min(1)

    def frame_field(self, frames: Tensor) -> Tensor:
        """The frames' hidden fields without the bias, (S, H) = ψ(frames) W: what
        :meth:`frame_scores` needs of them, to compute once when the same frames are scored often."""
        return self.rbm.visible.statistic(frames) @ self.rbm.weight

    def frame_scores(self, frames: Tensor, b_t: Tensor, c_t: Tensor, block: int = 4,
                     field: Tensor | None = None) -> Iterator[Tensor]:
        """−F_t(s) for every frame s (rows of ``frames``, (S, D)) and every row of (b_t, c_t),
        ``block`` rows at a time: (rows, S) tensors in row order, log p_t(s) up to log Z_t.  The
        hidden terms are summed over :data:`SCORE_CHUNK` frame–unit pairs per row block at a time,
        which keeps the work in cache (3× faster than one (rows, S, H) tensor for S = 8,183, H = 300).
        ``field``: :meth:`frame_field` of ``frames``, when the caller already has it."""
        frames = frames.to(b_t.device, b_t.dtype)
        field = self.frame_field(frames) if field is None else field           # (S, H), once
        log_partition = self.rbm.hidden.log_partition
        for start in range(0, b_t.shape[0], block):
            b, c = b_t[start:start + block], c_t[start:start + block].unsqueeze(1)
            chunk = max(1, SCORE_CHUNK // (b.shape[0] * field.shape[1]))
            hidden = [log_partition(field[i:i + chunk] + c) for i in range(0, field.shape[0], chunk)]
            yield b @ frames.t() + torch.cat(hidden, 1)

    def check_frames(self, frames: Tensor, name: str = "candidates") -> Tensor:
        """``frames`` as distinct rows (a repeated frame would count twice), after checking that it is
        a non-empty (S, n_visible) tensor of 0/1 frames."""
        if not isinstance(frames, Tensor):
            raise DataError(f"{name} must be a torch tensor of frames, got {type(frames).__name__}")
        if frames.dim() != 2 or frames.shape[1] != self.n_visible or not len(frames):
            raise DataError(f"{name} must be a non-empty (S, {self.n_visible}) tensor of frames, got shape "
                            f"{tuple(frames.shape)}")
        if not bool(((frames == 0) | (frames == 1)).all()):
            raise DataError(f"{name} must be binary frames (0/1 values: the visible units are binary)")
        distinct: Tensor = torch.unique(frames, dim=0)
        return distinct

    @torch.no_grad()
    def generate(self, n: int, steps: int, gibbs_steps: int | None = None,
                 generator: torch.Generator | None = None, candidates: Tensor | None = None) -> Tensor:
        """``n`` sequences (n, steps, D): at each step v_t from ``gibbs_steps`` Gibbs sweeps of the
        step's RBM started at v_{t−1} (zeros at t = 1), then the state advances on v_t.

        Started at v_{t−1}, a short chain keeps the previous frame's notes: on Nottingham
        (BENCHMARKS.md §11.1 model) 25 sweeps changed 1 frame in 3, 100 sweeps 0.55 and 200
        sweeps 0.56, against 0.65 in the data, hence the default of :data:`GENERATE_GIBBS_STEPS` = 100.

        With ``candidates`` (frames, rows of an (S, D) tensor, e.g. every distinct training frame)
        each v_t is instead an exact draw from the step's distribution restricted to them,
        p_t(s) / Σ_{s' ∈ S} p_t(s') ∝ e^{−F_t(s)}: no chain to mix and no mass on frames the data
        never use, at the cost of never producing a new frame (no ``gibbs_steps`` then)."""
        check_int("n", n, least=1)
        check_int("steps", steps, least=1)
        if candidates is not None and gibbs_steps is not None:
            raise ConfigurationError("generate: candidates draw each frame exactly, without Gibbs sweeps; "
                                     "drop gibbs_steps")
        gibbs_steps = check_int("gibbs_steps", GENERATE_GIBBS_STEPS if gibbs_steps is None else gibbs_steps, least=1)
        w = self.rbm.weight
        if candidates is not None:
            candidates = self.check_frames(candidates).to(w)
            field = self.frame_field(candidates)          # the same for every step
        state = self.initial_state(n)
        v = w.new_zeros(n, self.n_visible)
        frames = []
        for _ in range(steps):
            b_t, c_t = self.step_biases(self.state_vector(state))
            if candidates is None:
                v = self.gibbs(v, b_t, c_t, gibbs_steps, generator)
            else:
                scores = torch.cat(list(self.frame_scores(candidates, b_t, c_t, field=field)))
                v = candidates[torch.multinomial(torch.softmax(scores.double(), 1), 1, generator=generator).squeeze(1)]
            frames.append(v)
            state = self.advance_state(v, c_t, state)
        return torch.stack(frames, 1)

    # -- the hooks of Model -----------------------------------------------------------------------
    def check_source(self, source: Any, name: str = "data") -> None:
        if source.n_input != self.n_visible:
            raise DataError(f"{name} has {source.n_input} columns per step but the model has "
                            f"{self.n_visible} visible units")
        if not source.input_steps:
            raise DataError(f"{name}: a {self.checkpoint_kind} takes input sequences")

    def check_data(self, x: Tensor, name: str = "data") -> None:
        if not bool(torch.isfinite(x).all()):
            raise DataError(f"{name} contains NaN or inf")

    @torch.no_grad()
    def init_from_data(self, mean: Tensor) -> None:
        """b = logit of the frames' note marginals (Hinton's guide §8)."""
        if mean.shape == self.rbm.visible.bias.shape:
            self.rbm.init_from_data(mean.to(self.rbm.visible.bias))

    def decay_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.dim() >= 2]

    def work_per_row(self) -> int:
        return self.n_visible * self.n_hidden

    def _base_config(self) -> dict[str, Any]:
        return {"model": self.checkpoint_kind, "n_visible": self.n_visible, "n_hidden": self.n_hidden,
                "n_recurrent": self.n_recurrent, "dtype": str(self.rbm.weight.dtype).removeprefix("torch.")}


@register
class RTRBM(RecurrentRBM):
    """Recurrent temporal RBM: u_t = σ(c_t + v_tᵀW), the hidden means (module docstring)."""

    checkpoint_kind = "RTRBM"
    checkpoint_description = "recurrent temporal RBM (RTRBM)"

    def __init__(self, n_visible: int, n_hidden: int, *, weight_scale: float = 0.01, seed: int | None = 0,
                 dtype: torch.dtype = torch.float32, device: str | torch.device | None = None) -> None:
        super().__init__()
        self._setup(n_visible, n_hidden, n_hidden, weight_scale, seed)
        self.to(dtype=dtype, device=device)

    def initial_state(self, batch_size: int) -> Tensor:
        return self.W_uh.new_zeros(batch_size, self.n_hidden)

    def advance_state(self, v: Tensor, c_t: Tensor, state: Tensor) -> Tensor:
        return self.hidden_mean(v, c_t)

    def state_vector(self, state: Tensor) -> Tensor:
        return state

    def config(self) -> dict[str, Any]:
        return self._base_config()

    @classmethod
    def from_config(cls, config: dict[str, Any], device: str | torch.device | None = None) -> RTRBM:
        return cls(int(config["n_visible"]), int(config["n_hidden"]), seed=None,
                   dtype=parse_dtype(config.get("dtype", "float32")), device=device)


@register
class RNNRBM(RecurrentRBM):
    """RNN-RBM: u_t from a separate recurrent cell on v_t, ``recurrence="rnn"`` (tanh) or ``"lstm"``."""

    checkpoint_kind = "RNNRBM"
    checkpoint_description = "RNN-RBM"

    def __init__(self, n_visible: int, n_hidden: int, n_recurrent: int = 100, *, recurrence: str = "rnn",
                 weight_scale: float = 0.01, seed: int | None = 0, dtype: torch.dtype = torch.float32,
                 device: str | torch.device | None = None) -> None:
        super().__init__()
        self.recurrence = check_choice("recurrence", recurrence, RECURRENCES)
        self._setup(n_visible, n_hidden, n_recurrent, weight_scale, seed)
        cell = RNN if recurrence == "rnn" else LSTM
        # the cell's own output layer (V, c) is not used: frozen so that it takes no gradient
        self.cell = cell(n_visible, n_recurrent, output="sigmoid", task="next_step",
                         seed=None if seed is None else seed + 2, dtype=torch.float64)
        for p in (self.cell.V, self.cell.c):
            p.requires_grad_(False)
        self.to(dtype=dtype, device=device)

    def initial_state(self, batch_size: int) -> Any:
        return self.cell.initial_state(batch_size)

    def advance_state(self, v: Tensor, c_t: Tensor, state: Any) -> Any:
        return self.cell.step(v, state)

    def state_vector(self, state: Any) -> Tensor:
        return self.cell.hidden(state)

    def biases(self, values: Tensor) -> tuple[Tensor, Tensor]:
        """The cell's states u_0..u_{T−1} do not depend on the RBM: the cell's fused kernel runs
        them in one call (same equations as :meth:`RecurrentRBM.biases`; tests check it)."""
        us, _ = self.cell.run(values[:, :-1]) if values.shape[1] > 1 else (values.new_zeros(
            values.shape[0], 0, self.n_recurrent), None)
        u = torch.cat([values.new_zeros(values.shape[0], 1, self.n_recurrent), us], 1)
        return u @ self.W_uv + self.rbm.visible.bias, u @ self.W_uh + self.rbm.hidden.bias

    def decay_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.dim() >= 2 and p.requires_grad]

    def config(self) -> dict[str, Any]:
        return {**self._base_config(), "recurrence": self.recurrence}

    @classmethod
    def from_config(cls, config: dict[str, Any], device: str | torch.device | None = None) -> RNNRBM:
        return cls(int(config["n_visible"]), int(config["n_hidden"]), int(config["n_recurrent"]),
                   recurrence=config.get("recurrence", "rnn"), seed=None,
                   dtype=parse_dtype(config.get("dtype", "float32")), device=device)


class RecurrentRBMStep:
    """The trainer's step for :class:`RecurrentRBM` s (module docstring): CD-k negatives per
    step (``k`` Gibbs sweeps from the data frame, biases fixed), the closed-form CD gradient
    of W, and ∂L/∂(b_t, c_t) back-propagated through the recurrence by autograd."""

    def __init__(self, k: int = 1) -> None:
        self.k = check_int("k", k, least=1)
        self._sum, self._n = 0.0, 0

    def negatives(self, model: RecurrentRBM, values: Tensor, b: Tensor, c: Tensor,
                  generator: torch.Generator | None) -> Tensor:
        """v⁻ (B, T, D): k Gibbs sweeps of each step's RBM from v_t."""
        B, T, D = values.shape
        flat = model.gibbs(values.reshape(B * T, D), b.detach().reshape(B * T, -1),
                           c.detach().reshape(B * T, -1), self.k, generator)
        return flat.reshape(B, T, D)

    def write_gradient(self, model: RecurrentRBM, values: Tensor, negatives: Tensor,
                       mask: Tensor | None = None) -> Tensor:
        """``.grad`` = ∇θ L (module docstring); returns L (detached)."""
        model.zero_grad(set_to_none=True)
        m = values.new_ones(values.shape[:2]) if mask is None else mask.to(values.dtype)
        n = m.sum().clamp_min(1)
        w = (m / n).unsqueeze(-1)
        with torch.enable_grad():
            b, c = model.biases(values)
            with torch.no_grad():
                mu_pos = model.hidden_mean(values, c)
                mu_neg = model.hidden_mean(negatives, c)
                gap = (model.free_energy(values, b, c) - model.free_energy(negatives, b, c))
                loss = (gap * m).sum() / n
                # ∂L/∂b_t, ∂L/∂c_t per row, and the CD gradient of W on each step's RBM
                grad_b = (negatives - values) * w
                grad_c = (mu_neg - mu_pos) * w
                grad_w = (torch.einsum("btd,bth->dh", negatives * w, mu_neg)
                          - torch.einsum("btd,bth->dh", values * w, mu_pos))
            torch.autograd.backward([b, c], [grad_b, grad_c])   # BPTT through the recurrence
        weight = model.rbm.weight
        weight.grad = grad_w if weight.grad is None else weight.grad + grad_w
        for p in model.parameters():
            if p.requires_grad and p.grad is None:
                p.grad = torch.zeros_like(p)
        return loss

    # -- the trainer's step protocol ------------------------------------------------------------
    def step(self, model: RecurrentRBM, values: Tensor, generator: torch.Generator | None = None,
             mask: Tensor | None = None, context: Tensor | None = None) -> Tensor:
        if values.dim() != 3:
            raise DataError(f"a {type(model).__name__} takes sequences (B, T, D), got shape {tuple(values.shape)}")
        with torch.no_grad():
            b, c = model.biases(values)
        negatives = self.negatives(model, values, b, c, generator)
        if mask is not None:
            negatives = negatives * mask.unsqueeze(-1)
        loss = self.write_gradient(model, values, negatives, mask)
        self._sum += float(loss)
        self._n += 1
        return loss

    def rows(self, batch_size: int) -> int:
        return batch_size

    def metrics(self) -> dict[str, float]:
        """The epoch's mean free-energy gap L, then reset."""
        if self._n == 0:
            return {}
        out = {"free_energy_gap": self._sum / self._n}
        self._sum, self._n = 0.0, 0
        return out

    def state_dict(self) -> dict[str, Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        pass


def log_partition_enumerated(model: RecurrentRBM, b: Tensor, c: Tensor) -> Tensor:
    """log Z_t per row by enumerating the 2^D visible states: logsumexp_v −F_t(v);
    differentiable in the biases (the exact gradient by autograd).  Small D only."""
    units = model.rbm.visible
    if units.n_states > 2 ** 16:
        raise ConfigurationError(f"enumerating 2^{model.n_visible} visible states is too many; use AIS")
    states = units.states(0, units.n_states, b.dtype, b.device)          # (S, D)
    lead = b.shape[:-1]
    bf, cf = b.reshape(-1, b.shape[-1]), c.reshape(-1, c.shape[-1])
    field = states @ model.rbm.weight                                     # (S, H)
    neg_f = bf @ states.t() + model.rbm.hidden.log_partition(field.unsqueeze(0) + cf.unsqueeze(1))
    return torch.logsumexp(neg_f, -1).reshape(lead)


def exact_log_likelihood(model: RecurrentRBM, values: Tensor, mask: Tensor | None = None) -> Tensor:
    """Σ_{b,t} m log p(v_t | v_<t) = Σ m [−F_t(v_t) − log Z_t], exactly, differentiable (tiny D)."""
    b, c = model.biases(values)
    m = values.new_ones(values.shape[:2]) if mask is None else mask.to(values.dtype)
    return ((-model.free_energy(values, b, c) - log_partition_enumerated(model, b, c)) * m).sum()
