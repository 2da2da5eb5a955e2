"""The training report: a self-contained HTML page with every section, readable tables
and real (non-blank) embedded plots."""

from __future__ import annotations

import base64
import io
import re
import warnings
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import churnlens
from churnlens._config import load_config
from churnlens._pipeline import TrainingRun, train
from churnlens._report import figure_png, plot_retention_pairs, write_html_report

SEED = 8
AS_OF = "2024-09-30"
print(f"test_report: generate_transactions(1500, seed={SEED}), as of {AS_OF}")
PLOT_SECTIONS = ["ROC, backtest trained at 2024-07-01",
                 "Lift and gains, backtest trained at 2024-07-01",
                 "Calibration, backtest trained at 2024-07-01",
                 "Predicted vs actual retention",
                 "Predicted vs actual spend by decile, backtest trained at 2024-07-01",
                 "Feature importance", "Acquisition cohorts", "CRR over time"]
OUTLOOK_SECTIONS = ["Outlook: the next 91 days after 2024-09-30",
                    "Outlook: customers lost and value at risk"]
TABLE_SECTIONS = [*OUTLOOK_SECTIONS, "Validation on the held-out latest cutoff (2024-07-01)",
                  "Backtest: trained at A from history up to A, evaluated on (A, A+H]",
                  "Value backtest: spend in (A, A+H], predicted vs actual, per customer"]


