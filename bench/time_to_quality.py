"""Time to quality: FID against training wall-clock, for the tutorials' loop and any presets.

    python bench/time_to_quality.py [--contenders tutorial dcgan dcgan-classcode ...] [--budget 900] [--every 60]
                                    [--seeds 0 1 2] [--plot curves.png] [--labels ...]

Each contender trains on the bundled MNIST sample, once per seed, for
`--budget` seconds of training (the clock stops while FID is measured); FID
(the shipped classifier's features, `--num-samples` images from fixed noise vs
the held-out split, as `python -m gan_pkg.evaluate` measures it) is taken every
`--every` seconds, through the generator the preset exports (the EMA copy when
it keeps one). A contender is `tutorial` (tutorial 000's train_on_batch loop), a preset
name, or a preset with changes: `dcgan:ema_decay=0.999,reuse_fakes=true`.
Prints the CPU model and ISA flags, then for each contender and seed the seconds
to reach each FID of TARGETS (interpolated between probes), its FID and steps at
the budget, and each contender's median over seeds; `--plot` draws every curve.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
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
from gan_pkg import evaluate, pictures, runtime, training  # noqa: E402
from gan_pkg.gan import sample_latent  # noqa: E402

CHUNK_STEPS = 25  # steps between clock reads
TARGETS = (20.0, 10.0, 5.0, 3.0)


def parse_contender(spec: str) -> tuple[str, config_lib.GANConfig]:
    """"dcgan:ema_decay=0.999,reuse_fakes=true" -> (spec, config); "tutorial" -> tutorial 000's recipe."""
    preset, _, changes = spec.partition(":")
    values = config_lib.parse_assignments(item for item in changes.split(",") if item)
    return spec, config_lib.GANConfig.resolve("dcgan" if preset == "tutorial" else preset, values)


def parse_contenders(specs: list[str], labels: list[str] | None = None) -> list[tuple[str, str, config_lib.GANConfig]]:
    """(label, spec, config) per contender, in order; a contender's label is its spec unless
    `labels` names each one (the table and the legend then stay readable)."""
    if labels and len(labels) != len(specs):
        raise ValueError(f"{len(labels)} labels for {len(specs)} contenders: give one label per contender, or none")
    return [(label, *parse_contender(spec)) for label, spec in zip(labels or specs, specs)]


class FIDProbe:
    def __init__(self, config, holdout, num_samples):
        self.classifier = evaluate.get_classifier()
        self.reference, _ = self.classifier(holdout.astype(np.float32) / 255.0)
        self.noise = sample_latent((num_samples, config.latent_dim), [123, 0], config.latent_distribution, config.latent_range)

    def __call__(self, generator) -> float:
        images = (np.asarray(generator.predict(self.noise, batch_size=250, verbose=0), np.float32) + 1.0) / 2.0
        feats, _ = self.classifier(np.clip(images, 0.0, 1.0))
        return evaluate.fid(feats, self.reference)


def race(name, step_chunk, sampler, probe, budget, every) -> list[tuple[float, int, float]]:
    """Train in chunks until `budget` seconds of training; FID every `every` s.
    `sampler()` gives the generator to probe (after whatever it must do first)."""
    curve, trained, steps, next_probe = [(0.0, 0, probe(sampler()))], 0.0, 0, every
    while trained < budget:
        start = time.perf_counter()
        step_chunk(CHUNK_STEPS)
        trained += time.perf_counter() - start
        steps += CHUNK_STEPS
        if trained >= next_probe or trained >= budget:
            curve.append((trained, steps, probe(sampler())))
            print(f"  {name}: {trained:6.1f}s  step {steps:5d}  FID {curve[-1][2]:.2f}", flush=True)
            next_probe += every
    return curve


def seconds_to(curve, target: float):
    """First time FID reaches `target`, interpolated linearly between probes."""
    for (t0, _, f0), (t1, _, f1) in zip(curve, curve[1:]):
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


