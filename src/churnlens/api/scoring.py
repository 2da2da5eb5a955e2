"""``POST /score``: the customers of a request scored by the library, many requests per call.

A request is parsed (small bodies on the event loop, large ones in a worker thread)
and checked: its size, unique ids, and the amounts by the loader's rule. Then it is
handed to a :class:`~churnlens._online.MicroBatcher`: the requests that arrive
together are scored in one call of :func:`churnlens._scoring.score_requests` on a
worker thread, so the event loop never blocks on DuckDB or the model, and one feature
query and one model call serve a whole batch.

The data contract is the loader's: :func:`churnlens._loading.clean_values` reads the
ids, timestamps and amounts of a batch with the same code as
:func:`churnlens.load_transactions`. A customer whose id the loader reads as missing
(``"NA"``, ``"null"``...) is not scored (the loader drops such rows) and is named in
``unscored``; timestamps with a UTC offset are converted to UTC as the loader does;
amounts the loader refuses are a 422 with its message.

Richer inputs (issue 21): a customer may carry ``attributes`` (a row of the customer
table valid at ``as_of``) and ``events``. :func:`check_inputs` checks them against the
model's input spec (:func:`churnlens._input_features.spec_of`) before the request is
queued: a model trained with a customer table (an event table) needs ``attributes``
(``events``) on every customer, or the request is a 422 naming the first customer
without; an attribute's type is the spec's (text or null for a categorical one, a number
or null for a numeric one). What the model does not use (attribute names, event types)
and categories it never saw (scored as missing by the join) are named in the answer's
``warnings``. The batch's attributes and events become one
:class:`~churnlens._input_features.InputTables` keyed like its purchases (events through
:func:`churnlens._inputs.load_events`, the event table's own rules), and
:func:`churnlens._input_features.with_input_features` joins the input features onto the
purchase features at ``as_of``: the batch path's function, so the API scores a customer
as ``churnlens score --customers-file --events-file`` does (a parity test).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from fastapi import HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from churnlens._loading import amounts_in_range, clean_values
from churnlens._online import FeatureQuery, MicroBatcher
from churnlens._scoring import RequestScores, check_as_of, score_requests
from churnlens.api.errors import unprocessable
from churnlens.api.limits import ApiLimits
from churnlens.api.schemas import ScoreRequest
from churnlens.api.state import ServingState
from churnlens.exceptions import ChurnlensError, DataValidationError

if TYPE_CHECKING:
    from churnlens._input_features import InputSpec, InputTables

__all__ = ["MAX_ERRORS", "ScoreJob", "ScoreService", "check_inputs", "parse_score_request"]

SOURCE = "POST /score"
MISSING_ID_REASON = ("missing customer id: {customer_id!r} reads as a missing value, and "
                     "load_transactions drops the rows of such ids")
# Warnings listed by name in one answer (then "and N more").
_MAX_WARNINGS = 20
# Validation errors listed in one 422 (then one "and N more errors").
MAX_ERRORS = 20


@dataclasses.dataclass
class ScoreJob:
    """One ``POST /score`` request, checked and ready for the batcher."""

    state: ServingState
    request: ScoreRequest
    reasons: bool
    purchases: int
    warnings: list[str] = dataclasses.field(default_factory=list)


def parse_score_request(body: bytes) -> ScoreRequest:
    """Parse and validate a body; errors in FastAPI's 422 format (``loc`` from ``body``)."""
    try:
        return ScoreRequest.model_validate_json(body)
    except ValidationError as exc:
        errors: list[dict[str, Any]] = []
        found = exc.error_count()
        # the first MAX_ERRORS only: 100,000 bad purchases made a 28 MB answer, encoded
        # for 6 s on the event loop
        for details in exc.errors(include_url=False, include_context=False)[:MAX_ERRORS]:
            error: dict[str, Any] = dict(details)
            error["loc"] = ["body", *error["loc"]]
            given = error.get("input")
            if isinstance(given, dict | list):
                error.pop("input")  # do not echo whole documents back
            elif isinstance(given, bytes | str):  # an unparseable body: its start only
                text = given.decode(errors="replace") if isinstance(given, bytes) else given
                error["input"] = text[:200]
            elif isinstance(given, float) and not math.isfinite(given):
                error["input"] = str(given)  # NaN and infinities are not JSON
            errors.append(error)
        if found > MAX_ERRORS:
            errors.append({"type": "too_many_errors", "loc": ["body"],
                           "msg": f"and {found - MAX_ERRORS:,} more errors (the first "
                                  f"{MAX_ERRORS} are listed)"})
        raise RequestValidationError(errors) from None


