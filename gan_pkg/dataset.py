"""What every data source gives, shared by gan_pkg.data (named sets, .npz) and
gan_pkg.folders (image folders): the split examples, a survey of the source, and the
one error every input problem is raised as."""

from __future__ import annotations

import dataclasses

import numpy as np

NAMED_SOURCES = ("mnist-sample", "mnist", "fashion-mnist", "cifar10")  # --data names that are not paths
HOLDOUT_SEED = 20240601  # fixed forever: the held-out split must not move between runs
GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F", "grey")


class DataError(ValueError):
    """The training data cannot be used; the message says why and what to do."""


@dataclasses.dataclass
class Data:
    """Raw examples (uint8 images, or float32 vectors) split once, forever."""

    train: np.ndarray
    holdout: np.ndarray
    train_labels: np.ndarray | None = None
    holdout_labels: np.ndarray | None = None
    synthetic: bool = False  # normal1d: training batches are drawn fresh each step
    class_names: tuple = ()  # an image folder's class subfolders; () = numeric labels
    notes: tuple = ()  # what loading changed or skipped, one phrase each (gan_pkg.plan prints them)


@dataclasses.dataclass(frozen=True)
class Survey:
    """What a data source holds, read before anything is sized: gan_pkg.plan decides the
    image shape and classes from it. Image folders are surveyed from file headers only."""

    source: str
    count: int
    sizes: tuple  # ((width, height), ...) distinct, sorted
    colour: bool  # any image in colour
    modes: dict  # PIL mode (or array layout) -> count
    num_classes: int = 0  # label values 0..num_classes-1; 0 = no labels
    class_names: tuple = ()  # an image folder's class subfolders, sorted; () = numeric labels
    unreadable: tuple = ()  # files whose header cannot be read
    label_problem: str = ""  # why labels that are there cannot be used (a DataError where training needs them)
    transparent: int = 0  # images with an alpha channel or a transparent colour (composited onto config.background)

    @property
    def min_side(self) -> int:
        return min(min(size) for size in self.sizes)

    def describe(self) -> str:
        """e.g. '600 images, 64×64 RGB' or '40 images, 30×40 to 128×96 (mixed sizes) RGB and grey, 3 with transparency'."""
        (w0, h0), (w1, h1) = self.sizes[0], self.sizes[-1]
        size = f"{w0}×{h0}" if len(self.sizes) == 1 else f"{w0}×{h0} to {w1}×{h1} (mixed sizes)"
        colours = {colour_name(mode) for mode in self.modes}
        alpha = ""
        if self.transparent:
            alpha = ", all with transparency" if self.transparent == self.count else f", {self.transparent:,} with transparency"
        return f"{self.count:,} images, {size} {' and '.join(sorted(colours))}{alpha}"


def colour_name(mode: str) -> str:
    """A PIL mode (or an array layout) as the survey line names it."""
    return "grey" if mode in GREY_MODES else "RGB"


def listing(names, most: int = 3) -> str:
    """Up to `most` names, then how many more."""
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def split(images, labels, holdout: int) -> Data:
    """`holdout` examples kept out, chosen by the fixed seed: the same ones in every run."""
    if len(images) <= holdout:
        raise DataError(f"only {len(images)} examples: need more than the {holdout} held out for evaluation")
    order = np.random.default_rng(HOLDOUT_SEED).permutation(len(images))
    keep, held = order[holdout:], order[:holdout]
    pick = (lambda idx: labels[idx]) if labels is not None else (lambda idx: None)
    return Data(images[keep], images[held], pick(keep), pick(held))
