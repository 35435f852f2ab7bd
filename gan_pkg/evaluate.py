"""Evaluate a generator: sample it, score it, report it beside the real floor.

FID / KID / classifier score / precision-recall / mode coverage in a feature
space; SWD (gan_pkg.swd) and, for RGB, chroma and colour-histogram figures on the
pixels themselves; memorization (and mean, std, KS for the 1-D preset). A
conditional generator is asked for every class equally often and also gets, per
class, the feature classifier's accuracy on its images (TF-GAN's conditional
eval) and the intra-class FID against the held-out images of that class.

Every figure is measured against the fixed held-out real set and printed
beside the same figure for real training images (the real-vs-real floor): a
generator cannot be expected to beat real data, so the floor is what "perfect"
looks like at this sample size.

Features come from the space gan_pkg.features chooses for the data: for MNIST
digits a small classifier shipped with the package
(`assets/mnist_classifier.weights.h5`, trained once by
`python -m gan_pkg.evaluate --train-classifier` and never retrained implicitly,
so numbers stay comparable between runs and versions); for other images
InceptionV3 when its weights are cached, else a classifier trained once on the
data's own labels, which is first checked for telling noise and blurred images
from real ones (gan_pkg.features.check_space). Classifier score and class shares
are reported only where the space's classes are the data's. With no feature
network at all (unlabelled images, no InceptionV3) the pixels' figures and
memorization are measured. gan_pkg.report lays the result out as tables.

CLI:
    python -m gan_pkg.evaluate --export export/gan [--version N] [--features KIND]
    python -m gan_pkg.evaluate --workdir runs/dcgan [--features KIND]
    python -m gan_pkg.evaluate --train-classifier
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from gan_pkg import contract, files
from gan_pkg.cli import ArgumentParser, import_tensorflow_quietly
from gan_pkg.classifier import (  # noqa: F401  (re-exported: the evaluator's public surface)
    BATCH,
    CLASSIFIER_INFO,
    CLASSIFIER_WEIGHTS,
    FEATURE_DIM,
    Classifier,
    ClassifierMissing,
    EvaluationError,
    classifier_data,
    get_classifier,
    train_classifier,
)
from gan_pkg.features import KINDS, FeatureSpace, FeatureSpaceUnavailable, check_space, feature_space, is_mnist_digits
from gan_pkg.metrics import (  # noqa: F401
    KID_SUBSET_SIZE,
    KID_SUBSETS,
    NORMAL1D_MEAN,
    NORMAL1D_STD,
    PR_K,
    classifier_score,
    colour_figures,
    distribution_stats,
    fid,
    frechet_distance,
    kid,
    mean_chroma,
    memorization,
    mode_coverage,
    nearest_l1,
    precision_recall,
)
from gan_pkg.report import ROWS, check_line, features_line, format_markdown, format_table, table_rows  # noqa: F401
from gan_pkg.swd import resolutions as swd_resolutions
from gan_pkg.swd import swd

DEFAULT_NUM_SAMPLES = 2000
MEMORIZATION_QUANTILE = 0.05  # share of held-out images closer to train than the threshold


# =============================================================================
# Evaluating a generator
# =============================================================================
# seeds [N] (and, for a conditional config, labels [N]) -> samples [N, ...]
SampleFn = Callable[..., np.ndarray]


def sample_seeds(num_samples: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**62, num_samples, dtype=np.int64)


def sample_labels(num_samples: int, num_classes: int) -> np.ndarray:
    """The classes asked of a conditional generator: each class equally often."""
    return np.arange(num_samples, dtype=np.int64) % num_classes


def keras_sample_fn(generator, config, batch_size: int = BATCH) -> SampleFn:
    """seeds -> samples from a keras generator, drawing each row's noise exactly
    as the exported `generate` signature does (so checkpoint and export agree)."""
    import tensorflow as tf

    from gan_pkg.data import to_unit_range
    from gan_pkg.gan import latent_for_seeds

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.int64)])
    def run(seeds, labels):
        noise = latent_for_seeds(seeds, config.latent_dim, config.latent_distribution, config.latent_range)
        inputs = [noise, tf.cast(labels, tf.int32)] if config.classes.generator_takes_label else noise
        return tf.cast(to_unit_range(generator(inputs, training=False), config.output_range), tf.float32)

    def sample(seeds: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        seeds = np.asarray(seeds, np.int64)
        labels = np.zeros_like(seeds) if labels is None else np.asarray(labels, np.int64)
        return np.concatenate([run(seeds[i : i + batch_size], labels[i : i + batch_size]).numpy() for i in range(0, len(seeds), batch_size)])

    return sample


def export_sample_fn(version_dir: Path, batch_size: int = BATCH) -> SampleFn:
    """seeds -> samples from an export's `generate` signature, loaded the way TF
    Serving loads it (gan_pkg.session_loader): what is scored is what is served."""
    import tensorflow as tf

    from gan_pkg.export import read_metadata
    from gan_pkg.session_loader import SessionModel, summary

    key = read_metadata(version_dir).get("output_key", contract.IMAGES)

    def refused(error):
        return EvaluationError(f"{version_dir}: TF Serving's loader cannot run this export: {summary(error)}")

    try:
        model = SessionModel(version_dir)
    except tf.errors.OpError as error:
        raise refused(error) from None

    def inputs(seeds, labels, rows):
        found = {contract.SEED: seeds[rows]}
        if labels is not None:
            found[contract.LABEL] = np.asarray(labels, np.int64)[rows]
        return found

    def sample(seeds: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        seeds = np.asarray(seeds, np.int64)
        try:
            chunks = [
                model.run(contract.GENERATE, inputs(seeds, labels, slice(i, i + batch_size)))[key]
                for i in range(0, len(seeds), batch_size)
            ]
        except tf.errors.OpError as error:
            raise refused(error) from None
        return np.concatenate(chunks).astype(np.float32)

    return sample


def _class_figures(feats, probs, labels, ref_feats, ref_labels) -> dict:
    """A conditional generator's own figures: per class asked for, the share the feature
    classifier puts in that class (TF-GAN's conditional eval; only when `probs` range over
    the data's classes) and the intra-class FID against the held-out images of that class."""
    classes = np.unique(labels)
    figures = {}
    if probs is not None:
        accuracy = [float((probs[labels == c].argmax(axis=1) == c).mean()) for c in classes]
        figures.update(
            label_accuracy=float(np.mean(accuracy)),
            label_accuracy_min=float(np.min(accuracy)),
            label_accuracy_by_class=accuracy,
        )
    if ref_labels is not None:
        intra = [fid(feats[labels == c], ref_feats[ref_labels == c]) for c in classes if (ref_labels == c).sum() > 1]
        figures["intra_fid"] = float(np.mean(intra)) if intra else float("nan")
    return figures


def _feature_figures(feats, probs, ref_feats, labels=None, ref_labels=None, kid_rng=0) -> dict:
    """Figures measured in a feature space; those reading class probabilities only
    when `probs` range over the data's classes (None otherwise)."""
    kid_mean, kid_se = kid(feats, ref_feats, rng=kid_rng)
    precision, recall = precision_recall(ref_feats, feats)
    figures = {"fid": fid(feats, ref_feats), "kid": kid_mean, "kid_se": kid_se, "precision": precision, "recall": recall}
    if probs is not None:
        coverage = mode_coverage(probs)
        figures.update(classifier_score=classifier_score(probs), modes_covered=coverage["covered"], class_histogram=coverage["histogram"])
    if labels is not None:
        figures.update(_class_figures(feats, probs, np.asarray(labels), ref_feats, ref_labels))
    return figures


@dataclasses.dataclass
class Reference:
    """The held-out set every image figure is measured against, and what is read off it once."""

    images: np.ndarray  # float in [0, 1]
    feats: np.ndarray | None  # in the feature space; None without one
    labels: np.ndarray | None  # a conditional evaluation's, for intra-class FID
    chroma: float | None  # mean CIELAB chroma; None for grey images

    @classmethod
    def of(cls, images: np.ndarray, space, labels=None) -> Reference:
        rgb = images.shape[-1] == 3
        return cls(images, None if space is None else space(images)[0], labels, mean_chroma(images) if rgb else None)


def pixel_figures(images: np.ndarray, reference: Reference, seed: int = 0) -> dict:
    """Figures read off the pixels, needing no network: SWD against the reference (per level too)
    and, for RGB images, the colour figures (gan_pkg.metrics.colour_figures)."""
    figures = swd(images, reference.images, seed=seed)
    del figures["swd_resolutions"]  # the same for every set: the result's, once
    if reference.chroma is not None:
        figures.update(colour_figures(images, reference.images, reference.chroma))
    return figures


def _image_figures(images, reference: Reference, train_images, space, threshold, seed, labels=None) -> dict:
    """Every figure for one image set: those of `space` (None: no feature network), the pixels' and memorization."""
    figures = {}
    if space is not None:
        feats, probs = space(images)
        probs = probs if space.num_classes else None
        figures.update(_feature_figures(feats, probs, reference.feats, labels, reference.labels, seed))
    figures.update(pixel_figures(images, reference, seed))
    if train_images is not None:
        figures.update(memorization(images, train_images, threshold))
    return figures


def choose_features(config, data, features=None, store: Path | None = None, log=print, store_readonly: bool = False):
    """(space, None), or (None, why) when `features` is None / "auto" and no space fits
    the data: then the pixels' figures and memorization are measured. `features`: a FeatureSpace, None /
    "auto" to choose, or a kind (gan_pkg.features.KINDS) to insist on (its absence is
    an error). `store`: where a data classifier is kept (gan_pkg.features)."""
    if isinstance(features, FeatureSpace):
        return features, None
    kind = features or "auto"
    try:
        return feature_space(config, data, store=store, log=log, kind=kind, store_readonly=store_readonly), None
    except FeatureSpaceUnavailable as error:
        if kind != "auto":
            raise
        return None, str(error)


def evaluate_generator(
    sample_fn: SampleFn,
    config,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    seed: int = 0,
    data=None,
    features=None,
    *,
    store: Path | None = None,
    store_readonly: bool = False,
    log=print,
) -> dict:
    """All figures for `num_samples` generated samples vs the held-out real set,
    each beside the real-vs-real floor (an equal number of training images, or
    fresh N(4, 1.25) draws for dist1d, vs the same held-out set).

    Image figures are measured in `features` (see `choose_features`; `store`,
    `store_readonly` and `log` go with it). Without any feature space the result
    has `feature_space` None, the reason in `features_missing`, and the figures that need
    none: SWD, colour (RGB) and memorization. A space not vetted (gan_pkg.features) is
    checked first; `feature_check` says whether it can tell degraded images from real ones."""
    from gan_pkg import data as data_lib

    started = time.monotonic()
    data = data if data is not None else data_lib.load(config)
    if config.is_image:  # before sampling: a space that must be trained or fetched fails first
        space, missing = choose_features(config, data, features, store, log, store_readonly)
    seeds = sample_seeds(num_samples, seed)
    classes = config.classes.label_input_classes
    labels = sample_labels(num_samples, classes) if classes else None
    samples = np.asarray(sample_fn(seeds) if labels is None else sample_fn(seeds, labels), np.float32)
    if not np.isfinite(samples).all():
        raise EvaluationError("the generator produced non-finite values (NaN or inf); its weights have diverged")
    result = {"preset": config.preset, "data": config.data, "num_samples": int(num_samples), "seed": int(seed)}

    if not config.is_image:
        floor = np.random.default_rng(seed + 1).normal(NORMAL1D_MEAN, NORMAL1D_STD, samples.shape)
        result.update(
            reference=f"N({NORMAL1D_MEAN}, {NORMAL1D_STD}); floor: {num_samples} fresh draws of it",
            generated=distribution_stats(samples),
            real_floor=distribution_stats(floor),
            holdout=distribution_stats(data.holdout),
        )
    else:
        result.update(_image_evaluation(samples, data, space, num_samples, seed, labels))
        if missing is not None:
            result["features_missing"] = missing
        if labels is not None:
            result["num_classes"] = config.num_classes
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def _image_evaluation(samples, data, space, num_samples, seed, labels) -> dict:
    """The image branch of evaluate_generator: the reference, the space's check, floor, memorization."""
    holdout = data.holdout.astype(np.float32) / 255.0
    train = data.train  # uint8, possibly memory-mapped (a large folder): scaled chunk by chunk where read whole
    floor_images = np.asarray(train[:num_samples], np.float32) / 255.0
    # Conditional: the floor asks the classifier about real images and their true labels.
    floor_labels = None if labels is None else np.asarray(data.train_labels)[:num_samples]
    holdout_labels = None if labels is None or data.holdout_labels is None else np.asarray(data.holdout_labels)
    # Held-out images vs the training set: how close real, unseen data comes.
    real_nn = nearest_l1(holdout, train)
    threshold = float(np.quantile(real_nn, MEMORIZATION_QUANTILE))
    reference = Reference.of(holdout, space, holdout_labels)
    result = {
        "reference": f"held-out split ({len(holdout)} images); floor: {len(floor_images)} training images",
        "feature_space": None if space is None else space.name,
        "features": None if space is None else space.describe(),
    }
    if space is not None:
        if space.kind == "mnist-classifier":
            result["classifier_sha256"] = space.classifier.sha256  # as evaluations before gan_pkg.features recorded it
        if not space.vetted:
            result["feature_check"] = check_space(space, reference.feats, holdout, floor_images, seed)
        result.update(kid_subsets=KID_SUBSETS, kid_subset_size=min(KID_SUBSET_SIZE, num_samples, len(holdout)), pr_k=PR_K)
    result.update(
        swd_resolutions=swd_resolutions(*holdout.shape[1:3]),
        memorization_threshold=threshold,
        generated=_image_figures(samples, reference, train, space, threshold, seed, labels),
        real_floor=_image_figures(floor_images, reference, None, space, threshold, seed, floor_labels),
    )
    # Memorization's floor is the held-out set itself (training images are
    # trivially at distance 0 from themselves).
    result["real_floor"].update(
        {"nn_l1_min": float(real_nn.min()), "nn_l1_mean": float(real_nn.mean()), "nn_l1_below_real": float((real_nn < threshold).mean())}
    )
    return result


# =============================================================================
# CLI
# =============================================================================
def evaluate_export(version_dir: Path, num_samples: int, seed: int, features=None) -> dict:
    """An export scored in the space its assets.extra holds (a data classifier the exporter
    copied there is used, never replaced: the export's recorded evaluation was measured in it)."""
    from gan_pkg.config import GANConfig
    from gan_pkg.export import read_metadata

    config = GANConfig.from_dict(read_metadata(version_dir)["config"])
    store = Path(version_dir) / contract.ASSETS_EXTRA
    return evaluate_generator(export_sample_fn(version_dir), config, num_samples, seed, features=features, store=store, store_readonly=True)


def evaluate_workdir(workdir: Path, num_samples: int, seed: int, features=None) -> tuple[dict, Path]:
    from gan_pkg.runs import load_run

    if not workdir.is_dir():
        raise EvaluationError(f"{workdir}: no such workdir")
    config, model, checkpoint = load_run(workdir)
    sample_fn = keras_sample_fn(model.inference_generator, config)
    result = evaluate_generator(sample_fn, config, num_samples, seed, features=features, store=Path(workdir))
    result["training_step"] = int(model.g_optimizer.iterations.numpy())
    return result, checkpoint


def _source_config(args):
    """The config of what is to be evaluated, read cheaply; None when it cannot be read
    yet (the evaluation itself then reports why)."""
    from gan_pkg import export, runs
    from gan_pkg.config import GANConfig

    try:
        if args.export is not None:
            return GANConfig.from_dict(export.read_metadata(export.resolve_version(args.export, args.version))["config"])
        return runs.saved_config(args.workdir)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _uses_mnist_classifier(kind: str, config) -> bool:
    """Whether the shipped classifier will be asked for; an unreadable source is taken
    to be the default MNIST one."""
    return kind == "mnist" or (kind == "auto" and (config is None or (config.is_image and is_mnist_digits(config))))


def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m gan_pkg.evaluate", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--export", type=Path, help="<export-base>/<model-name>, e.g. export/gan (evaluates its latest version)")
    source.add_argument("--workdir", type=Path, help="a gan_pkg.fit run directory (evaluates its latest checkpoint)")
    source.add_argument("--train-classifier", action="store_true", help="(re)train the shipped feature classifier")
    parser.add_argument("--version", type=int, help="with --export: this version instead of the latest")
    parser.add_argument("--num-samples", type=int, default=DEFAULT_NUM_SAMPLES, help="default: %(default)s")
    parser.add_argument("--seed", type=int, default=0, help="seeds of the generated samples (default: %(default)s)")
    parser.add_argument(
        "--features", choices=KINDS, default="auto",
        help="feature space: auto (MNIST digits: the shipped classifier; other images: InceptionV3 if cached, else "
        "a classifier trained on the data's labels), or insist on one; inception downloads its weights if needed",
    )
    args = parser.parse_args(argv)
    if args.version is not None and args.export is None:
        parser.error("--version goes with --export")
    if args.num_samples < 10:
        parser.error("--num-samples must be at least 10")
    import_tensorflow_quietly()

    try:
        if args.train_classifier:
            info = train_classifier()
            print(json.dumps(info, indent=2))
            print(f"wrote {CLASSIFIER_WEIGHTS} and {CLASSIFIER_INFO}")
            if info["heldout_accuracy"] < 0.97:
                print(f"error: held-out accuracy {info['heldout_accuracy']:.4f} is below 0.97", file=sys.stderr)
                return 1
            return 0
        if _uses_mnist_classifier(args.features, _source_config(args)):
            get_classifier()  # missing weights: fail before loading anything heavy
        if args.export is not None:
            from gan_pkg import export

            version_dir = export.resolve_version(args.export, args.version)
            result = evaluate_export(version_dir, args.num_samples, args.seed, args.features)
            result["source"] = str(version_dir)
            report_dir = version_dir / contract.ASSETS_EXTRA
            written = [export.record_evaluation(version_dir, result)]
        else:
            result, checkpoint = evaluate_workdir(args.workdir, args.num_samples, args.seed, args.features)
            result["source"] = str(checkpoint)
            report_dir = args.workdir
            written = []
    except (EvaluationError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    files.write_json(report_dir / "evaluation.json", result)
    files.write_text(report_dir / "evaluation.md", format_markdown(result, result["source"]))
    written += [report_dir / "evaluation.json", report_dir / "evaluation.md"]
    print(f"{result['source']}: {result['num_samples']} samples vs {result['reference']} ({result['seconds']}s)")
    print(format_table(result))
    print("wrote " + ", ".join(map(str, written)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
