"""Realistic synthetic purchase histories for demos, tests and benchmarks.

The generator is a vectorised simulation, so one million customers take seconds:

- customers are acquired over the period, more of them later (a growing business);
- each has their own purchase rate (gamma-distributed across customers) and their
  own probability of dropping out after each purchase (beta-distributed): the
  "buy till you die" story, so churn is real and learnable;
- purchases follow a Poisson process thinned by seasonality (a yearly wave and a
  year-end peak);
- spend varies by customer and by occasion; an occasion can have several rows on the
  same day (several items), and a few purchases are partly refunded later
  (negative amounts).

The same ``seed`` always gives the same rows, in the same order.

Keyword knobs shape other kinds of purchase logs (the regimes of
``bench/bench_quality.py``): a log that starts mid-life (``history_start``), a stronger
season (``season_strength``), frequent loyal buyers (``mean_gap_days``,
``dropout_beta``, ``rate_shape``), one-time buyers (``one_time_share``), the pace of
growth (``acquisition_power``) and a change of behaviour on a date (``shift_date``,
``shift_dropout_factor``). With every knob at its default the rows are the same as
without them: the extra random numbers are drawn only when a knob asks for them.

:func:`generate_inputs` adds the optional inputs of issue 21 with known effects: a
customer table (the channel drives dropout), an event table (email opens fade before a
dropout) and, with ``details=True``, the transactions' optional columns (order id,
quantity, category, channel, discount; customers who drop out sooner buy in fewer
categories), each from a random stream of its own.

Large files stream: :func:`write_transactions` simulates :data:`CHUNK_CUSTOMERS`
customers at a time (each chunk from its own seeded stream) and appends each chunk to
the Parquet or CSV file, so ten million customers take the memory of two hundred
thousand. Up to one chunk the rows are those of :func:`generate_transactions`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np
import pandas as pd

from churnlens._validation import parse_date, require_positive_int
from churnlens.exceptions import ChurnlensError

__all__ = [
    "CATEGORIES",
    "CHANNELS",
    "CHUNK_CUSTOMERS",
    "DETAIL_COLUMNS",
    "GeneratedFile",
    "SyntheticInputs",
    "generate_inputs",
    "generate_transactions",
    "iter_transaction_chunks",
    "write_transactions",
]

#: Customers simulated at a time by :func:`write_transactions` (and
#: :func:`iter_transaction_chunks`): about 1.8 million rows with the defaults, and a
#: process peak of about 0.7 GiB whatever the number of customers. Up to this many
#: customers a written file holds exactly the rows of :func:`generate_transactions`; the
#: rows of a larger file depend on it, so it is fixed (a file's rows change if it does).
CHUNK_CUSTOMERS = 200_000

_COUNTRIES = np.array(["US", "GB", "DE", "FR", "NL"])
_COUNTRY_SHARE = np.array([0.45, 0.2, 0.15, 0.12, 0.08])
_SECONDS_OPEN, _SECONDS_CLOSE = 8 * 3600, 22 * 3600
# The keywords of generate_transactions after n_customers and seed, with their defaults.
_OPTION_DEFAULTS: dict[str, Any] = {
    "start": "2023-01-01", "end": "2024-12-31", "mean_gap_days": 21.0,
    "refund_share": 0.02, "history_start": None, "season_strength": 1.0,
    "dropout_beta": (2.0, 14.0), "rate_shape": 1.2, "one_time_share": 0.0,
    "acquisition_power": 0.75, "shift_date": None, "shift_dropout_factor": 1.0,
}


def generate_transactions(
    n_customers: int = 10_000,
    *,
    seed: int = 0,
    start: str | dt.date = "2023-01-01",
    end: str | dt.date = "2024-12-31",
    mean_gap_days: float = 21.0,
    refund_share: float = 0.02,
    history_start: str | dt.date | None = None,
    season_strength: float = 1.0,
    dropout_beta: tuple[float, float] = (2.0, 14.0),
    rate_shape: float = 1.2,
    one_time_share: float = 0.0,
    acquisition_power: float = 0.75,
    shift_date: str | dt.date | None = None,
    shift_dropout_factor: float = 1.0,
) -> pd.DataFrame:
    """Simulate purchase transactions.

    Parameters
    ----------
    n_customers
        Customers to simulate (each makes at least one purchase; with
        ``history_start``, customers whose purchases all fall before ``start`` are not
        in the data).
    seed
        Random seed; the same seed gives identical output.
    start, end
        First and last day of the data (inclusive).
    mean_gap_days
        Average days between purchases of an average customer while active.
    refund_share
        Share of rows that get a later partial refund (a negative amount).
    history_start
        Simulate from this day (before ``start``) and keep only the rows from ``start``
        on: a log that begins mid-life, where many customers were acquired, and some
        already lost, before its first day. Refunds of purchases made before ``start``
        are dropped with them. Default: the simulation starts at ``start``.
    season_strength
        Scales the yearly wave (+-25% at 1) and the year-end peak (+60% at 1); 0 gives
        no season, at most 3.
    dropout_beta
        The two parameters ``(a, b)`` of the beta distribution of each customer's
        probability of dropping out after a purchase (mean ``a / (a + b)``, 0.125 by
        default); ``(1, 200)`` gives loyal customers.
    rate_shape
        Gamma shape of the purchase rates across customers (their mean stays
        ``1 / mean_gap_days``): larger values give more alike customers, fewer very
        slow buyers.
    one_time_share
        Share of customers, in [0, 1), made to drop out right after their first
        purchase, on top of the ones who do so by chance.
    acquisition_power
        Acquisition day = ``span * u ** acquisition_power`` with ``u`` uniform: 1 is a
        steady flow of new customers, smaller values put more of them late (0.75, the
        default, a growing business; 0.4 fast growth), larger values more of them early.
    shift_date
        From this day on, each customer's dropout probability after a purchase is
        multiplied by ``shift_dropout_factor`` (capped at 1): a change of behaviour
        partway through the data. Must lie within the simulated period.
    shift_dropout_factor
        The multiplier of ``shift_date`` (positive; above 1 churn rises). Needs
        ``shift_date`` when it is not 1.

    Returns
    -------
    pandas.DataFrame
        Columns ``customer_id`` (text such as ``"C0000042"``, leading zeros
        included), ``timestamp``, ``amount`` and ``country`` (a customer attribute,
        constant per customer, for segment analyses), sorted by time. About 8 rows
        per customer with the defaults.

    Examples
    --------
    >>> tx = generate_transactions(200, seed=1)
    >>> list(tx.columns)
    ['customer_id', 'timestamp', 'amount', 'country']
    >>> tx.equals(generate_transactions(200, seed=1))
    True
    >>> truncated = generate_transactions(200, seed=1, history_start="2021-01-01")
    >>> str(truncated["timestamp"].min().date()) >= "2023-01-01"
    True
    """
    n = require_positive_int(n_customers, name="n_customers")
    plan = _plan(
        start=start, end=end, mean_gap_days=mean_gap_days, refund_share=refund_share,
        history_start=history_start, season_strength=season_strength,
        dropout_beta=dropout_beta, rate_shape=rate_shape, one_time_share=one_time_share,
        acquisition_power=acquisition_power, shift_date=shift_date,
        shift_dropout_factor=shift_dropout_factor,
    )
    return _simulate(np.random.default_rng(seed), n, plan, first_id=1,
                     width=_id_width(n))


def _simulate(rng: np.random.Generator, n: int, plan: _Plan, *, first_id: int,
              width: int) -> pd.DataFrame:
    """Simulate ``n`` customers with ids ``first_id ..`` (``width`` digits) from ``rng``.

    Every draw is per customer or per row, so a population simulated in parts (one
    ``rng`` per part, see :func:`iter_transaction_chunks`) follows the same law as one
    simulated at once; the rows of ``n`` customers from ``default_rng(seed)`` with
    ``first_id=1`` are the rows of :func:`generate_transactions`.
    """
    return _simulate_all(rng, n, plan, first_id=first_id, width=width, inputs=None)[0]


def _simulate_all(rng: np.random.Generator, n: int, plan: _Plan, *, first_id: int,
                  width: int, inputs: _InputsDraw | None
                  ) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None]:
    """:func:`_simulate`, and with ``inputs`` the customer and event tables too.

    The inputs draw their random numbers from ``inputs.rng`` only, never from ``rng``:
    with ``inputs.effects`` off the transactions are those of :func:`_simulate`; with it
    on, the channel multiplies each customer's dropout probability (the only change to
    the transactions).
    """
    first, span, offset, knobs = plan.first, plan.span, plan.offset, plan.knobs
    simulated_first = knobs.simulated_first
    acquisition_power, rate_shape = plan.acquisition_power, plan.rate_shape
    mean_gap_days, one_time_share = plan.mean_gap_days, plan.one_time_share
    season_strength, shift_dropout_factor = plan.season_strength, plan.shift_dropout_factor
    refund_share = plan.refund_share

    # Customers: acquisition day (growing business), rate, dropout, spend, country.
    acquired = np.floor(span * rng.random(n) ** acquisition_power).astype(np.int64)
    rate = rng.gamma(shape=rate_shape, scale=1.0 / (rate_shape * mean_gap_days), size=n)  # per day
    dropout = rng.beta(*knobs.dropout_beta, size=n)
    attributes = None
    if inputs is not None:
        attributes = _draw_attributes(inputs.rng, n, acquired, span)
        if inputs.effects:
            dropout = np.minimum(dropout * _CHANNEL_DROPOUT[attributes["channel"]], 1.0)
    purchases_until_dropout = rng.geometric(dropout)  # >= 1, the first purchase included
    mean_spend = rng.gamma(shape=3.0, scale=15.0, size=n) + 5.0
    country = rng.choice(len(_COUNTRIES), size=n, p=_COUNTRY_SHARE)
    if one_time_share > 0:
        purchases_until_dropout[rng.random(n) < one_time_share] = 1

    # Candidate purchase days after acquisition: a Poisson process at the peak
    # seasonal rate, thinned below by the seasonal profile. Given their count, the
    # event times are sorted uniforms, drawn already sorted as normalised partial
    # sums of exponentials (no sort of tens of millions of events).
    # An upper bound of the seasonal profile: 1.9 with the default season (kept as it
    # was, so that the default rows do not change), 1 + 0.85 * strength when stronger.
    peak = max(1.9, 1.0 + 0.85 * season_strength)
    window = span - 1 - acquired
    n_candidates = np.minimum(rng.poisson(rate * peak * window), 400)
    slots = n_candidates + 1  # slot 0 of each customer is the acquisition purchase
    owner = np.repeat(np.arange(n), slots)
    group_start = np.cumsum(slots) - slots
    gaps = rng.exponential(size=owner.size)
    gaps[group_start] = 0.0
    partial = np.cumsum(gaps)
    partial -= np.repeat(partial[group_start], slots)
    total = partial[np.cumsum(slots) - 1] + rng.exponential(size=n)
    position = partial / np.repeat(total, slots)  # sorted uniforms in [0, 1)
    day = np.repeat(acquired, slots) + np.ceil(position * np.repeat(window, slots)).astype(np.int64)
    day = np.minimum(day, span - 1)
    season = _season(simulated_first, span, season_strength)
    keep = rng.random(owner.size) * peak < season[day]
    keep[group_start] = True
    owner, day = owner[keep], day[keep]

    # Repeat purchases in time order until dropout; several on one day are one occasion.
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    ordinal = np.arange(owner.size) - np.repeat(starts, np.diff(np.r_[starts, owner.size]))
    if knobs.shift_day is None:
        alive = ordinal < purchases_until_dropout[owner]
    else:
        # Dropout decided purchase by purchase: after each one with the customer's
        # probability, multiplied from the shift day on; alive while no earlier
        # purchase ended in a dropout (the same law as the geometric draw above when
        # the factor is 1).
        chance = dropout[owner] * np.where(day >= knobs.shift_day, shift_dropout_factor, 1.0)
        ends = (rng.random(owner.size) < np.minimum(chance, 1.0)).astype(np.int64)
        ended_before = np.cumsum(ends) - ends  # dropouts before each purchase, all customers
        sizes = np.diff(np.r_[starts, owner.size])
        alive = ended_before == np.repeat(ended_before[starts], sizes)
    if inputs is not None:
        # Who drops out within the data, and on which day: the day of the last
        # purchase before the dropout (the email signal fades before it).
        if knobs.shift_day is None:
            dropped = purchases_until_dropout <= np.bincount(owner, minlength=n)
        else:
            dropped = np.bincount(owner, weights=ends, minlength=n) > 0
        last_day = np.zeros(n, dtype=np.int64)
        kept_owner, kept_day = owner[alive], day[alive]  # by customer, then by day
        ends_group = np.flatnonzero(np.r_[kept_owner[1:] != kept_owner[:-1], True])
        last_day[kept_owner[ends_group]] = kept_day[ends_group]
        dropout_day = np.where(dropped, last_day, np.iinfo(np.int64).max // 4)
    owner, day = owner[alive], day[alive]
    distinct = np.r_[True, (owner[1:] != owner[:-1]) | (day[1:] != day[:-1])]
    owner, day = owner[distinct], day[distinct]

    # Occasion spend, split into 1..k rows (items) on that day.
    occasion_spend = mean_spend[owner] * rng.gamma(6.0, 1.0 / 6.0, size=owner.size)
    rows = 1 + rng.poisson(0.45, size=owner.size)
    row_owner = np.repeat(owner, rows)
    row_day = np.repeat(day, rows)
    share = rng.gamma(2.0, 1.0, size=row_owner.size)
    share_sum = np.bincount(np.repeat(np.arange(owner.size), rows), weights=share)
    amount = np.repeat(occasion_spend / share_sum, rows) * share
    amount = np.maximum(np.round(amount, 2), 0.5)
    seconds = rng.integers(_SECONDS_OPEN, _SECONDS_CLOSE, size=row_owner.size)

    # Partial refunds, a few days later (never after the end of the data).
    refunded = rng.random(row_owner.size) < refund_share
    refund_day = row_day[refunded] + rng.integers(1, 21, size=int(refunded.sum()))
    in_range = refund_day < span
    refund_owner = row_owner[refunded][in_range]
    refund_amount = -np.round(amount[refunded][in_range] * rng.uniform(0.3, 1.0, in_range.sum()), 2)
    refund_seconds = rng.integers(_SECONDS_OPEN, _SECONDS_CLOSE, size=refund_owner.size)

    all_owner = np.concatenate([row_owner, refund_owner])
    all_day = np.concatenate([row_day, refund_day[in_range]])
    all_seconds = np.concatenate([seconds, refund_seconds])
    all_amount = np.concatenate([amount, refund_amount])
    details: dict[str, np.ndarray] | None = None
    if inputs is not None and inputs.details is not None and attributes is not None:
        details = _draw_details(inputs.details, attributes, dropout, owner, rows, amount,
                                np.flatnonzero(refunded)[in_range], effects=inputs.effects)
    if offset:
        # A log that starts mid-life: only the rows from ``start`` on, and no refund of
        # a purchase the log does not show.
        refund_of = row_day[refunded][in_range]
        shown = np.concatenate([row_day >= offset, refund_of >= offset])
        all_owner, all_day = all_owner[shown], all_day[shown] - offset
        all_seconds, all_amount = all_seconds[shown], all_amount[shown]
        if details is not None:
            details = {name: values[shown] for name, values in details.items()}
    order = np.argsort((all_day * 86_400 + all_seconds) * n + all_owner, kind="stable")

    base = np.datetime64(first.date(), "s")
    stamps = base + (all_day[order] * 86_400 + all_seconds[order]).astype("timedelta64[s]")
    ids = pd.Index([f"C{i:0{width}d}" for i in range(first_id, first_id + n)], dtype="str")
    transactions = pd.DataFrame(
        {
            "customer_id": ids.take(all_owner[order]),
            "timestamp": pd.DatetimeIndex(stamps).as_unit("s"),
            "amount": all_amount[order],
            "country": pd.Index(_COUNTRIES, dtype="str").take(country[all_owner[order]]),
        }
    )
    if details is not None:
        transactions = transactions.assign(**_details_columns(details, order, ids,
                                                              all_owner[order]))
    if inputs is None or attributes is None:
        return transactions, None, None
    shown_customers = np.zeros(n, dtype=bool)
    shown_customers[all_owner] = True  # customers with a row in the data
    customers = _customer_table(attributes, ids, shown_customers, acquired, offset, first)
    events = _event_table(inputs.rng, attributes, ids, shown_customers, acquired,
                          dropout_day, span, offset, first, effects=inputs.effects)
    return transactions, customers, events


# --- the optional inputs: a customer table and an event table with known effects -------

#: The channels of the customer table, their shares, and how each multiplies a customer's
#: dropout probability after a purchase (with ``input_effects``): web customers drop out
#: 1.6 times as often as store customers, app customers half as often.
CHANNELS = ("store", "web", "app")
CHANNEL_SHARES = (0.45, 0.35, 0.20)
CHANNEL_DROPOUT = (1.0, 1.6, 0.5)
_CHANNEL_DROPOUT = np.array(CHANNEL_DROPOUT)
#: Noise attributes (no effect on anything): a region, an age and a plan that some
#: customers change (a second row with its own ``valid_from``).
REGIONS = ("north", "south", "east", "west")
PLAN_SWITCH_SHARE = 0.25
#: Email opens: each customer opens at their own rate (gamma, mean 0.1 a day), and with
#: ``input_effects`` a customer who drops out opens less and less over the
#: ``EMAIL_FADE_DAYS`` before their last purchase (down to ``EMAIL_FADE_FLOOR`` of their
#: rate on that day) and ``EMAIL_AFTER_DROPOUT`` of it afterwards.
EMAIL_OPEN_RATE = 0.1
EMAIL_FADE_DAYS = 60
EMAIL_FADE_FLOOR = 0.2
EMAIL_AFTER_DROPOUT = 0.1
#: Site visits: noise events (gamma rate, mean 0.05 a day, whatever the customer does),
#: each with a value (pages viewed, 1 + Poisson(3)).
SITE_VISIT_RATE = 0.05
_MAX_EVENTS = 1_000  # per customer and type
#: The transactions' optional columns (``generate_inputs(..., details=True)``), with the
#: clean names of the data contract (the loader's ``order_col``, ``quantity_col``,
#: ``category_col``, ``channel_col`` and ``discount_col`` map them).
DETAIL_COLUMNS = ("order_id", "quantity", "category", "channel", "discount")
#: Product categories. Each customer has a main category (uniform) and buys a row
#: outside it (a category drawn uniformly) with their own ``spread``:
#: ``CATEGORY_SPREAD * exp(-CATEGORY_SPREAD_DECAY * dropout)``. With ``input_effects``
#: ``dropout`` is the customer's own dropout probability, so customers who drop out
#: sooner buy in fewer categories; without, it is another customer's (noise).
CATEGORIES = ("grocery", "home", "fashion", "beauty", "toys", "sports")
CATEGORY_SPREAD = 0.6
CATEGORY_SPREAD_DECAY = 4.0
#: The channel of a purchase (all rows of an occasion): the customer's own ``channel``
#: attribute with this probability, otherwise one of :data:`CHANNELS` uniformly.
PURCHASE_CHANNEL_LOYALTY = 0.75
#: Discounts (noise): each customer has a propensity (beta(1, 5), mean 1/6), each row is
#: discounted with it, by 5% to 35% of its paid amount (``discount``, in the amount's
#: currency; 0 on other rows and on refunds).
DISCOUNT_BETA = (1.0, 5.0)
#: A few occasions with several rows are split into two orders (the second order takes
#: each later row with probability 1/2).
SPLIT_ORDER_SHARE = 0.15
#: Items per row: 1 + Poisson(0.4); a refund row returns 1.
QUANTITY_EXTRA_MEAN = 0.4
_ORDERS_PER_CUSTOMER = 10_000  # order_id = customer number * this + the order's ordinal


class SyntheticInputs(NamedTuple):
    """What :func:`generate_inputs` simulates: transactions, customers and events.

    Attributes
    ----------
    transactions
        The columns of :func:`generate_transactions`.
    customers
        ``customer_id``, ``valid_from`` (day of the row's start: the acquisition day, or
        the day of a plan change), ``channel`` (store, web, app: drives dropout with
        ``input_effects``), ``region`` and ``age`` (noise) and ``plan`` (basic, plus:
        noise that changes over time). One row per customer, two for those who
        changed plan. Only customers who have transactions.
    events
        ``customer_id``, ``timestamp``, ``event_type`` (``email_open``: fades before a
        dropout with ``input_effects``; ``site_visit``: noise) and ``value`` (pages
        viewed for a site visit, missing for an email open), sorted by time.
    """

    transactions: pd.DataFrame
    customers: pd.DataFrame
    events: pd.DataFrame


@dataclasses.dataclass(frozen=True)
class _InputsDraw:
    rng: np.random.Generator
    effects: bool
    details: np.random.Generator | None = None  # the details' own stream; None: no details


def _inputs_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of the inputs of chunk ``index`` (never the transactions' one)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index, 1)))


def _details_rng(seed: int, index: int) -> np.random.Generator:
    """The stream of the optional transaction columns of chunk ``index`` (its own, so that
    asking for them changes neither the transactions nor the customer and event tables)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index, 2)))


