"""Registry: architecture name -> builder(config) -> (generator, discriminator).

Each builder reproduces its tutorial's layer stack; sizes come from the config so
tuning can change them. Discriminators end in a linear unit (a logit): the
tutorials' final sigmoid lives in the loss instead, where it is numerically stable
and where hinge/WGAN losses can do without it. Parameter counts are unchanged.
Output layers run in float32 so mixed precision never reaches the images.

How classes enter (`config.classes`, gan_pkg.conditioning) is one scheme for every
image builder. With a label (conditioning "label") the generator takes [noise, label], sees the noise joined to a learned label
embedding (Mirza & Osindero's cGAN) and normalises with class-conditional batch
norm; with the class coded in the noise it reads the class from the noise's first
values. Either way the discriminator takes [image, label] and adds a projection head
to its logit (Miyato & Koyama 2018), and with a class head a second output, the
class logits. Labels are int32.
"""

from __future__ import annotations

import math
from typing import Callable

import keras
from keras import layers

from gan_pkg.class_code import ClassCode
from gan_pkg.config import GANConfig
from gan_pkg.fused_norm import FusedBatchNormalization
from gan_pkg.minibatch_std import MinibatchStdDev
from gan_pkg.upsampled_conv import UpsampledConv2D


def _activation(name: str) -> layers.Layer:
    # Tutorials 000 and 002 use LeakyReLU(0.2); Keras 3's layer default is 0.3.
    if name == "leaky_relu":
        return layers.LeakyReLU(negative_slope=0.2)
    return layers.Activation(name)


def _synchronized(config: GANConfig) -> bool:
    # Under a tf.distribute strategy each replica would keep its own moving
    # statistics; synchronising batch statistics keeps every replica's model equal.
    return config.strategy != "default"


def _batch_norm(config: GANConfig, momentum: float) -> layers.Layer:
    return FusedBatchNormalization(momentum=momentum, synchronized=_synchronized(config))


