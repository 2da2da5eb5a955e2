"""Plots of model quality and the self-contained HTML training report.

Figures are built on :class:`matplotlib.figure.Figure` directly (no pyplot global
state), so they are safe in servers, notebooks and tests alike.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churnlens._evaluation import calibration_table, lift_table, value_decile_table
from churnlens._io import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "outlook_section",
    "plot_calibration",
    "plot_feature_importance",
    "plot_gains",
    "plot_retention_pairs",
    "plot_roc",
    "plot_value_deciles",
    "write_html_report",
]

_COLORS = {"churnlens": "#1b6ca8", "bgnbd": "#d1495b", "logistic": "#66a182",
           "recency": "#edae49", "paretonbd": "#8e6c8a",
           # the value backtest's predictors
           "value_model": "#1b6ca8", "paretonbd_gammagamma": "#8e6c8a",
           "bgnbd_gammagamma": "#d1495b", "heuristic": "#edae49",
           "heuristic_x_retention": "#66a182"}


def _figure(width: float = 6.4, height: float = 4.4) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _color(name: str) -> str:
    return _COLORS.get(name, "#555555")


def plot_roc(churned: Any, risks: Mapping[str, Any], *, title: str = "ROC") -> Figure:
    """ROC curve of each model's churn risk (churned = positive class).

    Parameters
    ----------
    churned : array-like of int
        The truth per customer: 1 if they churned, 0 if they bought again.
    risks : mapping of str to array-like of float
        Model name -> churn risk of the same customers, in the same order.
    title : str
        Title of the axes.

    Returns
    -------
    matplotlib.figure.Figure
        One curve per model, its AUC in the legend, and the random diagonal.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    fig = _figure()
    ax = fig.add_subplot()
    for name, risk in risks.items():
        fpr, tpr, _ = roc_curve(churned, risk)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(churned, risk):.3f})",
                color=_color(name), lw=2 if name == "churnlens" else 1.2)
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def plot_gains(churned: Any, risks: Mapping[str, Any], *, title: str = "Lift by decile"
               ) -> Figure:
    """Lift per risk decile (left) and cumulative gain (right) for each model.

    Parameters
    ----------
    churned : array-like of int
        The truth per customer: 1 if they churned, 0 if they bought again.
    risks : mapping of str to array-like of float
        Model name -> churn risk of the same customers, in the same order.
    title : str
        Title of the lift axes.

    Returns
    -------
    matplotlib.figure.Figure
        Two axes: churn rate of each decile over the average, and the share of all
        churners reached when contacting customers from the highest risk down.
    """
    fig = _figure(9.6, 4.0)
    lift_ax, gain_ax = fig.subplots(1, 2)
    width = 0.8 / max(len(risks), 1)
    for i, (name, risk) in enumerate(risks.items()):
        table = lift_table(churned, risk)
        lift_ax.bar(table["decile"] + (i - (len(risks) - 1) / 2) * width, table["lift"],
                    width=width, label=name, color=_color(name))
        gain_ax.plot(np.r_[0, table["decile"] * 10], np.r_[0, table["cumulative_gain"] * 100],
                     marker="o", ms=3, label=name, color=_color(name))
    lift_ax.axhline(1, color="grey", ls=":", lw=1)
    lift_ax.set(xlabel="risk decile (1 = highest risk)", ylabel="lift (churn rate / average)",
                title=title, xticks=range(1, 11))
    gain_ax.plot([0, 100], [0, 100], color="grey", ls=":", lw=1)
    gain_ax.set(xlabel="% of customers contacted (highest risk first)",
                ylabel="% of churners reached", title="Cumulative gain")
    lift_ax.legend(fontsize=8)
    return fig


def plot_calibration(churned: Any, risks: Mapping[str, Any], *, title: str = "Calibration"
                     ) -> Figure:
    """Mean predicted churn risk vs observed churn rate, in deciles of risk.

    Parameters
    ----------
    churned : array-like of int
        The truth per customer: 1 if they churned, 0 if they bought again.
    risks : mapping of str to array-like of float
        Model name -> churn risk of the same customers, in the same order.
    title : str
        Title of the axes.

    Returns
    -------
    matplotlib.figure.Figure
        One line per model over ten equal-count groups; the diagonal is perfect
        calibration.
    """
    fig = _figure()
    ax = fig.add_subplot()
    for name, risk in risks.items():
        table = calibration_table(churned, risk)
        ax.plot(table["mean_risk"], table["churn_rate"], marker="o", ms=4, label=name,
                color=_color(name), lw=2 if name == "churnlens" else 1.2)
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1, label="perfect")
    ax.set(xlabel="mean predicted churn risk", ylabel="observed churn rate", title=title,
           xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=8)
    return fig


