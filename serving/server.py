"""Embedded TF-Serving-compatible model server (gRPC + REST) for gan_pkg exports.

    python serving/server.py --model_base_path export/gan

The same as `python -m serving` and `gan-serve`; the server is the serving package
(serving/main.py has the flags and what the server does).
"""

import sys
from pathlib import Path


def main(argv=None) -> int:
    from serving.main import main as serve

    return serve(argv)


if __name__ == "__main__":
    # Run as a script, Python puts serving/ itself first on sys.path, where the package's
    # modules (main, errors, ...) would shadow top-level names; the checkout root goes
    # there instead, so `serving` imports from a checkout with or without an install.
    _HERE = Path(__file__).resolve().parent
    if sys.path and Path(sys.path[0] or ".").resolve() == _HERE:
        sys.path[0] = str(_HERE.parent)
    sys.exit(main())
