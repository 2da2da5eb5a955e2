"""The HTTP API with richer inputs (issue 21): ``POST /score`` with attributes and events,
``serve --customers-file/--events-file``, the at-risk list's attribute columns and
filters, and the web page's filters on them.

The model is a small real one trained with every input group: the transactions'
optional columns, a customer table, an event table and the calendar
(:func:`trained_with_inputs`: 600 synthetic customers of ``generate_inputs(details=True)``,
seed ``SEED``), once per test process. The batch path it is compared with is
``churnlens._scoring.score_customers(..., inputs=...)``: the scores the served state
holds (``build_state`` scores the base with it).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import math
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from api_support import wait_until_serving
from browser_support import chromium_browser, free_port, offline_page, serve_open
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from churnlens.api import ApiLimits, create_app
from churnlens.api.deps import API_KEYS_ENV
from churnlens.api.errors import ALLOWED_HOSTS_ENV
from churnlens.cli import app as cli_app

AS_OF = "2024-06-30"
SEED = 5
DETAILS = ("order_id", "quantity", "category", "channel", "discount")
IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"
JSON = {"Content-Type": "application/json"}


@functools.lru_cache(maxsize=1)
def trained_with_inputs() -> dict[str, Any]:
    """Raw and clean tables, the input tables and a model trained with them."""
    from churnlens import load_transactions
    from churnlens._config import load_config
    from churnlens._input_features import InputTables
    from churnlens._inputs import load_customers, load_events
    from churnlens._pipeline import train
    from churnlens._synthetic import generate_inputs

    raw, customers_raw, events_raw = generate_inputs(600, seed=SEED, start="2022-07-01",
                                                     end=AS_OF, details=True)
    tables = InputTables(customers=load_customers(customers_raw, valid_from_col="valid_from"),
                         events=load_events(events_raw, value_col="value"))
    settings = load_config(overrides={
        "mlflow.enabled": False, "backtest_steps": 1, "snapshots.count": 4,
        "model.n_estimators": 40, "model.min_child_samples": 20, "model.n_jobs": 1,
        **{f"data.{c.split('_')[0]}_col": c for c in DETAILS},
    })
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LightGBM's deprecation notices
        run = train(raw, as_of=AS_OF, settings=settings, inputs=tables, ablation=False,
                    calendar=True)
    clean = load_transactions(raw, **settings.data.loader_options()).transactions
    return {"raw": raw, "clean": clean,
            "customers": customers_raw, "events": events_raw, "tables": tables,
            "artifact": run.artifact}


@functools.lru_cache(maxsize=1)
def served_with_inputs() -> Any:
    from churnlens.api import build_state

    model = trained_with_inputs()
    return build_state(model["artifact"], model["clean"], AS_OF, inputs=model["tables"])


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    return trained_with_inputs()


@pytest.fixture(scope="module")
def state() -> Any:
    return served_with_inputs()


@pytest.fixture
def client(state: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.delenv(API_KEYS_ENV, raising=False)
    monkeypatch.delenv(ALLOWED_HOSTS_ENV, raising=False)
    with TestClient(create_app(lambda: state, initial=state)) as c:
        yield c


def _plain(value: Any) -> Any:
    """A cell as JSON: missing -> None, NumPy numbers -> Python numbers."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def customer_body(model: dict[str, Any], customer_id: Any, as_of: str = AS_OF
                  ) -> dict[str, Any]:
    """A customer of the request as the batch path sees them: every purchase, the row of
    the customer table valid at ``as_of`` and every event (JSON types as a client sends)."""
    from churnlens._inputs import attributes_at

    raw = model["raw"]
    rows = raw.loc[raw["customer_id"] == customer_id]
    attributes = attributes_at(model["tables"].customers, as_of).set_index("customer_id")
    events = model["events"].loc[model["events"]["customer_id"] == customer_id]
    return {
        "customer_id": customer_id,
        "purchases": [{"timestamp": pd.Timestamp(row.timestamp).isoformat(),
                       "amount": float(row.amount),
                       **{c: _plain(getattr(row, c)) for c in DETAILS}}
                      for row in rows.itertuples()],
        "attributes": ({name: _plain(value) for name, value in
                        attributes.loc[customer_id].items()}
                       if customer_id in attributes.index else {}),
        "events": [{"timestamp": pd.Timestamp(ts).isoformat(), "event_type": kind,
                    "value": _plain(value)}
                   for ts, kind, value in zip(events["timestamp"], events["event_type"],
                                              events["value"], strict=True)],
    }


