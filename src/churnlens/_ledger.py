"""The prediction ledger: what churnlens predicted, kept where the models are kept.

Every scoring (``churnlens score`` on both engines, and the scorings ``churnlens
serve`` does at start-up and on ``/reload``) and every campaign list records one
*entry*: a run of the MLflow experiment ``settings.monitoring.experiment``
(``churnlens-monitoring``) in the tracking store of ``settings.mlflow.tracking_uri``,
so it works on the default sqlite store and on a shared MLflow server alike.

A scoring entry holds the model (name, version, alias, run id), the as-of date, the
horizon, the customers scored, the scoring summary (predicted cohort retention and CRR
with their 95% intervals, overall, by risk band and by segment), the model's own
backtest AUC and Brier, its training risk level, the features' distribution against
the training snapshots (:mod:`churnlens._drift`, PSI per feature with the model's
importance) and, as a Parquet artifact, every customer's ``churn_risk``: what
``churnlens monitor`` compares with what happened once the horizon has closed.

The rules this module owns:

- **Complete or absent.** A run is a ledger entry only when it ended ``FINISHED`` and
  carries the tag ``churnlens.ledger.complete=true``, the last write of the recording.
  A recording that fails mid-way ends its run ``FAILED`` and raises a
  :class:`~churnlens.exceptions.ChurnlensError`; :func:`read_ledger` returns complete
  entries only, so a killed or failed recording is never read as a prediction.
- **Concurrent writers.** Two scoring jobs at once must both land. On a local sqlite
  store the recordings of this machine take turns (an advisory lock on a file beside
  the database, waited for up to ``LOCK_WAIT_SECONDS``): the schema creation of a new
  database and the creation of the experiment are races MLflow does not handle
  (mlflow/mlflow#4123, #10334; hydraflow#245: "duplicate column" when two processes
  migrate one sqlite file). Against any store, each call is retried with a bounded
  backoff on the errors a concurrent writer causes ("database is locked", an
  experiment or table created by someone else in the meantime); creating the
  experiment is get-or-create.
- **Off switch.** ``--no-ledger``, ``CHURNLENS_LEDGER=off`` (also ``0``, ``false``,
  ``no``) or ``monitoring.ledger: false`` in the settings: :func:`ledger_enabled`.

MLflow is imported by the functions that need it, never at import.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from churnlens._evaluation import predict_retention
from churnlens._io import json_ready
from churnlens._redact import redact_uri_credentials
from churnlens._registry import sqlite_path
from churnlens._rules import BANDS, SEGMENT_RULES
from churnlens.exceptions import ChurnlensError

__all__ = [
    "COMPLETE_TAG",
    "DEFAULT_EXPERIMENT",
    "KINDS",
    "LEDGER_ENV",
    "LedgerEntry",
    "ledger_enabled",
    "read_ledger",
    "record_list",
    "record_scoring",
    "recorded_message",
]

LEDGER_ENV = "CHURNLENS_LEDGER"
OFF_VALUES = ("off", "0", "false", "no")
DEFAULT_EXPERIMENT = "churnlens-monitoring"
KINDS = ("scoring", "campaign-list")
TAG_PREFIX = "churnlens.ledger."
COMPLETE_TAG = TAG_PREFIX + "complete"
KIND_TAG = TAG_PREFIX + "kind"
ENTRY_FILE = "ledger/entry.json"
RISKS_FILE = "ledger/risks.parquet"
MEMBERS_FILE = "ledger/members.parquet"
RISK_COLUMNS = ["customer_id", "churn_risk", "risk_band", "segment", "recency_days"]
# How long a recording waits for the other recordings of this machine on one sqlite file,
# and how many times (with a doubling pause, capped) one store call is retried.
LOCK_WAIT_SECONDS = 300.0
RETRY_ATTEMPTS = 8
RETRY_FIRST_PAUSE = 0.1
RETRY_MAX_PAUSE = 3.0
# What a concurrent writer makes a store call fail with (lower case): retried.
TRANSIENT = ("database is locked", "database table is locked", "resource_already_exists",
             "already exists", "duplicate column", "no such table", "deadlock",
             "lock wait timeout", "temporarily unavailable", "migration")

T = TypeVar("T")


# --- the entry --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LedgerEntry:
    """One recorded prediction (a scoring) or campaign list, read back from the store.

    Attributes
    ----------
    run_id
        The MLflow run of the entry.
    kind
        ``"scoring"`` or ``"campaign-list"``.
    recorded_at
        When it was recorded (ISO 8601, UTC).
    source
        What recorded it: ``"score"``, ``"score --engine spark"``, ``"serve"``,
        ``"at-risk"``.
    as_of, horizon_days
        The scoring date and the model's horizon.
    model
        ``name``, ``version``, ``alias``, ``run_id``, ``as_of``, ``horizon_days``.
    customers
        Customers scored (a list: customers on it).
    summary
        The scoring summary document (``churnlens score --json-summary``), with
        ``by_band`` and ``by_segment``: the predicted retention
        (:func:`churnlens._evaluation.predict_retention`) of each risk band and segment.
    model_backtest
        ``{"as_of", "auc", "brier"}``: the model's own backtest at its latest date
        (``None`` values when the model has no backtest).
    reference_risk
        The model's risk level on its training snapshots (``training_risk_``), or None.
    feature_profile
        Each feature's distribution at scoring against the training snapshots
        (:func:`churnlens._drift.profile_against`: shares, quantiles, ``psi``) with the
        model's ``importance``; None when the model has no reference profile.
    campaign
        For a campaign list: ``list_id``, ``size``, ``control_fraction``, ``seed``,
        ``groups`` and ``by_band`` (treatment and control counts); else None.
    tracking_uri
        The store the entry was read from (where :meth:`risks` and :meth:`members`
        read its tables; not part of the entry's document).
    """

    run_id: str
    kind: str
    recorded_at: str
    source: str
    as_of: dt.date
    horizon_days: int
    model: dict[str, Any]
    customers: int
    summary: dict[str, Any]
    model_backtest: dict[str, Any]
    reference_risk: dict[str, Any] | None
    feature_profile: dict[str, Any] | None
    campaign: dict[str, Any] | None
    # where the entry's tables are read from (not part of the entry's document)
    tracking_uri: str = dataclasses.field(default="", repr=False, compare=False)
    _tables: dict[str, pd.DataFrame] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The entry's document (``ledger/entry.json``), JSON-ready."""
        return json_ready({field.name: getattr(self, field.name)
                           for field in dataclasses.fields(self)
                           if field.name not in ("tracking_uri", "_tables")})

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], *, tracking_uri: str = "") -> LedgerEntry:
        """An entry from its document (as :meth:`to_dict` wrote it)."""
        return cls(
            run_id=str(document["run_id"]), kind=str(document["kind"]),
            recorded_at=str(document["recorded_at"]), source=str(document["source"]),
            as_of=dt.date.fromisoformat(str(document["as_of"])),
            horizon_days=int(document["horizon_days"]), model=dict(document["model"] or {}),
            customers=int(document["customers"]), summary=dict(document["summary"] or {}),
            model_backtest=dict(document.get("model_backtest") or {}),
            reference_risk=document.get("reference_risk"),
            feature_profile=document.get("feature_profile"),
            campaign=document.get("campaign"), tracking_uri=tracking_uri)

    def risks(self) -> pd.DataFrame:
        """Every customer scored: ``customer_id`` (text), ``churn_risk``, ``risk_band``,
        ``segment``, ``recency_days`` (a scoring entry; read once, then kept)."""
        if self.kind != "scoring":
            raise ChurnlensError(f"ledger entry {self.run_id} is a {self.kind}, which has no "
                                 "per-customer risks. Suggestion: read members() instead.")
        return self._table(RISKS_FILE)

    def members(self) -> pd.DataFrame:
        """The customers of a campaign list: ``customer_id`` (text) and ``group``
        (``treatment`` / ``control``), with ``risk_band`` and ``churn_risk`` when the
        list had them."""
        if self.kind != "campaign-list":
            raise ChurnlensError(f"ledger entry {self.run_id} is a {self.kind}, which has no "
                                 "members. Suggestion: read risks() instead.")
        return self._table(MEMBERS_FILE)

    def _table(self, name: str) -> pd.DataFrame:
        if name not in self._tables:
            self._tables[name] = _read_table(self.tracking_uri, self.run_id, name)
        return self._tables[name].copy()


