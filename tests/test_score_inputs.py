"""Scoring with the richer inputs (issue 21): a model trained with a customer table, an
event table and the transactions' optional columns scores with them (CLI, in memory, out
of core, Spark), only from what is dated on or before the as-of date, refuses to score
without them, says its reasons in the customer's own terms, and keeps each customer's
attributes as columns of the scores and the at-risk list.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import churnlens
from churnlens._config import load_config
from churnlens._inputs import attributes_at, load_customers, load_events
from churnlens.cli import app

SEED = 5
TRAIN_AS_OF = "2024-03-31"
SCORE_AS_OF = "2024-04-30"
DETAILS = {"data.order_col": "order_id", "data.quantity_col": "quantity",
           "data.category_col": "category", "data.channel_col": "channel",
           "data.discount_col": "discount"}
FAST = {"mlflow.enabled": False, "backtest_steps": 0, "snapshots.count": 6,
        "model.n_estimators": 60, "model.min_child_samples": 40,
        "model.early_stopping_rounds": 20, "model.select_blend": False}
DETAIL_FLAGS = ["--order-col", "order_id", "--quantity-col", "quantity", "--category-col",
                "category", "--channel-col", "channel", "--discount-col", "discount"]
ATTRIBUTES = ["channel", "region", "age", "plan"]


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def data():
    print(f"synthetic inputs seed: {SEED}")
    return churnlens.generate_inputs(1200, seed=SEED, start="2023-01-01", end="2024-06-30",
                                     details=True)


@pytest.fixture(scope="module")
def files(data, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("score_inputs")
    out = {name: folder / f"{name}.csv" for name in ("transactions", "customers", "events")}
    data.transactions.to_csv(out["transactions"], index=False)
    data.customers.to_csv(out["customers"], index=False)
    data.events.to_csv(out["events"], index=False)
    return out


@pytest.fixture(scope="module")
def settings():
    return load_config(overrides={**FAST, **DETAILS})


@pytest.fixture(scope="module")
def transactions(data, settings) -> pd.DataFrame:
    return churnlens.load_transactions(data.transactions,
                                       **settings.data.loader_options()).transactions


def tables(customers: pd.DataFrame, events: pd.DataFrame):
    from churnlens._input_features import InputTables

    return InputTables(customers=load_customers(customers, valid_from_col="valid_from"),
                       events=load_events(events, value_col="value"))


@pytest.fixture(scope="module")
def inputs(data):
    return tables(data.customers, data.events)


@pytest.fixture(scope="module")
def artifact(transactions, inputs, settings):
    from churnlens._pipeline import train

    return train(transactions, as_of=TRAIN_AS_OF, settings=settings, inputs=inputs,
                 ablation=False).artifact


@pytest.fixture(scope="module")
def plain_artifact(transactions, settings):
    """A model trained without richer inputs (transactions' three columns only)."""
    from churnlens._pipeline import train

    base = transactions[["customer_id", "timestamp", "amount"]]
    return train(base, as_of=TRAIN_AS_OF, settings=load_config(overrides=FAST)).artifact


@pytest.fixture(scope="module")
def bundle(artifact, tmp_path_factory) -> Path:
    from churnlens._artifact import save_bundle

    folder = tmp_path_factory.mktemp("bundle_inputs") / "model"
    save_bundle(artifact, folder)
    return folder


@pytest.fixture(scope="module")
def plain_bundle(plain_artifact, tmp_path_factory) -> Path:
    from churnlens._artifact import save_bundle

    folder = tmp_path_factory.mktemp("bundle_plain") / "model"
    save_bundle(plain_artifact, folder)
    return folder


@pytest.fixture(scope="module")
def scored(transactions, artifact, inputs):
    from churnlens._scoring import score_customers

    return score_customers(transactions, SCORE_AS_OF, artifact, inputs=inputs)


def score_args(files: dict[str, Path], model: Path, out: Path, *, customers: bool = True,
               events: bool = True, details: bool = True) -> list[str]:
    args = ["score", "-t", str(files["transactions"]), "--as-of", SCORE_AS_OF, "--model",
            str(model), "-o", str(out), "--no-ledger"]
    if details:
        args += DETAIL_FLAGS
    if customers:
        args += ["--customers-file", str(files["customers"]), "--valid-from-col",
                 "valid_from"]
    if events:
        args += ["--events-file", str(files["events"]), "--event-value-col", "value"]
    return args


# --- scoring with the inputs -------------------------------------------------------------


def test_the_model_uses_every_input_group(artifact):
    from churnlens._scoring import input_spec_of

    spec = input_spec_of(artifact)
    assert set(spec.groups) >= {"details", "events", "attributes"}
    assert set(spec.feature_names()) <= set(artifact.feature_names)


def test_scores_keep_the_attributes_at_the_as_of_date(scored, data, inputs):
    from churnlens._scoring import SCORE_COLUMNS

    scores = scored.scores
    assert list(scores.columns) == [*SCORE_COLUMNS, *ATTRIBUTES]
    # the attribute columns are the raw values of the row valid at the as-of date
    truth = attributes_at(inputs.customers, SCORE_AS_OF).set_index("customer_id")
    for name in ATTRIBUTES:
        expected = truth[name].reindex(scores["customer_id"]).to_numpy()
        got = scores[name].to_numpy()
        same = (pd.isna(expected) & pd.isna(got)) | (expected == got)
        assert same.all(), name
    # a plan that changed after the as-of date is the plan before it
    changed = data.customers.loc[pd.to_datetime(data.customers["valid_from"])
                                 > pd.Timestamp(SCORE_AS_OF)]
    later = changed.loc[changed["customer_id"].isin(scores["customer_id"])]
    if len(later):
        row = later.iloc[0]
        before = truth.loc[row["customer_id"], "plan"]
        assert scores.set_index("customer_id").loc[row["customer_id"], "plan"] == before
    summary = scored.summary["inputs"]
    assert set(summary["groups"]) >= {"details", "events", "attributes"}
    assert summary["customers_table"] and summary["events_table"]
    assert summary["unseen_categories"] == {}


def test_some_reasons_are_said_from_the_inputs(scored):
    texts = pd.concat([scored.scores[c] for c in ("reason_1", "reason_2", "reason_3")])
    inputs_said = texts.str.contains(
        r"^channel: |one category|^buys (?:only|mostly) via|email|site visit", regex=True)
    print("reasons from the inputs:", texts[inputs_said].value_counts().head(8).to_dict())
    assert inputs_said.sum() > 20


# --- leakage: nothing after the as-of date changes a score --------------------------------


def test_rows_after_the_as_of_date_change_no_score(data, transactions, artifact, scored):
    from churnlens._scoring import score_customers

    after = pd.Timestamp(SCORE_AS_OF) + pd.Timedelta(days=1)
    ids = scored.scores["customer_id"].tolist()
    # attribute rows that start the day after: every scored customer moves channel, region
    customers = data.customers.copy()
    taken = customers.loc[pd.to_datetime(customers["valid_from"]) == after, "customer_id"]
    flipped = customers.drop_duplicates("customer_id", keep="last")
    flipped = flipped.loc[~flipped["customer_id"].isin(taken)].copy()
    flipped["valid_from"] = str(after.date())
    flipped["channel"] = flipped["channel"].map({"web": "app", "app": "store", "store": "web"})
    flipped["region"] = "north"
    flipped["age"] = 99
    customers = pd.concat([customers, flipped], ignore_index=True)
    # events after the as-of date (the next midnight and later): every customer opens
    # emails and visits
    extra = pd.DataFrame({
        "customer_id": np.repeat(ids, 2),
        "timestamp": [str(after), str(after + pd.Timedelta(days=20))] * len(ids),
        "event_type": ["email_open", "site_visit"] * len(ids),
        "value": [np.nan, 3.0] * len(ids)})
    events = pd.concat([data.events, extra], ignore_index=True)
    # transactions after the as-of date: purchases in other categories and channels
    later = transactions.loc[transactions["customer_id"].isin(ids[:300])].groupby(
        "customer_id", as_index=False).first()
    later["timestamp"] = after + pd.Timedelta(hours=3)
    later["category"] = "toys"
    later["channel"] = "app"
    later["discount"] = 50.0
    moved = pd.concat([transactions, later], ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no table is ignored here
        again = score_customers(moved, SCORE_AS_OF, artifact,
                                inputs=tables(customers, events))
    pd.testing.assert_frame_equal(again.scores, scored.scores, check_exact=True)


# --- the refusal -------------------------------------------------------------------------


def test_python_refuses_to_score_without_the_tables(transactions, artifact, inputs):
    from churnlens._input_features import InputsRequiredError, InputTables
    from churnlens._scoring import score_customers

    with pytest.raises(InputsRequiredError, match=r"customer table.*customers="):
        score_customers(transactions, SCORE_AS_OF, artifact)
    with pytest.raises(InputsRequiredError, match=r"event table.*--events-file"):
        score_customers(transactions, SCORE_AS_OF, artifact,
                        inputs=InputTables(customers=inputs.customers))
    with pytest.raises(InputsRequiredError, match=r"category.*--category-col"):
        score_customers(transactions.drop(columns=["category"]), SCORE_AS_OF, artifact,
                        inputs=inputs)


@pytest.mark.parametrize(("drop", "flag"), [("customers", "--customers-file"),
                                            ("events", "--events-file"),
                                            ("details", "--category-col")])
def test_cli_refuses_to_score_without_the_tables(cli, files, bundle, tmp_path, drop, flag):
    out = tmp_path / "scores.csv"
    args = score_args(files, bundle, out, **{drop: False})
    result = cli.invoke(app, args)
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert "the model was trained with" in said and flag in said, said
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a summary


def test_a_model_without_inputs_scores_the_same_with_or_without_files(
        cli, files, plain_bundle, tmp_path):
    plain, given = tmp_path / "plain.csv", tmp_path / "given.csv"
    base = cli.invoke(app, score_args(files, plain_bundle, plain, customers=False,
                                      events=False, details=False))
    assert base.exit_code == 0, base.output
    result = cli.invoke(app, score_args(files, plain_bundle, given))
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "not trained with a customer table: --customers-file" in said
    assert "not trained with an event table: --events-file" in said
    assert given.read_bytes() == plain.read_bytes()
    first = json.loads((tmp_path / "plain.csv.summary.json").read_text())
    second = json.loads((tmp_path / "given.csv.summary.json").read_text())
    assert "inputs" not in second
    assert first == second


# --- one score whatever the path ----------------------------------------------------------


def test_out_of_core_cli_equals_in_memory(cli, files, bundle, settings, artifact, inputs,
                                          tmp_path):
    from churnlens._io import read_table
    from churnlens._scoring import score_file

    out = tmp_path / "scores.parquet"
    result = cli.invoke(app, score_args(files, bundle, out))
    assert result.exit_code == 0, result.output
    streamed = read_table(out)
    memory = score_file(files["transactions"], SCORE_AS_OF, artifact, settings=settings,
                        inputs=inputs)
    expected = memory.scores.assign(as_of=memory.scores["as_of"].astype(str))
    pd.testing.assert_frame_equal(streamed.assign(as_of=streamed["as_of"].astype(str)),
                                  expected, check_exact=True, check_dtype=False)


def test_unseen_categories_are_scored_as_missing_and_counted(
        cli, files, bundle, settings, artifact, data, tmp_path):
    from churnlens._out_of_core import score_file_out_of_core
    from churnlens._scoring import score_file

    customers = data.customers.copy()
    kiosk = customers["customer_id"].isin(customers["customer_id"].unique()[:40])
    customers.loc[kiosk, "channel"] = "kiosk"  # never seen in training
    unseen_inputs = tables(customers, data.events)
    memory = score_file(files["transactions"], SCORE_AS_OF, artifact, settings=settings,
                        inputs=unseen_inputs)
    streamed = score_file_out_of_core(files["transactions"], SCORE_AS_OF, artifact,
                                      tmp_path / "s.parquet", settings=settings,
                                      inputs=unseen_inputs)
    # the same scores and the same drift profile (input features included) on both paths
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "s.parquet").drop(columns="as_of"),
        memory.scores.drop(columns="as_of"), check_exact=True, check_dtype=False)
    assert memory.feature_profile == streamed.feature_profile
    assert "days_since_email_open" in (streamed.feature_profile or {})
    kiosks = int((memory.scores["channel"] == "kiosk").sum())
    assert kiosks > 0
    for summary in (memory.summary, streamed.summary):
        assert summary["inputs"]["unseen_categories"] == {"attr_channel": kiosks}
        assert any("unseen in training" in w for w in summary["inputs"]["warnings"])
    # scored as a missing channel: the same risk as a customer whose channel is unknown
    none = customers.copy()
    none.loc[kiosk, "channel"] = None
    missing = score_file(files["transactions"], SCORE_AS_OF, artifact, settings=settings,
                         inputs=tables(none, data.events))
    np.testing.assert_array_equal(memory.scores["churn_risk"], missing.scores["churn_risk"])


