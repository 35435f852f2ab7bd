"""Training side effects: sample pictures, checkpoints, NaN guard.

Kept out of `GAN.train_step` (as keras-io's GANMonitor is) so the compiled
step stays pure and each side effect can be switched on or off by itself.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from gan_pkg import data as data_lib
from gan_pkg import pictures
from gan_pkg.config import GANConfig
from gan_pkg.gan import sample_latent

CHECKPOINT_PATTERN = re.compile(r"^ckpt-(\d+)\.keras$")


def scalar(value) -> float:
    """A logged metric as a float: 0-d, or shape [1] under MultiWorkerMirroredStrategy."""
    return float(np.asarray(value).reshape(-1)[0])


class SampleMonitor(keras.callbacks.Callback):
    """Each epoch: a grid from fixed noise (same noise every epoch, so progress
    is visible), the same grid in TensorBoard; 1-D presets get seed 003's
    histogram and mean/std line instead."""

    def __init__(self, config: GANConfig, workdir: Path, holdout: np.ndarray, num: int = 64):
        super().__init__()
        self.config = config
        self.directory = Path(workdir) / "samples"
        self.holdout = holdout
        self.noise = sample_latent((num, config.latent_dim), [config.seed, 7], config.latent_distribution, config.latent_range)
        self.writer = tf.summary.create_file_writer(str(Path(workdir) / "tensorboard" / "samples"))

    def on_epoch_end(self, epoch, logs=None):
        generated = self.model.inference_generator(self.noise, training=False)
        step = int(self.model.g_optimizer.iterations.numpy())
        picture = self.directory / f"epoch_{epoch + 1:04d}.png"
        if self.config.is_image:
            images = data_lib.to_unit_range(generated, self.config.output_range).numpy()
            pictures.save_grid(images, picture)
            with self.writer.as_default():
                tf.summary.image("samples", images[:16], step=step, max_outputs=16)
        else:
            generated = generated.numpy()
            real = self.holdout[: len(generated)]
            pictures.save_histograms(real, generated, self.noise.numpy(), picture, f"epoch {epoch + 1}, step {step}")
            print(
                f"\nMean and Std of Real : ({real.mean():.4f}, {real.std():.4f})"
                f"\nMean and Std of Gen  : ({generated.mean():.4f}, {generated.std():.4f})"
            )
        shutil.copyfile(picture, self.directory / "latest.png")


class HistoryPlot(keras.callbacks.Callback):
    """Append each epoch's metrics to history.csv (kept across resumes) and
    redraw loss.png from the whole file."""

    COLUMNS = ("epoch", "step", "d_loss", "g_loss", "d_acc", "d_real", "d_fake", "val_fid", "val_kid")

    def __init__(self, history_csv: Path, path: Path):
        super().__init__()
        self.history_csv, self.path = Path(history_csv), Path(path)

    def on_epoch_end(self, epoch, logs=None):
        row = {name: scalar(value) for name, value in (logs or {}).items() if name in self.COLUMNS}
        row.update(epoch=epoch + 1, step=int(self.model.g_optimizer.iterations.numpy()))
        new = not self.history_csv.exists()
        with open(self.history_csv, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(self.COLUMNS)
            writer.writerow([row.get(name, "") for name in self.COLUMNS])
        pictures.save_loss_curve(self.history_csv, self.path)


class TrainingDiverged(RuntimeError):
    pass


class NaNGuard(keras.callbacks.Callback):
    """Stop at the first non-finite loss; checkpoints skip the poisoned epoch."""

    def __init__(self):
        super().__init__()
        self.failure: str | None = None

    def on_train_batch_end(self, batch, logs=None):
        for name in ("d_loss", "g_loss"):
            value = (logs or {}).get(name)
            if value is not None and not math.isfinite(scalar(value)):
                step = int(self.model.g_optimizer.iterations.numpy())
                self.failure = f"{name} became {scalar(value)} at step {step}"
                self.model.stop_training = True
                return


def checkpoint_path(directory: Path, epoch: int) -> Path:
    return Path(directory) / f"ckpt-{epoch:04d}.keras"


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """(epoch, path) of complete checkpoints, oldest first (temp files excluded)."""
    if not Path(directory).is_dir():
        return []
    found = [(int(m.group(1)), Path(directory) / name) for name in os.listdir(directory) if (m := CHECKPOINT_PATTERN.match(name))]
    return sorted(found)


class Checkpointer(keras.callbacks.Callback):
    """Whole-model `.keras` (both optimizers, their step) after every epoch.

    Written to a temporary file and renamed into place, so a run killed at any
    moment leaves only complete checkpoints behind. Under a multi-worker
    strategy every worker must save (reading the metrics' sync-on-read
    variables is a collective), so non-chief workers save to a scratch file
    and delete it, as Keras' own multi-worker checkpointing does.
    """

    KEEP = 2  # the newest and one before it, in case the newest is damaged

    def __init__(self, directory: Path, guard: NaNGuard, keep: int = KEEP, chief: bool = True):
        super().__init__()
        self.directory, self.guard, self.keep, self.chief = Path(directory), guard, keep, chief

    def on_epoch_end(self, epoch, logs=None):
        if self.guard.failure or not all(math.isfinite(scalar(v)) for v in (logs or {}).values()):
            return  # never overwrite good weights with poisoned ones
        if not self.chief:
            with tempfile.TemporaryDirectory() as scratch:
                self.model.save(os.path.join(scratch, "worker.keras"))
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        target = checkpoint_path(self.directory, epoch + 1)
        handle, temporary = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".keras")
        os.close(handle)
        try:
            self.model.save(temporary)
            os.replace(temporary, target)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
        for _, old in list_checkpoints(self.directory)[: -self.keep]:
            old.unlink(missing_ok=True)
        if "val_fid" in (logs or {}):
            self._keep_if_best(target, epoch + 1, scalar(logs["val_fid"]))

    def _keep_if_best(self, checkpoint: Path, epoch: int, fid: float) -> None:
        """best.keras: the checkpoint with the lowest val_fid so far (kept across resumes)."""
        record = self.directory / "best.json"
        best = json.loads(record.read_text())["val_fid"] if record.exists() else math.inf
        if fid >= best:
            return
        temporary = self.directory / ".tmp-best.keras"
        shutil.copyfile(checkpoint, temporary)
        os.replace(temporary, self.directory / "best.keras")
        record.write_text(json.dumps({"val_fid": fid, "epoch": epoch, "checkpoint": checkpoint.name}))
