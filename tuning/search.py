"""python tuning/search.py: keras-tuner search for the GAN's filters and learning rates.

The objective is `val_fid` (minimised), measured by gan_pkg.evaluate on the
held-out split; data with no feature space (unlabelled colour images without
Inception's weights) is searched on `val_swd` instead. Rerunning the same command resumes the search (keras-tuner
keeps its state in <directory>/<project>); --overwrite starts over. Distributed
search uses keras-tuner's own KERASTUNER_TUNER_ID / KERASTUNER_ORACLE_IP /
KERASTUNER_ORACLE_PORT variables (docs/TUNING.md).

Writes <directory>/<project>/best_hyperparameters.json, trials.csv and
trials.md (sorted by the objective); --export retrains the best configuration
and exports it like `python -m gan_pkg.fit`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

from gan_pkg import config as config_lib
from gan_pkg import contract
from gan_pkg.cli import ArgumentParser, import_tensorflow_quietly

TUNERS = ("random", "bayesian", "hyperband")


def parse_args(argv=None) -> argparse.Namespace:
    parser = ArgumentParser(prog="python tuning/search.py", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default=config_lib.DEFAULT_PRESET, choices=sorted(config_lib.PRESETS), help="default: %(default)s")
    parser.add_argument("--data", help="what to train on, as gan_pkg.fit's --data (default: the preset's)")
    parser.add_argument("--tuner", default="bayesian", choices=TUNERS)
    parser.add_argument("--max-trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3, help="passes over the training split per trial (hyperband: the maximum)")
    parser.add_argument("--steps", type=int, help="training steps per trial instead of --epochs")
    parser.add_argument("--directory", default="tuning_runs")
    parser.add_argument("--project", help="default: the preset name")
    parser.add_argument("--overwrite", action="store_true", help="discard earlier trials and start over")
    parser.add_argument("--num-samples", type=int, default=1000, help="generated images per FID evaluation")
    parser.add_argument("--tune-batch-size", action="store_true", help="also search batch size and Adam's beta_1")
    parser.add_argument("--tune-recipe", action="store_true",
                        help="also search DiffAugment policy, spectral norm in D, learning-rate schedule and EMA (image presets)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override the preset's config")
    parser.add_argument("--export", action="store_true", help="retrain the best configuration and export it")
    parser.add_argument("--export-base", default=contract.DEFAULT_EXPORT_BASE)
    parser.add_argument("--model-name", default=contract.DEFAULT_MODEL_NAME)
    args = parser.parse_args(argv)
    for name in ("max_trials", "epochs", "num_samples", "steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def make_tuner(name: str, hypermodel, objective, max_trials: int, epochs: int, directory: Path, project: str, overwrite: bool):
    import keras_tuner as kt

    common = dict(objective=objective, directory=str(directory), project_name=project, overwrite=overwrite, max_consecutive_failed_trials=3)
    if name == "random":
        return kt.RandomSearch(hypermodel, max_trials=max_trials, **common)
    if name == "bayesian":
        return kt.BayesianOptimization(hypermodel, max_trials=max_trials, **common)
    # Hyperband sizes its own brackets from max_epochs; max_trials has no meaning there.
    return kt.Hyperband(hypermodel, max_epochs=epochs, factor=3, **common)


def trial_rows(tuner, objective: str = "val_fid") -> list[dict]:
    """One row per trial: hyperparameters, the figures, time, status; best `objective` first."""
    rows = []
    for trial in tuner.oracle.trials.values():
        row = {"trial": trial.trial_id, "status": trial.status}
        row.update({k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")})
        for metric in dict.fromkeys((objective, "val_fid", "val_kid", "val_swd", "seconds")):
            value = trial.metrics.get_last_value(metric) if trial.metrics.exists(metric) else None
            row[metric] = None if value is None else round(float(value), 5 if metric == "val_kid" else 3)
        rows.append(row)
    return sorted(rows, key=lambda r: (r[objective] is None, r[objective] if r[objective] is not None else 0.0))


def write_tables(rows: list[dict], directory: Path) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(directory / "trials.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    cell = lambda v: "" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    (directory / "trials.md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        values = config_lib.parse_assignments(args.set) | ({"data": args.data} if args.data else {})
        base = config_lib.GANConfig.resolve(args.preset, values, steps=args.steps, epochs=None if args.steps else args.epochs)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    import_tensorflow_quietly()
    from gan_pkg import export, hypermodel, training
    from gan_pkg.classifier import EvaluationError
    from gan_pkg.plan import plan

    project = args.project or args.preset
    directory = Path(args.directory)
    try:
        planned = plan(base)
        model = hypermodel.GANHyperModel(
            planned.config, directory / project / "trial_runs", args.num_samples, args.tune_batch_size, args.tune_recipe, data=planned.data
        )
    except (ValueError, EvaluationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    objective = model.objective.name  # val_fid, or val_swd where the data has no feature space
    tuner = make_tuner(args.tuner, model, model.objective, args.max_trials, args.epochs, directory, project, args.overwrite)
    is_worker = os.environ.get("KERASTUNER_TUNER_ID", "chief") != "chief"  # keras-tuner's distributed mode
    done = 0 if is_worker else sum(t.status == "COMPLETED" for t in tuner.oracle.trials.values())
    if done:
        print(f"resuming {directory / project}: {done} trial(s) already completed (--overwrite to start over)")
    tuner.search(epochs=None if args.tuner != "hyperband" else args.epochs, verbose=1)
    if is_worker:
        print(f"worker {os.environ['KERASTUNER_TUNER_ID']} done; the chief writes the tables")
        return 0

    out = directory / project
    rows = trial_rows(tuner, objective)
    write_tables(rows, out)
    completed = [r for r in rows if r[objective] is not None]
    if not completed:
        print("error: no trial completed; see the trial errors above", file=sys.stderr)
        return 1
    best = tuner.get_best_hyperparameters(1)[0]
    best_config = model.config_for(best)
    (out / "best_hyperparameters.json").write_text(
        json.dumps({"values": best.values, objective: completed[0][objective], "config": json.loads(best_config.to_json())}, indent=2)
    )
    print(f"best {objective} {completed[0][objective]:.3f} with {json.dumps({k: v for k, v in best.values.items() if not k.startswith('tuner/')})}")
    print(f"wrote {out / 'best_hyperparameters.json'}, {out / 'trials.csv'}, {out / 'trials.md'}")
    if args.export:
        result = training.train(best_config, out / "best_run", data=planned.data)
        target = export.export_model(result.model, result.config, args.export_base, args.model_name, workdir=out / "best_run")
        print(f"exported the best configuration to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
