"""The details and calendar feature groups (churnlens._input_features_sql).

Hand-computed golden values for every feature, a pandas reference implementation as an
oracle on random data, the time rule (rows after the cutoff change nothing), and
DuckDB/Spark parity on the same SQL.
"""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pandas as pd
import pytest

from churnlens._engine import day_number
from churnlens._input_features_sql import (
    CALENDAR_FEATURES,
    DETAIL_COLUMNS,
    calendar_feature_names,
    calendar_select_sql,
    channel_feature_name,
    channels_select_sql,
    check_channels,
    details_feature_names,
    details_select_sql,
)
from churnlens.exceptions import ChurnlensError

SEED = 20261205


def _cutoffs_sql(days) -> str:
    return "(" + " UNION ALL ".join(f"SELECT {int(d)} AS cutoff_day" for d in days) + ")"


def run_duckdb(tx: pd.DataFrame, cutoff_dates, *, group: str, columns=DETAIL_COLUMNS,
               channels=(), horizon_days=30) -> pd.DataFrame:
    """Run a builder on DuckDB over a clean frame (timestamp -> event_time)."""
    con = duckdb.connect()
    try:
        con.register("tx", tx.rename(columns={"timestamp": "event_time"}))
        cutoffs = _cutoffs_sql(day_number(pd.Timestamp(d)) for d in cutoff_dates)
        if group == "details":
            sql = details_select_sql("tx", cutoffs, columns=columns, channels=channels,
                                     dialect="duckdb")
        else:
            sql = calendar_select_sql("tx", cutoffs, horizon_days=horizon_days,
                                      dialect="duckdb")
        out = con.sql(sql).df()
    finally:
        con.close()
    return out.sort_values(["cutoff", "customer_id"]).reset_index(drop=True)


def frame(rows) -> pd.DataFrame:
    tx = pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount", "order_id",
                                     "quantity", "category", "channel", "discount"])
    tx["timestamp"] = pd.to_datetime(tx["timestamp"], format="ISO8601").astype("datetime64[us]")
    tx["amount"] = tx["amount"].astype("float64")
    tx["quantity"] = tx["quantity"].astype("float64")
    tx["discount"] = tx["discount"].astype("float64")
    tx["category"] = tx["category"].astype("string")
    tx["channel"] = tx["channel"].astype("string")
    return tx


# Customer A: three occasions; B: one occasion and a refund-only day; C: only after the
# first cutoff. The cutoff 2024-03-31.
GOLDEN = frame([
    # customer, timestamp, amount, order, qty, category, channel, discount
    ("A", "2023-03-01 10:00", 40.0, "o1", 2, "shoes", "web", 10.0),
    ("A", "2023-03-01 18:00", 20.0, "o2", 1, "bags", "store", 0.0),
    ("A", "2023-03-20", 30.0, "o3", 3, "shoes", "web", 0.0),
    ("A", "2023-03-20", -30.0, "o3", 3, "shoes", "web", 0.0),   # refund: day nets to 0
    ("A", "2023-06-01", 60.0, None, 4, "shoes", "store", 20.0),
    ("A", "2024-03-10", 30.0, "o5", 1, None, None, 0.0),
    ("A", "2024-03-10", -10.0, "o5", 1, None, "web", 0.0),      # partial refund
    ("B", "2024-02-01", 50.0, "o6", 5, "toys", "app", 0.0),
    ("B", "2024-02-02", -20.0, "o7", 1, "toys", "app", 0.0),    # refund-only day
    ("C", "2024-05-01", 10.0, "o8", 1, "toys", "web", 0.0),     # after the cutoff
])
CUTOFF = "2024-03-31"


def test_golden_details():
    out = run_duckdb(GOLDEN, [CUTOFF], group="details", channels=("store", "web"))
    assert list(out.columns) == ["customer_id", "cutoff", "orders_per_occasion",
                                 "items_per_occasion", "category_count",
                                 "category_concentration", "channel_share_store",
                                 "channel_share_web", "discount_share"]
    assert out["customer_id"].tolist() == ["A", "B"]          # C has no occasion yet
    assert (out["cutoff"] == pd.Timestamp(CUTOFF)).all()
    a, b = out.iloc[0], out.iloc[1]
    # A's occasions: 2023-03-01 (60), 2023-06-01 (60), 2024-03-10 (20); 2023-03-20 nets 0.
    # orders: 2 + 1 (no id: one order) + 1 = 4 over 3 occasions
    assert a["orders_per_occasion"] == pytest.approx(4 / 3, rel=1e-15)
    # items on purchase rows of occasion days: (2 + 1) + 4 + 1 = 8
    assert a["items_per_occasion"] == pytest.approx(8 / 3, rel=1e-15)
    # purchase rows (amount > 0) with a category: shoes 40 + 30 + 60 = 130, bags 20
    assert a["category_count"] == 2
    assert a["category_concentration"] == pytest.approx((130 / 150) ** 2 + (20 / 150) ** 2,
                                                        rel=1e-14)
    # purchase spend 40 + 20 + 30 + 60 + 30 = 180: store 80, web 70 (the 30 without channel)
    assert a["channel_share_store"] == pytest.approx(80 / 180, rel=1e-15)
    assert a["channel_share_web"] == pytest.approx(70 / 180, rel=1e-15)
    # discounts on purchase rows 30 over (180 + 30)
    assert a["discount_share"] == pytest.approx(30 / 210, rel=1e-15)
    assert b["orders_per_occasion"] == 1.0
    assert b["items_per_occasion"] == 5.0
    assert b["category_count"] == 1 and b["category_concentration"] == 1.0
    assert b["channel_share_store"] == 0.0 and b["channel_share_web"] == 0.0  # app only
    assert b["discount_share"] == 0.0
    assert out["category_count"].dtype == "int64"


