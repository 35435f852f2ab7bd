"""TFX Trainer/Tuner module conventions, without importing tfx.

TFX calls `run_fn(fn_args)` and `tuner_fn(fn_args)` with an FnArgs object;
any object with FnArgs' field names works here (tfx itself does not install
beside TF 2.21). Field use:

- custom_config: {"preset": name, <any GANConfig field>: value}
- train_files: [data]   (a .npz, an image folder or a dataset name; optional)
- train_steps: training steps (optional); eval_steps: generated samples for FID
- hyperparameters: a keras-tuner HyperParameters config dict (from the Tuner)
- serving_model_dir: where the SavedModel is written (TFX's Pusher takes it)
- model_run_dir: the training workdir (checkpoints, pictures, logs)
- working_dir (tuner_fn): keras-tuner's directory
"""

from __future__ import annotations

import json
from typing import NamedTuple

import keras_tuner as kt

from gan_pkg import config as config_lib
from gan_pkg import export, hypermodel, train

DEFAULT_EVAL_SAMPLES = 1000


class TunerFnResult(NamedTuple):
    """What TFX's Tuner component expects back from tuner_fn."""

    tuner: kt.Tuner
    fit_kwargs: dict


def base_config(fn_args) -> config_lib.GANConfig:
    custom = dict(getattr(fn_args, "custom_config", None) or {})
    config = config_lib.preset(custom.pop("preset", "dcgan")).override(f"{k}={json.dumps(v)}" for k, v in custom.items())
    changes = []
    train_files = getattr(fn_args, "train_files", None)
    if train_files:
        changes.append(f"data={json.dumps(train_files[0] if isinstance(train_files, (list, tuple)) else train_files)}")
    if getattr(fn_args, "train_steps", None):
        changes += [f"steps={int(fn_args.train_steps)}", "epochs=0"]
    return config.override(changes)


def _hypermodel(fn_args, runs_dir) -> hypermodel.GANHyperModel:
    samples = int(getattr(fn_args, "eval_steps", None) or DEFAULT_EVAL_SAMPLES)
    return hypermodel.GANHyperModel(base_config(fn_args), runs_dir, num_eval_samples=samples)


def run_fn(fn_args) -> None:
    """Train (resuming in model_run_dir) and write the SavedModel to serving_model_dir."""
    model = _hypermodel(fn_args, fn_args.model_run_dir)
    config = model.base
    if getattr(fn_args, "hyperparameters", None):
        config = model.config_for(kt.HyperParameters.from_config(fn_args.hyperparameters))
    result = train.train(config, fn_args.model_run_dir)
    export.write_saved_model(result.model.inference_generator, config, fn_args.serving_model_dir, step=result.step)


def tuner_fn(fn_args) -> TunerFnResult:
    """A Bayesian search on val_fid over filters and learning rates."""
    directory = getattr(fn_args, "working_dir", None) or fn_args.model_run_dir
    model = _hypermodel(fn_args, f"{directory}/trial_runs")
    tuner = kt.BayesianOptimization(
        model,
        objective=hypermodel.OBJECTIVE,
        max_trials=int((getattr(fn_args, "custom_config", None) or {}).get("max_trials", 8)),
        directory=directory,
        project_name="gan_tuning",
    )
    return TunerFnResult(tuner=tuner, fit_kwargs={})
