"""How training cost grows with pixels: the default preset sized to each image shape.

    python bench/image_sizes.py [--shapes 28x28x1 32x32x3 64x64x3 128x128x3] [--steps 30] [--batch-size 32]

Each shape trains in a fresh interpreter (so its peak RSS is its own): gan_pkg.sizing
scales the default preset's networks to the shape exactly as `python -m gan_pkg.fit`
does for data of that shape, `GAN.fit` runs a few warm-up steps (tracing, XLA), then
`--steps` timed ones on random images. Prints the CPU model and ISA flags, and per
shape: parameters, images/s, ms per step and the child's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_SHAPES = ("28x28x1", "32x32x3", "64x64x3", "128x128x3")
WARMUP_STEPS = 3


def parse_shape(text: str) -> tuple[int, int, int]:
    height, width, channels = (int(v) for v in text.lower().split("x"))
    return height, width, channels


def measure_one(shape: tuple, steps: int, batch_size: int) -> dict:
    """Train the default preset at `shape` for `steps` timed steps in this process."""
    from gan_pkg.cli import import_tensorflow_quietly

    import_tensorflow_quietly()
    import numpy as np
    import tensorflow as tf

    from gan_pkg import config as config_lib
    from gan_pkg import runtime, sizing, training

    config = sizing.sized(config_lib.preset(config_lib.DEFAULT_PRESET), shape).replace(batch_size=batch_size).validated()
    precision = runtime.resolve_precision(config.precision)
    with runtime.dtype_policy(precision):
        model = training.build_gan(config)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(-1, 1, (batch_size, *shape)).astype(np.float32))
    labels = tf.constant(rng.integers(0, config.classes.label_classes or 1, batch_size).astype(np.int32))
    batch = (images, labels) if config.classes.label_classes else images
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    model.fit(dataset, steps_per_epoch=WARMUP_STEPS, epochs=1, verbose=0)
    started = time.perf_counter()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
    seconds = time.perf_counter() - started
    return {
        "shape": "×".join(map(str, shape)),
        "generator_params": model.generator.count_params(),
        "discriminator_params": model.discriminator.count_params(),
        "precision": precision,
        "ms_per_step": 1000 * seconds / steps,
        "images_per_s": steps * batch_size / seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=list(DEFAULT_SHAPES), help="HxWxC each (square)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child: one shape, JSON on stdout
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(parse_shape(args.one), args.steps, args.batch_size)))
        return
    from train_throughput import cpu_description  # bench/ is the script's directory

    print(f"# Training cost by image size; CPU: {cpu_description()}", flush=True)
    print(f"default preset sized to each shape, batch {args.batch_size}, {args.steps} timed steps after {WARMUP_STEPS}\n")
    print("| shape | G params | D params | precision | ms/step | images/s | peak RSS (MiB) |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for text in args.shapes:
        parse_shape(text)  # a typo fails before any child starts
        child = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--one", text, "--steps", str(args.steps), "--batch-size", str(args.batch_size)],
            capture_output=True, text=True, check=True,
        )
        r = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"| {r['shape']} | {r['generator_params']:,} | {r['discriminator_params']:,} | {r['precision']} | "
              f"{r['ms_per_step']:.0f} | {r['images_per_s']:.0f} | {r['peak_rss_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
