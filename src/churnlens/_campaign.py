"""Campaign control groups and their read-out: did the campaign keep anyone?

The rules this module owns (documented in docs/monitoring.md, "Campaigns and control
groups"):

- **Assignment** (:func:`assign_control_group`): a control group drawn at random,
  stratified by ``risk_band``: in each band ``round(fraction * n)`` customers (rounded
  half up) are drawn without replacement by ``numpy.random.default_rng(seed)``, bands
  in the order ``high, medium, low`` then any other value (a missing band is its own
  stratum). The list keeps its rows and their order; the same list, fraction and seed
  give the same groups. The list's id (:func:`campaign_list_id`) is a digest of the
  seed, the fraction and the customer ids in list order.
- **Outcome** of a customer in the window ``(start, start + H]``: *retained* when they
  have a purchase occasion in it (a customer-day with a positive net amount,
  ``retention.md``; the occasion rule of :mod:`churnlens._engine`); *revenue* = the
  net sum of their amounts in it (refunds included). Ids are matched as text, as the
  loader keeps them (``12`` and ``"12"`` are one customer).
- **Retention difference** (treatment - control) with Newcombe's hybrid score
  interval (Newcombe 1998, method 10: built from the two Wilson score intervals).
- **Revenue per customer difference** with a seeded percentile bootstrap, resampling
  customers within each group (:data:`BOOTSTRAP_RESAMPLES` resamples).
- **Incremental customers kept** = retention difference x treatment size, incremental
  revenue = revenue difference x treatment size; their intervals are scaled the same way.
- **Minimum detectable effect**: the smallest retention difference a two-sided test at
  alpha 0.05 detects with 80% power for these group sizes and the control's rate
  (Fleiss' formula for two proportions), and its revenue counterpart (normal
  approximation with the groups' own variances).

A list without a ``group`` column or without control (or treatment) customers is
refused; so is a window that starts before the list's scoring date (purchases made
before the list existed would count as the campaign's) or that has not closed in the
data.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import math
from collections.abc import Iterable
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from churnlens._engine import (
    AMOUNT_UNITS,
    connect,
    daily_sql,
    day_number,
    from_day_number,
    is_occasion_sql,
)
from churnlens._io import FORMULA_PREFIXES, json_ready, read_table_file
from churnlens._loading import ensure_clean
from churnlens._validation import parse_date
from churnlens.exceptions import ChurnlensError

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "CONTROL",
    "GROUPS",
    "MDE_ALPHA",
    "MDE_POWER",
    "TREATMENT",
    "CampaignResult",
    "Estimate",
    "GroupOutcome",
    "analyse_campaign",
    "assign_control_group",
    "bootstrap_mean_difference",
    "campaign_list_id",
    "minimum_detectable_difference",
    "newcombe_interval",
    "read_campaign_list",
    "wilson_interval",
]

TREATMENT = "treatment"
CONTROL = "control"
GROUPS = (TREATMENT, CONTROL)
BOOTSTRAP_RESAMPLES = 2000
MDE_POWER = 0.8
MDE_ALPHA = 0.05
# The order in which the strata draw from the one generator (then any other value).
_BAND_ORDER = ("high", "medium", "low")
# Elements per bootstrap chunk (resamples x customers): bounds the memory, not the result.
_CHUNK_ELEMENTS = 2_000_000
_SUGGEST_CONTROLS = ("Suggestion: write the list with a control group, for example "
                     "churnlens at-risk --scores scores.parquet --out list.csv "
                     "--control-fraction 0.1")


# --- assignment ---------------------------------------------------------------------


def _check_fraction(fraction: float) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not (
            math.isfinite(fraction) and 0 < fraction < 1):
        raise ChurnlensError(
            f"--control-fraction: {fraction!r} is not a share between 0 and 1 (both "
            "excluded). Suggestion: for example --control-fraction 0.1 (one customer in "
            "ten held back).")
    return float(fraction)


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ChurnlensError(f"--seed: {seed!r} is not a whole number >= 0. Suggestion: "
                             "for example --seed 0.")
    return int(seed)


def _strata(bands: pd.Series) -> list[np.ndarray]:
    """Row positions of each risk band, in the draw order (see the module docstring)."""
    labels = bands.astype(object).where(bands.notna(), None).to_numpy()
    present = list(dict.fromkeys(labels.tolist()))
    ordered = [b for b in _BAND_ORDER if b in present]
    others = sorted((b for b in present if b not in _BAND_ORDER and b is not None), key=str)
    ordered += others + ([None] if None in present else [])
    missing = bands.isna().to_numpy()
    values = bands.astype(object).to_numpy()
    return [np.flatnonzero(missing if band is None else (~missing & (values == band)))
            for band in ordered]


def _controls_in(n: int, fraction: float) -> int:
    # half up (0.5 -> 1), not Python's round-half-even: a band of 5 at 10% holds one back
    return math.floor(fraction * n + 0.5)


def assign_control_group(frame: pd.DataFrame, fraction: float, *, seed: int) -> pd.DataFrame:
    """Mark a random control group in a list, stratified by risk band.

    Parameters
    ----------
    frame
        The list (``churnlens at-risk``): one row per customer; ``risk_band`` defines
        the strata (a frame without it is one stratum).
    fraction
        Share of each band held back as control, ``0 < fraction < 1``: in a band of
        ``n`` customers, ``round(fraction * n)`` (half up) are drawn.
    seed
        Seed of ``numpy.random.default_rng``: the same list, fraction and seed give the
        same groups.

    Returns
    -------
    pandas.DataFrame
        A copy of ``frame``, same rows in the same order, with a column ``group``:
        ``"treatment"`` or ``"control"``.

    Raises
    ------
    ChurnlensError
        ``fraction`` outside ``(0, 1)``, a negative seed, a frame that already has a
        ``group`` column, or a list too small to hold back anyone (or to treat anyone).

    Examples
    --------
    >>> scores = pd.DataFrame({"customer_id": list("abcdefghij"),
    ...                        "risk_band": ["high"] * 6 + ["medium"] * 4})
    >>> marked = assign_control_group(scores, 0.5, seed=0)
    >>> marked.groupby("risk_band")["group"].value_counts().sort_index().tolist()
    [3, 3, 2, 2]
    """
    fraction = _check_fraction(fraction)
    seed = _check_seed(seed)
    if "group" in frame.columns:
        raise ChurnlensError(
            "the list already has a column 'group' (a control group was drawn before). "
            "Suggestion: draw from the scores written by churnlens score, not from a "
            "campaign list.")
    rng = np.random.default_rng(seed)
    is_control = np.zeros(len(frame), dtype=bool)
    bands = frame["risk_band"] if "risk_band" in frame.columns else pd.Series(
        ["all"] * len(frame), index=frame.index, dtype=object)
    for positions in _strata(bands):
        k = _controls_in(len(positions), fraction)
        if k:
            is_control[rng.choice(positions, size=k, replace=False)] = True
    controls = int(is_control.sum())
    if controls == 0 or controls == len(frame):
        held = "no" if controls == 0 else "every"
        raise ChurnlensError(
            f"a control fraction of {fraction:g} of this list of {len(frame):,} customers "
            f"holds back {held} customer, so there is nothing to compare. Suggestion: a "
            "longer list (--top) or a control fraction that leaves both groups customers.")
    out = frame.copy()
    out["group"] = np.where(is_control, CONTROL, TREATMENT)
    return out


def campaign_list_id(customer_ids: Iterable[Any], *, fraction: float, seed: int) -> str:
    """A short id of a campaign list, the same for the same command on the same scores.

    Parameters
    ----------
    customer_ids
        The list's customer ids, in list order (compared as text).
    fraction
        The control fraction the list was drawn with.
    seed
        The seed of the draw.

    Returns
    -------
    str
        12 hex digits of the SHA-256 of the seed, the fraction and the ids.

    Examples
    --------
    >>> campaign_list_id(["a", "b"], fraction=0.1, seed=0) == campaign_list_id(
    ...     ["a", "b"], fraction=0.1, seed=0)
    True
    >>> len(campaign_list_id(["a", "b"], fraction=0.1, seed=0))
    12
    """
    digest = hashlib.sha256(f"churnlens-list\n{int(seed)}\n{float(fraction)!r}\n".encode())
    for customer in customer_ids:
        text = str(customer)
        # the length first: ids may hold any character, newlines too
        digest.update(f"{len(text)}:".encode())
        digest.update(text.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:12]


# --- intervals ----------------------------------------------------------------------


def _z(confidence: float) -> float:
    if not (isinstance(confidence, (int, float)) and 0 < confidence < 1):
        raise ChurnlensError(f"confidence {confidence!r} must be between 0 and 1 (both "
                             "excluded). Suggestion: 0.95.")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval of a proportion ``successes / n`` (no continuity correction).

    Parameters
    ----------
    successes, n
        The count and the size, ``0 <= successes <= n``, ``n >= 1``.
    confidence
        The level of the interval.

    Returns
    -------
    tuple of float
        ``(low, high)``, within ``[0, 1]``.

    Examples
    --------
    >>> low, high = wilson_interval(56, 70)
    >>> round(low, 4), round(high, 4)
    (0.6918, 0.877)
    """
    if n < 1 or not 0 <= successes <= n:
        raise ChurnlensError(f"a proportion needs 0 <= successes <= n and n >= 1, got "
                             f"{successes} of {n}.")
    z = _z(confidence)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # exact 0 and 1 at the edges (the formula gives them up to rounding)
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def newcombe_interval(x1: int, n1: int, x2: int, n2: int,
                      confidence: float = 0.95) -> tuple[float, float]:
    """Newcombe's hybrid score interval of ``x1/n1 - x2/n2`` (1998, method 10).

    From the Wilson intervals ``(l1, u1)`` and ``(l2, u2)`` of the two proportions:
    ``d - sqrt((p1 - l1)^2 + (u2 - p2)^2)`` to ``d + sqrt((u1 - p1)^2 + (p2 - l2)^2)``.

    Parameters
    ----------
    x1, n1
        Successes and size of the first group (the treatment).
    x2, n2
        Successes and size of the second group (the control).
    confidence
        The level of the interval.

    Returns
    -------
    tuple of float
        ``(low, high)`` of the difference of proportions, within ``[-1, 1]``.

    Examples
    --------
    Newcombe's example (a), 56/70 - 48/80:

    >>> low, high = newcombe_interval(56, 70, 48, 80)
    >>> round(low, 4), round(high, 4)
    (0.0524, 0.3339)
    """
    l1, u1 = wilson_interval(x1, n1, confidence)
    l2, u2 = wilson_interval(x2, n2, confidence)
    p1, p2 = x1 / n1, x2 / n2
    d = p1 - p2
    return d - math.hypot(p1 - l1, u2 - p2), d + math.hypot(u1 - p1, p2 - l2)


