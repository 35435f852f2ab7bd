"""Small pure GAN losses on discriminator logits.

Each loss is a pair `(d_loss(real, fake), g_loss(fake))`. The discriminator
loss is the mean over real and fake, the figure the tutorials print as d_loss.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import tensorflow as tf
from keras import ops


def _bce(logits, target):
    """Binary cross-entropy from logits, stable for large |logits|."""
    return ops.mean(ops.relu(logits) - logits * target + ops.log1p(ops.exp(-ops.abs(logits))))


def bce_d_loss(real_logits, fake_logits, label_smoothing: float = 0.0):
    """One-sided label smoothing: real targets are 1 - smoothing, fakes stay 0."""
    return 0.5 * (_bce(real_logits, 1.0 - label_smoothing) + _bce(fake_logits, 0.0))


def bce_g_loss(fake_logits):
    """Non-saturating: maximise log D(G(z)) rather than minimise log(1 - D(G(z)))."""
    return _bce(fake_logits, 1.0)


def hinge_d_loss(real_logits, fake_logits, label_smoothing: float = 0.0):
    del label_smoothing  # targets are margins here, not probabilities
    return 0.5 * (ops.mean(ops.relu(1.0 - real_logits)) + ops.mean(ops.relu(1.0 + fake_logits)))


def critic_g_loss(fake_logits):
    """Generator loss for hinge and Wasserstein critics alike."""
    return -ops.mean(fake_logits)


def wasserstein_d_loss(real_logits, fake_logits, label_smoothing: float = 0.0):
    del label_smoothing
    return ops.mean(fake_logits) - ops.mean(real_logits)


def gradient_penalty(discriminator: Callable, real, fake, alpha):
    """WGAN-GP: (||grad D(x_hat)||_2 - 1)^2 at x_hat = alpha*real + (1-alpha)*fake.

    `alpha` has shape [batch, 1, ...] (drawn uniformly by the caller). The norm
    adds a tiny epsilon under the square root: d sqrt(x)/dx is infinite at 0,
    and a zero gradient (a saturated critic) must give a finite penalty and a
    finite gradient of the penalty.
    """
    real = ops.cast(real, fake.dtype)
    interpolated = alpha * real + (1.0 - alpha) * fake
    with tf.GradientTape() as tape:
        tape.watch(interpolated)
        scores = discriminator(interpolated, training=True)
    grads = tape.gradient(scores, interpolated)
    grads = ops.reshape(ops.cast(grads, "float32"), (ops.shape(grads)[0], -1))
    norms = ops.sqrt(ops.sum(ops.square(grads), axis=1) + 1e-12)
    return ops.mean(ops.square(norms - 1.0))


def rpgan_d_loss(real_logits, fake_logits, label_smoothing: float = 0.0):
    """Relativistic pairing (Jolicoeur-Martineau 2019; R3GAN, Huang et al. 2024): D learns that
    each real image is more real than the fake it is paired with, softplus(-(D(x) - D(G(z))))."""
    del label_smoothing
    return ops.mean(ops.softplus(fake_logits - real_logits))


def rpgan_g_loss(fake_logits, real_logits):
    """G's side of the pairing: each fake should score above its real partner."""
    return ops.mean(ops.softplus(real_logits - fake_logits))


class GANLoss(NamedTuple):
    d_loss: Callable
    g_loss: Callable  # g_loss(fake_logits), or g_loss(fake_logits, real_logits) when relativistic
    needs_gradient_penalty: bool = False
    relativistic: bool = False


LOSSES = {
    "bce": GANLoss(bce_d_loss, bce_g_loss),
    "rpgan": GANLoss(rpgan_d_loss, rpgan_g_loss, relativistic=True),
    "hinge": GANLoss(hinge_d_loss, critic_g_loss),
    "wgan-gp": GANLoss(wasserstein_d_loss, critic_g_loss, needs_gradient_penalty=True),
}


def get(name: str) -> GANLoss:
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}") from None
