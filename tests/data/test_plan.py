"""gan_pkg.plan: the data decides image size, channels and classes before any model exists,
says so in one line, and every later step takes that config: trained, exported and served
at the data's own shape, in colour."""

import io
import json

import numpy as np
import pytest

from PIL import Image
from tiny import tiny, tiny_flags

from gan_pkg import architectures, contract, features, folders, session_loader, sizing
from gan_pkg.shapes import shape_image, shapes_folder
from gan_pkg import config as config_lib
from gan_pkg import data as data_lib
from gan_pkg.plan import check_planned, plan
from conftest import run_python


def _plan(config, said=None):
    return plan(config, log=(said.append if said is not None else lambda line: None))


def test_a_colour_folder_with_classes_trains_at_its_own_size_and_colour(tmp_path):
    folder = shapes_folder(tmp_path / "shapes", 64, 30)
    said = []
    planned = _plan(tiny("dcgan-classcode", data=str(folder), holdout=10), said)
    assert said == [f"{folder}: 60 images, 64×64 RGB, 2 classes (circle, square) -> training at 64×64×3"]
    config = planned.config
    assert (config.image_shape, config.num_classes, config.class_names) == ((64, 64, 3), 2, ("circle", "square"))
    assert planned.data.train.shape[1:] == (64, 64, 3) and set(planned.data.train_labels) == {0, 1}
    generator, discriminator = architectures.build(config)
    assert generator.output_shape[1:] == (64, 64, 3)
    assert _plan(config).config == config  # planning a planned config changes nothing (resume relies on it)


@pytest.mark.parametrize("side", [28, 32, 64, 128])
@pytest.mark.parametrize("preset", ["dcgan", "conv", "conv-tanh", "mlp", "cdcgan", "resnet"])
def test_every_image_preset_builds_at_each_side_in_grey_and_colour(preset, side):
    for channels in (1, 3):
        config = sizing.sized(config_lib.preset(preset), (side, side, channels)).validated()
        generator, discriminator = architectures.build(config)
        assert generator.output_shape[1:] == (side, side, channels)
        image_input = discriminator.inputs[0]  # [image, label] when D is conditioned, else the image alone
        assert tuple(image_input.shape[1:]) == (side, side, channels)


def test_28px_grey_presets_stay_the_seeds_networks():
    for name in config_lib.PRESETS:
        preset = config_lib.preset(name)
        assert sizing.sized(preset, preset.image_shape) == preset


def test_larger_sides_add_one_block_per_doubling_with_filters_halving():
    config = sizing.sized(config_lib.preset("dcgan"), (128, 128, 3))
    assert (config.g_initial_shape, config.g_filters, config.g_upsample) == ((8, 8, 128), (128, 64, 32, 16), (2, 2, 2, 2, 1))
    assert (config.d_filters, config.d_strides) == ((16, 16, 32, 64, 128, 256), (2, 2, 2, 2, 2, 1))


def test_an_unsupported_side_names_the_sides_that_work():
    with pytest.raises(ValueError, match=r"16, 20, 24, 28, 32, .*got 100\. Pass --image-size"):
        _plan(tiny("dcgan", image_size=100))


def test_data_smaller_than_any_side_says_which_flag_upscales(tmp_path):
    (tmp_path / "small").mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        shape_image("circle", 12, rng).save(tmp_path / "small" / f"{i}.png")
    with pytest.raises(data_lib.DataError, match="12 pixels on their short side.*--image-size"):
        _plan(tiny("dcgan", data=str(tmp_path / "small"), holdout=2))
    assert _plan(tiny("dcgan", data=str(tmp_path / "small"), holdout=2, image_size=16)).data.train.shape[1:] == (16, 16, 3)


def test_between_sizes_the_largest_side_not_above_the_data_and_a_line_saying_so(tmp_path):
    folder = shapes_folder(tmp_path / "shapes", 100, 6)
    said = []
    assert _plan(tiny("dcgan", data=str(folder), holdout=2), said).config.image_shape == (96, 96, 3)
    assert "-> training at 96×96×3; 96 is the largest side preset 'dcgan' builds up to 100 (--image-size" in said[0]


def test_mixed_sizes_and_modes_are_converted_with_one_summary_line(tmp_path):
    folder, rng = tmp_path / "mixed", np.random.default_rng(0)
    folder.mkdir()
    for i, (mode, size, width) in enumerate([("RGB", 30, 40), ("RGBA", 64, 64), ("L", 50, 50), ("P", 32, 32)] * 3):
        shape_image("circle", size, rng, mode, width).save(folder / f"{i:02d}.png")
    said = []
    planned = _plan(tiny("dcgan", data=str(folder), holdout=2), said)
    assert len(said) == 1, said
    assert said[0].startswith(f"{folder}: 12 images, 32×32 to 64×64 (mixed sizes) RGB and grey, 3 with transparency, no labels -> training at 28×28×3")
    assert "centre-cropped to squares (--resize)" in said[0]
    assert planned.data.train.shape[1:] == (28, 28, 3)


