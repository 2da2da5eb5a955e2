"""Reasons: why a customer's churn risk is high, in the customer's own terms.

A reason is a *kind* of risk (:data:`REASON_KINDS`), never a model input read out by
name. Each model feature belongs to one kind; a kind's weight for a customer is the sum
of its features' contributions to that customer's churn log-odds (the model's exact
per-customer contributions, :meth:`churnlens.ChurnModel.explain`). The rules:

- **only what pushes risk up**: a kind is a reason only when its weight is positive
  *and* the customer's own history shows it (the condition of the kind below: a
  customer who bought last week, in their usual rhythm, is never told they are silent).
  The three heaviest such kinds become ``reason_1 .. reason_3`` (ties go to the kind
  listed first); a customer can have fewer (empty strings).
- **in the customer's own terms**: days, purchases and money of this customer; a model
  quantity (the BG/NBD probabilities ``bgnbd_p_alive`` and ``bgnbd_p_purchase``) is
  never named: it is credited to the silence it is computed from (recency against the
  customer's purchase rhythm).
- **never a loyalty signal**: many purchases, a high total spend or a long tenure are
  never cited as a cause of risk (no kind has such a text).

The kinds (features credited; condition; text), in tie-break order:

- ``silence``: recency, overdue ratio, the BG/NBD probabilities, first-to-last span,
  first repeat, recent share of purchases. One purchase, or silent longer than the usual
  gap: ``only one purchase, 70 days ago``, ``usually buys every 12 days, silent for 38``.
- ``slowing``: ``occasions_{w}d``, ``rate_trend_{w}d``. Still buying, but fewer
  purchases in the last ``w`` days than their own rate before (history of ``2w`` days at
  least): ``2 purchases in the last 90 days, usually 7``.
- ``spend``: money totals and means, ``spend_{w}d``, ``basket_trend_{w}d``. Spend per
  day in the last window at least :data:`MIN_DROP_PERCENT` (20%) below the window before
  (the longest pair of windows the history covers), else an average basket 20% smaller
  than usual: ``spend down 60% in the last 180 days vs the 185 days before``,
  ``average basket down 40% in the last 90 days``.
- ``rhythm``: frequency, gaps between purchases. The usual gap is a horizon or more, or
  the last gap was longer than usual: ``usually buys only every 120 days, longer than
  the 91-day horizon``, ``last gap between purchases 60 days, usually 20``.
- ``new``: tenure. First purchase less than a horizon ago: ``first purchase only 20
  days ago``.
- ``refunds``: refund total. Refunds so far: ``refunds of 45.00 so far``.

The kinds of the richer inputs (issue 21, docs/features.md), after those, in this order:

- ``categories``: ``category_count``, ``category_concentration``. One category only, or
  a spend concentration (HHI) of :data:`MIN_CONCENTRATION` or more: ``buys only in one
  category``, ``buys mostly in one category``.
- ``discount``: ``discount_share``. :data:`MIN_DISCOUNT_PERCENT` (20%) or more of the
  list price discounted: ``buys on discount: 35% off on average``.
- ``channel``: ``channel_share_<c>``. Half or more of the spend through one channel:
  ``buys only via web``, ``buys mostly via store (80% of spend)``.
- ``basket``: ``orders_per_occasion``, ``items_per_occasion``. One item per purchase
  day: ``buys one item at a time``.
- ``event:<type>``, one kind per event type: ``days_since_<type>``,
  ``<type>_count_<w>d``. No event of the type in the shortest window (or none on
  record): ``opened no email for 60 days``, ``never opened an email``, ``no site visit
  for 45 days``; else, when the counts push the risk up, the events of the shortest
  window against the customer's own rate before it (over the longest window):
  ``1 site visit in the last 30 days, usually 3``, ``4 support tickets in the last 30
  days, usually 1``. Engagement (email opens and clicks, site visits, app opens,
  logins) is a reason only when fewer than usual; trouble (support tickets,
  complaints, returns, unsubscribes) only when more, and never by its absence.
- ``attribute:<name>``, one kind per customer attribute: ``attr_<name>``. The value is
  known (an unseen category is not): ``channel: web``, ``age: 34``.
- ``season``: ``season_sin``, ``season_cos``, ``last_year_window_share``. Last year the
  customer bought less than half as much in the coming horizon's dates as an even year
  would give: ``quiet season for this customer: 5% of last year's purchases fell in
  these 91 days``.

For a customer with one purchase, the ``slowing``, ``rhythm`` and ``new`` weights and
the repeat basket's are added to ``silence`` (one purchase, 70 days ago, *is* the short
history, the missing rhythm and the empty windows); when ``silence`` holds, the
``rhythm`` weight is added to it too (``usually buys every 9 days, silent for 46``
states the rhythm: the trees learn that a frequent buyer gone quiet is at risk, and
credit part of it to the purchase count). The windowed features of a window without a
purchase (``occasions_{w}d = 0``) are credited to ``silence``: what they say is that
the customer has been silent. Features of no kind (none in churnlens today) are never
reasons. Values are snapped to 6 decimals before rounding for display, so engines that
add in another order show the same text.
"""

