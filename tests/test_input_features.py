"""Features from the richer inputs (churnlens._input_features): the spec, the events and
attributes groups (golden values and a pandas oracle), the point-in-time rule (leakage),
the out-of-core view and DuckDB/Spark parity of every group."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from churnlens._input_features import (
    INPUT_GROUPS,
    NO_INPUTS,
    InputSpec,
    InputsRequiredError,
    InputTables,
    categorise_inputs,
    input_features,
    learn_input_spec,
    sanitise_name,
    spec_of,
    with_input_features,
)
from churnlens._inputs import attributes_at, events_until, load_customers, load_events
from churnlens._loading import load_transactions
from churnlens.exceptions import ChurnlensError, DataValidationError

DETAILS = dict(order_col="order_id", quantity_col="quantity", category_col="category",
               channel_col="channel", discount_col="discount")
CUTOFFS = ["2024-01-31", "2024-03-31"]


# --- the golden data ----------------------------------------------------------------


@pytest.fixture
def golden() -> SimpleNamespace:
    """Four customers; C is acquired after the first cutoff, D never (a refund only)."""
    tx = load_transactions(pd.DataFrame({
        "customer_id": ["A", "A", "B", "C", "D"],
        "timestamp": ["2024-01-10", "2024-03-05", "2024-02-01", "2024-04-02", "2024-01-15"],
        "amount": [30.0, 20.0, 50.0, 10.0, -5.0],
    })).transactions
    customers = load_customers(pd.DataFrame({
        "customer_id": ["A", "A", "A", "B"],
        "valid_from": ["2024-01-01", "2024-03-01", "2024-04-01", None],
        "Plan Type": ["basic", "pro", "gold", "basic"],
        "age": ["31", "32", "33", None],
    }), valid_from_col="valid_from")
    events = load_events(pd.DataFrame({
        "customer_id": ["A", "A", "A", "A", "A", "B", "B", "E", "A"],
        "timestamp": ["2024-01-10", "2024-01-31T23:59:00", "2024-03-20", "2024-04-01",
                      "2023-11-01", "2024-02-01", "2024-03-01", "2024-01-20", "2024-01-20"],
        "event_type": ["Email Open", "Email Open", "site_visit", "Email Open", "site_visit",
                       "Email Open", "Email Open", "Email Open", "push"],
    }))
    spec = InputSpec(groups=("events", "attributes"),
                     attributes=(("Plan Type", ("basic", "pro")), ("age", None)),
                     event_types=("Email Open", "site_visit"))
    return SimpleNamespace(tx=tx, inputs=InputTables(customers, events), spec=spec)


# Hand-computed: days_since_* from the last event on or before the cutoff's whole day;
# counts in (c - w, c]: 2023-11-01 is outside (2024-01-31 - 90 = 2023-11-02), 2024-03-01
# outside (2024-03-31 - 30); A's plan is the row valid at the cutoff (gold only from
# 2024-04-01), B's row has no valid_from (from the start) and no age.
GOLDEN = pd.DataFrame({
    "customer_id": ["A", "A", "B"],
    "cutoff": pd.to_datetime(["2024-01-31", "2024-03-31", "2024-03-31"]).astype(
        "datetime64[us]"),
    "days_since_email_open": [0.0, 60.0, 30.0],
    "email_open_count_30d": [2, 0, 0],
    "email_open_count_90d": [2, 2, 2],
    "days_since_site_visit": [91.0, 11.0, np.nan],
    "site_visit_count_30d": [0, 1, 0],
    "site_visit_count_90d": [0, 1, 0],
    "attr_plan_type": pd.Categorical(["basic", "pro", "basic"], categories=["basic", "pro"]),
    "attr_age": [31.0, 32.0, np.nan],
})


def test_golden_values(golden: SimpleNamespace) -> None:
    out = input_features(golden.tx, CUTOFFS, golden.spec, golden.inputs)
    assert golden.spec.feature_names() == list(GOLDEN.columns[2:])
    pd.testing.assert_frame_equal(out, GOLDEN, check_dtype=True)
    assert out.attrs["unseen_categories"] == {}


def test_with_input_features_keeps_rows_order_and_index(golden: SimpleNamespace) -> None:
    frame = GOLDEN[["customer_id", "cutoff"]].iloc[[2, 0, 1, 0]].set_axis([7, 5, 3, 9])
    frame = frame.assign(cutoff=frame["cutoff"] + pd.Timedelta(hours=13), other=[1, 2, 3, 4])
    out = with_input_features(frame, golden.spec, golden.inputs, golden.tx,
                              date_column="cutoff")
    assert list(out.index) == [7, 5, 3, 9]
    assert list(out.columns) == ["customer_id", "cutoff", "other",
                                 *golden.spec.feature_names()]
    expected = GOLDEN.iloc[[2, 0, 1, 0]].set_axis([7, 5, 3, 9])
    pd.testing.assert_frame_equal(out[golden.spec.feature_names()],
                                  expected[golden.spec.feature_names()])


def test_with_input_features_in_the_callers_connection(golden: SimpleNamespace) -> None:
    from churnlens._engine import connect

    con = connect(threads=1)
    before = con.execute("SELECT count(*) FROM duckdb_views() WHERE NOT internal").fetchall()
    frame = GOLDEN[["customer_id", "cutoff"]]
    spec = dataclasses.replace(golden.spec, groups=(*golden.spec.groups, "calendar"),
                               horizon_days=30)
    for _ in range(2):  # nothing left behind that the next call trips on
        out = with_input_features(frame, spec, golden.inputs, golden.tx,
                                  date_column="cutoff", connection=con)
        pd.testing.assert_frame_equal(out[GOLDEN.columns], GOLDEN)
    assert con.execute("SELECT count(*) FROM duckdb_views() WHERE NOT internal"
                       ).fetchall() == before
    assert con.execute("SELECT 1").fetchall() == [(1,)]  # still open
    con.close()


def test_with_input_features_gives_no_event_values_to_unknown_customers(
        golden: SimpleNamespace) -> None:
    frame = pd.DataFrame({"customer_id": ["Z"], "as_of": [pd.Timestamp("2024-03-31")]})
    out = with_input_features(frame, golden.spec, golden.inputs, None, date_column="as_of")
    row = out.iloc[0]
    assert row["email_open_count_30d"] == 0 and row["site_visit_count_90d"] == 0
    assert np.isnan(row["days_since_email_open"]) and np.isnan(row["attr_age"])
    assert pd.isna(row["attr_plan_type"])


def test_an_empty_frame_gets_typed_empty_columns(golden: SimpleNamespace) -> None:
    frame = GOLDEN[["customer_id", "cutoff"]].iloc[:0]
    out = with_input_features(frame, golden.spec, golden.inputs, golden.tx,
                              date_column="cutoff")
    pd.testing.assert_frame_equal(out, GOLDEN.iloc[:0])


def test_no_inputs_returns_the_frame_itself(golden: SimpleNamespace) -> None:
    frame = GOLDEN[["customer_id", "cutoff"]]
    assert with_input_features(frame, NO_INPUTS, None, golden.tx,
                               date_column="cutoff") is frame
    assert NO_INPUTS.feature_names() == [] and not NO_INPUTS.requires_customers


def test_unseen_categories_are_missing_and_counted(golden: SimpleNamespace) -> None:
    spec = InputSpec(groups=("attributes",), attributes=(("Plan Type", ("pro",)),))
    out = input_features(golden.tx, CUTOFFS, spec, golden.inputs)
    assert list(out["attr_plan_type"].cat.categories) == ["pro"]
    assert out["attr_plan_type"].isna().tolist() == [True, False, True]
    assert out.attrs["unseen_categories"] == {"attr_plan_type": 2}
    frame = pd.DataFrame({"customer_id": ["A"], "as_of": [pd.Timestamp("2024-04-15")]})
    late = with_input_features(frame, spec, golden.inputs, golden.tx, date_column="as_of")
    assert late.attrs["unseen_categories"] == {"attr_plan_type": 1}  # gold


def test_categorise_inputs_converts_a_text_batch() -> None:
    spec = InputSpec(groups=("attributes",), attributes=(("plan", ("a", "b")), ("n", None)))
    batch = pd.DataFrame({"attr_plan": ["b", None, "c", "a"], "attr_n": [1.0, 2.0, None, 4.0]})
    out = categorise_inputs(batch, spec)
    assert out["attr_plan"].tolist()[0] == "b" and pd.isna(out["attr_plan"].tolist()[2])
    assert list(out["attr_plan"].cat.categories) == ["a", "b"]
    assert out.attrs["unseen_categories"] == {"attr_plan": 1}


def test_inputs_required_error_names_the_tables_and_flags(golden: SimpleNamespace) -> None:
    frame = GOLDEN[["customer_id", "cutoff"]]
    with pytest.raises(InputsRequiredError) as caught:
        with_input_features(frame, golden.spec, InputTables(), golden.tx,
                            date_column="cutoff")
    message = str(caught.value)
    assert isinstance(caught.value, DataValidationError)
    for part in ("customer table", "Plan Type", "event table", "Email Open",
                 "--customers-file", "customers=", "--events-file", "events=",
                 "Suggestion:"):
        assert part in message
    only_events = InputSpec(groups=("events",), event_types=("x",))
    with pytest.raises(InputsRequiredError, match="--events-file") as caught:
        input_features(golden.tx, CUTOFFS, only_events, InputTables(customers=None))
    assert "customer" not in str(caught.value)


def test_a_missing_detail_column_is_refused() -> None:
    tx = _detail_transactions()
    spec = learn_input_spec(tx, None, as_of="2023-06-30", horizon_days=90, calendar=False)
    with pytest.raises(InputsRequiredError, match=r"\['category'\].*--category-col"):
        input_features(tx.drop(columns=["category"]), "2023-06-30", spec, None)


def test_a_missing_attribute_column_is_refused(golden: SimpleNamespace) -> None:
    spec = InputSpec(groups=("attributes",), attributes=(("income", None),))
    with pytest.raises(InputsRequiredError, match="income"):
        input_features(golden.tx, CUTOFFS, spec, golden.inputs)


# --- the spec -----------------------------------------------------------------------


def test_spec_round_trip_through_json() -> None:
    spec = InputSpec(groups=("calendar", "details", "attributes", "events"),
                     attributes=(("plan", ("a", "b")), ("age", None)),
                     event_types=("email_open",), channels=("app", "web"),
                     event_windows_days=(7, 30), detail_columns=("channel", "order_id"),
                     horizon_days=60)
    assert spec.groups == INPUT_GROUPS  # put in INPUT_GROUPS' order
    assert spec.detail_columns == ("order_id", "channel")
    back = InputSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert back == spec
    assert back.feature_names() == spec.feature_names()
    assert spec.feature_names()[:3] == ["orders_per_occasion", "channel_share_app",
                                        "channel_share_web"]
    assert spec.feature_names()[-3:] == ["season_sin", "season_cos", "last_year_window_share"]
    assert spec.categorical_features() == ["attr_plan"]
    assert spec.group_of("email_open_count_7d") == "events"
    assert spec.group_of("attr_age") == "attributes"
    assert spec.features_of("calendar") == ["season_sin", "season_cos",
                                            "last_year_window_share"]
    assert spec.without("events").requires_events is False
    assert InputSpec.from_dict({}) == NO_INPUTS
    with pytest.raises(ChurnlensError, match="newer"):
        InputSpec.from_dict({"version": 99})


def test_spec_of_reads_models_scorers_and_metadata() -> None:
    spec = InputSpec(groups=("events",), event_types=("x",))
    assert spec_of(SimpleNamespace(input_spec_=spec)) is spec
    assert spec_of(SimpleNamespace(input_spec_=spec.to_dict())) == spec
    assert spec_of({"input_spec": spec.to_dict()}) == spec
    assert spec_of(SimpleNamespace(meta={"input_spec": spec.to_dict()})) == spec
    # a loaded artifact: the spec is on its model
    assert spec_of(SimpleNamespace(model=SimpleNamespace(input_spec_=spec), meta={})) is spec
    assert spec_of(SimpleNamespace(_meta={"feature_names": []})) is NO_INPUTS  # older model
    assert spec_of(object()) is NO_INPUTS and spec_of(None) is NO_INPUTS


def test_names_are_sanitised_and_collisions_refused() -> None:
    assert sanitise_name("  Email-Open (web) ") == "email_open_web"
    with pytest.raises(DataValidationError, match="letter or digit"):
        InputSpec(groups=("events",), event_types=("!!",))
    with pytest.raises(DataValidationError, match=r"'days_since_email_open'.*both"):
        InputSpec(groups=("events",), event_types=("Email Open", "email_open"))
    with pytest.raises(DataValidationError, match="attr_plan"):
        InputSpec(groups=("attributes",), attributes=(("Plan", None), ("plan", ("a",))))
    # a base feature's name (days_since_first_repeat) is taken
    with pytest.raises(DataValidationError, match="transactions feature"):
        InputSpec(groups=("events",), event_types=("first repeat",))
    with pytest.raises(ChurnlensError, match="subset"):
        InputSpec(groups=("weather",))


def test_learn_input_spec_reads_only_data_up_to_as_of(golden: SimpleNamespace) -> None:
    spec = learn_input_spec(golden.tx, golden.inputs, as_of="2024-03-31", horizon_days=30)
    # events: 'push' is a type seen before the as-of date too
    assert spec.groups == ("events", "attributes")
    assert spec.event_types == ("Email Open", "push", "site_visit")
    # 'gold' is valid only from 2024-04-01: not a training category
    assert spec.attributes == (("Plan Type", ("basic", "pro")), ("age", None))
    early = learn_input_spec(golden.tx, golden.inputs, as_of="2023-12-31", horizon_days=30)
    assert early.event_types == ("site_visit",)
    # B's row holds from the start; A's first row starts in 2024
    assert early.attributes == (("Plan Type", ("basic",)), ("age", None))
    assert learn_input_spec(golden.tx, None, as_of="2024-03-31", horizon_days=30) is NO_INPUTS
    ablated = learn_input_spec(golden.tx, golden.inputs, as_of="2024-03-31", horizon_days=30,
                               groups=["attributes"])
    assert ablated.groups == ("attributes",) and ablated.event_types == ()
    with pytest.raises(ChurnlensError, match="unknown input group"):
        learn_input_spec(golden.tx, None, as_of="2024-03-31", horizon_days=30,
                         groups=["weather"])


def _detail_transactions(first: str = "2022-01-05") -> pd.DataFrame:
    raw = pd.DataFrame({
        "customer_id": [1, 1, 2, 2, 3],
        "timestamp": [first, "2023-06-01", "2023-05-01", "2023-07-01", "2023-08-01"],
        "amount": [10.0, 20.0, 5.0, 8.0, 3.0],
        "order_id": ["o1", "o2", "o3", None, "o5"],
        "quantity": [1, 2, 1, 3, 1],
        "category": ["x", "y", "x", "x", "z"],
        "channel": ["Web", "store", "web shop", "store", "app"],
        "discount": [0.0, 2.0, 0.0, 0.0, 1.0],
    })
    return load_transactions(raw, **DETAILS).transactions


def test_learn_input_spec_details_channels_and_the_calendar_rule() -> None:
    tx = _detail_transactions()
    spec = learn_input_spec(tx, None, as_of="2023-06-30", horizon_days=90)
    assert spec.groups == ("details", "calendar")  # 2022-01-05 .. 2023-06-30 >= 365 + 90
    assert spec.detail_columns == ("order_id", "quantity", "category", "channel", "discount")
    assert spec.channels == ("Web", "store", "web shop")  # app is after the as-of date
    short = learn_input_spec(_detail_transactions("2022-06-01"), None, as_of="2023-06-30",
                             horizon_days=90)
    assert short.groups == ("details",)  # 394 days < 455
    forced = learn_input_spec(_detail_transactions("2022-06-01"), None, as_of="2023-06-30",
                              horizon_days=90, calendar=True)
    assert forced.groups == ("details", "calendar") and forced.horizon_days == 90
    assert learn_input_spec(tx, None, as_of="2023-06-30", horizon_days=90,
                            calendar=False).groups == ("details",)
    plain = tx[["customer_id", "timestamp", "amount"]]
    assert learn_input_spec(plain, None, as_of="2023-06-30", horizon_days=90,
                            calendar=False) is NO_INPUTS


# --- an oracle on random data ---------------------------------------------------------


def _random_inputs(seed: int, *, int_ids: bool = True) -> SimpleNamespace:
    rng = np.random.default_rng(seed)
    n_customers = 40
    ids = np.arange(1, n_customers + 1)
    start = pd.Timestamp("2023-01-01")
    n_tx = 300
    tx = pd.DataFrame({
        "customer_id": rng.choice(ids, n_tx),
        "timestamp": start + pd.to_timedelta(rng.integers(0, 500 * 24 * 60, n_tx), unit="min"),
        "amount": np.round(rng.normal(20, 15, n_tx), 2),
    })
    n_ev = 600
    types = np.array(["email_open", "site_visit", "Support Ticket", "other"])
    events = pd.DataFrame({
        "customer_id": rng.choice(np.arange(1, n_customers + 6), n_ev),
        "timestamp": start + pd.to_timedelta(rng.integers(-100 * 24 * 60, 520 * 24 * 60,
                                                          n_ev), unit="min"),
        "event_type": rng.choice(types, n_ev),
    })
    rows = []
    for customer in ids[rng.random(n_customers) < 0.9]:
        for k in range(int(rng.integers(1, 4))):
            valid = None if k == 0 and rng.random() < 0.5 else (
                start + pd.Timedelta(minutes=int(rng.integers(-50, 520) * 24 * 60
                                                 + rng.integers(0, 1440))))
            rows.append({"customer_id": customer, "valid_from": valid,
                         "tier": rng.choice(["gold", "silver", "bronze", None]),
                         "score": rng.choice([np.nan, float(rng.integers(0, 100))])})
    customers = pd.DataFrame(rows).drop_duplicates(["customer_id", "valid_from"])
    if not int_ids:
        events["customer_id"] = events["customer_id"].map(lambda v: f"{v}")
    return SimpleNamespace(
        tx=load_transactions(tx).transactions,
        inputs=InputTables(load_customers(customers, valid_from_col="valid_from"),
                           load_events(events)),
        spec=InputSpec(groups=("events", "attributes"),
                       attributes=(("tier", ("bronze", "gold")), ("score", None)),
                       event_types=("Support Ticket", "email_open", "site_visit"),
                       event_windows_days=(7, 30, 90)),
        cutoffs=list(pd.date_range("2023-02-28", periods=12, freq="35D")),
    )


def _reference(data: SimpleNamespace) -> pd.DataFrame:
    """One cutoff at a time with _inputs' point-in-time helpers and plain pandas."""
    frames = []
    unseen = 0
    tx = data.tx.assign(day=data.tx["timestamp"].dt.normalize())
    daily = tx.groupby(["customer_id", "day"])["amount"].sum().reset_index()
    first = daily.loc[daily["amount"] > 0].groupby("customer_id")["day"].min()
    for cutoff in data.cutoffs:
        out = pd.DataFrame({"customer_id": sorted(first.index[first <= cutoff])})
        out["cutoff"] = cutoff
        events = events_until(data.inputs.events, cutoff)
        for kind in data.spec.event_types:
            name = sanitise_name(kind)
            mine = events.loc[events["event_type"] == kind]
            days = (cutoff - mine["timestamp"].dt.normalize()).dt.days
            last = days.groupby(mine["customer_id"]).min()
            out[f"days_since_{name}"] = out["customer_id"].map(last).astype("float64")
            for w in data.spec.event_windows_days:
                counts = (days < w).groupby(mine["customer_id"]).sum()
                out[f"{name}_count_{w}d"] = out["customer_id"].map(counts).fillna(0).astype(
                    "int64")
        attributes = attributes_at(data.inputs.customers, cutoff).set_index("customer_id")
        raw = out["customer_id"].map(attributes["tier"])
        unseen += int((raw.notna() & ~raw.isin(["bronze", "gold"])).sum())
        out["attr_tier"] = pd.Categorical(raw.where(raw.isin(["bronze", "gold"])),
                                          categories=["bronze", "gold"])
        out["attr_score"] = out["customer_id"].map(attributes["score"]).astype("float64")
        frames.append(out)
    ref = pd.concat(frames, ignore_index=True)
    ref["cutoff"] = ref["cutoff"].astype("datetime64[us]")
    ref.attrs["unseen_categories"] = {"attr_tier": unseen}
    return ref


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_data_against_a_pandas_reference(seed: int) -> None:
    print(f"seed={seed}")
    data = _random_inputs(seed)
    out = input_features(data.tx, data.cutoffs, data.spec, data.inputs)
    reference = _reference(data)
    pd.testing.assert_frame_equal(out, reference, check_dtype=True)
    assert reference.attrs["unseen_categories"]["attr_tier"] > 0  # silver is not a category
    assert out.attrs["unseen_categories"] == reference.attrs["unseen_categories"]


