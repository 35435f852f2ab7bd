"""The training CLI as a user runs it: train, export, resume, fail clearly."""

import csv
import json
import signal
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest
from PIL import Image

from gan_pkg import callbacks, runs, training
from gan_pkg.cli import parse_duration
from gan_pkg.data import to_unit_range
from conftest import REPO, run_python
from tiny import tiny, tiny_flags

TINY_FLAGS = tiny_flags("dcgan")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("fit")
    result = run_python(
        "-m", "gan_pkg.fit", "--steps", "6", "--batch-size", "8", "--workdir", str(root / "run"),
        "--export-base", str(root / "export"), *TINY_FLAGS,
    )
    assert result.returncode == 0, result.stderr
    return root, result


def test_fit_trains_draws_pictures_checkpoints_and_exports(trained):
    root, result = trained
    run = root / "run"
    assert "exported generator to" in result.stdout
    assert "remapper failed" not in result.stderr  # TensorFlow's error line on the training graph
    for picture in ("samples/latest.png", "samples/epoch_0001.png", "loss.png"):
        assert (run / picture).stat().st_size > 0, picture
    assert runs.list_checkpoints(run / "checkpoints")
    assert json.loads((run / "config.json").read_text())["g_filters"] == [8, 4]
    assert (root / "export" / "gan" / "1" / "saved_model.pb").exists()
    rows = (run / "history.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,step,d_loss,g_loss") and len(rows) == 2
    assert {"epoch_d_loss", "epoch_g_loss", "epoch_d_acc"} <= tensorboard_tags(run / "tensorboard" / "train")
    # The default codes a digit in the noise: its grid has one row per digit, 8 columns, drawn at 3x.
    assert Image.open(run / "samples" / "latest.png").size == (3 * (8 * 30 + 2), 3 * (10 * 30 + 2))


def tensorboard_tags(directory) -> set[str]:
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    events = [event_pb2.Event.FromString(record.numpy()) for path in directory.iterdir() for record in tf.data.TFRecordDataset(str(path))]
    return {value.tag for event in events for value in event.summary.value}


def test_export_loads_without_gan_pkg_and_reproduces_the_generator(trained):
    root, _ = trained
    noise = np.random.default_rng(0).normal(size=(3, 100)).astype(np.float32)
    script = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np, tensorflow as tf
        loaded = tf.saved_model.load({str(root / "export" / "gan" / "1")!r})
        fn = loaded.signatures["serving_default"]
        out = fn(noise=tf.constant(np.array(json.loads(sys.stdin.read()), np.float32)))
        assert "gan_pkg" not in sys.modules
        print(json.dumps({{k: v.numpy().tolist() for k, v in out.items()}}))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], input=json.dumps(noise.tolist()), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    served = np.array(json.loads(result.stdout)["images"])
    model = runs.load_checkpoint(runs.list_checkpoints(root / "run" / "checkpoints")[-1][1])
    expected = to_unit_range(model.inference_generator(noise, training=False), (-1.0, 1.0)).numpy()
    assert served.shape == (3, 28, 28, 1)
    np.testing.assert_allclose(served, expected, atol=1e-5)


