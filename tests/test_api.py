"""The HTTP API: every endpoint, its answers and its errors (FastAPI's TestClient).

The model is a small real one (``api_support.trained``: 600 synthetic customers, seed
3), trained once per test process.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from api_support import AS_OF, history_body, is_number, served, trained
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from churnlens import load_transactions
from churnlens._evaluation import predict_retention
from churnlens._retention import retention_rates
from churnlens._rules import at_risk_list
from churnlens._scoring import score_requests
from churnlens._value import VALUE_COLUMNS
from churnlens.api import API_KEYS_ENV, ApiLimits, ServingState, build_state, create_app
from churnlens.cli import app as cli_app
from churnlens.exceptions import DataValidationError, ModelError

KEY_A, KEY_B = "key-alpha-0123456789", "key-beta-9876543210"
JSON = {"Content-Type": "application/json"}  # every POST says it sends JSON (else 415)


@pytest.fixture(scope="module")
def model() -> tuple[pd.DataFrame, pd.DataFrame, Any]:
    return trained()


@pytest.fixture(scope="module")
def state(model: tuple[pd.DataFrame, pd.DataFrame, Any]) -> ServingState:
    return served()


@pytest.fixture(scope="module")
def client(state: ServingState) -> Any:
    with TestClient(create_app(lambda: state, initial=state)) as test_client:
        yield test_client


@pytest.fixture(autouse=True)
def _no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_KEYS_ENV, raising=False)


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_KEYS_ENV, f"{KEY_A}, {KEY_B}")


def some_customers(state: ServingState, n: int) -> list[Any]:
    """n customers of the base spread over the risk range (not just the riskiest)."""
    order = state.ranked["churn_risk"]
    picks = order[np.linspace(0, len(order) - 1, n).astype(int)]
    return [state.scores["customer_id"].iloc[i] for i in picks]


# --- security ---------------------------------------------------------------------

SECURED = [
    ("GET", "/model", None),
    ("POST", "/score", {"as_of": AS_OF, "customers": []}),
    ("GET", "/customers/nobody", None),
    ("GET", "/at-risk", None),
    ("GET", "/retention?start=2024-03-31&end=2024-06-30", None),
    ("GET", "/retention/outlook", None),
    ("GET", "/retention/backtest", None),
    ("POST", "/reload", {}),  # (POST needs Content-Type: application/json)
]


@pytest.mark.parametrize(("method", "url", "body"), SECURED)
def test_every_endpoint_but_health_needs_a_key(client: TestClient, keys: None, method: str,
                                               url: str, body: Any) -> None:
    missing = client.request(method, url, json=body)
    wrong = client.request(method, url, json=body, headers={"X-API-Key": KEY_A + "x"})
    prefix = client.request(method, url, json=body, headers={"X-API-Key": KEY_A[:-1]})
    assert (missing.status_code, wrong.status_code, prefix.status_code) == (401, 401, 401)
    assert missing.json() == {"detail": "missing or invalid X-API-Key header"}
    for key in (KEY_A, KEY_B):  # any configured key works
        ok = client.request(method, url, json=body, headers={"X-API-Key": key})
        assert ok.status_code != 401
        assert ok.status_code == (404 if url.startswith("/customers") else 200)


def test_health_needs_no_key(client: TestClient, keys: None, state: ServingState) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    payload = response.json()
    assert payload["status"] == "ok"
    assert payload["data_as_of"] == AS_OF
    assert payload["customers_scored"] == len(state.scores)
    assert payload["last_reload_error"] is None


def test_without_keys_configured_requests_need_none(client: TestClient) -> None:
    assert client.get("/model").status_code == 200


def test_serve_refuses_a_public_address_without_keys(tmp_path: Path) -> None:
    path = tmp_path / "tx.csv"
    trained()[0].to_csv(path, index=False)
    env = {k: v for k, v in os.environ.items() if k != API_KEYS_ENV}
    result = CliRunner().invoke(cli_app, ["serve", "--transactions", str(path), "--host",
                                          "0.0.0.0", "--model", str(tmp_path / "none")],
                                env=env)
    assert result.exit_code == 2
    assert "refusing to listen on 0.0.0.0 without API keys" in result.stderr
    result = CliRunner().invoke(cli_app, ["serve", "--transactions", str(path), "--host",
                                          "::", "--model", str(tmp_path / "none")], env=env)
    assert result.exit_code == 2


def test_no_request_field_is_a_path_or_a_model_uri(client: TestClient) -> None:
    """Every input the API reads, from the OpenAPI schema: none names a file or a model."""
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                walk(components[node["$ref"].rsplit("/", 1)[1]])
                return
            for key, value in node.get("properties", {}).items():
                names.add(key)
                walk(value)
            for key in ("items", "anyOf", "oneOf", "allOf"):
                if key in node:
                    walk(node[key])
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for path_item in schema["paths"].values():
        for operation in path_item.values():
            for parameter in operation.get("parameters", []):
                names.add(parameter["name"])
                assert parameter["schema"].get("format") not in ("uri", "path", "binary")
            body = operation.get("requestBody", {}).get("content", {})
            for media in body.values():
                walk(media["schema"])
    assert names == {
        "as_of", "customers", "customer_id", "purchases", "timestamp", "amount", "reasons",
        "allow_past", "limit", "offset", "min_risk", "segment", "band", "sort", "format",
        "start", "end", "window_days", "list",
        # the web page's reads (issue 18): search, value filter, control group, series
        "q", "min_value_at_risk", "control_fraction", "seed", "every",
        # lists sized by profit (issue 20)
        "cost_per_contact", "save_rate", "margin",
        # richer inputs (issue 21): a purchase's optional columns, a customer's
        # attributes and events, the list's attribute filter
        "order_id", "quantity", "category", "channel", "discount", "attributes", "events",
        "event_type", "value", "attribute",
    }
    forbidden = ("path", "file", "uri", "url", "model", "dir", "source", "location")
    assert not [n for n in names if any(word in n.lower() for word in forbidden)]
    assert schema["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"


# --- /model ---------------------------------------------------------------------------


def test_model_describes_the_loaded_model(client: TestClient, state: ServingState) -> None:
    payload = client.get("/model").json()
    artifact = state.artifact
    assert payload["horizon_days"] == artifact.horizon_days == 91
    assert payload["as_of"] == str(artifact.as_of)
    assert payload["features"] == artifact.feature_names
    assert payload["windows_days"] == list(artifact.windows_days)
    assert payload["metrics"]["churnlens"]["auc"] == pytest.approx(
        artifact.metrics["churnlens"]["auc"])
    assert [run["as_of"] for run in payload["backtest"]] == [
        str(run["as_of"]) for run in artifact.backtest["runs"]]


# --- /score -----------------------------------------------------------------------------


def test_score_equals_the_stored_scores_of_the_same_histories(
        client: TestClient, state: ServingState, model: Any) -> None:
    """Sending a base customer's whole history gives the base's score, reasons included."""
    _, clean, _ = model
    ids = some_customers(state, 25)
    response = client.post("/score", json=history_body(clean, ids))
    assert response.status_code == 200
    payload = response.json()
    assert payload["as_of"] == AS_OF and payload["horizon_days"] == 91
    assert [r["customer_id"] for r in payload["results"]] == ids  # request order
    assert payload["unscored"] == []
    stored = state.scores.set_index("customer_id").loc[ids]
    got = pd.DataFrame(payload["results"]).set_index("customer_id")
    np.testing.assert_allclose(got["churn_risk"], stored["churn_risk"], rtol=1e-9)
    np.testing.assert_allclose(got["value_at_risk"], stored["value_at_risk"], rtol=1e-9)
    np.testing.assert_allclose(got["expected_value"], stored["expected_value"], rtol=1e-9)
    for column in VALUE_COLUMNS:  # issue 20: null where the scores hold NaN
        assert got[column].isna().tolist() == stored[column].isna().tolist(), column
        np.testing.assert_allclose(got[column].astype(float), stored[column], rtol=1e-9,
                                   err_msg=column)
    assert stored["clv"].notna().all()
    assert got["risk_band"].tolist() == stored["risk_band"].tolist()
    assert got["recency_days"].tolist() == stored["recency_days"].tolist()
    assert got["frequency"].tolist() == stored["frequency"].tolist()
    expected_reasons = [[r for r in row if r] for row in
                        stored[["reason_1", "reason_2", "reason_3"]].itertuples(index=False)]
    assert got["reasons"].tolist() == expected_reasons
    assert any(got["reasons"].map(len) > 0)


def test_score_equals_the_library_on_new_customers(client: TestClient, state: ServingState
                                                   ) -> None:
    body = {"as_of": "2024-05-31", "customers": [
        {"customer_id": "new-1", "purchases": [
            {"timestamp": "2023-11-05", "amount": 30},
            {"timestamp": "2024-02-01T10:00:00+02:00", "amount": 45.5},
            {"timestamp": "2024-02-01T23:30:00-05:00", "amount": -5.5},  # next day in UTC
            {"timestamp": "2024-05-20 09:15:00", "amount": 12.0}]},
        {"customer_id": 42, "purchases": [{"timestamp": "2024-05-31T23:59:59", "amount": 9}]},
    ]}
    # (before the model's training as-of: a deliberate backfill)
    payload = client.post("/score?allow_past=true", json=body).json()
    frame = pd.DataFrame({
        "customer_id": ["new-1"] * 4 + ["42"],
        "timestamp": pd.to_datetime(["2023-11-05", "2024-02-01 08:00", "2024-02-02 04:30",
                                     "2024-05-20 09:15", "2024-05-31 23:59:59"],
                                    format="ISO8601"),
        "amount": [30.0, 45.5, -5.5, 12.0, 9.0],
    })
    expected = library_scores(frame, "2024-05-31", state)
    assert [r["customer_id"] for r in payload["results"]] == ["new-1", 42]  # ids as sent
    for result, cid in zip(payload["results"], ["new-1", "42"], strict=True):
        row = expected[cid]
        assert result["churn_risk"] == pytest.approx(row.churn_risk, rel=1e-9)
        assert result["frequency"] == row.frequency
        assert result["recency_days"] == row.recency_days
        assert result["reasons"] == row.reasons
    assert payload["results"][0]["frequency"] == 3  # the refund-only UTC day is no occasion
    assert payload["results"][1]["recency_days"] == 0


def library_scores(transactions: pd.DataFrame, as_of: str, state: ServingState
                   ) -> dict[Any, Any]:
    """The library's scores of these clean transactions, as one request, by customer id."""
    keys, ids = pd.factorize(transactions["customer_id"])
    purchases = pd.DataFrame({"customer_key": keys.astype(np.int64),
                              "timestamp": transactions["timestamp"].to_numpy(),
                              "amount": transactions["amount"].to_numpy()})
    [answer] = score_requests(purchases, [ids.tolist()], dt.date.fromisoformat(as_of),
                              state.artifact, offset_center=state.offset_center)
    return {r.customer_id: r for r in answer.results}


