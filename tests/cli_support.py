"""Shared by CLI tests: running the CLI in-process from a folder, and a scores table
written by hand (seven customers, one per kind of campaign case)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
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


def hand_scores() -> pd.DataFrame:
    """Scores of seven customers, as churnlens score writes them (the columns a list reads)."""
    return pd.DataFrame({
        "customer_id": ["a", "b", "c", "d", "e", "f", "g"],
        "churn_risk": [0.95, 0.5, 0.99, 0.2, 0.8, 0.45, 0.97],
        "risk_band": ["high", "medium", "high", "low", "high", "medium", "high"],
        "value_at_risk": [10.0, 30.0, 90.0, 1.0, 30.0, 5.0, 80.0],
        # 181 is lapsed but not gone; 182 = 2H is gone
        "recency_days": [40, 100, 400, 3, 181, 0, 182],
        "segment": ["loyal", "loyal", "lost", "new", "at risk", "new", "lost"],
    })
