"""Access to the web page and its data (issue 18, item 5): keys, sessions, sign-in.

With API keys configured, nothing of the page or behind it answers without a key: every
route of the app (enumerated from ``app.routes``, never hand-listed) is checked without
credentials, with a forged or expired session and with a valid one. The JSON API keeps
``X-API-Key``; the page signs in once with a key and gets a session cookie (an opaque
token held server-side; HttpOnly, SameSite=Strict, Secure over TLS). Cookie-authenticated
requests that change state must come from the page's own origin.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_support import history_body, served, trained
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route

from churnlens.api import create_app
from churnlens.api.deps import (
    API_KEYS_ENV,
    KEY_DENIED,
    SESSION_COOKIE,
    SESSION_TTL_SECONDS,
    SIGN_IN_ATTEMPTS,
    SessionStore,
    SignInLimiter,
)
from churnlens.api.errors import ALLOWED_HOSTS_ENV
from churnlens.api.routes.session import SIGN_IN_FAILED
from churnlens.api.routes.web import WEB_ASSETS

KEY = "web-key-7d1e"
OTHER_KEY = "web-key-second"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
OWN_ORIGIN = {"Origin": "http://testserver"}
# Routes that hold no data and answer without a key: the service check, the API's schema
# and its docs page with their assets, and the sign-in form with its style sheet and the
# session routes themselves. Every other route of the app must refuse.
OPEN_PATHS = {"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/sign-in",
              "/sign-in.css", "/session", "/session/sign-out"}
OPEN_MOUNTS = {"/docs/assets"}


class FakeClock:
    """Monotonic seconds moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def app() -> Any:
    state = served()
    return create_app(lambda: state, initial=state)


@pytest.fixture
def fresh(app: Any) -> Any:
    """The app with no sessions and no failed sign-ins yet."""
    app.state.sessions = SessionStore()
    app.state.sign_in_limiter = SignInLimiter()
    return app