def check_request(request: ScoreRequest, limits: ApiLimits) -> int:
    """Refuse a request that is too large (413), repeats an id or holds an amount the
    loader refuses (422); return its number of purchases and events."""
    customers = request.customers
    if len(customers) > limits.max_customers:
        raise HTTPException(413, detail=f"at most {limits.max_customers:,} customers per "
                                        f"request, got {len(customers):,}")
    purchases = sum(len(c.purchases) for c in customers)
    if purchases > limits.max_purchases:
        raise HTTPException(413, detail=f"at most {limits.max_purchases:,} purchases per "
                                        f"request, got {purchases:,}")
    events = sum(len(c.events) for c in customers if c.events is not None)
    if events > limits.max_events:
        raise HTTPException(413, detail=f"at most {limits.max_events:,} events per "
                                        f"request, got {events:,}")
    seen: dict[str, int] = {}
    for position, customer in enumerate(customers):
        text = str(customer.customer_id)
        if text in seen:
            raise unprocessable(
                f"duplicate customer_id {text[:40]!r} (also at {seen[text]}; ids are "
                "compared as text)", ("body", "customers", position, "customer_id"))
        seen[text] = position
    amounts = np.fromiter((p.amount for c in customers for p in c.purchases),
                          dtype=np.float64, count=purchases)
    bad = np.flatnonzero(~amounts_in_range(amounts))
    if len(bad):
        _refuse_amounts(request, bad, amounts)
    return purchases + events


def check_inputs(request: ScoreRequest, spec: InputSpec | None) -> list[str]:
    """Check a request's attributes and events against the model's input spec.

    Parameters
    ----------
    request
        The parsed request.
    spec
        The model's :class:`~churnlens._input_features.InputSpec` (None: a model trained
        without richer inputs).

    Returns
    -------
    list of str
        The warnings of the answer: attributes and event types the model does not use
        (ignored), categories it never saw (scored as missing), naming the customers.

    Raises
    ------
    HTTPException
        422 (FastAPI's format, ``loc`` in the body): a customer without ``attributes``
        (``events``) for a model trained with a customer (event) table, an attribute of
        the wrong type, a blank event type.
    """
    customers = request.customers
    if spec is None or not spec.groups:
        unused = _unused(customers, {}, frozenset(), what="a model trained without "
                                                         "richer inputs")
        return _capped(unused)
    if "details" in spec.groups:
        wanted = set(spec.detail_columns)
        for i, customer in enumerate(customers):
            for j, purchase in enumerate(customer.purchases):
                lacking = sorted(wanted - purchase.model_fields_set,
                                 key=spec.detail_columns.index)
                if lacking:
                    raise unprocessable(
                        "the model was trained with the transactions' optional columns "
                        f"{', '.join(spec.detail_columns)}: every purchase needs them "
                        f"(null where unknown); customers[{i}].purchases[{j}] has no "
                        f"{', '.join(lacking)}. Suggestion: send "
                        + ", ".join(repr(c) for c in spec.detail_columns)
                        + " with each purchase.",
                        ("body", "customers", i, "purchases", j, lacking[0]))
                if "quantity" in wanted and purchase.quantity is None:
                    # the loader refuses an empty quantity (the rules of amounts)
                    raise unprocessable(
                        "quantity is null: the model was trained with a quantity column, "
                        "and a quantity is a number on every row, as an amount is. "
                        "Suggestion: send the number of items (1 when unknown).",
                        ("body", "customers", i, "purchases", j, "quantity"))
    attributes = dict(spec.attributes)
    for field, needed, table, empty in (
            ("attributes", spec.requires_customers, "a customer table", "{}"),
            ("events", spec.requires_events, "an event table", "[]")):
        if not needed:
            continue
        without = [i for i, c in enumerate(customers) if getattr(c, field) is None]
        if without:
            others = f" (and {len(without) - 1:,} more)" if len(without) > 1 else ""
            uses = (f"attributes {', '.join(attributes)}" if field == "attributes" else
                    f"event types {', '.join(spec.event_types)}")
            raise unprocessable(
                f"the model was trained with {table} ({uses}): every customer needs "
                f"{field!r}; customers[{without[0]}] has none{others}. Suggestion: send "
                f"{field!r} with each customer ({empty} for a customer with none known).",
                ("body", "customers", without[0], field))
    unseen: list[str] = []
    for i, customer in enumerate(customers):
        for name, value in (customer.attributes or {}).items():
            if name not in attributes or value is None:
                continue
            categories = attributes[name]
            where = ("body", "customers", i, "attributes", name)
            if categories is None:
                if isinstance(value, str):
                    raise unprocessable(
                        f"attribute {name!r} is numeric in the model: send a number or null, "
                        f"got {value[:40]!r}", where)
            elif not isinstance(value, str):
                raise unprocessable(
                    f"attribute {name!r} is categorical in the model (text such as "
                    f"{', '.join(repr(c) for c in categories[:3])}): send text or null, "
                    f"got {value!r}", where)
            elif value.strip() and value not in categories:
                unseen.append(f"customers[{i}] ({_shown(customer.customer_id)}): attribute "
                              f"{name!r} value {value[:40]!r} was not seen in training: "
                              "scored as missing")
        for j, event in enumerate(customer.events or ()):
            if not event.event_type.strip():
                raise unprocessable("event_type is blank. Suggestion: send the event's type, "
                                    "such as 'email_open'.",
                                    ("body", "customers", i, "events", j, "event_type"))
    unused = _unused(customers, attributes, frozenset(spec.event_types) if
                     spec.requires_events else frozenset(), what="the model",
                     detail_columns=spec.detail_columns if "details" in spec.groups else ())
    return _capped(unused + unseen)


