"""keras-tuner search, TFX-style run_fn/tuner_fn, and the blessing push."""

import csv
import json
import math
import types

import pytest

from gan_pkg import config as config_lib
from gan_pkg import export, push, tfx_module
from conftest import REPO, module_held_export, run_python
from tiny import tiny, tiny_flags, tiny_values

DEFAULT = config_lib.DEFAULT_PRESET  # what the search tunes without --preset
TINY_FLAGS = tiny_flags(DEFAULT)


def test_search_writes_its_tables_and_resumes_without_redoing_trials(tmp_path):
    command = [f"{REPO}/tuning/search.py", "--tuner", "random", "--max-trials", "2", "--steps", "3",
               "--num-samples", "100", "--directory", str(tmp_path), *TINY_FLAGS]
    first = run_python(*command, timeout=400)
    assert first.returncode == 0, first.stderr[-2000:]
    out = tmp_path / DEFAULT
    best = json.loads((out / "best_hyperparameters.json").read_text())
    assert set(best["values"]) >= {"g_filters", "d_filters", "g_learning_rate", "d_learning_rate"}
    with open(out / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(row["status"] == "COMPLETED" for row in rows)
    fids = [float(row["val_fid"]) for row in rows]
    assert fids == sorted(fids) and best["val_fid"] == pytest.approx(fids[0], abs=1e-3)
    assert "| trial | status |" in (out / "trials.md").read_text()

    second = run_python(*command, timeout=400)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "2 trial(s) already completed" in second.stdout
    with open(out / "trials.csv") as f:
        assert len(list(csv.DictReader(f))) == 2


def _fn_args(tmp_path, **extra):
    return types.SimpleNamespace(
        custom_config={"preset": "dcgan", "max_trials": 1, **tiny_values("dcgan")}, train_files=["mnist-sample"], eval_files=[], train_steps=4,
        eval_steps=100, serving_model_dir=str(tmp_path / "serving"), model_run_dir=str(tmp_path / "run"),
        hyperparameters=None, working_dir=str(tmp_path / "tuner"), **extra,
    )


@pytest.fixture(scope="module")
def candidate(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfx")
    tfx_module.run_fn(_fn_args(root))
    return root / "serving"


def test_run_fn_trains_and_writes_a_servable_model(candidate):
    assert (candidate / "saved_model.pb").is_file()
    metadata = json.loads((candidate / "assets.extra" / "gan_pkg.json").read_text())
    assert metadata["training_step"] == 4 and metadata["config"]["g_filters"] == [8, 4]


def test_run_fn_exports_what_it_trained_on_data_whose_classes_differ_from_the_presets(tmp_path):
    """The default preset's class code is planned for 2 classes of 32x32 colour shapes (not its
    10 digits): the export's metadata says what config.json says, and TF Serving's loader
    serves the trained generator's images for the same noise."""
    import numpy as np
    from gan_pkg.shapes import shapes_folder

    from gan_pkg import contract, runs, session_loader

    folder = shapes_folder(tmp_path / "shapes", 32, 10)
    fn_args = _fn_args(tmp_path)
    fn_args.custom_config = {"preset": DEFAULT, **tiny_values(DEFAULT, holdout=4)}
    fn_args.train_files = [str(folder)]
    tfx_module.run_fn(fn_args)
    trained_config, model, _ = runs.load_run(fn_args.model_run_dir)
    exported = json.loads((tmp_path / "serving" / "assets.extra" / "gan_pkg.json").read_text())["config"]
    assert exported == json.loads(trained_config.to_json())
    assert (trained_config.aux_classes, trained_config.image_shape, trained_config.class_names) == (2, (32, 32, 3), ("circle", "square"))
    noise = np.random.default_rng(0).standard_normal((3, trained_config.latent_dim)).astype(np.float32)
    served = session_loader.SessionModel(tmp_path / "serving").run(contract.SERVING_DEFAULT, {contract.NOISE: noise})[contract.IMAGES]
    expected = (np.asarray(model.inference_generator(noise, training=False), np.float32) + 1.0) / 2.0
    np.testing.assert_allclose(served, expected, atol=1e-4)


def test_tuner_fn_searches_val_fid_as_tfx_runs_it(tmp_path):
    result = tfx_module.tuner_fn(_fn_args(tmp_path))
    tuner = result.tuner
    assert tuner.oracle.objective.name == "val_fid" and tuner.oracle.objective.direction == "min"
    assert {"g_filters", "d_learning_rate"} <= {hp.name for hp in tuner.oracle.hyperparameters.space}
    # custom_config: max_trials goes to the tuner, the GANConfig fields to every trial's config
    assert tuner.oracle.max_trials == 1
    assert (tuner.hypermodel.base.g_initial_shape, tuner.hypermodel.base.steps) == ((7, 7, 8), 4)
    tuner.search(**result.fit_kwargs)  # what TFX's Tuner component does with the result
    (trial,) = tuner.oracle.trials.values()
    assert trial.status == "COMPLETED" and math.isfinite(trial.metrics.get_last_value("val_fid"))


def test_push_publishes_only_blessed_models(candidate, tmp_path):
    with pytest.raises(push.NotBlessed, match="above --max-fid"):
        push.push(candidate, tmp_path / "export", "gan", max_fid=1.0, num_samples=100)
    assert export.versions(tmp_path / "export" / "gan") == []  # nothing published, nothing half-written

    first = push.push(candidate, tmp_path / "export", "gan", num_samples=100)
    assert first.name == "1"
    recorded = json.loads((first / "assets.extra" / "gan_pkg.json").read_text())["evaluation"]
    assert recorded["generated"]["fid"] > 0
    with pytest.raises(push.NotBlessed, match="does not beat served version 1"):
        push.push(candidate, tmp_path / "export", "gan", num_samples=100)
    assert export.versions(tmp_path / "export" / "gan") == [1]


def test_push_refuses_an_export_tf_serving_cannot_run(tmp_path):
    candidate = module_held_export(tmp_path / "candidate", tiny("dcgan"))
    with pytest.raises(push.NotBlessed, match="infra check failed: .*Could not find variable"):
        push.push(candidate, tmp_path / "export", "gan", num_samples=100)
    assert export.versions(tmp_path / "export" / "gan") == []


@pytest.mark.parametrize("flags, message", [(["--max-trials", "0"], "--max-trials must be at least 1"),
                                            (["--tuner", "grid"], "invalid choice"),
                                            (["--set", "g_filters"], "g_filters")])
def test_search_bad_flags_exit_2_with_one_line(tmp_path, flags, message):
    result = run_python(f"{REPO}/tuning/search.py", "--directory", str(tmp_path / "t"), *flags)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "t").exists()