from __future__ import annotations

import itertools
import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from churnlens._model import Explanation

__all__ = [
    "INPUT_KINDS",
    "MIN_CONCENTRATION",
    "MIN_DISCOUNT_PERCENT",
    "MIN_DROP_PERCENT",
    "MODEL_QUANTITIES",
    "REASON_COLUMNS",
    "REASON_KINDS",
    "reason_kind",
    "reason_texts",
    "reasons_from_contributions",
]

REASON_COLUMNS = ["reason_1", "reason_2", "reason_3"]

# The kinds, in tie-break order, and the features of each (windowed features by pattern).
REASON_KINDS: dict[str, tuple[str, ...]] = {
    "silence": ("recency_days", "overdue_ratio", "bgnbd_p_alive", "bgnbd_p_purchase",
                "t_x_days", "days_since_first_repeat", "recent_tenure_share"),
    "slowing": ("occasions_{w}d", "rate_trend_{w}d"),
    "spend": ("monetary_total", "monetary_mean", "monetary_mean_repeat", "spend_{w}d",
              "basket_trend_{w}d"),
    "rhythm": ("frequency", "repeat_frequency", "gap_mean_days", "gap_median_days",
               "gap_std_days", "gap_last_days"),
    "new": ("tenure_days",),
    "refunds": ("refund_total",),
}
# Model-internal quantities: never shown by name (credited to what they are computed from).
MODEL_QUANTITIES = ("bgnbd_p_alive", "bgnbd_p_purchase")

# A drop in spend or basket smaller than this (percent) is noise, not a reason.
MIN_DROP_PERCENT = 20
_KINDS = list(REASON_KINDS)
_WINDOWED = re.compile(r"^(occasions|rate_trend|spend|basket_trend)_(\d+)d$")

# The kinds of the richer inputs' features with fixed names, in tie-break order (after
# REASON_KINDS; the per-event-type and per-attribute kinds follow, then ``season``).
INPUT_KINDS: dict[str, tuple[str, ...]] = {
    "categories": ("category_count", "category_concentration"),
    "discount": ("discount_share",),
    "channel": ("channel_share_{c}",),
    "basket": ("orders_per_occasion", "items_per_occasion"),
    "season": ("season_sin", "season_cos", "last_year_window_share"),
}
# A spend concentration (HHI of category shares) from which "mostly in one category".
MIN_CONCENTRATION = 0.8
# The average discount (percent of the list price) from which buying on discount is said.
MIN_DISCOUNT_PERCENT = 20
_CHANNEL = re.compile(r"^channel_share_(.+)$")
_EVENT_DAYS = re.compile(r"^days_since_(.+)$")
_EVENT_COUNT = re.compile(r"^(.+)_count_(\d+)d$")
_ATTRIBUTE = re.compile(r"^attr_(.+)$")
# How an event type reads: (absent for N days, never on record, one event, events).
_EVENT_WORDS: dict[str, tuple[str, str, str, str]] = {
    "email_open": ("opened no email for {d} days", "never opened an email",
                   "email opened", "emails opened"),
    "email_click": ("clicked no email for {d} days", "never clicked an email",
                    "email clicked", "emails clicked"),
    "site_visit": ("no site visit for {d} days", "no site visit on record",
                   "site visit", "site visits"),
    "app_open": ("did not open the app for {d} days", "never opened the app",
                 "app open", "app opens"),
    "login": ("no login for {d} days", "no login on record", "login", "logins"),
    "support_ticket": ("", "", "support ticket", "support tickets"),
    "complaint": ("", "", "complaint", "complaints"),
}
# Events that engage (fewer than usual is the sign) and trouble (more than usual is);
# other types: either, as the model's contributions say.
_ENGAGEMENT_EVENTS = frozenset({"email_open", "email_click", "site_visit", "app_open",
                                "login"})