def test_golden_calendar():
    out = run_duckdb(GOLDEN, [CUTOFF, "2024-06-30"], group="calendar", horizon_days=90)
    assert list(out.columns) == ["customer_id", "cutoff", *CALENDAR_FEATURES]
    first = out[out["cutoff"] == pd.Timestamp(CUTOFF)].set_index("customer_id")
    # 2024-03-31 is day 91 of a leap year
    angle = 2 * math.pi * 91 / 365.25
    assert first["season_sin"].tolist() == pytest.approx([math.sin(angle)] * 2, rel=1e-14)
    assert first["season_cos"].tolist() == pytest.approx([math.cos(angle)] * 2, rel=1e-14)
    # A: first occasion 2023-03-01 <= 2023-04-01 (c - 365); the last year (2023-04-01,
    # 2024-03-31] holds 2023-06-01 and 2024-03-10; its window (2023-04-01, 2023-06-30]
    # holds 2023-06-01: 1/2.
    assert first.loc["A", "last_year_window_share"] == 0.5
    assert np.isnan(first.loc["B", "last_year_window_share"])    # under a year of history
    later = out[out["cutoff"] == pd.Timestamp("2024-06-30")].set_index("customer_id")
    assert sorted(later.index) == ["A", "B", "C"]
    # A at 2024-06-30: year (2023-07-01, 2024-06-30] holds 2024-03-10 only; window
    # (2023-07-01, 2023-09-29] none: 0/1.
    assert later.loc["A", "last_year_window_share"] == 0.0


def test_calendar_year_ago_window_never_reads_past_the_cutoff():
    # H longer than a year: the window is clipped at the cutoff, the share is 1
    out = run_duckdb(GOLDEN, [CUTOFF], group="calendar", horizon_days=500)
    assert out.set_index("customer_id").loc["A", "last_year_window_share"] == 1.0
    with pytest.raises(ChurnlensError, match="horizon_days"):
        calendar_select_sql("tx", "cutoffs", horizon_days=0, dialect="duckdb")


def test_no_customer_without_occasion_and_empty_history():
    # a customer whose only rows are refunds gets no row (as the core features)
    tx = frame([("R", "2024-01-01", -5.0, "x", 1, "a", "web", 0.0),
                ("S", "2024-01-01", 5.0, "y", 1, "a", "web", 0.0)])
    out = run_duckdb(tx, ["2024-01-31"], group="details", channels=("web",))
    assert out["customer_id"].tolist() == ["S"]


def test_feature_names_follow_the_columns_present():
    assert details_feature_names(()) == []
    assert details_feature_names(["discount", "order_id"]) == ["orders_per_occasion",
                                                               "discount_share"]
    assert details_feature_names(DETAIL_COLUMNS, ["Web Shop", "app"]) == [
        "orders_per_occasion", "items_per_occasion", "category_count",
        "category_concentration", "channel_share_web_shop", "channel_share_app",
        "discount_share"]
    assert calendar_feature_names() == ["season_sin", "season_cos", "last_year_window_share"]
    with pytest.raises(ChurnlensError, match="unknown optional"):
        details_feature_names(["colour"])
    with pytest.raises(ChurnlensError, match="at least one"):
        details_select_sql("tx", "c", columns=(), dialect="duckdb")


def test_channel_names_are_sanitised_and_collisions_refused():
    assert channel_feature_name(" E-Mail  Promo ") == "channel_share_e_mail_promo"
    assert channel_feature_name("Web") == "channel_share_web"
    with pytest.raises(ChurnlensError, match="both give the feature column"):
        check_channels(["Web", "web "])
    with pytest.raises(ChurnlensError, match="no letter or digit"):
        channel_feature_name("--")


