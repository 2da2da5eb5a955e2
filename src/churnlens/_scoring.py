"""Scoring: one entry point per use, each walking the same steps once.

- a frame of clean transactions -> scores: :func:`score_customers`;
- a transactions file -> scores (``churnlens score``): :func:`score_file`;
- requests of customer histories -> scores in request order, unscored customers named
  (``POST /score``): :func:`score_requests`;
- a Spark DataFrame -> scores: :func:`churnlens._spark_scoring.score_spark`.

Each entry point parses the as-of date once (:func:`check_as_of`) and keeps history
``<= as_of`` once (the loader does it for a file); then features at the as-of date
(sorted by customer id), the row-wise scores of :func:`score_batch` chunk by chunk
(churn risk, the marketing rules of :mod:`churnlens._rules`, the reasons of
:mod:`churnlens._reasons`), the RFM segments over the whole base, and the summary
(predicted retention paired with the last actual rates of the horizon before).

- **churn risk**: the model's ``predict_proba``. With reasons it comes from the same
  pass as the contributions (:meth:`churnlens.ChurnModel.explain`), and is the same
  number, bit for bit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churnlens._artifact import ModelArtifact
from churnlens._config import ScoringSettings
from churnlens._evaluation import SAMPLING_ONLY, predict_retention
from churnlens._io import json_ready
from churnlens._loading import history_until, load_transactions
from churnlens._reasons import REASON_COLUMNS, reason_texts
from churnlens._retention import RetentionRates
from churnlens._rules import (
    BANDS,
    SEGMENT_RULES,
    heuristic_expected_value,
    rfm_segment,
    risk_band,
    value_at_risk,
)
from churnlens._validation import parse_date
from churnlens._value import VALUE_COLUMNS, predict_value, value_model_of
from churnlens.exceptions import ModelError

if TYPE_CHECKING:
    from churnlens._input_features import InputSpec, InputTables

__all__ = [
    "RequestScores",
    "ScoreResult",
    "ScoredCustomer",
    "UnscoredCustomer",
    "attribute_column_names",
    "attribute_columns",
    "attribute_table",
    "attributes_summary",
    "check_as_of",
    "check_inputs",
    "input_spec_of",
    "require_inputs",
    "score_batch",
    "score_customers",
    "score_file",
    "score_requests",
]

Progress = Callable[[str], None]
BASE_COLUMNS = [
    "customer_id", "as_of", "churn_risk", "risk_band", "expected_value", "value_at_risk",
    *VALUE_COLUMNS, "recency_days", "frequency", "monetary_total", "segment",
]
# Said once per process when a model has no value model (trained before issue 20).
NO_VALUE_MODEL = ("value model not recorded: retrain (the value columns are empty and "
                  "expected_value is the heuristic of churnlens._rules.heuristic_expected_value)")
SCORE_COLUMNS = [*BASE_COLUMNS, *REASON_COLUMNS]
# Rows scored at a time: bounds the memory of the model's intermediate matrices.
CHUNK_ROWS = 200_000
_Z95 = 1.959963984540054
UNSCORED_REASON = "no purchase occasion (positive net amount) on or before {as_of}"


def check_as_of(artifact: ModelArtifact, as_of: str | dt.date, *, allow_past: bool
                ) -> dt.date:
    """The scoring date, parsed once, refused if before the model's training as-of
    (unless allowed)."""
    day = as_of if type(as_of) is dt.date else parse_date(as_of, name="as_of").date()
    if day < artifact.as_of and not allow_past:
        raise ModelError(
            f"the as-of date {day} is before the model's training as-of "
            f"{artifact.as_of}: the model has seen that period. Suggestion: pass --allow-past "
            "for a deliberate backfill."
        )
    return day


# --- the richer inputs (issue 21) -----------------------------------------------------

# What each input table is called in a message: the CLI flag and the Python argument.
_TABLE_FLAGS = {"customers": ("a customer table", "--customers-file", "customers="),
                "events": ("an event table", "--events-file", "events=")}
# The clean optional transaction columns, with the setting and flag that map each.
_DETAIL_FLAGS = {"order_id": "--order-col", "quantity": "--quantity-col",
                 "category": "--category-col", "channel": "--channel-col",
                 "discount": "--discount-col"}
# Columns the at-risk list adds to the scores (an attribute is never named after them).
_LIST_COLUMNS = ("expected_profit", "group", "list_id")


def _spec(artifact: ModelArtifact) -> InputSpec:
    """The inputs the model was trained with (``NO_INPUTS`` for a model from before)."""
    from churnlens._input_features import NO_INPUTS, spec_of

    spec = spec_of(artifact)
    return spec if spec != NO_INPUTS else spec_of(getattr(artifact, "model", None))


def check_inputs(artifact: ModelArtifact, inputs: InputTables | None, *,
                 detail_columns: Sequence[str] | None = None) -> InputTables | None:
    """The input tables a model scores with, checked before any work.

    A model trained with a customer table (or an event table) refuses to score without
    one; a table the model was not trained with is ignored, with a warning (the scores
    are then exactly those without it). ``detail_columns``: the clean optional
    transaction columns the scoring will load (``None``: not known before loading; the
    feature step checks them).

    Returns
    -------
    InputTables or None
        ``inputs`` without the tables the model does not use (``None`` when it uses none).

    Raises
    ------
    InputsRequiredError
        The model needs a table (or an optional transaction column) that is not given;
        the message says what the model was trained with and which flag or argument to
        pass.
    """
    import warnings

    from churnlens._input_features import InputTables

    given: dict[str, Any] = {"customers": None if inputs is None else inputs.customers,
                             "events": None if inputs is None else inputs.events}
    for note in require_inputs(artifact, customers=given["customers"] is not None,
                               events=given["events"] is not None,
                               detail_columns=detail_columns):
        warnings.warn(note, UserWarning, stacklevel=3)
    spec = _spec(artifact)
    if not spec.requires_customers:
        given["customers"] = None
    if not spec.requires_events:
        given["events"] = None
    if given["customers"] is None and given["events"] is None:
        return None
    return InputTables(customers=given["customers"], events=given["events"])


def require_inputs(artifact: ModelArtifact, *, customers: bool, events: bool,
                   detail_columns: Sequence[str] | None = None) -> list[str]:
    """Refuse, before any work, a scoring without a table the model was trained with.

    ``customers`` / ``events``: whether that table is given; ``detail_columns``: the
    clean optional transaction columns the scoring will load (``None``: not known).

    Returns
    -------
    list of str
        One warning per table given that the model was not trained with (ignored).

    Raises
    ------
    InputsRequiredError
        A table (or an optional transaction column) the model was trained with is not
        given; the message says what the model was trained with and what to pass.
    """
    from churnlens._input_features import InputsRequiredError, InputTables, _require_inputs

    spec = _spec(artifact)
    # one refusal message for every path (the feature step's own check): a table given
    # stands for itself here (only whether it is given matters)
    given = pd.DataFrame()
    _require_inputs(spec, InputTables(customers=given if customers else None,
                                      events=given if events else None))
    notes = []
    for table, needed, present in (("customers", spec.requires_customers, customers),
                                   ("events", spec.requires_events, events)):
        what, flag, argument = _TABLE_FLAGS[table]
        if present and not needed:
            notes.append(f"the model was not trained with {what}: {flag} ({argument}) is "
                         "ignored; the scores are those without it")
    wanted = list(spec.detail_columns) if "details" in spec.groups else []
    if detail_columns is not None and wanted:
        missing = [c for c in wanted if c not in detail_columns]
        if missing:
            flags = ", ".join(_DETAIL_FLAGS[c] for c in missing)
            which = ("none of them is mapped" if len(missing) == len(wanted) else
                     f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not "
                     "mapped")
            raise InputsRequiredError(
                f"the model was trained with the transactions' optional columns "
                f"{', '.join(wanted)}, and {which} for scoring. "
                f"Suggestion: pass {flags} naming the column in the transactions file "
                "(or the config's data section).")
    return notes


def input_spec_of(artifact: ModelArtifact) -> InputSpec:
    """The :class:`~churnlens._input_features.InputSpec` a model was trained with
    (``NO_INPUTS`` for a model trained before richer inputs, or without them)."""
    return _spec(artifact)


def attribute_column_names(spec: InputSpec) -> list[tuple[str, str]]:
    """``(attribute, its column in the scores)`` for each attribute the model was trained
    with, in the spec's order: the attribute's own name, or ``customer_<name>`` when that
    name is a score column (or a column the at-risk list adds). The columns are unique:
    when ``customer_<name>`` is taken too (a score column, or another attribute's own
    name: attributes ``segment`` and ``customer_segment``), ``customer_<name>_2``,
    ``_3``, ... (the first free one)."""
    if "attributes" not in spec.groups:
        return []
    reserved = {*SCORE_COLUMNS, *_LIST_COLUMNS}
    names = [name for name, _categories in spec.attributes]
    taken = reserved | {name for name in names if name not in reserved}
    out = []
    for name in names:
        column = name
        if name in reserved:
            column, n = f"customer_{name}", 1
            while column in taken:
                n += 1
                column = f"customer_{name}_{n}"
            taken.add(column)
        out.append((name, column))
    return out


def attribute_table(spec: InputSpec, inputs: InputTables | None, as_of: dt.date
                    ) -> pd.DataFrame | None:
    """The customer table's rows valid at ``as_of``, indexed by customer id
    (:func:`churnlens._inputs.attributes_at`); ``None`` without attributes."""
    from churnlens._inputs import attributes_at

    if not attribute_column_names(spec) or inputs is None or inputs.customers is None:
        return None
    return attributes_at(inputs.customers, as_of).set_index("customer_id")


def attribute_columns(spec: InputSpec, inputs: InputTables | None, customer_ids: Any,
                      as_of: dt.date, *, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """The customers' raw attribute values at ``as_of`` (the row valid on that day,
    :func:`churnlens._inputs.attributes_at`), one column per
    :func:`attribute_column_names`, rows in the order of ``customer_ids`` (missing where a
    customer has no row valid then). A category unseen in training keeps its text here
    (the model read it as missing). No column for a model trained without attributes.
    ``table``: :func:`attribute_table` computed once for many calls."""
    ids = pd.Index(customer_ids)
    if table is None:
        table = attribute_table(spec, inputs, as_of)
    if table is None:
        return pd.DataFrame(index=range(len(ids)))
    out = {}
    for name, column in attribute_column_names(spec):
        values = (table[name] if name in table.columns
                  else pd.Series(np.nan, index=table.index, dtype=object))
        out[column] = values.reindex(ids).to_numpy()
    return pd.DataFrame(out)


def _with_inputs(features: pd.DataFrame, artifact: ModelArtifact,
                 inputs: InputTables | None, transactions: Any,
                 warnings_out: list[str]) -> pd.DataFrame:
    """``features`` with the model's input features (``_input_features``); unchanged for
    a model trained without richer inputs. Unseen categories are said in
    ``warnings_out``."""
    from churnlens._input_features import InputTables, with_input_features

    spec = _spec(artifact)
    if not spec.groups:
        return features
    joined = with_input_features(features, spec, inputs or InputTables(), transactions,
                                 date_column="as_of")
    warnings_out.extend(unseen_warnings(joined.attrs.get("unseen_categories")))
    return joined


def unseen_warnings(unseen: Any) -> list[str]:
    """The warnings of the categories unseen in training (``attrs['unseen_categories']``
    of :func:`churnlens._input_features.with_input_features`): one per attribute."""
    if not unseen:
        return []
    if not isinstance(unseen, Mapping):
        return [f"{int(unseen):,} attribute values unseen in training were scored as "
                "missing"]
    return [f"attribute {str(name).removeprefix('attr_')}: {_count(value):,} customers "
            "with a value unseen in training (a new category, or text in a numeric "
            f"attribute), scored as missing (column {name})"
            for name, value in unseen.items() if _count(value)]


def _count(value: Any) -> int:
    """A count from ``unseen_categories`` (a number, or a mapping/list of values)."""
    if isinstance(value, Mapping):
        return int(sum(int(v) for v in value.values()))
    if isinstance(value, (list, tuple, set)):
        return len(value)
    return int(value)


def attributes_summary(spec: InputSpec) -> list[dict[str, Any]]:
    """The attribute columns of the scores, as the scores' metadata records them (what
    ``at-risk --attribute`` filters on): ``name``, ``column``
    (:func:`attribute_column_names`) and ``categorical`` per attribute; empty for a
    model trained without a customer table."""
    kinds = dict(spec.attributes)
    return [{"name": name, "column": column, "categorical": kinds[name] is not None}
            for name, column in attribute_column_names(spec)]


def inputs_summary(spec: InputSpec, inputs: InputTables | None,
                   warnings_out: Sequence[str], unseen: Any = None) -> dict[str, Any]:
    """The ``inputs`` block of a scoring summary (only for a model trained with richer
    inputs): the groups, the tables used, the unseen categories and the attribute
    columns (:func:`attributes_summary`)."""
    return json_ready({
        "groups": list(spec.groups),
        "attributes": attributes_summary(spec),
        "customers_table": inputs is not None and inputs.customers is not None,
        "events_table": inputs is not None and inputs.events is not None,
        "unseen_categories": dict(unseen) if isinstance(unseen, Mapping) else (unseen or {}),
        "warnings": list(warnings_out),
    })


# --- the entry points -----------------------------------------------------------------


@dataclasses.dataclass
class ScoreResult:
    """Scores (one row per customer, by customer id) and a summary for humans and tools.

    Attributes
    ----------
    scores
        One row per customer: ``customer_id``, ``as_of``, ``churn_risk``, ``risk_band``,
        ``expected_value``, ``value_at_risk``, the value outputs (``p_alive``,
        ``expected_purchases``, ``days_to_next_purchase``, ``expected_spend``, ``clv``),
        RFM columns, ``segment`` and reasons.
    summary
        Customers scored, risk distribution, predicted vs last actual retention, model
        name, version and alias (what ``--json-summary`` prints).
    features
        The features the scores were computed from (``None`` when not kept).
    feature_profile
        Each model feature's distribution in this scoring against the training
        snapshots (:func:`churnlens._drift.profile_against`: shares in the reference
        bins, quantiles, ``psi``); ``None`` when the model has no reference profile
        (trained before the ledger: retrain).
    """

    scores: pd.DataFrame
    summary: dict[str, Any]
    features: pd.DataFrame | None
    feature_profile: dict[str, Any] | None = None


def score_customers(
    transactions: pd.DataFrame,
    as_of: str | dt.date,
    artifact: ModelArtifact,
    *,
    settings: ScoringSettings | None = None,
    allow_past: bool = False,
    reasons: bool = True,
    progress: Progress | None = None,
    chunk_rows: int = CHUNK_ROWS,
    inputs: InputTables | None = None,
) -> ScoreResult:
    """Score every customer acquired by ``as_of`` from history ``<= as_of`` only.

    Parameters
    ----------
    transactions
        Clean transactions (``load_transactions``); rows after ``as_of`` are ignored.
    as_of
        Scoring date.
    artifact
        The model (:func:`churnlens._model_loader.load_model`).
    settings
        Risk band thresholds.
    allow_past
        Allow an as-of date before the model's training as-of (backfills).
    reasons
        Add the three main reasons of each score.
    progress
        Called with a short message at each step and after each chunk.
    chunk_rows
        Customers scored at a time (bounds memory).
    inputs
        The customer and event tables (:class:`churnlens._input_features.InputTables`)
        for a model trained with them (docs/scoring.md): only what is dated on or before
        ``as_of`` is used. A model trained with a table refuses to score without it
        (before any work); a table the model was not trained with is ignored, with a
        warning. ``None``: no table.

    Returns
    -------
    ScoreResult
        ``scores`` has the columns ``customer_id, as_of, churn_risk, risk_band,
        expected_value, value_at_risk, p_alive, expected_purchases,
        days_to_next_purchase, expected_spend, clv, recency_days, frequency,
        monetary_total, segment`` and, with reasons, ``reason_1 .. reason_3``; one row per customer,
        sorted by customer id. A model trained with a customer table adds each
        attribute's value at ``as_of`` (:func:`attribute_column_names`).
    """
    day = check_as_of(artifact, as_of, allow_past=allow_past)
    used = check_inputs(artifact, inputs, detail_columns=[
        c for c in _DETAIL_FLAGS if c in transactions.columns])
    return _score_history(lambda: history_until(transactions, day), day, artifact,
                          settings=settings, reasons=reasons, progress=progress,
                          chunk_rows=chunk_rows, inputs=used)


def score_file(
    source: Any,
    as_of: str | dt.date,
    artifact: ModelArtifact,
    *,
    settings: Any = None,
    allow_past: bool = False,
    reasons: bool = True,
    progress: Progress | None = None,
    chunk_rows: int = CHUNK_ROWS,
    inputs: InputTables | None = None,
) -> ScoreResult:
    """Load, validate and score a transactions file (``churnlens score``).

    As :func:`score_customers`, with the columns and timestamp format of
    ``settings.data`` (a :class:`churnlens.Settings`); the loader drops the rows after
    ``as_of``, and refuses an ``as_of`` more than ``settings.data.max_staleness_days``
    (7 by default) after the data's last day (a feed that stopped:
    :func:`churnlens._validation.require_recent_data`, exit 2 on the CLI). The
    transactions are freed once the features and the last actual rates are computed, so
    the memory peak is the larger of loading and scoring, not their sum. The cleaning
    report is added to the summary (``cleaning``). ``inputs``: as for
    :func:`score_customers` (checked before the file is read).
    """
    from churnlens._config import Settings

    settings = settings or Settings()
    say = progress or (lambda _m: None)
    day = check_as_of(artifact, as_of, allow_past=allow_past)
    used = check_inputs(artifact, inputs, detail_columns=mapped_details(settings))
    reports: list[Any] = []

    def load() -> pd.DataFrame:
        say("loading and validating transactions")
        transactions, cleaning = load_transactions(
            source, **settings.data.loader_options(), as_of=day)
        reports.append(cleaning)
        return transactions

    result = _score_history(load, day, artifact, settings=settings.scoring, reasons=reasons,
                            progress=say, chunk_rows=chunk_rows, inputs=used)
    result.summary["cleaning"] = json_ready(reports[0].to_dict())
    return result


@dataclasses.dataclass(frozen=True, slots=True)
class ScoredCustomer:
    """The score of one customer of a request."""

    customer_id: Any
    churn_risk: float
    risk_band: str
    expected_value: float
    value_at_risk: float
    recency_days: int
    frequency: int
    reasons: list[str]  # up to three; empty without reasons
    # the value outputs (churnlens._value); None for a model without a value model, and
    # days_to_next_purchase None when the customer's chance of buying again is <= 1/2
    p_alive: float | None = None
    expected_purchases: float | None = None
    days_to_next_purchase: float | None = None
    expected_spend: float | None = None
    clv: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class UnscoredCustomer:
    """A customer of a request the model cannot score, and why."""

    customer_id: Any
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class RequestScores:
    """The scores of one request: both lists in request order."""

    results: list[ScoredCustomer]
    unscored: list[UnscoredCustomer]


def score_requests(
    purchases: pd.DataFrame,
    requests: Sequence[Sequence[Any]],
    as_of: dt.date,
    artifact: ModelArtifact,
    *,
    settings: ScoringSettings | None = None,
    reasons: bool = True,
    offset_center: float | None = None,
    features_fn: Callable[..., pd.DataFrame] | None = None,
    unscored: Mapping[int, str] | None = None,
) -> list[RequestScores]:
    """Score requests of customer histories together (the API's ``POST /score``).

    One features query and one model pass for all the requests given (a micro-batch),
    then each request gets its customers back in its own order.

    Parameters
    ----------
    purchases
        Clean purchases (the loader's rules: naive UTC ``timestamp``, ``amount``) with
        ``customer_key`` (int64): the customer's position over all the requests, in
        order (the first request's customers are ``0 .. n1 - 1``, the next request's
        follow). Keys, not ids: ids only need to be unique within a request.
    requests
        The customer ids of each request, in request order.
    as_of
        Scoring date (its whole day included); purchases after it are ignored.
    artifact
        The model.
    settings
        Risk band thresholds.
    reasons
        Add up to three reasons per customer; skip that work when they are not needed.
    offset_center
        The mean BG/NBD offset of a scored base (``ChurnModel.bgnbd_offset``): fixed,
        so that each customer's reasons do not depend on who else is in the batch.
    features_fn
        Computes the features, called like :func:`churnlens.compute_features` (the
        default). The API passes :class:`churnlens._online.FeatureQuery`, which runs
        the same SQL with its statement prepared once.
    unscored
        Customer keys already known to be unscorable, with the reason (e.g. an id the
        loader reads as missing); their purchases are not scored.

    Returns
    -------
    list of RequestScores
        One per request: ``results`` (scored customers) and ``unscored`` (customers
        with no purchase occasion on or before ``as_of``, or listed in ``unscored``),
        each in request order.
    """
    skipped = dict(unscored or {})
    frame = pd.DataFrame({"customer_id": purchases["customer_key"].to_numpy(),
                          "timestamp": purchases["timestamp"].to_numpy(),
                          "amount": purchases["amount"].to_numpy()})
    if skipped:
        frame = frame.loc[~frame["customer_id"].isin(list(skipped))]
    scores = _score_keyed(frame, as_of, artifact, settings=settings, reasons=reasons,
                          offset_center=offset_center, features_fn=features_fn)
    found = {int(k): r for r, k in enumerate(scores["customer_id"].tolist())}
    columns = {c: scores[c].tolist() for c in scores.columns}
    why = [columns[c] for c in REASON_COLUMNS if c in columns]
    missing = UNSCORED_REASON.format(as_of=as_of)
    out = []
    key = 0
    for ids in requests:
        results, unscorable = [], []
        for customer_id in ids:
            row = found.get(key)
            if row is None:
                unscorable.append(UnscoredCustomer(customer_id, skipped.get(key, missing)))
            else:
                results.append(ScoredCustomer(
                    customer_id=customer_id,
                    churn_risk=float(columns["churn_risk"][row]),
                    risk_band=str(columns["risk_band"][row]),
                    expected_value=float(columns["expected_value"][row]),
                    value_at_risk=float(columns["value_at_risk"][row]),
                    recency_days=int(columns["recency_days"][row]),
                    frequency=int(columns["frequency"][row]),
                    reasons=[r[row] for r in why if r[row]],
                    **{c: _number_or_none(columns[c][row]) for c in VALUE_COLUMNS}))
            key += 1
        out.append(RequestScores(results=results, unscored=unscorable))
    return out


def mapped_details(settings: Any) -> list[str]:
    """The clean optional transaction columns ``settings.data`` maps (``order_id`` for
    ``data.order_col``...), known before the file is read."""
    options = settings.data.loader_options()
    return [clean for clean, flag in _DETAIL_FLAGS.items()
            if options.get(flag[2:].replace("-", "_"))]


def _number_or_none(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


# --- the steps ------------------------------------------------------------------------


def value_columns(features: pd.DataFrame, artifact: ModelArtifact,
                  settings: ScoringSettings | None = None) -> dict[str, np.ndarray]:
    """``expected_value`` and the :data:`~churnlens._value.VALUE_COLUMNS` of a batch.

    From the model's value model (:func:`churnlens._value.predict_value` over the
    model's horizon, the CLV period and rate of ``settings.value``); a model without
    one (trained before issue 20) gets the heuristic ``expected_value`` and NaN value
    columns, with one warning.
    """
    import warnings

    model = value_model_of(artifact.model)
    if model is None:
        warnings.warn(NO_VALUE_MODEL, UserWarning, stacklevel=3)
        nan = np.full(len(features), np.nan)
        return {"expected_value": heuristic_expected_value(features, artifact.horizon_days),
                **{c: nan.copy() for c in VALUE_COLUMNS}}
    value = (settings or ScoringSettings()).value
    frame = predict_value(model, features, horizon_days=artifact.horizon_days,
                          clv_months=value.clv_months,
                          annual_discount_rate=value.annual_discount_rate)
    return {c: frame[c].to_numpy(dtype=np.float64) for c in ("expected_value", *VALUE_COLUMNS)}


def score_batch(
    features: pd.DataFrame,
    as_of: dt.date,
    artifact: ModelArtifact,
    *,
    settings: ScoringSettings | None = None,
    reasons: bool = True,
    offset_center: float | None = None,
) -> pd.DataFrame:
    """Every score column but ``segment`` (which needs the whole base) for a batch.

    Row-wise: a batch gives the same rows whatever else is in it (``offset_center``
    fixes the one base-wide quantity the reasons use). Both engines call this. With
    reasons, the risk and the reasons come from one :meth:`ChurnModel.explain` pass;
    without, from the model's ``predict_proba``: the same risk.
    """
    missing = [c for c in artifact.feature_names if c not in features.columns]
    if missing:
        artifact.churn_risk(features)  # raises the model's own clear error
    why = None
    if reasons:
        model = artifact.model
        if not callable(getattr(model, "explain", None)):
            raise ModelError(f"{type(model).__name__} cannot explain its scores. "
                             "Suggestion: score with --no-reasons.")
        explanation = model.explain(features, offset_center=offset_center)
        risk = explanation.churn_risk
        why = reason_texts(explanation, features, horizon_days=artifact.horizon_days)
    else:
        risk = artifact.churn_risk(features)
    values = value_columns(features, artifact, settings)
    value = values.pop("expected_value")
    columns = {
        "customer_id": features["customer_id"].to_numpy(),
        "as_of": np.full(len(features), as_of, dtype=object),
        "churn_risk": risk,
        "risk_band": risk_band(risk, settings).astype(object),
        "expected_value": value,
        "value_at_risk": value_at_risk(risk, value),
        **values,
        "recency_days": features["recency_days"].to_numpy(dtype=np.int64),
        "frequency": features["frequency"].to_numpy(dtype=np.int64),
        "monetary_total": features["monetary_total"].to_numpy(dtype=np.float64),
    }
    if why is not None:
        for j, column in enumerate(REASON_COLUMNS):
            columns[column] = why[:, j]
    return pd.DataFrame(columns)


def _score_history(
    load: Callable[[], pd.DataFrame],
    as_of: dt.date,
    artifact: ModelArtifact,
    *,
    settings: ScoringSettings | None,
    reasons: bool,
    progress: Progress | None,
    chunk_rows: int,
    inputs: InputTables | None = None,
) -> ScoreResult:
    """Score the history ``load()`` returns (clean, ``<= as_of``): features, scores by
    chunk, segments and summary. Called with a loader so that this frame holds the only
    reference to the transactions, freed once no step needs them. ``inputs``: the tables
    :func:`check_inputs` kept."""
    from churnlens._features import compute_features

    say = progress or (lambda _m: None)
    history = load()
    say(f"computing features at {as_of}")
    features = compute_features(history, as_of, windows_days=artifact.windows_days)
    # compute_features returns rows in no particular order: sort, so the output (and
    # every sum over it) is the same byte for byte from run to run.
    features = features.sort_values("customer_id", kind="stable", ignore_index=True)
    notes: list[str] = []
    spec = _spec(artifact)
    if spec.groups:
        say("joining the input features (customer, event and purchase-detail tables)")
        features = _with_inputs(features, artifact, inputs, history, notes)
    # The last actual retention needs the transactions: measured in the background while
    # the customers are scored (DuckDB releases the GIL), then the transactions go.
    with ThreadPoolExecutor(max_workers=1) as pool:
        last_actual = pool.submit(_last_actual, history, as_of, artifact.horizon_days)
        del history
        result = _score_features(features, as_of, artifact, last_actual=last_actual,
                                 settings=settings, reasons=reasons, progress=say,
                                 chunk_rows=chunk_rows)
    if spec.groups:
        add_inputs(result.scores, result.summary, spec, inputs, as_of, notes,
                   features.attrs.get("unseen_categories"))
    return result


def add_inputs(scores: pd.DataFrame, summary: dict[str, Any], spec: InputSpec,
               inputs: InputTables | None, as_of: dt.date, notes: Sequence[str],
               unseen: Any) -> None:
    """Add the attribute columns to ``scores`` (in place, after the others) and the
    ``inputs`` block to ``summary`` (a model trained with richer inputs; every engine)."""
    attributes = attribute_columns(spec, inputs, scores["customer_id"], as_of)
    for column in attributes.columns:
        scores[column] = attributes[column].to_numpy()
    summary["inputs"] = inputs_summary(spec, inputs, notes, unseen)


def _last_actual(history: pd.DataFrame, as_of: dt.date, horizon_days: int) -> Any:
    """Actual retention of ``(as_of - H, as_of]`` with ``W = H`` (``retention.md``), from
    the history up to ``as_of``."""
    from churnlens._retention import retention_rates

    if not len(history):
        return None
    return retention_rates(history, as_of - dt.timedelta(days=horizon_days), as_of,
                           window_days=horizon_days)


def _score_features(
    features: pd.DataFrame,
    as_of: dt.date,
    artifact: ModelArtifact,
    *,
    last_actual: Future[Any],
    settings: ScoringSettings | None,
    reasons: bool,
    progress: Progress,
    chunk_rows: int,
) -> ScoreResult:
    """Score a features frame chunk by chunk, then add segments and the summary."""
    say = progress
    n = len(features)
    center = None
    if reasons and n:
        center = float(np.mean(artifact.model.bgnbd_offset(features)))
    step = max(1, int(chunk_rows))
    starts = list(range(0, n, step))
    say(f"scoring {n:,} customers" + (" with reasons" if reasons else ""))

    def run(start: int) -> pd.DataFrame:
        return score_batch(features.iloc[start:start + step], as_of, artifact,
                           settings=settings, reasons=reasons, offset_center=center)

    # With reasons, two chunks at a time: their work (NumPy) releases the GIL, and the
    # rows of a chunk do not depend on the other rows; memory: two chunks in flight.
    # Without, the model's predict dominates, and it runs one at a time (PREDICT_LOCK)
    # on LightGBM's own threads.
    workers = 2 if reasons else 1
    parts = []
    with ThreadPoolExecutor(max_workers=min(workers, max(1, len(starts)))) as pool:
        for start, part in zip(starts, pool.map(run, starts), strict=True):
            parts.append(part)
            say(f"scored {min(start + step, n):,} of {n:,} customers")
    scores = pd.concat(parts, ignore_index=True) if len(parts) > 1 else (
        parts[0] if parts else score_batch(features, as_of, artifact, settings=settings,
                                           reasons=reasons))
    scores.insert(BASE_COLUMNS.index("segment"), "segment",
                  rfm_segment(features)["segment"].to_numpy())
    say("summarising")
    summary = _summary(scores, artifact, as_of, last_actual.result())
    return ScoreResult(scores=scores, summary=summary, features=features,
                       feature_profile=_feature_profile(features, artifact))


def _feature_profile(features: pd.DataFrame, artifact: ModelArtifact
                    ) -> dict[str, Any] | None:
    """The features' distribution against the model's training snapshots (drift), or
    None when the model has no ``reference_profile_`` (trained before it was kept)."""
    from churnlens._drift import profile_against

    reference = getattr(artifact.model, "reference_profile_", None)
    return profile_against(features, reference) if reference else None


def _score_keyed(
    transactions: pd.DataFrame,
    as_of: dt.date,
    artifact: ModelArtifact,
    *,
    settings: ScoringSettings | None,
    reasons: bool,
    offset_center: float | None,
    features_fn: Callable[..., pd.DataFrame] | None,
) -> pd.DataFrame:
    """:func:`score_batch` rows of the customers of ``transactions`` with an occasion on
    or before ``as_of`` (the features keep history ``<= as_of`` only), in no order."""
    from churnlens._features import compute_features

    compute = features_fn or compute_features
    features = compute(transactions, as_of, windows_days=artifact.windows_days) if len(
        transactions) else None
    if features is None or not len(features):
        columns = [c for c in SCORE_COLUMNS if c != "segment" and (
            reasons or c not in REASON_COLUMNS)]
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    return score_batch(features.reset_index(drop=True), as_of, artifact,
                       settings=settings, reasons=reasons, offset_center=offset_center)


# --- the summary ----------------------------------------------------------------------


def _summary(scores: pd.DataFrame, artifact: ModelArtifact, as_of: dt.date,
             last_actual: Any) -> dict[str, Any]:
    """The scoring summary (``churnlens score --json-summary``)."""
    risk = scores["churn_risk"].to_numpy(dtype=np.float64)
    horizon = artifact.horizon_days
    recency = scores["recency_days"].to_numpy()
    predicted = predict_retention(recency, risk, window_days=horizon,
                                  level_error=getattr(artifact.model, "level_error_", None))
    counts = scores["segment"].value_counts()
    value = scores["value_at_risk"].to_numpy(dtype=np.float64)
    return summary_document(
        as_of=as_of, artifact=artifact, customers=len(scores),
        bands={band: int((scores["risk_band"] == band).sum()) for band in BANDS},
        segments={rule.segment: int(counts.get(rule.segment, 0)) for rule in SEGMENT_RULES},
        quantiles=[float(q) for q in np.quantile(risk, [0.1, 0.5, 0.9])] if len(risk) else None,
        risk_sum=float(risk.sum()), variance_sum=float((risk * (1 - risk)).sum()),
        value_at_risk_total=float(value[recency < horizon].sum()),
        value_at_risk_all=float(value.sum()),
        predicted=predicted.to_dict(), last_actual=last_actual,
        last_start=as_of - dt.timedelta(days=horizon),
    )


def summary_bases(horizon_days: int, active: int | None, acquired: int) -> dict[str, Any]:
    """The two bases a total of the summary is counted over, with their size and rule.

    ``active`` (the base of customers lost and value at risk, and the start base ``S``
    of the retention rates): a purchase in the last ``H`` days, ``recency_days < H``,
    as :func:`churnlens._evaluation.predict_retention` defines it. ``acquired``: every
    customer scored (a purchase on or before the as-of date).
    """
    return {
        "active": {"customers": active, "rule": f"recency_days < {horizon_days}",
                   "definition": f"customers with a purchase in the last {horizon_days} days "
                                 "(the start base S of the retention rates)"},
        "acquired": {"customers": acquired, "rule": "a purchase on or before the as-of date",
                     "definition": "every customer scored, active or not"},
    }


# One name per measure, with its one-line definition: the glossary of docs/retention.md,
# shown wherever the measure appears (summary JSON, CLI, API outlook, report). The rates
# read as RetentionRates.DESCRIPTIONS says (the one source, `churnlens retention` too).
MEASURES: dict[str, str] = {
    **{rate: RetentionRates.DESCRIPTIONS[rate]
       for rate in ("cohort_retention", "crr", "repeat_rate")},
    "expected_customers_lost": "expected number of the active customers with no purchase "
                               "in the horizon (the sum of their churn risks)",
    "value_at_risk_total": "churn risk times expected spend in the horizon, summed over the "
                           "active customers",
    "value_at_risk_all": "the same sum over everyone scored, customers long gone included; "
                         "for comparison only",
}

# The base of each total of the summary (keys of summary_document).
BASE_OF = {
    "customers_scored": "acquired", "risk_bands": "acquired", "segments": "acquired",
    "risk_quantiles": "acquired", "mean_churn_risk": "acquired",
    "expected_customers_lost": "active", "value_at_risk_total": "active",
    "value_at_risk_all": "acquired", "predicted": "active",
    "predicted_retention_all": "acquired", "predicted_repeat_rate": "acquired",
}


def summary_document(
    *, as_of: dt.date, artifact: ModelArtifact, customers: int, bands: dict[str, int],
    segments: dict[str, int], quantiles: list[float] | None, risk_sum: float,
    variance_sum: float, value_at_risk_total: float, value_at_risk_all: float,
    predicted: dict[str, Any], last_actual: Any, last_start: dt.date,
) -> dict[str, Any]:
    """The summary document from base-wide aggregates (both engines build it here).

    ``value_at_risk_total`` is summed over the active customers (the base of
    ``expected_customers_lost`` too), ``value_at_risk_all`` over everyone scored;
    ``base`` names the base of the pair and ``base_of`` the base of every total.
    """
    actual = _rates_dict(last_actual) if last_actual is not None else {}
    retention_all = low_all = high_all = None
    if customers:
        half = _Z95 * math.sqrt(variance_sum)
        stay = customers - risk_sum
        retention_all = stay / customers * 100
        low_all = max(stay - half, 0.0) / customers * 100
        high_all = min((stay + half) / customers * 100, 100.0)
    covers = predicted.get("interval_covers", SAMPLING_ONLY)
    pairing = [
        {"rate": rate, "predicted": predicted.get(rate),
         "predicted_low": predicted.get(f"{rate}_low"),
         "predicted_high": predicted.get(f"{rate}_high"),
         "last_actual": actual.get(rate), "base": "active", "interval_covers": covers,
         "definition": MEASURES[rate]}
        for rate in ("cohort_retention", "crr")
    ]
    # the predicted repeat rate (mean of 1 - risk over everyone scored) beside the actual
    pairing.append({"rate": "repeat_rate", "predicted": retention_all,
                    "predicted_low": low_all, "predicted_high": high_all,
                    "last_actual": actual.get("repeat_rate"), "base": "acquired",
                    "interval_covers": SAMPLING_ONLY, "definition": MEASURES["repeat_rate"]})
    return json_ready({
        "as_of": str(as_of),
        "horizon_days": artifact.horizon_days,
        "customers_scored": customers,
        "model": {"name": artifact.name, "version": artifact.version, "alias": artifact.alias,
                  "as_of": str(artifact.as_of), "run_id": artifact.run_id,
                  "horizon_days": artifact.horizon_days},
        # what the model said about itself when trained (short history, BG/NBD alone,
        # inputs it does not use): README, "A model that holds on any purchase log"
        "model_warnings": [str(w) for w in getattr(artifact.model, "warnings_", None) or []],
        "risk_bands": bands,
        "segments": segments,
        "risk_quantiles": dict(zip(("p10", "p50", "p90"), quantiles, strict=True))
        if quantiles else {},
        "mean_churn_risk": risk_sum / customers if customers else None,
        "base": "active",
        "active_customers": predicted.get("S"),
        "expected_customers_lost": predicted.get("expected_lost"),
        "value_at_risk_total": value_at_risk_total,
        "value_at_risk_all": value_at_risk_all,
        "bases": summary_bases(artifact.horizon_days, predicted.get("S"), customers),
        "base_of": BASE_OF,
        "predicted": predicted,
        "predicted_repeat_rate": retention_all,
        "predicted_repeat_rate_low": low_all,
        "predicted_repeat_rate_high": high_all,
        # the same numbers under their name before issue 16 (kept for scripts)
        "predicted_retention_all": retention_all,
        "predicted_retention_all_low": low_all,
        "predicted_retention_all_high": high_all,
        "definitions": MEASURES,
        "last_actual": {"start": str(last_start), "end": str(as_of), **actual},
        "pairing": pairing,
    })


def _rates_dict(rates: Any) -> dict[str, Any]:
    raw = rates.to_dict() if hasattr(rates, "to_dict") else dict(rates)
    return {k: v for k, v in raw.items() if k not in ("start", "end")}
