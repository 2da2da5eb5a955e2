"""``monitor``: the ledger's predictions against what happened, and drift (monitoring.md).

Exit status: 0 when nothing alerts, 3 when something does (so a nightly job can page
someone), 2 for bad input, including a ledger with no scoring entry at all: a check that
checked nothing must not look like "all clear".
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import typer

from churnlens.cli._app import EXIT_ALERTS, app, handle_errors, print_fitted, stdout
from churnlens.cli._options import (
    JsonOpt,
    ReportOpt,
    TrackingOpt,
    TransactionInput,
    reads_transactions,
)

if TYPE_CHECKING:
    from churnlens._monitoring import MonitorReport

_DRIFT_ROWS = 10  # drift rows in the table, largest PSI first


@app.command()
@handle_errors
@reads_transactions
def monitor(
    source: TransactionInput,
    tracking_uri: TrackingOpt = None,
    as_json: JsonOpt = False,
    report: ReportOpt = None,
) -> None:
    """Check every recorded prediction whose horizon has closed, and drift.

    Reads the ledger at the tracking URI (scorings recorded by score and serve):
    predicted vs actual cohort retention and CRR, realized AUC, Brier, calibration; PSI
    of each feature for the latest and open scorings. Exit 0: no alert; 3: alerts;
    2: bad input or an empty ledger.
    """
    from churnlens._io import check_output_path
    from churnlens._monitoring import load_and_monitor, write_monitor_report

    report_path = check_output_path(report, suffixes=(".html",)) if report is not None else None
    settings = source.settings(**{"mlflow.tracking_uri": tracking_uri})
    result = load_and_monitor(source.path, settings)
    if report_path is not None:
        write_monitor_report(result, report_path)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), allow_nan=False))
    else:
        _print(result)
    if result.alerts:
        raise typer.Exit(EXIT_ALERTS)


def _pct(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1f}"


def _num(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"


def _print(result: MonitorReport) -> None:
    from rich.table import Table

    console = stdout()
    data = result.to_dict()
    console.print(f"{data['entries_total']} scoring(s) in the ledger, {data['closed']} with a "
                  f"closed horizon (data up to {data['data_last_day']}), {data['open']} open.",
                  highlight=False)
    table = Table(title="Predicted vs actual retention (%)")
    for header in ("as of", "horizon", "status", "rate", "predicted", "95% interval",
                   "actual", "covered", "AUC", "backtest AUC", "Brier"):
        table.add_column(header, justify="left" if header in ("as of", "status", "rate")
                         else "right")
    for entry in data["entries"]:
        realized = entry["realized"] or {}
        actual = {r["rate"]: r for r in realized.get("rates", [])}
        for i, rate in enumerate(("cohort_retention", "crr")):
            predicted = entry["predicted"]
            row = actual.get(rate, {})
            covered = row.get("covered")
            table.add_row(
                entry["as_of"] if i == 0 else "", f"{entry['horizon_days']}d" if i == 0 else "",
                (entry["status"] if entry["status"] == "closed"
                 else f"open, {entry['days_to_close']}d left") if i == 0 else "",
                rate.replace("_", " "), _pct(predicted.get(rate)),
                f"{_pct(predicted.get(f'{rate}_low'))} .. {_pct(predicted.get(f'{rate}_high'))}",
                _pct(row.get("actual")),
                "-" if covered is None else ("yes" if covered else "NO"),
                _num(realized.get("auc")) if i == 0 else "",
                _num(realized.get("backtest_auc")) if i == 0 else "",
                _num(realized.get("brier")) if i == 0 else "")
    print_fitted(console, table, key_columns=1)
    for entry in data["entries"]:
        drift = entry.get("drift")
        if not drift:
            continue
        if not drift["recorded"]:
            console.print(f"drift at {entry['as_of']}: {drift['note']}", highlight=False)
            continue
        moved = Table(title=f"Feature drift at {entry['as_of']} (PSI against training)")
        for header in ("feature", "PSI", "importance %", "level"):
            moved.add_column(header, justify="left" if header == "feature" else "right")
        # the features that moved or matter most; every one is in --json and --report
        ordered = ([f for f in drift["features"] if f["alert"]]
                   + [f for f in drift["features"] if not f["alert"]])
        shown = ordered[:max(_DRIFT_ROWS, sum(f["alert"] for f in ordered))]
        for feature in shown:
            moved.add_row(feature["feature"], _num(feature["psi"]),
                          _pct(None if feature["importance"] is None
                               else 100 * feature["importance"]),
                          feature["level"] + (" (alert)" if feature["alert"] else ""))
        print_fitted(console, moved, key_columns=1)
        hidden = ordered[len(shown):]
        if hidden:
            top = max((f["psi"] or 0.0) for f in hidden)
            console.print(f"{len(hidden)} more features, PSI at most {top:.3f} and no alert "
                          "(all in --json and --report).", highlight=False)
        level = drift["risk_level"]
        console.print(f"mean churn risk at {entry['as_of']}: {_num(level['mean_risk'])} "
                      f"(training: {_num(level['training_mean_risk'])}, training churn "
                      f"rate {_num(level['training_churn_rate'])})", highlight=False)
    for note in data["notes"]:
        console.print(f"note: {note}", highlight=False, markup=False)
    if data["alerts"]:
        console.print(f"{len(data['alerts'])} alert(s):", highlight=False)
        for alert in data["alerts"]:
            console.print(f"ALERT {alert['kind']}: {alert['message']}", highlight=False,
                          markup=False)
    else:
        console.print("no alerts.", highlight=False)
