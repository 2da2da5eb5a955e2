"""The demo job: runs end to end, and what it prints matches the files it wrote."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from churnlens.cli import app


@pytest.mark.slow
def test_demo_prints_what_it_wrote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["demo", "--out", "out", "--customers", "3000",
                                      "--seed", "7", "--tracking-uri",
                                      f"sqlite:///{tmp_path / 'mlflow.db'}"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    scores = pd.read_parquet(tmp_path / "out" / "scores.parquet")
    at_risk = pd.read_csv(tmp_path / "out" / "at-risk.csv", dtype={"customer_id": str})
    assert (tmp_path / "out" / "report.html").stat().st_size > 10_000
    assert (tmp_path / "mlflow.db").exists()
    assert not (Path.cwd() / "mlflow.db").exists() or Path.cwd() == tmp_path

    high = int((scores["risk_band"] == "high").sum())
    assert f"scored {len(scores):,} customers: {high:,} high risk" in out
    # over the active customers, as the summary (issue 16: one base for every total)
    active = scores["recency_days"] < summary["horizon_days"]
    assert f"value at risk {scores.loc[active, 'value_at_risk'].sum():,.2f}" in out
    assert f"at-risk list: {len(at_risk)} customers worth {at_risk['value_at_risk'].sum():,.2f}" \
        in out
    p = summary["scoring"]["predicted"]
    assert f"predicted cohort retention {p['cohort_retention']:.1f}%" in out
    reg = summary["training"]
    assert f"churnlens version {reg['model_version']} -> @{reg['alias']}" in out
    # the backtest table shows the numbers of the summary file
    run = summary["training"]["backtest"][0]
    auc = run["models"]["churnlens"]["auc"]
    row = next(line for line in out.splitlines() if re.search(r"\bchurnlens\b.*\d\.\d{3}", line))
    assert f"{auc:.3f}" in row
    assert len(at_risk) == 100
    assert at_risk["value_at_risk"].is_monotonic_decreasing
