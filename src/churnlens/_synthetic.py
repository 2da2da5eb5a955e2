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
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd

from churnlens._validation import parse_date, require_positive_int
from churnlens.exceptions import ChurnlensError

__all__ = ["generate_transactions"]

_COUNTRIES = np.array(["US", "GB", "DE", "FR", "NL"])
_COUNTRY_SHARE = np.array([0.45, 0.2, 0.15, 0.12, 0.08])
_SECONDS_OPEN, _SECONDS_CLOSE = 8 * 3600, 22 * 3600


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
    simulated_first = knobs.simulated_first
    offset = int((first - simulated_first).days)
    span += offset
    rng = np.random.default_rng(seed)

    # Customers: acquisition day (growing business), rate, dropout, spend, country.
    acquired = np.floor(span * rng.random(n) ** acquisition_power).astype(np.int64)
    rate = rng.gamma(shape=rate_shape, scale=1.0 / (rate_shape * mean_gap_days), size=n)  # per day
    dropout = rng.beta(*knobs.dropout_beta, size=n)
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
    if offset:
        # A log that starts mid-life: only the rows from ``start`` on, and no refund of
        # a purchase the log does not show.
        refund_of = row_day[refunded][in_range]
        shown = np.concatenate([row_day >= offset, refund_of >= offset])
        all_owner, all_day = all_owner[shown], all_day[shown] - offset
        all_seconds, all_amount = all_seconds[shown], all_amount[shown]
    order = np.argsort((all_day * 86_400 + all_seconds) * n + all_owner, kind="stable")

    base = np.datetime64(first.date(), "s")
    stamps = base + (all_day[order] * 86_400 + all_seconds[order]).astype("timedelta64[s]")
    width = max(7, len(str(n)))
    ids = pd.Index([f"C{i:0{width}d}" for i in range(1, n + 1)], dtype="str")
    return pd.DataFrame(
        {
            "customer_id": ids.take(all_owner[order]),
            "timestamp": pd.DatetimeIndex(stamps).as_unit("s"),
            "amount": all_amount[order],
            "country": pd.Index(_COUNTRIES, dtype="str").take(country[all_owner[order]]),
        }
    )


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
