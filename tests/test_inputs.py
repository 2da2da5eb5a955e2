"""The optional inputs: the customer table and the event table (issue 21, items 1 and 5).

Loading is as strict as for transactions (same id and timestamp rules, errors naming
what, where and what to do), the point-in-time helpers never let a row valid after the
cutoff through, and the generator emits both tables with known effects while the
transactions of a seed stay those of before when the new options are off.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from churnlens._inputs import attributes_at, events_until, load_customers, load_events
from churnlens._loading import clean_values, load_transactions
from churnlens._synthetic import (
    CHANNELS,
    SyntheticInputs,
    generate_inputs,
    generate_transactions,
    write_transactions,
)
from churnlens.cli import app
from churnlens.exceptions import DataValidationError, EmptyDataError, MissingColumnError

FORMATS = ["csv", "parquet"]


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


def _write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def _customers_raw() -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": ["007", "007", "12.0", "NA", "C9"],
        "valid_from": ["2024-01-01", "2024-06-01", "", "2024-01-01", "2024-03-01T23:30:00-02:00"],
        "channel": ["web", "app", "store", "web", "web"],
        "age": ["31", "31", "40", "50", " 22 "],
    })


def _events_raw() -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": ["007", "007", "12", "", "C9", "C9"],
        "timestamp": ["2024-01-10", "2024-02-01T10:00:00+02:00", "2024-03-01",
                      "2024-01-05", "2024-02-10 08:00:00", "2024-04-01"],
        "event_type": ["email_open", "site_visit", "email_open", "email_open", "webinar",
                       " site_visit "],
        "value": ["", "3", "", "", "1.5", "7"],
    })


# --- the customer table -------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_load_customers_cleans_and_reports(tmp_path: Path, fmt: str) -> None:
    path = _write(_customers_raw(), tmp_path / f"customers.{fmt}")
    customers, report = load_customers(path, valid_from_col="valid_from")
    assert report.rows_read == 5
    assert report.dropped_missing_customer_id == 1  # "NA" reads as missing, as in transactions
    assert report.customers == 3
    assert report.rows_kept == 4
    assert report.numeric_attributes == ("age",)
    assert report.categorical_attributes == ("channel",)
    assert report.rows_without_valid_from == 1
    assert report.timestamps_converted_to_utc == 1
    assert customers["age"].dtype == "float64"
    assert customers["age"].tolist() == [31.0, 31.0, 40.0, 22.0]
    # ids follow the transactions' rule exactly
    assert sorted(customers["customer_id"]) == ["007", "007", "12", "C9"]
    # offsets to UTC, naive: 23:30 at -02:00 is 01:30 the next day
    assert pd.Timestamp("2024-03-02 01:30") in set(customers["valid_from"])
    labels = dict(report.lines())
    assert labels["attribute channel"] == "categorical, 3 values, 0 missing"
    assert labels["attribute age"] == "numeric, 0 missing"
    assert json.dumps(report.to_dict())


def test_customer_ids_use_the_transactions_rule() -> None:
    raw = pd.Series(["007", "12.0", "null", " ", "4.2e1", "1.5", "A1"])
    expected = clean_values(raw).customer_ids
    frame = pd.DataFrame({"customer_id": raw, "x": list("abcdefg")})
    customers, report = load_customers(frame)
    assert customers["customer_id"].tolist() == sorted(expected.dropna().tolist())
    assert report.dropped_missing_customer_id == int(expected.isna().sum()) == 2
    # integer ids stay integers, whole floats become integers: as transactions
    ints, _ = load_customers(pd.DataFrame({"customer_id": [3.0, 1.0, None], "x": [1, 2, 3]}))
    tx = load_transactions(pd.DataFrame({"customer_id": [3.0, 1.0], "timestamp": ["2024-01-01"] * 2,
                                         "amount": [1.0, 2.0]})).transactions
    assert ints["customer_id"].dtype == tx["customer_id"].dtype
    assert sorted(ints["customer_id"].tolist()) == sorted(tx["customer_id"].tolist())


def test_customers_without_valid_from_are_one_row_each() -> None:
    frame = pd.DataFrame({"customer_id": ["a", "a", "b"], "tier": ["gold", "gold", "x"]})
    customers, report = load_customers(frame)
    assert report.dropped_duplicates == 1 and len(customers) == 2
    with pytest.raises(DataValidationError, match=r"sharing a customer id.*valid_from"):
        load_customers(pd.DataFrame({"customer_id": ["a", "a"], "tier": ["gold", "x"]}))


@pytest.mark.parametrize("fmt", FORMATS)
def test_duplicate_id_and_valid_from_with_other_attributes_is_refused(tmp_path: Path,
                                                                       fmt: str) -> None:
    raw = pd.DataFrame({"customer_id": ["a", "b", "a"],
                        "valid_from": ["2024-01-01", "2024-01-01", "2024-01-01"],
                        "tier": ["gold", "x", "silver"]})
    path = _write(raw, tmp_path / f"c.{fmt}")
    with pytest.raises(DataValidationError, match=r"line 2.*line 4.*Suggestion: keep one row"):
        load_customers(path, valid_from_col="valid_from")
    # an exact repeat is dropped and counted
    same = _write(raw.iloc[[0, 1, 0]], tmp_path / f"same.{fmt}")
    customers, report = load_customers(same, valid_from_col="valid_from")
    assert report.dropped_duplicates == 1 and len(customers) == 2


@pytest.mark.parametrize("fmt", FORMATS)
def test_unparseable_valid_from_names_the_lines(tmp_path: Path, fmt: str) -> None:
    raw = _customers_raw().assign(valid_from=["2024-01-01", "next week", "", "2024-01-01",
                                              "31/12/2024"])
    path = _write(raw, tmp_path / f"c.{fmt}")
    with pytest.raises(DataValidationError) as info:
        load_customers(path, valid_from_col="valid_from")
    message = str(info.value)
    assert "'valid_from'" in message and str(path) in message
    assert "line 3" in message and "line 6" in message and "Suggestion:" in message


@pytest.mark.parametrize("fmt", FORMATS)
def test_customers_missing_id_column(tmp_path: Path, fmt: str) -> None:
    path = _write(pd.DataFrame({"cust": ["a"], "tier": ["x"]}), tmp_path / f"c.{fmt}")
    with pytest.raises(MissingColumnError, match=r"no column 'customer_id'.*\['cust', 'tier'\]"
                       r".*Suggestion: .*id_col="):
        load_customers(path)
    customers, _ = load_customers(path, id_col="cust")  # mapped, it loads
    assert customers.columns.tolist() == ["customer_id", "tier"]
    with pytest.raises(MissingColumnError, match="valid-from-col"):
        load_customers(path, id_col="cust", valid_from_col="since")


@pytest.mark.parametrize("fmt", FORMATS)
def test_customers_empty_files(tmp_path: Path, fmt: str) -> None:
    empty = tmp_path / f"empty.{fmt}"
    empty.write_bytes(b"")
    with pytest.raises(EmptyDataError, match="empty"):
        load_customers(empty)
    header_only = _write(pd.DataFrame({"customer_id": pd.Series([], dtype="str"),
                                       "tier": pd.Series([], dtype="str")}),
                         tmp_path / f"header.{fmt}")
    with pytest.raises(EmptyDataError, match="no data rows"):
        load_customers(header_only)


@pytest.mark.parametrize("fmt", FORMATS)
def test_duplicate_columns_are_refused(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"dup.{fmt}"
    if fmt == "csv":
        path.write_text("customer_id,tier,tier\na,x,y\n")
        events = tmp_path / "dup_events.csv"
        events.write_text("customer_id,timestamp,event_type,timestamp\na,2024-01-01,x,"
                          "2024-01-02\n")
    else:
        pq.write_table(pa.Table.from_arrays([pa.array(["a"]), pa.array(["x"]), pa.array(["y"])],
                                            names=["customer_id", "tier", "tier"]), path)
        events = tmp_path / "dup_events.parquet"
        pq.write_table(pa.Table.from_arrays(
            [pa.array(["a"]), pa.array(["2024-01-01"]), pa.array(["x"]), pa.array(["y"])],
            names=["customer_id", "timestamp", "event_type", "timestamp"]), events)
    with pytest.raises(DataValidationError, match=r"repeat.*'tier' at positions 2, 3"):
        load_customers(path)
    with pytest.raises(DataValidationError, match=r"repeat.*'timestamp' at positions 2, 4"):
        load_events(events)


def test_attribute_columns_can_be_chosen_and_must_not_clash() -> None:
    frame = pd.DataFrame({"id": ["a"], "customer_id": ["b"], "tier": ["x"]})
    with pytest.raises(DataValidationError, match="rename the column"):
        load_customers(frame, id_col="id")
    customers, _ = load_customers(frame, id_col="id", attribute_cols=["tier"])
    assert customers.columns.tolist() == ["customer_id", "tier"]


# --- point in time --------------------------------------------------------------------


def test_attributes_at_takes_the_row_valid_at_the_cutoff() -> None:
    customers, _ = load_customers(_customers_raw(), valid_from_col="valid_from")
    before = attributes_at(customers, "2023-12-31").set_index("customer_id")
    assert before.loc["12", "channel"] == "store"  # no valid_from: valid from the start
    assert before.loc[["007", "C9"], "channel"].isna().all()  # nothing valid yet
    mid = attributes_at(customers, "2024-05-31").set_index("customer_id")
    assert mid.loc["007", "channel"] == "web"
    assert mid.loc["C9", "channel"] == "web"
    # the valid_from day itself is included (its whole day, as transactions' as-of)
    assert attributes_at(customers, "2024-06-01").set_index("customer_id").loc[
        "007", "channel"] == "app"
    # 2024-03-01T23:30-02:00 is 2024-03-02 01:30 UTC: not valid yet on 2024-03-01
    assert pd.isna(attributes_at(customers, "2024-03-01").set_index("customer_id").loc[
        "C9", "channel"])


def test_attributes_at_never_uses_a_row_valid_after_the_cutoff() -> None:
    # Random tables: the answer is the brute-force one, and rewriting every row valid
    # after the cutoff (values and new rows) changes nothing at the cutoff.
    rng = np.random.default_rng(21)
    n = 400
    raw = pd.DataFrame({
        "customer_id": rng.integers(0, 120, n).astype(str),
        "valid_from": pd.Timestamp("2024-01-01") + pd.to_timedelta(
            rng.integers(0, 365, n), unit="D") + pd.to_timedelta(rng.integers(0, 86_400, n),
                                                                 unit="s"),
        "tier": rng.choice(["a", "b", "c"], n),
        "score": rng.normal(size=n),
    }).drop_duplicates(["customer_id", "valid_from"])
    customers, _ = load_customers(raw, valid_from_col="valid_from")
    for cutoff in ("2024-02-15", "2024-07-01", "2024-12-30"):
        got = attributes_at(customers, cutoff).set_index("customer_id")
        end = pd.Timestamp(cutoff) + pd.Timedelta(days=1)
        for customer, rows in raw.groupby("customer_id"):
            valid = rows[rows["valid_from"] < end]
            if valid.empty:
                assert got.loc[customer].isna().all()
            else:
                last = valid.sort_values("valid_from").iloc[-1]
                assert got.loc[customer, "tier"] == last["tier"]
                assert got.loc[customer, "score"] == last["score"]
        future = raw["valid_from"] >= end
        changed = raw.copy()
        changed.loc[future, "tier"] = "LEAK"
        changed.loc[future, "score"] = 1e9
        extra = raw.loc[future].assign(valid_from=lambda f: f["valid_from"] + pd.Timedelta(
            hours=1), tier="LEAK2")
        changed = pd.concat([changed, extra], ignore_index=True)
        again = attributes_at(load_customers(changed, valid_from_col="valid_from"), cutoff)
        pd.testing.assert_frame_equal(again, got.reset_index())
        assert not again["tier"].isin(["LEAK", "LEAK2"]).any()


def test_events_until_drops_everything_after_the_cutoff_day() -> None:
    events, _ = load_events(_events_raw(), value_col="value")
    seen = events_until(events, "2024-02-01")
    assert seen["timestamp"].max() < pd.Timestamp("2024-02-02")
    assert pd.Timestamp("2024-02-01 08:00") in set(seen["timestamp"])  # the day included
    assert len(events_until(events, "2030-01-01")) == len(events)
    assert events_until(events, "2023-01-01").empty


# --- the event table --------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_load_events_cleans_and_reports(tmp_path: Path, fmt: str) -> None:
    path = _write(_events_raw(), tmp_path / f"events.{fmt}")
    events, report = load_events(path, value_col="value",
                                 event_types=["email_open", "site_visit"], as_of="2024-03-15")
    assert report.rows_read == 6
    assert report.dropped_missing_customer_id == 1
    assert report.dropped_unknown_event_type == 1
    assert report.unknown_event_types == {"webinar": 1}
    assert report.dropped_after_as_of == 1
    assert report.rows_kept == len(events) == 3
    assert report.timestamps_converted_to_utc == 1
    assert events.columns.tolist() == ["customer_id", "timestamp", "event_type", "value"]
    assert pd.api.types.is_datetime64_dtype(events["timestamp"])
    assert events["timestamp"].dt.tz is None
    assert pd.Timestamp("2024-02-01 08:00") in set(events["timestamp"])  # +02:00 -> UTC
    assert report.event_types == {"email_open": 2, "site_visit": 1}
    assert report.rows_with_value == 1
    assert "webinar 1" in dict(report.lines())["dropped: unknown event type"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("missing", ["timestamp", "event_type", "customer_id"])
def test_events_missing_columns(tmp_path: Path, fmt: str, missing: str) -> None:
    path = _write(_events_raw().drop(columns=[missing]), tmp_path / f"e.{fmt}")
    with pytest.raises(MissingColumnError, match=rf"event table .*no column '{missing}'.*"
                       r"columns found.*Suggestion:"):
        load_events(path)


@pytest.mark.parametrize("fmt", FORMATS)
def test_events_unparseable_dates_name_the_lines(tmp_path: Path, fmt: str) -> None:
    raw = _events_raw()
    raw.loc[2, "timestamp"] = "yesterday"
    path = _write(raw, tmp_path / f"e.{fmt}")
    with pytest.raises(DataValidationError, match=r"'timestamp'.*row 3 \(line 4\): 'yesterday'"
                       r".*Suggestion:"):
        load_events(path)


@pytest.mark.parametrize("fmt", FORMATS)
def test_events_with_only_unknown_types_fail(tmp_path: Path, fmt: str) -> None:
    path = _write(_events_raw(), tmp_path / f"e.{fmt}")
    with pytest.raises(DataValidationError, match=r"none of the .* known type.*found "
                       r"\['email_open', 'site_visit', 'webinar'\].*expected \['purchase'\]"):
        load_events(path, event_types=["purchase"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_events_empty_files(tmp_path: Path, fmt: str) -> None:
    empty = tmp_path / f"empty.{fmt}"
    empty.write_bytes(b"")
    with pytest.raises(EmptyDataError, match="empty"):
        load_events(empty)
    header = _write(_events_raw().iloc[:0], tmp_path / f"header.{fmt}")
    with pytest.raises(EmptyDataError, match="no data rows"):
        load_events(header)
    with pytest.raises(EmptyDataError, match="no events on or before"):
        load_events(_events_raw(), as_of="2020-01-01")


def test_events_bad_values_are_errors() -> None:
    raw = _events_raw().assign(value=["", "3", "many", "", "1", "x"])
    with pytest.raises(DataValidationError, match=r"'value'.*row 2: 'many'.*row 5: 'x'"):
        load_events(raw, value_col="value")


# --- the CLI's validate -------------------------------------------------------------------


def _files(tmp_path: Path) -> tuple[Path, Path, Path]:
    tx = tmp_path / "tx.csv"
    customers, events = tmp_path / "customers.parquet", tmp_path / "events.csv"
    write_transactions(tx, 300, seed=4, customers_path=customers, events_path=events)
    return tx, customers, events


def test_cli_validate_prints_the_input_reports(tmp_path: Path, cli: CliRunner) -> None:
    tx, customers, events = _files(tmp_path)
    result = cli.invoke(app, ["validate", "--transactions", str(tx), "--customers-file",
                              str(customers), "--valid-from-col", "valid_from",
                              "--events-file", str(events), "--event-types",
                              "email_open,site_visit", "--event-value-col", "value"])
    assert result.exit_code == 0, result.output
    assert "cleaning report: customers table" in result.output
    assert "cleaning report: events table" in result.output
    assert "valid: the events table meets its contract." in result.output
    result = cli.invoke(app, ["validate", "--transactions", str(tx), "--events-file",
                              str(events), "--as-of", "2024-06-30", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["events_file"]["as_of"] == "2024-06-30"
    assert document["events_file"]["dropped_after_as_of"] > 0
    assert "customers_file" not in document


@pytest.mark.parametrize(("flag", "content", "fragment"), [
    ("--customers-file", "cust,tier\na,x\n", "no column 'customer_id'"),
    ("--events-file", "customer_id,timestamp,event_type\na,2024-13-45,x\n", "line 2"),
    ("--events-file", "customer_id,event_type\na,x\n", "no column 'timestamp'"),
    ("--events-file", "", "empty"),
])
def test_cli_validate_bad_input_files_exit_2(tmp_path: Path, cli: CliRunner, flag: str,
                                             content: str, fragment: str) -> None:
    tx, _, _ = _files(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    before = sorted(tmp_path.iterdir())
    result = cli.invoke(app, ["validate", "--transactions", str(tx), flag, str(bad)])
    assert result.exit_code == 2, result.output
    assert fragment in " ".join(result.output.split())
    assert sorted(tmp_path.iterdir()) == before  # nothing written


def test_cli_validate_unknown_types_only_and_orphan_flags_exit_2(tmp_path: Path,
                                                                 cli: CliRunner) -> None:
    tx, _, events = _files(tmp_path)
    result = cli.invoke(app, ["validate", "--transactions", str(tx), "--events-file",
                              str(events), "--event-types", "purchase"])
    assert result.exit_code == 2 and "known type" in result.output
    result = cli.invoke(app, ["validate", "--transactions", str(tx), "--valid-from-col", "v"])
    assert result.exit_code == 2 and "--customers-file" in result.output


# --- the generator ------------------------------------------------------------------------

# Digests of the base generator (/tmp/base19, before this change), computed with
# _digest below: the transactions of a seed must not change when the new options are off.
BASE_DIGESTS = {
    (2000, 5, ()): "9e1dff8bd526c298",
    (1500, 11, (("season_strength", 3.0), ("history_start", "2022-01-01"))): "cb4e7485f3d3baf8",
    (1500, 2, (("shift_date", "2024-01-01"), ("shift_dropout_factor", 2.0))): "cad78c080d8f5056",
}


def _digest(tx: pd.DataFrame) -> str:
    h = hashlib.sha256()
    h.update("\n".join(tx["customer_id"]).encode())
    h.update(tx["timestamp"].to_numpy().astype("datetime64[s]").astype(np.int64).tobytes())
    h.update(tx["amount"].to_numpy().tobytes())
    h.update("\n".join(tx["country"]).encode())
    return h.hexdigest()[:16]


@pytest.mark.parametrize(("n", "seed", "options"), list(BASE_DIGESTS))
def test_options_off_keep_the_transactions_of_before(n: int, seed: int, options: tuple) -> None:
    expected = BASE_DIGESTS[(n, seed, options)]
    assert _digest(generate_transactions(n, seed=seed, **dict(options))) == expected
    # with the tables but their effects off, the transactions are still those of before
    noise = generate_inputs(n, seed=seed, input_effects=False, **dict(options))
    assert _digest(noise.transactions) == expected
    # with the effects on, the channel changes dropout: other transactions
    assert _digest(generate_inputs(n, seed=seed, **dict(options)).transactions) != expected


def test_generated_tables_load_cleanly(tmp_path: Path) -> None:
    data = generate_inputs(800, seed=9, history_start="2022-06-01")
    customers, report = load_customers(data.customers, valid_from_col="valid_from")
    assert report.rows_kept == len(data.customers)
    assert report.categorical_attributes == ("channel", "region", "plan")
    assert report.numeric_attributes == ("age",)
    assert set(customers["customer_id"]) == set(data.transactions["customer_id"])
    events, events_report = load_events(data.events, value_col="value",
                                        event_types=["email_open", "site_visit"])
    assert events_report.rows_kept == len(data.events)
    assert set(events["customer_id"]) <= set(data.transactions["customer_id"])
    assert events["timestamp"].min() >= pd.Timestamp("2023-01-01")  # history_start cut
    assert events["timestamp"].max() < pd.Timestamp("2025-01-01")
    # a quarter of the customers change plan: a second row, valid later
    twice = customers["customer_id"].duplicated(keep=False)
    assert 0.15 < customers.loc[twice, "customer_id"].nunique() / report.customers < 0.35
    assert (customers.loc[twice].groupby("customer_id")["plan"].last() == "plus").all()


def _churn_table(data: SyntheticInputs) -> pd.DataFrame:
    """Per customer acquired in the first year: gone (no purchase in the last 180 days)."""
    tx = data.transactions
    end = tx["timestamp"].max()
    last = tx.groupby("customer_id")["timestamp"].max()
    first = tx.groupby("customer_id")["timestamp"].min()
    attributes = data.customers.drop_duplicates("customer_id").set_index("customer_id")
    table = pd.DataFrame({"gone": last < end - pd.Timedelta(days=180),
                          "old": first < end - pd.Timedelta(days=365)}).join(attributes)
    return table[table["old"]]


def _spread_in_ses(table: pd.DataFrame, column: str) -> float:
    """Largest gap between groups' churn rates, in standard errors of that gap."""
    rates = table.groupby(column)["gone"].agg(["mean", "size"])
    p = table["gone"].mean()
    worst = 0.0
    for a in rates.index:
        for b in rates.index:
            se = np.sqrt(p * (1 - p) * (1 / rates.loc[a, "size"] + 1 / rates.loc[b, "size"]))
            worst = max(worst, abs(rates.loc[a, "mean"] - rates.loc[b, "mean"]) / se)
    return worst


