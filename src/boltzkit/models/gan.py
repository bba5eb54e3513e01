"""Generative adversarial networks (Goodfellow et al. 2014) on the common trainer.

A generator G maps noise z ~ p_z = N(0, I) to pixel probabilities / means G(z) ∈ (0, 1)^D
(an MLP ending in a sigmoid); a discriminator D maps a row x to the probability D(x) that it
came from the data (an MLP ending in a logit a(x), D = σ(a)).  The value function is

    V(D, G) = E_x[log D(x)] + E_z[log(1 − D(G(z)))],

with log D = logsigmoid(a) and log(1 − D) = logsigmoid(−a), so no log of 0 is ever taken.

The lecture's algorithm (Algorithm 1 of the paper), one training iteration:

1. k times: draw m noise samples z and take m data examples x; ascend
   ∇_{θ_d} (1/m) Σ [log D(x) + log(1 − D(G(z)))]
   (``trainer.extra_optimizers["discriminator"]`` descends its negative);
2. draw m fresh noise samples; descend ∇_{θ_g} (1/m) Σ log(1 − D(G(z)))
   (``loss="minimax"``), or ascend (1/m) Σ log D(G(z)) (``loss="non-saturating"``, the
   paper's practical variant), through the trainer's main optimizer.

:class:`GANStep` is that iteration as a trainer step object.  One trainer batch holds the
k·m data examples of an iteration (``TrainingConfig(batch_size=k*m)``), cut into k
minibatches of m; the last, shorter batch of an epoch gives fewer or smaller D steps.

With an observation model the generator defines a density over x,
p(x) = ∫ p(z) p(x | G(z)) dz — Bernoulli(G(z)) for binarised data, N(G(z), σ²I) for
real-valued data — whose log-likelihood :mod:`boltzkit.evaluation.decoder_ais` estimates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .. import checkpoint
from ..errors import ConfigurationError
from ..validation import check_choice, check_float, check_int, parse_dtype
from .base import LossModel

#: observation models p(x | G(z))
OUTPUTS = ("bernoulli", "gaussian")
#: generator losses
GENERATOR_LOSSES = ("minimax", "non-saturating")
#: network architectures
ARCHITECTURES = ("mlp", "conv")


def _mlp(sizes: Sequence[int], activation: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


def image_side(n_visible: int) -> int:
    """The side s of square s×s images with s divisible by 4 (what the convolutional pair needs)."""
    side = math.isqrt(n_visible)
    if side * side != n_visible or side % 4 != 0:
        raise ConfigurationError(f"architecture='conv' needs square images whose side is a multiple of 4 "
                                 f"(784 = 28×28); got {n_visible} pixels")
    return side


def _conv_generator(latent_dim: int, side: int, channels: int) -> nn.Sequential:
    """z ↦ Linear → 2C×(s/4)² → ReLU → ConvT(2C→C, 4, stride 2) → ReLU → ConvT(C→1, 4, stride 2):
    one logit per pixel of the s×s image, flattened row-major (DCGAN-style, Radford et al. 2016)."""
    q = side // 4
    return nn.Sequential(
        nn.Linear(latent_dim, 2 * channels * q * q), nn.ReLU(), nn.Unflatten(1, (2 * channels, q, q)),
        nn.ConvTranspose2d(2 * channels, channels, 4, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(channels, 1, 4, stride=2, padding=1), nn.Flatten(1))


def _conv_discriminator(side: int, channels: int) -> nn.Sequential:
    """x ↦ s×s image → Conv(1→C, 4, stride 2) → LeakyReLU → Conv(C→2C, 4, stride 2) → LeakyReLU
    → Linear(2C·(s/4)² → 1): the logit a(x)."""
    q = side // 4
    return nn.Sequential(
        nn.Unflatten(1, (1, side, side)),
        nn.Conv2d(1, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
        nn.Conv2d(channels, 2 * channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
        nn.Flatten(1), nn.Linear(2 * channels * q * q, 1))


@checkpoint.register
class GAN(LossModel):
    """A generator and discriminator for D-pixel rows (784 for MNIST).

    ``architecture="mlp"`` (default): MLPs with the hidden sizes given; the discriminator uses
    leaky-ReLU hidden layers, the generator ReLU.  ``"conv"``: a small convolutional pair for
    square s×s images (s a multiple of 4): the generator a linear layer to 2C maps of
    (s/4)² and two stride-2 transposed convolutions, the discriminator two stride-2
    convolutions (C and 2C maps) and a linear logit, C = ``channels`` (the hidden sizes are
    then unused).  Rows stay flat: images are row-major s×s.

    ``output="bernoulli"``: G(z) are Bernoulli probabilities (binarised data);
    ``"gaussian"``: G(z) are the sigmoid means of N(G(z), σ²I) with σ = ``sigma`` (pixels
    in [0, 1]).
    """

    checkpoint_kind: ClassVar[str] = "GAN"
    checkpoint_description: ClassVar[str] = "GAN"

    def __init__(self, n_visible: int = 784, latent_dim: int = 10, generator_hidden: Sequence[int] = (256,),
                 discriminator_hidden: Sequence[int] = (256,), output: str = "bernoulli", sigma: float = 0.1,
                 seed: int = 0, dtype: torch.dtype = torch.float32,
                 device: str | torch.device | None = None, architecture: str = "mlp", channels: int = 32) -> None:
        super().__init__()
        self.n_visible = check_int("n_visible", n_visible, least=1)
        self.latent_dim = check_int("latent_dim", latent_dim, least=1)
        self.generator_hidden = [check_int("generator_hidden", h, least=1) for h in generator_hidden]
        self.discriminator_hidden = [check_int("discriminator_hidden", h, least=1) for h in discriminator_hidden]
        self.output = check_choice("output", output, OUTPUTS)
        self.sigma = check_float("sigma", sigma, 0.0, low_open=True)
        self.seed = check_int("seed", seed, least=0)
        self.architecture = check_choice("architecture", architecture, ARCHITECTURES)
        self.channels = check_int("channels", channels, least=1)
        side = image_side(self.n_visible) if self.architecture == "conv" else 0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            if self.architecture == "conv":
                self.generator_net = _conv_generator(self.latent_dim, side, self.channels)
                self.discriminator = _conv_discriminator(side, self.channels)
            else:
                self.generator_net = _mlp([self.latent_dim, *self.generator_hidden, self.n_visible], nn.ReLU)
                self.discriminator = _mlp([self.n_visible, *self.discriminator_hidden, 1],
                                          lambda: nn.LeakyReLU(0.2))
        self.to(dtype=dtype, device=device)

    # -- the two networks ------------------------------------------------------------------
    def generator_parameters(self) -> list[nn.Parameter]:
        return list(self.generator_net.parameters())

    def discriminator_parameters(self) -> list[nn.Parameter]:
        return list(self.discriminator.parameters())

    def noise(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws of z ~ N(0, I), shape ``(n, latent_dim)``, on the generator's device."""
        p = next(self.parameters())
        device = generator.device if generator is not None else p.device
        return torch.randn(n, self.latent_dim, generator=generator, device=device, dtype=p.dtype).to(p.device)

    def generator_logits(self, z: Tensor) -> Tensor:
        """The pre-sigmoid outputs of G, ``(n, n_visible)``."""
        return self.generator_net(z)

    def generate(self, z: Tensor) -> Tensor:
        """G(z) = σ(logits) ∈ (0, 1): Bernoulli probabilities or Gaussian means."""
        return torch.sigmoid(self.generator_logits(z))

    def discriminator_logit(self, x: Tensor) -> Tensor:
        """a(x) with D(x) = σ(a(x)), shape ``(n,)``."""
        return self.discriminator(x).squeeze(1)

    # -- losses ----------------------------------------------------------------------------
    def discriminator_loss(self, x: Tensor, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(−(1/m) Σ [log D(x) + log(1 − D(G(z)))], a(x), a(G(z))): D descends the first.
        G(z) is detached: this step moves θ_d only."""
        real = self.discriminator_logit(x)
        fake = self.discriminator_logit(self.generate(z).detach())
        loss = -(F.logsigmoid(real).mean() + F.logsigmoid(-fake).mean())
        return loss, real.detach(), fake.detach()

    def generator_loss(self, z: Tensor, kind: str = "minimax") -> tuple[Tensor, Tensor]:
        """(loss, a(G(z))): ``minimax`` (1/m) Σ log(1 − D(G(z))), ``non-saturating``
        −(1/m) Σ log D(G(z)); G descends it."""
        fake = self.discriminator_logit(self.generate(z))
        loss = F.logsigmoid(-fake).mean() if kind == "minimax" else -F.logsigmoid(fake).mean()
        return loss, fake.detach()

    def loss(self, batch: Any) -> Tensor:
        """A GAN has no single loss to descend: refuse, naming the step object that trains it."""
        raise ConfigurationError("a GAN is trained by two optimizers: use Trainer(gan, config, "
                                 "estimator=GANStep(k, m), optimizer=..., extra_optimizers={'discriminator': "
                                 "...}) or boltzkit.models.gan.gan_trainer(gan, ...)")

    # -- the observation model -------------------------------------------------------------
    def log_likelihood_given(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x | G(z)) per row (rows of x and z paired): Bernoulli
        Σ_j [x_j log G_j + (1 − x_j) log(1 − G_j)] = Σ_j [x_j ℓ_j − softplus(ℓ_j)] with ℓ the
        logits, or Gaussian −½ Σ_j (x_j − G_j)²/σ² − D log(σ√(2π))."""
        logits = self.generator_logits(z)
        if self.output == "bernoulli":
            return (x * logits - F.softplus(logits)).sum(1)
        mean = torch.sigmoid(logits)
        return (-0.5 * ((x - mean) / self.sigma) ** 2).sum(1) - self.n_visible * math.log(
            self.sigma * math.sqrt(2 * math.pi))

    def sample_observations(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(z, x) with z ~ p(z), x ~ p(x | G(z)): exact joint samples (z is an exact posterior
        sample for its x — what reverse AIS starts from in bidirectional Monte Carlo)."""
        with torch.no_grad():
            z = self.noise(n, generator)
            mean = self.generate(z)
            device = generator.device if generator is not None else mean.device
            if self.output == "bernoulli":
                u = torch.rand(mean.shape, generator=generator, device=device, dtype=mean.dtype).to(mean.device)
                x = (u < mean).to(mean.dtype)
            else:
                e = torch.randn(mean.shape, generator=generator, device=device, dtype=mean.dtype).to(mean.device)
                x = mean + self.sigma * e
        return z, x

    # -- protocol --------------------------------------------------------------------------
    def decay_parameters(self) -> list[nn.Parameter]:
        return []

    def check_data(self, x: Tensor, name: str = "data") -> None:
        from .base import check_rows

        check_rows(x, name, self.n_visible)

    def config(self) -> dict[str, Any]:
        p = next(self.parameters())
        return {"model": self.checkpoint_kind, "n_visible": self.n_visible, "latent_dim": self.latent_dim,
                "generator_hidden": self.generator_hidden, "discriminator_hidden": self.discriminator_hidden,
                "output": self.output, "sigma": self.sigma, "seed": self.seed,
                "dtype": str(p.dtype).removeprefix("torch."), "architecture": self.architecture,
                "channels": self.channels}

    @classmethod
    def from_config(cls, config: dict[str, Any], device: str | torch.device | None = None) -> GAN:
        return cls(config["n_visible"], config["latent_dim"], config["generator_hidden"],
                   config["discriminator_hidden"], config.get("output", "bernoulli"), config.get("sigma", 0.1),
                   config.get("seed", 0), parse_dtype(config.get("dtype", "float32")), device,
                   config.get("architecture", "mlp"), config.get("channels", 32))


class GANStep:
    """One iteration of the adversarial algorithm per trainer batch (module docstring).

    The trainer's main optimizer must hold the generator's parameters
    (:meth:`GAN.generator_parameters`); ``trainer.extra_optimizers["discriminator"]`` the
    discriminator's.  :meth:`bind` (called by the trainer) checks both and that the
    trainer's batch size is k·m.  A non-finite loss stops training through the trainer's
    guard (:meth:`~boltzkit.training.Trainer.fail`): no further updates this epoch, the last
    good state restored, :class:`~boltzkit.errors.DivergenceError` raised.
    """

    def __init__(self, k: int = 1, m: int = 100, loss: str = "minimax") -> None:
        self.k = check_int("k", k, least=1)
        self.m = check_int("m", m, least=1)
        self.loss = check_choice("loss", loss, GENERATOR_LOSSES)
        self.trainer: Any = None
        self._failed = False
        self._reset()

    @property
    def batch_size(self) -> int:
        """Data examples one iteration uses: k·m."""
        return self.k * self.m

    def bind(self, trainer: Any) -> None:
        if "discriminator" not in trainer.extra_optimizers:
            raise ConfigurationError("GANStep needs trainer.extra_optimizers['discriminator'] (an optimizer of "
                                     "the discriminator's parameters); see gan_trainer")
        if trainer.config.batch_size != self.batch_size:
            raise ConfigurationError(f"GANStep(k={self.k}, m={self.m}) takes k·m = {self.batch_size} data "
                                     f"examples per iteration; set batch_size={self.batch_size} "
                                     f"(got {trainer.config.batch_size})")
        self.trainer = trainer

    def _reset(self) -> None:
        self._sums = {"d_loss": 0.0, "g_loss": 0.0, "d_real": 0.0, "d_fake": 0.0}
        self._counts = {"d": 0, "g": 0}

    def _diverged(self, model: GAN, what: str, value: Tensor) -> Tensor:
        self._failed = True
        model.zero_grad(set_to_none=True)
        if self.trainer is not None:
            self.trainer.fail(f"the {what} loss is {float(value)}")
        return value

    def step(self, model: GAN, values: Tensor, generator: torch.Generator | None = None,
             mask: Tensor | None = None, context: Tensor | None = None) -> Tensor:
        """k discriminator updates (stepped here), then the generator's gradient in ``.grad``
        (the trainer's optimizer steps it); returns the generator loss."""
        if mask is not None or context is not None:
            raise ConfigurationError("a GAN takes plain rows: drop the batch's mask and context")
        if self._failed:                      # diverged earlier this epoch: wait for the guard
            model.zero_grad(set_to_none=True)
            return torch.tensor(math.nan)
        if self.trainer is None:
            raise ConfigurationError("GANStep must be bound to a trainer (Trainer calls bind)")
        d_opt = self.trainer.extra_optimizers["discriminator"]
        par = self.trainer.distributed   # data parallel: each of W ranks takes m / W rows and noise samples
        m = self.m if par is None else par.local_batch(self.m)
        for chunk in values.split(m)[: self.k]:
            z = model.noise(chunk.shape[0], generator)
            d_opt.zero_grad(set_to_none=True)
            loss, real, fake = model.discriminator_loss(chunk, z)
            if not bool(torch.isfinite(loss)):
                return self._diverged(model, "discriminator", loss.detach())
            loss.backward()
            if self.trainer.distributed is not None:  # data parallel: D's gradient averaged over ranks
                self.trainer.distributed.all_reduce_gradients(model.discriminator_parameters())
            d_opt.step()
            self._sums["d_loss"] += float(loss.detach())
            self._sums["d_real"] += float(torch.sigmoid(real).mean())
            self._sums["d_fake"] += float(torch.sigmoid(fake).mean())
            self._counts["d"] += 1
        model.zero_grad(set_to_none=True)
        g_loss, _ = model.generator_loss(model.noise(m, generator), self.loss)
        if not bool(torch.isfinite(g_loss)):
            return self._diverged(model, "generator", g_loss.detach())
        g_loss.backward()
        for p in model.discriminator_parameters():   # the main optimizer moves θ_g only
            p.grad = None
        self._sums["g_loss"] += float(g_loss.detach())
        self._counts["g"] += 1
        return g_loss.detach()

    def rows(self, batch_size: int) -> int:
        return batch_size

    def metrics(self) -> dict[str, float]:
        """Epoch means: discriminator loss −V, generator loss, mean D(x) and D(G(z)) over the
        D steps; reset for the next epoch."""
        d, g = max(self._counts["d"], 1), max(self._counts["g"], 1)
        out = {"d_loss": self._sums["d_loss"] / d, "g_loss": self._sums["g_loss"] / g,
               "d_real": self._sums["d_real"] / d, "d_fake": self._sums["d_fake"] / d}
        self._reset()
        self._failed = False
        return out

    def state_dict(self) -> dict[str, Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        pass


class ModeCollapseGuard:
    """A trainer callback: stop when the samples lose their diversity (mode collapse).

    At each epoch end, ``n`` samples G(z) (fixed z) give the mean pairwise distance
    (1/n²) Σ_ij |G(z_i) − G(z_j)|, recorded as ``sample_diversity`` relative to the same
    quantity on ``n`` data rows; below ``threshold`` the trainer's guard
    (:meth:`~boltzkit.training.Trainer.fail`) restores the last good epoch and raises
    :class:`~boltzkit.errors.DivergenceError`.
    """

    def __init__(self, data: Tensor, threshold: float = 0.1, n: int = 200, seed: int = 0) -> None:
        self.threshold = check_float("threshold", threshold, 0.0)
        self.n = check_int("n", n, least=2)
        self.seed = check_int("seed", seed, least=0)
        rows = data[: self.n].double()
        self.reference = float(torch.cdist(rows, rows).mean())

    def on_train_begin(self, trainer: Any) -> None:
        pass

    def on_epoch_begin(self, trainer: Any, epoch: int) -> None:
        pass

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, float]) -> None:
        model = trainer.model
        p = next(model.parameters())
        with torch.no_grad():
            s = model.generate(model.noise(self.n, torch.Generator(p.device).manual_seed(self.seed))).double()
            diversity = float(torch.cdist(s, s).mean()) / max(self.reference, 1e-12)
        metrics["sample_diversity"] = diversity
        if diversity < self.threshold:
            trainer.fail(f"mode collapse: the samples' mean pairwise distance is {diversity:.3g} of the data's "
                         f"(threshold {self.threshold:g})")

    def on_train_end(self, trainer: Any) -> None:
        pass


#: optimizers the helpers build by name
OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop}


def make_optimizer(params: list[nn.Parameter], name: str = "adam", lr: float = 2e-4,
                   **options: Any) -> torch.optim.Optimizer:
    """A ``torch.optim`` optimizer by name (adam: betas (0.5, 0.999) unless given, as in DCGAN)."""
    check_choice("optimizer", name, OPTIMIZERS)
    check_float("lr", lr, 0.0, low_open=True)
    if name == "adam":
        options.setdefault("betas", (0.5, 0.999))
    return OPTIMIZERS[name](params, lr=lr, **options)


def gan_trainer(model: GAN, config: Any = None, *, k: int = 1, m: int = 100, loss: str = "minimax",
                generator_optimizer: torch.optim.Optimizer | None = None,
                discriminator_optimizer: torch.optim.Optimizer | None = None,
                callbacks: list[Any] | None = None, progress: bool = False, **config_options: Any) -> Any:
    """A :class:`~boltzkit.training.Trainer` running :class:`GANStep` (k, m, loss): Adam(2e-4,
    β = (0.5, 0.999)) for each network unless optimizers are given; ``config_options`` are
    :class:`~boltzkit.training.TrainingConfig` fields (batch size k·m, constant lr, no weight
    decay and no bias initialisation unless given)."""
    from ..training import Trainer, TrainingConfig

    step = GANStep(k, m, loss)
    if config is None:
        config_options = {"batch_size": step.batch_size, "lr_schedule": "constant", "weight_decay": 0.0,
                          "init_visible_bias": False, **config_options}
        config = TrainingConfig(**config_options)
    g_opt = generator_optimizer or make_optimizer(model.generator_parameters())
    d_opt = discriminator_optimizer or make_optimizer(model.discriminator_parameters())
    return Trainer(model, config, estimator=step, optimizer=g_opt, callbacks=list(callbacks or []),
                   progress=progress, extra_optimizers={"discriminator": d_opt})