def test_non_square_images_are_centre_cropped_or_stretched(tmp_path):
    """A 40x30 image whose outer 5 columns on each side are red and the middle blue: a centre
    crop keeps only blue (StyleGAN's dataset_tool), a stretch keeps the red edges."""
    (tmp_path / "wide").mkdir()
    pixels = np.zeros((30, 40, 3), np.uint8)
    pixels[..., 2] = 255
    pixels[:, :5] = pixels[:, -5:] = (255, 0, 0)
    for i in range(6):
        Image.fromarray(pixels).save(tmp_path / "wide" / f"{i}.png")
    crop = _plan(tiny("dcgan", data=str(tmp_path / "wide"), holdout=1)).data.train
    stretch = _plan(tiny("dcgan", data=str(tmp_path / "wide"), holdout=1, resize="stretch")).data.train
    assert crop.shape[1:] == stretch.shape[1:] == (28, 28, 3)
    assert crop[..., 0].max() < 30 and crop[..., 2].min() > 225
    assert stretch[:, :, 0, 0].min() > 200


def test_nested_folders_give_one_class_per_top_level_subfolder(tmp_path):
    rng = np.random.default_rng(0)
    for path in ["cats/indoor/1.png", "cats/outdoor/2.png", "cats/3.png", "dogs/a/b/4.png", "dogs/5.jpg", "dogs/6.png"]:
        (tmp_path / "pets" / path).parent.mkdir(parents=True, exist_ok=True)
        shape_image("square", 32, rng).save(tmp_path / "pets" / path)
    planned = _plan(tiny("cdcgan", data=str(tmp_path / "pets"), holdout=1))
    assert (planned.config.num_classes, planned.config.class_names) == (2, ("cats", "dogs"))
    labels = np.concatenate([planned.data.train_labels, planned.data.holdout_labels])
    assert sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1]


def test_a_grey_non_digit_folder_stays_28px_grey(tmp_path):
    folder = shapes_folder(tmp_path / "grey", 28, 6, mode="L")
    said = []
    assert _plan(tiny("dcgan", data=str(folder), holdout=2), said).config.image_shape == (28, 28, 1)
    assert "12 images, 28×28 grey, 2 classes (circle, square) -> training at 28×28×1" in said[0]


def test_channels_and_size_flags_win_over_the_data(tmp_path):
    folder = shapes_folder(tmp_path / "shapes", 64, 4)
    said = []
    planned = _plan(tiny("dcgan", data=str(folder), holdout=2, image_size=32, channels=1), said)
    assert planned.data.train.shape[1:] == (32, 32, 1) and "colour converted to grey (--channels 1)" in said[0]


@pytest.mark.parametrize("typed", ["64,64,3", "[64, 64, 3]", "(64, 64, 3)"])
def test_set_image_shape_parses_as_users_type_it(typed):
    config = config_lib.GANConfig.resolve("dcgan-classcode", config_lib.parse_assignments([f"image_shape={typed}"]))
    assert (config.image_shape, config.image_size, config.channels) == ((64, 64, 3), 64, 3)
    planned = _plan(config.replace(holdout=100))  # the digits, upscaled to 64x64 and in 3 channels, as asked
    assert planned.config.image_shape == (64, 64, 3) and planned.data.train.shape[1:] == (64, 64, 3)


def test_an_rgb_npz_trains_at_its_shape_and_cifar10_offline_says_what_to_do(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "rgb.npz", x_train=rng.integers(0, 255, (20, 32, 32, 3), dtype=np.uint8), y_train=np.arange(20) % 4)
    planned = _plan(tiny("cdcgan", data=str(tmp_path / "rgb.npz"), holdout=4))
    assert (planned.config.image_shape, planned.config.num_classes) == ((32, 32, 3), 4)
    import keras

    def offline():
        raise OSError("URL fetch failure")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    with pytest.raises(data_lib.DataError) as error:
        _plan(tiny("dcgan", data="cifar10"))
    assert "cifar10: keras.datasets could not load it (OSError)" in str(error.value) and "~/.keras/datasets" in str(error.value)
    assert "\n" not in str(error.value)


