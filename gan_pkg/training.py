"""train(config, workdir): build or resume a GAN, fit it, leave pictures behind.

The library half of `python -m gan_pkg.fit`. A workdir (gan_pkg.runs) holds
everything of one run; rerunning with the same workdir resumes from its last
complete checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from pathlib import Path

import keras

from gan_pkg import architectures, callbacks, runs, runtime
from gan_pkg import data as data_lib
from gan_pkg import plan as plan_lib
from gan_pkg.config import GANConfig
from gan_pkg.gan import GAN
from gan_pkg.recipe import Recipe


@dataclasses.dataclass
class TrainResult:
    model: GAN
    data: data_lib.Data
    config: GANConfig
    workdir: Path
    step: int
    resumed_from: Path | None
    chief: bool = True
    out_of_time: bool = False  # stopped by max_seconds before config's budget; a rerun resumes


# -- model --------------------------------------------------------------------
def learning_rate_schedule(config: GANConfig, learning_rate: float, updates_per_step: int = 1):
    """The learning rate, or a schedule decaying it to 0 over the run's `steps`
    (`updates_per_step`: how often the optimizer steps per training step, D's d_steps)."""
    decay_steps = max(1, config.steps * updates_per_step)
    if config.lr_schedule == "linear":
        return keras.optimizers.schedules.PolynomialDecay(learning_rate, decay_steps, end_learning_rate=0.0, power=1.0)
    if config.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps)
    return learning_rate


def make_optimizer(config: GANConfig, learning_rate, updates_per_step: int = 1) -> keras.optimizers.Optimizer:
    learning_rate = learning_rate_schedule(config, learning_rate, updates_per_step)
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
        seed=config.seed,
        conditioning=config.classes,
    )
    model.compile(
        d_optimizer=make_optimizer(config, config.d_learning_rate, config.d_steps),
        g_optimizer=make_optimizer(config, config.g_learning_rate),
        recipe=Recipe.of(config),
        jit_compile=runtime.resolve_jit_compile(config.jit_compile, runtime.resolve_precision(config.precision), config.strategy),
        steps_per_execution=config.steps_per_execution,
    )
    model.build_optimizers()
    return model


def plan_epochs(config: GANConfig, steps_per_epoch: int) -> tuple[int, int]:
    """(epochs, steps_per_epoch) covering `config.steps` (or `config.epochs` passes)."""
    if config.epochs:
        return config.epochs, steps_per_epoch
    epochs = math.ceil(config.steps / steps_per_epoch)
    return epochs, math.ceil(config.steps / epochs)  # epochs x steps >= steps, overshoot < epochs


def train(
    config: GANConfig,
    workdir: str | os.PathLike,
    verbose=None,
    extra_callbacks=(),
    model: GAN | None = None,
    val_fid_every: int = 0,
    max_seconds: float | None = None,
    data: data_lib.Data | None = None,
) -> TrainResult:
    """Train (or resume) one run in `workdir`; raises DataError, ConfigConflict,
    TrainingDiverged with messages meant for the user.

    `config` is a planned one (gan_pkg.plan: sized to its data), trained as it is; `data`
    is the plan's, or None to plan here and refuse a config the data would change.

    `model` (built by `build_gan(config)`, as keras-tuner's HyperModel.build
    does) is trained when the workdir has no checkpoint to resume from.
    `val_fid_every` > 0 measures val_fid/val_kid every that many epochs (image
    presets); the checkpointer then also keeps the best one as best.keras.
    `max_seconds` stops at the end of the step that crosses that much training
    time, checkpoints, and returns with `out_of_time` set.
    """
    workdir = Path(workdir)
    if data is None:  # bad data fails before anything is written
        planned = plan_lib.plan(config)
        plan_lib.check_planned(config, planned.config)
        data = planned.data
    runs.prepare(workdir, config)
    precision = runtime.resolve_precision(config.precision)
    strategy = runtime.make_strategy(config.strategy)
    chief = runtime.is_chief(strategy)
    if chief:
        runs.remove_stale_temporaries(workdir)
    checkpoints = workdir / runs.CHECKPOINTS
    with runtime.dtype_policy(precision), strategy.scope():
        resumed = runs.latest_loadable(checkpoints)
        if resumed:
            initial_epoch, resumed_from, model = resumed
            step = int(model.g_optimizer.iterations.numpy())
            print(f"resumed from {resumed_from} at step {step} (epoch {initial_epoch})")
        else:
            initial_epoch, resumed_from = 0, None
            model = model if model is not None else build_gan(config)
        runs.check_free_space(workdir, model)

        epochs, steps_per_epoch = plan_epochs(config, data_lib.steps_per_epoch(data, config))
        guard = callbacks.NaNGuard()
        budget = callbacks.TimeBudget(max_seconds) if max_seconds else None
        run_callbacks = [guard] + ([budget] if budget else []) + ([callbacks.EMAStatistics()] if model.ema_generator is not None else [])
        if val_fid_every and config.is_image:  # first: later callbacks read its logs
            log_dir = workdir / runs.TENSORBOARD / "val_fid"
            run_callbacks.append(callbacks.ValFID(config, data.holdout, every=val_fid_every, log_dir=log_dir, data=data, store=workdir))
        run_callbacks += extra_callbacks
        if chief:  # other workers train in lockstep and write nothing
            runs.save_config(workdir, config)
            run_callbacks += [
                callbacks.EpochTensorBoard(str(workdir / runs.TENSORBOARD)),
                callbacks.SampleMonitor(config, workdir, data.holdout),
                callbacks.HistoryPlot(workdir / runs.HISTORY_FILE, workdir / runs.LOSS_PLOT),
            ]
        run_callbacks += [callbacks.Checkpointer(checkpoints, guard, chief=chief, budget=budget), callbacks.ProgressBar()]
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
        last = runs.list_checkpoints(checkpoints)
        kept = f"the last good checkpoint is {last[-1][1]}" if last else "no checkpoint was written"
        raise callbacks.TrainingDiverged(f"training stopped: {guard.failure}; {kept}")
    step = int(model.g_optimizer.iterations.numpy())
    out_of_time = bool(budget and budget.reached and step < epochs * steps_per_epoch)
    return TrainResult(model, data, config, workdir, step, resumed_from, chief, out_of_time)
