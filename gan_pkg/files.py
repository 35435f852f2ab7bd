"""Writing files so that a reader (a resumed run, a polling server, a second
evaluation) sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path
from typing import Iterator

TEMPORARY_PREFIX = ".tmp-"  # hidden, and skipped by everything that lists checkpoints or versions


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """A fresh path beside `target` (same folder, same suffix) for the block to write;
    it replaces `target` in one rename when the block succeeds and is removed when it fails.
    The writer creates the file itself, so it gets the usual permissions (a server running
    as another user can read it), not mkstemp's 0600."""
    target = Path(target)
    temporary = target.with_name(f"{TEMPORARY_PREFIX}{uuid.uuid4().hex[:12]}-{target.name}")
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        if temporary.exists():
            temporary.unlink()


def cache_dir(*parts: str) -> Path:
    """A per-user cache folder of this package: $XDG_CACHE_HOME (default ~/.cache)/gan_pkg/<parts>."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "gan_pkg", *parts)


def write_text(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as temporary:
        temporary.write_text(text)


def write_json(target: str | os.PathLike, payload) -> None:
    write_text(target, json.dumps(payload, indent=2) + "\n")