def _unused(customers: list[Any], attributes: dict[str, Any], event_types: frozenset[str],
            *, what: str, detail_columns: tuple[str, ...] = ()) -> list[str]:
    """Warnings naming the purchase columns, attributes and event types sent that the
    model does not use."""
    used_columns = {"timestamp", "amount", *detail_columns}
    names: dict[str, int] = {}
    types: dict[str, int] = {}
    columns: dict[str, int] = {}
    for customer in customers:
        for purchase in customer.purchases:
            if len(purchase.model_fields_set) > 2:  # more than timestamp and amount
                for column in purchase.model_fields_set - used_columns:
                    if getattr(purchase, column) is not None:
                        columns[column] = columns.get(column, 0) + 1
        for name in customer.attributes or ():
            if name not in attributes:
                names[name] = names.get(name, 0) + 1
        for event in customer.events or ():
            kind = event.event_type.strip()
            if kind not in event_types:
                types[kind] = types.get(kind, 0) + 1
    out = []
    if columns:
        out.append(f"purchase columns not used by {what}, ignored: "
                   + ", ".join(f"{c!r} ({_count(k, 'purchase')})" for c, k in
                               columns.items()))
    if names:
        out.append(f"attributes not used by {what}, ignored: "
                   + ", ".join(f"{n[:40]!r} ({_count(k, 'customer')})" for n, k in
                               list(names.items())[:_MAX_WARNINGS]))
    if types:
        out.append(f"event types not used by {what}, ignored: "
                   + ", ".join(f"{t[:40]!r} ({_count(k, 'event')})" for t, k in
                               list(types.items())[:_MAX_WARNINGS]))
    return out


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _shown(customer_id: Any) -> str:
    return f"id {str(customer_id)[:40]!r}"


def _capped(warnings: list[str]) -> list[str]:
    if len(warnings) <= _MAX_WARNINGS:
        return warnings
    return [*warnings[:_MAX_WARNINGS], f"and {len(warnings) - _MAX_WARNINGS:,} more"]


def _refuse_amounts(request: ScoreRequest, bad: np.ndarray, amounts: np.ndarray) -> None:
    """The loader's refusal of these amounts, as a 422 at the first of them."""
    places = [(i, j) for i, c in enumerate(request.customers) for j in range(len(c.purchases))]
    labels = [f"customers[{i}].purchases[{j}]" for i, j in (places[k] for k in bad)]
    try:
        clean_values(amounts=pd.Series(amounts[bad], index=labels), source=SOURCE)
    except DataValidationError as exc:
        customer, purchase = places[int(bad[0])]
        raise unprocessable(str(exc), ("body", "customers", customer, "purchases", purchase,
                                       "amount")) from None
    raise AssertionError("amounts_in_range and the loader disagree")  # pragma: no cover