@pytest.fixture
def client(fresh: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv(API_KEYS_ENV, f"{KEY},{OTHER_KEY}")
    monkeypatch.delenv(ALLOWED_HOSTS_ENV, raising=False)
    with TestClient(fresh, follow_redirects=False) as c:
        yield c


def sign_in(client: TestClient, key: str = KEY) -> str:
    """Sign in with the form; the session token."""
    answer = client.post("/session", data={"key": key}, headers=FORM)
    assert answer.status_code == 303, answer.text
    token = client.cookies.get(SESSION_COOKIE)
    assert token
    return token


# --- every route, enumerated -------------------------------------------------------------


def _example_values() -> dict[str, str]:
    state = served()
    as_of = state.as_of
    return {
        "customer_id": str(state.scores["customer_id"].iloc[0]),
        "start": (as_of - dt.timedelta(days=90)).isoformat(),
        "end": as_of.isoformat(),
        "name": sorted(WEB_ASSETS)[0],  # /web/{name}: a file of the page
    }


def _routes(app: Any) -> list[tuple[str, Any]]:
    """``(path, route)`` of every route of ``app``: FastAPI 0.16x keeps an included
    router as one entry of ``app.routes`` (its routes behind it)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: app.routes lists every route
        return [(getattr(r, "path", ""), r) for r in app.routes]
    return [(str(c.path), c.original_route) for c in iter_route_contexts(app.routes)]


def _requests() -> list[tuple[str, str, dict[str, Any]]]:
    """``(method, url, request options)`` of every route of the app but the open ones:
    path parameters and required query parameters filled with real values."""
    state = served()
    app = create_app(lambda: state, initial=state)
    values = _example_values()
    found: list[tuple[str, str, dict[str, Any]]] = []
    for path, route in _routes(app):
        if isinstance(route, Mount):
            if path in OPEN_MOUNTS:
                continue
            directory = getattr(route.app, "directory", None)
            names = sorted(p.name for p in Path(directory).iterdir()
                           if p.is_file()) if directory else []
            assert names, f"mount {path}: no file to try"
            found += [("GET", f"{path}/{name}", {}) for name in names]
            continue
        if not isinstance(route, (APIRoute, Route)) or path in OPEN_PATHS:
            continue
        url = path
        for name in re.findall(r"{(\w+)(?::\w+)?}", path):
            assert name in values, (f"{path}: a new path parameter {name!r}; add a "
                                    "real example value to _example_values()")
            url = re.sub(r"{" + name + r"(?::\w+)?}", values[name], url)
        query = []
        if isinstance(route, APIRoute):
            for param in route.dependant.query_params:
                if param.field_info.is_required():
                    assert param.alias in values, (
                        f"{path}: a new required query parameter {param.alias!r}; "
                        "add a real example value to _example_values()")
                    query.append(f"{param.alias}={values[param.alias]}")
        if query:
            url += "?" + "&".join(query)
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            options: dict[str, Any] = {}
            if method == "POST":
                _, clean, _ = trained()
                customer = state.scores["customer_id"].iloc[0]
                body = history_body(clean, [customer]) if path == "/score" else {}
                options = {"json": body}
            found.append((method, url, options))
    return found


REQUESTS = _requests()
IDS = [f"{m} {u.split('?')[0]}" for m, u, _ in REQUESTS]


def test_the_enumeration_covers_the_data_and_the_page() -> None:
    urls = {u.split("?")[0] for _, u, _ in REQUESTS}
    for needed in ("/model", "/at-risk", "/retention", "/retention/outlook", "/reload",
                   "/score", "/"):
        assert needed in urls, sorted(urls)
    assert any(u.startswith("/customers/") for u in urls)


@pytest.mark.parametrize(("method", "url", "options"), REQUESTS, ids=IDS)
def test_every_route_refuses_without_credentials(client: TestClient, method: str, url: str,
                                                 options: dict[str, Any]) -> None:
    answer = client.request(method, url, **options)
    if answer.status_code == 303:  # a page: sent to the sign-in form, nothing else
        assert answer.headers["location"] == "/sign-in"
        assert method == "GET"
        assert b"customer" not in answer.content
    else:
        assert answer.status_code == 401, (answer.status_code, answer.text[:300])
        assert answer.json() == {"detail": KEY_DENIED}
    # a forged session cookie changes nothing
    client.cookies.set(SESSION_COOKIE, "forged-" + "x" * 40)
    forged = client.request(method, url, **options)
    assert forged.status_code == answer.status_code


def _open_answer(client: TestClient, monkeypatch: pytest.MonkeyPatch, method: str, url: str,
                 options: dict[str, Any]) -> tuple[int, bytes]:
    """The answer with no keys configured (the open server), keys set again after."""
    monkeypatch.delenv(API_KEYS_ENV)
    answer = client.request(method, url, **options)
    monkeypatch.setenv(API_KEYS_ENV, f"{KEY},{OTHER_KEY}")
    # (a route may answer 404 for its own reason, e.g. /monitoring without settings)
    assert answer.status_code in (200, 404), (answer.status_code, answer.text[:300])
    return answer.status_code, answer.content


@pytest.mark.parametrize(("method", "url", "options"), REQUESTS, ids=IDS)
def test_every_route_answers_with_the_session(client: TestClient, method: str, url: str,
                                              options: dict[str, Any],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    status, _ = _open_answer(client, monkeypatch, method, url, options)
    sign_in(client)
    headers = OWN_ORIGIN if method != "GET" else {}
    answer = client.request(method, url, headers=headers, **options)
    assert answer.status_code == status, (answer.status_code, answer.text[:300])


@pytest.mark.parametrize(("method", "url", "options"), REQUESTS, ids=IDS)
def test_the_api_keeps_its_key_header(client: TestClient, method: str, url: str,
                                      options: dict[str, Any],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    status, _ = _open_answer(client, monkeypatch, method, url, options)
    # no cookie, no Origin: a script with the key
    answer = client.request(method, url, headers={"X-API-Key": OTHER_KEY}, **options)
    assert answer.status_code == status, (answer.status_code, answer.text[:300])


def test_open_routes_hold_no_data(client: TestClient) -> None:
    for path in ("/health", "/openapi.json", "/docs", "/sign-in", "/sign-in.css"):
        assert client.get(path).status_code == 200, path


# --- the sign-in form and the cookie -----------------------------------------------------


def test_the_sign_in_page_is_only_a_form(client: TestClient) -> None:
    page = client.get("/sign-in")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    text = page.text
    assert re.findall(r"<form [^>]*>", text) == ['<form method="post" action="/session">']
    assert re.findall(r'<input [^>]*name="(\w+)"', text) == ["key"]
    assert 'type="password"' in text
    # nothing but its own style sheet is loaded, no link leads into the page
    assert re.findall(r'(?:src|href)="([^"]+)"', text) == ["/sign-in.css"]
    assert "<script" not in text


def test_cookie_attributes_are_exact(client: TestClient) -> None:
    answer = client.post("/session", data={"key": KEY}, headers=FORM)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/"
    cookies = answer.headers.get_list("set-cookie")
    assert len(cookies) == 1
    match = re.fullmatch(rf"{SESSION_COOKIE}=([A-Za-z0-9_-]+); HttpOnly; "
                         rf"Max-Age={SESSION_TTL_SECONDS}; Path=/; SameSite=strict",
                         cookies[0])
    assert match, cookies[0]
    token = match.group(1)
    assert len(token) >= 43  # 32 random bytes
    assert KEY not in token and OTHER_KEY not in token
    assert SESSION_TTL_SECONDS == 8 * 3600


def test_cookie_is_secure_over_tls(fresh: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_KEYS_ENV, KEY)
    with TestClient(fresh, base_url="https://testserver", follow_redirects=False) as c:
        answer = c.post("/session", json={"key": KEY})
        assert answer.status_code == 200
        assert answer.json() == {"signed_in": True, "expires_in_seconds": SESSION_TTL_SECONDS}
        cookie = answer.headers["set-cookie"]
        assert re.fullmatch(rf"{SESSION_COOKIE}=[A-Za-z0-9_-]+; HttpOnly; Max-Age=\d+; "
                            r"Path=/; SameSite=strict; Secure", cookie), cookie
        assert c.get("/model").status_code == 200


def test_behind_a_local_tls_proxy_the_cookie_is_secure(
        fresh: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # under uvicorn (as churnlens serve runs it): X-Forwarded-Proto is honoured from a
    # proxy on 127.0.0.1 (uvicorn's FORWARDED_ALLOW_IPS default), so the scheme is https
    import httpx
    from browser_support import serve

    monkeypatch.setenv(API_KEYS_ENV, KEY)
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    with serve(fresh) as base:
        direct = httpx.post(base + "/session", json={"key": KEY})
        assert not direct.headers["set-cookie"].endswith("; Secure")
        proxied = httpx.post(base + "/session", json={"key": KEY},
                             headers={"X-Forwarded-Proto": "https"})
        assert proxied.headers["set-cookie"].endswith("; Secure")
        # the same-origin check then expects https://HOST
        token = proxied.cookies[SESSION_COOKIE]
        host = base.removeprefix("http://")
        cookie = {"Cookie": f"{SESSION_COOKIE}={token}", "X-Forwarded-Proto": "https"}
        for origin, status in ((f"https://{host}", 200), (f"http://{host}", 403)):
            answer = httpx.post(base + "/reload", json={}, headers={**cookie,
                                                                  "Origin": origin})
            assert answer.status_code == status, origin


def test_the_token_is_held_server_side_not_the_key(client: TestClient, fresh: Any) -> None:
    token = sign_in(client)
    store: SessionStore = fresh.state.sessions
    assert len(store) == 1
    held = repr(vars(store))
    assert token not in held and KEY not in held  # digests only
    # the same token works from another client: it is the token, not a client trait
    other = TestClient(fresh, follow_redirects=False)
    other.cookies.set(SESSION_COOKIE, token)
    assert other.get("/model").status_code == 200


def test_sign_out_ends_the_session_server_side(client: TestClient, fresh: Any) -> None:
    token = sign_in(client)
    assert client.get("/model").status_code == 200
    answer = client.post("/session/sign-out", headers=FORM)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/sign-in"
    assert re.fullmatch(rf'{SESSION_COOKIE}=""; expires=[^;]+; HttpOnly; Max-Age=0; '
                        r"Path=/; SameSite=strict", answer.headers["set-cookie"])
    assert len(fresh.state.sessions) == 0
    # the old token, sent again (a copy kept by anyone), is refused
    client.cookies.set(SESSION_COOKIE, token)
    assert client.get("/model").status_code == 401
    assert client.get("/").status_code == 303


def test_sign_out_as_json_and_delete(client: TestClient) -> None:
    for method, url in (("POST", "/session/sign-out"), ("DELETE", "/session")):
        sign_in(client)
        answer = client.request(method, url, json={} if method == "POST" else None)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"signed_in": False}
        assert client.get("/model").status_code == 401


def test_an_expired_session_is_refused(client: TestClient, fresh: Any) -> None:
    clock = FakeClock()
    fresh.state.sessions = SessionStore(ttl_seconds=60, clock=clock)
    sign_in(client)
    clock.now += 59
    assert client.get("/model").status_code == 200
    clock.now += 1
    assert client.get("/model").status_code == 401
    assert len(fresh.state.sessions) == 0  # dropped on sight


def test_a_session_ends_with_its_key(client: TestClient,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    sign_in(client, OTHER_KEY)
    assert client.get("/model").status_code == 200
    monkeypatch.setenv(API_KEYS_ENV, KEY)  # OTHER_KEY withdrawn
    assert client.get("/model").status_code == 401


def test_the_session_store_is_bounded() -> None:
    clock = FakeClock()
    store = SessionStore(ttl_seconds=100, max_sessions=3, clock=clock)
    tokens = [store.open(KEY) for _ in range(4)]
    assert len(store) == 3
    assert not store.valid(tokens[0], [KEY])  # the oldest went first
    assert all(store.valid(t, [KEY]) for t in tokens[1:])
    clock.now += 100
    store.open(KEY)
    assert len(store) == 1  # expired ones are purged when a session opens
    assert not store.valid("", [KEY]) and not store.valid("x" * 500, [KEY])


# --- failures and the rate limit ---------------------------------------------------------


def test_a_refusal_does_not_say_whether_a_key_exists(client: TestClient, fresh: Any) -> None:
    fresh.state.sign_in_limiter = SignInLimiter(attempts=100)  # (not the limit's test)
    answers = [client.post("/session", json={"key": key})
               for key in ("nope", KEY[:-1], KEY + "x", KEY.upper())]
    assert {a.status_code for a in answers} == {401}
    assert {a.text for a in answers} == {f'{{"detail":"{SIGN_IN_FAILED}"}}'}
    assert not any("set-cookie" in a.headers for a in answers)
    # a form gets the form back, with the same sentence
    page = client.post("/session", data={"key": "nope"}, headers=FORM)
    assert page.status_code == 401
    assert SIGN_IN_FAILED in page.text and '<form method="post"' in page.text
    for body in ({}, {"key": 3}, {"key": ""}, [KEY]):
        assert client.post("/session", json=body).status_code == 401


def test_sign_in_failures_are_rate_limited_per_client(fresh: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_KEYS_ENV, KEY)
    clock = FakeClock()
    fresh.state.sign_in_limiter = SignInLimiter(clock=clock)
    with (TestClient(fresh, client=("198.51.100.7", 5000)) as one,
          TestClient(fresh, client=("198.51.100.8", 5000)) as two):
        for _ in range(SIGN_IN_ATTEMPTS):
            assert one.post("/session", json={"key": "guess"}).status_code == 401
            clock.now += 1
        blocked = one.post("/session", json={"key": KEY})  # even the right key
        assert blocked.status_code == 429
        assert blocked.headers["retry-after"] == "55"
        assert "set-cookie" not in blocked.headers
        assert two.post("/session", json={"key": KEY}).status_code == 200  # another client
        clock.now += 55
        assert one.post("/session", json={"key": KEY}).status_code == 200


def test_sign_ins_sent_in_parallel_are_limited_too(fresh: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, the limit was checked before the body was read and a failure counted
    after: 50 wrong keys sent at once, each body arriving in two pieces, all got 401
    and none 429. Now each attempt is counted before the key is read."""
    import asyncio

    import httpx

    monkeypatch.setenv(API_KEYS_ENV, KEY)

    async def main() -> list[int]:
        transport = httpx.ASGITransport(app=fresh)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            async def one(i: int) -> int:
                async def body() -> Any:
                    yield b'{"key": "wrong'
                    await asyncio.sleep(0.01)
                    yield f'{i}"}}'.encode()
                answer = await c.post("/session", content=body(),
                                      headers={"content-type": "application/json"})
                return answer.status_code

            return list(await asyncio.gather(*(one(i) for i in range(50))))

    codes = asyncio.run(main())
    assert codes.count(401) == SIGN_IN_ATTEMPTS
    assert codes.count(429) == 50 - SIGN_IN_ATTEMPTS


# --- same-origin rule for cookie-authenticated changes -----------------------------------


def test_state_changes_by_cookie_need_the_same_origin(client: TestClient) -> None:
    sign_in(client)
    assert client.post("/reload", json={}).status_code == 403  # no Origin, no Referer
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"},
                    {"Origin": "https://testserver"},  # another scheme is another origin
                    {"Referer": "http://evil.example/page"}):
        answer = client.post("/reload", json={}, headers=headers)
        assert answer.status_code == 403, headers
        assert "cross-origin" in answer.json()["detail"]
    assert client.post("/reload", json={}, headers=OWN_ORIGIN).status_code == 200
    referer = {"Referer": "http://testserver/#/at-risk"}
    assert client.post("/reload", json={}, headers=referer).status_code == 200
    # reads need no Origin (SameSite=Strict keeps the cookie off other sites' requests)
    assert client.get("/model").status_code == 200
    # a script with the key needs no Origin either
    assert client.post("/reload", json={}, headers={"X-API-Key": KEY}).status_code == 200


