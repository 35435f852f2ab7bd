import json
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from gan_pkg import data as data_lib
from gan_pkg import gan as gan_lib
from gan_pkg import losses, runs, runtime, training
from gan_pkg.config import GANConfig
from gan_pkg.recipe import LEGACY_COMPILE_ARGS, Recipe
from tiny import tiny


def _fit(model, cfg, steps=2):
    dataset = data_lib.training_dataset(data_lib.load(cfg), cfg)
    return model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)


@pytest.mark.parametrize("preset", ["dcgan", "conv", "mlp", "dist1d", "conv-tanh"])
def test_each_preset_trains_every_weight_of_both_networks(preset):
    cfg = tiny(preset)
    model = training.build_gan(cfg)
    before = {id(v): np.array(v) for v in model.generator.trainable_variables + model.discriminator.trainable_variables}
    history = _fit(model, cfg)
    for network in (model.generator, model.discriminator):
        for variable in network.trainable_variables:
            # Exact comparison: a bias followed by batch norm gets only a tiny (but real) update.
            assert not np.array_equal(before[id(variable)], np.array(variable)), f"{network.name}/{variable.path} did not change"
    for name in ("d_loss", "g_loss", "d_acc", "d_real", "d_fake"):
        assert np.isfinite(history.history[name][-1]), name
    assert 0.0 <= history.history["d_acc"][-1] <= 1.0
    assert int(model.g_optimizer.iterations) == 2 and int(model.d_optimizer.iterations) == 2 * cfg.d_steps


@pytest.mark.parametrize("preset", ["conv", "mlp", "dist1d", "conv-tanh"])  # dcgan/cdcgan: test_every_option_trains_under_xla
def test_each_preset_trains_under_xla(preset):
    """jit_compile=auto compiles every float32 CPU run with XLA: each architecture must."""
    cfg = tiny(preset, jit_compile=True)
    model = training.build_gan(cfg)
    history = _fit(model, cfg)
    assert model.jit_compile is True and np.isfinite(history.history["g_loss"][-1])


def test_d_steps_updates_the_discriminator_that_many_times_per_step():
    cfg = tiny("dcgan", d_steps=3)
    model = training.build_gan(cfg)
    _fit(model, cfg)
    assert (int(model.d_optimizer.iterations), int(model.g_optimizer.iterations)) == (6, 2)


def test_fit_trains_without_grapplers_remapper_and_restores_it():
    """The remapper fails on the training graph (an error line, the graph unchanged); fit runs
    without it and leaves the process's setting as it found it."""
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(tf.config.optimizer.get_experimental_options().get("remapping"))

    cfg = tiny("dcgan")
    model = training.build_gan(cfg)
    model.fit(data_lib.training_dataset(data_lib.load(cfg), cfg), steps_per_epoch=2, epochs=1, verbose=0, callbacks=[Probe()])
    assert seen == [False, False]
    assert tf.config.optimizer.get_experimental_options().get("remapping", True) is True


@pytest.mark.parametrize("loss", ["hinge", "wgan-gp"])
def test_alternative_losses_train(loss):
    cfg = tiny("dcgan", loss=loss)
    history = _fit(training.build_gan(cfg), cfg)
    assert np.isfinite(history.history["d_loss"][-1])


def test_keras_round_trip_keeps_outputs_and_optimizer_state(tmp_path):
    cfg = tiny("dcgan")
    model = training.build_gan(cfg)
    _fit(model, cfg, steps=3)
    path = tmp_path / "gan.keras"
    model.save(path)
    restored = runs.load_checkpoint(path)
    noise = tf.random.stateless_normal((4, cfg.latent_dim), [1, 2])
    np.testing.assert_allclose(model.generator(noise), restored.generator(noise), atol=1e-6)
    for name in ("g_optimizer", "d_optimizer"):
        assert int(getattr(restored, name).iterations) == 3
    np.testing.assert_allclose(  # Adam's moments came back too, not just the step
        np.array(model.g_optimizer.variables[-1]), np.array(restored.g_optimizer.variables[-1])
    )
    _fit(restored, cfg, steps=2)  # and training continues from there
    assert int(restored.g_optimizer.iterations) == 5


def test_the_recipe_is_one_dict_in_the_checkpoint_and_comes_back(tmp_path):
    cfg = tiny("dcgan-classcode", ema_decay=0.9, label_smoothing=0.1, augment="translation")
    model = training.build_gan(cfg)
    assert model.get_compile_config()["recipe"] == Recipe.of(cfg).to_dict()
    assert model.get_config()["conditioning"] == {"mode": "noise-code", "classes": 10, "class_head": True}
    path = tmp_path / "gan.keras"
    model.save(path)
    restored = runs.load_checkpoint(path)
    assert (restored.recipe, restored.conditioning) == (model.recipe, model.conditioning)
    assert restored.ema_generator is not None


