"""One base per total (issue 16): customers lost and revenue at risk are counted over the
same customers, the active ones, and every total of the summary and the outlook states
its base in the JSON.

On the demo base the old summary summed the value at risk of everyone scored (customers
silent for over a year included) beside customers lost counted over the active ones.
"""

from __future__ import annotations

import html
import json
import numbers

import numpy as np
import pytest
from demo_support import scored_base
from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def demo():
    return scored_base("demo")


def test_lost_and_value_at_risk_share_the_active_base(demo):
    artifact, result, _ = demo
    summary = json.loads(json.dumps(result.summary, allow_nan=False))
    scores, horizon = result.scores, artifact.horizon_days
    active = scores["recency_days"].to_numpy() < horizon
    print(f"active {active.sum()} of {len(scores)}; value at risk active "
          f"{scores.loc[active, 'value_at_risk'].sum():,.2f}, all "
          f"{scores['value_at_risk'].sum():,.2f}")
    assert 0 < active.sum() < len(scores)  # the demo has customers long gone
    assert summary["base"] == "active"
    assert summary["active_customers"] == active.sum() == summary["predicted"]["S"]
    assert summary["expected_customers_lost"] == pytest.approx(
        scores.loc[active, "churn_risk"].sum(), rel=1e-9)
    assert summary["value_at_risk_total"] == pytest.approx(
        scores.loc[active, "value_at_risk"].sum(), rel=1e-9)
    assert summary["value_at_risk_all"] == pytest.approx(scores["value_at_risk"].sum(),
                                                         rel=1e-9)
    assert summary["bases"]["active"]["customers"] == active.sum()
    assert summary["bases"]["acquired"]["customers"] == len(scores)
    assert summary["bases"]["active"]["rule"] == f"recency_days < {horizon}"
    for base in summary["bases"].values():
        assert base["definition"]


def test_every_total_of_the_summary_states_its_base(demo):
    _, result, _ = demo
    summary = result.summary
    base_of = summary["base_of"]
    assert set(base_of.values()) <= set(summary["bases"])
    # every count, sum or rate over customers names its base
    totals = [key for key, value in summary.items()
              if key not in ("horizon_days", "as_of", "model", "bases", "base_of", "base",
                             "active_customers", "last_actual", "pairing", "cleaning",
                             "output", "engine", "definitions")
              and not key.endswith(("_low", "_high"))
              and (isinstance(value, numbers.Number | dict))]
    assert sorted(set(totals) - set(base_of)) == []
    assert base_of["expected_customers_lost"] == base_of["value_at_risk_total"] == "active"
    assert base_of["value_at_risk_all"] == base_of["customers_scored"] == "acquired"


def test_the_outlook_states_its_base_and_uses_one_for_both_totals(demo):
    from churnlens.api import build_state, create_app

    artifact, result, transactions = demo
    state = build_state(artifact, transactions, result.summary["as_of"])
    with TestClient(create_app(lambda: state, initial=state)) as client:
        payload = client.get("/retention/outlook").json()
    scores = state.scores
    active = scores["recency_days"].to_numpy() < artifact.horizon_days
    assert payload["base"] == "active" and "purchase in the last" in payload["base_definition"]
    assert payload["active_customers"] == active.sum()
    assert payload["acquired_customers"] == len(scores)
    assert payload["revenue_at_risk"] == pytest.approx(
        scores.loc[active, "value_at_risk"].sum(), rel=1e-9)
    assert payload["expected_customers_lost"] == pytest.approx(
        scores.loc[active, "churn_risk"].sum(), rel=1e-9)
    assert payload["interval_covers"]
    # the old outlook's revenue summed everyone: far more on the demo
    assert scores["value_at_risk"].sum() > 1.2 * payload["revenue_at_risk"]
    assert np.isfinite(payload["predicted_crr"]["level_error"])


def test_the_report_outlook_states_bases_and_definitions(demo, tmp_path):
    from churnlens._report import outlook_section, write_html_report

    _, result, _ = demo
    summary = result.summary
    tables, captions = outlook_section(summary)
    rates, totals = tables.values()
    active = f"active ({summary['active_customers']:,})"
    assert rates["measure"].tolist() == ["cohort_retention", "crr", "repeat_rate"]
    assert rates["base"].tolist() == [active, active,
                                      f"acquired ({summary['customers_scored']:,})"]
    assert (rates["definition"].str.len() > 20).all()
    assert rates["interval covers"].str.len().gt(0).all()
    assert totals["base"].tolist() == [active, active]
    assert totals["value"].tolist()[1] == f"{summary['value_at_risk_total']:,.2f}"
    page = write_html_report(tmp_path / "report.html", title="outlook", summary={},
                             tables=tables, figures={}, captions=captions).read_text()
    assert active in page and "customers silent for longer are not in them" in page
    for row in summary["pairing"]:
        assert html.escape(row["definition"]) in page, row["rate"]


def test_the_glossary_is_the_one_shown_everywhere():
    """docs/retention.md's glossary lists each measure with the very line the summary,
    the API and the report show (one name, one definition)."""
    import re
    from pathlib import Path

    from churnlens._retention import RetentionRates
    from churnlens._scoring import MEASURES

    doc = (Path(__file__).parents[1] / "docs" / "retention.md").read_text(encoding="utf-8")
    section = doc.split("## Glossary: one name per measure", 1)[1].split("\n## ", 1)[0]
    rows = {m.group(1): m.group(2).strip() for m in re.finditer(
        r"^\| `(\w+)`[^|]*\| ([^|]+) \|", section, flags=re.MULTILINE)}
    for name, line in MEASURES.items():
        assert rows.get(name) == line, name
    for name in ("churn_rate", "simple_ratio"):
        assert rows.get(name) == RetentionRates.DESCRIPTIONS[name], name
