"""Reasons: the features that push a customer's churn risk up most, as text.

- **reasons**: the three features that push this customer's risk up the most (the
  model's per-customer contributions to the churn log-odds,
  :meth:`churnlens.ChurnModel.explain`; ties go to the feature listed first), as text
  with the customer's actual values (snapped to 6 decimals, then rounded for display).
  Features with a contribution ``<= 0`` are never reasons, so a customer can have fewer
  than three (empty strings).
- Each feature reads in its own words (:func:`reason_text_spec`): ``no purchase for 120
  days, 3.0x the usual gap``, ``spent 45.00 in the last 90 days``; a missing value has
  its own text (``no repeat purchase yet``).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from churnlens._model import Explanation

__all__ = ["REASON_COLUMNS", "reason_text_spec", "reason_texts", "reasons_from_contributions"]

REASON_COLUMNS = ["reason_1", "reason_2", "reason_3"]


@dataclasses.dataclass(frozen=True)
class _Text:
    """How one feature reads as a reason: ``template`` with ``{v}`` (the value) and
    ``{s}`` (plural s), the value's ``style`` and the text for a missing value."""

    template: str
    style: str  # count, days, money, ratio, share, number
    missing: str


_REPEAT = "fewer than two purchases"
_TEXTS: dict[str, _Text] = {
    "recency_days": _Text("no purchase for {v} days", "days", "no purchase yet"),
    "overdue_ratio": _Text("{v}x the usual gap between purchases", "ratio",
                           f"usual gap unknown ({_REPEAT})"),
    "frequency": _Text("{v} purchase{s} so far", "count", "no purchase yet"),
    "repeat_frequency": _Text("{v} repeat purchase{s}", "count", "no repeat purchase"),
    "tenure_days": _Text("customer for {v} days", "days", "new customer"),
    "t_x_days": _Text("{v} days between first and last purchase", "days",
                      "first and last purchase unknown"),
    "monetary_total": _Text("spent {v} in total", "money", "total spend unknown"),
    "monetary_mean": _Text("average basket {v}", "money", "average basket unknown"),
    "monetary_mean_repeat": _Text("average repeat basket {v}", "money",
                                  f"no repeat basket ({_REPEAT})"),
    "refund_total": _Text("refunds of {v}", "money", "refunds unknown"),
    "gap_mean_days": _Text("buys every {v} days on average", "days",
                           f"average gap unknown ({_REPEAT})"),
    "gap_median_days": _Text("median gap between purchases {v} days", "days",
                             f"median gap unknown ({_REPEAT})"),
    "gap_std_days": _Text("gaps between purchases vary by {v} days", "days",
                          "gap variation unknown (fewer than three purchases)"),
    "gap_last_days": _Text("last gap between purchases {v} days", "days",
                           f"last gap unknown ({_REPEAT})"),
    "days_since_first_repeat": _Text("first repeat purchase {v} days ago", "days",
                                     "no repeat purchase yet"),
    "recent_tenure_share": _Text("{v} of purchases in the latest quarter of their history",
                                 "share", "history too short to compare"),
    "bgnbd_p_alive": _Text("BG/NBD: {v} likely still active", "share",
                           "BG/NBD activity unknown"),
    "bgnbd_p_purchase": _Text("BG/NBD: {v} chance of a purchase in the horizon", "share",
                              "BG/NBD purchase chance unknown"),
}
_WINDOWED: dict[str, _Text] = {
    "occasions": _Text("{v} purchase{s} in the last {w} days", "count", ""),
    "spend": _Text("spent {v} in the last {w} days", "money",
                   "spend in the last {w} days unknown"),
    "rate_trend": _Text("buying rate in the last {w} days {v}x their usual", "ratio",
                        "buying rate in the last {w} days not comparable"),
    "basket_trend": _Text("basket in the last {w} days {v}x their usual", "ratio",
                          "no basket in the last {w} days to compare"),
}
_WINDOWED_NAME = re.compile(r"^(occasions|spend|rate_trend|basket_trend)_(\d+)d$")
_FORMATS = {"count": "{:.0f}", "days": "{:.0f}", "money": "{:,.2f}", "ratio": "{:.1f}",
            "share": "{:.0%}", "number": "{:,.3g}"}


@functools.lru_cache(maxsize=1024)
def reason_text_spec(feature: str) -> tuple[str, str, str]:
    """``(template, style, missing text)`` of a feature's reason (``{v}``, ``{s}``)."""
    if feature in _TEXTS:
        t = _TEXTS[feature]
        return t.template, t.style, t.missing
    found = _WINDOWED_NAME.match(feature)
    if found:
        t = _WINDOWED[found.group(1)]
        w = found.group(2)
        return (t.template.replace("{w}", w), t.style,
                t.missing.replace("{w}", w) or f"{feature} unknown")
    return feature + " = {v}", "number", f"{feature} unknown"


