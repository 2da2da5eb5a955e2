"""``train``: the whole training job, from a transactions file to a registered model."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from churnlens._artifact import ModelArtifact, inputs_summary, save_bundle
from churnlens._config import Settings
from churnlens._io import json_ready, write_table
from churnlens._loading import CleaningReport, TransactionSource, load_transactions
from churnlens._loading_sql import CleanTransactions
from churnlens._training import BacktestResult, FittedModels, backtest, fit_models
from churnlens._validation import parse_date, require_choice
from churnlens.exceptions import DataValidationError

__all__ = ["TrainingRun", "train"]

Progress = Callable[[str], None]
ENGINES = ("duckdb", "spark")


@dataclasses.dataclass
class TrainingRun:
    """What ``train`` produced.

    Attributes
    ----------
    artifact
        The trained model with its metadata (what is registered and exported).
    fitted
        The fitted churnlens model, baselines, cutoffs and validation metrics.
    backtest
        The backtest at ``as_of - horizon`` (and earlier), or ``None`` if skipped.
    cleaning
        The cleaning report of the transactions.
    report_path
        Where the HTML report was written, if asked.
    registration
        Run id, model version, alias and promotion reason when MLflow is on.
    bundle_path
        The exported bundle's card, if asked.
    notes
        Anything skipped and why.
    """

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
            "sampling": _sampling(self.fitted),
            "customers_at_as_of": len(self.fitted.features),
            "inputs": inputs_summary(self.fitted.churnlens),
            "validation": json_ready(self.fitted.validation),
            "backtest": self.backtest.to_dict()["runs"] if self.backtest else [],
            "report": str(self.report_path) if self.report_path else None,
            "bundle": str(self.bundle_path) if self.bundle_path else None,
            "cleaning": self.cleaning.to_dict(),
            "notes": self.notes,
        }


def train(
    source: TransactionSource,
    *,
    as_of: str | dt.date,
    settings: Settings | None = None,
    promote: bool = False,
    report_path: str | os.PathLike[str] | None = None,
    bundle_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    engine: str = "duckdb",
    master: str = "local[2]",
    inputs: Any = None,
    ablation: bool = True,
    calendar: bool | None = False,
    customers: Any = None,
    events: Any = None,
) -> TrainingRun:
    """Train, backtest, report and (with MLflow on) log and register a churn model.

    Parameters
    ----------
    source
        Transactions: a pandas DataFrame, a PySpark DataFrame, or a CSV / Parquet path
        (one file, a glob or a directory of Parquet files), read out of core by DuckDB
        (``engine="duckdb"``: the contract in SQL, memory bounded by ``settings.engine``)
        or by Spark (``engine="spark"``). Rows after ``as_of`` are dropped and counted:
        the model never sees them. Out of core and on Spark, the snapshot table stays in
        the engine and the model is fitted on a stratified sample of at most
        ``settings.training.max_snapshot_rows`` rows (``docs/scale.md``).
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
    engine
        ``duckdb`` (embedded, the default) or ``spark``, for a path.
    master
        The Spark master with ``engine="spark"`` when no Spark session is active.
    inputs
        The richer inputs (:class:`~churnlens._input_features.InputTables`; ``None``:
        none: optional transaction columns in ``source`` are then ignored; pass
        ``InputTables()`` to learn the ``details`` group from them, as the CLI does when a
        ``--*-col`` flag maps one), learned at each date
        (:func:`~churnlens._training.fit_models`); the model keeps its input spec and
        refuses to score without the tables it needs.
    ablation
        With inputs, the backtest also reports the model without each input group and
        without any (:meth:`~churnlens._training.BacktestResult.ablation_table`): in the
        report, the ``--json`` document and MLflow's ``backtest.ablation.*`` metrics.
    calendar
        ``True``: the calendar group (season features and the seasonal clock,
        docs/training.md); ``False`` (the default) leaves it out: on a strongly seasonal
        log it cut the level error from 12.4 to 2.6 points, but it made it worse by up to
        0.9 points on logs without a season (docs/inputs.md). ``None``: on when the
        history spans a year plus the horizon (with inputs).
    customers, events
        The customer and event tables, instead of ``inputs``: clean tables
        (:func:`churnlens.load_customers`, :func:`churnlens.load_events`) or a path or
        DataFrame, loaded with their defaults.

    Returns
    -------
    TrainingRun
        The model, the backtest, the report and (with MLflow on) the registration;
        ``.summary()`` is the document ``churnlens train --json`` prints.
    """
    started_at = time.time()  # the MLflow run spans the whole job, from here
    settings = settings or Settings()
    say = progress or (lambda _msg: None)
    as_of_ts = parse_date(as_of, name="as_of")
    require_choice(engine, name="engine", allowed=ENGINES)
    inputs = input_tables(inputs, customers, events)
    with contextlib.ExitStack() as stack:
        say("loading and validating transactions")
        transactions, cleaning = open_transactions(
            source, as_of_ts.date(), settings, engine=engine, master=master, progress=say,
            stack=stack)
        return _train(source, transactions, cleaning, as_of_ts=as_of_ts, settings=settings,
                      promote=promote, report_path=report_path, bundle_dir=bundle_dir,
                      say=say, started_at=started_at,
                      inputs=inputs, ablation=ablation,
                      calendar=calendar)


def input_tables(inputs: Any, customers: Any, events: Any) -> Any:
    """The :class:`~churnlens._input_features.InputTables` of ``inputs`` or of
    ``customers`` / ``events`` (clean tables, or sources loaded with their defaults).

    Raises
    ------
    DataValidationError
        Both ``inputs`` and a table were given.
    """
    if customers is None and events is None:
        return inputs
    if inputs is not None:
        raise DataValidationError(
            "both inputs= and customers=/events= were given. Suggestion: pass the tables "
            "one way: inputs=InputTables(customers=..., events=...) or customers=/events=.")
    from churnlens._input_features import InputTables
    from churnlens._inputs import CleanCustomers, CleanEvents, load_customers, load_events

    if customers is not None and not isinstance(customers, CleanCustomers):
        customers = load_customers(customers)
    if events is not None and not isinstance(events, CleanEvents):
        events = load_events(events)
    return InputTables(customers=customers, events=events)


def open_transactions(
    source: Any, as_of: dt.date | None, settings: Settings, *, engine: str = "duckdb",
    master: str = "local[2]", progress: Progress | None = None,
    stack: contextlib.ExitStack,
) -> tuple[Any, CleaningReport]:
    """Clean transactions on the engine that will train on them, and their report.

    A pandas DataFrame: the pandas loader (as before). A path with ``duckdb``: the
    out-of-core view (:func:`~churnlens._loading_sql.load_transactions_sql`, the memory
    limit and spill folder of ``settings.engine``), closed by ``stack``. A PySpark
    DataFrame, or a path with ``spark``: the contract on Spark
    (``churnlens._spark_loading``), in the active session or one started on ``master``
    and stopped by ``stack``. Rows after ``as_of`` are dropped and counted.
    """
    from churnlens._loading_sql import EngineLimits, is_file_source, load_transactions_sql

    say = progress or (lambda _msg: None)
    options = settings.data.loader_options()
    spark_frame = type(source).__module__.startswith("pyspark.")
    if engine == "spark" or spark_frame:
        from churnlens._spark_loading import load_transactions_spark, spark_session_for

        spark = None
        if not spark_frame:
            say(f"Spark session ({master} unless one is active)")
            spark = stack.enter_context(spark_session_for(master))
        loaded = load_transactions_spark(source, spark=spark, **options, as_of=as_of)
        # read by every step (snapshots at each as-of, features, labels, retention):
        # kept by the executors rather than read and checked again each time
        clean = loaded.transactions.persist()
        stack.callback(clean.unpersist)
        return clean, loaded.report
    if is_file_source(source):
        view = load_transactions_sql(
            source, **options, as_of=as_of,
            limits=EngineLimits(settings.engine.memory_limit, settings.engine.temp_directory))
        stack.callback(view.close)
        return view, view.report
    return load_transactions(source, **options, as_of=as_of)


# Clean rows of a file read out of core that are read into pandas once more, for the
# MLflow dataset input and its SHA-256 (about 120 bytes a row: 0.6 GB at this size).
# Beyond it, or on Spark, the run records the source path only.
DATASET_DIGEST_MAX_ROWS = 5_000_000


def _dataset_rows(transactions: Any, cleaning: CleaningReport) -> pd.DataFrame | None:
    """The clean rows to log as the run's dataset input, or None (too many, or Spark)."""
    if isinstance(transactions, pd.DataFrame):
        return transactions
    if (isinstance(transactions, CleanTransactions)
            and cleaning.rows_kept <= DATASET_DIGEST_MAX_ROWS):
        return transactions.to_pandas()
    return None


