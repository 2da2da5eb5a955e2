"""A campaign list by default (issue 16): ``at-risk`` without options writes the customers
worth a call (active or recently lapsed, band high or medium, by value at risk, 500);
the customers already gone are a separate win-back list; ``--all`` is the old list.

The rule is documented in docs/scoring.md ("At-risk lists"): gone = no purchase for
``2 * H`` days (``recency_days >= 2H``).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_support import hand_scores
from demo_support import LOYALTY_WORDS, MODEL_WORDS, scored_base
from typer.testing import CliRunner

from churnlens._io import write_table
from churnlens._rules import at_risk_list
from churnlens.cli import app
from churnlens.exceptions import ChurnlensError, ModelError

H = 91
REASONS = ["reason_1", "reason_2", "reason_3"]


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_the_default_is_the_campaign_list_by_hand():
    scores = hand_scores()
    # active or lapsed (< 182 days), high or medium, by value at risk (ties by id)
    assert at_risk_list(scores, horizon_days=H)["customer_id"].tolist() == [
        "b", "e", "a", "f"]
    assert at_risk_list(scores, kind="win-back", horizon_days=H)["customer_id"].tolist() == [
        "c", "g"]
    # the list before issue 16: everyone, riskiest (the long gone) first
    assert at_risk_list(scores, kind="all")["customer_id"].tolist() == [
        "c", "g", "a", "e", "b", "f", "d"]
    # filters and sizes apply on top of the kind
    assert at_risk_list(scores, horizon_days=H, band="high")["customer_id"].tolist() == [
        "e", "a"]
    assert at_risk_list(scores, horizon_days=H, top=2)["customer_id"].tolist() == ["b", "e"]
    assert at_risk_list(scores, horizon_days=H, sort="churn_risk")["customer_id"].tolist() == [
        "a", "e", "b", "f"]


def test_the_campaign_list_is_500_by_default():
    n = 1200
    rng = np.random.default_rng(5)
    print("seed: 5")
    scores = pd.DataFrame({
        "customer_id": [f"C{i:05d}" for i in range(n)],
        "churn_risk": rng.uniform(0.4, 1.0, n), "value_at_risk": rng.uniform(0, 100, n),
        "recency_days": rng.integers(0, 2 * H, n)})
    scores["risk_band"] = np.where(scores["churn_risk"] >= 0.7, "high", "medium")
    assert len(at_risk_list(scores, horizon_days=H)) == 500
    assert len(at_risk_list(scores, horizon_days=H, top=1000)) == 1000
    assert len(at_risk_list(scores, kind="all")) == n


def test_the_campaign_list_needs_the_horizon():
    with pytest.raises(ModelError, match=r"horizon.*Suggestion"):
        at_risk_list(hand_scores())
    with pytest.raises(ChurnlensError, match="kind"):
        at_risk_list(hand_scores(), kind="everyone", horizon_days=H)


@pytest.fixture(scope="module")
def demo():
    artifact, result, _ = scored_base("demo")
    return artifact, result.scores


def test_the_default_list_on_the_demo_is_worth_a_call(demo):
    artifact, scores = demo
    horizon = artifact.horizon_days
    chosen = at_risk_list(scores, horizon_days=horizon)
    print(chosen["segment"].value_counts().to_dict())
    assert len(chosen) == 500
    # none silent for two horizons or more, none low risk, by value at risk
    assert (chosen["recency_days"] < 2 * horizon).all()
    assert chosen["risk_band"].isin(["high", "medium"]).all()
    values = chosen["value_at_risk"].to_numpy()
    assert (np.diff(values) <= 0).all()
    # no reason cites loyalty or a model quantity
    texts = pd.concat([chosen[c] for c in REASONS])
    assert not texts.str.contains(LOYALTY_WORDS).any()
    assert not texts.str.contains(MODEL_WORDS).any()
    # the best 500 of everyone the rule allows
    allowed = scores[(scores["recency_days"] < 2 * horizon)
                     & scores["risk_band"].isin(["high", "medium"])]
    assert values[-1] >= allowed["value_at_risk"].nlargest(501).iloc[-1]


def test_the_win_back_list_on_the_demo_is_the_customers_gone(demo):
    artifact, scores = demo
    horizon = artifact.horizon_days
    gone = at_risk_list(scores, kind="win-back", horizon_days=horizon, top=len(scores))
    assert len(gone) == int((scores["recency_days"] >= 2 * horizon).sum()) > 0
    assert (np.diff(gone["value_at_risk"].to_numpy()) <= 0).all()
    campaign = at_risk_list(scores, horizon_days=horizon, top=len(scores))
    assert not set(gone["customer_id"]) & set(campaign["customer_id"])
    # the old list started with them: the top 500 by value at risk held many
    old = at_risk_list(scores, kind="all", sort="value_at_risk", top=500)
    assert (old["recency_days"] >= 2 * horizon).sum() > 0


@pytest.fixture(scope="module")
def score_files(demo, tmp_path_factory) -> dict[str, Path]:
    artifact, scores = demo
    folder = tmp_path_factory.mktemp("campaign")
    files = {"parquet": folder / "scores.parquet", "csv": folder / "scores.csv",
             "bare": folder / "bare.csv"}
    write_table(scores, files["parquet"], metadata={"horizon_days": str(artifact.horizon_days)})
    write_table(scores, files["csv"])
    (folder / "scores.csv.summary.json").write_text(json.dumps(
        {"horizon_days": artifact.horizon_days}))
    write_table(scores, files["bare"])
    return files


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"customer_id": str}, keep_default_na=False)


def test_cli_at_risk_without_options_writes_the_campaign_list(demo, score_files, tmp_path):
    artifact, scores = demo
    expected = at_risk_list(scores, horizon_days=artifact.horizon_days)
    for source in ("parquet", "csv"):  # the horizon from the metadata / the summary
        listing = tmp_path / f"{source}.csv"
        code, _, err = run("at-risk", "--scores", score_files[source], "--out", listing)
        assert code == 0, err
        assert read(listing)["customer_id"].tolist() == expected["customer_id"].tolist()
        assert "win-back" in err and "worth a call" in err
    code, _, err = run("at-risk", "-s", score_files["parquet"], "-o", tmp_path / "w.csv",
                       "--win-back")
    assert code == 0, err
    gone = read(tmp_path / "w.csv")
    assert (gone["recency_days"] >= 2 * artifact.horizon_days).all() and len(gone) == 500
    code, _, err = run("at-risk", "-s", score_files["parquet"], "-o", tmp_path / "a.csv",
                       "--all")
    assert code == 0, err
    assert len(read(tmp_path / "a.csv")) == len(scores)


def test_cli_at_risk_needs_the_horizon_when_the_scores_do_not_state_it(demo, score_files,
                                                                        tmp_path):
    artifact, _ = demo
    target = tmp_path / "list.csv"
    code, _, err = run("at-risk", "-s", score_files["bare"], "-o", target)
    assert code == 2 and "--horizon-days" in err and not target.exists()
    code, _, err = run("at-risk", "-s", score_files["bare"], "-o", target, "--horizon-days",
                       str(artifact.horizon_days))
    assert code == 0, err
    code, _, err = run("at-risk", "-s", score_files["parquet"], "-o", tmp_path / "x.csv",
                       "--horizon-days", str(artifact.horizon_days + 1))
    assert code == 2 and "model" in err
    code, _, err = run("at-risk", "-s", score_files["parquet"], "-o", tmp_path / "x.csv",
                       "--all", "--win-back")
    assert code == 2 and "one of them" in err


@pytest.fixture(scope="module")
def api(demo):
    from fastapi.testclient import TestClient

    from churnlens.api import build_state, create_app

    artifact, result, transactions = scored_base("demo")
    state = build_state(artifact, transactions, result.summary["as_of"])
    with TestClient(create_app(lambda: state, initial=state)) as client:
        yield client, state


def test_api_serves_the_campaign_and_win_back_lists(api):
    client, state = api
    horizon = state.artifact.horizon_days
    for kind in ("campaign", "win-back"):
        expected = at_risk_list(state.scores, kind=kind, horizon_days=horizon,
                                top=len(state.scores))
        page = client.get(f"/at-risk?list={kind}&limit=1000").json()
        assert page["total"] == len(expected) > 0
        assert [i["customer_id"] for i in page["items"]] == expected["customer_id"].head(
            1000).tolist()
        response = client.get(f"/at-risk?list={kind}&format=csv&band=high")
        assert response.status_code == 200 and response.headers["content-type"].startswith(
            "text/csv")
        rows = read(io.BytesIO(response.content))
        expected = at_risk_list(state.scores, kind=kind, horizon_days=horizon, band="high",
                                top=len(state.scores))
        assert rows["customer_id"].tolist() == expected["customer_id"].tolist()
    campaign = client.get("/at-risk?list=campaign&limit=500").json()["items"]
    assert all(i["recency_days"] < 2 * horizon for i in campaign)
    assert all(i["risk_band"] in ("high", "medium") for i in campaign)
    # without ?list: the whole base, riskiest first, as before
    page = client.get("/at-risk?limit=5").json()
    assert page["total"] == len(state.scores)
    assert client.get("/at-risk?list=everyone").status_code == 422
