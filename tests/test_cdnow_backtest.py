"""Issue 5's quality acceptance: ``churnlens backtest`` on CDNOW at 1997-12-31 and
1998-03-31 (horizon 91 days) beats BG/NBD's AUC by at least 0.005 at both dates and
predicts the retention within 1.5 points.

Measured with the default configuration (churnlens 0.8062 / 0.8399 against BG/NBD
0.7927 / 0.8298; predicted retention 17.19% vs 16.30% and 15.26% vs 14.11%). The
defaults were not tuned on these dates: they are the evaluation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from churnlens.cli import app
from churnlens.datasets import load_cdnow

AS_OF_DATES = ("1997-12-31", "1998-03-31")


@pytest.mark.slow
def test_cdnow_backtest_meets_the_required_targets(tmp_path: Path) -> None:
    csv = tmp_path / "cdnow.csv"
    load_cdnow().to_csv(csv, index=False)
    result = CliRunner().invoke(app, [
        "backtest", "--transactions", str(csv), "--as-of", AS_OF_DATES[0], "--as-of",
        AS_OF_DATES[1], "--horizon-days", "91", "--json"])
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    runs = {run["as_of"]: run["models"] for run in document["runs"]}
    assert sorted(runs) == list(AS_OF_DATES)
    for as_of, models in runs.items():
        print(as_of, {name: {k: round(m[k], 4) for k in ("auc", "brier",
                                                          "predicted_retention",
                                                          "actual_retention")}
                      for name, m in models.items()})
    for as_of, models in runs.items():
        ours, bgnbd = models["churnlens"], models["bgnbd"]
        assert ours["auc"] >= bgnbd["auc"] + 0.005, (as_of, ours["auc"], bgnbd["auc"])
        gap = abs(ours["predicted_retention"] - ours["actual_retention"])
        assert gap <= 1.5, (as_of, ours["predicted_retention"], ours["actual_retention"])
        # every model is judged on the same customers and the same truth
        assert len({m["actual_retention"] for m in models.values()}) == 1
        assert len({m["customers"] for m in models.values()}) == 1