def test_the_at_risk_list_keeps_the_attributes(cli, files, bundle, tmp_path):
    scores, listed = tmp_path / "scores.parquet", tmp_path / "list.csv"
    assert cli.invoke(app, score_args(files, bundle, scores)).exit_code == 0
    result = cli.invoke(app, ["at-risk", "--scores", str(scores), "-o", str(listed)])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(listed, dtype=str)
    assert len(frame) > 0
    assert set(ATTRIBUTES) <= set(frame.columns)
    assert set(frame["channel"].dropna()) <= {"store", "web", "app"}
    # marketing filters the list by an attribute
    web = tmp_path / "web.csv"
    result = cli.invoke(app, ["at-risk", "--scores", str(scores), "-o", str(web), "--all",
                              "--attribute", "channel:web", "--attribute", "plan:plus"])
    assert result.exit_code == 0, result.output
    chosen = pd.read_csv(web, dtype=str)
    assert len(chosen) > 0 and set(chosen["channel"]) == {"web"}
    assert set(chosen["plan"]) == {"plus"}
    every = pd.read_parquet(scores)
    assert len(chosen) == int(((every["channel"] == "web") & (every["plan"] == "plus")).sum())
    bad = cli.invoke(app, ["at-risk", "--scores", str(scores), "-o", str(tmp_path / "x.csv"),
                           "--attribute", "colour:red"])
    assert bad.exit_code == 2 and "colour" in bad.output
    assert not (tmp_path / "x.csv").exists()


