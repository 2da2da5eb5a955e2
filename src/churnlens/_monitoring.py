"""Monitoring: every recorded prediction checked against what happened, and drift.

churnlens records each scoring in its ledger (:mod:`churnlens._ledger`): the predicted
cohort retention and CRR with their 95% intervals, every customer's ``churn_risk``,
the features' distribution at scoring. This module closes the loop. For each
scoring entry of the ledger:

- once its horizon has closed in the data (``as_of + H <= the data's last day``): the
  actual cohort retention and CRR of the period ``(as_of, as_of + H]``
  (:func:`churnlens._retention.retention_rates` with ``W = H``, the pairing of
  ``retention.md``) beside the prediction and its interval; the realized ROC AUC and
  Brier score of the stored risks against the churn label of the backtest (no purchase
  occasion in ``(as_of, as_of + H]``, :func:`churnlens._features.compute_labels`), over
  the customers the entry scored; calibration by decile; and predicted vs actual
  retention and churn by risk band and by segment;
- for the latest entry and every entry still open: each model feature's PSI between
  the training snapshots and the scoring (recorded in the entry), with the model's
  importance of that feature, and the level of predicted risk against training.

Three things raise an alert, each a plain-words line: an actual rate outside the
predicted 95% interval; a realized AUC more than ``settings.monitoring.auc_drop_alert``
below the model's own backtest AUC; a PSI above ``settings.monitoring.psi_alert`` on a
feature whose importance share is at least ``settings.monitoring.importance_floor``.

``churnlens monitor`` and ``GET /monitoring`` print :meth:`MonitorReport.to_dict`; the
CLI exits 3 when there is an alert.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churnlens._drift import PSI_WATCH
from churnlens._evaluation import calibration_table, classification_metrics, predict_retention
from churnlens._io import json_ready
from churnlens._redact import redact_uri_credentials
from churnlens.exceptions import EmptyDataError

if TYPE_CHECKING:
    from churnlens._config import Settings
    from churnlens._ledger import LedgerEntry

__all__ = [
    "ALERT_KINDS",
    "MonitorAlert",
    "MonitorReport",
    "load_and_monitor",
    "monitor",
    "monitor_ledger",
    "write_monitor_report",
]

#: The kinds of alert, each with what it means.
ALERT_KINDS: dict[str, str] = {
    "retention_outside_interval": "the actual cohort retention or CRR of a closed horizon "
                                  "fell outside the predicted 95% interval",
    "auc_drop": "the realized ROC AUC of a closed horizon is more than the allowed drop "
                "below the model's own backtest AUC",
    "feature_drift": "a feature that matters to the model (importance share at least the "
                     "floor) moved away from the training data (PSI above the threshold)",
}

_RATES = {"cohort_retention": "cohort retention", "crr": "CRR"}

#: What each figure of the report means (``to_dict()["definitions"]``).
DEFINITIONS: dict[str, str] = {
    "closed": "the horizon (as_of, as_of + horizon_days] ends on or before the last day of "
              "the transactions, so what happened is known",
    "cohort_retention": "share (%) of the customers active at as_of (a purchase in the "
                        "horizon_days before) who bought again in (as_of, as_of + "
                        "horizon_days]",
    "crr": "customer retention rate (E - N) / S (%): customers active at the end, new ones "
           "excluded, over the customers active at as_of; counts comebacks",
    "covered": "whether the actual rate lies inside the predicted 95% interval",
    "auc": "realized ROC AUC of the recorded churn_risk against churned = no purchase "
           "occasion in (as_of, as_of + horizon_days], over the customers scored",
    "brier": "mean squared difference between the recorded churn_risk and churned (0/1)",
    "calibration": "customers in ten equal-count bins of recorded churn_risk (lowest "
                   "first): mean_risk and the actual churn_rate (shares, 0 to 1)",
    "predicted_churn_pct": "mean recorded churn_risk of the group's customers (%)",
    "actual_churn_pct": "share of the group's customers with no purchase in the horizon (%)",
    "psi": "population stability index of the feature between the model's training "
           "snapshots and the customers scored (0.1: watch, the psi_alert threshold: act)",
    "importance": "the feature's share of the model's mean absolute contribution on the "
                  "training rows (sums to 1)",
    "risk_level": "mean churn_risk of the scoring beside the mean risk and the churn rate of "
                  "the model's training snapshots",
}


@dataclasses.dataclass(frozen=True)
class MonitorAlert:
    """One alert of :func:`monitor`.

    Attributes
    ----------
    kind
        One of :data:`ALERT_KINDS`.
    run_id
        The ledger entry (MLflow run) it is about.
    as_of
        That entry's scoring date.
    subject
        The rate (``cohort_retention``, ``crr``), ``auc``, or the feature's name.
    value, threshold
        What was measured and the limit it crossed (for an interval, the bound crossed).
    message
        The alert in plain words.
    """

    kind: str
    run_id: str
    as_of: dt.date
    subject: str
    value: float
    threshold: float
    message: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return json_ready(dataclasses.asdict(self))


@dataclasses.dataclass(frozen=True)
class MonitorReport:
    """What :func:`monitor` found: one document per ledger entry, and the alerts.

    Attributes
    ----------
    data_last_day
        The last day of the transactions: a horizon is closed when it ends on or before it.
    thresholds
        ``psi_alert``, ``psi_watch``, ``auc_drop_alert``, ``importance_floor`` and the
        interval level (``interval_percent``, 95).
    entries
        One JSON-ready dictionary per scoring entry, oldest first (see ``docs/monitoring.md``).
    alerts
        Every alert, in the order of the entries.
    notes
        Remarks (entries skipped, customers not found in the data...).
    """

    data_last_day: dt.date
    thresholds: dict[str, float]
    entries: list[dict[str, Any]]
    alerts: list[MonitorAlert]
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def alert_count(self) -> int:
        """Number of alerts."""
        return len(self.alerts)

    def tracking_table(self) -> pd.DataFrame:
        """Predicted (with interval) and actual cohort retention and CRR per entry.

        One row per entry, oldest first: ``as_of``, ``run_id``, ``status``,
        ``horizon_days`` and for each rate ``predicted_<rate>``, ``_low``, ``_high`` and
        ``actual_<rate>`` (NaN while the horizon is open), in percent.
        """
        rows = []
        for entry in self.entries:
            row: dict[str, Any] = {"as_of": dt.date.fromisoformat(entry["as_of"]),
                                   "run_id": entry["run_id"], "status": entry["status"],
                                   "horizon_days": entry["horizon_days"]}
            predicted = entry.get("predicted") or {}
            actual = {r["rate"]: r["actual"] for r in
                      ((entry.get("realized") or {}).get("rates") or [])}
            for rate in _RATES:
                row[f"predicted_{rate}"] = _nan(predicted.get(rate))
                row[f"predicted_{rate}_low"] = _nan(predicted.get(f"{rate}_low"))
                row[f"predicted_{rate}_high"] = _nan(predicted.get(f"{rate}_high"))
                row[f"actual_{rate}"] = _nan(actual.get(rate))
            rows.append(row)
        columns = ["as_of", "run_id", "status", "horizon_days",
                   *(f"{kind}_{rate}{end}" for rate in _RATES
                     for kind, end in (("predicted", ""), ("predicted", "_low"),
                                       ("predicted", "_high"), ("actual", "")))]
        return pd.DataFrame(rows, columns=columns)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of ``churnlens monitor --json`` and ``GET /monitoring``."""
        closed = sum(e["status"] == "closed" for e in self.entries)
        return json_ready({
            "data_last_day": self.data_last_day,
            "thresholds": self.thresholds,
            "entries_total": len(self.entries),
            "closed": closed,
            "open": len(self.entries) - closed,
            "alert_count": self.alert_count,
            "alerts": [a.to_dict() for a in self.alerts],
            "entries": self.entries,
            "notes": list(self.notes),
            "alert_kinds": ALERT_KINDS,
            "definitions": DEFINITIONS,
        })