def plot_value_deciles(actual: Any, predictions: Mapping[str, Any], *,
                       title: str = "Predicted vs actual spend by decile") -> Figure:
    """Mean predicted vs mean actual spend in deciles of each predictor's prediction.

    Parameters
    ----------
    actual : array-like of float
        What each customer spent in the horizon.
    predictions : mapping of str to array-like of float
        Predictor name -> predicted spend of the same customers, in the same order.
    title : str
        Title of the axes.

    Returns
    -------
    matplotlib.figure.Figure
        One line per predictor over ten equal-count groups of its prediction (lowest
        first); on the dotted diagonal the predicted spend is what was spent.
    """
    fig = _figure()
    ax = fig.add_subplot()
    top = 0.0
    for name, predicted in predictions.items():
        table = value_decile_table(actual, predicted)
        ax.plot(table["mean_predicted"], table["mean_actual"], marker="o", ms=4, label=name,
                color=_color(name), lw=2 if name == "value_model" else 1.2)
        top = max(top, float(table["mean_predicted"].max()), float(table["mean_actual"].max()))
    ax.plot([0, top], [0, top], ls=":", color="grey", lw=1, label="perfect")
    ax.set(xlabel="mean predicted spend", ylabel="mean actual spend", title=title)
    ax.legend(fontsize=8)
    return fig


def plot_retention_pairs(table: pd.DataFrame, *, title: str = "Predicted vs actual retention"
                         ) -> Figure:
    """Predicted vs actual cohort retention and CRR per as-of date and model.

    Each bar is labelled with its value (the differences that matter are a point or
    two, too small to read off a bar's height); error bars are the 95% intervals. The
    legend sits below the plots, where it cannot cover a bar.

    Parameters
    ----------
    table : pandas.DataFrame
        ``BacktestResult.table()``: one row per (as_of, model) with the predicted
        (and ``_low`` / ``_high``) and actual ``cohort_retention`` and ``crr``.
    title : str
        Title of the figure.

    Returns
    -------
    matplotlib.figure.Figure
        Two axes, cohort retention and CRR, with the actual rate in black.
    """
    as_ofs = sorted(table["as_of"].unique())
    models = list(dict.fromkeys(table["model"]))
    # Beside each other while the values fit above their bars; one above the other,
    # full width, when several periods make the bars too narrow for their labels.
    stacked = len(as_ofs) > 1
    fig = _figure(9.6, 7.6 if stacked else 4.4)
    axes = fig.subplots(2, 1) if stacked else fig.subplots(1, 2)
    width = 0.8 / (len(models) + 1)
    x = np.arange(len(as_ofs))
    value_labels = {"fmt": "%.1f", "fontsize": 7, "padding": 2}
    if len(as_ofs) * (len(models) + 1) > 12:
        value_labels["rotation"] = 90
    for ax, rate, label in ((axes[0], "cohort_retention", "cohort retention %"),
                            (axes[1], "crr", "CRR %")):
        actual = [table.loc[table["as_of"] == a, f"actual_{rate}"].iloc[0] for a in as_ofs]
        bars = ax.bar(x - 0.4 + width / 2, actual, width=width, color="#333333",
                      label="actual")
        ax.bar_label(bars, **value_labels)
        for i, name in enumerate(models, start=1):
            rows = [table.loc[(table["as_of"] == a) & (table["model"] == name)].iloc[0]
                    for a in as_ofs]
            value = np.array([r[f"predicted_{rate}"] for r in rows], dtype=float)
            low = np.array([r[f"predicted_{rate}_low"] for r in rows], dtype=float)
            high = np.array([r[f"predicted_{rate}_high"] for r in rows], dtype=float)
            bars = ax.bar(x - 0.4 + width / 2 + i * width, value, width=width,
                          color=_color(name), label=f"{name} (predicted)",
                          yerr=[value - low, high - value], capsize=2,
                          error_kw={"elinewidth": 0.8, "ecolor": "#777777"})
            ax.bar_label(bars, **value_labels)
        ax.set_xticks(x, [str(a) for a in as_ofs])
        ax.set(ylabel=label, title=label, xlabel="backtest date A: the period (A, A + horizon]")
        ax.margins(y=0.2 if "rotation" in value_labels else 0.12)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8,
               frameon=False)
    fig.suptitle(title)
    return fig


