"""The HTTP API against hostile and malformed requests: every refusal a small, clean JSON
error, and no request that makes the server do (or say) much more than it was sent.

Each test here failed before its fix (probed with the small real model of
``api_support``): a 1 MB timestamp echoed back whole in a 422, 100,000 invalid purchases
answered with 28 MB of errors (6 s of encoding on the event loop), a gzip body parsed as
JSON, two ``Content-Type`` headers read differently by the guard and the route, a 40 MB
sign-in body parsed before any key was checked, and N concurrent ``POST /reload`` costing
N reloads.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from api_support import AS_OF, served
from fastapi.testclient import TestClient

from churnlens.api import API_KEYS_ENV, ServingState, create_app
from churnlens.api.errors import ALLOWED_HOSTS_ENV

JSON = {"Content-Type": "application/json"}
GOOD = {"as_of": AS_OF, "customers": [
    {"customer_id": "a", "purchases": [{"timestamp": "2024-01-01", "amount": 10.0}]}]}
# The framework's path (any query parameter but reasons and allow_past) and the direct one.
PATHS = ["/score", "/score?reasons=true&via=framework"]


@pytest.fixture(autouse=True)
def _no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_KEYS_ENV, raising=False)
    monkeypatch.delenv(ALLOWED_HOSTS_ENV, raising=False)


@pytest.fixture(scope="module")
def state() -> ServingState:
    return served()


@pytest.fixture(scope="module")
def client(state: ServingState) -> Iterator[TestClient]:
    with TestClient(create_app(lambda: state, initial=state)) as test_client:
        yield test_client


def _purchases(*purchases: dict[str, Any]) -> bytes:
    return json.dumps({"as_of": AS_OF, "customers": [
        {"customer_id": "a", "purchases": list(purchases)}]}).encode()


# --- POST /score: errors as small as the mistake ------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("timestamp", ["2024-01-01" + "0" * 1_000_000,
                                       "2024-01-01T00:00:00." + "1" * 1_000_000])
def test_a_huge_timestamp_is_a_small_422_at_the_purchase(client: TestClient, path: str,
                                                         timestamp: str) -> None:
    """Text that Python's date parser reads but the loader refuses was echoed back whole
    in the loader's message (a 1 MB timestamp: a 1 MB answer), without its place."""
    response = client.post(path, content=_purchases({"timestamp": timestamp, "amount": 1.0}),
                           headers=JSON)
    assert response.status_code == 422
    assert len(response.content) < 2_000, len(response.content)
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "customers", 0, "purchases", 0, "timestamp"]
    assert "longer than 64 characters" in error["msg"]


def test_the_longest_timestamps_still_score(client: TestClient) -> None:
    stamps = ["2024-03-05T14:30:00.123456+01:00", "2024-03-05T14:30:00.123456789+01:00",
              "2024-03-05 14:30:00Z"]
    response = client.post("/score", headers=JSON, content=_purchases(
        *({"timestamp": s, "amount": 10.0} for s in stamps)))
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["frequency"] == 1


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("bad", [30, 20_000])
def test_many_invalid_values_list_the_first_twenty_errors(client: TestClient, path: str,
                                                          bad: int) -> None:
    """Every error was listed: 100,000 bad purchases gave a 28 MB answer, encoded on the
    event loop for seconds (every other request waited)."""
    body = _purchases(*[{"timestamp": "x", "amount": 1.0}] * bad)
    began = time.perf_counter()
    response = client.post(path, content=body, headers=JSON)
    seconds = time.perf_counter() - began
    assert response.status_code == 422
    errors = response.json()["detail"]
    assert len(errors) == 21, len(errors)
    assert all(e["loc"][:3] == ["body", "customers", 0] for e in errors[:20])
    assert errors[-1] == {"type": "too_many_errors", "loc": ["body"],
                          "msg": f"and {bad - 20:,} more errors (the first 20 are listed)"}
    assert len(response.content) < 10_000
    print(f"{bad:,} bad purchases: 422 in {seconds:.2f} s")


def test_unknown_fields_by_the_thousand_are_a_short_422(client: TestClient) -> None:
    purchase = {"timestamp": "2024-01-01", "amount": 1.0,
                **{f"field_{i}": i for i in range(50_000)}}
    response = client.post("/score", content=_purchases(purchase), headers=JSON)
    assert response.status_code == 422
    assert len(response.json()["detail"]) == 21
    assert len(response.content) < 10_000


# --- the guard: bodies are JSON, as sent, once typed --------------------------------


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "GZIP", "gzip, identity"])
def test_a_compressed_body_is_415_never_parsed(client: TestClient, encoding: str) -> None:
    """The header was ignored: a gzip body was parsed as JSON (a 422 quoting binary), and
    a plain body labelled gzip was scored as if it were not."""
    for body in (gzip.compress(json.dumps(GOOD).encode()), json.dumps(GOOD).encode()):
        for path in PATHS:
            response = client.post(path, content=body,
                                   headers={**JSON, "Content-Encoding": encoding})
            assert response.status_code == 415, response.text
            assert "Content-Encoding" in response.json()["detail"]