def _nan(value: Any) -> float:
    return math.nan if value is None else float(value)


def _thresholds(settings: Settings) -> dict[str, float]:
    block = settings.monitoring
    return {"psi_alert": float(block.psi_alert), "psi_watch": float(PSI_WATCH),
            "auc_drop_alert": float(block.auc_drop_alert),
            "importance_floor": float(block.importance_floor), "interval_percent": 95.0}


def monitor(transactions: pd.DataFrame, entries: Iterable[LedgerEntry], *,
            settings: Settings) -> MonitorReport:
    """Check every scoring entry of the ledger against the transactions.

    Parameters
    ----------
    transactions
        Clean transactions (:func:`churnlens.load_transactions`) that reach past the
        scoring dates: a horizon is closed when ``as_of + H`` is on or before their last
        day.
    entries
        Ledger entries (:func:`churnlens._ledger.read_ledger`); entries of another kind
        than ``"scoring"`` (campaign lists) are left out.
    settings
        The thresholds of ``settings.monitoring``.

    Returns
    -------
    MonitorReport
        Per entry: its prediction, what happened once closed (``realized``), feature
        drift and risk level for the latest and the open ones (``drift``); the alerts.

    Raises
    ------
    EmptyDataError
        No scoring entry at all (nothing would be checked, which is not "no alert"), or
        no transactions.
    """
    from churnlens._loading import ensure_clean

    scoring = sorted((e for e in entries if e.kind == "scoring"),
                     key=lambda e: (e.as_of, e.recorded_at))
    if not scoring:
        raise EmptyDataError(
            "no scoring entries to monitor: the ledger holds no prediction. Suggestion: "
            "score with the ledger on (churnlens score without --no-ledger, "
            "CHURNLENS_LEDGER unset) against the same tracking URI first.")
    tx = ensure_clean(transactions)
    if tx.empty:
        raise EmptyDataError("no transactions to monitor against. Suggestion: give the "
                             "transactions that cover the scored horizons.")
    last_day = pd.Timestamp(tx["timestamp"].max()).date()
    thresholds = _thresholds(settings)
    latest = scoring[-1]
    documents: list[dict[str, Any]] = []
    alerts: list[MonitorAlert] = []
    notes: list[str] = []
    for entry in scoring:
        end = entry.as_of + dt.timedelta(days=entry.horizon_days)
        closed = end <= last_day
        document: dict[str, Any] = {
            "run_id": entry.run_id, "recorded_at": entry.recorded_at,
            "source": entry.source, "as_of": entry.as_of, "horizon_days": entry.horizon_days,
            "period_end": end, "status": "closed" if closed else "open",
            "days_to_close": 0 if closed else (end - last_day).days,
            "model": dict(entry.model), "customers": entry.customers,
            "predicted": _predicted(entry),
            "realized": None, "drift": None,
        }
        if closed:
            realized, found = _realized(entry, tx, last_day)
            document["realized"] = realized
            alerts.extend(_outcome_alerts(entry, document["predicted"], realized, thresholds))
            if found:
                notes.append(found)
        if entry is latest or not closed:
            document["drift"] = _drift(entry, thresholds)
            alerts.extend(_drift_alerts(entry, document["drift"], thresholds))
        documents.append(json_ready(document))
    return MonitorReport(data_last_day=last_day, thresholds=thresholds, entries=documents,
                         alerts=alerts, notes=notes)


