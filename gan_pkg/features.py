"""The feature space FID, KID and precision/recall are measured in, chosen by the data.

Distances between image distributions are only as meaningful as the features
they are measured in, and features only mean something for images like those
they were learnt on. So:

1. MNIST digits (`mnist-sample`, `mnist` at 28x28x1): the shipped MNIST
   classifier (gan_pkg.classifier), as always, so numbers stay comparable.
2. Other images, when InceptionV3's ImageNet weights are in Keras' cache: its
   2048-d pool features at 299x299, as the FID literature measures. Its classes
   are ImageNet's, so no classifier score or class shares are reported in it.
   `kind="inception"` also downloads the weights (Keras' own download).
3. Otherwise, labelled images: a "data classifier", the shipped classifier's
   recipe trained once on the data's own training split. It is kept in a
   per-user cache under the data's fingerprint, and copied into the caller's
   `store` (a run's workdir, an export's assets.extra), so every run and export
   of the same data is scored in the same space.
4. Unlabelled images with no Inception weights: no feature network at all;
   `FeatureSpaceUnavailable` says what would give one.

A space is only as good as its power to tell images apart, and a data classifier
trained on few or easy labels may have little: `check_space` asks whether it can tell
uniform noise and blurred real images from real ones, and evaluation runs it in every
space not vetted once and for all (the shipped classifier, InceptionV3's ImageNet weights).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from gan_pkg import files
from gan_pkg.classifier import (
    CLASSIFIER_EPOCHS,
    CLASSIFIER_SEED,
    FEATURE_DIM,
    Classifier,
    EvaluationError,
    fit_classifier,
    get_classifier,
    weights_record,
)
from gan_pkg.metrics import fid

KINDS = ("auto", "mnist", "inception", "data-classifier")  # what a caller may ask for
MNIST_DATA = ("mnist-sample", "mnist")  # the digits the shipped classifier was trained on

INCEPTION_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
INCEPTION_URL = "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/" + INCEPTION_FILE
INCEPTION_MD5 = "bcbd6486424b2319ff4ef7d526e38f63"  # keras.applications.inception_v3's check of that file
INCEPTION_SIZE = 299
INCEPTION_BATCH = 50  # 299x299 activations: bounded memory at any sample count

STORED_WEIGHTS = "feature_classifier.weights.h5"
STORED_RECORD = "feature_classifier.json"  # written last: its presence marks a complete copy
STORED_FILES = (STORED_WEIGHTS, STORED_RECORD)
# A data classifier trains about as many steps as the shipped one did, never more
# epochs than it: small data gets more passes, large data fewer.
DATA_CLASSIFIER_STEPS = 3000
TRAIN_BATCH = 64  # fit_classifier's batch
# check_space: images per degraded set (a small network reads them in moments), and the blur
# that real images get there: a few pixels, which any space worth reading must notice.
CHECK_IMAGES = 256
CHECK_BLUR_SIGMA = 1.5


class FeatureSpaceUnavailable(EvaluationError):
    """No feature network fits this data; the one-line message says what would give one."""


# =============================================================================
# Spaces
# =============================================================================
class FeatureSpace:
    """images [N, H, W, C] in [0, 1] -> (features float64 [N, D], class probabilities [N, K] or None).

    `num_classes` is K when the probabilities range over the data's own classes
    (so classifier score, class shares and label accuracy mean something), else 0.
    `vetted`: its power to tell images apart was established once (a test, the literature);
    other spaces are put through `check_space` at every evaluation."""

    name: str = ""
    kind: str = ""
    num_classes: int = 0
    vetted: bool = False

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def describe(self) -> dict:
        """A JSON-able record of the space, for evaluation.json and export metadata."""
        return {"kind": self.kind, "name": self.name, "num_classes": self.num_classes}


class ClassifierSpace(FeatureSpace):
    """The 128-unit `features` layer of a gan_pkg.classifier network, and its class probabilities."""

    def __init__(self, classifier: Classifier, kind: str, name: str, num_classes: int, record: dict | None = None,
                 vetted: bool = False):
        self.classifier, self.kind, self.name, self.num_classes = classifier, kind, name, int(num_classes)
        self.record, self.vetted = dict(record or {}), vetted

    def __call__(self, images):
        return self.classifier(images)

    def describe(self) -> dict:
        return {**super().describe(), "sha256": self.classifier.sha256, **self.record}


def is_mnist_digits(config) -> bool:
    """The data the shipped classifier knows: MNIST digits at their own 28x28x1."""
    return config.data in MNIST_DATA and tuple(config.image_shape) == (28, 28, 1)


def mnist_space() -> ClassifierSpace:
    # Vetted: a test holds its held-out accuracy to at least 97%.
    name = f"shipped MNIST classifier, {FEATURE_DIM}-unit penultimate layer"
    return ClassifierSpace(get_classifier(), "mnist-classifier", name, 10, vetted=True)


# -- InceptionV3 --------------------------------------------------------------
def keras_models_dir() -> Path:
    """Where keras.applications keeps downloaded weights: $KERAS_HOME/models, else
    ~/.keras/models (/tmp/.keras/models when the home folder is not writable), as
    Keras decides it. Read at each call, so a changed KERAS_HOME is seen."""
    if "KERAS_HOME" in os.environ:
        base = Path(os.path.expanduser(os.environ["KERAS_HOME"]))
    else:
        home = os.path.expanduser("~")
        base = Path(home if os.access(home, os.W_OK) else "/tmp") / ".keras"
    return base / "models"


def inception_weights_path() -> Path:
    return keras_models_dir() / INCEPTION_FILE


def _download_inception() -> Path:
    """Keras' own download into its cache (checked against Keras' hash). The folder is
    made first: Keras falls back to /tmp/.keras for one it cannot write to."""
    import keras

    keras_models_dir().mkdir(parents=True, exist_ok=True)
    return Path(keras.utils.get_file(INCEPTION_FILE, INCEPTION_URL, cache_subdir="models",
                                     cache_dir=str(keras_models_dir().parent), file_hash=INCEPTION_MD5))


def _inception_missing(reason: str) -> FeatureSpaceUnavailable:
    return FeatureSpaceUnavailable(
        f"InceptionV3's ImageNet weights {reason}: put {INCEPTION_FILE} (from {INCEPTION_URL}) at {inception_weights_path()}"
    )


class InceptionSpace(FeatureSpace):
    """InceptionV3's 2048-d average-pool features: images resized to 299x299
    (bilinear, as TF's and pytorch-fid's FID code do), grey tiled to RGB, scaled
    to [-1, 1] (Inception's preprocessing). `weights`: a weights file, or None
    for random weights (the same network, for testing the plumbing offline)."""

    kind = "inception"
    num_classes = 0

    def __init__(self, weights: str | os.PathLike | None):
        import tensorflow as tf

        from gan_pkg import runtime

        with runtime.dtype_policy("float32"):  # features must not depend on a run's mixed precision
            import keras

            self.model = keras.applications.InceptionV3(
                include_top=False, pooling="avg", weights=None if weights is None else str(weights),
                input_shape=(INCEPTION_SIZE, INCEPTION_SIZE, 3),
            )
        self.sha256 = None if weights is None else hashlib.sha256(Path(weights).read_bytes()).hexdigest()
        self.vetted = weights is not None  # ImageNet's features are the FID literature's; random ones are not
        which = "ImageNet" if weights is not None else "random weights"
        self.name = f"InceptionV3 ({which}) pool features, 2048-d, resized to {INCEPTION_SIZE}x{INCEPTION_SIZE}"
        self._call = tf.function(
            lambda x: self.model(self._inputs(x), training=False),
            input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)],
        )

    @staticmethod
    def _inputs(images):
        import tensorflow as tf

        resized = tf.image.resize(images, (INCEPTION_SIZE, INCEPTION_SIZE), method="bilinear")
        return resized * 2.0 - 1.0

    @staticmethod
    def _rgb(images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, np.float32)
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise EvaluationError(f"InceptionV3 reads [N, H, W, 1 or 3] images in [0, 1]; got samples of shape {images.shape}")
        return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images

    def inputs(self, images: np.ndarray) -> np.ndarray:
        """What the network sees: [N, 299, 299, 3] in [-1, 1]."""
        return self._inputs(self._rgb(images)).numpy()

    def __call__(self, images):
        images = self._rgb(images)
        feats = [self._call(images[i : i + INCEPTION_BATCH]).numpy() for i in range(0, len(images), INCEPTION_BATCH)]
        return np.concatenate(feats).astype(np.float64), None

    def describe(self) -> dict:
        return {**super().describe(), "weights": INCEPTION_FILE, "sha256": self.sha256}


_INCEPTION: dict[str, InceptionSpace] = {}  # one 22M-parameter network per process, not per evaluation


def inception_space(download: bool = False) -> InceptionSpace:
    """InceptionV3 from Keras' cache; `download` fetches it there first when missing."""
    path = inception_weights_path()
    if not path.is_file():
        if not download:
            raise _inception_missing("are not in Keras' cache")
        try:
            path = _download_inception()
        except Exception as error:  # offline, proxy, hash mismatch: all say the same thing to do
            raise _inception_missing(f"are not in Keras' cache and could not be downloaded ({type(error).__name__})") from None
    if str(path) not in _INCEPTION:
        _INCEPTION[str(path)] = InceptionSpace(path)
    return _INCEPTION[str(path)]


# -- the data classifier ----------------------------------------------------------
def data_fingerprint(data) -> str:
    """sha256 over the training and held-out arrays (dtype, shape, bytes) and their
    labels: the identity of the data a data classifier was trained on."""
    digest = hashlib.sha256(b"gan_pkg data fingerprint 1\n")
    for name in ("train", "holdout", "train_labels", "holdout_labels"):
        array = getattr(data, name)
        if array is None:
            digest.update(f"{name} none\n".encode())
            continue
        array = np.ascontiguousarray(array if "labels" not in name else np.asarray(array, np.int64).reshape(-1))
        digest.update(f"{name} {array.dtype.str} {array.shape}\n".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def data_classes(config, data) -> int:
    """Classes a data classifier would learn: the labels' range (at least the
    conditional classes); 0 when the training split has no labels or one class."""
    if data is None or data.train_labels is None or not np.size(data.train_labels):
        return 0
    found = [np.max(data.train_labels)] + ([np.max(data.holdout_labels)] if data.holdout_labels is not None and np.size(data.holdout_labels) else [])
    classes = max(int(config.num_classes), int(max(found)) + 1)
    return classes if classes >= 2 else 0


def default_epochs(train_examples: int) -> int:
    steps_per_epoch = max(1, math.ceil(train_examples / TRAIN_BATCH))
    return int(min(CLASSIFIER_EPOCHS, max(1, math.ceil(DATA_CLASSIFIER_STEPS / steps_per_epoch))))


def user_cache_dir() -> Path:
    """Per-user cache of data classifiers: $XDG_CACHE_HOME (default ~/.cache)/gan_pkg/feature_classifiers."""
    return files.cache_dir("feature_classifiers")


def _read_record(folder: Path | None) -> dict | None:
    """A folder's data-classifier record, or None when it holds no complete one."""
    if folder is None or not (Path(folder) / STORED_WEIGHTS).is_file():
        return None
    try:
        return json.loads((Path(folder) / STORED_RECORD).read_text())
    except (OSError, ValueError):
        return None


def _data_classifier_name(record: dict) -> str:
    accuracy = record.get("heldout_accuracy")
    scored = f"held-out accuracy {accuracy:.3f}" if accuracy is not None else "no held-out labels"
    return (
        f"classifier trained on this data's labelled training split ({record['classes']} classes, {scored}), "
        f"{FEATURE_DIM}-unit penultimate layer"
    )


_DATA_CLASSIFIERS: dict[str, ClassifierSpace] = {}  # by weights sha256: each copy is loaded (and traced) once per process


def _load_data_classifier(folder: Path, record: dict) -> ClassifierSpace:
    weights = Path(folder) / STORED_WEIGHTS
    sha256 = hashlib.sha256(weights.read_bytes()).hexdigest()
    if sha256 != record.get("weights_sha256"):
        raise FeatureSpaceUnavailable(f"{weights}: does not match its record {STORED_RECORD} (damaged or replaced); delete both to retrain")
    if sha256 not in _DATA_CLASSIFIERS:
        classifier = Classifier(weights, tuple(record["image_shape"]), record["classes"], "data_classifier")
        keep = ("fingerprint", "classes", "image_shape", "heldout_accuracy", "train_examples", "seed", "epochs")
        _DATA_CLASSIFIERS[sha256] = ClassifierSpace(
            classifier, "data-classifier", _data_classifier_name(record), record["classes"], {k: record.get(k) for k in keep}
        )
    return _DATA_CLASSIFIERS[sha256]


def _train_data_classifier(config, data, classes: int, epochs: int, fingerprint: str, folder: Path) -> dict:
    """Train on the training split (held-out only scores it) and write weights, then record, into `folder`."""
    scale = lambda x: np.asarray(x, np.float32) / 255.0  # noqa: E731
    from gan_pkg.folders import memory_budget

    # As many training images as fit in memory as floats (a streamed folder may not; its order is shuffled).
    keep = max(1, min(len(data.train), memory_budget() // (4 * math.prod(data.train.shape[1:]))))
    classifier, info = fit_classifier(
        scale(data.train[:keep]), np.asarray(data.train_labels)[:keep], scale(data.holdout), data.holdout_labels,
        classes, epochs, CLASSIFIER_SEED, name="data_classifier", refresh_statistics=True,
        verbose=1 if sys.stdout.isatty() else 2,  # a live bar on a terminal, a line per epoch in logs
    )
    folder.mkdir(parents=True, exist_ok=True)
    classifier.save_weights(str(folder / STORED_WEIGHTS))
    record = {
        "fingerprint": fingerprint,
        "data": config.data,
        "image_shape": [int(n) for n in data.train.shape[1:]],
        "classes": classes,
        "class_names": list(getattr(data, "class_names", ()) or ()),
        **info,
        **weights_record(folder / STORED_WEIGHTS),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    files.write_json(folder / STORED_RECORD, record)
    return record


def _copy_classifier(source: Path, target: Path) -> None:
    """Each file replaced atomically, the record last (its sha256 of the weights tells a
    reader that caught the two files mid-copy)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in STORED_FILES:
        with files.atomic_path(target / name) as temporary:
            shutil.copyfile(source / name, temporary)


def _cached_or_trained(config, data, classes: int, epochs: int | None, fingerprint: str, log) -> tuple[Path, dict]:
    """The user cache's classifier for this fingerprint, trained into it first when missing.
    A cache that cannot be written still gets the classifier trained (in a temporary folder)."""
    cached = user_cache_dir() / fingerprint
    record = _read_record(cached)
    if record is not None and record.get("fingerprint") == fingerprint:
        return cached, record
    epochs = epochs or default_epochs(len(data.train))
    log(
        f"training a feature classifier on the {len(data.train)} labelled training images of {config.data} "
        f"({classes} classes, {epochs} epochs); FID is measured in its features (kept in {cached})"
    )
    scratch = Path(tempfile.mkdtemp(prefix=f"{files.TEMPORARY_PREFIX}classifier-"))
    try:
        record = _train_data_classifier(config, data, classes, epochs, fingerprint, scratch)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    try:
        _copy_classifier(scratch, cached)
    except OSError as error:
        log(f"{cached}: cannot keep the feature classifier there ({error}); it lives in {scratch} for now")
        return scratch, record
    shutil.rmtree(scratch, ignore_errors=True)
    return cached, record


def data_classifier_space(config, data, store: Path | None = None, log=print, epochs: int | None = None,
                          store_readonly: bool = False) -> ClassifierSpace:
    """The data classifier for `data`: `store`'s when its fingerprint matches, else the
    user cache's, else one trained now; `store` then gets a copy. A classifier for other
    data in `store` is replaced (one line says so) or, when `store_readonly` (an
    export, whose recorded evaluation was measured in it), refused."""
    classes = data_classes(config, data)
    if not classes:
        raise FeatureSpaceUnavailable(
            f"{config.data}: a data classifier needs labels of at least 2 classes; give the data labels "
            "(one subfolder per class, or y_train in an .npz)"
        )
    fingerprint = data_fingerprint(data)
    store = None if store is None else Path(store)
    stored = _read_record(store)
    if stored is not None and stored.get("fingerprint") == fingerprint:
        return _load_data_classifier(store, stored)
    if stored is not None:
        other = f"its feature classifier was trained on other data ({stored.get('data')}, fingerprint {str(stored.get('fingerprint'))[:12]}; this data's is {fingerprint[:12]})"
        if store_readonly:
            raise FeatureSpaceUnavailable(f"{store}: {other}; evaluate it on that data, or remove {' and '.join(STORED_FILES)} there to score it afresh")
        log(f"{store}: {other}; replacing it with this data's")
    folder, record = _cached_or_trained(config, data, classes, epochs, fingerprint, log)
    if store is not None:
        try:
            _copy_classifier(folder, store)
        except OSError as error:
            log(f"{store}: cannot copy the feature classifier there ({error}); it stays in {folder}")
    return _load_data_classifier(folder, record)


# =============================================================================
# Checking
# =============================================================================
def blurred(images: np.ndarray, sigma: float = CHECK_BLUR_SIGMA) -> np.ndarray:
    """Each image [N, H, W, C] blurred by a Gaussian of `sigma` px, channel by channel."""
    from scipy import ndimage

    return ndimage.gaussian_filter(np.asarray(images, np.float32), sigma=(0, sigma, sigma, 0))


def check_space(space: FeatureSpace, reference_feats: np.ndarray, holdout: np.ndarray, real: np.ndarray,
                seed: int = 0) -> dict:
    """Whether `space` tells degraded images from real ones: the FID to `reference_feats` (the
    space's features of `holdout`) of uniform noise and of the held-out images blurred must both
    be worse than that of as many `real` training images. All sets are CHECK_IMAGES images at
    most and equally many, so FID's small-sample bias is the same in each. Images float in [0, 1].

    Returns the FID of real images, that of each degraded set by name, the names that failed,
    and `too_weak`: whether any did (then the space's figures cannot judge samples)."""
    count = min(CHECK_IMAGES, len(holdout), len(real))
    distance = lambda images: fid(space(images)[0], reference_feats)  # noqa: E731
    degraded = {
        "uniform noise": np.random.default_rng(seed).random((count, *holdout.shape[1:]), dtype=np.float32),
        f"held-out images blurred by {CHECK_BLUR_SIGMA} px": blurred(holdout[:count]),
    }
    real_fid = distance(real[:count])
    degraded_fid = {name: distance(images) for name, images in degraded.items()}
    failed = [name for name, value in degraded_fid.items() if not value > real_fid]
    return {
        "images": count, "real_fid": real_fid, "degraded_fid": degraded_fid,
        "heldout_accuracy": space.describe().get("heldout_accuracy"), "failed": failed, "too_weak": bool(failed),
    }


# =============================================================================
# Choosing
# =============================================================================
def no_features_message() -> str:
    return (
        f"no feature network for unlabelled data: put InceptionV3's ImageNet weights at {inception_weights_path()} "
        f"(from {INCEPTION_URL}) or give the data labels (one subfolder per class)"
    )


def feature_space(config, data, store: Path | None = None, log=print, kind: str = "auto", epochs: int | None = None,
                  store_readonly: bool = False) -> FeatureSpace:
    """The space `config`'s images are scored in (see the module docstring for the order).

    `kind`: "auto" chooses; "mnist", "inception" (downloading its weights when missing)
    or "data-classifier" insist. `data` (gan_pkg.data.Data) is read only by the data
    classifier, and loaded from `config` when None. `store`, `epochs`, `store_readonly`:
    see `data_classifier_space`. Training one seeds Keras' global random generators,
    so choose the space before building models that should not depend on that.
    Raises FeatureSpaceUnavailable (one line) when no space fits."""
    if kind not in KINDS:
        raise ValueError(f"features must be one of {', '.join(KINDS)}, got {kind!r}")
    if not config.is_image:
        raise ValueError(f"feature spaces read images; preset {config.preset!r} makes 1-D samples")
    if kind == "mnist" or (kind == "auto" and is_mnist_digits(config)):
        return mnist_space()
    if kind == "inception" or (kind == "auto" and inception_weights_path().is_file()):
        return inception_space(download=kind == "inception")
    if data is None:
        from gan_pkg import data as data_lib

        data = data_lib.load(config)
    if kind == "auto" and not data_classes(config, data):
        raise FeatureSpaceUnavailable(no_features_message())
    return data_classifier_space(config, data, store, log, epochs, store_readonly)
