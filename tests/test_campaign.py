"""Campaign control groups (issue 17, items 4 and 5): the stratified, seeded assignment,
Newcombe's interval for the retention difference, the revenue bootstrap, and the read-out
recovering a known injected effect (the acceptance: the 95% interval covers the true
effect in at least 45 of 50 seeds, and covers 0 in at least 45 of 50 without an effect).

The rules are in docs/monitoring.md, "Campaigns and control groups".
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from churnlens._campaign import (
    CONTROL,
    TREATMENT,
    analyse_campaign,
    assign_control_group,
    bootstrap_mean_difference,
    campaign_list_id,
    minimum_detectable_difference,
    newcombe_interval,
    wilson_interval,
)
from churnlens._io import write_table
from churnlens.cli import app
from churnlens.exceptions import ChurnlensError

Z95 = 1.959963984540054


# --- a simple reference implementation (the oracle) ------------------------------------


def reference_wilson(x: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's interval as the roots of (p - phat)^2 = z^2 p (1 - p) / n."""
    phat = x / n
    a = 1 + z * z / n
    b = -(2 * phat + z * z / n)
    c = phat * phat
    root = math.sqrt(max(b * b - 4 * a * c, 0.0))
    return (-b - root) / (2 * a), (-b + root) / (2 * a)


def reference_newcombe(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    l1, u1 = reference_wilson(x1, n1)
    l2, u2 = reference_wilson(x2, n2)
    p1, p2 = x1 / n1, x2 / n2
    d = p1 - p2
    return (d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
            d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))


# --- intervals ---------------------------------------------------------------------------


def test_wilson_by_hand():
    # 56/70 = 0.8, z^2 = 3.841459: centre (0.8 + z^2/140) / (1 + z^2/70)
    # = 0.827439 / 1.054878 = 0.784393; half z sqrt(0.8 * 0.2 / 70 + z^2 / 19600)
    # / (1 + z^2/70) = 1.96 * 0.049817 / 1.054878 = 0.092561
    low, high = wilson_interval(56, 70)
    assert low == pytest.approx(0.784393 - 0.092561, abs=2e-6)
    assert high == pytest.approx(0.784393 + 0.092561, abs=2e-6)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0


# Newcombe (1998), Statistics in Medicine 17:873-890, Table II, method 10 (score, no
# continuity correction): the published limits to 4 decimals.
NEWCOMBE_TABLE_II = [
    ((56, 70, 48, 80), (0.0524, 0.3339)),
    ((9, 10, 3, 10), (0.1705, 0.8090)),
    ((5, 56, 0, 29), (-0.0381, 0.1926)),
    ((0, 10, 0, 20), (-0.1611, 0.2775)),
    ((0, 10, 0, 10), (-0.2775, 0.2775)),
    ((10, 10, 0, 20), (0.6791, 1.0000)),
    ((10, 10, 0, 10), (0.6075, 1.0000)),
]


@pytest.mark.parametrize(("counts", "published"), NEWCOMBE_TABLE_II)
def test_newcombe_matches_the_published_examples(counts, published):
    low, high = newcombe_interval(*counts)
    assert (round(low, 4), round(high, 4)) == published


def test_newcombe_against_the_reference_on_random_tables():
    rng = np.random.default_rng(17)
    print("seed 17")
    for _ in range(500):
        n1, n2 = rng.integers(1, 400, size=2)
        x1, x2 = rng.integers(0, n1 + 1), rng.integers(0, n2 + 1)
        low, high = newcombe_interval(int(x1), int(n1), int(x2), int(n2))
        ref_low, ref_high = reference_newcombe(int(x1), int(n1), int(x2), int(n2))
        assert low == pytest.approx(ref_low, abs=1e-9)
        assert high == pytest.approx(ref_high, abs=1e-9)
        d = x1 / n1 - x2 / n2
        assert -1 <= low <= d <= high <= 1


def test_bootstrap_is_seeded_and_centred():
    rng = np.random.default_rng(3)
    treated, control = rng.gamma(2, 15, 800) + 5, rng.gamma(2, 15, 300)
    first = bootstrap_mean_difference(treated, control, seed=1)
    assert first == bootstrap_mean_difference(treated, control, seed=1)
    assert first != bootstrap_mean_difference(treated, control, seed=2)
    # close to the normal interval of a difference of means at this size
    d = treated.mean() - control.mean()
    se = math.sqrt(treated.var(ddof=1) / 800 + control.var(ddof=1) / 300)
    assert first[0] == pytest.approx(d - Z95 * se, abs=0.25 * se)
    assert first[1] == pytest.approx(d + Z95 * se, abs=0.25 * se)


