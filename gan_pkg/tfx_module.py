"""TFX Trainer/Tuner module conventions, without importing tfx.

TFX calls `run_fn(fn_args)` and `tuner_fn(fn_args)` with an FnArgs object;
any object with FnArgs' field names works here (tfx itself does not install
beside TF 2.21). Field use:

- custom_config: {"preset": name, "max_trials": n (tuner_fn), <any GANConfig field>: value}
- train_files: [data]   (a .npz, an image folder or a dataset name; optional)
- train_steps: training steps (optional); eval_steps: generated samples for FID
- hyperparameters: a keras-tuner HyperParameters config dict (from the Tuner)
- serving_model_dir: where the SavedModel is written (TFX's Pusher takes it)
- model_run_dir: the training workdir (checkpoints, pictures, logs)
- working_dir (tuner_fn): keras-tuner's directory
"""

from __future__ import annotations

from typing import NamedTuple

import keras_tuner as kt

from gan_pkg import config as config_lib
from gan_pkg import export, hypermodel, train
from gan_pkg.plan import plan

DEFAULT_EVAL_SAMPLES = 1000
DEFAULT_MAX_TRIALS = 8
TUNER_KEYS = frozenset({"max_trials"})  # custom_config keys for tuner_fn, not GANConfig fields


class TunerFnResult(NamedTuple):
    """What TFX's Tuner component expects back from tuner_fn."""

    tuner: kt.Tuner
    fit_kwargs: dict


def base_config(fn_args) -> config_lib.GANConfig:
    """custom_config's preset and GANConfig fields, then train_files and train_steps.
    Keys this module reads itself (TUNER_KEYS) are not config fields."""
    custom = dict(getattr(fn_args, "custom_config", None) or {})
    preset = custom.pop("preset", config_lib.DEFAULT_PRESET)
    values = {key: value for key, value in custom.items() if key not in TUNER_KEYS}
    train_files = getattr(fn_args, "train_files", None)
    if train_files:
        values["data"] = train_files[0] if isinstance(train_files, (list, tuple)) else train_files
    return config_lib.GANConfig.resolve(preset, values, steps=getattr(fn_args, "train_steps", None) or None)


def _hypermodel(fn_args, runs_dir) -> hypermodel.GANHyperModel:
    """The search over the planned config (sized to train_files' data), trials on that data."""
    samples = int(getattr(fn_args, "eval_steps", None) or DEFAULT_EVAL_SAMPLES)
    planned = plan(base_config(fn_args))
    return hypermodel.GANHyperModel(planned.config, runs_dir, num_eval_samples=samples, data=planned.data)


def run_fn(fn_args) -> None:
    """Train (resuming in model_run_dir) and write what was trained to serving_model_dir."""
    model = _hypermodel(fn_args, fn_args.model_run_dir)
    config = model.base
    if getattr(fn_args, "hyperparameters", None):
        config = model.config_for(kt.HyperParameters.from_config(fn_args.hyperparameters))
    result = train.train(config, fn_args.model_run_dir, data=model.data)
    export.write_saved_model(result.model.inference_generator, result.config, fn_args.serving_model_dir, step=result.step,
                             feature_store=fn_args.model_run_dir)


def tuner_fn(fn_args) -> TunerFnResult:
    """A Bayesian search on val_fid over filters and learning rates."""
    directory = getattr(fn_args, "working_dir", None) or fn_args.model_run_dir
    model = _hypermodel(fn_args, f"{directory}/trial_runs")
    tuner = kt.BayesianOptimization(
        model,
        objective=hypermodel.OBJECTIVE,
        max_trials=int((getattr(fn_args, "custom_config", None) or {}).get("max_trials", DEFAULT_MAX_TRIALS)),
        directory=directory,
        project_name="gan_tuning",
    )
    return TunerFnResult(tuner=tuner, fit_kwargs={})