def test_at_risk_list_filters_by_attribute_values_as_text():
    from churnlens._rules import at_risk_list

    scores = pd.DataFrame({"customer_id": ["a", "b", "c", "d"],
                           "churn_risk": [0.9, 0.8, 0.7, 0.6],
                           "value_at_risk": [1.0, 2.0, 3.0, 4.0],
                           "channel": ["web", "app", None, "web"], "age": [30.0, 41.0, 30.0, 52.0]})
    pick = at_risk_list(scores, kind="all", attributes={"channel": ["web", ""]})
    assert pick["customer_id"].tolist() == ["a", "c", "d"]
    pick = at_risk_list(scores, kind="all", attributes={"channel": ["web"], "age": ["30.0"]})
    assert pick["customer_id"].tolist() == ["a"]


def test_attribute_names_that_collide_with_score_columns_are_prefixed():
    from churnlens._input_features import InputSpec
    from churnlens._scoring import attribute_column_names

    spec = InputSpec(groups=("attributes",), attributes=(("segment", ("a", "b")),
                                                         ("tier", None)))
    assert attribute_column_names(spec) == [("segment", "customer_segment"), ("tier", "tier")]


def test_attribute_columns_stay_unique_when_a_prefixed_name_is_an_attribute_too():
    from churnlens._input_features import InputSpec
    from churnlens._scoring import attribute_column_names

    spec = InputSpec(groups=("attributes",), attributes=(
        ("segment", ("a",)), ("customer_segment", ("b",)), ("customer_segment_2", None),
        ("risk_band", ("x",))))
    pairs = attribute_column_names(spec)
    assert pairs == [("segment", "customer_segment_3"),
                     ("customer_segment", "customer_segment"),
                     ("customer_segment_2", "customer_segment_2"),
                     ("risk_band", "customer_risk_band")]
    assert len({column for _, column in pairs}) == len(pairs)


