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
"""

from __future__ import annotations

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
) -> pd.DataFrame:
    """Simulate purchase transactions.

    Parameters
    ----------
    n_customers
        Customers to simulate (each makes at least one purchase).
    seed
        Random seed; the same seed gives identical output.
    start, end
        First and last day of the data (inclusive).
    mean_gap_days
        Average days between purchases of an average customer while active.
    refund_share
        Share of rows that get a later partial refund (a negative amount).

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
    rng = np.random.default_rng(seed)

    # Customers: acquisition day (growing business), rate, dropout, spend, country.
    acquired = np.floor(span * rng.random(n) ** 0.75).astype(np.int64)
    rate = rng.gamma(shape=1.2, scale=1.0 / (1.2 * mean_gap_days), size=n)  # per day
    dropout = rng.beta(2.0, 14.0, size=n)
    purchases_until_dropout = rng.geometric(dropout)  # >= 1, the first purchase included
    mean_spend = rng.gamma(shape=3.0, scale=15.0, size=n) + 5.0
    country = rng.choice(len(_COUNTRIES), size=n, p=_COUNTRY_SHARE)

    # Candidate purchase days after acquisition: a Poisson process at the peak
    # seasonal rate, thinned below by the seasonal profile. Given their count, the
    # event times are sorted uniforms, drawn already sorted as normalised partial
    # sums of exponentials (no sort of tens of millions of events).
    peak = 1.9
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
    season = _season(first, span)
    keep = rng.random(owner.size) * peak < season[day]
    keep[group_start] = True
    owner, day = owner[keep], day[keep]

    # Repeat purchases in time order until dropout; several on one day are one occasion.
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    ordinal = np.arange(owner.size) - np.repeat(starts, np.diff(np.r_[starts, owner.size]))
    alive = ordinal < purchases_until_dropout[owner]
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


def _season(first: pd.Timestamp, span: int) -> np.ndarray:
    """Relative purchase intensity of each day: a yearly wave and a year-end peak (max 1.9)."""
    dates = np.datetime64(first.date(), "D") + np.arange(span).astype("timedelta64[D]")
    day_of_year = (dates - dates.astype("datetime64[Y]")).astype(np.int64)
    wave = 1.0 + 0.25 * np.sin(2 * np.pi * (day_of_year - 80) / 365.25)
    peak = (day_of_year >= 323) & (day_of_year <= 357)  # late November to Christmas
    return wave + 0.6 * peak
