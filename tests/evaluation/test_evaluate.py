"""gan_pkg.evaluate: each metric against an independent computation, the
shipped classifier, and end-to-end evaluation of untrained / briefly trained
generators (CLI included)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from gan_pkg import callbacks, contract, export
from gan_pkg import config as config_lib
from gan_pkg import evaluate as ev
from tiny import tiny

TINY = tiny("dcgan", holdout=config_lib.DCGAN.holdout)  # the trained run's held-out set: both share one floor
NUM = 400  # samples per end-to-end evaluation in tests (default is 2000)


# -- FID ------------------------------------------------------------------------
def _fid_closed_form(mu1, s1, mu2, s2):
    # Symmetric form Tr((S1^1/2 S2 S1^1/2)^1/2) via eigendecompositions, not sqrtm.
    def psd_sqrt(m):
        w, v = np.linalg.eigh(m)
        return (v * np.sqrt(np.clip(w, 0, None))) @ v.T

    r1 = psd_sqrt(s1)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(psd_sqrt(r1 @ s2 @ r1)))


def _random_cov(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_frechet_distance_matches_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = _random_cov(rng, 6), _random_cov(rng, 6)
    assert ev.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(_fid_closed_form(mu1, s1, mu2, s2), rel=1e-8)
    # Diagonal: |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2.
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    expected = 3.0 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert ev.frechet_distance(np.zeros(3), np.diag(a), np.ones(3), np.diag(b)) == pytest.approx(expected)


def test_fid_of_gaussian_samples_approaches_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2 = np.zeros(4), np.array([1.0, -1.0, 0.5, 0.0])
    s1, s2 = _random_cov(rng, 4), _random_cov(rng, 4)
    x = rng.multivariate_normal(mu1, s1, 40_000)
    y = rng.multivariate_normal(mu2, s2, 40_000)
    assert ev.fid(x, y) == pytest.approx(_fid_closed_form(mu1, s1, mu2, s2), rel=0.03)


def test_fid_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(2).normal(size=(500, 32))
    assert ev.fid(x, x) == pytest.approx(0.0, abs=1e-6)


def test_fid_survives_singular_covariance():
    x = np.random.default_rng(3).normal(size=(20, 64))  # fewer samples than dimensions
    assert np.isfinite(ev.fid(x, x + 1.0))


# -- KID ------------------------------------------------------------------------
def _mmd2_unbiased_loops(x, y):
    d = x.shape[1]
    k = lambda a, b: (a @ b / d + 1.0) ** 3  # noqa: E731
    m = len(x)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_one_full_subset_matches_explicit_mmd():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(30, 5)), rng.normal(0.5, 1.0, size=(30, 5))
    mean, _ = ev.kid(x, y, subsets=1, subset_size=30, rng=0)  # a full subset is a permutation
    assert mean == pytest.approx(_mmd2_unbiased_loops(x, y), rel=1e-9)


def test_kid_identical_sets_near_zero_and_shifted_positive():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1000, 16))
    shifted, se_shift = ev.kid(x, x + 0.5, subsets=50, subset_size=200, rng=0)
    assert shifted > 0.05 and shifted > 10 * se_shift
    # The very same set: subsets drawn independently share ~20% of their
    # points, which biases the unbiased estimator slightly below zero.
    same, _ = ev.kid(x, x, subsets=50, subset_size=200, rng=0)
    assert abs(same) < 0.1 * shifted
    # Independent draws of one distribution: zero within the stated error.
    fresh, se = ev.kid(x, rng.normal(size=(1000, 16)), subsets=50, subset_size=200, rng=0)
    assert abs(fresh) < 4 * se


# -- classifier score, precision/recall, mode coverage ----------------------------
@pytest.mark.parametrize("classes", [1, 3, 10])
def test_classifier_score_of_uniform_one_hot_is_number_of_classes(classes):
    probs = np.eye(10)[np.arange(100 * classes) % classes]
    assert ev.classifier_score(probs) == pytest.approx(classes, rel=1e-6)


def test_classifier_score_of_uncertain_predictions_is_one():
    assert ev.classifier_score(np.full((50, 10), 0.1)) == pytest.approx(1.0)


def test_precision_recall_identical_and_disjoint():
    x = np.random.default_rng(6).normal(size=(300, 8))
    assert ev.precision_recall(x, x.copy()) == (1.0, 1.0)
    assert ev.precision_recall(x, x + 1000.0) == (0.0, 0.0)


def test_precision_recall_half_covered():
    # Fakes cover one of two real clusters: precision stays 1, recall halves.
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(200, 4)), rng.normal(size=(200, 4)) + 50
    precision, recall = ev.precision_recall(np.concatenate([a, b]), rng.normal(size=(400, 4)))
    assert precision > 0.85  # a few fresh draws fall outside 200 points' 3-NN balls
    assert recall == pytest.approx(0.5, abs=0.05)


def test_mode_coverage_counts():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 16 + [3] * 4)  # 4% is under 5%
    result = ev.mode_coverage(np.eye(10)[labels])
    assert result["covered"] == 3
    assert result["histogram"][:4] == [0.5, 0.3, 0.16, 0.04]
    assert sum(result["histogram"]) == pytest.approx(1.0)


# -- memorization, 1-D --------------------------------------------------------------
def test_memorization_of_a_training_copy_is_zero():
    rng = np.random.default_rng(8)
    train = rng.random((50, 28, 28, 1)).astype(np.float32)
    samples = np.stack([train[17], rng.random((28, 28, 1)).astype(np.float32)])
    distances = ev.nearest_l1(samples, train)
    expected = min(np.mean(np.abs(samples[1] - t)) for t in train)  # tutorial 001's l1_compare_images
    assert distances[0] == 0.0
    assert distances[1] == pytest.approx(expected, rel=1e-5)
    result = ev.memorization(samples, train, threshold=0.1)
    assert result["nn_l1_min"] == 0.0
    assert result["nn_l1_below_real"] == 0.5


def test_distribution_stats_ks():
    rng = np.random.default_rng(9)
    good = ev.distribution_stats(rng.normal(4.0, 1.25, (100, 100)))
    assert good["ks"] < 0.02 and good["mean"] == pytest.approx(4.0, abs=0.05) and good["std"] == pytest.approx(1.25, abs=0.05)
    assert ev.distribution_stats(rng.normal(0.0, 1.0, (100, 100)))["ks"] > 0.8


# -- the shipped classifier ------------------------------------------------------------
def test_shipped_classifier_heldout_accuracy():
    _, _, x_hold, y_hold = ev.classifier_data()
    feats, probs = ev.get_classifier()(x_hold)
    accuracy = (probs.argmax(axis=1) == y_hold).mean()
    assert accuracy >= 0.97
    assert feats.shape == (len(x_hold), ev.FEATURE_DIM)
    info = json.loads(ev.CLASSIFIER_INFO.read_text())
    assert info["heldout_accuracy"] == pytest.approx(accuracy, abs=1e-4)
    assert info["weights_sha256"] == ev.get_classifier().sha256


def test_missing_classifier_weights_say_what_to_run(tmp_path):
    with pytest.raises(ev.ClassifierMissing, match="--train-classifier"):
        ev.Classifier(tmp_path / "absent.weights.h5")


# -- end to end ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def untrained_result():
    from gan_pkg import architectures

    generator, _ = architectures.build(TINY)
    return ev.evaluate_generator(ev.keras_sample_fn(generator, TINY), TINY, num_samples=NUM)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from gan_pkg import training

    # Tutorial 000's recipe on the tiny architecture, at a faster rate: at 2e-4 its game still
    # swings after 150 steps, now and then past the untrained generator's FID.
    cfg = dataclasses.replace(TINY, steps=150, batch_size=32, g_learning_rate=1e-3, d_learning_rate=1e-3)
    return training.train(cfg, tmp_path_factory.mktemp("run"), verbose=0)


def test_untrained_generator_is_worse_than_the_real_floor(untrained_result):
    gen, floor = untrained_result["generated"], untrained_result["real_floor"]
    assert np.isfinite(gen["fid"]) and gen["fid"] > 5 * floor["fid"]
    assert gen["kid"] > floor["kid"]
    assert floor["precision"] > 0.8 and floor["recall"] > 0.8 and floor["modes_covered"] == 10
    assert floor["classifier_score"] > 8
    assert gen["swd"] > 5 * floor["swd"] and len(gen["swd_levels"]) == len(untrained_result["swd_resolutions"]) == 1
    assert "chroma_ratio" not in gen  # grey digits: no colour figures
    assert 0 < floor["nn_l1_min"] and floor["nn_l1_below_real"] == pytest.approx(ev.MEMORIZATION_QUANTILE, abs=0.01)


def test_mnist_results_name_the_shipped_space_and_its_ten_classes(untrained_result):
    assert untrained_result["features"]["kind"] == "mnist-classifier"
    assert untrained_result["features"]["sha256"] == untrained_result["classifier_sha256"] == ev.get_classifier().sha256
    assert "feature_check" not in untrained_result  # the shipped classifier is vetted by its own test
    table = ev.format_table(untrained_result)
    assert table.splitlines()[0] == f"features: shipped MNIST classifier, {ev.FEATURE_DIM}-unit penultimate layer"
    assert table.splitlines()[1].startswith("metric") and "SWD x1e3 at 28 px" in table
    assert "classifier score (max 10)" in table and "class shares 0..9" in table
    assert "held-out images" in ev.format_markdown(untrained_result, "a run")


def test_briefly_trained_dcgan_between_untrained_and_floor(trained, untrained_result):
    result = ev.evaluate_generator(
        ev.keras_sample_fn(trained.model.inference_generator, trained.config), trained.config, num_samples=NUM, data=trained.data
    )
    fid = result["generated"]["fid"]
    assert result["real_floor"]["fid"] < fid < untrained_result["generated"]["fid"]
    assert result["real_floor"]["fid"] == pytest.approx(untrained_result["real_floor"]["fid"])  # same floor


def test_cli_on_export_writes_evaluation_into_metadata(trained, tmp_path, capsys):
    version = export.export_model(trained.model, trained.config, tmp_path / "export", "gan")
    assert ev.main(["--export", str(tmp_path / "export" / "gan"), "--num-samples", str(NUM)]) == 0
    out = capsys.readouterr().out
    assert "FID" in out and "real floor" in out
    meta = json.loads((version / contract.ASSETS_EXTRA / contract.METADATA_FILE).read_text())
    evaluation = meta["evaluation"]
    assert np.isfinite(evaluation["generated"]["fid"]) and evaluation["num_samples"] == NUM
    assert evaluation["source"] == str(version)
    assert meta["config"] == json.loads(trained.config.to_json())  # the rest untouched
    report = version / contract.ASSETS_EXTRA
    assert json.loads((report / "evaluation.json").read_text())["generated"] == evaluation["generated"]
    assert "| FID" in (report / "evaluation.md").read_text()


def test_cli_asked_for_inception_offline_exits_2_naming_the_file(trained, tmp_path, capsys, monkeypatch):
    from gan_pkg import features

    def offline():
        raise OSError("no network")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(features, "_download_inception", offline)
    assert ev.main(["--workdir", str(trained.workdir), "--num-samples", "10", "--features", "inception"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert str(tmp_path / "keras" / "models" / features.INCEPTION_FILE) in err


def test_cli_on_workdir_writes_reports(trained, capsys):
    assert ev.main(["--workdir", str(trained.workdir), "--num-samples", "100"]) == 0
    result = json.loads((trained.workdir / "evaluation.json").read_text())
    assert result["num_samples"] == 100 and result["training_step"] == trained.step
    assert (trained.workdir / "evaluation.md").is_file()


@pytest.mark.parametrize("make_args", [
    lambda p: ["--export", str(p / "nowhere")],
    lambda p: ["--export", str(p)],  # exists, but no integer versions
    lambda p: ["--workdir", str(p / "nowhere")],
    lambda p: ["--workdir", str(p)],  # no config.json
])
def test_cli_errors_exit_2_with_one_line(tmp_path, capsys, make_args):
    assert ev.main(make_args(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_cli_on_an_export_tf_serving_cannot_run_exits_2_saying_how_to_reexport(tmp_path, capsys):
    from conftest import module_held_export

    module_held_export(tmp_path / "gan" / "1", TINY)
    assert ev.main(["--export", str(tmp_path / "gan"), "--num-samples", "10"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Could not find variable" in err and "python -m gan_pkg.export --checkpoint" in err


def test_cli_missing_classifier_exits_2(tmp_path, capsys, monkeypatch):
    from gan_pkg import classifier

    monkeypatch.setattr(classifier, "_CLASSIFIER", None)
    monkeypatch.setattr(classifier, "CLASSIFIER_WEIGHTS", tmp_path / "absent.weights.h5")
    assert ev.main(["--export", str(tmp_path)]) == 2
    assert "--train-classifier" in capsys.readouterr().err


def test_dist1d_evaluation():
    cfg = config_lib.preset("dist1d")
    sample = lambda seeds: np.random.default_rng(int(seeds[0]) % 2**32).normal(4.0, 1.25, (len(seeds), 100))  # noqa: E731
    result = ev.evaluate_generator(sample, cfg, num_samples=200)
    assert result["generated"]["ks"] < 0.03 and result["real_floor"]["ks"] < 0.03
    shifted = ev.evaluate_generator(lambda s: sample(s) - 4.0, cfg, num_samples=200)
    assert shifted["generated"]["ks"] > 0.8
    assert "KS statistic" in ev.format_table(shifted)


def test_val_fid_callback_puts_scores_in_logs(trained, tmp_path):
    callback = callbacks.ValFID(trained.config, trained.data.holdout, every=2, num_samples=200, log_dir=tmp_path / "tb")
    callback.set_model(trained.model)
    callback.set_params({"epochs": 3})
    logs = {}
    callback.on_epoch_end(0, logs)  # first epoch: computed even off the schedule
    assert np.isfinite(logs["val_fid"]) and np.isfinite(logs["val_kid"]) and np.isfinite(logs["val_swd"])
    first = dict(logs)
    logs = {}
    callback.on_epoch_end(1, logs)
    assert logs["val_fid"] == pytest.approx(first["val_fid"])  # fixed noise, same model
    assert logs["val_swd"] == pytest.approx(first["val_swd"])
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_resolve_version_picks_versions(tmp_path):
    for version in (1, 3, 20):
        (tmp_path / "gan" / str(version)).mkdir(parents=True)
        (tmp_path / "gan" / str(version) / "saved_model.pb").write_bytes(b"")
    (tmp_path / "gan" / ".tmp-version-x").mkdir()
    for not_a_version in ("²", "３", str(2**63)):  # isdigit() says yes; not ASCII digits, or past int64
        (tmp_path / "gan" / not_a_version).mkdir()
    assert export.resolve_version(tmp_path / "gan") == tmp_path / "gan" / "20"  # numeric, not lexical
    assert export.resolve_version(tmp_path / "gan", 3) == tmp_path / "gan" / "3"
    assert export.resolve_version(tmp_path / "gan" / "1") == tmp_path / "gan" / "1"
    with pytest.raises(FileNotFoundError, match="have: 1, 3, 20"):
        export.resolve_version(tmp_path / "gan", 2)
    with pytest.raises(FileNotFoundError, match="no exported version"):
        export.resolve_version(tmp_path / "gan" / ".tmp-version-x")