def test_purchases_after_as_of_are_ignored(client: TestClient) -> None:
    base = [{"timestamp": "2023-12-01", "amount": 20}, {"timestamp": "2024-03-01", "amount": 35},
            {"timestamp": "2024-06-30T23:59:59", "amount": 10}]
    later = [{"timestamp": "2024-07-01T00:00:00", "amount": 500},
             {"timestamp": "2025-01-01", "amount": 80}, {"timestamp": "2024-07-02", "amount": -3}]

    def one(purchases: list[dict[str, Any]]) -> dict[str, Any]:
        body = {"as_of": AS_OF, "customers": [{"customer_id": "c", "purchases": purchases}]}
        return client.post("/score", json=body).json()["results"][0]

    without = one(base)
    assert one(base + later) == without
    assert one(later + base) == without
    assert without["recency_days"] == 0  # the as-of day itself counts


def test_customers_without_a_purchase_by_as_of_are_unscored(client: TestClient) -> None:
    body = {"as_of": AS_OF, "customers": [
        {"customer_id": "future", "purchases": [{"timestamp": "2024-07-01", "amount": 10}]},
        {"customer_id": "ok", "purchases": [{"timestamp": "2024-01-01", "amount": 10}]},
        {"customer_id": "nothing", "purchases": []},
        {"customer_id": 7, "purchases": [{"timestamp": "2024-01-01", "amount": -10}]},
        {"customer_id": "zero", "purchases": [{"timestamp": "2024-01-01", "amount": 10},
                                              {"timestamp": "2024-01-01", "amount": -10}]},
    ]}
    payload = client.post("/score", json=body).json()
    assert [r["customer_id"] for r in payload["results"]] == ["ok"]
    assert [u["customer_id"] for u in payload["unscored"]] == ["future", "nothing", 7, "zero"]
    assert all(u["reason"] == "no purchase occasion (positive net amount) on or before "
               "2024-06-30" for u in payload["unscored"])