def bootstrap_mean_difference(treated: np.ndarray, control: np.ndarray, *, seed: int,
                              resamples: int = BOOTSTRAP_RESAMPLES,
                              confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of ``mean(treated) - mean(control)``.

    Each resample draws ``len(treated)`` customers from ``treated`` and
    ``len(control)`` from ``control``, with replacement (the groups are resampled
    separately, as they were drawn). Vectorised by chunks of resamples (the draws
    depend on the chunk size, a fixed constant, so the same inputs and seed always give
    the same interval).

    Parameters
    ----------
    treated, control
        The per-customer values of each group (for example revenue in the window).
    seed
        Seed of ``numpy.random.default_rng``.
    resamples
        Number of bootstrap resamples.
    confidence
        The level of the interval (percentiles ``(1 - confidence) / 2`` and
        ``(1 + confidence) / 2`` of the resampled differences).

    Returns
    -------
    tuple of float
        ``(low, high)``.

    Examples
    --------
    >>> low, high = bootstrap_mean_difference(np.array([1.0, 2, 3, 4]),
    ...                                       np.array([0.0, 1, 2]), seed=0)
    >>> bool(low < 1.5 < high)
    True
    """
    from churnlens._validation import require_positive_int

    _z(confidence)  # checks the level
    resamples = require_positive_int(resamples, name="resamples")
    treated = np.asarray(treated, dtype=float)
    control = np.asarray(control, dtype=float)
    if len(treated) == 0 or len(control) == 0:
        raise ChurnlensError("the bootstrap needs customers in both groups.")
    rng = np.random.default_rng(seed)
    diffs = np.empty(resamples)
    per_chunk = max(1, _CHUNK_ELEMENTS // (len(treated) + len(control)))
    for first in range(0, resamples, per_chunk):
        b = min(per_chunk, resamples - first)
        t = treated[rng.integers(0, len(treated), size=(b, len(treated)))].mean(axis=1)
        c = control[rng.integers(0, len(control), size=(b, len(control)))].mean(axis=1)
        diffs[first:first + b] = t - c
    alpha = 1 - confidence
    low, high = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def minimum_detectable_difference(control_rate: float, n_treatment: int, n_control: int,
                                  *, alpha: float = MDE_ALPHA,
                                  power: float = MDE_POWER) -> float | None:
    """The smallest difference of proportions a two-sided test detects with ``power``.

    Fleiss' formula for two independent proportions ``p0`` (control) and
    ``p1 = p0 + delta`` (treatment): ``delta`` solves
    ``delta = z(1-alpha/2) sqrt(pbar (1-pbar) (1/n1 + 1/n0)) +
    z(power) sqrt(p1 (1-p1)/n1 + p0 (1-p0)/n0)``, with ``pbar`` the size-weighted mean
    rate, by bisection. An increase is sought (a campaign should raise retention); when
    the control's rate is 1, a decrease. ``None`` when even the largest possible
    difference is not detectable.

    Parameters
    ----------
    control_rate
        The control group's proportion ``p0`` (0 to 1).
    n_treatment, n_control
        The group sizes.
    alpha
        Two-sided significance level.
    power
        The power wanted.

    Returns
    -------
    float or None
        The difference ``delta`` (a proportion, not points).

    Examples
    --------
    >>> round(minimum_detectable_difference(0.5, 400, 400), 3)
    0.098
    """
    z_a = NormalDist().inv_cdf(1 - alpha / 2)
    z_b = NormalDist().inv_cdf(power)
    p0 = float(control_rate)
    n1, n0 = int(n_treatment), int(n_control)
    if n1 < 1 or n0 < 1:
        return None
    direction = 1.0 if p0 < 1 else -1.0
    room = (1 - p0) if direction > 0 else p0

    def excess(delta: float) -> float:
        p1 = p0 + direction * delta
        pbar = (n1 * p1 + n0 * p0) / (n1 + n0)
        need = (z_a * math.sqrt(pbar * (1 - pbar) * (1 / n1 + 1 / n0))
                + z_b * math.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0))
        return delta - need

    if room <= 0 or excess(room) < 0:
        return None
    low, high = 0.0, room
    for _ in range(100):
        middle = (low + high) / 2
        if excess(middle) >= 0:
            high = middle
        else:
            low = middle
    return high


# --- reading a list -----------------------------------------------------------------


def read_campaign_list(path: str | Path) -> pd.DataFrame:
    """A campaign list written by ``churnlens at-risk`` (``.csv`` or ``.parquet``).

    A CSV's ids are read as text, exactly (``"007"`` stays ``"007"``; ``NA`` and empty
    cells are ids too, not missing values).

    Parameters
    ----------
    path
        The list file.

    Returns
    -------
    pandas.DataFrame
        The list as written.

    Raises
    ------
    ChurnlensError
        No such file, or a file that cannot be read as a table.
    """
    return read_table_file(path, option="--list", what="a campaign list",
                           written_by="churnlens at-risk --control-fraction 0.1",
                           text_columns=("customer_id", "group", "list_id"))


# --- the read-out -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A point estimate and its confidence interval.

    Attributes
    ----------
    estimate, low, high
        The estimate and the bounds of its interval.
    """

    estimate: float
    low: float
    high: float

    def covers(self, value: float) -> bool:
        """Whether ``low <= value <= high``."""
        return self.low <= value <= self.high

    def scaled(self, factor: float) -> Estimate:
        """The estimate and its bounds times ``factor`` (``factor >= 0``)."""
        return Estimate(self.estimate * factor, self.low * factor, self.high * factor)

    def to_dict(self) -> dict[str, float]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high}