def test_features_command_writes_the_input_features_when_files_are_given(
        cli, files, tmp_path):
    from churnlens._features_sql import feature_names
    from churnlens._input_features_sql import calendar_feature_names

    plain, details, richer = (tmp_path / f"{n}.csv" for n in ("plain", "details", "richer"))
    common = ["features", "-t", str(files["transactions"]), "--as-of", SCORE_AS_OF]
    assert cli.invoke(app, [*common, "-o", str(plain)]).exit_code == 0
    # the optional columns alone give the details, as train learns them from the flags
    assert cli.invoke(app, [*common, *DETAIL_FLAGS, "-o", str(details)]).exit_code == 0
    result = cli.invoke(app, [*common, *DETAIL_FLAGS, "-o", str(richer),
                              "--customers-file", str(files["customers"]),
                              "--valid-from-col", "valid_from",
                              "--events-file", str(files["events"])])
    assert result.exit_code == 0, result.output
    base = pd.read_csv(plain, dtype={"customer_id": str})
    detail = pd.read_csv(details, dtype={"customer_id": str})
    more = pd.read_csv(richer, dtype={"customer_id": str})
    assert list(base.columns) == ["customer_id", "as_of", *feature_names()]
    assert {"category_count", "channel_share_web"} <= set(detail.columns)
    pd.testing.assert_frame_equal(more[list(detail.columns)], detail)
    added = [c for c in more.columns if c not in base.columns]
    assert {"attr_channel", "attr_plan", "days_since_email_open", "email_open_count_30d",
            "category_count", "channel_share_web"} <= set(added)
    # the history spans a year plus the horizon, but the calendar is off, as in train
    assert not set(calendar_feature_names()) & set(more.columns)
    pd.testing.assert_frame_equal(more[list(base.columns)], base)
    # the plan valid at the as-of date, not a later one
    truth = attributes_at(load_customers(files["customers"], valid_from_col="valid_from"),
                          SCORE_AS_OF).set_index("customer_id")["plan"]
    assert (more.set_index("customer_id")["attr_plan"]
            == truth.reindex(more["customer_id"]).to_numpy()).all()


