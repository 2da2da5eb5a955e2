"""The web page for marketing (issue 18): its JSON reads, and the pages in a real browser.

The first tests read the new endpoints over HTTP (no browser) and compare them with the
library functions they stand on (one set of numbers). The ``browser`` ones open the page
in Debian's Chromium, offline (tests/browser_support.py), on one served app for the
module, and write a screenshot of each page to ``docs/images/web-<page>.png``. That app
serves with settings and a prediction ledger holding one closed scoring (recorded at
``LEDGER_AS_OF``, one horizon before the data end), so the overview and the model page
show the ledger's prediction against what happened (``GET /monitoring``); recording it
in a fresh MLflow store takes ~10 s, so the browser tests are also marked ``slow``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from api_support import AS_OF, served, trained
from browser_support import chromium_browser, offline_page, serve_open
from fastapi.testclient import TestClient

from churnlens.api import create_app
from churnlens.api.deps import API_KEYS_ENV
from churnlens.api.errors import ALLOWED_HOSTS_ENV

IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"
PHONE_WIDTH = 390
LEDGER_AS_OF = "2024-03-31"  # AS_OF minus the 91-day horizon: closed in the served data


@pytest.fixture(scope="module")
def state() -> Any:
    return served()


@pytest.fixture(scope="module")
def app(state: Any) -> Any:
    return create_app(lambda: state, initial=state)


@pytest.fixture
def client(app: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.delenv(API_KEYS_ENV, raising=False)
    monkeypatch.delenv(ALLOWED_HOSTS_ENV, raising=False)
    with TestClient(app) as c:
        yield c


def _ranked(scores: pd.DataFrame) -> pd.DataFrame:
    """The oracle of the whole-base order: riskiest first, ties by customer id."""
    return scores.sort_values(["churn_risk", "customer_id"], ascending=[False, True],
                              kind="mergesort")


def _csv_ids(text: str) -> list[str]:
    return [row["customer_id"] for row in csv.DictReader(io.StringIO(text))]


def _all_pages(client: TestClient, query: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        page = client.get(f"/at-risk?{query}&limit=97&offset={len(items)}").json()
        items += page["items"]
        if len(items) >= page["total"]:
            return items


# --- the page and its files ---------------------------------------------------------


def test_the_page_and_its_files_are_served_from_the_package(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"'#]+)["']""", page.text)
    assert "/web/app.js" in urls and "/web/app.css" in urls
    assert not [u for u in urls if "//" in u], f"the page loads from outside: {urls}"
    for url in urls:
        answer = client.get(url)
        assert answer.status_code == 200, url
    assert client.get("/web/app.js").headers["content-type"].startswith("text/javascript")
    # only the listed files: nothing else of the package
    for url in ("/web/index.html", "/web/../app.py", "/web/%2e%2e/app.py", "/web/nothing.js"):
        assert client.get(url).status_code == 404, url
    # the page holds no data: no customer id, no rate
    assert "C0000" not in page.text and "C0000" not in client.get("/web/app.js").text
    # and is not in the API's schema
    assert not [p for p in client.get("/openapi.json").json()["paths"]
                if p == "/" or p.startswith("/web")]


def test_the_script_reads_the_api_with_the_session_cookie(client: TestClient) -> None:
    script = client.get("/web/app.js").text
    assert 'credentials: "same-origin"' in script
    assert "innerHTML" not in script  # text is set as text: ids and reasons never parsed
    assert not re.search(r"https?://", script.replace("http://www.w3.org/2000/svg", ""))


# --- the JSON reads the page uses ---------------------------------------------------


def test_retention_series_is_the_library_series(client: TestClient, state: Any) -> None:
    from churnlens._io import frame_records
    from churnlens._retention import retention_series

    horizon = state.artifact.horizon_days
    answer = client.get("/retention/series")
    assert answer.status_code == 200
    body = answer.json()
    expected = frame_records(retention_series(state.transactions, f"{horizon}d",
                                              end=state.as_of))
    assert body["every"] == f"{horizon}d"
    assert len(body["periods"]) == len(expected) > 3
    for got, want in zip(body["periods"], expected, strict=True):
        assert got == {key: want[key] for key in got}
    assert body["periods"][-1]["end"] == AS_OF
    month = client.get("/retention/series", params={"every": "month"}).json()
    assert [p["period"] for p in month["periods"]][-1] == AS_OF[:7]
    for bad in ("3d", "0d", "week", "12345d", "month;"):
        assert client.get("/retention/series", params={"every": bad}).status_code == 422, bad