def _as_written_before_the_recipe(path: Path, ema_decay: float) -> None:
    """Rewrite a checkpoint's config.json the way gan_pkg wrote it before Conditioning and
    Recipe: num_classes / noise_code_classes / ema_decay in the model's config, the recipe's
    fields as compile arguments (augment_policy, aux_class_weight)."""
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    saved = json.loads(files["config.json"])
    conditioning = saved["config"].pop("conditioning")
    saved["config"].update(num_classes=0, noise_code_classes=conditioning["classes"], ema_decay=ema_decay)
    recipe = saved["compile_config"].pop("recipe")
    names = {field: name for name, field in LEGACY_COMPILE_ARGS.items()}  # the fields there were then, by their old names
    saved["compile_config"].update({names[k]: v for k, v in recipe.items() if k in names})
    files["config.json"] = json.dumps(saved).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)


def test_a_checkpoint_written_before_the_recipe_still_loads_and_trains(tmp_path):
    cfg = tiny("dcgan-classcode", ema_decay=0.9, label_smoothing=0.1)
    model = training.build_gan(cfg)
    _fit(model, cfg, steps=2)
    path = tmp_path / "old.keras"
    model.save(path)
    _as_written_before_the_recipe(path, ema_decay=0.9)
    assert "recipe" not in json.loads(zipfile.ZipFile(path).read("config.json"))["compile_config"]
    restored = runs.load_checkpoint(path)
    assert (restored.recipe, restored.conditioning) == (model.recipe, model.conditioning)
    noise = tf.random.stateless_normal((4, cfg.latent_dim), [1, 2])
    np.testing.assert_allclose(model.ema_generator(noise), restored.ema_generator(noise), atol=1e-6)
    _fit(restored, cfg, steps=1)
    assert int(restored.g_optimizer.iterations) == 3
    # Its config.json (the run's, or an export's gan_pkg.json) converts the same way.
    old = {**json.loads(cfg.to_json()), "aux_classes": 10, "aux_class_weight": 1.0, "noise_class_code": True}
    for name in ("conditioning", "num_classes", "class_loss_weight"):
        del old[name]
    assert GANConfig.from_dict(old) == cfg
    old_cdcgan = {**json.loads(tiny("cdcgan").to_json()), "aux_class_weight": 1.0}
    del old_cdcgan["conditioning"], old_cdcgan["class_loss_weight"]
    assert GANConfig.from_dict(old_cdcgan) == tiny("cdcgan")


def test_ema_generator_is_exported_and_lags_the_live_one():
    cfg = tiny("dcgan", ema_decay=0.9)
    model = training.build_gan(cfg)
    _fit(model, cfg, steps=3)
    assert model.inference_generator is model.ema_generator
    live, ema = model.generator.trainable_variables[0], model.ema_generator.trainable_variables[0]
    assert not np.allclose(np.array(live), np.array(ema))


def test_ema_warms_up_instead_of_keeping_the_initial_weights():
    """decay = min(ema_decay, (1 + step) / (10 + step)), step counted after the update: the
    first update keeps 2/11 of the initial weights, not ema_decay of them."""
    cfg = tiny("dcgan", ema_decay=0.999)
    model = training.build_gan(cfg)
    initial = np.array(model.generator.trainable_variables[0])
    _fit(model, cfg, steps=1)
    live, ema = (np.array(g.trainable_variables[0]) for g in (model.generator, model.ema_generator))
    np.testing.assert_allclose(ema, 2 / 11 * initial + 9 / 11 * live, atol=1e-6)


@pytest.mark.parametrize("preset", ["dcgan", "cdcgan"])
def test_ema_generator_gets_batch_norm_statistics_of_its_own_weights(preset):
    """Live running means paired with averaged weights blur samples: after a refresh the
    EMA generator's moving statistics are its own activations' on the refresh batch, so
    inference mode reproduces training mode there."""
    cfg = tiny(preset, ema_decay=0.9)
    model = training.build_gan(cfg)
    _fit(model, cfg, steps=3)
    momenta = [layer.momentum for layer in model.ema_generator._flatten_layers() if hasattr(layer, "moving_mean")]
    model.refresh_ema_statistics(num_samples=64)
    noise = gan_lib.sample_latent((64, cfg.latent_dim), [cfg.seed, 1], cfg.latent_distribution, cfg.latent_range)
    inputs = model._conditioned(noise, tf.range(64) % cfg.num_classes if cfg.num_classes else None)
    with_batch_stats = np.array(model.ema_generator(inputs, training=True))  # momentum restored: moves the stats a little
    model.refresh_ema_statistics(num_samples=64)
    np.testing.assert_allclose(np.array(model.ema_generator(inputs, training=False)), with_batch_stats, atol=1e-4)
    assert momenta == [layer.momentum for layer in model.ema_generator._flatten_layers() if hasattr(layer, "moving_mean")]
    live_means = [np.array(v) for v in model.generator.non_trainable_variables if "moving_mean" in v.path]
    ema_means = [np.array(v) for v in model.ema_generator.non_trainable_variables if "moving_mean" in v.path]
    assert live_means and not any(np.allclose(a, b) for a, b in zip(live_means, ema_means))


