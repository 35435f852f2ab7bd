"""Training options beyond the tutorials: DiffAugment, spectral norm in D, learning-rate
schedules. Each is a config field any image preset (and the tuner) can set."""

import numpy as np
import pytest
import tensorflow as tf
from tiny import tiny

from gan_pkg import architectures, augment, runs, training
from gan_pkg import data as data_lib
from gan_pkg.config import GANConfig

SEED = tf.constant([3, 4], tf.int64)


def _images(n=6, seed=0):
    return tf.constant(np.random.default_rng(seed).uniform(-1, 1, (n, 28, 28, 1)), tf.float32)


# --------------------------------------------------------------------------- DiffAugment


def test_no_policy_is_the_identity():
    x = _images()
    assert augment.diff_augment(x, (), SEED) is x


@pytest.mark.parametrize("policy", [("translation",), ("cutout",), ("color",), ("translation", "cutout"), ("color", "translation", "cutout")])
def test_augmentation_keeps_shape_and_lets_gradients_through(policy):
    x = _images()
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = augment.diff_augment(x, policy, SEED)
        total = tf.reduce_sum(y * tf.random.stateless_normal(y.shape, [1, 2]))
    grad = tape.gradient(total, x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert grad is not None and np.isfinite(grad.numpy()).all() and np.abs(grad.numpy()).sum() > 0
    np.testing.assert_array_equal(augment.diff_augment(x, policy, SEED), y)  # same seed, same draw
    assert not np.allclose(augment.diff_augment(x, policy, SEED + 1), y)  # another seed, another draw


def test_translation_and_cutout_only_move_or_zero_pixels():
    x = _images(8)
    for name in ("translation", "cutout"):
        y = augment.diff_augment(x, (name,), SEED).numpy()
        for before, after in zip(x.numpy(), y):
            assert np.isin(after, np.append(before.ravel(), 0.0)).all(), name
    moved = augment.translation(x, SEED).numpy()
    assert not np.array_equal(moved, x.numpy())
    # A square of half the side (14 x 14 of 28 x 28), centred anywhere: at a corner a quarter of it remains.
    share = (augment.cutout(tf.ones((64, 28, 28, 1)), SEED).numpy() == 0).mean(axis=(1, 2, 3))
    assert share.min() >= 7 * 7 / 28**2 and share.max() == 14 * 14 / 28**2


def test_unknown_policies_and_1d_presets_are_refused():
    with pytest.raises(ValueError, match="unknown policy zoom"):
        GANConfig.resolve("dcgan", {"augment": "translation,zoom"})
    with pytest.raises(ValueError, match="1-D samples"):
        GANConfig.resolve("dist1d", {"augment": "cutout"})
    with pytest.raises(ValueError, match="lr_schedule must be one of constant, linear, cosine"):
        GANConfig.resolve("dcgan", {"lr_schedule": "step"})


# --------------------------------------------------------------------------- spectral norm


def test_spectral_norm_bounds_every_discriminator_kernel():
    config = tiny("dcgan", d_spectral_norm=True)
    _, discriminator = architectures.build(config)
    wrapped = [layer for layer in discriminator.layers if type(layer).__name__ == "SpectralNormalization"]
    assert len(wrapped) == len(config.d_filters) + 1  # every conv and the logit
    for layer in wrapped:
        layer.kernel.assign(layer.kernel * 10.0)  # far from norm 1
    images = _images(4)
    for _ in range(30):  # one power iteration per training call
        discriminator(images, training=True)
    for layer in wrapped:
        kernel = layer.kernel.numpy().reshape(-1, layer.kernel.shape[-1])
        assert np.linalg.norm(kernel, 2) == pytest.approx(1.0, abs=0.05)


# --------------------------------------------------------------------------- learning-rate schedules


@pytest.mark.parametrize("schedule, middle", [("constant", 1.0), ("linear", 0.5), ("cosine", 0.5)])
def test_learning_rate_schedules_decay_over_the_run(schedule, middle):
    config = GANConfig.resolve("dcgan", {"lr_schedule": schedule}, steps=1000)
    rate = training.learning_rate_schedule(config, 2e-4)
    at = (lambda step: float(rate(step))) if callable(rate) else (lambda step: rate)
    assert at(0) == pytest.approx(2e-4)
    assert at(500) == pytest.approx(2e-4 * middle, rel=1e-3)
    assert at(1000) == pytest.approx(2e-4 if schedule == "constant" else 0.0, abs=1e-9)


def test_a_run_with_every_option_trains_and_resumes_with_them(tmp_path):
    config = tiny("dcgan", steps=4, augment="translation,cutout", d_spectral_norm=True, lr_schedule="cosine")
    result = training.train(config, tmp_path / "run", verbose=0)
    assert result.step == 4
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert all(np.isfinite(float(v)) for v in history[1].split(",")[2:7])
    _, model, _ = runs.load_run(tmp_path / "run")
    assert model.augment_policy == ("translation", "cutout")
    assert float(model.g_optimizer.learning_rate) < config.g_learning_rate  # the schedule came back at its step


def test_every_option_trains_under_xla():
    """jit_compile=auto turns XLA on for float32 CPU runs: every option must compile."""
    config = tiny("cdcgan", jit_compile=True, augment="color,translation,cutout", d_spectral_norm=True, ema_decay=0.9, reuse_fakes=True, lr_schedule="linear")
    model = training.build_gan(config)
    history = model.fit(data_lib.training_dataset(data_lib.load(config), config), steps_per_epoch=2, epochs=1, verbose=0, shuffle=False)
    assert model.jit_compile is True and int(model.g_optimizer.iterations) == 2
    assert all(np.isfinite(values[-1]) for values in history.history.values())


def test_tune_recipe_searches_every_option_and_only_for_images():
    import keras_tuner as kt

    from gan_pkg import hypermodel

    model = hypermodel.GANHyperModel(GANConfig.resolve("dcgan"), "unused", tune_recipe=True)
    hp = kt.HyperParameters()
    default = model.config_for(hp)
    assert {"augment", "d_spectral_norm", "lr_schedule", "ema_decay"} <= set(hp.values)
    assert (default.augment, default.d_spectral_norm, default.lr_schedule, default.ema_decay) == ("", False, "constant", 0.0)
    hp.values.update(augment="translation,cutout", d_spectral_norm=True, lr_schedule="cosine", ema_decay=0.999)
    chosen = model.config_for(hp)
    assert (chosen.augment, chosen.d_spectral_norm, chosen.lr_schedule, chosen.ema_decay) == ("translation,cutout", True, "cosine", 0.999)
    assert "class_loss_weight" not in hp.values  # no labels in use: no class head to weigh
    conditional = hypermodel.GANHyperModel(GANConfig.resolve("cdcgan"), "unused", tune_recipe=True)
    hp = kt.HyperParameters()
    assert conditional.config_for(hp).class_loss_weight == 1.0 and "class_loss_weight" in hp.values
    hp.values.update(class_loss_weight=0.0)
    assert conditional.config_for(hp).class_loss_weight == 0.0
    with pytest.raises(ValueError, match="1-D samples"):
        hypermodel.GANHyperModel(GANConfig.resolve("dist1d"), "unused", tune_recipe=True)