def test_score_without_customers_or_without_reasons(client: TestClient, model: Any,
                                                    state: ServingState) -> None:
    empty = client.post("/score", json={"as_of": AS_OF, "customers": []}).json()
    assert empty["results"] == [] and empty["unscored"] == []
    body = history_body(model[1], some_customers(state, 5))
    with_reasons = client.post("/score", json=body).json()["results"]
    without = client.post("/score?reasons=false", json=body).json()["results"]
    assert all(r["reasons"] == [] for r in without)
    assert [r["churn_risk"] for r in without] == approx_floats(
        [r["churn_risk"] for r in with_reasons])


def test_score_answers_the_same_on_the_direct_path_as_through_the_framework(
        client: TestClient, model: Any, state: ServingState, keys: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain /score requests skip FastAPI's machinery (see churnlens.api.fast_score) and
    fall back to it on any error; ``?reasons=True`` (not a plain form) always takes the
    framework's path. Both give the same answers: successes, wrong keys, bad bodies,
    duplicates."""
    direct_calls: list[str] = []
    original = client.app.score_direct

    async def counted(scope: Any, *args: Any) -> None:
        direct_calls.append(scope["query_string"].decode())
        await original(scope, *args)

    monkeypatch.setattr(client.app, "score_direct", counted)
    good = json.dumps(history_body(model[1], some_customers(state, 3))).encode()
    doubled = json.loads(good)
    doubled["customers"].append(doubled["customers"][0])
    cases = [
        (good, KEY_A), (good, KEY_B), (good, None), (good, "wrong"),
        (b'{"as_of": "2024-06-30", "customers": [], "extra": 1}', KEY_A),
        (b'{"as_of": "2024-06-30", "customers": [{"customer_id": true}]}', KEY_A),
        (b"not json", KEY_A), (b"", KEY_A), (json.dumps(doubled).encode(), KEY_A),
        # the loader's rules: an id read as missing, an amount and a timestamp it refuses
        (json.dumps(score_body([("NA", "2024-05-01", 1.0), ("b", "2024-05-01", 2.0)])
                    ).encode(), KEY_A),
        (json.dumps(score_body([("a", "2024-05-01", 1e12)])).encode(), KEY_A),
        (json.dumps(score_body([("a", "2024-05-01T10:00:00,5", 1.0)])).encode(), KEY_A),
        # an as_of before the model's training as-of (the CLI's refusal)
        (b'{"as_of": "2024-05-31", "customers": []}', KEY_A),
    ]
    for body, key in cases:
        headers = {"Content-Type": "application/json", **({"X-API-Key": key} if key else {})}
        direct = client.post("/score", content=body, headers=headers)
        framework = client.post("/score?reasons=True", content=body, headers=headers)
        assert direct.status_code == framework.status_code, (body[:60], key)
        assert direct.json() == framework.json(), (body[:60], key)
        assert direct.headers["content-type"] == framework.headers["content-type"]
    assert direct_calls == [""] * len(cases)  # plain ones only, each tried directly once


def test_concurrent_requests_are_batched_and_answered_as_alone(
        state: ServingState, model: Any) -> None:
    """Requests scored together in one batch get exactly what they get alone."""
    app = create_app(lambda: state, initial=state)
    ids = some_customers(state, 24)
    bodies = [history_body(model[1], ids[i: i + 3]) for i in range(0, 24, 3)]
    bodies.append({"as_of": "2024-05-31", "customers": [  # another as-of in the same batch
        {"customer_id": ids[0], "purchases": [{"timestamp": "2024-05-01", "amount": 5}]}]})
    bodies.append(history_body(model[1], ids[:2]))  # the same ids as another request

    async def send_all() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            url = "/score?allow_past=true"  # (one as_of is before the model's)
            together = await asyncio.gather(*(http.post(url, json=b) for b in bodies))
            alone = [await http.post(url, json=b) for b in bodies]
        return [*together, *alone]

    responses = asyncio.run(send_all())
    assert all(r.status_code == 200 for r in responses)
    together, alone = responses[: len(bodies)], responses[len(bodies):]
    # Equal up to the last bit of the model's floating-point sums (BLAS blocks the
    # matrix products differently for other batch sizes); reasons and bands exactly.
    assert [r.json() for r in together] == [approx_floats(r.json()) for r in alone]
    batcher = app.state.batcher
    assert batcher.items == 2 * len(bodies)
    assert batcher.batches < 2 * len(bodies)  # some requests did share a batch


def approx_floats(value: Any) -> Any:
    """``value`` with every float wrapped in ``pytest.approx`` (relative 1e-12)."""
    if isinstance(value, dict):
        return {k: approx_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [approx_floats(v) for v in value]
    if isinstance(value, float):
        return pytest.approx(value, rel=1e-12, abs=1e-15)
    return value


def test_the_app_scores_again_after_a_restart(state: ServingState) -> None:
    app = create_app(lambda: state, initial=state)
    body = {"as_of": AS_OF, "customers": [
        {"customer_id": "a", "purchases": [{"timestamp": "2024-01-01", "amount": 5}]}]}
    answers = []
    for _ in range(3):  # start-up, shut-down (connections closed), start-up again
        with TestClient(app) as restarted:
            answers.append(restarted.post("/score", json=body))
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert answers[2].json() == approx_floats(answers[0].json())


def test_large_requests_are_scored_alone_with_the_same_result(
        client: TestClient, model: Any, state: ServingState) -> None:
    body = history_body(model[1], some_customers(state, 6))
    batched = client.post("/score", json=body).json()
    # parsed and checked in a worker thread too
    limits = ApiLimits(batch_purchases=2, inline_body_bytes=10)
    with TestClient(create_app(lambda: state, initial=state, limits=limits)) as small:
        alone = small.post("/score", json=body).json()
    assert alone == approx_floats(batched)


def test_too_many_customers_is_413(client: TestClient) -> None:
    customers = [{"customer_id": i, "purchases": []} for i in range(10_001)]
    response = client.post("/score", json={"as_of": AS_OF, "customers": customers})
    assert response.status_code == 413
    assert response.json() == {"detail": "at most 10,000 customers per request, got 10,001"}
    ok = client.post("/score", json={"as_of": AS_OF, "customers": customers[:10_000]})
    assert ok.status_code == 200
    assert len(ok.json()["unscored"]) == 10_000


@pytest.mark.slow
def test_too_many_purchases_is_413(client: TestClient) -> None:
    purchase = b'{"timestamp":"2024-01-01","amount":1},'
    half = 500_001
    body = (b'{"as_of":"2024-06-30","customers":[{"customer_id":"a","purchases":['
            + purchase * (half - 1) + purchase[:-1] + b']},{"customer_id":"b","purchases":['
            + purchase * (half - 1) + purchase[:-1] + b"]}]}")
    response = client.post("/score", content=body,
                           headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json() == {"detail": "at most 1,000,000 purchases per request, got "
                                         "1,000,002"}


def test_a_body_over_the_size_limit_is_413(state: ServingState) -> None:
    limits = ApiLimits(max_body_bytes=1000)
    with TestClient(create_app(lambda: state, initial=state, limits=limits)) as small:
        body = {"as_of": AS_OF, "customers": [{"customer_id": "x" * 200, "purchases": []},
                                              {"customer_id": "y" * 900, "purchases": []}]}
        declared = small.post("/score", json=body)
        assert declared.status_code == 413

        def chunks() -> Any:  # no content-length: counted as it streams
            yield json.dumps(body)[:600].encode()
            yield json.dumps(body)[600:].encode()

        streamed = small.post("/score", content=chunks(),
                              headers={"content-type": "application/json"})
        assert streamed.status_code == 413
        assert small.post("/score", json={"as_of": AS_OF, "customers": []}).status_code == 200


GOOD_PURCHASE = {"timestamp": "2024-01-01", "amount": 10.0}


def with_purchase(**changes: Any) -> dict[str, Any]:
    return {"as_of": AS_OF, "customers": [
        {"customer_id": "a", "purchases": [{**GOOD_PURCHASE, **changes}]}]}


@pytest.mark.parametrize(("body", "where"), [
    ({"as_of": AS_OF, "customers": [], "model": "models:/x@y"}, ["body", "model"]),
    ({"as_of": AS_OF, "customers": [{"customer_id": "a", "purchases": [],
                                     "path": "/etc/passwd"}]},
     ["body", "customers", 0, "path"]),
    (with_purchase(store=2), ["body", "customers", 0, "purchases", 0, "store"]),
    (with_purchase(quantity="2"), ["body", "customers", 0, "purchases", 0, "quantity"]),
    (with_purchase(discount=-1.0), ["body", "customers", 0, "purchases", 0, "discount"]),
    (with_purchase(amount=True), ["body", "customers", 0, "purchases", 0, "amount"]),
    (with_purchase(amount="12.5"), ["body", "customers", 0, "purchases", 0, "amount"]),
    (with_purchase(amount=None), ["body", "customers", 0, "purchases", 0, "amount"]),
    (with_purchase(amount=1e13), ["body", "customers", 0, "purchases", 0, "amount"]),
    (with_purchase(timestamp=1704067200), ["body", "customers", 0, "purchases", 0,
                                           "timestamp"]),
    (with_purchase(timestamp=1704067200.5), ["body", "customers", 0, "purchases", 0,
                                             "timestamp"]),
    (with_purchase(timestamp="1704067200"), ["body", "customers", 0, "purchases", 0,
                                             "timestamp"]),
    (with_purchase(timestamp="20240101"), ["body", "customers", 0, "purchases", 0,
                                           "timestamp"]),
    (with_purchase(timestamp="2024-02-30"), ["body", "customers", 0, "purchases", 0,
                                             "timestamp"]),
    (with_purchase(timestamp="yesterday"), ["body", "customers", 0, "purchases", 0,
                                            "timestamp"]),
    (with_purchase(timestamp="1500-01-01"), ["body", "customers", 0, "purchases", 0,
                                             "timestamp"]),
    (with_purchase(timestamp="0001-01-01T00:00:00+01:00"),
     ["body", "customers", 0, "purchases", 0, "timestamp"]),
    ({"as_of": "2024-06-31", "customers": []}, ["body", "as_of"]),
    ({"as_of": "2024-06-30T10:00:00", "customers": []}, ["body", "as_of"]),
    ({"as_of": 20240630, "customers": []}, ["body", "as_of"]),
    ({"as_of": "9999-12-31", "customers": []}, ["body", "as_of"]),
    ({"customers": []}, ["body", "as_of"]),
    ({"as_of": AS_OF, "customers": {"a": []}}, ["body", "customers"]),
    ({"as_of": AS_OF, "customers": [{"customer_id": True, "purchases": []}]},
     ["body", "customers", 0, "customer_id"]),
    ({"as_of": AS_OF, "customers": [{"customer_id": 1.5, "purchases": []}]},
     ["body", "customers", 0, "customer_id"]),
    ({"as_of": AS_OF, "customers": [{"customer_id": "", "purchases": []}]},
     ["body", "customers", 0, "customer_id"]),
    ({"as_of": AS_OF, "customers": [{"customer_id": "a", "purchases": []},
                                    {"customer_id": "b", "purchases": []},
                                    {"customer_id": "a", "purchases": []}]},
     ["body", "customers", 2, "customer_id"]),
    ({"as_of": AS_OF, "customers": [{"customer_id": 1, "purchases": []},
                                    {"customer_id": "1", "purchases": []}]},
     ["body", "customers", 1, "customer_id"]),
])
def test_invalid_score_requests_are_422(client: TestClient, body: Any, where: list[Any]
                                        ) -> None:
    response = client.post("/score", json=body)
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(e["loc"][: len(where)] == where for e in errors), errors
    assert all({"loc", "msg", "type"} <= set(e) for e in errors)


@pytest.mark.parametrize("raw", [
    b"not json", b"\x80\xff", b"[]", b"",
    b'{"as_of": "2024-06-30", "customers": [{"customer_id": "a", "purchases": '
    b'[{"timestamp": "2024-01-01", "amount": NaN}]}]}',
    b'{"as_of": "2024-06-30", "customers": [{"customer_id": "a", "purchases": '
    b'[{"timestamp": "2024-01-01", "amount": 1e400}]}]}',
])
def test_malformed_score_bodies_are_422(client: TestClient, raw: bytes) -> None:
    response = client.post("/score", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], list)


# --- /score: the loader's data contract ---------------------------------------------


def loaded(rows: list[tuple[Any, str, float]]) -> Any:
    """``churnlens.load_transactions`` of these (customer_id, timestamp, amount) rows."""
    frame = pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount"], dtype=object)
    frame["amount"] = frame["amount"].astype(float)
    return load_transactions(frame, as_of=AS_OF)


def score_body(rows: list[tuple[Any, str, float]]) -> dict[str, Any]:
    """The same rows as a ``POST /score`` body (customers in order of first appearance)."""
    customers: dict[Any, list[dict[str, Any]]] = {}
    for customer_id, timestamp, amount in rows:
        customers.setdefault(customer_id, []).append({"timestamp": timestamp, "amount": amount})
    return {"as_of": AS_OF, "customers": [{"customer_id": c, "purchases": p}
                                           for c, p in customers.items()]}


@pytest.mark.parametrize("missing", ["NA", "na", "N/A", "#N/A", "null", "None", "nan", " "])
def test_an_id_the_loader_reads_as_missing_is_dropped_as_by_the_loader(
        client: TestClient, missing: str) -> None:
    rows = [(missing, "2024-05-01", 10.0), ("C1", "2024-05-02", 12.0),
            (missing, "2024-06-01", 30.0)]
    expected = loaded(rows)
    assert expected.report.dropped_missing_customer_id == 2
    payload = client.post("/score", json=score_body(rows)).json()
    assert [r["customer_id"] for r in payload["results"]] == (
        expected.transactions["customer_id"].unique().tolist()) == ["C1"]
    assert payload["unscored"] == [{
        "customer_id": missing,
        "reason": f"missing customer id: {missing!r} reads as a missing value, and "
                  "load_transactions drops the rows of such ids"}]


def test_ids_the_loader_keeps_are_scored(client: TestClient) -> None:
    rows = [("NAN-7", "2024-05-01", 10.0), ("0042", "2024-05-01", 10.0),
            (42, "2024-05-01", 10.0), ("nana", "2024-05-01", 10.0)]
    kept = loaded(rows).transactions["customer_id"].tolist()  # mixed ids: as text
    payload = client.post("/score", json=score_body(rows)).json()
    assert [str(r["customer_id"]) for r in payload["results"]] == kept == [
        "NAN-7", "0042", "42", "nana"]
    assert payload["results"][2]["customer_id"] == 42  # answered as sent
    assert payload["unscored"] == []


def test_timestamps_with_a_utc_offset_are_converted_as_by_the_loader(
        client: TestClient, state: ServingState) -> None:
    """Offsets are converted to UTC before the as-of cut, exactly as the loader does:
    the same rows kept and dropped, the same day of the last purchase."""
    rows = [
        ("late-utc", "2024-06-29T23:30:00-05:00", 20.0),  # 2024-06-30 04:30 UTC
        ("after", "2024-06-30T23:30:00-05:00", 20.0),  # 2024-07-01 04:30 UTC: after as-of
        ("early-utc", "2024-06-30T01:00:00+02:00", 20.0),  # 2024-06-29 23:00 UTC
        ("mixed", "2024-03-01", 15.0), ("mixed", "2024-06-30T00:30:00+01:00", 5.0),
        ("naive", "2024-06-30T23:30:00", 7.0),  # no offset: taken as given
    ]
    expected = loaded(rows)
    tx = expected.transactions
    assert expected.report.dropped_after_as_of == 1
    assert expected.report.timestamps_converted_to_utc == 4
    assert tx.loc[tx["customer_id"] == "late-utc", "timestamp"].tolist() == [
        pd.Timestamp("2024-06-30 04:30")]
    payload = client.post("/score", json=score_body(rows)).json()
    results = {r["customer_id"]: r for r in payload["results"]}
    assert list(results) == tx["customer_id"].unique().tolist()
    assert [u["customer_id"] for u in payload["unscored"]] == ["after"]
    as_of = pd.Timestamp(AS_OF)
    last_day = tx.groupby("customer_id", sort=False)["timestamp"].max().dt.normalize()
    assert {c: r["recency_days"] for c, r in results.items()} == {
        c: (as_of - day).days for c, day in last_day.items()} == {
        "late-utc": 0, "early-utc": 1, "mixed": 1, "naive": 0}
    library = library_scores(tx, AS_OF, state)
    assert list(library) == list(results)
    for customer_id, row in library.items():
        assert results[customer_id]["churn_risk"] == pytest.approx(row.churn_risk, rel=1e-12)


@pytest.mark.parametrize("amount", [1e12, -1e12, 1e13])
def test_an_amount_the_loader_refuses_is_a_422_with_its_message(client: TestClient,
                                                                amount: float) -> None:
    rows = [("a", "2024-05-01", 10.0), ("b", "2024-05-01", 5.0), ("b", "2024-05-02", amount)]
    with pytest.raises(DataValidationError) as refused:
        loaded(rows)
    response = client.post("/score", json=score_body(rows))
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "customers", 1, "purchases", 1, "amount"]
    # The loader's message, naming the request's row where it names the frame's.
    assert error["msg"] == str(refused.value).replace(
        "in DataFrame", "in POST /score").replace("row 2:", "row 'customers[1].purchases[1]':")
    assert "beyond +-1,000,000,000,000" in error["msg"] and "Suggestion:" in error["msg"]


def test_a_timestamp_the_loader_refuses_is_a_422_with_its_message(
        client: TestClient, state: ServingState) -> None:
    """ISO 8601 text the schema lets through but the loader refuses (a decimal comma):
    refused with the loader's message, and only in its own request of a batch."""
    rows = [("a", "2024-05-01T10:00:00,5", 10.0)]
    with pytest.raises(DataValidationError) as refused:
        loaded(rows)
    response = client.post("/score", json=score_body(rows))
    assert response.status_code == 422
    assert response.json()["detail"] == [{
        "loc": [], "type": "value_error",
        "msg": str(refused.value).replace("in DataFrame", "in POST /score")}]
    app = create_app(lambda: state, initial=state)
    good = score_body([("b", "2024-05-01T10:00:00.5", 10.0)])

    async def together() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            return await asyncio.gather(http.post("/score", json=score_body(rows)),
                                        http.post("/score", json=good))

    bad, ok = asyncio.run(together())
    assert (bad.status_code, ok.status_code) == (422, 200)
    assert [r["customer_id"] for r in ok.json()["results"]] == ["b"]


def test_the_largest_amount_the_loader_keeps_is_scored(client: TestClient) -> None:
    rows = [("a", "2024-05-01", 999_999_999_999.99), ("b", "2024-05-01", -999_999_999_999.0)]
    assert loaded(rows).report.rows_kept == 2
    payload = client.post("/score", json=score_body(rows)).json()
    assert [r["customer_id"] for r in payload["results"]] == ["a"]
    assert [u["customer_id"] for u in payload["unscored"]] == ["b"]  # a refund: no occasion


# --- /customers/{id} ------------------------------------------------------------------


def test_customer_gives_the_stored_score_and_features(client: TestClient,
                                                       state: ServingState) -> None:
    cid = some_customers(state, 3)[1]
    payload = client.get(f"/customers/{cid}").json()
    row = state.scores.loc[state.scores["customer_id"] == cid].iloc[0]
    features = state.features.loc[state.features["customer_id"] == cid].iloc[0]
    assert payload["score"]["customer_id"] == cid
    assert payload["score"]["churn_risk"] == pytest.approx(row["churn_risk"])
    assert payload["score"]["segment"] == row["segment"]
    assert payload["features"]["frequency"] == features["frequency"]
    assert payload["features"]["customer_id"] == cid
    for name in state.artifact.feature_names:
        expected = features[name]
        assert payload["features"][name] == (None if pd.isna(expected) else pytest.approx(
            expected))


def test_unknown_customer_is_404(client: TestClient) -> None:
    response = client.get("/customers/C9999999")
    assert response.status_code == 404
    assert response.json() == {"detail": "customer 'C9999999' is not in the scored base"}


# --- /at-risk ---------------------------------------------------------------------------


def test_at_risk_pages_walk_the_whole_ordered_list(client: TestClient, state: ServingState
                                                   ) -> None:
    expected = at_risk_list(state.scores, kind="all")["customer_id"].tolist()
    seen: list[Any] = []
    for offset in range(0, len(expected) + 250, 250):
        page = client.get(f"/at-risk?limit=250&offset={offset}").json()
        assert (page["total"], page["limit"], page["offset"]) == (len(expected), 250, offset)
        seen += [item["customer_id"] for item in page["items"]]
    assert seen == expected
    first = client.get("/at-risk").json()
    assert first["limit"] == 100 and len(first["items"]) == 100
    risks = [item["churn_risk"] for item in first["items"]]
    assert risks == sorted(risks, reverse=True)
    assert set(first["items"][0]) >= {"customer_id", "as_of", "churn_risk", "risk_band",
                                      "value_at_risk", "segment", "reason_1", *VALUE_COLUMNS}
    # the value outputs pass through the list (issue 20): the stored numbers, NaN as null
    stored = state.scores.set_index("customer_id")
    for item in first["items"][:20]:
        for column in VALUE_COLUMNS:
            want = stored.loc[item["customer_id"], column]
            assert (item[column] is None) if pd.isna(want) else item[column] == want, column


@pytest.mark.parametrize("query", [
    {"min_risk": 0.8}, {"band": "medium"}, {"segment": "lost"}, {"sort": "value_at_risk"},
    {"min_risk": 0.3, "band": "medium", "sort": "value_at_risk"},
    {"segment": "champions", "min_risk": 0.0},
])
def test_at_risk_filters_and_sorts_as_the_library(client: TestClient, state: ServingState,
                                                  query: dict[str, Any]) -> None:
    expected = at_risk_list(state.scores, kind="all", **query)
    page = client.get("/at-risk", params={**query, "limit": 10_000}).json()
    assert page["total"] == len(expected) > 0
    assert [i["customer_id"] for i in page["items"]] == expected["customer_id"].tolist()
    again = client.get("/at-risk", params={**query, "limit": 7, "offset": 3}).json()
    assert again["items"] == page["items"][3:10]


@pytest.mark.parametrize("query", ["limit=0", "limit=10001", "offset=-1", "min_risk=1.5",
                                   "band=extreme", "sort=customer_id", "format=xml",
                                   "segment=nobody"])
def test_bad_at_risk_queries_are_422(client: TestClient, query: str) -> None:
    response = client.get(f"/at-risk?{query}")
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], list)