# --- the reasons -------------------------------------------------------------------------


def _reasons(row: dict, push: dict[str, float], horizon: int = 91) -> list[str]:
    from churnlens._reasons import reasons_from_contributions

    names = list(push)
    frame = pd.DataFrame([{"frequency": 3, "recency_days": 5, "tenure_days": 400,
                           "gap_mean_days": 30, **row}])
    for name, value in row.items():
        if isinstance(value, str):
            frame[name] = pd.Categorical([value])
    contributions = np.array([[push[n] for n in names]])
    return [t for t in reasons_from_contributions(contributions, names, frame,
                                                  horizon_days=horizon)[0] if t]


def test_reasons_of_the_inputs_in_the_customers_terms():
    assert _reasons({"days_since_email_open": 60.0, "email_open_count_30d": 0,
                     "email_open_count_90d": 2},
                    {"days_since_email_open": 0.5, "email_open_count_30d": 0.1,
                     "email_open_count_90d": 0.1}) == ["opened no email for 60 days"]
    assert _reasons({"days_since_email_open": np.nan, "email_open_count_30d": 0},
                    {"days_since_email_open": 0.5}) == ["never opened an email"]
    assert _reasons({"category_count": 1, "category_concentration": 1.0},
                    {"category_count": 0.4}) == ["buys only in one category"]
    assert _reasons({"attr_channel": "web"}, {"attr_channel": 0.3}) == ["channel: web"]
    assert _reasons({"channel_share_web": 0.8, "channel_share_store": 0.2},
                    {"channel_share_web": 0.3}) == ["buys mostly via web (80% of spend)"]
    assert _reasons({"discount_share": 0.35}, {"discount_share": 0.2}) == [
        "buys on discount: 35% off on average"]
    assert _reasons({"support_ticket_count_30d": 3, "support_ticket_count_90d": 5,
                     "days_since_support_ticket": 2.0},
                    {"support_ticket_count_30d": 0.6}) == [
        "3 support tickets in the last 30 days, usually 1"]
    assert _reasons({"last_year_window_share": 0.02}, {"season_sin": 0.2}) == [
        "quiet season for this customer: 2% of last year's purchases fell in these 91 days"]