# --- switches ---------------------------------------------------------------------------


def ledger_enabled(no_ledger: bool, settings: Any = None) -> bool:
    """Whether this run records into the ledger.

    Off with ``--no-ledger`` (``no_ledger``), with the environment variable
    ``CHURNLENS_LEDGER`` set to ``off``, ``0``, ``false`` or ``no`` (any case), or with
    ``monitoring.ledger: false`` in ``settings`` (when given).

    >>> ledger_enabled(True)
    False
    """
    if no_ledger:
        return False
    if os.environ.get(LEDGER_ENV, "").strip().lower() in OFF_VALUES:
        return False
    monitoring = getattr(settings, "monitoring", None)
    return bool(getattr(monitoring, "ledger", True))


def recorded_message(run_id: str, settings: Any) -> str:
    """The one line the commands print after recording: ``ledger: recorded run <id> in
    <experiment> at <tracking URI>`` (credentials masked)."""
    return (f"ledger: recorded run {run_id} in {_experiment_name(settings)} at "
            f"{redact_uri_credentials(_tracking_uri(settings))}")


def _experiment_name(settings: Any) -> str:
    return str(getattr(getattr(settings, "monitoring", None), "experiment", None)
               or DEFAULT_EXPERIMENT)


def _tracking_uri(settings: Any) -> str:
    return str(getattr(getattr(settings, "mlflow", None), "tracking_uri", None)
               or "sqlite:///mlflow.db")