def some_customers(state: Any, n: int) -> list[Any]:
    """Customers spread over the risk range (every k-th of the riskiest-first order)."""
    ranked = state.scores.sort_values("churn_risk", kind="stable")["customer_id"].tolist()
    step = max(1, len(ranked) // n)
    return ranked[::step][:n]


def approx_floats(value: Any) -> Any:
    """``value`` with every float wrapped in ``pytest.approx`` (relative 1e-12)."""
    if isinstance(value, dict):
        return {k: approx_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [approx_floats(v) for v in value]
    return pytest.approx(value, rel=1e-12) if isinstance(value, float) else value


def _reasons(row: Any) -> list[str]:
    return [r for r in (row["reason_1"], row["reason_2"], row["reason_3"]) if r]


# --- the request's tables: the batch path's input features ----------------------------


def test_the_requests_input_features_are_the_batch_paths() -> None:
    """Every input group (details, events, attributes, calendar) computed from a request
    (its purchases with their optional columns, attributes and events, keyed by position)
    equals the batch path's features of the same customers (no model needed)."""
    import datetime as dt

    from churnlens import load_transactions
    from churnlens._features import compute_features
    from churnlens._input_features import InputTables, learn_input_spec, with_input_features
    from churnlens._inputs import attributes_at, load_customers, load_events
    from churnlens._loading import clean_values
    from churnlens._online import FeatureQuery
    from churnlens.api.schemas import ScoreRequest
    from churnlens.api.scoring import (
        ScoreJob,
        _joined,
        _request_inputs,
        _with_details,
        check_inputs,
    )

    raw, customers, events = generate_inputs_for_test(details=True)
    details = ("order_id", "quantity", "category", "channel", "discount")
    clean = load_transactions(raw, **{f"{c.split('_')[0]}_col": c for c in details}
                              ).transactions
    tables = InputTables(customers=load_customers(customers, valid_from_col="valid_from"),
                         events=load_events(events, value_col="value"))
    spec = learn_input_spec(clean, tables, as_of=AS_OF, horizon_days=91)
    assert spec.groups == ("details", "events", "attributes", "calendar")
    windows = (30, 90, 180, 365)
    batch = with_input_features(compute_features(clean, AS_OF, windows_days=windows), spec,
                                tables, clean, date_column="as_of").set_index("customer_id")
    ids = batch.index[::7].tolist()
    valid = attributes_at(tables.customers, AS_OF).set_index("customer_id")
    body = {"as_of": AS_OF, "customers": [{
        "customer_id": cid,
        "purchases": [{"timestamp": pd.Timestamp(r.timestamp).isoformat(),
                       "amount": float(r.amount),
                       **{c: _plain(getattr(r, c)) for c in details}}
                      for r in raw.loc[raw["customer_id"] == cid].itertuples()],
        "attributes": {k: _plain(v) for k, v in valid.loc[cid].items()},
        "events": [{"timestamp": pd.Timestamp(t).isoformat(), "event_type": k,
                    "value": _plain(v)} for t, k, v in
                   events.loc[events["customer_id"] == cid,
                              ["timestamp", "event_type", "value"]].itertuples(index=False)],
    } for cid in ids]}
    request = ScoreRequest.model_validate(body)
    assert check_inputs(request, spec) == []
    job = ScoreJob(state=None, request=request, reasons=True, purchases=0)  # type: ignore[arg-type]
    keys = [k for k, c in enumerate(request.customers) for _ in c.purchases]
    _, stamps, _ = clean_values(timestamps=pd.Series(
        [p.timestamp for c in request.customers for p in c.purchases], dtype=object))
    assert stamps is not None
    purchases = pd.DataFrame({
        "customer_key": np.asarray(keys, dtype=np.int64),
        "timestamp": stamps.to_numpy(dtype="datetime64[us]"),
        "amount": [p.amount for c in request.customers for p in c.purchases]})
    compute = _joined(FeatureQuery(), spec, _request_inputs([job], spec),
                      _with_details(purchases, [job], spec))
    online = compute(purchases.rename(columns={"customer_key": "customer_id"}),
                     dt.date.fromisoformat(AS_OF), windows_days=windows)
    online["customer_id"] = [ids[k] for k in online["customer_id"]]
    online = online.set_index("customer_id").loc[ids]
    for name in spec.feature_names():
        got, want = online[name], batch.loc[ids, name]
        if name in spec.categorical_features():
            assert got.astype(object).tolist() == want.astype(object).tolist(), name
        else:
            np.testing.assert_allclose(got.astype(float), want.astype(float), rtol=0,
                                       atol=1e-12, err_msg=name)


def generate_inputs_for_test(*, details: bool = False) -> Any:
    from churnlens._synthetic import generate_inputs

    return generate_inputs(300, seed=SEED, start="2022-07-01", end=AS_OF, details=details)


# --- the model and the served base ------------------------------------------------------


def test_the_model_uses_attributes_and_events(model: dict[str, Any], state: Any) -> None:
    from churnlens._input_features import spec_of

    spec = spec_of(model["artifact"].model)
    assert spec.groups == ("details", "events", "attributes", "calendar")
    assert spec.requires_customers and spec.requires_events
    assert dict(spec.attributes)["channel"] == ("app", "store", "web")
    assert dict(spec.attributes)["age"] is None  # numeric
    assert "attr_channel" in model["artifact"].feature_names
    assert state.input_spec == spec
    # the scored base keeps the attributes valid at the as-of date, as columns
    assert {"channel", "region", "age", "plan"} <= set(state.scores.columns)


# --- POST /score: the batch path's scores --------------------------------------------


def test_score_with_attributes_and_events_equals_the_batch_path(
        client: TestClient, model: dict[str, Any], state: Any) -> None:
    """Sending a customer's purchases (with their optional columns), attributes and
    events gives the score the batch path (score_customers with the customer and event
    tables) gives, reasons included: every input group of the model."""
    ids = some_customers(state, 30)
    body = {"as_of": AS_OF, "customers": [customer_body(model, cid) for cid in ids]}
    assert sum(len(c["events"]) for c in body["customers"]) > 100
    assert any(c["attributes"].get("plan") == "plus" for c in body["customers"])
    answer = client.post("/score", json=body)
    assert answer.status_code == 200, answer.text
    payload = answer.json()
    assert payload["unscored"] == [] and payload["warnings"] == []
    assert [r["customer_id"] for r in payload["results"]] == ids
    stored = state.scores.set_index("customer_id").loc[ids]
    for result, (_, row) in zip(payload["results"], stored.iterrows(), strict=True):
        assert abs(result["churn_risk"] - row["churn_risk"]) <= 1e-12, result["customer_id"]
        assert result["risk_band"] == row["risk_band"]
        assert result["reasons"] == _reasons(row)
    # the inputs matter: the same purchases without the email opens score differently
    quiet = {"as_of": AS_OF, "customers": [
        {**c, "events": [e for e in c["events"] if e["event_type"] != "email_open"]}
        for c in body["customers"]]}
    changed = client.post("/score", json=quiet).json()["results"]
    assert any(abs(a["churn_risk"] - b["churn_risk"]) > 1e-6
               for a, b in zip(changed, payload["results"], strict=True))


def test_a_customer_without_events_scores_as_in_the_batch_path(
        client: TestClient, model: dict[str, Any], state: Any) -> None:
    """``events: []`` is "no event", as a customer missing from the event table; a batch
    of such customers only has no event at all."""
    from churnlens._inputs import CleanEvents
    from churnlens._scoring import score_customers

    ids = some_customers(state, 3)
    tables = model["tables"]
    kept = tables.events.events.loc[~tables.events.events["customer_id"].isin(ids)]
    without = dataclasses.replace(tables, events=CleanEvents(kept, tables.events.report))
    batch = score_customers(model["clean"], AS_OF, model["artifact"], allow_past=True,
                            inputs=without).scores.set_index("customer_id").loc[ids]
    body = {"as_of": AS_OF, "customers": [{**customer_body(model, cid), "events": []}
                                          for cid in ids]}
    results = client.post("/score", json=body).json()["results"]
    for result, (_, row) in zip(results, batch.iterrows(), strict=True):
        assert abs(result["churn_risk"] - row["churn_risk"]) <= 1e-12
        assert result["reasons"] == _reasons(row)


def test_requests_batched_together_get_their_own_inputs(model: dict[str, Any],
                                                        state: Any) -> None:
    """Requests micro-batched together (one table of attributes and events for the
    batch, keyed by position) answer exactly as each alone; a request whose customers
    sent no event shares the batch with one whose customers did."""
    import json

    from churnlens._online import FeatureQuery
    from churnlens.api.schemas import ScoreRequest
    from churnlens.api.scoring import ScoreJob, score_jobs

    ids = some_customers(state, 6)
    bodies = [
        {"as_of": AS_OF, "customers": [customer_body(model, c) for c in ids[:3]]},
        {"as_of": AS_OF, "customers": [{**customer_body(model, c), "events": []}
                                       for c in ids[3:5]]},
        {"as_of": AS_OF, "customers": [customer_body(model, ids[5]),
                                       {**customer_body(model, ids[0]),
                                        "attributes": {"channel": "app"}}]},
    ]
    jobs = [ScoreJob(state=state, request=ScoreRequest.model_validate(b), reasons=True,
                     purchases=1) for b in bodies]
    query = FeatureQuery()
    try:
        together = score_jobs(jobs, query)
        alone = [score_jobs([job], query)[0] for job in jobs]
    finally:
        query.close()
    # (as tests/test_api.py's batching test: the model's sums over a batch round alike
    # to 1e-12, not bit for bit)
    answers = [json.loads(a) for a in together]  # (bytes: no job failed)
    assert answers == [approx_floats(json.loads(a)) for a in alone]
    assert [len(a["results"]) for a in answers] == [3, 2, 2]
    stored = state.scores.set_index("customer_id")
    assert answers[0]["results"][0]["churn_risk"] == pytest.approx(
        stored.loc[ids[0], "churn_risk"], abs=1e-12)


def test_events_and_purchases_after_as_of_are_ignored(client: TestClient,
                                                      model: dict[str, Any],
                                                      state: Any) -> None:
    [cid] = some_customers(state, 1)
    customer = customer_body(model, cid)
    later = {**customer,
             "purchases": [*customer["purchases"], {
                 "timestamp": "2024-07-02", "amount": 50.0, "order_id": "late", "quantity": 1,
                 "category": "toys", "channel": "web", "discount": 0}],
             "events": [*customer["events"],
                        {"timestamp": "2024-07-01T00:00:00", "event_type": "email_open"},
                        {"timestamp": "2024-06-30T23:30:00-02:00",  # July 1st in UTC
                         "event_type": "site_visit", "value": 4}]}
    first = client.post("/score", json={"as_of": AS_OF, "customers": [customer]}).json()
    second = client.post("/score", json={"as_of": AS_OF, "customers": [later]}).json()
    assert second["results"] == first["results"]
    # while an event on the as-of day counts (its whole day included)
    same_day = {**customer, "events": [*customer["events"], {
        "timestamp": "2024-06-30T22:00:00", "event_type": "email_open"}]}
    third = client.post("/score", json={"as_of": AS_OF, "customers": [same_day]}).json()
    assert third["results"][0]["churn_risk"] != first["results"][0]["churn_risk"]


def test_unseen_categories_score_as_missing_and_are_named(client: TestClient,
                                                          model: dict[str, Any],
                                                          state: Any) -> None:
    [cid] = some_customers(state, 1)
    customer = customer_body(model, cid)
    unseen = {**customer, "attributes": {**customer["attributes"], "channel": "fax"}}
    missing = {**customer, "attributes": {**customer["attributes"], "channel": None}}
    answer = client.post("/score", json={"as_of": AS_OF, "customers": [unseen]}).json()
    expected = client.post("/score", json={"as_of": AS_OF, "customers": [missing]}).json()
    assert answer["results"] == expected["results"]
    assert expected["warnings"] == []
    [warning] = answer["warnings"]
    assert "customers[0]" in warning and "'channel'" in warning and "'fax'" in warning
    assert "scored as missing" in warning


def test_what_the_model_does_not_use_is_ignored_and_named(client: TestClient,
                                                          model: dict[str, Any],
                                                          state: Any) -> None:
    [cid] = some_customers(state, 1)
    customer = customer_body(model, cid)
    extra = {**customer, "attributes": {**customer["attributes"], "shoe_size": 42},
             "events": [*customer["events"],
                        {"timestamp": "2024-06-01", "event_type": "sms_click"}]}
    plain = client.post("/score", json={"as_of": AS_OF, "customers": [customer]}).json()
    answer = client.post("/score", json={"as_of": AS_OF, "customers": [extra]}).json()
    assert answer["results"] == plain["results"]
    assert len(answer["warnings"]) == 2
    assert "attributes not used by the model, ignored: 'shoe_size'" in answer["warnings"][0]
    assert "event types not used by the model, ignored: 'sms_click'" in answer["warnings"][1]


def test_a_model_with_inputs_needs_them_on_every_customer(client: TestClient,
                                                          model: dict[str, Any],
                                                          state: Any) -> None:
    ids = some_customers(state, 2)
    customers = [customer_body(model, cid) for cid in ids]
    for field, table in (("attributes", "a customer table"), ("events", "an event table")):
        lacking = [customers[0], {k: v for k, v in customers[1].items() if k != field}]
        answer = client.post("/score", json={"as_of": AS_OF, "customers": lacking})
        assert answer.status_code == 422
        [error] = answer.json()["detail"]
        assert error["loc"] == ["body", "customers", 1, field]
        assert f"the model was trained with {table}" in error["msg"]
        assert f"every customer needs '{field}'" in error["msg"]
        assert "Suggestion:" in error["msg"]


@pytest.mark.parametrize(("attributes", "where", "message"), [
    ({"age": "forty"}, "age", "attribute 'age' is numeric in the model"),
    ({"channel": 3}, "channel", "attribute 'channel' is categorical in the model"),
    ({"channel": True}, "channel", "Input should be"),
    ({"channel": "x" * 257}, "channel", "at most 256 characters"),
])
def test_attributes_of_the_wrong_type_are_422(client: TestClient, model: dict[str, Any],
                                              state: Any, attributes: dict[str, Any],
                                              where: str, message: str) -> None:
    [cid] = some_customers(state, 1)
    customer = customer_body(model, cid)
    customer["attributes"] = {**customer["attributes"], **attributes}
    answer = client.post("/score", json={"as_of": AS_OF, "customers": [customer]})
    assert answer.status_code == 422
    errors = answer.json()["detail"]
    assert any(message in e["msg"] and where in e["loc"] for e in errors), errors


@pytest.mark.parametrize("event", [
    {"timestamp": "2024-06-01", "event_type": "   "},
    {"timestamp": "2024-06-01", "event_type": ""},
    {"timestamp": "yesterday", "event_type": "email_open"},
    {"timestamp": "2024-06-01", "event_type": "email_open", "value": "three"},
    {"timestamp": "2024-06-01", "event_type": "email_open", "channel": "web"},
    {"timestamp": "2024-06-01"},
])
def test_bad_events_are_422(client: TestClient, model: dict[str, Any], state: Any,
                            event: dict[str, Any]) -> None:
    [cid] = some_customers(state, 1)
    customer = customer_body(model, cid)
    customer["events"] = [*customer["events"], event]
    answer = client.post("/score", json={"as_of": AS_OF, "customers": [customer]})
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"][:4] == ["body", "customers", 0, "events"]


def test_events_and_attributes_are_limited(state: Any, model: dict[str, Any]) -> None:
    from churnlens.api.schemas import MAX_ATTRIBUTES

    [cid] = some_customers(state, 1)
    customer = customer_body(model, cid)
    limits = ApiLimits(max_events=len(customer["events"]) - 1)
    with TestClient(create_app(lambda: state, initial=state, limits=limits)) as c:
        answer = c.post("/score", json={"as_of": AS_OF, "customers": [customer]})
        assert answer.status_code == 413
        assert answer.json()["detail"] == (f"at most {limits.max_events:,} events per "
                                           f"request, got {len(customer['events']):,}")
        many = {**customer, "events": [],
                "attributes": {f"a{i}": i for i in range(MAX_ATTRIBUTES + 1)}}
        answer = c.post("/score", json={"as_of": AS_OF, "customers": [many]})
        assert answer.status_code == 422
        assert answer.json()["detail"][0]["loc"] == ["body", "customers", 0, "attributes"]


def test_a_model_with_purchase_details_needs_them_on_every_purchase(
        client: TestClient, model: dict[str, Any], state: Any) -> None:
    """For a model trained with the transactions' optional columns, each purchase must
    carry them (null where unknown), else a 422 naming the first purchase without; bad
    values are refused by the loader's rules."""
    [cid] = some_customers(state, 1)
    customer = customer_body(model, cid)
    del customer["purchases"][1]["quantity"]
    answer = client.post("/score", json={"as_of": AS_OF, "customers": [customer]})
    assert answer.status_code == 422
    [error] = answer.json()["detail"]
    assert error["loc"] == ["body", "customers", 0, "purchases", 1, "quantity"]
    assert ("optional columns order_id, quantity, category, channel, discount: every "
            "purchase needs them") in error["msg"]
    assert "Suggestion:" in error["msg"]
    customer["purchases"][1]["quantity"] = None  # the loader refuses an empty quantity
    answer = client.post("/score", json={"as_of": AS_OF, "customers": [customer]})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["msg"].startswith("quantity is null")
    customer["purchases"][1].update(quantity=2.0, order_id=None, category=None, channel=None,
                                    discount=None)
    assert client.post("/score", json={"as_of": AS_OF, "customers": [customer]}
                       ).status_code == 200  # a missing order id, category, channel or discount
    customer["purchases"][1]["discount"] = -1.0
    answer = client.post("/score", json={"as_of": AS_OF, "customers": [customer]})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"][-1] == "discount"


@pytest.mark.slow  # (trains the model of api_support when run alone)
def test_a_model_without_inputs_ignores_them_and_says_so(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    from api_support import history_body, served, trained

    plain_state = served()
    _, clean, _ = trained()
    body = history_body(clean, plain_state.scores["customer_id"].head(2).tolist())
    richer = {**body, "customers": [
        {**c, "attributes": {"channel": "web"},
         "events": [{"timestamp": "2024-06-01", "event_type": "email_open"}],
         "purchases": [{**c["purchases"][0], "category": "toys"}, *c["purchases"][1:]]}
        for c in body["customers"]]}
    monkeypatch.delenv(API_KEYS_ENV, raising=False)
    with TestClient(create_app(lambda: plain_state, initial=plain_state)) as c:
        plain = c.post("/score", json=body).json()
        answer = c.post("/score", json=richer).json()
    assert answer["results"] == plain["results"] and plain["warnings"] == []
    assert answer["warnings"] == [
        "purchase columns not used by a model trained without richer inputs, ignored: "
        "'category' (2 purchases)",
        "attributes not used by a model trained without richer inputs, ignored: "
        "'channel' (2 customers)",
        "event types not used by a model trained without richer inputs, ignored: "
        "'email_open' (2 events)"]


def test_the_schema_documents_attributes_events_and_warnings(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    history = schema["CustomerHistory"]["properties"]
    assert {"attributes", "events"} <= set(history)
    assert schema["Event"]["required"] == ["timestamp", "event_type"]
    assert "warnings" in schema["ScoreResponse"]["properties"]
    assert {"attributes", "attribute_columns"} <= set(schema["AtRiskFacets"]["properties"])


@pytest.mark.slow
@pytest.mark.parametrize(("path", "method", "mode"), [
    ("/score", "POST", "positive"), ("/score", "POST", "negative"),
    ("/at-risk", "GET", "positive"), ("/at-risk", "GET", "negative"),
    ("/at-risk/facets", "GET", "positive")])
def test_responses_conform_to_the_schema_with_inputs(state: Any, path: str, method: str,
                                                     mode: str,
                                                     monkeypatch: pytest.MonkeyPatch
                                                     ) -> None:
    """Schemathesis on a model and a base with inputs: generated attributes, events and
    attribute filters never give a server error or an undocumented answer."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.generation import GenerationMode
    from test_api_schema import CHECKS, KEY, with_key

    monkeypatch.setenv(API_KEYS_ENV, KEY)  # as deployed (see test_api_schema.py)
    monkeypatch.delenv(ALLOWED_HOSTS_ENV, raising=False)
    schema = schemathesis.openapi.from_asgi("/openapi.json",
                                            create_app(lambda: state, initial=state))
    strategy = schema[path][method].as_strategy(generation_mode=GenerationMode(mode))
    calls: list[int] = []

    @given(case=strategy)
    @settings(max_examples=40, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case: Any) -> None:
        with_key(case)
        calls.append(case.call_and_validate(checks=CHECKS).status_code)

    check()
    assert calls and 500 not in calls


# --- the at-risk list: attribute columns and filters ----------------------------------


def _all_pages(client: TestClient, query: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        page = client.get(f"/at-risk?{query}&limit=97&offset={len(items)}")
        assert page.status_code == 200, page.text
        body = page.json()
        items += body["items"]
        if len(items) >= body["total"]:
            return items


def _ranked(scores: pd.DataFrame) -> list[Any]:
    return scores.sort_values(["churn_risk", "customer_id"], ascending=[False, True],
                              kind="mergesort")["customer_id"].tolist()


def test_the_list_carries_the_attributes_and_filters_on_them(client: TestClient,
                                                            state: Any) -> None:
    scores = state.scores
    everyone = _all_pages(client, "sort=churn_risk")
    assert {"channel", "region", "age", "plan"} <= set(everyone[0])
    web = _all_pages(client, "attribute=channel:web")
    expected = scores.loc[scores["channel"] == "web"]
    assert 0 < len(web) < len(scores)
    assert [i["customer_id"] for i in web] == _ranked(expected)
    assert {i["channel"] for i in web} == {"web"}
    # alternatives of one attribute, and all of several attributes, with the other filters
    both = _all_pages(client, "attribute=channel:web&attribute=channel:app"
                              "&attribute=plan:plus&band=high")
    expected = scores.loc[scores["channel"].isin(["web", "app"]) & (scores["plan"] == "plus")
                          & (scores["risk_band"] == "high")]
    assert [i["customer_id"] for i in both] == _ranked(expected)
    # the CSV of the same query is the list the pages show, attribute columns included
    text = client.get("/at-risk?attribute=channel:web&format=csv").text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["customer_id"] for r in rows] == [i["customer_id"] for i in web]
    assert {r["channel"] for r in rows} == {"web"} and "region" in rows[0]


@pytest.mark.parametrize(("query", "message"), [
    ("attribute=colour:red", "unknown attribute 'colour'"),
    ("attribute=age:40", "'age' is numeric"),
    ("attribute=channel", "is not name:value"),
    ("attribute=:web", "is not name:value"),
])
def test_bad_attribute_filters_are_422(client: TestClient, query: str, message: str) -> None:
    answer = client.get(f"/at-risk?{query}")
    assert answer.status_code == 422
    [error] = answer.json()["detail"]
    assert message in error["msg"] and error["loc"] == ["query", "attribute"]
    assert "channel, region, plan" in error["msg"]


def test_facets_count_the_attribute_values(client: TestClient, state: Any) -> None:
    facets = client.get("/at-risk/facets").json()
    scores = state.scores
    assert set(facets["attributes"]) == {"channel", "region", "plan"}  # categorical only
    for name, counts in facets["attributes"].items():
        expected = scores[name].value_counts()
        assert counts == {k: int(v) for k, v in expected.items()}
        assert list(counts.values()) == sorted(counts.values(), reverse=True)
    assert facets["attribute_columns"] == ["channel", "region", "age", "plan"]


# --- serve: the tables at start, a model that needs them ----------------------------


@pytest.fixture(scope="module")
def files(model: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from churnlens._artifact import save_bundle

    folder = tmp_path_factory.mktemp("inputs")
    paths = {"tx": folder / "tx.csv", "customers": folder / "customers.csv",
             "events": folder / "events.csv", "bundle": folder / "bundle"}
    model["raw"].to_csv(paths["tx"], index=False)
    model["customers"].to_csv(paths["customers"], index=False)
    model["events"].to_csv(paths["events"], index=False)
    save_bundle(model["artifact"], paths["bundle"])
    return paths


@pytest.mark.parametrize(("given", "lacking"), [
    ((), "--customers-file"), (("--customers-file",), "--events-file")])
def test_serve_refuses_a_model_that_needs_a_table_not_given(
        files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, given: tuple[str, ...],
        lacking: str) -> None:
    import uvicorn

    started: list[Any] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda *a, **k: started.append(a))
    options = []
    if "--customers-file" in given:
        options += ["--customers-file", str(files["customers"]), "--valid-from-col",
                    "valid_from"]
    result = CliRunner().invoke(cli_app, [
        "serve", "--transactions", str(files["tx"]), "--model", str(files["bundle"]),
        "--port", str(free_port()), *options])
    assert result.exit_code == 2, result.output
    assert "trained with" in result.stderr and lacking in result.stderr
    assert "Suggestion:" in result.stderr and not started


@pytest.mark.slow
def test_serve_with_the_tables_lists_and_filters_their_attributes(
        files: dict[str, Path], state: Any) -> None:
    """``churnlens serve --customers-file --events-file`` end to end."""
    import httpx

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in (API_KEYS_ENV, ALLOWED_HOSTS_ENV)}
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "churnlens"), "serve", "--transactions",
         str(files["tx"]), "--model", str(files["bundle"]), "--port", str(port),
         "--as-of", AS_OF, "--customers-file", str(files["customers"]), "--valid-from-col",
         "valid_from", "--events-file", str(files["events"]), "--event-value-col", "value",
         "--no-ledger", *[f"--{c.split('_')[0]}-col={c}" for c in DETAILS]],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_serving(process, port)
        url = f"http://127.0.0.1:{port}"
        page = httpx.get(f"{url}/at-risk", params={"attribute": "channel:app",
                                                   "limit": 10_000}, timeout=30).json()
        facets = httpx.get(f"{url}/at-risk/facets", timeout=30).json()
        [cid] = some_customers(state, 1)
        answer = httpx.post(f"{url}/score", json={
            "as_of": AS_OF, "customers": [customer_body(trained_with_inputs(), cid)]},
            timeout=30).json()
    finally:
        process.terminate()
        process.communicate(timeout=30)
    scores = state.scores
    assert [i["customer_id"] for i in page["items"]] == _ranked(
        scores.loc[scores["channel"] == "app"])
    assert facets["attributes"]["channel"] == {
        k: int(v) for k, v in scores["channel"].value_counts().items()}
    stored = scores.set_index("customer_id").loc[cid]
    assert abs(answer["results"][0]["churn_risk"] - stored["churn_risk"]) <= 1e-12


# --- the web page: a filter per categorical attribute -----------------------------------


@pytest.mark.browser
@pytest.mark.slow
def test_the_web_list_filters_on_the_attributes_and_shows_them(state: Any) -> None:
    scores = state.scores
    app = create_app(lambda: state, initial=state)
    with chromium_browser() as browser, serve_open(app) as base_url, \
            offline_page(browser) as tab:
        page = tab.page
        page.goto(f"{base_url}/#/at-risk", wait_until="load")
        page.wait_for_selector('body[data-ready="at-risk"]', timeout=30_000)
        options = page.locator('select[name="attribute-channel"] option').evaluate_all(
            "options => options.map(o => o.value)")
        headers = page.locator("#at-risk-table thead th").all_inner_texts()
        page.select_option('select[name="attribute-channel"]', "web")
        page.wait_for_function("() => document.body.dataset.ready === 'at-risk' && "
                               "location.hash.includes('attribute=channel')")
        total = int(page.locator("#count").get_attribute("data-total") or -1)
        shown = page.locator("#at-risk-table tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.customer)")
        channels = set(page.locator(
            '#at-risk-table tbody td[data-attribute-column="channel"]').all_inner_texts())
        selected = page.locator('select[name="attribute-channel"]').input_value()
        download = page.locator("#download").get_attribute("href")
        IMAGES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(IMAGES / "web-at-risk-attributes.png"), full_page=True)
        # a second attribute keeps the first
        page.select_option('select[name="attribute-plan"]', "plus")
        page.wait_for_function("() => document.body.dataset.ready === 'at-risk' && "
                               "location.hash.includes('attribute=plan')")
        both = int(page.locator("#count").get_attribute("data-total") or -1)
    tab.assert_clean()
    assert options == ["", *scores["channel"].value_counts().index.tolist()]
    assert {"channel", "region", "age", "plan"} <= set(headers)
    web = scores.loc[scores["channel"] == "web"]
    assert total == len(web) != len(scores)
    assert shown == _ranked(web)[:len(shown)] and channels == {"web"}
    assert selected == "web"
    assert download is not None and "attribute=channel%3Aweb" in download
    assert both == int(((scores["channel"] == "web") & (scores["plan"] == "plus")).sum())
