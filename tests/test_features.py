"""Features, labels and snapshots on DuckDB: golden table, a plain-Python oracle, leakage."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import churnlens
from churnlens import (
    FEATURES,
    build_snapshots,
    compute_features,
    compute_labels,
    feature_names,
    feature_table_markdown,
)
from churnlens._features import features_document
from churnlens.exceptions import ChurnlensError, MissingColumnError

DOCS = Path(__file__).resolve().parents[1] / "docs" / "features.md"
WINDOWS = (30, 90, 180, 365)
EPOCH = pd.Timestamp("1970-01-01")


# --- helpers ---------------------------------------------------------------------------


def by_customer(frame: pd.DataFrame, *keys: str) -> pd.DataFrame:
    return frame.sort_values([*keys, "customer_id"]).reset_index(drop=True)


def assert_same_features(actual: pd.DataFrame, expected: pd.DataFrame, *, rtol: float = 1e-9):
    """Integer columns equal, float columns equal within rtol, NaN in the same places."""
    assert list(actual.columns) == list(expected.columns)
    assert len(actual) == len(expected)
    for column in actual.columns:
        a, e = actual[column], expected[column]
        if column in ("customer_id", "as_of", "cutoff") or a.dtype == "int64":
            assert a.tolist() == e.tolist(), column
        elif column == "churned":
            assert a.astype("float64").fillna(-1).tolist() == \
                e.astype("float64").fillna(-1).tolist(), column
        else:
            a_values, e_values = a.to_numpy(dtype=float), e.to_numpy(dtype=float)
            np.testing.assert_array_equal(np.isnan(a_values), np.isnan(e_values),
                                          err_msg=f"NaN positions differ in {column}")
            np.testing.assert_allclose(a_values, e_values, rtol=rtol, atol=1e-9,
                                       equal_nan=True, err_msg=column)


def day(date: str | pd.Timestamp) -> int:
    return (pd.Timestamp(date) - EPOCH).days


# --- the oracle: features and labels in plain Python, straight from retention.md --------


def reference_features(tx: pd.DataFrame, as_of: str, windows=WINDOWS) -> pd.DataFrame:
    c = day(as_of)
    days = (tx["timestamp"].dt.normalize() - EPOCH).dt.days
    rows = []
    for customer, amounts in tx.assign(day=days).loc[days <= c].groupby("customer_id"):
        net_by_day: dict[int, float] = {}
        for d, amount in zip(amounts["day"], amounts["amount"], strict=True):
            net_by_day[d] = net_by_day.get(d, 0.0) + amount
        occasions = sorted(d for d, net in net_by_day.items() if net > 1e-9)
        if not occasions:
            continue  # not acquired by the as-of date
        n, first, last = len(occasions), occasions[0], occasions[-1]
        tenure = c - first
        gaps = [b - a for a, b in itertools.pairwise(occasions)]
        total = float(amounts["amount"].sum())
        mean = total / n
        gap_mean = sum(gaps) / len(gaps) if gaps else math.nan
        row = {
            "customer_id": customer,
            "as_of": pd.Timestamp(as_of),
            "frequency": n,
            "repeat_frequency": n - 1,
            "recency_days": c - last,
            "tenure_days": tenure,
            "t_x_days": last - first,
            "monetary_total": total,
            "monetary_mean": mean,
            "monetary_mean_repeat": (sum(net_by_day[d] for d in occasions[1:]) / (n - 1)
                                     if n > 1 else math.nan),
            "refund_total": float(-amounts["amount"][amounts["amount"] < 0].sum()),
            "gap_mean_days": gap_mean,
            "gap_median_days": float(np.median(gaps)) if gaps else math.nan,
            "gap_std_days": float(np.std(gaps, ddof=1)) if len(gaps) >= 2 else math.nan,
            "gap_last_days": float(gaps[-1]) if gaps else math.nan,
            "overdue_ratio": (c - last) / gap_mean if gaps else math.nan,
            "days_since_first_repeat": float(c - occasions[1]) if n > 1 else math.nan,
            "recent_tenure_share": (
                sum(1 for d in occasions if d - first >= 0.75 * tenure) / n
                if tenure > 0 else math.nan),
        }
        window_counts = {}
        for w in windows:
            in_window = [d for d in occasions if c - w < d <= c]
            window_counts[w] = len(in_window)
            row[f"occasions_{w}d"] = len(in_window)
        for w in windows:
            row[f"spend_{w}d"] = float(sum(net for d, net in net_by_day.items() if c - w < d <= c))
        for w in windows:
            lifetime_rate = n / (tenure + 1)
            recent_rate = window_counts[w] / min(w, tenure + 1)
            row[f"rate_trend_{w}d"] = recent_rate / lifetime_rate
        for w in windows:
            ok = window_counts[w] > 0 and mean > 0
            row[f"basket_trend_{w}d"] = (
                (row[f"spend_{w}d"] / window_counts[w]) / mean if ok else math.nan)
        rows.append(row)
    out = pd.DataFrame(rows, columns=["customer_id", "as_of", *feature_names(windows)])
    return out


def reference_labels(tx: pd.DataFrame, cutoff: str, horizon: int, observed_until: str):
    c, observed = day(cutoff), day(observed_until)
    days = (tx["timestamp"].dt.normalize() - EPOCH).dt.days
    net = tx.assign(day=days).groupby(["customer_id", "day"])["amount"].sum()
    occasions = net[net > 1e-9].reset_index()
    rows = []
    for customer, group in occasions.groupby("customer_id"):
        if group["day"].min() > c:
            continue
        bought = ((group["day"] > c) & (group["day"] <= c + horizon)).any()
        churned = pd.NA if c + horizon > observed else int(not bought)
        rows.append({"customer_id": customer, "cutoff": pd.Timestamp(cutoff),
                     "churned": churned})
    return pd.DataFrame(rows).astype({"churned": "Int8"})


# --- seeded random data with every awkward case -----------------------------------------

CUTOFF = "2023-09-30"


def random_transactions(seed: int) -> pd.DataFrame:
    """Random histories plus hand-placed edge cases around the cutoff 2023-09-30."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2022-10-01")
    rows: list[tuple[str, pd.Timestamp, float]] = []

    def add(customer: str, date: str | pd.Timestamp, amount: float, hour: int = 12) -> None:
        rows.append((customer, pd.Timestamp(date) + pd.Timedelta(hours=hour), amount))

    for i in range(300):
        customer = f"{i:05d}"
        n_days = int(rng.geometric(0.25))
        first = int(rng.integers(0, 500))
        days = sorted({first, *(first + rng.integers(0, 200, size=n_days - 1)).tolist()})
        for d in days:
            for _ in range(int(rng.integers(1, 4))):  # same-day rows
                add(customer, start + pd.Timedelta(days=int(d)),
                    round(float(rng.gamma(2.0, 20.0)) + 0.01, 2), hour=int(rng.integers(0, 24)))
            if rng.random() < 0.1:  # partial refund a few days later (maybe after the cutoff)
                later = start + pd.Timedelta(days=int(d + rng.integers(0, 15)))
                add(customer, later, -round(float(rng.uniform(1, 30)), 2), hour=23)
    # single purchase, long ago
    add("single", "2023-01-15", 42.5)
    # acquired on the cutoff day, late in the day
    add("on_cutoff", CUTOFF, 10.0, hour=23)
    add("on_cutoff", "2023-10-03", 5.0)
    # acquired the day after the cutoff: not a customer yet
    add("next_day", "2023-10-01", 99.0, hour=0)
    # a refund-only day before the first purchase, a day netting to exactly 0, a day
    # netting below 0 with a purchase, and a refund-only day between purchases
    add("awkward", "2023-02-01", -5.0)
    add("awkward", "2023-02-10", 30.0)
    add("awkward", "2023-03-01", 10.0)
    add("awkward", "2023-03-01", -10.0)
    add("awkward", "2023-04-01", 5.0)
    add("awkward", "2023-04-01", -8.0)
    add("awkward", "2023-05-01", -3.25)
    add("awkward", "2023-06-15", 20.0)
    add("awkward", "2023-09-20", 12.0)
    add("awkward", "2023-09-20", 1.0)
    # only refunds: never a customer
    add("refunds_only", "2023-05-05", -20.0)
    # regular buyer: equal gaps (std exactly 0) and a net-negative lifetime basket
    for month in range(1, 10):
        add("regular", f"2023-{month:02d}-05", 1.0)
    add("regular", "2023-09-06", -50.0)
    frame = pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount"])
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