def test_sign_in_and_out_from_another_site_are_refused(client: TestClient) -> None:
    evil = {**FORM, "Origin": "http://evil.example"}
    answer = client.post("/session", data={"key": KEY}, headers=evil)
    assert answer.status_code == 403
    assert "set-cookie" not in answer.headers
    sign_in(client)
    assert client.post("/session/sign-out", headers=evil).status_code == 403
    assert client.get("/model").status_code == 200  # still signed in
    own = {**FORM, **OWN_ORIGIN}
    assert client.post("/session/sign-out", headers=own).status_code == 303


def test_only_the_session_routes_take_a_form(client: TestClient) -> None:
    sign_in(client)
    answer = client.post("/reload", content=b"a=1", headers={**FORM, **OWN_ORIGIN})
    assert answer.status_code == 415
    answer = client.post("/session", content=b"key=" + KEY.encode(),
                         headers={"Content-Type": "text/plain"})
    assert answer.status_code == 415


# --- without keys ------------------------------------------------------------------------


def test_without_keys_the_page_is_open(fresh: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_KEYS_ENV, raising=False)
    with TestClient(fresh, follow_redirects=False) as c:
        assert c.get("/").status_code == 200
        assert c.get("/model").status_code == 200
        assert c.post("/reload", json={}).status_code == 200
        sent = c.get("/sign-in")
        assert sent.status_code == 303 and sent.headers["location"] == "/"
        answer = c.post("/session", data={"key": "anything"}, headers=FORM)
        assert answer.status_code == 303 and "set-cookie" not in answer.headers