def _draw_details(rng: np.random.Generator, attributes: dict[str, np.ndarray],
                  dropout: np.ndarray, owner: np.ndarray, rows: np.ndarray,
                  amount: np.ndarray, refunded_rows: np.ndarray, *,
                  effects: bool) -> dict[str, np.ndarray]:
    """The optional columns of every row, purchases then refunds (the order of
    ``all_owner`` in :func:`_simulate_all`), all from the details' own ``rng``.

    ``owner`` is the customer of each occasion (sorted by customer, then day), ``rows``
    its rows, ``amount`` each purchase row's paid amount and ``refunded_rows`` the
    purchase row of each refund.
    """
    n, occasions = dropout.size, owner.size
    # per customer: main category, spread outside it, discount propensity
    main = rng.integers(0, len(CATEGORIES), size=n)
    driver = dropout if effects else rng.permutation(dropout)
    spread = CATEGORY_SPREAD * np.exp(-CATEGORY_SPREAD_DECAY * driver)
    propensity = rng.beta(*DISCOUNT_BETA, size=n)
    # per occasion: the channel and whether it is split into two orders
    loyal = rng.random(occasions) < PURCHASE_CHANNEL_LOYALTY
    channel = np.where(loyal, attributes["channel"][owner],
                       rng.integers(0, len(CHANNELS), size=occasions))
    split = (rng.random(occasions) < SPLIT_ORDER_SHARE) & (rows > 1)
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    ordinal = np.arange(occasions) - np.repeat(starts, np.diff(np.r_[starts, occasions]))
    # per row
    occasion = np.repeat(np.arange(occasions), rows)
    row_owner = owner[occasion]
    first_row = np.r_[True, occasion[1:] != occasion[:-1]]
    second = split[occasion] & ~first_row & (rng.random(occasion.size) < 0.5)
    order_id = (row_owner * _ORDERS_PER_CUSTOMER + 2 * ordinal[occasion]
                + second).astype(np.int64)
    outside = rng.random(occasion.size) < spread[row_owner]
    category = np.where(outside, rng.integers(0, len(CATEGORIES), size=occasion.size),
                        main[row_owner])
    quantity = 1 + rng.poisson(QUANTITY_EXTRA_MEAN, size=occasion.size)
    discounted = rng.random(occasion.size) < propensity[row_owner]
    discount = np.where(discounted, np.round(
        amount * rng.uniform(0.05, 0.35, size=occasion.size), 2), 0.0)
    return {
        "order_id": np.concatenate([order_id, order_id[refunded_rows]]),
        "quantity": np.concatenate([quantity, np.ones(refunded_rows.size, dtype=np.int64)]),
        "category": np.concatenate([category, category[refunded_rows]]),
        "channel": np.concatenate([channel[occasion], channel[occasion][refunded_rows]]),
        "discount": np.concatenate([discount, np.zeros(refunded_rows.size)]),
    }