@keras.saving.register_keras_serializable(package="gan_pkg")
class ConditionalBatchNorm(layers.Layer):
    """Batch norm whose scale and shift are looked up per class (de Vries et al. 2017),
    the generator half of Miyato & Koyama's projection cGAN: the label steers every
    normalised block, not only the first layer. Called on [x, label]."""

    def __init__(self, num_classes: int, momentum: float = 0.99, synchronized: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.num_classes, self.momentum, self.synchronized = int(num_classes), momentum, synchronized
        self.norm = FusedBatchNormalization(momentum=momentum, center=False, scale=False, synchronized=synchronized)

    def build(self, input_shape):
        x_shape = input_shape[0]
        self.norm.build(x_shape)
        channels = x_shape[-1]
        self.gamma = self.add_weight(shape=(self.num_classes, channels), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(self.num_classes, channels), initializer="zeros", name="beta")

    def call(self, inputs, training=None):
        x, label = inputs
        x = self.norm(x, training=training)
        shape = (-1,) + (1,) * (len(x.shape) - 2) + (x.shape[-1],)  # per sample, broadcast over space
        gamma = keras.ops.reshape(keras.ops.take(self.gamma, label, axis=0), shape)
        beta = keras.ops.reshape(keras.ops.take(self.beta, label, axis=0), shape)
        return x * keras.ops.cast(gamma, x.dtype) + keras.ops.cast(beta, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "momentum": self.momentum, "synchronized": self.synchronized}


def _g_norm(config: GANConfig, x, label):
    """The generator's batch norm; class-conditional when the generator has a label."""
    if label is None:
        return _batch_norm(config, config.g_bn_momentum)(x)
    return ConditionalBatchNorm(config.num_classes, config.g_bn_momentum, synchronized=_synchronized(config))([x, label])


def _output_activation(config: GANConfig) -> layers.Layer:
    return layers.Activation("tanh" if config.output_range else "linear", dtype="float32")


def _d_layer(config: GANConfig, layer: layers.Layer) -> layers.Layer:
    """A discriminator conv/dense layer, spectrally normalised when the config asks
    (Miyato et al. 2018: D's kernels scaled to spectral norm ~1, a Lipschitz bound)."""
    return layers.SpectralNormalization(layer) if config.d_spectral_norm else layer


def _generator_inputs(config: GANConfig):
    """(the generator's inputs, the vector its first layer sees, the label or None): the
    noise, joined to an embedding of the label when the config is conditional."""
    noise = keras.Input((config.latent_dim,), name="noise")
    classes = config.classes
    if classes.noise_code:
        if classes.noise_code > config.latent_dim:
            raise ValueError(f"conditioning=noise-code: {classes.noise_code} classes cannot be coded in {config.latent_dim} noise values (latent_dim)")
        return noise, ClassCode(classes.noise_code, name="class_code")(noise), None
    if not classes.generator_takes_label:
        return noise, noise, None
    label = keras.Input((), dtype="int32", name="label")
    code = layers.Embedding(config.num_classes, config.num_classes, name="label_embedding")(label)
    return [noise, label], layers.Concatenate(name="noise_and_label")([noise, code]), label


def _discriminator(config: GANConfig, image, features) -> keras.Model:
    """D from its input and its last features: a linear logit, plus, when conditional, the
    projection <embed(label), features> that scores how well the image fits its label
    (and, with a class head, a second output: class logits from the same features)."""
    classes = config.classes
    outputs = _d_layer(config, layers.Dense(1, dtype="float32", name="logit"))(features)
    inputs = image
    if classes.drawn_classes:
        label = keras.Input((), dtype="int32", name="label")
        embedded = layers.Embedding(classes.drawn_classes, features.shape[-1], dtype="float32", name="label_projection")(label)
        projection = layers.Dot(axes=1, dtype="float32", name="projection")([embedded, features])
        outputs = layers.Add(dtype="float32", name="conditional_logit")([outputs, projection])
        inputs = [image, label]
    if classes.class_head:  # AC-GAN: a second output, the class logits of the same features
        outputs = [outputs, _d_layer(config, layers.Dense(classes.label_classes, dtype="float32", name="class_logits"))(features)]
    return keras.Model(inputs, outputs, name="discriminator")


def _check_lengths(config: GANConfig, *pairs: tuple[str, int]) -> None:
    for name, expected in pairs:
        got = len(getattr(config, name))
        if got != expected:
            raise ValueError(f"config.{name} has {got} entries; this architecture needs {expected}")


def _conv_generator_body(config: GANConfig, x, conv_init=None, label=None):
    """Upsample+conv blocks shared by the DCGAN-style generators."""
    channels = config.image_shape[-1]
    filters = list(config.g_filters) + [channels]
    _check_lengths(config, ("g_kernel_sizes", len(filters)), ("g_upsample", len(filters)))
    for i, (f, k, up) in enumerate(zip(filters, config.g_kernel_sizes, config.g_upsample)):
        conv_args = dict(padding="same", kernel_initializer=conv_init or "glorot_uniform")
        if up == 2 and k % 2 and config.g_upsampled_conv:
            x = UpsampledConv2D(f, k, **conv_args)(x)
        else:
            if up > 1:
                x = layers.UpSampling2D(size=up)(x)
            x = layers.Conv2D(f, k, **conv_args)(x)
        if i == len(filters) - 1:
            break
        x = _activation(config.g_activation)(x)
        if config.g_bn_momentum:
            x = _g_norm(config, x, label)
    return _output_activation(config)(x)


def _conv_generator(config: GANConfig, inputs, x, label, init=None) -> keras.Model:
    """The shared upsampling body on top of a preset's stem, checked against the image size."""
    generator = keras.Model(inputs, _conv_generator_body(config, x, init, label), name="generator")
    got = tuple(generator.output_shape[1:])
    if got != tuple(config.image_shape):
        raise ValueError(
            f"generator makes {got} but image_shape is {tuple(config.image_shape)}: "
            "g_initial_shape times the product of g_upsample must equal the image size"
        )
    return generator


def _conv_discriminator_input(config: GANConfig):
    """The image input of a per-layer conv discriminator, once its lists agree in length."""
    _check_lengths(config, ("d_kernel_sizes", len(config.d_filters)), ("d_strides", len(config.d_filters)))
    return keras.Input(config.image_shape, name="image")


def build_dcgan(config: GANConfig):
    """Tutorial 000: UpSampling+Conv generator, strided-conv discriminator."""
    inputs, z, label = _generator_inputs(config)
    x = layers.Dense(math.prod(config.g_initial_shape), activation="relu")(z)
    x = layers.Reshape(config.g_initial_shape)(x)
    if config.g_bn_momentum:
        x = _g_norm(config, x, label)
    generator = _conv_generator(config, inputs, x, label)

    image = _conv_discriminator_input(config)
    x = image
    last = len(config.d_filters) - 1
    for i, (f, k, s) in enumerate(zip(config.d_filters, config.d_kernel_sizes, config.d_strides)):
        x = _d_layer(config, layers.Conv2D(f, k, strides=s, padding="same"))(x)
        if x.shape[1] % 2 and 2 in config.d_strides[i + 1 :]:  # the tutorial pads 7x7 to 8x8 so the next stride-2 conv halves evenly
            x = layers.ZeroPadding2D(((0, 1), (0, 1)))(x)
        x = _activation(config.d_activation)(x)
        if config.d_dropout:
            x = layers.Dropout(config.d_dropout)(x)
        if config.d_bn_momentum and 0 < i < last:  # the tutorial normalises the middle blocks only
            x = _batch_norm(config, config.d_bn_momentum)(x)
    x = layers.Flatten()(x)
    return generator, _discriminator(config, image, x)


def build_conv(config: GANConfig):
    """Tutorial 001: the configurable conv GAN (every per-layer list is a field)."""
    init = keras.initializers.RandomNormal(mean=0.0, stddev=0.02)
    inputs, z, label = _generator_inputs(config)
    x = layers.Dense(math.prod(config.g_initial_shape), kernel_initializer=init)(z)
    if config.g_bn_momentum:
        x = _g_norm(config, x, label)
    x = _activation(config.g_activation)(x)
    x = layers.Reshape(config.g_initial_shape)(x)
    if config.g_dropout:
        x = layers.Dropout(config.g_dropout)(x)
    generator = _conv_generator(config, inputs, x, label, init)

    image = _conv_discriminator_input(config)
    x = image
    for i, (f, k, s) in enumerate(zip(config.d_filters, config.d_kernel_sizes, config.d_strides)):
        x = _d_layer(config, layers.Conv2D(f, k, strides=s, padding="same", kernel_initializer=init))(x)
        if config.d_bn_momentum and i > 0:
            x = _batch_norm(config, config.d_bn_momentum)(x)
        x = _activation(config.d_activation)(x)
        if config.d_dropout:
            x = layers.Dropout(config.d_dropout)(x)
    x = layers.Flatten()(x)
    return generator, _discriminator(config, image, x)


def build_mlp(config: GANConfig):
    """Tutorial 002: dense generator and discriminator on flattened images."""
    inputs, x, _ = _generator_inputs(config)  # no batch norm in this generator: the label enters at the input
    for units in config.g_filters:
        x = layers.Dense(units)(x)
        x = _activation(config.g_activation)(x)
    x = layers.Dense(math.prod(config.image_shape))(x)
    x = layers.Reshape(config.image_shape)(_output_activation(config)(x))
    generator = keras.Model(inputs, x, name="generator")

    image = keras.Input(config.image_shape, name="image")
    x = layers.Flatten()(image)
    last = len(config.d_filters) - 1
    for i, units in enumerate(config.d_filters):
        x = _d_layer(config, layers.Dense(units))(x)
        x = _activation(config.d_activation)(x)
        if config.d_dropout and i < last:  # the tutorial drops out after all but the last
            x = layers.Dropout(config.d_dropout)(x)
    return generator, _discriminator(config, image, x)


@keras.saving.register_keras_serializable(package="gan_pkg")
class WithSquaredDeviation(layers.Layer):
    """Tutorial 003's `add_decorate`: [x, (x - mean(x))^2], so D can judge spread."""

    def call(self, x):
        deviation = keras.ops.square(x - keras.ops.mean(x, axis=-1, keepdims=True))
        return keras.ops.concatenate([x, deviation], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] * 2)


