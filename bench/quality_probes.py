"""The probes bench/time_to_quality.py measures a generator with, between stretches of training.

Two kinds: `FIDProbe`, the MNIST sample's fixed probe (the shipped digit classifier, fixed
noise: the FIDs earlier MNIST curves were drawn with), and `DataProbe`, any other data in its
own feature space (gan_pkg.evaluate's choice: Inception where its weights are cached, else a
classifier trained on the data's labels), sampled as `python -m gan_pkg.evaluate` samples. Each
probe's `measure` gives RECORDED's figures, measured as gan_pkg.evaluate measures them.
"""

from __future__ import annotations

import numpy as np

from gan_pkg import evaluate
from gan_pkg import features as features_lib
from gan_pkg.gan import sample_latent

TARGETS = (20.0, 10.0, 5.0, 3.0)  # FID targets in the shipped MNIST classifier's space
FLOOR_MULTIPLES = (8.0, 4.0, 2.0)  # other spaces' default targets: these multiples of the real floor's FID
PROBE_SEED = 0  # a data-space probe's samples: those `python -m gan_pkg.evaluate` scores by default
# What a probe keeps of the figures gan_pkg.evaluate measures, when present, in this order.
RECORDED = ("fid", "swd", "precision", "recall", "chroma_ratio", "colour_distance")
LABELS = {"fid": "FID", "swd": "SWD", "precision": "precision", "recall": "recall",
          "chroma_ratio": "chroma ratio", "colour_distance": "colour distance"}


def pixel_reference(holdout: np.ndarray):
    """gan_pkg.evaluate's reference for the pixels' figures (SWD; colour for RGB) of
    `holdout` (float in [0, 1]), or None where this gan_pkg has no such figures."""
    if not (hasattr(evaluate, "pixel_figures") and hasattr(evaluate, "Reference")):
        return None
    return evaluate.Reference.of(holdout, None)


class Probe:
    """Samples a generator and measures them against the held-out images: `figures(generator,
    config)` gives RECORDED's figures, measured as gan_pkg.evaluate measures them (the feature
    space's FID, precision and recall; the pixels' SWD and colour figures); `probe(generator)`
    (calling it) gives FID alone. `space`: images [N, H, W, C] in [0, 1] -> (features, probabilities)."""

    def __init__(self, space, holdout: np.ndarray, seed: int = PROBE_SEED):
        holdout = np.asarray(holdout, np.float32) / 255.0
        self.space, self.seed, self.holdout = space, seed, holdout
        self.reference, _ = space(holdout)
        self.pixels = pixel_reference(holdout)
        self.last_images = None  # the last measured samples (time_to_quality --grids draws them)

    def samples(self, generator, config=None) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, generator, config=None) -> float:
        feats, _ = self.space(self.samples(generator, config))
        return evaluate.fid(feats, self.reference)

    def figures(self, generator, config=None) -> dict:
        return self.measure(self.samples(generator, config))

    def measure(self, images: np.ndarray) -> dict:
        """RECORDED's figures of `images` (float in [0, 1]) that this gan_pkg measures."""
        self.last_images = images
        feats, _ = self.space(images)
        figures = {"fid": evaluate.fid(feats, self.reference)}
        if min(len(feats), len(self.reference)) > evaluate.PR_K:
            figures["precision"], figures["recall"] = evaluate.precision_recall(self.reference, feats)
        if self.pixels is not None:
            figures.update(evaluate.pixel_figures(images, self.pixels, self.seed))
        return {key: float(figures[key]) for key in RECORDED if key in figures}


class FIDProbe(Probe):
    """MNIST digits in the shipped classifier's space, sampled as this script always has
    (fixed noise through `generator.predict`, tanh output mapped to [0, 1]): its FID stays
    comparable with earlier runs. fid_by_steps.py probes through it too."""

    def __init__(self, config, holdout, num_samples):
        self.classifier = evaluate.get_classifier()
        super().__init__(self.classifier, holdout)
        self.noise = sample_latent((num_samples, config.latent_dim), [123, 0], config.latent_distribution, config.latent_range)

    def samples(self, generator, config=None) -> np.ndarray:
        images = (np.asarray(generator.predict(self.noise, batch_size=250, verbose=0), np.float32) + 1.0) / 2.0
        return np.clip(images, 0.0, 1.0)


