"""Training and backtesting: snapshots -> churnlens model + baselines -> metrics.

The protocol (``design.md``, Backtest): for an as-of date ``A`` and horizon ``H``,
training snapshots are taken at cutoffs ``c`` with ``c + H <= A`` (their labels are
complete at ``A``), the models are scored at ``A`` from history ``<= A`` only, and the
truth is each customer's purchases in ``(A, A + H]``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from churnlens._btyd import FIT_ERRORS
from churnlens._config import Settings
from churnlens._evaluation import (
    actual_spend,
    classification_metrics,
    predict_retention,
    value_metrics,
)
from churnlens._io import json_ready
from churnlens._loading import history_until
from churnlens._model import (
    ChurnModel,
    LogisticBaseline,
    RecencyBaseline,
    default_feature_names,
)
from churnlens._validation import parse_date
from churnlens.exceptions import ChurnlensError, DataValidationError

__all__ = [
    "BASELINES",
    "BacktestResult",
    "Evaluation",
    "FittedModels",
    "ablation_variants",
    "backtest",
    "evaluate_models",
    "fit_models",
    "snapshot_cutoffs",
]

Progress = Callable[[str], None]
BASELINES = ("recency", "logistic", "bgnbd")
MODEL_NAMES = ("churnlens", *BASELINES)
# Baselines of the backtest only (fitted at each as-of date, not kept in the model):
# Pareto/NBD's churn risk, 1 - P(at least one purchase occasion in the horizon).
BACKTEST_BASELINES = (*BASELINES, "paretonbd")
# The value backtest's predictors of spend in (A, A + H], by name: what each is.
VALUE_PREDICTORS = {
    "value_model": "model-based expected spend (churnlens._value, what score reports)",
    "paretonbd_gammagamma": "Pareto/NBD expected purchases x Gamma-Gamma spend per purchase",
    "bgnbd_gammagamma": "BG/NBD expected purchases x Gamma-Gamma spend per purchase",
    "heuristic": "heuristic: spend if the customer stays (past spend rate), not a forecast",
    "heuristic_x_retention": "heuristic x (1 - churnlens churn risk)",
}


def model_notes(model: Any) -> dict[str, Any]:
    """What a fitted churnlens model says about itself (model card, backtest JSON).

    The blend it chose, the inputs its linear part does not use and why, its measured
    level error, its history and BG/NBD's boundary flags. Empty for a model that does
    not record them (one trained before these were kept).
    """
    from churnlens._scorer import SELF_KNOWLEDGE

    return {k.rstrip("_"): getattr(model, k) for k in SELF_KNOWLEDGE if hasattr(model, k)}


def _noop(_: str) -> None:
    return None


def snapshot_cutoffs(
    as_of: dt.date | str,
    horizon_days: int,
    *,
    every: str = "month",
    count: int = 12,
    first_day: dt.date | None = None,
) -> list[dt.date]:
    """Training cutoffs for an as-of date: the latest is ``as_of - horizon_days``.

    Cutoffs step back by ``every`` (``week``, ``month``, ``quarter`` or ``<N>d``);
    cutoffs on or before ``first_day`` (the first day of the data) are left out: there
    every customer would be one day old, with nothing to learn from.

    Parameters
    ----------
    as_of
        The training as-of date.
    horizon_days
        The churn horizon ``H``: labels at ``c`` need ``(c, c + H]`` observed by ``as_of``.
    every
        Step between cutoffs.
    count
        How many cutoffs at most.
    first_day
        First day of the data, if known.

    Returns
    -------
    list of datetime.date
        The cutoffs, oldest first.

    Examples
    --------
    >>> [str(c) for c in snapshot_cutoffs("1997-12-31", 91, every="month", count=3)]
    ['1997-08-01', '1997-09-01', '1997-10-01']
    """
    latest = parse_date(as_of, name="as_of") - pd.Timedelta(days=int(horizon_days))
    if every == "month":
        steps = [latest - pd.DateOffset(months=k) for k in range(count)]
    elif every == "quarter":
        steps = [latest - pd.DateOffset(months=3 * k) for k in range(count)]
    elif every == "week":
        steps = [latest - pd.Timedelta(days=7 * k) for k in range(count)]
    elif every.endswith("d") and every[:-1].isdigit() and int(every[:-1]) > 0:
        steps = [latest - pd.Timedelta(days=int(every[:-1]) * k) for k in range(count)]
    else:
        raise DataValidationError(
            f"every must be week, month, quarter or '<N>d', got {every!r}."
        )
    cutoffs = sorted({pd.Timestamp(s).date() for s in steps})
    if first_day is not None:
        cutoffs = [c for c in cutoffs if c > first_day]
    return cutoffs


@dataclasses.dataclass
class FittedModels:
    """The churnlens model and its baselines, fitted at one as-of date."""

    as_of: dt.date
    horizon_days: int
    churnlens: ChurnModel
    baselines: dict[str, Any]
    cutoffs: list[dt.date]
    snapshot_rows: int
    validation: dict[str, dict[str, float]]
    features: pd.DataFrame
    validation_frame: pd.DataFrame
    short_history_cutoffs: list[dt.date] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)
    # How the labelled snapshots were sampled (_features.SnapshotSample), if recorded.
    sample: Any = None
    # The richer inputs the churnlens model was trained with (_input_features.InputSpec;
    # None: none), also the model's input_spec_.
    input_spec: Any = None
    # The seasonal clock's daily purchase occasions up to as-of (churnlens._season),
    # when the calendar group is on (None otherwise): what the ablation refits read.
    season_daily: Any = None

    def models(self) -> dict[str, Any]:
        """All models by name, churnlens first."""
        return {"churnlens": self.churnlens, **self.baselines}


def fit_models(
    transactions: Any,
    as_of: dt.date | str,
    settings: Settings,
    *,
    progress: Progress | None = None,
    inputs: Any = None,
    input_groups: Sequence[str] | None = None,
    calendar: bool | None = False,
) -> FittedModels:
    """Fit the churnlens model and every baseline at ``as_of``, from history ``<= as_of``.

    Parameters
    ----------
    transactions
        Clean transactions; rows after ``as_of`` are ignored, whatever is passed in.
        A pandas frame, the out-of-core view of files
        (:class:`~churnlens._loading_sql.CleanTransactions`) or a PySpark DataFrame:
        the snapshots are built and sampled by that engine
        (:func:`churnlens._features.training_snapshots`, ``training.max_snapshot_rows``)
        and only the sample and the features at ``as_of`` reach pandas.
    as_of
        The training as-of date: snapshots at cutoffs ``c <= as_of - horizon``.
    settings
        Horizon, snapshots, feature windows and model settings.
    progress
        Called with a short message at each step.
    inputs
        The richer inputs (:class:`~churnlens._input_features.InputTables`: the customer
        and event tables, either may be ``None``). ``None``: none at all, the model
        reads the transactions' own features only. Given, the input groups are learned
        at ``as_of`` (:func:`~churnlens._input_features.learn_input_spec`: the purchase
        details when the transactions carry optional columns, the events, the customer
        attributes, and the calendar as ``calendar`` says: off by default), their
        features are joined onto the snapshots and the features at ``as_of``, and the
        model keeps what it used in ``input_spec_``. The baselines read the
        transactions' features only, with or without inputs.
    input_groups
        Restrict the learned groups to these (``None``: every group the data allows).
    calendar
        ``False`` (the default): no calendar group; ``True``: the calendar group (also
        without ``inputs``); ``None``: on when the history spans a year plus the horizon
        (with ``inputs``). Off by default because it made the level worse on logs without
        a season (docs/inputs.md).

    Returns
    -------
    FittedModels
        The churnlens model, the baselines (``recency``, ``logistic``, ``bgnbd``), the
        cutoffs, the features at ``as_of`` and the metrics of every model on the
        held-out latest cutoff (the evaluation data for promotion).
    """
    return _fit_models(transactions, as_of, settings, progress=progress, inputs=inputs,
                       input_groups=input_groups, calendar=calendar)[0]


def _fit_models(
    transactions: Any,
    as_of: dt.date | str,
    settings: Settings,
    *,
    progress: Progress | None,
    inputs: Any,
    input_groups: Sequence[str] | None,
    calendar: bool | None,
) -> tuple[FittedModels, pd.DataFrame, pd.Series]:
    """:func:`fit_models`, and the labelled snapshots and labels it fitted on."""
    from churnlens._bgnbd import BGNBDModel
    from churnlens._features import compute_features, training_snapshots
    from churnlens._value import fit_value_model

    say = progress or _noop
    as_of_ts = parse_date(as_of, name="as_of")
    horizon = settings.horizon_days
    # A frame is cut to its history here; the view and Spark are read up to the as-of
    # day by the feature SQL itself (the snapshots read no day after as-of: every label
    # horizon ends by then), so nothing after as-of is ever read.
    history = (history_until(transactions, as_of_ts)
               if isinstance(transactions, pd.DataFrame) else transactions)
    first_day = day_range(history, as_of_ts.date())[0]
    if first_day is None:
        raise DataValidationError(f"no transactions on or before {as_of_ts.date()}.")
    cutoffs = snapshot_cutoffs(
        as_of_ts, horizon, every=settings.snapshots.every, count=settings.snapshots.count,
        first_day=first_day,
    )
    cutoffs, short_cutoffs = _enough_history(cutoffs, first_day, horizon,
                                             keep=max(2, settings.snapshots.validation_count + 1))
    if len(cutoffs) <= settings.snapshots.validation_count:
        latest = (as_of_ts - pd.Timedelta(days=horizon)).date()
        raise DataValidationError(
            f"only {len(cutoffs)} training cutoff(s) fit between the first day of the data "
            f"({first_day}) and as-of - horizon ({latest}). "
            "Suggestion: use a later --as-of, a shorter --horizon-days or more frequent "
            "snapshots (snapshots.every)."
        )
    windows = settings.features.windows_days
    say(f"building snapshots at {len(cutoffs)} cutoffs ({cutoffs[0]} .. {cutoffs[-1]})")
    # Labelled snapshots, sampled by the engine that holds them (stratified by cutoff
    # and label; every row when they fit), sorted by (cutoff, customer_id): LightGBM's
    # bagging draws rows by position, so that canonical order makes the same seed give
    # the same model.
    snapshots, sample = training_snapshots(
        history, cutoffs, horizon_days=horizon, windows_days=windows,
        observed_until=as_of_ts.date(), max_rows=settings.training.max_snapshot_rows,
        seed=settings.training.sample_seed,
    )
    if sample.sampled:
        say(str(sample.note()))
    labels = snapshots["churned"].astype(np.int64)
    say(f"features at the as-of date {as_of_ts.date()}")
    features = collected(compute_features(history, as_of_ts.date(), windows_days=windows))
    spec = None
    if inputs is None and calendar:  # the calendar asked for, without any table
        from churnlens._input_features import InputTables

        inputs = InputTables()
    if inputs is not None:
        snapshots, features, spec = _with_inputs(
            snapshots, features, history, inputs, as_of=as_of_ts.date(), horizon_days=horizon,
            groups=input_groups, calendar=calendar, say=say)
    # The transactions' own features: what the baselines read, inputs or not.
    own = [n for n in default_feature_names(snapshots)
           if spec is None or n not in set(spec.feature_names())]

    m = settings.model
    season_daily = None
    if spec is not None and "calendar" in spec.groups and m.use_bgnbd:
        from churnlens._season import daily_occasions

        # The seasonal clock (docs/training.md): the days up to as-of only.
        season_daily = daily_occasions(history, as_of_ts.date())
    say(f"fitting LightGBM on {len(snapshots):,} snapshot rows")
    model = settings.build_model().fit(snapshots, labels, cutoff="cutoff",
                                       as_of=as_of_ts.date(), reference=features,
                                       season_daily=season_daily)
    if spec is not None:
        model.input_spec_ = spec
    # The value model (churnlens._value) on the whole calibration history, carried by the
    # model for scoring: p_alive, expected purchases and spend, CLV, expected_value.
    say("fitting the value model: Pareto/NBD (or BG/NBD) and Gamma-Gamma")
    model.value_model_ = fit_value_model(features, horizon_days=horizon)

    say("fitting baselines: recency, logistic regression, BG/NBD")
    baselines: dict[str, Any] = {
        "recency": RecencyBaseline().fit(snapshots, labels),
        "logistic": LogisticBaseline(
            feature_names=_baseline_features(model, own), random_state=m.random_state
        ).fit(snapshots, labels),
        # The churnlens model's scoring BG/NBD is this very fit (same frame, same
        # deterministic optimiser): reuse it rather than fit it twice.
        "bgnbd": model.bgnbd_ if m.use_bgnbd else BGNBDModel(horizon_days=horizon).fit(features),
    }

    # Held-out latest cutoffs: the evaluation data for promotion (same rows for every
    # model), out of sample for every model: churnlens' parts and these baselines are
    # fitted on the training cutoffs only for it.
    held_out = snapshots["cutoff"].isin(model.validation_cutoffs_)
    validation_frame = snapshots.loc[held_out].reset_index(drop=True)
    validation_labels = labels[held_out].to_numpy()
    training = snapshots.loc[~held_out]
    out_of_sample = {
        "recency": RecencyBaseline().fit(training, labels[~held_out]),
        "logistic": LogisticBaseline(feature_names=_baseline_features(model, own),
                                     random_state=m.random_state
                                     ).fit(training, labels[~held_out]),
    }
    validation = {"churnlens": dict(model.held_out_metrics_)} | {
        name: classification_metrics(validation_labels, _risk(est, validation_frame))
        for name, est in out_of_sample.items()
    }
    # The BG/NBD baseline above was fitted on histories up to the as-of date, which
    # include the held-out labels' horizons; on the held-out rows it is refitted at
    # each held-out cutoff from that cutoff's histories only (it needs no labels).
    validation["bgnbd"] = classification_metrics(
        validation_labels, _bgnbd_risk_per_cutoff(validation_frame, horizon))
    fitted = FittedModels(
        as_of=as_of_ts.date(), horizon_days=horizon, churnlens=model, baselines=baselines,
        cutoffs=cutoffs, snapshot_rows=len(snapshots), validation=validation, features=features,
        validation_frame=validation_frame, short_history_cutoffs=short_cutoffs,
        warnings=_fit_warnings(model, short_cutoffs, horizon) + (
            [str(sample.note())] if sample.sampled else []) + _unseen_notes(features),
        sample=sample, input_spec=spec, season_daily=season_daily,
    )
    return fitted, snapshots, labels


def _with_inputs(snapshots: pd.DataFrame, features: pd.DataFrame, history: Any, inputs: Any,
                 *, as_of: dt.date, horizon_days: int, groups: Sequence[str] | None,
                 calendar: bool | None, say: Progress) -> tuple[pd.DataFrame, pd.DataFrame, Any]:
    """The snapshots and the features at ``as_of`` with the input features joined, and
    the spec learned at ``as_of`` (from data on or before it only)."""
    from churnlens._input_features import learn_input_spec, with_input_features

    spec = learn_input_spec(history, inputs, as_of=as_of, horizon_days=horizon_days,
                            calendar=calendar, groups=groups)
    if not spec.groups:
        say("no richer inputs to use (no customer or event table, no optional "
            "transaction column, less than a year plus the horizon of history)")
        return snapshots, features, spec
    say(f"input features: {', '.join(spec.groups)} ({len(spec.feature_names())} columns)")
    snapshots = with_input_features(snapshots, spec, inputs, history, date_column="cutoff")
    features = with_input_features(features, spec, inputs, history, date_column="as_of")
    return snapshots, features, spec


def _unseen_notes(features: pd.DataFrame) -> list[str]:
    unseen = {k: int(v) for k, v in (features.attrs.get("unseen_categories") or {}).items()
              if v}
    return [f"{n:,} customer(s) at the as-of date have a value of {name} not seen in the "
            "training snapshots (read as missing)" for name, n in unseen.items()]


def _baseline_features(model: ChurnModel, own: Sequence[str]) -> list[str]:
    """The churnlens model's features that are the transactions' own (no input feature):
    the logistic baseline stays the same reference with or without richer inputs."""
    keep = set(own)
    return [n for n in model.base_feature_names_ if n in keep]


def day_range(transactions: Any, until: dt.date | None = None
              ) -> tuple[dt.date | None, dt.date | None]:
    """First and last day of the transactions (up to ``until``), on their engine.

    ``(None, None)`` when there is no row. ``transactions``: a clean pandas frame, the
    out-of-core view (:class:`~churnlens._loading_sql.CleanTransactions`) or a PySpark
    DataFrame (``customer_id``, ``timestamp``, ``amount``).
    """
    from churnlens._engine import day_number, day_sql, from_day_number
    from churnlens._loading_sql import CleanTransactions

    if isinstance(transactions, pd.DataFrame):
        frame = transactions if until is None else history_until(transactions, until)
        if frame.empty:
            return None, None
        return frame["timestamp"].min().date(), frame["timestamp"].max().date()
    limit = "" if until is None else f" WHERE day <= {day_number(until)}"
    if isinstance(transactions, CleanTransactions):
        day = day_sql('"timestamp"', "duckdb")
        first, last = transactions.connection.execute(
            f"SELECT min(day), max(day) FROM (SELECT {day} AS day FROM "
            f"{transactions.view}) AS days{limit}").fetchone() or (None, None)
    else:
        day = day_sql("`timestamp`", "spark")
        row = transactions.selectExpr(f"{day} AS day").where(
            limit.removeprefix(" WHERE ") or "true").selectExpr(
            "min(day)", "max(day)").collect()[0]
        first, last = row[0], row[1]
    return (None if first is None else from_day_number(int(first)),
            None if last is None else from_day_number(int(last)))


def collected(frame: Any) -> pd.DataFrame:
    """A pandas frame as is; a PySpark result collected to the driver through Arrow,
    sorted by ``customer_id`` (and ``cutoff``) as the embedded engine's results are."""
    if isinstance(frame, pd.DataFrame):
        return frame
    from churnlens._features import _tidy_pandas

    out = frame.toArrow().to_pandas()
    return _tidy_pandas(out, out["customer_id"].dtype)


