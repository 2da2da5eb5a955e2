"""The served state: the model, the scored base and its indexes, and how it is reloaded.

A :class:`ServingState` is one immutable snapshot (never changed once built, but for
its cache of filtered lists). :class:`StateHolder` keeps the current one; ``/reload``
builds a new one off to the side and swaps the reference, so requests in flight keep
the snapshot they started with and none is dropped. A failed reload keeps the old
snapshot serving and says why.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import gc
import json
import logging
import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from churnlens._artifact import ModelArtifact
from churnlens._config import ScoringSettings, Settings
from churnlens._io import json_ready
from churnlens._redact import redact_uri_credentials

if TYPE_CHECKING:
    from churnlens._input_features import InputSpec, InputTables

__all__ = ["MONITORING_KEY", "RowReader", "ServingState", "StateHolder", "build_state",
           "cohorts_key", "list_key", "load_state", "rates_key", "record_in_ledger",
           "require_inputs", "series_key", "warm_monitoring", "warm_reads"]

_log = logging.getLogger("churnlens.api")

# Filtered at-risk lists kept per state (each is an array of row positions).
_MAX_CACHED_FILTERS = 64
# Answers of the retention reads (series, cohorts, rates of a period) kept per state:
# each is a query over every transaction (seconds at 1M customers), and the data never
# changes within a state.
_MAX_CACHED_READS = 256
# CSV exports kept per state (bytes in all), and rows per piece of an export: a piece is
# one pandas call (~20 ms for 2,000 rows); the read thread steps aside between pieces.
_CSV_CACHE_BYTES = 128 * 1024 * 1024
_CSV_PIECE_ROWS = 2_000


class RowReader:
    """A frame's rows as JSON-ready values, read by position: a page costs O(its rows).

    Each column gets a reader built once: numbers through numpy, Arrow text through
    Arrow's ``take``, anything else (dates...) through its distinct values, converted
    once (:func:`churnlens._io.json_ready`). Going through pandas row by row costs ten
    times more per page.
    """

    def __init__(self, frame: pd.DataFrame) -> None:
        self.names = [str(c) for c in frame.columns]
        self.readers = [self._reader(frame[c]) for c in frame.columns]

    @staticmethod
    def _reader(column: pd.Series) -> Callable[[np.ndarray], list[Any]]:
        kind = column.dtype.kind if isinstance(column.dtype, np.dtype) else ""
        if kind == "f":
            floats = column.to_numpy()
            return lambda rows: [v if math.isfinite(v) else None for v in floats[rows].tolist()]
        if kind in "iub":
            numbers = column.to_numpy()
            return lambda rows: numbers[rows].tolist()
        if isinstance(column.array, pd.arrays.ArrowStringArray):
            text = pa.chunked_array(column.array.__arrow_array__()).combine_chunks()
            return lambda rows: text.take(pa.array(rows, pa.int64())).to_pylist()
        codes, uniques = pd.factorize(column, use_na_sentinel=True)
        values = [json_ready(v) for v in uniques] + [None]  # code -1 (missing) -> None
        return lambda rows: [values[c] for c in codes[rows].tolist()]

    def records(self, rows: np.ndarray) -> list[dict[str, Any]]:
        """The rows at these positions, as dictionaries."""
        rows = np.asarray(rows, dtype=np.int64)
        columns = [read(rows) for read in self.readers]
        return [dict(zip(self.names, row, strict=True))
                for row in zip(*columns, strict=True)]


@dataclasses.dataclass(frozen=True)
class ServingState:
    """Everything one version of the service answers from (never changed once built)."""

    artifact: ModelArtifact
    transactions: pd.DataFrame
    scores: pd.DataFrame  # score_customers(...).scores; row i is features row i
    features: pd.DataFrame
    summary: dict[str, Any]
    as_of: dt.date
    loaded_at: str
    index: dict[str, int]  # customer id as text -> row in scores
    ranked: dict[str, np.ndarray]  # sort key -> rows of scores in at-risk order
    scoring: ScoringSettings = dataclasses.field(default_factory=ScoringSettings)
    # the scored base's mean BG/NBD offset: /score explains every customer against it,
    # so reasons never depend on who else is in a batch (see score_batch)
    offset_center: float | None = None
    # filtered at-risk lists already computed: (sort, min_risk, segment, band) -> rows
    filtered: dict[tuple[Any, ...], np.ndarray] = dataclasses.field(default_factory=dict)
    score_rows: RowReader | None = None  # scores and features as JSON-ready columns
    feature_rows: RowReader | None = None
    # CSV exports already written: (sort, min_risk, segment, band) -> pieces of bytes
    csv_cache: dict[tuple[Any, ...], list[bytes]] = dataclasses.field(default_factory=dict)
    # reads already answered: ("series", every, window_days), ("cohorts",), ("rates",
    # start, end, window_days), ("value_counts", column), ("monitoring",) -> the
    # library's answer (see cached_read)
    read_cache: dict[tuple[Any, ...], Any] = dataclasses.field(default_factory=dict)
    # the scoring's feature distribution against the training snapshots (drift)
    feature_profile: dict[str, Any] | None = None
    # the settings the state was loaded with (None: built from a frame by build_state)
    settings: Settings | None = None
    # the prediction ledger: the entry this scoring recorded, or why it was not (a
    # ledger failure never stops serving); both None when the ledger is off
    ledger_run_id: str | None = None
    ledger_error: str | None = None
    # richer inputs (issue 21): the tables the base was scored with (serve
    # --customers-file/--events-file; None: none given) and the model's input spec (None:
    # a model trained without them), read by POST /score for every request
    inputs: InputTables | None = None
    input_spec: InputSpec | None = None

    def attribute_columns(self) -> dict[str, str]:
        """The attribute columns of the scored base: attribute name -> its column in
        ``scores`` (:func:`churnlens._scoring.attribute_column_names`), those present
        only; empty for a model trained without a customer table."""
        cached = self.read_cache.get(("attribute_columns",))
        if cached is None:
            cached = {}
            if self.input_spec is not None and self.input_spec.requires_customers:
                from churnlens._scoring import attribute_column_names

                cached = {name: column for name, column in
                          attribute_column_names(self.input_spec)
                          if column in self.scores.columns}
            self.read_cache[("attribute_columns",)] = cached
        return cached

    def categorical_attributes(self) -> dict[str, str]:
        """The categorical ones of :meth:`attribute_columns` (what the list filters on)."""
        spec = dict(self.input_spec.attributes) if self.input_spec is not None else {}
        return {name: column for name, column in self.attribute_columns().items()
                if spec.get(name) is not None}

    def customer(self, customer_id: str) -> dict[str, Any] | None:
        """The stored score and features of one customer (id as text), or None."""
        row = self.index.get(customer_id)
        if row is None:
            return None
        if self.score_rows is not None and self.feature_rows is not None:
            score = self.score_rows.records(np.array([row]))[0]
            features = self.feature_rows.records(np.array([row]))[0]
        else:
            score = json_ready(self.scores.iloc[row].to_dict())
            features = json_ready(self.features.iloc[row].to_dict())
        return {"score": score, "features": features}

    def cached_read(self, key: tuple[Any, ...]) -> Any | None:
        """A read already answered for this state (no work), else None.

        Keys: :func:`series_key`, :func:`cohorts_key`, :func:`rates_key`,
        ``("value_counts", column)`` and :data:`MONITORING_KEY`.
        """
        return self.read_cache.get(key)

    def _remember(self, key: tuple[Any, ...], value: Any) -> Any:
        if len(self.read_cache) < _MAX_CACHED_READS:
            self.read_cache[key] = value
        return value

    def value_counts(self, column: str) -> dict[str, int]:
        """Customers of the scored base per value of a column of the scores (missing
        values left out), once per state (``GET /at-risk/facets``: bands, segments)."""
        key = ("value_counts", column)
        cached = self.read_cache.get(key)
        if cached is not None:
            return cached
        counts = self.scores[column].value_counts(dropna=True)
        return self._remember(key, {str(k): int(v) for k, v in counts.items()})

    def retention_series(self, every: str, window_days: int | None = None) -> pd.DataFrame:
        """:func:`churnlens._retention.retention_series` up to the scoring date, once per
        state (``GET /retention/series``; the caller checks ``every``)."""
        from churnlens._retention import retention_series

        key = series_key(every, window_days)
        cached = self.read_cache.get(key)
        if cached is not None:
            return cached
        return self._remember(key, retention_series(
            self.transactions, every, window_days=window_days, end=self.as_of))

    def cohort_table(self) -> pd.DataFrame:
        """:func:`churnlens._retention.cohort_table` up to the scoring date, once per
        state (``GET /retention/cohorts``)."""
        from churnlens._retention import cohort_table

        cached = self.read_cache.get(cohorts_key())
        if cached is not None:
            return cached
        return self._remember(cohorts_key(), cohort_table(self.transactions, end=self.as_of))

    def retention_rates(self, start: dt.date, end: dt.date,
                        window_days: int | None = None) -> Any:
        """:func:`churnlens._retention.retention_rates` of ``(start, end]``, once per
        state and period (``GET /retention``; at most ``_MAX_CACHED_READS`` kept)."""
        from churnlens._retention import retention_rates

        key = rates_key(start, end, window_days)
        cached = self.read_cache.get(key)
        if cached is not None:
            return cached
        return self._remember(key, retention_rates(self.transactions, start, end,
                                                   window_days=window_days))

    def cached_at_risk_rows(self, sort: str, min_risk: float | None, segment: str | None,
                            band: str | None, kind: str = "all") -> np.ndarray | None:
        """The at-risk rows of these filters if already known (no work), else None."""
        if kind == "all" and min_risk is None and segment is None and band is None:
            return self.ranked[sort]
        return self.filtered.get(list_key(kind, sort, min_risk, segment, band))

    def at_risk_rows(self, sort: str, min_risk: float | None, segment: str | None,
                     band: str | None, kind: str = "all") -> np.ndarray:
        """Rows of the at-risk list with these filters, in the library's order.

        The lists, order and filters are :func:`churnlens._rules.at_risk_list`'s (``kind``
        ``all``, ``campaign`` or ``win-back``; the last two uncut: pages set the size);
        the result is cached per state.
        """
        from churnlens._rules import at_risk_list

        rows = self.cached_at_risk_rows(sort, min_risk, segment, band, kind)
        known_segment = segment is None or segment in self._segments()
        if rows is None and kind == "all" and known_segment:
            # The whole base's order kept for this sort, filtered: at_risk_list filters
            # then orders by (sort descending, customer id), a total order, so keeping
            # the matching rows of the ordered base gives its very rows in its order,
            # without a sort of the base (tests/test_web_access.py checks every filter).
            ranked = self.ranked[sort]
            keep = np.ones(len(ranked), dtype=bool)
            if min_risk is not None:
                keep &= self.scores["churn_risk"].to_numpy(dtype=np.float64)[ranked] >= min_risk
            for column, value in (("segment", segment), ("risk_band", band)):
                if value is not None:
                    keep &= (self.scores[column] == value).to_numpy(dtype=bool,
                                                                   na_value=False)[ranked]
            rows = ranked[keep]
            if len(self.filtered) < _MAX_CACHED_FILTERS:
                self.filtered[list_key(kind, sort, min_risk, segment, band)] = rows
        if rows is None:
            rows = at_risk_list(self.scores.assign(_row=np.arange(len(self.scores))),
                                kind=kind, horizon_days=self.artifact.horizon_days,
                                top=None if kind == "all" else max(1, len(self.scores)),
                                min_risk=min_risk, segment=segment, band=band,
                                sort=sort)["_row"].to_numpy()
            if len(self.filtered) < _MAX_CACHED_FILTERS:
                self.filtered[list_key(kind, sort, min_risk, segment, band)] = rows
        return rows

    def _segments(self) -> frozenset[str]:
        """The segments of the scored base (an unknown one is at_risk_list's error)."""
        cached = self.read_cache.get(("segments",))
        if cached is None:
            cached = frozenset() if "segment" not in self.scores else frozenset(
                str(s) for s in self.scores["segment"].dropna().unique())
            self.read_cache[("segments",)] = cached
        return cached

    def at_risk_csv(self, sort: str, min_risk: float | None, segment: str | None,
                    band: str | None, pause: Callable[[], None] | None = None,
                    kind: str = "all") -> list[bytes]:
        """The whole filtered at-risk list as spreadsheet-safe CSV, in pieces of bytes.

        The dialect is :func:`churnlens._io.csv_text`'s (``spreadsheet_safe=True``:
        formula-like cells neutralised, CRLF line ends). Written once per state and
        filter (kept up to a memory budget); ``pause`` is called between pieces.
        """
        key = list_key(kind, sort, min_risk, segment, band)
        cached = self.csv_cache.get(key)
        if cached is not None:
            return cached
        pieces = csv_pieces(
            self.scores.iloc[self.at_risk_rows(sort, min_risk, segment, band, kind)], pause)
        held = sum(len(p) for chunks in self.csv_cache.values() for p in chunks)
        if held + sum(len(p) for p in pieces) <= _CSV_CACHE_BYTES:
            self.csv_cache[key] = pieces
        return pieces

    def page_body(self, rows: np.ndarray, offset: int, limit: int) -> bytes:
        """A page of the at-risk list (``AtRiskPage``) as JSON bytes."""
        from churnlens._io import frame_records

        page = rows[offset: offset + limit]
        items = (self.score_rows.records(page) if self.score_rows is not None
                 else frame_records(self.scores.iloc[page]))
        payload = {"items": items, "total": len(rows), "limit": limit, "offset": offset}
        return json.dumps(payload, allow_nan=False, separators=(",", ":")).encode()


def series_key(every: str, window_days: int | None) -> tuple[Any, ...]:
    """The read cache key of a retention series (:meth:`ServingState.retention_series`)."""
    return ("series", every, window_days)


def cohorts_key() -> tuple[Any, ...]:
    """The read cache key of the cohort table (:meth:`ServingState.cohort_table`)."""
    return ("cohorts",)


def rates_key(start: dt.date, end: dt.date, window_days: int | None) -> tuple[Any, ...]:
    """The read cache key of a period's rates (:meth:`ServingState.retention_rates`)."""
    return ("rates", pd.Timestamp(start).date(), pd.Timestamp(end).date(), window_days)


def warm_reads(state: ServingState) -> None:
    """Answer now what the web page's overview and at-risk list ask first.

    The retention series of the default periods (the model's horizon), the rates of its
    last complete period, the cohort table, the customers per band, per segment and per
    value of each categorical attribute (served with a customer table), and the at-risk
    list of each risk band for each sort: the first visitor after a start or
    a reload waits for none of them (at 1M customers the retention reads take seconds
    each; ``bench/bench_web.py``).
    """
    from churnlens._rules import BANDS, SORT_KEYS

    series = state.retention_series(f"{state.artifact.horizon_days}d")
    complete = series.loc[series["complete"].astype(bool)]
    if len(complete):
        last = complete.iloc[-1]
        state.retention_rates(pd.Timestamp(last["start"]).date(),
                              pd.Timestamp(last["end"]).date())
    state.cohort_table()
    for column in ("risk_band", "segment", *state.categorical_attributes().values()):
        if column in state.scores:
            state.value_counts(column)
    for sort in SORT_KEYS:
        for band in BANDS:
            state.at_risk_rows(sort, None, None, band)


def csv_pieces(frame: pd.DataFrame, pause: Callable[[], None] | None = None) -> list[bytes]:
    """A list as spreadsheet-safe CSV (:func:`churnlens._io.csv_text`) in pieces of
    ``_CSV_PIECE_ROWS`` rows, the header in the first; ``pause`` is called between
    pieces (the read thread yields to scoring there)."""
    from churnlens._io import csv_text

    pieces = []
    for start in range(0, max(len(frame), 1), _CSV_PIECE_ROWS):
        if start and pause is not None:
            pause()
        pieces.append(csv_text(frame.iloc[start: start + _CSV_PIECE_ROWS],
                               spreadsheet_safe=True, header=start == 0).encode())
    return pieces


def list_key(kind: str, sort: str, min_risk: float | None, segment: str | None,
              band: str | None) -> tuple[Any, ...]:
    """The cache key of an at-risk list (the whole base's keys as before lists existed)."""
    filters = (sort, min_risk, segment, band)
    return filters if kind == "all" else (kind, *filters)


def build_state(
    artifact: ModelArtifact,
    transactions: pd.DataFrame,
    as_of: str | dt.date | None = None,
    *,
    scoring: ScoringSettings | None = None,
    settings: Settings | None = None,
    inputs: InputTables | None = None,
) -> ServingState:
    """Score the base at ``as_of`` (default: the data's last day) and index it.

    Parameters
    ----------
    artifact
        The model.
    transactions
        Clean transactions (:func:`churnlens.load_transactions`).
    as_of
        Scoring date.
    scoring
        Risk band thresholds.
    settings
        The settings the state serves with (kept on the state; its ``scoring`` is used
        when ``scoring`` is not given).
    inputs
        The customer and event tables (issue 21) the base is scored with; required by a
        model trained with them (:func:`require_inputs`).

    Returns
    -------
    ServingState
        The scored base, its at-risk orders and its indexes, with the web page's first
        reads answered already (:func:`warm_reads`).

    Raises
    ------
    InputsRequiredError
        The model was trained with a customer (event) table and none is given.
    """
    from churnlens._rules import SORT_KEYS, at_risk_list
    from churnlens._scoring import score_customers

    spec, inputs = require_inputs(artifact, inputs)
    scoring = scoring or (settings.scoring if settings is not None else ScoringSettings())
    day = pd.Timestamp(as_of).date() if as_of else transactions["timestamp"].max().date()
    result = score_customers(transactions, day, artifact, settings=scoring, allow_past=True,
                             inputs=inputs)
    scores = result.scores
    rows = scores.assign(_row=np.arange(len(scores)))
    # The at-risk order is the library's (at_risk_list); computed once per sort key so
    # that a page costs O(limit), not a sort of the whole base.
    ranked = {key: at_risk_list(rows, kind="all", sort=key)["_row"].to_numpy()
              for key in SORT_KEYS}
    offsets = artifact.model.bgnbd_offset(result.features)
    offset_center = float(np.mean(offsets)) if len(offsets) else None
    state = ServingState(
        artifact=artifact, transactions=transactions, scores=scores, features=result.features,
        summary=result.summary, as_of=day,
        loaded_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        index={str(c): i for i, c in enumerate(scores["customer_id"].tolist())},
        ranked=ranked, scoring=scoring, offset_center=offset_center,
        score_rows=RowReader(scores), feature_rows=RowReader(result.features),
        feature_profile=result.feature_profile, settings=settings, inputs=inputs,
        input_spec=spec if spec.groups else None,
    )
    try:
        warm_reads(state)
    except Exception as exc:  # a read that fails here fails again, as a 422, when asked
        _log.warning("the web page's first reads were not prepared: %s", exc)
    return state


def require_inputs(artifact: ModelArtifact, inputs: InputTables | None
                   ) -> tuple[InputSpec, InputTables | None]:
    """The model's input spec and the tables it scores with, checked before any work.

    The scoring's own check (:func:`churnlens._scoring.check_inputs`): a table the model
    was not trained with is left out (with a warning), a table it needs and that is not
    given is refused.

    Raises
    ------
    InputsRequiredError
        The model was trained with a customer table (an event table) and ``inputs`` has
        none: the message names the model's attributes (event types) and the option to
        pass (``--customers-file``/``--events-file``, ``customers=``/``events=``).
    """
    from churnlens._input_features import spec_of
    from churnlens._scoring import check_inputs

    return spec_of(artifact.model), check_inputs(artifact, inputs)


def load_state(
    transactions_source: Any,
    model: str,
    settings: Settings,
    *,
    as_of: str | dt.date | None = None,
    ledger: bool = False,
    inputs: InputTables | None = None,
    inputs_for: Callable[[ModelArtifact], InputTables | None] | None = None,
) -> ServingState:
    """Load the model (every check of the one loader) and the transactions, score the base.

    Parameters
    ----------
    transactions_source
        A path or a frame, as :func:`churnlens.load_transactions` takes it.
    model
        A model URI (``models:/churnlens@champion``) or a bundle folder.
    settings
        Column names, tracking store and risk bands.
    as_of
        Scoring date (default: the data's last day).
    ledger
        Record the scoring in the prediction ledger (:mod:`churnlens._ledger`, source
        ``serve``). A ledger failure does not stop serving: it is logged as a warning
        and kept as ``ledger_error`` (credentials masked).
    inputs
        The customer and event tables (issue 21); a model trained with them refuses to
        load without them, before the transactions are read.
    inputs_for
        Instead of ``inputs``: called with the loaded model, it gives the tables (the
        CLI's ``serve`` refuses a missing table and reads only the files the model uses,
        before the transactions are read).

    Returns
    -------
    ServingState
        The scored base.

    Raises
    ------
    ModelError
        The model cannot be loaded or fails a check (the same refusal as
        ``churnlens score``).
    DataValidationError
        The transactions break the data contract.
    """
    from churnlens._loading import load_transactions
    from churnlens._model_loader import load_model

    artifact = load_model(model, settings.mlflow)
    if inputs_for is not None:
        inputs = inputs_for(artifact)
    require_inputs(artifact, inputs)  # before the (long) loading of the transactions
    tx, _ = load_transactions(
        transactions_source, **settings.data.loader_options(), as_of=as_of)
    state = build_state(artifact, tx, as_of, scoring=settings.scoring, settings=settings,
                        inputs=inputs)
    state = record_in_ledger(state) if ledger else state
    warm_monitoring(state)
    return state


# The read cache key of the monitoring report (GET /monitoring, /health's alert count).
MONITORING_KEY = ("monitoring",)


def warm_monitoring(state: ServingState) -> None:
    """Compute the state's monitoring report now, before it is served (after its own
    scoring is recorded in the ledger): ``GET /monitoring`` and ``/health`` find it in
    ``state.read_cache[MONITORING_KEY]`` (:mod:`churnlens.api.monitoring`).

    A ChurnlensError (no ledger entry yet, a store that cannot be read) is kept in its
    place, as the request path keeps it; any other failure is logged and left to the
    request path.
    """
    from churnlens._monitoring import monitor_ledger
    from churnlens.exceptions import ChurnlensError

    if state.settings is None:
        return
    outcome: Any
    try:
        outcome = monitor_ledger(state.transactions, state.settings).to_dict()
    except ChurnlensError as exc:
        outcome = exc
    except Exception as exc:  # left to the request path, which says why
        _log.warning("the monitoring report was not prepared: %s",
                     redact_uri_credentials(str(exc)))
        return
    state.read_cache[MONITORING_KEY] = outcome


def record_in_ledger(state: ServingState) -> ServingState:
    """The state with its scoring recorded in the prediction ledger (source ``serve``).

    Never raises for a ledger failure: the state comes back with ``ledger_error`` (the
    reason, credentials masked) and a warning is logged.
    """
    from churnlens._ledger import record_scoring
    from churnlens._scoring import ScoreResult

    result = ScoreResult(scores=state.scores, summary=state.summary, features=state.features,
                         feature_profile=state.feature_profile)
    try:
        run_id = record_scoring(result, state.artifact, state.settings or Settings(),
                                source="serve")
    except Exception as exc:  # the ledger never stops serving
        error = redact_uri_credentials(str(exc))
        _log.warning("ledger: the scoring at %s was not recorded; serving anyway: %s",
                     state.as_of, error)
        return dataclasses.replace(state, ledger_error=error)
    return dataclasses.replace(state, ledger_run_id=run_id)


class StateHolder:
    """The state being served, and ``/reload``: build a new one, then swap.

    Parameters
    ----------
    loader
        Builds a fresh :class:`ServingState` (at start-up and on every reload).
    initial
        A state already loaded (skips the start-up load).
    """

    def __init__(self, loader: Callable[[], ServingState],
                 initial: ServingState | None = None) -> None:
        self.loader = loader
        self.state: ServingState = initial or loader()
        self.error: str | None = None  # why the last reload failed (None: it did not)
        self.failed_at: str | None = None  # when it failed (UTC, ISO 8601)
        self._lock = threading.Lock()
        # POST /reload (reload_shared): the reload waiting to start, shared by every
        # request arriving meanwhile, and the turn of the reloads (per event loop)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._turn: asyncio.Lock | None = None
        self._next: asyncio.Task[tuple[ServingState, str | None]] | None = None

    @property
    def public_error(self) -> str | None:
        """What ``/health`` (no key needed) may say of a failed reload: that and when.

        The reason (which can name the tracking store) is for the authenticated
        ``/reload`` answer and the server log only.
        """
        if self.error is None:
            return None
        return (f"the last reload failed at {self.failed_at}; the previous model and data "
                "are still served (the reason is in the POST /reload answer and the "
                "server log)")

    def reload(self) -> tuple[ServingState, str | None]:
        """Load a new state and serve it; on any failure keep the old one and say why.

        The new state is built aside (in the caller's thread, never the event loop) and
        swapped in with one assignment; the reason of a failure is logged and returned
        with credentials in URIs masked (:func:`churnlens._redact.redact_uri_credentials`).

        Returns
        -------
        tuple
            ``(state served now, None)`` after a reload, ``(old state, why not)`` after
            a failure.
        """
        with self._lock:
            try:
                fresh = self.loader()
            except Exception as exc:  # any failure: keep the old state, say why
                self.error = redact_uri_credentials(f"{type(exc).__name__}: {exc}")
                self.failed_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
                _log.warning("reload failed, still serving the previous state: %s",
                             self.error)
                return self.state, self.error
            self.state, self.error, self.failed_at = fresh, None, None
            if gc.get_freeze_count():  # `churnlens serve` froze the first state: freeze
                # the new one too. The old one is freed by reference counting as its last
                # requests finish; no full collection here: one took ~100 ms with the
                # interpreter lock held, a stall of every request in flight (its cyclic
                # leftovers are a few hundred small ctypes objects per reload; RSS stayed
                # flat over 8 reloads of a 10,000-customer base).
                gc.freeze()
        return fresh, None

    async def reload_shared(self) -> tuple[ServingState, str | None]:
        """:meth:`reload` for ``POST /reload``: one reload at a time, shared by requests.

        A request waits for a reload that starts after it arrived: the one waiting for
        the reload under way to finish, which every request arriving meanwhile shares.
        However many requests arrive together, at most one reload runs and one waits
        (before, each ran its own, one after another, each holding a worker thread);
        the reload runs in a worker thread, never on the event loop.
        """
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._turn is None:  # (a test client may run
            self._loop, self._turn, self._next = loop, asyncio.Lock(), None  # several)
        if self._next is None:
            self._next = loop.create_task(self._next_reload(self._turn))
        # shielded: a client that goes away does not cancel the reload others wait for
        return await asyncio.shield(self._next)

    async def _next_reload(self, turn: asyncio.Lock) -> tuple[ServingState, str | None]:
        async with turn:  # after the reload under way
            if self._next is asyncio.current_task():
                self._next = None  # requests arriving from now on wait for the next one
            return await asyncio.to_thread(self.reload)

