"""One loaded model version, loaded and run the way TF Serving does it."""

from __future__ import annotations

from pathlib import Path


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