# --- recording --------------------------------------------------------------------------


def record_scoring(result: Any, artifact: Any, settings: Any, *, source: str) -> str:
    """Record a scoring in the ledger; return the run id of its entry.

    Parameters
    ----------
    result
        The :class:`~churnlens._scoring.ScoreResult` (``scores``, ``summary``,
        ``feature_profile``).
    artifact
        The model that scored (:class:`~churnlens._artifact.ModelArtifact`).
    settings
        A :class:`~churnlens.Settings`: ``mlflow.tracking_uri`` (the store) and
        ``monitoring.experiment``.
    source
        What scored: ``"score"``, ``"score --engine spark"``, ``"serve"``.

    Returns
    -------
    str
        The MLflow run id of the complete entry.

    Raises
    ------
    ChurnlensError
        The entry could not be recorded (the run, if one was created, ends ``FAILED``
        and is never read as an entry).
    """
    try:  # a failure before the run exists is a clean error too (the scores stay written)
        document, risks, metrics = _scoring_document(result, artifact, source)
    except ChurnlensError:
        raise
    except Exception as exc:
        raise ChurnlensError(
            f"the ledger entry was not recorded: the scoring could not be summarised for it "
            f"({type(exc).__name__}: {exc}). Suggestion: --no-ledger, and report it."
        ) from exc
    as_of, horizon = document["as_of"], document["horizon_days"]
    return _record(document, settings, tables={RISKS_FILE: risks}, metrics=metrics,
                   run_name=f"{source.split()[0]} {as_of.isoformat()} h{horizon}")


def _scoring_document(result: Any, artifact: Any, source: str
                      ) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Any]]:
    """A scoring's entry document, its risks table and its headline metrics."""
    scores = result.scores
    # the scoring's summary, without what the command adds about its own run
    summary = {k: v for k, v in result.summary.items() if k not in ("output", "ledger_run_id")}
    as_of = dt.date.fromisoformat(str(summary["as_of"]))
    horizon = int(artifact.horizon_days)
    level_error = getattr(artifact.model, "level_error_", None)
    summary["by_band"] = _retention_by(scores, "risk_band", list(BANDS), horizon, level_error)
    summary["by_segment"] = _retention_by(scores, "segment",
                                          [rule.segment for rule in SEGMENT_RULES],
                                          horizon, level_error)
    # scored out of core (_out_of_core.StreamedScores): the risks table is a file already
    streamed = getattr(result, "risks", None)
    risks = _risks_frame(scores) if streamed is None else streamed
    model = dict(summary.get("model") or _model_card(artifact))
    document = {
        "kind": "scoring", "source": source, "as_of": as_of, "horizon_days": horizon,
        "model": model, "customers": len(scores), "summary": summary,
        "model_backtest": model_backtest(artifact),
        "reference_risk": getattr(artifact.model, "training_risk_", None),
        "feature_profile": _with_importance(getattr(result, "feature_profile", None),
                                            getattr(artifact.model, "importance_", None)),
        "campaign": None,
    }
    predicted = summary.get("predicted") or {}
    metrics = {name: predicted.get(name) for name in (
        "cohort_retention", "cohort_retention_low", "cohort_retention_high",
        "crr", "crr_low", "crr_high")}
    metrics["mean_churn_risk"] = summary.get("mean_churn_risk")
    metrics["active_customers"] = predicted.get("S")
    metrics["customers"] = len(scores)
    return document, risks, metrics


