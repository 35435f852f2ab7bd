"""UpsampledConv2D is UpSampling2D(2) + Conv2D(same): the same function, the same gradients,
the same weights, so folding the tutorials' pair changes nothing a user trains or serves."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from gan_pkg import architectures
from gan_pkg import config as config_lib
from gan_pkg.runtime import dtype_policy
from gan_pkg.upsampled_conv import UpsampledConv2D


def _pair_and_folded(shape, filters, kernel_size):
    pair = keras.Sequential([keras.Input(shape), keras.layers.UpSampling2D(2), keras.layers.Conv2D(filters, kernel_size, padding="same")])
    folded = keras.Sequential([keras.Input(shape), UpsampledConv2D(filters, kernel_size)])
    folded.set_weights([w + 0.01 * np.random.default_rng(1).normal(size=w.shape) for w in pair.get_weights()])
    pair.set_weights(folded.get_weights())  # a nonzero bias, the same in both
    return pair, folded


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
@pytest.mark.parametrize("shape", [(7, 7, 6), (4, 6, 3)])
def test_same_outputs_and_gradients_as_upsampling_then_conv(kernel_size, shape):
    pair, folded = _pair_and_folded(shape, 5, kernel_size)
    x = tf.constant(np.random.default_rng(0).normal(size=(3, *shape)), tf.float32)
    results = []
    for model in (pair, folded):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = model(x)
            loss = tf.reduce_sum(y * y)
        results.append([y, *tape.gradient(loss, [x, *model.trainable_variables])])
    assert results[1][0].shape == (3, 2 * shape[0], 2 * shape[1], 5)
    for expected, got in zip(*results):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_bfloat16_stays_close_to_the_float32_pair():
    pair, folded = _pair_and_folded((7, 7, 16), 8, 3)
    x = np.random.default_rng(0).normal(size=(2, 7, 7, 16)).astype("float32")
    expected = np.asarray(pair(x))
    with dtype_policy("mixed_bfloat16"):
        low = keras.Sequential([keras.Input((7, 7, 16)), UpsampledConv2D(8, 3)])
        low.set_weights(folded.get_weights())
        got = np.asarray(low(x), "float32")
    assert np.abs(got - expected).max() < 0.05 * np.abs(expected).max()


def test_the_tutorial_generator_is_the_same_network_either_way():
    cfg = config_lib.preset("dcgan")
    seeds_layers, _ = architectures.build(cfg.replace(g_upsampled_conv=False))
    folded, _ = architectures.build(cfg)
    assert any(isinstance(layer, UpsampledConv2D) for layer in folded.layers)
    assert not any(isinstance(layer, keras.layers.UpSampling2D) for layer in folded.layers)
    assert [w.shape for w in folded.get_weights()] == [w.shape for w in seeds_layers.get_weights()]
    folded.set_weights(seeds_layers.get_weights())  # a checkpoint of one form loads into the other
    noise = np.random.default_rng(0).normal(size=(4, cfg.latent_dim)).astype("float32")
    np.testing.assert_allclose(folded(noise, training=False), seeds_layers(noise, training=False), atol=1e-5)


def test_saved_and_loaded_it_computes_the_same(tmp_path):
    _, folded = _pair_and_folded((4, 4, 3), 2, 3)
    folded.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 3)).astype("float32")
    np.testing.assert_allclose(loaded(x), folded(x), atol=1e-6)


@pytest.mark.parametrize("arguments", [dict(kernel_size=4), dict(kernel_size=(3, 5)), dict(kernel_size=3, strides=2), dict(kernel_size=3, padding="valid")])
def test_refuses_what_it_does_not_compute(arguments):
    with pytest.raises(ValueError, match="UpsampledConv2D"):
        UpsampledConv2D(4, **arguments)
