"""Lists sized by profit (issue 20 item 5): ``at-risk --cost-per-contact C --save-rate S
[--margin M]``, ``GET /at-risk?cost_per_contact=...`` and the rule behind both,
``churnlens._rules.at_risk_list(profit=...)``.

The rule (docs/scoring.md, "Lists sized by profit"): the expected profit of contacting a
customer is ``churn_risk * S * expected_value * M - C``; a list keeps the customers of
its kind and filters with a positive expected profit, by expected profit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from churnlens._io import write_table
from churnlens._rules import LAPSED_HORIZONS, at_risk_list, profit_terms
from churnlens.cli import app
from churnlens.exceptions import ModelError

H = 91
KINDS = ("all", "campaign", "win-back")


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def hand_scores() -> pd.DataFrame:
    """Six customers whose expected profits at C=5, S=0.2, M=0.5 are worked by hand."""
    return pd.DataFrame({
        "customer_id": ["a", "b", "c", "d", "e", "f"],
        "churn_risk": [0.8, 0.5, 0.9, 1.0, 0.45, 0.6],
        "risk_band": ["high", "medium", "high", "high", "medium", "medium"],
        "expected_value": [200.0, 40.0, 100.0, 50.0, 200.0, 500.0],
        "value_at_risk": [160.0, 20.0, 90.0, 50.0, 90.0, 300.0],
        "recency_days": [10, 30, 50, 70, 90, 400],  # f: gone (>= 2 * 91 days)
        "segment": ["loyal", "loyal", "at risk", "at risk", "new", "lost"],
    })


def random_scores(rng: np.random.Generator, n: int) -> pd.DataFrame:
    risk = rng.uniform(0, 1, n)
    risk[rng.uniform(size=n) < 0.1] = 0.0  # some customers with no risk at all
    value = rng.lognormal(3, 1.5, n)
    value[rng.uniform(size=n) < 0.1] = 0.0  # and some with no expected spend
    return pd.DataFrame({
        "customer_id": [f"c{k:03d}" for k in rng.permutation(n)],
        "churn_risk": risk,
        "risk_band": np.where(risk >= 0.7, "high", np.where(risk >= 0.4, "medium", "low")),
        "expected_value": value,
        "value_at_risk": risk * value,
        "recency_days": rng.integers(0, 4 * H, n),
    })


# --- the rule -----------------------------------------------------------------------


def test_golden_example_worked_by_hand():
    terms = profit_terms(5.0, 0.2, 0.5)
    chosen = at_risk_list(hand_scores(), kind="all", profit=terms)
    # a: 0.8 x 0.2 x 200 x 0.5 - 5 = 16 - 5 = 11    b: 0.5 x 0.2 x 40 x 0.5 - 5 = -3
    # c: 0.9 x 0.2 x 100 x 0.5 - 5 = 9 - 5 = 4      d: 1.0 x 0.2 x 50 x 0.5 - 5 = 0 (out)
    # e: 0.45 x 0.2 x 200 x 0.5 - 5 = 4 (tie with c: by id)
    # f: 0.6 x 0.2 x 500 x 0.5 - 5 = 30 - 5 = 25
    assert chosen["customer_id"].tolist() == ["f", "a", "c", "e"]
    assert chosen["expected_profit"].tolist() == pytest.approx([25.0, 11.0, 4.0, 4.0])
    assert chosen["expected_profit"].sum() == pytest.approx(44.0)
    # the campaign list leaves f out (gone: on the win-back list), d is not positive
    campaign = at_risk_list(hand_scores(), horizon_days=H, profit=terms)
    assert campaign["customer_id"].tolist() == ["a", "c", "e"]
    gone = at_risk_list(hand_scores(), kind="win-back", horizon_days=H, profit=terms)
    assert gone["customer_id"].tolist() == ["f"]
    # dearer contacts: at 12 only f (30 - 12) and a (16 - 12); at 0 all six
    assert at_risk_list(hand_scores(), kind="all", profit=profit_terms(12.0, 0.2, 0.5))[
        "customer_id"].tolist() == ["f", "a"]
    assert len(at_risk_list(hand_scores(), kind="all", profit=profit_terms(0.0, 0.2, 0.5))) == 6
    # the margin defaults to 1 (values are spend): a is 0.8 x 0.2 x 200 - 5 = 27
    spend = at_risk_list(hand_scores(), kind="all", profit=profit_terms(5.0, 0.2))
    assert spend.set_index("customer_id").loc["a", "expected_profit"] == pytest.approx(27.0)
    # filters and sort apply as on any list; top caps it
    assert at_risk_list(hand_scores(), kind="all", profit=terms, band="medium")[
        "customer_id"].tolist() == ["f", "e"]
    assert at_risk_list(hand_scores(), kind="all", profit=terms, sort="churn_risk")[
        "customer_id"].tolist() == ["c", "a", "f", "e"]
    assert at_risk_list(hand_scores(), kind="all", profit=terms, top=2)[
        "customer_id"].tolist() == ["f", "a"]


def test_the_campaign_list_sized_by_profit_has_no_default_size():
    rng = np.random.default_rng(7)
    scores = random_scores(rng, 3000)
    scores["risk_band"] = "high"
    scores["recency_days"] = 0
    everyone = at_risk_list(scores, horizon_days=H, profit=profit_terms(0.0, 1.0))
    assert len(at_risk_list(scores, horizon_days=H)) == 500  # as before
    assert len(everyone) > 500
    assert len(everyone) == int(((scores["churn_risk"] > 0)
                                 & (scores["expected_value"] > 0)).sum())


def test_raising_the_cost_never_lengthens_the_list():
    """Property test over random score tables and costs (seeded)."""
    rng = np.random.default_rng(20)
    for trial in range(60):
        scores = random_scores(rng, int(rng.integers(0, 120)))
        save, margin = float(rng.uniform(0.01, 1)), float(rng.choice([1.0, rng.uniform(0.01, 1)]))
        costs = np.sort(np.concatenate([[0.0], rng.exponential(20, 6)]))
        kind = KINDS[trial % 3]
        top = None if trial % 4 else int(rng.integers(1, 40))
        before: set[str] | None = None
        sizes = []
        for cost in costs:
            chosen = at_risk_list(scores, kind=kind, horizon_days=H, top=top,
                                  profit=profit_terms(float(cost), save, margin))
            ids = set(chosen["customer_id"])
            sizes.append(len(ids))
            assert (chosen["expected_profit"] > 0).all()
            if before is not None and top is None:
                assert ids <= before  # a dearer contact keeps a subset
            before = ids
        assert sizes == sorted(sizes, reverse=True), (trial, costs, sizes)


def test_a_cost_of_zero_keeps_every_customer_with_positive_saved_value():
    rng = np.random.default_rng(21)
    for _ in range(40):
        scores = random_scores(rng, int(rng.integers(1, 200)))
        save, margin = float(rng.uniform(0.01, 1)), float(rng.uniform(0.01, 1))
        chosen = at_risk_list(scores, kind="all", profit=profit_terms(0.0, save, margin))
        # with S, M > 0 the saved value is positive exactly when risk and value are
        positive = scores.loc[(scores["churn_risk"] > 0) & (scores["expected_value"] > 0)]
        assert sorted(chosen["customer_id"]) == sorted(positive["customer_id"])
        saved = positive["churn_risk"] * save * positive["expected_value"] * margin
        assert chosen["expected_profit"].sum() == pytest.approx(saved.sum(), rel=1e-12)


def test_without_terms_the_lists_are_as_before():
    scores = hand_scores()
    for kind in KINDS:
        chosen = at_risk_list(scores, kind=kind, horizon_days=H)
        assert "expected_profit" not in chosen
    with pytest.raises(ModelError, match="sort"):
        at_risk_list(scores, kind="all", sort="expected_profit")


@pytest.mark.parametrize(("args", "words"), [
    ((-1.0, 0.2, None), "cost_per_contact must be a finite number >= 0"),
    ((float("inf"), 0.2, None), "finite"),
    ((float("nan"), 0.2, None), "finite"),
    ((1.0, 0.0, None), r"save_rate must be in \(0, 1\]"),
    ((1.0, 1.5, None), r"save_rate must be in \(0, 1\]"),
    ((1.0, 0.2, 0.0), r"margin must be in \(0, 1\]"),
    ((1.0, 0.2, 2.0), r"margin must be in \(0, 1\]"),
    ((1.0, None, None), "cost_per_contact was given without save_rate"),
    ((None, 0.2, None), "save_rate was given without cost_per_contact"),
    ((None, None, 0.5), "margin was given without"),
])
def test_bad_terms_are_refused(args: tuple[Any, Any, Any], words: str):
    with pytest.raises(ModelError, match=words):
        profit_terms(*args)
    assert profit_terms(None, None, None) is None
    assert profit_terms(0.0, 1.0, 1.0) is not None


# --- the CLI on a small scored file ---------------------------------------------------


@pytest.fixture(scope="module")
def small_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    scores = random_scores(np.random.default_rng(5), 400)
    scores["as_of"] = "2024-06-30"
    scores["segment"] = "loyal"
    path = tmp_path_factory.mktemp("profit") / "scores.parquet"
    write_table(scores, path, metadata={"horizon_days": str(H)})
    return path, scores


def test_cli_raising_the_cost_never_lengthens_the_list(small_file, tmp_path):
    path, scores = small_file
    sizes = []
    for k, cost in enumerate([0, 1, 5, 20, 80, 1e9]):
        out = tmp_path / f"list{k}.csv"
        code, _, err = run("at-risk", "-s", path, "-o", out, "--all",
                           "--cost-per-contact", cost, "--save-rate", 0.3, "--margin", 0.4)
        assert code == 0, err
        listed = pd.read_csv(out, dtype={"customer_id": str})
        sizes.append(len(listed))
        expected = at_risk_list(scores, kind="all", profit=profit_terms(cost, 0.3, 0.4))
        assert listed["customer_id"].tolist() == expected["customer_id"].tolist()
        assert listed["expected_profit"].to_numpy() == pytest.approx(
            expected["expected_profit"].to_numpy(), rel=1e-12)
        total = float(expected["expected_profit"].sum())
        flat = " ".join(err.split())
        assert f"list size {len(expected):,}; expected total profit {total:,.2f}" in flat
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1] == 0
    # cost 0: every customer with positive expected saved value
    assert sizes[0] == int(((scores["churn_risk"] > 0) & (scores["expected_value"] > 0)).sum())


def test_cli_campaign_top_and_control_group(small_file, tmp_path):
    path, scores = small_file
    terms = profit_terms(2.0, 0.2)
    expected = at_risk_list(scores, horizon_days=H, profit=terms)
    assert 0 < len(expected) and (expected["recency_days"] < LAPSED_HORIZONS * H).all()
    out = tmp_path / "campaign.csv"
    code, _, err = run("at-risk", "-s", path, "-o", out, "--cost-per-contact", 2,
                       "--save-rate", 0.2)
    assert code == 0, err
    assert pd.read_csv(out, dtype={"customer_id": str})["customer_id"].tolist() == \
        expected["customer_id"].tolist()
    assert "worth contacting" in err
    code, _, err = run("at-risk", "-s", path, "-o", tmp_path / "top.csv", "--top", 3,
                       "--cost-per-contact", 2, "--save-rate", 0.2)
    assert code == 0, err
    assert pd.read_csv(tmp_path / "top.csv")["customer_id"].tolist() == \
        expected["customer_id"].head(3).tolist()
    assert f"{len(expected):,} customers have a positive expected profit" in " ".join(
        err.split())
    # the control group is drawn from the profitable list
    code, _, err = run("at-risk", "-s", path, "-o", tmp_path / "ctl.csv", "--cost-per-contact",
                       2, "--save-rate", 0.2, "--control-fraction", 0.25, "--no-ledger")
    assert code == 0, err
    drawn = pd.read_csv(tmp_path / "ctl.csv", dtype={"customer_id": str})
    assert drawn["customer_id"].tolist() == expected["customer_id"].tolist()
    assert set(drawn["group"]) == {"treatment", "control"}
    treated = drawn.loc[drawn["group"] == "treatment", "expected_profit"].sum()
    assert f"its expected total profit {treated:,.2f}" in " ".join(err.split())


def test_cli_with_and_without_the_options(small_file, tmp_path):
    path, scores = small_file
    code, _, err = run("at-risk", "-s", path, "-o", tmp_path / "plain.csv")
    assert code == 0, err
    plain = pd.read_csv(tmp_path / "plain.csv", dtype={"customer_id": str})
    assert "expected_profit" not in plain  # without the options: the list of before
    assert plain["customer_id"].tolist() == at_risk_list(scores, horizon_days=H)[
        "customer_id"].tolist()
    assert "expected total profit" not in err
    # a Parquet list sized by profit keeps its terms and total in its metadata
    from churnlens._io import read_table_metadata

    code, _, err = run("at-risk", "-s", path, "-o", tmp_path / "sized.parquet",
                       "--cost-per-contact", 3, "--save-rate", 0.5)
    assert code == 0, err
    stated = read_table_metadata(tmp_path / "sized.parquet")
    expected = at_risk_list(scores, horizon_days=H, profit=profit_terms(3.0, 0.5))
    assert float(stated["cost_per_contact"]) == 3.0 and float(stated["save_rate"]) == 0.5
    assert float(stated["margin"]) == 1.0
    assert float(stated["expected_profit_total"]) == pytest.approx(
        expected["expected_profit"].sum(), rel=1e-12)


@pytest.mark.parametrize(("extra", "words"), [
    (["--cost-per-contact", "-1", "--save-rate", "0.2"], "--cost-per-contact must be a finite"),
    (["--cost-per-contact", "nan", "--save-rate", "0.2"], "--cost-per-contact must be a finite"),
    (["--cost-per-contact", "inf", "--save-rate", "0.2"], "--cost-per-contact must be a finite"),
    (["--cost-per-contact", "1", "--save-rate", "0"], "--save-rate must be in (0, 1]"),
    (["--cost-per-contact", "1", "--save-rate", "1.01"], "--save-rate must be in (0, 1]"),
    (["--cost-per-contact", "1", "--save-rate", "0.2", "--margin", "0"],
     "--margin must be in (0, 1]"),
    (["--cost-per-contact", "1"], "--cost-per-contact was given without --save-rate"),
    (["--save-rate", "0.2"], "--save-rate was given without --cost-per-contact"),
    (["--margin", "0.5"], "--margin was given without"),
    (["--sort", "expected_profit"], "orders a list sized by profit"),
])
def test_cli_bad_values_exit_2_and_write_nothing(small_file, tmp_path, extra, words):
    path, _ = small_file
    out = tmp_path / "bad.csv"
    code, _, err = run("at-risk", "-s", path, "-o", out, "--all", *extra)
    assert code == 2, err
    assert words in " ".join(err.split())
    assert "Suggestion" in err or "allowed" in err or "one of" in err
    assert not out.exists()


# --- the API: the same list as the CLI ------------------------------------------------


@pytest.fixture(scope="module")
def served_api() -> Any:
    from api_support import served
    from fastapi.testclient import TestClient

    from churnlens.api import create_app

    state = served()
    with TestClient(create_app(lambda: state, initial=state)) as client:
        yield client, state


def test_api_and_cli_give_the_same_list(served_api, tmp_path):
    client, state = served_api
    path = tmp_path / "served.parquet"
    write_table(state.scores, path,
                metadata={"horizon_days": str(state.artifact.horizon_days)})
    value = float(state.scores["expected_value"].median())
    cost = round(0.1 * value, 2)  # a cost that keeps some customers and drops others
    for kind, flag in (("all", ["--all"]), ("campaign", []), ("win-back", ["--win-back"])):
        query = f"list={kind}&cost_per_contact={cost}&save_rate=0.3&margin=0.6"
        page = client.get(f"/at-risk?{query}&limit=10000")
        assert page.status_code == 200, page.text
        body = page.json()
        out = tmp_path / f"{kind}.csv"
        code, _, err = run("at-risk", "-s", path, "-o", out, *flag, "--cost-per-contact",
                           cost, "--save-rate", 0.3, "--margin", 0.6)
        assert code == 0, err
        cli = pd.read_csv(out, dtype={"customer_id": str}, keep_default_na=False)
        assert [str(i["customer_id"]) for i in body["items"]] == cli["customer_id"].tolist()
        assert [i["expected_profit"] for i in body["items"]] == pytest.approx(
            cli["expected_profit"].tolist(), rel=1e-12)
        assert body["total"] == len(cli)
        assert body["expected_profit_total"] == pytest.approx(cli["expected_profit"].sum(),
                                                              rel=1e-9)
        assert body["profit"] == {"cost_per_contact": cost, "save_rate": 0.3, "margin": 0.6}
        flat = " ".join(err.split())
        assert (f"list size {body['total']:,}; expected total profit "
                f"{body['expected_profit_total']:,.2f}") in flat
        if kind == "all":
            assert 0 < body["total"] < len(state.scores)
        # the CSV export of the same query is the same list, with expected_profit
        csv = client.get(f"/at-risk?{query}&format=csv")
        assert csv.status_code == 200
        exported = pd.read_csv(__import__("io").StringIO(csv.text),
                               dtype={"customer_id": str}, keep_default_na=False)
        assert exported["customer_id"].tolist() == cli["customer_id"].tolist()
        assert exported["expected_profit"].to_numpy() == pytest.approx(
            cli["expected_profit"].to_numpy(), rel=1e-12)


def test_api_pages_and_narrowing_of_a_profit_list(served_api):
    client, state = served_api
    terms = profit_terms(1.0, 0.5)
    full = at_risk_list(state.scores, kind="all", profit=terms)
    first = client.get("/at-risk?cost_per_contact=1&save_rate=0.5&limit=7&offset=3").json()
    assert [i["customer_id"] for i in first["items"]] == full["customer_id"][3:10].tolist()
    assert first["total"] == len(full)
    # q and min_value_at_risk narrow it, and the total follows the narrowed list
    floor = float(full["value_at_risk"].median())
    narrowed = client.get("/at-risk", params={"cost_per_contact": 1, "save_rate": 0.5,
                                              "min_value_at_risk": floor,
                                              "limit": 10000}).json()
    kept = full.loc[full["value_at_risk"] >= floor]
    assert [i["customer_id"] for i in narrowed["items"]] == kept["customer_id"].tolist()
    assert narrowed["expected_profit_total"] == pytest.approx(kept["expected_profit"].sum())
    # the control group of the download is drawn from the profitable list
    drawn = client.get("/at-risk?cost_per_contact=1&save_rate=0.5&format=csv"
                       "&control_fraction=0.5&seed=1")
    rows = pd.read_csv(__import__("io").StringIO(drawn.text), dtype={"customer_id": str})
    assert rows["customer_id"].tolist() == full["customer_id"].tolist()
    assert (rows["group"] == "control").any()
    # without the terms: no profit fields, as before
    plain = client.get("/at-risk?limit=3").json()
    assert "expected_profit_total" not in plain
    assert all("expected_profit" not in i for i in plain["items"])


@pytest.mark.parametrize(("query", "where", "words"), [
    ("cost_per_contact=-1&save_rate=0.2", "cost_per_contact", "greater than or equal to 0"),
    ("cost_per_contact=inf&save_rate=0.2", "cost_per_contact", "finite"),
    ("cost_per_contact=nan&save_rate=0.2", "cost_per_contact", "finite"),
    ("cost_per_contact=1&save_rate=0", "save_rate", "greater than 0"),
    ("cost_per_contact=1&save_rate=1.5", "save_rate", "less than or equal to 1"),
    ("cost_per_contact=1&save_rate=0.2&margin=0", "margin", "greater than 0"),
    ("cost_per_contact=1", "save_rate", "cost_per_contact was given without save_rate"),
    ("save_rate=0.2", "cost_per_contact", "save_rate was given without cost_per_contact"),
    ("margin=0.3", "margin", "margin was given without"),
    ("sort=expected_profit", "sort", "sort=expected_profit orders a list sized by profit"),
])
def test_api_bad_values_are_422(served_api, query, where, words):
    client, _ = served_api
    answer = client.get(f"/at-risk?{query}")
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert any(d["loc"] == ["query", where] and words in d["msg"] for d in detail), detail
    assert json.dumps(detail)  # one format for clients
