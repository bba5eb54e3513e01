"""The GAN: losses against their formulas, the trainer step against the lecture's algorithm done by
hand, the divergence guard, checkpoints and resume state."""

from __future__ import annotations

import pytest
import torch

from boltzkit import checkpoint
from boltzkit.errors import ConfigurationError, DivergenceError
from boltzkit.models.gan import GAN, GANStep, ModeCollapseGuard, gan_trainer
from boltzkit.training import Trainer, TrainingConfig
from boltzkit.training.threads import torch_threads


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


def small_gan(seed: int = 0, architecture: str = "mlp") -> GAN:
    if architecture == "conv":                    # 4×4 images: the smallest side the pair takes
        return GAN(16, 3, seed=seed, dtype=torch.float64, architecture="conv", channels=2)
    return GAN(12, 3, (8,), (6,), seed=seed, dtype=torch.float64)


def data(n: int = 24, seed: int = 0, width: int = 12) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, width, generator=g, dtype=torch.float64) < 0.3).double()


def test_losses_match_the_value_function():
    gan = small_gan()
    x, z = data(10), torch.randn(10, 3, dtype=torch.float64)
    d_real = torch.sigmoid(gan.discriminator(x)).squeeze(1)
    d_fake = torch.sigmoid(gan.discriminator(torch.sigmoid(gan.generator_net(z)))).squeeze(1)
    loss, _, _ = gan.discriminator_loss(x, z)
    torch.testing.assert_close(loss, -(torch.log(d_real) + torch.log(1 - d_fake)).mean())
    minimax, _ = gan.generator_loss(z, "minimax")
    torch.testing.assert_close(minimax, torch.log(1 - d_fake).mean())
    saturating, _ = gan.generator_loss(z, "non-saturating")
    torch.testing.assert_close(saturating, -torch.log(d_fake).mean())


def _by_hand(gan: GAN, x: torch.Tensor, k: int, m: int, lr_g: float, lr_d: float, seed: int, loss: str) -> None:
    """Algorithm 1 of Goodfellow et al. (2014) written out with plain SGD, one iteration."""
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed + 1))
    x = x[order]
    g = torch.Generator().manual_seed(seed)
    d_params, g_params = list(gan.discriminator.parameters()), list(gan.generator_net.parameters())
    for i in range(k):
        z = torch.randn(m, 3, generator=g, dtype=torch.float64)
        real = torch.sigmoid(gan.discriminator(x[i * m:(i + 1) * m]))
        fake = torch.sigmoid(gan.discriminator(torch.sigmoid(gan.generator_net(z))))
        value = (torch.log(real) + torch.log(1 - fake)).mean()        # ascend this
        grads = torch.autograd.grad(value, d_params)
        with torch.no_grad():
            for p, gr in zip(d_params, grads):
                p.add_(lr_d * gr)
    z = torch.randn(m, 3, generator=g, dtype=torch.float64)
    fake = torch.sigmoid(gan.discriminator(torch.sigmoid(gan.generator_net(z))))
    objective = torch.log(1 - fake).mean() if loss == "minimax" else -torch.log(fake).mean()  # descend
    grads = torch.autograd.grad(objective, g_params)
    with torch.no_grad():
        for p, gr in zip(g_params, grads):
            p.sub_(lr_g * gr)


@pytest.mark.parametrize("loss,architecture", [("minimax", "mlp"), ("non-saturating", "mlp"),
                                               ("non-saturating", "conv")])
def test_step_is_the_lecture_algorithm(loss, architecture):
    k, m, lr_g, lr_d, seed = 3, 4, 0.5, 0.3, 7
    gan, reference = small_gan(architecture=architecture), small_gan(architecture=architecture)
    x = data(k * m, width=gan.n_visible)
    config = TrainingConfig(epochs=1, batch_size=k * m, lr=lr_g, momentum=0.0, initial_momentum=0.0,
                            weight_decay=0.0, lr_schedule="constant", init_visible_bias=False, seed=seed)
    trainer = gan_trainer(gan, config, k=k, m=m, loss=loss,
                          generator_optimizer=torch.optim.SGD(gan.generator_parameters(), lr=lr_g),
                          discriminator_optimizer=torch.optim.SGD(gan.discriminator_parameters(), lr=lr_d))
    trainer.fit(x)
    _by_hand(reference, x, k, m, lr_g, lr_d, seed, loss)
    for (name, p), q in zip(gan.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, msg=name)
    moved = [not torch.equal(p, q) for p, q in zip(gan.parameters(), small_gan(architecture=architecture).parameters())]
    assert all(moved)          # both networks took their steps
    metrics = trainer.history[-1]
    assert 0 < metrics["d_real"] < 1 and 0 < metrics["d_fake"] < 1 and metrics["d_loss"] > 0


def test_bind_checks_the_optimizers_and_the_batch_size():
    gan = small_gan()
    opt = torch.optim.Adam(gan.generator_parameters())
    with pytest.raises(ConfigurationError, match="extra_optimizers"):
        Trainer(gan, TrainingConfig(batch_size=4), estimator=GANStep(1, 4), optimizer=opt)
    with pytest.raises(ConfigurationError, match="batch_size=8"):
        Trainer(gan, TrainingConfig(batch_size=4), estimator=GANStep(2, 4), optimizer=opt,
                extra_optimizers={"discriminator": torch.optim.Adam(gan.discriminator_parameters())})
    with pytest.raises(ConfigurationError, match="two optimizers"):
        Trainer(gan, TrainingConfig(batch_size=4)).fit(data())


