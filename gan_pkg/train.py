"""train(config, workdir): build or resume a GAN, fit it, leave pictures behind.

The library half of `python -m gan_pkg.fit`. A workdir holds everything of
one run: config.json, checkpoints/, history.csv, loss.png, samples/,
tensorboard/. Rerunning with the same workdir resumes from its last complete
checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shutil
import sys
from pathlib import Path

import keras
import tensorflow as tf

from gan_pkg import architectures, callbacks
from gan_pkg import data as data_lib
from gan_pkg.config import GANConfig
from gan_pkg.gan import GAN

# Fields a rerun may change without conflicting with its checkpoint.
RESUMABLE_CHANGES = frozenset({"steps", "epochs"})


class ConfigConflict(ValueError):
    pass


@dataclasses.dataclass
class TrainResult:
    model: GAN
    data: data_lib.Data
    config: GANConfig
    workdir: Path
    step: int
    resumed_from: Path | None
    chief: bool = True


# -- execution environment ------------------------------------------------------
def cpu_model_and_flags() -> tuple[str, set[str]]:
    """The CPU's model name and ISA flags from /proc/cpuinfo; ("", set()) where there is none."""
    model, flags = "", set()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return model, flags
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not model:
            model = value.strip()
        elif key.strip() == "flags":
            flags = set(value.split())
            break
    return model, flags


def _cpu_has_bf16() -> bool:
    return bool(cpu_model_and_flags()[1] & {"amx_bf16", "avx512_bf16"})


def resolve_precision(precision: str) -> str:
    """`auto`: float16 + loss scaling on GPU, bfloat16 where the CPU has it."""
    if precision != "auto":
        return precision
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    return "mixed_bfloat16" if _cpu_has_bf16() else "float32"


