"""gan_pkg.features: the feature space is chosen by the data (MNIST digits: the shipped
classifier; other images: InceptionV3 when cached, else a classifier trained on the
data's labels; unlabelled images without InceptionV3: memorization only), named in
the report, and a data classifier is trained once per data and reused."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from gan_pkg import callbacks, features
from gan_pkg import config as config_lib
from gan_pkg import evaluate as ev
from gan_pkg.data import Data
from tiny import tiny

TRAIN, HOLDOUT = 160, 40
EPOCHS = 5  # enough for discs vs squares; the default trains thousands of steps


def shapes(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Red discs (class 0) and blue squares (class 1) of random size and place on dark noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = rng.integers(0, 60, (n, size, size, 3)).astype(np.uint8)
    labels = np.arange(n, dtype=np.int64) % 2
    for image, label in zip(images, labels):
        r = rng.uniform(size / 6, size / 3.5)
        cy, cx = rng.uniform(r, size - r, 2)
        if label == 0:
            image[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = (220, 40, 40)
        else:
            image[(np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)] = (40, 40, 220)
    return images, labels


def shapes_data(size: int = 32, seed: int = 0, labelled: bool = True, train: int = TRAIN) -> Data:
    images, labels = shapes(train + HOLDOUT, size, seed)
    if not labelled:
        return Data(images[:train], images[train:])
    return Data(images[:train], images[train:], labels[:train], labels[train:])


def image_config(shape, **changes) -> config_lib.GANConfig:
    return dataclasses.replace(config_lib.GANConfig(), **{"data": "my-shapes", "image_shape": tuple(shape), **changes})


RGB32 = image_config((32, 32, 3))


@pytest.fixture(scope="module", autouse=True)
def private_caches(tmp_path_factory):
    """No InceptionV3 in Keras' cache and an empty classifier cache, whatever this machine has."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERAS_HOME", str(tmp_path_factory.mktemp("keras")))
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def shapes32():
    return shapes_data()


@pytest.fixture(scope="module")
def trained(shapes32, tmp_path_factory):
    """The data classifier for shapes32, trained once into a run's store."""
    store, lines = tmp_path_factory.mktemp("run"), []
    space = features.feature_space(RGB32, shapes32, store=store, log=lines.append, epochs=EPOCHS)
    return space, store, lines


def no_training(*args, **kwargs):
    raise AssertionError("a feature classifier was trained again")


# -- choosing ---------------------------------------------------------------------
def test_mnist_digits_are_scored_by_the_shipped_classifier():
    config = tiny("dcgan")
    space = features.feature_space(config, None)
    assert space.kind == "mnist-classifier" and space.num_classes == 10
    _, _, x_hold, _ = ev.classifier_data()
    ours, probs = space(x_hold[:20])
    shipped, _ = ev.get_classifier()(x_hold[:20])
    np.testing.assert_array_equal(ours, shipped)
    assert probs.shape == (20, 10)
    assert space.describe()["sha256"] == ev.get_classifier().sha256


def test_labelled_rgb_data_without_inception_gets_a_data_classifier(trained, shapes32):
    space, store, lines = trained
    assert space.kind == "data-classifier" and space.num_classes == 2
    assert space.describe()["heldout_accuracy"] >= 0.95  # discs vs squares: easy
    assert sorted(p.name for p in store.iterdir()) == sorted(features.STORED_FILES)
    record = json.loads((store / features.STORED_RECORD).read_text())
    assert record["fingerprint"] == features.data_fingerprint(shapes32) == space.describe()["fingerprint"]
    assert record["image_shape"] == [32, 32, 3] and record["classes"] == 2 and record["epochs"] == EPOCHS
    assert (features.user_cache_dir() / record["fingerprint"] / features.STORED_RECORD).is_file()
    assert len(lines) == 1 and "training a feature classifier" in lines[0]
    feats, probs = space(shapes32.holdout / 255.0)
    assert feats.shape == (HOLDOUT, ev.FEATURE_DIM) and probs.shape == (HOLDOUT, 2)


