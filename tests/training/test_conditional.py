"""Class-conditional GANs end to end: config, data labels, training, export, both
servers, the client and the conditional metrics (issue "Ask for a digit")."""

import concurrent.futures
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tiny import tiny

import serving.client as client_mod
from gan_pkg import architectures, contract, export, session_loader
from gan_pkg import data as data_lib
from gan_pkg import evaluate as ev
from gan_pkg.config import GANConfig
from gan_pkg.class_code import noise_with_class
from gan_pkg.plan import plan
from gan_pkg.runs import load_run
from gan_pkg.training import build_gan, train
from serving import main as server_main
from serving_helpers import REPO, quiet, server_args

CLASSES = 10


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny cdcgan trained 6 steps on the labelled MNIST sample, and its export."""
    workdir = tmp_path_factory.mktemp("cdcgan")
    result = train(tiny("cdcgan", steps=6), workdir / "run", verbose=0)
    version_dir = export.export_model(result.model, result.config, workdir / "export", "gan")
    return result, version_dir


@pytest.fixture(scope="module")
def served(trained):
    _, version_dir = trained
    running = server_main.start(
        server_args(model_base_path=str(version_dir.parent), enable_batching=True, max_batch_size=64), log=quiet
    )
    yield running
    running.stop(grace=2)


# --------------------------------------------------------------------------- config and architecture


def test_cdcgan_is_seed_000s_dcgan_with_a_label_input_a_projection_and_a_class_head():
    config = GANConfig.resolve("cdcgan")
    assert (config.conditioning, config.num_classes, config.class_loss_weight) == ("label", CLASSES, 1.0)
    assert config.replace(conditioning="none", num_classes=0, class_loss_weight=0.0, preset="dcgan") == GANConfig.resolve("dcgan")
    generator, discriminator = architectures.build(config)
    # Tutorial 000's 856,705 + the label embedding (10x10) and its 10 extra inputs to the first
    # Dense (10 x 6,272) + class-conditional batch norm (a scale and shift per class instead of
    # one, on 128 + 128 + 64 channels); tutorial 000's 392,705 + one 4,096-wide projection row per class
    # + AC-GAN's class head (a 4,096 x 10 dense layer and its biases).
    assert generator.count_params() == 856_705 + 100 + 62_720 + (2 * CLASSES - 2) * (128 + 128 + 64)
    assert sum(type(layer).__name__ == "ConditionalBatchNorm" for layer in generator.layers) == 3
    assert discriminator.count_params() == 392_705 + 40_960 + 40_970
    assert [tuple(i.shape) for i in generator.inputs] == [(None, 100), (None,)]
    assert [i.dtype for i in discriminator.inputs] == ["float32", "int32"]


@pytest.mark.parametrize(
    "preset, values, words",
    [
        ("dist1d", {"conditioning": "label"}, "1-D presets"),
        ("dist1d", {"class_loss_weight": 1.0}, "1-D presets"),
        ("cdcgan", {"num_classes": 1}, "at least 2"),
        ("cdcgan", {"num_classes": -3}, "at least 2"),
        ("dcgan", {"num_classes": 10}, "has no use with conditioning=none"),
        ("cdcgan", {"class_loss_weight": -1.0}, "class_loss_weight"),
        ("dcgan", {"conditioning": "class"}, "conditioning must be one of none, label, noise-code"),
        ("dcgan", {"aux_classes": 10}, "unknown config field"),
    ],
)
def test_conditioning_that_cannot_work_is_refused(preset, values, words):
    with pytest.raises(ValueError, match=words):
        GANConfig.resolve(preset, values)


def test_every_image_architecture_takes_the_label():
    for preset in ("conv", "mlp", "conv-tanh"):
        config = tiny(preset, conditioning="label", num_classes=3)
        generator, discriminator = architectures.build(config)
        noise = tf.zeros((2, config.latent_dim))
        images = generator([noise, tf.constant([0, 2])])
        # The same noise with another label is another image; D scores image and label together.
        assert not np.allclose(images.numpy(), generator([noise, tf.constant([1, 1])]).numpy())
        assert discriminator([images, tf.constant([0, 2])]).shape == (2, 1)


def test_an_aux_classifier_discriminator_also_scores_the_classes():
    config = tiny("cdcgan", num_classes=3, class_loss_weight=1.0)
    generator, discriminator = architectures.build(config)
    images = generator([tf.zeros((2, config.latent_dim)), tf.constant([0, 2])])
    logit, class_logits = discriminator([images, tf.constant([0, 2])])
    assert logit.shape == (2, 1) and class_logits.shape == (2, 3)


def _halves(count: int):
    """Class 0 lights the left half of the image, class 1 the right half."""
    labels = np.arange(count) % 2
    images = -np.ones((count, 28, 28, 1), np.float32)
    for i, label in enumerate(labels):
        images[i, :, 14 * label : 14 * (label + 1)] = 1.0
    return images, labels.astype(np.int32)


def test_an_unconditional_discriminator_can_learn_the_classes_without_conditioning_the_generator():
    config = tiny("dcgan", class_loss_weight=1.0, num_classes=3)
    assert config.classes.label_classes == 3 and not config.classes.drawn_classes
    generator, discriminator = architectures.build(config)
    assert len(generator.inputs) == 1  # the served model is unchanged
    logit, class_logits = discriminator(generator(tf.zeros((2, config.latent_dim))))
    assert logit.shape == (2, 1) and class_logits.shape == (2, 3)


def test_the_unconditional_class_loss_rewards_confident_fakes_of_every_class():
    model = build_gan(tiny("dcgan", class_loss_weight=1.0, num_classes=2))
    sure = np.array([[9.0, -9.0], [-9.0, 9.0]], np.float32)  # each fake clearly one class, both classes
    one_class = np.array([[9.0, -9.0], [9.0, -9.0]], np.float32)
    unsure = np.zeros((2, 2), np.float32)
    assert float(model._class_structure_loss(sure)) == pytest.approx(-np.log(2), abs=1e-3)
    assert float(model._class_structure_loss(one_class)) == pytest.approx(0.0, abs=1e-3)
    assert float(model._class_structure_loss(unsure)) == pytest.approx(0.0, abs=1e-3)


def test_an_unconditional_class_head_learns_the_real_classes_and_the_generator_draws_both():
    images, labels = _halves(64)
    config = tiny("dcgan", class_loss_weight=1.0, num_classes=2, d_learning_rate=2e-3, g_learning_rate=2e-3)
    model = build_gan(config)
    model.fit(tf.data.Dataset.from_tensor_slices((images, labels)).repeat().batch(8), steps_per_epoch=300, epochs=1, verbose=0)
    _, class_logits = model.discriminator(tf.constant(images), training=False)
    assert np.mean(np.argmax(class_logits, axis=1) == labels) >= 0.9
    fakes = model.sample(tf.random.stateless_normal((256, config.latent_dim), [0, 0]))
    _, fake_class_logits = model.discriminator(fakes, training=False)
    shares = np.bincount(np.argmax(fake_class_logits, axis=1), minlength=2) / 256
    # Both classes drawn (a generator stuck on one gives 0). The balance term pulls towards
    # 50/50 but the game is chaotic: 4 seeds gave 0.30-0.39 after 300 steps, and CI once
    # saw 0.17 after 150.
    assert shares.min() >= 0.15, shares
    # The generator's loss carries the class-structure term (stood in for by a constant here).
    model._class_structure_loss = lambda class_logits: 1000.0
    model.train_function = None  # trace the step again, with the stand-in
    logs = model.fit(images, labels, batch_size=8, epochs=1, steps_per_epoch=1, verbose=0).history
    assert logs["g_loss"][0] > 900


def test_noise_with_class_moves_the_largest_code_value_to_the_label_and_keeps_the_distribution():
    noise = tf.random.stateless_normal((20000, 12), [1, 2])
    labels = tf.random.stateless_uniform((20000,), [3, 4], 0, 4, tf.int32)
    coded = noise_with_class(noise, labels, 4).numpy()
    assert (np.argmax(coded[:, :4], axis=1) == labels.numpy()).all()
    np.testing.assert_array_equal(np.sort(coded[:, :4], axis=1), np.sort(noise.numpy()[:, :4], axis=1))  # a swap
    np.testing.assert_array_equal(coded[:, 4:], noise.numpy()[:, 4:])
    already = np.argmax(noise.numpy()[:, :4], axis=1) == labels.numpy()
    np.testing.assert_array_equal(coded[already], noise.numpy()[already])
    # Uniform labels: each code value is still N(0, 1), so plain noise serves every class alike.
    assert np.abs(coded[:, :4].mean(axis=0)).max() < 0.03 and np.abs(coded[:, :4].std(axis=0) - 1).max() < 0.03


def test_a_noise_coded_gan_serves_noise_only_and_trains_as_a_conditional_one():
    config = tiny("dcgan", conditioning="noise-code", class_loss_weight=1.0, num_classes=2)
    assert config.classes.drawn_classes == 2 and not config.classes.generator_takes_label
    full = GANConfig.resolve("dcgan", {"conditioning": "noise-code", "class_loss_weight": 1.0, "num_classes": 10})
    generator, discriminator = architectures.build(full)
    assert generator.count_params() == 856_705 and len(generator.inputs) == 1  # tutorial 000's served G
    assert [i.name for i in discriminator.inputs] == ["image", "label"]
    model = build_gan(config)
    noise, labels = tf.random.stateless_normal((6, config.latent_dim), [0, 1]), tf.constant([0, 1, 1, 0, 1, 0])
    np.testing.assert_allclose(
        model._generate(noise, labels, training=False), model.generator(noise_with_class(noise, labels, 2), training=False), atol=1e-6
    )
    model._class_loss = lambda class_logits, labels: 1000.0 if class_logits is not None else 0.0
    images, real_labels = _halves(8)
    logs = model.fit(images, real_labels, batch_size=8, epochs=1, steps_per_epoch=1, verbose=0).history
    assert logs["g_loss"][0] > 900 and logs["d_loss"][0] > 900  # AC-GAN's losses on both sides
    with pytest.raises(ValueError, match="needs num_classes >= 2; plan the config"):
        architectures.build(GANConfig.resolve("dcgan", {"conditioning": "noise-code"}))


def test_class_loss_weight_teaches_the_discriminator_the_classes_and_the_generator_to_draw_them():
    """AC-GAN's two class losses: D learns to tell the classes of real images apart, and G's
    fakes are pushed towards what D reads as the label asked for."""
    images, labels = _halves(64)
    config = tiny("cdcgan", num_classes=2, class_loss_weight=1.0, d_learning_rate=2e-3, g_learning_rate=2e-3)
    model = build_gan(config)
    model.fit(tf.data.Dataset.from_tensor_slices((images, labels)).repeat().batch(8), steps_per_epoch=300, epochs=1, verbose=0)
    _, class_logits = model.discriminator([tf.constant(images), tf.constant(labels)], training=False)
    assert np.mean(np.argmax(class_logits, axis=1) == labels) >= 0.9
    fakes = model.sample(tf.random.stateless_normal((64, config.latent_dim), [0, 0]), labels)
    _, fake_class_logits = model.discriminator([fakes, tf.constant(labels)], training=False)
    # Chance is 0.5 (a generator that ignores the label); 0.7 is 3 standard deviations above it
    # over 64 fakes. Trained runs give 0.89-1.0 here over 6 seeds with and without oneDNN, but
    # the adversarial game is chaotic and another CPU's rounding once gave 0.72 after 150 steps.
    assert np.mean(np.argmax(fake_class_logits, axis=1) == labels) >= 0.7
    # Both losses carry the weighted class term (at chance, cross-entropy is log 2 per image).
    heavy = build_gan(config.replace(class_loss_weight=100.0))
    logs = heavy.fit(images, labels, batch_size=8, epochs=1, steps_per_epoch=1, verbose=0).history
    assert logs["d_loss"][0] > 20 and logs["g_loss"][0] > 20


# --------------------------------------------------------------------------- data


def _write_pngs(folder, count, value):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(np.full((28, 28), value + i, np.uint8)).save(folder / f"{i}.png")


def test_an_image_folder_gives_one_class_per_subfolder(tmp_path):
    _write_pngs(tmp_path / "digits" / "a_zeros", 6, 10)
    _write_pngs(tmp_path / "digits" / "b_ones", 6, 200)
    data = data_lib.load(tiny("cdcgan", data=str(tmp_path / "digits"), num_classes=2, holdout=4))
    labels = np.concatenate([data.train_labels, data.holdout_labels])
    images = np.concatenate([data.train, data.holdout])
    assert sorted(labels.tolist()) == [0] * 6 + [1] * 6
    assert (images[labels == 0].mean() < 20) and (images[labels == 1].mean() > 200)  # labels follow sorted folder names
    batch = next(iter(data_lib.training_dataset(data, tiny("cdcgan", num_classes=2, batch_size=4))))
    assert batch[0].shape == (4, 28, 28, 1) and batch[1].dtype == tf.int32


def test_a_conditional_preset_on_unlabelled_or_mislabelled_data_stops_with_one_line(tmp_path):
    _write_pngs(tmp_path / "flat", 8, 0)
    with pytest.raises(data_lib.DataError, match="conditional .*has no labels.*one subfolder per class") as error:
        data_lib.load(tiny("cdcgan", data=str(tmp_path / "flat"), holdout=2))
    assert "\n" not in str(error.value)
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((8, 28, 28), np.uint8), y_train=np.arange(8) + 5)
    with pytest.raises(data_lib.DataError, match=r"labels must be integers in 0\.\.9 .*found 5\.\.12"):
        data_lib.load(tiny("cdcgan", data=str(tmp_path / "bad.npz"), holdout=2))
    np.savez(tmp_path / "negative.npz", x_train=np.zeros((8, 28, 28), np.uint8), y_train=np.arange(8) - 1)
    with pytest.raises(data_lib.DataError, match=r"labels must be integers >= 0, found -1\.\.6"):
        plan(tiny("dcgan", data=str(tmp_path / "negative.npz"), holdout=2, class_loss_weight=1.0, num_classes=10))


@pytest.mark.parametrize("conditioning", ["none", "noise-code"])
def test_an_unconditional_class_head_takes_the_datas_classes_or_trains_without_one(tmp_path, conditioning):
    """A class head is a training aid of an unconditional preset: data without labels trains
    without it, data with 3 classes gets a 3-class head; one line says so. (A conditional
    preset stops instead: the test above.)"""
    _write_pngs(tmp_path / "flat", 8, 0)
    np.savez(tmp_path / "three.npz", x_train=np.zeros((8, 28, 28), np.uint8), y_train=np.arange(8) % 3)
    config = tiny("dcgan", holdout=2, conditioning=conditioning, class_loss_weight=1.0, num_classes=10)
    said = []
    flat = config.replace(data=str(tmp_path / "flat"))
    headless = plan(flat, log=said.append).config
    assert headless == flat.replace(conditioning="none", class_loss_weight=0.0, num_classes=0)
    three = config.replace(data=str(tmp_path / "three.npz"))
    assert plan(three, log=said.append).config == three.replace(num_classes=3)
    assert len(said) == 2 and "without its classes" in said[0] and "3 classes" in said[1], said
    if conditioning == "noise-code":  # 12 classes cannot be coded in 8 noise values: refused before anything is written
        np.savez(tmp_path / "twelve.npz", x_train=np.zeros((24, 28, 28), np.uint8), y_train=np.arange(24) % 12)
        twelve = config.replace(data=str(tmp_path / "twelve.npz"), latent_dim=8)
        with pytest.raises(data_lib.DataError, match=r"twelve\.npz: its labels cover 12 classes, more than .* 8 noise values; pass --set latent_dim=12"):
            train(twelve, tmp_path / "refused", verbose=0)
        assert not (tmp_path / "refused").exists()
    sample = config.replace(data="mnist-sample")
    assert plan(sample, log=said.append).config == sample and len(said) == 3
    # train() trains the config it is given: one the data would change is refused, saying which fields and what to call.
    with pytest.raises(ValueError, match=r"decides .*num_classes 10 -> 0.*gan_pkg\.plan"):
        train(flat.replace(batch_size=4, steps=2), tmp_path / "run", verbose=0)
    planned = plan(flat.replace(batch_size=4, steps=2), log=said.append)
    result = train(planned.config, tmp_path / "run", verbose=0, data=planned.data)
    assert result.config.num_classes == 0 and not isinstance(result.model.discriminator.output, list)


# --------------------------------------------------------------------------- training


def test_training_draws_a_class_row_grid_and_resumes(trained, tmp_path):
    result, _ = trained
    grid = Image.open(result.workdir / "samples" / "latest.png")
    # One row per class, 8 columns: (8 x 30 + 2) x (10 x 30 + 2) pixels, drawn at 3x.
    assert grid.size == (3 * (8 * 30 + 2), 3 * (CLASSES * 30 + 2))
    config, model, _ = load_run(result.workdir)
    assert model.conditioning.label_input_classes == CLASSES and int(model.g_optimizer.iterations.numpy()) == result.step
    noise = tf.random.stateless_normal((2, config.latent_dim), [1, 2])
    np.testing.assert_allclose(model.sample(noise, [3, 4]).numpy(), result.model.sample(noise, [3, 4]).numpy(), atol=1e-6)


# --------------------------------------------------------------------------- export (TF Serving's loader)


def test_every_signature_takes_a_label_and_runs_under_tf_servings_loader(trained):
    _, version_dir = trained
    seeds, labels = np.array([0, 7, 2**40], np.int64), np.array([0, 9, 4], np.int64)
    inputs = {
        contract.SERVING_DEFAULT: {contract.NOISE: np.zeros((3, 100), np.float32), contract.LABEL: labels},
        contract.GENERATE: {contract.SEED: seeds, contract.LABEL: labels},
        contract.GENERATE_PNG: {contract.SEED: seeds, contract.LABEL: labels},
    }
    served = session_loader.check_in_fresh_process(version_dir, inputs)  # a process that never imports gan_pkg
    assert served[contract.GENERATE][contract.IMAGES].shape == (3, 28, 28, 1) and len(served[contract.GENERATE_PNG][contract.PNG]) == 3
    model = session_loader.SessionModel(version_dir)
    for name in inputs:
        assert model.inputs[name][contract.LABEL] == (tf.int64, [None])
    # The label is what decides the image: same seed, other label, other image.
    other = model.run(contract.GENERATE, {contract.SEED: seeds, contract.LABEL: (labels + 1) % CLASSES})
    assert not np.allclose(other[contract.IMAGES], served[contract.GENERATE][contract.IMAGES])
    # TF Serving runs the graph's Assert op: an out-of-range label is refused, not drawn.
    for bad in (10, -1):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"label must be an integer in \[0, 10\)"):
            model.run(contract.GENERATE, {contract.SEED: seeds[:1], contract.LABEL: np.array([bad], np.int64)})
    meta = export.read_metadata(version_dir)
    assert meta["num_classes"] == CLASSES and meta["class_names"] == [str(i) for i in range(CLASSES)]


# --------------------------------------------------------------------------- both servers and the client


def test_grpc_and_rest_serve_labels_and_refuse_out_of_range_ones(served):
    target = f"127.0.0.1:{served.grpc_port}"
    with client_mod.GeneratorClient(target, retries=0) as client:
        sevens = client.generate(seeds=[1, 2], labels=[7, 7])
        assert sevens.shape == (2, 28, 28, 1)
        np.testing.assert_allclose(client.generate(seeds=[2], labels=[7])[0], sevens[1], atol=1e-5)
        for labels in ([10, 1], [-1, 1]):
            with pytest.raises(client_mod.ServingError) as error:
                client.generate(seeds=[1, 2], labels=labels)
            assert error.value.code == "INVALID_ARGUMENT" and "label must be an integer in [0, 10)" in error.value.message
        with pytest.raises(client_mod.ServingError, match="missing \\['label'\\]"):
            client.generate(seeds=[1])
        # Batching merges concurrent requests: one bad label must fail only its own request.
        calls = [([i], [i % CLASSES]) for i in range(12)] + [([99], [42])]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(client.generate, seeds=s, labels=l) for s, l in calls]
            outcomes = [f.exception(timeout=120) for f in futures]
        assert outcomes[:-1] == [None] * 12 and isinstance(outcomes[-1], client_mod.ServingError)
    rest = client_mod.RestGeneratorClient(f"127.0.0.1:{served.rest_port}", retries=0)
    np.testing.assert_allclose(rest.generate(seeds=[1, 2], labels=[7, 7]), sevens, atol=1e-5)
    with pytest.raises(client_mod.ServingError) as error:
        rest.generate(seeds=[1], labels=[10])
    assert error.value.code == "HTTP 400" and "label must be an integer" in error.value.message


def test_client_cli_draws_one_row_per_requested_class(served, tmp_path):
    out = tmp_path / "grid.png"
    done = subprocess.run(
        [sys.executable, str(REPO / "serving" / "client.py"), "--server", f"127.0.0.1:{served.grpc_port}",
         "--labels", "0-2,7", "--num", "5", "--signature", "generate_png", "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "20 samples" in done.stdout
    assert Image.open(out).size == (3 * (5 * 30 + 2), 3 * (4 * 30 + 2))  # 4 rows of 5


def test_label_lists_parse_like_the_help_says():
    assert client_mod.parse_labels("0-9") == list(range(10))
    assert client_mod.parse_labels("0-2,7") == [0, 1, 2, 7]
    seeds, labels = client_mod.class_grid([3, 5], 2, seed=10)
    assert seeds.tolist() == [10, 11, 10, 11] and labels.tolist() == [3, 3, 5, 5]
    for bad in ("3-1", "a", "-2"):
        with pytest.raises(ValueError, match="--labels"):
            client_mod.parse_labels(bad)


# --------------------------------------------------------------------------- conditional metrics


def test_label_accuracy_and_intra_class_fid_tell_right_labels_from_wrong_ones():
    config = tiny("cdcgan")
    data = data_lib.load(config)
    by_class = {c: data.train[data.train_labels == c].astype(np.float32) / 255.0 for c in range(CLASSES)}

    def real_of(shift):
        # A "generator" that draws real training digits of class (label + shift) % 10.
        return lambda seeds, labels: np.stack([by_class[(int(l) + shift) % CLASSES][int(s) % 50] for s, l in zip(seeds, labels)])

    right = ev.evaluate_generator(real_of(0), config, num_samples=300, data=data)["generated"]
    wrong = ev.evaluate_generator(real_of(1), config, num_samples=300, data=data)["generated"]
    assert right["label_accuracy"] > 0.9 and right["label_accuracy_min"] > 0.6
    assert wrong["label_accuracy"] < 0.1
    assert len(right["label_accuracy_by_class"]) == CLASSES
    assert right["intra_fid"] < wrong["intra_fid"] / 2
    # Overall figures do not see the wrong labels: both are real digits of every class.
    assert right["modes_covered"] == wrong["modes_covered"] == CLASSES
    assert "label accuracy (mean over classes)" in ev.format_table({"generated": right, "real_floor": right})