def score_jobs(jobs: list[ScoreJob], features: Any) -> list[bytes | BaseException]:
    """Score a batch of requests: one library call per (state, as_of, reasons).

    Each job gets its response body (JSON bytes) or the exception it raised. When a
    group fails on the data contract, each of its requests is scored alone, so that
    only the offending one is refused.
    """
    out: list[bytes | BaseException] = [b""] * len(jobs)
    groups: dict[tuple[int, dt.date, bool], list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault((id(job.state), job.request.as_of, job.reasons), []).append(i)
    for members in groups.values():
        try:
            bodies = _score_group([jobs[i] for i in members], features)
        except ChurnlensError as exc:
            if len(members) == 1:
                out[members[0]] = exc
                continue
            for i in members:
                try:
                    out[i] = _score_group([jobs[i]], features)[0]
                except Exception as alone:  # reported to that request only
                    out[i] = alone
            continue
        except Exception as exc:  # reported to each request of the group
            for i in members:
                out[i] = exc
            continue
        for i, body in zip(members, bodies, strict=True):
            out[i] = body
    return out


def _score_group(jobs: list[ScoreJob], features: Any) -> list[bytes]:
    """Requests of one state, as-of date and ``reasons``: one library call.

    The values go through the loader's rules (:func:`churnlens._loading.clean_values`),
    then :func:`churnlens._scoring.score_requests` scores them all at once and gives
    each request its customers back in request order.
    """

    first = jobs[0]
    ids: list[Any] = []
    keys: list[int] = []
    stamps: list[str] = []
    amounts: list[float] = []
    for job in jobs:
        for customer in job.request.customers:
            key = len(ids)
            ids.append(customer.customer_id)
            for purchase in customer.purchases:
                keys.append(key)
                stamps.append(purchase.timestamp)
                amounts.append(purchase.amount)
    # (the amounts passed the loader's rule in check_request)
    clean_ids, clean_stamps, _ = clean_values(
        pd.Series(ids, dtype=object), pd.Series(stamps, dtype=object), source=SOURCE)
    assert clean_ids is not None  # (both were given)
    assert clean_stamps is not None
    missing = np.flatnonzero(clean_ids.isna().to_numpy(dtype=bool))
    purchases = pd.DataFrame({"customer_key": np.asarray(keys, dtype=np.int64),
                              "timestamp": clean_stamps.to_numpy(dtype="datetime64[us]"),
                              "amount": np.asarray(amounts, dtype=np.float64)})
    spec = first.state.input_spec
    if spec is not None and spec.groups and ids:  # the model uses richer inputs: join them
        detailed = _with_details(purchases, jobs, spec) if spec.detail_columns else None
        features = _joined(features, spec, _request_inputs(jobs, spec), detailed)
    scored = score_requests(
        purchases, [[c.customer_id for c in job.request.customers] for job in jobs],
        first.request.as_of, first.state.artifact, settings=first.state.scoring,
        reasons=first.reasons, offset_center=first.state.offset_center, features_fn=features,
        # as the loader: the rows of an id it reads as missing are dropped
        unscored={int(k): MISSING_ID_REASON.format(customer_id=ids[k]) for k in missing})
    return [_score_body(job, answer) for job, answer in zip(jobs, scored, strict=True)]


def _request_inputs(jobs: list[ScoreJob], spec: InputSpec) -> InputTables:
    """The attributes and events of a batch as the tables of a job, keyed like its
    purchases (``customer_id``: the customer's position over the batch's requests).

    Attributes: one row per customer that sent ``attributes``, with the spec's attribute
    columns, typed as the spec says (float64 for a numeric one, text for a categorical
    one: :func:`check_inputs` checked the JSON types; a blank text is missing, as in the
    customer table); attributes the model does not use are left out. Events: the event
    table's own rules (:func:`churnlens._inputs.load_events` on the batch's events: type
    text without surrounding spaces, the transactions' timestamp rule); only the types
    the model uses.
    """
    from churnlens._input_features import InputTables
    from churnlens._inputs import load_events

    customers: pd.DataFrame | None = None
    if spec.requires_customers:  # (check_inputs: every customer sent attributes)
        keys: list[int] = []
        rows: list[dict[str, Any]] = []
        key = 0
        for job in jobs:
            for customer in job.request.customers:
                if customer.attributes is not None:
                    keys.append(key)
                    rows.append(customer.attributes)
                key += 1
        columns: dict[str, Any] = {"customer_id": np.asarray(keys, dtype=np.int64)}
        for name, categories in spec.attributes:
            sent = [row.get(name) for row in rows]
            if categories is None:
                columns[name] = pd.array([np.nan if v is None else float(v) for v in sent],
                                         dtype="float64")
            else:
                text = pd.Series(sent, dtype="string")
                columns[name] = text.mask(text.str.strip() == "")  # blank: missing
        # A clean table already: ids are the batch's keys (one row each, valid from the
        # start), and each attribute is typed by the spec, not by the values sent (the
        # loader types a column by its values: a text attribute whose values all read
        # as numbers, "01", would become a number there).
        customers = pd.DataFrame(columns)
    events = None
    if spec.requires_events:
        event_keys: list[int] = []
        stamps: list[str] = []
        types: list[str] = []
        values: list[float] = []
        key = 0
        wanted = frozenset(spec.event_types)
        for job in jobs:
            for customer in job.request.customers:
                for event in customer.events or ():
                    if event.event_type.strip() in wanted:
                        event_keys.append(key)
                        stamps.append(event.timestamp)
                        types.append(event.event_type)
                        values.append(np.nan if event.value is None else event.value)
                key += 1
        if event_keys:
            events = load_events(pd.DataFrame({
                "customer_id": np.asarray(event_keys, dtype=np.int64),
                "timestamp": pd.Series(stamps, dtype=object),
                "event_type": pd.Series(types, dtype=object),
                "value": np.asarray(values, dtype=np.float64)}), value_col="value")
        else:  # every customer sent events: [] (load_events refuses an empty table)
            events = pd.DataFrame({"customer_id": np.array([], dtype=np.int64),
                                   "timestamp": np.array([], dtype="datetime64[us]"),
                                   "event_type": pd.Series([], dtype="string"),
                                   "value": np.array([], dtype=np.float64)})
    return InputTables(customers=customers, events=events)


def _with_details(purchases: pd.DataFrame, jobs: list[ScoreJob], spec: InputSpec
                  ) -> pd.DataFrame:
    """The batch's clean purchases (``customer_id``: the customer's key) with the
    optional columns the model was trained with, cleaned by the loader's rules for them
    (:func:`churnlens._loading.clean_text` for category and channel,
    :func:`~churnlens._loading.parse_discounts`, quantities as amounts; order ids as
    given)."""
    from churnlens._loading import clean_text, parse_discounts

    columns = {c: [getattr(p, c) for job in jobs for customer in job.request.customers
                   for p in customer.purchases] for c in spec.detail_columns}
    frame = pd.DataFrame({"customer_id": purchases["customer_key"].to_numpy(),
                          "timestamp": purchases["timestamp"].to_numpy(),
                          "amount": purchases["amount"].to_numpy()})
    for column, values in columns.items():
        given = pd.Series(values, dtype=object)
        if column in ("category", "channel"):
            frame[column] = clean_text(given, SOURCE, column, False).to_numpy()
        elif column == "discount":
            frame[column] = parse_discounts(given, SOURCE, column, False).to_numpy()
        elif column == "quantity":  # (never null: check_inputs)
            _, _, parsed = clean_values(amounts=given, source=SOURCE)
            assert parsed is not None
            frame[column] = parsed.to_numpy()
        else:
            frame[column] = given.to_numpy()
    return frame


def _joined(query: Callable[..., pd.DataFrame], spec: InputSpec, inputs: InputTables,
            detailed: pd.DataFrame | None) -> Callable[..., pd.DataFrame]:
    """``query`` (the purchase features), with the input features of ``spec`` joined on
    (:func:`churnlens._input_features.with_input_features`, the batch path's join).

    ``detailed``: the batch's purchases with their optional columns, read by the details
    and calendar groups instead of the transactions ``query`` gets (which hold only
    ``customer_id``, ``timestamp`` and ``amount``); the join keeps only the customers of
    the features frame.
    """
    from churnlens._input_features import with_input_features

    # the pool's open connection (opening a database per batch cost more than the join)
    connection = query.side_connection() if isinstance(query, FeatureQuery) else None

    def compute(transactions: pd.DataFrame, as_of: Any, *, windows_days: Any
                ) -> pd.DataFrame:
        frame = query(transactions, as_of, windows_days=windows_days)
        return with_input_features(frame, spec, inputs,
                                   transactions if detailed is None else detailed,
                                   date_column="as_of", connection=connection)

    return compute


def _score_body(job: ScoreJob, answer: RequestScores) -> bytes:
    """A ``ScoreResponse`` as JSON bytes."""
    artifact = job.state.artifact
    payload = {
        "as_of": job.request.as_of.isoformat(), "model_version": artifact.version,
        "horizon_days": int(artifact.horizon_days),
        "results": [{"customer_id": r.customer_id, "churn_risk": r.churn_risk,
                     "risk_band": r.risk_band, "expected_value": r.expected_value,
                     "value_at_risk": r.value_at_risk, "p_alive": r.p_alive,
                     "expected_purchases": r.expected_purchases,
                     "days_to_next_purchase": r.days_to_next_purchase,
                     "expected_spend": r.expected_spend, "clv": r.clv,
                     "recency_days": r.recency_days,
                     "frequency": r.frequency, "reasons": r.reasons}
                    for r in answer.results],
        "unscored": [{"customer_id": u.customer_id, "reason": u.reason}
                     for u in answer.unscored],
        "warnings": job.warnings,
    }
    return json.dumps(payload, allow_nan=False, separators=(",", ":")).encode()


class FeatureQueries:
    """A pool of :class:`FeatureQuery` (one DuckDB connection each), one per thread in use."""

    def __init__(self) -> None:
        self._free: queue.LifoQueue[FeatureQuery] = queue.LifoQueue()
        self._all: list[FeatureQuery] = []
        self._lock = threading.Lock()

    def run(self, jobs: list[ScoreJob]) -> list[bytes | BaseException]:
        """:func:`score_jobs` with a connection of the pool."""
        try:
            query = self._free.get_nowait()
        except queue.Empty:
            query = FeatureQuery()
            with self._lock:
                self._all.append(query)
        try:
            return score_jobs(jobs, query)
        finally:
            self._free.put(query)

    def close(self) -> None:
        """Close every connection; later calls open new ones (an app can restart)."""
        with self._lock:
            while True:
                try:
                    self._free.get_nowait()
                except queue.Empty:
                    break
            for query in self._all:
                query.close()
            self._all.clear()


class ScoreService:
    """``POST /score`` from body to answer: parse, check, batch, score, format.

    Parameters
    ----------
    limits
        Request sizes, and where parsing and scoring happen.
    """

    def __init__(self, limits: ApiLimits) -> None:
        self.limits = limits
        self.queries = FeatureQueries()
        self.in_flight = 0  # requests being scored (counted on the event loop)
        # One batch at a time: with two in flight they fought over the GIL and scored
        # fewer requests per second on 2 cores (measured 442 -> 321 req/s).
        self.batcher: MicroBatcher[ScoreJob, bytes] = MicroBatcher(
            self.queries.run, max_wait_s=0.002, max_weight=limits.batch_purchases, workers=1)

    async def score(self, body: bytes, state: ServingState, reasons: bool, *,
                    allow_past: bool = False) -> bytes:
        """The ``ScoreResponse`` (JSON bytes) of a request body, scored against ``state``.

        An ``as_of`` before the model's training as-of is refused as ``churnlens score``
        refuses it (:func:`churnlens._scoring.check_as_of`) unless ``allow_past``.

        Raises
        ------
        RequestValidationError, HTTPException
            422 for an invalid request, 413 for one too large.
        ChurnlensError
            The library refused the data or the date (the app answers 422).
        """
        self.in_flight += 1
        try:
            return await self._score(body, state, reasons, allow_past)
        finally:
            self.in_flight -= 1

    def busy(self) -> bool:
        """Whether a request is being scored (bulk reads step aside meanwhile)."""
        return self.in_flight > 0

    async def _score(self, body: bytes, state: ServingState, reasons: bool,
                     allow_past: bool) -> bytes:
        if len(body) <= self.limits.inline_body_bytes:
            request, purchases, warnings = self._checked(body, state)
        else:
            request, purchases, warnings = await run_in_threadpool(self._checked, body, state)
        check_as_of(state.artifact, request.as_of, allow_past=allow_past)
        job = ScoreJob(state=state, request=request, reasons=reasons, purchases=purchases,
                       warnings=warnings)
        if purchases <= self.limits.batch_purchases:
            return await self.batcher.submit(job, weight=purchases + len(request.customers))
        result = (await run_in_threadpool(self.queries.run, [job]))[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def _checked(self, body: bytes, state: ServingState) -> tuple[ScoreRequest, int,
                                                                  list[str]]:
        request = parse_score_request(body)
        size = check_request(request, self.limits)
        return request, size, check_inputs(request, state.input_spec)

    def close(self) -> None:
        """Stop the batcher and close the connections (a later request restarts them)."""
        self.batcher.close()
        self.queries.close()
