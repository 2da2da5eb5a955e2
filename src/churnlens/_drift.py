"""Feature drift: a feature's distribution at training, at scoring, and how far apart.

A model is trained on the snapshots of some cutoffs; it is then scored on customers who
may look different (a new acquisition channel, a season the training never saw, a
change in the shop). The population stability index (PSI) measures how far one
distribution has moved from another over fixed bins:

    PSI = sum over bins of (a_i - e_i) * ln(a_i / e_i)

with ``e_i`` the share of the training rows in bin ``i`` and ``a_i`` the share of the
scored rows. The bins are the training distribution's deciles (``reference_profile``;
each cut point is the data value at or below the decile),
so each holds about a tenth of the training rows; a feature with fewer distinct values
gets fewer bins (ties merge cut points). Missing values are a bin of their own. Shares
are floored at ``SHARE_FLOOR`` before the logarithm, so an empty bin gives a large but
finite PSI.

The usual reading (Siddiqi, *Credit Risk Scorecards*, 2006; the rule used across credit
scoring and model monitoring): below 0.1 no real change, 0.1 to 0.25 a change worth
watching (``PSI_WATCH``), above 0.25 a shift that needs action (``PSI_ALERT``).

Everything here is plain NumPy on plain values, the same numbers from a pandas frame
(``profile_against``) and from per-bin counts computed elsewhere, such as on Spark
(``profile_from_counts``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "PSI_ALERT",
    "PSI_WATCH",
    "QUANTILES",
    "SHARE_FLOOR",
    "bin_index",
    "profile_against",
    "profile_from_counts",
    "psi",
    "reference_profile",
]

PSI_WATCH = 0.1
PSI_ALERT = 0.25
SHARE_FLOOR = 1e-4
# The quantiles kept of each feature's distribution (a compact summary for people).
QUANTILES: dict[str, float] = {"p01": 0.01, "p05": 0.05, "p10": 0.10, "p25": 0.25,
                               "p50": 0.50, "p75": 0.75, "p90": 0.90, "p95": 0.95,
                               "p99": 0.99}


def bin_index(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """The bin of each value: ``0 .. len(edges)`` for finite values, ``len(edges) + 1``
    for a missing one (NaN).

    Bin ``i`` holds ``edges[i-1] < x <= edges[i]`` (the first bin everything up to and
    including ``edges[0]``, the last everything above ``edges[-1]``).

    >>> bin_index(np.array([0.0, 1.0, 1.5, 3.0, np.nan]), [1.0, 2.0]).tolist()
    [0, 0, 1, 2, 3]
    """
    x = np.asarray(values, dtype=np.float64)
    cuts = np.asarray(edges, dtype=np.float64)
    index = np.searchsorted(cuts, x, side="left")
    index[np.isnan(x)] = len(cuts) + 1
    return index


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index of ``actual`` shares against ``expected`` shares.

    Both are shares over the same bins (each summing to 1, or both empty); each share is
    floored at ``SHARE_FLOOR`` first.

    >>> round(psi([0.5, 0.5], [0.6, 0.4]), 6)
    0.040547
    >>> psi([0.25, 0.75], [0.25, 0.75])
    0.0
    """
    e = np.maximum(np.asarray(expected, dtype=np.float64), SHARE_FLOOR)
    a = np.maximum(np.asarray(actual, dtype=np.float64), SHARE_FLOOR)
    if e.shape != a.shape:
        raise ValueError(f"{len(e)} expected shares against {len(a)} actual shares")
    return float(np.sum((a - e) * np.log(a / e)))


def _quantiles(x: np.ndarray) -> dict[str, float | None]:
    finite = x[~np.isnan(x)]
    if not len(finite):
        return dict.fromkeys(QUANTILES)
    values = np.quantile(finite, list(QUANTILES.values()))
    return {name: float(v) for name, v in zip(QUANTILES, values, strict=True)}