def test_text_event_ids_join_integer_transaction_ids() -> None:
    data = _random_inputs(3)
    text = _random_inputs(3, int_ids=False)
    assert text.inputs.events.events["customer_id"].dtype != data.tx["customer_id"].dtype
    out = input_features(text.tx, text.cutoffs, text.spec, text.inputs)
    assert out["customer_id"].dtype == data.tx["customer_id"].dtype
    pd.testing.assert_frame_equal(out, _reference(data))


# --- leakage --------------------------------------------------------------------------


def _all_groups() -> SimpleNamespace:
    """Details, events, attributes and calendar on two years of data."""
    from churnlens._synthetic import generate_inputs

    generated = generate_inputs(150, seed=5, details=True)
    tx = load_transactions(generated.transactions, **DETAILS).transactions
    inputs = InputTables(load_customers(generated.customers, valid_from_col="valid_from"),
                         load_events(generated.events, value_col="value"))
    as_of = tx["timestamp"].max().normalize() - pd.Timedelta(days=120)
    spec = learn_input_spec(tx, inputs, as_of=as_of, horizon_days=90)
    assert spec.groups == INPUT_GROUPS
    return SimpleNamespace(tx=tx, inputs=inputs, spec=spec, as_of=as_of,
                           cutoffs=list(pd.date_range(end=as_of, periods=6, freq="45D")))


