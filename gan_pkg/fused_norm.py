"""Batch normalization whose training pass is one fused op.

Keras 3's BatchNormalization trains through a chain of separate ops (a cast to float32,
mean, squared difference, mean, scale and shift, and as many again for the gradient),
each one pass over the activations. On a CPU, in bfloat16 above all, those passes are
a large part of a training step (`bench/step_profile.py` shows them). TensorFlow's FusedBatchNormV3 (oneDNN on
CPUs, cuDNN on GPUs, and XLA compiles it) normalizes in one pass forward and one
backward. `FusedBatchNormalization` is Keras' layer with the same weights, options and
moving-average rule; only a training call runs the fused op. Inference runs Keras' own
code, so a served generator's graph is what it was.

Not under XLA: XLA already fuses Keras' chain of ops, and the code it makes of the fused op
is slower than that. `use_fused_op` switches a model's layers to match its train step
(GAN.compile calls it with the step's jit_compile).
"""

import keras
import tensorflow as tf
from keras import layers

# FusedBatchNormV3 refuses a smaller epsilon (cuDNN's floor); Keras' layer takes any.
MIN_FUSED_EPSILON = 1.001e-5


@keras.saving.register_keras_serializable(package="gan_pkg")
class FusedBatchNormalization(layers.BatchNormalization):
    """layers.BatchNormalization, trained through one FusedBatchNormV3 op where it can be:
    features on the last axis of a rank-2 or rank-4 input, no mask, no renorm, not
    synchronized across replicas. Anything else trains through Keras' own code."""

    fused = True  # use_fused_op: False for a step XLA compiles

    def _fuses(self, inputs, training, mask) -> bool:
        rank = len(inputs.shape)
        return bool(
            self.fused and training and self.trainable and mask is None and not self.renorm and not self.synchronized
            and rank in (2, 4) and self.axis in (-1, rank - 1) and self.epsilon >= MIN_FUSED_EPSILON
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fuses(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        channels, flat = inputs.shape[-1], len(inputs.shape) == 2
        x = tf.reshape(inputs, (-1, 1, 1, channels)) if flat else inputs  # the op takes rank 4
        if x.dtype not in (tf.float16, tf.bfloat16, tf.float32):
            x = tf.cast(x, tf.float32)
        # Scale and offset stay float32 under mixed precision: the op computes in float32.
        scale = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones((channels,), tf.float32)
        offset = tf.cast(self.beta, tf.float32) if self.center else tf.zeros((channels,), tf.float32)
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(x, scale, offset, epsilon=self.epsilon, is_training=True)
        # The op returns the unbiased batch variance; Keras averages the biased one.
        count = tf.cast(tf.size(x) // channels, tf.float32)
        variance = tf.where(count > 1, variance * (count - 1) / count, tf.zeros_like(variance))  # one value per channel: 0
        momentum = self.momentum
        self.moving_mean.assign(self.moving_mean * momentum + tf.cast(mean, self.moving_mean.dtype) * (1.0 - momentum))
        self.moving_variance.assign(self.moving_variance * momentum + tf.cast(variance, self.moving_variance.dtype) * (1.0 - momentum))
        y = tf.reshape(y, tf.shape(inputs)) if flat else y
        return tf.cast(y, self.compute_dtype)


def use_fused_op(model: keras.Model, enabled: bool) -> None:
    """Train every FusedBatchNormalization in `model` (a GAN: both networks and its EMA copy)
    through the fused op, or (False: an XLA-compiled step) through Keras' own ops."""
    for layer in model._flatten_layers():
        if isinstance(layer, FusedBatchNormalization):
            layer.fused = enabled
