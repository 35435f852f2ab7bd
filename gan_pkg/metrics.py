"""Sample-quality metrics: small pure functions on NumPy arrays.

FID, KID (unbiased, with a standard error), classifier score, k-NN
precision/recall, mode coverage, memorization (tutorial 001's mean-L1 distance to
the nearest training image) and, for 1-D samples, mean/std/KS. No TensorFlow.
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


def nearest_l1(samples: np.ndarray, train_images: np.ndarray, chunk: int = 250, train_chunk: int = 4096) -> np.ndarray:
    """Each sample's mean absolute pixel difference to its nearest training image
    (tutorial 001's l1_compare_images, minimised over the training set). uint8 images
    count as pixel / 255, as samples in [0, 1] do; the training set is read
    `train_chunk` images at a time, so a memory-mapped one is never held whole."""
    def as_unit(images):
        images = np.asarray(images)
        return (images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)).reshape(len(images), -1)

    a = as_unit(samples)
    out = np.full(len(a), np.inf)
    for first in range(0, len(train_images), train_chunk):
        b = as_unit(train_images[first : first + train_chunk])
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


def distribution_stats(samples: np.ndarray, mean: float = NORMAL1D_MEAN, std: float = NORMAL1D_STD) -> dict:
    """dist1d: pooled mean, std and Kolmogorov-Smirnov statistic vs N(mean, std)."""
    x = np.asarray(samples, np.float64).ravel()
    ks = stats.kstest(x, "norm", args=(mean, std))
    return {"mean": float(x.mean()), "std": float(x.std()), "ks": float(ks.statistic), "ks_pvalue": float(ks.pvalue)}