def test_nothing_after_the_cutoff_changes_any_feature() -> None:
    data = _all_groups()
    cutoff = data.cutoffs[-2]
    before = input_features(data.tx, cutoff, data.spec, data.inputs)
    assert set(before.columns[2:]) == set(data.spec.feature_names())

    later = cutoff + pd.Timedelta(days=1)  # the first instant after the cutoff's day
    ids = before["customer_id"].iloc[:20].tolist()
    tx_after = pd.DataFrame({
        "customer_id": ids, "timestamp": later, "amount": 999.0, "order_id": "late",
        "quantity": 50.0, "category": "late-category", "channel": "web", "discount": 500.0,
    })
    customers = data.inputs.customers.customers
    rows_after = customers.drop_duplicates("customer_id").loc[
        lambda f: f["customer_id"].isin(ids)].assign(
        valid_from=later, channel="app", region="north", age=99.0, plan="plus")
    events = data.inputs.events.events
    events_after = pd.DataFrame({"customer_id": ids * 2, "timestamp": later,
                                 "event_type": ["email_open"] * len(ids)
                                 + ["site_visit"] * len(ids),
                                 "value": 1.0})
    grown = SimpleNamespace(
        tx=pd.concat([data.tx, tx_after.astype({"quantity": data.tx["quantity"].dtype})],
                     ignore_index=True),
        inputs=InputTables(
            data.inputs.customers._replace(customers=pd.concat(
                [customers, rows_after], ignore_index=True)),
            data.inputs.events._replace(events=pd.concat([events, events_after],
                                                         ignore_index=True))))
    after = input_features(grown.tx, cutoff, data.spec, grown.inputs)
    pd.testing.assert_frame_equal(after, before)
    frame = before[["customer_id", "cutoff"]]
    pd.testing.assert_frame_equal(
        with_input_features(frame, data.spec, grown.inputs, grown.tx, date_column="cutoff"),
        before)
    # ... and the next day does see them (the test can fail)
    moved = input_features(grown.tx, later, data.spec, grown.inputs).set_index("customer_id")
    assert (moved.loc[ids, "days_since_email_open"] == 0).all()
    assert (moved.loc[ids, "attr_age"] == 99).all()
    assert (moved.loc[ids, "discount_share"]
            > before.set_index("customer_id").loc[ids, "discount_share"]).all()


