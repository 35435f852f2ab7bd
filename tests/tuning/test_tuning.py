"""keras-tuner search, TFX-style run_fn/tuner_fn, and the blessing push."""

import collections
import csv
import dataclasses
import json
import math
import os
import shutil
import time
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
    assert (trained_config.num_classes, trained_config.image_shape, trained_config.class_names) == (2, (32, 32, 3), ("circle", "square"))
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


def test_data_without_a_feature_space_is_searched_on_val_swd_not_a_stand_in_fid(tmp_path):
    import numpy as np

    from gan_pkg import hypermodel
    from gan_pkg.data import Data
    from gan_pkg.data import load as load_data

    images = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)  # unlabelled RGB
    config = dataclasses.replace(config_lib.GANConfig(), data="unlabelled", image_shape=(32, 32, 3))
    model = hypermodel.GANHyperModel(config, tmp_path, data=Data(images[:30], images[30:]))
    assert model.features is None and "labels" in model.features_missing
    assert (model.objective.name, model.objective.direction) == ("val_swd", "min")
    digits = tiny(DEFAULT)
    assert hypermodel.GANHyperModel(digits, tmp_path, data=load_data(digits)).objective.name == "val_fid"


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


# -- TFX 1.21's executors, field by field (tfx itself does not install beside TF 2.21) ---------
DataAccessor = collections.namedtuple("DataAccessor", "tf_dataset_factory record_batch_factory data_view_decode_fn")


@dataclasses.dataclass
class FnArgs:
    """tfx.components.trainer.fn_args_utils.FnArgs: every field, None unless an executor sets it."""

    working_dir: str | None = None
    train_files: list | None = None
    eval_files: list | None = None
    train_steps: int | None = None
    eval_steps: int | None = None
    schema_path: str | None = None
    schema_file: str | None = None
    transform_graph_path: str | None = None
    transform_output: str | None = None
    data_accessor: DataAccessor | None = None
    serving_model_dir: str | None = None
    eval_model_dir: str | None = None
    model_run_dir: str | None = None
    base_model: str | None = None
    hyperparameters: dict | None = None
    custom_config: dict | None = None


def _unavailable(*args, **kwargs):
    raise AssertionError("the module reads the files itself; tfx_bsl's data accessor is not available here")


def common_fn_args(examples, custom_config, train_steps=0, eval_steps=0, working_dir=None) -> FnArgs:
    """get_common_fn_args: one io_utils.all_files_pattern per split uri (train_args/eval_args
    default to the 'train' and 'eval' splits), custom_config through JSON (exec_properties),
    num_steps 0 as None, no schema, transform graph or base model."""
    return FnArgs(
        working_dir=working_dir,
        train_files=[os.path.join(str(examples), "Split-train", "*")],
        eval_files=[os.path.join(str(examples), "Split-eval", "*")],
        train_steps=train_steps or None, eval_steps=eval_steps or None,
        data_accessor=DataAccessor(_unavailable, _unavailable, None),
        custom_config=json.loads(json.dumps(custom_config)),
    )


def test_fn_args_with_several_split_patterns_are_refused_not_dropped(tmp_path):
    args = common_fn_args(tmp_path, {"preset": DEFAULT})
    args.train_files.append(os.path.join(str(tmp_path), "Split-extra", "*"))
    with pytest.raises(ValueError, match="train_files: 2 patterns .*give train_args and eval_args one split each"):
        tfx_module.base_config(args)
    args.train_files.pop()
    assert {k: getattr(tfx_module.base_config(args), k) for k in ("data", "holdout_data")} == {
        "data": f"{tmp_path}/Split-train/*", "holdout_data": f"{tmp_path}/Split-eval/*"}