def test_cohorts_are_the_library_cohort_table(client: TestClient, state: Any) -> None:
    from churnlens._retention import cohort_table

    table = cohort_table(state.transactions, end=state.as_of)
    body = client.get("/retention/cohorts").json()
    assert [c["cohort"] for c in body["cohorts"]] == table["cohort"].tolist()
    first = body["cohorts"][0]
    assert first["cohort_size"] == int(table["cohort_size"].iloc[0])
    assert first["months"][0] == 100.0
    months = [c for c in table.columns if isinstance(c, int)]
    assert first["months"] == pytest.approx(table[months].iloc[0].tolist())
    last = body["cohorts"][-1]
    assert last["months"][1:] == [None] * (len(months) - 1)  # not elapsed: null, never 0


def test_purchase_history_sums_the_customers_transactions(client: TestClient,
                                                          state: Any) -> None:
    tx = state.transactions
    customer = str(_ranked(state.scores)["customer_id"].iloc[0])
    body = client.get(f"/customers/{customer}/purchases").json()
    mine = tx.loc[tx["customer_id"] == customer]
    by_day = mine.groupby(mine["timestamp"].dt.date)["amount"].agg(["sum", "size"])
    assert [d["day"] for d in body["days"]] == [d.isoformat() for d in by_day.index]
    assert [d["amount"] for d in body["days"]] == pytest.approx(by_day["sum"].tolist())
    assert sum(d["transactions"] for d in body["days"]) == len(mine)
    assert body["customer_id"] == customer and body["as_of"] == AS_OF
    assert client.get("/customers/nobody/purchases").status_code == 404


def test_search_and_value_filters_narrow_the_list_in_its_order(client: TestClient,
                                                                state: Any) -> None:
    everyone = [i["customer_id"] for i in _all_pages(client, "band=high")]
    found = _all_pages(client, "band=high&q=c00001")
    assert found and [i["customer_id"] for i in found] == [
        c for c in everyone if "c00001" in c.lower()]
    floor = float(state.scores["value_at_risk"].median())
    valued = _all_pages(client, f"band=high&min_value_at_risk={floor}")
    assert [i["customer_id"] for i in valued] == [
        i["customer_id"] for i in _all_pages(client, "band=high")
        if i["value_at_risk"] >= floor]
    assert client.get("/at-risk?q=no-such-customer").json()["total"] == 0
    # the CSV of the same query is exactly the list
    answer = client.get(f"/at-risk?band=high&min_value_at_risk={floor}&format=csv")
    assert answer.headers["content-type"].startswith("text/csv")
    assert _csv_ids(answer.text) == [i["customer_id"] for i in valued]
    # without the new parameters, the list is as before
    assert [i["customer_id"] for i in client.get("/at-risk?limit=5").json()["items"]] == (
        _ranked(state.scores)["customer_id"].head(5).tolist())


def test_the_download_can_hold_back_a_control_group(client: TestClient, state: Any) -> None:
    from churnlens._campaign import assign_control_group, campaign_list_id

    query = "band=high&min_value_at_risk=1&format=csv"
    plain = client.get(f"/at-risk?{query}").text
    drawn = client.get(f"/at-risk?{query}&control_fraction=0.2&seed=7")
    assert drawn.status_code == 200
    rows = list(csv.DictReader(io.StringIO(drawn.text)))
    assert [r["customer_id"] for r in rows] == _csv_ids(plain)  # the same list, same order
    listed = state.scores.set_index("customer_id").loc[[r["customer_id"] for r in rows]]
    expected = assign_control_group(listed.reset_index(), 0.2, seed=7)
    assert [r["group"] for r in rows] == expected["group"].tolist()
    assert {r["list_id"] for r in rows} == {
        campaign_list_id(expected["customer_id"], fraction=0.2, seed=7)}
    controls = sum(r["group"] == "control" for r in rows)
    assert controls == int(len(rows) * 0.2 + 0.5)  # one band: round half up
    again = client.get(f"/at-risk?{query}&control_fraction=0.2&seed=7").text
    assert again == drawn.text  # same list, fraction and seed: same groups
    assert client.get(f"/at-risk?{query}&control_fraction=0.2&seed=8").text != drawn.text
    # a page of JSON has no control group; fractions outside (0, 1) are refused
    assert client.get("/at-risk?control_fraction=0.2").status_code == 422
    for bad in ("0", "1", "-0.1", "x"):
        assert client.get(f"/at-risk?format=csv&control_fraction={bad}").status_code == 422