@pytest.fixture(scope="module")
def random_tx() -> pd.DataFrame:
    seed = 20240331
    print(f"random transactions seed: {seed}")
    return churnlens.load_transactions(random_transactions(seed)).transactions


# --- golden -----------------------------------------------------------------------------


def test_golden_features_and_labels(golden_transactions):
    """retention.md, features at 2024-03-31 (D is not yet a customer)."""
    features = by_customer(compute_features(golden_transactions, "2024-03-31"))
    labels = by_customer(compute_labels(golden_transactions, "2024-03-31", 91,
                                        observed_until="2024-06-30"))
    expected = pd.DataFrame({
        "customer_id": ["A", "B", "C", "E", "F"],
        "frequency": [2, 1, 1, 1, 1],
        "recency_days": [26, 59, 137, 304, 6],
        "tenure_days": [81, 59, 137, 304, 6],
        "monetary_total": [50.0, 50.0, 10.0, 60.0, 20.0],
        "churned": [0, 1, 0, 0, 1],
    })
    got = features[["customer_id", "frequency", "recency_days", "tenure_days",
                    "monetary_total"]].merge(labels[["customer_id", "churned"]])
    got["churned"] = got["churned"].astype("int64")
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert features["frequency"].dtype == "int64"
    assert (features["as_of"] == pd.Timestamp("2024-03-31")).all()
    assert labels["churned"].dtype == "Int8"


