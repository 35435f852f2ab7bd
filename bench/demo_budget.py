"""What `make demo`'s budget gives: `fit --max-time` then `evaluate`, for several seeds.

    python bench/demo_budget.py [--max-time 4m] [--seeds 0 1 2] [--preset P] [--set field=value ...]

Each seed runs the two commands a user runs, in a fresh folder under --root, one after the
other (never two trainings at once: on 2 cores every timing would be wrong), and keeps what
both printed (`<root>/seed<N>/output.txt`). Prints the CPU, one row per seed (steps reached,
FID against the floor, classifier score, precision, recall, classes over 5% of samples) and
the median. `--set` goes to `fit` unchanged, so a candidate recipe is measured exactly as its
users would run it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from train_throughput import cpu_description  # bench/ is the script's directory

COLUMNS = ("steps", "fid", "floor_fid", "classifier_score", "precision", "recall", "modes_covered")


def run_seed(seed: int, args, root: Path) -> dict:
    workdir, export_base = root / f"seed{seed}" / "run", root / f"seed{seed}" / "export"
    fit = [sys.executable, "-m", "gan_pkg.fit", "--max-time", args.max_time, "--workdir", str(workdir),
           "--export-base", str(export_base), "--set", f"seed={seed}"]
    fit += ["--preset", args.preset] if args.preset else []
    fit += [arg for item in args.set for arg in ("--set", item)]
    started = time.monotonic()
    trained = subprocess.run(fit, capture_output=True, text=True)
    if trained.returncode:
        raise SystemExit(f"seed {seed}: fit failed:\n{trained.stderr[-3000:]}")
    evaluated = subprocess.run([sys.executable, "-m", "gan_pkg.evaluate", "--export", str(export_base / "gan")], capture_output=True, text=True)
    if evaluated.returncode:
        raise SystemExit(f"seed {seed}: evaluate failed:\n{evaluated.stderr[-3000:]}")
    # What a user would have seen, kept beside the run: where README's "it prints" can come from.
    (root / f"seed{seed}" / "output.txt").write_text(trained.stdout + evaluated.stdout)
    version = max((export_base / "gan").iterdir(), key=lambda p: int(p.name))
    result = json.loads((version / "assets.extra" / "evaluation.json").read_text())
    metadata = json.loads((version / "assets.extra" / "gan_pkg.json").read_text())
    generated, floor = result["generated"], result["real_floor"]
    row = {"seed": seed, "steps": metadata["training_step"], "floor_fid": floor["fid"], "seconds": round(time.monotonic() - started)}
    row.update({key: generated.get(key) for key in COLUMNS if key in generated})
    print(f"seed {seed}: {json.dumps(row)}", flush=True)
    return row


def _cell(value) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-time", default="4m", help="fit's --max-time (default: %(default)s, make demo's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--preset", default="", help="fit's --preset (default: fit's default)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="passed to fit")
    parser.add_argument("--root", type=Path, default=None, help="where runs and exports go (default: a temporary folder)")
    args = parser.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="demo-budget-"))

    print(f"# fit --max-time {args.max_time} {' '.join('--set ' + s for s in args.set)} then evaluate, under {root}; CPU: {cpu_description()}", flush=True)
    rows = [run_seed(seed, args, root) for seed in args.seeds]
    header = ("seed", *COLUMNS, "seconds")
    print("\n| " + " | ".join(header) + " |\n|" + "---:|" * len(header))
    for row in rows:
        print("| " + " | ".join(_cell(row.get(key)) for key in header) + " |")
    fids = [row["fid"] for row in rows]
    print(f"\nFID median {statistics.median(fids):.2f} (range {min(fids):.2f}-{max(fids):.2f}), "
          f"{statistics.median(f / row['floor_fid'] for f, row in zip(fids, rows)):.1f}x the floor")


if __name__ == "__main__":
    main()