def test_at_risk_beyond_the_end_is_an_empty_page(client: TestClient,
                                                 state: ServingState) -> None:
    page = client.get(f"/at-risk?offset={len(state.scores) + 5}").json()
    assert page["items"] == [] and page["total"] == len(state.scores)


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize(("url", "headers"), [
    ("/at-risk?format=csv&band=high", {}),
    ("/at-risk?band=high", {"Accept": "text/csv"}),
    ("/at-risk?band=high&limit=5", {"Accept": "application/json;q=0.5, text/csv"}),
])
def test_at_risk_csv_streams_the_whole_filtered_list(client: TestClient, state: ServingState,
                                                     url: str, headers: dict[str, str]) -> None:
    response = client.get(url, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = csv_rows(response.text)
    expected = at_risk_list(state.scores, kind="all", band="high")
    assert [r["customer_id"] for r in rows] == expected["customer_id"].astype(str).tolist()
    assert list(rows[0]) == list(state.scores.columns)


def test_at_risk_prefers_json_when_the_client_does(client: TestClient) -> None:
    response = client.get("/at-risk", headers={"Accept": "application/json, text/csv;q=0.5"})
    assert response.headers["content-type"] == "application/json"
    response = client.get("/at-risk?format=json", headers={"Accept": "text/csv"})
    assert response.headers["content-type"] == "application/json"


def test_at_risk_csv_is_safe_for_spreadsheets(model: Any) -> None:
    _, clean, artifact = model
    evil = '=HYPERLINK("http://x.example","click")'
    tx = clean.copy()
    first = tx["customer_id"].iloc[0]
    tx["customer_id"] = tx["customer_id"].mask(tx["customer_id"] == first, evil)
    tx.loc[tx["customer_id"] == evil, "amount"] = 1e6  # stands out in any list
    state = build_state(artifact, tx, AS_OF)
    with TestClient(create_app(lambda: state, initial=state)) as evil_client:
        text = evil_client.get("/at-risk?format=csv&sort=value_at_risk").text
    # churnlens' one CSV dialect (churnlens._io.csv_text): CRLF line ends
    assert text.count("\r\n") == len(tx["customer_id"].unique()) + 1
    assert "\n" not in text.replace("\r\n", "")
    rows = csv_rows(text)
    ids = [r["customer_id"] for r in rows]
    assert "'" + evil in ids and evil not in ids
    assert not any(cell.startswith(("=", "+", "-", "@")) for r in rows for cell in r.values()
                   if cell and not is_number(cell))


# --- /retention -----------------------------------------------------------------------


@pytest.mark.parametrize(("start", "end", "window"), [
    ("2024-03-31", "2024-06-30", None), ("2023-12-31", "2024-06-30", 91),
    ("2022-06-01", "2022-08-01", None),  # before the data: undefined rates are null
])
def test_retention_equals_the_cli(client: TestClient, tmp_path: Path, start: str, end: str,
                                  window: int | None) -> None:
    path = tmp_path / "tx.csv"
    trained()[0].to_csv(path, index=False)
    args = ["retention", "--transactions", str(path), "--start", start, "--end", end, "--json"]
    query = {"start": start, "end": end}
    if window:
        args += ["--window-days", str(window)]
        query["window_days"] = str(window)
    result = CliRunner().invoke(cli_app, args)
    assert result.exit_code == 0, result.stderr
    api = client.get("/retention", params=query)
    assert api.status_code == 200
    assert api.json() == json.loads(result.stdout)


@pytest.mark.parametrize("query", [
    "start=2024-06-30&end=2024-03-31", "start=2024-06-30&end=2024-06-30",
    "start=2024-02-30&end=2024-06-30", "start=2024-03-31", "start=yesterday&end=2024-06-30",
    "start=2024-03-31&end=2024-06-30&window_days=0", "start=1400-01-01&end=2024-06-30",
])
def test_bad_retention_queries_are_422(client: TestClient, query: str) -> None:
    response = client.get(f"/retention?{query}")
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], list)


