"""plan(config): settle everything the data decides, once, before any model exists.

The preset says how to train; the data says what: the image size and channels, the
classes (a conditional preset's labels, the class head's), their names and how many
images can be held out. `plan` reads the data, decides all of that, says it in one
line, and returns the config every later step uses unchanged: train, resume, export,
evaluate, tuning and the TFX module all take `Plan.config`, so what is exported is
what was trained.

    shapes/: 600 images, 64×64 RGB, 2 classes (circle, square) -> training at 64×64×3

Colour and resolution are never dropped silently: the size is `image_size` when set,
else the largest side the preset builds that is not above the data's smallest side,
and the line says so (and which flag changes it) whenever that differs from the data.
"""

from __future__ import annotations

import dataclasses

from gan_pkg import data as data_lib
from gan_pkg import sizing
from gan_pkg.config import GANConfig
from gan_pkg.data import Data, DataError, Survey


@dataclasses.dataclass(frozen=True)
class Plan:
    config: GANConfig  # sized to the data: what is built, trained, exported and scored
    data: Data
    summary: str  # the one line that says what was inferred


def plan(config: GANConfig, log=print) -> Plan:
    """The planned config and its loaded data; raises DataError or ValueError saying what
    is wrong (and which flag to pass) before anything is written."""
    config = config.validated()
    if not config.is_image:
        data = data_lib.load(config)
        summary = f"{config.data}: vectors of {config.image_shape[0]} -> training {config.preset}"
        log(summary)
        return Plan(config, data, summary)
    found = data_lib.survey(config)
    shape, size_note = _image_shape(config, found)
    planned = sizing.sized(config, shape)
    planned, class_note = _classes(planned, found)
    planned, holdout_note = _holdout(planned, found.count)
    planned = planned.validated()
    data = data_lib.load(planned)
    notes = [note for note in (size_note, class_note, holdout_note, *data.notes) if note]
    summary = f"{config.data}: {found.describe()}, {_classes_text(found)} -> training at {_shape_text(planned.image_shape)}"
    summary += "".join(f"; {note}" for note in notes)
    log(summary)
    return Plan(planned, data, summary)


def check_planned(config: GANConfig, planned: GANConfig) -> None:
    """Raise ValueError when `config` is not what planning it gives (train() refuses to
    swap a config behind its caller)."""
    differ = [
        f"{f.name} {getattr(config, f.name)!r} -> {getattr(planned, f.name)!r}"
        for f in dataclasses.fields(GANConfig)
        if getattr(config, f.name) != getattr(planned, f.name)
    ]
    if differ:
        raise ValueError(
            f"{config.data} decides {', '.join(differ)}: train the config gan_pkg.plan gives "
            "(plan(config).config, with plan(config).data)"
        )


def _shape_text(shape: tuple) -> str:
    return "×".join(str(v) for v in shape)


def _image_shape(config: GANConfig, found: Survey) -> tuple[tuple, str]:
    """(the shape to train at, a note when it differs from the data's own)."""
    channels = config.channels or (3 if found.colour else 1)
    side = config.image_size
    note = ""
    if not side:
        side = sizing.largest_supported_side(found.min_side) if config.architecture in sizing.CONV_FAMILIES else found.min_side
        if side is None:
            raise DataError(
                f"{config.data}: its images are {found.min_side} pixels on their short side, below the smallest side "
                f"preset {config.preset!r} builds ({sizing.SMALLEST_SIDE}); pass --image-size to upscale them"
            )
        if side != found.min_side:
            note = f"{side} is the largest side preset {config.preset!r} builds up to {found.min_side} (--image-size to choose another)"
    if len(found.sizes) > 1 or any(w != h for w, h in found.sizes):
        how = "centre-cropped to squares" if config.resize == "center-crop" else "stretched to squares"
        note = "; ".join(filter(None, [note, f"{how} (--resize)"]))
    if channels == 1 and found.colour:
        note = "; ".join(filter(None, [note, "colour converted to grey (--channels 1)"]))
    if found.transparent:
        note = "; ".join(filter(None, [note, f"transparent pixels composited onto {config.background} (--background)"]))
    return (side, side, channels), note


def _classes_text(found: Survey) -> str:
    if not found.num_classes:
        return "no labels"
    names = found.class_names or tuple(str(i) for i in range(found.num_classes))
    shown = ", ".join(names) if len(names) <= 10 else f"{', '.join(names[:10])}, ..."
    return f"{found.num_classes} class{'es' * (found.num_classes != 1)} ({shown})"


def _classes(config: GANConfig, found: Survey) -> tuple[GANConfig, str]:
    """The preset's classes sized to the data's: a label-conditional preset needs labels; a
    class code or class head trains without them when the data has no labels or one class
    (and the note says so)."""
    classes = found.num_classes
    names = {"class_names": found.class_names}
    uses = config.classes
    if not uses.uses_labels:
        return config, ""
    if found.label_problem:
        raise DataError(found.label_problem)
    if classes < 2 and uses.generator_takes_label:
        raise DataError(
            f"{config.data}: preset {config.preset!r} is conditional but this data has "
            f"{'no labels' if not classes else 'one class'}; use mnist-sample, an .npz with y_train, or a folder with "
            "one subfolder per class (or --set conditioning=none to train unconditionally)"
        )
    if classes < 2:
        found_text = "no labels" if not classes else "one class"
        note = f"{found_text}: preset {config.preset!r} trains without its classes"
        return config.replace(conditioning="none", num_classes=0, class_loss_weight=0.0), note
    if uses.noise_code and classes > config.latent_dim:
        raise DataError(
            f"{config.data}: its labels cover {classes} classes, more than preset {config.preset!r} can code in its "
            f"{config.latent_dim} noise values; pass --set latent_dim={classes} or more, or --preset dcgan"
        )
    return config.replace(num_classes=classes, **names), ""


def _holdout(config: GANConfig, count: int) -> tuple[GANConfig, str]:
    """Fewer images than twice the held-out split: hold out a fifth instead."""
    if count - config.holdout >= config.holdout:
        return config, ""
    holdout = max(1, count // 5)
    return config.replace(holdout=holdout), f"{holdout} held out for evaluation (a fifth)"
