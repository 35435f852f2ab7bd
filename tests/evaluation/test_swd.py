"""Figures read off the pixels, with no feature network: PGGAN's multi-scale sliced
Wasserstein distance (gan_pkg.swd) and the colour figures (gan_pkg.metrics). Each must
rank a degraded set of images behind fresh real ones, and repeat itself exactly."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from gan_pkg import metrics, swd
from gan_pkg.shapes import SHAPES, shape_image

SIZE, COUNT = 32, 160


def shapes(count: int = COUNT, seed: int = 0, size: int = SIZE, mode: str = "RGB") -> np.ndarray:
    """gan_pkg.shapes' bright discs and squares on dark backgrounds, float [N, H, W, C] in [0, 1]."""
    rng = np.random.default_rng(seed)
    images = [np.asarray(shape_image(SHAPES[i % 2], size, rng, mode), np.float32) / 255.0 for i in range(count)]
    return np.stack(images).reshape(count, size, size, -1)


@pytest.fixture(scope="module")
def real():
    """Two independent draws of one distribution: a set scored against a reference."""
    return shapes(seed=1), shapes(seed=2)


@pytest.fixture(scope="module")
def floor(real):
    """SWD of fresh real images: what a perfect generator would score at this size."""
    return swd.swd(*real)


def blur(images: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    return ndimage.gaussian_filter(images, (0, sigma, sigma, 0))


def saturated(images: np.ndarray, gain: float = 1.8) -> np.ndarray:
    """Each pixel pushed away from its own grey: the same layout, louder colours."""
    grey = images.mean(axis=-1, keepdims=True)
    return np.clip(grey + gain * (images - grey), 0.0, 1.0)


# -- SWD -----------------------------------------------------------------------------
def test_identical_sets_are_at_zero(real):
    result = swd.swd(real[0], real[0].copy())
    assert result["swd"] == 0.0 and result["swd_levels"] == [0.0, 0.0]


def test_blurred_colour_cast_and_noise_sets_score_worse_than_fresh_real_images(real, floor):
    images, reference = real
    blurred = swd.swd(blur(images), reference)
    cast = swd.swd(np.clip(images + np.float32([0.15, -0.05, 0.0]), 0.0, 1.0), reference)
    noise = swd.swd(np.random.default_rng(0).random(images.shape, dtype=np.float32), reference)
    assert floor["swd"] > 0
    assert blurred["swd"] > 3 * floor["swd"] and cast["swd"] > 2 * floor["swd"] and noise["swd"] > 30 * floor["swd"]
    # Blur shows at the finest level; a colour cast at the coarsest, over the same edges.
    assert blurred["swd_levels"][0] > 5 * floor["swd_levels"][0]
    assert cast["swd_levels"][-1] > 5 * floor["swd_levels"][-1] and cast["swd_levels"][0] < 2 * floor["swd_levels"][0]


def test_the_same_inputs_and_seed_give_the_same_numbers(real, floor):
    images, reference = real
    assert swd.swd(images.copy(), reference.copy()) == floor  # seed 0, the default
    other = swd.swd(images, reference, seed=4)["swd"]
    assert other != floor["swd"] and other == pytest.approx(floor["swd"], rel=0.5)  # another draw, the same scale


def test_grey_images_work_too():
    grey, reference = shapes(seed=1, mode="L"), shapes(seed=2, mode="L")
    assert grey.shape[-1] == 1
    floor = swd.swd(grey, reference)
    assert floor["swd_resolutions"] == [32, 16] and len(floor["swd_levels"]) == 2
    assert swd.swd(blur(grey), reference)["swd"] > 3 * floor["swd"]


def test_sets_of_different_sizes_and_uint8_images_are_compared():
    images, reference = shapes(count=40, seed=1), shapes(count=100, seed=2)
    result = swd.swd((images * 255).round().astype(np.uint8), reference)
    assert np.isfinite(result["swd"]) and result["swd"] == pytest.approx(swd.swd(images, reference)["swd"], rel=0.05)


@pytest.mark.parametrize("side, expected", [(64, [64, 32, 16]), (48, [48, 24]), (28, [28]), (16, [16]), (8, [8])])
def test_levels_halve_down_to_16_px_and_small_images_get_fewer(side, expected):
    assert swd.resolutions(side, side) == expected


def test_images_smaller_than_a_patch_are_refused_in_one_line():
    with pytest.raises(ValueError, match="too small"):
        swd.swd(np.zeros((4, 6, 6, 3)), np.zeros((4, 6, 6, 3)))
    with pytest.raises(ValueError, match="one shape"):
        swd.swd(np.zeros((4, 16, 16, 3)), np.zeros((4, 16, 16, 1)))


def test_the_laplacian_pyramid_adds_back_up_to_the_images():
    images = np.random.default_rng(0).random((3, 37, 64, 3), dtype=np.float32)  # odd sizes too
    pyramid = swd.laplacian_pyramid(images, 3)
    assert [level.shape[1:3] for level in pyramid] == [(37, 64), (19, 32), (10, 16)]
    rebuilt = pyramid[-1]
    for detail in reversed(pyramid[:-1]):
        rebuilt = detail + swd._pyr_up(rebuilt, *detail.shape[1:3])
    np.testing.assert_allclose(rebuilt, images, atol=1e-5)


def test_the_pyramid_filter_is_pggans_binomial_kernel():
    image = np.zeros((1, 9, 9, 1), np.float32)
    image[0, 4, 4, 0] = 1.0
    kernel = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256.0
    np.testing.assert_allclose(swd._blur(image)[0, 2:7, 2:7, 0], kernel, atol=1e-7)


def test_descriptors_per_set_are_bounded_at_any_sample_count():
    descriptors = swd.patch_descriptors(np.zeros((600, 16, 16, 3), np.float32), swd.MAX_DESCRIPTORS)
    assert [d.shape for d in descriptors] == [(swd.MAX_DESCRIPTORS, swd.PATCH * swd.PATCH * 3)]


# -- colour ------------------------------------------------------------------------
def test_srgb_to_lab_matches_the_reference_values():
    lab = metrics.srgb_to_lab(np.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]))
    expected = [[100.0, 0.0, 0.0], [53.24, 80.09, 67.20], [32.30, 79.19, -107.86], [0.0, 0.0, 0.0]]
    np.testing.assert_allclose(lab, expected, atol=0.01)