@dataclasses.dataclass(frozen=True)
class GroupOutcome:
    """One group's outcome in the window.

    Attributes
    ----------
    customers
        The group's size.
    retained
        Customers with a purchase occasion in the window.
    revenue
        The net sum of the group's amounts in the window.
    """

    customers: int
    retained: int
    revenue: float

    @property
    def retention(self) -> float:
        """Share of the group with a purchase occasion in the window, in percent."""
        return self.retained / self.customers * 100

    @property
    def revenue_per_customer(self) -> float:
        return self.revenue / self.customers

    def to_dict(self) -> dict[str, Any]:
        return {"customers": self.customers, "retained": self.retained,
                "retention": self.retention, "revenue": self.revenue,
                "revenue_per_customer": self.revenue_per_customer}


@dataclasses.dataclass(frozen=True)
class CampaignResult:
    """Treatment against control in ``(start, end]``: see :func:`analyse_campaign`.

    Attributes
    ----------
    list_id
        The list's id (its ``list_id`` column), or None.
    as_of
        The list's scoring date (its ``as_of`` column), or None.
    start, end, horizon_days
        The window ``(start, end]`` of ``horizon_days`` days.
    confidence
        The level of every interval.
    seed
        The seed of the revenue bootstrap.
    groups
        ``{"treatment": GroupOutcome, "control": GroupOutcome}``.
    retention_difference
        Treatment minus control retention, in percentage points, with Newcombe's
        interval.
    revenue_difference
        Treatment minus control revenue per customer, with the bootstrap interval.
    incremental_customers, incremental_revenue
        The differences times the treatment size (customers kept, revenue gained by
        the campaign), intervals scaled the same way.
    minimum_detectable_retention
        The smallest retention difference (points) these group sizes detect with 80%
        power at alpha 0.05 two-sided (``None``: none would be).
    minimum_detectable_revenue
        The same for revenue per customer.
    members_without_transactions
        List customers with no row in the transactions (counted as not retained).
    notes
        Plain-words notes on the read-out.
    resamples
        The bootstrap resamples of the revenue interval.
    """

    list_id: str | None
    as_of: dt.date | None
    start: dt.date
    end: dt.date
    horizon_days: int
    confidence: float
    seed: int
    groups: dict[str, GroupOutcome]
    retention_difference: Estimate
    revenue_difference: Estimate
    incremental_customers: Estimate
    incremental_revenue: Estimate
    minimum_detectable_retention: float | None
    minimum_detectable_revenue: float | None
    members_without_transactions: int
    notes: tuple[str, ...] = ()
    resamples: int = BOOTSTRAP_RESAMPLES

    @property
    def detected(self) -> bool:
        """Whether the retention interval excludes 0."""
        return not self.retention_difference.covers(0.0)

    @property
    def verdict(self) -> str:
        """The retention read-out in plain words."""
        level = f"{self.confidence:.0%}"
        kept = self.incremental_customers
        if not self.detected:
            d = self.retention_difference
            text = (f"no detectable effect on retention: treatment {d.estimate:+.1f} points "
                    f"against control ({level} CI {d.low:+.1f} .. {d.high:+.1f}), an "
                    f"interval that covers 0")
            if self.minimum_detectable_retention is not None:
                mde = self.minimum_detectable_retention
                customers = mde / 100 * self.groups[TREATMENT].customers
                text += (f"; these groups detect a difference of {mde:.1f} points (about "
                         f"{customers:,.0f} customers) or more")
            return text + "."
        if kept.estimate > 0:
            return (f"the campaign kept about {kept.estimate:,.0f} more customers ({level} CI "
                    f"{kept.low:,.0f}..{kept.high:,.0f}).")
        return (f"the campaign lost about {-kept.estimate:,.0f} customers ({level} CI "
                f"{-kept.high:,.0f}..{-kept.low:,.0f}): the treated retained fewer than the "
                "control.")

    @property
    def revenue_verdict(self) -> str:
        """The revenue read-out in plain words."""
        level = f"{self.confidence:.0%}"
        gained = self.incremental_revenue
        if gained.covers(0.0):
            return (f"no detectable effect on revenue: {gained.estimate:+,.2f} in total "
                    f"({level} CI {gained.low:+,.2f} .. {gained.high:+,.2f}).")
        word = "more" if gained.estimate > 0 else "less"
        return (f"the campaign brought about {abs(gained.estimate):,.2f} {word} revenue "
                f"({level} CI {gained.low:+,.2f} .. {gained.high:+,.2f}).")

    def to_dict(self) -> dict[str, Any]:
        """The result as strict JSON-ready data (``churnlens campaign --json``)."""
        n_t = self.groups[TREATMENT].customers
        mde = self.minimum_detectable_retention
        mde_rev = self.minimum_detectable_revenue
        return json_ready({
            "list_id": self.list_id,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "window": {"start": self.start.isoformat(), "end": self.end.isoformat(),
                       "horizon_days": self.horizon_days,
                       "rule": "(start, end]: a purchase occasion in the window retains"},
            "confidence": self.confidence,
            "groups": {name: outcome.to_dict() for name, outcome in self.groups.items()},
            "retention_difference": {**self.retention_difference.to_dict(),
                                     "unit": "percentage points",
                                     "method": "Newcombe hybrid score (Wilson), method 10"},
            "revenue_difference": {**self.revenue_difference.to_dict(),
                                   "unit": "revenue per customer",
                                   "method": f"percentile bootstrap, {self.resamples} "
                                             f"resamples within each group, seed "
                                             f"{self.seed}"},
            "incremental_customers": self.incremental_customers.to_dict(),
            "incremental_revenue": self.incremental_revenue.to_dict(),
            "detected": self.detected,
            "verdict": self.verdict,
            "revenue_verdict": self.revenue_verdict,
            "minimum_detectable_effect": {
                "power": MDE_POWER, "alpha": MDE_ALPHA, "two_sided": True,
                "retention_points": mde,
                "customers": None if mde is None else mde / 100 * n_t,
                "revenue_per_customer": mde_rev,
                "revenue": None if mde_rev is None else mde_rev * n_t,
            },
            "members_without_transactions": self.members_without_transactions,
            "notes": list(self.notes),
        })