def test_a_stored_classifier_is_loaded_not_retrained(trained, shapes32, tmp_path, monkeypatch):
    space, store, _ = trained
    monkeypatch.setattr(features, "fit_classifier", no_training)
    images = shapes32.holdout[:8] / 255.0
    again = features.feature_space(RGB32, shapes32, store=store, log=no_training)
    np.testing.assert_allclose(again(images)[0], space(images)[0], atol=1e-6)
    # A second run on the same data: its workdir gets a copy from the user cache.
    other_run = tmp_path / "run2"
    features.feature_space(RGB32, shapes32, store=other_run, log=no_training)
    assert (other_run / features.STORED_RECORD).read_text() == (store / features.STORED_RECORD).read_text()


def test_a_store_trained_on_other_data_is_retrained_or_refused_when_read_only(trained, tmp_path):
    import shutil

    _, store, _ = trained
    shutil.copytree(store, tmp_path / "store")
    other = shapes_data(size=16, seed=1, train=64)
    config = image_config((16, 16, 3))
    with pytest.raises(features.FeatureSpaceUnavailable, match="trained on other data") as refused:
        features.feature_space(config, other, store=tmp_path / "store", store_readonly=True)
    assert "\n" not in str(refused.value)
    lines = []
    space = features.feature_space(config, other, store=tmp_path / "store", log=lines.append, epochs=1)
    assert "trained on other data" in lines[0] and "replacing" in lines[0]
    assert "training a feature classifier" in lines[1]
    record = json.loads((tmp_path / "store" / features.STORED_RECORD).read_text())
    assert record["fingerprint"] == features.data_fingerprint(other) == space.describe()["fingerprint"]
    assert record["image_shape"] == [16, 16, 3]


def test_fingerprint_changes_with_one_pixel_or_one_label(shapes32):
    same = Data(shapes32.train.copy(), shapes32.holdout.copy(), shapes32.train_labels.copy(), shapes32.holdout_labels.copy())
    assert features.data_fingerprint(same) == features.data_fingerprint(shapes32)
    pixel = dataclasses.replace(same, holdout=same.holdout.copy())
    pixel.holdout[3, 5, 7, 1] ^= 1
    label = dataclasses.replace(same, train_labels=same.train_labels.copy())
    label.train_labels[0] = 1 - label.train_labels[0]
    unlabelled = dataclasses.replace(same, holdout_labels=None)
    prints = {features.data_fingerprint(d) for d in (same, pixel, label, unlabelled)}
    assert len(prints) == 4


# -- evaluating in the chosen space ---------------------------------------------------
def real_images_of(data):
    return lambda seeds: data.train[np.asarray(seeds) % len(data.train)] / 255.0


def test_evaluation_in_the_data_classifier_space(trained, shapes32, monkeypatch):
    monkeypatch.setattr(features, "fit_classifier", no_training)  # the user cache has it
    real = ev.evaluate_generator(real_images_of(shapes32), RGB32, num_samples=100, data=shapes32)
    noise = ev.evaluate_generator(lambda seeds: np.random.default_rng(1).random((len(seeds), 32, 32, 3)), RGB32, 100, data=shapes32)
    assert real["features"]["kind"] == "data-classifier"
    assert real["features"]["fingerprint"] == features.data_fingerprint(shapes32)
    assert real["feature_space"] == trained[0].name
    assert noise["generated"]["fid"] > 5 * real["generated"]["fid"]
    assert real["generated"]["classifier_score"] > 1.75 and len(real["generated"]["class_histogram"]) == 2
    # A classifier trained here is checked before it is believed: it tells noise and blur from real images.
    check = real["feature_check"]
    assert not check["too_weak"] and check["failed"] == [] and check["heldout_accuracy"] >= 0.95
    assert all(value > check["real_fid"] for value in check["degraded_fid"].values())
    # The pixels' figures come beside the space's: noise is far from the held-out images, real images near.
    assert noise["generated"]["swd"] > 10 * real["generated"]["swd"]
    assert noise["generated"]["chroma_ratio"] > 1.3
    assert real["generated"]["chroma_ratio"] == pytest.approx(1.0, abs=0.15)
    table = ev.format_table(real)
    assert table.splitlines()[0] == f"features: {trained[0].name}"
    assert table.splitlines()[1].startswith("feature space check:") and "held-out accuracy" in table.splitlines()[1]
    assert "classifier score (max 2)" in table and "class shares 0..1" in table and "max 10" not in table
    assert "SWD x1e3 at 32/16 px" in table and "chroma / held-out's (target 1.0)" in table
    assert "held-out images" in ev.format_markdown(real, "a run")