def test_chroma_ratio_is_one_for_the_same_colours_and_tells_saturated_from_washed_out(real):
    images, reference = real
    assert metrics.chroma_ratio(images, images) == pytest.approx(1.0)
    assert metrics.chroma_ratio(images, reference) == pytest.approx(1.0, abs=0.1)
    assert metrics.chroma_ratio(saturated(images), reference) > 1.3
    assert metrics.chroma_ratio(saturated(images, gain=0.3), reference) < 0.5
    assert np.isnan(metrics.chroma_ratio(images, np.full((2, 8, 8, 3), 0.5, np.float32)))  # a grey reference
    assert metrics.mean_chroma(np.full((2, 8, 8, 3), 0.5, np.float32)) < metrics.GREY_CHROMA


def test_colour_distance_catches_a_missing_background_and_loud_colours():
    # Many small images: a histogram of few is ruled by each one's background colour.
    images, reference = shapes(count=600, seed=1, size=16), shapes(count=600, seed=2, size=16)
    floor = metrics.colour_distance(images, reference)
    assert metrics.colour_distance(images, images) == 0.0
    no_background = np.where(images.max(axis=-1, keepdims=True) < 0.33, np.float32(0.5), images)
    assert metrics.colour_distance(no_background, reference) > max(0.5, 4 * floor)
    assert metrics.colour_distance(saturated(images, gain=2.5), reference) > 2.5 * floor


def test_colour_figures_read_rgb_only(real):
    figures = metrics.colour_figures(real[0], real[1])
    assert set(figures) == {"chroma", "chroma_ratio", "colour_distance"}
    with pytest.raises(ValueError, match="RGB"):
        metrics.mean_chroma(np.zeros((2, 8, 8, 1)))