def _details_columns(details: dict[str, np.ndarray], order: np.ndarray, ids: pd.Index,
                     owner: np.ndarray) -> dict[str, Any]:
    """The optional columns in the transactions' row ``order``; order ids as text
    ``<customer id>-<ordinal>`` (unique across chunks: the customer id is)."""
    ordinal = details["order_id"][order] % _ORDERS_PER_CUSTOMER
    order_text = (pd.Series(ids.take(owner), dtype="str") + "-"
                  + pd.Series(ordinal, dtype="int64").astype("str").str.zfill(4))
    return {
        "order_id": pd.Index(order_text, dtype="str"),
        # float64, the clean type of a quantity (the loader's), so that the frame is
        # clean as generated (ensure_clean does not reload it)
        "quantity": details["quantity"][order].astype(np.float64),
        "category": pd.Index(CATEGORIES, dtype="str").take(details["category"][order]),
        "channel": pd.Index(CHANNELS, dtype="str").take(details["channel"][order]),
        "discount": details["discount"][order],
    }


def _draw_attributes(rng: np.random.Generator, n: int, acquired: np.ndarray,
                     span: int) -> dict[str, np.ndarray]:
    """Per-customer attributes and event rates, all from the inputs' own ``rng``."""
    channel = rng.choice(len(CHANNELS), size=n, p=np.array(CHANNEL_SHARES))
    region = rng.integers(0, len(REGIONS), size=n)
    age = rng.integers(18, 81, size=n)
    switch = rng.random(n) < PLAN_SWITCH_SHARE
    # the day of the plan change: after the acquisition day, within the simulated period
    room = np.maximum(span - 1 - acquired, 1)
    switch_day = acquired + 1 + np.floor(rng.random(n) * room).astype(np.int64)
    switch &= switch_day < span
    email_rate = rng.gamma(2.0, EMAIL_OPEN_RATE / 2.0, size=n)
    visit_rate = rng.gamma(2.0, SITE_VISIT_RATE / 2.0, size=n)
    return {"channel": channel, "region": region, "age": age, "switch": switch,
            "switch_day": switch_day, "email_rate": email_rate, "visit_rate": visit_rate}


