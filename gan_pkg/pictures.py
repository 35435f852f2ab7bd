"""Pictures people look at: sample grids, loss curves, 1-D histograms.

Nothing here touches a model; callers pass arrays. matplotlib is imported
lazily with the Agg backend so a headless run never needs a display.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
from PIL import Image


def image_grid(images: np.ndarray, columns: int | None = None, pad: int = 2) -> Image.Image:
    """[N, H, W, C] floats in [0, 1] -> one PIL image, rows of `columns` tiles."""
    images = np.clip(np.nan_to_num(np.asarray(images, dtype=np.float32)), 0.0, 1.0)  # a diverged run still draws
    n, h, w, c = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.ones((rows * (h + pad) + pad, columns * (w + pad) + pad, c), np.float32)
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[top : top + h, left : left + w] = image
    pixels = np.round(grid * 255).astype(np.uint8)
    return Image.fromarray(pixels[..., 0] if c == 1 else pixels)


def save_grid(images: np.ndarray, path: Path, columns: int | None = None, scale: int = 3) -> Path:
    grid = image_grid(images, columns)
    grid = grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_loss_curve(history_csv: Path, path: Path, x_label: str = "step") -> Path:
    """Plot the losses and discriminator scores of history.csv against `x_label`."""
    with open(history_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    plt = _pyplot()
    fig, (losses, scores) = plt.subplots(1, 2, figsize=(10, 3.6))
    x = [float(row.get(x_label) or i) for i, row in enumerate(rows)]
    for name in ("d_loss", "g_loss"):
        losses.plot(x, [float(row[name]) for row in rows], label=name)
    for name in ("d_acc", "d_real", "d_fake"):
        scores.plot(x, [float(row[name]) for row in rows], label=name)
    losses.set_title("losses")
    scores.set_title("discriminator")
    for axis in (losses, scores):
        axis.set_xlabel(x_label)
        axis.legend()
        axis.grid(alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def save_histograms(real: np.ndarray, generated: np.ndarray, noise: np.ndarray, path: Path, title: str = "") -> Path:
    """Tutorial 003's picture: step histograms of real, generated and input values."""
    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(6, 3.6))
    series = ((real, "Real"), (generated, "Generated"), (noise, "Input"))
    # Shared bins: with each series binned on its own range, heights can't be compared.
    finite = np.concatenate([np.ravel(v)[np.isfinite(np.ravel(v))] for v, _ in series])
    bins = np.histogram_bin_edges(finite, bins=80) if finite.size else 80
    for values, label in series:
        axis.hist(np.ravel(values), bins=bins, histtype="step", label=label)
    axis.legend(loc=0)
    axis.set_title(title)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