def test_a_fresh_process_loads_a_run_through_the_public_api(trained):
    # What a notebook does: nothing imported but gan_pkg itself, so every custom layer of
    # the default's generator must be registered by the loader.
    root, _ = trained
    script = textwrap.dedent(
        f"""
        import gan_pkg
        config, model, checkpoint = gan_pkg.load_run({str(root / "run")!r})
        print(checkpoint.name, tuple(model.generate(2).shape))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["ckpt-0001.keras", "(2,", "28,", "28,", "1)"]


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "digits.npz"  # 640 training images at batch 16: epochs of 40 steps
    np.savez(data, x=rng.integers(0, 255, (650, 28, 28), dtype=np.uint8), y=np.arange(650) % 10)
    command = [sys.executable, "-m", "gan_pkg.fit", "--steps", "120", "--data", str(data),
               "--workdir", str(tmp_path / "run"), "--no-export", *tiny_flags("dcgan", batch_size=16, holdout=10)]
    env = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO, "PATH": "/usr/bin:/bin"}
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 180
    while not runs.list_checkpoints(tmp_path / "run" / "checkpoints") and time.monotonic() < deadline:
        assert first.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    epoch, _ = runs.list_checkpoints(tmp_path / "run" / "checkpoints")[-1]
    assert epoch < 3, "killed too late to test resuming"

    second = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert second.returncode == 0, second.stderr
    resumed = [line for line in second.stdout.splitlines() if line.startswith("resumed from")]
    assert resumed == [f"resumed from {tmp_path / 'run' / 'checkpoints' / f'ckpt-{epoch:04d}.keras'} at step {epoch * 40} (epoch {epoch})"]
    assert "to step 120" in second.stdout


@pytest.mark.parametrize(
    "text, seconds", [("90", 90), ("90s", 90), ("4m", 240), ("1h30m", 5400), ("1.5h", 5400), ("00:04:00", 240), ("00:00:04:00", 240)]
)
def test_max_time_reads_durations_as_lightning_and_people_write_them(text, seconds):
    assert parse_duration(text) == seconds


def _small_npz(tmp_path):
    path = tmp_path / "few.npz"
    np.savez(path, x=np.random.default_rng(0).integers(0, 255, (74, 28, 28), dtype=np.uint8))
    return path


def test_max_time_stops_after_the_step_that_crosses_it_and_a_rerun_resumes(tmp_path):
    cfg = tiny("dcgan", data=str(_small_npz(tmp_path)), holdout=10, steps=16)  # 2 epochs of 8 steps
    stopped = training.train(cfg, tmp_path / "run", verbose=0, max_seconds=1e-9)  # every step crosses it
    assert stopped.out_of_time and stopped.step == 1
    # The checkpoint counts completed epochs (none): the rerun redoes epoch 1 from its start.
    assert [epoch for epoch, _ in runs.list_checkpoints(tmp_path / "run" / "checkpoints")] == [0]
    finished = training.train(cfg, tmp_path / "run", verbose=0)
    assert finished.resumed_from.name == "ckpt-0000.keras" and not finished.out_of_time
    assert finished.step == 1 + 16
    assert [epoch for epoch, _ in runs.list_checkpoints(tmp_path / "run" / "checkpoints")] == [1, 2]
    assert not training.train(cfg, tmp_path / "run", verbose=0, max_seconds=1e-9).out_of_time  # nothing left to train


def test_a_log_line_of_an_epoch_cut_short_counts_the_steps_it_ran(tmp_path, capsys):
    cfg = tiny("dcgan", data=str(_small_npz(tmp_path)), holdout=10, steps=16)  # 2 epochs of 8 steps
    training.train(cfg, tmp_path / "run", verbose=2, max_seconds=1e-9)  # stops after step 1
    lines = [line for line in capsys.readouterr().out.splitlines() if "/step" in line]
    assert len(lines) == 1 and lines[0].startswith("1/8 - "), lines


class _PoisonDiscriminator(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            for variable in self.model.discriminator.trainable_variables:
                variable.assign(variable * np.nan)


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = tiny("dcgan", data=str(_small_npz(tmp_path)), holdout=10, steps=24)  # 3 epochs of 8 steps
    with pytest.raises(callbacks.TrainingDiverged, match=r"d_loss became nan at step 9; the last good checkpoint is .*ckpt-0001\.keras"):
        training.train(cfg, tmp_path / "run", verbose=0, extra_callbacks=[_PoisonDiscriminator()])
    assert [epoch for epoch, _ in runs.list_checkpoints(tmp_path / "run" / "checkpoints")] == [1]
    good = runs.load_checkpoint(tmp_path / "run" / "checkpoints" / "ckpt-0001.keras")
    assert all(np.isfinite(np.array(v)).all() for v in good.discriminator.weights)


def test_rerun_with_a_different_architecture_refuses_to_mix_runs(trained):
    root, _ = trained
    result = run_python("-m", "gan_pkg.fit", "--steps", "6", "--batch-size", "8", "--workdir", str(root / "run"),
                        "--no-export", *TINY_FLAGS, "--set", "g_filters=[16,4]")
    assert result.returncode == 2
    assert "g_filters: (8, 4) in the checkpoint, (16, 4) now" in result.stderr
    assert "Traceback" not in result.stderr


def _wrong_shape_npz(tmp_path):
    path = tmp_path / "rgb.npz"
    np.savez(path, x_train=np.zeros((20, 32, 32, 3), np.uint8))
    return path


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--set", "nosuch=1"], "nosuch"),
        (["--steps", "0"], "steps must be at least 1"),
        (["--steps", "many"], "invalid int value"),
        (["--preset", "stylegan"], "invalid choice"),
        (["--max-time", "4x"], "--max-time: '4x' is not a time budget"),
        (["--data", "/no/such/dir"], "/no/such/dir: no such file or folder"),
        (["--preset", "dist1d", "--data", "mnist-sample", "--steps", "1"], "trains on 1-D vectors; use --data normal1d"),
        (lambda p: ["--data", str(_wrong_shape_npz(p)), "--image-size", "30"], "got 30"),
        (lambda p: ["--data", str(_wrong_shape_npz(p)), "--channels", "2"], "--channels"),
    ],
)
def test_bad_flags_exit_2_with_one_clear_line(tmp_path, flags, message, capsys):
    """In process (fit.main is the command's whole body); the next test runs one case as a
    user does, where TensorFlow's own start-up lines would show."""
    from gan_pkg import fit

    flags = flags(tmp_path) if callable(flags) else flags
    try:
        code = fit.main(["--workdir", str(tmp_path / "run"), "--no-export", *flags])
    except SystemExit as exited:
        code = exited.code
    stderr = capsys.readouterr().err
    assert code == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "error: " in lines[0] and message in lines[0], stderr
    assert not (tmp_path / "run").exists()  # nothing written


def test_a_bad_flag_prints_one_line_and_nothing_else_from_a_fresh_interpreter(tmp_path):
    result = run_python("-m", "gan_pkg.fit", "--workdir", str(tmp_path / "run"), "--no-export", "--data", str(_wrong_shape_npz(tmp_path)), "--channels", "2")
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "error: " in lines[0] and "--channels" in lines[0], result.stderr
    assert not (tmp_path / "run").exists()


def test_val_fid_is_logged_and_the_best_checkpoint_kept(tmp_path):
    path = tmp_path / "few.npz"  # labelled: measured in the features of a classifier trained on them
    np.savez(path, x=np.random.default_rng(0).integers(0, 255, (74, 28, 28), dtype=np.uint8), y=np.arange(74) % 2)
    cfg = tiny("dcgan", data=str(path), holdout=10, steps=16)  # 2 epochs of 8 steps
    training.train(cfg, tmp_path / "run", verbose=0, val_fid_every=1)
    with open(tmp_path / "run" / "history.csv") as f:
        rows = list(csv.DictReader(f))
    fids = [float(row["val_fid"]) for row in rows]
    assert len(fids) == 2 and all(np.isfinite(fids))
    best = json.loads((tmp_path / "run" / "checkpoints" / "best.json").read_text())
    assert best["val_fid"] == pytest.approx(min(fids), rel=1e-6)
    assert (tmp_path / "run" / "checkpoints" / "best.keras").is_file()
    assert any((tmp_path / "run" / "tensorboard" / "val_fid").iterdir())


def test_resume_skips_half_written_and_damaged_checkpoints(tmp_path, capsys):
    cfg = tiny("dcgan", data=str(_small_npz(tmp_path)), holdout=10, steps=16)  # 2 epochs of 8 steps
    training.train(cfg, tmp_path / "run", verbose=0)
    checkpoints = tmp_path / "run" / "checkpoints"
    # What a kill during a checkpoint write leaves (a temporary file), and a
    # newest checkpoint damaged on disk afterwards.
    (checkpoints / ".tmp-abc.keras").write_bytes(b"PK\x03\x04 half a zip")
    (checkpoints / "ckpt-0002.keras").write_bytes(b"damaged")
    longer = tiny("dcgan", data=str(_small_npz(tmp_path)), holdout=10, steps=24)  # a third epoch
    result = training.train(longer, tmp_path / "run", verbose=0)
    out = capsys.readouterr().out
    assert "skipping unreadable checkpoint" in out and "ckpt-0002.keras" in out
    assert f"resumed from {checkpoints / 'ckpt-0001.keras'} at step 8 (epoch 1)" in out
    assert result.step == 24
    assert not list(checkpoints.glob(".tmp-*"))


def test_unwritable_workdir_fails_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError, match="cannot write to workdir"):
        training.train(tiny("dcgan", data=str(_small_npz(tmp_path)), holdout=10), blocker / "run", verbose=0)


def test_full_disk_fails_before_training(tmp_path, monkeypatch):
    import shutil

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1 << 20))
    with pytest.raises(OSError, match=r"not enough disk space in .*: 1 MiB free"):
        training.train(tiny("dcgan", data=str(_small_npz(tmp_path)), holdout=10), tmp_path / "run", verbose=0)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_export_cli_reexports_a_run_and_rejects_a_missing_one(trained, tmp_path):
    root, _ = trained
    result = run_python("-m", "gan_pkg.export", "--checkpoint", str(root / "run"), "--export-base", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "gan" / "1" / "saved_model.pb").is_file()
    missing = run_python("-m", "gan_pkg.export", "--checkpoint", str(tmp_path / "nope"), "--export-base", str(tmp_path))
    lines = [line for line in missing.stderr.splitlines() if line.strip()]
    assert missing.returncode == 2 and len(lines) == 1 and "no such workdir or checkpoint" in lines[0], missing.stderr