class DataProbe(Probe):
    """Any images in `space` (gan_pkg.features' choice for the data): each contender's
    generator sampled through gan_pkg.evaluate.keras_sample_fn from evaluate's seeds
    (`seed`), a label-taking one asked for every class equally often, as evaluate asks."""

    def __init__(self, space, data, num_samples: int, seed: int = PROBE_SEED):
        super().__init__(space, data.holdout, seed)
        self.seeds = evaluate.sample_seeds(num_samples, seed)
        self._sampler = (None, None, None)

    def samples(self, generator, config=None) -> np.ndarray:
        if config is None:
            raise ValueError("a data probe samples through the contender's config: probe.figures(generator, config)")
        kept, kept_config, sample = self._sampler
        if kept is not generator or kept_config != config:  # one traced sampler per generator, not per probe
            sample = evaluate.keras_sample_fn(generator, config)
            self._sampler = (generator, config, sample)
        classes = config.classes.label_input_classes
        labels = evaluate.sample_labels(len(self.seeds), classes) if classes else None
        images = np.asarray(sample(self.seeds) if labels is None else sample(self.seeds, labels), np.float32)
        if not np.isfinite(images).all():
            raise evaluate.EvaluationError("the generator produced non-finite values (NaN or inf); its weights have diverged")
        return images


def uses_mnist_probe(config, features) -> bool:
    """The shipped classifier's path: MNIST digits at 28x28x1 and no other space asked for."""
    return features in (None, "auto", "mnist") and features_lib.is_mnist_digits(config)


def make_probe(config, data, num_samples: int, features="auto", log=print) -> tuple[Probe, dict]:
    """The probe every contender is measured by, and a record of its space (for the report and
    the JSON). Chooses (and, for a data classifier, trains once) the space: call it before the
    race, since training a classifier seeds Keras' global random generators.
    `features`: a kind of gan_pkg.features.KINDS, or a FeatureSpace."""
    if isinstance(features, str) and uses_mnist_probe(config, features):
        probe = FIDProbe(config, data.holdout, num_samples)
        space = features_lib.mnist_space()
        return probe, {**space.describe(), "sampling": "generator.predict on fixed noise (seed [123, 0])"}
    space, missing = evaluate.choose_features(config, data, features, log=log)
    if space is None:
        raise evaluate.EvaluationError(f"{missing}; a time-to-quality curve needs FID, so a feature space")
    probe = DataProbe(space, data, num_samples)
    record = {**space.describe(), "sampling": f"gan_pkg.evaluate.keras_sample_fn, evaluate's seeds (--seed {PROBE_SEED})"}
    check = getattr(features_lib, "check_space", None)
    if check is not None and not space.vetted:
        floor = np.asarray(data.train[:num_samples], np.float32) / 255.0
        record["check"] = check(space, probe.reference, probe.holdout, floor, PROBE_SEED)
    return probe, record


def real_floor(probe: Probe, data, num_samples: int) -> dict:
    """The probe's figures for as many training images as samples (at most the training split),
    against the same held-out images: what "perfect" reads at this sample size."""
    return probe.measure(np.asarray(data.train[:num_samples], np.float32) / 255.0)


def default_targets(mnist: bool, floor: dict) -> tuple[tuple[float, ...], str]:
    """(FID targets, where they come from) when --targets gives none."""
    if mnist:
        return TARGETS, "the MNIST classifier's fixed targets"
    targets = tuple(float(f"{floor['fid'] * m:.3g}") for m in FLOOR_MULTIPLES)
    return targets, "x".join(f"{m:g}" for m in FLOOR_MULTIPLES) + f" the real floor's FID {floor['fid']:.3g}"


# -- the race -----------------------------------------------------------------------
