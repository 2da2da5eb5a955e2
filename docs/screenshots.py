"""Take the README's screenshots with the browser of the tests (Chromium, offline).

Writes ``docs/images/api-docs.png`` (``/docs`` of ``churnlens serve`` on the demo's data
and model) and ``docs/images/report-outlook.png`` (the outlook section of the demo's HTML
report). Run from the repository root after a demo, with the demo's MLflow store::

    cd /tmp/demo-shot-cwd && churnlens demo --out /tmp/demo-shot --customers 5000 --seed 42
    .venv/bin/python docs/screenshots.py --demo /tmp/demo-shot \\
        --tracking-uri sqlite:////tmp/demo-shot-cwd/mlflow.db

(``churnlens demo`` registers its model in ``sqlite:///mlflow.db`` of the working
directory.) The browser is the one of the ``browser`` tests (``tests/browser_support.py``:
the system's Chromium through Playwright), with every request off the loopback server
blocked: a page that needs the internet fails here, as in the tests.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser_support import (  # noqa: E402  (tests/ is not a package)
    chromium_path,
    launch_chromium,
    offline_page,
    serve,
)

# The box of a report section: from the first <h2> whose text contains the words, over the
# sections right after it whose headings contain them too, down to the next <h2> (or the
# page's end).
_SECTION_BOX = """(wanted) => {
  const headings = [...document.querySelectorAll('h2')];
  const matches = h => h.textContent.toLowerCase().includes(wanted);
  const index = headings.findIndex(matches);
  if (index < 0) return null;
  let last = index;
  while (last + 1 < headings.length && matches(headings[last + 1])) last += 1;
  const top = headings[index].getBoundingClientRect().top + window.scrollY;
  const next = headings[last + 1];
  const bottom = next ? next.getBoundingClientRect().top + window.scrollY
                      : document.documentElement.scrollHeight;
  return {x: 0, y: Math.max(0, top - 12), width: document.documentElement.clientWidth,
          height: bottom - top};
}"""


def _clean(tab: Any, what: str) -> None:
    problems = tab.blocked + tab.failed + tab.console_errors
    if problems:
        raise SystemExit(f"{what}: the page needed more than the local server: {problems}")


def shoot_docs(browser: Any, demo: Path, tracking_uri: str, model: str, out: Path) -> Path:
    """``/docs`` of the API serving the demo's data and model, as a reader first sees it."""
    from churnlens._config import load_config
    from churnlens.api import create_app, load_state

    settings = load_config(overrides={"mlflow.tracking_uri": tracking_uri})
    transactions = demo / "transactions.parquet"
    state = load_state(transactions, model, settings)
    app = create_app(lambda: load_state(transactions, model, settings), initial=state)
    target = out / "api-docs.png"
    with serve(app) as base_url, offline_page(browser, width=1280, height=1000) as tab:
        tab.page.goto(f"{base_url}/docs", wait_until="load")
        tab.page.wait_for_selector(".opblock .opblock-summary-path", timeout=30_000)
        tab.page.wait_for_load_state("networkidle")
        _clean(tab, "/docs")
        tab.page.screenshot(path=str(target))
    return target


def shoot_report_section(browser: Any, report: Path, section: str, out: Path) -> Path:
    """The report's sections whose headings contain ``section`` (case-insensitive; the
    first such section and those right after it)."""
    target = out / f"report-{section.lower().replace(' ', '-')}.png"
    with offline_page(browser, width=1100, height=900) as tab:
        tab.page.goto(report.resolve().as_uri(), wait_until="load")
        box = tab.page.evaluate(_SECTION_BOX, section.lower())
        if box is None:
            headings = tab.page.eval_on_selector_all("h2", "hs => hs.map(h => h.textContent)")
            raise SystemExit(f"{report}: no section heading contains {section!r}; the "
                             f"headings are {headings}")
        _clean(tab, str(report))
        tab.page.screenshot(path=str(target), clip=box, full_page=True)
    return target


def main(argv: list[str] | None = None) -> int:
    """Take the screenshots; print where each went."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=Path("/tmp/demo-shot"),
                        help="output folder of `churnlens demo` (report.html, "
                             "transactions.parquet)")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db",
                        help="MLflow store the demo registered its model in")
    parser.add_argument("--model", default="models:/churnlens@champion",
                        help="model URI or bundle folder served for /docs")
    parser.add_argument("--section", default="outlook",
                        help="report section to capture (text of its heading)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args(argv)
    executable = chromium_path()
    if executable is None:
        raise SystemExit("no Chromium found (apt-get install chromium, or set "
                         "$CHURNLENS_CHROMIUM)")
    args.out.mkdir(parents=True, exist_ok=True)
    with launch_chromium(executable) as browser:
        for written in (
            shoot_report_section(browser, args.demo / "report.html", args.section, args.out),
            shoot_docs(browser, args.demo, args.tracking_uri, args.model, args.out),
        ):
            print(written.relative_to(ROOT) if written.is_relative_to(ROOT) else written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
