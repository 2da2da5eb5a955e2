"""Plots for the library, the CLI and reports: one function per plot.

Every function returns a :class:`matplotlib.figure.Figure` built without
``matplotlib.pyplot``, so no global figure state is created or leaked (figures are
freed like any other object, and nothing pops up in scripts or servers). Save one
with :func:`save_figure` (atomic) or ``figure.savefig``; in a notebook, display it by
leaving it as the cell's last expression. matplotlib is imported only when a
function is called.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churnlens._io import atomic_path, check_output_path

# Model-quality plots live beside the report that embeds them; they are public here.
from churnlens._report import (
    plot_calibration,
    plot_feature_importance,
    plot_gains,
    plot_retention_pairs,
    plot_roc,
)
from churnlens.exceptions import ChurnlensError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "FIGURE_SUFFIXES",
    "plot_calibration",
    "plot_cohort_heatmap",
    "plot_feature_importance",
    "plot_gains",
    "plot_retention_pairs",
    "plot_retention_series",
    "plot_roc",
    "plot_tracking",
    "save_figure",
]

FIGURE_SUFFIXES = (".png", ".svg", ".pdf")

_RATE_LABELS = {
    "crr": "CRR",
    "cohort_retention": "cohort retention",
    "churn_rate": "churn rate",
    "repeat_rate": "repeat rate",
    "simple_ratio": "E / S",
}
_SERIES_COLUMNS = {
    "period", "start", "end", "window_days", "S", "E", "N", "reactivated", "crr",
    "cohort_retention", "churn_rate", "repeat_rate", "simple_ratio", "complete",
}
_MAX_PANELS = 12


def plot_cohort_heatmap(cohorts: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Heatmap of a cohort table: acquisition month by months since acquisition.

    Parameters
    ----------
    cohorts
        The output of :func:`churnlens.cohort_table` (also read back from its CSV).
        With a segment column, one panel per segment (at most 12).
    title
        Figure title; default "Customers buying again, by acquisition month".

    Returns
    -------
    matplotlib.figure.Figure
        Cells show the percentage of the cohort with a purchase in month k; months
        not yet elapsed are blank. The colour scale leaves out month 0 (always 100)
        so later months stay readable.

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"cohort": ["2024-01", "2024-02"], "cohort_size": [10, 4],
    ...                       0: [100.0, 100.0], 1: [30.0, float("nan")]})
    >>> figure = plot_cohort_heatmap(table)
    >>> len(figure.axes) >= 1
    True
    """
    months, segment_col = _cohort_layout(cohorts)
    groups = _groups(cohorts, segment_col)
    figure = _figure(
        width=min(3.0 + 0.55 * len(months), 18.0),
        height=sum(1.2 + 0.32 * len(rows) for _, rows in groups),
    )
    heights = [max(len(rows), 1) + 3 for _, rows in groups]
    axes = figure.subplots(len(groups), 1, squeeze=False,
                           gridspec_kw={"height_ratios": heights})[:, 0]
    later = cohorts[months[1:]].to_numpy(dtype=float) if len(months) > 1 else np.array([])
    finite = later[np.isfinite(later)] if later.size else later
    vmax = float(finite.max()) if finite.size and finite.max() > 0 else 100.0
    image = None
    for ax, (segment, rows) in zip(axes, groups, strict=True):
        image = _draw_heatmap(ax, rows, months, vmax)
        if segment_col is not None:
            ax.set_title(f"{segment_col} = {_label(segment)}", fontsize=10, loc="left")
    if image is not None:
        bar = figure.colorbar(image, ax=list(axes), shrink=0.8, pad=0.02)
        bar.set_label("customers buying in month k (% of cohort)")
    figure.suptitle(title or "Customers buying again, by acquisition month")
    return figure


