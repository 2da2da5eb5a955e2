"""Actual retention (``churnlens._retention``) against retention.md.

Three kinds of checks: the golden example and hand-computed tables; a plain-Python
reference implementation written from the definitions in retention.md, run on
random data (hypothesis and seeded generators); and invariants.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import random
from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import GOLDEN_T0, GOLDEN_T1
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churnlens import (
    ChurnlensError,
    DataValidationError,
    MissingColumnError,
    RetentionRates,
    cohort_table,
    compute_features,
    load_transactions,
    retention_rates,
    retention_series,
)
from churnlens._io import frame_records
from churnlens._retention import RESULT_KEYS, coverage_note

Row = tuple[Any, dt.datetime, float, Any]  # customer, timestamp, amount, segment
RATES = ("crr", "cohort_retention", "churn_rate", "repeat_rate", "simple_ratio")
COUNTS = ("S", "E", "N", "reactivated")

# --- the plain-Python reference, from the definitions in retention.md -------------------


def occasions(rows: list[Row]) -> dict[Any, set[dt.date]]:
    """Purchase occasions: distinct (customer, day) with a positive net amount."""
    net: dict[tuple[Any, dt.date], float] = defaultdict(float)
    for customer, stamp, amount, _ in rows:
        net[customer, stamp.date()] += amount
    days: dict[Any, set[dt.date]] = defaultdict(set)
    for (customer, day), total in net.items():
        if total > 0:
            days[customer].add(day)
    return days


def segment_as_of(rows: list[Row], customer: Any, day: dt.date) -> Any:
    """Value on the customer's latest row dated <= day with a value (ties: greatest)."""
    candidates = [(stamp, seg) for c, stamp, _, seg in rows
                  if c == customer and seg is not None and stamp.date() <= day]
    return max(candidates)[1] if candidates else None


def pct(numerator: int, denominator: int) -> float:
    return 100 * numerator / denominator if denominator else math.nan


def reference_rates(rows: list[Row], t0: dt.date, t1: dt.date, window: int | None = None,
                    customers: set[Any] | None = None) -> dict[str, Any]:
    """Every figure of retention.md's rate table, by brute force over customers."""
    occ = occasions(rows)
    if customers is not None:
        occ = {c: d for c, d in occ.items() if c in customers}
    w = window or (t1 - t0).days

    def active_at(t: dt.date) -> set[Any]:
        return {c for c, days in occ.items() if any(t - dt.timedelta(w) < d <= t for d in days)}

    first = {c: min(days) for c, days in occ.items()}
    S, E = active_at(t0), active_at(t1)
    N = {c for c, f in first.items() if t0 < f <= t1}
    acquired = {c for c, f in first.items() if f <= t0}
    bought = {c for c, days in occ.items() if any(t0 < d <= t1 for d in days)}
    cohort_retention = pct(len(S & E), len(S))
    return {
        "start": t0, "end": t1, "window_days": w,
        "S": len(S), "E": len(E), "N": len(N), "reactivated": len(E - N - S),
        "crr": pct(len(E) - len(N), len(S)),
        "cohort_retention": cohort_retention,
        "churn_rate": 100 - cohort_retention,
        "repeat_rate": pct(len(acquired & bought), len(acquired)),
        "simple_ratio": pct(len(E), len(S)),
    }


def reference_cohorts(rows: list[Row], end: dt.date | None = None) -> dict[str, Any]:
    """{cohort: (size, {k: share or NaN})} with calendar-month offsets."""
    last_day = max(stamp.date() for _, stamp, _, _ in rows)
    end = min(end, last_day) if end else last_day
    rows = [r for r in rows if r[1].date() <= end]
    occ = occasions(rows)

    def month(day: dt.date) -> int:
        return day.year * 12 + day.month - 1

    last_full = month(end) if (end + dt.timedelta(days=1)).month != end.month else month(end) - 1
    cohort_of = {c: month(min(days)) for c, days in occ.items()}
    first, last = min(cohort_of.values()), max(cohort_of.values())
    table = {}
    for cohort in range(first, last + 1):
        members = [c for c, m in cohort_of.items() if m == cohort]
        shares = {}
        for k in range(max(last_full - first, 0) + 1):
            buyers = sum(any(month(d) == cohort + k for d in occ[c]) for c in members)
            shares[k] = pct(buyers, len(members)) if cohort + k <= last_full else math.nan
        table[f"{cohort // 12:04d}-{cohort % 12 + 1:02d}"] = (len(members), shares)
    return table


# --- helpers ----------------------------------------------------------------------


