"""The benchmark scripts' own logic: they run rarely, so a broken one would go unseen."""

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
import tensorflow as tf

# bench/ is on pytest's pythonpath (pyproject.toml): its scripts import by name, as they do
# when run (`python bench/x.py` puts bench/ first); none shadows a package (tests/project/test_layout.py).
import time_to_quality
import train_throughput

from gan_pkg import features as features_lib

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.parametrize("name", sorted(path.stem for path in BENCH.glob("*.py")))
def test_every_bench_script_imports(name):
    importlib.import_module(name)


def test_contenders_are_presets_with_changes_and_bad_ones_fail_before_training():
    name, config = time_to_quality.parse_contender("dcgan:ema_decay=0.999,reuse_fakes=true")
    assert (name, config.preset, config.ema_decay, config.reuse_fakes) == ("dcgan:ema_decay=0.999,reuse_fakes=true", "dcgan", 0.999, True)
    assert time_to_quality.parse_contender("tutorial")[1] == time_to_quality.parse_contender("dcgan")[1]
    with pytest.raises(ValueError, match="nosuch"):
        time_to_quality.parse_contender("dcgan:nosuch=1")
    with pytest.raises(ValueError, match="unknown preset"):
        time_to_quality.parse_contender("nosuch")


def test_contenders_take_short_labels_one_per_contender():
    (label, spec, config), (tutorial, *_) = time_to_quality.parse_contenders(["dcgan:ema_decay=0", "tutorial"], ["no EMA", "seeds' loop"])
    assert (label, spec, config.ema_decay, tutorial) == ("no EMA", "dcgan:ema_decay=0", 0.0, "seeds' loop")
    assert [label for label, *_ in time_to_quality.parse_contenders(["dcgan", "tutorial"])] == ["dcgan", "tutorial"]
    with pytest.raises(ValueError, match="1 labels for 2 contenders"):
        time_to_quality.parse_contenders(["dcgan", "tutorial"], ["only one"])


def test_time_to_a_fid_is_interpolated_between_probes():
    curve = [(0.0, 0, 300.0), (60.0, 200, 40.0), (120.0, 400, 10.0), (180.0, 600, 12.0)]
    assert time_to_quality.seconds_to(curve, 20.0) == pytest.approx(100.0)
    assert time_to_quality.seconds_to(curve, 10.0) == pytest.approx(120.0)
    assert time_to_quality.seconds_to(curve, 5.0) is None


def test_throughput_bench_measures_a_matmul_peak_and_counts_fewer_flops_with_one_forward_and_folded_upsampling():
    assert train_throughput.matmul_peak(tf.float32, n=64, repeats=2) > 0
    from gan_pkg import architectures
    from gan_pkg import config as config_lib

    seeds_layers = config_lib.preset("dcgan").replace(g_upsampled_conv=False)
    generator, discriminator = architectures.build(seeds_layers)
    two, one = (train_throughput.step_flops(generator, discriminator, reuse) for reuse in (False, True))
    assert one == two - train_throughput.forward_flops(generator)
    assert round(two / 1e6, 1) == 825.8  # the figures docs/BENCHMARKS.md quotes
    folded = train_throughput.config_flops(seeds_layers.replace(g_upsampled_conv=True, reuse_fakes=True))
    assert round(folded / 1e6, 1) == 361.2  # the folded layer's 4 taps per output where the pair had 9
    spectral = architectures.build(config_lib.preset("sndcgan"))[1]  # wrapped layers count too
    assert train_throughput.forward_flops(spectral) == train_throughput.forward_flops(discriminator)


def test_step_parts_are_timed_for_both_generator_forms_in_bfloat16():
    rows = train_throughput.time_parts(batch=2, hows=("mixed_bfloat16",), repeats=1)
    assert [part for part, *_ in rows] == [
        "generator forward, folded, batch 2", "generator forward + backward, folded, batch 2",
        "generator forward, the seeds' layers, batch 2", "generator forward + backward, the seeds' layers, batch 2",
        "discriminator forward + backward, batch 4",
    ]
    assert all(how == "mixed_bfloat16" and ms > 0 and gflops > 0 for _, how, ms, gflops in rows)


