"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) for data-limited GANs.

With 5,000 training images the discriminator memorises the real set and its
feedback to the generator degrades; augmenting what D sees, real and fake alike,
in both the D and the G step, keeps it from overfitting while the generator
still learns the un-augmented distribution (the augmentations are differentiable,
so G's gradient flows through them). The policies and their strengths follow the
paper's reference code: `color` (brightness, saturation, contrast), `translation`
(up to 1/8 of the image, zero padded), `cutout` (a square of half the image
side set to zero).

Pure functions of (images, seed): the same seed gives the same augmentation,
so one draw can be applied to a batch inside the compiled train_step.
"""

from __future__ import annotations

import tensorflow as tf

from gan_pkg.config import AUGMENT_POLICIES, parse_augment_policy  # noqa: F401  (the config validates the names)


def _uniform(shape, seed, index, low=0.0, high=1.0, dtype=tf.float32):
    return tf.random.stateless_uniform(shape, seed + tf.constant([0, index], seed.dtype), minval=low, maxval=high, dtype=dtype)


def color(x, seed):
    """Random brightness (+-0.5), saturation (x0..2) and contrast (x0.5..1.5) per image."""
    n = tf.shape(x)[0]
    x = x + (_uniform([n, 1, 1, 1], seed, 1, dtype=x.dtype) - 0.5)
    mean = tf.reduce_mean(x, axis=3, keepdims=True)
    x = (x - mean) * (_uniform([n, 1, 1, 1], seed, 2, dtype=x.dtype) * 2) + mean
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    return (x - mean) * (_uniform([n, 1, 1, 1], seed, 3, dtype=x.dtype) + 0.5) + mean


def translation(x, seed, ratio: float = 0.125):
    """Shift each image by up to `ratio` of its size in each direction, filling with zeros."""
    n, height, width = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
    shift_h = tf.cast(tf.cast(height, tf.float32) * ratio + 0.5, tf.int32)
    shift_w = tf.cast(tf.cast(width, tf.float32) * ratio + 0.5, tf.int32)
    dy = _uniform([n, 1], seed, 4, -shift_h, shift_h + 1, tf.int32)
    dx = _uniform([n, 1], seed, 5, -shift_w, shift_w + 1, tf.int32)
    # Index into a one-pixel zero border: rows/columns shifted off the image read the border.
    rows = tf.clip_by_value(tf.range(height)[None, :] + dy + 1, 0, height + 1)
    cols = tf.clip_by_value(tf.range(width)[None, :] + dx + 1, 0, width + 1)
    x = tf.gather(tf.pad(x, [[0, 0], [1, 1], [0, 0], [0, 0]]), rows, axis=1, batch_dims=1)
    return tf.gather(tf.pad(x, [[0, 0], [0, 0], [1, 1], [0, 0]]), cols, axis=2, batch_dims=1)


def cutout(x, seed, ratio: float = 0.5):
    """Zero a square of `ratio` x the image side at a random place in each image."""
    n, height, width = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
    size_h = tf.cast(tf.cast(height, tf.float32) * ratio + 0.5, tf.int32)
    size_w = tf.cast(tf.cast(width, tf.float32) * ratio + 0.5, tf.int32)
    top = _uniform([n, 1, 1], seed, 6, 0, height + (1 - size_h % 2), tf.int32) - size_h // 2
    left = _uniform([n, 1, 1], seed, 7, 0, width + (1 - size_w % 2), tf.int32) - size_w // 2
    rows = tf.range(height)[None, :, None]
    cols = tf.range(width)[None, None, :]
    inside = (rows >= top) & (rows < top + size_h) & (cols >= left) & (cols < left + size_w)
    return x * tf.cast(~inside, x.dtype)[..., None]


_APPLY = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(x, policy: tuple[str, ...], seed):
    """`x` [N, H, W, C] through each policy in order; identity when `policy` is empty.
    `seed`: a shape-[2] integer tensor (stateless RNG)."""
    for name in policy:
        x = _APPLY[name](x, seed)
    return x