def frame_of(rows: list[Row], *, segment: bool = False) -> pd.DataFrame:
    frame = pd.DataFrame({
        "customer_id": pd.Series([r[0] for r in rows], dtype="str"),
        "timestamp": pd.to_datetime(pd.Series([r[1] for r in rows], dtype="datetime64[us]")),
        "amount": pd.Series([r[2] for r in rows], dtype="float64"),
    })
    if segment:
        frame["country"] = pd.Series([r[3] for r in rows], dtype="str")
    return frame


def as_dict(rates: RetentionRates) -> dict[str, Any]:
    return dataclasses.asdict(rates)


def same(actual: float, expected: float) -> bool:
    """Equal to the last bit, NaN equal to NaN."""
    return (math.isnan(actual) and math.isnan(expected)) or actual == expected


def assert_matches(actual: dict[str, Any], expected: dict[str, Any], context: str) -> None:
    for key in (*COUNTS, "window_days"):
        assert actual[key] == expected[key], f"{key}: {actual[key]} != {expected[key]} {context}"
    for key in RATES:
        assert same(float(actual[key]), expected[key]), \
            f"{key}: {actual[key]!r} != {expected[key]!r} {context}"


def day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def random_rows(seed: int, *, customers: int, first: dt.date, days: int,
                segments: bool = False) -> list[Row]:
    """Purchase histories with every edge the definitions care about.

    Same-day rows, refunds that cancel a day (net 0) or make it negative, refund-only
    days, zero amounts, single-purchase customers, first and last second of a day,
    and (with ``segments``) customers whose segment changes or is missing.
    """
    rng = random.Random(seed)
    rows: list[Row] = []
    for i in range(customers):
        customer = f"c{i:04d}"
        segment = rng.choice(["DE", "FR", "US"])
        n_days = 1 if rng.random() < 0.3 else rng.randint(1, 12)
        for _ in range(n_days):
            when = first + dt.timedelta(days=rng.randrange(days))
            second = rng.choice([0, 1, 43_200, 86_399])
            stamp = dt.datetime.combine(when, dt.time()) + dt.timedelta(seconds=second)
            if segments and rng.random() < 0.1:
                segment = rng.choice(["DE", "FR", "US", None])
            kind = rng.random()
            amount = rng.choice([5.0, 10.0, 12.5, 40.0])
            if kind < 0.1:  # refund cancelling the day exactly
                rows += [(customer, stamp, amount, segment), (customer, stamp, -amount, segment)]
            elif kind < 0.15:  # refund only, or a refund larger than the purchase
                rows += [(customer, stamp, -amount, segment)]
                if rng.random() < 0.5:
                    rows += [(customer, stamp, amount / 2, segment)]
            elif kind < 0.2:
                rows += [(customer, stamp, 0.0, segment)]
            else:  # one or several rows of one occasion
                rows += [(customer, stamp, amount, segment)] * rng.randint(1, 3)
    rng.shuffle(rows)
    return rows


# --- the golden example -----------------------------------------------------------


def test_golden_example_exactly(golden_transactions: pd.DataFrame) -> None:
    rates = retention_rates(golden_transactions, GOLDEN_T0, GOLDEN_T1)
    assert rates == RetentionRates(
        start=dt.date(2024, 3, 31), end=dt.date(2024, 6, 30), window_days=91,
        S=3, E=4, N=1, reactivated=2,
        crr=100.0, cohort_retention=100 / 3, churn_rate=100 - 100 / 3,
        repeat_rate=60.0, simple_ratio=400 / 3,
    )


def test_golden_to_dict_keys_and_values(golden_transactions: pd.DataFrame) -> None:
    payload = retention_rates(golden_transactions, GOLDEN_T0, GOLDEN_T1).to_dict()
    assert list(payload) == ["start", "end", "window_days", "S", "E", "N", "reactivated",
                             "crr", "cohort_retention", "churn_rate", "repeat_rate",
                             "simple_ratio"]
    assert list(payload) == list(RESULT_KEYS)
    assert payload["start"] == "2024-03-31" and payload["end"] == "2024-06-30"
    assert payload["repeat_rate"] == 60.0 and isinstance(payload["crr"], float)


def test_golden_accepts_dates_and_timestamps(golden_transactions: pd.DataFrame) -> None:
    by_text = retention_rates(golden_transactions, GOLDEN_T0, GOLDEN_T1)
    by_date = retention_rates(golden_transactions, day(GOLDEN_T0), day(GOLDEN_T1))
    by_stamp = retention_rates(golden_transactions, pd.Timestamp(GOLDEN_T0),
                               pd.Timestamp(GOLDEN_T1))
    assert by_text == by_date == by_stamp


