"""TFX Trainer/Tuner module conventions, without importing tfx.

TFX calls `run_fn(fn_args)` (Trainer's GenericExecutor) and `tuner_fn(fn_args)` (Tuner)
with an FnArgs object; any object with FnArgs' field names works here (tfx itself does
not install beside TF 2.21: docs/TFX.md). Field use:

- custom_config: {"preset": name, "max_trials": n (tuner_fn), <any GANConfig field>: value} (or None)
- train_files: [pattern]: TFX's `<Examples>/Split-train/*` over ImportExampleGen's gzip
  TFRecords of tf.Example (gan_pkg.records' spec), or anything `--data` takes
- eval_files: [pattern]: TFX's `<Examples>/Split-eval/*`, the held-out split FID is
  measured against (config.holdout_data); [] or None: held out of train_files' data
- train_steps: training steps (optional); eval_steps: generated samples for FID
- hyperparameters: the Tuner's best keras-tuner HyperParameters config dict, or None
- serving_model_dir: where the SavedModel is written (`<Model>/Format-Serving`, Pusher's input)
- model_run_dir: the training workdir (checkpoints, pictures, logs, config.json)
- working_dir (tuner_fn): keras-tuner's directory (TFX gives a temporary folder)
Other fields (schema_path, transform_graph_path, data_accessor, base_model, ...) are unused.
"""

from __future__ import annotations

from typing import NamedTuple

import keras_tuner as kt

from gan_pkg import config as config_lib
from gan_pkg import export, hypermodel, training
from gan_pkg.plan import plan

DEFAULT_EVAL_SAMPLES = 1000
DEFAULT_MAX_TRIALS = 8
TUNER_KEYS = frozenset({"max_trials"})  # custom_config keys for tuner_fn, not GANConfig fields


class TunerFnResult(NamedTuple):
    """What TFX's Tuner component expects back from tuner_fn."""

    tuner: kt.Tuner
    fit_kwargs: dict


def base_config(fn_args) -> config_lib.GANConfig:
    """custom_config's preset and GANConfig fields, then train_files, eval_files and train_steps.
    Keys this module reads itself (TUNER_KEYS) are not config fields."""
    custom = dict(getattr(fn_args, "custom_config", None) or {})
    preset = custom.pop("preset", config_lib.DEFAULT_PRESET)
    values = {key: value for key, value in custom.items() if key not in TUNER_KEYS}
    values |= data_values(fn_args)
    return config_lib.GANConfig.resolve(preset, values, steps=getattr(fn_args, "train_steps", None) or None)


def data_values(fn_args) -> dict:
    """train_files' pattern as `data` and eval_files' as `holdout_data`. TFX gives one pattern
    per split (train_args/eval_args name the splits); several would be silently dropped, so
    they are refused."""
    values = {}
    for field, key in (("train_files", "data"), ("eval_files", "holdout_data")):
        patterns = getattr(fn_args, field, None) or []
        patterns = [patterns] if isinstance(patterns, str) else list(patterns)
        if len(patterns) > 1:
            raise ValueError(f"{field}: {len(patterns)} patterns ({', '.join(patterns)}); gan_pkg trains on one split "
                             "and holds out one: give train_args and eval_args one split each")
        if patterns:
            values[key] = patterns[0]
    return values


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
    result = training.train(config, fn_args.model_run_dir, data=model.data)
    export.write_saved_model(result.model.inference_generator, result.config, fn_args.serving_model_dir, step=result.step,
                             feature_store=fn_args.model_run_dir)


def tuner_fn(fn_args) -> TunerFnResult:
    """A Bayesian search on val_fid (val_swd where the data has no feature space) over filters and learning rates."""
    directory = getattr(fn_args, "working_dir", None) or fn_args.model_run_dir
    model = _hypermodel(fn_args, f"{directory}/trial_runs")
    tuner = kt.BayesianOptimization(
        model,
        objective=model.objective,
        max_trials=int((getattr(fn_args, "custom_config", None) or {}).get("max_trials", DEFAULT_MAX_TRIALS)),
        directory=directory,
        project_name="gan_tuning",
    )
    return TunerFnResult(tuner=tuner, fit_kwargs={})