def test_only_the_columns_asked_for_are_read():
    # a source with the order id alone: the SQL must not name the other columns
    tx = GOLDEN[["customer_id", "timestamp", "amount", "order_id"]]
    out = run_duckdb(tx, [CUTOFF], group="details", columns=("order_id",))
    assert list(out.columns) == ["customer_id", "cutoff", "orders_per_occasion"]
    calendar = run_duckdb(GOLDEN[["customer_id", "timestamp", "amount"]], [CUTOFF],
                          group="calendar")
    assert len(calendar) == 2


def test_channels_select_sql_lists_purchase_channels_up_to_as_of():
    con = duckdb.connect()
    con.register("tx", GOLDEN.rename(columns={"timestamp": "event_time"}))
    found = [row[0] for row in con.sql(
        channels_select_sql("tx", day_number(pd.Timestamp(CUTOFF)), "duckdb")).fetchall()]
    con.close()
    assert found == ["app", "store", "web"]


# --- the oracle: the same definitions in plain pandas ----------------------------------


def _units(values: pd.Series) -> np.ndarray:
    scaled = values.to_numpy(dtype="float64") * 1e9
    whole = np.trunc(scaled)
    return (whole + np.where(np.abs(scaled - whole) >= 0.5, np.sign(scaled), 0)).astype(
        "int64")


def reference(tx: pd.DataFrame, cutoff_dates, channels, horizon_days) -> pd.DataFrame:
    """Every details and calendar feature, one customer and cutoff at a time."""
    tx = tx.assign(day=tx["timestamp"].to_numpy().astype("datetime64[D]").astype("int64"),
                   units=_units(tx["amount"]), q_units=_units(tx["quantity"]),
                   d_units=_units(tx["discount"]))
    out = []
    for cutoff in cutoff_dates:
        c = day_number(pd.Timestamp(cutoff))
        doy = pd.Timestamp(cutoff).day_of_year
        for customer, rows in tx[tx["day"] <= c].groupby("customer_id", sort=True):
            net = rows.groupby("day")["units"].sum()
            occasions = sorted(net.index[net > 0])
            if not occasions:
                continue
            purchase = rows[rows["units"] > 0]
            on_occasion = purchase[purchase["day"].isin(occasions)]
            orders = sum(max(group["order_id"].dropna().nunique(), 1)
                         for _, group in on_occasion.groupby("day"))
            spend = int(purchase["units"].sum())
            by_category = purchase.dropna(subset=["category"]).groupby("category")["units"].sum()
            total = float(int(by_category.sum()))
            hhi = 0.0
            for share in sorted(float(int(v)) / total for v in by_category):
                hhi += share * share
            discounts = int(purchase["d_units"].sum())
            year = [d for d in occasions if d > c - 365]
            window = [d for d in year if d <= c - 365 + min(horizon_days, 365)]
            angle = 2 * math.pi * doy / 365.25
            row = {
                "customer_id": customer, "cutoff": pd.Timestamp(cutoff),
                "orders_per_occasion": orders / len(occasions),
                "items_per_occasion": (int(on_occasion["q_units"].sum()) / 1e9)
                / len(occasions),
                "category_count": len(by_category),
                "category_concentration": hhi if len(by_category) else np.nan,
            }
            for channel in channels:
                mine = int(purchase.loc[purchase["channel"] == channel, "units"].sum())
                row[channel_feature_name(channel)] = (mine / 1e9) / (spend / 1e9)
            row["discount_share"] = (discounts / 1e9) / ((spend + discounts) / 1e9)
            row.update(season_sin=math.sin(angle), season_cos=math.cos(angle),
                       last_year_window_share=(len(window) / len(year)
                                               if occasions[0] <= c - 365 and year
                                               else np.nan))
            out.append(row)
    return pd.DataFrame(out).sort_values(["cutoff", "customer_id"]).reset_index(drop=True)


def random_transactions(seed: int, customers: int = 60, rows: int = 1500) -> pd.DataFrame:
    """Three years of random purchases, refunds and gaps in every optional column."""
    print(f"seed={seed}")
    return _random_frame(np.random.default_rng(seed), rows, customers,
                         pd.Timestamp("2021-01-01"))


def _random_frame(rng, rows, customers, start) -> pd.DataFrame:
    amounts = np.round(rng.gamma(2.0, 20.0, rows), 2)
    amounts[rng.random(rows) < 0.08] *= -1            # refunds
    order = rng.integers(0, 400, rows).astype(str).astype(object)
    order[rng.random(rows) < 0.1] = None
    category = rng.choice(["shoes", "bags", "toys", "home"], rows).astype(object)
    category[rng.random(rows) < 0.15] = None
    channel = rng.choice(["web", "store", "app", "Web Shop"], rows).astype(object)
    channel[rng.random(rows) < 0.1] = None
    discount = np.where(rng.random(rows) < 0.7, 0.0, np.round(rng.uniform(0, 15, rows), 2))
    records = list(zip(
        rng.choice([f"c{i:03d}" for i in range(customers)], rows),
        start + pd.to_timedelta(rng.integers(0, 3 * 365 * 24, rows), unit="h"),
        amounts, order, rng.integers(1, 6, rows), category, channel, discount, strict=True))
    return frame(records)


