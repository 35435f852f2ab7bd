"""Training side effects: sample pictures, checkpoints, NaN guard, val FID.

Kept out of `GAN.train_step` (as keras-io's GANMonitor is) so the compiled
step stays pure and each side effect can be switched on or off by itself.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from gan_pkg import data as data_lib
from gan_pkg import features as features_lib
from gan_pkg import pictures, runs
from gan_pkg.class_code import noise_with_class
from gan_pkg.classifier import BATCH
from gan_pkg.config import GANConfig
from gan_pkg.files import atomic_path, write_json
from gan_pkg.gan import class_rows, sample_latent
from gan_pkg.metrics import fid, kid
from gan_pkg.swd import swd

def scalar(value) -> float:
    """A logged metric as a float: 0-d, or shape [1] under MultiWorkerMirroredStrategy."""
    return float(np.asarray(value).reshape(-1)[0])


class SampleMonitor(keras.callbacks.Callback):
    """Each epoch: a grid from fixed noise (same noise every epoch, so progress
    is visible), the same grid in TensorBoard; a conditional GAN's grid has one
    row per class with the same noise down each column. 1-D presets get seed
    003's histogram and mean/std line instead."""

    CLASS_COLUMNS = 8

    def __init__(self, config: GANConfig, workdir: Path, holdout: np.ndarray, num: int = 64):
        super().__init__()
        self.config = config
        self.directory = Path(workdir) / runs.SAMPLES
        self.holdout = holdout
        self.labels, self.columns = None, None
        classes = config.classes
        if classes.drawn_classes:
            rows, self.labels = class_rows(classes.drawn_classes, self.CLASS_COLUMNS)
            num, self.columns = self.CLASS_COLUMNS, self.CLASS_COLUMNS
        self.noise = sample_latent((num, config.latent_dim), [config.seed, 7], config.latent_distribution, config.latent_range)
        if classes.drawn_classes:
            self.noise = tf.gather(self.noise, rows)
        if classes.noise_code:  # the class rides in the noise: the generator takes no label
            self.noise, self.labels = noise_with_class(self.noise, self.labels, classes.noise_code), None
        self.writer = tf.summary.create_file_writer(str(Path(workdir) / runs.TENSORBOARD / "samples"))

    def on_epoch_end(self, epoch, logs=None):
        generated = self.model.sample(self.noise, self.labels)
        step = int(self.model.g_optimizer.iterations.numpy())
        picture = self.directory / f"epoch_{epoch + 1:04d}.png"
        if self.config.is_image:
            images = data_lib.to_unit_range(generated, self.config.output_range).numpy()
            pictures.save_grid(images, picture, self.columns)
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


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback writing epoch scalars only, without its per-step hooks.
    With `update_freq="epoch"` (the default) and no profiling those hooks record nothing,
    yet they call `tf.summary.scalar` for every log after every step; on a small GAN that
    is a measurable share of the step (docs/BENCHMARKS.md, C9)."""

    def __init__(self, log_dir: str, **kwargs):
        super().__init__(log_dir, write_graph=False, update_freq="epoch", profile_batch=0, **kwargs)

    def on_train_batch_begin(self, batch, logs=None):
        pass

    def on_train_batch_end(self, batch, logs=None):
        pass


class HistoryPlot(keras.callbacks.Callback):
    """Append each epoch's metrics to history.csv (kept across resumes) and
    redraw loss.png from the whole file."""

    COLUMNS = ("epoch", "step", "d_loss", "g_loss", "d_acc", "d_real", "d_fake", "val_fid", "val_kid", "val_swd")

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


class TimeBudget(keras.callbacks.Callback):
    """`--max-time`: stop at the end of the step that crosses `seconds` of training
    (set-up excluded), as PyTorch Lightning's `max_time`. The epoch then ends early;
    `partial_epoch` tells the checkpointer that it did not complete."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = float(seconds)
        self.started = None
        self.reached = False
        self.partial_epoch = False

    def on_train_begin(self, logs=None):
        self.started = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        if not self.reached and time.monotonic() - self.started >= self.seconds:
            self.reached = True
            self.partial_epoch = batch + 1 < (self.params or {}).get("steps", batch + 1)
            self.model.stop_training = True