def _customer_table(attributes: dict[str, np.ndarray], ids: pd.Index, shown: np.ndarray,
                    acquired: np.ndarray, offset: int, first: pd.Timestamp) -> pd.DataFrame:
    base = np.datetime64(first.date(), "D")
    who = np.flatnonzero(shown)
    switched = who[attributes["switch"][who]]
    owner = np.concatenate([who, switched])
    day = np.concatenate([acquired[who], attributes["switch_day"][switched]]) - offset
    plan = np.concatenate([np.zeros(who.size, dtype=np.int64),
                           np.ones(switched.size, dtype=np.int64)])
    order = np.lexsort((day, owner))
    owner, day, plan = owner[order], day[order], plan[order]
    return pd.DataFrame({
        "customer_id": ids.take(owner),
        "valid_from": pd.DatetimeIndex(base + day.astype("timedelta64[D]")).as_unit("s"),
        "channel": pd.Index(CHANNELS, dtype="str").take(attributes["channel"][owner]),
        "region": pd.Index(REGIONS, dtype="str").take(attributes["region"][owner]),
        "age": attributes["age"][owner].astype(np.int64),
        "plan": pd.Index(("basic", "plus"), dtype="str").take(plan),
    })


def _event_table(rng: np.random.Generator, attributes: dict[str, np.ndarray], ids: pd.Index,
                 shown: np.ndarray, acquired: np.ndarray, dropout_day: np.ndarray,
                 span: int, offset: int, first: pd.Timestamp, *,
                 effects: bool) -> pd.DataFrame:
    window = span - acquired  # days from the acquisition day to the last day
    parts = []
    for code, rate in ((0, attributes["email_rate"]), (1, attributes["visit_rate"])):
        counts = np.minimum(rng.poisson(rate * window), _MAX_EVENTS)
        owner = np.repeat(np.arange(acquired.size), counts)
        day = np.repeat(acquired, counts) + np.floor(
            rng.random(owner.size) * np.repeat(window, counts)).astype(np.int64)
        keep = rng.random(owner.size)  # drawn for both types: one law, effects or not
        if code == 0 and effects:
            ahead = (dropout_day[owner] - day).astype("float64")  # days until the last purchase
            chance = np.where(ahead > EMAIL_FADE_DAYS, 1.0, np.where(
                ahead >= 0, EMAIL_FADE_FLOOR + (1 - EMAIL_FADE_FLOOR) * ahead / EMAIL_FADE_DAYS,
                EMAIL_AFTER_DROPOUT))
            owner, day = owner[keep < chance], day[keep < chance]
        value = (1.0 + rng.poisson(3.0, size=owner.size) if code == 1
                 else np.full(owner.size, np.nan))
        seconds = rng.integers(0, 86_400, size=owner.size)
        parts.append((owner, day, seconds, np.full(owner.size, code), value))
    owner, day, seconds, kind, value = (np.concatenate(p) for p in zip(*parts, strict=True))
    visible = shown[owner] & (day >= offset)
    owner, day, seconds = owner[visible], day[visible] - offset, seconds[visible]
    kind, value = kind[visible], value[visible]
    n = acquired.size
    order = np.argsort(((day * 86_400 + seconds) * 2 + kind) * n + owner, kind="stable")
    base = np.datetime64(first.date(), "s")
    stamps = base + (day[order] * 86_400 + seconds[order]).astype("timedelta64[s]")
    return pd.DataFrame({
        "customer_id": ids.take(owner[order]),
        "timestamp": pd.DatetimeIndex(stamps).as_unit("s"),
        "event_type": pd.Index(("email_open", "site_visit"), dtype="str").take(kind[order]),
        "value": value[order],
    })


