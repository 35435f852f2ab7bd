"""Transparent images are composited onto one background, whatever the source: folders,
.npz arrays and TFRecords alike, and the plan line says so."""

import io

import numpy as np
import pytest
from PIL import Image
from tiny import tiny

from gan_pkg import config as config_lib
from gan_pkg import tfrecords
from gan_pkg.plan import plan

SIDE = 16
STORED_UNDER_ALPHA = (200, 0, 0)  # what a file keeps under its transparent pixels: must never show
OPAQUE = (0, 0, 255)


def _rgba() -> np.ndarray:
    """A transparent square with an opaque blue centre and a half-transparent blue ring."""
    pixels = np.zeros((SIDE, SIDE, 4), np.uint8)
    pixels[..., :3] = STORED_UNDER_ALPHA
    pixels[4:12, 4:12] = (*OPAQUE, 128)
    pixels[6:10, 6:10] = (*OPAQUE, 255)
    return pixels


def _folder(root, count=12):
    for i in range(count):
        folder = root / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_rgba(), "RGBA").save(folder / f"{i}.png")
    return root


def _planned(source, said=None, **changes):
    config = tiny("dcgan", data=str(source), holdout=2, conditioning="none", num_classes=0, class_loss_weight=0.0, **changes)
    return plan(config, log=said.append if said is not None else lambda line: None)


def _check_composited(images, background):
    corner, ring, centre = images[:, 0, 0], images[:, 5, 5], images[:, 8, 8]
    np.testing.assert_array_equal(corner, np.broadcast_to(background, corner.shape))
    np.testing.assert_array_equal(centre, np.broadcast_to(OPAQUE, centre.shape))
    # half-transparent: halfway between the background and the colour, never the stored red
    expected = np.round((np.array(background) * 127 + np.array(OPAQUE) * 128) / 255)
    np.testing.assert_allclose(ring, np.broadcast_to(expected, ring.shape), atol=1)


@pytest.mark.parametrize("background, rgb", [("white", (255, 255, 255)), ("black", (0, 0, 0)), ("#336699", (0x33, 0x66, 0x99))])
def test_a_transparent_folder_is_composited_onto_the_background_and_the_plan_says_so(tmp_path, background, rgb):
    said = []
    planned = _planned(_folder(tmp_path / "icons"), said, background=background, image_size=SIDE)
    _check_composited(np.concatenate([planned.data.train, planned.data.holdout]), rgb)
    assert "all with transparency" in said[0]
    assert f"transparent pixels composited onto {background} (--background)" in said[0]


def test_an_rgba_npz_is_composited_not_cut_to_its_colour_channels_onto_white_by_default(tmp_path):
    path = tmp_path / "icons.npz"
    np.savez(path, x_train=np.stack([_rgba()] * 12))
    said = []
    planned = _planned(path, said, image_size=SIDE)
    assert planned.config.image_shape == (SIDE, SIDE, 3)
    _check_composited(planned.data.train, (255, 255, 255))
    assert "composited onto white" in said[0]


def test_grey_with_alpha_in_an_npz_stays_grey(tmp_path):
    pixels = np.zeros((12, SIDE, SIDE, 2), np.uint8)
    pixels[:, 6:10, 6:10] = (40, 255)
    path = tmp_path / "grey.npz"
    np.savez(path, x_train=pixels)
    planned = _planned(path, image_size=SIDE, background="black")
    assert planned.config.image_shape == (SIDE, SIDE, 1)
    assert planned.data.train[0, 0, 0, 0] == 0 and planned.data.train[0, 8, 8, 0] == 40


def test_tfrecords_of_transparent_pngs_are_composited(tmp_path):
    records = tmp_path / "records"
    # the writer composites what it reads; records written by others may hold RGBA PNGs
    import tensorflow as tf

    records.mkdir()
    buffer = io.BytesIO()
    Image.fromarray(_rgba(), "RGBA").save(buffer, format="PNG")
    example = tf.train.Example(features=tf.train.Features(feature={"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[buffer.getvalue()]))}))
    with tf.io.TFRecordWriter(str(records / "data.tfrecord")) as writer:
        for _ in range(12):
            writer.write(example.SerializeToString())
    said = []
    planned = _planned(records, said, image_size=SIDE, background="grey")
    _check_composited(planned.data.train, (128, 128, 128))
    assert "with transparency" in said[0]
    assert tfrecords  # the writer's module: one reader behind both import paths


def test_a_palette_image_with_a_transparent_colour_is_composited(tmp_path):
    folder = tmp_path / "gifs" / "a"
    folder.mkdir(parents=True)
    for i in range(12):
        image = Image.new("P", (SIDE, SIDE), 0)
        image.putpalette([*STORED_UNDER_ALPHA, *OPAQUE] + [0] * 762)
        image.paste(1, (6, 6, 10, 10))
        image.info["transparency"] = 0
        image.save(folder / f"{i}.png", transparency=0)
    planned = _planned(tmp_path / "gifs", image_size=SIDE)
    assert tuple(planned.data.train[0, 0, 0]) == (255, 255, 255) and tuple(planned.data.train[0, 8, 8]) == OPAQUE


@pytest.mark.parametrize("bad", ["purple", "#12345", "rgb(1,2,3)"])
def test_an_unknown_background_is_refused_with_the_choices(bad):
    with pytest.raises(ValueError, match="white, black, grey or a colour as #rrggbb"):
        config_lib.GANConfig.resolve("dcgan", {"background": bad})
