"""Property-based tests of the HTTP API from its own OpenAPI schema (Schemathesis).

For every operation, Schemathesis generates requests from the schema, valid ones and
invalid ones (which the API must reject with a 4xx), and sends them to the app in
process. Every response must pass: no server error, a status code the schema
documents, the documented content type, and a body that validates against the
documented schema. Examples are bounded and derandomised (same cases every run).
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from api_support import served
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from churnlens.api import API_KEYS_ENV, create_app

KEY = "schema-test-key-0123456789"

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, negative_data_rejection]
# (method, path, has inputs that can be made invalid)
OPERATIONS = [
    ("GET", "/health", False), ("GET", "/model", False), ("POST", "/score", True),
    ("GET", "/customers/{customer_id}", True), ("GET", "/at-risk", True),
    ("GET", "/retention", True), ("GET", "/retention/outlook", False),
    ("GET", "/retention/backtest", False), ("POST", "/reload", False),
    # monitoring (issue 17) and the web page's reads (issue 18)
    ("GET", "/monitoring", False), ("GET", "/retention/series", True),
    ("GET", "/retention/cohorts", False), ("GET", "/customers/{customer_id}/purchases", True),
    ("GET", "/at-risk/facets", False),
]
CASES = [pytest.param(method, path, mode, id=f"{method} {path} {mode}")
         for method, path, has_inputs in OPERATIONS
         for mode in ("positive", "negative") if mode == "positive" or has_inputs]
EXAMPLES = {"POST /score": 60}


@pytest.fixture(scope="module")
def api_schema() -> Any:
    state = served()
    app = create_app(lambda: state, initial=state)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    # As deployed: keys configured. Generated cases carry the right key unless the
    # case is about the key itself (a negative case that drops or mangles it -> 401).
    monkeypatch.setenv(API_KEYS_ENV, KEY)


def with_key(case: schemathesis.Case) -> None:
    headers = case.meta.components.get(ParameterLocation.HEADER) if case.meta else None
    if headers is None or headers.mode.is_positive:
        case.headers = {**(case.headers or {}), "X-API-Key": KEY}


def test_every_operation_is_tested(api_schema: Any) -> None:
    found = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert found == {(method, path) for method, path, _ in OPERATIONS}


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_responses_conform_to_the_schema(api_schema: Any, method: str, path: str,
                                         mode: str) -> None:
    operation = api_schema[path][method]
    strategy = operation.as_strategy(generation_mode=GenerationMode(mode))
    calls: list[int] = []

    @given(case=strategy)
    @settings(max_examples=EXAMPLES.get(f"{method} {path}", 20), deadline=None,
              derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    def check(case: schemathesis.Case) -> None:
        with_key(case)
        response = case.call_and_validate(checks=CHECKS)
        calls.append(response.status_code)

    check()
    assert calls  # the API was really called
    if mode == "positive":  # and answered, not just refused the key
        assert set(calls) - {401}