def test_out_of_core_view_equals_pandas(tmp_path) -> None:
    from churnlens._loading_sql import load_transactions_sql

    data = _all_groups()
    path = tmp_path / "tx.parquet"
    data.tx.to_parquet(path)
    clean = load_transactions_sql(path, **DETAILS)
    try:
        expected = input_features(data.tx, data.cutoffs, data.spec, data.inputs)
        pd.testing.assert_frame_equal(
            input_features(clean, data.cutoffs, data.spec, data.inputs), expected)
        assert learn_input_spec(clean, data.inputs, as_of=data.as_of,
                                horizon_days=90) == data.spec
    finally:
        clean.close()


def test_out_of_core_table_equals_the_frame(tmp_path, golden: SimpleNamespace) -> None:
    from churnlens._input_features import create_input_features_table
    from churnlens._loading_sql import load_transactions_sql

    path = tmp_path / "tx.csv"
    golden.tx.to_csv(path, index=False)
    clean = load_transactions_sql(path)
    spec = InputSpec(groups=golden.spec.groups, attributes=(("Plan Type", ("pro", "it's")),
                                                            ("age", None)),
                     event_types=golden.spec.event_types)
    try:
        rows, unseen = create_input_features_table(clean, CUTOFFS, spec, golden.inputs,
                                                   "inputs_table", date_column="cutoff")
        table = clean.connection.execute("SELECT * FROM inputs_table").df()
    finally:
        clean.close()
    expected = input_features(golden.tx, CUTOFFS, spec, golden.inputs)
    assert rows == len(expected) == 3
    assert unseen == expected.attrs["unseen_categories"] == {"attr_plan_type": 2}
    table = categorise_inputs(table.sort_values(["cutoff", "customer_id"], ignore_index=True),
                              spec)
    table["cutoff"] = table["cutoff"].astype("datetime64[us]")
    pd.testing.assert_frame_equal(table, expected, check_dtype=False)


