"""Sliced Wasserstein distance between two image sets, measured on the pixels themselves.

Why: FID, KID and precision/recall are only as good as the feature space they are
measured in. Unlabelled colour images without InceptionV3's weights have none, and a
classifier trained on a few labels may not tell a colour smudge from a shape. SWD needs
no network: it compares the distributions of small patches of the images at several
scales (Karras et al. 2018, "Progressive Growing of GANs", their sliced_wasserstein.py),
so its finest level sees edges and texture (blur, noise, checkerboards) and its coarsest
the colours and layout.

What: each image's Laplacian pyramid (PGGAN's binomial 5-tap filter, halving while the
next level keeps at least 16 px; smaller images get fewer levels); from every level
random 7x7 patches of all channels, normalised per channel by mean and std; the sliced
Wasserstein distance between the two sets' patches along random unit directions; x1e3
per level, as PGGAN prints it, and the mean over levels. Pure NumPy/SciPy; the same
inputs and seed give the same number.

One departure from PGGAN: both sets' patches are normalised by the *reference* set's
statistics (PGGAN normalises each set by its own). Normalising each by its own rescales
a blurred set's weak fine-detail level back to unit variance and cancels a global colour
cast at the coarsest level: the very defects this measure is here to show.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from gan_pkg.metrics import as_unit, image_chunks

PATCH = 7  # PGGAN's neighbourhood: 7x7 pixels
DESCRIPTORS_PER_IMAGE = 128  # PGGAN's patches per image and level
# Patches per set and level, at most: bounds memory and time at any sample count.
MAX_DESCRIPTORS = 2**15
DIRECTION_REPEATS = 4  # PGGAN's: 4 repeats of 128 random directions
DIRECTIONS_PER_REPEAT = 128
COARSEST = 16  # px: the pyramid stops before a level whose smaller side is under this
SCALE = 1e3  # PGGAN reports SWD x 10^3
# PGGAN's (and cv2.pyrDown's) binomial filter, separable: [1 4 6 4 1] / 16 along each axis.
BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0], np.float32) / 16.0


def level_shapes(height: int, width: int) -> list[tuple[int, int]]:
    """(height, width) of each pyramid level, finest first: the image itself, then halving
    while the next level keeps COARSEST px on its smaller side (PGGAN's rule)."""
    if min(height, width) < PATCH:
        raise ValueError(f"SWD reads {PATCH}x{PATCH} patches; images of {height}x{width} px are too small")
    shapes = [(height, width)]
    while (min(shapes[-1]) + 1) // 2 >= COARSEST:
        shapes.append(tuple((n + 1) // 2 for n in shapes[-1]))  # what taking every other pixel leaves
    return shapes


def resolutions(height: int, width: int) -> list[int]:
    """The smaller side of each pyramid level in px, finest first: what SWD's levels are labelled by."""
    return [min(shape) for shape in level_shapes(height, width)]


def _blur(images: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """The binomial filter over height and width, mirrored at the border as cv2 does."""
    out = ndimage.convolve1d(images, BINOMIAL * gain, axis=1, mode="mirror")
    return ndimage.convolve1d(out, BINOMIAL * gain, axis=2, mode="mirror")


def _pyr_down(images: np.ndarray) -> np.ndarray:
    return _blur(images)[:, ::2, ::2]


def _pyr_up(images: np.ndarray, height: int, width: int) -> np.ndarray:
    n, h, w, c = images.shape
    spread = np.zeros((n, 2 * h, 2 * w, c), images.dtype)
    spread[:, ::2, ::2] = images
    return _blur(spread, gain=2.0)[:, :height, :width]  # x4 in all: the zeros carry no weight


def laplacian_pyramid(images: np.ndarray, levels: int) -> list[np.ndarray]:
    """[N, H, W, C] -> `levels` arrays, finest first: band-pass detail, the last the low-pass residue."""
    pyramid = [np.asarray(images, np.float32)]
    for _ in range(1, levels):
        pyramid.append(_pyr_down(pyramid[-1]))
        pyramid[-2] = pyramid[-2] - _pyr_up(pyramid[-1], *pyramid[-2].shape[1:3])
    return pyramid


def _patch_positions(rng: np.random.Generator, count: int, num_images: int, shape: tuple) -> tuple:
    """(image, top, left) of `count` patches: every image an equal share, places uniform."""
    image = np.arange(count) % num_images
    top = rng.integers(0, shape[0] - PATCH + 1, count)
    left = rng.integers(0, shape[1] - PATCH + 1, count)
    return image, top, left


def _gather(level: np.ndarray, first: int, image, top, left) -> tuple[np.ndarray, np.ndarray]:
    """(which positions lie in this chunk of images, their flattened patches [k, 7*7*C])."""
    inside = (image >= first) & (image < first + len(level))
    offsets = np.arange(PATCH)
    rows = (top[inside][:, None] + offsets)[:, :, None]
    cols = (left[inside][:, None] + offsets)[:, None, :]
    patches = level[(image[inside] - first)[:, None, None], rows, cols]
    return inside, patches.reshape(int(inside.sum()), -1)


def patch_descriptors(images: np.ndarray, count: int, seed: int = 0) -> list[np.ndarray]:
    """Per pyramid level, `count` random 7x7 patches [count, 7*7*C] of `images` [N, H, W, C].

    Positions are drawn from `seed` alone, so two sets of the same size are sampled at the same
    places (identical sets give identical patches). Pyramids are built a chunk of images at a time."""
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"SWD reads image sets [N, H, W, C]; got shape {images.shape}")
    shapes = level_shapes(*images.shape[1:3])
    positions = [_patch_positions(np.random.default_rng([seed, level, 0]), count, len(images), shape)
                 for level, shape in enumerate(shapes)]
    out = [np.empty((count, PATCH * PATCH * images.shape[-1]), np.float32) for _ in shapes]
    for first, chunk in image_chunks(images):
        pyramid = laplacian_pyramid(as_unit(chunk), len(shapes))
        for level, where in enumerate(positions):
            inside, patches = _gather(pyramid[level], first, *where)
            out[level][inside] = patches
    return out


def _channel_statistics(descriptors: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of each channel over all patches and their pixels, broadcastable to a descriptor."""
    per_channel = descriptors.reshape(-1, channels)
    mean, std = per_channel.mean(axis=0), per_channel.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # a flat channel: nothing to scale
    return np.tile(mean, PATCH * PATCH), np.tile(std, PATCH * PATCH)


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, rng: np.random.Generator | int = 0,
                       repeats: int = DIRECTION_REPEATS, directions: int = DIRECTIONS_PER_REPEAT) -> float:
    """Mean over random unit directions of the 1-D Wasserstein-1 distance between the
    projections of two equally many points [n, D] (PGGAN's sliced_wasserstein)."""
    if a.shape != b.shape:
        raise ValueError(f"sliced Wasserstein compares equally many points; got {a.shape} and {b.shape}")
    rng = np.random.default_rng(rng)
    distances = []
    for _ in range(repeats):
        unit = rng.standard_normal((directions, a.shape[1])).astype(np.float32)
        unit /= np.linalg.norm(unit, axis=1, keepdims=True)
        # [directions, n]: each direction's projections sorted along contiguous rows.
        projected_a, projected_b = np.sort(unit @ a.T, axis=1), np.sort(unit @ b.T, axis=1)
        distances.append(float(np.abs(projected_a - projected_b).mean()))
    return float(np.mean(distances))


def swd(images: np.ndarray, reference: np.ndarray, seed: int = 0) -> dict:
    """PGGAN's multi-scale sliced Wasserstein distance of `images` to `reference`, x1e3.

    Both [N, H, W, C] in [0, 1] (uint8: pixel / 255), with C 1 or 3, the same H, W, C (counts may differ).
    Returns {"swd": mean over levels, "swd_levels": [finest first], "swd_resolutions": [their
    smaller side in px]}. 0 for identical sets; the same inputs and seed give the same numbers."""
    if images.shape[1:] != reference.shape[1:]:
        raise ValueError(f"SWD compares images of one shape; got {images.shape[1:]} and {reference.shape[1:]}")
    count = min(DESCRIPTORS_PER_IMAGE * min(len(images), len(reference)), MAX_DESCRIPTORS)
    ours, theirs = patch_descriptors(images, count, seed), patch_descriptors(reference, count, seed)
    levels = []
    for level, (a, b) in enumerate(zip(ours, theirs)):
        mean, std = _channel_statistics(b, images.shape[-1])
        directions = np.random.default_rng([seed, level, 1])
        levels.append(SCALE * sliced_wasserstein((a - mean) / std, (b - mean) / std, directions))
    return {
        "swd": float(np.mean(levels)),
        "swd_levels": levels,
        "swd_resolutions": resolutions(*images.shape[1:3]),
    }