@pytest.fixture(scope="module")
def effects() -> SyntheticInputs:
    return generate_inputs(20_000, seed=3)


@pytest.fixture(scope="module")
def noise() -> SyntheticInputs:
    return generate_inputs(20_000, seed=3, input_effects=False)


def test_channel_changes_churn_as_designed(effects: SyntheticInputs,
                                          noise: SyntheticInputs) -> None:
    rates = _churn_table(effects).groupby("channel")["gone"].mean()
    assert set(rates.index) == set(CHANNELS)
    # web drops out 1.6x as often per purchase as store, app half as often
    assert rates["web"] > rates["store"] + 0.05
    assert rates["app"] < rates["store"] - 0.08
    # without effects, the channel is noise: no gap beyond sampling error
    assert _spread_in_ses(_churn_table(noise), "channel") < 3.5


def test_noise_attributes_have_no_effect(effects: SyntheticInputs) -> None:
    table = _churn_table(effects)
    assert _spread_in_ses(table, "region") < 3.5
    table = table.assign(older=table["age"] >= 50)
    assert _spread_in_ses(table, "older") < 3.5


def _opens_before_last_purchase(data: SyntheticInputs, weeks: int = 8) -> pd.DataFrame:
    """Events per customer in the ``weeks`` before their last purchase, gone vs active."""
    tx = data.transactions
    end = tx["timestamp"].max()
    last = tx.groupby("customer_id")["timestamp"].max().rename("last")
    first = tx.groupby("customer_id")["timestamp"].min()
    window = pd.Timedelta(weeks=weeks)
    events = data.events.merge(last, left_on="customer_id", right_index=True)
    inside = events[(events["timestamp"] >= events["last"] - window)
                    & (events["timestamp"] < events["last"])]
    counts = inside.groupby(["customer_id", "event_type"]).size().unstack(fill_value=0)
    counts = counts.reindex(last.index, fill_value=0)
    long_enough = first <= last - window
    gone = (last < end - pd.Timedelta(days=180)) & long_enough
    active = (last >= end - pd.Timedelta(days=30)) & long_enough
    return pd.DataFrame({"gone": counts[gone].mean(), "active": counts[active].mean()})