def period_rows(transactions: Any, start: dt.date, end: dt.date) -> pd.DataFrame:
    """The clean rows with day in ``(start, end]`` as pandas (a frame: itself).

    For the evaluation of one horizon on the out-of-core view or Spark: only that
    period's rows reach pandas.
    """
    from churnlens._engine import day_number, day_sql
    from churnlens._loading_sql import CleanTransactions

    if isinstance(transactions, pd.DataFrame):
        return transactions
    between = f"BETWEEN {day_number(start) + 1} AND {day_number(end)}"
    if isinstance(transactions, CleanTransactions):
        day = day_sql('"timestamp"', "duckdb")
        return transactions.connection.execute(
            f'SELECT customer_id, "timestamp", amount FROM {transactions.view} '
            f"WHERE {day} {between}").df()
    rows = transactions.selectExpr("customer_id", "`timestamp`",
                                   "CAST(amount AS DOUBLE) AS amount")
    return collected(rows.where(f"{day_sql('`timestamp`', 'spark')} {between}"))


def _fit_warnings(model: ChurnModel, short_cutoffs: Sequence[dt.date], horizon: int
                  ) -> list[str]:
    notes = list(getattr(model, "warnings_", []))
    if short_cutoffs:
        notes.append(
            f"{len(short_cutoffs)} snapshot cutoff(s) with less than {horizon} days of "
            "history left out of training: " + ", ".join(str(c) for c in short_cutoffs))
    return notes