def test_divergence_stops_with_a_message_and_keeps_the_last_good_state():
    gan = small_gan()
    trainer = gan_trainer(gan, k=1, m=4, epochs=3,
                          generator_optimizer=torch.optim.SGD(gan.generator_parameters(), lr=1e300),
                          discriminator_optimizer=torch.optim.SGD(gan.discriminator_parameters(), lr=1e300))
    before = {n: p.detach().clone() for n, p in gan.named_parameters()}
    with pytest.raises(DivergenceError, match="diverged"):
        trainer.fit(data())
    for n, p in gan.named_parameters():
        assert torch.isfinite(p).all()
        torch.testing.assert_close(p, before[n])     # epoch 1 diverged: back to the start


def test_checkpoint_round_trip_and_both_optimizers_in_the_training_state(tmp_path):
    gan = small_gan()
    trainer = gan_trainer(gan, k=2, m=4, epochs=2)
    trainer.fit(data())
    tensors, state = trainer.training_state()
    assert any(name.startswith("optimizer_discriminator.") for name in tensors)
    checkpoint.save(tmp_path / "ck", gan, extra={"training_state": state}, state=tensors)
    loaded = checkpoint.load(tmp_path / "ck")
    assert isinstance(loaded, GAN) and loaded.config() == gan.config()
    for p, q in zip(gan.parameters(), loaded.parameters()):
        assert torch.equal(p, q)
    # resume: a fresh trainer takes the saved state and continues bit for bit
    resumed_model = checkpoint.load(tmp_path / "ck")
    resumed = gan_trainer(resumed_model, k=2, m=4, epochs=3)
    resumed.load_training_state(checkpoint.load_training_state(tmp_path / "ck"),
                                checkpoint.read_config(tmp_path / "ck")["training_state"])
    trainer.config.epochs = 3
    trainer.fit(data())
    resumed.fit(data())
    for p, q in zip(gan.parameters(), resumed_model.parameters()):
        torch.testing.assert_close(p, q)


def test_conv_pair_shapes_checkpoint_and_errors(tmp_path):
    """The convolutional pair on 28×28 rows: G(z) is one probability per pixel, D one logit per
    row, the observation model applies unchanged; the checkpoint rebuilds it bit for bit;
    non-square or odd-sided images are refused in one line."""
    gan = GAN(784, 5, seed=3, architecture="conv", channels=4)
    z = gan.noise(6, torch.Generator().manual_seed(0))
    g = gan.generate(z)
    assert g.shape == (6, 784) and bool(((g > 0) & (g < 1)).all())
    assert gan.discriminator_logit(g).shape == (6,)
    assert any(isinstance(m, torch.nn.ConvTranspose2d) for m in gan.generator_net)
    assert any(isinstance(m, torch.nn.Conv2d) for m in gan.discriminator)
    x = (g > 0.5).float()
    assert gan.log_likelihood_given(x, z).shape == (6,)
    checkpoint.save(tmp_path / "conv", gan)
    loaded = checkpoint.load(tmp_path / "conv")
    assert loaded.config() == gan.config() and loaded.architecture == "conv"
    torch.testing.assert_close(loaded.generate(z), g, rtol=0, atol=0)
    for bad in (12, 36):                         # not square; side 6 not a multiple of 4
        with pytest.raises(ConfigurationError, match="multiple of 4"):
            GAN(bad, 2, architecture="conv")
    with pytest.raises(ConfigurationError):
        GAN(16, 2, architecture="resnet")


def test_learns_two_patterns():
    """A GAN on two 12-pixel patterns: after training most samples are near one of them
    (the untrained generator's are not)."""
    patterns = torch.tensor([[1.0] * 6 + [0.0] * 6, [0.0] * 6 + [1.0] * 6], dtype=torch.float64)
    x = patterns.repeat(100, 1)
    gan = small_gan(1)

    def near() -> float:
        with torch.no_grad():
            s = gan.generate(gan.noise(200, torch.Generator().manual_seed(3)))
        return float((torch.cdist(s, patterns).min(1).values < 1.0).double().mean())

    untrained = near()
    gan_trainer(gan, k=1, m=20, epochs=30, loss="non-saturating",
                generator_optimizer=torch.optim.Adam(gan.generator_parameters(), lr=1e-2, betas=(0.5, 0.999)),
                discriminator_optimizer=torch.optim.Adam(gan.discriminator_parameters(), lr=1e-2,
                                                         betas=(0.5, 0.999))).fit(x)
    assert untrained < 0.2 and near() > 0.8


def test_mode_collapse_guard():
    x = data(40)
    gan = small_gan()
    guard = ModeCollapseGuard(x, threshold=0.01, n=20)
    trainer = gan_trainer(gan, k=1, m=4, epochs=1, callbacks=[guard])
    trainer.fit(x)
    assert trainer.history[-1]["sample_diversity"] > 0.01
    with torch.no_grad():                         # collapse: G(z) no longer depends on z
        gan.generator_net[0].weight.zero_()
    before = {n: p.detach().clone() for n, p in gan.named_parameters()}
    trainer.config.epochs = 2
    trainer.extra_optimizers["discriminator"].param_groups[0]["lr"] = 0.0
    trainer.optimizer.param_groups[0]["lr"] = 0.0
    with pytest.raises(DivergenceError, match="mode collapse"):
        trainer.fit(x)
    for n, p in gan.named_parameters():
        torch.testing.assert_close(p, before[n])
