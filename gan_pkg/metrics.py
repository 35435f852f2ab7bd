"""Sample-quality metrics: small pure functions on NumPy arrays.

FID, KID (unbiased, with a standard error), classifier score, k-NN
precision/recall, mode coverage, memorization (tutorial 001's mean-L1 distance to
the nearest training image), colour figures of RGB sets (CIELAB chroma, a colour
histogram distance: no feature network needed) and, for 1-D samples,
mean/std/KS. No TensorFlow.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg, stats
from scipy.spatial.distance import cdist

KID_SUBSETS = 100
KID_SUBSET_SIZE = 250
PR_K = 3
MODE_THRESHOLD = 0.05
NORMAL1D_MEAN, NORMAL1D_STD = 4.0, 1.25  # tutorial 003's target (also gan_pkg.data)


def _mean_cov(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    feats = np.asarray(feats, np.float64)
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))."""
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    diff = mu1 - mu2
    with warnings.catch_warnings():
        # Dead ReLU features make the product singular; sqrtm still agrees with
        # the eigenvalue form to ~1e-12 there, and bad results are caught below.
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        # Singular product (e.g. fewer samples than dimensions): nudge both
        # covariances off singularity, as the reference FID implementation does.
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        # Round-off gives tiny imaginary parts; large ones mean a real problem.
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"FID: imaginary component {np.max(np.abs(covmean.imag)):.3g} in sqrtm")
        covmean = covmean.real
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean)
    return float(max(value, 0.0))


def fid(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets [N, D]."""
    return frechet_distance(*_mean_cov(feats_a), *_mean_cov(feats_b))


def _poly_kernel(x, y):
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def kid(
    feats_a: np.ndarray,
    feats_b: np.ndarray,
    subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    rng: np.random.Generator | int | None = 0,
) -> tuple[float, float]:
    """Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial
    kernel (x.y/d + 1)^3, averaged over random subsets (Bińkowski et al. 2018).

    Returns (mean, standard error of that mean over the subsets)."""
    a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    rng = np.random.default_rng(rng)
    values = np.empty(subsets)
    for i in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
        values[i] = (
            (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
            + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2.0 * kxy.mean()
        )
    se = values.std(ddof=1) / np.sqrt(subsets) if subsets > 1 else float("nan")
    return float(values.mean()), float(se)


def classifier_score(probs: np.ndarray, eps: float = 1e-12) -> float:
    """Inception-score analogue: exp(E_x KL(p(y|x) || p(y))); 1 to #classes."""
    p = np.asarray(probs, np.float64)
    marginal = p.mean(axis=0, keepdims=True)
    kl = np.sum(p * (np.log(p + eps) - np.log(marginal + eps)), axis=1)
    return float(np.exp(kl.mean()))


_CHUNK = 1000  # rows of a distance matrix at a time: bounded memory at any sample count


def _kth_neighbour_radii(feats: np.ndarray, k: int) -> np.ndarray:
    # Index k, not k-1: each point's nearest "neighbour" is itself, at 0.
    return np.concatenate(
        [np.partition(cdist(feats[i : i + _CHUNK], feats), k, axis=1)[:, k] for i in range(0, len(feats), _CHUNK)]
    )


def _inside_manifold(ref: np.ndarray, radii: np.ndarray, query: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [(cdist(query[i : i + _CHUNK], ref) <= radii[None, :]).any(axis=1) for i in range(0, len(query), _CHUNK)]
    )


def precision_recall(real_feats: np.ndarray, fake_feats: np.ndarray, k: int = PR_K) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019): precision is
    the share of fakes inside the real manifold (union of k-NN balls around
    real points), recall the share of reals inside the fake manifold."""
    real, fake = np.asarray(real_feats, np.float64), np.asarray(fake_feats, np.float64)
    if len(real) <= k or len(fake) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples in each set")
    precision = _inside_manifold(real, _kth_neighbour_radii(real, k), fake).mean()
    recall = _inside_manifold(fake, _kth_neighbour_radii(fake, k), real).mean()
    return float(precision), float(recall)


def mode_coverage(probs: np.ndarray, threshold: float = MODE_THRESHOLD) -> dict:
    """Share of samples the classifier assigns to each class, and how many
    classes get more than `threshold` of them."""
    p = np.asarray(probs)
    counts = np.bincount(p.argmax(axis=1), minlength=p.shape[1])
    shares = counts / max(len(p), 1)
    return {"histogram": [round(float(s), 4) for s in shares], "covered": int((shares > threshold).sum())}


CHUNK_PIXELS = 2**20  # pixels of images processed at a time: bounded memory at any sample count and size


def image_chunks(images: np.ndarray, pixels: int = CHUNK_PIXELS):
    """(first index, images[first : first + k]) over a set, k images holding about `pixels` pixels."""
    step = max(1, pixels // max(1, int(np.prod(np.shape(images)[1:3]))))
    for first in range(0, len(images), step):
        yield first, images[first : first + step]


def as_unit(images) -> np.ndarray:
    """Images as float32 in [0, 1]: uint8 counts as pixel / 255, floats are taken as they are."""
    images = np.asarray(images)
    return images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else np.asarray(images, np.float32)


def nearest_l1(samples: np.ndarray, train_images: np.ndarray, chunk: int = 250, train_chunk: int = 4096) -> np.ndarray:
    """Each sample's mean absolute pixel difference to its nearest training image
    (tutorial 001's l1_compare_images, minimised over the training set). uint8 images
    count as pixel / 255, as samples in [0, 1] do; the training set is read
    `train_chunk` images at a time, so a memory-mapped one is never held whole."""
    a = as_unit(samples).reshape(len(samples), -1)
    out = np.full(len(a), np.inf)
    for first in range(0, len(train_images), train_chunk):
        b = as_unit(train_images[first : first + train_chunk]).reshape(-1, a.shape[1])
        for start in range(0, len(a), chunk):
            out[start : start + chunk] = np.minimum(out[start : start + chunk], cdist(a[start : start + chunk], b, "cityblock").min(axis=1))
    return out / a.shape[1]


def memorization(samples: np.ndarray, train_images: np.ndarray, threshold: float | None = None) -> dict:
    """Nearest-training-image L1 of each sample: min, mean, and the share below
    `threshold` (evaluate_generator passes a low quantile of the held-out
    real-vs-train distances: real digits seldom come that close to a training
    digit, so many samples below it suggest copies)."""
    d = nearest_l1(samples, train_images)
    out = {"nn_l1_min": float(d.min()), "nn_l1_mean": float(d.mean())}
    if threshold is not None:
        out["nn_l1_below_real"] = float((d < threshold).mean())
    return out


# -- colour (RGB sets) ---------------------------------------------------------------
# sRGB primaries to CIE XYZ, and the D65 white they are relative to (IEC 61966-2-1).
SRGB_TO_XYZ = np.array([
    [0.4124564, 0.3575761, 0.1804375],
    [0.2126729, 0.7151522, 0.0721750],
    [0.0193339, 0.1191920, 0.9503041],
])
D65_WHITE = np.array([0.95047, 1.0, 1.08883])
COLOUR_BINS = 8  # per channel: 512 colour cells
GREY_CHROMA = 1.0  # mean chroma under a just-noticeable colour difference: a grey set, no ratio to it


def _rgb_only(images: np.ndarray) -> np.ndarray:
    if np.ndim(images) != 4 or np.shape(images)[-1] != 3:
        raise ValueError(f"colour figures read RGB image sets [N, H, W, 3]; got shape {np.shape(images)}")
    return images


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] [..., 3] -> CIELAB (L*, a*, b*) under D65, the standard formulas written out."""
    rgb = np.clip(np.asarray(rgb, np.float64), 0.0, 1.0)
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ SRGB_TO_XYZ.T / D65_WHITE
    delta = 6.0 / 29.0
    f = np.where(xyz > delta**3, np.cbrt(xyz), xyz / (3 * delta**2) + 4.0 / 29.0)
    lightness, a, b = 116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])
    return np.stack([lightness, a, b], axis=-1)