def _enough_history(cutoffs: list[dt.date], first_day: dt.date, horizon_days: int, *,
                    keep: int) -> tuple[list[dt.date], list[dt.date]]:
    """Cutoffs with at least ``horizon_days`` of history, and those left out.

    At a cutoff with less history than the horizon, every customer is younger than the
    period the label looks at: BG/NBD is barely identified there and the windowed
    features are constant, so such a snapshot teaches the model things that do not hold
    at the scoring date. The latest ``keep`` cutoffs are kept whatever their history.
    """
    enough = [c for c in cutoffs if (c - first_day).days >= horizon_days]
    if len(enough) < keep:
        enough = cutoffs[-keep:]
    return enough, [c for c in cutoffs if c not in enough]


def _bgnbd_risk_per_cutoff(frame: pd.DataFrame, horizon_days: int) -> np.ndarray:
    from churnlens._bgnbd import BGNBDModel

    risk = np.empty(len(frame))
    for cutoff in frame["cutoff"].unique():
        rows = (frame["cutoff"] == cutoff).to_numpy()
        bgnbd = BGNBDModel(horizon_days=horizon_days).fit(frame.loc[rows])
        risk[rows] = bgnbd.predict_churn_risk(frame.loc[rows])
    return risk


def _risk(model: Any, features: pd.DataFrame) -> np.ndarray:
    return np.asarray(model.predict_proba(features)[:, 1], dtype=np.float64)