def test_golden_bg_nbd_statistics_and_gaps(golden_transactions):
    f = by_customer(compute_features(golden_transactions, "2024-03-31")).set_index("customer_id")
    assert f.loc["A", "repeat_frequency"] == 1
    assert f.loc["A", "t_x_days"] == 55  # 2024-01-10 -> 2024-03-05
    assert f.loc["A", "gap_mean_days"] == 55.0
    assert f.loc["A", "overdue_ratio"] == pytest.approx(26 / 55)
    assert f.loc["A", "days_since_first_repeat"] == 26.0
    assert f.loc["A", "occasions_30d"] == 1 and f.loc["A", "spend_30d"] == 20.0
    assert f.loc["A", "rate_trend_30d"] == pytest.approx((1 / 30) / (2 / 82))
    assert f.loc["A", "basket_trend_30d"] == pytest.approx(20.0 / 25.0)
    # single-purchase customers: gap statistics are undefined, not 0
    for column in ("gap_mean_days", "gap_median_days", "gap_std_days", "gap_last_days",
                   "overdue_ratio", "days_since_first_repeat", "monetary_mean_repeat"):
        assert f.loc[["B", "C", "E", "F"], column].isna().all(), column
    # F's two rows on one day are one occasion of 20
    assert f.loc["F", "frequency"] == 1 and f.loc["F", "monetary_mean"] == 20.0


def test_golden_labels_are_censored_without_the_full_horizon(golden_transactions):
    """The data ends 2024-05-20: by default the 91-day horizon is not observed."""
    labels = compute_labels(golden_transactions, "2024-03-31", 91)
    assert labels["churned"].isna().all() and len(labels) == 5
    short = by_customer(compute_labels(golden_transactions, "2024-03-31", 30))
    assert short["churned"].tolist() == [1, 1, 0, 1, 1]  # only C bought in April


# --- oracle --------------------------------------------------------------------------


@pytest.mark.parametrize("as_of", [CUTOFF, "2023-03-01", "2024-06-30"])
def test_every_feature_matches_the_reference(random_tx, as_of):
    got = by_customer(compute_features(random_tx, as_of))
    expected = by_customer(reference_features(random_tx, as_of))
    assert_same_features(got, expected)


def test_edge_cases_in_the_random_data(random_tx):
    f = compute_features(random_tx, CUTOFF).set_index("customer_id")
    assert "next_day" not in f.index and "refunds_only" not in f.index
    assert f.loc["on_cutoff", "tenure_days"] == 0
    assert f.loc["on_cutoff", "recency_days"] == 0
    assert np.isnan(f.loc["on_cutoff", "recent_tenure_share"])
    # awkward: occasions 02-10, 06-15, 09-20 (03-01 nets to 0, 04-01 to -3)
    assert f.loc["awkward", "frequency"] == 3
    assert f.loc["awkward", "monetary_total"] == pytest.approx(-5 + 30 + 0 - 3 - 3.25 + 20 + 13)
    assert f.loc["awkward", "refund_total"] == pytest.approx(5 + 10 + 8 + 3.25)
    assert f.loc["regular", "gap_std_days"] >= 0
    assert np.isnan(f.loc["regular", "basket_trend_30d"])  # lifetime basket <= 0


