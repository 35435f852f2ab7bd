"""The README is a front page that stays true: short, its links resolve, its commands exist
with the flags it shows, and its Python example and short commands run as printed."""

import re
import shlex
from pathlib import Path

from conftest import REPO, run_python

README = Path(REPO) / "README.md"
TEXT = README.read_text()
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```", TEXT, flags=re.MULTILINE | re.DOTALL)


def _commands() -> list[list[str]]:
    """Every `python ...` command line in the README's shell blocks, as argv after `python`."""
    found = []
    for language, body in BLOCKS:
        if language:
            continue
        for line in body.splitlines():
            for part in line.split("&&"):
                words = shlex.split(part.split("#", 1)[0])
                if words[:1] == ["python"]:
                    found.append(words[1:])
    return found


def _program(argv: list[str]) -> tuple[str, ...]:
    return tuple(argv[:2]) if argv[0] == "-m" else (argv[0],)


def test_the_readme_is_a_front_page():
    assert len(TEXT.splitlines()) <= 200


def test_every_link_and_picture_resolves():
    targets = re.findall(r"\]\(([^)#]+)\)", TEXT)
    assert targets
    missing = [t for t in targets if not t.startswith("http") and not (README.parent / t).exists()]
    assert missing == []


def test_every_command_exists_and_takes_the_flags_it_is_shown_with():
    flags: dict[tuple, set] = {}
    for argv in _commands():
        flags.setdefault(_program(argv), set()).update(w.split("=")[0] for w in argv if w.startswith("--"))
    assert {("-m", "gan_pkg.fit"), ("-m", "gan_pkg.evaluate"), ("tuning/search.py",), ("serving/server.py",)} <= set(flags)
    for program, shown in flags.items():
        helped = run_python(*program, "--help", cwd=REPO, timeout=120)
        assert helped.returncode == 0, (program, helped.stderr[-2000:])
        unknown = sorted(flag for flag in shown if flag not in helped.stdout)
        assert unknown == [], (program, unknown)


def test_the_shapes_command_runs_as_printed(tmp_path):
    argv = next(a for a in _commands() if _program(a) == ("-m", "gan_pkg.shapes"))
    made = run_python(*argv, cwd=tmp_path, timeout=240)
    assert made.returncode == 0, made.stderr[-2000:]
    folder = tmp_path / argv[2]
    assert sorted(p.name for p in folder.iterdir()) == ["circle", "square"]
    assert len(list(folder.rglob("*.png"))) == 2000


def test_the_python_example_runs_as_printed(tmp_path):
    (example,) = [body for language, body in BLOCKS if language == "python"]
    ran = run_python("-c", example, cwd=tmp_path, timeout=600)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "mnist-sample: 5,000 images" in ran.stdout
    printed = ran.stdout.strip().splitlines()[-1]
    assert printed == "export/gan/1"
    assert (tmp_path / "export" / "gan" / "1" / "saved_model.pb").exists()
