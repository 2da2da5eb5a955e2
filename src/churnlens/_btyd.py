"""What the "buy till you die" models share: checks of their inputs and fit helpers.

BG/NBD (:mod:`churnlens._bgnbd`), Pareto/NBD (:mod:`churnlens._paretonbd`) and
Gamma-Gamma (:mod:`churnlens._gammagamma`) read the same kind of parameters (a few
positive numbers, by name or in order), the same ``(x, t_x, T)`` repeat-purchase data
and the same churnlens feature columns, and their fits collapse identical rows and run
L-BFGS-B on one BLAS thread. Those rules live here once; each model keeps its
likelihood, its starting points and its fit strategy.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import optimize

from churnlens._validation import format_bad_rows
from churnlens.exceptions import ChurnlensError, DataValidationError, MissingColumnError

__all__ = [
    "FIT_ERRORS",
    "LOG_BOUND",
    "REPEAT_FEATURES",
    "aggregate",
    "as_params",
    "as_repeat_data",
    "check_penalizer",
    "feature_arrays",
    "finite_nonnegative",
    "fit_outcome",
    "fit_weights",
    "polish",
    "repeat_features_to_data",
    "single_threaded_blas",
]

ArrayLike = npt.ArrayLike

# What a BTYD fit can raise on data it does not suit and still let its caller fall back
# cleanly (the value model, the backtest's baselines): a ChurnlensError (empty data, a
# model error), or a numerical failure inside NumPy/SciPy.
FIT_ERRORS = (ChurnlensError, ValueError, ArithmeticError, np.linalg.LinAlgError)
FloatArray = npt.NDArray[np.float64]
ParamsLike = Sequence[float] | Mapping[str, float] | FloatArray

# Log-parameters are kept in [-LOG_BOUND, LOG_BOUND] during a fit: wide enough for any
# real data set (e^-20 .. e^20), narrow enough that every term stays finite when a
# degenerate data set (no repeat buyer at all) pushes a parameter to its boundary.
LOG_BOUND = 20.0

# The churnlens features a repeat-purchase model reads as (x, t_x, T), in days.
REPEAT_FEATURES = ("repeat_frequency", "t_x_days", "tenure_days")

P = TypeVar("P", bound=tuple[float, ...])


def as_params(params: ParamsLike, kind: type[P], model: str) -> P:
    """``params`` (a mapping by name, or the values in order) as ``kind``, checked.

    Parameters
    ----------
    params
        The parameters: a mapping with every field of ``kind``, or a sequence/array
        of as many values, in ``kind``'s order.
    kind
        The model's parameter ``NamedTuple`` (for example ``BGNBDParams``).
    model
        The model's name, for the messages ("BG/NBD").

    Returns
    -------
    P
        The parameters as ``kind``, every one a finite float > 0.

    Raises
    ------
    ChurnlensError
        If a name is missing, the number of values is wrong, or a value is not
        finite and > 0.
    """
    fields: tuple[str, ...] = kind._fields  # type: ignore[attr-defined]
    if isinstance(params, Mapping):
        try:
            values = [params[k] for k in fields]
        except KeyError as exc:
            raise ChurnlensError(
                f"params must have the keys {list(fields)}, got {sorted(params)}."
            ) from exc
    else:
        values = list(np.asarray(params, dtype=float).ravel())
        if len(values) != len(fields):
            raise ChurnlensError(
                f"params must be the {len(fields)} values ({', '.join(fields)}), "
                f"got {len(values)} values."
            )
    make = cast("Callable[..., P]", kind)  # a NamedTuple takes its fields in order
    out = make(*(float(v) for v in values))
    if not all(math.isfinite(v) and v > 0 for v in out):
        raise ChurnlensError(f"every {model} parameter must be finite and > 0, got {out}.")
    return out


def finite_nonnegative(values: ArrayLike, what: str, suggestion: str = "") -> FloatArray:
    """``values`` as a float array, refused unless every value is finite and >= 0.

    ``suggestion``, when given, ends the message (" Suggestion: ...").
    """
    arr = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        tail = f" Suggestion: {suggestion}" if suggestion else ""
        raise DataValidationError(f"{what} must be finite and >= 0.{tail}")
    return arr


def as_repeat_data(
    x: ArrayLike, t_x: ArrayLike, T: ArrayLike, model: str
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Broadcast ``(x, t_x, T)`` to float arrays and check the repeat-purchase contract.

    ``x`` whole and >= 0, ``t_x`` and ``T`` finite and >= 0, ``t_x <= T``; ``model``
    names the model in the messages.
    """
    try:
        xa, txa, Ta = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (x, t_x, T)))
    except ValueError as exc:
        raise DataValidationError(
            f"x, t_x and T must have the same length (or broadcast): {exc}. "
            "Suggestion: pass one value per customer in each."
        ) from exc
    for name, arr in (("x", xa), ("t_x", txa), ("T", Ta)):
        if not np.all(np.isfinite(arr)):
            raise DataValidationError(
                f"{name} has missing or infinite values. Suggestion: drop or fill those "
                "customers first."
            )
        if np.any(arr < 0):
            raise DataValidationError(
                f"{name} has negative values; {model} needs {name} >= 0. Suggestion: "
                "measure counts and times from each customer's first purchase."
            )
    if np.any(xa != np.floor(xa)):
        raise DataValidationError(
            "x (repeat purchases) must be whole numbers. Suggestion: x = occasions - 1."
        )
    if np.any(txa > Ta):
        raise DataValidationError(
            "t_x (last purchase) is after T (end of observation) for some customers; "
            f"{model} needs t_x <= T. Suggestion: measure both from the first purchase."
        )
    return xa, txa, Ta