def test_input_reasons_only_when_true_and_pushing_risk_up():
    # pulls the risk down: never a reason
    assert _reasons({"attr_channel": "web"}, {"attr_channel": -0.3}) == []
    # not true of the customer: an email opened 3 days ago, three categories, an unseen
    # (missing) channel, a ticket-free customer
    assert _reasons({"days_since_email_open": 3.0, "email_open_count_30d": 2,
                     "email_open_count_90d": 6}, {"days_since_email_open": 0.5}) == []
    assert _reasons({"category_count": 3, "category_concentration": 0.4},
                    {"category_count": 0.4}) == []
    assert _reasons({"attr_channel": None}, {"attr_channel": 0.3}) == []
    assert _reasons({"days_since_support_ticket": np.nan, "support_ticket_count_30d": 0,
                     "support_ticket_count_90d": 0},
                    {"days_since_support_ticket": 0.5}) == []
    # heaviest first, across the kinds of the transactions and of the inputs
    assert _reasons({"attr_channel": "web", "category_count": 1, "refund_total": 12.0},
                    {"attr_channel": 0.2, "category_count": 0.5, "refund_total": 0.3}) == [
        "buys only in one category", "refunds of 12.00 so far", "channel: web"]


# --- Spark -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.spark
def test_spark_scores_with_inputs_equal_duckdb(spark, files, settings, artifact, inputs,
                                               transactions, tmp_path):
    from churnlens._scoring import score_file
    from churnlens._spark_scoring import _collect, score_file_with_spark, score_spark

    on_spark = score_file_with_spark(files["transactions"], SCORE_AS_OF, artifact,
                                     settings=settings, inputs=inputs)
    duck = score_file(files["transactions"], SCORE_AS_OF, artifact, settings=settings,
                      inputs=inputs)
    a, b = on_spark.scores, duck.scores
    assert list(a.columns) == list(b.columns)
    assert a["customer_id"].tolist() == b["customer_id"].tolist()
    np.testing.assert_allclose(a["churn_risk"], b["churn_risk"], rtol=1e-9, atol=1e-9)
    for column in ("risk_band", "segment", "reason_1", "reason_2", "reason_3", *ATTRIBUTES):
        assert a[column].astype(str).tolist() == b[column].astype(str).tolist(), column
    assert on_spark.summary["inputs"] == duck.summary["inputs"]
    # a Spark DataFrame of clean transactions: the same scores and attribute columns
    path = tmp_path / "tx.parquet"
    transactions.to_parquet(path, index=False)
    frame = _collect(score_spark(spark.read.parquet(str(path)), SCORE_AS_OF, artifact,
                                 inputs=inputs))
    assert list(frame.columns) == list(b.columns)
    np.testing.assert_allclose(frame["churn_risk"], b["churn_risk"], rtol=1e-9, atol=1e-9)
    for column in ("customer_id", "reason_1", *ATTRIBUTES):
        same = (frame[column].isna() & b[column].isna()) | (
            frame[column].astype(str) == b[column].astype(str))
        assert same.all(), column



# --- events all after the as-of date; tables a model does not use --------------------------


def test_scoring_with_no_event_yet_is_no_event_while_training_refuses(
        cli, files, bundle, settings, artifact, data, tmp_path):
    from churnlens._input_features import InputTables
    from churnlens._scoring import score_file

    later = data.events.assign(timestamp="2024-06-29")  # every event after SCORE_AS_OF
    path = tmp_path / "later_events.csv"
    later.to_csv(path, index=False)
    late_files = {**files, "events": path}
    out = tmp_path / "scores.csv"
    result = cli.invoke(app, score_args(late_files, bundle, out))
    assert result.exit_code == 0, result.output
    written = pd.read_csv(out, dtype={"customer_id": str})
    none = load_events(later, value_col="value").events.iloc[:0]
    memory = score_file(files["transactions"], SCORE_AS_OF, artifact, settings=settings,
                        inputs=InputTables(customers=load_customers(
                            files["customers"], valid_from_col="valid_from"), events=none))
    np.testing.assert_allclose(written["churn_risk"], memory.scores["churn_risk"])
    # features too; training keeps the refusal (nothing to learn events from)
    feats = cli.invoke(app, ["features", "-t", str(files["transactions"]), "--as-of",
                             SCORE_AS_OF, "-o", str(tmp_path / "f.csv"), "--events-file",
                             str(path)])
    assert feats.exit_code == 0, feats.output
    trained = cli.invoke(app, ["train", "-t", str(files["transactions"]), "--as-of",
                               SCORE_AS_OF, "--events-file", str(path), "--no-ablation"])
    assert trained.exit_code == 2 and "choose a later" in " ".join(trained.output.split())