@dataclasses.dataclass
class Evaluation:
    """Metrics per model, and the scores behind them (one row per customer).

    ``baseline_fits``: how the backtest-only baselines' fits went (Pareto/NBD: its
    parameters, convergence, boundary, and why its metrics are empty if they are);
    ``value``: the value backtest (:func:`value_backtest`); ``notes``: anything a
    reader of the backtest should know (a baseline left out and why).
    """

    metrics: dict[str, dict[str, float]]
    scores: pd.DataFrame
    baseline_fits: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    value: dict[str, Any] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)


def evaluate_models(
    fitted: FittedModels, transactions: pd.DataFrame, *, observed_until: dt.date | None = None
) -> Evaluation:
    """Score every model at its as-of date and compare with ``(A, A + H]``.

    ``transactions`` must cover the whole horizon after the as-of date. Besides the
    fitted models, the Pareto/NBD baseline is fitted on the features at the as-of date
    (:func:`fit_paretonbd_baseline`; empty metrics and a note when its fit cannot be
    used), and the value backtest compares predicted with actual spend
    (:func:`value_backtest`). The scores frame has ``customer_id``, ``recency_days``,
    ``churned``, one ``risk_<model>`` column per model, ``spend_actual`` and one
    ``spend_<predictor>`` column per value predictor.
    """
    from churnlens._features import compute_labels
    from churnlens._retention import retention_rates

    as_of, horizon = fitted.as_of, fitted.horizon_days
    end = as_of + dt.timedelta(days=horizon)
    last = observed_until or day_range(transactions)[1]
    if last is None or end > last:
        raise DataValidationError(
            f"cannot evaluate at {as_of}: the horizon ends {end} but the data ends {last}. "
            "Suggestion: choose an as-of date at least horizon days before the end of the data."
        )
    truth = collected(compute_labels(transactions, as_of, horizon, observed_until=last))
    frame = fitted.features.merge(truth[["customer_id", "churned"]], on="customer_id",
                                  how="left", validate="one_to_one")
    if frame["churned"].isna().any():
        raise DataValidationError("labels are missing for some scored customers.")
    churned = frame["churned"].astype(np.int64).to_numpy()
    actual = retention_rates(transactions, as_of, end, window_days=horizon)
    results: dict[str, dict[str, float]] = {}
    scores = frame[["customer_id", "recency_days", "churned"]].copy()
    for name, model in fitted.models().items():
        risk = _risk(model, frame)
        scores[f"risk_{name}"] = risk
        metrics = classification_metrics(churned, risk)
        predicted = predict_retention(frame["recency_days"], risk, window_days=horizon,
                                      level_error=getattr(model, "level_error_", None))
        metrics.update(_retention_metrics(predicted, actual))
        results[name] = metrics
    # Pareto/NBD: fitted on the features at the as-of date, like the BG/NBD baseline
    # (it needs no labels); left empty, with the reason, when its fit cannot be used.
    notes: list[str] = []
    pnbd, fit = fit_paretonbd_baseline(frame, horizon, value_model=_value_model(fitted))
    if pnbd is not None:
        risk = np.asarray(pnbd.predict_churn_risk(frame), dtype=np.float64)
        if not np.isfinite(risk).all():
            pnbd, fit["used"] = None, False
            fit["reason"] = "its churn risks are not finite numbers for some customers"
    if pnbd is not None:
        scores["risk_paretonbd"] = risk
        metrics = classification_metrics(churned, risk)
        predicted = predict_retention(frame["recency_days"], risk, window_days=horizon)
        metrics.update(_retention_metrics(predicted, actual))
        results["paretonbd"] = metrics
    else:
        results["paretonbd"] = dict.fromkeys(results["churnlens"], math.nan) | {
            "customers": float(len(frame))}
        notes.append(f"Pareto/NBD baseline at {as_of}: no metrics, {fit['reason']}.")
    value = value_backtest(fitted, frame, transactions, pnbd=pnbd,
                           churn_risk=scores["risk_churnlens"].to_numpy())
    scores = scores.join(value.pop("spend"))
    notes += value["notes"]
    return Evaluation(metrics=results, scores=scores, baseline_fits={"paretonbd": fit},
                      value=value, notes=notes)