class MeanColour(features.FeatureSpace):
    """A deliberately useless space: each image's mean colour, blind to shapes, edges and blur."""

    kind, name, num_classes = "data-classifier", "mean colour", 0

    def __call__(self, images):
        return np.asarray(images, np.float64).mean(axis=(1, 2)), None


def test_a_space_that_cannot_tell_blur_from_real_images_is_flagged_too_weak(shapes32):
    sample = real_images_of(shapes32)
    result = ev.evaluate_generator(sample, RGB32, num_samples=100, data=shapes32, features=MeanColour())
    check = result["feature_check"]
    assert check["too_weak"] and check["failed"] == [f"held-out images blurred by {features.CHECK_BLUR_SIGMA} px"]
    assert check["images"] == HOLDOUT  # as many of each as the held-out set has, up to CHECK_IMAGES
    warning = ev.format_table(result).splitlines()[1]
    assert warning.startswith("WARNING: this feature space is too weak to judge samples: held-out images blurred")
    assert "read SWD and the colour figures" in warning and warning in ev.format_markdown(result, "a run")
    assert json.loads(json.dumps(result))["feature_check"]["too_weak"] is True  # in evaluation.json too


def test_vetted_spaces_are_not_checked_again():
    assert features.mnist_space().vetted and not MeanColour().vetted


class RandomProjection(features.FeatureSpace):
    """A stand-in for InceptionV3: features whose classes are not the data's."""

    kind, name, num_classes = "inception", "random projection", 0

    def __call__(self, images):
        flat = np.asarray(images, np.float64).reshape(len(images), -1)
        return flat @ np.random.default_rng(0).normal(size=(flat.shape[1], 16)), None


def test_a_space_without_the_datas_classes_reports_no_class_figures(shapes32):
    conditional = image_config((32, 32, 3), conditioning="label", num_classes=2)
    sample = lambda seeds, labels: shapes32.train[np.asarray(seeds) % TRAIN] / 255.0  # noqa: E731
    result = ev.evaluate_generator(sample, conditional, num_samples=60, data=shapes32, features=RandomProjection())
    generated = result["generated"]
    assert np.isfinite(generated["fid"]) and "intra_fid" in generated  # held-out labels still split the reference
    for key in ("classifier_score", "class_histogram", "modes_covered", "label_accuracy"):
        assert key not in generated
    table = ev.format_table(result)
    assert table.splitlines()[0] == "features: random projection" and "classifier score" not in table


def test_unlabelled_rgb_without_inception_still_reports_memorization(tmp_path, monkeypatch, capsys):
    data = shapes_data(labelled=False)
    with pytest.raises(features.FeatureSpaceUnavailable) as missing:
        features.feature_space(RGB32, data)
    message = str(missing.value)
    assert "\n" not in message and str(features.inception_weights_path()) in message and "labels" in message
    result = ev.evaluate_generator(real_images_of(data), RGB32, num_samples=50, data=data)
    assert result["feature_space"] is None and result["features_missing"] == message
    pixels = {"swd", "swd_levels", "chroma", "chroma_ratio", "colour_distance"}  # no feature network needed
    memorised = {"nn_l1_min", "nn_l1_mean", "nn_l1_below_real"}
    assert set(result["generated"]) == set(result["real_floor"]) == memorised | pixels
    assert result["generated"]["nn_l1_min"] == 0.0  # training images are copies of themselves
    assert result["swd_resolutions"] == [32, 16] and len(result["generated"]["swd_levels"]) == 2
    table = ev.format_table(result)
    assert table.splitlines()[0] == message and "nearest-train L1, min" in table
    assert "SWD x1e3, mean of levels (lower is better)" in table and "colour histogram distance" in table
    assert "FID" not in table
    assert message in ev.format_markdown(result, "a run")
    # The CLI: exit 0, that line and the table, and the report written.
    monkeypatch.setattr(ev, "evaluate_workdir", lambda workdir, *args: (dict(result), workdir / "ckpt-0001.keras"))
    assert ev.main(["--workdir", str(tmp_path), "--num-samples", "50"]) == 0
    out = capsys.readouterr().out
    assert f"\n{message}\n" in out and "nearest-train L1, mean" in out
    assert json.loads((tmp_path / "evaluation.json").read_text())["features_missing"] == message