def test_windows_are_configurable(random_tx):
    f = compute_features(random_tx, CUTOFF, windows_days=(7, 14))
    assert feature_names((7, 14)) == list(f.columns[2:])
    assert "occasions_7d" in f and "occasions_30d" not in f
    assert_same_features(by_customer(f),
                         by_customer(reference_features(random_tx, CUTOFF, (7, 14))))


@pytest.mark.parametrize("horizon", [1, 30, 91])
def test_labels_match_the_reference(random_tx, horizon):
    got = by_customer(compute_labels(random_tx, CUTOFF, horizon, observed_until="2024-01-31"))
    expected = by_customer(reference_labels(random_tx, CUTOFF, horizon, "2024-01-31"))
    assert_same_features(got, expected)
    assert got["churned"].notna().all()


def test_labels_missing_when_horizon_runs_past_the_data(random_tx):
    labels = compute_labels(random_tx, CUTOFF, 91, observed_until="2023-12-29")
    assert labels["churned"].isna().all()  # 2023-09-30 + 91 = 2023-12-30
    labels = compute_labels(random_tx, CUTOFF, 91, observed_until="2023-12-30")
    assert labels["churned"].notna().all()
    # the default: the last day with any transaction
    last = random_tx["timestamp"].max().normalize()
    late = (last - pd.Timedelta(days=10)).date()
    assert compute_labels(random_tx, late, 10)["churned"].notna().all()
    assert compute_labels(random_tx, late, 11)["churned"].isna().all()


# --- leakage -----------------------------------------------------------------------


def future_rows(tx: pd.DataFrame, after: str, seed: int) -> pd.DataFrame:
    """Transactions strictly after the day ``after``: existing and new customers, refunds."""
    rng = np.random.default_rng(seed)
    customers = np.r_[tx["customer_id"].unique()[:200], ["brand_new_1", "brand_new_2"]]
    n = 2_000
    start = pd.Timestamp(after) + pd.Timedelta(days=1)
    return pd.DataFrame({
        "customer_id": rng.choice(customers, size=n),
        "timestamp": (start + pd.to_timedelta(rng.integers(0, 400 * 86_400, size=n), unit="s")
                      ).astype("datetime64[us]"),
        "amount": np.round(rng.normal(30, 40, size=n), 2),
    })


def test_transactions_after_the_cutoff_change_no_feature(random_tx):
    before = by_customer(compute_features(random_tx, CUTOFF))
    extended = pd.concat([random_tx, future_rows(random_tx, CUTOFF, seed=1)], ignore_index=True)
    after = by_customer(compute_features(extended, CUTOFF))
    assert_same_features(after, before, rtol=1e-12)
    # ...while a purchase on the cutoff day itself (its last second) does change them
    same_day = pd.DataFrame({"customer_id": ["00001"], "amount": [7.0],
                             "timestamp": [pd.Timestamp(CUTOFF) + pd.Timedelta("23:59:59")]})
    changed = compute_features(pd.concat([random_tx, same_day.astype(random_tx.dtypes)]), CUTOFF)
    assert changed.set_index("customer_id").loc["00001", "recency_days"] == 0


def test_transactions_after_the_horizon_change_no_label(random_tx):
    horizon, observed = 60, "2023-12-31"
    before = by_customer(compute_labels(random_tx, CUTOFF, horizon, observed_until=observed))
    horizon_end = (pd.Timestamp(CUTOFF) + pd.Timedelta(days=horizon)).date().isoformat()
    extended = pd.concat([random_tx, future_rows(random_tx, horizon_end, seed=2)],
                         ignore_index=True)
    for observed_until in (observed, None):  # None: the new, later last day
        after = by_customer(compute_labels(extended, CUTOFF, horizon,
                                           observed_until=observed_until))
        assert_same_features(after, before)
    # a purchase inside the horizon does flip a churned customer to retained
    churned = before.loc[before["churned"] == 1, "customer_id"].iloc[0]
    inside = pd.DataFrame({"customer_id": [churned], "amount": [5.0],
                           "timestamp": [pd.Timestamp(CUTOFF) + pd.Timedelta(days=horizon)]})
    flipped = compute_labels(pd.concat([random_tx, inside.astype(random_tx.dtypes)]), CUTOFF,
                             horizon, observed_until=observed).set_index("customer_id")
    assert flipped.loc[churned, "churned"] == 0


# --- exact money ----------------------------------------------------------------------


