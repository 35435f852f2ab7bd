"""Models on disk: version folders under a base path, the version policy that picks which
are served, loading and unloading as they appear and disappear, the allowed-roots check
every model path (and every symlink inside a version) passes, and the model config's
validation (TF Serving's ValidateModelConfigList)."""

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


def escaping_link(folder: Path, roots) -> str | None:
    """The first symlink under `folder` (symlinked folders are followed, each real folder once) that
    resolves outside `roots`, or None: a version's `variables/` linked to /etc is not that version."""
    seen, pending = set(), [str(folder)]
    while pending:
        current = pending.pop()
        real = os.path.realpath(current)
        if real in seen:
            continue
        seen.add(real)
        try:
            with os.scandir(current) as listing:
                entries = list(listing)
        except OSError:
            continue  # unreadable: the load fails and says so
        for entry in entries:
            try:
                is_link, is_dir = entry.is_symlink(), entry.is_dir()
            except OSError:
                continue
            if is_link and not _inside(Path(entry.path), roots):
                return entry.path
            if is_dir:
                pending.append(entry.path)
    return None


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
        self._said: set = set()  # what on_disk has already logged, so each thing is said once, not every poll
        self.labels = dict(labels or {})
        self.servables: dict[int, Servable] = {}
        self.states: dict[int, tuple[str, grpc.StatusCode, str]] = {}
        self._failed: dict[int, tuple] = {}  # version -> fingerprint when its load failed
        self._lock = threading.Lock()
        self._log = log
        self.warmup = None  # set by ModelServer: callable(servable) that replays warmup records

    def _once(self, key, message):
        if key not in self._said:
            self._said.add(key)
            self._log(message, file=sys.stderr)

    def on_disk(self) -> dict[int, Path]:
        """Complete version folders: int64 names of ASCII digits, not hidden, saved_model.pb present,
        and (with allowed roots) no symlink in them leading outside the roots.

        Anything else not hidden is ignored with one log line per name. Two names for one number
        ('7' and '007', as TF Serving parses them) are one version: '7' if present, else the first by name.
        """
        found: dict[int, Path] = {}
        try:
            with os.scandir(self.base_path) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError:
            return found
        for entry in entries:
            if entry.name.startswith("."):
                continue  # hidden, e.g. a .tmp-* folder an exporter is still writing
            version = contract.version_of(entry.name)
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if version is None or not is_dir:
                why = "not a folder" if version is not None else f"not a version (ASCII digits, at most {contract.MAX_VERSION})"
                self._once(("name", entry.name), f"warning: {self.name}: ignoring {entry.name!r} under {self.base_path}: {why}")
                continue
            path = Path(entry.path)
            if not (path / "saved_model.pb").is_file():
                continue  # a version still being written
            if self.roots is not None:
                refused = self._refusal(path)
                if refused:
                    self._once(("roots", entry.path), refused)
                    continue
                self._said.discard(("roots", entry.path))  # fixed: say it again if it comes back
            if version in found:
                keep, drop = (path, found[version]) if entry.name == str(version) else (found[version], path)
                self._once(("duplicate", str(drop)), f"warning: {self.name}: ignoring {drop}: version {version} is read from {keep}")
                found[version] = keep
                continue
            found[version] = path
        return found

    def _refusal(self, path: Path) -> str | None:
        """Why a version folder may not be loaded from (it or a symlink in it leaves the allowed roots), or None."""
        if not _inside(path, self.roots):
            return (f"error: {self.name}: ignoring {path}: it resolves to {os.path.realpath(path)}, "
                    f"outside the allowed model roots")
        link = escaping_link(path, self.roots)
        if link is not None:
            return (f"error: {self.name}: ignoring {path}: {link} resolves to {os.path.realpath(link)}, "
                    f"outside the allowed model roots")
        return None

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
        a broken newest version leaves the next highest one served, not nothing. Once a failed
        version's folder is gone, so is its error: the model's status reports what is on disk.
        """
        disk = self.on_disk()
        for version in [v for v in self._failed if v not in disk]:
            del self._failed[version]
        for version, (_, code, _) in list(self.states.items()):
            if code != grpc.StatusCode.OK and version not in disk and version not in self.servables:
                self.states.pop(version, None)
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

    def check_labels(self) -> None:
        """TF Serving's rule when labels are assigned: each must name a version being served
        (unless --allow_version_labels_for_unavailable_models). Raises ValueError."""
        with self._lock:
            served = sorted(self.servables)
        for label, version in sorted(self.labels.items()):
            if version not in served:
                raise ValueError(
                    f"Request to assign label '{label}' to version {version} of model '{self.name}', which is not currently "
                    f"available for inference (versions served: {served or 'none'}); pass "
                    "--allow_version_labels_for_unavailable_models to assign it anyway"
                )

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


def validate_model_config_list(config_list, source: str) -> None:
    """What TF Serving refuses in a ModelConfigList before loading anything (server_core.cc:
    ValidateModelConfigList, GetPlatform), as one ValueError naming `source`.

    Base paths may be relative here (to the config's folder, like TF Serving's
    model_config_list_root_dir), but not empty: that would be the config's folder itself.
    """
    from tensorflow_serving.config import model_server_config_pb2

    model_type = model_server_config_pb2.ModelType
    if not config_list.config:
        raise ValueError(f"{source}: no model_config_list {{ config {{ ... }} }} entries")
    names = set()
    for entry in config_list.config:
        label = f"model '{entry.name}'"
        if not entry.name:
            raise ValueError(f"{source}: a config entry has no name; every model needs one (name: \"gan\")")
        if entry.name in names:
            raise ValueError(f"{source}: Illegal to list model {entry.name} multiple times in config list")
        names.add(entry.name)
        if not entry.base_path.strip():
            raise ValueError(f"{source}: {label} has an empty base_path; give the folder holding its versions")
        if entry.model_type != model_type.MODEL_TYPE_UNSPECIFIED:
            if entry.model_platform:
                raise ValueError(f"{source}: {label}: Illegal setting both model_type (deprecated) and model_platform")
            if entry.model_type != model_type.TENSORFLOW:
                raise ValueError(f"{source}: {label}: model_type {model_type.Name(entry.model_type)} not supported")
        elif not entry.model_platform:
            raise ValueError(f"{source}: {label}: Illegal setting neither model_type (deprecated) nor model_platform; "
                             f"add model_platform: \"tensorflow\"")
        elif entry.model_platform != "tensorflow":
            raise ValueError(f"{source}: {label} platform '{entry.model_platform}' is not supported")
