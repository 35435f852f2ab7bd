"""Models on disk: version folders under a base path, the version policy that picks which
are served, loading and unloading as they appear and disappear, and the allowed-roots
check every model path passes."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import grpc

from gan_pkg import contract
from serving.errors import ServingError
from serving.servable import Servable

_STATE_AVAILABLE = "AVAILABLE"


def _inside(path: Path, roots) -> bool:
    resolved = Path(os.path.realpath(path))
    return any(resolved == root or root in resolved.parents for root in roots)


def check_base_path(name: str, base: Path, roots, source: str) -> Path:
    """A model's base path, refused when it (after '..' and symlinks) leaves the allowed roots or is missing."""
    if not _inside(base, roots):
        raise ValueError(
            f"{source}: model '{name}' base path {base} resolves to {os.path.realpath(base)}, outside the allowed "
            f"roots {[str(r) for r in roots]}; move the model there or pass --allowed_model_roots"
        )
    if not base.is_dir():
        raise ValueError(f"{source}: model '{name}' base path {base}: no such folder; export a model first (python -m gan_pkg.fit)")
    return base


class Model:
    """One model name: its base path, version policy and loaded versions."""

    def __init__(self, name, base_path, policy=("latest", 1), labels=None, log=print, roots=None):
        self.name, self.base_path, self.policy = name, Path(base_path), policy
        self.roots = roots  # None: anywhere (in-process use); else version folders must resolve inside
        self._refused: set = set()
        self.labels = dict(labels or {})
        self.servables: dict[int, Servable] = {}
        self.states: dict[int, tuple[str, grpc.StatusCode, str]] = {}
        self._failed: dict[int, tuple] = {}  # version -> fingerprint when its load failed
        self._lock = threading.Lock()
        self._log = log
        self.warmup = None  # set by ModelServer: callable(servable) that replays warmup records

    def on_disk(self) -> dict[int, Path]:
        """Complete version folders: integer names, not hidden, saved_model.pb present."""
        found = {}
        try:
            entries = list(os.scandir(self.base_path))
        except OSError:
            return found
        for entry in entries:
            if entry.name.isdigit() and entry.is_dir() and (Path(entry.path) / "saved_model.pb").is_file():
                if self.roots is not None and not _inside(Path(entry.path), self.roots):
                    if entry.path not in self._refused:  # say it once, not every poll
                        self._refused.add(entry.path)
                        self._log(f"error: {self.name}: ignoring {entry.path}: it resolves to {os.path.realpath(entry.path)}, "
                                  f"outside the allowed model roots", file=sys.stderr)
                    continue
                found[int(entry.name)] = Path(entry.path)
        return found

    def aspired(self, available: dict) -> set:
        kind = self.policy[0]
        if kind == "all":
            return set(available)
        if kind == "specific":
            return set(self.policy[1]) & set(available)
        return set(sorted(available)[-max(1, self.policy[1]) :])

    @staticmethod
    def _fingerprint(path: Path):
        """Size and mtime of every file a load reads: a failed load is retried once any of them changes,
        so a version a non-atomic writer is still copying gets loaded when the copy completes."""
        stamps = []
        for part in ("saved_model.pb", "variables", contract.ASSETS_EXTRA):
            root = path / part
            try:
                if root.is_file():
                    stat = root.stat()
                    stamps.append((part, stat.st_size, stat.st_mtime_ns))
                    continue
                for folder, _, files in os.walk(root):
                    for name in sorted(files):
                        stat = os.stat(os.path.join(folder, name))
                        stamps.append((os.path.join(folder, name), stat.st_size, stat.st_mtime_ns))
            except OSError:
                stamps.append((part, None))
        return tuple(stamps)

    def poll(self):
        """Load aspired versions (new before old goes, so one is always served), unload the rest.

        Versions whose load failed (and whose files have not changed since) are not aspired:
        a broken newest version leaves the next highest one served, not nothing.
        """
        disk = self.on_disk()
        for version in [v for v in self._failed if v not in disk]:
            del self._failed[version]
        failed_now = set()  # tried once per poll: a folder still being written is retried next poll, not in a loop
        while True:
            loadable = {
                v: p for v, p in disk.items()
                if v in self.servables or (v not in failed_now and self._failed.get(v) != self._fingerprint(p))
            }
            aspired = self.aspired(loadable)
            missing = sorted(aspired - set(self.servables), reverse=True)
            failed_now.update(v for v in missing if not self._load(v, disk[v]))
            if not failed_now & set(missing):
                break  # every aspired version is served; otherwise aspire again without the failed ones
        for version in sorted(set(self.servables) - aspired):
            # keep an old version until a newer one is actually serving
            if version in disk and not (set(self.servables) & aspired):
                continue
            self._unload(version)

    def _load(self, version, path) -> bool:
        self.states[version] = ("LOADING", grpc.StatusCode.OK, "")
        try:
            servable = Servable(self.name, version, path)
            if self.warmup is not None:
                self.warmup(servable)
        except Exception as error:  # noqa: BLE001  a bad export must not take the server down
            from gan_pkg.session_loader import summary

            self._failed[version] = self._fingerprint(path)
            message = f"failed to load {path}: {summary(error)}"
            self.states[version] = ("END", grpc.StatusCode.UNKNOWN, message)
            self._log(f"error: {self.name} version {version}: {message}", file=sys.stderr)
            return False
        with self._lock:
            self.servables[version] = servable
        self.states[version] = (_STATE_AVAILABLE, grpc.StatusCode.OK, "")
        self._log(f"loaded {self.name} version {version} from {path}")
        return True

    def _unload(self, version):
        self.states[version] = ("UNLOADING", grpc.StatusCode.OK, "")
        with self._lock:
            self.servables.pop(version, None)
        self.states[version] = ("END", grpc.StatusCode.OK, "")
        self._log(f"unloaded {self.name} version {version}")

    def version_for_label(self, label: str) -> int:
        """The version a label names; an unknown label is the caller's mistake (INVALID_ARGUMENT, as TF Serving)."""
        if label not in self.labels:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Unrecognized servable version label: {label} (labels of model '{self.name}': {sorted(self.labels) or 'none'})",
            )
        return self.labels[label]

    def resolve(self, spec) -> Servable:
        with self._lock:
            servables = dict(self.servables)
        if spec.HasField("version"):
            version = spec.version.value
            request = f"Specific({self.name}, {version})"
        elif spec.version_label:
            version = self.version_for_label(spec.version_label)
            request = f"Specific({self.name}, {version}) (label '{spec.version_label}')"
        else:
            if not servables:
                raise ServingError(
                    grpc.StatusCode.NOT_FOUND,
                    f"Servable not found for request: Latest({self.name}): no version of '{self.name}' is loaded "
                    f"(looking under {self.base_path})",
                )
            return servables[max(servables)]
        if version not in servables:
            served = sorted(servables) or "none"
            raise ServingError(
                grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {request}; versions served: {served}"
            )
        return servables[version]


def _policy_from_config(config) -> tuple:
    which = config.model_version_policy.WhichOneof("policy_choice")
    if which == "all":
        return ("all",)
    if which == "specific":
        return ("specific", tuple(config.model_version_policy.specific.versions))
    if which == "latest":
        return ("latest", config.model_version_policy.latest.num_versions or 1)
    return ("latest", 1)