def test_outlook_pairs_the_prediction_with_the_last_actual_period(
        client: TestClient, state: ServingState) -> None:
    payload = client.get("/retention/outlook").json()
    horizon = state.artifact.horizon_days
    as_of = dt.date.fromisoformat(AS_OF)
    predicted = predict_retention(state.features["recency_days"], state.scores["churn_risk"],
                                  window_days=horizon,
                                  level_error=getattr(state.artifact.model, "level_error_",
                                                      None))
    actual = retention_rates(state.transactions, as_of - dt.timedelta(days=horizon), as_of,
                             window_days=horizon)
    assert payload["as_of"] == AS_OF and payload["horizon_days"] == horizon
    assert payload["period_end"] == str(as_of + dt.timedelta(days=horizon))
    assert payload["active_customers"] == predicted.S
    definitions = state.summary["definitions"]
    assert payload["definitions"] == definitions
    assert payload["predicted_cohort_retention"] == pytest.approx({
        "value": predicted.cohort_retention, "low": predicted.cohort_retention_low,
        "high": predicted.cohort_retention_high,
        "level_error": predicted.level_error_cohort_retention,
        "covers": predicted.interval_covers, "definition": definitions["cohort_retention"]})
    assert payload["predicted_crr"] == pytest.approx({
        "value": predicted.crr, "low": predicted.crr_low, "high": predicted.crr_high,
        "level_error": predicted.level_error_crr, "covers": predicted.interval_covers,
        "definition": definitions["crr"]})
    stay = 1 - state.scores["churn_risk"].to_numpy()
    assert payload["predicted_repeat_rate"]["value"] == pytest.approx(stay.mean() * 100)
    assert payload["interval_covers"] == predicted.interval_covers
    # what the model said about itself (a short history here: the warning is there)
    assert payload["model_warnings"] == state.artifact.model.warnings_
    assert any("no full season of history" in w for w in payload["model_warnings"]) is bool(
        state.artifact.model.short_history_)
    assert payload["expected_customers_lost"] == pytest.approx(predicted.expected_lost)
    assert payload["last_actual"] == actual.to_dict()
    # one base for both totals: the active customers (issue 16)
    active = state.scores["recency_days"] < horizon
    assert payload["base"] == "active" and payload["acquired_customers"] == len(state.scores)
    assert payload["revenue_at_risk"] == pytest.approx(
        state.scores.loc[active, "value_at_risk"].sum())