def record_list(
    frame: pd.DataFrame,
    *,
    list_id: str,
    control_fraction: float,
    seed: int | None,
    scores_entry: LedgerEntry | None,
    settings: Any,
    source: str = "at-risk",
    as_of: dt.date | None = None,
    horizon_days: int | None = None,
    model: Mapping[str, Any] | None = None,
) -> str:
    """Record a campaign list (with its control group) in the ledger; return the run id.

    Parameters
    ----------
    frame
        The list: ``customer_id`` and ``group`` (``treatment`` / ``control``), and
        ``risk_band`` (counts by band are kept), ``churn_risk`` and ``as_of`` when it
        has them.
    list_id
        The list's identifier (what ``churnlens campaign`` names it by).
    control_fraction, seed
        The share of each risk band held out as control, and the seed of the draw.
    scores_entry
        The ledger entry of the scoring the list was drawn from, if known: its as-of
        date, horizon and model are the list's (and its run id is kept as
        ``campaign["scores_run_id"]``).
    settings
        A :class:`~churnlens.Settings` (store and experiment).
    source
        What made the list.
    as_of, horizon_days, model
        The list's as-of date, horizon and model when there is no ``scores_entry``
        (default as-of: the latest of the frame's ``as_of`` column).

    Returns
    -------
    str
        The MLflow run id of the complete entry.

    Raises
    ------
    ChurnlensError
        The list lacks ``customer_id`` or ``group``, its as-of date or horizon is
        unknown, or the entry could not be recorded.
    """
    missing = [c for c in ("customer_id", "group") if c not in frame.columns]
    if missing:
        raise ChurnlensError(f"the campaign list lacks the columns {missing}; nothing was "
                             "recorded in the ledger. Suggestion: draw the list with "
                             "--control-fraction.")
    if scores_entry is not None:
        as_of = as_of or scores_entry.as_of
        horizon_days = horizon_days or scores_entry.horizon_days
        model = model or scores_entry.model
    if as_of is None and "as_of" in frame.columns and len(frame):
        latest = pd.to_datetime(frame["as_of"], errors="coerce").max()
        as_of = None if pd.isna(latest) else latest.date()  # empty or unreadable cells
    if as_of is None or horizon_days is None:
        raise ChurnlensError("the campaign list's as-of date or horizon is unknown; nothing "
                             "was recorded in the ledger. Suggestion: pass the scores "
                             "written by churnlens score, or --no-ledger.")
    groups = frame["group"].astype(str)
    counts = {name: int((groups == name).sum()) for name in ("treatment", "control")}
    by_band: dict[str, dict[str, int]] = {}
    if "risk_band" in frame.columns:
        bands = frame["risk_band"].astype(str)
        by_band = {band: {name: int(((bands == band) & (groups == name)).sum())
                          for name in ("treatment", "control")}
                   for band in BANDS}
    members = pd.DataFrame({"customer_id": frame["customer_id"].astype(str).to_numpy(),
                            "group": groups.to_numpy()})
    for column in ("risk_band", "churn_risk"):
        if column in frame.columns:
            members[column] = frame[column].to_numpy()
    campaign = {"list_id": str(list_id), "size": len(frame),
                "control_fraction": float(control_fraction), "seed": seed,
                "groups": counts, "by_band": by_band,
                "scores_run_id": scores_entry.run_id if scores_entry is not None else None}
    document = {
        "kind": "campaign-list", "source": source, "as_of": as_of,
        "horizon_days": int(horizon_days), "model": dict(model or {}),
        "customers": len(frame), "summary": {}, "model_backtest": {},
        "reference_risk": None, "feature_profile": None, "campaign": campaign,
    }
    metrics = {"size": len(frame), "control_fraction": float(control_fraction),
               "treatment": counts["treatment"], "control": counts["control"]}
    return _record(document, settings, tables={MEMBERS_FILE: members}, metrics=metrics,
                   run_name=f"list {list_id} {as_of.isoformat()} h{int(horizon_days)}",
                   extra_tags={TAG_PREFIX + "list_id": str(list_id)})


