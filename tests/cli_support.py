"""Running the CLI in-process from a folder, shared by the CLI failure tests."""

from __future__ import annotations

import os
from pathlib import Path

from typer.testing import CliRunner

from churnlens.cli import app


def run(cwd: Path, *args: str | Path) -> tuple[int, str, str]:
    """``churnlens ARGS`` run from ``cwd`` (typer's CliRunner): exit code, stdout, stderr."""
    old = Path.cwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, [str(a) for a in args])
    finally:
        os.chdir(old)
    return result.exit_code, result.stdout, result.stderr