def test_a_folder_larger_than_memory_allows_is_decoded_once_to_disk_and_streamed(tmp_path, monkeypatch):
    folder = shapes_folder(tmp_path / "shapes", 32, 12)
    config = tiny("dcgan-classcode", data=str(folder), holdout=4)
    in_memory = _plan(config)
    monkeypatch.setattr(folders, "memory_budget", lambda: 1000)  # a few images worth
    said = []
    streamed = _plan(config, said)
    assert isinstance(streamed.data.train, np.memmap) and "streamed from" in said[0]
    assert streamed.config == in_memory.config  # the same run either way: same split, same pixels, same labels
    np.testing.assert_array_equal(streamed.data.train, in_memory.data.train)
    np.testing.assert_array_equal(streamed.data.holdout, in_memory.data.holdout)
    np.testing.assert_array_equal(streamed.data.train_labels, in_memory.data.train_labels)
    batch, labels = next(iter(data_lib.training_dataset(streamed.data, streamed.config)))
    assert batch.shape == (8, 32, 32, 3) and labels.shape == (8,) and -1.0 <= float(np.min(batch)) <= float(np.max(batch)) <= 1.0
    again = _plan(config)  # decoded once: a rerun maps the same file
    assert again.data.train.filename == streamed.data.train.filename
    from gan_pkg.training import train

    result = train(streamed.config, tmp_path / "run", verbose=0, data=streamed.data)
    assert result.step == 4


def test_a_small_folder_holds_out_a_fifth(tmp_path):
    folder = shapes_folder(tmp_path / "shapes", 32, 10)
    said = []
    planned = _plan(tiny("dcgan", data=str(folder), holdout=500), said)
    assert planned.config.holdout == 4 and len(planned.data.holdout) == 4 and "4 held out for evaluation" in said[0]


def test_train_refuses_a_config_its_data_would_change(tmp_path):
    from gan_pkg.training import train

    folder = shapes_folder(tmp_path / "shapes", 32, 8)
    config = tiny("dcgan", data=str(folder), holdout=2)
    with pytest.raises(ValueError, match=r"decides image_shape \(28, 28, 1\) -> \(32, 32, 3\).*gan_pkg\.plan"):
        train(config, tmp_path / "run", verbose=0)
    assert not (tmp_path / "run").exists()
    check_planned(_plan(config).config, _plan(config).config)


def test_a_colour_folder_is_trained_exported_loaded_and_served_in_colour(tmp_path):
    """The issue's first command, shrunk: fit -> export -> TF Serving's C++ loader -> embedded
    server -> RGB PNGs over gRPC, with nothing but --data."""
    from serving import main as server_main
    from serving_helpers import quiet, server_args

    import serving.client as client_mod

    folder = shapes_folder(tmp_path / "shapes", 32, 12)
    done = run_python("-m", "gan_pkg.fit", "--data", str(folder), "--steps", "4", "--workdir", str(tmp_path / "run"),
                      "--export-base", str(tmp_path / "export"), *tiny_flags("dcgan-classcode", holdout=4), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{folder}: 24 images, 32×32 RGB, 2 classes (circle, square) -> training at 32×32×3" in done.stdout
    assert Image.open(tmp_path / "run" / "samples" / "latest.png").mode == "RGB"
    version = tmp_path / "export" / "gan" / "1"
    meta = json.loads((version / contract.ASSETS_EXTRA / contract.METADATA_FILE).read_text())
    assert meta["output_shape"] == [32, 32, 3] and meta["class_names"] == ["circle", "square"]

    seeds = np.array([0, 5], np.int64)
    inputs = {
        contract.SERVING_DEFAULT: {contract.NOISE: np.zeros((2, 100), np.float32)},
        contract.GENERATE: {contract.SEED: seeds},
        contract.GENERATE_PNG: {contract.SEED: seeds},
    }
    outputs = session_loader.check_in_fresh_process(version, inputs)
    assert outputs[contract.SERVING_DEFAULT][contract.IMAGES].shape == (2, 32, 32, 3)
    assert outputs[contract.GENERATE][contract.IMAGES].shape == (2, 32, 32, 3)

    running = server_main.start(server_args(model_base_path=str(tmp_path / "export" / "gan")), log=quiet)
    try:
        with client_mod.GeneratorClient(f"127.0.0.1:{running.grpc_port}", retries=0, timeout=60) as client:
            pngs = client.generate_png([1, 2])
            shape = client.metadata()[contract.SERVING_DEFAULT]["outputs"][contract.IMAGES][1]
    finally:
        running.stop(grace=2)
    pictures = [Image.open(io.BytesIO(png)) for png in pngs]
    assert all(p.mode == "RGB" and p.size == (32, 32) for p in pictures)
    assert shape == [None, 32, 32, 3]

    # Scored in the features of a classifier trained on the shapes' own labels, which the
    # export keeps; no "max 10" for two classes of shapes.
    scored = run_python("-m", "gan_pkg.evaluate", "--export", str(tmp_path / "export" / "gan"), "--num-samples", "20", cwd=tmp_path,
                        env_extra={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert "features: classifier trained on this data's labelled training split (2 classes" in scored.stdout and "classifier score (max 2)" in scored.stdout, scored.stdout
    assert "max 10" not in scored.stdout
    assert all((version / contract.ASSETS_EXTRA / name).is_file() for name in features.STORED_FILES)