def _predicted(entry: LedgerEntry) -> dict[str, Any]:
    """The recorded prediction (the scoring summary's ``predicted``)."""
    predicted = (entry.summary or {}).get("predicted") or {}
    keys = ("S", "acquired", "expected_lost", "interval_covers",
            *(f"{rate}{end}" for rate in _RATES for end in ("", "_low", "_high")))
    return {key: predicted.get(key) for key in keys}


def _labelled(entry: LedgerEntry, transactions: pd.DataFrame, last_day: dt.date
              ) -> tuple[pd.DataFrame, int]:
    """The entry's customers with their churn label; how many are not in the data."""
    from churnlens._features import compute_labels

    risks = entry.risks()
    labels = compute_labels(transactions, entry.as_of, entry.horizon_days,
                            observed_until=last_day)
    truth = pd.DataFrame({"customer_id": labels["customer_id"].astype(str).to_numpy(),
                          "churned": labels["churned"].to_numpy(dtype="float64",
                                                                na_value=np.nan)})
    frame = risks.assign(customer_id=risks["customer_id"].astype(str)).merge(
        truth, on="customer_id", how="left", validate="one_to_one")
    missing = int(frame["churned"].isna().sum())
    return frame.loc[frame["churned"].notna()].reset_index(drop=True), missing


