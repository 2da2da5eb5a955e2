"""``/docs`` works without internet (issue 16): Swagger UI is served by the app itself.

FastAPI's own ``/docs`` loads Swagger UI's JavaScript and CSS from a CDN, so offline it
is a blank page. The first tests read the page over HTTP (no browser); the ``browser``
ones open it in Debian's Chromium with every request off the loopback server aborted
(tests/browser_support.py) and check that Swagger UI drew every operation of the schema
and can call one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from api_support import served
from browser_support import chromium_browser, offline_page, serve_open
from fastapi.testclient import TestClient

from churnlens.api import create_app
from churnlens.api.deps import API_KEYS_ENV
from churnlens.api.errors import ALLOWED_HOSTS_ENV

_HTTP_METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}


@pytest.fixture(scope="module")
def app() -> Any:
    state = served()
    return create_app(lambda: state, initial=state)


@pytest.fixture
def client(app: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.delenv(API_KEYS_ENV, raising=False)
    monkeypatch.delenv(ALLOWED_HOSTS_ENV, raising=False)
    with TestClient(app) as c:
        yield c


def _operations(schema: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in schema["paths"].items()
            for method in item if method in _HTTP_METHODS}


def test_docs_page_loads_nothing_from_outside(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", page.text)
    assert urls, page.text
    assert not [u for u in urls if "//" in u], f"/docs loads from outside: {urls}"
    for url in urls:  # the script, the stylesheet and the icon are served here
        answer = client.get(url)
        assert answer.status_code == 200, url
        assert len(answer.content) > 500, url
    assert client.get("/openapi.json").status_code == 200
    # ReDoc would load its script (and Google's fonts) from outside too: not served
    assert client.get("/redoc").status_code == 404
    # the asset folder serves its files, nothing above it
    assert client.get("/docs/assets/LICENSE").status_code == 200
    assert client.get("/docs/assets/../app.py").status_code == 404
    assert client.get("/docs/assets/%2e%2e/app.py").status_code == 404


def test_docs_follow_the_same_access_rules(client: TestClient,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_KEYS_ENV, "k1")
    # As before: the docs and the schema need no key (they hold no data); data does.
    assert client.get("/docs").status_code == 200
    assert client.get("/docs/assets/swagger-ui.css").status_code == 200
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/model").status_code == 401
    assert client.get("/model", headers={"X-API-Key": "k1"}).status_code == 200



def test_docs_refuse_a_foreign_host_on_loopback(app: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # The loopback Host check (DNS rebinding) covers the docs as every other request.
    monkeypatch.delenv(ALLOWED_HOSTS_ENV, raising=False)
    with TestClient(app, base_url="http://127.0.0.1:8000") as loopback:
        for url in ("/docs", "/docs/assets/swagger-ui-bundle.js", "/docs/oauth2-redirect"):
            assert loopback.get(url).status_code == 200, url
            assert loopback.get(url, headers={"Host": "evil.example"}).status_code == 400, url


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with chromium_browser() as browser:
        yield browser


@pytest.fixture(scope="module")
def base_url(app: Any) -> Iterator[str]:
    with serve_open(app) as url:
        yield url


@pytest.mark.browser
def test_docs_render_offline_in_chromium(chromium: Any, base_url: str) -> None:
    import httpx

    expected = _operations(httpx.get(f"{base_url}/openapi.json", timeout=30).json())
    with offline_page(chromium) as tab:
        tab.page.goto(f"{base_url}/docs", wait_until="load")
        tab.page.wait_for_selector(".opblock .opblock-summary-path", timeout=30_000)
        tab.page.wait_for_function(
            f"document.querySelectorAll('.opblock').length >= {len(expected)}",
            timeout=30_000)
        shown = set()
        for block in tab.page.query_selector_all(".opblock"):
            method = block.query_selector(".opblock-summary-method").inner_text().strip()
            path = block.query_selector(".opblock-summary-path").get_attribute("data-path")
            shown.add((method.upper(), path))
        title = tab.page.inner_text(".information-container .title")
    assert shown == expected
    assert "churnlens" in title
    tab.assert_clean()
    assert all(url.startswith(base_url) for url in tab.requested), tab.requested


@pytest.mark.browser
def test_docs_try_it_out_calls_the_api(chromium: Any, base_url: str) -> None:
    with offline_page(chromium) as tab:
        page = tab.page
        page.goto(f"{base_url}/docs#/health", wait_until="load")
        block = page.locator(".opblock-get").filter(
            has=page.locator(".opblock-summary-path[data-path='/health']"))
        block.locator(".opblock-summary-control").click()
        block.get_by_role("button", name="Try it out").click()
        block.get_by_role("button", name="Execute").click()
        status = block.locator(".live-responses-table tbody .response-col_status").first
        status.wait_for(timeout=30_000)
        body = block.locator(".live-responses-table .microlight").first.inner_text()
        assert status.inner_text().strip().startswith("200")
    assert '"status"' in body
    tab.assert_clean()


@pytest.mark.parametrize(("url", "local"), [
    ("http://127.0.0.1:8000/docs", True),
    ("http://localhost:8000/openapi.json", True),
    ("http://[::1]:8000/health", True),
    ("data:image/png;base64,AAAA", True),
    ("file:///tmp/report.html", True),
    ("https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js", False),
    ("https://fastapi.tiangolo.com/img/favicon.png", False),
    ("http://127.0.0.1.nip.io/docs", False),
    ("http://localhost.evil.example/docs", False),
    ("ftp://127.0.0.1/x", False),
])
def test_the_offline_rule_lets_only_the_loopback_server_through(url: str, local: bool) -> None:
    from browser_support import _is_local

    assert _is_local(url) is local