def test_email_opens_fade_before_a_dropout(effects: SyntheticInputs,
                                          noise: SyntheticInputs) -> None:
    table = _opens_before_last_purchase(effects)
    ratio = table["gone"] / table["active"]
    assert ratio["email_open"] < 0.75  # fewer opens in the weeks before the last purchase
    assert 0.9 < ratio["site_visit"] < 1.1  # noise events: the same either way
    plain = _opens_before_last_purchase(noise)
    assert 0.9 < (plain["gone"] / plain["active"])["email_open"] < 1.1


def test_seasonality_strength_makes_a_stronger_cycle() -> None:
    def busiest_over_quietest(strength: float) -> float:
        tx = generate_transactions(4_000, seed=8, season_strength=strength)
        months = tx.loc[tx["timestamp"].dt.year == 2024, "timestamp"].dt.month.value_counts()
        return months.max() / months.min()

    default, strong = busiest_over_quietest(1.0), busiest_over_quietest(3.0)
    assert strong > 2.0 * default, (default, strong)


def test_write_transactions_writes_the_tables_atomically(tmp_path: Path) -> None:
    tx, customers, events = tmp_path / "t.parquet", tmp_path / "c.csv", tmp_path / "e.parquet"
    written = write_transactions(tx, 600, seed=12, customers_path=customers,
                                 events_path=events, season_strength=2.0)
    data = generate_inputs(600, seed=12, season_strength=2.0)
    pd.testing.assert_frame_equal(pd.read_parquet(tx), data.transactions, check_dtype=False)
    pd.testing.assert_frame_equal(pd.read_parquet(events), data.events, check_dtype=False)
    assert written.customer_rows == len(data.customers) == len(pd.read_csv(customers))
    assert written.event_rows == len(data.events)
    assert written.to_dict()["events_path"] == str(events)
    # without effects, the transactions file is the one written without the tables
    plain, noisy = tmp_path / "plain.csv", tmp_path / "noisy.csv"
    write_transactions(plain, 600, seed=12)
    write_transactions(noisy, 600, seed=12, customers_path=tmp_path / "c2.csv",
                       input_effects=False)
    assert plain.read_bytes() == noisy.read_bytes()
    # one path for two tables: refused before anything is written
    before = sorted(tmp_path.iterdir())
    with pytest.raises(Exception, match="Suggestion: give each table its own file"):
        write_transactions(tmp_path / "x.csv", 50, customers_path=tmp_path / "x.csv")
    assert sorted(tmp_path.iterdir()) == before