# --- Spark ----------------------------------------------------------------------------


def _to_spark(spark, tx: pd.DataFrame):
    from churnlens._spark_loading import _from_pandas

    return _from_pandas(spark, tx)


def _spark_pandas(frame, spec: InputSpec) -> pd.DataFrame:
    out = categorise_inputs(frame.toArrow().to_pandas(), spec)
    out["cutoff"] = out["cutoff"].astype("datetime64[us]")
    return out.sort_values(["cutoff", "customer_id"], ignore_index=True)


@pytest.mark.spark
@pytest.mark.slow
def test_spark_parity_on_every_group(spark) -> None:
    data = _all_groups()
    frame = _to_spark(spark, data.tx)
    assert learn_input_spec(frame, data.inputs, as_of=data.as_of,
                            horizon_days=90) == data.spec
    expected = input_features(data.tx, data.cutoffs, data.spec, data.inputs)
    result = input_features(frame, data.cutoffs, data.spec, data.inputs)
    assert list(result.columns) == list(expected.columns)
    got = _spark_pandas(result, data.spec)
    got["customer_id"] = got["customer_id"].astype(expected["customer_id"].dtype)
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-12, atol=1e-12)
    # with_input_features on Spark (the details read there): one group keeps it short
    details = data.spec.without("events").without("attributes").without("calendar")
    keys = expected[["customer_id", "cutoff"]].iloc[::-1]
    pd.testing.assert_frame_equal(
        with_input_features(keys, details, data.inputs, frame, date_column="cutoff"),
        expected[["customer_id", "cutoff", *details.feature_names()]].iloc[::-1],
        check_exact=False, rtol=1e-12, atol=1e-12)