def test_minimum_detectable_difference_by_hand():
    # p0 = 0.5, n = 400 each: delta solves delta = 1.96 sqrt(pbar qbar 2/400)
    # + 0.8416 sqrt((p1 q1 + 0.25)/400); the classic answer is about 9.8 points
    delta = minimum_detectable_difference(0.5, 400, 400)
    p1 = 0.5 + delta
    pbar = (p1 + 0.5) / 2
    rhs = (Z95 * math.sqrt(pbar * (1 - pbar) * 2 / 400)
           + 0.8416212335729143 * math.sqrt((p1 * (1 - p1) + 0.25) / 400))
    assert delta == pytest.approx(rhs, abs=1e-9)
    assert 0.095 < delta < 0.1
    # bigger groups detect smaller effects; a control at 100% can only fall
    assert minimum_detectable_difference(0.5, 4000, 4000) < delta
    assert minimum_detectable_difference(1.0, 400, 400) > 0
    # two customers cannot detect anything
    assert minimum_detectable_difference(0.5, 1, 1) is None


# --- assignment --------------------------------------------------------------------------


def a_list(n: int = 1000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    bands = rng.choice(["high", "medium", "low"], size=n, p=[0.4, 0.35, 0.25])
    return pd.DataFrame({"customer_id": [f"c{i:05d}" for i in range(n)],
                         "as_of": "2024-06-30", "churn_risk": rng.uniform(size=n),
                         "risk_band": bands})


def test_assignment_is_reproducible_and_stratified():
    frame = a_list(1003)
    marked = assign_control_group(frame, 0.1, seed=42)
    again = assign_control_group(frame, 0.1, seed=42)
    assert marked["group"].tolist() == again["group"].tolist()
    assert (marked["group"] != assign_control_group(frame, 0.1, seed=43)["group"]).any()
    # the rows and their order are kept, one column added
    assert marked.drop(columns="group").equals(frame)
    assert list(marked.columns) == [*frame.columns, "group"]
    for band, rows in marked.groupby("risk_band"):
        expected = math.floor(0.1 * len(rows) + 0.5)
        assert (rows["group"] == CONTROL).sum() == expected, band
        assert (rows["group"] == TREATMENT).sum() == len(rows) - expected
    # round half up: a band of 5 at 10% holds one back
    five = pd.DataFrame({"customer_id": list("abcde"), "risk_band": ["high"] * 5})
    assert (assign_control_group(five, 0.1, seed=0)["group"] == CONTROL).sum() == 1


def test_assignment_draws_by_band_with_the_documented_generator():
    frame = a_list(300, seed=5)
    marked = assign_control_group(frame, 0.2, seed=9)
    rng = np.random.default_rng(9)
    expected = np.zeros(len(frame), dtype=bool)
    for band in ("high", "medium", "low"):
        positions = np.flatnonzero(frame["risk_band"].to_numpy() == band)
        k = math.floor(0.2 * len(positions) + 0.5)
        expected[rng.choice(positions, size=k, replace=False)] = True
    assert (marked["group"] == CONTROL).to_numpy().tolist() == expected.tolist()


def test_assignment_refuses_what_cannot_hold_a_control_group():
    frame = a_list(20)
    for fraction in (0, 1, -0.1, 1.5, float("nan")):
        with pytest.raises(ChurnlensError, match="--control-fraction"):
            assign_control_group(frame, fraction, seed=0)
    with pytest.raises(ChurnlensError, match="--seed"):
        assign_control_group(frame, 0.1, seed=-1)
    with pytest.raises(ChurnlensError, match="holds back no customer"):
        assign_control_group(frame.head(3), 0.1, seed=0)
    with pytest.raises(ChurnlensError, match="already has a column 'group'"):
        assign_control_group(assign_control_group(frame, 0.5, seed=0), 0.5, seed=0)


def test_list_id_depends_on_seed_fraction_and_ids():
    ids = ["a", "b", "c"]
    base = campaign_list_id(ids, fraction=0.1, seed=0)
    assert base == campaign_list_id(pd.Series(ids), fraction=0.1, seed=0)
    assert len({base, campaign_list_id(ids, fraction=0.2, seed=0),
                campaign_list_id(ids, fraction=0.1, seed=1),
                campaign_list_id(["a", "c", "b"], fraction=0.1, seed=0),
                campaign_list_id(["a\nb", "c"], fraction=0.1, seed=0)}) == 5


# --- the read-out --------------------------------------------------------------------------

AS_OF = dt.date(2024, 6, 30)
START = dt.date(2024, 7, 1)
H = 91
BAND_RATES = {"high": 0.3, "medium": 0.5, "low": 0.7}
MEAN_AMOUNT = 30.0
EXTRA_AMOUNT = 20.0


def scenario(seed: int, effect: float, n: int = 1000, fraction: float = 0.2):
    """A list with a control group and transactions where each customer buys in the
    window with the probability of their band (amount Gamma, mean 30), and a share
    ``effect`` of the treated customers get an extra purchase of 20 in the window.

    Returns the list, the transactions and the true effects given the assignment:
    the expected retention difference (points) and revenue-per-customer difference.
    """
    # three independent streams: the list, the draw of the control group, the purchases
    rng = np.random.default_rng([seed, 1])
    members = assign_control_group(a_list(n, seed=seed + 10_000), fraction, seed=seed)
    ids = members["customer_id"].to_numpy()
    bands = members["risk_band"].to_numpy()
    treated = (members["group"] == TREATMENT).to_numpy()
    p = np.vectorize(BAND_RATES.get)(bands)
    start = pd.Timestamp(START)
    # history: one purchase before the as-of date for everyone
    history = pd.DataFrame({"customer_id": ids, "timestamp": pd.Timestamp("2024-03-01")
                            + pd.to_timedelta(rng.integers(0, 120, n), unit="D"),
                            "amount": rng.gamma(2, 15, n)})
    buys = rng.uniform(size=n) < p
    window = pd.DataFrame({"customer_id": ids[buys], "timestamp": start + pd.to_timedelta(
        rng.integers(1, H + 1, buys.sum()), unit="D"), "amount": rng.gamma(2, 15, buys.sum())})
    extra = treated & (rng.uniform(size=n) < effect)
    injected = pd.DataFrame({"customer_id": ids[extra], "timestamp": start + pd.to_timedelta(
        rng.integers(1, H + 1, extra.sum()), unit="D"), "amount": EXTRA_AMOUNT})
    # someone off the list buys on the window's last day: the data cover the window
    closing = pd.DataFrame({"customer_id": ["off-list"], "timestamp": [start + pd.Timedelta(
        days=H)], "amount": [1.0]})
    transactions = pd.concat([history, window, injected, closing], ignore_index=True)
    t_rate = (p + effect * (1 - p))[treated].mean()
    c_rate = p[~treated].mean()
    t_revenue = (p * MEAN_AMOUNT + effect * EXTRA_AMOUNT)[treated].mean()
    c_revenue = (p * MEAN_AMOUNT)[~treated].mean()
    return members, transactions, (t_rate - c_rate) * 100, t_revenue - c_revenue


def test_read_out_by_hand():
    members = pd.DataFrame({"customer_id": ["a", "b", "c", "d", "e", "f"],
                            "as_of": "2024-06-30",
                            "group": [TREATMENT] * 4 + [CONTROL] * 2, "list_id": "x1"})
    tx = pd.DataFrame({
        "customer_id": ["a", "a", "b", "c", "c", "e", "f", "f", "z"],
        "timestamp": ["2024-05-01", "2024-07-02", "2024-08-01", "2024-07-05", "2024-07-05",
                      "2024-09-30", "2024-10-01", "2024-07-10", "2024-10-01"],
        # c's day nets to 0 (a purchase and its refund): no occasion, revenue 0;
        # e buys on the window's last day, f the day after (outside)
        "amount": [10.0, 25.0, 15.0, 40.0, -40.0, 12.0, 99.0, 30.0, 1.0]})
    result = analyse_campaign(members, tx, "2024-07-01", 91, seed=0)
    assert result.end == dt.date(2024, 9, 30)
    t, c = result.groups[TREATMENT], result.groups[CONTROL]
    assert (t.customers, t.retained, t.revenue) == (4, 2, 40.0)  # a, b; d never bought
    assert (c.customers, c.retained, c.revenue) == (2, 2, 42.0)  # e, f
    assert result.retention_difference.estimate == pytest.approx(50 - 100)
    low, high = reference_newcombe(2, 4, 2, 2)
    assert result.retention_difference.low == pytest.approx(low * 100)
    assert result.retention_difference.high == pytest.approx(high * 100)
    assert result.revenue_difference.estimate == pytest.approx(10 - 21)
    assert result.incremental_customers.estimate == pytest.approx(-2)
    assert result.incremental_customers.low == pytest.approx(low * 4)
    assert result.incremental_revenue.estimate == pytest.approx(-44)
    assert result.list_id == "x1" and result.as_of == AS_OF
    doc = result.to_dict()
    json.dumps(doc, allow_nan=False)
    assert doc["groups"]["treatment"]["retention"] == 50.0
    assert doc["verdict"].startswith("no detectable effect")


def test_ids_are_matched_as_text():
    members = pd.DataFrame({"customer_id": ["7", "8", "007"],
                            "group": [TREATMENT, CONTROL, CONTROL]})
    tx = pd.DataFrame({"customer_id": [7, 8, 9], "timestamp": ["2024-07-02", "2024-05-01",
                                                               "2024-10-01"],
                       "amount": [5.0, 5.0, 5.0]})
    result = analyse_campaign(members, tx, "2024-07-01", 91, seed=0)
    assert result.groups[TREATMENT].retained == 1
    assert result.members_without_transactions == 1  # "007" is not 7
    assert "no row in the transactions" in result.notes[0]
    # an id a spreadsheet-safe CSV prefixed with ' is matched to the data's own id
    members = pd.DataFrame({"customer_id": ["'=1+1", "b"], "group": [TREATMENT, CONTROL]})
    tx = pd.DataFrame({"customer_id": ["=1+1", "b"], "timestamp": ["2024-07-02", "2024-10-01"],
                       "amount": [5.0, 5.0]})
    result = analyse_campaign(members, tx, "2024-07-01", 91, seed=0)
    assert result.groups[TREATMENT].retained == 1
    assert result.members_without_transactions == 0


def test_refusals():
    members, tx, _, _ = scenario(0, 0.0, n=200)
    with pytest.raises(ChurnlensError, match=r"no column 'group'.*--control-fraction 0\.1"):
        analyse_campaign(members.drop(columns="group"), tx, START, H)
    only_treated = members.assign(group=TREATMENT)
    with pytest.raises(ChurnlensError, match=r"no control customers.*--control-fraction"):
        analyse_campaign(only_treated, tx, START, H)
    with pytest.raises(ChurnlensError, match=r"before the list was scored.*2024-06-30"):
        analyse_campaign(members, tx, "2024-06-01", H)
    # the data end on START + H: a longer window has not closed
    with pytest.raises(ChurnlensError, match=r"has not closed.*--horizon-days 91"):
        analyse_campaign(members, tx, START, H + 1)
    with pytest.raises(ChurnlensError, match="none of the list's"):
        analyse_campaign(members.assign(customer_id="x" + members["customer_id"]), tx,
                         START, H)


def test_a_large_effect_is_detected_and_said_so():
    members, tx, true_points, _ = scenario(1, 0.6, n=2000)
    result = analyse_campaign(members, tx, START, H, seed=1)
    assert result.detected
    assert result.retention_difference.covers(true_points) or abs(
        result.retention_difference.estimate - true_points) < 5
    kept = result.incremental_customers
    assert result.verdict == (f"the campaign kept about {kept.estimate:,.0f} more customers "
                              f"(95% CI {kept.low:,.0f}..{kept.high:,.0f}).")
    # the other way round (the treated did worse), the verdict says customers were lost
    swapped = members.assign(group=members["group"].map({TREATMENT: CONTROL,
                                                         CONTROL: TREATMENT}))
    worse = analyse_campaign(swapped, tx, START, H, seed=1)
    lost = worse.incremental_customers
    assert worse.detected and lost.high < 0
    assert worse.verdict.startswith(f"the campaign lost about {-lost.estimate:,.0f} customers "
                                    f"(95% CI {-lost.high:,.0f}..{-lost.low:,.0f})")


def coverage(effect: float, seeds: range) -> tuple[int, int, int, int]:
    """Seeds whose retention and revenue intervals cover the true effect and 0."""
    covered = covered_revenue = zero = zero_revenue = 0
    for seed in seeds:
        members, tx, true_points, true_revenue = scenario(seed, effect)
        result = analyse_campaign(members, tx, START, H, seed=seed)
        covered += result.retention_difference.covers(true_points)
        covered_revenue += result.revenue_difference.covers(true_revenue)
        zero += result.retention_difference.covers(0.0)
        zero_revenue += result.revenue_difference.covers(0.0)
    return covered, covered_revenue, zero, zero_revenue


@pytest.mark.slow
def test_acceptance_the_interval_covers_the_injected_effect():
    # a fifth of 1,000 customers held back; 15% of the treated get an extra purchase:
    # about 7 points of retention and 3.0 of revenue per customer
    covered, covered_revenue, zero, _ = coverage(0.15, range(50))
    print(f"effect 0.15 over 50 seeds: retention interval covers the true effect "
          f"{covered}/50, revenue {covered_revenue}/50; covers 0 {zero}/50")
    assert covered >= 45
    assert covered_revenue >= 45


@pytest.mark.slow
def test_acceptance_without_an_effect_the_interval_covers_zero():
    covered, covered_revenue, zero, zero_revenue = coverage(0.0, range(50))
    print(f"no effect over 50 seeds: retention interval covers 0 {zero}/50, revenue "
          f"{zero_revenue}/50 (true effect {covered}/50, {covered_revenue}/50)")
    assert zero >= 45
    assert zero_revenue >= 45


# --- the command line ----------------------------------------------------------------------


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def scores_file(folder: Path, members: pd.DataFrame) -> Path:
    """Scores as churnlens score writes them (the columns at-risk reads, the metadata)."""
    n = len(members)
    rng = np.random.default_rng(0)
    scores = members[["customer_id", "as_of", "churn_risk", "risk_band"]].assign(
        value_at_risk=rng.uniform(1, 100, n), recency_days=rng.integers(0, 150, n),
        segment="at risk")
    path = folder / "scores.parquet"
    write_table(scores, path, metadata={"horizon_days": str(H), "as_of": "2024-06-30",
                                        "model": json.dumps({"name": "churnlens"})})
    return path


@pytest.fixture
def campaign_files(tmp_path):
    members, tx, _, _ = scenario(4, 0.15, n=600)
    tx_path = tmp_path / "tx.csv"
    tx.to_csv(tx_path, index=False)
    scores = scores_file(tmp_path, members.drop(columns="group"))
    return scores, tx_path, tmp_path


def test_cli_at_risk_draws_a_reproducible_control_group(campaign_files):
    scores, _, folder = campaign_files
    plain = folder / "plain.csv"
    assert run("at-risk", "--scores", scores, "--out", plain, "--all")[0] == 0
    first, second = folder / "first.csv", folder / "second.csv"
    for out in (first, second):
        code, _, err = run("at-risk", "--scores", scores, "--out", out, "--all",
                           "--control-fraction", "0.2", "--seed", "7")
        assert code == 0, err
    assert "control group: 120 of the 600 customers held back" in " ".join(err.split())
    listed = pd.read_csv(first, dtype={"customer_id": str})
    before = pd.read_csv(plain, dtype={"customer_id": str})
    # the list keeps its rows, order and columns, and gains group and list_id
    assert list(listed.columns) == [*before.columns, "group", "list_id"]
    assert listed.drop(columns=["group", "list_id"]).equals(before)
    assert listed.equals(pd.read_csv(second, dtype={"customer_id": str}))
    assert listed["list_id"].nunique() == 1
    assert listed["list_id"].iloc[0] == campaign_list_id(before["customer_id"], fraction=0.2,
                                                         seed=7)
    for band, rows in listed.groupby("risk_band"):
        assert (rows["group"] == CONTROL).sum() == math.floor(0.2 * len(rows) + 0.5), band
    code, _, err = run("at-risk", "--scores", scores, "--out", folder / "x.csv", "--all",
                       "--control-fraction", "0.2", "--seed", "8")
    assert not pd.read_csv(folder / "x.csv")["group"].equals(listed["group"])
    for bad in ("0", "1", "-0.5"):
        code, _, err = run("at-risk", "--scores", scores, "--out", folder / "bad.csv",
                           "--control-fraction", bad)
        assert code == 2 and "--control-fraction" in err
        assert not (folder / "bad.csv").exists()


def test_cli_campaign_refuses_a_list_without_controls(campaign_files):
    scores, tx, folder = campaign_files
    plain = folder / "plain.csv"
    assert run("at-risk", "--scores", scores, "--out", plain, "--all")[0] == 0
    code, out, err = run("campaign", "--list", plain, "--transactions", tx,
                         "--start", "2024-07-01")
    assert code == 2
    assert "no column 'group'" in err and "--control-fraction 0.1" in err
    assert out == ""


def test_cli_campaign_json_and_table(campaign_files):
    scores, tx, folder = campaign_files
    listed = folder / "list.parquet"
    code, _, err = run("at-risk", "--scores", scores, "--out", listed, "--all",
                       "--control-fraction", "0.2", "--seed", "4")
    assert code == 0, err
    code, out, err = run("campaign", "--list", listed, "--transactions", tx,
                         "--start", "2024-07-01", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc) == {
        "list_id", "as_of", "window", "confidence", "groups", "retention_difference",
        "revenue_difference", "incremental_customers", "incremental_revenue", "detected",
        "verdict", "revenue_verdict", "minimum_detectable_effect",
        "members_without_transactions", "notes"}
    assert doc["window"] == {"start": "2024-07-01", "end": "2024-09-30", "horizon_days": 91,
                             "rule": "(start, end]: a purchase occasion in the window "
                                     "retains"}
    assert doc["groups"]["control"]["customers"] == 120
    assert doc["groups"]["treatment"]["customers"] == 480
    assert doc["as_of"] == "2024-06-30" and len(doc["list_id"]) == 12
    # the library gives the same numbers
    members = pd.read_parquet(listed)
    raw = pd.read_csv(tx, dtype={"customer_id": str})
    assert doc == analyse_campaign(members, raw, "2024-07-01", 91, seed=0).to_dict()
    for key in ("retention_difference", "incremental_customers", "revenue_difference"):
        assert doc[key]["low"] <= doc[key]["estimate"] <= doc[key]["high"]
    assert doc["minimum_detectable_effect"]["retention_points"] > 0
    code, out, err = run("campaign", "--list", listed, "--transactions", tx,
                         "--start", "2024-07-01")
    assert code == 0, err
    text = " ".join(out.split())
    assert "treatment vs control" in text and "customers kept" in text
    assert doc["verdict"] in text
    assert "smallest effect these groups detect" in text
    # the window must have closed in the data, and start after the scoring
    code, _, err = run("campaign", "--list", listed, "--transactions", tx,
                       "--start", "2024-07-02")
    assert code == 2 and "has not closed" in err
    code, _, err = run("campaign", "--list", listed, "--transactions", tx,
                       "--start", "2024-06-01")
    assert code == 2 and "before the list was scored" in err


@pytest.mark.slow
def test_cli_campaign_reads_a_parquet_list_over_its_own_horizon(campaign_files):
    """Without --horizon-days the window is the horizon the list was drawn with (a
    30-day model's list is read over 30 days), not the config's 91."""
    scores, tx, folder = campaign_files
    thirty = folder / "scores30.parquet"
    write_table(pd.read_parquet(scores), thirty, metadata={
        "horizon_days": "30", "as_of": "2024-06-30", "model": json.dumps({"name": "c"})})
    listed = folder / "list30.parquet"
    code, _, err = run("at-risk", "--scores", thirty, "--out", listed, "--all",
                       "--control-fraction", "0.2", "--seed", "4")
    assert code == 0, err
    code, out, err = run("campaign", "--list", listed, "--transactions", tx,
                         "--start", "2024-07-01", "--json")
    assert code == 0, err
    assert json.loads(out)["window"]["horizon_days"] == 30
    assert json.loads(out)["window"]["end"] == "2024-07-31"
    code, out, err = run("campaign", "--list", listed, "--transactions", tx,
                         "--start", "2024-07-01", "--json", "--horizon-days", "91")
    assert code == 0, err
    assert json.loads(out)["window"]["horizon_days"] == 91  # the option wins


def test_cli_at_risk_records_the_list_in_the_ledger(campaign_files, monkeypatch):
    from churnlens._ledger import read_ledger

    monkeypatch.delenv("CHURNLENS_LEDGER")
    scores, _, folder = campaign_files
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    listed = folder / "list.csv"
    code, _, err = run("at-risk", "--scores", scores, "--out", listed, "--all",
                       "--control-fraction", "0.1", "--seed", "2", "--tracking-uri", uri)
    assert code == 0, err
    assert "ledger: recorded run" in err
    entries = read_ledger(uri, kind="campaign-list")
    assert len(entries) == 1
    entry = entries[0]
    frame = pd.read_csv(listed, dtype={"customer_id": str})
    assert entry.campaign["list_id"] == frame["list_id"].iloc[0]
    assert entry.as_of == AS_OF and entry.horizon_days == H
    members = entry.members()
    assert members["customer_id"].tolist() == frame["customer_id"].tolist()
    assert members["group"].tolist() == frame["group"].tolist()
    # --no-ledger records nothing
    code, _, err = run("at-risk", "--scores", scores, "--out", listed, "--all",
                       "--control-fraction", "0.1", "--tracking-uri", uri, "--no-ledger")
    assert code == 0 and "ledger" not in err
    assert len(read_ledger(uri, kind="campaign-list")) == 1


# --- the worked example of docs/monitoring.md ------------------------------------------------

MONITORING_DOC = Path(__file__).resolve().parents[1] / "docs" / "monitoring.md"


def test_the_worked_example_of_the_docs(tmp_path):
    """docs/monitoring.md's worked example is this run, line for line: 2,000 customers,
    30% held back (seed 7), and 15% of the treated given an extra purchase of 20."""
    write_table(a_list(2000, seed=7).assign(
        value_at_risk=1.0, recency_days=10, segment="at risk"), tmp_path / "scores.parquet",
        metadata={"horizon_days": "91", "as_of": "2024-06-30"})
    code, _, err = run("at-risk", "--scores", tmp_path / "scores.parquet", "--out",
                       tmp_path / "list.csv", "--all", "--control-fraction", "0.3",
                       "--seed", "7")
    assert code == 0, err
    members = pd.read_csv(tmp_path / "list.csv", dtype={"customer_id": str})
    rng = np.random.default_rng(12)
    n, ids = len(members), members["customer_id"].to_numpy()
    p = np.vectorize(BAND_RATES.get)(members["risk_band"].to_numpy())
    treated = (members["group"] == TREATMENT).to_numpy()
    start = pd.Timestamp(START)
    history = pd.DataFrame({"customer_id": ids, "timestamp": pd.Timestamp("2024-03-01")
                            + pd.to_timedelta(rng.integers(0, 120, n), unit="D"),
                            "amount": rng.gamma(2, 15, n).round(2)})
    buys = rng.uniform(size=n) < p
    window = pd.DataFrame({"customer_id": ids[buys], "timestamp": start + pd.to_timedelta(
        rng.integers(1, H + 1, buys.sum()), unit="D"),
        "amount": rng.gamma(2, 15, buys.sum()).round(2)})
    extra = treated & (rng.uniform(size=n) < 0.15)
    injected = pd.DataFrame({"customer_id": ids[extra], "timestamp": start + pd.to_timedelta(
        rng.integers(1, H + 1, extra.sum()), unit="D"), "amount": EXTRA_AMOUNT})
    closing = pd.DataFrame({"customer_id": ["off-list"], "timestamp": [start + pd.Timedelta(
        days=H)], "amount": [1.0]})
    pd.concat([history, window, injected, closing]).to_csv(tmp_path / "tx.csv", index=False)
    true_customers = ((p + 0.15 * (1 - p))[treated].mean() - p[~treated].mean()) * treated.sum()
    assert round(true_customers) == 111  # "the true number in this simulation is 111"
    code, out, err = run("campaign", "--list", tmp_path / "list.csv", "--transactions",
                         tmp_path / "tx.csv", "--start", "2024-07-01")
    assert code == 0, err
    doc = MONITORING_DOC.read_text(encoding="utf-8")
    block = doc.split("$ churnlens campaign --list list.csv --transactions tx.csv "
                      "--start 2024-07-01\n", 1)[1].split("```", 1)[0]
    assert [line.rstrip() for line in out.splitlines()] == block.rstrip("\n").splitlines()