def test_money_is_added_exactly_whatever_the_order() -> None:
    """Money features are exact sums: the same bits whatever order the rows (and the
    engine's threads) add in, and equal to the exact sum of the cents, rounded once.
    In floating point, shuffling these rows changes monetary_total in its last bits."""
    rng = np.random.default_rng(11)
    n = 40_000
    customers = rng.integers(0, 300, n)
    cents = rng.integers(-2_000, 5_000_000, n)  # up to 50,000.00, refunds included
    tx = pd.DataFrame({
        "customer_id": [f"c{c:03d}" for c in customers],
        "timestamp": pd.Timestamp("2024-01-01")
        + pd.to_timedelta(rng.integers(0, 366 * 24, n), unit="h"),
        "amount": cents / 100,
    })
    shuffled = tx.sample(frac=1.0, random_state=3).reset_index(drop=True)
    first = by_customer(compute_features(tx, "2024-12-31"))
    second = by_customer(compute_features(shuffled, "2024-12-31"))
    pd.testing.assert_frame_equal(first, second, check_exact=True)

    # The float sum this replaced is order-dependent on exactly this data...
    float_sums = [frame.groupby("customer_id")["amount"].sum().sort_index()
                  for frame in (tx, shuffled)]
    assert (float_sums[0] != float_sums[1]).any()
    # ...while churnlens gives the exact total of the cents, rounded once.
    exact = pd.Series(cents).groupby(tx["customer_id"]).sum().sort_index()
    expected = [int(total) / 100 for total in exact]  # int / int: correctly rounded
    assert first["monetary_total"].tolist() == expected
    refunds = pd.Series(np.where(cents < 0, -cents, 0)).groupby(tx["customer_id"]).sum()
    assert first["refund_total"].tolist() == [int(t) / 100 for t in refunds.sort_index()]


# --- snapshots -------------------------------------------------------------------------


def test_snapshots_equal_features_and_labels_per_cutoff(random_tx):
    cutoffs = ["2022-09-30", "2023-01-31", "2023-04-30", CUTOFF, "2023-12-31", "2024-02-29"]
    horizon, observed = 61, "2024-01-31"
    snapshots = build_snapshots(random_tx, cutoffs, horizon_days=horizon,
                                observed_until=observed)
    assert list(snapshots.columns) == ["customer_id", "cutoff", *feature_names(), "churned"]
    expected = []
    for cutoff in cutoffs:
        features = compute_features(random_tx, cutoff).rename(columns={"as_of": "cutoff"})
        labels = compute_labels(random_tx, cutoff, horizon, observed_until=observed)
        if features.empty:
            continue
        expected.append(features.merge(labels, on=["customer_id", "cutoff"], how="left",
                                       validate="one_to_one"))
    expected_frame = pd.concat(expected, ignore_index=True)
    assert_same_features(by_customer(snapshots, "cutoff"), by_customer(expected_frame, "cutoff"))
    # the 2023-12-31 + 61 horizon ends after 2024-01-31: censored, never "churned"
    late = snapshots[snapshots["cutoff"] >= pd.Timestamp("2023-12-31")]
    assert len(late) and late["churned"].isna().all()
    assert snapshots.loc[snapshots["cutoff"] < pd.Timestamp("2023-12-01"), "churned"].notna().all()


def test_snapshots_default_observed_until_and_duplicates(random_tx):
    once = build_snapshots(random_tx, [CUTOFF], horizon_days=30)
    twice = build_snapshots(random_tx, [CUTOFF, pd.Timestamp(CUTOFF)], horizon_days=30)
    assert_same_features(by_customer(twice), by_customer(once))
    labels = compute_labels(random_tx, CUTOFF, 30)
    assert_same_features(by_customer(once[["customer_id", "cutoff", "churned"]]),
                         by_customer(labels))


# --- inputs ----------------------------------------------------------------------------


def test_raw_frames_and_files_are_loaded_first(golden_raw, golden_csv, tmp_path):
    from_raw = by_customer(compute_features(golden_raw, "2024-03-31"))
    from_csv = by_customer(compute_features(golden_csv, "2024-03-31"))
    parquet = tmp_path / "golden.parquet"
    churnlens.load_transactions(golden_raw).transactions.to_parquet(parquet)
    from_parquet = by_customer(compute_features(str(parquet), "2024-03-31"))
    assert_same_features(from_csv, from_raw)
    assert_same_features(from_parquet, from_raw)
    assert from_raw["monetary_total"].tolist() == [50.0, 50.0, 10.0, 60.0, 20.0]


