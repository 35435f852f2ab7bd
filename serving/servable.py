"""One loaded model version, loaded and run the way TF Serving does it."""

from __future__ import annotations

import json
from pathlib import Path

from gan_pkg import contract


class Servable:
    """One loaded version, loaded and run the way TF Serving does (gan_pkg.session_loader):
    MetaGraph import and restore into its own Session, signatures run by tensor name.
    So a version TF Serving cannot run fails here too, at load or warmup."""

    def __init__(self, name: str, version: int, path: Path):
        from gan_pkg.session_loader import SessionModel

        self.name, self.version, self.path = name, version, Path(path)
        session = SessionModel(path)
        self.signature_defs = session.signature_defs  # exactly what TF Serving reports
        self.inputs = session.inputs  # signature -> {key: (tf.DType, shape with None)}
        self.outputs = session.outputs  # signature -> [keys]
        self.run = session.run  # {key: ndarray} already validated -> {key: ndarray}
        # A conditional export's label range, checked before batching: one bad label in a
        # merged batch would fail every request in it (the graph's own check still holds).
        self.num_classes = _num_classes(self.path)


def _num_classes(path: Path) -> int:
    """num_classes from a gan_pkg export's metadata; 0 for other models or unreadable metadata."""
    try:
        return int(json.loads((path / contract.ASSETS_EXTRA / contract.METADATA_FILE).read_text()).get("num_classes") or 0)
    except (OSError, ValueError, TypeError, AttributeError):
        return 0
