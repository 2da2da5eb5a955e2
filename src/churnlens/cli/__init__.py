"""The ``churnlens`` command line: thin commands over the library.

Exit status: 0 success; 2 bad input or options; 1 an unexpected failure; 3 alerts
(``monitor`` only); 130 interrupted (Ctrl-C or SIGTERM, at any phase). Every failure
prints one line on stderr (what, where, and a suggestion), no traceback
(``CHURNLENS_DEBUG=1`` shows the traceback of an unexpected failure), and writes no
output file: outputs are checked before the work starts and written atomically after it.
"""

from __future__ import annotations

from churnlens.cli._app import app, main

# Each module registers its commands on ``app`` when imported.
from churnlens.cli import _data  # noqa: F401  isort: skip
from churnlens.cli import _features  # noqa: F401  isort: skip
from churnlens.cli import _retention  # noqa: F401  isort: skip
from churnlens.cli import _train  # noqa: F401  isort: skip
from churnlens.cli import _score  # noqa: F401  isort: skip
from churnlens.cli import _campaign  # noqa: F401  isort: skip
from churnlens.cli import _serve  # noqa: F401  isort: skip
from churnlens.cli import _monitor  # noqa: F401  isort: skip

__all__ = ["app", "main"]