def _check_members(members: pd.DataFrame) -> pd.DataFrame:
    """The list's ``customer_id`` (text) and ``group``; refused when it cannot be read out."""
    if "customer_id" not in members.columns:
        raise ChurnlensError("the list has no column 'customer_id'. Suggestion: pass a list "
                             "written by churnlens at-risk.")
    if "group" not in members.columns:
        raise ChurnlensError("the list has no column 'group': it has no control group, so "
                             "nothing says what the campaign changed. " + _SUGGEST_CONTROLS)
    groups = members["group"].astype(object)
    unknown = sorted({str(g) for g in groups if g not in GROUPS})
    if unknown:
        raise ChurnlensError(f"the list's column 'group' holds {unknown[:5]}; allowed: "
                             f"{list(GROUPS)}. Suggestion: keep the column as churnlens "
                             "at-risk wrote it.")
    for name in GROUPS:
        if not (groups == name).any():
            raise ChurnlensError(f"the list has no {name} customers (column 'group'), so "
                                 "there is nothing to compare. " + _SUGGEST_CONTROLS)
    ids = members["customer_id"].astype(str)
    duplicated = ids[ids.duplicated()]
    if len(duplicated):
        raise ChurnlensError(f"the list names customers more than once, first "
                             f"{duplicated.head(3).tolist()}. Suggestion: one row per "
                             "customer, as churnlens at-risk writes it.")
    return pd.DataFrame({"customer_id": ids.to_numpy(), "group": groups.to_numpy()})


