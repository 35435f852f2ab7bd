import numpy as np
import pytest
from PIL import Image

from gan_pkg import data as data_lib
from tiny import tiny


def test_bundled_sample_has_a_fixed_held_out_split():
    cfg = tiny("dcgan", holdout=500)
    first, second = data_lib.load(cfg), data_lib.load(cfg)
    assert first.train.shape == (4500, 28, 28, 1) and first.holdout.shape == (500, 28, 28, 1)
    assert first.train.dtype == np.uint8
    np.testing.assert_array_equal(first.holdout, second.holdout)
    assert set(first.holdout_labels) == set(range(10))


def test_training_batches_are_scaled_to_the_generator_range():
    cfg = tiny("dcgan")
    batch = next(iter(data_lib.training_dataset(data_lib.load(cfg), cfg))).numpy()
    assert batch.shape == (8, 28, 28, 1)
    assert batch.min() >= -1.0 and batch.max() <= 1.0 and batch.min() < -0.99


def test_normal1d_streams_seed_003s_distribution():
    cfg = tiny("dist1d", batch_size=64)
    data = data_lib.load(cfg)
    batch = next(iter(data_lib.training_dataset(data, cfg))).numpy()
    assert batch.shape == (64, 100)
    assert batch.mean() == pytest.approx(4.0, abs=0.05) and batch.std() == pytest.approx(1.25, abs=0.05)
    assert data.holdout.shape == (100, 100)


def _write_images(folder, count, size=(40, 30), mode="RGB"):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        channels = 3 if mode == "RGB" else 1
        pixels = rng.integers(0, 255, (size[1], size[0], channels), dtype=np.uint8)
        Image.fromarray(pixels.squeeze()).save(folder / f"img_{i}.png")


@pytest.mark.parametrize("channels", [1, 3])
def test_image_folder_is_fitted_to_the_planned_shape(tmp_path, channels):
    _write_images(tmp_path / "faces" / "a", 30)
    cfg = tiny("dcgan", data=str(tmp_path / "faces"), image_shape=(28, 28, channels), holdout=10)
    data = data_lib.load(cfg)
    assert data.train.shape == (20, 28, 28, channels) and data.holdout.shape == (10, 28, 28, channels)


def test_npz_in_keras_layout_is_used_with_its_test_split(tmp_path):
    path = tmp_path / "digits.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 255, (50, 28, 28), dtype=np.uint8), y_train=np.zeros(50),
             x_test=rng.integers(0, 255, (20, 28, 28), dtype=np.uint8), y_test=np.zeros(20))
    data = data_lib.load(tiny("dcgan", data=str(path), holdout=10))
    assert data.train.shape == (50, 28, 28, 1) and data.holdout.shape == (10, 28, 28, 1)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing", "no such file or folder"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "no images found"),
        (lambda p: _only_broken_images(p), "none of its 2 image files can be decoded"),
        (lambda p: _npz(p, np.zeros((20, 32, 32, 5), np.uint8)), "(20, 32, 32, 5)"),
        (lambda p: _npz(p, np.full((20, 28, 28), 300.0)), "[0, 255]"),
        (lambda p: (p / "notes.txt").write_text("hi") and p / "notes.txt", "not a folder of images or a .npz"),
        (lambda p: (p / "bad.npz").write_bytes(b"junk") and p / "bad.npz", "not a readable .npz"),
    ],
)
def test_bad_data_gets_an_error_naming_the_path_and_problem(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(data_lib.DataError) as error:
        data_lib.load(tiny("dcgan", data=str(path), holdout=5))
    assert message in str(error.value)
    assert str(path.name) in str(error.value)


def _only_broken_images(folder):
    (folder / "imgs").mkdir()
    for name in ("a.png", "b.jpg"):
        (folder / "imgs" / name).write_bytes(b"\x89PNG not really")
    return folder / "imgs"


def test_unreadable_files_are_skipped_and_named(tmp_path):
    _write_images(tmp_path / "imgs", 12)
    (tmp_path / "imgs" / "zz_broken.png").write_bytes(b"\x89PNG not really")
    data = data_lib.load(tiny("dcgan", data=str(tmp_path / "imgs"), holdout=2))
    assert len(data.train) + len(data.holdout) == 12
    assert len(data.notes) == 1 and "skipped 1 unreadable file: " in data.notes[0] and "zz_broken.png" in data.notes[0]


def _npz(folder, images):
    path = folder / "x.npz"
    np.savez(path, x=images)
    return path


def test_1d_presets_refuse_image_data():
    with pytest.raises(data_lib.DataError, match="1-D"):
        data_lib.load(tiny("dist1d", data="mnist-sample-folder"))