def plot_feature_importance(importances: pd.Series, *, top: int = 20) -> Figure:
    """Gain importance of the model's top features.

    Parameters
    ----------
    importances : pandas.Series
        Gain per feature, largest first (``ChurnModel.feature_importances_``).
    top : int
        How many features to show.

    Returns
    -------
    matplotlib.figure.Figure
        Horizontal bars: each feature's share of the total gain, in percent.
    """
    shown = importances.head(top)[::-1]
    fig = _figure(6.4, max(3.0, 0.28 * len(shown) + 1))
    ax = fig.add_subplot()
    share = shown.to_numpy() / max(float(importances.sum()), 1e-12) * 100
    ax.barh(shown.index, share, color=_color("churnlens"))
    ax.set(xlabel="share of total gain (%)", title="Feature importance (LightGBM gain)")
    return fig


def figure_png(fig: Figure) -> bytes:
    """PNG bytes of a figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _format_cell(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "\u2013"  # an en dash: clearly "no value", unlike an empty cell
    if isinstance(value, bool | np.bool_):
        return str(value)
    if isinstance(value, int | np.integer):
        return f"{value:,}"
    if isinstance(value, float | np.floating):
        return f"{value:,.{digits}f}"
    return str(value)


_PROSE_CHARS = 40  # a text cell longer than this (with spaces) is prose: it wraps


def _table_html(frame: pd.DataFrame) -> str:
    """An HTML table; percent columns (a ``%`` in the header) get one decimal, other
    numbers three. Two-level column labels become a grouped header."""
    shown = frame.copy()
    for column in frame.columns:
        labels = column if isinstance(column, tuple) else (column,)
        digits = 1 if any("%" in str(part) for part in labels) else 3
        shown[column] = [_format_cell(v, digits) for v in frame[column]]
    table = shown.to_html(index=False, border=0, classes="t", escape=True)
    # Columns of sentences (a definition, what an interval covers) wrap instead of running
    # off to the right of the page: their cells get class 'text'.
    prose = {i for i, column in enumerate(shown.columns)
             if any(len(str(v)) > _PROSE_CHARS and " " in str(v) for v in shown[column])}
    if prose:
        rows = table.split("<tr>")
        for r, row in enumerate(rows):
            cells = row.split("<td>")
            rows[r] = cells[0] + "".join(
                ("<td class='text'>" if k in prose else "<td>") + cell
                for k, cell in enumerate(cells[1:]))
        table = "<tr>".join(rows)
    return "<div class='scroll'>" + table + "</div>"


def outlook_section(summary: Mapping[str, Any]
                    ) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """The outlook of a scoring summary as report tables: each measure and total with
    its base and its one-line definition.

    Parameters
    ----------
    summary
        A scoring summary (:func:`churnlens._scoring.summary_document`, what
        ``churnlens score --json-summary`` prints).

    Returns
    -------
    tuple of (dict, dict)
        Tables (section title -> table) and captions (section title -> text), to pass to
        :func:`write_html_report`: the predicted rates of the coming horizon beside the
        last actual ones, and the totals (customers lost and value at risk on one base).
    """
    horizon = summary["horizon_days"]
    bases = summary.get("bases", {})

    def base(name: str) -> str:
        known = bases.get(name, {})
        size = known.get("customers")
        return f"{name} ({size:,})" if isinstance(size, int) else name

    rates = pd.DataFrame([
        {"measure": row["rate"], "predicted %": row.get("predicted"),
         "95% interval %": f"{_format_cell(row.get('predicted_low'), 1)} .. "
                           f"{_format_cell(row.get('predicted_high'), 1)}",
         "last actual %": row.get("last_actual"), "base": base(row.get("base", "active")),
         "interval covers": row.get("interval_covers", ""),
         "definition": row.get("definition", "")}
        for row in summary.get("pairing", [])])
    definitions = summary.get("definitions", {})
    totals = pd.DataFrame([
        {"total": "expected customers lost",
         "value": _format_cell(summary.get("expected_customers_lost"), 1),
         "base": base(summary.get("base_of", {}).get("expected_customers_lost", "active")),
         "definition": definitions.get("expected_customers_lost", "")},
        {"total": "value at risk", "value": _format_cell(summary.get("value_at_risk_total"), 2),
         "base": base(summary.get("base_of", {}).get("value_at_risk_total", "active")),
         "definition": definitions.get("value_at_risk_total", "")},
    ])
    last = summary.get("last_actual", {})
    rates_title = f"Outlook: the next {horizon} days after {summary['as_of']}"
    totals_title = "Outlook: customers lost and value at risk"
    active = bases.get("active", {}).get("definition", "the active customers")
    captions = {
        rates_title: (f"Predicted rates for ({summary['as_of']}, +{horizon} days] beside the "
                      f"actual rates of ({last.get('start')}, {last.get('end')}]. Bases: "
                      f"active = {active}; acquired = every customer scored."),
        totals_title: ("Both totals are counted over the same base, the active customers: "
                       "customers silent for longer are not in them."),
    }
    notes = [str(w) for w in summary.get("model_warnings") or []]
    if notes:  # what the model said about itself: the level may be off, BG/NBD alone...
        captions[rates_title] += " Note: " + "; ".join(notes) + "."
    return {rates_title: rates, totals_title: totals}, captions


def write_html_report(
    path: str | os.PathLike[str],
    *,
    title: str,
    summary: Mapping[str, Any],
    tables: Mapping[str, pd.DataFrame],
    figures: Mapping[str, Figure | bytes],
    notes: list[str] | None = None,
    captions: Mapping[str, str] | None = None,
) -> Path:
    """A single self-contained HTML file (plots embedded as PNG), written atomically.

    Parameters
    ----------
    path
        Where to write the report.
    title
        Page title and heading.
    summary
        Key facts, shown as a two-column list.
    tables
        Section title -> table (two-level column labels are shown grouped).
    figures
        Section title -> figure, or PNG bytes already rendered (:func:`figure_png`).
    notes
        Remarks shown under the summary (a skipped backtest, for example).
    captions
        Section title -> one or two sentences saying how to read that table or figure.
    """
    from churnlens._version import __version__

    captions = captions or {}
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>",
        "body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;"
        "padding:0 1rem}",
        "h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}",
        ".scroll{overflow-x:auto}",
        "table.t{border-collapse:collapse;font-size:.85rem}table.t td,table.t th{padding:"
        "3px 8px;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}"
        "table.t th{background:#f5f5f5;text-align:center}",
        "table.t td:nth-child(-n+2){text-align:left}",
        "table.t td.text{white-space:normal;text-align:left;min-width:10rem;max-width:30rem}",
        "dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px}dt{color:#666}",
        "dd{margin:0}p.caption{color:#555;font-size:.9rem;max-width:60rem}",
        "img{max-width:100%;border:1px solid #eee;margin:.5rem 0}",
        "</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by churnlens "
        f"{html.escape(__version__)}.</p>",
        "<h2>Summary</h2><dl>",
    ]
    for key, value in summary.items():
        parts.append(f"<dt>{html.escape(str(key))}</dt><dd>{html.escape(str(value))}</dd>")
    parts.append("</dl>")
    for note in notes or []:
        parts.append(f"<p class='note'>{html.escape(note)}</p>")

    def caption(name: str) -> str:
        text = captions.get(name)
        return f"<p class='caption'>{html.escape(text)}</p>" if text else ""

    for name, frame in tables.items():
        parts.append(f"<h2>{html.escape(name)}</h2>{caption(name)}{_table_html(frame)}")
    for name, fig in figures.items():
        png = fig if isinstance(fig, bytes) else figure_png(fig)
        encoded = base64.b64encode(png).decode("ascii")
        parts.append(f"<h2>{html.escape(name)}</h2>{caption(name)}"
                     f"<img alt='{html.escape(name)}' src='data:image/png;base64,{encoded}'>")
    parts.append("</body></html>")
    target = Path(path)
    with atomic_path(target) as tmp:
        tmp.write_text("\n".join(parts), encoding="utf-8")
    return target