def _list_as_of(members: pd.DataFrame) -> dt.date | None:
    if "as_of" not in members.columns:
        return None
    # "" (a CSV's empty cell) and anything unreadable become NaT and are skipped
    values = pd.to_datetime(members["as_of"].astype(object), errors="coerce").dropna()
    return None if values.empty else values.max().date()


def _window_outcomes(transactions: pd.DataFrame, start_day: int,
                     end_day: int) -> tuple[pd.DataFrame, int, set[str]]:
    """Per customer with rows in ``(start, end]``: retained (an occasion) and net
    revenue; the data's last day; every customer id of the data, as text."""
    con = connect(threads=1)
    try:
        con.register("tx", transactions[["customer_id", "timestamp", "amount"]])
        con.execute(f"CREATE TEMP TABLE daily AS {daily_sql('tx')}")
        last_day = con.execute("SELECT MAX(day) FROM daily").fetchone()
        window = con.execute(f"""
            SELECT customer_id,
                   BOOL_OR({is_occasion_sql()}) AS retained,
                   CAST(SUM(net_units) AS DOUBLE) / {AMOUNT_UNITS} AS revenue
            FROM daily WHERE day > {int(start_day)} AND day <= {int(end_day)}
            GROUP BY customer_id
        """).df()
    finally:
        con.close()
    window["customer_id"] = window["customer_id"].astype(str)
    known = set(transactions["customer_id"].astype(str).unique().tolist())
    return window, int(last_day[0]) if last_day and last_day[0] is not None else -10**9, known