def run_contender(name, config, data, probe, budget, every):
    if name == "tutorial":
        keras.utils.set_random_seed(config.seed)
        loop = TutorialLoop(config, data_lib.scale_images(data.train, config.output_range).numpy())
        loop.run(2)
        return race(name, loop.run, lambda: loop.generator, probe, budget, every), "float32"
    with preset_training(config, data) as (fit, sampler, model):
        fit(2)  # tracing (and XLA compilation), outside the race
        how = f"{runtime.resolve_precision(config.precision)}, {'XLA' if model.jit_compile else 'no XLA'}"
        return race(name, fit, sampler, probe, budget, every), how


def save_curves(results, path: Path) -> Path:
    """FID (log scale) against training seconds: one colour per contender, one line per seed."""
    plt = pictures._pyplot()
    fig, axis = plt.subplots(figsize=(7, 4.2))
    names = list(dict.fromkeys(name for name, *_ in results))
    for name, seed, curve, _ in results:
        colour = f"C{names.index(name)}"
        first = seed == min(s for n, s, *_ in results if n == name)
        axis.plot([t for t, _, _ in curve[1:]], [f for _, _, f in curve[1:]], color=colour, marker=".", alpha=0.8, label=name if first else None)
    axis.set_yscale("log")
    axis.set_xlabel("seconds of training")
    axis.set_ylabel("FID (log scale)")
    axis.grid(alpha=0.3, which="both")
    axis.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contenders", nargs="+", default=["tutorial", "dcgan", config_lib.DEFAULT_PRESET], help="tutorial (its train_on_batch loop), a preset, or preset:field=value,...")
    parser.add_argument("--budget", type=float, default=900.0, help="training seconds per contender and seed")
    parser.add_argument("--every", type=float, default=60.0, help="seconds of training between FID probes")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run of every contender per seed (default: %(default)s)")
    parser.add_argument("--num-samples", type=int, default=evaluate.DEFAULT_NUM_SAMPLES, help="generated images per FID probe")
    parser.add_argument("--plot", type=Path, help="draw every curve into this PNG")
    parser.add_argument("--labels", nargs="+", help="a short name per contender, in order, for the table and the plot's legend")
    args = parser.parse_args()
    try:  # bad specs fail before any training
        contenders = parse_contenders(args.contenders, args.labels)
    except ValueError as error:
        parser.error(str(error))

    print(f"# Time to quality (TF {tf.__version__}); CPU: {cpu_description()}", flush=True)
    data = data_lib.load(contenders[0][2])
    probe = FIDProbe(contenders[0][2], data.holdout, args.num_samples)
    results = [
        (label, seed, *run_contender(spec, config.replace(seed=seed), data, probe, args.budget, args.every))
        for label, spec, config in contenders for seed in args.seeds
    ]

    print(f"\n{args.budget:.0f} s of training each; FID of {args.num_samples} samples vs the {len(data.holdout)} held-out digits\n")
    print("| contender | seed | run as | " + " | ".join(f"s to FID {t:g}" for t in TARGETS) + " | FID at budget | steps |")
    print("|---|---:|---|" + "---:|" * (len(TARGETS) + 2))
    for name, seed, curve, how in results:
        reached = [seconds_to(curve, target) for target in TARGETS]
        cells = " | ".join("-" if r is None else f"{r:.0f}" for r in reached)
        print(f"| {name} | {seed} | {how} | {cells} | {curve[-1][2]:.2f} | {curve[-1][1]} |")
    if len(args.seeds) > 1:
        print()
        for name, *_ in contenders:
            finals = [curve[-1][2] for n, _, curve, _ in results if n == name]
            print(f"{name}: median FID at budget {statistics.median(finals):.2f} (range {min(finals):.2f}-{max(finals):.2f})")
    if args.plot:
        print(f"curves: {save_curves(results, args.plot)}")


if __name__ == "__main__":
    main()
