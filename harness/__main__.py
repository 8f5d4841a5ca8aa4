"""``python -m harness`` is the ``trainmark`` CLI."""

import sys

from harness.cli import main

sys.exit(main())
