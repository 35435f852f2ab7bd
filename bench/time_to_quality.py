"""Time to quality: FID against training wall-clock, the default run vs the seeds' loop.

    python bench/time_to_quality.py [--budget 150] [--every 15]

Both train DCGAN on the bundled MNIST sample at batch 32 with Adam(2e-4, 0.5)
from the same seed; each gets `--budget` seconds of training (the clock stops
while FID is measured), and FID (shipped classifier features, 500 samples from
fixed noise vs the held-out split) is taken every `--every` seconds. The table
gives the seconds each needs to reach the seeds' loop's final FID.
"""

from __future__ import annotations

import argparse
import time

from gan_pkg.cli import import_tensorflow_quietly

import_tensorflow_quietly()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from train_throughput import SeedsLoop  # noqa: E402  (bench/ is the script's directory)

from gan_pkg import config as config_lib  # noqa: E402
from gan_pkg import data as data_lib  # noqa: E402
from gan_pkg import evaluate, runtime, train  # noqa: E402
from gan_pkg.gan import sample_latent  # noqa: E402

CHUNK_STEPS = 25  # steps between clock reads


class FIDProbe:
    def __init__(self, config, holdout):
        self.classifier = evaluate.get_classifier()
        self.reference, _ = self.classifier(holdout.astype(np.float32) / 255.0)
        self.noise = sample_latent((500, config.latent_dim), [123, 0], config.latent_distribution, config.latent_range)

    def __call__(self, generator) -> float:
        images = (np.asarray(generator.predict(self.noise, batch_size=250, verbose=0), np.float32) + 1.0) / 2.0
        feats, _ = self.classifier(np.clip(images, 0.0, 1.0))
        return evaluate.fid(feats, self.reference)


def race(name, step_chunk, generator, probe, budget, every) -> list[tuple[float, int, float]]:
    """Train in chunks until `budget` seconds of training; FID every `every` s."""
    curve, trained, steps, next_probe = [(0.0, 0, probe(generator))], 0.0, 0, every
    while trained < budget:
        start = time.perf_counter()
        step_chunk(CHUNK_STEPS)
        trained += time.perf_counter() - start
        steps += CHUNK_STEPS
        if trained >= next_probe or trained >= budget:
            curve.append((trained, steps, probe(generator)))
            print(f"  {name}: {trained:6.1f}s  step {steps:5d}  FID {curve[-1][2]:.2f}", flush=True)
            next_probe += every
    return curve


def seconds_to(curve, target: float):
    """First time FID reaches `target`, interpolated linearly between probes."""
    for (t0, _, f0), (t1, _, f1) in zip(curve, curve[1:]):
        if f1 <= target:
            return t0 + (t1 - t0) * (f0 - target) / (f0 - f1) if f0 > target else t0
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=150.0, help="training seconds per contender")
    parser.add_argument("--every", type=float, default=15.0, help="seconds of training between FID probes")
    args = parser.parse_args()

    config = config_lib.preset("dcgan")
    data = data_lib.load(config)
    probe = FIDProbe(config, data.holdout)

    keras.utils.set_random_seed(config.seed)
    precision = runtime.resolve_precision(config.precision)
    with runtime.dtype_policy(precision):
        model = train.build_gan(config)
        batches = data_lib.training_dataset(data, config)
        fit = lambda n: model.fit(batches, steps_per_epoch=n, epochs=1, verbose=0, shuffle=False)
        fit(2)  # tracing, outside the race
        fused = race(f"GAN.fit ({precision})", fit, model.generator, probe, args.budget, args.every)

    keras.utils.set_random_seed(config.seed)
    np.random.seed(config.seed)
    scaled = data_lib.scale_images(data.train, config.output_range).numpy()
    seeds = SeedsLoop(config, scaled)
    seeds.run(2)
    loop = race("seeds' loop", seeds.run, seeds.generator, probe, args.budget, args.every)

    target = loop[-1][2]
    print(f"\n# Time to quality (DCGAN, batch {config.batch_size}, {args.budget:.0f}s of training each, TF {tf.__version__})\n")
    print("| contender | final FID | steps in budget | seconds to reach FID {:.2f} |".format(target))
    print("|---|---:|---:|---:|")
    for name, curve in ((f"GAN.fit ({precision})", fused), ("seeds' loop (train_on_batch)", loop)):
        reached = seconds_to(curve, target)
        print(f"| {name} | {curve[-1][2]:.2f} | {curve[-1][1]} | {'not reached' if reached is None else f'{reached:.0f}'} |")
    fused_seconds, loop_seconds = seconds_to(fused, target), seconds_to(loop, target)
    if fused_seconds:
        print(f"\nGAN.fit reached the seeds' loop's final FID in {fused_seconds / loop_seconds:.2f}x its time.")


if __name__ == "__main__":
    main()