def trainer_fn_args(root, examples, custom_config, train_steps, eval_steps, best_hyperparameters_file=None) -> FnArgs:
    """GenericExecutor._GetFnArgs: the Model artifact's Format-Serving and Format-TFMA, the
    ModelRun artifact (a new folder per execution; the launcher creates output uris), and the
    Tuner's best_hyperparameters.txt read with json.loads."""
    model, model_run = root / "Trainer" / "model" / "7", root / "Trainer" / "model_run" / "7"
    model.mkdir(parents=True)
    model_run.mkdir(parents=True)
    args = common_fn_args(examples, custom_config, train_steps, eval_steps)
    args.transform_output = args.transform_graph_path
    args.serving_model_dir = str(model / "Format-Serving")
    args.eval_model_dir = str(model / "Format-TFMA")
    args.model_run_dir = str(model_run)
    args.schema_file = args.schema_path
    args.hyperparameters = json.loads(best_hyperparameters_file.read_text()) if best_hyperparameters_file else None
    return args


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """ImportExampleGen over the writer's records -> Tuner (tuner_fn, one trial) -> its best
    hyperparameters, g_filters set to the choice the trial did not try -> Trainer (run_fn)."""
    from gan_pkg import tfrecords
    from gan_pkg.plan import plan
    from gan_pkg.shapes import shapes_folder

    root = tmp_path_factory.mktemp("pipeline")
    examples = root / "ImportExampleGen" / "examples" / "3"
    shapes = shapes_folder(root / "shapes", 32, 20)  # 40 labelled RGB images: 32 in Split-train, 8 in Split-eval
    assert tfrecords.main(["--data", str(shapes), str(examples)]) == 0
    written = plan(config_lib.GANConfig.resolve("mlp", {"data": str(shapes)}), log=lambda *_: None).data  # what the writer wrote
    custom = {"preset": DEFAULT, "max_trials": 1, **tiny_values(DEFAULT)}
    tuner_args = common_fn_args(examples, custom, train_steps=2, eval_steps=100, working_dir=str(root / "Tuner" / ".temp" / "5"))
    searched = tfx_module.tuner_fn(tuner_args)
    searched.tuner.search(**searched.fit_kwargs)  # what the Tuner executor does with the result
    best = searched.tuner.get_best_hyperparameters()[0].get_config()
    (choice,) = set(next(hp for hp in best["space"] if hp["config"]["name"] == "g_filters")["config"]["values"]) - {best["values"]["g_filters"]}
    best["values"]["g_filters"] = choice
    best_file = root / "Tuner" / "best_hyperparameters" / "5" / "best_hyperparameters.txt"
    best_file.parent.mkdir(parents=True)
    best_file.write_text(json.dumps(best))
    trainer_args = trainer_fn_args(root, examples, {k: v for k, v in custom.items() if k != "max_trials"}, 4, 100, best_file)
    tfx_module.run_fn(trainer_args)
    return types.SimpleNamespace(root=root, tuner=searched.tuner, tuner_args=tuner_args, trainer_args=trainer_args,
                                 g_filters=choice, written=written)


def test_tuner_fn_searches_the_tfrecords_tfx_hands_it(pipeline):
    tuner = pipeline.tuner
    (trial,) = tuner.oracle.trials.values()
    assert trial.status == "COMPLETED" and math.isfinite(trial.metrics.get_last_value("val_fid"))
    assert (tuner.hypermodel.base.data, tuner.hypermodel.base.holdout_data) == tuple(pipeline.tuner_args.train_files + pipeline.tuner_args.eval_files)
    assert tuner.hypermodel.base.num_classes == 2  # the class head: labels read from the records
    data, written = tuner.hypermodel.data, pipeline.written
    for field in ("train", "holdout", "train_labels", "holdout_labels"):  # trained on Split-train, scored against Split-eval
        assert (getattr(data, field) == getattr(written, field)).all(), field
    assert str(tuner.directory).startswith(pipeline.tuner_args.working_dir)


def test_run_fn_trains_the_tuners_best_hyperparameters_against_eval_files(pipeline):
    from gan_pkg import runs
    from gan_pkg.plan import plan

    args = pipeline.trainer_args
    trained = runs.saved_config(args.model_run_dir)
    assert trained.g_filters[0] == pipeline.g_filters != tfx_module.base_config(args).g_filters[0]
    assert (trained.data, trained.holdout_data, trained.steps) == (args.train_files[0], args.eval_files[0], 4)
    assert trained.holdout == len(pipeline.written.holdout) == 8  # every eval record is held out, none trained on
    assert plan(trained, log=lambda *_: None).data.holdout.tobytes() == pipeline.written.holdout.tobytes()
    exported = json.loads((pipeline.root / "Trainer" / "model" / "7" / "Format-Serving" / "assets.extra" / "gan_pkg.json").read_text())
    assert exported["config"] == json.loads(trained.to_json())


def test_run_fns_export_runs_under_tf_servings_loader(pipeline):
    import numpy as np

    from gan_pkg import contract, session_loader

    noise = np.random.default_rng(0).standard_normal((3, 100)).astype(np.float32)
    outputs = session_loader.check_in_fresh_process(pipeline.trainer_args.serving_model_dir,
                                                    {contract.SERVING_DEFAULT: {contract.NOISE: noise}})
    images = outputs[contract.SERVING_DEFAULT][contract.IMAGES]
    assert images.shape == (3, 32, 32, 3) and np.isfinite(images).all() and 0 <= images.min() <= images.max() <= 1


def test_a_version_pushed_as_tfxs_pusher_names_it_is_served(pipeline, tmp_path):
    """Pusher copies Format-Serving into <base_directory>/<int(time.time())>: the embedded server serves it."""
    import io

    from PIL import Image

    from serving import client as client_mod, main as server_main
    from serving_helpers import quiet, server_args

    version = tmp_path / "serving_models" / "gan" / str(int(time.time()))
    shutil.copytree(pipeline.trainer_args.serving_model_dir, version)
    running = server_main.start(server_args(model_base_path=str(version.parent)), log=quiet)
    try:
        with client_mod.GeneratorClient(f"127.0.0.1:{running.grpc_port}", retries=0, timeout=60) as client:
            pictures = [Image.open(io.BytesIO(png)) for png in client.generate_png([1, 2])]
            assert [(p.size, p.mode) for p in pictures] == [((32, 32), "RGB")] * 2
            assert client.generate(seeds=[1, 2, 3]).shape == (3, 32, 32, 3)
            assert [s["version"] for s in client.status()["model_version_status"]] == [version.name]
    finally:
        running.stop(grace=2)