def model_backtest(artifact: Any) -> dict[str, Any]:
    """The model's own backtest AUC and Brier at its latest backtest date.

    From ``artifact.backtest`` (``BacktestResult.to_dict()``: ``runs``, each with
    ``as_of`` and ``models.churnlens``); ``None`` values when there is none.
    """
    out: dict[str, Any] = {"as_of": None, "auc": None, "brier": None}
    runs = [run for run in ((getattr(artifact, "backtest", None) or {}).get("runs") or [])
            if (run.get("models") or {}).get("churnlens")]
    if not runs:
        return out
    latest = max(runs, key=lambda run: str(run.get("as_of")))
    metrics = latest["models"]["churnlens"]
    return json_ready({"as_of": latest.get("as_of"), "auc": metrics.get("auc"),
                       "brier": metrics.get("brier")})


def _retention_by(scores: pd.DataFrame, column: str, names: list[str], horizon: int,
                  level_error: Any) -> dict[str, Any]:
    """Predicted retention of each group of customers (each risk band or segment)."""
    risk = scores["churn_risk"].to_numpy(dtype=np.float64)
    recency = scores["recency_days"].to_numpy(dtype=np.float64)
    labels = scores[column].astype(str).to_numpy()
    return {name: predict_retention(recency[labels == name], risk[labels == name],
                                    window_days=horizon, level_error=level_error).to_dict()
            for name in names}


def _risks_frame(scores: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": scores["customer_id"].astype(str).to_numpy(dtype=object),
        "churn_risk": scores["churn_risk"].to_numpy(dtype=np.float64),
        "risk_band": scores["risk_band"].astype(str).to_numpy(dtype=object),
        "segment": scores["segment"].astype(str).to_numpy(dtype=object),
        "recency_days": scores["recency_days"].to_numpy(dtype=np.int64),
    })


def _model_card(artifact: Any) -> dict[str, Any]:
    return {"name": artifact.name, "version": artifact.version, "alias": artifact.alias,
            "run_id": artifact.run_id, "as_of": str(artifact.as_of),
            "horizon_days": artifact.horizon_days}


def _with_importance(profile: Mapping[str, Any] | None, importance: Mapping[str, Any] | None
                     ) -> dict[str, Any] | None:
    if profile is None:
        return None
    shares = importance or {}
    return {name: {**dict(values), "importance": shares.get(name)}
            for name, values in profile.items()}


def _record(document: dict[str, Any], settings: Any, *, tables: Mapping[str, pd.DataFrame],
            metrics: Mapping[str, Any], run_name: str,
            extra_tags: Mapping[str, str] | None = None) -> str:
    """One entry: a run created, filled, ended ``FINISHED``, then tagged complete."""
    uri = _tracking_uri(settings)
    experiment = _experiment_name(settings)
    where = f"the experiment {experiment!r} at {redact_uri_credentials(uri)}"
    recorded_at = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
    model = document.get("model") or {}
    tags = {
        KIND_TAG: document["kind"], TAG_PREFIX + "source": document["source"],
        TAG_PREFIX + "as_of": str(document["as_of"]),
        TAG_PREFIX + "horizon_days": str(document["horizon_days"]),
        TAG_PREFIX + "customers": str(document["customers"]),
        TAG_PREFIX + "recorded_at": recorded_at,
        **{f"{TAG_PREFIX}model_{key}": str(model[key])
           for key in ("name", "version", "alias", "run_id") if model.get(key) is not None},
        **dict(extra_tags or {}),
        "mlflow.note.content": (
            f"churnlens prediction ledger: a {document['kind']} recorded by "
            f"{document['source']} at {document['as_of']} for a "
            f"{document['horizon_days']}-day horizon. Read with churnlens monitor; an "
            f"entry counts only once the tag {COMPLETE_TAG}=true is set."),
    }
    params = {"kind": document["kind"], "source": document["source"],
              "as_of": str(document["as_of"]), "horizon_days": str(document["horizon_days"]),
              "customers": str(document["customers"]),
              **{f"model_{key}": str(model[key]) for key in ("name", "version", "alias",
                                                            "run_id")
                 if model.get(key) is not None}}
    run_id: str | None = None
    client: Any = None
    try:
        from mlflow.entities import Metric, Param

        with _store_lock(uri):
            client = _retry(lambda: _client(uri))
            experiment_id = _retry(lambda: _get_or_create_experiment(client, uri, experiment))
            run = _retry(lambda: client.create_run(experiment_id, run_name=run_name, tags=tags))
            run_id = str(run.info.run_id)
            now = int(time.time() * 1000)
            _retry(lambda: client.log_batch(
                run_id, metrics=[Metric(k, v, now, 0) for k, v in _finite(metrics).items()],
                params=[Param(k, v[:6000]) for k, v in params.items()]))
            entry = LedgerEntry(run_id=run_id, recorded_at=recorded_at, **document)
            with tempfile.TemporaryDirectory(prefix="churnlens-ledger-") as tmp:
                folder = Path(tmp) / "ledger"
                folder.mkdir()
                (folder / Path(ENTRY_FILE).name).write_text(
                    json.dumps(entry.to_dict(), allow_nan=False, sort_keys=True),
                    encoding="utf-8")
                for name, table in tables.items():
                    table.to_parquet(folder / Path(name).name, index=False)
                _retry(lambda: client.log_artifacts(run_id, str(folder), "ledger"))
            _retry(lambda: client.set_terminated(run_id, "FINISHED"))
            # the last write: until it lands, the run is not an entry
            _retry(lambda: client.set_tag(run_id, COMPLETE_TAG, "true"))
    except BaseException as exc:
        if run_id is not None and client is not None:
            with contextlib.suppress(Exception):
                client.set_terminated(run_id, "FAILED")
        if not isinstance(exc, Exception):
            raise  # Ctrl-C, SystemExit: not a ledger failure
        reason = redact_uri_credentials(f"{type(exc).__name__}: {exc}".strip())
        raise ChurnlensError(
            f"the ledger entry was not recorded in {where} ({reason})"
            + (f"; its run {run_id} ended FAILED and is not read as an entry" if run_id
               else "")
            + ". Suggestion: check that the tracking store is reachable and writable "
            "(--tracking-uri), or pass --no-ledger (CHURNLENS_LEDGER=off) to score without "
            "recording.") from exc
    return run_id


