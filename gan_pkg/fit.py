"""python -m gan_pkg.fit: train a preset and export its generator.

Only argument parsing lives here; the work is `training.train(config, workdir)`
and `export.export_model`. Errors the user can fix print one line and exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from gan_pkg import config as config_lib
from gan_pkg import contract
from gan_pkg.cli import ArgumentParser, import_tensorflow_quietly, parse_duration


def parse_args(argv=None) -> argparse.Namespace:
    parser = ArgumentParser(
        prog="python -m gan_pkg.fit",
        description="Train a GAN preset on images (or a 1-D distribution) and export the generator for TF Serving.",
    )
    parser.add_argument("--preset", default=config_lib.DEFAULT_PRESET, choices=sorted(config_lib.PRESETS), help="what to train (default: %(default)s)")
    parser.add_argument("--data", help="mnist-sample (default for images), mnist, fashion-mnist, cifar10, normal1d, a .npz file or an image folder (one subfolder per class)")
    parser.add_argument("--image-size", type=int, metavar="N", help="train NxN images (default: the largest the preset builds from the data's size)")
    parser.add_argument("--channels", type=int, choices=(1, 3), help="1 (grayscale) or 3 (RGB) (default: RGB when the data has colour)")
    parser.add_argument("--resize", choices=config_lib.RESIZE_MODES, help="how images of another shape are fitted (default: center-crop)")
    parser.add_argument("--background", metavar="COLOUR", help="what transparent pixels are composited onto: white, black, grey or #rrggbb (default: white)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help="training steps (generator updates)")
    budget.add_argument("--epochs", type=int, help="passes over the training split instead of --steps")
    parser.add_argument(
        "--max-time", metavar="DURATION",
        help="stop training after this much time (90s, 4m, 1h30m, 00:04:00; PyTorch Lightning's max_time), "
             "checkpoint and export; the same command again resumes",
    )
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--workdir", help="run directory: checkpoints, pictures, logs (default: runs/<preset>)")
    parser.add_argument("--export-base", default=contract.DEFAULT_EXPORT_BASE, help="default: %(default)s")
    parser.add_argument("--model-name", default=contract.DEFAULT_MODEL_NAME, help="default: %(default)s")
    parser.add_argument("--no-export", action="store_true", help="train only")
    parser.add_argument(
        "--val-fid-every", type=int, default=0, metavar="N",
        help="measure val_fid/val_kid every N epochs (TensorBoard, history.csv) and keep the best checkpoint as checkpoints/best.keras",
    )
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override any config field (repeatable); --steps and --epochs win over it")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    args = parser.parse_args(argv)
    try:
        args.max_seconds = parse_duration(args.max_time) if args.max_time is not None else None
    except ValueError as error:
        parser.error(f"--max-time: {error}")
    return args


def resolve_config(args: argparse.Namespace) -> config_lib.GANConfig:
    flags = {"data": args.data, "batch_size": args.batch_size, "image_size": args.image_size, "channels": args.channels, "resize": args.resize,
             "background": args.background}
    values = {k: v for k, v in flags.items() if v is not None} | config_lib.parse_assignments(args.set)
    return config_lib.GANConfig.resolve(args.preset, values, steps=args.steps, epochs=args.epochs)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cfg = resolve_config(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.print_config:
        print(cfg.to_json())
        return 0
    import_tensorflow_quietly()  # after the flags are good: a typo answers at once
    from gan_pkg import callbacks, export, training
    from gan_pkg.plan import plan

    workdir = args.workdir or os.path.join("runs", cfg.preset)
    started = time.monotonic()
    try:
        planned = plan(cfg)
        cfg = planned.config
        result = training.train(cfg, workdir, val_fid_every=args.val_fid_every, max_seconds=args.max_seconds, data=planned.data)
    except (ValueError, OSError, callbacks.TrainingDiverged) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2 if not isinstance(error, callbacks.TrainingDiverged) else 1
    seconds = time.monotonic() - started
    print(f"trained {cfg.preset} to step {result.step} in {seconds:.0f}s; workdir {workdir}")
    if result.out_of_time:
        planned = f"{cfg.epochs} epochs" if cfg.epochs else f"{cfg.steps} steps"
        print(f"stopped by --max-time {args.max_time} at step {result.step} of the planned {planned}; run the same command again to resume")
    print(f"samples: {workdir}/samples/latest.png  losses: {workdir}/loss.png")
    if not args.no_export and result.chief:
        target = export.export_model(result.model, result.config, args.export_base, args.model_name, workdir=workdir)
        print(f"exported generator to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