def test_write_transactions_streams_the_tables_chunk_by_chunk(tmp_path: Path) -> None:
    tx, customers, events = tmp_path / "t.csv", tmp_path / "c.parquet", tmp_path / "e.csv"
    written = write_transactions(tx, 250, seed=5, chunk_customers=100,
                                 customers_path=customers, events_path=events)
    assert written.chunks == 3
    loaded, report = load_customers(customers, valid_from_col="valid_from")
    assert report.customers == 250 and report.rows_kept == written.customer_rows
    clean, events_report = load_events(events, value_col="value")
    assert events_report.rows_kept == written.event_rows
    assert set(clean["customer_id"]) <= set(loaded["customer_id"])


def test_cli_generate_writes_the_input_tables(tmp_path: Path, cli: CliRunner) -> None:
    tx, customers, events = tmp_path / "t.csv", tmp_path / "c.csv", tmp_path / "e.parquet"
    result = cli.invoke(app, ["generate", "-n", "300", "--seed", "2", "-o", str(tx),
                              "--customers-out", str(customers), "--events-out", str(events),
                              "--seasonality", "2.5"])
    assert result.exit_code == 0, result.output
    assert "customer rows to" in result.output and "events to" in result.output
    data = generate_inputs(300, seed=2, season_strength=2.5)
    pd.testing.assert_frame_equal(pd.read_parquet(events), data.events, check_dtype=False)
    assert len(pd.read_csv(customers)) == len(data.customers)


@pytest.mark.parametrize("extra", [["--seasonality", "3.5"], ["--seasonality", "-1"],
                                   ["--customers-out", "c.txt"]])
def test_cli_generate_bad_options_exit_2_nothing_written(tmp_path: Path, cli: CliRunner,
                                                         extra: list[str]) -> None:
    extra = [str(tmp_path / e) if e.endswith(".txt") else e for e in extra]
    result = cli.invoke(app, ["generate", "-n", "50", "-o", str(tmp_path / "t.csv"), *extra])
    assert result.exit_code == 2, result.output
    assert list(tmp_path.iterdir()) == []
