"""Time to quality: FID (and the other image figures) against training wall-clock, for the tutorials' loop and any presets.

    python bench/time_to_quality.py [--data mnist-sample] [--image-size N] [--contenders tutorial dcgan dcgan-classcode ...]
                                    [--budget 900] [--every 60] [--seeds 0 1 2] [--targets FID ...] [--features auto]
                                    [--set field=value ...] [--labels ...] [--plot curves.png] [--json probes.json]

Each contender trains on `--data` (default: the bundled MNIST sample), once per seed,
for `--budget` seconds of training (the clock stops while a probe measures); every
`--every` seconds a probe samples the generator the preset exports (the EMA copy when it
keeps one, batch-norm statistics re-measured) and measures `--num-samples` images
against the held-out split. A contender is `tutorial` (tutorial 000's train_on_batch
loop), a preset name, or a preset with changes:
`dcgan:ema_decay=0.999,reuse_fakes=true`, `resnet:g_filters=[64,32]`. `--set` changes
every contender (its own changes win). Each contender's config is planned for the data
(gan_pkg.plan: sized to the images, their classes, the held-out split); every contender
must plan the same images, so all are scored against one held-out set.

Two data paths, by the feature space (`--features`, as `python -m gan_pkg.evaluate`
chooses it):

- MNIST digits at 28x28x1 (`mnist-sample`, `mnist`; `--features auto` or `mnist`): the
  shipped MNIST classifier, probed as this script always has (fixed noise through
  `generator.predict`), so FID stays comparable with earlier runs; the FID targets are
  TARGETS unless `--targets` gives others.
- Any other data (a folder of colour images, cifar10, ...): the data's own space
  (gan_pkg.features: InceptionV3 when its weights are cached, else a classifier trained
  once on the data's labels and kept in the user cache), built once before the race. A
  probe samples through `gan_pkg.evaluate.keras_sample_fn` from the seeds
  `python -m gan_pkg.evaluate --seed 0` uses, asking a label-taking generator for every
  class equally often. A space not vetted (a data classifier) is checked once, as
  evaluate checks it (gan_pkg.features.check_space), with a warning when too weak. Without
  `--targets`, the FID targets are FLOOR_MULTIPLES times the real floor (training images
  vs the held-out split, in the same space). No feature space (unlabelled images without
  InceptionV3's weights) is an error: a curve needs FID.

Every probe records FID and, where gan_pkg.evaluate measures them, the other cheap
figures of RECORDED (precision and recall in the feature space; SWD and, for RGB, chroma
ratio and colour distance on the pixels), measured as gan_pkg.evaluate measures them;
memorization, KID and the real floor are not re-measured at each probe (the floor is
measured once). Prints the CPU model and ISA flags, the data, the space and its real floor,
then for each contender and seed the seconds to reach each FID target (interpolated between
probes), the figures and steps at the budget, and each contender's median over seeds.
`--plot` draws FID (and SWD) against training seconds, one line per contender and seed;
`--json` writes every probe (contender, seed, seconds, steps, figures), so tables can be
rebuilt from a run.

A colour run, on the emoji folder bench/colour_data.py builds (`python bench/colour_data.py
twemoji twemoji64/`; `--image-size 64` trains at the emoji's own size):

    python bench/time_to_quality.py --data twemoji64/ --image-size 32 \\
        --contenders dcgan-classcode resnet --seeds 0 1 2 --budget 900 --every 60 \\
        --plot ttq_twemoji32.png --json ttq_twemoji32.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import statistics
import sys
import time
from pathlib import Path

from gan_pkg.cli import import_tensorflow_quietly

import_tensorflow_quietly()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from train_throughput import TutorialLoop, cpu_description  # noqa: E402  (bench/ is the script's directory)

from gan_pkg import config as config_lib  # noqa: E402
from gan_pkg import data as data_lib  # noqa: E402
from gan_pkg import evaluate, files, pictures, runtime, training  # noqa: E402
from gan_pkg.plan import plan  # noqa: E402
from quality_probes import (  # noqa: E402,F401  (bench/ is on the path; tests reach the probes through this module too)
    FLOOR_MULTIPLES, LABELS, RECORDED, TARGETS, DataProbe, FIDProbe, Probe, default_targets, make_probe, real_floor, uses_mnist_probe,
)

CHUNK_STEPS = 25  # steps between clock reads


# -- contenders -------------------------------------------------------------------


def _changes(text: str) -> list[str]:
    """"a=1,b=[8,4]" -> ["a=1", "b=[8,4]"]: split at the commas that start a new field=."""
    return [item for item in re.split(r",(?=\s*[A-Za-z_][A-Za-z0-9_-]*\s*=)", text) if item.strip()]


def parse_contender(spec: str, values: dict | None = None) -> tuple[str, config_lib.GANConfig]:
    """"dcgan:ema_decay=0.999,reuse_fakes=true" -> (spec, config); "tutorial" -> tutorial 000's recipe.
    `values` (config fields: data, image_size, --set's) apply first; the spec's own changes win."""
    preset, _, changes = spec.partition(":")
    values = {**(values or {}), **config_lib.parse_assignments(_changes(changes))}
    return spec, config_lib.GANConfig.resolve("dcgan" if preset == "tutorial" else preset, values)


def parse_contenders(specs: list[str], labels: list[str] | None = None, values: dict | None = None) -> list[tuple[str, str, config_lib.GANConfig]]:
    """(label, spec, config) per contender, in order; a contender's label is its spec unless
    `labels` names each one (the table and the legend then stay readable)."""
    if labels and len(labels) != len(specs):
        raise ValueError(f"{len(labels)} labels for {len(specs)} contenders: give one label per contender, or none")
    return [(label, *parse_contender(spec, values)) for label, spec in zip(labels or specs, specs)]


def plan_contenders(contenders, log=print):
    """(contenders with planned configs, the data, the plan's lines): each config planned for
    its data (gan_pkg.plan), the data loaded once. Raises ValueError when contenders would
    train on different images (another size, channels, split): they could not be compared."""
    planned, data, summaries, first = [], None, [], None
    for label, spec, config in contenders:
        found = plan(config, log=lambda line: None)
        if found.summary not in summaries:
            summaries.append(found.summary)
            log(found.summary)
        if data is None:
            data, first = found.data, (label, found.config)
        elif not _same_images(found.data, data):
            shapes = f"{first[0]} {_shape(first[1].image_shape)} with {len(data.holdout)} held out, {label} {_shape(found.config.image_shape)} with {len(found.data.holdout)}"
            raise ValueError(
                f"contenders plan different images ({shapes}): pass --image-size (or the same data settings to each) "
                "so that every contender trains and is scored on the same images"
            )
        planned.append((label, spec, found.config))
    return planned, data, summaries


def _shape(shape) -> str:
    return "x".join(str(v) for v in shape)


def _same_images(a, b) -> bool:
    return a.train.shape == b.train.shape and a.holdout.shape == b.holdout.shape and np.array_equal(a.holdout, b.holdout)


# -- probes -----------------------------------------------------------------------


def race(name, step_chunk, sampler, probe, budget, every) -> list[tuple[float, int, float, dict]]:
    """Train in chunks until `budget` seconds of training; probe every `every` s.
    `sampler()` gives the generator to probe (after whatever it must do first);
    `probe(generator)` its figures (a dict with "fid"). Points: (seconds, steps, FID, figures)."""
    def point(trained, steps):
        figures = probe(sampler())
        return (trained, steps, figures["fid"], figures)

    curve, trained, steps, next_probe = [point(0.0, 0)], 0.0, 0, every
    while trained < budget:
        start = time.perf_counter()
        step_chunk(CHUNK_STEPS)
        trained += time.perf_counter() - start
        steps += CHUNK_STEPS
        if trained >= next_probe or trained >= budget:
            curve.append(point(trained, steps))
            shown = "  ".join(f"{LABELS[k]} {v:.{2 if k in ('fid', 'swd') else 3}f}" for k, v in curve[-1][3].items())
            print(f"  {name}: {trained:6.1f}s  step {steps:5d}  {shown}", flush=True)
            next_probe += every
    return curve


def seconds_to(curve, target: float):
    """First time FID reaches `target`, interpolated linearly between probes (points: (seconds, steps, FID, ...))."""
    for a, b in zip(curve, curve[1:]):
        (t0, f0), (t1, f1) = (a[0], a[2]), (b[0], b[2])
        if f1 <= target:
            return t0 + (t1 - t0) * (f0 - target) / (f0 - f1) if f0 > target else t0
    return None


@contextlib.contextmanager
def preset_training(config, data):
    """Yield (fit, sampler, model) for a preset: `fit(n)` trains n more of gan_pkg's fused
    steps in the preset's precision, `sampler()` gives the generator it exports (EMA
    statistics re-measured, as at every epoch end in gan_pkg.fit). Shared by this race and
    fid_by_steps.py, so that both measure the same training."""
    keras.utils.set_random_seed(config.seed)
    with runtime.dtype_policy(runtime.resolve_precision(config.precision)):
        model = training.build_gan(config)
        batches = data_lib.training_dataset(data, config)

        def fit(steps: int) -> None:
            model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)

        def sampler():
            model.refresh_ema_statistics()
            return model.inference_generator

        yield fit, sampler, model


def run_contender(spec, config, data, probe, budget, every, label=None):
    """(curve, how it ran) of one contender and seed; `probe(generator, config)` -> figures;
    `label` names it in the progress lines (default: its spec)."""
    measure = lambda generator: probe(generator, config)  # noqa: E731
    if spec == "tutorial":
        keras.utils.set_random_seed(config.seed)
        loop = TutorialLoop(config, data_lib.scale_images(data.train, config.output_range).numpy())
        loop.run(2)
        return race(label or spec, loop.run, lambda: loop.generator, measure, budget, every), "float32"
    with preset_training(config, data) as (fit, sampler, model):
        fit(2)  # tracing (and XLA compilation), outside the race
        how = f"{runtime.resolve_precision(config.precision)}, {'XLA' if model.jit_compile else 'no XLA'}"
        return race(label or spec, fit, sampler, measure, budget, every), how


def benchmark(contenders, budget: float, every: float, seeds, num_samples: int = evaluate.DEFAULT_NUM_SAMPLES,
              features="auto", targets=None, log=print, grids: Path | None = None) -> dict:
    """Plan the contenders, build the probe and the real floor once, then race each contender
    per seed (`grids`: a folder for each run's last probed samples, 64 of them). Returns the
    run: its setting, `results` [(label, seed, curve, how)] and what `json_record` writes."""
    planned, data, summaries = plan_contenders(contenders, log)
    first = planned[0][2]
    mnist = isinstance(features, str) and uses_mnist_probe(first, features)
    probe, space = make_probe(first, data, num_samples, features, log)
    floor = real_floor(probe, data, num_samples)
    how_targets = "given (--targets)"
    if targets:
        targets = tuple(float(t) for t in targets)
    else:
        targets, how_targets = default_targets(mnist, floor)
    log(f"features: {space['name']}")
    if space.get("check", {}).get("too_weak"):
        log(f"warning: this space cannot tell {', '.join(space['check']['failed'])} from real images; its figures cannot judge samples")
    log("real floor (" + ", ".join(f"{LABELS[k]} {v:.3g}" for k, v in floor.items()) + f"): {min(num_samples, len(data.train))} training images "
        f"vs the {len(data.holdout)} held-out; FID targets {', '.join(f'{t:g}' for t in targets)} ({how_targets})")
    results, configs = [], {}
    for label, spec, config in planned:
        for seed in seeds:
            seeded = config.replace(seed=seed)
            configs[(label, seed)] = (spec, seeded)
            curve, how = run_contender(spec, seeded, data, probe.figures, budget, every, f"{label}, seed {seed}")
            results.append((label, seed, curve, how))
            if grids is not None and probe.last_images is not None:
                name = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
                log(f"samples: {pictures.save_grid(probe.last_images[:64], grids / f'{name}_seed{seed}.png', columns=8)}")
    return {
        "data": first.data, "data_summary": summaries, "image_shape": list(first.image_shape),
        "train_images": len(data.train), "holdout_images": len(data.holdout), "feature_space": space,
        "num_samples": num_samples, "budget": budget, "every": every, "seeds": list(seeds), "targets": list(targets),
        "targets_from": how_targets, "real_floor": floor, "results": results, "configs": configs,
        "contenders": [label for label, *_ in planned],
    }


# -- reporting ----------------------------------------------------------------------


def _columns(results) -> list[str]:
    """RECORDED's figures present at some budget, in RECORDED's order."""
    present = {key for _, _, curve, _ in results for key in (curve[-1][3] if len(curve[-1]) > 3 else {"fid": None})}
    return [key for key in RECORDED if key in present]


def _figures(point) -> dict:
    return point[3] if len(point) > 3 else {"fid": point[2]}


def _cell(figures: dict, key: str) -> str:
    if key not in figures:
        return "-"
    return f"{figures[key]:.2f}" if key in ("fid", "swd") else f"{figures[key]:.3f}"


def format_report(run: dict) -> str:
    """The markdown table (a row per contender and seed) and, over several seeds, each contender's medians."""
    results, targets = run["results"], run["targets"]
    columns = _columns(results)
    lines = [
        f"{run['budget']:g} s of training each; {run['num_samples']} samples vs the {run['holdout_images']} held-out "
        f"images of {run['data']} in {run['feature_space']['name']}",
        "",
        "| contender | seed | run as | " + " | ".join(f"s to FID {t:g}" for t in targets) + " | "
        + " | ".join(f"{LABELS[k]} at budget" for k in columns) + " | steps |",
        "|---|---:|---|" + "---:|" * (len(targets) + len(columns) + 1),
    ]
    for name, seed, curve, how in results:
        reached = [seconds_to(curve, target) for target in targets]
        cells = " | ".join("-" if r is None else f"{r:.0f}" for r in reached)
        at_budget = " | ".join(_cell(_figures(curve[-1]), k) for k in columns)
        lines.append(f"| {name} | {seed} | {how} | {cells} | {at_budget} | {curve[-1][1]} |")
    if len(run["seeds"]) > 1:
        lines.append("")
        for name in run["contenders"]:
            parts = []
            for key in ("fid", "swd"):
                finals = [_figures(curve[-1])[key] for n, _, curve, _ in results if n == name and key in _figures(curve[-1])]
                if finals:
                    parts.append(f"median {LABELS[key]} at budget {statistics.median(finals):.2f} (range {min(finals):.2f}-{max(finals):.2f})")
            lines.append(f"{name}: " + "; ".join(parts))
    return "\n".join(lines)


def json_record(run: dict, extra: dict | None = None) -> dict:
    """Everything a table or a plot is rebuilt from: the setting, the real floor, per run its
    seconds to each target, and every probe (contender, seed, seconds, steps, figures)."""
    runs, probes = [], []
    for name, seed, curve, how in run["results"]:
        spec, config = run["configs"].get((name, seed), (name, None))
        runs.append({
            "contender": name, "spec": spec, "seed": seed, "run_as": how,
            "seconds_to": {f"{t:g}": seconds_to(curve, t) for t in run["targets"]},
            "at_budget": {"seconds": curve[-1][0], "steps": curve[-1][1], **_figures(curve[-1])},
            "config": None if config is None else json.loads(config.to_json()),
        })
        probes += [{"contender": name, "seed": seed, "seconds": p[0], "steps": p[1], "figures": _figures(p)} for p in curve]
    keep = ("data", "data_summary", "image_shape", "train_images", "holdout_images", "feature_space", "num_samples",
            "budget", "every", "seeds", "targets", "targets_from", "real_floor", "contenders")
    record = {**(extra or {}), **{key: run[key] for key in keep}, "chunk_steps": CHUNK_STEPS, "runs": runs, "probes": probes}
    return json.loads(json.dumps(record, default=_jsonable))


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, set)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def save_curves(results, path: Path) -> Path:
    """FID (log scale) against training seconds, and SWD beside it when probes recorded it:
    one colour per contender, one line per seed (seeds after the first dashed, dotted, ...)."""
    plt = pictures._pyplot()
    panels = [key for key in ("fid", "swd") if key in _columns(results)] or ["fid"]
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.2), squeeze=False)
    names = list(dict.fromkeys(name for name, *_ in results))
    styles = ("-", "--", ":", "-.")
    for axis, key in zip(axes[0], panels):
        for name, seed, curve, _ in results:
            seeds = sorted({s for n, s, *_ in results if n == name})
            points = [(p[0], _figures(p)[key]) for p in curve[1:] if key in _figures(p)]
            if not points:
                continue
            axis.plot(*zip(*points), color=f"C{names.index(name)}", linestyle=styles[seeds.index(seed) % len(styles)],
                      marker=".", alpha=0.8, label=name if len(seeds) == 1 else f"{name}, seed {seed}")
        axis.set_yscale("log")
        axis.set_xlabel("seconds of training")
        axis.set_ylabel(f"{LABELS[key]} (log scale)")
        axis.grid(alpha=0.3, which="both")
        axis.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist-sample", help="what to train on, as gan_pkg.fit's --data: a folder, .npz or named set (default: %(default)s)")
    parser.add_argument("--image-size", type=int, help="train (and score) at this side; default: what gan_pkg.plan decides per contender")
    parser.add_argument("--contenders", nargs="+", default=["tutorial", "dcgan", config_lib.DEFAULT_PRESET], help="tutorial (its train_on_batch loop), a preset, or preset:field=value,...")
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="FIELD=VALUE", help="a config change for every contender (repeatable)")
    parser.add_argument("--budget", type=float, default=900.0, help="training seconds per contender and seed")
    parser.add_argument("--every", type=float, default=60.0, help="seconds of training between probes")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run of every contender per seed (default: %(default)s)")
    parser.add_argument("--num-samples", type=int, default=evaluate.DEFAULT_NUM_SAMPLES, help="generated images per probe")
    parser.add_argument("--features", choices=evaluate.KINDS, default="auto", help="feature space, as python -m gan_pkg.evaluate chooses it (default: %(default)s)")
    parser.add_argument("--targets", type=float, nargs="+", help="FIDs to time; default: TARGETS for MNIST digits, else the real floor's FID x "
                        + ", ".join(f"{m:g}" for m in FLOOR_MULTIPLES))
    parser.add_argument("--plot", type=Path, help="draw every curve into this PNG")
    parser.add_argument("--grids", type=Path, help="save each run's last probed samples (64) as a PNG grid in this folder")
    parser.add_argument("--json", type=Path, help="write every probe (contender, seed, seconds, steps, figures) into this JSON file")
    parser.add_argument("--labels", nargs="+", help="a short name per contender, in order, for the table and the plot's legend")
    args = parser.parse_args(argv)
    if args.num_samples <= evaluate.PR_K or args.budget <= 0 or args.every <= 0:
        parser.error(f"--num-samples must be above {evaluate.PR_K}, --budget and --every above 0")
    if args.targets and min(args.targets) <= 0:
        parser.error("--targets: FIDs above 0")
    values = {"data": args.data, **({"image_size": args.image_size} if args.image_size else {})}
    try:  # bad specs fail before any training
        values.update(config_lib.parse_assignments(args.assignments))
        contenders = parse_contenders(args.contenders, args.labels, values)
    except ValueError as error:
        parser.error(str(error))

    print(f"# Time to quality (TF {tf.__version__}); CPU: {cpu_description()}", flush=True)
    try:
        run = benchmark(contenders, args.budget, args.every, args.seeds, args.num_samples, args.features, args.targets, grids=args.grids)
    except (data_lib.DataError, evaluate.EvaluationError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None

    print("\n" + format_report(run))
    if args.plot:
        print(f"curves: {save_curves(run['results'], args.plot)}")
    if args.json:
        extra = {"command": ["bench/time_to_quality.py", *(sys.argv[1:] if argv is None else argv)],
                 "tensorflow": tf.__version__, "cpu": cpu_description()}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        files.write_json(args.json, json_record(run, extra))
        print(f"probes: {args.json}")


if __name__ == "__main__":
    main()
