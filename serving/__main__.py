"""python -m serving: the embedded model server (serving.main)."""

import sys

from serving.main import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m serving"))