def _format_values(values: np.ndarray, style: str) -> np.ndarray:
    """Format numbers as text, once per distinct value (vectorised over customers).

    Values are first snapped to 6 decimals: engines that sum in another order differ
    in the last bits (19.344999999999 vs 19.345000000001), which must not decide how
    a half cent or a half day is rounded.
    """
    values = np.round(values, 6)
    if style in ("count", "days"):
        return np.round(values).astype(np.int64).astype(str).astype(object)
    unique, inverse = np.unique(values, return_inverse=True)
    spec = _FORMATS[style]
    return np.array([spec.format(v) for v in unique.tolist()], dtype=object)[inverse]


def _describe(feature: str, values: np.ndarray, extra: dict[str, np.ndarray]) -> np.ndarray:
    """Reason text of ``feature`` for each value (``extra``: other features, same rows)."""
    template, style, missing = reason_text_spec(feature)
    out = np.full(values.size, missing, dtype=object)
    present = ~np.isnan(values)
    if not present.any():
        return out
    text = _format_values(values[present], style)
    before, _, after = template.partition("{v}")
    if "{s}" in after:
        singular = after.replace("{s}", "")
        plural = after.replace("{s}", "s")
        after_text = np.where(text == "1", singular, plural).astype(object)
    else:
        after_text = np.full(text.size, after, dtype=object)
    out[present] = before + text + after_text
    if feature == "recency_days" and "overdue_ratio" in extra:
        # "no purchase for 120 days, 3.0x the usual gap" (the gap is known from 2 purchases)
        ratio = extra["overdue_ratio"][present]
        known = ~np.isnan(ratio)
        if known.any():
            idx = np.flatnonzero(present)[known]
            out[idx] = out[idx] + ", " + _format_values(ratio[known], "ratio") + (
                "x the usual gap")
    return out


def reasons_from_contributions(
    contributions: np.ndarray, names: list[str], inputs: pd.DataFrame, *, top: int = 3,
    values: np.ndarray | None = None,
) -> np.ndarray:
    """The ``top`` reasons of each row as text: an object array ``(rows, top)``.

    ``contributions`` has one column per name (no bias); ``inputs`` holds those
    features' values (or ``values``, the same as a float matrix with one column per
    name: read by position, which costs less than a frame's columns by name). Only
    positive contributions are reasons; ties go to the feature listed first.
    """
    matrix = values
    position = {name: j for j, name in enumerate(names)} if matrix is not None else {}

    def column(name: str) -> np.ndarray:
        if matrix is not None and name in position:
            return matrix[:, position[name]]
        return inputs[name].to_numpy(dtype=np.float64)

    n = contributions.shape[0]
    values = np.where(np.isnan(contributions), -np.inf, contributions)
    chosen = np.full((n, top), -1, dtype=np.int64)
    rows = np.arange(n)
    for j in range(min(top, values.shape[1])):
        best = np.argmax(values, axis=1)  # the first maximum: ties go to the earlier feature
        positive = values[rows, best] > 0
        chosen[:, j] = np.where(positive, best, -1)
        values[rows, best] = -np.inf
    texts = np.full((n, top), "", dtype=object)
    extra = {"overdue_ratio": column("overdue_ratio")} if (
        "overdue_ratio" in position or "overdue_ratio" in inputs) else {}
    for k in np.unique(chosen[chosen >= 0]):
        row_idx, slot_idx = np.nonzero(chosen == k)
        wanted = np.unique(row_idx)
        feature = names[int(k)]
        text = _describe(feature, column(feature)[wanted],
                         {name: v[wanted] for name, v in extra.items()})
        texts[row_idx, slot_idx] = text[np.searchsorted(wanted, row_idx)]
    return texts


def reason_texts(explanation: Explanation, features: pd.DataFrame, *, top: int = 3
                 ) -> np.ndarray:
    """The ``top`` reasons of each explained customer, as text.

    Parameters
    ----------
    explanation
        :meth:`churnlens.ChurnModel.explain` of ``features``.
    features
        The features explained (for values the model does not read itself, such as
        ``overdue_ratio`` beside ``recency_days``).
    top
        Reasons per customer; fewer (empty strings) when fewer features raise the risk.

    Returns
    -------
    numpy.ndarray
        An object array ``(rows, top)`` of texts.
    """
    names = list(explanation.feature_names)
    return reasons_from_contributions(explanation.contributions[:, :len(names)], names,
                                      features, top=top, values=explanation.feature_values)