def test_golden_matches_reference(golden_raw: pd.DataFrame) -> None:
    rows = [(c, pd.Timestamp(t).to_pydatetime(), a, None) for c, t, a in golden_raw.itertuples(
        index=False)]
    tx = load_transactions(golden_raw).transactions
    expected = reference_rates(rows, day(GOLDEN_T0), day(GOLDEN_T1))
    assert_matches(as_dict(retention_rates(tx, GOLDEN_T0, GOLDEN_T1)), expected, "golden")


# --- zero denominators ------------------------------------------------------------


def test_empty_start_base_gives_nan_not_error(golden_transactions: pd.DataFrame) -> None:
    # Nobody bought in the 30 days up to 2023-10-31: S = 0, E = 1 (C on 2023-11-15).
    rates = retention_rates(golden_transactions, "2023-10-31", "2023-11-30")
    assert (rates.S, rates.E, rates.N) == (0, 1, 1)
    assert all(math.isnan(getattr(rates, r)) for r in ("crr", "cohort_retention",
                                                       "churn_rate", "simple_ratio"))
    assert rates.repeat_rate == 0.0  # E was acquired by 2023-10-31 and did not buy
    payload = rates.to_dict()
    assert payload["crr"] is None and payload["simple_ratio"] is None
    assert payload["repeat_rate"] == 0.0


def test_nobody_acquired_gives_nan_repeat_rate(golden_transactions: pd.DataFrame) -> None:
    rates = retention_rates(golden_transactions, "2023-01-01", "2023-03-31")
    assert (rates.S, rates.E, rates.N, rates.reactivated) == (0, 0, 0, 0)
    assert math.isnan(rates.repeat_rate)
    assert rates.to_dict()["repeat_rate"] is None


def test_no_rows_gives_zero_counts(golden_transactions: pd.DataFrame) -> None:
    rates = retention_rates(golden_transactions.iloc[:0], GOLDEN_T0, GOLDEN_T1)
    assert (rates.S, rates.E, rates.N, rates.reactivated) == (0, 0, 0, 0)
    assert math.isnan(rates.crr)


# --- occasions: same-day rows, refunds, day boundaries ------------------------------


def test_occasion_rules() -> None:
    t = pd.Timestamp
    tx = pd.DataFrame({
        "customer_id": ["net_zero", "net_zero", "negative", "two_rows", "two_rows",
                        "late", "zero", "refund_then_buy", "refund_then_buy"],
        "timestamp": [t("2024-02-10 09:00"), t("2024-02-10 18:00"), t("2024-02-11"),
                      t("2024-02-12 10:00"), t("2024-02-12 11:00"),
                      t("2024-01-31 23:59:59"), t("2024-02-13"),
                      t("2024-01-20"), t("2024-02-14")],
        "amount": [25.0, -25.0, -5.0, 3.0, 4.0, 9.0, 0.0, -10.0, 10.0],
    })
    rates = retention_rates(tx, "2024-01-31", "2024-02-29")
    # occasions: two_rows (02-12, one occasion), late (01-31: still in January),
    # refund_then_buy (02-14; the January refund is no occasion)
    assert (rates.S, rates.E, rates.N) == (1, 2, 2)
    assert rates.cohort_retention == 0.0 and rates.crr == 0.0


def test_timezone_aware_timestamps_are_taken_in_utc() -> None:
    tx = pd.DataFrame({
        "customer_id": ["a", "b"],
        # 2024-03-01 00:30 in Paris is 2024-02-29 23:30 UTC: inside February
        "timestamp": pd.to_datetime(["2024-03-01 00:30+01:00", "2024-02-20 12:00+00:00"],
                                    utc=True).tz_convert("Europe/Paris"),
        "amount": [10.0, 10.0],
    })
    assert retention_rates(tx, "2024-01-31", "2024-02-29").N == 2


# --- random data against the reference ------------------------------------------------


@st.composite
def period_cases(draw: st.DrawFn) -> tuple[list[Row], dt.date, dt.date, int | None]:
    t0 = draw(st.sampled_from([day("2024-02-28"), day("2024-02-29"), day("2023-12-31"),
                               day("2024-03-31")]))
    length = draw(st.integers(1, 40))
    window = draw(st.one_of(st.none(), st.integers(1, 60)))
    t1 = t0 + dt.timedelta(days=length)
    w = window or length
    # Days around every edge: t0 - w, t0 - w + 1, t0, t0 + 1, t1 - w, t1, t1 + 1...
    edges = [t0 - dt.timedelta(days=w), t0 - dt.timedelta(days=w - 1), t0,
             t0 + dt.timedelta(days=1), t1 - dt.timedelta(days=w),
             t1 - dt.timedelta(days=w - 1), t1, t1 + dt.timedelta(days=1)]
    any_day = st.integers(-w - 10, length + 10).map(lambda k: t0 + dt.timedelta(days=k))
    row = st.tuples(
        st.sampled_from(["a", "b", "c", "d", "e", "f"]),
        st.one_of(st.sampled_from(edges), any_day),
        st.sampled_from([0, 1, 86_399]),
        st.sampled_from([-20.0, -10.0, -5.0, 0.0, 5.0, 10.0, 12.5, 20.0]),
    ).map(lambda r: (r[0], dt.datetime.combine(r[1], dt.time()) + dt.timedelta(seconds=r[2]),
                     r[3], None))
    return draw(st.lists(row, max_size=30)), t0, t1, window


