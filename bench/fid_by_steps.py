"""FID after fixed numbers of steps, for contenders x seeds: which recipe needs fewer steps?

    python bench/fid_by_steps.py [--steps 500 1000 1500] [--seeds 0 1] --contenders dcgan-classcode dcgan-classcode:ema_decay=0.99 ...

Steps, not seconds: on a shared host whose speed changes from minute to minute, FID at
equal steps compares recipes whose steps cost the same (time_to_quality.py gives the
wall-clock view). Each contender (a preset, or `preset:field=value,...`) trains once per
seed in this process, one after the other; at each step count its exported generator (the
EMA copy when it keeps one, batch-norm statistics re-measured) is probed as
time_to_quality.py probes it. Prints the CPU, then one markdown row per contender and seed.
"""

from __future__ import annotations

import argparse
import time

from gan_pkg.cli import import_tensorflow_quietly

import_tensorflow_quietly()

from time_to_quality import FIDProbe, parse_contender, preset_training  # noqa: E402  (bench/ is the script's directory)
from train_throughput import cpu_description  # noqa: E402

from gan_pkg import data as data_lib  # noqa: E402
from gan_pkg import evaluate  # noqa: E402


def fid_at_steps(config, data, probe, steps: list[int]) -> list[float]:
    fids, done = [], 0
    with preset_training(config, data) as (fit, sampler, _):
        for target in steps:
            fit(target - done)
            done = target
            fids.append(probe(sampler()))
    return fids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contenders", nargs="+", required=True, help="a preset, or preset:field=value,...")
    parser.add_argument("--steps", type=int, nargs="+", default=[500, 1000, 1500], help="step counts to probe at, increasing")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--num-samples", type=int, default=evaluate.DEFAULT_NUM_SAMPLES, help="generated images per FID probe")
    args = parser.parse_args()
    if sorted(set(args.steps)) != args.steps or args.steps[0] < 1:
        parser.error("--steps: positive step counts, increasing")
    contenders = [parse_contender(spec) for spec in args.contenders]  # bad specs fail before any training

    print(f"# FID by steps; CPU: {cpu_description()}", flush=True)
    data = data_lib.load(contenders[0][1])
    probe = FIDProbe(contenders[0][1], data.holdout, args.num_samples)
    print("| contender | seed | " + " | ".join(f"{s} steps" for s in args.steps) + " | seconds |")
    print("|---|---:|" + "---:|" * (len(args.steps) + 1), flush=True)
    for name, config in contenders:
        for seed in args.seeds:
            started = time.monotonic()
            fids = fid_at_steps(config.replace(seed=seed), data, probe, args.steps)
            print(f"| {name} | {seed} | " + " | ".join(f"{f:.2f}" for f in fids) + f" | {time.monotonic() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()
