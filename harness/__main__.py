"""``python -m harness`` is the ``trainmark`` CLI."""

import sys

from harness.cli import main

if __name__ == "__main__":  # worker processes may import this module; only a run calls main
    sys.exit(main())