@settings(max_examples=50, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(period_cases())
def test_rates_match_reference_on_generated_cases(
    case: tuple[list[Row], dt.date, dt.date, int | None],
) -> None:
    rows, t0, t1, window = case
    rates = retention_rates(frame_of(rows), t0, t1, window_days=window)
    expected = reference_rates(rows, t0, t1, window)
    assert_matches(as_dict(rates), expected, f"rows={rows} t0={t0} t1={t1} w={window}")
    # invariants that hold on every result
    if rates.S:
        assert rates.cohort_retention + rates.churn_rate == 100
        if rates.window_days >= (t1 - t0).days:
            identity = rates.cohort_retention + rates.reactivated / rates.S * 100
            assert rates.crr == pytest.approx(identity, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("every", ["month", "quarter", "7d", "1d"])
def test_series_matches_reference_on_seeded_data(seed: int, every: str) -> None:
    rows = random_rows(seed, customers=120, first=day("2023-11-15"), days=200)
    window = [None, 45, 10][seed]
    series = retention_series(frame_of(rows), every, window_days=window)
    first = min(r[1] for r in rows).date()
    last = max(r[1] for r in rows).date()
    assert len(series) > 1
    for record in series.to_dict("records"):
        expected = reference_rates(rows, record["start"], record["end"], window)
        assert_matches(record, expected, f"seed={seed} every={every} period={record['period']}")
        covered = (first <= record["start"] - dt.timedelta(days=expected["window_days"] - 1)
                   and last >= record["end"])
        assert record["complete"] == covered, record["period"]


@pytest.mark.parametrize("seed", range(4))
def test_period_rates_match_reference_on_seeded_data(seed: int) -> None:
    rows = random_rows(100 + seed, customers=200, first=day("2024-01-01"), days=120)
    t0 = day("2024-01-01") + dt.timedelta(days=random.Random(seed).randrange(20, 80))
    t1 = t0 + dt.timedelta(days=[30, 1, 45, 60][seed])
    window = [None, 7, 90, 20][seed]
    expected = reference_rates(rows, t0, t1, window)
    assert_matches(as_dict(retention_rates(frame_of(rows), t0, t1, window_days=window)),
                   expected, f"seed={seed}")
    assert expected["S"] > 0, "the case should exercise non-empty bases"


# --- invariants -------------------------------------------------------------------


@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(period_cases(), st.integers(1, 400))
def test_rows_after_end_change_nothing(
    case: tuple[list[Row], dt.date, dt.date, int | None], days_after: int,
) -> None:
    rows, t0, t1, window = case
    later = dt.datetime.combine(t1, dt.time()) + dt.timedelta(days=days_after)
    extra = [("a", later, 50.0, None), ("new", later, 10.0, None),
             ("b", dt.datetime.combine(t1 + dt.timedelta(days=1), dt.time()), -30.0, None)]
    before = retention_rates(frame_of(rows), t0, t1, window_days=window)
    after = retention_rates(frame_of(rows + extra), t0, t1, window_days=window)
    assert_matches(as_dict(after), as_dict(before), "after appending rows after end")


def test_renaming_customers_changes_nothing() -> None:
    rows = random_rows(7, customers=150, first=day("2024-01-01"), days=150)
    renamed = [(f"renamed-{c[::-1]}", t, a, s) for c, t, a, s in rows]
    as_integers = frame_of(rows).assign(
        customer_id=lambda f: f["customer_id"].str[1:].astype("int64") * 7 + 3)
    original = retention_series(frame_of(rows), "month")
    for other in (frame_of(renamed), as_integers):
        pd.testing.assert_frame_equal(retention_series(other, "month"), original)


def test_row_order_changes_nothing(golden_transactions: pd.DataFrame) -> None:
    shuffled = golden_transactions.sample(frac=1.0, random_state=3)
    assert retention_rates(shuffled, GOLDEN_T0, GOLDEN_T1) == retention_rates(
        golden_transactions, GOLDEN_T0, GOLDEN_T1)


def test_extra_columns_are_ignored(golden_transactions: pd.DataFrame) -> None:
    wider = golden_transactions.assign(order_id=range(len(golden_transactions)), note="x")
    assert retention_rates(wider, GOLDEN_T0, GOLDEN_T1) == retention_rates(
        golden_transactions, GOLDEN_T0, GOLDEN_T1)


# --- series -----------------------------------------------------------------------


def test_golden_quarterly_series(golden_transactions: pd.DataFrame) -> None:
    series = retention_series(golden_transactions, "quarter")
    assert series["period"].tolist() == ["2023Q2", "2023Q3", "2023Q4", "2024Q1", "2024Q2"]
    assert series["start"].tolist() == [day(d) for d in
                                        ("2023-03-31", "2023-06-30", "2023-09-30",
                                         "2023-12-31", "2024-03-31")]
    assert series["window_days"].tolist() == [91, 92, 92, 91, 91]
    # data from 2023-06-01 to 2024-05-20: a quarter is complete when the data covers
    # its activity window before it and its whole length
    assert series["complete"].tolist() == [False, False, True, True, False]
    last = series.iloc[-1]
    assert_matches(last.to_dict(), as_dict(retention_rates(golden_transactions, GOLDEN_T0,
                                                           GOLDEN_T1)), "2024Q2")
    assert list(series.columns) == ["period", *RESULT_KEYS, "complete"]


def test_series_periods_are_consecutive_calendar_periods(
    golden_transactions: pd.DataFrame,
) -> None:
    months = retention_series(golden_transactions, "month", start="2024-01-15",
                              end="2024-03-01")
    assert months["period"].tolist() == ["2024-01", "2024-02", "2024-03"]
    assert months["end"].tolist() == [day("2024-01-31"), day("2024-02-29"), day("2024-03-31")]
    assert months["window_days"].tolist() == [31, 29, 31]
    years = retention_series(golden_transactions, "year", window_days=30)
    assert years["period"].tolist() == ["2023", "2024"]
    assert years["window_days"].tolist() == [30, 30]
    assert (years["start"].iloc[1], years["end"].iloc[1]) == (day("2023-12-31"),
                                                              day("2024-12-31"))


def test_day_periods_end_on_the_last_day(golden_transactions: pd.DataFrame) -> None:
    series = retention_series(golden_transactions, "28d", start="2024-03-01",
                              end="2024-05-20")
    assert series["end"].iloc[-1] == day("2024-05-20")
    assert series["end"].tolist() == [day("2024-03-25"), day("2024-04-22"), day("2024-05-20")]
    assert set(series["window_days"]) == {28}
    assert all((e - s).days == 28 for s, e in zip(series["start"], series["end"], strict=True))
    assert series["period"].iloc[-1] == "2024-04-23..2024-05-20"
    assert series["complete"].all()  # data 2023-06-01 .. 2024-05-20


def test_series_flags_periods_beyond_the_data(golden_transactions: pd.DataFrame) -> None:
    series = retention_series(golden_transactions, "month", start="2024-04-01",
                              end="2024-08-31")
    assert series["period"].tolist() == ["2024-04", "2024-05", "2024-06", "2024-07", "2024-08"]
    assert series["complete"].tolist() == [True, False, False, False, False]
    assert series["E"].iloc[-1] == 0


def test_series_rows_equal_single_period_rates() -> None:
    # retention_series (all periods in one query) and retention_rates (one period)
    # run different SQL: they must agree on every period, with and without segments.
    rows = random_rows(21, customers=200, first=day("2024-01-01"), days=200, segments=True)
    tx = frame_of(rows, segment=True)
    for segment_col in (None, "country"):
        series = retention_series(tx, "month", window_days=45, segment_col=segment_col)
        for period, expected in series.groupby("period", sort=False):
            start, end = expected["start"].iloc[0], expected["end"].iloc[0]
            single = retention_rates(tx, start, end, window_days=45, segment_col=segment_col)
            if segment_col is None:
                single = pd.DataFrame([as_dict(single)])
            else:  # the series lists every segment in every period, zeros included
                present = expected[segment_col].isin(single[segment_col])
                assert (expected.loc[~present, list(COUNTS)] == 0).all().all()
                expected = expected[present]
            columns = [*([segment_col] if segment_col else []), *RESULT_KEYS]
            pd.testing.assert_frame_equal(
                single.reset_index(drop=True), expected[columns].reset_index(drop=True),
                check_dtype=False, obj=f"{period} by {segment_col}")


def test_segments_before_any_customer_give_an_empty_table() -> None:
    rows = random_rows(3, customers=20, first=day("2024-01-01"), days=30, segments=True)
    split = retention_rates(frame_of(rows, segment=True), "2023-01-01", "2023-02-01",
                            segment_col="country")
    assert split.empty and list(split.columns) == ["country", *RESULT_KEYS]


# --- segments ---------------------------------------------------------------------


def test_segments_add_up_to_the_total() -> None:
    rows = random_rows(11, customers=250, first=day("2023-10-01"), days=240, segments=True)
    tx = frame_of(rows, segment=True)
    total = retention_series(tx, "quarter")
    split = retention_series(tx, "quarter", segment_col="country")
    assert list(split.columns) == ["period", "country", *RESULT_KEYS, "complete"]
    n_segments = split["country"].nunique(dropna=False)
    assert len(split) == len(total) * n_segments  # every segment in every period
    summed = split.groupby("period", sort=False)[list(COUNTS)].sum().reset_index()
    pd.testing.assert_frame_equal(summed, total[["period", *COUNTS]], check_dtype=False)


def test_segments_match_reference() -> None:
    rows = random_rows(12, customers=200, first=day("2024-01-01"), days=150, segments=True)
    t0, t1 = day("2024-02-29"), day("2024-04-30")
    split = retention_rates(frame_of(rows, segment=True), t0, t1, segment_col="country")
    acquired_by_t1 = {c for c, days in occasions(rows).items() if min(days) <= t1}
    by_segment: dict[Any, set[Any]] = defaultdict(set)
    for customer in acquired_by_t1:
        by_segment[segment_as_of(rows, customer, t1)].add(customer)
    assert None in by_segment or split["country"].notna().all()
    assert len(split) == len(by_segment)
    for record in split.to_dict("records"):
        key = None if pd.isna(record["country"]) else record["country"]
        expected = reference_rates(rows, t0, t1, customers=by_segment[key])
        assert_matches(record, expected, f"segment {key!r}")


def test_segment_is_the_latest_value_up_to_the_period_end() -> None:
    t = pd.Timestamp
    tx = pd.DataFrame({
        "customer_id": ["x", "x", "x", "y", "y", "z", "z"],
        "timestamp": [t("2024-01-10"), t("2024-02-10"), t("2024-04-10"),
                      t("2024-02-01 10:00"), t("2024-02-01 10:00"),
                      t("2024-02-05"), t("2024-02-06")],
        "amount": [10.0, -1.0, 10.0, 5.0, 5.0, 5.0, 1.0],
        # x moves FR -> DE on a refund row in February, then to US in April (after end);
        # y has two rows at the same instant (greatest value wins); z's latest is missing
        "country": ["FR", "DE", "US", "AT", "BE", "NL", None],
    })
    split = retention_rates(tx, "2024-01-31", "2024-02-29", segment_col="country")
    members = dict(zip(split["country"], split["E"], strict=True))
    assert members == {"BE": 1, "DE": 0, "NL": 1}  # x is DE but not active in February
    assert split.set_index("country").loc["DE", "S"] == 1


def test_segment_of_a_cohort_is_the_one_at_acquisition() -> None:
    t = pd.Timestamp
    tx = pd.DataFrame({
        "customer_id": ["x", "x", "y", "z"],
        "timestamp": [t("2024-01-10"), t("2024-02-10"), t("2024-01-20"), t("2024-02-29")],
        "amount": [10.0, 10.0, 10.0, 5.0],
        "country": ["FR", "DE", "DE", "US"],
    })
    table = cohort_table(tx, segment_col="country")
    assert len(table) == 3 * 2  # every segment over the same cohort months
    acquired = table[table["cohort_size"] > 0]
    assert acquired[["country", "cohort", "cohort_size"]].values.tolist() == [
        ["DE", "2024-01", 1], ["FR", "2024-01", 1], ["US", "2024-02", 1]]
    # x bought again in February and is counted in FR, where they were acquired
    assert acquired[1].tolist()[:2] == [0.0, 100.0] and np.isnan(acquired[1].iloc[2])


def test_segment_column_must_be_kept() -> None:
    tx = load_transactions(frame_of(random_rows(1, customers=5, first=day("2024-01-01"),
                                                days=30), segment=True)).transactions
    with pytest.raises(MissingColumnError, match=r"extra_cols=\['country'\]"):
        retention_rates(tx, "2024-01-10", "2024-01-20", segment_col="country")
    with pytest.raises(ChurnlensError, match="rename"):
        retention_rates(tx, "2024-01-10", "2024-01-20", segment_col="amount")


# --- cohort table -----------------------------------------------------------------


def hand_example() -> pd.DataFrame:
    t = pd.Timestamp
    rows = [
        ("a", t("2024-01-05"), 10.0), ("a", t("2024-02-10"), 5.0),
        ("b", t("2024-01-31 23:59"), 8.0), ("b", t("2024-03-01"), 3.0),
        ("c", t("2024-01-15"), 10.0), ("c", t("2024-02-03"), 5.0), ("c", t("2024-02-03"), -5.0),
        ("d", t("2024-02-29"), 7.0), ("d", t("2024-03-31 23:30"), 2.0),
        ("e", t("2024-02-10"), -3.0), ("e", t("2024-03-02"), 4.0),
    ]
    return pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount"])


def test_cohort_table_hand_computed() -> None:
    # Jan: a, b, c (c's February day nets to 0); a buys in Feb (k=1), b in Mar (k=2).
    # Feb: d, buying again on 03-31 (k=1). Mar: e (the February refund is no occasion).
    # The data ends on 2024-03-31, so March has elapsed and April has not.
    table = cohort_table(hand_example())
    expected = pd.DataFrame({
        "cohort": ["2024-01", "2024-02", "2024-03"],
        "cohort_size": [3, 1, 1],
        0: [100.0, 100.0, 100.0],
        1: [100 / 3, 100.0, np.nan],
        2: [100 / 3, np.nan, np.nan],
    })
    pd.testing.assert_frame_equal(table, expected, check_dtype=False, check_exact=True)


def test_cohort_table_unelapsed_month_is_empty_not_zero() -> None:
    # Ending on 2024-03-30, March has not elapsed: its cells are unknown, not 0.
    table = cohort_table(hand_example(), end="2024-03-30")
    assert list(table.columns) == ["cohort", "cohort_size", 0, 1]
    assert table["cohort_size"].tolist() == [3, 1, 1]
    assert table[1].tolist()[0] == 100 / 3
    assert np.isnan(table[1].iloc[1]) and np.isnan(table[0].iloc[2])


def test_cohort_table_golden(golden_transactions: pd.DataFrame) -> None:
    table = cohort_table(golden_transactions).set_index("cohort")
    # data ends 2024-05-20: April 2024 is the last elapsed month
    assert table.index.tolist() == [f"{y}-{m:02d}" for y, m in
                                    [(2023, m) for m in range(6, 13)] + [(2024, m) for m in
                                                                        range(1, 5)]]
    assert table["cohort_size"].sum() == 6
    assert table.loc["2023-11", 5] == 100.0 and np.isnan(table.loc["2023-11", 6])
    assert table.loc["2024-01", 2] == 100.0 and np.isnan(table.loc["2024-01", 4])
    assert table.loc["2023-06", 10] == 0.0  # E's May purchase is in an unelapsed month
    assert table.loc["2023-08"].drop("cohort_size").isna().all()  # nobody acquired


@pytest.mark.parametrize("seed", range(3))
def test_cohort_table_matches_reference(seed: int) -> None:
    rows = random_rows(200 + seed, customers=150, first=day("2023-12-20"), days=160)
    end = [None, day("2024-04-30"), day("2024-03-17")][seed]
    table = cohort_table(frame_of(rows), end=end)
    expected = reference_cohorts(rows, end)
    assert table["cohort"].tolist() == list(expected)
    months = [c for c in table.columns if isinstance(c, int)]
    for record in table.to_dict("records"):
        size, shares = expected[record["cohort"]]
        assert record["cohort_size"] == size
        assert months == list(shares)
        for k in months:
            assert same(record[k], shares[k]), (seed, record["cohort"], k)


def test_cohort_table_without_occasions_is_an_error() -> None:
    tx = pd.DataFrame({"customer_id": ["a"], "timestamp": [pd.Timestamp("2024-01-01")],
                       "amount": [-5.0]})
    with pytest.raises(ChurnlensError, match="no purchase occasions"):
        cohort_table(tx)


# --- bad input --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2024-06-30", "2024-03-31", "must be after start"),
        ("2024-06-30", "2024-06-30", "must be after start"),
        ("2024-13-45", "2024-06-30", "cannot read"),
        ("yesterday", "2024-06-30", "cannot read"),
    ],
)
def test_bad_period_is_an_error(golden_transactions: pd.DataFrame, start: str, end: str,
                                message: str) -> None:
    with pytest.raises(ChurnlensError, match=message):
        retention_rates(golden_transactions, start, end)