def _retention_metrics(predicted: Any, actual: Any) -> dict[str, float]:
    return {
        "predicted_cohort_retention": predicted.cohort_retention,
        "predicted_cohort_retention_low": predicted.cohort_retention_low,
        "predicted_cohort_retention_high": predicted.cohort_retention_high,
        "actual_cohort_retention": _float(actual.cohort_retention),
        "predicted_crr": predicted.crr,
        "predicted_crr_low": predicted.crr_low,
        "predicted_crr_high": predicted.crr_high,
        "actual_crr": _float(actual.crr),
        "level_error_cohort_retention": predicted.level_error_cohort_retention,
        "level_error_crr": predicted.level_error_crr,
    }




def _value_model(fitted: FittedModels) -> Any | None:
    from churnlens._value import value_model_of

    try:
        return value_model_of(fitted.churnlens)
    except ChurnlensError:
        return None


def _paretonbd_of(params: dict[str, float], horizon_days: int) -> Any:
    """A Pareto/NBD model with these fitted parameters (for its predictions)."""
    from churnlens._paretonbd import ParetoNBDModel

    model = ParetoNBDModel(horizon_days=horizon_days)
    model.params_ = {k: float(params[k]) for k in ("r", "alpha", "s", "beta")}
    model.horizon_days_ = int(horizon_days)
    model.classes_ = np.array([0, 1])
    return model