def check_penalizer(penalizer: Any) -> float:
    """An estimator's ``penalizer`` as a float, refused unless a number >= 0 (not a bool)."""
    if (
        isinstance(penalizer, bool)
        or not isinstance(penalizer, int | float | np.number)
        or not math.isfinite(float(penalizer))
        or penalizer < 0
    ):
        raise ChurnlensError(f"penalizer must be a number >= 0, got {penalizer!r}.")
    return float(penalizer)


def fit_weights(x: FloatArray, weights: ArrayLike | None) -> FloatArray:
    """The weight of each of the (flat) rows ``x``: 1 each by default, else checked."""
    if weights is None:
        return np.ones_like(x)
    w = np.asarray(weights, dtype=float).ravel()
    if w.shape != x.shape:
        raise DataValidationError(
            f"weights must have one value per row ({x.size}), got {w.size}. "
            "Suggestion: pass one weight per customer."
        )
    return finite_nonnegative(w, "weights")


def aggregate(
    x: FloatArray, t_x: FloatArray, T: FloatArray, weights: FloatArray
) -> tuple[FloatArray, ...]:
    """Collapse identical ``(x, t_x, T)`` rows into one row with summed weights.

    Customer data in whole days repeat a lot (CDNOW: 2,357 customers, far fewer
    distinct rows), and the likelihood is a weighted sum, so the fit is exact and
    faster on the collapsed rows.
    """
    rows = np.column_stack([x, t_x, T])
    unique, inverse = np.unique(rows, axis=0, return_inverse=True)
    # With weights, bincount returns floats (numpy's stubs only know the integer case).
    summed = cast(
        "FloatArray",
        np.bincount(inverse.ravel(), weights=weights, minlength=len(unique)),
    )
    return unique[:, 0], unique[:, 1], unique[:, 2], summed


