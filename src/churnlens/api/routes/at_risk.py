"""``GET /at-risk``: the at-risk list, a page as JSON or the whole list as CSV;
``GET /at-risk/facets``: what it can be filtered by."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from churnlens._rules import attribute_filters as attribute_filters_of
from churnlens._rules import attribute_match
from churnlens.api.deps import E401, CurrentState, Reads, secured
from churnlens.api.errors import unprocessable
from churnlens.api.reads import ReadQueue
from churnlens.api.schemas import MAX_FACET_VALUES, AtRiskFacets, AtRiskPage
from churnlens.api.state import ServingState, csv_pieces, list_key
from churnlens.exceptions import ChurnlensError

if TYPE_CHECKING:
    from churnlens._rules import ProfitTerms

# A page of a few hundred rows costs ~1 ms: answered on the event loop; larger pages,
# new filters and CSV exports go to the read thread (churnlens.api.reads).
_INLINE_PAGE_ROWS = 500
ListKind = Literal["all", "campaign", "win-back"]
# attribute filters of one query (GET /at-risk?attribute=name:value): column -> values
AttributeFilters = dict[str, set[str | None]]
MAX_ATTRIBUTE_FILTERS = 20
# lists sized by profit kept per state (beside the other filters' lists)
_MAX_PROFIT_LISTS = 64

router = APIRouter(tags=["lists"], dependencies=secured, responses=E401)


@router.get("/at-risk", response_model=AtRiskPage, responses={
    200: {"content": {"text/csv": {"schema": {"type": "string"}}},
          "description": "A page (JSON) or the whole filtered list (CSV)."}})
async def at_risk(
    state: CurrentState,
    reads: Reads,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
    min_risk: Annotated[float | None, Query(ge=0, le=1)] = None,
    segment: Annotated[str | None, Query(max_length=100)] = None,
    band: Literal["high", "medium", "low"] | None = None,
    sort: Annotated[Literal["churn_risk", "value_at_risk", "expected_profit"] | None, Query(
        description="Order, descending (ties by customer id). Default: churn_risk for "
        "list=all, value_at_risk for campaign and win-back, expected_profit with "
        "cost_per_contact (allowed only then).")] = None,
    format: Literal["json", "csv"] | None = None,
    kind: Annotated[ListKind, Query(
        alias="list", description="all: the whole scored base, riskiest first (the CLI's "
        "at-risk --all); campaign: the customers worth a call (last purchase less than two "
        "horizons ago, band high or medium, by value at risk; the CLI's default list, "
        "uncut); win-back: the customers already gone (no purchase in two horizons), by "
        "value at risk.")] = "all",
    q: Annotated[str | None, Query(
        min_length=1, max_length=256,
        description="Keep the customers whose id contains this text (case-insensitive).")
    ] = None,
    min_value_at_risk: Annotated[float | None, Query(
        ge=0, le=1e15, description="Keep customers with value_at_risk >= this.")] = None,
    control_fraction: Annotated[float | None, Query(
        gt=0, lt=1, description="With format=csv: hold back this share of each risk band "
        "as a random control group (columns group, treatment or control, and list_id; "
        "read out with churnlens campaign), as churnlens at-risk --control-fraction.")
    ] = None,
    seed: Annotated[int, Query(ge=0, le=2**32 - 1, description="Seed of the control group "
                                                               "draw.")] = 0,
    cost_per_contact: Annotated[float | None, Query(
        ge=0, le=1e15, allow_inf_nan=False, description="Size the list by profit (as "
        "churnlens at-risk --cost-per-contact): the cost of one contact. The list keeps "
        "the customers whose expected profit, churn_risk x save_rate x expected_value x "
        "margin - cost_per_contact, is positive, by expected profit; each item gets "
        "expected_profit and the page expected_profit_total. Needs save_rate.")] = None,
    save_rate: Annotated[float | None, Query(
        gt=0, le=1, allow_inf_nan=False, description="With cost_per_contact: the share of "
        "would-be churners a contact keeps, in (0, 1].")] = None,
    margin: Annotated[float | None, Query(
        gt=0, le=1, allow_inf_nan=False, description="With cost_per_contact: the share of "
        "spend that is profit, in (0, 1] (default 1).")] = None,
    attribute: Annotated[list[str] | None, Query(
        max_length=MAX_ATTRIBUTE_FILTERS, description="Served with a customer table (serve "
        "--customers-file): keep the customers whose categorical attribute has this value, "
        "as name:value (attribute=channel:web); repeat it for several (values of one "
        "attribute are alternatives, different attributes must all hold); an empty value "
        "(channel:) keeps the customers without one. The names and values are those of "
        "GET /at-risk/facets; an unknown or numeric attribute is a 422.")] = None,
) -> Response:
    """At-risk customers: by default the whole scored base, riskiest first (the CLI's
    ``at-risk --all``; filter by band, risk or segment); ``?list=campaign`` for the
    customers worth a call, ``?list=win-back`` for those already gone. ``?format=csv``
    or ``Accept: text/csv`` streams the whole filtered list as spreadsheet-safe CSV.
    ``q`` (text in the customer id) and ``min_value_at_risk`` narrow any of these lists,
    in the same order; the CSV of the same query is exactly the list the pages show.
    ``cost_per_contact`` with ``save_rate`` (and ``margin``) sizes any of these lists by
    profit (``churnlens._rules.at_risk_list``'s rule, the CLI's ``at-risk
    --cost-per-contact``)."""
    wanted = attribute_filters(state, attribute)
    terms = _profit_terms(cost_per_contact, save_rate, margin, sort)
    if sort is None:
        sort = ("expected_profit" if terms is not None
                else "churn_risk" if kind == "all" else "value_at_risk")
    csv_wanted = format == "csv" or (
        format is None and wants_csv(request.headers.get("accept", "")))
    if control_fraction is not None and not csv_wanted:
        raise unprocessable("a control group is drawn for the download of a list: add "
                            "format=csv", ("query", "control_fraction"))
    if terms is not None:
        control = None if control_fraction is None else (control_fraction, seed)
        return await _profitable(state, reads, csv_wanted, kind, sort, min_risk, segment,
                                 band, q, min_value_at_risk, offset, limit, control, terms,
                                 wanted)
    if (q is not None or min_value_at_risk is not None or control_fraction is not None
            or wanted):
        control = None if control_fraction is None else (control_fraction, seed)
        return await _narrowed(state, reads, csv_wanted, kind, sort, min_risk, segment,
                               band, q, min_value_at_risk, offset, limit, control, wanted)
    if csv_wanted:
        # written once per state and filter, on the read thread (never the event loop)
        pieces = state.csv_cache.get(list_key(kind, sort, min_risk, segment, band))
        if pieces is None:
            pieces = await reads.run(state.at_risk_csv, sort, min_risk, segment, band,
                                     reads.pause, kind)
        reads.check_room()
        name = "at-risk" if kind == "all" else kind
        return StreamingResponse(_stream(reads, pieces), media_type="text/csv",
                                 headers={"Content-Disposition":
                                          f"attachment; filename={name}.csv"})
    rows = state.cached_at_risk_rows(sort, min_risk, segment, band, kind)
    if rows is None:  # a new filter: at_risk_list over the whole base, off the loop
        rows = await reads.run(state.at_risk_rows, sort, min_risk, segment, band, kind)
    if limit <= _INLINE_PAGE_ROWS:
        body = state.page_body(rows, offset, limit)
    else:
        body = await reads.run(state.page_body, rows, offset, limit)
    return Response(body, media_type="application/json")


async def _narrowed(state: ServingState, reads: ReadQueue, csv_wanted: bool, kind: str,
                    sort: str, min_risk: float | None, segment: str | None,
                    band: str | None, q: str | None, min_value_at_risk: float | None,
                    offset: int, limit: int, control: tuple[float, int] | None,
                    wanted: AttributeFilters | None = None) -> Response:
    """The list of the other filters, narrowed by ``q``, ``min_value_at_risk`` and the
    attribute filters; its CSV with a control group drawn when ``control`` (fraction,
    seed) is given."""
    rows = state.cached_at_risk_rows(sort, min_risk, segment, band, kind)
    if rows is None:
        rows = await reads.run(state.at_risk_rows, sort, min_risk, segment, band, kind)
    if q is not None or min_value_at_risk is not None or wanted:
        rows = await reads.run(narrow_rows, state, rows, q, min_value_at_risk, wanted)
    if csv_wanted:
        pieces = await reads.run(_csv_pieces, state, rows, reads.pause, control)
        reads.check_room()
        name = "at-risk" if kind == "all" else kind
        return StreamingResponse(_stream(reads, pieces), media_type="text/csv",
                                 headers={"Content-Disposition":
                                          f"attachment; filename={name}.csv"})
    body = await reads.run(state.page_body, rows, offset, limit)
    return Response(body, media_type="application/json")


def _profit_terms(cost_per_contact: float | None, save_rate: float | None,
                  margin: float | None, sort: str | None) -> ProfitTerms | None:
    """The checked profit terms of a query (a 422 naming the parameter when wrong)."""
    from churnlens._rules import profit_terms

    try:
        terms = profit_terms(cost_per_contact, save_rate, margin)
    except ChurnlensError as exc:
        lacking = "margin" if cost_per_contact is None and save_rate is None else (
            "save_rate" if save_rate is None else "cost_per_contact")
        raise unprocessable(str(exc), ("query", lacking)) from exc
    if terms is None and sort == "expected_profit":
        raise unprocessable("sort=expected_profit orders a list sized by profit. "
                            "Suggestion: add cost_per_contact and save_rate, or sort by "
                            "churn_risk or value_at_risk.", ("query", "sort"))
    return terms


def profit_rows(state: ServingState, kind: str, sort: str, min_risk: float | None,
                segment: str | None, band: str | None, terms: ProfitTerms) -> np.ndarray:
    """Rows (positions in ``state.scores``) of a list sized by profit, in its order.

    :func:`churnlens._rules.at_risk_list` with ``profit`` over the whole base (uncut, as
    the other lists the API serves), kept per state and query (``state.filtered``).
    """
    from churnlens._rules import at_risk_list

    key = ("profit", kind, sort, min_risk, segment, band, terms)
    rows = state.filtered.get(key)
    if rows is None:
        rows = at_risk_list(state.scores.assign(_row=np.arange(len(state.scores))),
                            kind=kind, horizon_days=state.artifact.horizon_days,
                            top=None, min_risk=min_risk, segment=segment, band=band,
                            sort=sort, profit=terms)["_row"].to_numpy()
        if len(state.filtered) < _MAX_PROFIT_LISTS:
            state.filtered[key] = rows
    return rows


def row_profits(state: ServingState, rows: np.ndarray, terms: ProfitTerms) -> np.ndarray:
    """The expected profit of contacting the customers at these rows (the rule's)."""
    from churnlens._rules import expected_profit

    scores = state.scores
    return expected_profit(scores["churn_risk"].to_numpy(dtype=np.float64)[rows],
                           scores["expected_value"].to_numpy(dtype=np.float64)[rows], terms)


async def _profitable(state: ServingState, reads: ReadQueue, csv_wanted: bool, kind: str,
                      sort: str, min_risk: float | None, segment: str | None,
                      band: str | None, q: str | None, min_value_at_risk: float | None,
                      offset: int, limit: int, control: tuple[float, int] | None,
                      terms: ProfitTerms, wanted: AttributeFilters | None = None
                      ) -> Response:
    """A list sized by profit: a page with its size and expected total profit, or CSV."""
    rows = await reads.run(profit_rows, state, kind, sort, min_risk, segment, band, terms)
    if q is not None or min_value_at_risk is not None or wanted:
        rows = await reads.run(narrow_rows, state, rows, q, min_value_at_risk, wanted)
    gains = await reads.run(row_profits, state, rows, terms)
    if csv_wanted:
        pieces = await reads.run(_csv_pieces, state, rows, reads.pause, control, gains)
        reads.check_room()
        name = "at-risk" if kind == "all" else kind
        return StreamingResponse(_stream(reads, pieces), media_type="text/csv",
                                 headers={"Content-Disposition":
                                          f"attachment; filename={name}.csv"})
    body = await reads.run(_profit_page, state, rows, gains, offset, limit, terms)
    return Response(body, media_type="application/json")


def _profit_page(state: ServingState, rows: np.ndarray, gains: np.ndarray, offset: int,
                 limit: int, terms: ProfitTerms) -> bytes:
    page = json.loads(state.page_body(rows, offset, limit))
    for item, gain in zip(page["items"], gains[offset: offset + limit].tolist(), strict=True):
        item["expected_profit"] = gain
    page["expected_profit_total"] = float(gains.sum())
    page["profit"] = terms.as_dict()
    return json.dumps(page, allow_nan=False, separators=(",", ":")).encode()


def attribute_filters(state: ServingState, given: list[str] | None) -> AttributeFilters:
    """The checked ``attribute=name:value`` filters of a query: column -> values kept.

    Raises
    ------
    HTTPException
        422 naming the parameter: not ``name:value``, or a name that is not a
        categorical attribute column of the served list (the message lists them).
    """
    from churnlens.exceptions import DataValidationError

    if not given:
        return {}
    columns = state.categorical_attributes()
    numeric = set(state.attribute_columns()) - set(columns)
    try:  # the CLI's rule (at-risk --attribute): one parser, one message
        return attribute_filters_of(
            given, columns, numeric, where="attribute filter",
            example="attribute=channel:web (GET /at-risk/facets lists the values)")
    except DataValidationError as exc:
        raise unprocessable(str(exc), ("query", "attribute")) from None


def narrow_rows(state: ServingState, rows: np.ndarray, q: str | None,
                min_value_at_risk: float | None,
                attributes: AttributeFilters | None = None) -> np.ndarray:
    """Narrow an at-risk list by customer id text, value at risk and attributes, keeping
    its order.

    Parameters
    ----------
    state
        The served state whose ``scores`` the rows point into.
    rows
        Positions in ``state.scores``, in list order.
    q
        Keep the customers whose id (as text) contains this, case-insensitive.
    min_value_at_risk
        Keep the customers with ``value_at_risk`` at least this.
    attributes
        Column of the scores -> the values kept (``None``: a missing value), from
        :func:`attribute_filters`; every column must match.

    Returns
    -------
    numpy.ndarray
        The positions kept, in their order.
    """
    keep = np.ones(len(rows), dtype=bool)
    if min_value_at_risk is not None:
        values = state.scores["value_at_risk"].to_numpy(dtype=np.float64)[rows]
        keep &= values >= min_value_at_risk
    if q:
        ids = state.scores["customer_id"].iloc[rows].astype("string")
        keep &= ids.str.contains(q, case=False, regex=False).fillna(False).to_numpy(bool)
    for column, values in (attributes or {}).items():
        keep &= attribute_match(state.scores[column].iloc[rows], values)
    return rows[keep]


def _csv_pieces(state: ServingState, rows: np.ndarray, pause: Callable[[], None],
                control: tuple[float, int] | None = None,
                gains: np.ndarray | None = None) -> list[bytes]:
    frame = state.scores.iloc[rows]
    if gains is not None:  # a list sized by profit: the CLI's column expected_profit
        frame = frame.assign(expected_profit=gains)
    if control is not None:
        # the CLI's draw (churnlens at-risk --control-fraction): stratified by risk band,
        # seeded, with the list's id; the list is not recorded in the ledger from a GET
        from churnlens._campaign import assign_control_group, campaign_list_id

        fraction, seed = control
        frame = assign_control_group(frame, fraction, seed=seed)
        frame["list_id"] = campaign_list_id(frame["customer_id"], fraction=fraction,
                                            seed=seed)
    return csv_pieces(frame, pause)  # the dialect and pieces of ServingState.at_risk_csv


@router.get("/at-risk/facets", response_model=AtRiskFacets)
async def at_risk_facets(state: CurrentState, reads: Reads) -> AtRiskFacets:
    """The scored base by risk band and by segment (what ``GET /at-risk`` filters on)."""
    if state.cached_read(("value_counts", "segment")) is not None:
        return _facets(state)  # counts kept by the state (build_state): microseconds
    return await reads.run(_facets, state)


def _facets(state: ServingState) -> AtRiskFacets:
    from churnlens._rules import SEGMENT_RULES

    scores = state.scores
    # the counts are kept per state (ServingState.value_counts), the maximum is one pass
    bands = state.value_counts("risk_band")
    segments = state.value_counts("segment")
    values = scores["value_at_risk"]
    top = values.max() if len(values) else None
    attributes = {}
    for name, column in state.categorical_attributes().items():
        counts = state.value_counts(column)  # kept per state
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        attributes[name] = dict(ranked[:MAX_FACET_VALUES])
    return AtRiskFacets(
        total=len(scores),
        bands={name: int(bands.get(name, 0)) for name in ("high", "medium", "low")},
        segments={rule.segment: int(segments.get(rule.segment, 0)) for rule in SEGMENT_RULES},
        max_value_at_risk=None if top is None or top != top else float(top),
        attributes=attributes, attribute_columns=list(state.attribute_columns().values()))


async def _stream(reads: ReadQueue, pieces: list[bytes]) -> AsyncIterator[bytes]:
    # in a read slot, stepping aside for scoring between pieces
    async with reads.slot(checked=True):
        for k, piece in enumerate(pieces):
            if k:
                await reads.step_aside()
            yield piece


def wants_csv(accept: str) -> bool:
    """Whether ``Accept`` prefers text/csv to JSON (q-values respected)."""
    best: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        best[media.lower()] = max(best.get(media.lower(), 0.0), q)
    csv_q = best.get("text/csv", 0.0)
    json_q = max(best.get("application/json", 0.0), best.get("*/*", 0.0))
    return csv_q > 0 and csv_q >= json_q

