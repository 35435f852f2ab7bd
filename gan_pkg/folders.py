"""Image folders: what they hold, read at the planned shape, streamed when large.

One subfolder per class (any nesting inside it), any size and PIL mode. `survey_folder`
reads file headers only; `load_folder` decodes every image through `fit_image` (mode
converted, centre-cropped or stretched, resampled) in a fixed shuffled order, in memory
or, past `memory_budget`, into a memory-mapped cache file decoded once per folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np

from gan_pkg import files as files_lib
from gan_pkg.config import GANConfig, parse_background
from gan_pkg.dataset import HOLDOUT_SEED, Data, DataError, Survey, colour_name, listing

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def is_transparent(image) -> bool:
    """Whether a PIL image (its header is enough) has an alpha channel or a transparent colour."""
    return image.has_transparency_data


def composited(image, background: tuple[int, int, int]):
    """A PIL image with transparency -> RGB, its transparent pixels replaced by `background`
    (alpha-weighted at soft edges). Dropping alpha instead would show whatever colour a file
    happens to store under its transparent pixels, which differs from file to file."""
    from PIL import Image

    rgba = image.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (*background, 255)), rgba).convert("RGB")


def fit_image(image, config: GANConfig) -> np.ndarray:
    """One PIL image -> uint8 [S, S, C]: transparency composited onto `config.background`, its
    mode converted (palette expanded, grey and colour either way), then centre-cropped to a
    square or stretched, and resampled."""
    from PIL import Image

    side, _, channels = config.image_shape
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: keep the top 8 bits, not a clip at 255
        image = Image.fromarray((np.asarray(image, np.float64) / 257.0).clip(0, 255).astype(np.uint8))
    if is_transparent(image):
        image = composited(image, parse_background(config.background))
    image = image.convert("RGB" if channels == 3 else "L")
    width, height = image.size
    if config.resize == "center-crop" and width != height:
        crop = min(width, height)
        left, top = (width - crop) // 2, (height - crop) // 2
        image = image.crop((left, top, left + crop, top + crop))
    if image.size != (side, side):
        image = image.resize((side, side), Image.Resampling.LANCZOS)
    pixels = np.asarray(image, np.uint8)
    return pixels[..., None] if channels == 1 else pixels


def folder_files(path: Path) -> tuple[list[Path], tuple[str, ...]]:
    """(image files in sorted order, class names): one class per top-level subfolder (with
    any nesting inside it) when every image sits in one; else no classes."""
    files = sorted(
        p for p in path.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if not files:
        raise DataError(f"{path}: no images found (looked for {', '.join(IMAGE_SUFFIXES)} files, in subfolders too)")
    parts = [f.relative_to(path).parts for f in files]
    classes = tuple(sorted({p[0] for p in parts})) if all(len(p) > 1 for p in parts) else ()
    return files, classes


def survey_folder(path: Path) -> Survey:
    from PIL import Image

    files, classes = folder_files(path)
    sizes, modes, unreadable, transparent = set(), {}, [], 0
    for file in files:
        try:
            with Image.open(file) as image:
                sizes.add(image.size)
                modes[image.mode] = modes.get(image.mode, 0) + 1
                transparent += is_transparent(image)
        except Exception:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
            unreadable.append(str(file))
    if not sizes:
        raise DataError(f"{path}: none of its {len(files)} image files can be read ({listing(unreadable)})")
    count = len(files) - len(unreadable)
    colour = any(colour_name(mode) == "RGB" for mode in modes)
    return Survey(str(path), count, tuple(sorted(sizes)), colour, modes, len(classes), classes, tuple(unreadable),
                  transparent=transparent)


def memory_budget() -> int:
    """Bytes a decoded training set may take in memory: a quarter of what is available now.
    Larger folders are decoded once into a file on disk (`_decoded_cache`) and streamed."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4
    except (ValueError, OSError, AttributeError):  # not a POSIX system: keep everything in memory
        return 1 << 62


def load_folder(path: Path, config: GANConfig) -> Data:
    """Decoded at the planned shape in a fixed shuffled order (held-out images first), in
    memory or, past `memory_budget`, in a memory-mapped cache file that training streams."""
    from PIL import Image

    files, classes = folder_files(path)
    files = [files[i] for i in np.random.default_rng(HOLDOUT_SEED).permutation(len(files))]
    shape = (len(files), *config.image_shape)
    streamed = math.prod(shape) > memory_budget()
    if streamed:
        target = files_lib.cache_dir("decoded") / f"{_folder_key(path, files, config)}.npy"
        cached = _decoded_cache(target, classes, config.holdout)
        if cached is not None:
            return cached
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f"{files_lib.TEMPORARY_PREFIX}{target.name}")
        images = np.lib.format.open_memmap(staging, mode="w+", dtype=np.uint8, shape=shape)
    else:
        images = np.empty(shape, np.uint8)
    labels, unreadable, count = [], [], 0
    for file in files:
        try:
            with Image.open(file) as image:
                images[count] = fit_image(image, config)
        except Exception:
            unreadable.append(str(file))
            continue
        count += 1
        if classes:
            labels.append(classes.index(file.relative_to(path).parts[0]))
    if not count:
        raise DataError(f"{path}: none of its {len(files)} image files can be decoded ({listing(unreadable)})")
    labels = np.array(labels, np.int64) if classes else None
    if streamed:
        images.flush()
        del images
        os.replace(staging, target)
        files_lib.write_json(target.with_suffix(".json"), {"count": count, "labels": None if labels is None else labels.tolist(),
                                                           "unreadable": unreadable})
        return _decoded_cache(target, classes, config.holdout)
    return _folder_data(images[:count], labels, classes, unreadable, config.holdout)


def _folder_data(images, labels, classes, unreadable, holdout: int) -> Data:
    if len(images) <= holdout:
        raise DataError(f"only {len(images)} examples: need more than the {holdout} held out for evaluation")
    pick = (lambda part: None) if labels is None else (lambda part: labels[part])
    data = Data(images[holdout:], np.array(images[:holdout]), pick(slice(holdout, None)), pick(slice(None, holdout)))
    data.class_names = classes
    if unreadable:
        data.notes = (f"skipped {len(unreadable)} unreadable file{'s' * (len(unreadable) > 1)}: {listing(unreadable)}",)
    return data


def _folder_key(path: Path, files: list, config: GANConfig) -> str:
    """What a decoded folder depends on: its files (name, size, time), the shape, the resize and the background."""
    digest = hashlib.sha256(json.dumps([str(path.resolve()), list(config.image_shape), config.resize, config.background]).encode())
    for file in files:
        stat = file.stat()
        digest.update(f"{file.relative_to(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def _decoded_cache(target: Path, classes: tuple, holdout: int) -> Data | None:
    """The folder decoded into `target` (by this run or an earlier one) as a read-only memory map, or None."""
    record = target.with_suffix(".json")
    if not (target.is_file() and record.is_file()):
        return None
    found = json.loads(record.read_text())
    images = np.load(target, mmap_mode="r")[: found["count"]]
    labels = None if found["labels"] is None else np.array(found["labels"], np.int64)
    data = _folder_data(images, labels, classes, found["unreadable"], holdout)
    data.notes += (f"streamed from {target} (larger than a quarter of free memory)",)
    return data