RANDOM_CUTOFFS = ["2021-06-30", "2022-03-15", "2022-12-31", "2023-10-01"]
RANDOM_CHANNELS = ("Web Shop", "app", "store", "web")


def assert_frames_match(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(actual["customer_id"]) == list(expected["customer_id"])
    assert list(actual["cutoff"]) == list(expected["cutoff"])
    for column in actual.columns[2:]:
        np.testing.assert_allclose(actual[column].to_numpy(dtype="float64"),
                                   expected[column].to_numpy(dtype="float64"),
                                   rtol=1e-13, atol=0, equal_nan=True, err_msg=column)


def test_random_data_match_the_pandas_reference():
    tx = random_transactions(SEED)
    expected = reference(tx, RANDOM_CUTOFFS, RANDOM_CHANNELS, horizon_days=60)
    details = run_duckdb(tx, RANDOM_CUTOFFS, group="details", channels=RANDOM_CHANNELS)
    calendar = run_duckdb(tx, RANDOM_CUTOFFS, group="calendar", horizon_days=60)
    assert len(details) == len(expected) > 100
    assert_frames_match(details, expected[list(details.columns)])
    assert_frames_match(calendar, expected[list(calendar.columns)])
    # the data exercise every branch: NaN shares, zero shares, several categories
    assert calendar["last_year_window_share"].isna().any()
    assert (calendar["last_year_window_share"] > 0).any()
    assert (details["category_count"] >= 3).any()


def test_rows_after_the_cutoff_change_nothing():
    tx = random_transactions(SEED + 1)
    cutoff = "2022-06-30"
    before = tx[tx["timestamp"] < pd.Timestamp(cutoff) + pd.Timedelta(days=1)]
    # the cutoff's own late evening stays; everything after it goes
    assert len(before) < len(tx)
    for group in ("details", "calendar"):
        full = run_duckdb(tx, [cutoff], group=group, channels=RANDOM_CHANNELS)
        cut = run_duckdb(before, [cutoff], group=group, channels=RANDOM_CHANNELS)
        pd.testing.assert_frame_equal(full, cut)
    # and a later cutoff does read them (the test can fail)
    later = run_duckdb(tx, ["2023-06-30"], group="details", channels=RANDOM_CHANNELS)
    cut_later = run_duckdb(before, ["2023-06-30"], group="details", channels=RANDOM_CHANNELS)
    assert not later.equals(cut_later)


@pytest.mark.spark
@pytest.mark.slow
def test_duckdb_and_spark_agree(spark, tmp_path):
    tx = random_transactions(SEED + 2, customers=40, rows=800)
    path = tmp_path / "tx.parquet"
    tx.rename(columns={"timestamp": "event_time"}).to_parquet(path, index=False)
    source = spark.read.parquet(str(path))
    source.createOrReplaceTempView("churnlens_test_tx")
    cutoffs = _cutoffs_sql(day_number(pd.Timestamp(d)) for d in RANDOM_CUTOFFS)
    try:
        for group in ("details", "calendar"):
            if group == "details":
                sql = details_select_sql("churnlens_test_tx", cutoffs, columns=DETAIL_COLUMNS,
                                         channels=RANDOM_CHANNELS, dialect="spark")
            else:
                sql = calendar_select_sql("churnlens_test_tx", cutoffs, horizon_days=60,
                                          dialect="spark")
            out = spark.sql(sql)
            result_path = tmp_path / f"{group}_result"
            out.write.parquet(str(result_path))
            got = pd.read_parquet(result_path)[list(out.columns)]
            got["cutoff"] = pd.to_datetime(got["cutoff"]).astype("datetime64[us]")
            got = got.sort_values(["cutoff", "customer_id"]).reset_index(drop=True)
            duck = run_duckdb(tx, RANDOM_CUTOFFS, group=group, channels=RANDOM_CHANNELS,
                              horizon_days=60)
            assert list(got.columns) == list(duck.columns)
            assert_frames_match(got, duck)
            found = [row[0] for row in spark.sql(channels_select_sql(
                "churnlens_test_tx", day_number(pd.Timestamp("2023-10-01")), "spark")
            ).collect()]
            assert found == sorted(RANDOM_CHANNELS)
    finally:
        spark.catalog.dropTempView("churnlens_test_tx")
