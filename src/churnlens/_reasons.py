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
    return None


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
    silence = _KINDS.index("silence")
    weights = np.zeros((n, len(_KINDS)))
    safe = np.nan_to_num(np.asarray(contributions, dtype=np.float64))
    for j, name in enumerate(names):
        kind = reason_kind(name)
        if kind is None:
            continue
        weights[:, _KINDS.index(kind)] += safe[:, j]
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
    valid = np.column_stack([kinds.valid[k] for k in _KINDS])
    score = np.where(valid & (weights > 0), weights, -np.inf)
    texts = np.full((n, top), "", dtype=object)
    rows = np.arange(n)
    kind_texts = np.column_stack([kinds.text[k] for k in _KINDS]) if n else np.empty(
        (0, len(_KINDS)), dtype=object)
    for slot in range(min(top, len(_KINDS))):
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