def mean_chroma(images: np.ndarray) -> float:
    """Mean CIELAB chroma sqrt(a*^2 + b*^2) over every pixel of an RGB set: 0 for greys,
    higher for more saturated colours."""
    images = _rgb_only(images)
    total = 0.0
    for _, chunk in image_chunks(images):
        lab = srgb_to_lab(as_unit(chunk))
        total += float(np.hypot(lab[..., 1], lab[..., 2]).sum())
    return total / max(1, int(np.prod(np.shape(images)[:3])))


def _chroma_ratio(chroma: float, reference_chroma: float) -> float:
    return chroma / reference_chroma if reference_chroma >= GREY_CHROMA else float("nan")


def chroma_ratio(images: np.ndarray, reference: np.ndarray) -> float:
    """mean_chroma(images) / mean_chroma(reference): 1 when as colourful as the reference,
    above 1 over-saturated, below 1 washed out. NaN when the reference is grey (GREY_CHROMA)."""
    return _chroma_ratio(mean_chroma(images), mean_chroma(reference))


def colour_histogram(images: np.ndarray, bins: int = COLOUR_BINS) -> np.ndarray:
    """The share of an RGB set's pixels in each of bins^3 equal cells of the RGB cube."""
    images = _rgb_only(images)
    counts = np.zeros(bins**3)
    for _, chunk in image_chunks(images):
        cell = np.minimum((np.clip(as_unit(chunk), 0.0, 1.0) * bins).astype(np.int64), bins - 1)
        counts += np.bincount(((cell[..., 0] * bins + cell[..., 1]) * bins + cell[..., 2]).ravel(), minlength=bins**3)
    return counts / max(1.0, counts.sum())


def colour_distance(images: np.ndarray, reference: np.ndarray, bins: int = COLOUR_BINS) -> float:
    """Total variation between two RGB sets' colour histograms (half their L1 distance): the
    share of pixels whose colour would have to move to another cell, 0 (same colours) to 1
    (no colour in common). A missing background or over-saturated colours move whole cells."""
    return 0.5 * float(np.abs(colour_histogram(images, bins) - colour_histogram(reference, bins)).sum())


def colour_figures(images: np.ndarray, reference: np.ndarray, reference_chroma: float | None = None) -> dict:
    """mean chroma, chroma ratio and colour distance of an RGB set against a reference set
    (`reference_chroma`: its mean_chroma, when already known)."""
    chroma = mean_chroma(images)
    reference_chroma = mean_chroma(reference) if reference_chroma is None else reference_chroma
    return {
        "chroma": chroma,
        "chroma_ratio": _chroma_ratio(chroma, reference_chroma),
        "colour_distance": colour_distance(images, reference),
    }


def distribution_stats(samples: np.ndarray, mean: float = NORMAL1D_MEAN, std: float = NORMAL1D_STD) -> dict:
    """dist1d: pooled mean, std and Kolmogorov-Smirnov statistic vs N(mean, std)."""
    x = np.asarray(samples, np.float64).ravel()
    ks = stats.kstest(x, "norm", args=(mean, std))
    return {"mean": float(x.mean()), "std": float(x.std()), "ks": float(ks.statistic), "ks_pvalue": float(ks.pvalue)}
