"""Batch scoring on Apache Spark: the same scores as the embedded engine, scaled out.

- Features: :func:`churnlens.compute_features` on the Spark DataFrame (native Spark
  SQL, the same definitions as DuckDB).
- Model: the artifact is broadcast once; ``mapInPandas`` scores each Arrow batch
  with :func:`churnlens._scoring.score_batch`, vectorised (risk, bands, expected
  value and the reasons' exact contributions, :meth:`churnlens.ChurnModel.explain`),
  never one customer at a time. This is
  the native equivalent of ``mlflow.pyfunc.spark_udf`` on the registered pyfunc (a
  test checks they agree), and it also gives the reasons.
- RFM segments need ranks over the whole base: the exact integer rule of
  :mod:`churnlens._rules`, computed from per-value counts and a running sum, so
  both engines give the same segment to every customer.
- The one base-wide quantity the reasons use (the mean BG/NBD offset) is computed in
  a first pass, as the embedded engine does.

Results are Spark DataFrames; ``score_file_with_spark`` (``churnlens score --engine
spark``) also writes them through pandas for the CLI, reading the file by the loader's
contract on Spark (:func:`read_transactions`, the reader ``train --engine spark`` uses).
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnlens._artifact import ModelArtifact
from churnlens._config import ScoringSettings, Settings
from churnlens._engine import daily_sql, day_number, is_occasion_sql
from churnlens._reasons import REASON_COLUMNS
from churnlens._rules import BANDS, SEGMENT_RULES
from churnlens._scoring import (
    BASE_COLUMNS,
    ScoreResult,
    check_as_of,
    score_batch,
    summary_document,
)

__all__ = ["feature_profile_spark", "score_file_with_spark", "score_spark", "summarise_spark"]

Progress = Callable[[str], None]
_RFM = (("r_score", "CAST(recency_days AS DOUBLE)", True),
        ("f_score", "CAST(frequency AS DOUBLE)", False),
        # the cents rule of churnlens._rules.monetary_cents, in Spark SQL
        ("m_score", "floor(round(monetary_total, 6) * 100.0 + 0.5)", False))


def score_spark(
    transactions: Any,
    as_of: str | dt.date,
    artifact: ModelArtifact,
    *,
    settings: ScoringSettings | None = None,
    allow_past: bool = False,
    reasons: bool = True,
    progress: Progress | None = None,
    inputs: Any = None,
) -> Any:
    """Score every customer of a Spark DataFrame of transactions.

    Parameters
    ----------
    transactions
        A PySpark DataFrame with ``customer_id``, ``timestamp`` and ``amount``
        (rows missing one of them are ignored, as in ``compute_features``).
    as_of, artifact, settings, allow_past, reasons, inputs
        As for :func:`churnlens._scoring.score_customers` (``inputs``: the customer and
        event tables, pandas, sent to Spark; a model trained with richer inputs also
        needs the transactions' optional columns it was trained with, named
        ``order_id``, ``quantity``, ``category``, ``channel``, ``discount``). A model
        trained with a customer table adds the attribute columns of
        :func:`churnlens._scoring.attribute_column_names` (raw values at ``as_of``, text
        or double) after the others.

    Returns
    -------
    pyspark.sql.DataFrame
        The columns of the embedded engine's scores (``customer_id, as_of, churn_risk,
        risk_band, expected_value, value_at_risk, p_alive, expected_purchases,
        days_to_next_purchase, expected_spend, clv, recency_days, frequency,
        monetary_total, segment`` and ``reason_1 .. reason_3`` with reasons), one row per
        customer acquired by ``as_of``. Lazy: the features are persisted (they are read
        several times); cache the result if you use it more than once.
    """
    from churnlens._scoring import attribute_table, check_inputs, input_spec_of

    used = check_inputs(artifact, inputs, detail_columns=list(transactions.columns))
    scores = _score_spark(transactions, as_of, artifact, settings=settings,
                          allow_past=allow_past, reasons=reasons, progress=progress,
                          inputs=used)[0]
    spec = input_spec_of(artifact)
    table = attribute_table(spec, used, check_as_of(artifact, as_of, allow_past=True))
    return scores if table is None else _with_attributes(scores, spec, table)


def _with_attributes(scores: Any, spec: Any, table: pd.DataFrame) -> Any:
    """``scores`` with the raw attribute columns (a left join on the customer id as
    text, the customer table's rule), after the other columns."""
    from churnlens._scoring import attribute_column_names

    pairs = attribute_column_names(spec)
    numeric = {name for name, categories in spec.attributes if categories is None}
    key = "churnlens_attribute_id"
    rows = []
    for customer_id, values in zip(table.index.tolist(),
                                   table.reindex(columns=[n for n, _ in pairs]).itertuples(
                                       index=False, name=None), strict=True):
        row: list[Any] = [str(customer_id)]
        for (name, _column), value in zip(pairs, values, strict=True):
            if pd.isna(value):
                row.append(None)
            else:
                row.append(float(value) if name in numeric else str(value))
        rows.append(tuple(row))
    schema = ", ".join([f"{key} string", *(
        f"`{column}` {'double' if name in numeric else 'string'}" for name, column in pairs)])
    attributes = scores.sparkSession.createDataFrame(rows, schema=schema)
    joined = scores.join(attributes, scores["customer_id"].cast("string")
                         == attributes[key], "left")
    return joined.select(*[scores[c] for c in scores.columns],
                         *[attributes[f"`{column}`"] for _, column in pairs])


def _score_spark(
    transactions: Any,
    as_of: str | dt.date,
    artifact: ModelArtifact,
    *,
    settings: ScoringSettings | None,
    allow_past: bool,
    reasons: bool,
    progress: Progress | None,
    inputs: Any = None,
) -> tuple[Any, Any]:
    """:func:`score_spark`'s scores and the (persisted) features they come from (with
    the input features of a model trained with richer inputs, joined on Spark)."""
    from pyspark.sql import functions as F  # noqa: N812 (the PySpark convention)

    from churnlens._features import compute_features
    from churnlens._scoring import input_spec_of

    say = progress or (lambda _m: None)
    day = check_as_of(artifact, as_of, allow_past=allow_past)
    spark = transactions.sparkSession
    say(f"computing features at {day} on Spark")
    features = compute_features(transactions, day, windows_days=artifact.windows_days)
    spec = input_spec_of(artifact)
    if spec.groups:
        from churnlens._input_features import input_features

        say("computing the input features on Spark")
        extra = input_features(transactions, day, spec, inputs, date_column="as_of")
        features = features.join(extra.drop("as_of"), on="customer_id", how="left")
    features = features.persist()
    shared = spark.sparkContext.broadcast(artifact)
    center = None
    if reasons and getattr(artifact.model, "use_bgnbd", False):
        say("measuring the mean BG/NBD offset of the base")
        sums = features.mapInPandas(_offset_sums(shared), "total double, n long").agg(
            F.sum("total").alias("total"), F.sum("n").alias("n")).collect()[0]
        center = float(sums["total"]) / int(sums["n"]) if sums["n"] else 0.0
    columns = [c for c in BASE_COLUMNS if c != "segment"] + (REASON_COLUMNS if reasons else [])
    id_type = features.schema["customer_id"].dataType.simpleString()
    schema = ", ".join(f"{c} {_SPARK_TYPES.get(c, 'string')}" for c in columns).replace(
        "customer_id string", f"customer_id {id_type}", 1)
    scored = features.mapInPandas(
        _batch_scorer(shared, day, settings or ScoringSettings(), reasons, center, columns,
                      spec=spec if spec.groups else None),
        schema)
    say("ranking the base for RFM segments")
    for name, expression, descending in _RFM:
        table = _score_table(features, expression, descending=descending)
        scored = (scored.withColumn(f"{name}_key", F.expr(expression))
                  .join(table.withColumnRenamed("v", f"{name}_key")
                        .withColumnRenamed("score", name), on=f"{name}_key", how="left")
                  .withColumn(name, F.coalesce(F.col(name), F.lit(1)))
                  .drop(f"{name}_key"))
    cases = " ".join(
        f"WHEN {rule.sql({'R': 'r_score', 'F': 'f_score', 'M': 'm_score'})} "
        f"THEN '{rule.segment}'" for rule in SEGMENT_RULES)
    scored = scored.withColumn("segment", F.expr(f"CASE {cases} END"))
    return (scored.select(*[c for c in BASE_COLUMNS], *(REASON_COLUMNS if reasons else [])),
            features)


_SPARK_TYPES = {
    "as_of": "date", "churn_risk": "double", "risk_band": "string", "expected_value": "double",
    "value_at_risk": "double", "recency_days": "bigint", "frequency": "bigint",
    "monetary_total": "double",
    # the value outputs (churnlens._value.VALUE_COLUMNS): NaN without a value model
    "p_alive": "double", "expected_purchases": "double", "days_to_next_purchase": "double",
    "expected_spend": "double", "clv": "double",
}


def _score_table(features: Any, expression: str, *, descending: bool) -> Any:
    """``v`` (the ranked value) -> ``score`` 1-5 by the exact rule of ``quintile_scores``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F  # noqa: N812 (the PySpark convention)

    values = features.select(F.expr(expression).cast("double").alias("v")).where(
        "v IS NOT NULL AND NOT isnan(v)")
    counts = values.groupBy("v").agg(F.count(F.lit(1)).alias("c"))
    order = F.col("v").desc() if descending else F.col("v").asc()
    # One ordered pass over the distinct values (a single partition: Spark warns; the
    # distinct values are at most one per customer and carry two numbers each).
    running = Window.orderBy(order).rowsBetween(Window.unboundedPreceding, Window.currentRow)
    everything = Window.partitionBy()
    ranked = (counts.withColumn("hi", F.sum("c").over(running))
              .withColumn("n", F.sum("c").over(everything))
              .withColumn("lo", F.col("hi") - F.col("c") + 1))
    score = F.expr("(5 * (lo + hi) + 2 * n - 1) div (2 * n)")
    return ranked.select("v", score.cast("int").alias("score"))


def _offset_sums(shared: Any) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        total, count = 0.0, 0
        for batch in batches:
            offset = shared.value.model.bgnbd_offset(batch)
            total, count = total + float(np.sum(offset)), count + len(offset)
        yield pd.DataFrame({"total": [total], "n": [count]})

    return run


def _batch_scorer(shared: Any, as_of: dt.date, settings: ScoringSettings, reasons: bool,
                  center: float | None, columns: list[str], *, spec: Any = None,
                  ) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        artifact = shared.value
        for batch in batches:
            if spec is not None:  # text attributes as the model's categories
                from churnlens._input_features import categorise_inputs

                batch = categorise_inputs(batch, spec)
            if len(batch):
                yield score_batch(batch, as_of, artifact, settings=settings, reasons=reasons,
                                  offset_center=center)[columns]

    return run


# --- feature drift --------------------------------------------------------------------


def feature_profile_spark(features: Any, artifact: ModelArtifact) -> dict[str, Any] | None:
    """The features' distribution against the model's training snapshots, on Spark.

    The counts of each feature in the reference's bins (``_drift.bin_index``'s rule:
    bin ``i`` holds ``edges[i-1] < x <= edges[i]``, missing values the last bin) and
    approximate quantiles (``percentile_approx``), in one aggregation; the shares and
    PSI are :func:`churnlens._drift.profile_from_counts`'s. None when the model has no
    ``reference_profile_``.
    """
    from pyspark.sql import functions as F  # noqa: N812 (the PySpark convention)

    from churnlens._drift import QUANTILES, profile_from_counts

    reference = getattr(artifact.model, "reference_profile_", None)
    if not reference:
        return None
    names = [name for name in reference if name in features.columns]
    if not names:
        return {}
    columns = []
    for j, name in enumerate(names):
        value = F.col(f"`{name}`").cast("double")
        missing = value.isNull() | F.isnan(value)
        edges = [float(e) for e in reference[name]["edges"]]
        # the number of edges strictly below the value: its bin (searchsorted, "left")
        below = sum((F.when(value > F.lit(e), 1).otherwise(0) for e in edges), F.lit(0))
        bin_of = F.when(missing, len(edges) + 1).otherwise(below)
        columns += [F.sum(F.when(bin_of == k, 1).otherwise(0)).alias(f"c{j}_{k}")
                    for k in range(len(edges) + 2)]
        columns.append(F.percentile_approx(F.when(~missing, value),
                                           list(QUANTILES.values())).alias(f"q{j}"))
    row = features.agg(*columns).collect()[0]
    counts, quantiles = {}, {}
    for j, name in enumerate(names):
        bins = len(reference[name]["edges"]) + 2
        counts[name] = [int(row[f"c{j}_{k}"] or 0) for k in range(bins)]
        values = row[f"q{j}"]
        quantiles[name] = (dict.fromkeys(QUANTILES) if values is None else
                           {key: None if v is None else float(v)
                            for key, v in zip(QUANTILES, values, strict=True)})
    return profile_from_counts(reference, counts, quantiles)


# --- summary ------------------------------------------------------------------------


def summarise_spark(scores: Any, transactions: Any, as_of: dt.date,
                    artifact: ModelArtifact) -> dict[str, Any]:
    """The summary of the embedded engine's scores, from Spark aggregates.

    ``transactions`` (a Spark DataFrame, as given to :func:`score_spark`) gives the last
    actual retention rates of the horizon before ``as_of``.
    """
    from pyspark.sql import functions as F  # noqa: N812 (the PySpark convention)

    day = as_of
    horizon = artifact.horizon_days
    active = F.col("recency_days") < horizon
    p = F.greatest(F.least(F.col("churn_risk"), F.lit(1.0)), F.lit(0.0))
    row = scores.agg(
        F.count(F.lit(1)).alias("n"),
        F.sum("churn_risk").alias("risk_sum"),
        F.sum(F.col("churn_risk") * (1 - F.col("churn_risk"))).alias("variance_sum"),
        F.sum("value_at_risk").alias("value_at_risk"),
        F.sum(F.when(active, F.col("value_at_risk")).otherwise(0.0)).alias("value_at_risk_active"),
        F.sum(F.when(active, 1).otherwise(0)).alias("S"),
        F.sum(F.when(active, 1 - p).otherwise(0.0)).alias("stay_active"),
        F.sum(F.when(active, p * (1 - p)).otherwise(0.0)).alias("var_active"),
        F.sum(F.when(active, p).otherwise(0.0)).alias("lost_active"),
        F.sum(1 - p).alias("stay_all"),
        F.sum(p * (1 - p)).alias("var_all"),
        F.expr("percentile(churn_risk, array(0.1, 0.5, 0.9))").alias("quantiles"),
        *[F.sum(F.when(F.col("risk_band") == b, 1).otherwise(0)).alias(f"band_{b}")
          for b in BANDS],
    ).collect()[0]
    segments = {r["segment"]: int(r["count"]) for r in
                scores.groupBy("segment").count().collect()}
    n = int(row["n"])
    predicted = _predicted_retention(
        window_days=horizon, S=int(row["S"] or 0), acquired=n,
        stay_active=float(row["stay_active"] or 0.0), var_active=float(row["var_active"] or 0.0),
        stay_all=float(row["stay_all"] or 0.0), var_all=float(row["var_all"] or 0.0),
        lost_active=float(row["lost_active"] or 0.0),
        level_error=getattr(artifact.model, "level_error_", None))
    return summary_document(
        as_of=day, artifact=artifact, customers=n,
        bands={b: int(row[f"band_{b}"] or 0) for b in BANDS},
        segments={rule.segment: segments.get(rule.segment, 0) for rule in SEGMENT_RULES},
        quantiles=[float(q) for q in row["quantiles"]] if n else None,
        risk_sum=float(row["risk_sum"] or 0.0), variance_sum=float(row["variance_sum"] or 0.0),
        value_at_risk_total=float(row["value_at_risk_active"] or 0.0),
        value_at_risk_all=float(row["value_at_risk"] or 0.0),
        predicted=predicted, last_actual=last_actual_rates(transactions, day, horizon),
        last_start=day - dt.timedelta(days=horizon),
    )


def _predicted_retention(*, window_days: int, S: int, acquired: int, stay_active: float,
                         var_active: float, stay_all: float, var_all: float,
                         lost_active: float, level_error: Any = None) -> dict[str, Any]:
    """``churnlens._evaluation.predict_retention`` from sums (a test checks they agree)."""
    from churnlens._evaluation import retention_from_sums

    return retention_from_sums(
        window_days=window_days, S=S, acquired=acquired, stay_active=stay_active,
        var_active=var_active, stay_all=stay_all, var_all=var_all, lost_active=lost_active,
        level_error=level_error).to_dict()


_LAST_ACTUAL_SQL = """
WITH daily AS ({daily}),
customers AS (
    SELECT customer_id, min(day) AS first_day,
           max(CASE WHEN day > {t0} - {w} AND day <= {t0} THEN 1 ELSE 0 END) AS in_s,
           max(CASE WHEN day > {t1} - {w} THEN 1 ELSE 0 END) AS in_e,
           max(CASE WHEN day > {t0} THEN 1 ELSE 0 END) AS bought
    FROM daily WHERE {is_occasion} AND day <= {t1}
    GROUP BY customer_id
)
SELECT coalesce(sum(in_s), 0) AS S, coalesce(sum(in_e), 0) AS E,
       coalesce(sum(CASE WHEN first_day > {t0} THEN 1 ELSE 0 END), 0) AS N,
       coalesce(sum(CASE WHEN in_e = 1 AND in_s = 0 AND first_day <= {t0} THEN 1 ELSE 0 END),
                0) AS reactivated,
       coalesce(sum(CASE WHEN in_s = 1 AND in_e = 1 THEN 1 ELSE 0 END), 0) AS retained,
       coalesce(sum(CASE WHEN bought = 1 AND first_day <= {t0} THEN 1 ELSE 0 END), 0)
           AS repeat_buyers,
       coalesce(sum(CASE WHEN first_day <= {t0} THEN 1 ELSE 0 END), 0) AS acquired