class _Page(HTMLParser):
    """Headings, images, table cells and visible text of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[str] = []
        self.images: list[dict[str, str]] = []
        self.tables = 0
        self.cells: list[str] = []
        self.text: list[str] = []
        self._tag: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag = tag
        if tag == "img":
            self.images.append({k: v or "" for k, v in attrs})
        if tag == "table":
            self.tables += 1
        if tag in ("h2", "td", "th"):
            self._buffer: list[str] = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2":
            self.headings.append("".join(self._buffer).strip())
        if tag in ("td", "th"):
            self.cells.append("".join(self._buffer).strip())
        self._tag = None

    def handle_data(self, data: str) -> None:
        if hasattr(self, "_buffer"):
            self._buffer.append(data)
        self.text.append(data)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> TrainingRun:
    folder = tmp_path_factory.mktemp("report")
    settings = load_config(overrides={"mlflow.enabled": False, "model.n_estimators": 60,
                                      "model.n_jobs": 1, "snapshots.count": 5})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train(churnlens.generate_transactions(1500, seed=SEED), as_of=AS_OF,
                     settings=settings, report_path=folder / "report.html")


def _page(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def test_report_has_every_section_and_embedded_plot(run: TrainingRun) -> None:
    page = _page(run.report_path)
    assert page.headings[0] == "Summary"
    assert page.headings[1:3] == OUTLOOK_SECTIONS  # the outlook comes first (issue 16)
    for section in TABLE_SECTIONS:
        assert section in page.headings, section
    for section in PLOT_SECTIONS:
        assert any(h.startswith(section) for h in page.headings), section
    assert page.tables == len(TABLE_SECTIONS)
    assert len(page.images) == len(PLOT_SECTIONS)
    for image in page.images:
        # self-contained: the plot is in the page, nothing is fetched
        assert image["src"].startswith("data:image/png;base64,"), image["alt"]
        assert image["alt"]


def test_embedded_plots_are_not_blank(run: TrainingRun) -> None:
    from PIL import Image

    for image in _page(run.report_path).images:
        png = base64.b64decode(image["src"].removeprefix("data:image/png;base64,"))
        pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
        assert pixels.shape[0] > 200 and pixels.shape[1] > 400, image["alt"]
        # Axes, ticks and labels are grey; the data (lines, bars, cells) are coloured.
        # An empty set of axes has no coloured pixel; the thinnest plot here (ROC
        # lines) has about 1% of them.
        colourful = (pixels.max(axis=2) - pixels.min(axis=2)) > 60
        assert colourful.mean() > 0.004, f"{image['alt']}: no data drawn"


def test_report_tables_show_every_model_and_no_raw_nan(run: TrainingRun) -> None:
    page = _page(run.report_path)
    cells = page.cells
    for model in ("churnlens", "bgnbd", "logistic", "recency"):
        assert cells.count(model) == 2, model  # once per table
    for header in ("AUC", "Brier", "retention %", "cohort retention %", "CRR %"):
        assert header in cells, header
    # Pareto/NBD in the backtest only; the value backtest's table, one row per predictor
    assert cells.count("paretonbd") == 1
    for predictor in ("value_model", "paretonbd_gammagamma", "bgnbd_gammagamma", "heuristic",
                      "heuristic_x_retention"):
        assert cells.count(predictor) == 1, predictor
    for header in ("MAE", "RMSE", "Spearman", "total %"):
        assert header in cells, header
    mae = run.backtest.runs[0]["value"]["models"]["value_model"]["mae"]
    assert f"{mae:.3f}" in cells
    text = " ".join(page.text)
    assert not re.search(r"\bnan\b|\bNaN\b|\bNone\b", text)
    # percent columns with one decimal, metrics with three
    auc = run.backtest.runs[0]["models"]["churnlens"]["auc"]
    retention = run.backtest.runs[0]["models"]["churnlens"]["predicted_retention"]
    assert f"{auc:.3f}" in cells and f"{retention:.1f}" in cells
    assert "2024-09-30" in text and "(12)" not in text  # 5 training cutoffs
    assert f"{run.fitted.cutoffs[0]} .. {run.fitted.cutoffs[-1]} (5)" in text


def test_write_html_report_escapes_and_accepts_rendered_png(tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure()
    fig.add_subplot().plot([0, 1], [1, 0])
    png = figure_png(fig)
    path = write_html_report(
        tmp_path / "r.html", title="<b>t</b>", summary={"a<": 1},
        tables={"T": pd.DataFrame({"model": ["x"], "auc": [0.5], "retention %": [float("nan")]})},
        figures={"rendered": png, "figure": fig}, notes=["n&"], captions={"T": "c>"})
    text = path.read_text()
    assert "<b>t</b>" not in text and "&lt;b&gt;t&lt;/b&gt;" in text
    assert "a&lt;" in text and "n&amp;" in text and "c&gt;" in text
    assert text.count(base64.b64encode(png).decode()) == 2  # same PNG either way
    page = _page(path)
    assert "\u2013" in page.cells and "nan" not in " ".join(page.text).lower()


def test_retention_pairs_legend_does_not_cover_the_bars(run: TrainingRun) -> None:
    fig = plot_retention_pairs(run.backtest.table())
    assert not any(ax.get_legend() for ax in fig.axes)  # one legend, outside the axes
    assert len(fig.legends) == 1
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["actual", "churnlens (predicted)", "recency (predicted)",
                      "logistic (predicted)", "bgnbd (predicted)", "paretonbd (predicted)"]
    # every bar carries its value
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert len(texts) == 2 * 6


def _backtest_like_table(dates: list[str]) -> pd.DataFrame:
    rng = np.random.default_rng(SEED)
    rows = []
    for as_of in dates:
        actual = {"cohort_retention": rng.uniform(40, 70), "crr": rng.uniform(60, 110)}
        for model in ("churnlens", "bgnbd", "logistic", "recency"):
            row = {"as_of": as_of, "model": model}
            for rate in ("cohort_retention", "crr"):
                value = actual[rate] + rng.normal(0, 3)
                row |= {f"actual_{rate}": actual[rate], f"predicted_{rate}": value,
                        f"predicted_{rate}_low": value - 2.5,
                        f"predicted_{rate}_high": value + 2.5}
            rows.append(row)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("periods", [1, 2, 4])
def test_retention_pairs_text_never_overlaps(periods: int) -> None:
    """Tick labels and bar values stay apart however many backtest periods there are."""
    dates = [str(pd.Timestamp("2024-01-01") + pd.DateOffset(months=3 * k))[:10]
             for k in range(periods)]
    fig = plot_retention_pairs(_backtest_like_table(dates))
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # text extents are known once drawn, as when saved to PNG
    renderer = canvas.get_renderer()
    for ax in fig.axes:
        ticks = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
        values = [t.get_window_extent(renderer) for t in ax.texts]
        assert len(values) == periods * 5
        for boxes in (ticks, values):
            for i, a in enumerate(boxes):
                for b in boxes[i + 1:]:
                    assert not a.overlaps(b), (periods, ax.get_title())


def test_sentences_in_tables_wrap_and_numbers_do_not(tmp_path: Path) -> None:
    """The outlook's definitions ran off the right of the page (nowrap cells)."""
    sentence = "expected number of the active customers with no purchase in the horizon"
    frame = pd.DataFrame({"total": ["customers lost"], "value %": [12.34],
                          "definition": [sentence]})
    path = write_html_report(tmp_path / "r.html", title="t", summary={}, tables={"T": frame},
                             figures={})
    text = path.read_text(encoding="utf-8")
    assert f"<td class='text'>{sentence}</td>" in text
    assert "<td>customers lost</td>" in text and "<td>12.3</td>" in text
    assert re.search(r"td\.text\{white-space:normal", text)
