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
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from churnlens._config import Settings
from churnlens._evaluation import classification_metrics, predict_retention
from churnlens._io import json_ready
from churnlens._loading import history_until
from churnlens._model import ChurnModel, LogisticBaseline, RecencyBaseline
from churnlens._validation import parse_date
from churnlens.exceptions import DataValidationError

__all__ = [
    "BASELINES",
    "BacktestResult",
    "Evaluation",
    "FittedModels",
    "backtest",
    "evaluate_models",
    "fit_models",
    "snapshot_cutoffs",
]

Progress = Callable[[str], None]
BASELINES = ("recency", "logistic", "bgnbd")
MODEL_NAMES = ("churnlens", *BASELINES)


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

    def models(self) -> dict[str, Any]:
        """All models by name, churnlens first."""
        return {"churnlens": self.churnlens, **self.baselines}


def fit_models(
    transactions: pd.DataFrame,
    as_of: dt.date | str,
    settings: Settings,
    *,
    progress: Progress | None = None,
) -> FittedModels:
    """Fit the churnlens model and every baseline at ``as_of``, from history ``<= as_of``.

    Parameters
    ----------
    transactions
        Clean transactions; rows after ``as_of`` are ignored, whatever is passed in.
    as_of
        The training as-of date: snapshots at cutoffs ``c <= as_of - horizon``.
    settings
        Horizon, snapshots, feature windows and model settings.
    progress
        Called with a short message at each step.

    Returns
    -------
    FittedModels
        The churnlens model, the baselines (``recency``, ``logistic``, ``bgnbd``), the
        cutoffs, the features at ``as_of`` and the metrics of every model on the
        held-out latest cutoff (the evaluation data for promotion).
    """
    from churnlens._bgnbd import BGNBDModel
    from churnlens._features import build_snapshots, compute_features

    say = progress or _noop
    as_of_ts = parse_date(as_of, name="as_of")
    horizon = settings.horizon_days
    history = history_until(transactions, as_of_ts)
    if history.empty:
        raise DataValidationError(f"no transactions on or before {as_of_ts.date()}.")
    first_day = history["timestamp"].min().date()
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
    snapshots = build_snapshots(
        history, cutoffs, horizon_days=horizon, windows_days=windows,
        observed_until=as_of_ts.date(),
    )
    # Snapshots come sorted by (cutoff, customer_id), and LightGBM's bagging draws rows
    # by position: that canonical order makes the same seed give the same model.
    snapshots = snapshots.loc[snapshots["churned"].notna()].reset_index(drop=True)
    labels = snapshots["churned"].astype(np.int64)
    say(f"features at the as-of date {as_of_ts.date()}")
    features = compute_features(history, as_of_ts.date(), windows_days=windows)

    m = settings.model
    say(f"fitting LightGBM on {len(snapshots):,} snapshot rows")
    model = settings.build_model().fit(snapshots, labels, cutoff="cutoff",
                                       as_of=as_of_ts.date(), reference=features)

    say("fitting baselines: recency, logistic regression, BG/NBD")
    baselines: dict[str, Any] = {
        "recency": RecencyBaseline().fit(snapshots, labels),
        "logistic": LogisticBaseline(
            feature_names=model.base_feature_names_, random_state=m.random_state
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
        "logistic": LogisticBaseline(feature_names=model.base_feature_names_,
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
    return FittedModels(
        as_of=as_of_ts.date(), horizon_days=horizon, churnlens=model, baselines=baselines,
        cutoffs=cutoffs, snapshot_rows=len(snapshots), validation=validation, features=features,
        validation_frame=validation_frame, short_history_cutoffs=short_cutoffs,
        warnings=_fit_warnings(model, short_cutoffs, horizon),
    )


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
    """Metrics per model, and the scores behind them (one row per customer)."""

    metrics: dict[str, dict[str, float]]
    scores: pd.DataFrame


def evaluate_models(
    fitted: FittedModels, transactions: pd.DataFrame, *, observed_until: dt.date | None = None
) -> Evaluation:
    """Score every model at its as-of date and compare with ``(A, A + H]``.

    ``transactions`` must cover the whole horizon after the as-of date. The scores
    frame has ``customer_id``, ``recency_days``, ``churned`` and one ``risk_<model>``
    column per model.
    """
    from churnlens._features import compute_labels
    from churnlens._retention import retention_rates

    as_of, horizon = fitted.as_of, fitted.horizon_days
    end = as_of + dt.timedelta(days=horizon)
    last = observed_until or transactions["timestamp"].max().date()
    if end > last:
        raise DataValidationError(
            f"cannot evaluate at {as_of}: the horizon ends {end} but the data ends {last}. "
            "Suggestion: choose an as-of date at least horizon days before the end of the data."
        )
    truth = compute_labels(transactions, as_of, horizon, observed_until=last)
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
        metrics.update({
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
        })
        results[name] = metrics
    return Evaluation(metrics=results, scores=scores)


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
        ``scores`` (per customer: ``churned`` and ``risk_<model>``) and ``fitted`` (the
        :class:`FittedModels`).
    """

    horizon_days: int
    runs: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of ``churnlens backtest --json``."""
        return {"runs": [
            {"as_of": str(run["as_of"]), "horizon_days": self.horizon_days,
             "models": {name: json_ready(m) for name, m in run["models"].items()},
             "warnings": list(run.get("warnings", [])),
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


def backtest(
    transactions: pd.DataFrame,
    as_of_dates: Sequence[dt.date | str],
    settings: Settings,
    *,
    progress: Progress | None = None,
) -> BacktestResult:
    """Train at each as-of date from history ``<= A`` and evaluate on ``(A, A + H]``.

    Parameters
    ----------
    transactions
        Clean transactions covering every horizon to evaluate.
    as_of_dates
        As-of dates ``A``; each needs ``A + H`` on or before the end of the data.
    settings
        Horizon, snapshots, feature windows and model settings.
    progress
        Called with a short message at each step.

    Returns
    -------
    BacktestResult
        Per as-of date and model (churnlens and every baseline): AUC, PR AUC, Brier,
        log loss, top-decile lift and predicted vs actual retention, cohort retention
        and CRR; ``.table()`` and ``.to_dict()`` (``churnlens backtest --json``).
    """
    say = progress or _noop
    if not as_of_dates:
        raise DataValidationError("give at least one as-of date to backtest.")
    last = transactions["timestamp"].max().date()
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
        fitted = fit_models(transactions, as_of, settings, progress=say)
        evaluation = evaluate_models(fitted, transactions, observed_until=last)
        for note in fitted.warnings:
            say(f"note: {note}")
        runs.append({"as_of": as_of, "models": evaluation.metrics,
                     "scores": evaluation.scores, "fitted": fitted,
                     "warnings": list(fitted.warnings)})
    return BacktestResult(horizon_days=settings.horizon_days, runs=runs)