@contextlib.contextmanager
def dtype_policy(name: str):
    """Keras' dtype policy is global; scope it so runs in one process don't leak."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Only the chief of a multi-worker cluster writes checkpoints, pictures and
    exports (TF_CONFIG's "chief", or worker 0 when the cluster names none)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}; use default, mirrored or multi-worker")


# -- model --------------------------------------------------------------------
def make_optimizer(config: GANConfig, learning_rate: float) -> keras.optimizers.Optimizer:
    if config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate, beta_1=config.beta_1, beta_2=config.beta_2)
    if config.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate, momentum=config.momentum)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=config.momentum, nesterov=config.nesterov)
    raise ValueError(f"unknown optimizer {config.optimizer!r}; use adam, rmsprop or sgd")


def build_gan(config: GANConfig) -> GAN:
    """Fresh GAN for `config`, compiled with its optimizers (call in a strategy scope)."""
    generator, discriminator = architectures.build(config)
    model = GAN(
        generator,
        discriminator,
        latent_dim=config.latent_dim,
        latent_distribution=config.latent_distribution,
        latent_range=config.latent_range,
        ema_decay=config.ema_decay,
        seed=config.seed,
    )
    model.compile(
        d_optimizer=make_optimizer(config, config.d_learning_rate),
        g_optimizer=make_optimizer(config, config.g_learning_rate),
        loss=config.loss,
        label_smoothing=config.label_smoothing,
        d_steps=config.d_steps,
        gp_weight=config.gp_weight,
        reuse_fakes=config.reuse_fakes,
        jit_compile=config.jit_compile,
        steps_per_execution=config.steps_per_execution,
    )
    model.build_optimizers()
    return model


def load_checkpoint(path: Path) -> GAN:
    return keras.saving.load_model(path, compile=True)


def load_run(source: str | os.PathLike) -> tuple[GANConfig, GAN, Path]:
    """(config, model, checkpoint) of a run: a workdir (its newest checkpoint)
    or one of its `.keras` files. Raises FileNotFoundError saying what is missing."""
    source = Path(source)
    if source.is_dir():
        workdir, found = source, callbacks.list_checkpoints(source / "checkpoints")
        if not found:
            raise FileNotFoundError(f"{source}: no checkpoints/ckpt-*.keras; is it a gan_pkg.fit workdir?")
        checkpoint = found[-1][1]
    elif source.is_file():
        workdir, checkpoint = source.parent.parent, source
    else:
        raise FileNotFoundError(f"{source}: no such workdir or checkpoint")
    config_file = workdir / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file}: missing; the run's config is needed")
    return GANConfig.from_json(config_file.read_text()), load_checkpoint(checkpoint), checkpoint


# -- resume -------------------------------------------------------------------
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


def _latest_loadable(directory: Path) -> tuple[int, Path, GAN] | None:
    for epoch, path in reversed(callbacks.list_checkpoints(directory)):
        try:
            return epoch, path, load_checkpoint(path)
        except Exception as error:  # a damaged file: fall back to the one before
            print(f"skipping unreadable checkpoint {path}: {type(error).__name__}: {error}")
    return None


def plan_epochs(config: GANConfig, steps_per_epoch: int) -> tuple[int, int]:
    """(epochs, steps_per_epoch) covering `config.steps` (or `config.epochs` passes)."""
    if config.epochs:
        return config.epochs, steps_per_epoch
    epochs = math.ceil(config.steps / steps_per_epoch)
    return epochs, math.ceil(config.steps / epochs)  # epochs x steps >= steps, overshoot < epochs


def _check_workdir(workdir: Path) -> None:
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = workdir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"0" * 4096)
        probe.unlink()
    except OSError as error:
        raise OSError(f"cannot write to workdir {workdir}: {error.strerror or error}") from None


def _check_free_space(workdir: Path, model: GAN, keep: int) -> None:
    """Fail before training, not at the first checkpoint, when the disk is full."""
    variables = model.weights + model.d_optimizer.variables + model.g_optimizer.variables
    checkpoint_bytes = sum(math.prod(v.shape) * tf.as_dtype(v.dtype).size for v in variables)  # no reads, no copies
    needed = 2 * keep * checkpoint_bytes + (16 << 20)  # checkpoints (and a temporary) + pictures and logs
    free = shutil.disk_usage(workdir).free
    if free < needed:
        raise OSError(f"not enough disk space in {workdir}: {free >> 20} MiB free, checkpoints need about {needed >> 20} MiB")


def _remove_stale_temporaries(checkpoints: Path) -> None:
    """Half-written checkpoints of a run killed mid-save (never loaded anyway)."""
    for stale in checkpoints.glob(".tmp-*"):
        stale.unlink(missing_ok=True)


def train(
    config: GANConfig,
    workdir: str | os.PathLike,
    verbose=None,
    extra_callbacks=(),
    model: GAN | None = None,
    val_fid_every: int = 0,
) -> TrainResult:
    """Train (or resume) one run in `workdir`; raises DataError, ConfigConflict,
    TrainingDiverged with messages meant for the user.

    `model` (built by `build_gan(config)`, as keras-tuner's HyperModel.build
    does) is trained when the workdir has no checkpoint to resume from.
    `val_fid_every` > 0 measures val_fid/val_kid every that many epochs (image
    presets); the checkpointer then also keeps the best one as best.keras.
    """
    workdir = Path(workdir)
    data = data_lib.load(config)  # bad data fails before anything is written
    _check_workdir(workdir)
    config_file = workdir / "config.json"
    checkpoints = workdir / "checkpoints"
    if config_file.exists() and callbacks.list_checkpoints(checkpoints):
        _check_same_run(GANConfig.from_json(config_file.read_text()), config, workdir)

    precision = resolve_precision(config.precision)
    strategy = make_strategy(config.strategy)
    chief = is_chief(strategy)
    if chief and checkpoints.is_dir():
        _remove_stale_temporaries(checkpoints)
    with dtype_policy(precision), strategy.scope():
        resumed = _latest_loadable(checkpoints)
        if resumed:
            initial_epoch, resumed_from, model = resumed
            step = int(model.g_optimizer.iterations.numpy())
            print(f"resumed from {resumed_from} at step {step} (epoch {initial_epoch})")
        else:
            initial_epoch, resumed_from = 0, None
            model = model if model is not None else build_gan(config)
        _check_free_space(workdir, model, callbacks.Checkpointer.KEEP)

        epochs, steps_per_epoch = plan_epochs(config, data_lib.steps_per_epoch(data, config))
        guard = callbacks.NaNGuard()
        history = workdir / "history.csv"
        run_callbacks = [guard]
        if val_fid_every and config.is_image:  # first: later callbacks read its logs
            from gan_pkg import evaluate

            log_dir = workdir / "tensorboard" / "val_fid"
            run_callbacks.append(evaluate.ValFID(config, data.holdout, every=val_fid_every, log_dir=log_dir))
        run_callbacks += extra_callbacks
        if chief:  # other workers train in lockstep and write nothing
            config_file.write_text(config.to_json())
            run_callbacks += [
                keras.callbacks.TensorBoard(str(workdir / "tensorboard"), write_graph=False),
                callbacks.SampleMonitor(config, workdir, data.holdout),
                callbacks.HistoryPlot(history, workdir / "loss.png"),
            ]
        run_callbacks.append(callbacks.Checkpointer(checkpoints, guard, chief=chief))
        if verbose is None:  # a live bar on a terminal, one line per epoch in logs
            verbose = 1 if sys.stdout.isatty() else 2
        if initial_epoch < epochs:
            print(f"training {config.preset}: {epochs} epochs x {steps_per_epoch} steps of batch {config.batch_size}, {precision}")
            model.fit(
                data_lib.training_dataset(data, config),
                epochs=epochs,
                initial_epoch=initial_epoch,
                steps_per_epoch=steps_per_epoch,
                callbacks=run_callbacks,
                verbose=verbose,
                shuffle=False,  # the dataset shuffles itself
            )
    if guard.failure:
        last = callbacks.list_checkpoints(checkpoints)
        kept = f"the last good checkpoint is {last[-1][1]}" if last else "no checkpoint was written"
        raise callbacks.TrainingDiverged(f"training stopped: {guard.failure}; {kept}")
    step = int(model.g_optimizer.iterations.numpy())
    return TrainResult(model, data, config, workdir, step, resumed_from, chief)