def test_serve_reads_only_the_tables_the_model_uses_and_warns_the_cli_way(
        cli, files, plain_bundle, tmp_path, monkeypatch):
    import uvicorn

    from churnlens.cli._serve import bind_port

    broken = tmp_path / "broken.csv"
    broken.write_text("no,such,columns\n1,2,3\n")  # unreadable as an event table
    seen: list[int] = []

    def run(self, *args, **kwargs):
        self.started = True
        seen.append(1)

    monkeypatch.setattr(uvicorn.Server, "run", run)
    port = bind_port("127.0.0.1", 0)
    free = port.getsockname()[1]
    port.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        result = cli.invoke(app, ["serve", "-t", str(files["transactions"]), "--model",
                                  str(plain_bundle), "--as-of", SCORE_AS_OF, "--port",
                                  str(free), "--no-ledger", "--events-file", str(broken)])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "warning: the model was not trained with an event table" in said and seen


def test_out_of_core_scoring_table_has_one_as_of_column(files, settings, artifact, inputs,
                                                        tmp_path, monkeypatch):
    from churnlens import _out_of_core

    columns: list[list[str]] = []
    sort = _out_of_core._sort_features

    def spy(clean, given):
        sort(clean, given)
        columns.append([row[0] for row in clean.connection.execute(
            f"DESCRIBE {_out_of_core._SCORING}").fetchall()])

    monkeypatch.setattr(_out_of_core, "_sort_features", spy)
    _out_of_core.score_file_out_of_core(files["transactions"], SCORE_AS_OF, artifact,
                                        tmp_path / "s.parquet", settings=settings,
                                        inputs=inputs)
    [names] = columns
    assert names.count("as_of") == 1 and not [n for n in names if n.startswith("as_of_")]


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_at_risk_attribute_filters_only_the_models_categorical_attributes(
        cli, files, bundle, tmp_path, suffix):
    scores = tmp_path / f"scores{suffix}"
    assert cli.invoke(app, score_args(files, bundle, scores)).exit_code == 0
    for given, why in (("risk_band:high", "unknown attribute 'risk_band'"),
                       ("segment:champions", "unknown attribute 'segment'"),
                       ("age:30", "'age' is numeric"), ("channel", "is not name:value")):
        out = tmp_path / "x.csv"
        bad = cli.invoke(app, ["at-risk", "--scores", str(scores), "-o", str(out), "--all",
                               "--attribute", given])
        said = " ".join(bad.output.split())
        assert bad.exit_code == 2 and why in said, said
        assert "categorical attributes: channel, region, plan" in said and not out.exists()
    ok = cli.invoke(app, ["at-risk", "--scores", str(scores), "-o", str(tmp_path / "w.csv"),
                          "--all", "--attribute", "channel:web"])
    assert ok.exit_code == 0, ok.output
    assert set(pd.read_csv(tmp_path / "w.csv", dtype=str)["channel"]) == {"web"}


def test_attribute_filters_resolve_a_name_to_its_column_in_the_scores():
    from churnlens._input_features import InputSpec
    from churnlens._rules import attribute_filters
    from churnlens._scoring import attributes_summary
    from churnlens.exceptions import DataValidationError

    spec = InputSpec(groups=("attributes",), attributes=(("segment", ("a", "b")),
                                                         ("age", None)))
    recorded = attributes_summary(spec)
    assert recorded == [{"name": "segment", "column": "customer_segment", "categorical": True},
                        {"name": "age", "column": "age", "categorical": False}]
    categorical = {a["name"]: a["column"] for a in recorded if a["categorical"]}
    assert attribute_filters(["segment:a", "segment:"], categorical, {"age"}) == {
        "customer_segment": {"a", None}}
    with pytest.raises(DataValidationError, match=r"'age' is numeric.*Suggestion"):
        attribute_filters(["age:3"], categorical, {"age"})