@pytest.mark.parametrize("window", [0, -3, 2.5, True])
def test_bad_window_is_an_error(golden_transactions: pd.DataFrame, window: Any) -> None:
    with pytest.raises(ChurnlensError, match="window_days"):
        retention_rates(golden_transactions, GOLDEN_T0, GOLDEN_T1, window_days=window)


@pytest.mark.parametrize("every", ["week", "0d", "d", "quarterly", 7])
def test_bad_every_lists_the_choices(golden_transactions: pd.DataFrame, every: Any) -> None:
    with pytest.raises(ChurnlensError, match=r"quarter.*month.*year.*<N>d"):
        retention_series(golden_transactions, every)


def test_series_end_before_start_is_an_error(golden_transactions: pd.DataFrame) -> None:
    with pytest.raises(ChurnlensError, match="before start"):
        retention_series(golden_transactions, "month", start="2024-05-01", end="2024-01-01")


def test_too_many_periods_is_an_error(golden_transactions: pd.DataFrame) -> None:
    with pytest.raises(ChurnlensError, match="periods"):
        retention_series(golden_transactions, "1d", start="1900-01-01", end="2200-01-01")


def test_transactions_follow_the_loader_contract(golden_raw: pd.DataFrame) -> None:
    # One contract (churnlens._loading): a frame that is not clean yet goes through the
    # loader, with its rules and its errors, exactly as compute_features does.
    loaded = retention_rates(load_transactions(golden_raw).transactions, GOLDEN_T0,
                             GOLDEN_T1).to_dict()
    assert retention_rates(golden_raw, GOLDEN_T0, GOLDEN_T1).to_dict() == loaded  # text dates
    with pytest.raises(MissingColumnError, match="amount"):
        retention_rates(golden_raw.drop(columns="amount"), GOLDEN_T0, GOLDEN_T1)
    # A missing (or "NA") id is dropped, as the loader drops it, not counted as a customer.
    for missing in (None, "NA"):
        with_missing = golden_raw.astype({"customer_id": object})
        with_missing.loc[len(with_missing)] = [missing, "2024-05-01", 10.0]
        assert retention_rates(with_missing, GOLDEN_T0, GOLDEN_T1).to_dict() == loaded, missing
    bad = golden_raw.astype({"amount": object})
    bad.loc[0, "amount"] = "ten"
    with pytest.raises(DataValidationError, match="not numbers"):
        retention_rates(bad, GOLDEN_T0, GOLDEN_T1)
    with pytest.raises(DataValidationError, match="DataFrame"):
        retention_rates("golden.csv", GOLDEN_T0, GOLDEN_T1)  # type: ignore[call-overload]


