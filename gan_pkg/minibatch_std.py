"""Minibatch standard deviation (Karras et al. 2018, PGGAN): one extra feature map for D.

A discriminator that scores one image at a time cannot see that every fake in a batch is
the same image, so a generator that collapses onto a few good-looking samples is not
punished. This layer appends the batch's spread as a constant channel: the standard
deviation of each feature over the batch, averaged over features and positions. Real
batches are diverse; a collapsing generator's batches are not, and D can tell.

The statistic is taken over the whole batch (PGGAN's original form), so any batch size
works, including the few images a gradient penalty is taken on. D must see reals and
fakes in separate calls (gan_pkg.gan does), or the spread would mix the two.
"""

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="gan_pkg")
class MinibatchStdDev(layers.Layer):
    """(N, H, W, C) -> (N, H, W, C + 1): the last channel is the batch's mean standard deviation."""

    def call(self, x):
        spread = ops.sqrt(ops.var(ops.cast(x, "float32"), axis=0) + 1e-8)
        feature = ops.cast(ops.mean(spread), x.dtype)
        return ops.concatenate([x, ops.ones_like(x[..., :1]) * feature], axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (input_shape[-1] + 1,)