def fit_paretonbd_baseline(features: pd.DataFrame, horizon_days: int, *,
                           value_model: Any | None = None
                           ) -> tuple[Any | None, dict[str, Any]]:
    """Fit the Pareto/NBD baseline on the features at an as-of date.

    Parameters
    ----------
    features
        The features of every customer at the as-of date (``repeat_frequency``,
        ``t_x_days``, ``tenure_days``).
    horizon_days
        The churn horizon.
    value_model
        The churnlens model's value model (``churnlens._value.ValueModel``), if any.
        When it was fitted on these same customers (or the same seeded sample of them,
        :func:`churnlens._value.fit_sample`), its purchase model is this very
        fit (same frame, same deterministic optimiser): its Pareto/NBD parameters are
        reused, or, when it fell back to BG/NBD, its note says why Pareto/NBD is not
        usable here. No second fit either way.

    Returns
    -------
    tuple
        The fitted :class:`~churnlens._paretonbd.ParetoNBDModel`, or ``None`` when it
        must not be used: the fit failed, did not converge, or stopped on the boundary
        of the parameter space (where the model degenerates); and a record of the fit:
        ``used``, ``reason`` (why it is not used, else ``None``), ``params``,
        ``log_likelihood``, ``converged``, ``boundary`` and ``fit_message``.
    """
    from churnlens._paretonbd import BOUNDED_FIT_EVALUATIONS, ParetoNBDModel
    from churnlens._value import fit_sample

    record: dict[str, Any] = {"used": False, "reason": None, "params": None,
                              "log_likelihood": None, "converged": None, "boundary": None,
                              "fit_message": None, "fitted_by": "this backtest"}
    sample, sampled = fit_sample(features)
    if value_model is not None and int(getattr(value_model, "customers", -1)) == len(sample):
        record["fitted_by"] = "the churnlens model's value model (same customers)"
        if value_model.purchase_model == "pareto/nbd":
            record.update(used=True, params=dict(value_model.purchase_params), converged=True)
            return _paretonbd_of(value_model.purchase_params, horizon_days), record
        why = [n for n in value_model.notes if "Pareto/NBD" in n]
        record["reason"] = "; ".join(why) or "the value model did not use Pareto/NBD"
        return None, record
    try:
        with warnings.catch_warnings():
            # non-convergence is recorded below, not printed
            warnings.simplefilter("ignore", RuntimeWarning)
            model = ParetoNBDModel(horizon_days=horizon_days,
                                   max_evaluations=BOUNDED_FIT_EVALUATIONS).fit(sample)
    except FIT_ERRORS as exc:
        record["reason"] = f"its fit failed ({type(exc).__name__}: {exc})"
        return None, record
    record.update(params=dict(model.params_), log_likelihood=model.log_likelihood_,
                  converged=bool(model.converged_), boundary=model.boundary_,
                  fit_message=str(model.fit_message_))
    if sampled is not None:
        record["fitted_by"] = f"this backtest, {sampled}"
    if model.boundary_:
        record["reason"] = f"its fit is on the boundary of the parameter space ({model.boundary_})"
    elif not model.converged_:
        record["reason"] = f"its fit did not converge ({model.fit_message_})"
    else:
        record["used"] = True
        return model, record
    return None, record


def _heuristic_spend(features: pd.DataFrame, horizon_days: int) -> np.ndarray:
    """The old rule-based value: spend in the horizon *if the customer stays*."""
    from churnlens import _rules

    return np.asarray(_rules.heuristic_expected_value(features, horizon_days),
                      dtype=np.float64)


def value_backtest(fitted: FittedModels, frame: pd.DataFrame, transactions: pd.DataFrame, *,
                   pnbd: Any | None, churn_risk: np.ndarray) -> dict[str, Any]:
    """Predicted vs actual spend in ``(A, A + H]`` per customer, for every value predictor.

    Every customer scored at ``A`` (acquired by then) counts, with an actual spend of 0
    when they bought nothing in the horizon; the actual spend counts purchase occasions
    as the retention rules do (:func:`~churnlens._evaluation.actual_spend`). The
    predictors are :data:`VALUE_PREDICTORS`; one that cannot be computed (a fit on the
    boundary, predictions not finite) gets empty metrics and a note, never an error.

    Returns
    -------
    dict
        ``actual`` (what the truth is), ``predictors`` (name -> what it is), ``models``
        (name -> :func:`~churnlens._evaluation.value_metrics`), ``notes`` and ``spend``
        (a frame on ``frame``'s index: ``spend_actual`` and ``spend_<predictor>``).
    """
    from churnlens._gammagamma import GammaGammaModel

    as_of, horizon = fitted.as_of, fitted.horizon_days
    end = as_of + dt.timedelta(days=horizon)
    actual = actual_spend(period_rows(transactions, as_of, end), as_of, end)
    truth = frame["customer_id"].map(actual).fillna(0.0).to_numpy(dtype=np.float64)
    notes: list[str] = []
    predictions: dict[str, np.ndarray | None] = {}

    def attempt(name: str, predict: Callable[[], Any]) -> None:
        try:
            values = np.asarray(predict(), dtype=np.float64)
            if values.shape != truth.shape or not np.isfinite(values).all():
                raise ValueError("its predictions are missing or not finite for some customers")
            predictions[name] = values
        except (*FIT_ERRORS, KeyError) as exc:
            predictions[name] = None
            notes.append(f"value backtest at {as_of}: no {name} ({type(exc).__name__}: {exc}).")

    value_notes: list[str] = []

    def spend_model() -> Any:
        from churnlens._value import fit_value_model, predict_value, value_model_of

        # the value model the churnlens model carries (fitted on these very features at
        # A, what `score` reports), else one fitted here the same way
        model = value_model_of(fitted.churnlens) or fit_value_model(frame, horizon_days=horizon)
        value_notes.extend(model.notes)
        return predict_value(model, frame, horizon_days=horizon)["expected_spend"]

    gamma: list[Any] = []

    def per_purchase() -> np.ndarray:
        if not gamma:
            from churnlens._value import fit_sample

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                # the value model's sample: the same fit cost, whatever the base's size
                gamma.append(GammaGammaModel().fit(fit_sample(frame)[0]))
            if gamma[0].boundary_:
                raise ValueError(f"Gamma-Gamma fit on the boundary ({gamma[0].boundary_})")
        return np.asarray(gamma[0].expected_spend(frame), dtype=np.float64)

    def paretonbd_spend() -> np.ndarray:
        if pnbd is None:
            raise ValueError("the Pareto/NBD baseline is not usable here (see its note)")
        return np.asarray(pnbd.expected_purchases(frame, horizon)) * per_purchase()

    heuristic = _heuristic_spend(frame, horizon)
    attempt("value_model", spend_model)
    attempt("paretonbd_gammagamma", paretonbd_spend)
    attempt("bgnbd_gammagamma",
            lambda: np.asarray(fitted.baselines["bgnbd"].expected_purchases(frame, horizon))
            * per_purchase())
    attempt("heuristic", lambda: heuristic)
    attempt("heuristic_x_retention", lambda: heuristic * (1.0 - churn_risk))

    spend = pd.DataFrame({"spend_actual": truth}, index=frame.index)
    models: dict[str, dict[str, float]] = {}
    for name, values in predictions.items():
        if values is None:
            models[name] = {k: math.nan for k in value_metrics([0.0], [0.0])} | {
                "customers": float(len(truth))}
            continue
        spend[f"spend_{name}"] = values
        models[name] = value_metrics(truth, values)
    return {"actual": "net spend on purchase occasions in (A, A + H] (refund-only days "
                      "add nothing; a day's refunds net out against its purchases), 0 "
                      "for a customer who bought nothing",
            "predictors": dict(VALUE_PREDICTORS), "models": models, "notes": notes,
            "value_model_notes": value_notes, "spend": spend}


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