def _train(source: Any, transactions: Any, cleaning: CleaningReport, *, as_of_ts: pd.Timestamp,
           settings: Settings, promote: bool, report_path: str | os.PathLike[str] | None,
           bundle_dir: str | os.PathLike[str] | None, say: Progress, started_at: float,
           inputs: Any = None, ablation: bool = True, calendar: bool | None = False,
           ) -> TrainingRun:
    from churnlens import _report

    horizon = settings.horizon_days
    notes: list[str] = []

    backtest_result = None
    dates = [(as_of_ts - pd.Timedelta(days=horizon * k)).date()
             for k in range(settings.backtest_steps, 0, -1)]
    if dates:
        try:
            backtest_result = backtest(transactions, dates, settings, progress=say,
                                       inputs=inputs, ablation=ablation, calendar=calendar)
        except DataValidationError as exc:
            notes.append(f"backtest skipped: {exc}")

    say(f"training the model at {as_of_ts.date()}")
    fitted = fit_models(transactions, as_of_ts.date(), settings, progress=say, inputs=inputs,
                        calendar=calendar)
    if fitted.sample is not None and fitted.sample.sampled:
        notes.append(str(fitted.sample.note()))
    artifact = ModelArtifact(
        model=fitted.churnlens, horizon_days=horizon, as_of=as_of_ts.date(),
        windows_days=tuple(settings.features.windows_days), metrics=fitted.validation,
        backtest=backtest_result.to_dict() if backtest_result else None,
        settings=settings.model_dump(mode="json"),
    )

    say("drawing plots and writing the report")
    plots = _figures(fitted, backtest_result, transactions)
    # Rendered once: the same PNG goes into the report and into MLflow's plots/.
    images = {plot.title: _report.figure_png(plot.figure) for plot in plots}
    captions = {plot.title: plot.caption for plot in plots}
    # The outlook first: what the model says of the coming horizon, every total with its
    # base (the same scoring summary as `churnlens score --json-summary`).
    from churnlens._scoring import score_customers

    say(f"scoring the base at {as_of_ts.date()} for the report's outlook")
    if isinstance(transactions, pd.DataFrame):
        outlook = score_customers(transactions, as_of_ts.date(), artifact,
                                  settings=settings.scoring, reasons=False, inputs=inputs)
    else:  # out of core or Spark: the features at as-of are already in fitted
        outlook = _outlook(fitted, transactions, artifact, settings)
    tables, outlook_captions = _report.outlook_section(outlook.summary)
    captions.update(outlook_captions)
    validation_title = f"Validation on the held-out latest cutoff ({fitted.cutoffs[-1]})"
    tables[validation_title] = _validation_table(fitted)
    captions[validation_title] = (
        f"Every model scored on the customers of the latest training cutoff, which is held "
        f"out of fitting; truth: a purchase in the {horizon} days after it. The new model "
        "is promoted on this data.")
    if backtest_result is not None:
        backtest_title = "Backtest: trained at A from history up to A, evaluated on (A, A+H]"
        tables[backtest_title] = _backtest_table(backtest_result)
        captions[backtest_title] = (
            "Ranking: AUC, PR AUC and lift (higher is better). Probability: Brier score and "
            "log loss (lower is better). Retention: the share of customers predicted to buy "
            "again in the period beside the share that did; cohort retention and CRR as "
            "defined in docs/retention.md.")
        value_title = "Value backtest: spend in (A, A+H], predicted vs actual, per customer"
        tables[value_title] = _value_table(backtest_result)
        predictors = (backtest_result.runs[-1].get("value", {}).get("predictors", {})
                      if backtest_result.runs else {})
        ablation_rows = backtest_result.ablation_table()
        if not ablation_rows.empty:
            ablation_title = ("Ablation: the churnlens model with and without each input "
                              "group, backtested")
            tables[ablation_title] = _ablation_table(backtest_result)
            captions[ablation_title] = (
                "What each input is worth on this data: at each backtest date the churnlens "
                "model is fitted again on the same snapshots without each input group's "
                "features ('without ...') and without any ('none': the transactions' own "
                "features), and scored on the same customers against the same truth. 'all' "
                "is the model of the backtest above. Higher AUC and lift, lower Brier, "
                "predicted retention nearer the actual: better.")
        captions[value_title] = (
            "Every customer acquired by A, with an actual spend of 0 for those who did not "
            "buy (docs/value.md, Value backtest). MAE, RMSE and the total's error in % "
            "(lower is better); Spearman: how well the predictions rank customers by spend "
            "(higher is better). " + "; ".join(f"{k}: {v}" for k, v in predictors.items())
            + ".")
    summary = {
        "as-of date": as_of_ts.date(), "horizon (days)": horizon,
        "customers at as-of": f"{len(fitted.features):,}",
        "training cutoffs": f"{fitted.cutoffs[0]} .. {fitted.cutoffs[-1]} ({len(fitted.cutoffs)})",
        "snapshot rows": f"{fitted.snapshot_rows:,}" + (
            f" (sampled from {fitted.sample.rows_before:,})"
            if fitted.sample is not None and fitted.sample.sampled else ""),
        "best iteration": fitted.churnlens.best_iteration_,
        "inputs": _inputs_line(fitted.churnlens),
        "transactions": f"{cleaning.rows_kept:,} kept of {cleaning.rows_read:,} read",
    }
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(report_path) if report_path else Path(tmp) / "report.html"
        _report.write_html_report(
            report, title=f"churnlens training report, as of {as_of_ts.date()}",
            summary=summary, tables=tables, figures=images, notes=notes, captions=captions,
        )
        registration = None
        if settings.mlflow.enabled:
            from churnlens._tracking import categories_as_values, log_training_run

            say("logging to MLflow and registering the model")
            plot_files = {}
            for plot in plots:
                file = Path(tmp) / f"{plot.file_stem}.png"
                file.write_bytes(images[plot.title])
                plot_files[f"plots/{file.name}"] = file
            bt_csv = Path(tmp) / "backtest.csv"
            if backtest_result is not None:
                write_table(backtest_result.table(), bt_csv)
                plot_files["backtest.csv"] = bt_csv
            registration = log_training_run(
                artifact, settings.mlflow,
                evaluation=categories_as_values(fitted.validation_frame),
                params=_flat(settings.model_dump(mode="json")) | {"as_of": str(as_of_ts.date())}
                | _input_params(fitted.churnlens),
                metrics=_metrics(fitted),
                metrics_by_date=_backtest_metrics(backtest_result),
                # the dataset input (digest of every row): in-memory data, or a file read
                # out of core whose clean rows are few enough to read for the digest
                transactions=_dataset_rows(transactions, cleaning),
                source=os.fspath(source) if isinstance(source, str | os.PathLike) else None,
                started_at=started_at,
                files={"report.html": report, **plot_files},
                json_documents={
                    "config.json": settings.model_dump(mode="json"),
                    "cleaning_report.json": cleaning.to_dict(),
                    "features.json": {"features": artifact.feature_names,
                                      "model_features": fitted.churnlens.feature_names_},
                    "data_summary.json": _data_summary(transactions, fitted, cleaning),
                    "sampling.json": _sampling(fitted),
                    "inputs.json": inputs_summary(fitted.churnlens),
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


def _sampling(fitted: FittedModels) -> dict[str, Any]:
    """How the training snapshots were sampled (``sampling.json``, ``--json``)."""
    return fitted.sample.to_dict() if fitted.sample is not None else {}


def _outlook(fitted: FittedModels, transactions: Any, artifact: ModelArtifact,
             settings: Settings) -> Any:
    """The scoring summary of the base at as-of from the features ``fit_models`` computed
    (the engine's view or Spark; the transactions never reach pandas)."""
    from concurrent.futures import Future

    from churnlens._scoring import CHUNK_ROWS, _score_features

    as_of = fitted.as_of
    start = as_of - dt.timedelta(days=fitted.horizon_days)
    last_actual: Future[Any] = Future()
    if isinstance(transactions, CleanTransactions):
        from churnlens._retention import retention_rates

        last_actual.set_result(retention_rates(transactions, start, as_of,
                                               window_days=fitted.horizon_days))
    else:
        from churnlens._spark_scoring import last_actual_rates

        last_actual.set_result(last_actual_rates(transactions, as_of, fitted.horizon_days))
    return _score_features(fitted.features, as_of, artifact, last_actual=last_actual,
                           settings=settings.scoring, reasons=False, progress=lambda _m: None,
                           chunk_rows=CHUNK_ROWS)


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _metrics(fitted: FittedModels) -> dict[str, float]:
    """``validation.<model>.<metric>``: on the held-out latest training cutoff; and the
    snapshot rows before and after sampling (``training.snapshot_rows_*``)."""
    sample = ({"training.snapshot_rows_before": float(fitted.sample.rows_before),
               "training.snapshot_rows_after": float(fitted.sample.rows_after)}
              if fitted.sample is not None else {})
    return {f"validation.{model}.{k}": v for model, values in fitted.validation.items()
            for k, v in values.items()} | sample


def _backtest_metrics(result: BacktestResult | None) -> dict[dt.date, dict[str, float]]:
    """``backtest.<model>.<metric>`` per backtest as-of date (MLflow: the date is the step,
    not part of the name, so that runs at different dates compare)."""
    by_date: dict[dt.date, dict[str, float]] = {}
    for run in result.runs if result else []:
        day = pd.Timestamp(run["as_of"]).date()
        by_date[day] = {f"backtest.{model}.{key}": value
                        for model, values in run["models"].items()
                        for key, value in values.items()}
        # the value backtest: backtest.value.<predictor>.<metric>
        by_date[day].update({f"backtest.value.{name}.{key}": value
                             for name, values in run.get("value", {}).get("models", {}).items()
                             for key, value in values.items()})
        # the ablation: backtest.ablation.<variant>.<metric> (without_events, none ...)
        by_date[day].update({
            f"backtest.ablation.{row['variant'].replace(' ', '_')}.{key}": float(value)
            for row in run.get("ablation", [])
            for key, value in row.items()
            if key not in ("variant", "groups") and isinstance(value, int | float)})
    return by_date


def _data_summary(transactions: Any, fitted: FittedModels, cleaning: CleaningReport
                  ) -> dict[str, Any]:
    if not isinstance(transactions, pd.DataFrame):  # counted by the engine's loader
        counts = {"transactions": cleaning.rows_kept, "customers": cleaning.customers,
                  "first_day": str(cleaning.first_day), "last_day": str(cleaning.last_day)}
    else:
        counts = {"transactions": len(transactions),
                  "customers": int(transactions["customer_id"].nunique()),
                  "first_day": str(transactions["timestamp"].min().date()),
                  "last_day": str(transactions["timestamp"].max().date())}
    return {
        **counts,
        "customers_at_as_of": len(fitted.features),
        "snapshot_rows": fitted.snapshot_rows,
        "cutoffs": [str(c) for c in fitted.cutoffs],
    }


# (group, label, metric key) of the report's tables; a "%" marks percent columns.
_TABLE_COLUMNS = [
    ("ranking", "AUC", "auc"), ("ranking", "PR AUC", "pr_auc"),
    ("ranking", "top-decile lift", "lift_top_decile"),
    ("probability", "Brier", "brier"), ("probability", "log loss", "log_loss"),
    ("retention %", "predicted", "predicted_retention"),
    ("retention %", "actual", "actual_retention"),
]
_PERIOD_COLUMNS = [
    ("cohort retention %", "predicted", "predicted_cohort_retention"),
    ("cohort retention %", "actual", "actual_cohort_retention"),
    ("CRR %", "predicted", "predicted_crr"), ("CRR %", "actual", "actual_crr"),
]
_MODEL_ORDER = ("churnlens", "bgnbd", "paretonbd", "logistic", "recency")


def _metrics_frame(rows: list[tuple[dict[str, Any], dict[str, Any]]],
                   columns: list[tuple[str, str, str]]) -> pd.DataFrame:
    """One row per (keys, metrics); two-level columns (group, label)."""
    records = []
    for keys, metrics in rows:
        record: dict[tuple[str, str], Any] = {("", k): v for k, v in keys.items()}
        record.update({(group, label): metrics.get(key, math.nan)
                       for group, label, key in columns})
        records.append(record)
    frame = pd.DataFrame(records)
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    return frame


def _ordered(models: dict[str, Any]) -> list[str]:
    return sorted(models, key=lambda n: (_MODEL_ORDER.index(n) if n in _MODEL_ORDER
                                         else len(_MODEL_ORDER), n))


def _validation_table(fitted: FittedModels) -> pd.DataFrame:
    rows = [({"model": name}, fitted.validation[name]) for name in _ordered(fitted.validation)]
    return _metrics_frame(rows, _TABLE_COLUMNS)


def _ablation_table(result: BacktestResult) -> pd.DataFrame:
    rows = [({"as of": str(run["as_of"]), "variant": row["variant"],
              "groups": row["groups"] or "(transactions only)",
              "input features": row["input_features"]}, row)
            for run in result.runs for row in run.get("ablation", [])]
    return _metrics_frame(rows, _TABLE_COLUMNS + _PERIOD_COLUMNS)


def _inputs_line(model: Any) -> str:
    """The report's one line on the inputs used."""
    summary = inputs_summary(model)
    if not summary["groups"]:
        return "transactions only"
    return "; ".join(f"{g}: {len(f)} feature(s)" for g, f in summary["features"].items())


def _input_params(model: Any) -> dict[str, str]:
    """The input spec as MLflow parameters (``inputs.*``)."""
    spec = inputs_summary(model)["spec"] or {}

    def listed(values: Any) -> str:  # MLflow keeps at most 6,000 characters a value
        text = ",".join(str(v) for v in values) or "none"
        return text if len(text) <= 500 else text[:497] + "..."

    return {"inputs.groups": listed(spec.get("groups", ())),
            "inputs.attributes": listed(a["name"] for a in spec.get("attributes", ())),
            "inputs.event_types": listed(spec.get("event_types", ())),
            "inputs.channels": listed(spec.get("channels", ())),
            "inputs.detail_columns": listed(spec.get("detail_columns", ()))}


def _backtest_table(result: BacktestResult) -> pd.DataFrame:
    rows = [({"as of": str(run["as_of"]), "model": _with_fit_note(run, name)},
             run["models"][name])
            for run in result.runs for name in _ordered(run["models"])]
    return _metrics_frame(rows, _TABLE_COLUMNS + _PERIOD_COLUMNS)


def _with_fit_note(run: dict[str, Any], name: str) -> str:
    """A baseline's name, with why it has no metrics when its fit could not be used."""
    fit = run.get("baseline_fits", {}).get(name)
    return f"{name} (no metrics: {fit['reason']})" if fit and not fit.get("used") else name


_VALUE_COLUMNS = [
    ("error", "MAE", "mae"), ("error", "RMSE", "rmse"),
    ("error", "total %", "aggregate_error_pct"), ("ranking", "Spearman", "spearman"),
    ("total spend", "predicted", "predicted_total"), ("total spend", "actual", "actual_total"),
]


def _value_table(result: BacktestResult) -> pd.DataFrame:
    rows = [({"as of": str(run["as_of"]), "predictor": name}, metrics)
            for run in result.runs
            for name, metrics in run.get("value", {}).get("models", {}).items()]
    return _metrics_frame(rows, _VALUE_COLUMNS)


@dataclasses.dataclass
class _Plot:
    file_stem: str  # stable artifact name in MLflow's plots/
    title: str
    caption: str
    figure: Any


def _figures(fitted: FittedModels, result: BacktestResult | None,
             transactions: pd.DataFrame) -> list[_Plot]:
    from churnlens import _report, plots
    from churnlens._retention import cohort_table, retention_series

    figures: list[_Plot] = []
    if result is not None and result.runs:
        run = result.runs[-1]
        scores = run["scores"]
        risks = {c.removeprefix("risk_"): scores[c] for c in scores.columns
                 if c.startswith("risk_")}
        end = run["as_of"] + dt.timedelta(days=result.horizon_days)
        label = f"backtest trained at {run['as_of']}, evaluated on purchases up to {end}"
        figures += [
            _Plot("roc", f"ROC, {label}",
                  "How well each model ranks churners above customers who bought again; "
                  "the dotted diagonal is a random ranking.",
                  _report.plot_roc(scores["churned"], risks)),
            _Plot("lift_and_gains", f"Lift and gains, {label}",
                  "Left: churn rate of each risk decile over the average churn rate. Right: "
                  "share of all churners reached when contacting customers from the highest "
                  "risk down.",
                  _report.plot_gains(scores["churned"], risks)),
            _Plot("calibration", f"Calibration, {label}",
                  "Mean predicted churn risk against the churn rate observed, in ten equal "
                  "groups of customers; on the dotted line a risk means what it says.",
                  _report.plot_calibration(scores["churned"], risks)),
            _Plot("predicted_vs_actual_retention",
                  "Predicted vs actual retention, by backtest period",
                  "For the period after each backtest date: the retention each model "
                  "predicted (bars with 95% intervals) beside the retention that happened "
                  "(black).",
                  _report.plot_retention_pairs(result.table())),
        ]
        spend = {c.removeprefix("spend_"): scores[c] for c in scores.columns
                 if c.startswith("spend_") and c != "spend_actual"}
        if spend and "spend_actual" in scores:
            figures.append(_Plot(
                "predicted_vs_actual_spend", f"Predicted vs actual spend by decile, {label}",
                "Customers in ten equal groups of each predictor's expected spend in the "
                "horizon: the group's mean prediction against what it spent; on the dotted "
                "line a prediction means what it says.",
                _report.plot_value_deciles(scores["spend_actual"], spend)))
    figures.append(_Plot(
        "feature_importance", "Feature importance",
        "Share of the LightGBM part's total gain per feature. The logistic part and the "
        "BG/NBD offset also shape the risk; see ChurnModel.contributions for exact "
        "per-customer terms.",
        _report.plot_feature_importance(fitted.churnlens.feature_importances_)))
    figures.append(_Plot(
        "acquisition_cohorts", "Acquisition cohorts",
        "Share of each month's new customers who bought again k months later; empty cells "
        "are months that have not fully elapsed.",
        plots.plot_cohort_heatmap(cohort_table(transactions))))
    figures.append(_Plot(
        "crr_over_time", "CRR over time",
        "Customer retention rate and cohort retention by quarter, from the transactions "
        "(actual rates, no model).",
        plots.plot_retention_series(retention_series(transactions, every="quarter"))))
    return figures
