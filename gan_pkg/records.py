"""TFRecord files of tf.Example (TFX's ImportExampleGen layout), read as training data.

`--data` (and a TFX module's `train_files`) takes a glob or a folder of TFRecord files,
gzip or not (told apart per file by gzip's magic bytes), or an ImportExampleGen Examples
folder: training examples from its `Split-train/`, the held-out split from its `Split-eval/`
(or from `holdout_data`, TFX's `eval_files`, when set; else `dataset.split` keeps it out).

Feature spec, one tf.Example per image (other features are ignored):

    image        bytes: an encoded image PIL decodes (PNG, JPEG, ...), or raw uint8 pixels
                 in row-major [H, W, C] order, whose shape is then given by
    image_shape  int64 [H, W, C] (or [H, W] for grey), or int64 `height`, `width`, `channels`
    label        int64, optional: the class, 0..classes-1 (numeric; the class count is max+1)

Every image goes through `folders.fit_image`, as an image folder's do. gan_pkg.tfrecords
writes any data in this layout.
"""

from __future__ import annotations

import glob
import io
import os
import re
from pathlib import Path

import numpy as np

from gan_pkg import folders
from gan_pkg.config import GANConfig
from gan_pkg.dataset import NAMED_SOURCES, Data, DataError, Survey, colour_name, listing, split