def _realized(entry: LedgerEntry, transactions: pd.DataFrame, last_day: dt.date
              ) -> tuple[dict[str, Any], str | None]:
    """What happened in ``(as_of, as_of + H]`` beside the recorded prediction."""
    from churnlens._retention import retention_rates

    horizon = entry.horizon_days
    end = entry.as_of + dt.timedelta(days=horizon)
    actual = retention_rates(transactions, entry.as_of, end, window_days=horizon)
    predicted = _predicted(entry)
    rates = []
    for rate in _RATES:
        value = _nan(getattr(actual, rate))
        low, high = _nan(predicted.get(f"{rate}_low")), _nan(predicted.get(f"{rate}_high"))
        known = not (math.isnan(value) or math.isnan(low) or math.isnan(high))
        rates.append({"rate": rate, "predicted": predicted.get(rate), "predicted_low": low,
                      "predicted_high": high, "actual": value,
                      "covered": (low <= value <= high) if known else None})
    frame, missing = _labelled(entry, transactions, last_day)
    note = None
    if missing:
        note = (f"entry {entry.run_id} ({entry.as_of}): {missing:,} of {entry.customers:,} "
                "scored customers are not in the transactions; AUC, Brier, calibration and "
                "the groups are measured on the others (are these the same data?)")
    realized: dict[str, Any] = {
        "period_start": entry.as_of, "period_end": end, "active_customers": actual.S,
        "rates": rates, "customers_evaluated": len(frame), "customers_not_in_data": missing,
        "auc": None, "brier": None, "mean_risk": None, "churned_share": None,
        "backtest_auc": (entry.model_backtest or {}).get("auc"),
        "backtest_brier": (entry.model_backtest or {}).get("brier"),
        "auc_drop": None, "calibration": [], "by_band": [], "by_segment": [],
    }
    if len(frame):
        churned = frame["churned"].to_numpy(dtype=np.float64)
        risk = frame["churn_risk"].to_numpy(dtype=np.float64)
        metrics = classification_metrics(churned, risk)
        realized.update(auc=metrics["auc"], brier=metrics["brier"],
                        mean_risk=float(risk.mean()), churned_share=float(churned.mean()))
        backtest_auc = realized["backtest_auc"]
        if backtest_auc is not None and not math.isnan(metrics["auc"]):
            realized["auc_drop"] = float(backtest_auc) - metrics["auc"]
        realized["calibration"] = calibration_table(churned, risk, bins=10).to_dict("records")
        summary = entry.summary or {}
        realized["by_band"] = _groups(frame, "risk_band", horizon, summary.get("by_band"))
        realized["by_segment"] = _groups(frame, "segment", horizon, summary.get("by_segment"))
    return realized, note