@pytest.mark.spark
@pytest.mark.slow
def test_spark_parity_on_the_golden_and_random_data(spark, golden: SimpleNamespace,
                                                    monkeypatch) -> None:
    import churnlens._input_features as module

    frame = _to_spark(spark, golden.tx)
    got = _spark_pandas(input_features(frame, CUTOFFS, golden.spec, golden.inputs),
                        golden.spec)
    pd.testing.assert_frame_equal(got, GOLDEN)
    with monkeypatch.context() as patched:  # PySpark 3.5: the tables sent as rows
        patched.setattr(module, "_pyspark_major", lambda: 3)
        got = _spark_pandas(input_features(frame, CUTOFFS, golden.spec, golden.inputs),
                            golden.spec)
    pd.testing.assert_frame_equal(got, GOLDEN)
    keys = GOLDEN[["customer_id", "cutoff"]].iloc[::-1]
    pd.testing.assert_frame_equal(  # the events and attributes never need the transactions
        with_input_features(keys, golden.spec, golden.inputs, frame, date_column="cutoff"),
        GOLDEN.iloc[::-1])
    data = _random_inputs(4, int_ids=False)
    got = _spark_pandas(input_features(_to_spark(spark, data.tx), data.cutoffs, data.spec,
                                       data.inputs), data.spec)
    pd.testing.assert_frame_equal(got, input_features(data.tx, data.cutoffs, data.spec,
                                                      data.inputs))