IMAGE, IMAGE_SHAPE, LABEL = "image", "image_shape", "label"
HEIGHT, WIDTH, CHANNELS = "height", "width", "channels"
TRAIN_SPLIT, EVAL_SPLIT = "Split-train", "Split-eval"  # ImportExampleGen's split folders
SPLIT_PREFIX = "Split-"
FILE_NAME = "data_tfrecord-00000-of-00001.gz"  # what ImportExampleGen names a one-shard split
RECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfrec", ".gz", ".gzip")
GZIP_MAGIC = b"\x1f\x8b"
GLOB_CHARACTERS = "*?["
# The dense preset plans data at its own side with any classes: what the writer reads it at.
WRITER_PRESET = "mlp"
SPEC = "tf.Example with `image` (encoded bytes, or raw uint8 with int64 `image_shape` [H, W, C]) and optional int64 `label`"
# How encoded images start, to tell an undecodable image from raw pixels without a shape.
SIGNATURES = {b"\x89PNG": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF", b"BM": "BMP", b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}


# -- what a source names ------------------------------------------------------------
def is_tfrecord_source(source: str) -> bool:
    """Whether `source` names TFRecords: a glob, a TFRecord-named file, an Examples folder
    (Split-* subfolders) or a folder of TFRecord-named files without images. Cheap (names
    and directory listings only), so gan_pkg.data can ask before any other source."""
    if not source or source in NAMED_SOURCES or source == "normal1d":  # names, never paths
        return False
    path = Path(os.path.expanduser(str(source)))
    if path.is_dir():
        return _is_examples_folder(path) or _is_records_folder(path)
    if path.is_file():
        return _looks_like_records(path)
    return any(character in str(source) for character in GLOB_CHARACTERS)


def _is_examples_folder(path: Path) -> bool:
    return any(child.is_dir() and child.name.startswith(SPLIT_PREFIX) for child in path.iterdir())


def _is_records_folder(path: Path) -> bool:
    """TFRecord-named files at the top, and no image anywhere below (that is an image folder)."""
    if not any(child.is_file() and _looks_like_records(child) for child in path.iterdir()):
        return False
    return next((p for p in path.rglob("*") if p.suffix.lower() in folders.IMAGE_SUFFIXES), None) is None


def _looks_like_records(path: Path) -> bool:
    name = path.name.lower()
    return not name.startswith(".") and (path.suffix.lower() in RECORD_SUFFIXES or "tfrecord" in name)


def record_files(source: str, split_name: str = TRAIN_SPLIT) -> list[Path]:
    """The TFRecord files `source` names, sorted: an Examples folder's `split_name` folder, a
    folder's TFRecord-named files, one file, or what a glob matches. DataError when none."""
    path = Path(os.path.expanduser(source))
    if path.is_dir() and _is_examples_folder(path):
        splits = sorted(child.name for child in path.iterdir() if child.is_dir() and child.name.startswith(SPLIT_PREFIX))
        if split_name not in splits:
            raise DataError(f"{source}: an Examples folder without {split_name}/ (it has {listing(splits)}); "
                            f"pass --data {path / splits[0]}/* to train on another split")
        found = [p for p in (path / split_name).iterdir() if p.is_file() and not p.name.startswith(".")]
    elif path.is_dir():
        found = [p for p in path.iterdir() if p.is_file() and _looks_like_records(p)]
    elif path.is_file():
        found = [path]
    else:
        found = [Path(p) for p in glob.glob(os.path.expanduser(source), recursive=True) if os.path.isfile(p)]
    if not found:
        raise DataError(f"{source}: no files match; --data takes TFRecord files of {SPEC} "
                        "(a glob such as examples/Split-train/*, a folder of them, or an ImportExampleGen Examples folder)")
    for file in found:
        if file.suffix.lower() in (*folders.IMAGE_SUFFIXES, ".npz"):
            raise DataError(f"{file}: a {file.suffix} file, not TFRecords; pass its folder (image files) or the file itself (.npz) as --data")
    return sorted(found)


def _sources(config: GANConfig) -> tuple[list[Path], list[Path] | None, str]:
    """(training files, held-out files or None, what the held-out split is read from)."""
    train = record_files(config.data, TRAIN_SPLIT)
    held_source = config.holdout_data
    if held_source and not is_tfrecord_source(held_source):
        raise DataError(f"holdout_data {held_source}: not TFRecord files (a glob such as examples/Split-eval/*, a folder of "
                        "them or an Examples folder); leave it empty to hold out part of --data")
    if not held_source:
        path = Path(os.path.expanduser(config.data))
        if not (path.is_dir() and (path / EVAL_SPLIT).is_dir()):
            return train, None, ""
        held_source = str(path / EVAL_SPLIT)
    return train, record_files(held_source, EVAL_SPLIT), held_source


# -- reading ------------------------------------------------------------------
def _compression(file: Path) -> str:
    with open(file, "rb") as stream:
        return "GZIP" if stream.read(2) == GZIP_MAGIC else ""


# What TF and PIL wrap their one useful phrase in: function nodes, op names, object addresses.
_NOISE = re.compile(r"\{\{.*?\}\}|\[Op:[^\]]*\](?: name:\S*)?| ?<[^<>]* object at 0x[0-9a-f]+>")


def _one_line(error: Exception) -> str:
    return " ".join(_NOISE.sub("", str(error)).split()) or type(error).__name__


def _dataset(file: Path):
    import tensorflow as tf

    return tf.data.TFRecordDataset(str(file), compression_type=_compression(file))


def _unreadable(file: Path, index: int, error: Exception) -> DataError:
    return DataError(f"{file}: record {index}: not readable as a TFRecord ({_one_line(error)}); "
                     "expected TFRecord files, gzip or uncompressed")


def _records(files: list[Path]):
    """(where, tf.train.Example) for every record, file by file, one record in memory at a
    time; DataError naming the file and record that is not a readable tf.Example."""
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    for file in files:
        iterator = _dataset(file).as_numpy_iterator()
        index = 0
        while True:
            try:
                raw = next(iterator)
            except StopIteration:
                break
            except tf.errors.OpError as error:
                raise _unreadable(file, index, error) from None
            where = f"{file}: record {index}"
            try:
                example = tf.train.Example.FromString(raw)
            except DecodeError:
                raise DataError(f"{where}: not a tf.Example ({len(raw)} bytes that do not parse as one); each record must be a {SPEC}") from None
            yield where, example
            index += 1


def _count(files: list[Path]) -> int:
    """How many records the files hold, without parsing them (to size the decoded array once)."""
    import tensorflow as tf

    total = 0
    for file in files:
        try:
            total += int(_dataset(file).reduce(np.int64(0), lambda count, _: count + 1))
        except tf.errors.OpError as error:
            raise DataError(f"{file}: not readable as TFRecords ({_one_line(error)}); expected TFRecord files, gzip or uncompressed") from None
    return total


def _kind(feature) -> str:
    kind = feature.WhichOneof("kind")
    return f"{len(getattr(feature, kind).value)} {kind.split('_')[0]} value(s)" if kind else "an empty feature"


def _image_bytes(example, where: str) -> bytes:
    features = example.features.feature
    if IMAGE not in features:
        found = listing(sorted(features)) if features else "no features"
        raise DataError(f"{where}: no '{IMAGE}' feature (found {found}); each record must be a {SPEC}")
    values = features[IMAGE].bytes_list.value
    if len(values) != 1:
        raise DataError(f"{where}: '{IMAGE}' must be one bytes value (an encoded image or raw uint8 pixels), found {_kind(features[IMAGE])}")
    return values[0]


def _raw_shape(example, where: str) -> tuple | None:
    """[H, W, C] from `image_shape` or `height`/`width`/`channels` (C None when not given); None: no shape."""
    features = example.features.feature
    if IMAGE_SHAPE in features:
        shape = tuple(features[IMAGE_SHAPE].int64_list.value)
        what = f"{IMAGE_SHAPE} {list(shape)}"
    elif HEIGHT in features and WIDTH in features:
        shape = tuple(v for key in (HEIGHT, WIDTH, CHANNELS) if key in features for v in features[key].int64_list.value)
        what = f"{HEIGHT}, {WIDTH}{', ' + CHANNELS if CHANNELS in features else ''} {list(shape)}"
    else:
        return None
    if len(shape) not in (2, 3) or min(shape) < 1 or (len(shape) == 3 and shape[2] not in (1, 3, 4)):
        raise DataError(f"{where}: {what} is not a shape [H, W, C] with H, W >= 1 and C 1, 3 or 4")
    return (shape[0], shape[1], shape[2] if len(shape) == 3 else None)


def _open(data: bytes, shape: tuple | None, where: str):
    """The record's image, as PIL: raw pixels when a shape is given and the byte count fits it,
    else decoded (header only, until its pixels are asked for)."""
    from PIL import Image

    if shape is not None:
        height, width, channels = shape
        if channels is None and len(data) % (height * width) == 0:
            channels = len(data) // (height * width)
        if channels in (1, 3, 4) and len(data) == height * width * channels:
            pixels = np.frombuffer(data, np.uint8).reshape(height, width, channels)
            return Image.fromarray(pixels[..., 0] if channels == 1 else pixels)
    try:
        return Image.open(io.BytesIO(data))
    except Exception as error:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ValueError...
        if shape is not None:
            needs = " × ".join(str(v) for v in shape if v is not None)
            raise DataError(f"{where}: {len(data)} raw image bytes do not fit its shape {[v for v in shape if v is not None]} "
                            f"({needs}{' × channels' if shape[2] is None else ''} uint8 values), nor are they an image PIL decodes") from None
        signature = next((name for magic, name in SIGNATURES.items() if data.startswith(magic)), None)
        if signature:
            raise DataError(f"{where}: its {signature} image cannot be decoded ({_one_line(error)})") from None
        raise DataError(f"{where}: {len(data)} image bytes are no image PIL decodes ({_one_line(error)}) and there is no "
                        f"int64 '{IMAGE_SHAPE}' [H, W, C] (or {HEIGHT}, {WIDTH}, {CHANNELS}) to read them as raw uint8 pixels") from None


def _image(example, where: str):
    return _open(_image_bytes(example, where), _raw_shape(example, where), where)


class _Labels:
    """The records' labels: used when every record has one int64 value >= 0, else a problem
    that gan_pkg.plan raises only where training needs labels."""

    def __init__(self, source: str):
        self.source, self.values, self.problem = source, [], ""

    def add(self, example, where: str) -> None:
        features = example.features.feature
        values = features[LABEL].int64_list.value if LABEL in features else None
        if values is not None and len(values) != 1:
            self.problem = self.problem or f"{where}: '{LABEL}' must be one int64 value, found {_kind(features[LABEL])}"
            values = None
        self.values.append(int(values[0]) if values is not None else None)

    def check(self) -> str:
        """Why the labels cannot be used ("" when they can, or when no record has one)."""
        missing = sum(value is None for value in self.values)
        if self.problem or missing == len(self.values):
            return self.problem
        if missing:
            return f"{self.source}: {missing} of {len(self.values)} records have no '{LABEL}'; label all of them or none"
        low = min(self.values)
        return f"{self.source}: labels must be integers >= 0, found {low}" if low < 0 else ""

    def array(self) -> np.ndarray | None:
        return None if self.check() or not self.values or self.values[0] is None else np.array(self.values, np.int64)


def survey_records(config: GANConfig) -> Survey:
    """What the records hold, from each image's header (raw pixels: their shape); the count
    includes the held-out records of `holdout_data` or an Examples folder's Split-eval."""
    train, held, _ = _sources(config)
    sizes, modes, labels, count, transparent = set(), {}, _Labels(config.data), 0, 0
    for files in (train, held or []):
        for where, example in _records(files):
            image = _image(example, where)
            sizes.add(image.size)
            modes[image.mode] = modes.get(image.mode, 0) + 1
            transparent += folders.is_transparent(image)
            labels.add(example, where)
            count += 1
    if not count:
        raise DataError(f"{config.data}: no records in {listing([str(f) for f in train])}")
    values = labels.array()
    classes = 0 if values is None else int(values.max()) + 1
    colour = any(colour_name(mode) == "RGB" for mode in modes)
    return Survey(config.data, count, tuple(sorted(sizes)), colour, modes, classes, label_problem=labels.check(),
                  transparent=transparent)


def _decode(files: list[Path], config: GANConfig, source: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(uint8 images at config.image_shape, labels or None): the first `limit` records (all: None)."""
    count = _count(files) if limit is None else min(limit, _count(files))
    if not count:
        raise DataError(f"{source}: no records in {listing([str(f) for f in files])}")
    images, labels = np.empty((count, *config.image_shape), np.uint8), _Labels(source)
    for index, (where, example) in enumerate(_records(files)):
        if index == count:
            break
        image = _image(example, where)
        try:
            images[index] = folders.fit_image(image, config)
        except Exception as error:  # a header that read but pixels that do not (truncated, corrupt)
            raise DataError(f"{where}: its image cannot be decoded ({_one_line(error)})") from None
        labels.add(example, where)
    return images, labels.array()


def load_records(config: GANConfig) -> Data:
    """The records at config.image_shape: the held-out split is the first `holdout` records of
    `holdout_data` (or Split-eval), else `dataset.split` keeps it out of the training records."""
    train, held, held_source = _sources(config)
    images, labels = _decode(train, config, config.data)
    if held is None:
        return split(images, labels, config.holdout)
    held_images, held_labels = _decode(held, config, held_source, limit=config.holdout)
    data = Data(images, held_images, labels, held_labels if labels is not None else None)
    data.notes = (f"held-out images from {held_source}",)
    return data
