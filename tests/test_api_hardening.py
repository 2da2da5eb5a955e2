"""The HTTP API against abuse (issue 22): spreadsheet-safe CSV, bounded bodies, JSON-only
POSTs, the Host check on loopback, no secrets on ``/health``, the CLI's ``as_of`` rule;
and against hostile and malformed requests (the second part): every refusal a small,
clean JSON error, no request that makes the server do (or say) much more than it was
sent. Each test of that part failed before its fix: a 1 MB timestamp echoed back whole
in a 422, 100,000 invalid purchases answered with 28 MB of errors (6 s of encoding on
the event loop), a gzip body parsed as JSON, two ``Content-Type`` headers read
differently by the guard and the route, a 40 MB sign-in body parsed before any key was
checked, and N concurrent ``POST /reload`` costing N reloads.

The model is the small real one of ``api_support`` (trained once per test process).
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import json
import logging
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from api_support import AS_OF, history_body, is_number, served, trained, wait_until_serving
from fastapi.testclient import TestClient

from churnlens._scoring import check_as_of
from churnlens.api import API_KEYS_ENV, ApiLimits, ServingState, build_state, create_app
from churnlens.api.errors import ALLOWED_HOSTS_ENV
from churnlens.exceptions import ModelError

JSON = {"Content-Type": "application/json"}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


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


# --- CSV: formula-like ids, CR/LF prefixes included ------------------------------------


def test_at_risk_csv_keeps_cr_and_lf_prefixed_formulas_in_their_cell() -> None:
    """200 formula-like ids, most starting with a CR or a LF (the issue's attack: a bare
    CR read as a line end made a new row starting with ``=1+1``): read back by pandas
    and by Python's csv module, one row per customer and no cell a spreadsheet would
    run."""
    _, clean, artifact = trained()
    customers = clean["customer_id"].drop_duplicates().tolist()
    prefixes = ["\r=", "\n=", "\r\n=", "=", "+", "-", "@", "\t="]
    evil = {cid: f"{prefixes[k % len(prefixes)]}1+{k}" for k, cid in enumerate(customers[:200])}
    tx = clean.assign(customer_id=clean["customer_id"].map(lambda c: evil.get(c, c)))
    evil_state = build_state(artifact, tx, AS_OF)
    with TestClient(create_app(lambda: evil_state, initial=evil_state)) as evil_client:
        response = evil_client.get("/at-risk?format=csv")
    assert response.status_code == 200
    text = response.text
    expected_rows = len(customers)

    by_csv = list(csv.reader(io.StringIO(text, newline="")))
    assert len(by_csv) == expected_rows + 1  # the header
    by_pandas = pd.read_csv(io.StringIO(text, newline=""), dtype=str, keep_default_na=False)
    assert len(by_pandas) == expected_rows
    for rows in (by_csv[1:], by_pandas.to_numpy().tolist()):
        cells = [cell for row in rows for cell in row]
        formulas = [c for c in cells if c.startswith(FORMULA_STARTS) and not is_number(c)]
        assert formulas == []
    ids = set(by_pandas["customer_id"])
    assert {"'" + e for e in evil.values()} <= ids  # each kept, neutralised, in one cell
    assert not ids & set(evil.values())
    # the one CSV dialect: CRLF line ends; a CR or LF inside an id is inside quotes
    assert text.endswith("\r\n")


# --- body size ----------------------------------------------------------------------


def test_the_body_limit_is_what_the_request_limits_imply() -> None:
    limits = ApiLimits()
    implied = limits.body_bytes()
    # a million compact purchases with a full timestamp fit, with margin ...
    purchase = b'{"timestamp":"2024-03-05T14:30:00+01:00","amount":1234.56},'
    assert limits.max_purchases * len(purchase) * 1.5 < implied
    # ... and 120 MB does not
    assert implied < 120_000_000
    assert ApiLimits(max_body_bytes=1000).body_bytes() == 1000
    smaller = ApiLimits(max_purchases=1000, max_customers=10)
    assert smaller.body_bytes() < 200_000


def test_a_declared_body_over_the_limit_is_refused_before_it_is_read(
        state: ServingState) -> None:
    app = create_app(lambda: state, initial=state, limits=ApiLimits(max_body_bytes=1000))
    read: list[int] = []

    async def call() -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            read.append(1)
            return {"type": "http.request", "body": b"x" * 10, "more_body": True}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/score", "query_string": b"",
                 "root_path": "", "headers": [(b"content-type", b"application/json"),
                                              (b"content-length", b"5000000")],
                 "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 5000),
                 "scheme": "http", "http_version": "1.1", "asgi": {"version": "3.0"}}
        await app(scope, receive, send)
        return sent

    import asyncio

    sent = asyncio.run(call())
    assert sent[0]["status"] == 413
    assert read == []  # not a byte of the body was asked for


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """``churnlens serve`` on a free port of 127.0.0.1: (port, pid)."""
    from churnlens._artifact import save_bundle

    raw, _, artifact = trained()
    folder = tmp_path_factory.mktemp("serve")
    save_bundle(artifact, folder / "bundle")
    raw.to_csv(folder / "tx.csv", index=False)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in (API_KEYS_ENV, ALLOWED_HOSTS_ENV)}
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "churnlens"), "serve", "--transactions",
         str(folder / "tx.csv"), "--model", str(folder / "bundle"), "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_serving(process, port)
        yield port, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _post_huge(port: int, total: int, *, declare: bool) -> tuple[int, float, int]:
    """POST /score with a ``total``-byte body streamed from a generator (1 MiB at a
    time, so this test stays small): (status, seconds to the answer, bytes sent)."""
    chunk = b" " * (1 << 20)

    def body() -> Iterator[bytes]:
        sent = 0
        while sent < total:
            piece = chunk[: total - sent]
            sent += len(piece)
            yield piece

    head = ["POST /score HTTP/1.1", f"Host: 127.0.0.1:{port}",
            "Content-Type: application/json"]
    head.append(f"Content-Length: {total}" if declare else "Transfer-Encoding: chunked")
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sent = 0
    try:
        began = time.perf_counter()
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        for piece in body():
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            data = piece if declare else b"%x\r\n%b\r\n" % (len(piece), piece)
            try:
                sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        else:
            if not declare:
                sock.sendall(b"0\r\n\r\n")
        answer = b""
        while b"\r\n" not in answer:
            more = sock.recv(65536)
            if not more:
                break
            answer += more
        elapsed = time.perf_counter() - began
    finally:
        sock.close()
    return int(answer.split(b" ", 2)[1]), elapsed, sent


@pytest.mark.slow
def test_a_120_mb_body_is_refused_in_milliseconds_with_flat_memory(
        server: tuple[int, int]) -> None:
    port, pid = server
    before = _rss_kb(pid)
    status, seconds, _ = _post_huge(port, 120_000_000, declare=True)
    after = _rss_kb(pid)
    print(f"413 after {seconds * 1000:.1f} ms; server RSS {before / 1024:.0f} -> "
          f"{after / 1024:.0f} MB")
    assert status == 413
    assert seconds < 0.1, seconds
    assert (after - before) / 1024 < 100, (before, after)
    # the server still answers
    assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200


@pytest.mark.slow
def test_a_streamed_body_without_length_is_counted_as_it_arrives(
        server: tuple[int, int]) -> None:
    port, pid = server
    before = _rss_kb(pid)
    status, _, sent = _post_huge(port, 120_000_000, declare=False)
    after = _rss_kb(pid)
    print(f"413 after {sent / 1e6:.0f} MB sent (chunked); server RSS {before / 1024:.0f} -> "
          f"{after / 1024:.0f} MB")
    assert status == 413
    limit = ApiLimits().body_bytes()
    assert sent <= limit + (8 << 20)  # refused once the limit was passed, not at the end
    # at most the limit itself is held (a valid body of that size is parsed)
    assert (after - before) * 1024 < limit * 1.5, (before, after)
    assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200


# --- content type -------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [
    "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x", None, "application/json; charset=latin-1",
    "application/jsonx"])
def test_a_post_that_is_not_json_is_415(client: TestClient, content_type: str | None,
                                        ) -> None:
    body = b'{"as_of": "2024-06-30", "customers": []}'
    headers = {} if content_type is None else {"Content-Type": content_type}
    for url in ("/score", "/score?reasons=false", "/reload"):
        response = client.post(url, content=body, headers=headers)
        assert response.status_code == 415, (url, content_type)
        detail = response.json()["detail"]
        assert "application/json" in detail and "Suggestion:" in detail


@pytest.mark.parametrize("content_type", [
    "application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8",
    'application/json; charset="utf-8"'])
def test_json_content_types_are_accepted(client: TestClient, content_type: str) -> None:
    response = client.post("/score", content=b'{"as_of": "2024-06-30", "customers": []}',
                           headers={"Content-Type": content_type})
    assert response.status_code == 200, response.text


def test_a_text_plain_reload_reloads_nothing(state: ServingState) -> None:
    calls: list[int] = []

    def loader() -> ServingState:
        calls.append(1)
        return state

    with TestClient(create_app(loader, initial=state)) as c:
        assert c.post("/reload", content=b"{}", headers={"Content-Type": "text/plain"}
                      ).status_code == 415
        assert calls == []
        assert c.post("/reload", headers=JSON).json()["reloaded"] is True
        assert calls == [1]


# --- Host on loopback ---------------------------------------------------------------


@pytest.fixture(scope="module")
def loopback(state: ServingState) -> Iterator[TestClient]:
    """The app as bound to 127.0.0.1:8000 (the ASGI ``server`` of each request)."""
    app = create_app(lambda: state, initial=state)
    with TestClient(app, base_url="http://127.0.0.1:8000") as test_client:
        yield test_client


@pytest.mark.parametrize("host", [
    "evil.example", "evil.example:8000", "127.0.0.1.nip.io", "localhost.evil.example",
    "10.0.0.5:8000", "[::2]:8000", ""])
def test_a_foreign_host_is_400_on_loopback(loopback: TestClient, host: str) -> None:
    for method, url in (("GET", "/health"), ("GET", "/at-risk"), ("POST", "/score")):
        response = loopback.request(method, url, headers={"Host": host, **JSON},
                                    content=b'{"as_of": "2024-06-30", "customers": []}'
                                    if method == "POST" else None)
        assert response.status_code == 400, (host, url)
        assert "DNS rebinding" in response.json()["detail"]


@pytest.mark.parametrize("host", [
    "localhost", "localhost:8000", "127.0.0.1", "127.0.0.1:8000", "[::1]", "[::1]:8000",
    "LOCALHOST:8000"])
def test_loopback_names_are_answered_on_loopback(loopback: TestClient, host: str) -> None:
    assert loopback.get("/health", headers={"Host": host}).status_code == 200
    score = loopback.post("/score", content=b'{"as_of": "2024-06-30", "customers": []}',
                          headers={"Host": host, **JSON})
    assert score.status_code == 200


def test_allowed_hosts_extend_the_loopback_names(state: ServingState,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOWED_HOSTS_ENV, "churn.internal, proxy.local")
    app = create_app(lambda: state, initial=state)
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        assert c.get("/health", headers={"Host": "churn.internal:443"}).status_code == 200
        assert c.get("/health", headers={"Host": "evil.example"}).status_code == 400


def test_any_host_is_answered_off_loopback(client: TestClient) -> None:
    # (TestClient's default server is "testserver": not a loopback address; keys guard
    # such servers, `churnlens serve` refuses to start off loopback without them)
    assert client.get("/health", headers={"Host": "evil.example"}).status_code == 200


@pytest.mark.slow
def test_a_real_loopback_server_refuses_a_foreign_host(server: tuple[int, int]) -> None:
    port, _ = server
    assert httpx.get(f"http://127.0.0.1:{port}/health",
                     headers={"Host": "evil.example"}).status_code == 400
    assert httpx.get(f"http://localhost:{port}/health").status_code == 200


# --- no secrets on /health ----------------------------------------------------------


def test_health_after_a_failed_reload_says_only_that_and_when(
        state: ServingState, caplog: pytest.LogCaptureFixture) -> None:
    uri = "postgresql://u:p@h/db"

    def failing() -> ServingState:
        raise ModelError(f"cannot download models:/churnlens@champion from {uri}: "
                         f"(psycopg.OperationalError) connection to {uri} refused")

    with TestClient(create_app(failing, initial=state)) as c, caplog.at_level(logging.WARNING):
        answer = c.post("/reload", headers=JSON).json()
        health = c.get("/health")
    assert answer["reloaded"] is False
    # the authenticated answer gets the reason, the password masked
    assert "postgresql://u:***@h/db" in answer["error"] and "u:p@" not in answer["error"]
    text = health.text
    error = health.json()["last_reload_error"]
    assert "reload failed at " in error
    assert "u:p@" not in text and "postgresql" not in text and "psycopg" not in text
    assert ":p@" not in text
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "postgresql://u:***@h/db" in logged and "u:p@" not in logged


# --- as_of: the CLI's rule ----------------------------------------------------------


@pytest.mark.parametrize("fast", [True, False])
def test_an_as_of_before_the_models_is_refused_unless_allowed(state: ServingState,
                                                              fast: bool) -> None:
    """The same 422 text as ``churnlens score`` (``_scoring.check_as_of``), on the direct
    path and through the framework (no direct path: every body over 10 bytes)."""
    limits = ApiLimits() if fast else ApiLimits(inline_body_bytes=10)
    past = "2024-05-31"
    with pytest.raises(ModelError) as cli:
        check_as_of(state.artifact, past, allow_past=False)
    ids = state.scores["customer_id"].iloc[:3].tolist()
    body = history_body(trained()[1], ids, as_of=past)
    with TestClient(create_app(lambda: state, initial=state, limits=limits)) as c:
        refused = c.post("/score", json=body)
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["msg"] == str(cli.value)
        for query in ("?allow_past=true", "?allow_past=true&reasons=false",
                      "?reasons=true&allow_past=true"):
            allowed = c.post("/score" + query, json=body)
            assert allowed.status_code == 200, allowed.text
            assert allowed.json()["as_of"] == past
            assert len(allowed.json()["results"]) == 3
        assert c.post("/score?allow_past=false", json=body).status_code == 422
        # on or after the training as-of: no flag needed
        assert c.post("/score", json=history_body(trained()[1], ids)).status_code == 200


def test_allow_past_answers_alike_on_both_paths(state: ServingState,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    body = history_body(trained()[1], state.scores["customer_id"].iloc[:4].tolist(),
                        as_of="2024-04-30")
    answers = []
    for limits in (ApiLimits(), ApiLimits(inline_body_bytes=10)):
        app = create_app(lambda: state, initial=state, limits=limits)
        direct: list[int] = []
        original = app.score_direct

        async def counted(*args: Any, _direct: list[int] = direct, _o: Any = original
                          ) -> None:
            _direct.append(1)
            await _o(*args)

        monkeypatch.setattr(app, "score_direct", counted)
        with TestClient(app) as c:
            answers.append(c.post("/score?allow_past=true&reasons=false", json=body).json())
        assert direct == ([1] if limits.inline_body_bytes > 10 else [])
    np.testing.assert_allclose([r["churn_risk"] for r in answers[0]["results"]],
                               [r["churn_risk"] for r in answers[1]["results"]], rtol=1e-12)
    assert answers[0]["unscored"] == answers[1]["unscored"]


# --- isolation: bulk reads on their own thread, a bounded queue ---------------------


def test_bulk_reads_run_on_the_read_thread_and_csv_is_written_once(
        state: ServingState, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    fresh = build_state(state.artifact, trained()[1], AS_OF)
    threads: list[str] = []
    original = ServingState.at_risk_csv

    def spy(self: ServingState, *args: Any) -> list[bytes]:
        threads.append(threading.current_thread().name)
        return original(self, *args)

    monkeypatch.setattr(ServingState, "at_risk_csv", spy)
    with TestClient(create_app(lambda: fresh, initial=fresh)) as c:
        first = c.get("/at-risk?format=csv&band=high").content
        second = c.get("/at-risk?format=csv&band=high").content
        page = c.get("/at-risk?limit=2000&band=medium")
    assert first == second and first.count(b"\r\n") > 1
    assert len(threads) == 1 and threads[0].startswith("churnlens-reads")  # once, aside
    assert page.status_code == 200


def test_a_full_read_queue_answers_503(state: ServingState) -> None:
    import asyncio
    import threading

    from churnlens.api.reads import ReadQueue

    queue = ReadQueue(max_pending=2)
    release = threading.Event()

    async def scenario() -> list[Any]:
        slow = [asyncio.ensure_future(queue.run(release.wait, 10)) for _ in range(2)]
        await asyncio.sleep(0.05)
        try:
            await queue.run(lambda: "never")
        except Exception as exc:  # the HTTPException is the answer
            refused: Any = exc
        release.set()
        return [refused, *(await asyncio.gather(*slow))]

    refused, *done = asyncio.run(scenario())
    queue.close()
    assert getattr(refused, "status_code", None) == 503
    assert refused.headers == {"Retry-After": "1"}
    assert done == [True, True]
    assert queue.pending == 0


@pytest.mark.parametrize("where", ["as_of", "purchase"])
@pytest.mark.parametrize("day", ["1899-12-31", "2101-01-01"])
def test_dates_outside_the_supported_range_are_422_as_in_the_cli(client: TestClient, where: str,
                                                                 day: str) -> None:
    """One range for the API, the loader and the CLI (``_validation.PLAUSIBLE_DATES``)."""
    from churnlens._validation import PLAUSIBLE_DATES
    from churnlens.api.schemas import DATE_MAX, DATE_MIN

    assert (DATE_MIN, DATE_MAX) == PLAUSIBLE_DATES
    body: dict[str, Any] = {"as_of": AS_OF, "customers": [
        {"customer_id": "C1", "purchases": [{"timestamp": "2024-01-10", "amount": 5.0}]}]}
    if where == "as_of":
        body["as_of"] = day
    else:
        body["customers"][0]["purchases"].append({"timestamp": day, "amount": 5.0})
    refused = client.post("/score?allow_past=true", json=body)
    assert refused.status_code == 422, refused.text
    assert f"{PLAUSIBLE_DATES[0]} and {PLAUSIBLE_DATES[1]}" in refused.text


# --- hostile and malformed requests: small, clean refusals ----------------------------

GOOD = {"as_of": AS_OF, "customers": [
    {"customer_id": "a", "purchases": [{"timestamp": "2024-01-01", "amount": 10.0}]}]}
# The framework's path (any query parameter but reasons and allow_past) and the direct one.
PATHS = ["/score", "/score?reasons=true&via=framework"]


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
