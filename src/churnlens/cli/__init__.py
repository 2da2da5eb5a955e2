"""The ``churnlens`` command line: thin commands over the library.

Exit status: 0 success, 2 bad input or options (one readable message on stderr, no
traceback, no output file written), 1 an unexpected failure.
"""

from __future__ import annotations

from churnlens.cli._app import app, main

# Each module registers its commands on ``app`` when imported.
from churnlens.cli import _data  # noqa: F401  isort: skip
from churnlens.cli import _features  # noqa: F401  isort: skip
from churnlens.cli import _retention  # noqa: F401  isort: skip
from churnlens.cli import _train  # noqa: F401  isort: skip
from churnlens.cli import _score  # noqa: F401  isort: skip
from churnlens.cli import _serve  # noqa: F401  isort: skip

__all__ = ["app", "main"]
