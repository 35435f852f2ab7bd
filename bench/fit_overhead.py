"""Where the wall time of `python -m gan_pkg.fit --max-time T` goes, besides the steps.

    python bench/fit_overhead.py [--max-time 90s] [--preset P] [--set field=value ...]

Runs `gan_pkg.fit` in this process as a user runs it (its workdir in a temporary folder;
no export, which comes after the clock stops), with every callback's hooks timed.
`--max-time` counts from the start of training, so whatever is not a training step is
budget the steps do not get: the first step (tracing, and XLA's compilation in float32),
the hooks after every step and the work after every epoch (samples, checkpoint, loss
plot, the EMA generator's statistics). Prints the CPU, then each part's share of the
training time; "steps at their median" is what that time would be if every step took the
median step's time, and "the rest" is the steps' own spread.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import tempfile
import time
from pathlib import Path

from train_throughput import cpu_description  # bench/ is the script's directory

from gan_pkg import fit
from gan_pkg.cli import import_tensorflow_quietly, parse_duration

HOOKS = ("on_train_batch_end", "on_epoch_end")


class Timings:
    """Seconds per (callback, hook) and the end time of every step since training began."""

    def __init__(self):
        self.seconds = collections.defaultdict(float)
        self.calls = collections.Counter()
        self.started = self.ended = None
        self.step_ends: list[float] = []

    def instrument(self, callback_list) -> None:
        """Wrap each callback's hooks (the CallbackList calls them by attribute)."""
        for callback in callback_list.callbacks:
            for hook in HOOKS:
                setattr(callback, hook, self._timed(type(callback).__name__, hook, getattr(callback, hook)))
        begin, batch_end, end = callback_list.on_train_begin, callback_list.on_train_batch_end, callback_list.on_train_end

        def on_train_begin(logs=None):
            self.started = time.monotonic()
            begin(logs)

        def on_train_batch_end(batch, logs=None):
            self.step_ends.append(time.monotonic() - self.started)
            batch_end(batch, logs)
            self.seconds["all callbacks", "on_train_batch_end"] += time.monotonic() - self.started - self.step_ends[-1]

        def on_train_end(logs=None):
            end(logs)
            self.ended = time.monotonic() - self.started

        callback_list.on_train_begin, callback_list.on_train_batch_end, callback_list.on_train_end = on_train_begin, on_train_batch_end, on_train_end

    def _timed(self, name, hook, method):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds[name, hook] += time.perf_counter() - start
                self.calls[name, hook] += 1

        return timed


def report(timings: Timings, budget: float) -> None:
    ends = timings.step_ends
    steps, wall = len(ends), timings.ended
    gaps = [b - a for a, b in zip(ends, ends[1:])]
    median = statistics.median(gaps) if gaps else 0.0  # a budget the first step already crossed
    per_step = timings.seconds["all callbacks", "on_train_batch_end"]
    per_epoch = {name: s for (name, hook), s in timings.seconds.items() if hook == "on_epoch_end"}
    epochs = max(timings.calls[name, "on_epoch_end"] for name in per_epoch)
    first, stepping, epoch_work = ends[0], median * (steps - 1), sum(per_epoch.values())
    print(f"{steps:,} steps, {epochs} epoch ends, {wall:.1f} s from the start of training to its end "
          f"(--max-time {budget:g} s, then the last epoch's end); median step {1e3 * median:.1f} ms\n")
    print("| part | seconds | share |")
    print("|---|---:|---:|")
    rows = [("first step (tracing, compilation, the step)", first),
            (f"the other {steps - 1:,} steps at their median", stepping),
            ("  of which the callbacks after each step", per_step),
            *((f"after each epoch: {name}", s) for name, s in sorted(per_epoch.items(), key=lambda kv: -kv[1]) if s >= 0.005),
            ("the rest (the steps' spread around the median)", wall - first - stepping - epoch_work)]
    for label, seconds in rows:
        print(f"| {label} | {seconds:.2f} | {100 * seconds / wall:.1f}% |")
    print(f"\nper step: callbacks {1e3 * per_step / steps:.2f} ms; per epoch end: {epoch_work / epochs:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-time", default="90s", help="the training budget, as fit's --max-time")
    parser.add_argument("--preset", help="fit's --preset (default: fit's default)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="passed to fit")
    args = parser.parse_args()
    import_tensorflow_quietly()
    from keras.src.callbacks.callback_list import CallbackList

    timings = Timings()
    original_init = CallbackList.__init__

    def init(self, *a, **kw):
        original_init(self, *a, **kw)
        if self.model is not None and hasattr(self.model, "g_optimizer"):  # the GAN's fit, not a predict inside a callback
            timings.instrument(self)

    CallbackList.__init__ = init
    print(f"# fit --max-time {args.max_time} {' '.join('--set ' + s for s in args.set)}; CPU: {cpu_description()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="gan-fit-overhead-") as root:
        argv = ["--max-time", args.max_time, "--workdir", str(Path(root) / "run"), "--no-export"]  # the export comes after the clock
        argv += ["--preset", args.preset] if args.preset else []
        argv += [a for item in args.set for a in ("--set", item)]
        if fit.main(argv):
            raise SystemExit("fit failed (its message is above)")
    report(timings, parse_duration(args.max_time))


if __name__ == "__main__":
    main()
