"""A preset's networks at another image size: each scales within its own family.

The tutorials' networks are drawn for 28x28 digits: a dense layer to a 7x7 grid, two
doublings in the generator, two or three halvings in the discriminator. At another
side the grid and the number of doublings change, and nothing else:

- the generator starts from a grid of at most `MAX_GRID` pixels and gains one
  upsample+conv block per extra doubling, appended after its last hidden block with
  half that block's filters (never below `MIN_FILTERS`, unless the preset has fewer);
- the discriminator gains one block per extra halving in front of its first, with
  half the first block's filters, the first block's kernel and stride (the
  conv-tanh family halves by pooling after every conv, so its stride stays 1).

A config whose generator already makes the asked-for side is left as it is, so a
user's own layer lists are never rewritten, and 28x28 presets stay the tutorials'.
Dense (mlp) and 1-D presets need nothing but the shape.
"""

from __future__ import annotations

import math

from gan_pkg.config import GANConfig

MAX_GRID = 8  # the generator's first feature map: 7x7 for digits, 8x8 for 32, 64, 128, ...
MIN_GRID = 4
MIN_DOUBLINGS = 2  # the tutorials' generators double twice
MIN_FILTERS = 16
SMALLEST_SIDE = MIN_GRID * 2**MIN_DOUBLINGS
CONV_FAMILIES = ("dcgan", "conv", "conv-tanh", "resnet")  # sized by grid and doublings
# The residual family's width at each side: constant multiply-adds per block (width halves as
# the side doubles), capped where the smallest grids would otherwise dominate the parameters
# and floored where the largest sides would thin to nothing. The base is what a CPU affords:
# wider nets cost more per step than they gave back at equal time (BENCHMARKS.md B15).
RESIDUAL_WIDTH_BASE, RESIDUAL_WIDTH_MAX = 512, 256


def grid_and_doublings(side: int) -> tuple[int, int] | None:
    """(grid, doublings) with grid * 2**doublings == side, grid in [MIN_GRID, MAX_GRID] and
    at least MIN_DOUBLINGS doublings; None when `side` is not of that form."""
    doublings = MIN_DOUBLINGS
    while side % (2**doublings) == 0 and side // (2**doublings) > MAX_GRID:
        doublings += 1
    grid, rest = divmod(side, 2**doublings)
    return (grid, doublings) if rest == 0 and MIN_GRID <= grid <= MAX_GRID else None


def supported_side(side: int) -> bool:
    return grid_and_doublings(side) is not None


def largest_supported_side(limit: int) -> int | None:
    """The largest side a conv preset builds at that is not above `limit` (None below the smallest)."""
    return next((side for side in range(limit, 0, -1) if supported_side(side)), None)


def supported_sides_text(limit: int = 256) -> str:
    return ", ".join(str(side) for side in range(1, limit + 1) if supported_side(side))


def generated_side(config: GANConfig) -> int:
    """The side the config's generator makes: its first grid times its upsampling."""
    if config.architecture == "resnet":  # every block doubles
        return config.g_initial_shape[0] * 2 ** len(config.g_filters)
    return config.g_initial_shape[0] * math.prod(config.g_upsample)


def residual_width(side: int) -> int:
    return max(MIN_FILTERS, min(RESIDUAL_WIDTH_MAX, RESIDUAL_WIDTH_BASE // side))


def _residual_sized(config: GANConfig, grid: int, doublings: int) -> GANConfig:
    """The residual family at grid * 2**doublings: G's blocks make sides 2*grid .. side, D's take
    side .. 2*grid, each as wide as `residual_width` says for its side."""
    sides = [grid * 2**k for k in range(1, doublings + 1)]
    return config.replace(
        g_initial_shape=(grid, grid, residual_width(grid)),
        g_filters=tuple(residual_width(side) for side in sides),
        d_filters=tuple(residual_width(side) for side in reversed(sides)),
    )


def _halved(filters: int, count: int, floor: int) -> list[int]:
    out = []
    for _ in range(count):
        filters = max(floor, filters // 2)
        out.append(filters)
    return out


def sized(config: GANConfig, image_shape: tuple) -> GANConfig:
    """`config` with `image_shape` and, for the conv families, its layer lists scaled to it.
    Raises ValueError naming the sides that work when the side is not one of them."""
    image_shape = tuple(int(v) for v in image_shape)
    config = config.replace(image_shape=image_shape)
    if config.architecture not in CONV_FAMILIES or generated_side(config) == image_shape[0]:
        return config
    side = image_shape[0]
    found = grid_and_doublings(side)
    if found is None:
        raise ValueError(
            f"preset {config.preset!r} builds square images whose side is a grid of {MIN_GRID}-{MAX_GRID} pixels "
            f"times a power of two (at least {2**MIN_DOUBLINGS}): {supported_sides_text()}, ...; got {side}. "
            "Pass --image-size with one of them"
        )
    grid, doublings = found
    if config.architecture == "resnet":
        # From the smallest grid: D's last blocks then see the whole image, not patches of it.
        while grid % 2 == 0 and grid > MIN_GRID:
            grid, doublings = grid // 2, doublings + 1
        return _residual_sized(config, grid, doublings)
    extra = doublings - sum(1 for up in config.g_upsample if up > 1)
    changes = {"g_initial_shape": (grid, grid, config.g_initial_shape[-1])}
    g_filters, g_kernels, g_upsample = list(config.g_filters), list(config.g_kernel_sizes), list(config.g_upsample)
    if extra > 0:  # more doublings: blocks appended after the last hidden one
        last = g_filters[-1]
        g_filters += _halved(last, extra, min(MIN_FILTERS, last))
        g_kernels[-1:-1] = [g_kernels[-2] if len(g_kernels) > 1 else g_kernels[-1]] * extra
        g_upsample[-1:-1] = [2] * extra
        first = config.d_filters[0]
        d_stride = config.d_strides[0]
        changes |= {
            "d_filters": tuple(reversed(_halved(first, extra, min(MIN_FILTERS, first)))) + tuple(config.d_filters),
            "d_kernel_sizes": (config.d_kernel_sizes[0],) * extra + tuple(config.d_kernel_sizes),
            "d_strides": (d_stride,) * extra + tuple(config.d_strides),
        }
    else:  # fewer doublings: the last upsampling blocks stop upsampling
        for index in reversed(range(len(g_upsample))):
            if extra == 0:
                break
            if g_upsample[index] > 1:
                g_upsample[index], extra = 1, extra + 1
    changes |= {"g_filters": tuple(g_filters), "g_kernel_sizes": tuple(g_kernels), "g_upsample": tuple(g_upsample)}
    return config.replace(**changes)