def _shares(index: np.ndarray, bins: int) -> list[float]:
    counts = np.bincount(index, minlength=bins).astype(np.float64)
    total = counts.sum()
    return (counts / total).tolist() if total else [0.0] * bins


def reference_profile(frame: pd.DataFrame, features: Sequence[str], *,
                      bins: int = 10) -> dict[str, dict[str, Any]]:
    """The training distribution of each feature: decile bins, their shares, quantiles.

    Parameters
    ----------
    frame
        The training rows (every snapshot the model was fitted on).
    features
        The features to profile.
    bins
        Bins per feature (quantile cut points of the finite values, each a value of the
        data; ties merge them).

    Returns
    -------
    dict
        ``{feature: {"edges", "shares", "quantiles", "missing_share", "rows"}}``:
        ``edges`` the inner cut points, ``shares`` one per bin (``len(edges) + 1``
        finite bins and a last bin for missing values).
    """
    profile: dict[str, dict[str, Any]] = {}
    for name in features:
        x = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
        finite = x[~np.isnan(x)]
        if len(finite):
            # "lower": every cut point is a value of the data, so a discrete feature
            # (counts, days) gets no bin that cannot hold anything
            cuts = np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1], method="lower")
            # unique inner cut points strictly inside the range: ties merge bins
            edges = [float(c) for c in np.unique(cuts) if c < finite.max()]
        else:
            edges = []
        index = bin_index(x, edges)
        profile[name] = {"edges": edges, "shares": _shares(index, len(edges) + 2),
                         "quantiles": _quantiles(x),
                         "missing_share": float(np.isnan(x).mean()) if len(x) else 0.0,
                         "rows": len(x)}
    return profile


def profile_against(frame: pd.DataFrame, reference: Mapping[str, Mapping[str, Any]]
                    ) -> dict[str, dict[str, Any]]:
    """A frame's distribution of each referenced feature, in the reference's bins.

    Returns
    -------
    dict
        ``{feature: {"edges", "shares", "reference_shares", "quantiles",
        "missing_share", "rows", "psi"}}`` for each feature of ``reference`` present
        in ``frame``; a feature missing from the frame is left out.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, ref in reference.items():
        if name not in frame.columns:
            continue
        x = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
        edges = list(ref["edges"])
        counts = np.bincount(bin_index(x, edges), minlength=len(edges) + 2)
        out[name] = _profile(ref, counts.tolist(), _quantiles(x))
    return out


def profile_from_counts(reference: Mapping[str, Mapping[str, Any]],
                        counts: Mapping[str, Sequence[int]],
                        quantiles: Mapping[str, Mapping[str, float | None]]
                        ) -> dict[str, dict[str, Any]]:
    """As :func:`profile_against`, from per-bin counts computed elsewhere (Spark).

    ``counts[feature]`` has one count per bin of the reference (``len(edges) + 2``:
    the finite bins, then missing values); ``quantiles[feature]`` the keys of
    ``QUANTILES``.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, ref in reference.items():
        if name not in counts:
            continue
        bins = len(ref["edges"]) + 2
        given = [int(c) for c in counts[name]]
        if len(given) != bins:
            raise ValueError(f"{name}: {len(given)} bin counts for {bins} bins")
        out[name] = _profile(ref, given, dict(quantiles.get(name) or {}))
    return out


def _profile(ref: Mapping[str, Any], counts: Sequence[int],
             quantiles: dict[str, float | None]) -> dict[str, Any]:
    total = sum(counts)
    shares = [c / total for c in counts] if total else [0.0] * len(counts)
    value = psi(ref["shares"], shares) if total else math.nan
    return {"edges": list(ref["edges"]), "shares": shares,
            "reference_shares": list(ref["shares"]), "quantiles": quantiles,
            "missing_share": shares[-1] if total else 0.0, "rows": int(total),
            "psi": None if math.isnan(value) else value}
