"""The benchmark scripts' own logic: they run rarely, so a broken one would go unseen."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str):
    """A bench script as a module, without putting bench/ on sys.path (its serving.py
    would shadow the serving package for every later test in the worker)."""
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_throughput = _load("train_throughput")  # first: time_to_quality imports it by name
time_to_quality = _load("time_to_quality")


def test_contenders_are_presets_with_changes_and_bad_ones_fail_before_training():
    name, config = time_to_quality.parse_contender("dcgan:ema_decay=0.999,reuse_fakes=true")
    assert (name, config.preset, config.ema_decay, config.reuse_fakes) == ("dcgan:ema_decay=0.999,reuse_fakes=true", "dcgan", 0.999, True)
    assert time_to_quality.parse_contender("tutorial")[1] == time_to_quality.parse_contender("dcgan")[1]
    with pytest.raises(ValueError, match="nosuch"):
        time_to_quality.parse_contender("dcgan:nosuch=1")
    with pytest.raises(ValueError, match="unknown preset"):
        time_to_quality.parse_contender("nosuch")


def test_time_to_a_fid_is_interpolated_between_probes():
    curve = [(0.0, 0, 300.0), (60.0, 200, 40.0), (120.0, 400, 10.0), (180.0, 600, 12.0)]
    assert time_to_quality.seconds_to(curve, 20.0) == pytest.approx(100.0)
    assert time_to_quality.seconds_to(curve, 10.0) == pytest.approx(120.0)
    assert time_to_quality.seconds_to(curve, 5.0) is None


def test_throughput_bench_measures_a_matmul_peak_and_counts_fewer_flops_with_one_forward():
    assert train_throughput.matmul_peak(tf.float32, n=64, repeats=2) > 0
    from gan_pkg import architectures
    from gan_pkg import config as config_lib

    generator, discriminator = architectures.build(config_lib.preset("dcgan"))
    two, one = (train_throughput.step_flops(generator, discriminator, reuse) for reuse in (False, True))
    assert one == two - train_throughput.forward_flops(generator)
    assert round(two / 1e6, 1) == 825.8  # the figure docs/BENCHMARKS.md quotes
    spectral = architectures.build(config_lib.preset("sndcgan"))[1]  # wrapped layers count too
    assert train_throughput.forward_flops(spectral) == train_throughput.forward_flops(discriminator)


def test_grpc_floor_runs_end_to_end_and_prints_every_row(capsys):
    """bench/grpc_floor.py with tiny counts: both echo servers, the minimal Predict server and
    the batcher answer, and each row reports finite numbers."""
    grpc_floor = _load("grpc_floor")
    assert grpc_floor.main(["--requests", "20", "--clients", "2", "--per-client", "5"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split("|")[1].strip().split(",")[0] for row in rows] == ["echo", "echo", "minimal Predict", "batcher only"]
    assert "x in-process" in rows[2] and "of in-process batch 16" in rows[3]


def test_ema_sweep_copies_equal_the_ema_generator_training_keeps_and_are_scored_at_probes(tmp_path):
    """bench/ema_sweep.py answers "what would --set ema_decay=d give?" from one run: its copy at
    decay d must be, weight for weight and batch-norm statistic for statistic, the EMA generator
    that training with ema_decay=d keeps and exports."""
    ema_sweep = _load("ema_sweep")
    from gan_pkg import training
    from tiny import tiny

    scored = []
    copies = ema_sweep.EMACopies([0.5, 0.9], probe_steps=[5, 12, 20], score=lambda generator: scored.append(generator) or dict.fromkeys(ema_sweep.COLUMNS, 1.0))
    result = training.train(tiny("dcgan-classcode", ema_decay=0.9, steps=12, batch_size=4, epochs=0), tmp_path / "run", verbose=0, extra_callbacks=[copies])
    model = result.model
    assert result.step == 12
    model.refresh_ema_statistics(generator=copies.copies[0.9])
    for kept, copy in zip(model.ema_generator.weights, copies.copies[0.9].weights):
        np.testing.assert_allclose(np.array(kept), np.array(copy), atol=1e-6, err_msg=kept.path)
    assert not np.allclose(np.array(copies.copies[0.5].trainable_variables[0]), np.array(model.ema_generator.trainable_variables[0]))
    # The one epoch crossed steps 5 and 12: scored once, the live generator then every copy.
    assert [(step, name) for step, name, _ in copies.rows] == [(12, "live"), (12, "EMA 0.5"), (12, "EMA 0.9")]
    assert scored == [model.generator, copies.copies[0.5], copies.copies[0.9]] and copies.probe_steps == [20]