def test_backtest_comes_from_the_model(client: TestClient, state: ServingState) -> None:
    payload = client.get("/retention/backtest").json()
    runs = state.artifact.backtest["runs"]
    assert len(payload) == len(runs) >= 1
    for got, run in zip(payload, runs, strict=True):
        assert got["as_of"] == str(run["as_of"])
        assert got["horizon_days"] == run["horizon_days"]
        assert set(got["models"]) == set(run["models"]) >= {"churnlens", "recency"}
        for name, metrics in run["models"].items():
            for key, value in metrics.items():
                expected = None if value is None or value != value else pytest.approx(value)
                assert got["models"][name][key] == expected
        assert "predicted_crr" in got["models"]["churnlens"]


# --- /reload ---------------------------------------------------------------------------


def test_reload_swaps_the_state(state: ServingState, model: Any) -> None:
    _, clean, artifact = model
    later = {"n": 0}

    def loader() -> ServingState:
        later["n"] += 1
        return build_state(artifact, clean, "2024-05-31")

    with TestClient(create_app(loader, initial=state)) as c:
        assert later["n"] == 0  # the initial state was used as given
        answer = c.post("/reload", headers=JSON).json()
        assert answer["reloaded"] is True and answer["error"] is None
        assert answer["data_as_of"] == "2024-05-31"
        assert c.get("/health").json()["data_as_of"] == "2024-05-31"
        assert c.get("/retention/outlook").json()["as_of"] == "2024-05-31"
    assert later["n"] == 1


