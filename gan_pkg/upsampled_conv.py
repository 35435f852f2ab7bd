"""Nearest-neighbour upsampling by 2 and a same-padded convolution, as one layer.

Tutorial 000's generator doubles its grid with UpSampling2D and then runs a 3x3 Conv2D:
each output pixel's nine taps read only four distinct input pixels, and the convolution
multiplies each of them in once per tap. `UpsampledConv2D` keeps that Conv2D's own
kernel and bias (same shapes, names and initialisers) and computes the same function as
one stride-2 transposed convolution whose kernel sums the taps that read the same input
pixel, so it multiplies each distinct input once: fewer multiply-adds on the generator's
largest layers, in training and in the served graph. The sums are exact up to float
rounding, so a trained kernel means the same thing in either form.
"""

import keras
import numpy as np
from keras import layers, ops


def fold_matrix(kernel_size: int) -> np.ndarray:
    """(kernel_size + 1, kernel_size) 0/1 matrix M: transposed kernel = M . kernel . M^T per channel pair.

    Output row 2j + a (phase a) of the convolution over the upsampled input reads upsampled
    rows 2j + a + t for taps t in [-p, p], i.e. input rows j + (a + t) // 2. A stride-2
    transposed convolution with a (k + 1)-tap kernel and same padding (p before) gives output
    row 2j + a the input row j + d through its tap a - 2d + p, so that tap is the sum of the
    original taps t with (a + t) // 2 == d.
    """
    p = kernel_size // 2
    matrix = np.zeros((kernel_size + 1, kernel_size), "float32")
    for phase in (0, 1):
        for t in range(-p, p + 1):
            matrix[phase - 2 * ((phase + t) // 2) + p, t + p] += 1
    return matrix


@keras.saving.register_keras_serializable(package="gan_pkg")
class UpsampledConv2D(layers.Conv2D):
    """UpSampling2D(2) then Conv2D(filters, kernel_size, padding="same"), as one layer.

    Square odd kernels, stride 1, channels last, no dilation or groups: the tutorials'
    generators' blocks. Its weights are the Conv2D's, so either form loads the other's.
    """

    def __init__(self, filters, kernel_size, **kwargs):
        kwargs.setdefault("padding", "same")
        super().__init__(filters, kernel_size, **kwargs)
        plain = {"padding": "same", "strides": (1, 1), "dilation_rate": (1, 1), "groups": 1, "data_format": "channels_last"}
        for name, value in plain.items():
            if getattr(self, name) != value:
                raise ValueError(f"UpsampledConv2D takes {name}={value!r} only, got {getattr(self, name)!r}")
        height, width = self.kernel_size
        if height != width or height % 2 == 0:
            raise ValueError(f"UpsampledConv2D needs a square odd kernel, got {self.kernel_size}")
        fold = fold_matrix(height)
        self._fold = np.kron(fold, fold)  # both axes at once: one matmul over the flattened taps

    def convolution_op(self, inputs, kernel):
        # Summed in float32 whatever the compute dtype, then cast: bfloat16 taps add without loss.
        k, _, channels_in, filters = kernel.shape
        taps = ops.reshape(ops.cast(kernel, "float32"), (k * k, channels_in * filters))
        folded = ops.reshape(ops.matmul(ops.convert_to_tensor(self._fold), taps), (k + 1, k + 1, channels_in, filters))
        folded = ops.cast(ops.transpose(folded, (0, 1, 3, 2)), inputs.dtype)  # conv_transpose's (h, w, out, in)
        return ops.conv_transpose(inputs, folded, strides=2, padding="same")

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        return (batch, None if height is None else 2 * height, None if width is None else 2 * width, self.filters)
