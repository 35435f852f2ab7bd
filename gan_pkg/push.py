"""python -m gan_pkg.push: publish a candidate SavedModel only when it is blessed.

TFX's Evaluator + InfraValidator + Pusher in one step, without tfx:
1. infra check (TFX's InfraValidator): a separate Python process that never
   imports gan_pkg loads it the way TF Serving does (MetaGraph import + restore
   into a Session, gan_pkg/session_loader.py) and answers every signature with
   finite outputs;
2. evaluate the candidate (FID on the held-out split, gan_pkg.evaluate);
3. bless it only if its FID beats the currently served (latest) version's, and
   `--max-fid` when given;
4. copy it into the next integer version, atomically, its evaluation recorded.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from gan_pkg import contract
from gan_pkg.cli import ArgumentParser


class NotBlessed(RuntimeError):
    pass


def fid_of(result: dict) -> float:
    if "fid" not in result.get("generated", {}):  # no feature space for this data: nothing to bless on
        raise NotBlessed(f"not blessed: no FID ({result.get('features_missing', 'no feature space')})")
    return float(result["generated"]["fid"])


def infra_check(saved_model: Path, timeout: float = 300) -> None:
    from gan_pkg import session_loader

    try:
        session_loader.check_in_fresh_process(saved_model, timeout=timeout)
    except session_loader.CheckFailed as error:
        raise NotBlessed(f"infra check failed: {error}") from None


def push(candidate: Path, export_base: Path, model_name: str, max_fid: float | None = None, num_samples: int = 1000) -> Path:
    """Evaluate, bless, infra-check and publish `candidate`; return the new version dir."""
    from gan_pkg import evaluate, export

    candidate = Path(candidate)
    if not (candidate / "saved_model.pb").is_file():
        raise FileNotFoundError(f"{candidate}: no saved_model.pb; pass the directory a run_fn or export wrote")
    infra_check(candidate)  # first: nothing TF Serving cannot run is scored, let alone published
    result = evaluate.evaluate_export(candidate, num_samples, seed=0)
    fid = fid_of(result)
    model_dir = Path(export_base) / model_name
    served = export.versions(model_dir)
    if served:
        current_dir = model_dir / str(served[-1])
        current = export.read_metadata(current_dir).get("evaluation") or {}
        if current.get("num_samples") != num_samples or "generated" not in current or current.get("features") != result.get("features"):
            current = evaluate.evaluate_export(current_dir, num_samples, seed=0)
        if fid >= fid_of(current):
            raise NotBlessed(f"not blessed: FID {fid:.3f} does not beat served version {served[-1]}'s {fid_of(current):.3f}")
    if max_fid is not None and fid > max_fid:
        raise NotBlessed(f"not blessed: FID {fid:.3f} is above --max-fid {max_fid:g}")

    def write(folder: Path) -> None:
        shutil.copytree(candidate, folder, dirs_exist_ok=True)
        export.record_evaluation(folder, result)

    return export.add_version(model_dir, write)


def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m gan_pkg.push", description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", required=True, type=Path, help="a SavedModel directory (e.g. run_fn's serving_model_dir)")
    parser.add_argument("--export-base", type=Path, default=Path(contract.DEFAULT_EXPORT_BASE))
    parser.add_argument("--model-name", default=contract.DEFAULT_MODEL_NAME)
    parser.add_argument("--max-fid", type=float, help="also require FID at most this")
    parser.add_argument("--num-samples", type=int, default=1000)
    args = parser.parse_args(argv)
    from gan_pkg.cli import import_tensorflow_quietly

    import_tensorflow_quietly()
    try:
        target = push(args.candidate, args.export_base, args.model_name, args.max_fid, args.num_samples)
    except NotBlessed as error:
        print(error, file=sys.stderr)
        return 1
    except (OSError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"blessed and published {args.candidate} as {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