def test_keras_norm_variants_train_batch_norm_through_keras_ops_and_the_others_fused():
    images = np.zeros((8, 28, 28, 1), np.float32)
    base = train_throughput.config_lib.preset("dcgan").replace(batch_size=4, precision="float32", jit_compile=False)
    fused_flags = {}
    for name in ("GAN.fit dcgan, Keras' batch-norm ops", "GAN.fit dcgan (precision=auto, jit_compile=auto)"):
        runner = train_throughput.FusedFit(train_throughput.VARIANTS[name](base), images, fused_norm=train_throughput.KERAS_NORM not in name)
        fused_flags[name] = {layer.fused for layer in runner.model.generator._flatten_layers() if hasattr(layer, "fused")}
    assert list(fused_flags.values()) == [{False}, {True}]


def test_step_profile_sums_each_ops_time_per_step_without_counting_wrappers(tmp_path):
    import step_profile

    config = step_profile.config_lib.preset("dcgan").replace(batch_size=4, precision="float32", jit_compile=False)
    runner = train_throughput.FusedFit(config, np.zeros((8, 28, 28, 1), np.float32))
    runner.run(1)
    seconds, per_op = step_profile.profile(runner, 2, tmp_path)
    types = step_profile.by_type(per_op)
    assert seconds > 0 and any("Conv2D" in op_type for op_type in types)
    assert not any(name.endswith(("StatefulPartitionedCall", "::Process")) or "__inference" in name for name in per_op)
    assert sum(types.values()) == pytest.approx(sum(per_op.values()))