_TROUBLE_EVENTS = frozenset({"support_ticket", "complaint", "return", "unsubscribe"})


def reason_kind(feature: str) -> str | None:
    """The reason kind a feature's contribution is credited to (``None``: never a reason).

    Examples
    --------
    >>> reason_kind("bgnbd_p_purchase"), reason_kind("spend_90d"), reason_kind("x")
    ('silence', 'spend', None)
    """
    found = _WINDOWED.match(feature)
    pattern = f"{found.group(1)}_{{w}}d" if found else feature
    for kind, features in REASON_KINDS.items():
        if pattern in features:
            return kind
    return _input_kind(feature)


def _input_kind(feature: str) -> str | None:
    """The kind of a feature of the richer inputs (``None``: not one of them).

    Examples
    --------
    >>> _input_kind("category_count"), _input_kind("channel_share_web")
    ('categories', 'channel')
    >>> _input_kind("days_since_email_open"), _input_kind("email_open_count_30d")
    ('event:email_open', 'event:email_open')
    >>> _input_kind("attr_region"), _input_kind("season_cos"), _input_kind("x")
    ('attribute:region', 'season', None)
    """
    for kind, features in INPUT_KINDS.items():
        if feature in features:
            return kind
    if _CHANNEL.match(feature):
        return "channel"
    if found := _EVENT_DAYS.match(feature) or _EVENT_COUNT.match(feature):
        return f"event:{found.group(1)}"
    if found := _ATTRIBUTE.match(feature):
        return f"attribute:{found.group(1)}"
    return None


def _kinds_of(names: list[str]) -> list[str]:
    """Every kind of ``names`` in tie-break order: :data:`REASON_KINDS`, the fixed input
    kinds but ``season``, each event type and attribute (first seen first), ``season``."""
    found = [k for k in (reason_kind(name) for name in names) if k is not None]
    fixed = [k for k in INPUT_KINDS if k != "season" and k in found]
    events = list(dict.fromkeys(k for k in found if k.startswith("event:")))
    attributes = list(dict.fromkeys(k for k in found if k.startswith("attribute:")))
    return [*_KINDS, *fixed, *events, *attributes, *(["season"] if "season" in found else [])]


def _windows(frame_columns: list[str] | pd.Index, prefix: str) -> list[int]:
    """The windows ``w`` for which ``{prefix}_{w}d`` is given, ascending."""
    found = (_WINDOWED.match(str(c)) for c in frame_columns)
    return sorted({int(m.group(2)) for m in found if m and m.group(1) == prefix})


def _snap(values: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(values, dtype=np.float64), 6)


def _whole(values: np.ndarray) -> np.ndarray:
    """Values rounded to whole numbers for display (NaN stays NaN)."""
    return np.round(_snap(values))


def _text(values: np.ndarray) -> np.ndarray:
    """Whole numbers as text (object array)."""
    return np.nan_to_num(values).astype(np.int64).astype(str).astype(object)


def _money(values: np.ndarray) -> np.ndarray:
    unique, inverse = np.unique(_snap(values), return_inverse=True)
    return np.array([f"{v:,.2f}" for v in unique.tolist()], dtype=object)[inverse]


def _plural(counts: np.ndarray, word: str) -> np.ndarray:
    return np.where(counts == 1, word, word + "s").astype(object)