def test_a_failing_reload_keeps_the_old_state_and_says_so(state: ServingState) -> None:
    fail = {"now": True}

    def loader() -> ServingState:
        if fail["now"]:
            raise FileNotFoundError("models:/churnlens@champion is gone")
        return state

    with TestClient(create_app(loader, initial=state)) as c:
        answer = c.post("/reload", headers=JSON)
        assert answer.status_code == 200
        payload = answer.json()
        assert payload["reloaded"] is False
        assert payload["error"] == "FileNotFoundError: models:/churnlens@champion is gone"
        assert payload["data_as_of"] == AS_OF
        assert payload["customers_scored"] == len(state.scores)
        health = c.get("/health").json()  # (public: that it failed and when, no reason)
        assert health["last_reload_error"].startswith("the last reload failed at ")
        assert "gone" not in health["last_reload_error"]
        assert c.get("/at-risk?limit=1").status_code == 200  # still serving
        fail["now"] = False
        assert c.post("/reload", headers=JSON).json()["reloaded"] is True
        assert c.get("/health").json()["last_reload_error"] is None


# --- the one model loader: serve and /reload refuse what score refuses -------------------


@pytest.fixture
def disagreeing_bundle(model: Any, tmp_path: Path) -> Path:
    """A bundle whose card says a 30-day horizon while its model predicts 91 days."""
    from churnlens._artifact import BUNDLE_CARD, save_bundle

    folder = tmp_path / "bundle"
    save_bundle(model[2], folder)
    card = json.loads((folder / BUNDLE_CARD).read_text())
    card["horizon_days"] = 30
    (folder / BUNDLE_CARD).write_text(json.dumps(card))
    return folder


