"""Coloured shapes: a labelled RGB image folder made on the spot.

No RGB data set ships in any package this one depends on, so trying colour training
(and testing and benchmarking it) needs images made here: bright discs and squares of
random colour, size and place on dark backgrounds, one subfolder per class, the
layout `python -m gan_pkg.fit --data FOLDER` reads.

    python -m gan_pkg.shapes shapes/ --size 64 --per-class 300
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square")


def shape_image(kind: str, size: int, rng, mode: str = "RGB", width: int | None = None) -> Image.Image:
    """A bright disc or square on a dark background, `size` high (and `width` wide), in PIL `mode`."""
    width = width or size
    image = Image.new("RGB", (width, size), tuple(int(v) for v in rng.integers(0, 80, 3)))
    radius = int(rng.integers(max(2, size // 6), max(3, size // 3)))
    cx, cy = int(rng.integers(radius, width - radius)), int(rng.integers(radius, size - radius))
    fill = tuple(int(v) for v in rng.integers(140, 256, 3))
    draw = ImageDraw.Draw(image)
    (draw.ellipse if kind == "circle" else draw.rectangle)([cx - radius, cy - radius, cx + radius, cy + radius], fill=fill)
    return image.convert(mode)


def shapes_folder(root: Path, size: int, per_class: int, classes=SHAPES, mode: str = "RGB", seed: int = 0) -> Path:
    """root/<class>/NNNN.png, `per_class` images of each class (a class not named after a
    shape alternates both); the same seed writes the same pixels."""
    rng = np.random.default_rng(seed)
    for kind in classes:
        (Path(root) / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = kind if kind in SHAPES else SHAPES[i % len(SHAPES)]
            shape_image(shape, size, rng, mode).save(Path(root) / kind / f"{i:04d}.png")
    return Path(root)


def main(argv=None) -> int:
    from gan_pkg.cli import ArgumentParser

    parser = ArgumentParser(prog="python -m gan_pkg.shapes", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--size", type=int, default=64, help="side in pixels (default: %(default)s)")
    parser.add_argument("--per-class", type=int, default=300, help="images per class (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.size < 8 or args.per_class < 1:
        parser.error("--size must be at least 8 and --per-class at least 1")
    shapes_folder(args.folder, args.size, args.per_class, seed=args.seed)
    print(f"wrote {args.per_class * len(SHAPES)} {args.size}×{args.size} RGB images to {args.folder}/{{{','.join(SHAPES)}}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