class _Kinds:
    """Per-customer condition (``valid``) and text of each kind, from the features."""

    def __init__(self, features: pd.DataFrame, horizon_days: int | None) -> None:
        self.n = len(features)
        self.frame = features
        self.horizon = horizon_days
        self.valid: dict[str, np.ndarray] = {}
        self.text: dict[str, np.ndarray] = {}
        for kind in _KINDS:
            valid, text = getattr(self, f"_{kind}")()
            self.valid[kind] = valid
            self.text[kind] = text

    def col(self, name: str) -> np.ndarray:
        if name not in self.frame:
            return np.full(self.n, np.nan)
        return pd.to_numeric(self.frame[name], errors="coerce").to_numpy(dtype=np.float64)

    def _empty(self) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(self.n, dtype=bool), np.full(self.n, "", dtype=object)

    def _silence(self) -> tuple[np.ndarray, np.ndarray]:
        valid, text = self._empty()
        frequency, recency = _whole(self.col("frequency")), _whole(self.col("recency_days"))
        gap = _whole(self.col("gap_mean_days"))
        once = frequency == 1
        late = (frequency >= 2) & (recency > gap)  # NaN compares False
        text[once] = "only one purchase, " + _text(recency[once]) + np.where(
            recency[once] == 1, " day ago", " days ago").astype(object)
        text[late] = ("usually buys every " + _text(gap[late]) + " days, silent for "
                      + _text(recency[late]))
        valid[once | late] = True
        return valid, text

    def _slowing(self) -> tuple[np.ndarray, np.ndarray]:
        valid, text = self._empty()
        frequency, tenure = self.col("frequency"), self.col("tenure_days")
        best_drop = np.zeros(self.n)
        for w in _windows(self.frame.columns, "occasions"):
            recent = _whole(self.col(f"occasions_{w}d"))
            before_days = tenure + 1 - w
            # the customer's own rate before the window, over the window's length
            with np.errstate(divide="ignore", invalid="ignore"):
                usual = _whole((frequency - recent) / before_days * w)
            ok = (tenure + 1 >= 2 * w) & (recent >= 1) & (usual > recent)
            drop = np.where(ok, 1 - recent / np.where(usual > 0, usual, 1), 0.0)
            take = ok & (drop > best_drop)
            best_drop[take] = drop[take]
            text[take] = (_text(recent[take]) + " " + _plural(recent[take], "purchase")
                          + f" in the last {w} days, usually " + _text(usual[take]))
            valid |= take
        return valid, text

    def _spend(self) -> tuple[np.ndarray, np.ndarray]:
        valid, text = self._empty()
        windows = _windows(self.frame.columns, "spend")
        tenure = self.col("tenure_days")
        decided = np.zeros(self.n, dtype=bool)
        # spend per day in the last window against the window before it, the longest
        # pair the customer's history covers
        for w1, w2 in reversed(list(itertools.pairwise(windows))):
            covered = ~decided & (tenure + 1 >= w2)
            recent, both = _snap(self.col(f"spend_{w1}d")), _snap(self.col(f"spend_{w2}d"))
            before = both - recent
            with np.errstate(divide="ignore", invalid="ignore"):
                change = (recent / w1) / (before / (w2 - w1))
            down = _whole(100 * (1 - change))
            ok = covered & (before > 0) & (recent >= 0) & (down >= MIN_DROP_PERCENT)
            text[ok] = ("spend down " + _text(down[ok]) + f"% in the last {w1} days vs the "
                        f"{w2 - w1} days before")
            valid |= ok
            decided |= covered
        # else a smaller basket than usual, in the longest window with a purchase
        seen = valid.copy()
        for w in reversed(_windows(self.frame.columns, "basket_trend")):
            trend = self.col(f"basket_trend_{w}d")
            has = ~seen & ~np.isnan(trend)
            down = _whole(100 * (1 - trend))
            ok = has & (down >= MIN_DROP_PERCENT) & (down <= 100)
            text[ok] = "average basket down " + _text(down[ok]) + f"% in the last {w} days"
            valid |= ok
            seen |= has
        return valid, text

    def _rhythm(self) -> tuple[np.ndarray, np.ndarray]:
        valid, text = self._empty()
        frequency = _whole(self.col("frequency"))
        gap, last = _whole(self.col("gap_mean_days")), _whole(self.col("gap_last_days"))
        repeat = frequency >= 2
        if self.horizon is not None:
            rare = repeat & (gap >= self.horizon)
            text[rare] = ("usually buys only every " + _text(gap[rare])
                          + f" days, longer than the {self.horizon}-day horizon")
            valid |= rare
        slower = repeat & ~valid & (last > gap)
        text[slower] = ("last gap between purchases " + _text(last[slower]) + " days, usually "
                        + _text(gap[slower]))
        valid |= slower
        return valid, text

    def _new(self) -> tuple[np.ndarray, np.ndarray]:
        valid, text = self._empty()
        if self.horizon is None:
            return valid, text
        tenure = _whole(self.col("tenure_days"))
        young = tenure < self.horizon
        text[young] = "first purchase only " + _text(tenure[young]) + np.where(
            tenure[young] == 1, " day ago", " days ago").astype(object)
        valid |= young
        return valid, text

    def _refunds(self) -> tuple[np.ndarray, np.ndarray]:
        valid, text = self._empty()
        refunds = self.col("refund_total")
        ok = np.round(_snap(refunds), 2) > 0
        text[ok] = "refunds of " + _money(refunds[ok]) + " so far"
        valid |= ok
        return valid, text

    # --- the richer inputs' kinds (computed only for the kinds a model has) -------------

    def add_input_kind(self, kind: str, count_push: np.ndarray | None = None) -> None:
        """Compute ``valid`` and ``text`` of an input kind (``_input_kind``'s names);
        ``count_push``: an event kind's summed contributions of its count features."""
        if kind.startswith("event:"):
            valid, text = self._event(kind.split(":", 1)[1], count_push)
        elif kind.startswith("attribute:"):
            valid, text = self._attribute(kind.split(":", 1)[1])
        else:
            valid, text = getattr(self, f"_{kind}")()
        self.valid[kind] = valid
        self.text[kind] = text

    def _categories(self) -> tuple[np.ndarray, np.ndarray]:
        valid, text = self._empty()
        count = _whole(self.col("category_count"))
        concentration = _snap(self.col("category_concentration"))
        one = count == 1
        mostly = ~one & (concentration >= MIN_CONCENTRATION)
        text[one] = "buys only in one category"
        text[mostly] = "buys mostly in one category"
        valid |= one | mostly
        return valid, text

    def _discount(self) -> tuple[np.ndarray, np.ndarray]:
        valid, text = self._empty()
        percent = _whole(100 * self.col("discount_share"))
        ok = (percent >= MIN_DISCOUNT_PERCENT) & (percent <= 100)
        text[ok] = "buys on discount: " + _text(percent[ok]) + "% off on average"
        valid |= ok
        return valid, text

    def _channel(self) -> tuple[np.ndarray, np.ndarray]:
        valid, text = self._empty()
        columns = [c for c in self.frame.columns if _CHANNEL.match(str(c))]
        if not columns:
            return valid, text
        shares = np.column_stack([_snap(self.col(c)) for c in columns])
        filled = np.where(np.isnan(shares), -1.0, shares)
        best = np.argmax(filled, axis=1)  # the first largest share: ties to the first
        top = filled[np.arange(self.n), best]
        labels = np.empty(len(columns), dtype=object)
        labels[:] = [_words(str(c)[len("channel_share_"):]) for c in columns]
        percent = _whole(100 * top)
        only = percent >= 100
        mostly = ~only & (top >= 0.5)
        text[only] = "buys only via " + labels[best[only]]
        text[mostly] = ("buys mostly via " + labels[best[mostly]] + " ("
                        + _text(percent[mostly]) + "% of spend)")
        valid |= only | mostly
        return valid, text

    def _basket(self) -> tuple[np.ndarray, np.ndarray]:
        valid, text = self._empty()
        single = np.round(_snap(self.col("items_per_occasion")), 2) <= 1
        text[single] = "buys one item at a time"
        valid |= single
        return valid, text

    def _event(self, kind: str, count_push: np.ndarray | None
               ) -> tuple[np.ndarray, np.ndarray]:
        valid, text = self._empty()
        absent_for, never, one, many = _EVENT_WORDS.get(kind, (
            f"no {_words(kind)} for {{d}} days", f"no {_words(kind)} on record",
            _words(kind), _words(kind) + "s"))
        windows = sorted(int(m.group(2)) for m in (_EVENT_COUNT.match(str(c))
                                                   for c in self.frame.columns)
                         if m and m.group(1) == kind)
        shortest = windows[0] if windows else 30
        if kind in _TROUBLE_EVENTS:
            pass  # no ticket for a while is never a cause of risk
        elif f"days_since_{kind}" in self.frame:
            days = _whole(self.col(f"days_since_{kind}"))
            none = np.isnan(days)
            silent = ~none & (days >= shortest)
            text[none] = never
            text[silent] = np.array([absent_for.format(d=d) for d in
                                     _text(days[silent]).tolist()], dtype=object)
            valid |= none | silent
        elif windows:
            quiet = _whole(self.col(f"{kind}_count_{shortest}d")) == 0
            text[quiet] = f"no {_words(kind)} in the last {shortest} days"
            valid |= quiet
        if count_push is not None and len(windows) >= 2:
            # the shortest window against the customer's own rate in the longest one
            w, longest = windows[0], windows[-1]
            recent = _whole(self.col(f"{kind}_count_{w}d"))
            both = self.col(f"{kind}_count_{longest}d")
            usual = _whole((both - recent) / (longest - w) * w)
            direction = (usual > recent if kind in _ENGAGEMENT_EVENTS else
                         usual < recent if kind in _TROUBLE_EVENTS else usual != recent)
            ok = ~valid & (recent >= 1) & direction & (count_push > 0)
            text[ok] = (_text(recent[ok]) + " " + np.where(recent[ok] == 1, one, many)
                        .astype(object) + f" in the last {w} days, usually "
                        + _text(usual[ok]))
            valid |= ok
        return valid, text

    def _attribute(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        valid, text = self._empty()
        column = f"attr_{name}"
        if column not in self.frame:
            return valid, text
        values = self.frame[column]
        known = values.notna().to_numpy(copy=True)
        if isinstance(values.dtype, pd.CategoricalDtype) or values.dtype == object:
            shown = values.astype(object).to_numpy()
            text[known] = [f"{_words(name)}: {v}" for v in shown[known].tolist()]
        else:
            numbers = _snap(pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64))
            known &= ~np.isnan(numbers)
            text[known] = [f"{_words(name)}: {v:,.6g}" for v in numbers[known].tolist()]
        valid |= known
        return valid, text

    def _season(self) -> tuple[np.ndarray, np.ndarray]:
        valid, text = self._empty()
        if self.horizon is None:
            return valid, text
        share = _snap(self.col("last_year_window_share"))
        even = self.horizon / 365
        ok = ~np.isnan(share) & (share < even / 2)
        percent = _whole(100 * share)
        text[ok] = ("quiet season for this customer: " + _text(percent[ok])
                    + f"% of last year's purchases fell in these {self.horizon} days")
        valid |= ok
        return valid, text