class ProgressBar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, except that an epoch cut short (`--max-time`, the NaN guard)
    ends at the step it reached. Keras finalises every epoch at its planned step count,
    so the last line of a stopped run claimed a whole epoch and divided its time by it."""

    def on_epoch_end(self, epoch, logs=None):
        if self.progbar is not None and 0 < self.seen < (self.target or 0):
            self.progbar.update(self.seen, list((logs or {}).items()), finalize=True)
        else:
            super().on_epoch_end(epoch, logs)


class EMAStatistics(keras.callbacks.Callback):
    """The EMA generator's batch-norm statistics, measured on its own weights at the end
    of every epoch (GAN.refresh_ema_statistics): before anything samples from it,
    checkpoints it or exports it. Keras ends the epoch even when a callback stops
    training mid-epoch (--max-time, the NaN guard), so the last state is covered too."""

    def on_epoch_end(self, epoch, logs=None):
        self.model.refresh_ema_statistics()


class Checkpointer(keras.callbacks.Callback):
    """Whole-model `.keras` (both optimizers, their step) after every epoch.

    Written to a temporary file and renamed into place, so a run killed at any
    moment leaves only complete checkpoints behind. Under a multi-worker
    strategy every worker must save (reading the metrics' sync-on-read
    variables is a collective), so non-chief workers save to a scratch file
    and delete it, as Keras' own multi-worker checkpointing does.

    A `budget` that stopped mid-epoch gets its checkpoint numbered by the epochs
    completed (the weights are newer): a rerun redoes that epoch from its start.
    """

    def __init__(self, directory: Path, guard: NaNGuard, keep: int = runs.KEEP_CHECKPOINTS, chief: bool = True,
                 budget: TimeBudget | None = None):
        super().__init__()
        self.directory, self.guard, self.keep, self.chief, self.budget = Path(directory), guard, keep, chief, budget

    def on_epoch_end(self, epoch, logs=None):
        if self.guard.failure or not all(math.isfinite(scalar(v)) for v in (logs or {}).values()):
            return  # never overwrite good weights with poisoned ones
        if not self.chief:
            with tempfile.TemporaryDirectory() as scratch:
                self.model.save(os.path.join(scratch, "worker.keras"))
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        completed = epoch if self.budget is not None and self.budget.partial_epoch else epoch + 1
        target = runs.checkpoint_path(self.directory, completed)
        with atomic_path(target) as temporary:
            self.model.save(temporary)
        for _, old in runs.list_checkpoints(self.directory)[: -self.keep]:
            old.unlink(missing_ok=True)
        if "val_fid" in (logs or {}):
            self._keep_if_best(target, completed, scalar(logs["val_fid"]))

    def _keep_if_best(self, checkpoint: Path, epoch: int, fid: float) -> None:
        """best.keras: the checkpoint with the lowest val_fid so far (kept across resumes)."""
        record = self.directory / "best.json"
        best = json.loads(record.read_text())["val_fid"] if record.exists() else math.inf
        if fid >= best:
            return
        with atomic_path(self.directory / "best.keras") as temporary:
            shutil.copyfile(checkpoint, temporary)
        write_json(record, {"val_fid": fid, "epoch": epoch, "checkpoint": checkpoint.name})


class ValFID(keras.callbacks.Callback):
    """Every `every` epochs (and at the last one): FID and KID of `num_samples`
    images from fixed noise through `model.inference_generator` vs the held-out
    set, in the feature space gan_pkg.evaluate uses for this data, and their SWD
    (gan_pkg.swd), which needs no feature space. Writes `val_fid`, `val_kid` and
    `val_swd` into the epoch logs (between evaluations the last values are
    repeated, so the keys are always there for keras-tuner and CSV loggers) and,
    given `log_dir`, TensorBoard scalars at the generator step. Put it before
    callbacks that read the logs.

    `features`: the gan_pkg.features.FeatureSpace to measure in; None chooses one
    for `data` (gan_pkg.data.Data; None loads it from `config.data` when the choice
    needs it; a data classifier it trains is kept in `store`, the run's workdir). When
    no space fits (unlabelled images, no InceptionV3 weights), one line says so and
    the logs get `val_swd` only, never `val_fid` or `val_kid` (no made-up inf that
    would rank checkpoints or trials).

    `holdout`: the held-out uint8 images (default `data.holdout`). `num_samples`:
    fixed-noise images per check (InceptionV3 reads each at 299x299, so a check
    costs far more there than in a classifier's space)."""

    def __init__(self, config: GANConfig, holdout=None, every: int = 1, num_samples: int = 500, log_dir=None,
                 batch_size: int = BATCH, features=None, data=None, log=print, store=None):
        super().__init__()
        if not config.is_image:
            raise ValueError(f"ValFID needs an image preset; {config.preset!r} makes 1-D samples")
        self.config, self.every, self.batch_size = config, max(1, int(every)), batch_size
        self.last: dict = {}
        if features is None:  # chosen now, so a missing network fails (or is said) before the first epoch
            try:
                features = features_lib.feature_space(config, data, store=store, log=log)
            except features_lib.FeatureSpaceUnavailable as error:
                log(f"val_fid off: {error}; val_swd only")
        self.features = features
        if holdout is None:
            holdout = (data if data is not None else data_lib.load(config)).holdout
        self.holdout = np.asarray(holdout, np.float32) / 255.0
        self.ref_feats = None if self.features is None else self.features(self.holdout)[0]
        self.noise = sample_latent((num_samples, config.latent_dim), [config.seed, 97], config.latent_distribution, config.latent_range)
        classes = config.classes.label_input_classes
        self.labels = np.arange(num_samples) % classes if classes else None  # every class alike
        self.writer = tf.summary.create_file_writer(str(log_dir)) if log_dir else None

    def _samples(self) -> np.ndarray:
        batches = [slice(i, i + self.batch_size) for i in range(0, int(self.noise.shape[0]), self.batch_size)]
        return np.concatenate(
            [
                data_lib.to_unit_range(
                    self.model.sample(self.noise[b], None if self.labels is None else self.labels[b]), self.config.output_range
                ).numpy()
                for b in batches
            ]
        ).astype(np.float32)

    def compute(self) -> dict:
        """val_swd, and val_fid and val_kid where a feature space exists; inf for non-finite samples."""
        names = ("val_swd",) if self.features is None else ("val_fid", "val_kid", "val_swd")
        images = self._samples()
        if not np.isfinite(images).all():
            return dict.fromkeys(names, float("inf"))
        scores = {"val_swd": swd(images, self.holdout)["swd"]}
        if self.features is not None:
            feats, _ = self.features(images)
            scores.update(val_fid=fid(feats, self.ref_feats), val_kid=kid(feats, self.ref_feats, subsets=50, rng=0)[0])
        return scores

    def on_epoch_end(self, epoch, logs=None):
        last_epoch = (self.params or {}).get("epochs")
        if (epoch + 1) % self.every == 0 or not self.last or (last_epoch and epoch + 1 >= last_epoch):
            self.last = self.compute()
            if self.writer is not None:
                optimizer = getattr(self.model, "g_optimizer", None)
                step = int(optimizer.iterations.numpy()) if optimizer is not None else epoch + 1
                with self.writer.as_default():
                    for name, value in self.last.items():
                        tf.summary.scalar(name, value, step=step)
                self.writer.flush()
        if logs is not None:
            logs.update(self.last)