# --- review fixes ----------------------------------------------------------------------


def test_an_event_type_starting_with_a_digit_names_a_usable_column() -> None:
    """'1st visit' -> 1st_visit_count_30d: quoted in the SQL (DuckDB would not parse it)."""
    tx = load_transactions(pd.DataFrame({
        "customer_id": ["A", "B"], "timestamp": ["2024-01-10", "2024-01-12"],
        "amount": [10.0, 20.0]})).transactions
    events = load_events(pd.DataFrame({
        "customer_id": ["A", "A", "B"],
        "timestamp": ["2024-01-20", "2024-03-25", "2024-03-30"],
        "event_type": ["1st visit", "1st visit", "2fa"]}))
    inputs = InputTables(events=events)
    spec = learn_input_spec(tx, inputs, as_of="2024-03-31", horizon_days=30, calendar=False)
    assert spec.event_types == ("1st visit", "2fa")
    out = input_features(tx, "2024-03-31", spec, inputs)
    assert out["1st_visit_count_30d"].tolist() == [1, 0]
    assert out["1st_visit_count_90d"].tolist() == [2, 0]
    assert out["2fa_count_30d"].tolist() == [0, 1]
    assert out["days_since_1st_visit"].tolist()[0] == 6.0
    frame = pd.DataFrame({"customer_id": ["B", "A"], "as_of": pd.Timestamp("2024-03-31")})
    joined = with_input_features(frame, spec, inputs, tx, date_column="as_of")
    assert joined["1st_visit_count_90d"].tolist() == [0, 2]


def test_text_categories_are_learned_by_the_scoring_rule() -> None:
    """An object column [1.0, 'gold'] learns '1' (as scoring reads it), not '1.0'."""
    tx = load_transactions(pd.DataFrame({
        "customer_id": ["A", "B"], "timestamp": ["2024-01-10", "2024-01-12"],
        "amount": [10.0, 20.0]})).transactions
    customers = pd.DataFrame({"customer_id": ["A", "B"],
                              "tier": pd.Series([1.0, "gold"], dtype=object)})
    inputs = InputTables(customers=customers)
    spec = learn_input_spec(tx, inputs, as_of="2024-03-31", horizon_days=30, calendar=False)
    assert spec.attributes == (("tier", ("1", "gold")),)
    out = input_features(tx, "2024-03-31", spec, inputs)
    assert out["attr_tier"].tolist() == ["1", "gold"]
    assert out.attrs["unseen_categories"] == {}