def plot_retention_series(
    series: pd.DataFrame,
    *,
    rates: Sequence[str] = ("crr", "cohort_retention"),
    title: str | None = None,
) -> Figure:
    """Line chart of retention rates over consecutive periods.

    Parameters
    ----------
    series
        The output of :func:`churnlens.retention_series`. With a segment column,
        one panel per rate and one line per segment.
    rates
        Which rate columns to draw (default CRR and cohort retention).
    title
        Figure title; default "Retention by period".

    Returns
    -------
    matplotlib.figure.Figure
        Periods the data does not fully cover (``complete`` is False) are drawn as
        hollow markers joined by dotted lines, so they cannot be mistaken for
        measured ones.

    Examples
    --------
    >>> import pandas as pd
    >>> series = pd.DataFrame({"period": ["2024Q1", "2024Q2"], "crr": [80.0, 85.0],
    ...                        "cohort_retention": [60.0, 62.5],
    ...                        "complete": [True, False]})
    >>> figure = plot_retention_series(series)
    >>> [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    ['CRR', 'cohort retention']
    """
    rates = [rates] if isinstance(rates, str) else list(rates)
    unknown = [r for r in rates if r not in _RATE_LABELS]
    if unknown or not rates:
        raise ChurnlensError(
            f"rates must be a non-empty list of {sorted(_RATE_LABELS)}, got {rates!r}."
        )
    missing = [c for c in ("period", *rates) if c not in series.columns]
    if missing:
        raise ChurnlensError(
            f"the series has no column(s) {missing}. Suggestion: pass the output of "
            "churnlens.retention_series."
        )
    extra = [c for c in series.columns if c not in _SERIES_COLUMNS]
    if len(extra) > 1:
        raise ChurnlensError(f"the series has unexpected columns {extra}.")
    segment_col = extra[0] if extra else None
    complete = (series["complete"].to_numpy(dtype=bool) if "complete" in series
                else np.ones(len(series), dtype=bool))
    labels = list(dict.fromkeys(series["period"].astype(str)))
    position = {label: i for i, label in enumerate(labels)}
    panels = rates if segment_col else [None]
    figure = _figure(width=min(4.0 + 0.45 * len(labels), 14.0), height=1.0 + 3.2 * len(panels))
    axes = figure.subplots(len(panels), 1, squeeze=False, sharex=True)[:, 0]
    colors = _colors()
    for ax, panel_rate in zip(axes, panels, strict=True):
        if segment_col is None:
            lines = [(_RATE_LABELS[r], series, r) for r in rates]
        else:
            assert panel_rate is not None
            lines = [(f"{segment_col} = {_label(s)}", rows, panel_rate)
                     for s, rows in _groups(series, segment_col)]
            ax.set_title(_RATE_LABELS[panel_rate], fontsize=10, loc="left")
        for i, (label, rows, rate) in enumerate(lines):
            x = rows["period"].astype(str).map(position).to_numpy()
            mask = (rows["complete"].to_numpy(dtype=bool) if "complete" in rows
                    else np.ones(len(rows), dtype=bool))
            _draw_line(ax, x, rows[rate].to_numpy(dtype=float), mask, label,
                       colors[i % len(colors)])
        ax.set_ylabel("%")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    axes[-1].set_xticks(range(len(labels)), labels, rotation=45 if len(labels) > 6 else 0,
                        ha="right" if len(labels) > 6 else "center", fontsize=8)
    if len(labels) > 24:  # keep about 24 tick labels
        for i, tick in enumerate(axes[-1].get_xticklabels()):
            tick.set_visible(i % (len(labels) // 24 + 1) == 0)
    if not complete.all():
        axes[-1].set_xlabel("hollow markers: period not fully covered by the data")
    figure.suptitle(title or "Retention by period")
    return figure


def save_figure(figure: Figure, path: str | os.PathLike[str], *, dpi: int = 150) -> Path:
    """Write a figure atomically as ``.png``, ``.svg`` or ``.pdf`` (by its suffix).

    Parameters
    ----------
    figure
        A figure, such as one returned by the ``plot_*`` functions.
    path
        The output file; its suffix picks the format. Its folder must exist.
    dpi
        Resolution of ``.png`` output.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    ChurnlensError
        An unsupported suffix, a folder as ``path``, or a missing folder.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from matplotlib.figure import Figure
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     out = save_figure(Figure(), pathlib.Path(folder) / "empty.png")
    ...     out.stat().st_size > 0
    True
    """
    out = check_output_path(path, suffixes=FIGURE_SUFFIXES)
    with atomic_path(out) as tmp:
        figure.savefig(tmp, format=out.suffix.lower().lstrip("."), dpi=dpi,
                       bbox_inches="tight")
    return out


# --- helpers ----------------------------------------------------------------------


def _figure(*, width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, min(max(height, 2.5), 40.0)), layout="constrained")


def _colors() -> list[str]:
    from matplotlib import rcParams

    return list(rcParams["axes.prop_cycle"].by_key()["color"])


def _label(value: Any) -> str:
    return "(missing)" if value is None or (isinstance(value, float) and np.isnan(value)) \
        else str(value)


def _groups(frame: pd.DataFrame, segment_col: str | None) -> list[tuple[Any, pd.DataFrame]]:
    """Rows per segment value in order of first appearance (one group without one)."""
    if segment_col is None:
        return [(None, frame)]
    keys = frame[segment_col]
    values = list(dict.fromkeys(keys.dropna()))
    if keys.isna().any():
        values.append(None)
    if len(values) > _MAX_PANELS:
        raise ChurnlensError(
            f"{len(values)} segments in column {segment_col!r}; the plot shows at most "
            f"{_MAX_PANELS}. Suggestion: filter the table to the segments you need."
        )
    groups = []
    for value in values:
        mask = keys.isna() if value is None else keys.notna() & (keys == value)
        groups.append((value, frame[mask.to_numpy(dtype=bool)]))
    return groups


def _cohort_layout(cohorts: pd.DataFrame) -> tuple[list[Any], str | None]:
    """The month columns (0, 1, ...) and the segment column, if any, of a cohort table."""
    required = ("cohort", "cohort_size")
    if any(c not in cohorts.columns for c in required):
        raise ChurnlensError(
            "the cohort table needs the columns 'cohort' and 'cohort_size'. Suggestion: "
            "pass the output of churnlens.cohort_table."
        )
    months = [c for c in cohorts.columns if _month_number(c) is not None]
    months.sort(key=_month_number)  # type: ignore[arg-type]  # never None for these
    if not months:
        raise ChurnlensError("the cohort table has no month columns (0, 1, 2, ...).")
    others = [c for c in cohorts.columns if c not in (*required, *months)]
    if len(others) > 1:
        raise ChurnlensError(f"the cohort table has unexpected columns {others}.")
    return months, (others[0] if others else None)


def _month_number(column: Any) -> int | None:
    """The k of a month column: an integer, or its text as read back from CSV."""
    if isinstance(column, int | np.integer) and not isinstance(column, bool):
        return int(column)
    if isinstance(column, str) and column.isdigit():
        return int(column)
    return None


def _draw_heatmap(ax: Axes, rows: pd.DataFrame, months: list[Any], vmax: float) -> Any:
    values = rows[months].to_numpy(dtype=float)
    masked = np.ma.masked_invalid(values)
    image = ax.imshow(masked, aspect="auto", cmap="YlGnBu", vmin=0.0, vmax=vmax,
                      interpolation="nearest")
    sizes = rows["cohort_size"].to_numpy()
    ax.set_yticks(range(len(rows)),
                  [f"{c}  (n={int(n):,})" for c, n in zip(rows["cohort"], sizes, strict=True)],
                  fontsize=8)
    step = max(1, len(months) // 24)
    ax.set_xticks(range(0, len(months), step), [str(_month_number(m)) for m in months][::step],
                  fontsize=8)
    ax.set_xlabel("months since acquisition (k)")
    ax.set_ylabel("acquisition month")
    if values.size <= 400:  # write the numbers when the cells are big enough to read
        for (i, j), value in np.ndenumerate(values):
            if np.isfinite(value):
                ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if value > 0.6 * vmax else "black")
    return image


def _draw_line(ax: Axes, x: np.ndarray, y: np.ndarray, complete: np.ndarray, label: str,
               color: str) -> None:
    ax.plot(x, y, linestyle=":", color=color, linewidth=1.0)
    measured = np.where(complete, y, np.nan)
    ax.plot(x, measured, marker="o", linestyle="-", color=color, label=label, markersize=4)
    if (~complete).any():
        ax.plot(x[~complete], y[~complete], marker="o", linestyle="none", color=color,
                markerfacecolor="none", markersize=5)


def plot_tracking(tracking: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Predicted (with its 95% interval) and actual retention per scoring date.

    The way buy-till-you-die tools show expected against actual purchases: for each
    scoring recorded in the ledger, the cohort retention and CRR the model predicted
    for the horizon after it (a line and a shaded interval) and, once the horizon has
    closed, the rate that actually happened (markers; an open horizon has none).

    Parameters
    ----------
    tracking
        :meth:`churnlens._monitoring.MonitorReport.tracking_table`: ``as_of`` and, for
        ``cohort_retention`` and ``crr``, ``predicted_<rate>``, ``predicted_<rate>_low``,
        ``predicted_<rate>_high`` and ``actual_<rate>`` (percent; NaN while open).
    title
        Figure title; default "Predicted vs actual retention per scoring date".

    Returns
    -------
    matplotlib.figure.Figure
        One panel per rate, the scoring date on the x axis, percent on the y axis.

    Examples
    --------
    >>> import datetime as dt
    >>> import pandas as pd
    >>> row = {"as_of": dt.date(2024, 6, 30), "predicted_cohort_retention": 60.0,
    ...        "predicted_cohort_retention_low": 57.0,
    ...        "predicted_cohort_retention_high": 63.0, "actual_cohort_retention": 52.0,
    ...        "predicted_crr": 70.0, "predicted_crr_low": 66.0, "predicted_crr_high": 74.0,
    ...        "actual_crr": 61.0}
    >>> figure = plot_tracking(pd.DataFrame([row]))
    >>> [ax.get_ylabel() for ax in figure.axes]
    ['cohort retention (%)', 'CRR (%)']
    """
    rates = ("cohort_retention", "crr")
    needed = ["as_of", *(f"{kind}_{rate}{end}" for rate in rates
                         for kind, end in (("predicted", ""), ("predicted", "_low"),
                                           ("predicted", "_high"), ("actual", "")))]
    missing = [c for c in needed if c not in tracking.columns]
    if missing:
        raise ChurnlensError(
            f"the tracking table has no column(s) {missing}. Suggestion: pass "
            "MonitorReport.tracking_table() (churnlens monitor).")
    frame = tracking.sort_values("as_of", kind="stable")
    x = pd.to_datetime(frame["as_of"]).to_numpy()
    figure = _figure(width=7.5, height=6.4)
    axes = figure.subplots(len(rates), 1, squeeze=False, sharex=True)[:, 0]
    for ax, rate in zip(axes, rates, strict=True):
        predicted = frame[f"predicted_{rate}"].to_numpy(dtype=float)
        low = frame[f"predicted_{rate}_low"].to_numpy(dtype=float)
        high = frame[f"predicted_{rate}_high"].to_numpy(dtype=float)
        actual = frame[f"actual_{rate}"].to_numpy(dtype=float)
        ax.fill_between(x, low, high, color="#1b6ca8", alpha=0.18, linewidth=0,
                        label="predicted 95% interval")
        ax.plot(x, predicted, color="#1b6ca8", marker="o", markersize=3,
                label="predicted")
        if len(x) == 1:  # one date: an interval of zero width would not show
            ax.errorbar(x, predicted, yerr=[predicted - low, high - predicted],
                        color="#1b6ca8", capsize=4, linestyle="none")
        outside = (actual < low) | (actual > high)
        inside = np.isfinite(actual) & ~outside
        if inside.any():
            ax.plot(x[inside], actual[inside], color="#222222", marker="s",
                    linestyle="none", markersize=5, label="actual (inside the interval)")
        if outside.any():
            ax.plot(x[outside], actual[outside], color="#d1495b", marker="X",
                    linestyle="none", markersize=8, label="actual (outside: alert)")
        ax.set_ylabel(f"{_RATE_LABELS[rate]} (%)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    if len(np.unique(x)) == 1:  # one date: a readable range around it, not years
        pad = np.timedelta64(45, "D")
        axes[-1].set_xlim(x[0] - pad, x[0] + pad)
    axes[-1].set_xlabel("scoring date (as-of); each rate is for the horizon after it")
    figure.autofmt_xdate()
    figure.suptitle(title or "Predicted vs actual retention per scoring date")
    return figure
