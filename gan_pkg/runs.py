"""A run's workdir, the one place that knows its layout:

    <workdir>/config.json          the run's GANConfig (resume checks it)
    <workdir>/checkpoints/         ckpt-NNNN.keras per epoch (whole model, both optimizers), best.keras
    <workdir>/history.csv, loss.png, samples/, tensorboard/   written by the training callbacks

`load_run` gives (config, model, checkpoint) of a workdir or a checkpoint file;
train, export and evaluate all go through it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
from pathlib import Path

import keras
import tensorflow as tf

from gan_pkg import architectures  # noqa: F401  registers the custom layers (UpsampledConv2D, ...) with Keras
from gan_pkg.config import GANConfig
from gan_pkg.files import TEMPORARY_PREFIX, write_text
from gan_pkg.gan import GAN  # registers the class with Keras, so checkpoints load

CONFIG_FILE = "config.json"
CHECKPOINTS = "checkpoints"
HISTORY_FILE = "history.csv"
LOSS_PLOT = "loss.png"
SAMPLES = "samples"
TENSORBOARD = "tensorboard"
CHECKPOINT_PATTERN = re.compile(r"^ckpt-(\d+)\.keras$")
KEEP_CHECKPOINTS = 2  # the newest and one before it, in case the newest is damaged

# Fields a rerun may change without conflicting with its checkpoint.
RESUMABLE_CHANGES = frozenset({"steps", "epochs"})


class ConfigConflict(ValueError):
    pass


def checkpoint_path(directory: Path, epoch: int) -> Path:
    return Path(directory) / f"ckpt-{epoch:04d}.keras"


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """(epoch, path) of complete checkpoints, oldest first (temporary files excluded)."""
    if not Path(directory).is_dir():
        return []
    found = [(int(m.group(1)), Path(directory) / name) for name in os.listdir(directory) if (m := CHECKPOINT_PATTERN.match(name))]
    return sorted(found)


def load_checkpoint(path: Path) -> GAN:
    return keras.saving.load_model(path, compile=True)


def latest_loadable(directory: Path) -> tuple[int, Path, GAN] | None:
    """The newest checkpoint that loads; a damaged one falls back to the one before."""
    for epoch, path in reversed(list_checkpoints(directory)):
        try:
            return epoch, path, load_checkpoint(path)
        except Exception as error:
            print(f"skipping unreadable checkpoint {path}: {type(error).__name__}: {error}")
    return None


def saved_config(workdir: Path) -> GANConfig:
    config_file = Path(workdir) / CONFIG_FILE
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file}: missing; the run's config is needed")
    return GANConfig.from_json(config_file.read_text())


def save_config(workdir: Path, config: GANConfig) -> None:
    write_text(Path(workdir) / CONFIG_FILE, config.to_json())


def load_run(source: str | os.PathLike) -> tuple[GANConfig, GAN, Path]:
    """(config, model, checkpoint) of a run: a workdir (its newest checkpoint)
    or one of its `.keras` files. Raises FileNotFoundError saying what is missing."""
    source = Path(source)
    if source.is_dir():
        workdir, found = source, list_checkpoints(source / CHECKPOINTS)
        if not found:
            raise FileNotFoundError(f"{source}: no {CHECKPOINTS}/ckpt-*.keras; is it a gan_pkg.fit workdir?")
        checkpoint = found[-1][1]
    elif source.is_file():
        workdir, checkpoint = source.parent.parent, source
    else:
        raise FileNotFoundError(f"{source}: no such workdir or checkpoint")
    return saved_config(workdir), load_checkpoint(checkpoint), checkpoint


def prepare(workdir: Path, config: GANConfig) -> None:
    """Before anything trains: the workdir is writable and any run already in it is
    this same run (only the budget may change). Raises OSError or ConfigConflict
    saying what to do."""
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = workdir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"0" * 4096)
        probe.unlink()
    except OSError as error:
        raise OSError(f"cannot write to workdir {workdir}: {error.strerror or error}") from None
    if (workdir / CONFIG_FILE).exists() and list_checkpoints(workdir / CHECKPOINTS):
        _check_same_run(saved_config(workdir), config, workdir)


def remove_stale_temporaries(workdir: Path) -> None:
    """Half-written checkpoints of a run killed mid-save (never loaded anyway)."""
    for stale in (Path(workdir) / CHECKPOINTS).glob(f"{TEMPORARY_PREFIX}*"):
        stale.unlink(missing_ok=True)


def _check_same_run(saved: GANConfig, wanted: GANConfig, workdir: Path) -> None:
    differ = [
        f"{f.name}: {getattr(saved, f.name)!r} in the checkpoint, {getattr(wanted, f.name)!r} now"
        for f in dataclasses.fields(GANConfig)
        if f.name not in RESUMABLE_CHANGES and getattr(saved, f.name) != getattr(wanted, f.name)
    ]
    if differ:
        raise ConfigConflict(
            f"{workdir} holds a run with a different config ({'; '.join(differ)}). "
            "Use another --workdir, or delete this one to start over."
        )


def check_free_space(workdir: Path, model: GAN, keep: int = KEEP_CHECKPOINTS) -> None:
    """Fail before training, not at the first checkpoint, when the disk is full."""
    variables = model.weights + model.d_optimizer.variables + model.g_optimizer.variables
    checkpoint_bytes = sum(math.prod(v.shape) * tf.as_dtype(v.dtype).size for v in variables)  # no reads, no copies
    needed = 2 * keep * checkpoint_bytes + (16 << 20)  # checkpoints (and a temporary) + pictures and logs
    free = shutil.disk_usage(workdir).free
    if free < needed:
        raise OSError(f"not enough disk space in {workdir}: {free >> 20} MiB free, checkpoints need about {needed >> 20} MiB")