def test_numeric_or_text_is_decided_by_the_rows_valid_at_as_of() -> None:
    """A later row's text does not turn a numeric attribute into text; at scoring that
    text is read as missing and counted (attrs["unseen_categories"])."""
    tx = load_transactions(pd.DataFrame({
        "customer_id": ["A", "B"], "timestamp": ["2024-01-10", "2024-01-12"],
        "amount": [10.0, 20.0]})).transactions
    customers = load_customers(pd.DataFrame({
        "customer_id": ["A", "B", "B"],
        "valid_from": ["2024-01-01", "2024-01-01", "2024-05-01"],
        "income": ["10", "20", "unknown"],
    }), valid_from_col="valid_from")
    inputs = InputTables(customers=customers)
    spec = learn_input_spec(tx, inputs, as_of="2024-03-31", horizon_days=30, calendar=False)
    assert spec.attributes == (("income", None),)
    train = input_features(tx, "2024-03-31", spec, inputs)
    assert train["attr_income"].tolist() == [10.0, 20.0]
    assert train.attrs["unseen_categories"] == {}
    frame = pd.DataFrame({"customer_id": ["A", "B"], "as_of": pd.Timestamp("2024-06-30")})
    scored = with_input_features(frame, spec, inputs, tx, date_column="as_of")
    assert scored["attr_income"].tolist()[0] == 10.0 and pd.isna(scored["attr_income"][1])
    assert scored.attrs["unseen_categories"] == {"attr_income": 1}
    late = input_features(tx, "2024-06-30", spec, inputs)
    assert late.attrs["unseen_categories"] == {"attr_income": 1}
    only_a = with_input_features(frame.iloc[:1], spec, inputs, tx, date_column="as_of")
    assert only_a.attrs["unseen_categories"] == {}


def test_a_malformed_stored_spec_is_a_model_error() -> None:
    from churnlens.exceptions import ModelError

    for data in ({"attributes": [{"categories": ["a"]}]},  # no name
                 {"event_windows_days": ["thirty"]},
                 {"horizon_days": [1]},
                 {"attributes": [3]},
                 ["groups"]):
        with pytest.raises(ModelError, match="Suggestion: retrain or re-save"):
            InputSpec.from_dict(data)  # type: ignore[arg-type]
    spec = InputSpec(groups=("attributes",), attributes=(("plan", ("a",)), ("n", None)))
    with pytest.raises(ChurnlensError, match=r"not a text attribute.*Suggestion"):
        spec.categories_of("attr_n")
    with pytest.raises(ChurnlensError, match=r"not an input feature.*Suggestion"):
        spec.group_of("email_count_7d")
    with pytest.raises(ChurnlensError, match=r"not among.*Suggestion"):
        InputSpec(groups=("details",), detail_columns=("colour",))


def test_one_naming_rule_for_channels_and_event_types() -> None:
    from churnlens._input_features_sql import channel_feature_name

    assert channel_feature_name(" Web Shop! ") == "channel_share_" + sanitise_name(
        " Web Shop! ") == "channel_share_web_shop"
    with pytest.raises(DataValidationError, match=r"channel '!!'.*letter or digit"):
        channel_feature_name("!!")


@pytest.mark.spark
@pytest.mark.slow
def test_an_event_type_starting_with_a_digit_on_spark(spark) -> None:
    tx = load_transactions(pd.DataFrame({
        "customer_id": ["A", "B"], "timestamp": ["2024-01-10", "2024-01-12"],
        "amount": [10.0, 20.0]})).transactions
    events = load_events(pd.DataFrame({
        "customer_id": ["A", "A", "B"],
        "timestamp": ["2024-01-20", "2024-03-25", "2024-03-30"],
        "event_type": ["1st visit", "1st visit", "2fa"]}))
    inputs = InputTables(events=events)
    spec = InputSpec(groups=("events",), event_types=("1st visit", "2fa"))
    expected = input_features(tx, "2024-03-31", spec, inputs)
    got = _spark_pandas(input_features(_to_spark(spark, tx), "2024-03-31", spec, inputs), spec)
    got["customer_id"] = got["customer_id"].astype(expected["customer_id"].dtype)
    pd.testing.assert_frame_equal(got, expected)