def test_serve_refuses_a_bundle_whose_card_disagrees_as_score_does(
        model: Any, disagreeing_bundle: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from churnlens._model_loader import load_model

    with pytest.raises(ModelError) as refused:
        load_model(disagreeing_bundle)
    assert "its model card says horizon_days = 30 but the model has 91" in str(refused.value)
    expected = f"error: {refused.value}"
    path = tmp_path / "tx.csv"
    model[0].to_csv(path, index=False)
    started: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: started.append(args))
    scores = tmp_path / "scores.parquet"
    score = CliRunner().invoke(cli_app, ["score", "--transactions", str(path), "--as-of", AS_OF,
                                         "--model", str(disagreeing_bundle), "--out",
                                         str(scores)])
    serve = CliRunner().invoke(cli_app, ["serve", "--transactions", str(path), "--model",
                                         str(disagreeing_bundle), "--port", str(free_port())])
    assert (score.exit_code, serve.exit_code) == (2, 2)
    assert expected in score.stderr and expected in serve.stderr
    assert not started and not scores.exists()


def test_reload_refuses_a_bundle_whose_card_disagrees_and_keeps_serving(
        model: Any, state: ServingState, disagreeing_bundle: Path, tmp_path: Path) -> None:
    from churnlens._config import load_config
    from churnlens._model_loader import load_model
    from churnlens.api import load_state

    with pytest.raises(ModelError) as refused:
        load_model(disagreeing_bundle)
    path = tmp_path / "tx.csv"
    model[0].to_csv(path, index=False)
    settings = load_config(overrides={"mlflow.enabled": False})

    def loader() -> ServingState:  # what `churnlens serve` reloads: the bundle, the data
        return load_state(path, str(disagreeing_bundle), settings, as_of=AS_OF)

    body = {"as_of": AS_OF, "customers": [
        {"customer_id": "a", "purchases": [{"timestamp": "2024-01-01", "amount": 5}]}]}
    with TestClient(create_app(loader, initial=state)) as c:
        before = c.post("/score", json=body).json()
        answer = c.post("/reload", headers=JSON)
        assert answer.status_code == 200
        payload = answer.json()
        assert payload["reloaded"] is False
        assert payload["error"] == f"ModelError: {refused.value}"
        assert payload["customers_scored"] == len(state.scores)
        health = c.get("/health").json()
        assert health["last_reload_error"].startswith("the last reload failed at ")
        assert health["loaded_at"] == state.loaded_at  # the old model keeps serving
        assert c.get("/model").json()["horizon_days"] == 91
        assert c.post("/score", json=body).json() == approx_floats(before)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_reload_under_load_drops_no_request(model: Any, state: ServingState) -> None:
    """A real server on 127.0.0.1: concurrent requests while the state is swapped."""
    import uvicorn

    _, clean, artifact = model
    reloads = {"n": 0}

    def loader() -> ServingState:  # a real rebuild: scoring the base again takes a while
        reloads["n"] += 1
        return build_state(artifact, clean, AS_OF if reloads["n"] % 2 else "2024-05-31")

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(loader, initial=state), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    body = history_body(clean, some_customers(state, 2))
    statuses: list[int] = []
    answered_at: list[float] = []
    reloading: list[tuple[float, float]] = []
    reload_answers: list[dict[str, Any]] = []

    async def load(stop_at: float) -> None:
        limits = httpx.Limits(max_connections=8)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits,
                                     timeout=30) as http:
            async def worker(k: int) -> None:
                while time.monotonic() < stop_at:
                    if k % 2:
                        r = await http.post("/score", json=body)
                    else:
                        r = await http.get("/at-risk?limit=20")
                    statuses.append(r.status_code)
                    answered_at.append(time.monotonic())

            async def reloader() -> None:
                for _ in range(4):
                    await asyncio.sleep(0.5)
                    began = time.monotonic()
                    r = await http.post("/reload", headers=JSON)
                    reloading.append((began, time.monotonic()))
                    reload_answers.append(r.json())
                    statuses.append(r.status_code)

            await asyncio.gather(reloader(), *(worker(k) for k in range(8)))

    try:
        asyncio.run(load(time.monotonic() + 8))
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert len(reload_answers) == 4 and all(a["reloaded"] for a in reload_answers)
    assert reloads["n"] == 4
    assert len(statuses) > 50
    assert set(statuses) == {200}
    # Requests kept being answered while the new state was being built.
    during = [t for t in answered_at if any(a < t < b for a, b in reloading)]
    assert len(during) >= 8, (len(during), reloading)


@pytest.mark.slow
def test_serve_subprocess_answers_health(tmp_path: Path, model: Any) -> None:
    """``churnlens serve`` end to end: start, answer, refuse a wrong key, stop."""
    from churnlens._artifact import save_bundle

    raw, _, artifact = model
    save_bundle(artifact, tmp_path / "bundle")
    raw.to_csv(tmp_path / "tx.csv", index=False)
    port = free_port()
    env = {**os.environ, API_KEYS_ENV: KEY_A}
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "churnlens"), "serve", "--transactions",
         str(tmp_path / "tx.csv"), "--model", str(tmp_path / "bundle"), "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 45
        health = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert health is not None, "the server did not start"
        assert health.status_code == 200
        assert health.json()["customers_scored"] > 0
        assert httpx.get(f"http://127.0.0.1:{port}/model").status_code == 401
        assert httpx.get(f"http://127.0.0.1:{port}/model",
                         headers={"X-API-Key": KEY_A}).status_code == 200
        reloaded = httpx.post(f"http://127.0.0.1:{port}/reload",
                              headers={"X-API-Key": KEY_A, **JSON}, timeout=60)
        assert reloaded.json()["reloaded"] is True
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    # uvicorn shuts down gracefully, then exits by the signal it caught (or 0)
    assert process.returncode in (0, -signal.SIGTERM), stderr[-2000:]
    assert b"leaked" not in stderr and b"Traceback" not in stderr, stderr[-2000:]
