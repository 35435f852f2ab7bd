"""TFRecords of tf.Example as --data (ImportExampleGen's layout), and the writer that makes them."""

import numpy as np
import pytest
import tensorflow as tf

from gan_pkg import tfrecords
from gan_pkg.config import DEFAULT_PRESET, GANConfig
from gan_pkg.dataset import DataError
from gan_pkg.plan import plan
from gan_pkg.shapes import shapes_folder

PER_CLASS = 20  # 40 labelled 32x32 RGB shapes: 32 training and 8 held out (a fifth)


def quiet(*args, **kwargs):
    pass


def read(source, preset="mlp", **values):
    """The planned data (the dense preset keeps the data's own side and ignores classes)."""
    return plan(GANConfig.resolve(preset, {"data": str(source), "holdout": 100, **values}), log=quiet)


def feature(value):
    if isinstance(value, bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in np.atleast_1d(value)]))


def example(**features) -> bytes:
    return tf.train.Example(features=tf.train.Features(feature={k: feature(v) for k, v in features.items()})).SerializeToString()


def write(path, records, compressed=True):
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path), tf.io.TFRecordOptions(compression_type="GZIP" if compressed else "")) as writer:
        for record in records:
            writer.write(record)
    return path


def count(path) -> int:
    return sum(1 for _ in tf.data.TFRecordDataset(str(path), compression_type="GZIP"))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return shapes_folder(tmp_path_factory.mktemp("shapes"), 32, PER_CLASS)


@pytest.fixture(scope="module")
def examples(shapes, tmp_path_factory):
    out = tmp_path_factory.mktemp("written") / "examples"
    assert tfrecords.main(["--data", str(shapes), str(out)]) == 0
    return out


def test_the_writer_writes_import_example_gens_layout_in_gzip(shapes, tmp_path, capsys):
    out = tmp_path / "examples"
    assert tfrecords.main(["--data", str(shapes), str(out)]) == 0
    train, held = out / "Split-train" / tfrecords.FILE_NAME, out / "Split-eval" / tfrecords.FILE_NAME
    assert (count(train), count(held)) == (32, 8)
    assert train.read_bytes()[:2] == held.read_bytes()[:2] == tfrecords.GZIP_MAGIC
    assert sorted(p.name for p in out.rglob("*")) == ["Split-eval", "Split-train", tfrecords.FILE_NAME, tfrecords.FILE_NAME]
    line = capsys.readouterr().out.strip()
    assert line == (f"wrote 32 training and 8 held-out examples (32×32×3, labels 0..1 (circle, square)) to {train} and {held}")


def test_written_records_read_back_as_the_same_pixels_labels_and_split(shapes, examples):
    source, records = read(shapes).data, read(examples).data
    for field in ("train", "holdout", "train_labels", "holdout_labels"):
        np.testing.assert_array_equal(getattr(records, field), getattr(source, field), err_msg=field)
    planned = read(examples, DEFAULT_PRESET)  # the default preset's class head: 2 classes, numeric names
    assert (planned.config.num_classes, planned.config.class_names, planned.config.image_shape) == (2, (), (32, 32, 3))
    assert f"{examples}: 40 images, 32×32 RGB, 2 classes (0, 1) -> training at 32×32×3" in planned.summary


def test_a_glob_of_training_files_is_split_by_gan_pkg_or_held_out_from_holdout_data(shapes, examples):
    source = read(shapes).data
    globbed = read(f"{examples}/Split-train/*")  # 32 records: a fifth held out by the fixed seed
    assert (len(globbed.data.train), len(globbed.data.holdout)) == (26, 6)
    assert {bytes(i) for i in (*globbed.data.train, *globbed.data.holdout)} == {bytes(i) for i in source.train}
    eval_files = read(f"{examples}/Split-train/*", holdout_data=f"{examples}/Split-eval/*")  # TFX's train_files, eval_files
    np.testing.assert_array_equal(eval_files.data.holdout, source.holdout)
    np.testing.assert_array_equal(eval_files.data.train, source.train)
    assert eval_files.config.holdout == 8 and "held-out images from" in eval_files.summary


def test_gzip_and_uncompressed_raw_pixels_mix_in_one_folder(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (10, 28, 28, 1), dtype=np.uint8)
    records = [example(image=image.tobytes(), image_shape=image.shape, label=i % 3) for i, image in enumerate(grey)]
    write(tmp_path / "raw" / "part-0.tfrecord.gz", records[:6])
    write(tmp_path / "raw" / "part-1.tfrecord", records[6:], compressed=False)
    assert (tmp_path / "raw" / "part-1.tfrecord").read_bytes()[:2] != tfrecords.GZIP_MAGIC
    planned = read(tmp_path / "raw")
    assert planned.config.image_shape == (28, 28, 1)
    data = planned.data
    got = np.concatenate([data.train, data.holdout])
    assert sorted(map(bytes, got)) == sorted(map(bytes, grey))
    assert sorted(np.concatenate([data.train_labels, data.holdout_labels]).tolist()) == sorted(i % 3 for i in range(10))


