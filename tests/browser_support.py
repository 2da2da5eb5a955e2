"""Real-browser tests: Debian's Chromium driven by Playwright, offline, on a real server.

Shared by the tests marked ``browser`` (``tests/test_browser_docs.py``; the web pages
later) and by ``docs/screenshots.py``. The browser is the system's Chromium (the
``chromium`` package; ``make test`` installs it when missing and run as root), started
through Playwright's ``executable_path``: no browser download. Where no Chromium (or no
Playwright) is found the tests skip and say why, except under ``CI`` (set, and not
``0``/``false``/``no``), where they fail: CI must not pass by testing nothing.

Every page opened here is offline: any request that does not go to the loopback server
is aborted and recorded (Playwright's route on the browser context), and Chromium
resolves no host name but ``localhost`` (``--host-resolver-rules``), so a page that
needs the internet shows it as a failure, not as a slow test.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "CHROMIUM_ENV",
    "OfflinePage",
    "chromium_browser",
    "chromium_path",
    "free_port",
    "launch_chromium",
    "offline_page",
    "require_chromium",
    "serve",
    "serve_open",
]

CHROMIUM_ENV = "CHURNLENS_CHROMIUM"
# Debian's package installs /usr/bin/chromium; the others are other distributions' names.
_CANDIDATES = ("chromium", "chromium-browser", "google-chrome-stable", "google-chrome")
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
# Chromium resolves nothing but the loopback names: a CDN's host name fails at once.
_CHROMIUM_ARGS = (
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
)


def chromium_path() -> str | None:
    """The Chromium executable: ``$CHURNLENS_CHROMIUM``, else the first on ``PATH``."""
    configured = os.environ.get(CHROMIUM_ENV, "").strip()
    if configured:
        return configured if Path(configured).is_file() else None
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _unavailable(reason: str) -> None:
    import pytest

    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{reason}; CI is set, so the browser tests fail instead of skipping. "
                    "Suggestion: run `make test` as root (it installs Debian's chromium) "
                    "or `apt-get install chromium`.", pytrace=False)
    pytest.skip(f"{reason}. Suggestion: `make test` as root installs Debian's chromium "
                f"(or apt-get install chromium; or set ${CHROMIUM_ENV})")


def require_chromium() -> str:
    """The Chromium executable, or skip the test (fail it when ``$CI`` is set)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -e '.[dev]')")
    path = chromium_path()
    if path is None:
        configured = os.environ.get(CHROMIUM_ENV, "").strip()
        _unavailable(f"no Chromium at ${CHROMIUM_ENV}={configured}" if configured else
                     "no Chromium found on PATH (chromium, chromium-browser)")
    assert path is not None  # _unavailable never returns
    return path


@contextlib.contextmanager
def launch_chromium(executable: str) -> Iterator[Any]:
    """A headless Chromium (Playwright ``Browser``) from ``executable``, closed after."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                             args=list(_CHROMIUM_ARGS))
        try:
            yield browser
        finally:
            browser.close()


def _is_local(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about", "file"):
        return True
    return parts.scheme in ("http", "https", "ws", "wss") and parts.hostname in _LOCAL_HOSTS


@dataclasses.dataclass
class OfflinePage:
    """A page that may only talk to the loopback server, and what it tried.

    Attributes
    ----------
    page
        The Playwright ``Page``.
    requested
        Every URL the page asked for, in order (the blocked ones too).
    blocked
        The URLs that were not on the loopback server (aborted).
    failed
        ``"STATUS URL"`` of every local answer of 400 or more, and the requests that
        failed without an answer.
    console_errors
        Console messages of type ``error`` and uncaught page errors.
    """

    page: Any
    requested: list[str] = dataclasses.field(default_factory=list)
    blocked: list[str] = dataclasses.field(default_factory=list)
    failed: list[str] = dataclasses.field(default_factory=list)
    console_errors: list[str] = dataclasses.field(default_factory=list)

    def assert_clean(self) -> None:
        """Fail unless the page stayed on the loopback server, every local request got
        an answer below 400, and the console showed no error."""
        assert self.blocked == [], f"requests that left localhost: {self.blocked}"
        assert self.failed == [], self.failed
        assert self.console_errors == [], self.console_errors


@contextlib.contextmanager
def offline_page(browser: Any, *, width: int = 1280, height: int = 900,
                 device_scale_factor: float = 1.0) -> Iterator[OfflinePage]:
    """A new page in its own context, cut off from everything but the loopback server."""
    context = browser.new_context(viewport={"width": width, "height": height},
                                  device_scale_factor=device_scale_factor,
                                  service_workers="block", locale="en-US",
                                  timezone_id="UTC")
    record = OfflinePage(page=None)

    def local_only(route: Any) -> None:
        url = route.request.url
        if _is_local(url):
            route.continue_()
        else:
            record.blocked.append(url)
            route.abort("internetdisconnected")

    def answered(response: Any) -> None:
        if response.status >= 400:
            record.failed.append(f"{response.status} {response.url}")

    def failed(request: Any) -> None:
        if _is_local(request.url):
            record.failed.append(f"{request.failure} {request.url}")

    def console(message: Any) -> None:
        if message.type == "error":
            record.console_errors.append(message.text)

    context.route("**/*", local_only)
    context.on("request", lambda request: record.requested.append(request.url))
    context.on("response", answered)
    context.on("requestfailed", failed)
    try:
        page = context.new_page()
        page.on("console", console)
        page.on("pageerror", lambda error: record.console_errors.append(str(error)))
        record.page = page
        yield record
    finally:
        context.close()


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def chromium_browser() -> Iterator[Any]:
    """The system's headless Chromium (skips the test where there is none, see
    :func:`require_chromium`), closed after: the body of a module's browser fixture."""
    with launch_chromium(require_chromium()) as browser:
        yield browser


@contextlib.contextmanager
def serve(app: Any, *, timeout: float = 30.0) -> Iterator[str]:
    """Run ``app`` under uvicorn on a free loopback port (a thread): its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the app did not start on 127.0.0.1:{port}")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=timeout)


@contextlib.contextmanager
def serve_open(app: Any, *, timeout: float = 30.0) -> Iterator[str]:
    """:func:`serve` ``app`` with no API keys and no host allow-list set (whatever the
    environment says while it starts): the open app a page test reads."""
    import pytest

    from churnlens.api.deps import API_KEYS_ENV
    from churnlens.api.errors import ALLOWED_HOSTS_ENV

    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(API_KEYS_ENV, raising=False)
        patch.delenv(ALLOWED_HOSTS_ENV, raising=False)
        with serve(app, timeout=timeout) as url:
            yield url