def generate_inputs(
    n_customers: int = 10_000,
    *,
    seed: int = 0,
    input_effects: bool = True,
    details: bool = False,
    **options: Any,
) -> SyntheticInputs:
    """Simulate transactions with a customer table and an event table of known effects.

    With ``input_effects`` (the default):

    - the ``channel`` attribute multiplies each customer's probability of dropping out
      after a purchase by :data:`CHANNEL_DROPOUT` (store 1, web 1.6, app 0.5), so web
      customers churn most and app customers least;
    - ``email_open`` events fade before a customer drops out: at their own rate until
      :data:`EMAIL_FADE_DAYS` (60) days before their last purchase, then linearly down
      to 20% of it on that day, and 10% afterwards; customers still active at the end
      open at their own rate throughout.

    Always noise (no effect on anything): the ``region``, ``age`` and ``plan``
    attributes (a quarter of the customers switch from basic to plus on a random day:
    a second row with its ``valid_from``) and the ``site_visit`` events.

    With ``details`` the transactions also carry the optional columns of the data
    contract (:data:`DETAIL_COLUMNS`): ``order_id`` (text ``<customer id>-<nnnn>``, one
    order per occasion, a few occasions split into two; a refund keeps its purchase's),
    ``quantity`` (items, 1 + Poisson(0.4), a float like a loaded quantity), ``category``
    (:data:`CATEGORIES`; with ``input_effects`` customers who drop out sooner buy in fewer
    categories, see :data:`CATEGORY_SPREAD`), ``channel`` (of the purchase: the
    customer's own channel attribute 75% of the time) and ``discount`` (noise: the amount
    taken off a row, 0 on most). They come from a random stream of their own: the other
    columns, the customer table and the event table are those of the same call without
    ``details``.

    With ``input_effects=False`` the channel and the email opens are noise too, and the
    transactions are exactly those of :func:`generate_transactions` with the same seed
    and options (the inputs draw their random numbers from a stream of their own).

    Parameters
    ----------
    n_customers, seed
        As in :func:`generate_transactions`.
    input_effects
        Whether the channel and the email opens drive churn (above).
    details
        Add the optional transaction columns (above).
    **options
        The other keywords of :func:`generate_transactions` (``season_strength`` up to
        3 gives a strong yearly cycle).

    Returns
    -------
    SyntheticInputs
        ``(transactions, customers, events)``; see :class:`SyntheticInputs`.

    Examples
    --------
    >>> data = generate_inputs(200, seed=1, input_effects=False)
    >>> data.transactions.equals(generate_transactions(200, seed=1))
    True
    >>> sorted(data.events["event_type"].unique())
    ['email_open', 'site_visit']
    """
    chunk = next(_input_chunks(n_customers, seed, max(int(n_customers), 1), options,
                               effects=input_effects, details=details))
    return chunk


def _input_chunks(n_customers: int, seed: int, chunk_customers: int, options: dict[str, Any],
                  *, effects: bool, details: bool = False) -> Iterator[SyntheticInputs]:
    """Like :func:`iter_transaction_chunks`, with the customer and event tables."""
    for name, flag in (("input_effects", effects), ("details", details)):
        if not isinstance(flag, bool):
            raise ChurnlensError(f"{name} must be True or False, got {flag!r}.")
    iter_transaction_chunks(n_customers, seed=seed, chunk_customers=chunk_customers,
                            **options)  # the checks, with their messages
    n, size = int(n_customers), int(chunk_customers)
    plan = _plan(**{**_OPTION_DEFAULTS, **options})
    width = _id_width(n)
    return _input_chunk_iter(n, seed, size, plan, width, effects, details)