def test_val_fid_without_a_space_says_so_once_and_logs_val_swd_only():
    import tensorflow as tf

    lines = []
    config = dataclasses.replace(RGB32, latent_dim=4)
    callback = callbacks.ValFID(config, data=shapes_data(labelled=False), log=lines.append, num_samples=20)

    class Grey:  # a stand-in generator: mid-grey images
        def sample(self, noise, labels=None):
            return tf.zeros([noise.shape[0], 32, 32, 3])

    callback.set_model(Grey())
    logs = {}
    callback.on_epoch_end(0, logs)
    assert set(logs) == {"val_swd"} and np.isfinite(logs["val_swd"]) and logs["val_swd"] > 0
    assert len(lines) == 1 and lines[0].startswith("val_fid off: no feature network") and "val_swd only" in lines[0]


def test_asking_for_a_data_classifier_of_unlabelled_data_is_an_error():
    with pytest.raises(features.FeatureSpaceUnavailable, match="labels"):
        features.feature_space(RGB32, shapes_data(labelled=False), kind="data-classifier")


# -- InceptionV3 -------------------------------------------------------------------
@pytest.fixture(scope="module")
def random_inception():
    return features.InceptionSpace(weights=None)


@pytest.mark.parametrize("shape", [(28, 28, 1), (64, 64, 3)])
def test_inception_resizes_any_image_to_299_rgb_and_gives_2048_features(random_inception, shape):
    images = np.random.default_rng(0).random((3, *shape)).astype(np.float32)
    seen = random_inception.inputs(images)
    assert seen.shape == (3, 299, 299, 3) and seen.min() >= -1.0 and seen.max() <= 1.0
    if shape[-1] == 1:  # grey tiled to three equal channels
        np.testing.assert_array_equal(seen[..., 0], seen[..., 2])
    np.testing.assert_allclose(random_inception.inputs(np.ones((1, *shape))), 1.0)
    np.testing.assert_allclose(random_inception.inputs(np.zeros((1, *shape))), -1.0)
    feats, probs = random_inception(images)
    assert feats.shape == (3, 2048) and feats.dtype == np.float64 and probs is None
    assert random_inception.describe()["kind"] == "inception" and random_inception.num_classes == 0


def test_inception_weights_are_looked_for_in_keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert features.inception_weights_path() == tmp_path / "models" / features.INCEPTION_FILE


def test_inception_asked_for_offline_says_which_file_to_put_where(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def offline():
        raise OSError("no network")

    monkeypatch.setattr(features, "_download_inception", offline)
    with pytest.raises(features.FeatureSpaceUnavailable) as missing:
        features.feature_space(RGB32, shapes_data(), kind="inception")
    message = str(missing.value)
    assert isinstance(missing.value, ev.EvaluationError) and "\n" not in message
    assert str(tmp_path / "models" / features.INCEPTION_FILE) in message and features.INCEPTION_URL in message


def test_cached_inception_is_chosen_for_images_that_are_not_mnist(tmp_path, monkeypatch, shapes32):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / features.INCEPTION_FILE).write_bytes(b"weights")
    monkeypatch.setattr(features, "_INCEPTION", {})
    monkeypatch.setattr(features, "InceptionSpace", lambda path: ("inception", path))
    monkeypatch.setattr(features, "fit_classifier", no_training)
    for config in (RGB32, image_config((28, 28, 1), data="fashion-mnist")):
        assert features.feature_space(config, shapes32) == ("inception", tmp_path / "models" / features.INCEPTION_FILE)
    assert features.feature_space(tiny("dcgan"), None).kind == "mnist-classifier"  # digits keep their own space
