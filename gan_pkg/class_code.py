"""A class hidden in the noise: a conditional GAN whose served generator takes noise only.

A noise vector's class is the argmax of its first `classes` values. Training draws each
fake for a real image's label by moving the largest of those values to the label's
position (`noise_with_class`); the generator's first layer (`ClassCode`) reads them back
as the one-hot of their argmax, as a conditional generator reads its label (InfoGAN's
categorical code beside continuous noise). Plain N(0, 1) noise falls in each class
equally often, so serving needs no label and no change to the noise contract.
"""

import keras
from keras import layers, ops


def noise_with_class(noise, labels, classes: int):
    """`noise` with the largest of its first `classes` values swapped into position `label`.
    The values are i.i.d., so a swap keeps their distribution: noise given uniformly drawn
    labels is distributed as plain noise is."""
    head, positions = noise[:, :classes], ops.arange(classes)[None, :]
    wanted = ops.equal(positions, ops.cast(labels, "int32")[:, None])
    top = ops.equal(positions, ops.cast(ops.argmax(head, axis=1), "int32")[:, None])
    largest = ops.max(head, axis=1, keepdims=True)
    at_label = ops.sum(ops.where(wanted, head, ops.zeros_like(head)), axis=1, keepdims=True)
    swapped = ops.where(wanted, largest, ops.where(top, at_label, head))  # exact: values move, none is computed
    return ops.concatenate([swapped, noise[:, classes:]], axis=1)


@keras.saving.register_keras_serializable(package="gan_pkg")
class ClassCode(layers.Layer):
    """noise -> noise whose first `classes` values are replaced by the one-hot of their argmax:
    the class as a label input would give it (a discrete switch a continuous generator cannot
    learn from raw values). No weights; the vector keeps its length."""

    def __init__(self, classes: int, **kwargs):
        super().__init__(**kwargs)
        self.classes = int(classes)

    def call(self, noise):
        code = ops.one_hot(ops.argmax(noise[:, : self.classes], axis=1), self.classes, dtype=noise.dtype)
        return ops.concatenate([code, noise[:, self.classes :]], axis=1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "classes": self.classes}