def _input_chunk_iter(n: int, seed: int, size: int, plan: _Plan, width: int,
                      effects: bool, details: bool) -> Iterator[SyntheticInputs]:
    for index, first_id in enumerate(range(1, n + 1, size)):
        draw = _InputsDraw(_inputs_rng(seed, index), effects,
                           _details_rng(seed, index) if details else None)
        tx, customers, events = _simulate_all(
            _chunk_rng(seed, index), min(size, n + 1 - first_id), plan, first_id=first_id,
            width=width, inputs=draw)
        assert customers is not None  # asked for
        assert events is not None
        yield SyntheticInputs(tx, customers, events)


def iter_transaction_chunks(
    n_customers: int = 10_000,
    *,
    seed: int = 0,
    chunk_customers: int = CHUNK_CUSTOMERS,
    **options: Any,
) -> Iterator[pd.DataFrame]:
    """Simulate purchase transactions a chunk of customers at a time.

    Parameters
    ----------
    n_customers
        Customers to simulate in all.
    seed
        Random seed; the same seed and ``chunk_customers`` give identical chunks.
    chunk_customers
        Customers per chunk (the last one may be smaller); :data:`CHUNK_CUSTOMERS` by
        default. Memory grows with this number, not with ``n_customers``.
    **options
        The other keywords of :func:`generate_transactions` (``start``, ``end``,
        ``mean_gap_days``, ``refund_share`` and the regime knobs), checked before the
        first chunk is simulated.

    Yields
    ------
    pandas.DataFrame
        The rows of customers ``k * chunk_customers + 1 ..`` for chunk ``k``, in the
        columns of :func:`generate_transactions`, sorted by time within the chunk.
        Customer ids continue from chunk to chunk, all with the digits of
        ``n_customers`` (so they are unique and sort as numbers).

    Notes
    -----
    Chunk 0 is simulated from ``numpy.random.default_rng(seed)``, exactly as
    :func:`generate_transactions`: with ``n_customers <= chunk_customers`` the one
    chunk *is* ``generate_transactions(n_customers, seed=seed, ...)``. Chunk ``k >= 1``
    has its own stream, ``SeedSequence(seed, spawn_key=(k,))`` (the ``k``-th child of
    ``SeedSequence(seed).spawn``), so chunks are independent and a chunk's rows do not
    depend on how many chunks follow. Every random draw of the simulation is per
    customer or per row (acquisition day, rate, dropout, spend, country, one-time
    buyers, dropout after ``shift_date``, occasions, items, refunds); nothing is
    computed over the whole population, so every knob has the same effect per chunk as
    on the whole, and a population simulated in chunks follows the same law as one
    simulated at once (not the same draws: the rows depend on ``chunk_customers``).

    Examples
    --------
    >>> parts = list(iter_transaction_chunks(250, seed=1, chunk_customers=100))
    >>> [part["customer_id"].nunique() for part in parts]
    [100, 100, 50]
    >>> parts[2]["customer_id"].min()
    'C0000201'
    >>> next(iter_transaction_chunks(100, seed=1)).equals(generate_transactions(100, seed=1))
    True
    """
    n = require_positive_int(n_customers, name="n_customers")
    size = require_positive_int(chunk_customers, name="chunk_customers")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ChurnlensError(f"seed must be a whole number >= 0, got {seed!r}. "
                             "Suggestion: use 0 or any positive whole number.")
    unknown = sorted(set(options) - set(_OPTION_DEFAULTS))
    if unknown:
        raise ChurnlensError(
            f"unknown option(s) {', '.join(unknown)} for the synthetic transactions. "
            f"Suggestion: use {', '.join(_OPTION_DEFAULTS)}.")
    plan = _plan(**{**_OPTION_DEFAULTS, **options})
    width = _id_width(n)
    return _chunks(n, seed, size, plan, width)


def _chunks(n: int, seed: int, size: int, plan: _Plan, width: int) -> Iterator[pd.DataFrame]:
    for index, first_id in enumerate(range(1, n + 1, size)):
        yield _simulate(_chunk_rng(seed, index), min(size, n + 1 - first_id), plan,
                        first_id=first_id, width=width)


def _chunk_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of chunk ``index``: chunk 0 is today's ``default_rng(seed)``."""
    if index == 0:
        return np.random.default_rng(seed)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


@dataclasses.dataclass(frozen=True)
class GeneratedFile:
    """What :func:`write_transactions` wrote.

    Attributes
    ----------
    path
        The file.
    customers
        Customers simulated.
    transactions
        Rows written.
    first, last
        The earliest and latest timestamp written (``None`` when no row was).
    chunks
        Chunks simulated.
    chunk_customers
        Customers per chunk.
    """

    path: Path
    customers: int
    transactions: int
    first: pd.Timestamp | None
    last: pd.Timestamp | None
    chunks: int
    chunk_customers: int
    customers_path: Path | None = None
    customer_rows: int = 0
    events_path: Path | None = None
    event_rows: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        out = {
            "path": str(self.path), "customers": self.customers,
            "transactions": self.transactions,
            "first": None if self.first is None else self.first.isoformat(),
            "last": None if self.last is None else self.last.isoformat(),
            "chunks": self.chunks, "chunk_customers": self.chunk_customers,
        }
        if self.customers_path is not None:
            out.update(customers_path=str(self.customers_path),
                       customer_rows=self.customer_rows)
        if self.events_path is not None:
            out.update(events_path=str(self.events_path), event_rows=self.event_rows)
        return out