def test_mixed_bfloat16_trains_with_float32_outputs():
    cfg = tiny("dcgan", precision="mixed_bfloat16")
    with runtime.dtype_policy("mixed_bfloat16"):
        model = training.build_gan(cfg)
        history = _fit(model, cfg)
    assert model.generator.layers[-1].compute_dtype == "float32"
    assert np.isfinite(history.history["g_loss"][-1])


def test_noise_is_fresh_every_step_but_reproducible_from_the_seed():
    cfg = tiny("dcgan")
    a, b = training.build_gan(cfg), training.build_gan(cfg)
    first, second = a.sample_noise(4), a.sample_noise(4)
    assert not np.allclose(first, second)
    np.testing.assert_allclose(first, b.sample_noise(4))


def test_gradient_penalty_is_finite_when_the_critic_is_flat():
    flat_critic = lambda x, training=False: tf.zeros((tf.shape(x)[0], 1)) * tf.reduce_sum(x)  # zero gradient
    real, fake = tf.ones((3, 4, 4, 1)), tf.zeros((3, 4, 4, 1))
    alpha = tf.fill((3, 1, 1, 1), 0.5)
    with tf.GradientTape() as tape:
        tape.watch(fake)
        penalty = losses.gradient_penalty(flat_critic, real, fake, alpha)
    assert float(penalty) == pytest.approx(1.0, abs=1e-5)  # (0 - 1)^2
    grad = tape.gradient(penalty, fake)
    assert grad is None or np.isfinite(np.array(grad)).all()


def test_gradient_penalty_vanishes_for_a_unit_slope_critic():
    # D(x) = sum(x) / sqrt(n) has gradient norm exactly 1 everywhere.
    critic = lambda x, training=False: tf.reduce_sum(x, axis=[1, 2, 3])[:, None] / 4.0
    penalty = losses.gradient_penalty(critic, tf.ones((2, 4, 4, 1)), tf.zeros((2, 4, 4, 1)), tf.fill((2, 1, 1, 1), 0.3))
    assert float(penalty) == pytest.approx(0.0, abs=1e-6)


def test_bce_losses_match_their_definitions():
    real, fake = tf.constant([[2.0], [0.5]]), tf.constant([[-1.0], [0.0]])
    sigmoid = lambda x: 1 / (1 + np.exp(-np.array(x)))
    expected_d = 0.5 * (-np.mean(0.9 * np.log(sigmoid(real)) + 0.1 * np.log(1 - sigmoid(real))) - np.mean(np.log(1 - sigmoid(fake))))
    assert float(losses.bce_d_loss(real, fake, label_smoothing=0.1)) == pytest.approx(expected_d, rel=1e-5)
    assert float(losses.bce_g_loss(fake)) == pytest.approx(-np.mean(np.log(sigmoid(fake))), rel=1e-5)
    assert np.isfinite(float(losses.bce_g_loss(tf.constant([[-200.0]]))))  # no log(0) on saturated logits


@pytest.mark.parametrize("d_steps", [1, 2])
def test_reusing_fakes_gives_the_same_discriminator_update_for_the_same_noise(d_steps):
    """One generator forward per step (reuse_fakes) changes where G's fakes come from,
    not the D update: same weights, same noise and dropout draws -> the same D after a step."""
    import keras

    real = np.random.default_rng(0).uniform(-1, 1, (8, 28, 28, 1)).astype(np.float32)
    models = {}
    for reuse in (False, True):
        keras.utils.set_random_seed(3)  # same initial weights and dropout seeds in both
        model = training.build_gan(tiny("dcgan", reuse_fakes=reuse, d_steps=d_steps))
        model.fit(real, batch_size=8, epochs=1, verbose=0, shuffle=False)
        models[reuse] = model
    two_forwards, one_forward = models[False], models[True]
    assert int(one_forward.d_optimizer.iterations) == d_steps and int(one_forward.g_optimizer.iterations) == 1
    if d_steps == 1:  # (batch-norm statistics differ: the G step's D call sees other fakes)
        for a, b in zip(two_forwards.discriminator.trainable_variables, one_forward.discriminator.trainable_variables):
            np.testing.assert_allclose(np.array(a), np.array(b), atol=1e-6, err_msg=a.path)
    # G trained on other noise (the D step's, not a second draw): the variants really differ.
    assert any(not np.allclose(np.array(a), np.array(b)) for a, b in zip(two_forwards.generator.weights, one_forward.generator.weights))