@pytest.mark.parametrize("shape_features", ["image_shape", "height_width_channels", "height_width"])
def test_raw_rgb_pixels_take_their_shape_from_either_spelling(tmp_path, shape_features):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    shape = {"image_shape": {"image_shape": (32, 32, 3)}, "height_width_channels": {"height": 32, "width": 32, "channels": 3},
             "height_width": {"height": 32, "width": 32}}[shape_features]
    write(tmp_path / "rgb.tfrecord", [example(image=image.tobytes(), **shape) for image in images])
    data = read(tmp_path / "rgb.tfrecord").data
    assert sorted(map(bytes, np.concatenate([data.train, data.holdout]))) == sorted(map(bytes, images))
    assert data.train_labels is None


def test_png_bytes_beside_height_and_width_features_are_decoded(tmp_path):
    """Encoded images often carry their size as metadata: bytes that do not fit it as raw pixels are decoded."""
    image = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    write(tmp_path / "png.tfrecord", [example(image=tfrecords.png_bytes(image), height=32, width=32)] * 5)
    np.testing.assert_array_equal(read(tmp_path / "png.tfrecord").data.holdout[0], image)


def test_which_sources_are_tfrecords(tmp_path, shapes, examples):
    np.savez(tmp_path / "arrays.npz", x=np.zeros((4, 28, 28), np.uint8))
    mixed = tmp_path / "mixed"
    write(mixed / "records.tfrecord", [])
    shapes_folder(mixed / "pictures", 32, 1)
    claimed = [examples, examples / "Split-train", f"{examples}/Split-train/*", examples / "Split-eval" / tfrecords.FILE_NAME,
               f"{tmp_path}/nothing/*.tfrecord"]
    not_claimed = ["mnist-sample", "mnist", "cifar10", "normal1d", "", shapes, tmp_path / "arrays.npz", mixed, tmp_path / "absent"]
    assert [tfrecords.is_tfrecord_source(str(s)) for s in claimed] == [True] * len(claimed)
    assert [tfrecords.is_tfrecord_source(str(s)) for s in not_claimed] == [False] * len(not_claimed)


def _good():
    return example(image=tfrecords.png_bytes(np.zeros((32, 32, 3), np.uint8)), label=0)


ERRORS = {
    "no files": (None, "no files match"),
    "not a tf.Example": ([_good, lambda: b"\x0a\xff\xff\xff\xff\x0f"], "record 1: not a tf.Example"),
    "no image feature": ([_good, _good, lambda: example(label=1)], "record 2: no 'image' feature (found label)"),
    "raw bytes, no shape": ([lambda: example(image=bytes(3072))], "record 0: 3072 image bytes are no image PIL decodes"),
    "raw bytes, wrong shape": ([lambda: example(image=bytes(1024), image_shape=(32, 32, 3))],
                               "record 0: 1024 raw image bytes do not fit its shape [32, 32, 3]"),
    "bad shape": ([lambda: example(image=bytes(1024), image_shape=(32, 32, 2))], "record 0: image_shape [32, 32, 2] is not a shape"),
    "undecodable PNG": ([_good, lambda: example(image=b"\x89PNG\r\n\x1a\n" + bytes(40))], "record 1: its PNG image cannot be decoded"),
    "truncated PNG": ([_good, lambda: example(image=tfrecords.png_bytes(np.full((32, 32, 3), 7, np.uint8))[:60])],
                      "record 1: its image cannot be decoded"),
    "not TFRecords": ("garbage", "record 0: not readable as a TFRecord"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_bad_records_raise_one_line_naming_the_file_and_record(tmp_path, case):
    records, message = ERRORS[case]
    path = tmp_path / "bad" / "data.tfrecord"
    if records == "garbage":
        path.parent.mkdir()
        path.write_bytes(b"these bytes are no TFRecord framing at all" * 4)
    elif records is not None:
        write(path, [make() for make in records])
    source = path if records is not None else tmp_path / "bad" / "*.tfrecord"
    with pytest.raises(DataError) as raised:
        read(source)
    text = str(raised.value)
    assert "\n" not in text and message in text and str(path if records is not None else source) in text, text


def test_labels_on_only_some_records_fail_only_where_training_needs_them(tmp_path):
    image = tfrecords.png_bytes(np.zeros((32, 32, 1), np.uint8))
    write(tmp_path / "some.tfrecord", [example(image=image, label=1), example(image=image)] * 5)
    assert read(tmp_path / "some.tfrecord").data.train_labels is None  # the dense preset trains without them
    with pytest.raises(DataError, match="5 of 10 records have no 'label'; label all of them or none"):
        read(tmp_path / "some.tfrecord", DEFAULT_PRESET)  # its class head needs every label


def test_holdout_data_must_be_tfrecords(examples, shapes):
    with pytest.raises(DataError, match=f"holdout_data {shapes}: not TFRecord files"):
        read(examples, holdout_data=str(shapes))


@pytest.mark.parametrize("problem", ["no data", "written before"])
def test_writer_errors_exit_2_with_one_line(tmp_path, capsys, examples, problem):
    argv = ["--data", str(tmp_path / "absent"), str(tmp_path / "out")] if problem == "no data" else ["--data", str(examples), str(examples)]
    assert tfrecords.main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    expected = "no such file or folder" if problem == "no data" else "Split-train: already holds files; pick an empty output folder"
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
