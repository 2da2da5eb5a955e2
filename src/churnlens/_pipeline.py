"""``train``: the whole training job, from a transactions file to a registered model."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from churnlens._artifact import ModelArtifact, save_bundle
from churnlens._config import Settings
from churnlens._loading import CleaningReport, TransactionSource, load_transactions
from churnlens._training import BacktestResult, FittedModels, backtest, fit_models
from churnlens._validation import parse_date
from churnlens.exceptions import DataValidationError

__all__ = ["TrainingRun", "train"]

Progress = Callable[[str], None]


@dataclasses.dataclass
class TrainingRun:
    """What ``train`` produced."""

    artifact: ModelArtifact
    fitted: FittedModels
    backtest: BacktestResult | None
    cleaning: CleaningReport
    report_path: Path | None
    registration: Any | None  # churnlens._tracking.Registration when MLflow is on
    bundle_path: Path | None
    notes: list[str]

    def summary(self) -> dict[str, Any]:
        """The JSON document of ``churnlens train --json``."""
        reg = self.registration.to_dict() if self.registration is not None else None
        return {
            "run_id": reg["run_id"] if reg else None,
            "model_version": reg["version"] if reg else None,
            "alias": reg["alias"] if reg else None,
            "promoted": reg["promoted"] if reg else None,
            "promotion_reason": reg["reason"] if reg else None,
            "as_of": str(self.artifact.as_of),
            "horizon_days": self.artifact.horizon_days,
            "training_cutoffs": [str(c) for c in self.fitted.cutoffs],
            "snapshot_rows": self.fitted.snapshot_rows,
            "customers_at_as_of": len(self.fitted.features),
            "validation": _clean(self.fitted.validation),
            "backtest": self.backtest.to_dict()["runs"] if self.backtest else [],
            "report": str(self.report_path) if self.report_path else None,
            "bundle": str(self.bundle_path) if self.bundle_path else None,
            "cleaning": self.cleaning.to_dict(),
            "notes": self.notes,
        }


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def train(
    source: TransactionSource,
    *,
    as_of: str | dt.date,
    settings: Settings | None = None,
    promote: bool = False,
    report_path: str | os.PathLike[str] | None = None,
    bundle_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> TrainingRun:
    """Train, backtest, report and (with MLflow on) log and register a churn model.

    Parameters
    ----------
    source
        Transactions (path or DataFrame). Rows after ``as_of`` are dropped and counted:
        the model never sees them.
    as_of
        Training as-of date: snapshots at cutoffs ``c <= as_of - horizon``.
    settings
        Configuration (:func:`churnlens.load_config`); defaults if ``None``.
    promote
        Make the new model the registry champion whatever its metric.
    report_path
        Where to write the HTML report (also logged to MLflow). ``None``: only logged.
    bundle_dir
        Also export the model bundle (joblib + JSON card) to this folder.
    progress
        Called with a short message at each step.
    """
    from churnlens import _report

    settings = settings or Settings()
    say = progress or (lambda _msg: None)
    as_of_ts = parse_date(as_of, name="as_of")
    horizon = settings.horizon_days
    data = settings.data
    say("loading and validating transactions")
    transactions, cleaning = load_transactions(
        source, customer_col=data.customer_col, time_col=data.time_col,
        amount_col=data.amount_col, time_format=data.time_format, as_of=as_of_ts.date(),
    )
    notes: list[str] = []

    backtest_result = None
    dates = [(as_of_ts - pd.Timedelta(days=horizon * k)).date()
             for k in range(settings.backtest_steps, 0, -1)]
    if dates:
        try:
            backtest_result = backtest(transactions, dates, settings, progress=say)
        except DataValidationError as exc:
            notes.append(f"backtest skipped: {exc}")

    say(f"training the model at {as_of_ts.date()}")
    fitted = fit_models(transactions, as_of_ts.date(), settings, progress=say)
    artifact = ModelArtifact(
        model=fitted.churnlens, horizon_days=horizon, as_of=as_of_ts.date(),
        windows_days=tuple(settings.features.windows_days), metrics=fitted.validation,
        backtest=backtest_result.to_dict() if backtest_result else None,
        settings=settings.model_dump(mode="json"),
    )

    say("drawing plots and writing the report")
    figures = _figures(fitted, backtest_result, transactions)
    tables = {"Validation on the held-out latest cutoff": _validation_table(fitted)}
    if backtest_result is not None:
        tables["Backtest (trained at A, evaluated on (A, A+H])"] = _backtest_table(
            backtest_result)
    summary = {
        "as-of date": as_of_ts.date(), "horizon (days)": horizon,
        "customers at as-of": f"{len(fitted.features):,}",
        "training cutoffs": f"{fitted.cutoffs[0]} .. {fitted.cutoffs[-1]} ({len(fitted.cutoffs)})",
        "snapshot rows": f"{fitted.snapshot_rows:,}",
        "best iteration": fitted.churnlens.best_iteration_,
        "transactions": f"{cleaning.rows_kept:,} kept of {cleaning.rows_read:,} read",
    }
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(report_path) if report_path else Path(tmp) / "report.html"
        _report.write_html_report(
            report, title=f"churnlens training report, as of {as_of_ts.date()}",
            summary=summary, tables=tables, figures=figures, notes=notes,
        )
        registration = None
        if settings.mlflow.enabled:
            from churnlens._tracking import log_training_run

            say("logging to MLflow and registering the model")
            plot_files = {}
            for name, fig in figures.items():
                file = Path(tmp) / f"{_slug(name)}.png"
                _report.save_figure(fig, file)
                plot_files[f"plots/{file.name}"] = file
            bt_csv = Path(tmp) / "backtest.csv"
            if backtest_result is not None:
                backtest_result.table().to_csv(bt_csv, index=False)
                plot_files["backtest.csv"] = bt_csv
            registration = log_training_run(
                artifact, settings.mlflow,
                evaluation=fitted.validation_frame,
                params=_flat(settings.model_dump(mode="json")) | {"as_of": str(as_of_ts.date())},
                metrics=_metrics(fitted, backtest_result),
                files={"report.html": report, **plot_files},
                json_documents={
                    "config.json": settings.model_dump(mode="json"),
                    "cleaning_report.json": cleaning.to_dict(),
                    "features.json": {"features": artifact.feature_names,
                                      "model_features": fitted.churnlens.feature_names_},
                    "data_summary.json": _data_summary(transactions, fitted),
                    "backtest.json": backtest_result.to_dict() if backtest_result else {},
                },
                promote=promote,
            )
            artifact.name, artifact.version = registration.name, registration.version
            artifact.alias, artifact.run_id = registration.alias, registration.run_id
    bundle_path = save_bundle(artifact, bundle_dir) if bundle_dir else None
    return TrainingRun(
        artifact=artifact, fitted=fitted, backtest=backtest_result, cleaning=cleaning,
        report_path=Path(report_path) if report_path else None, registration=registration,
        bundle_path=bundle_path, notes=notes,
    )


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _metrics(fitted: FittedModels, result: BacktestResult | None) -> dict[str, float]:
    metrics = {f"validation.{model}.{k}": v for model, values in fitted.validation.items()
               for k, v in values.items()}
    for run in result.runs if result else []:
        for model, values in run["models"].items():
            for key, value in values.items():
                metrics[f"backtest.{run['as_of']}.{model}.{key}"] = value
    return metrics


def _data_summary(transactions: pd.DataFrame, fitted: FittedModels) -> dict[str, Any]:
    return {
        "transactions": len(transactions),
        "customers": int(transactions["customer_id"].nunique()),
        "first_day": str(transactions["timestamp"].min().date()),
        "last_day": str(transactions["timestamp"].max().date()),
        "customers_at_as_of": len(fitted.features),
        "snapshot_rows": fitted.snapshot_rows,
        "cutoffs": [str(c) for c in fitted.cutoffs],
    }


_HEADLINE = ["auc", "pr_auc", "brier", "log_loss", "lift_top_decile", "predicted_retention",
             "actual_retention"]


def _validation_table(fitted: FittedModels) -> pd.DataFrame:
    rows = [{"model": name, **{k: v for k, v in m.items() if k in _HEADLINE}}
            for name, m in fitted.validation.items()]
    return pd.DataFrame(rows)


def _backtest_table(result: BacktestResult) -> pd.DataFrame:
    table = result.table()
    keep = ["as_of", "model", *_HEADLINE, "predicted_cohort_retention",
            "actual_cohort_retention", "predicted_crr", "actual_crr"]
    return table.loc[:, [c for c in keep if c in table.columns]]


def _figures(fitted: FittedModels, result: BacktestResult | None,
             transactions: pd.DataFrame) -> dict[str, Any]:
    from churnlens import _report, plots

    figures: dict[str, Any] = {}
    if result is not None and result.runs:
        run = result.runs[-1]
        scores = run["scores"]
        risks = {c.removeprefix("risk_"): scores[c] for c in scores.columns
                 if c.startswith("risk_")}
        label = f"backtest at {run['as_of']}"
        figures[f"ROC, {label}"] = _report.plot_roc(scores["churned"], risks)
        figures[f"Lift and gains, {label}"] = _report.plot_gains(scores["churned"], risks)
        figures[f"Calibration, {label}"] = _report.plot_calibration(scores["churned"], risks)
        figures["Predicted vs actual retention"] = _report.plot_retention_pairs(result.table())
    figures["Feature importance"] = _report.plot_feature_importance(
        fitted.churnlens.feature_importances_)
    from churnlens._retention import cohort_table, retention_series

    figures["Acquisition cohorts"] = plots.plot_cohort_heatmap(cohort_table(transactions))
    figures["CRR over time"] = plots.plot_retention_series(
        retention_series(transactions, every="quarter"))
    return figures