def test_customer_ids_keep_their_type(golden_raw):
    as_ints = golden_raw.assign(customer_id=golden_raw["customer_id"].map(
        {c: i for i, c in enumerate("ABCDEF", start=1)}))
    features = compute_features(as_ints, "2024-03-31")
    assert features["customer_id"].dtype == "int64"
    assert sorted(features["customer_id"]) == [1, 2, 3, 5, 6]
    zeros = golden_raw.assign(customer_id="00" + golden_raw["customer_id"])
    assert sorted(compute_labels(zeros, "2024-03-31", 30)["customer_id"])[0] == "00A"


def test_nobody_acquired_gives_an_empty_frame_with_the_columns(golden_transactions):
    empty = compute_features(golden_transactions, "2020-01-01")
    assert empty.empty and list(empty.columns) == ["customer_id", "as_of", *feature_names()]
    assert compute_labels(golden_transactions, "2020-01-01", 30).empty


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda tx: compute_features(tx, "2024-03-31", windows_days=(30, 30)), "duplicates"),
        (lambda tx: compute_features(tx, "2024-03-31", windows_days=(0,)), "windows_days"),
        (lambda tx: compute_features(tx, "not a date"), "as_of"),
        (lambda tx: compute_labels(tx, "2024-03-31", 0), "horizon_days"),
        (lambda tx: build_snapshots(tx, [], horizon_days=30), "cutoffs is empty"),
        (lambda tx: compute_features([1, 2, 3], "2024-03-31"), "pandas DataFrame"),
    ],
)
def test_bad_arguments_are_clear_errors(golden_transactions, call, message):
    with pytest.raises(ChurnlensError, match=message):
        call(golden_transactions)


def test_missing_column_is_reported(golden_raw):
    with pytest.raises(MissingColumnError, match="amount"):
        compute_features(golden_raw.drop(columns="amount"), "2024-03-31")


# --- documentation --------------------------------------------------------------------


def test_registry_is_complete_and_named_with_units():
    names = [feature.name for feature in FEATURES]
    assert len(names) == len(set(names))
    for required in ("frequency", "repeat_frequency", "recency_days", "tenure_days",
                     "t_x_days", "monetary_total", "monetary_mean", "refund_total",
                     "gap_mean_days", "gap_median_days", "gap_std_days", "gap_last_days",
                     "overdue_ratio", "occasions_{w}d", "spend_{w}d", "rate_trend_{w}d",
                     "basket_trend_{w}d", "recent_tenure_share", "days_since_first_repeat"):
        assert required in names, required
    for feature in FEATURES:
        assert feature.unit and feature.definition and feature.dtype in ("int64", "float64")
        if feature.unit == "days":
            assert "days" in feature.name.split("_"), feature.name


def test_docs_features_md_is_generated_from_the_registry():
    table = feature_table_markdown()
    assert table.count("\n") == len(FEATURES) + 2
    assert DOCS.read_text() == features_document(), (
        "docs/features.md is out of date: run `python docs/update_features.py`"
    )


# --- row order ------------------------------------------------------------------------


@pytest.mark.parametrize("ids", [["b", "10", "9", "00A", "a"], [30, 4, 1000, 7, 12]])
def test_rows_come_sorted_by_customer_id(ids):
    rng = np.random.default_rng(7)
    rows = [(c, f"2024-0{m}-1{d}", 10.0 + d) for c in ids for m, d in [(1, 2), (2, 5), (3, 1)]]
    order = rng.permutation(len(rows))
    tx = pd.DataFrame([rows[i] for i in order], columns=["customer_id", "timestamp", "amount"])
    features = compute_features(tx, "2024-03-31")
    assert features["customer_id"].tolist() == sorted(ids)
    assert isinstance(features.index, pd.RangeIndex) and features.index[0] == 0
    labels = compute_labels(tx, "2024-02-29", 30)
    assert labels["customer_id"].tolist() == sorted(ids)
    snapshots = build_snapshots(tx, ["2024-02-29", "2024-01-31"], horizon_days=30)
    expected = [(cutoff, c) for cutoff in sorted(set(snapshots["cutoff"])) for c in sorted(ids)]
    assert list(zip(snapshots["cutoff"], snapshots["customer_id"], strict=True)) == expected
    assert isinstance(snapshots.index, pd.RangeIndex)