def build_dist1d(config: GANConfig):
    """Tutorial 003 section 7.2: per-element Conv1D(kernel 1) generator, dense D."""
    (length,) = config.image_shape
    if config.latent_dim != length:
        raise ValueError(
            f"dist1d maps each noise value to one sample: latent_dim ({config.latent_dim}) "
            f"must equal the vector length ({length})"
        )
    _check_lengths(config, ("g_filters", 2))
    if config.classes.uses_labels:
        raise ValueError("dist1d draws unlabelled 1-D samples: conditioning must be none and class_loss_weight 0")
    z = keras.Input((config.latent_dim,), name="noise")
    x = layers.Reshape((length, 1))(z)
    x = layers.Conv1D(config.g_filters[0], 1, activation="relu")(x)
    x = layers.Conv1D(config.g_filters[1], 1, activation="sigmoid")(x)
    x = layers.Conv1D(1, 1, dtype="float32")(x)
    generator = keras.Model(z, layers.Flatten(dtype="float32")(x), name="generator")

    sample = keras.Input((length,), name="image")
    x = WithSquaredDeviation()(sample)
    for units in config.d_filters:
        x = _d_layer(config, layers.Dense(units, activation="relu"))(x)
    return generator, _discriminator(config, sample, x)


def build_conv_tanh(config: GANConfig):
    """Tutorial 003 section 7.3: tanh everywhere, MaxPooling discriminator."""
    inputs, x, label = _generator_inputs(config)
    for units in config.g_dense_units:
        x = layers.Dense(units, activation=config.g_activation)(x)
    x = layers.Dense(math.prod(config.g_initial_shape), activation=config.g_activation)(x)
    if config.g_bn_momentum:
        x = _g_norm(config, x, label)
    x = layers.Reshape(config.g_initial_shape)(x)
    generator = _conv_generator(config, inputs, x, label)

    image = _conv_discriminator_input(config)
    x = image
    last = len(config.d_filters) - 1
    for i, (f, k, s) in enumerate(zip(config.d_filters, config.d_kernel_sizes, config.d_strides)):
        # The tutorial pads its first conv ("same") and not its last ("valid"); blocks added for larger images pad.
        x = _d_layer(config, layers.Conv2D(f, k, strides=s, padding="valid" if i == last and i > 0 else "same"))(x)
        x = _activation(config.d_activation)(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    for units in config.d_dense_units:
        x = _d_layer(config, layers.Dense(units, activation=config.d_activation))(x)
    return generator, _discriminator(config, image, x)


def _residual_up(config: GANConfig, x, filters: int, label):
    """A generator block at twice the side (BigGAN/SNGAN's ResBlock-up): [norm, act, upsample+conv,
    norm, act, conv] beside a nearest-upsampled 1x1 conv shortcut, summed. Each upsample+conv is
    one UpsampledConv2D (the same function, fewer multiply-adds)."""
    main = x
    if config.g_bn_momentum:
        main = _g_norm(config, main, label)
    main = UpsampledConv2D(filters, 3)(_activation(config.g_activation)(main))
    if config.g_bn_momentum:
        main = _g_norm(config, main, label)
    main = layers.Conv2D(filters, 3, padding="same")(_activation(config.g_activation)(main))
    shortcut = layers.Conv2D(filters, 1)(layers.UpSampling2D(2)(x))
    return layers.Add()([main, shortcut])


def _residual_down(config: GANConfig, x, filters: int, first: bool):
    """A discriminator block at half the side, without normalisation (SNGAN's ResBlock-down): [act,
    conv, act, conv, average-pool] beside a 1x1 conv + pool shortcut. The first block sees the
    image itself, so it starts with the conv (no activation of pixels) and pools before its
    shortcut conv, as SNGAN's "optimized" first block does."""
    conv = lambda f, k: _d_layer(config, layers.Conv2D(f, k, padding="same"))  # noqa: E731
    main = x if first else _activation(config.d_activation)(x)
    main = conv(filters, 3)(main)
    main = conv(filters, 3)(_activation(config.d_activation)(main))
    main = layers.AveragePooling2D(2)(main)
    shortcut = conv(filters, 1)(layers.AveragePooling2D(2)(x)) if first else layers.AveragePooling2D(2)(conv(filters, 1)(x))
    return layers.Add()([main, shortcut])


def build_resnet(config: GANConfig):
    """Residual networks for colour images at 16-256 px (gan_pkg.sizing widens them as the side
    falls): G projects the noise to a small grid and doubles it once per `g_filters` entry; D
    halves the image once per `d_filters` entry with no normalisation (so gradient penalties and
    spectral norm see one image at a time), then sums its features over space."""
    inputs, z, label = _generator_inputs(config)
    x = layers.Dense(math.prod(config.g_initial_shape))(z)
    x = layers.Reshape(config.g_initial_shape)(x)
    for filters in config.g_filters:
        x = _residual_up(config, x, filters, label)
    if config.g_bn_momentum:
        x = _g_norm(config, x, label)
    x = layers.Conv2D(config.image_shape[-1], 3, padding="same")(_activation(config.g_activation)(x))
    generator = keras.Model(inputs, _output_activation(config)(x), name="generator")
    if tuple(generator.output_shape[1:]) != tuple(config.image_shape):
        raise ValueError(f"generator makes {tuple(generator.output_shape[1:])} but image_shape is {tuple(config.image_shape)}: "
                         "g_initial_shape's side times 2 per g_filters entry must equal the image size")

    image = keras.Input(config.image_shape, name="image")
    x = image
    for i, filters in enumerate(config.d_filters):
        x = _residual_down(config, x, filters, first=i == 0)
    return generator, _discriminator(config, image, _residual_head(config, x))


def _residual_head(config: GANConfig, x):
    """D's last grid -> its feature vector: averaged over space, or (d_head "dense") PGGAN's
    epilogue, a conv and a dense layer that see every position of the grid."""
    if config.d_minibatch_std:
        x = MinibatchStdDev()(x)
    x = _activation(config.d_activation)(x)
    if config.d_head == "pool":
        return layers.GlobalAveragePooling2D()(x)
    width = config.d_filters[-1]
    x = _activation(config.d_activation)(_d_layer(config, layers.Conv2D(width, 3, padding="same"))(x))
    return _activation(config.d_activation)(_d_layer(config, layers.Dense(width))(layers.Flatten()(x)))


ARCHITECTURES: dict[str, Callable[[GANConfig], tuple[keras.Model, keras.Model]]] = {
    "resnet": build_resnet,
    "dcgan": build_dcgan,
    "conv": build_conv,
    "mlp": build_mlp,
    "dist1d": build_dist1d,
    "conv-tanh": build_conv_tanh,
}


def build(config: GANConfig) -> tuple[keras.Model, keras.Model]:
    try:
        builder = ARCHITECTURES[config.architecture]
    except KeyError:
        raise ValueError(
            f"unknown architecture {config.architecture!r}; choose one of: {', '.join(ARCHITECTURES)}"
        ) from None
    unsized = config.classes.unsized() if config.is_image else None
    if unsized:
        raise ValueError(unsized)
    return builder(config)