@dataclasses.dataclass
class BacktestResult:
    """Per as-of date and model: the metrics of ``evaluate_models``.

    Attributes
    ----------
    horizon_days
        The churn horizon of every run.
    runs
        One dict per as-of date: ``as_of``, ``models`` (metrics by model name),
        ``scores`` (per customer: ``churned``, ``risk_<model>``, ``spend_actual`` and
        ``spend_<predictor>``), ``fitted`` (the :class:`FittedModels`),
        ``baseline_fits`` (how the Pareto/NBD baseline's fit went), ``value`` (the value
        backtest: ``actual``, ``predictors``, ``models``, ``notes``) and ``warnings``.
    """

    horizon_days: int
    runs: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of ``churnlens backtest --json``."""
        return {"runs": [
            {"as_of": str(run["as_of"]), "horizon_days": self.horizon_days,
             "models": {name: json_ready(m) for name, m in run["models"].items()},
             "warnings": list(run.get("warnings", [])),
             **({"baseline_fits": json_ready(run["baseline_fits"])}
                if "baseline_fits" in run else {}),
             **({"value": json_ready(run["value"])} if "value" in run else {}),
             **({"ablation": json_ready(run["ablation"])} if "ablation" in run else {}),
             **({"input_spec": run["fitted"].input_spec.to_dict()}
                if run.get("fitted") is not None
                and getattr(run["fitted"], "input_spec", None) is not None else {}),
             **({"model": json_ready(model_notes(run["fitted"].churnlens))}
                if run.get("fitted") is not None else {})}
            for run in self.runs
        ], "interval_coverage": json_ready(self.interval_coverage())}

    def interval_coverage(self) -> dict[str, dict[str, Any]]:
        """Per model: in how many of the backtest's dates the actual cohort retention and
        CRR fell inside the predicted 95% interval (``stated``: 95).

        Examples
        --------
        >>> BacktestResult(91, []).interval_coverage()
        {}
        """
        names = list(self.runs[0]["models"]) if self.runs else []
        out: dict[str, dict[str, Any]] = {}
        for name in names:
            entry: dict[str, Any] = {"stated": 95.0, "dates": len(self.runs)}
            for rate in ("cohort_retention", "crr"):
                inside = [
                    m[f"predicted_{rate}_low"] <= m[f"actual_{rate}"] <= m[f"predicted_{rate}_high"]
                    for m in (run["models"][name] for run in self.runs)
                    if all(math.isfinite(float(m.get(k, math.nan))) for k in (
                        f"predicted_{rate}_low", f"actual_{rate}", f"predicted_{rate}_high"))
                ]
                entry[f"{rate}_inside"] = sum(inside)
                entry[f"{rate}_coverage"] = 100.0 * sum(inside) / len(inside) if inside else None
            out[name] = entry
        return out

    def table(self) -> pd.DataFrame:
        """One row per (as_of, model)."""
        rows = [
            {"as_of": run["as_of"], "model": name, **metrics}
            for run in self.runs for name, metrics in run["models"].items()
        ]
        return pd.DataFrame(rows)

    def ablation_table(self) -> pd.DataFrame:
        """The ablation: one row per (as_of, variant), variants in
        :func:`ablation_variants`' order; no row for a date whose model used no input
        group (or a backtest run with ``ablation=False``).

        Columns: ``as_of``, ``variant`` (``all``, ``without <group>``, ``none``),
        ``groups``, ``input_features`` and the churnlens model's metrics (``auc``,
        ``brier``, ``lift_top_decile``, ``predicted_cohort_retention``,
        ``actual_cohort_retention``, ``predicted_crr``, ``actual_crr`` ...).

        Examples
        --------
        >>> BacktestResult(91, []).ablation_table().empty
        True
        """
        rows = [{"as_of": run["as_of"], **row}
                for run in self.runs for row in run.get("ablation", [])]
        return pd.DataFrame(rows)

    def value_table(self) -> pd.DataFrame:
        """The value backtest: one row per (as_of, predictor) with its spend metrics."""
        rows = [
            {"as_of": run["as_of"], "predictor": name, **metrics}
            for run in self.runs
            for name, metrics in run.get("value", {}).get("models", {}).items()
        ]
        return pd.DataFrame(rows)


def backtest(
    transactions: Any,
    as_of_dates: Sequence[dt.date | str],
    settings: Settings,
    *,
    progress: Progress | None = None,
    inputs: Any = None,
    ablation: bool = True,
    input_groups: Sequence[str] | None = None,
    calendar: bool | None = False,
) -> BacktestResult:
    """Train at each as-of date from history ``<= A`` and evaluate on ``(A, A + H]``.

    Parameters
    ----------
    transactions
        Clean transactions covering every horizon to evaluate: a pandas frame, the
        out-of-core view of files or a PySpark DataFrame (see :func:`fit_models`).
    as_of_dates
        As-of dates ``A``; each needs ``A + H`` on or before the end of the data.
    settings
        Horizon, snapshots, feature windows and model settings.
    progress
        Called with a short message at each step.
    inputs, input_groups, calendar
        The richer inputs, as for :func:`fit_models` (learned at each as-of date).
    ablation
        When the model uses input groups: at each as-of date, also fit the churnlens
        model without each group and without any (the transactions alone), on the same
        snapshots, and score them at ``A`` (:meth:`BacktestResult.ablation_table`). The
        baselines are fitted once, not per variant.

    Returns
    -------
    BacktestResult
        Per as-of date and model (churnlens, every baseline and Pareto/NBD): AUC, PR
        AUC, Brier, log loss, top-decile lift and predicted vs actual retention, cohort
        retention and CRR; per date the value backtest (predicted vs actual spend:
        MAE, RMSE, Spearman, aggregate error); ``.table()``, ``.value_table()`` and
        ``.to_dict()`` (``churnlens backtest --json``).
    """
    say = progress or _noop
    if not as_of_dates:
        raise DataValidationError("give at least one as-of date to backtest.")
    last = day_range(transactions)[1]
    if last is None:
        raise DataValidationError("no transactions to backtest on.")
    runs = []
    for as_of in sorted(parse_date(a, name="as_of").date() for a in as_of_dates):
        end = as_of + dt.timedelta(days=settings.horizon_days)
        if end > last:
            raise DataValidationError(
                f"cannot backtest at {as_of}: its horizon ends {end}, after the end of the "
                f"data ({last}). Suggestion: use an as-of date on or before "
                f"{last - dt.timedelta(days=settings.horizon_days)}."
            )
        say(f"backtest at {as_of}")
        fitted, snapshots, labels = _fit_models(
            transactions, as_of, settings, progress=say, inputs=inputs,
            input_groups=input_groups, calendar=calendar)
        evaluation = evaluate_models(fitted, transactions, observed_until=last)
        for note in [*fitted.warnings, *evaluation.notes]:
            say(f"note: {note}")
        run = {"as_of": as_of, "models": evaluation.metrics,
               "scores": evaluation.scores, "fitted": fitted,
               "warnings": [*fitted.warnings, *evaluation.notes],
               "baseline_fits": evaluation.baseline_fits, "value": evaluation.value}
        spec = fitted.input_spec
        if ablation and spec is not None and spec.groups:
            run["ablation"] = ablation_runs(fitted, snapshots, labels, evaluation, settings,
                                            progress=say)
        runs.append(run)
    return BacktestResult(horizon_days=settings.horizon_days, runs=runs)


def ablation_variants(groups: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
    """The ablation's variants: ``(name, groups kept)``, the full model first.

    ``all`` (every group), ``without <group>`` for each group (left out when it is
    ``none``: a single group), and ``none`` (the transactions' own features alone).

    Examples
    --------
    >>> [name for name, _ in ablation_variants(("events", "calendar"))]
    ['all', 'without events', 'without calendar', 'none']
    """
    groups = tuple(groups)
    out = [("all", groups)]
    if len(groups) > 1:
        out += [(f"without {g}", tuple(k for k in groups if k != g)) for g in groups]
    return [*out, ("none", ())]


def ablation_runs(fitted: FittedModels, snapshots: pd.DataFrame, labels: pd.Series,
                  evaluation: Evaluation, settings: Settings, *,
                  progress: Progress | None = None) -> list[dict[str, Any]]:
    """The churnlens model with and without each input group, scored at the as-of date.

    Each variant is the churnlens model (``settings.build_model()``) fitted on the same
    snapshots with the features of the left-out groups removed, and scored at ``A`` on
    the same customers against the same truth as the backtest's models; ``all`` is the
    backtest's own churnlens model (not fitted twice). The baselines are not refitted.

    Returns
    -------
    list of dict
        One per variant (:func:`ablation_variants`): ``variant``, ``groups`` (kept,
        joined by ``+``; ``""`` for none), ``input_features`` (how many columns) and
        the metrics of ``run["models"]["churnlens"]`` (AUC, Brier, lift, predicted vs
        actual retention ...).
    """
    say = progress or _noop
    spec = fitted.input_spec
    model = fitted.churnlens
    horizon = fitted.horizon_days
    frame = fitted.features
    churned = evaluation.scores["churned"].to_numpy(dtype=np.int64)
    own = evaluation.metrics["churnlens"]
    actual = _Actual(cohort_retention=own.get("actual_cohort_retention"),
                     crr=own.get("actual_crr"))
    inputs = spec.feature_names()
    rows = []
    for name, kept in ablation_variants(spec.groups):
        left_out = {f for f in inputs if spec.group_of(f) not in kept}
        used = [f for f in inputs if f not in left_out]
        if name == "all":
            metrics = dict(own)
        else:
            say(f"ablation at {fitted.as_of}: the churnlens model "
                + ("without any input feature" if name == "none"
                   else f"{name} ({len(left_out)} columns left out)"))
            names = [n for n in model.base_feature_names_ if n not in left_out]
            variant = settings.build_model().set_params(feature_names=names).fit(
                snapshots, labels, cutoff="cutoff", as_of=fitted.as_of, reference=frame,
                season_daily=fitted.season_daily if "calendar" in kept else None)
            risk = _risk(variant, frame)
            metrics = classification_metrics(churned, risk)
            metrics.update(_retention_metrics(predict_retention(
                frame["recency_days"], risk, window_days=horizon,
                level_error=getattr(variant, "level_error_", None)), actual))
        rows.append({"variant": name, "groups": "+".join(kept),
                     "input_features": len(used), **metrics})
    return rows


@dataclasses.dataclass(frozen=True)
class _Actual:
    """The actual rates of a backtest date, as :func:`_retention_metrics` reads them."""

    cohort_retention: float | None
    crr: float | None
