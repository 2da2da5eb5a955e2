"""``churnlens.plots``: figures from retention results, saved atomically, no pyplot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from churnlens import ChurnlensError, cohort_table, retention_series
from churnlens.plots import plot_cohort_heatmap, plot_retention_series, save_figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def segmented(golden_transactions: pd.DataFrame) -> pd.DataFrame:
    countries = {"A": "FR", "B": "FR", "C": "DE", "D": "DE", "E": "US", "F": "FR"}
    return golden_transactions.assign(country=golden_transactions["customer_id"].map(countries))


def test_cohort_heatmap(golden_transactions: pd.DataFrame) -> None:
    table = cohort_table(golden_transactions)
    figure = plot_cohort_heatmap(table)
    assert isinstance(figure, Figure)
    heatmap = figure.axes[0]
    image = heatmap.get_images()[0].get_array()
    assert image.shape == (len(table), 11)
    assert image.mask[-1, 1] and not image.mask[-1, 0]  # unelapsed cells are blank
    labels = [t.get_text() for t in heatmap.get_yticklabels()]
    assert labels[0] == "2023-06  (n=1)"


def test_cohort_heatmap_from_csv_and_by_segment(segmented: pd.DataFrame, tmp_path: Path) -> None:
    table = cohort_table(segmented, segment_col="country")
    path = tmp_path / "cohorts.csv"
    table.to_csv(path, index=False)
    figure = plot_cohort_heatmap(pd.read_csv(path, dtype={"cohort": str}))
    panels = [ax for ax in figure.axes if ax.get_images()]
    assert [ax.get_title(loc="left") for ax in panels] == [
        "country = DE", "country = FR", "country = US"]


def test_cohort_heatmap_refuses_other_tables() -> None:
    with pytest.raises(ChurnlensError, match="cohort_table"):
        plot_cohort_heatmap(pd.DataFrame({"x": [1]}))


def test_retention_series_plot_marks_incomplete_periods(
    golden_transactions: pd.DataFrame,
) -> None:
    series = retention_series(golden_transactions, "quarter")
    figure = plot_retention_series(series, rates=["crr", "cohort_retention", "repeat_rate"])
    assert isinstance(figure, Figure)
    ax = figure.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["CRR", "cohort retention", "repeat rate"]
    hollow = [line for line in ax.get_lines() if line.get_markerfacecolor() == "none"]
    assert len(hollow) == 3  # one per rate, for the incomplete quarters
    assert len(hollow[0].get_xdata()) == int((~series["complete"]).sum())
    assert [t.get_text() for t in ax.get_xticklabels()] == series["period"].tolist()


def test_retention_series_plot_by_segment(segmented: pd.DataFrame) -> None:
    series = retention_series(segmented, "quarter", segment_col="country")
    figure = plot_retention_series(series)
    assert [ax.get_title(loc="left") for ax in figure.axes] == ["CRR", "cohort retention"]
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert legend == ["country = DE", "country = FR", "country = US"]


@pytest.mark.parametrize("rates", [["retention"], []])
def test_retention_series_plot_refuses_unknown_rates(
    golden_transactions: pd.DataFrame, rates: list[str],
) -> None:
    with pytest.raises(ChurnlensError, match="rates must be"):
        plot_retention_series(retention_series(golden_transactions, "quarter"), rates=rates)


def test_save_figure_writes_png_and_refuses_bad_paths(tmp_path: Path) -> None:
    figure = plot_retention_series(pd.DataFrame({
        "period": ["a", "b"], "crr": [1.0, np.nan], "cohort_retention": [2.0, 3.0]}))
    out = save_figure(figure, tmp_path / "series.png")
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert save_figure(figure, tmp_path / "series.svg").read_text().lstrip().startswith("<?xml")
    with pytest.raises(ChurnlensError, match="unsupported output type"):
        save_figure(figure, tmp_path / "series.gif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series.png", "series.svg"]


def test_importing_churnlens_loads_no_matplotlib_and_plots_use_no_pyplot() -> None:
    code = (
        "import sys, churnlens, churnlens.plots\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported at import time'\n"
        "import pandas as pd\n"
        "from churnlens.plots import plot_cohort_heatmap\n"
        "plot_cohort_heatmap(pd.DataFrame({'cohort': ['2024-01'], 'cohort_size': [1],"
        " 0: [100.0]}))\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