def _words(name: str) -> str:
    """A sanitised name as words (``email_open`` -> ``email open``)."""
    return name.replace("_", " ").strip()


def reasons_from_contributions(
    contributions: np.ndarray, names: list[str], inputs: pd.DataFrame, *, top: int = 3,
    values: np.ndarray | None = None, horizon_days: int | None = None,
) -> np.ndarray:
    """The ``top`` reasons of each row as text: an object array ``(rows, top)``.

    Parameters
    ----------
    contributions
        One column per name (no bias): each feature's contribution to the churn
        log-odds.
    names
        The model's feature names.
    inputs
        The customers' features (:func:`churnlens.compute_features`, same rows): the
        texts read the customer's own history from them.
    top
        Reasons per customer.
    values
        Unused (kept for callers of the earlier signature).
    horizon_days
        The churn horizon (the ``rhythm`` and ``new`` conditions need it; without it
        those kinds are not reasons).

    Returns
    -------
    numpy.ndarray
        Texts, heaviest kind first; ``""`` where fewer kinds raise the risk.
    """
    del values
    n = contributions.shape[0]
    frame = inputs.reset_index(drop=True)
    kinds = _Kinds(frame, horizon_days)
    every = _kinds_of(names)
    silence = _KINDS.index("silence")
    weights = np.zeros((n, len(every)))
    safe = np.nan_to_num(np.asarray(contributions, dtype=np.float64))
    count_push: dict[str, np.ndarray] = {}
    for j, name in enumerate(names):
        kind = reason_kind(name)
        if kind is None:
            continue
        weights[:, every.index(kind)] += safe[:, j]
        if kind.startswith("event:") and _EVENT_COUNT.match(name):
            count_push[kind] = count_push.get(kind, np.zeros(n)) + safe[:, j]
        found = _WINDOWED.match(name)
        if found and f"occasions_{found.group(2)}d" in frame:
            # no purchase in the window: what the window's features say is silence
            quiet = kinds.col(f"occasions_{found.group(2)}d") == 0
            weights[quiet, _KINDS.index(kind)] -= safe[quiet, j]
            weights[quiet, silence] += safe[quiet, j]
    once = kinds.col("frequency") == 1
    for folded in ("slowing", "rhythm", "new"):
        # one purchase, 70 days ago, *is* the short history, the missing rhythm and the
        # windows without a purchase: everything but money says that one thing
        k = _KINDS.index(folded)
        weights[once, silence] += weights[once, k]
        weights[once, k] = 0.0
        kinds.valid[folded] &= ~once
    if "monetary_mean_repeat" in names:  # no repeat basket: one purchase, not money
        j = names.index("monetary_mean_repeat")
        weights[once, _KINDS.index("spend")] -= safe[once, j]
        weights[once, silence] += safe[once, j]
    # "usually buys every 9 days, silent for 46" states the rhythm too: with silence,
    # the rhythm (frequency, gaps) is part of the one reason, not a second one
    late = kinds.valid["silence"] & ~once
    rhythm = _KINDS.index("rhythm")
    weights[late, silence] += weights[late, rhythm]
    weights[late, rhythm] = 0.0
    kinds.valid["rhythm"] &= ~late
    for kind in every[len(_KINDS):]:
        kinds.add_input_kind(kind, count_push.get(kind))
    valid = np.column_stack([kinds.valid[k] for k in every])
    score = np.where(valid & (weights > 0), weights, -np.inf)
    texts = np.full((n, top), "", dtype=object)
    rows = np.arange(n)
    kind_texts = np.column_stack([kinds.text[k] for k in every]) if n else np.empty(
        (0, len(every)), dtype=object)
    for slot in range(min(top, len(every))):
        best = np.argmax(score, axis=1)  # the first maximum: ties go to the earlier kind
        chosen = np.isfinite(score[rows, best])
        texts[chosen, slot] = kind_texts[rows[chosen], best[chosen]]
        score[rows, best] = -np.inf
    return texts


def reason_texts(explanation: Explanation, features: pd.DataFrame, *, top: int = 3,
                 horizon_days: int | None = None) -> np.ndarray:
    """The ``top`` reasons of each explained customer, as text.

    Parameters
    ----------
    explanation
        :meth:`churnlens.ChurnModel.explain` of ``features``.
    features
        The features explained (the texts read the customer's history from them).
    top
        Reasons per customer; fewer (empty strings) when fewer kinds raise the risk.
    horizon_days
        The model's horizon.

    Returns
    -------
    numpy.ndarray
        An object array ``(rows, top)`` of texts.
    """
    names = list(explanation.feature_names)
    return reasons_from_contributions(explanation.contributions[:, :len(names)], names,
                                      features, top=top, horizon_days=horizon_days)