def write_transactions(
    path: str | os.PathLike[str],
    n_customers: int = 10_000,
    *,
    seed: int = 0,
    start: str | dt.date = "2023-01-01",
    end: str | dt.date = "2024-12-31",
    mean_gap_days: float = 21.0,
    refund_share: float = 0.02,
    history_start: str | dt.date | None = None,
    season_strength: float = 1.0,
    dropout_beta: tuple[float, float] = (2.0, 14.0),
    rate_shape: float = 1.2,
    one_time_share: float = 0.0,
    acquisition_power: float = 0.75,
    shift_date: str | dt.date | None = None,
    shift_dropout_factor: float = 1.0,
    chunk_customers: int = CHUNK_CUSTOMERS,
    progress: Callable[[str], None] | None = None,
    customers_path: str | os.PathLike[str] | None = None,
    events_path: str | os.PathLike[str] | None = None,
    input_effects: bool = True,
    details: bool = False,
) -> GeneratedFile:
    """Simulate purchase transactions straight into a ``.parquet`` or ``.csv`` file.

    The customers are simulated a chunk at a time (:func:`iter_transaction_chunks`)
    and each chunk is appended to the file before the next one is simulated, so memory
    stays that of one chunk (a process peak of about 0.7 GiB with the default 200,000
    customers: 0.66 GiB at one million, 0.68 GiB at ten million) whatever
    ``n_customers`` is. Up to ``chunk_customers`` customers the file holds exactly the
    rows of :func:`generate_transactions` with the same arguments (the same bytes as
    writing that frame with the table writer).

    Parameters
    ----------
    path
        Target ``.parquet`` or ``.csv`` file; its folder must exist. Written atomically
        (a hidden temporary file beside it, renamed when complete): an error, Ctrl-C or
        kill midway leaves no partial file and an earlier file at ``path`` intact.
    n_customers, seed, start, end, mean_gap_days, refund_share, history_start,
    season_strength, dropout_beta, rate_shape, one_time_share, acquisition_power,
    shift_date, shift_dropout_factor
        As in :func:`generate_transactions`, checked before anything is simulated.
    chunk_customers
        Customers per chunk, :data:`CHUNK_CUSTOMERS` by default. The rows of a file
        larger than one chunk depend on it (see :func:`iter_transaction_chunks`).
    progress
        Called with a line of text before each chunk.
    customers_path, events_path
        Also write the customer table and the event table of :func:`generate_inputs`
        there (``.parquet`` or ``.csv``, atomically, chunk by chunk like the
        transactions). With either given, the customers are simulated as by
        :func:`generate_inputs` (``input_effects`` on: the channel changes dropout, so
        the transactions differ from those written without the tables; up to one chunk
        they are those of ``generate_inputs(...).transactions``). A chunk's events
        (about 31 per customer) raise the peak memory: about 1.8 GiB with the default
        chunk, against 0.7 GiB without the tables.
    input_effects
        As in :func:`generate_inputs`; off, the transactions are those written without
        the tables.
    details
        Add the optional transaction columns of :func:`generate_inputs` (``order_id``,
        ``quantity``, ``category``, ``channel``, ``discount``); the customers are then
        simulated as by :func:`generate_inputs` even without the tables (up to one chunk
        the rows are those of ``generate_inputs(..., details=True).transactions``).

    Returns
    -------
    GeneratedFile
        The path, the counts and the time range written.

    Notes
    -----
    Parquet: each chunk is written as row groups of its own (pyarrow's default of at
    most 1,048,576 rows each, about two per default chunk; a reader such as DuckDB reads
    the file a row group at a time). CSV: churnlens' one CSV dialect, the header once,
    then each chunk's rows.
    Rows are sorted by time within each chunk of customers; a file of several chunks is
    therefore not sorted by time as a whole (the data contract does not ask it to be).
    """
    from churnlens._io import TABLE_SUFFIXES, atomic_path, check_output_path

    out = check_output_path(path, suffixes=TABLE_SUFFIXES)
    extra = {name: check_output_path(target, suffixes=TABLE_SUFFIXES)
             for name, target in (("customers", customers_path), ("events", events_path))
             if target is not None}
    _require_distinct_outputs({"transactions": out, **extra})
    options = dict(
        start=start, end=end, mean_gap_days=mean_gap_days, refund_share=refund_share,
        history_start=history_start, season_strength=season_strength,
        dropout_beta=dropout_beta, rate_shape=rate_shape, one_time_share=one_time_share,
        acquisition_power=acquisition_power, shift_date=shift_date,
        shift_dropout_factor=shift_dropout_factor)
    chunks: Iterator[pd.DataFrame] | None = None
    input_chunks: Iterator[SyntheticInputs] | None = None
    if extra or details:
        input_chunks = _input_chunks(n_customers, seed, chunk_customers, options,
                                     effects=input_effects, details=details)
    else:
        chunks = iter_transaction_chunks(n_customers, seed=seed,
                                         chunk_customers=chunk_customers, **options)
    n, size = int(n_customers), int(chunk_customers)
    total = -(-n // size)
    rows, first, last = 0, None, None
    extra_rows = dict.fromkeys(extra, 0)
    with contextlib.ExitStack() as stack:
        sink = stack.enter_context(_TableSink(
            stack.enter_context(atomic_path(out)), parquet=out.suffix.lower() == ".parquet"))
        extra_sinks = {name: stack.enter_context(_TableSink(
            stack.enter_context(atomic_path(target)),
            parquet=target.suffix.lower() == ".parquet")) for name, target in extra.items()}
        for index in range(total):
            low = index * size + 1
            if progress is not None:
                progress(f"chunk {index + 1}/{total}: customers {low:,} .. "
                         f"{min(low + size - 1, n):,} of {n:,} ({rows:,} transactions "
                         "written)")
            if input_chunks is not None:
                parts = next(input_chunks)
                frame = parts.transactions
                for name, extra_sink in extra_sinks.items():
                    table = parts.customers if name == "customers" else parts.events
                    extra_sink.write(table)
                    extra_rows[name] += len(table)
                del parts
            else:
                assert chunks is not None
                frame = next(chunks)
            sink.write(frame)
            rows += len(frame)
            if len(frame):  # a chunk is sorted by time
                low_stamp, high_stamp = frame["timestamp"].iloc[0], frame["timestamp"].iloc[-1]
                first = low_stamp if first is None else min(first, low_stamp)
                last = high_stamp if last is None else max(last, high_stamp)
            del frame  # before the next chunk is simulated: one chunk in memory at a time
    return GeneratedFile(path=out, customers=n, transactions=rows, first=first, last=last,
                         chunks=total, chunk_customers=size,
                         customers_path=extra.get("customers"),
                         customer_rows=extra_rows.get("customers", 0),
                         events_path=extra.get("events"),
                         event_rows=extra_rows.get("events", 0))


def _require_distinct_outputs(targets: dict[str, Path]) -> None:
    seen: dict[Path, str] = {}
    for name, target in targets.items():
        key = target.resolve()
        if key in seen:
            raise ChurnlensError(
                f"the {name} and the {seen[key]} would both be written to {target}. "
                "Suggestion: give each table its own file."
            )
        seen[key] = name


class _TableSink:
    """Appends frames to a Parquet file (row groups of their own) or a CSV file."""

    def __init__(self, path: Path, *, parquet: bool) -> None:
        self.path, self.parquet = path, parquet
        self.writer: Any = None
        self.csv: BinaryIO | None = None

    def __enter__(self) -> _TableSink:
        return self

    def write(self, frame: pd.DataFrame) -> None:
        from churnlens._io import csv_bytes, parquet_table

        if self.parquet:
            import pyarrow.parquet as pq

            table = parquet_table(frame)
            if self.writer is None:
                self.writer = pq.ParquetWriter(self.path, table.schema)
            self.writer.write_table(table)
        else:
            first = self.csv is None
            if self.csv is None:
                self.csv = open(self.path, "wb")  # noqa: SIM115 - closed by __exit__
            self.csv.write(csv_bytes(frame, header=first))

    def __exit__(self, *exc: object) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.csv is not None:
            self.csv.close()


@dataclasses.dataclass(frozen=True)
class _Plan:
    """The checked parameters of a simulation (the same for every chunk)."""

    first: pd.Timestamp  # first day of the data
    span: int  # simulated days, from knobs.simulated_first to the last day
    offset: int  # simulated days before ``first`` (dropped at the end)
    knobs: _Knobs
    mean_gap_days: float
    refund_share: float
    season_strength: float
    rate_shape: float
    one_time_share: float
    acquisition_power: float
    shift_dropout_factor: float


def _plan(
    *,
    start: str | dt.date,
    end: str | dt.date,
    mean_gap_days: float,
    refund_share: float,
    history_start: str | dt.date | None,
    season_strength: float,
    dropout_beta: tuple[float, float],
    rate_shape: float,
    one_time_share: float,
    acquisition_power: float,
    shift_date: str | dt.date | None,
    shift_dropout_factor: float,
) -> _Plan:
    """Check the parameters of :func:`generate_transactions` (one message each)."""
    first = parse_date(start, name="start")
    last = parse_date(end, name="end")
    span = int((last - first).days) + 1
    if span < 2:
        raise ChurnlensError(f"end ({last.date()}) must be after start ({first.date()}).")
    if not 0 <= refund_share < 1:
        raise ChurnlensError(f"refund_share must be in [0, 1), got {refund_share!r}.")
    if mean_gap_days <= 0:
        raise ChurnlensError(f"mean_gap_days must be positive, got {mean_gap_days!r}.")
    knobs = _check_knobs(
        first=first, last=last, history_start=history_start,
        season_strength=season_strength, dropout_beta=dropout_beta, rate_shape=rate_shape,
        one_time_share=one_time_share, acquisition_power=acquisition_power,
        shift_date=shift_date, shift_dropout_factor=shift_dropout_factor,
    )
    # The simulation runs from ``history_start`` (default: ``start``); the rows before
    # ``start`` (``offset`` days of them) are dropped at the end.
    offset = int((first - knobs.simulated_first).days)
    return _Plan(
        first=first, span=span + offset, offset=offset, knobs=knobs,
        mean_gap_days=mean_gap_days, refund_share=refund_share,
        season_strength=season_strength, rate_shape=rate_shape,
        one_time_share=one_time_share, acquisition_power=acquisition_power,
        shift_dropout_factor=shift_dropout_factor,
    )


def _id_width(n_customers: int) -> int:
    """Digits of the customer ids of a population of ``n_customers`` (at least 7)."""
    return max(7, len(str(n_customers)))


@dataclasses.dataclass(frozen=True)
class _Knobs:
    simulated_first: pd.Timestamp
    dropout_beta: tuple[float, float]
    shift_day: int | None  # days after simulated_first; None: no shift


def _check_knobs(
    *,
    first: pd.Timestamp,
    last: pd.Timestamp,
    history_start: str | dt.date | None,
    season_strength: float,
    dropout_beta: tuple[float, float],
    rate_shape: float,
    one_time_share: float,
    acquisition_power: float,
    shift_date: str | dt.date | None,
    shift_dropout_factor: float,
) -> _Knobs:
    """Validate the regime knobs of :func:`generate_transactions` (one message each)."""
    simulated_first = first
    if history_start is not None:
        simulated_first = parse_date(history_start, name="history_start")
        if simulated_first >= first:
            raise ChurnlensError(
                f"history_start ({simulated_first.date()}) must be before start "
                f"({first.date()}). Suggestion: leave history_start out for a log that "
                "starts with its first customers."
            )
    if not _is_number(season_strength) or not 0 <= season_strength <= 3:
        raise ChurnlensError(f"season_strength must be a number in [0, 3], got "
                             f"{season_strength!r}. Suggestion: 1 is the default season.")
    pair = tuple(dropout_beta) if isinstance(dropout_beta, tuple | list) else ()
    if len(pair) != 2 or not all(_is_number(v) and v > 0 for v in pair):
        raise ChurnlensError(f"dropout_beta must be two positive numbers (a, b), got "
                             f"{dropout_beta!r}. Suggestion: (2, 14) is the default.")
    if not _is_number(rate_shape) or rate_shape <= 0:
        raise ChurnlensError(f"rate_shape must be a positive number, got {rate_shape!r}.")
    if not _is_number(one_time_share) or not 0 <= one_time_share < 1:
        raise ChurnlensError(f"one_time_share must be in [0, 1), got {one_time_share!r}.")
    if not _is_number(acquisition_power) or acquisition_power <= 0:
        raise ChurnlensError(f"acquisition_power must be a positive number, got "
                             f"{acquisition_power!r}. Suggestion: 1 is a steady flow.")
    if not _is_number(shift_dropout_factor) or shift_dropout_factor <= 0:
        raise ChurnlensError(f"shift_dropout_factor must be a positive number, got "
                             f"{shift_dropout_factor!r}.")
    shift_day = None
    if shift_date is not None:
        shift = parse_date(shift_date, name="shift_date")
        if not simulated_first <= shift <= last:
            raise ChurnlensError(
                f"shift_date ({shift.date()}) is outside the simulated period "
                f"({simulated_first.date()} .. {last.date()}). Suggestion: choose a day "
                "within it."
            )
        shift_day = int((shift - simulated_first).days)
    elif shift_dropout_factor != 1:
        raise ChurnlensError("shift_dropout_factor needs a shift_date. Suggestion: give "
                             "the day from which dropout changes.")
    return _Knobs(simulated_first=simulated_first,
                  dropout_beta=(float(pair[0]), float(pair[1])), shift_day=shift_day)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool) and bool(np.isfinite(value))


def _season(first: pd.Timestamp, span: int, strength: float = 1.0) -> np.ndarray:
    """Relative purchase intensity of each day: a yearly wave and a year-end peak.

    At the default ``strength`` 1 the wave is +-25% and the peak +60% (max 1.9).
    """
    dates = np.datetime64(first.date(), "D") + np.arange(span).astype("timedelta64[D]")
    day_of_year = (dates - dates.astype("datetime64[Y]")).astype(np.int64)
    wave = 1.0 + 0.25 * strength * np.sin(2 * np.pi * (day_of_year - 80) / 365.25)
    peak = (day_of_year >= 323) & (day_of_year <= 357)  # late November to Christmas
    return wave + 0.6 * strength * peak