def test_time_zones_follow_the_loader_rule(golden_raw: pd.DataFrame) -> None:
    # A time zone is converted to UTC (and dropped) by the loader, for every stage.
    clean = load_transactions(golden_raw).transactions
    aware = clean.assign(timestamp=clean["timestamp"].dt.tz_localize("Europe/Berlin"))
    utc_days = load_transactions(aware).transactions
    assert retention_rates(aware, GOLDEN_T0, GOLDEN_T1).to_dict() == retention_rates(
        utc_days, GOLDEN_T0, GOLDEN_T1).to_dict()
    pd.testing.assert_frame_equal(compute_features(aware, GOLDEN_T1),
                                  compute_features(utc_days, GOLDEN_T1))


# --- small helpers ----------------------------------------------------------------


def test_coverage_note(golden_transactions: pd.DataFrame) -> None:
    assert coverage_note(day("2023-06-01"), day("2024-06-30"), GOLDEN_T0, GOLDEN_T1) is None
    note = coverage_note(day("2024-02-01"), day("2024-05-20"), GOLDEN_T0, GOLDEN_T1)
    assert note is not None and "2024-01-01" in note and "2024-05-20" in note


def test_frame_records_are_json_ready(golden_transactions: pd.DataFrame) -> None:
    records = frame_records(retention_series(golden_transactions, "quarter"))
    assert records[0]["crr"] is None and records[0]["start"] == "2023-03-31"
    assert records[-1]["complete"] is False and isinstance(records[-1]["S"], int)


def test_exactly_cancelled_day_is_no_occasion_in_features_and_retention() -> None:
    """0.1 + 0.2 - 0.3 is not a purchase, whatever the floating-point summation order."""
    import churnlens

    raw = pd.DataFrame({
        "customer_id": ["A", "A", "A", "B", "B"],
        "timestamp": ["2024-02-10", "2024-02-10", "2024-02-10", "2024-01-05", "2024-02-10"],
        "amount": [0.1, 0.2, -0.3, 5.0, 5.0],
    })
    tx = churnlens.load_transactions(raw).transactions
    assert abs(tx.loc[tx["customer_id"] == "A", "amount"].sum()) < 1e-9
    rates = churnlens.retention_rates(tx, "2024-01-31", "2024-02-29")
    assert rates.E == 1  # only B is active at the end; A never bought
    features = churnlens.compute_features(tx, "2024-02-29")
    assert features["customer_id"].tolist() == ["B"]