def test_an_identity_encoding_is_accepted(client: TestClient) -> None:
    response = client.post("/score", content=json.dumps(GOOD).encode(),
                           headers={**JSON, "Content-Encoding": "identity"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("types", [("text/plain", "application/json"),
                                   ("application/json", "text/plain"),
                                   ("application/json", "application/json")])
def test_two_content_types_are_415(client: TestClient, types: tuple[str, str]) -> None:
    """The guard read the last header, the routes read the first: text/plain then
    application/json passed the guard as JSON."""
    headers = [("Content-Type", t) for t in types]
    for path in (*PATHS, "/reload"):
        response = client.post(path, content=json.dumps(GOOD).encode(), headers=headers)
        assert response.status_code == 415, (path, response.text)
        assert "Content-Type headers" in response.json()["detail"]


# --- sign-in: a key's worth of body, no more ----------------------------------------


@pytest.mark.parametrize(("path", "content_type", "chunked"), [
    ("/session", "application/json", False), ("/session", "application/json", True),
    ("/session", "application/x-www-form-urlencoded", False),
    ("/session", "application/x-www-form-urlencoded", True),
    # (sign-out never reads its body: a streamed one is never counted, nor held)
    ("/session/sign-out", "application/json", False)])
def test_a_sign_in_body_over_16_kib_is_413(state: ServingState, monkeypatch: pytest.MonkeyPatch,
                                           path: str, content_type: str,
                                           chunked: bool) -> None:
    """Sign-in answers clients without a key: its body was read and parsed whatever its
    size (a 40 MB JSON array: 1.4 s on the event loop and 200 MB), up to the 101 MB
    limit of POST /score."""
    monkeypatch.setenv(API_KEYS_ENV, "the-key")
    body = (b"[" + b"1," * 500_000 + b"1]" if content_type == "application/json"
            else b"key=" + b"k" * 1_000_000)

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(body), 65_536):
            yield body[start:start + 65_536]

    with TestClient(create_app(lambda: state, initial=state)) as test_client:
        response = test_client.post(path, content=pieces() if chunked else body,
                                    headers={"Content-Type": content_type})
        assert response.status_code == 413, response.text
        assert response.json() == {"detail": "request body over 16,384 bytes"}
        # a sign-in of the right size still signs in
        response = test_client.post("/session", json={"key": "the-key"})
        assert response.status_code == 200, response.text
        assert response.json()["signed_in"] is True


# --- POST /reload: requests sent together share one reload ---------------------------


def test_concurrent_reloads_share_one_reload(state: ServingState) -> None:
    """Each POST /reload ran its own reload, one after the other, each holding a worker
    thread meanwhile: 20 requests sent together cost 20 reloads (of the model and of
    every transaction) and 20 of the 40 threads that large POST /score bodies use."""
    calls: list[str] = []
    running = threading.Event()

    def loader() -> ServingState:
        calls.append(threading.current_thread().name)
        running.set()
        time.sleep(0.2)  # a reload takes a while (seconds at 1M customers)
        return state

    app = create_app(loader, initial=state)

    async def burst() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            first = asyncio.ensure_future(http.post("/reload", headers=JSON))
            while not running.is_set():  # one reload under way, then 20 more requests
                await asyncio.sleep(0.01)
            later = [http.post("/reload", headers=JSON) for _ in range(20)]
            answers = await asyncio.gather(first, *later)
            answers.append(await http.post("/reload", headers=JSON))  # after them all
            return answers

    answers = asyncio.run(burst())
    assert [a.status_code for a in answers] == [200] * 22
    assert all(a.json()["reloaded"] for a in answers)
    # the one under way, one shared by the 20 that came meanwhile, one for the last
    assert len(calls) == 3, calls
    assert "MainThread" not in calls  # (off the event loop's thread)


def test_a_failed_shared_reload_is_everyones_answer(state: ServingState) -> None:
    def loader() -> ServingState:
        time.sleep(0.1)
        raise RuntimeError("the alias points nowhere")

    app = create_app(loader, initial=state)

    async def burst() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await asyncio.gather(*(http.post("/reload", headers=JSON)
                                          for _ in range(5)))

    answers = asyncio.run(burst())
    assert [a.status_code for a in answers] == [200] * 5
    assert {a.json()["error"] for a in answers} == {
        "RuntimeError: the alias points nowhere"}
    assert not any(a.json()["reloaded"] for a in answers)


# --- a client that goes away mid-body -------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_a_client_gone_before_its_body_ends_is_no_server_error(state: ServingState, path: str
                                                               ) -> None:
    """A Content-Length longer than the body sent, then the connection closed (or a
    client that gives up mid-body): the route's read raised ClientDisconnect out of the
    app, logged by the server as an 'Exception in ASGI application' traceback each time."""
    app = create_app(lambda: state, initial=state)
    target, _, query = path.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": target, "raw_path": target.encode(),
             "root_path": "", "query_string": query.encode(),
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                         (b"content-length", b"1000")],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": {}}
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": b'{"as_of": "2024-06-30", "cust', "more_body": True},
        {"type": "http.disconnect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))  # raised ClientDisconnect before
    assert sent[0]["status"] == 400