def _unneutralised(ids: pd.Series, known: set[str]) -> pd.Series:
    """An id a spreadsheet-safe CSV prefixed with ``'`` (``'=1+1``) back as the data
    hold it, when only that form is known (see :func:`churnlens._io.neutralize_formulas`)."""
    prefixed = ids.str.startswith("'") & ids.str[1:].str.startswith(FORMULA_PREFIXES)
    fix = prefixed & ~ids.isin(known) & ids.str[1:].isin(known)
    return ids.where(~fix, ids.str[1:])


def analyse_campaign(members: pd.DataFrame, transactions: pd.DataFrame,
                     start: str | dt.date, horizon_days: int, *, seed: int = 0,
                     confidence: float = 0.95,
                     resamples: int = BOOTSTRAP_RESAMPLES) -> CampaignResult:
    """Treatment against control: retention and revenue in ``(start, start + H]``.

    Parameters
    ----------
    members
        The campaign list: ``customer_id`` and ``group`` (``treatment`` /
        ``control``), as ``churnlens at-risk --control-fraction`` writes it; its
        ``as_of`` (the scoring date) and ``list_id`` columns are read when present.
    transactions
        Transactions covering the window (clean, or raw with the standard column
        names: they go through :func:`churnlens._loading.ensure_clean`).
    start
        The day the campaign began; the window is ``(start, start + horizon_days]``.
    horizon_days
        ``H``, the window's length in days.
    seed
        Seed of the revenue bootstrap.
    confidence
        Level of every interval (0.95).
    resamples
        Bootstrap resamples.

    Returns
    -------
    CampaignResult

    Raises
    ------
    ChurnlensError
        A list without a ``group`` column, or without control or treatment customers;
        ``start`` before the list's scoring date; a window the data do not cover to its
        end; a list none of whose customers appear in the data.
    """
    from churnlens._validation import require_positive_int

    listed = _check_members(members)
    horizon = require_positive_int(horizon_days, name="horizon_days")
    start_date = parse_date(start, name="start").date()
    end_date = start_date + dt.timedelta(days=horizon)
    _z(confidence)
    as_of = _list_as_of(members)
    if as_of is not None and start_date < as_of:
        raise ChurnlensError(
            f"--start {start_date}: the campaign cannot start before the list was scored "
            f"(as-of {as_of}, column 'as_of' of the list): purchases made before the list "
            "existed would count as the campaign's. Suggestion: --start "
            f"{as_of} or later (the day the campaign began).")
    clean = ensure_clean(transactions)
    window, last_day, known = _window_outcomes(clean, day_number(start_date),
                                               day_number(end_date))
    if last_day < day_number(end_date):
        last = from_day_number(last_day)
        covered = max(0, last_day - day_number(start_date))
        hint = (f"or a shorter window, --horizon-days {covered}" if covered >= 1
                else "or a --start inside the data")
        raise ChurnlensError(
            f"the window ({start_date}, {end_date}] has not closed in the data: they end "
            f"on {last}, {day_number(end_date) - last_day} days before the window does, "
            "so customers who will still buy would count as lost. Suggestion: rerun with "
            f"transactions up to {end_date} or later, {hint}.")
    ids = _unneutralised(listed["customer_id"], known)
    missing = int((~ids.isin(known)).sum())
    if missing == len(ids):
        raise ChurnlensError(
            f"none of the list's {len(ids):,} customers appear in the transactions "
            f"(first ids {ids.head(3).tolist()}, matched as text). Suggestion: pass the "
            "transactions the list was scored from, with the same --customer-col.")
    outcome = pd.DataFrame({"customer_id": ids.to_numpy(),
                            "group": listed["group"].to_numpy()}).merge(
        window, on="customer_id", how="left")
    retained = outcome["retained"].fillna(False).astype(bool).to_numpy()
    revenue = outcome["revenue"].fillna(0.0).astype(float).to_numpy()
    in_group = {name: (outcome["group"] == name).to_numpy() for name in GROUPS}
    groups = {name: GroupOutcome(customers=int(mask.sum()), retained=int(retained[mask].sum()),
                                 revenue=float(revenue[mask].sum()))
              for name, mask in in_group.items()}
    t, c = groups[TREATMENT], groups[CONTROL]
    low, high = newcombe_interval(t.retained, t.customers, c.retained, c.customers, confidence)
    retention_difference = Estimate(t.retention - c.retention, low * 100, high * 100)
    rev_low, rev_high = bootstrap_mean_difference(
        revenue[in_group[TREATMENT]], revenue[in_group[CONTROL]], seed=seed,
        resamples=resamples, confidence=confidence)
    revenue_difference = Estimate(t.revenue_per_customer - c.revenue_per_customer,
                                  rev_low, rev_high)
    mde = minimum_detectable_difference(c.retained / c.customers, t.customers, c.customers)
    notes = []
    if missing:
        notes.append(f"{missing:,} of the list's {len(ids):,} customers have no row in the "
                     "transactions: they count as not retained, with no revenue (is it the "
                     "data the list was scored from?)")
    if as_of is None:
        notes.append("the list does not state its scoring date (no column 'as_of'): --start "
                     "could not be checked against it")
    list_ids = (members["list_id"].astype(str).unique().tolist()
                if "list_id" in members.columns else [])
    return CampaignResult(
        list_id=list_ids[0] if len(list_ids) == 1 else None,
        as_of=as_of, start=start_date, end=end_date, horizon_days=horizon,
        confidence=float(confidence), seed=int(seed), groups=groups,
        retention_difference=retention_difference, revenue_difference=revenue_difference,
        incremental_customers=retention_difference.scaled(t.customers / 100),
        incremental_revenue=revenue_difference.scaled(t.customers),
        minimum_detectable_retention=None if mde is None else mde * 100,
        minimum_detectable_revenue=_revenue_mde(revenue[in_group[TREATMENT]],
                                                revenue[in_group[CONTROL]]),
        members_without_transactions=missing, notes=tuple(notes), resamples=int(resamples))


def _revenue_mde(treated: np.ndarray, control: np.ndarray) -> float | None:
    """The smallest revenue-per-customer difference detectable with 80% power at alpha
    0.05 two-sided: ``(z(0.975) + z(0.8)) sqrt(s_t^2/n_t + s_c^2/n_c)``."""
    if len(treated) < 2 or len(control) < 2:
        return None
    z = NormalDist().inv_cdf(1 - MDE_ALPHA / 2) + NormalDist().inv_cdf(MDE_POWER)
    return float(z * math.sqrt(treated.var(ddof=1) / len(treated)
                               + control.var(ddof=1) / len(control)))