FROM customers
"""


def last_actual_rates(transactions: Any, as_of: dt.date, horizon_days: int) -> Any:
    """Actual retention of ``(as_of - H, as_of]`` with ``W = H`` on Spark.

    The counts of ``churnlens.retention_rates`` (``retention.md``) in Spark SQL; the
    rates come from the same code as the embedded engine's.
    """
    import uuid

    from churnlens._retention import RetentionRates, with_rates

    t1 = day_number(as_of)
    t0 = t1 - int(horizon_days)
    view = f"churnlens_last_actual_{uuid.uuid4().hex}"
    transactions.createOrReplaceTempView(view)
    try:
        # The daily rows and the occasion rule of the embedded engine's retention.
        present = (f"(SELECT * FROM {view} WHERE customer_id IS NOT NULL "
                   "AND `timestamp` IS NOT NULL AND amount IS NOT NULL) AS present")
        sql = _LAST_ACTUAL_SQL.format(daily=daily_sql(present, "spark"), t0=t0, t1=t1,
                                      w=int(horizon_days), is_occasion=is_occasion_sql())
        counts = transactions.sparkSession.sql(sql).collect()[0].asDict()
    finally:
        transactions.sparkSession.catalog.dropTempView(view)
    frame = with_rates(pd.DataFrame({k: [int(v)] for k, v in counts.items()}))
    rates = frame.iloc[0]
    return RetentionRates(
        start=as_of - dt.timedelta(days=horizon_days), end=as_of, window_days=int(horizon_days),
        S=int(rates["S"]), E=int(rates["E"]), N=int(rates["N"]),
        reactivated=int(rates["reactivated"]), crr=float(rates["crr"]),
        cohort_retention=float(rates["cohort_retention"]), churn_rate=float(rates["churn_rate"]),
        repeat_rate=float(rates["repeat_rate"]), simple_ratio=float(rates["simple_ratio"]),
    )


# --- the CLI's file path ------------------------------------------------------------


def score_file_with_spark(
    transactions: str | os.PathLike[str],
    as_of: str | dt.date,
    artifact: ModelArtifact,
    *,
    settings: Settings | None = None,
    master: str = "local[2]",
    allow_past: bool = False,
    reasons: bool = True,
    progress: Progress | None = None,
    inputs: Any = None,
) -> ScoreResult:
    """``churnlens score --engine spark``: read a file with Spark, score, collect.

    ``transactions``: a CSV or Parquet file, a glob or a directory of Parquet files,
    read and checked by :func:`read_transactions` (the loader's rules and errors).
    Uses the active Spark session if there is one (and leaves it running), else starts
    one on ``master`` and stops it at the end. Returns the scores as pandas (sorted by
    customer id, as the embedded engine) and the summary (its ``cleaning``: the
    cleaning report, as the embedded engine's). ``inputs``: as for
    :func:`churnlens._scoring.score_file` (checked before Spark starts); the scores then
    carry the attribute columns and the summary its ``inputs`` block, as the embedded
    engine's.
    """
    from churnlens._scoring import add_inputs, check_inputs, input_spec_of, mapped_details

    settings = settings or Settings()
    say = progress or (lambda _m: None)
    day = check_as_of(artifact, as_of, allow_past=allow_past)
    used = check_inputs(artifact, inputs, detail_columns=mapped_details(settings))
    spec = input_spec_of(artifact)
    spark, owned = _session(master, say)
    try:
        tx, cleaning = read_transactions(spark, transactions, day, settings)
        scores, features = _score_spark(tx, day, artifact, settings=settings.scoring,
                                        allow_past=allow_past, reasons=reasons,
                                        progress=say, inputs=used)
        unseen = _unseen_categories(features, spec) if spec.groups else None
        scores = scores.persist()
        say("collecting the scores")
        frame = _collect(scores)
        say("summarising on Spark")
        summary = summarise_spark(scores, tx, day, artifact)
        summary["cleaning"] = cleaning
        summary["engine"] = "spark"
        profile = feature_profile_spark(features, artifact)
        scores.unpersist()
        features.unpersist()
    finally:
        if owned:
            spark.stop()
    if spec.groups:
        from churnlens._scoring import unseen_warnings

        add_inputs(frame, summary, spec, used, day, unseen_warnings(unseen), unseen)
    return ScoreResult(scores=frame, summary=summary, features=None, feature_profile=profile)


def _unseen_categories(features: Any, spec: Any) -> dict[str, int]:
    """Rows per text attribute column whose value is not among the spec's categories
    (what :func:`churnlens._input_features.categorise_inputs` counts on pandas)."""
    from pyspark.sql import functions as F  # noqa: N812 (the PySpark convention)

    names = [n for n in spec.categorical_features() if n in features.columns]
    if not names:
        return {}
    row = features.agg(*[
        F.sum(F.when(F.col(f"`{n}`").isNotNull()
                     & ~F.col(f"`{n}`").cast("string").isin(list(spec.categories_of(n))),
                     1).otherwise(0)).alias(n) for n in names]).collect()[0]
    return {n: int(row[n] or 0) for n in names if row[n]}


def _session(master: str, say: Progress) -> tuple[Any, bool]:
    """:func:`~churnlens._spark_loading.spark_session` for scoring (Arrow batches of
    50,000 rows when it starts one), saying so when it starts one."""
    from pyspark.sql import SparkSession

    from churnlens._spark_loading import spark_session

    if SparkSession.getActiveSession() is None:
        say(f"starting Spark ({master})")
    return spark_session(master, "churnlens-score",
                         config={"spark.sql.execution.arrow.maxRecordsPerBatch": "50000"})


def read_transactions(spark: Any, path: str | os.PathLike[str], as_of: dt.date,
                      settings: Settings) -> tuple[Any, dict[str, Any]]:
    """The transactions ``churnlens score --engine spark`` scores: the loader's contract.

    :func:`churnlens._spark_loading.load_transactions_spark` on ``path`` (a CSV or
    Parquet file, a glob, or a directory of Parquet files, partitioned or not) with the
    options of ``settings.data`` (column names, the optional columns, ``time_format``,
    ``delimiter``, ``max_staleness_days``) and ``as_of``, as ``train --engine spark``
    reads. So the rules are those of :func:`churnlens._loading.load_transactions` and of
    the DuckDB engine, with their errors and messages: customer ids by the id rule
    (``12.0`` is ``12``, missing-id words dropped), timestamps in UTC, the optional
    columns by their rules (order ids as given), rows without an id or after ``as_of``
    dropped and counted, stale data refused; values only the pandas rules read send a
    single file to the pandas loader, and several files are refused.

    Returns
    -------
    tuple
        The clean rows (a lazy Spark DataFrame: ``customer_id``, ``timestamp``
        (``TIMESTAMP_NTZ``), ``amount`` and the optional columns mapped, by their clean
        names) and the cleaning report as JSON-ready values (the summary's ``cleaning``,
        as the DuckDB engine's).
    """
    from churnlens._io import json_ready
    from churnlens._spark_loading import load_transactions_spark

    loaded = load_transactions_spark(path, spark=spark, **settings.data.loader_options(),
                                     as_of=as_of)
    cleaning: dict[str, Any] = json_ready(loaded.report.to_dict())
    return loaded.transactions, cleaning


def _collect(scores: Any) -> pd.DataFrame:
    """The scores as pandas, through Parquet (PySpark's own pandas path predates pandas
    3), sorted by customer id like the embedded engine's."""
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(prefix="churnlens-spark-") as tmp:
        scores.write.parquet(str(Path(tmp) / "scores"))
        table = pq.read_table(str(Path(tmp) / "scores"))
    frame = table.to_pandas()[list(scores.columns)]
    frame = frame.sort_values("customer_id", kind="stable", ignore_index=True)
    frame["as_of"] = frame["as_of"].astype(object)  # datetime.date values, as embedded
    for column in ("recency_days", "frequency"):
        frame[column] = frame[column].astype(np.int64)
    return frame