def test_grpc_floor_runs_end_to_end_and_prints_every_row(capsys):
    """bench/grpc_floor.py with tiny counts: both echo servers, the minimal Predict server and
    the batcher answer, and each row reports finite numbers."""
    import grpc_floor

    assert grpc_floor.main(["--requests", "20", "--clients", "2", "--per-client", "5"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split("|")[1].strip().split(",")[0] for row in rows] == ["echo", "echo", "minimal Predict", "batcher only"]
    assert "x in-process" in rows[2] and "of in-process batch 16" in rows[3]


def test_ema_sweep_copies_equal_the_ema_generator_training_keeps_and_are_scored_at_probes(tmp_path):
    """bench/ema_sweep.py answers "what would --set ema_decay=d give?" from one run: its copy at
    decay d must be, weight for weight and batch-norm statistic for statistic, the EMA generator
    that training with ema_decay=d keeps and exports."""
    import ema_sweep
    from tiny import tiny

    from gan_pkg import training

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


def test_serving_latency_parses_columnar_rest_responses_and_refuses_others():
    """bench/serving_latency.py's REST client reads `{"outputs": [[...]]}` with NumPy's parser."""
    import serving_latency_servers as servers

    images = (np.arange(8, dtype=np.float32) / 7).reshape(2, 2, 2, 1)
    payload = json.dumps({"outputs": images.tolist()}).encode()
    np.testing.assert_array_equal(servers.rest_images(payload, 2, (2, 2, 1)), images)
    with pytest.raises(servers.Failure, match="holds 8 values, expected 3 images"):
        servers.rest_images(payload, 3, (2, 2, 1))
    with pytest.raises(servers.Failure, match="unexpected REST response"):
        servers.rest_images(b'{"error": "Malformed request"}', 2, (2, 2, 1))


def test_serving_latency_targets_follow_the_cells_and_measure_a_missing_batching_size(capsys):
    """Target 1 compares p50s; target 3 compares with the in-process rate at the batch the
    server can form, measured on demand when the table lacks it."""
    import serving_latency_report as report
    import serving_latency_timing as timing

    def cell(mode, latency, images):
        c = timing.Cell(mode, 1)
        c.add([latency] * 10, images, 1.0, [], 0.0, 0.0)
        return c

    cells = {("in-process", 1): cell("in-process", 0.010, 100), ("grpc", 1): cell("grpc", 0.012, 80),
             ("grpc x2 +batching", 1): cell("grpc x2 +batching", 0.020, 90)}
    asked = []
    assert report.print_targets(cells, [1], 2, 4, None, lambda rows: asked.append(rows) or 100.0) is True
    assert asked == [2]  # min(2 clients x 1 row, max_batch_size 4)
    out = capsys.readouterr().out
    assert "within 1.3x of in-process: met" in out and "at batch 2 = 90% met" in out and "no errors under load: met (no failure in 30" in out
    cells[("grpc", 1)] = cell("grpc", 0.014, 80)
    assert report.print_targets(cells, [1], 2, 4, None, lambda rows: 100.0) is False
    assert "within 1.3x of in-process: NOT met" in capsys.readouterr().out


def test_curves_of_every_contender_and_seed_are_drawn(tmp_path):
    curve = [(0.0, 0, 300.0), (30.0, 100, 40.0), (60.0, 200, 12.0)]
    results = [("dcgan", 0, curve, "mixed_bfloat16"), ("dcgan", 1, curve[:2], "mixed_bfloat16"), ("tutorial", 0, curve, "float32")]
    path = time_to_quality.save_curves(results, tmp_path / "curves" / "ttq.png")
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 300


def test_fid_by_steps_trains_up_to_each_step_count_and_probes_the_exported_generator():
    """fid_by_steps.py and time_to_quality.py share one training helper: `fit(n)` trains n
    more steps and the probe sees the generator gan_pkg exports (the EMA copy when kept)."""
    import fid_by_steps
    from tiny import tiny

    from gan_pkg import data as data_lib

    config = tiny("dcgan-classcode", ema_decay=0.9, batch_size=4)
    data = data_lib.load(config)
    with time_to_quality.preset_training(config, data) as (fit, sampler, model):
        fit(2)
        fit(3)
        assert int(model.g_optimizer.iterations.numpy()) == 5
        assert sampler() is model.ema_generator
    probed = []
    fids = fid_by_steps.fid_at_steps(config, data, lambda generator: probed.append(generator) or float(len(probed)), [2, 5])
    assert fids == [1.0, 2.0] and len(probed) == 2 and probed[0] is probed[1]


def test_fit_overhead_accounts_for_the_whole_training_time():
    """bench/fit_overhead.py on a tiny model for seconds: every part is a row, and the parts
    (the "of which" row aside) add up to the time from the start of training to its end."""
    from conftest import run_python
    from tiny import tiny_flags

    done = run_python(str(BENCH / "fit_overhead.py"), "--max-time", "6s", *tiny_flags("dcgan", batch_size=16), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| ") and not line.startswith("| part")]
    labels = [label.strip() for label, _, _ in rows]
    assert labels[0].startswith("first step") and labels[-1].startswith("the rest")
    assert "after each epoch: Checkpointer" in labels and "after each epoch: SampleMonitor" in labels
    shares = [float(share.strip().rstrip("%")) for label, _, share in rows if not label.strip().startswith("of which")]
    assert sum(shares) == pytest.approx(100.0, abs=0.5)


# -- bench/colour_data.py: emoji packages as class folders, built from fake extracted packages


def _colour_png(path, size, mode="RGBA"):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    colour = {"RGBA": (200, 40, 40, 128), "RGB": (200, 40, 40), "L": 90}.get(mode, 3)
    Image.new(mode, (size, size), colour).save(path)


def _fake_twemoji(root):
    """emoji-datasource-twitter's layout: emoji.json and img/twitter/64/, one entry per case."""
    entries = [
        {"image": "1f600.png", "category": "Smileys & Emotion", "has_img_twitter": True},
        {"image": "1f60a.png", "category": "Smileys & Emotion", "has_img_twitter": True},  # a palette PNG
        {"image": "1f98a.png", "category": "Animals & Nature", "has_img_twitter": True,
         "skin_variations": {"1F3FB": {"image": "1f98a-1f3fb.png", "has_img_twitter": True}}},
        {"image": "1f3fb.png", "category": "Component", "has_img_twitter": True},
        {"image": "1f4a9.png", "category": "Objects", "has_img_twitter": True},  # listed, file missing
        {"image": "1f4aa.png", "category": "Objects", "has_img_twitter": False},  # the set has none
        {"image": "1f680.png", "category": "Travel & Places", "has_img_twitter": True},  # 32x32
        {"image": "1f681.png", "category": "Travel & Places", "has_img_twitter": True},  # grey
        {"image": "../escape.png", "category": "Objects", "has_img_twitter": True},
    ]
    (root / "emoji.json").parent.mkdir(parents=True)
    (root / "emoji.json").write_text(json.dumps(entries))
    (root / "package.json").write_text(json.dumps({"name": "emoji-datasource-twitter", "version": "0.0.1"}))
    images = root / "img" / "twitter" / "64"
    for name in ("1f600.png", "1f98a.png", "1f98a-1f3fb.png", "1f3fb.png"):
        _colour_png(images / name, 64)
    _colour_png(images / "1f60a.png", 64, "P")
    _colour_png(images / "1f680.png", 32)
    _colour_png(images / "1f681.png", 64, "L")
    _colour_png(root / "img" / "twitter" / "escape.png", 64)
    return root


def _files(out):
    return sorted(str(path.relative_to(out)) for path in out.rglob("*") if path.is_file())


def test_colour_data_copies_each_emoji_into_its_category_and_skips_the_rest(tmp_path):
    import colour_data

    package = _fake_twemoji(tmp_path / "package")
    record = colour_data.build(colour_data.SOURCES["twemoji"], package, tmp_path / "twemoji64")
    assert _files(tmp_path / "twemoji64") == [
        ".colour_data.json", "animals-nature/1f98a.png", "smileys-emotion/1f600.png", "smileys-emotion/1f60a.png"]
    assert record["counts"] == {"animals-nature": 1, "smileys-emotion": 2}
    assert record["skipped"] == {"component": 1, "missing": 3, "not 64x64 colour": 2}
    assert (record["package"], record["version"], record["skin_tones"]) == ("emoji-datasource-twitter", "0.0.1", False)
    # Kept as shipped: the same bytes, transparency and palette included.
    for name in ("smileys-emotion/1f600.png", "smileys-emotion/1f60a.png"):
        assert (tmp_path / "twemoji64" / name).read_bytes() == (package / "img/twitter/64" / Path(name).name).read_bytes()
    assert not list(tmp_path.glob(".twemoji64.partial"))

    with_tones = colour_data.build(colour_data.SOURCES["twemoji"], package, tmp_path / "tones", skin_tones=True)
    assert with_tones["counts"]["animals-nature"] == 2 and (tmp_path / "tones/animals-nature/1f98a-1f3fb.png").is_file()


def test_colour_data_reads_openmoji_groups_and_leaves_out_what_is_not_an_emoji_class(tmp_path):
    import colour_data

    root = tmp_path / "package"
    entries = [
        {"hexcode": "1F600", "group": "smileys-emotion", "skintone": ""},
        {"hexcode": "1F44B", "group": "people-body", "skintone": ""},
        {"hexcode": "1F44B-1F3FB", "group": "people-body", "skintone": "1"},
        {"hexcode": "1F3FB", "group": "component", "skintone": ""},
        {"hexcode": "E000", "group": "extras-openmoji", "skintone": ""},
        {"hexcode": "1F1E6", "group": "extras-unicode", "skintone": ""},
        {"hexcode": "1F34E", "group": "food-drink", "skintone": ""},  # file missing
        {"hexcode": "1F697", "group": "travel-places", "skintone": ""},  # 64x64, not 72x72
    ]
    (root / "data").mkdir(parents=True)
    (root / "data" / "openmoji.json").write_text(json.dumps(entries))
    for hexcode in ("1F600", "1F44B", "1F44B-1F3FB", "1F3FB", "E000", "1F1E6"):
        _colour_png(root / "color" / "72x72" / f"{hexcode}.png", 72)
    _colour_png(root / "color" / "72x72" / "1F697.png", 64)

    record = colour_data.build(colour_data.SOURCES["openmoji"], root, tmp_path / "openmoji72")
    assert _files(tmp_path / "openmoji72") == [".colour_data.json", "people-body/1F44B.png", "smileys-emotion/1F600.png"]
    assert record["skipped"] == {"component": 1, "extras-openmoji": 1, "extras-unicode": 1, "missing": 1, "not 72x72 colour": 1}
    assert record["version"] == "17.0.0"  # no package.json: the pinned version
    tones = colour_data.build(colour_data.SOURCES["openmoji"], root, tmp_path / "tones", skin_tones=True)
    assert tones["counts"]["people-body"] == 2


def test_colour_data_cli_builds_once_and_leaves_a_finished_folder_alone(tmp_path, capsys):
    import colour_data

    package, out = _fake_twemoji(tmp_path / "package"), tmp_path / "twemoji64"
    assert colour_data.main(["twemoji", str(out), "--from", str(package)]) == 0
    line = capsys.readouterr().out.strip()
    assert line == (f"{out}/: 3 images in 2 classes (animals-nature 1, smileys-emotion 2) from emoji-datasource-twitter 0.0.1;"
                    " skipped 1 component, 3 missing, 2 not 64x64 colour")
    (out / "smileys-emotion" / "1f600.png").unlink()  # a finished folder is not looked into again
    assert colour_data.main(["twemoji", str(out), "--from", str(package)]) == 0
    assert capsys.readouterr().out.startswith("already built, left alone (--force rebuilds)")
    assert not (out / "smileys-emotion" / "1f600.png").exists()
    assert colour_data.main(["twemoji", str(out), "--from", str(package), "--force"]) == 0
    assert (out / "smileys-emotion" / "1f600.png").is_file()


def test_colour_data_refuses_in_one_line_what_it_cannot_do(tmp_path, capsys, monkeypatch):
    import colour_data

    (tmp_path / "mine").mkdir()
    assert colour_data.main(["twemoji", str(tmp_path / "mine")]) == 2  # not its folder: kept
    assert "is not a folder this script finished: --force replaces it" in capsys.readouterr().err
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))  # no npm to call
    assert colour_data.main(["twemoji", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "npm not found on PATH" in err and not (tmp_path / "out").exists()
    assert colour_data.main(["openmoji", str(tmp_path / "out"), "--from", str(tmp_path)]) == 2
    assert "no readable data/openmoji.json (FileNotFoundError): not laid out as the openmoji package" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial"))


def test_colour_data_extracts_tarballs_inside_their_target_only(tmp_path):
    import io
    import tarfile

    import colour_data

    def tarball(name, members):
        path = tmp_path / name
        with tarfile.open(path, "w:gz") as tar:
            for member, data in members:
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            link = tarfile.TarInfo("package/link")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(link)
        return path

    good = tarball("good.tgz", [("package/package.json", b"{}"), ("package/img/a.png", b"x")])
    top = colour_data.extract(good, tmp_path / "good")
    assert top == (tmp_path / "good" / "package").resolve() and (top / "img" / "a.png").read_bytes() == b"x"
    assert not (top / "link").exists()  # links are left out
    bad = tarball("bad.tgz", [("package/package.json", b"{}"), ("package/../../escaped.txt", b"x")])
    with pytest.raises(colour_data.Failure, match="would land outside"):
        colour_data.extract(bad, tmp_path / "bad")
    assert not (tmp_path / "escaped.txt").exists()


def test_colour_data_says_npm_errors_in_one_line():
    import colour_data

    refused = json.dumps({"error": {"code": "ECONNREFUSED", "summary": "FetchError: request failed, reason: connect ECONNREFUSED"}})
    assert colour_data.npm_error(refused, "") == "ECONNREFUSED: FetchError: request failed, reason: connect ECONNREFUSED"
    assert colour_data.npm_error("", "npm error code E404\nnpm error 404 Not Found\n") == "code E404"
    assert colour_data.slug("Smileys & Emotion") == "smileys-emotion" and colour_data.slug("People & Body") == "people-body"


# -- bench/time_to_quality.py on colour folders: planned contenders, the data's own space, every probe kept


class _PixelSpace(features_lib.FeatureSpace):
    """A stand-in feature space (no network to train): a fixed random projection of the pixels."""

    name, kind, vetted = "random pixel projection (test stub)", "stub", False

    def __init__(self, dim: int, features: int = 8):
        self.weights = np.random.default_rng(0).normal(size=(dim, features)) / np.sqrt(dim)

    def __call__(self, images):
        return np.asarray(images, np.float64).reshape(len(images), -1) @ self.weights, None


@pytest.fixture(scope="module")
def shapes32(tmp_path_factory):
    from gan_pkg.shapes import shapes_folder

    return shapes_folder(tmp_path_factory.mktemp("ttq") / "shapes32", size=32, per_class=40)


def _tiny_spec(preset):
    from tiny import SHRINK

    return preset + ":" + ",".join(f"{field}={json.dumps(list(value), separators=(',', ':'))}" for field, value in SHRINK[preset].items())


def test_contender_changes_may_hold_lists_and_data_values_apply_first():
    name, config = time_to_quality.parse_contender("resnet:g_filters=[8,4],d_filters=[4,8],augment=translation,cutout", {"image_size": 32, "augment": "color"})
    assert (config.g_filters, config.d_filters, config.augment, config.image_size) == ((8, 4), (4, 8), "translation,cutout", 32)
    assert time_to_quality.parse_contender("dcgan", {"data": "somewhere"})[1].data == "somewhere"


def test_mnist_digits_keep_the_shipped_classifiers_probe_and_other_data_get_their_own():
    from gan_pkg import config as config_lib

    default = config_lib.GANConfig.resolve("dcgan-classcode", {})
    assert time_to_quality.uses_mnist_probe(default, "auto") and time_to_quality.uses_mnist_probe(default, "mnist")
    assert not time_to_quality.uses_mnist_probe(default, "data-classifier")
    assert not time_to_quality.uses_mnist_probe(default.replace(image_size=32, image_shape=(32, 32, 1)), "auto")
    assert time_to_quality.default_targets(True, {"fid": 1.4}) == (time_to_quality.TARGETS, "the MNIST classifier's fixed targets")
    assert time_to_quality.default_targets(False, {"fid": 0.5})[0] == tuple(0.5 * m for m in time_to_quality.FLOOR_MULTIPLES)


def test_mnist_probe_measures_fid_as_it_always_has_and_records_more_figures():
    """FIDProbe's FID is the old formula: fixed noise through predict, (x + 1) / 2 clipped, in the shipped classifier's space."""
    from tiny import tiny

    from gan_pkg import architectures
    from gan_pkg import data as data_lib
    from gan_pkg import evaluate

    config = tiny("dcgan")
    data = data_lib.load(config)
    generator, _ = architectures.build(config)
    probe = time_to_quality.FIDProbe(config, data.holdout[:50], 40)
    classifier = evaluate.get_classifier()
    images = np.clip((np.asarray(generator.predict(probe.noise, batch_size=250, verbose=0), np.float32) + 1.0) / 2.0, 0.0, 1.0)
    old = evaluate.fid(classifier(images)[0], classifier(data.holdout[:50].astype(np.float32) / 255.0)[0])
    figures = probe.figures(generator)
    assert probe(generator) == pytest.approx(old) and figures["fid"] == pytest.approx(old)
    assert list(figures) == [key for key in time_to_quality.RECORDED if key in figures] and {"precision", "recall"} <= set(figures)


def test_mnist_sample_races_in_the_shipped_classifiers_space_to_the_fixed_targets():
    from tiny import tiny

    run = time_to_quality.benchmark([("dcgan", "dcgan", tiny("dcgan"))], budget=0.3, every=0.3, seeds=[0], num_samples=24, log=lambda line: None)
    assert run["feature_space"]["kind"] == "mnist-classifier" and run["targets"] == list(time_to_quality.TARGETS)
    assert run["holdout_images"] == 100 and run["image_shape"] == [28, 28, 1]
    (name, seed, curve, how), = run["results"]
    assert name == "dcgan" and len(curve) >= 2 and all("fid" in point[3] for point in curve)


def test_colour_contenders_race_in_the_datas_space_and_every_probe_is_kept(shapes32, tmp_path):
    """Two presets planned for a colour folder, scored by one probe built before the race:
    each probe samples through evaluate.keras_sample_fn and records FID and what else evaluate
    measures; the floor sets the default targets; the JSON and the plot hold every probe."""
    from tiny import tiny_values

    from gan_pkg import config as config_lib

    contenders = [
        (preset, preset, config_lib.GANConfig.resolve(preset, {**tiny_values(preset), "data": str(shapes32), "image_size": 32}))
        for preset in ("dcgan-classcode", "resnet")
    ]
    lines = []
    run = time_to_quality.benchmark(contenders, budget=1.5, every=0.5, seeds=[0], num_samples=24,
                                    features=_PixelSpace(32 * 32 * 3), log=lines.append)
    assert lines[0].startswith(f"{shapes32}: 80 images, 32×32 RGB, 2 classes") and len(run["data_summary"]) == 1
    assert run["image_shape"] == [32, 32, 3] and run["holdout_images"] == 16 and run["feature_space"]["kind"] == "stub"
    assert "check" in run["feature_space"] or not hasattr(time_to_quality.features_lib, "check_space")
    assert len(run["targets"]) == len(time_to_quality.FLOOR_MULTIPLES) and run["real_floor"]["fid"] >= 0
    assert [(name, seed) for name, seed, *_ in run["results"]] == [("dcgan-classcode", 0), ("resnet", 0)]
    for name, _, curve, how in run["results"]:
        assert len(curve) >= 2 and curve[-1][0] >= 1.5 and curve[-1][1] > 0 and how == "float32, no XLA"
        assert all(np.isfinite(point[3]["fid"]) and point[2] == point[3]["fid"] for point in curve)
        assert {"fid", "precision", "recall"} <= set(curve[-1][3]) <= set(time_to_quality.RECORDED)

    record = time_to_quality.json_record(run, {"command": ["test"]})
    path = tmp_path / "ttq.json"
    time_to_quality.files.write_json(path, record)
    written = json.loads(path.read_text())
    assert written["command"] == ["test"] and [r["contender"] for r in written["runs"]] == ["dcgan-classcode", "resnet"]
    assert len(written["probes"]) == sum(len(curve) for *_, curve, _ in run["results"])
    assert all({"contender", "seed", "seconds", "steps", "figures"} <= set(p) and "fid" in p["figures"] for p in written["probes"])
    assert written["runs"][1]["config"]["preset"] == "resnet" and written["runs"][1]["config"]["image_shape"] == [32, 32, 3]
    table = time_to_quality.format_report(run)
    assert "| dcgan-classcode | 0 | float32, no XLA |" in table and "FID at budget" in table
    assert time_to_quality.save_curves(run["results"], tmp_path / "ttq.png").stat().st_size > 0


def test_contenders_planning_different_images_are_refused(shapes32):
    from tiny import tiny_values

    from gan_pkg import config as config_lib

    contenders = [
        (f"{preset} {size}", preset, config_lib.GANConfig.resolve(preset, {**tiny_values(preset), "data": str(shapes32), "image_size": size}))
        for preset, size in (("dcgan-classcode", 32), ("dcgan", 16))
    ]
    with pytest.raises(ValueError, match="contenders plan different images .*16x16x3.*--image-size"):
        time_to_quality.plan_contenders(contenders, log=lambda line: None)


def test_time_to_quality_cli_on_a_colour_folder_writes_every_probe(shapes32, tmp_path, capsys):
    """The command line end to end on a labelled colour folder, scored in its own data
    classifier: the one in the (tests' isolated) user cache, put there first with one epoch
    of training so that the test takes seconds; a contender given as a spec with list values."""
    from gan_pkg import config as config_lib
    from gan_pkg import features
    from gan_pkg.plan import plan

    planned = plan(config_lib.GANConfig.resolve("dcgan-classcode", {"data": str(shapes32), "image_size": 32}), log=lambda line: None)
    features.feature_space(planned.config, planned.data, kind="data-classifier", epochs=1, log=lambda line: None)
    out = tmp_path / "ttq.json"
    time_to_quality.main([
        "--data", str(shapes32), "--image-size", "32", "--contenders", _tiny_spec("dcgan-classcode"), "--labels", "default",
        "--set", "batch_size=8", "--set", "precision=float32", "--set", "jit_compile=false",
        "--budget", "1", "--every", "0.5", "--num-samples", "24", "--json", str(out), "--plot", str(tmp_path / "ttq.png"),
        "--grids", str(tmp_path / "grids"),
    ])
    printed = capsys.readouterr().out
    assert "features: classifier trained on this data's labelled training split (2 classes" in printed
    assert "training a feature classifier" not in printed and "default, seed 0:" in printed
    assert "| default | 0 | float32, no XLA |" in printed and "FID at budget" in printed
    record = json.loads(out.read_text())
    assert record["feature_space"]["kind"] == "data-classifier" and record["feature_space"]["epochs"] == 1
    assert record["targets_from"].startswith("8x4x2 the real floor") and record["command"][:3] == ["bench/time_to_quality.py", "--data", str(shapes32)]
    assert {p["contender"] for p in record["probes"]} == {"default"} and len(record["probes"]) >= 2
    assert all("fid" in p["figures"] and p["seed"] == 0 for p in record["probes"])
    assert (tmp_path / "ttq.png").is_file()
    # the last probe's samples, 8 to a row (24 here: 3 rows of 32x32 tiles at 3x with 2-pixel gaps)
    grid = Image.open(tmp_path / "grids" / "default_seed0.png")
    assert f"samples: {tmp_path / 'grids' / 'default_seed0.png'}" in printed
    assert grid.mode == "RGB" and grid.size == ((8 * 34 + 2) * 3, (3 * 34 + 2) * 3)