def _groups(frame: pd.DataFrame, column: str, horizon: int,
            recorded: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Predicted vs actual retention and churn of each group (band or segment).

    The predicted rates and intervals are the recorded ones (``summary["by_band"]``,
    ``["by_segment"]``) when the entry has them, else :func:`predict_retention` of the
    stored risks (the same point values; intervals of sampling only).
    """
    from churnlens._rules import BANDS

    if column not in frame.columns:
        return []
    values = [v for v in frame[column].dropna().unique().tolist()]
    order = {band: i for i, band in enumerate(BANDS)}
    values.sort(key=lambda v: (order.get(v, len(order)), str(v)))
    out = []
    for value in values:
        rows = frame.loc[frame[column] == value]
        risk = rows["churn_risk"].to_numpy(dtype=np.float64)
        recency = rows["recency_days"].to_numpy(dtype=np.float64)
        churned = rows["churned"].to_numpy(dtype=np.float64)
        active = recency < horizon
        predicted = ((recorded or {}).get(str(value))
                     or predict_retention(recency, risk, window_days=horizon).to_dict())
        stayed = churned == 0
        s = int(active.sum())
        out.append({
            column: value, "customers": len(rows), "active_customers": s,
            "predicted_cohort_retention": predicted.get("cohort_retention"),
            "predicted_cohort_retention_low": predicted.get("cohort_retention_low"),
            "predicted_cohort_retention_high": predicted.get("cohort_retention_high"),
            "actual_cohort_retention": 100 * int((stayed & active).sum()) / s if s else None,
            "predicted_crr": predicted.get("crr"),
            "predicted_crr_low": predicted.get("crr_low"),
            "predicted_crr_high": predicted.get("crr_high"),
            "actual_crr": 100 * int(stayed.sum()) / s if s else None,
            "predicted_churn_pct": float(risk.mean() * 100),
            "actual_churn_pct": float(churned.mean() * 100),
        })
    return out


def _outcome_alerts(entry: LedgerEntry, predicted: Mapping[str, Any],
                    realized: Mapping[str, Any], thresholds: Mapping[str, float]
                    ) -> list[MonitorAlert]:
    alerts = []
    horizon = entry.horizon_days
    for row in realized["rates"]:
        if row["covered"] is not False:
            continue
        rate, value = row["rate"], row["actual"]
        below = value < row["predicted_low"]
        bound = row["predicted_low"] if below else row["predicted_high"]
        meaning = ("fewer customers stayed than the model expected" if below
                   else "more customers stayed than the model expected")
        alerts.append(MonitorAlert(
            kind="retention_outside_interval", run_id=entry.run_id, as_of=entry.as_of,
            subject=rate, value=value, threshold=bound,
            message=(f"Actual {_RATES[rate]} was {value:.1f}% in the {horizon} days after "
                     f"{entry.as_of}, {'below' if below else 'above'} the predicted 95% "
                     f"interval {row['predicted_low']:.1f}% to {row['predicted_high']:.1f}% "
                     f"(predicted {_nan(predicted.get(rate)):.1f}%): {meaning}.")))
    drop = realized.get("auc_drop")
    if drop is not None and drop > thresholds["auc_drop_alert"]:
        backtest = float(realized["backtest_auc"])
        limit = backtest - thresholds["auc_drop_alert"]
        alerts.append(MonitorAlert(
            kind="auc_drop", run_id=entry.run_id, as_of=entry.as_of, subject="auc",
            value=float(realized["auc"]), threshold=limit,
            message=(f"The model ranked customers worse than in its backtest: realized ROC "
                     f"AUC {realized['auc']:.3f} in the {horizon} days after {entry.as_of}, "
                     f"{drop:.3f} below its backtest AUC {backtest:.3f} (alert when more "
                     f"than {thresholds['auc_drop_alert']:.2f} below). Retrain on recent "
                     "data.")))
    return alerts


def _drift(entry: LedgerEntry, thresholds: Mapping[str, float]) -> dict[str, Any]:
    """Feature drift and the risk level of one entry (recorded at scoring)."""
    summary = entry.summary or {}
    reference = entry.reference_risk or None
    risk_level = {
        "mean_risk": summary.get("mean_churn_risk"),
        "training_mean_risk": (reference or {}).get("mean_risk"),
        "training_churn_rate": (reference or {}).get("churn_rate"),
        "difference": None,
    }
    if risk_level["mean_risk"] is not None and risk_level["training_mean_risk"] is not None:
        risk_level["difference"] = (float(risk_level["mean_risk"])
                                    - float(risk_level["training_mean_risk"]))
    profile = entry.feature_profile
    if not profile:
        return {"recorded": False, "features": [], "risk_level": risk_level,
                "note": "feature profile not recorded: the model predates drift "
                        "monitoring; retrain it"}
    features = []
    for name, values in profile.items():
        psi = values.get("psi")
        importance = values.get("importance")
        matters = importance is not None and float(importance) >= thresholds["importance_floor"]
        level = ("unknown" if psi is None else "shift" if psi > thresholds["psi_alert"]
                 else "watch" if psi > thresholds["psi_watch"] else "stable")
        quantiles = values.get("quantiles") or {}
        features.append({"feature": name, "psi": psi, "importance": importance,
                         "matters": matters, "level": level,
                         "alert": bool(matters and level == "shift"),
                         "p50": quantiles.get("p50"), "rows": values.get("rows")})
    features.sort(key=lambda f: (-(f["psi"] if f["psi"] is not None else -1.0), f["feature"]))
    return {"recorded": True, "features": features, "risk_level": risk_level,
            "note": None if reference else "training risk level not recorded: retrain"}


def _drift_alerts(entry: LedgerEntry, drift: Mapping[str, Any],
                  thresholds: Mapping[str, float]) -> list[MonitorAlert]:
    return [MonitorAlert(
        kind="feature_drift", run_id=entry.run_id, as_of=entry.as_of,
        subject=f["feature"], value=float(f["psi"]), threshold=thresholds["psi_alert"],
        message=(f"Feature {f['feature']} of the customers scored at {entry.as_of} moved "
                 f"away from the model's training data: PSI {f['psi']:.2f}, above "
                 f"{thresholds['psi_alert']:.2f}, and it carries "
                 f"{float(f['importance']):.0%} of the model's importance. The risks may be "
                 "off; retrain on recent data."))
        for f in drift.get("features", []) if f["alert"]]


def monitor_ledger(transactions: pd.DataFrame, settings: Settings) -> MonitorReport:
    """:func:`monitor` of the ledger at ``settings.mlflow.tracking_uri``.

    Parameters
    ----------
    transactions
        Clean transactions.
    settings
        The tracking URI, the ledger's experiment and the thresholds.

    Raises
    ------
    EmptyDataError
        The ledger has no scoring entry (the message names the store and experiment).
    ChurnlensError
        The store cannot be read.
    """
    from churnlens._ledger import read_ledger

    uri = settings.mlflow.tracking_uri
    experiment = settings.monitoring.experiment
    entries = read_ledger(uri, experiment=experiment, kind="scoring")
    if not entries:
        raise EmptyDataError(
            f"no scoring entries in the ledger at {redact_uri_credentials(uri)} (experiment "
            f"{experiment!r}): there is nothing to monitor. Suggestion: check --tracking-uri "
            "(the store the scoring jobs write to), and score with the ledger on "
            "(churnlens score without --no-ledger, CHURNLENS_LEDGER unset).")
    return monitor(transactions, entries, settings=settings)


def load_and_monitor(source: Any, settings: Settings) -> MonitorReport:
    """Monitor the ledger against a transactions file or frame.

    The transactions are read by the one loader (``settings.data``'s columns), the
    ledger at ``settings.mlflow.tracking_uri``; then :func:`monitor`.

    Parameters
    ----------
    source
        A path or a frame, as :func:`churnlens.load_transactions` takes it.
    settings
        Columns, tracking URI, ledger experiment and thresholds.

    Returns
    -------
    MonitorReport
        Closed entries against what happened, drift of the latest and open ones, alerts.
    """
    from churnlens._loading import load_transactions

    loaded = load_transactions(source, **settings.data.loader_options())
    return monitor_ledger(loaded.transactions, settings)


def write_monitor_report(report: MonitorReport, path: str | os.PathLike[str]) -> Path:
    """Write the monitoring report as one self-contained HTML file, atomically.

    The tracking plot (:func:`churnlens.plots.plot_tracking`), the alerts, then
    predicted vs actual per closed entry and drift of the latest and open ones.

    Parameters
    ----------
    report
        What :func:`monitor` returned.
    path
        The HTML file to write.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    from churnlens._report import write_html_report
    from churnlens.plots import plot_tracking

    tables: dict[str, pd.DataFrame] = {}
    captions: dict[str, str] = {}
    if report.alerts:
        tables["Alerts"] = pd.DataFrame([{"kind": a.kind, "as of": str(a.as_of),
                                          "message": a.message} for a in report.alerts])
    track = report.tracking_table()
    tables["Predicted vs actual retention (%)"] = _tracking_rows(report.entries)
    captions["Predicted vs actual retention (%)"] = (
        f"Per scoring: the predicted rate, its 95% interval, and the actual rate once the "
        f"horizon has closed (data up to {report.data_last_day}). Cohort retention: "
        f"{DEFINITIONS['cohort_retention']}; CRR: {DEFINITIONS['crr']}.")
    quality = [{"as of": e["as_of"], "run": e["run_id"][:8],
                "customers": e["realized"]["customers_evaluated"],
                "AUC": e["realized"]["auc"], "backtest AUC": e["realized"]["backtest_auc"],
                "Brier": e["realized"]["brier"]}
               for e in report.entries if e.get("realized")]
    if quality:
        tables["Realized ranking and calibration"] = pd.DataFrame(quality)
        captions["Realized ranking and calibration"] = f"AUC: {DEFINITIONS['auc']}."
    drift_rows = [{"as of": e["as_of"], "feature": f["feature"], "PSI": f["psi"],
                   "importance %": None if f["importance"] is None
                   else 100 * float(f["importance"]), "level": f["level"],
                   "alert": f["alert"]}
                  for e in report.entries if e.get("drift")
                  for f in e["drift"]["features"]]
    if drift_rows:
        tables["Feature drift"] = pd.DataFrame(drift_rows)
        captions["Feature drift"] = (
            f"PSI: {DEFINITIONS['psi']}. An alert when PSI > "
            f"{report.thresholds['psi_alert']} on a feature with importance >= "
            f"{100 * report.thresholds['importance_floor']:.0f}%.")
    figures = {"Tracking: predicted vs actual retention per scoring date":
               plot_tracking(track)}
    summary = {"data last day": report.data_last_day, "entries": len(report.entries),
               "closed": sum(e["status"] == "closed" for e in report.entries),
               "alerts": report.alert_count}
    return write_html_report(path, title="churnlens monitoring", summary=summary,
                             tables=tables, figures=figures, notes=report.notes,
                             captions=captions)


def _tracking_rows(entries: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    rows = []
    for entry in entries:
        actual = {r["rate"]: r for r in ((entry.get("realized") or {}).get("rates") or [])}
        predicted = entry.get("predicted") or {}
        for rate, label in _RATES.items():
            row = actual.get(rate, {})
            rows.append({"as of": entry["as_of"], "status": entry["status"], "rate": label,
                         "predicted %": predicted.get(rate),
                         "low %": predicted.get(f"{rate}_low"),
                         "high %": predicted.get(f"{rate}_high"),
                         "actual %": row.get("actual"),
                         "covered": row.get("covered")})
    return pd.DataFrame(rows)
