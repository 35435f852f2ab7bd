"""The colour family and its recipe: residual networks sized by the side, the relativistic
pairing loss, and zero-centred R1/R2 penalties taken on a share of each batch."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny import tiny

from gan_pkg import architectures, losses, sizing, training
from gan_pkg import config as config_lib
from gan_pkg import data as data_lib
from gan_pkg.gan import GAN
from gan_pkg.plan import plan
from gan_pkg.recipe import Recipe
from gan_pkg.shapes import shapes_folder


@pytest.mark.parametrize("side", [16, 32, 64, 128])
def test_residual_widths_halve_as_the_side_doubles_and_d_mirrors_g(side):
    config = sizing.sized(config_lib.preset("resnet"), (side, side, 3))
    grid = config.g_initial_shape[0]
    sides = [grid * 2**k for k in range(1, len(config.g_filters) + 1)]
    assert sides[-1] == side and grid <= sizing.MAX_GRID
    assert config.g_filters == tuple(sizing.residual_width(s) for s in sides)
    assert config.d_filters == tuple(reversed(config.g_filters))
    generator, discriminator = architectures.build(config.replace(num_classes=9))
    assert generator.output_shape[1:] == (side, side, 3)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in discriminator.layers)


def test_rpgan_pairs_each_real_with_a_fake():
    real, fake = tf.constant([[2.0], [0.0]]), tf.constant([[0.0], [2.0]])
    softplus = lambda x: np.log1p(np.exp(x))  # noqa: E731
    assert float(losses.rpgan_d_loss(real, fake)) == pytest.approx((softplus(-2.0) + softplus(2.0)) / 2)
    # only the differences count: shifting every score changes nothing (unlike bce)
    assert float(losses.rpgan_d_loss(real + 5.0, fake + 5.0)) == pytest.approx(float(losses.rpgan_d_loss(real, fake)))
    assert float(losses.rpgan_g_loss(fake, real)) == pytest.approx(float(losses.rpgan_d_loss(fake, real)))


def _linear_critic_gan(weights: np.ndarray, **recipe) -> GAN:
    """A GAN whose D is linear in its image, so |grad D(x)|^2 is |weights|^2 at every x."""
    image = keras.Input((4, 4, 3))
    dense = keras.layers.Dense(1, use_bias=False)
    discriminator = keras.Model(image, dense(keras.layers.Flatten()(image)))
    dense.kernel.assign(weights.reshape(-1, 1))
    noise = keras.Input((2,))
    generator = keras.Model(noise, keras.layers.Reshape((4, 4, 3))(keras.layers.Dense(48)(noise)))
    model = GAN(generator, discriminator, latent_dim=2)
    model.compile(keras.optimizers.Adam(), keras.optimizers.Adam(), recipe=Recipe(**recipe))
    return model


@pytest.mark.parametrize("reg_every", [1, 4])
def test_r1_and_r2_are_gamma_halves_of_the_squared_input_gradient(reg_every):
    weights = np.random.default_rng(0).standard_normal(48).astype("float32")
    images = tf.random.stateless_normal((8, 4, 4, 3), [0, 1])
    model = _linear_critic_gan(weights, r1_weight=2.0, r2_weight=0.5, reg_every=reg_every)
    penalty = float(model._gradient_penalties(images, images * 3.0, None))
    assert penalty == pytest.approx((2.0 / 2 + 0.5 / 2) * float(np.sum(weights**2)), rel=1e-5)


def test_no_penalty_weight_no_penalty_and_a_flat_critic_costs_nothing():
    images = tf.ones((4, 4, 4, 3))
    assert float(_linear_critic_gan(np.zeros(48, "float32"), r1_weight=10.0)._gradient_penalties(images, images, None)) == 0.0
    with pytest.raises(ValueError, match="reg_every must be at least 1"):
        Recipe(reg_every=0)


def test_the_colour_recipe_trains_on_a_colour_folder_under_xla(tmp_path):
    """Under XLA, the harder case: it refuses a branch in the step (the penalties take a share of
    the batch instead of every k-th step); the penalties' arithmetic is checked eagerly above."""
    jit_compile = True
    folder = shapes_folder(tmp_path / "shapes", size=32, per_class=20)
    config = tiny("resnet", data=str(folder), holdout=8, loss="rpgan", r1_weight=0.05, reg_every=4, jit_compile=jit_compile)
    planned = plan(config, log=lambda line: None)
    assert planned.config.image_shape == (32, 32, 3) and planned.config.classes.noise_code == 2
    model = training.build_gan(planned.config)
    before = [w.copy() for w in model.discriminator.get_weights()]
    history = model.fit(data_lib.training_dataset(planned.data, planned.config), steps_per_epoch=3, epochs=1, verbose=0)
    assert np.isfinite(history.history["d_loss"][-1]) and np.isfinite(history.history["g_loss"][-1])
    assert any(not np.allclose(a, b) for a, b in zip(before, model.discriminator.get_weights()))
    assert model.recipe.r1_weight > 0 and model.recipe.loss == "rpgan"


def test_minibatch_stddev_is_zero_for_copies_and_grows_with_the_batchs_spread():
    from gan_pkg.minibatch_std import MinibatchStdDev

    layer = MinibatchStdDev()
    copies = tf.repeat(tf.random.stateless_normal((1, 4, 4, 3), [0, 2]), 8, axis=0)
    spread = lambda x: layer(x).numpy()[..., -1]  # noqa: E731
    assert layer(copies).shape == (8, 4, 4, 4) and np.allclose(layer(copies).numpy()[..., :3], copies.numpy())
    assert np.allclose(spread(copies), 0.0, atol=1e-3)
    narrow, wide = (tf.random.stateless_normal((8, 4, 4, 3), [0, 3]) * s for s in (0.5, 2.0))
    assert 0.0 < spread(narrow).max() < spread(wide).min()
    assert np.ptp(spread(wide)) == 0.0  # one value for every image and position


@pytest.mark.parametrize("head", ["pool", "dense"])
def test_a_discriminator_with_the_batchs_spread_scores_an_image_by_the_company_it_keeps(head):
    """With d_minibatch_std, D's score of one image depends on the rest of its batch: a batch of
    copies (a collapsed generator's) is told from a varied one. Without it, it is not."""
    config = sizing.sized(config_lib.preset("resnet"), (16, 16, 3)).replace(conditioning="none", num_classes=0, class_loss_weight=0.0, d_head=head)
    images = tf.random.stateless_uniform((4, 16, 16, 3), [0, 4], -1.0, 1.0)
    copies = tf.repeat(images[:1], 4, axis=0)
    for minibatch_std in (False, True):
        keras.utils.set_random_seed(0)
        _, discriminator = architectures.build(config.replace(d_minibatch_std=minibatch_std))
        first = lambda batch: float(discriminator(batch)[0, 0])  # noqa: E731
        assert (abs(first(images) - first(copies)) > 1e-4) == minibatch_std


def test_the_residual_discriminator_head_is_pool_or_dense():
    config = sizing.sized(config_lib.preset("resnet"), (16, 16, 3)).replace(num_classes=2)
    dense = architectures.build(config.replace(d_head="dense"))[1]
    pooled = architectures.build(config.replace(d_head="pool"))[1]
    assert any(isinstance(layer, keras.layers.Flatten) for layer in dense.layers)
    assert any(isinstance(layer, keras.layers.GlobalAveragePooling2D) for layer in pooled.layers)
    with pytest.raises(ValueError, match="d_head must be one of pool, dense, got 'sum'"):
        config_lib.GANConfig.resolve("resnet", {"d_head": "sum"})