def _finite(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {name: float(value) for name, value in metrics.items()
            if isinstance(value, int | float | np.number) and not isinstance(value, bool)
            and np.isfinite(value)}


# --- the store: concurrency ---------------------------------------------------------------


def _client(uri: str) -> Any:
    """A client whose store is open (its schema created or migrated: a race on sqlite)."""
    import mlflow

    # the constructor opens the store (MLflow: "to ensure that the tracking URI is valid")
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def _get_or_create_experiment(client: Any, uri: str, name: str) -> str:
    """The experiment's id, created if missing (artifacts beside a sqlite database, as
    :mod:`churnlens._tracking` does); someone else creating it first is not an error."""
    from mlflow.exceptions import MlflowException

    existing = client.get_experiment_by_name(name)
    if existing is not None:
        if existing.lifecycle_stage != "active":
            raise ChurnlensError(f"the ledger's experiment {name!r} is deleted. Suggestion: "
                                 "restore it (mlflow experiments restore) or set "
                                 "monitoring.experiment to another name.")
        return str(existing.experiment_id)
    database = sqlite_path(uri)
    location = (database.parent / "mlruns").as_uri() if database is not None else None
    try:
        return str(client.create_experiment(name, artifact_location=location))
    except MlflowException:
        existing = client.get_experiment_by_name(name)  # created by a concurrent writer
        if existing is None:
            raise
        return str(existing.experiment_id)


def _is_transient(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}".lower()
    return any(marker in text for marker in TRANSIENT)


def _retry(call: Callable[[], T], *, attempts: int = RETRY_ATTEMPTS) -> T:
    """``call()``, retried with a doubling pause (capped) while it fails the way a
    concurrent writer makes it fail; any other error, or the last one, is raised."""
    pause = RETRY_FIRST_PAUSE
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except ChurnlensError:
            raise
        except Exception as exc:
            if attempt == attempts or not _is_transient(exc):
                raise
        # a small per-process offset, so that two writers do not retry in lock step
        time.sleep(pause + (os.getpid() % 10) * 0.01)
        pause = min(pause * 2, RETRY_MAX_PAUSE)
    raise AssertionError("unreachable")  # pragma: no cover


@contextlib.contextmanager
def _store_lock(uri: str, *, wait_seconds: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
    """On a local sqlite store, the recordings of this machine take turns: an exclusive
    advisory lock on ``<database>.ledger-lock``. Other stores: no lock (the server and
    the retries handle concurrent writers)."""
    database = sqlite_path(uri)
    if database is None:
        yield
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: the retries alone
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(database.with_name(database.name + ".ledger-lock"),
                 os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise ChurnlensError(
                        f"another process has been recording into {database} for more "
                        f"than {wait_seconds:.0f} s. Suggestion: wait for it, or pass "
                        "--no-ledger.") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


# --- reading ------------------------------------------------------------------------------


def read_ledger(tracking_uri: str, *, experiment: str = DEFAULT_EXPERIMENT,
                kind: str | None = None) -> list[LedgerEntry]:
    """The complete entries of the ledger, oldest first.

    Parameters
    ----------
    tracking_uri
        The MLflow tracking store (``settings.mlflow.tracking_uri``).
    experiment
        The ledger's experiment (``settings.monitoring.experiment``).
    kind
        ``"scoring"``, ``"campaign-list"`` or None (both).

    Returns
    -------
    list of LedgerEntry
        Runs that ended ``FINISHED`` with the tag ``churnlens.ledger.complete=true``,
        by recording time (a failed or interrupted recording is left out). Empty when
        the store or the experiment does not exist (a sqlite file is not created).

    Raises
    ------
    ChurnlensError
        An unknown ``kind``, or a store that cannot be read.
    """
    if kind is not None and kind not in KINDS:
        raise ChurnlensError(f"unknown ledger entry kind {kind!r}. Suggestion: one of "
                             f"{', '.join(KINDS)}, or None for both.")
    database = sqlite_path(tracking_uri)
    if database is not None and not database.is_file():
        return []
    try:
        from mlflow.entities import ViewType

        client = _retry(lambda: _client(tracking_uri))
        found = _retry(lambda: client.get_experiment_by_name(experiment))
        if found is None:
            return []
        query = f"tags.`{COMPLETE_TAG}` = 'true' AND attributes.status = 'FINISHED'"
        if kind is not None:
            query += f" AND tags.`{KIND_TAG}` = '{kind}'"
        runs: list[Any] = []
        token = None
        while True:
            page = _retry(functools.partial(
                client.search_runs, [found.experiment_id], filter_string=query,
                run_view_type=ViewType.ACTIVE_ONLY, max_results=1000,
                order_by=["attributes.start_time ASC"], page_token=token))
            runs.extend(page)
            token = page.token
            if not token:
                break
        entries = [entry for entry in (_entry(client, tracking_uri, run.info.run_id)
                                       for run in runs) if entry is not None]
    except ChurnlensError:
        raise
    except Exception as exc:
        raise ChurnlensError(
            f"cannot read the ledger (experiment {experiment!r}) at "
            f"{redact_uri_credentials(tracking_uri)}: "
            f"{redact_uri_credentials(f'{type(exc).__name__}: {exc}')}. Suggestion: check "
            "--tracking-uri.") from exc
    # by recording time; ties keep the runs' start order (a stable sort)
    return sorted(entries, key=lambda e: e.recorded_at)


def _entry(client: Any, uri: str, run_id: str) -> LedgerEntry | None:
    """The entry of a complete run, or None (with a warning) when its document cannot be
    read as an entry (written by another version, edited by hand): one bad entry must
    not make every later read of the ledger fail."""
    with tempfile.TemporaryDirectory(prefix="churnlens-ledger-") as tmp:
        path = _retry(lambda: client.download_artifacts(run_id, ENTRY_FILE, tmp))
        text = Path(path).read_text(encoding="utf-8")
    try:
        return LedgerEntry.from_dict(json.loads(text), tracking_uri=uri)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        warnings.warn(f"ledger entry {run_id} skipped: its {ENTRY_FILE} is not a churnlens "
                      f"ledger entry ({type(exc).__name__}: {exc})", stacklevel=3)
        return None


def _read_table(uri: str, run_id: str, name: str) -> pd.DataFrame:
    try:
        client = _retry(lambda: _client(uri))
        with tempfile.TemporaryDirectory(prefix="churnlens-ledger-") as tmp:
            path = _retry(lambda: client.download_artifacts(run_id, name, tmp))
            frame = pd.read_parquet(path)
    except Exception as exc:
        raise ChurnlensError(
            f"cannot read {name} of ledger entry {run_id} at {redact_uri_credentials(uri)}: "
            f"{redact_uri_credentials(f'{type(exc).__name__}: {exc}')}. Suggestion: check "
            "that the artifact store of the tracking URI is reachable.") from exc
    frame["customer_id"] = frame["customer_id"].astype(str)
    return frame
