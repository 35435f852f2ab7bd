"""FusedBatchNormalization is Keras' BatchNormalization trained through one fused op: the
same outputs, gradients and moving statistics, the same weights, and Keras' own code where
the op does not apply (inference, XLA-compiled steps)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from gan_pkg import architectures, training
from gan_pkg import config as config_lib
from gan_pkg.fused_norm import FusedBatchNormalization, use_fused_op
from gan_pkg.runtime import dtype_policy


def _pair(shape, **options):
    """A Keras layer and a fused one with the same (non-trivial) weights."""
    plain, fused = keras.layers.BatchNormalization(momentum=0.8, **options), FusedBatchNormalization(momentum=0.8, **options)
    for layer in (plain, fused):
        layer.build(shape)
    rng = np.random.default_rng(3)
    weights = [w + rng.normal(size=w.shape).astype("float32") * 0.5 for w in plain.get_weights()]
    weights[-1] = np.abs(weights[-1]) + 0.5  # a moving variance stays positive
    for layer in (plain, fused):
        layer.set_weights(weights)
    return plain, fused


def _train_call(layer, x, upstream, jit=False):
    """One training call under tf.function: output and gradients wrt x and the weights."""

    def run():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * upstream)
        return [y, *tape.gradient(loss, [x, *layer.trainable_variables])]

    return [np.asarray(tf.cast(t, tf.float32)) for t in tf.function(run, jit_compile=jit)()]


@pytest.mark.parametrize("shape", [(8, 5, 5, 3), (16, 7)])
@pytest.mark.parametrize("options", [{}, dict(center=False, scale=False)])
def test_trains_like_keras_batch_normalization(shape, options):
    plain, fused = _pair(shape, **options)
    x = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, size=shape), tf.float32)
    upstream = tf.constant(np.random.default_rng(1).normal(size=shape), tf.float32)
    for expected, got in zip(_train_call(plain, x, upstream), _train_call(fused, x, upstream)):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    # Keras' moving-average rule on the biased batch variance, not the op's unbiased one
    for expected, got in zip(plain.get_weights(), fused.get_weights()):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fused(x, training=False), plain(x, training=False), rtol=1e-5, atol=1e-5)


def test_bfloat16_training_stays_close_to_keras():
    shape = (16, 6, 6, 8)
    x = tf.constant(np.random.default_rng(0).normal(size=shape), tf.float32)
    upstream = tf.constant(np.random.default_rng(1).normal(size=shape), tf.float32)
    with dtype_policy("mixed_bfloat16"):
        plain, fused = _pair(shape)
        expected, got = _train_call(plain, x, upstream), _train_call(fused, x, upstream)
    assert fused.compute_dtype == "bfloat16"
    for e, g in zip(expected, got):
        assert np.abs(g - e).max() <= 0.02 * np.abs(e).max() + 1e-3
    np.testing.assert_allclose(fused.moving_variance, plain.moving_variance, rtol=1e-3)


def _ops(layer, x, jit=False, training=True):
    graph = tf.function(lambda: layer(x, training=training), jit_compile=jit).get_concrete_function().graph
    return {op.type for op in graph.get_operations()}


def test_the_fused_op_runs_only_where_it_should():
    x = tf.zeros((4, 3, 3, 2))
    _, fused = _pair(x.shape)
    assert "FusedBatchNormV3" in _ops(fused, x)
    assert "FusedBatchNormV3" not in _ops(fused, x, training=False)  # a served graph is Keras' own
    use_fused_op(keras.Sequential([keras.Input(x.shape[1:]), fused]), False)
    assert "FusedBatchNormV3" not in _ops(fused, x)
    _, x_gradient, *_ = _train_call(fused, x, tf.ones_like(x), jit=True)  # Keras' ops still train under XLA
    assert np.isfinite(x_gradient).all()


@pytest.mark.parametrize("jit", [False, True])
def test_a_gan_uses_the_op_unless_its_step_is_xla_compiled(jit):
    cfg = config_lib.preset("dcgan").replace(jit_compile=jit, precision="float32")
    model = training.build_gan(cfg)
    norms = [layer for network in (model.generator, model.discriminator) for layer in network._flatten_layers()
             if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(isinstance(layer, FusedBatchNormalization) for layer in norms)
    assert {layer.fused for layer in norms} == {not jit}


def test_generators_save_and_load_with_it(tmp_path):
    generator, _ = architectures.build(config_lib.preset("dcgan"))
    generator.save(tmp_path / "g.keras")
    loaded = keras.models.load_model(tmp_path / "g.keras")
    noise = np.random.default_rng(0).normal(size=(3, generator.input_shape[-1])).astype("float32")
    np.testing.assert_allclose(loaded(noise, training=False), generator(noise, training=False), atol=1e-6)