def test_facets_count_the_base(client: TestClient, state: Any) -> None:
    body = client.get("/at-risk/facets").json()
    assert body["total"] == len(state.scores)
    assert sum(body["bands"].values()) == body["total"]
    assert sum(body["segments"].values()) == body["total"]
    assert body["bands"]["high"] == int((state.scores["risk_band"] == "high").sum())
    assert body["max_value_at_risk"] == pytest.approx(state.scores["value_at_risk"].max())


def test_the_new_reads_need_the_key(client: TestClient, monkeypatch: pytest.MonkeyPatch,
                                    state: Any) -> None:
    monkeypatch.setenv(API_KEYS_ENV, "k1")
    customer = str(state.scores["customer_id"].iloc[0])
    for url in ("/retention/series", "/retention/cohorts", f"/customers/{customer}/purchases",
                "/at-risk/facets", "/at-risk?q=C"):
        assert client.get(url).status_code == 401, url
        assert client.get(url, headers={"X-API-Key": "k1"}).status_code == 200, url


# --- in a real browser ----------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with chromium_browser() as browser:
        yield browser


@pytest.fixture(scope="module")
def ledger_state(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The served base (as ``served()``), with settings and a ledger of one closed scoring."""
    from churnlens._config import load_config
    from churnlens._ledger import record_scoring
    from churnlens._scoring import score_customers
    from churnlens.api import build_state

    _, clean, artifact = trained()
    store = tmp_path_factory.mktemp("ledger") / "mlflow.db"
    settings = load_config(overrides={"mlflow.tracking_uri": f"sqlite:///{store}"})
    past = score_customers(clean, LEDGER_AS_OF, artifact, settings=settings.scoring,
                           allow_past=True)
    record_scoring(past, artifact, settings, source="score")
    return build_state(artifact, clean, AS_OF, settings=settings)


@pytest.fixture(scope="module")
def base_url(ledger_state: Any) -> Iterator[str]:
    app = create_app(lambda: ledger_state, initial=ledger_state)
    with serve_open(app) as url:
        yield url


def _open(tab: Any, base_url: str, route: str, view: str) -> Any:
    page = tab.page
    page.goto(f"{base_url}/{route}", wait_until="load")
    page.wait_for_selector(f'body[data-ready="{view}"]', timeout=30_000)
    return page


def _screenshot(page: Any, name: str) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / f"web-{name}.png"), full_page=True)


@pytest.mark.browser
@pytest.mark.slow
def test_overview_shows_the_crr_of_the_cli(chromium: Any, base_url: str,
                                           tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from churnlens.cli import app as cli_app

    with offline_page(chromium) as tab:
        page = _open(tab, base_url, "#/", "overview")
        period = page.locator("#headline-period")
        start, end = period.get_attribute("data-start"), period.get_attribute("data-end")
        crr_card = page.locator('[data-metric="crr"]')
        shown = crr_card.locator(".value").inner_text()
        shown_value = float(crr_card.get_attribute("data-value") or "nan")
        assert page.locator(".chart svg .point.crr").count() >= 3
        assert page.locator(".chart svg .prediction").count() >= 2
        assert page.locator("#cohorts tbody tr").count() >= 12
        axis_text = page.locator(".chart svg .axis-label").all_text_contents()
        source = page.locator("#prediction-source").get_attribute("data-source")
        past = page.locator("#predicted-vs-actual tbody tr").evaluate_all(
            "rows => rows.map(r => [...r.cells].map(c => c.innerText))")
        _screenshot(page, "overview")
    tab.assert_clean()
    assert end == AS_OF  # the last complete period of the model's horizon
    # the ledger's recorded prediction beside what happened, as GET /monitoring has them
    import httpx

    entry = httpx.get(f"{base_url}/monitoring", timeout=60).json()["entries"][0]
    rates = {r["rate"]: r for r in entry["realized"]["rates"]}
    assert source == "ledger"
    assert [row[0] for row in past] == [LEDGER_AS_OF]
    assert past[0][2] == f"{entry['predicted']['cohort_retention']:.1f}%"
    assert past[0][4] == f"{rates['cohort_retention']['actual']:.1f}%"
    assert past[0][8] == f"{rates['crr']['actual']:.1f}%"
    assert axis_text == ["end of each 91d period (date)", "rate (%)"]

    raw, _, _ = trained()
    path = tmp_path / "tx.csv"
    raw.to_csv(path, index=False)
    result = CliRunner().invoke(cli_app, ["retention", "-t", str(path), "--start", start,
                                          "--end", end, "--json"])
    assert result.exit_code == 0, result.stderr
    cli = json.loads(result.stdout)
    assert shown_value == pytest.approx(cli["crr"], rel=1e-12)
    assert shown == f"{cli['crr']:,.1f}%"


@pytest.mark.browser
@pytest.mark.slow
def test_at_risk_list_starts_with_the_riskiest_and_filters_by_band(
        chromium: Any, base_url: str, ledger_state: Any) -> None:
    scores = ledger_state.scores
    with offline_page(chromium) as tab:
        page = _open(tab, base_url, "#/at-risk", "at-risk")
        first = page.locator("#at-risk-table tbody tr").first.get_attribute("data-customer")
        total = int(page.locator("#count").get_attribute("data-total") or -1)
        before = page.locator("#at-risk-table tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.customer)")
        _screenshot(page, "at-risk")
        page.select_option("select[name=band]", "medium")
        page.wait_for_function(
            "() => document.body.dataset.ready === 'at-risk' && location.hash.includes('band=')")
        after_total = int(page.locator("#count").get_attribute("data-total") or -1)
        after = page.locator("#at-risk-table tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.customer)")
        bands = set(page.locator("#at-risk-table tbody .band").all_inner_texts())
    tab.assert_clean()
    assert first == _ranked(scores)["customer_id"].iloc[0]
    assert total == len(scores)
    medium = _ranked(scores.loc[scores["risk_band"] == "medium"])
    assert after_total == len(medium) != total
    assert after != before
    assert after == medium["customer_id"].head(len(after)).tolist()
    assert bands == {"medium"}


@pytest.mark.browser
@pytest.mark.slow
def test_the_download_is_the_filtered_list(chromium: Any, base_url: str,
                                           ledger_state: Any) -> None:
    import httpx

    scores = ledger_state.scores
    floor = round(float(scores["value_at_risk"].quantile(0.3)), 2)
    with offline_page(chromium) as tab:
        page = _open(tab, base_url, "#/at-risk?band=high&sort=value_at_risk", "at-risk")
        page.fill("input[name=min_value_at_risk]", str(floor))
        page.click("#filters button[type=submit]")
        page.wait_for_function("() => document.body.dataset.ready === 'at-risk' && "
                               "location.hash.includes('min_value_at_risk=')")
        total = int(page.locator("#count").get_attribute("data-total") or -1)
        with page.expect_download() as info:
            page.click("#download")
        downloaded_bytes = Path(info.value.path()).read_bytes()
        href = page.locator("#download").get_attribute("href")
        page.fill("input[name=control_percent]", "25")
        page.fill("input[name=seed]", "3")
        with page.expect_download() as info:
            page.click("#download")
        with_control = list(csv.DictReader(io.StringIO(
            Path(info.value.path()).read_text(encoding="utf-8"))))
    tab.assert_clean()
    expected = scores.loc[(scores["risk_band"] == "high")
                          & (scores["value_at_risk"] >= floor)]
    expected = expected.sort_values(["value_at_risk", "customer_id"],
                                    ascending=[False, True], kind="mergesort")
    downloaded = downloaded_bytes.decode("utf-8")
    assert total == len(expected) > 0
    assert _csv_ids(downloaded) == expected["customer_id"].tolist()
    assert downloaded_bytes == httpx.get(f"{base_url}{href}", timeout=30).content
    listed = httpx.get(f"{base_url}/at-risk", params={
        "band": "high", "sort": "value_at_risk", "min_value_at_risk": floor,
        "limit": 10_000}, timeout=30).json()
    assert [i["customer_id"] for i in listed["items"]] == _csv_ids(downloaded)
    # with a control group: the same list, a quarter of it held back
    assert [r["customer_id"] for r in with_control] == _csv_ids(downloaded)
    assert sum(r["group"] == "control" for r in with_control) == int(len(expected) * 0.25
                                                                      + 0.5)


@pytest.mark.browser
@pytest.mark.slow
def test_the_list_sized_by_profit_reads_its_numbers_from_the_api(
        chromium: Any, base_url: str, ledger_state: Any) -> None:
    """Cost, save rate and margin typed in the page: the list, its size and expected
    total profit are the API's (and the rule's, churnlens._rules.at_risk_list)."""
    import httpx

    from churnlens._rules import at_risk_list, profit_terms

    scores = ledger_state.scores
    cost = round(0.1 * float(scores["expected_value"].median()), 2)
    shown: dict[float, dict[str, Any]] = {}
    with offline_page(chromium) as tab:
        page = _open(tab, base_url, "#/at-risk?list=campaign", "at-risk")
        for price in (cost, 4 * cost):
            page.fill("input[name=cost_per_contact]", str(price))
            page.fill("input[name=save_rate]", "0.3")
            page.fill("input[name=margin]", "0.6")
            page.click("#filters button[type=submit]")
            page.wait_for_function(
                "c => document.body.dataset.ready === 'at-risk' && "
                "location.hash.includes('cost_per_contact=' + c)", arg=str(price))
            shown[price] = {
                "total": int(page.locator("#count").get_attribute("data-total") or -1),
                "profit": float(page.locator("#profit-total").get_attribute("data-value")
                                or "nan"),
                "profit_text": page.locator("#profit-total").inner_text(),
                "ids": page.locator("#at-risk-table tbody tr").evaluate_all(
                    "rows => rows.map(r => r.dataset.customer)"),
                "gains": page.locator("#at-risk-table tbody td[data-profit]").evaluate_all(
                    "cells => cells.map(c => Number(c.dataset.profit))"),
                "headers": page.locator("#at-risk-table thead th").all_inner_texts(),
            }
            if price == cost:
                _screenshot(page, "at-risk-profit")
    tab.assert_clean()
    for price, seen in shown.items():
        expected = at_risk_list(scores, kind="campaign",
                                horizon_days=ledger_state.artifact.horizon_days,
                                profit=profit_terms(price, 0.3, 0.6))
        listed = httpx.get(f"{base_url}/at-risk", params={
            "list": "campaign", "cost_per_contact": price, "save_rate": 0.3, "margin": 0.6,
            "limit": 50}, timeout=30).json()
        assert seen["total"] == listed["total"] == len(expected)
        assert seen["profit"] == listed["expected_profit_total"]
        assert listed["expected_profit_total"] == pytest.approx(
            expected["expected_profit"].sum(), rel=1e-9)
        assert seen["profit_text"] == f"expected total profit {seen['profit']:,.2f}"
        assert seen["ids"] == [str(i["customer_id"]) for i in listed["items"]]
        assert seen["ids"] == expected["customer_id"].head(50).astype(str).tolist()
        assert seen["gains"] == [i["expected_profit"] for i in listed["items"]]
        assert "expected profit" in seen["headers"]
    assert 0 < shown[4 * cost]["total"] < shown[cost]["total"]


@pytest.mark.browser
@pytest.mark.slow
def test_customer_page_shows_the_customers_reasons(chromium: Any, base_url: str,
                                                   ledger_state: Any) -> None:
    state = ledger_state
    scores = state.scores
    reasons = scores[["reason_1", "reason_2", "reason_3"]].ne("").sum(axis=1)
    chosen = scores.loc[reasons == reasons.max()].iloc[0]
    customer = str(chosen["customer_id"])
    with offline_page(chromium) as tab:
        page = _open(tab, base_url, "#/at-risk", "at-risk")
        link = page.locator(f'#at-risk-table tr[data-customer="{customer}"] a')
        if link.count():  # on the first page: follow its link as a user would
            link.click()
        else:
            page.goto(f"{base_url}/#/customer/{customer}")
        page.wait_for_function("() => document.body.dataset.ready === 'customer'")
        shown = page.locator("#reasons li").all_inner_texts()
        heading = page.locator("h1").inner_text()
        risk = page.locator('[data-metric="churn_risk"] .value').inner_text()
        bars = page.locator(".chart svg rect.bar").count()
        axis_text = page.locator(".chart svg .axis-label").all_text_contents()
        _screenshot(page, "customer")
    tab.assert_clean()
    assert customer in heading
    assert shown == [r for r in chosen[["reason_1", "reason_2", "reason_3"]] if r]
    assert risk == f"{chosen['churn_risk'] * 100:.1f}%"
    tx = state.transactions
    days = tx.loc[tx["customer_id"] == customer, "timestamp"].dt.date.nunique()
    assert bars == days
    assert axis_text == ["purchase date", "net amount per day"]


@pytest.mark.browser
@pytest.mark.slow
def test_model_page_shows_the_model_and_its_monitoring(chromium: Any, base_url: str,
                                                       ledger_state: Any) -> None:
    import httpx

    artifact = ledger_state.artifact
    with offline_page(chromium) as tab:
        page = _open(tab, base_url, "#/model", "model")
        facts = page.locator("#model-facts").inner_text()
        models = page.locator("#model-metrics tbody th").all_inner_texts()
        monitoring = page.locator("#monitoring").inner_text()
        counts = page.locator("#monitoring-counts").inner_text()
        entries = page.locator("#monitoring-entries tbody tr td:first-child").all_inner_texts()
        _screenshot(page, "model")
    tab.assert_clean()
    assert f"{artifact.horizon_days} days" in facts
    assert artifact.as_of.isoformat() in facts
    assert models[0] == "churnlens (this model)" and len(models) == len(artifact.metrics)
    report = httpx.get(f"{base_url}/monitoring", timeout=60).json()
    assert counts.startswith("1 prediction in the ledger: 1 closed")
    assert entries == [LEDGER_AS_OF]
    if report["alerts"]:
        assert monitoring.splitlines() == [f"{a['as_of']}: {a['message']}"
                                           for a in report["alerts"]]
    else:
        assert monitoring == "No alerts."


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize(("route", "view"), [("#/", "overview"), ("#/at-risk", "at-risk"),
                                        ("#/model", "model")])
def test_pages_fit_a_phone(chromium: Any, base_url: str, route: str, view: str) -> None:
    with offline_page(chromium, width=PHONE_WIDTH, height=800) as tab:
        page = _open(tab, base_url, route, view)
        overflow = page.evaluate("document.documentElement.scrollWidth")
        chart_width = page.evaluate(
            "Math.max(0, ...[...document.querySelectorAll('.chart svg')].map("
            "s => s.getBoundingClientRect().width))")
    tab.assert_clean()
    assert overflow <= PHONE_WIDTH  # wide tables scroll inside their box, not the page
    assert chart_width <= PHONE_WIDTH


@pytest.mark.browser
@pytest.mark.slow
def test_with_keys_the_page_reads_its_data_through_the_session(
        chromium: Any, base_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # the served app reads the keys at each request: this test turns them on
    monkeypatch.setenv(API_KEYS_ENV, "web-test-key")
    with offline_page(chromium) as tab:
        page = tab.page
        page.goto(f"{base_url}/#/at-risk", wait_until="load")
        assert page.url.startswith(f"{base_url}/sign-in")
        page.fill("input[name=key]", "web-test-key")
        page.click("button")
        page.wait_for_url(f"{base_url}/")
        page.goto(f"{base_url}/#/at-risk")
        page.wait_for_selector('body[data-ready="at-risk"]', timeout=30_000)
        rows = page.locator("#at-risk-table tbody tr").count()
        sign_out = page.locator("form.sign-out button")
        assert sign_out.count() == 1
        sign_out.click()
        page.wait_for_url(f"{base_url}/sign-in**")
        # signed out: the data behind the page is closed again
        status = page.context.request.get(f"{base_url}/at-risk", max_redirects=0).status
    tab.assert_clean()
    assert rows == 50
    assert status == 401