def single_threaded_blas() -> contextlib.AbstractContextManager[Any]:
    """Limit BLAS to one thread while L-BFGS-B runs.

    L-BFGS-B's tiny (4 parameters) linear algebra goes through BLAS/LAPACK; a
    multithreaded OpenBLAS spends most of the fit waking threads, ten times the whole
    fit on a busy machine (measured: 0.74 s against 0.07 s). threadpoolctl comes with
    scikit-learn; without it the fit is just as correct, only slower.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn always brings it
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def polish(
    objective: Callable[[FloatArray], float], theta: FloatArray, bounds: list[tuple[float, float]]
) -> optimize.OptimizeResult:
    """Polish an optimum of ``objective`` (in log-parameters) with Nelder-Mead.

    It needs no gradient, so it is not fooled by finite differences near a flat
    optimum.
    """
    return optimize.minimize(
        objective,
        theta,
        method="Nelder-Mead",
        bounds=bounds,
        options={"xatol": 1e-9, "fatol": 1e-13, "maxiter": 4000},
    )


def fit_outcome(
    objective: Callable[[FloatArray], float],
    best: optimize.OptimizeResult,
    polished: optimize.OptimizeResult,
) -> tuple[FloatArray, bool, str]:
    """The better of a fit's ``best`` start and its ``polished`` point, and whether it
    converged.

    Converged when one of the two optimisers says so and the projected gradient (by
    finite differences; at a bound of :data:`LOG_BOUND`, a gradient pushing outwards
    does not count) vanishes, below 1e-4.

    Returns
    -------
    tuple
        ``(theta, converged, message)``: the log-parameters, the verdict, and the
        optimiser's message with the projected gradient.
    """
    final = polished if polished.fun <= best.fun else best
    theta = np.asarray(final.x, dtype=float)
    grad = optimize.approx_fprime(theta, objective, 1e-7)
    pushing_out = ((theta <= -LOG_BOUND + 1e-9) & (grad > 0)) | (
        (theta >= LOG_BOUND - 1e-9) & (grad < 0)
    )
    projected = float(np.max(np.abs(np.where(pushing_out, 0.0, grad))))
    converged = bool(polished.success or best.success) and projected < 1e-4
    return theta, converged, f"{final.message} (projected gradient {projected:.1e})"


def feature_arrays(
    features: pd.DataFrame,
    columns: Sequence[str],
    model: str,
    *,
    missing_hint: str = "build the features with churnlens' feature module.",
    numeric_hint: str = "pass counts and day numbers, not text or dates.",
) -> list[FloatArray]:
    """The float arrays of ``columns`` of a churnlens features frame (NaN for missing).

    Refuses anything but a DataFrame, a missing column, and a column that is not
    numeric; the model's own value rules are the caller's.
    """
    if not isinstance(features, pd.DataFrame):
        raise DataValidationError(
            f"features must be a pandas DataFrame, got {type(features).__name__}. "
            "Suggestion: pass the frame built by churnlens' feature module."
        )
    missing = [c for c in columns if c not in features.columns]
    if missing:
        raise MissingColumnError(
            f"{model} needs the feature columns {list(columns)}; missing {missing}; "
            f"columns found: {[str(c) for c in features.columns]}. Suggestion: "
            f"{missing_hint}"
        )
    arrays = []
    for column in columns:
        series = features[column]
        try:
            arrays.append(series.to_numpy(dtype=float, na_value=np.nan))
        except (TypeError, ValueError) as exc:
            raise DataValidationError(
                f"column {column!r} must be numeric, got dtype {series.dtype}. "
                f"Suggestion: {numeric_hint}"
            ) from exc
    return arrays


def repeat_features_to_data(
    features: pd.DataFrame, model: str
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Read and check ``(x, t_x, T)`` in days from a churnlens features frame.

    The columns are :data:`REPEAT_FEATURES`; each must be finite and >= 0,
    ``repeat_frequency`` whole and ``t_x_days <= tenure_days``.
    """
    arrays = feature_arrays(
        features,
        REPEAT_FEATURES,
        model,
        missing_hint="build the features with churnlens' feature module "
        "(repeat_frequency = occasions - 1, t_x_days = last - first occasion, "
        "tenure_days = cutoff - first occasion).",
    )
    for column, values in zip(REPEAT_FEATURES, arrays, strict=True):
        wrong = ~np.isfinite(values) | (values < 0)
        if wrong.any():
            raise DataValidationError(
                f"column {column!r} has {int(wrong.sum())} missing, infinite or negative "
                f"values, {format_bad_rows(features[column][wrong], file_rows=False)}. "
                "Suggestion: it counts days or occasions since the first purchase and "
                "must be >= 0."
            )
    x, t_x, T = arrays
    fractional = x != np.floor(x)
    if fractional.any():
        raise DataValidationError(
            "column 'repeat_frequency' must hold whole numbers: "
            f"{format_bad_rows(features['repeat_frequency'][fractional], file_rows=False)}. "
            "Suggestion: it is the number of occasions minus 1."
        )
    after = t_x > T
    if after.any():
        raise DataValidationError(
            f"'t_x_days' is larger than 'tenure_days' in {int(after.sum())} rows: "
            f"{format_bad_rows(features['t_x_days'][after], file_rows=False)}. Suggestion: "
            "both are measured from the first occasion; the last occasion cannot be after "
            "the cutoff."
        )
    return x, t_x, T