# --- in a real browser -------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.slow
def test_browser_without_a_key_sees_only_the_sign_in_form(
        fresh: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from browser_support import launch_chromium, offline_page, require_chromium, serve

    executable = require_chromium()
    monkeypatch.setenv(API_KEYS_ENV, KEY)
    with (serve(fresh) as base, launch_chromium(executable) as browser,
          offline_page(browser) as record):
        page = record.page
        page.goto(base + "/")
        assert page.url == base + "/sign-in"
        # only the form: one password field, one button, no data, no script
        assert page.locator("input").count() == 1
        assert page.locator("input[type=password][name=key]").count() == 1
        assert page.locator("button").count() == 1
        assert page.locator("table, canvas, svg, script").count() == 0
        paths = {u.removeprefix(base).split("?")[0] for u in record.requested}
        assert paths == {"/", "/sign-in", "/sign-in.css"}, paths
        # the form's page may not even fetch (its CSP: connect-src none); from the same
        # browser (its cookie jar), every data URL answers 401
        assert page.evaluate("fetch('/model').then(() => 'fetched', () => 'blocked')"
                             ) == "blocked"
        for url in ("/model", "/at-risk", "/retention/outlook"):
            assert page.context.request.get(base + url).status == 401, url
        assert page.context.request.get(base + "/web/app.js", max_redirects=0).status == 303
        # a wrong key: the form again, with the refusal
        page.fill("input[name=key]", "wrong")
        page.click("button")
        assert page.url == base + "/session"
        assert SIGN_IN_FAILED in page.inner_text("main")
        # the right key: the page, and the cookie is out of the script's reach
        page.fill("input[name=key]", KEY)
        page.click("button")
        page.wait_for_url(base + "/")
        assert page.evaluate("document.cookie") == ""
        assert page.evaluate("fetch('/model').then(r => r.status)") == 200
        status = page.evaluate("""fetch('/reload', {method: 'POST', body: '{}',
            headers: {'Content-Type': 'application/json'}}).then(r => r.status)""")
        assert status == 200  # the browser's own Origin passes the same-origin rule
        assert not record.blocked, record.blocked


# --- speed (issue 18, item 7): what is cached per state answers the same ----------------


def test_filtered_lists_are_the_librarys_own() -> None:
    # the at-risk lists of the whole base, filtered from its kept order, are exactly
    # at_risk_list's rows in at_risk_list's order, for every filter
    import dataclasses

    import numpy as np

    from churnlens._rules import BANDS, SORT_KEYS, at_risk_list
    from churnlens.exceptions import ChurnlensError

    state = dataclasses.replace(served(), filtered={}, read_cache={})
    rows_of = state.scores.assign(_row=np.arange(len(state.scores)))
    segments = [None, *sorted(state.scores["segment"].dropna().unique())]
    checked = 0
    for sort in SORT_KEYS:
        for band in (None, *BANDS):
            for segment in segments:
                for min_risk in (None, 0.0, 0.35, 0.9, 1.0):
                    got = state.at_risk_rows(sort, min_risk, segment, band)
                    expected = at_risk_list(rows_of, kind="all", sort=sort, min_risk=min_risk,
                                            segment=segment, band=band)["_row"].to_numpy()
                    np.testing.assert_array_equal(got, expected,
                                                  err_msg=f"{sort} {band} {segment} {min_risk}")
                    checked += len(expected) > 0
    assert checked > 20
    with pytest.raises(ChurnlensError, match="not found"):
        state.at_risk_rows("churn_risk", None, "no such segment", None)


def test_retention_reads_are_the_librarys_once_per_state() -> None:
    import dataclasses

    import pandas as pd

    from churnlens._retention import cohort_table, retention_rates, retention_series
    from churnlens.api.state import cohorts_key, rates_key, series_key

    served_state = served()
    every = f"{served_state.artifact.horizon_days}d"
    # build_state answered the page's first reads already
    assert served_state.cached_read(series_key(every, None)) is not None
    assert served_state.cached_read(cohorts_key()) is not None
    state = dataclasses.replace(served_state, read_cache={})
    tx, as_of = state.transactions, state.as_of
    series = state.retention_series(every)
    pd.testing.assert_frame_equal(series, retention_series(tx, every, end=as_of))
    assert state.retention_series(every) is series  # computed once
    assert state.cached_read(series_key(every, None)) is series
    monthly = state.retention_series("month", 30)
    pd.testing.assert_frame_equal(monthly, retention_series(tx, "month", window_days=30,
                                                            end=as_of))
    table = state.cohort_table()
    pd.testing.assert_frame_equal(table, cohort_table(tx, end=as_of))
    assert state.cohort_table() is table
    start, end = as_of - dt.timedelta(days=91), as_of
    rates = state.retention_rates(start, end)
    assert rates.to_dict() == retention_rates(tx, start, end).to_dict()
    assert state.cached_read(rates_key(start, end, None)) is rates
    last = served_state.cached_read(series_key(every, None))
    complete = last.loc[last["complete"].astype(bool)].iloc[-1]
    assert served_state.cached_read(rates_key(complete["start"], complete["end"], None))


@pytest.mark.slow
def test_load_state_prepares_the_monitoring_report(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # churnlens serve's state answers GET /monitoring from the start: the report is
    # computed after the state's own scoring is recorded, before it is served, and is
    # the report the request path computes
    import dataclasses

    from churnlens._artifact import save_bundle
    from churnlens._config import load_config
    from churnlens.api import load_state
    from churnlens.api.monitoring import monitoring_document
    from churnlens.api.state import MONITORING_KEY

    monkeypatch.delenv("CHURNLENS_LEDGER", raising=False)
    raw, _, artifact = trained()
    raw.to_parquet(tmp_path / "tx.parquet", index=False)
    save_bundle(artifact, tmp_path / "bundle")
    settings = load_config(overrides={
        "mlflow.tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    state = load_state(tmp_path / "tx.parquet", str(tmp_path / "bundle"), settings,
                       as_of=served().as_of, ledger=True)
    assert state.ledger_run_id is not None
    prepared = state.cached_read(MONITORING_KEY)
    assert isinstance(prepared, dict), prepared
    assert len(prepared["entries"]) == 1
    assert prepared == monitoring_document(dataclasses.replace(state, read_cache={}))
    monkeypatch.setenv(API_KEYS_ENV, KEY)
    app = create_app(lambda: state, initial=state)
    with TestClient(app) as c:
        assert c.get("/health").json()["alerts"] == prepared["alert_count"]  # at once
        answer = c.get("/monitoring", headers={"X-API-Key": KEY})
        assert answer.status_code == 200
        assert answer.json()["alert_count"] == prepared["alert_count"]
