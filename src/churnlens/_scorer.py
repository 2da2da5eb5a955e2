"""The scoring form of a trained :class:`~churnlens.ChurnModel`: plain arrays, no pickle.

A bundle's ``churnlens-model.joblib`` is a pickle: reading it imports the libraries the
model is made of (scikit-learn with SciPy and pandas, LightGBM: ~3.5 s) and runs code
from the file. Scoring needs none of them: the LightGBM trees are tables of direction
patterns and leaf values (:mod:`churnlens._contributions`), the logistic part is a
signed log, a median fill, a scaling and a dot product, BG/NBD is four numbers, and the
calibrator is a curve or two numbers. :class:`ChurnScorer` holds exactly those arrays,
is saved beside the pickle as ``churnlens-scorer.npz`` (read with
``allow_pickle=False``: data only, covered by the card's digest) and loads with NumPy
alone (SciPy's ``special`` is imported when BG/NBD or Platt scaling first scores).

The rule this module owns: **a scorer gives the numbers of the model it was made
from, bit for bit** (``predict_proba``, ``decision_function``, ``explain``,
``bgnbd_offset``). Each step repeats the operations of the estimator it replaces, in
the same order and on arrays of the same memory layout (a matrix product's rounding
depends on it); ``tests/test_scorer.py`` checks every output with
``assert_array_equal``. Errors on bad input are the model's own: on any doubt the
check is delegated to the function the model uses (imported then).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import sys
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from churnlens._contributions import TreeContributions
from churnlens._season import horizons_of
from churnlens.exceptions import DataValidationError, ModelError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SCORER_FORMAT", "ChurnScorer", "Explanation", "feature_matrix", "load_scorer"]

SCORER_FORMAT = 1
# Features added by the model itself from its BG/NBD component.
BGNBD_FEATURES = ("bgnbd_p_alive", "bgnbd_p_purchase")
BGNBD_INPUTS = ("repeat_frequency", "t_x_days", "tenure_days")
EPS = 1e-6
# How far the contributions of a row may be from its log-odds (float rounding is ~1e-14).
LOG_ODDS_TOLERANCE = 1e-9
_INFINITE = "Input X contains infinity or a value too large for dtype('float64')."


@dataclasses.dataclass(frozen=True)
class Explanation:
    """A :class:`ChurnModel`'s churn risk and exact feature contributions, from one pass.

    Attributes
    ----------
    churn_risk
        ``(rows,)``: the model's churn risk, identical to ``predict_proba(X)[:, 1]``.
    log_odds
        ``(rows,)``: the blended churn log-odds before any post-hoc calibration,
        identical to ``decision_function(X)``.
    contributions
        ``(rows, features + 1)``: each feature's contribution to ``log_odds`` (one
        column per name of ``feature_names``, then the bias); each row adds up to its
        ``log_odds`` (to float rounding, checked to 1e-9).
    feature_names
        The model's features (``feature_names_``, BG/NBD's included).
    feature_values
        ``(rows, features)``: the values the model read, one column per feature.
    index
        The index of the explained frame.
    """

    churn_risk: np.ndarray
    log_odds: np.ndarray
    contributions: np.ndarray
    feature_names: list[str]
    feature_values: np.ndarray
    index: pd.Index

    def contributions_frame(self) -> pd.DataFrame:
        """The contributions as a frame: one column per feature plus ``bias``."""
        import pandas as pd

        return pd.DataFrame(self.contributions, columns=[*self.feature_names, "bias"],
                            index=self.index)


# Fitted attributes in which a ChurnModel describes itself (the blend it chose, the
# inputs its linear part does not use, its measured level error, its history, BG/NBD's
# boundary flags, the warnings built from them); the scoring form and the card keep them.
SELF_KNOWLEDGE = ("selection_", "dropped_inputs_", "level_error_", "history_days_",
                  "short_history_", "bgnbd_flags_", "warnings_", "season_level_",
                  "season_clock_")
# The calendar features the seasonal level reads (churnlens._input_features, calendar).
SEASON_FEATURES = ("season_sin", "season_cos")
# What monitoring compares a scoring with (churnlens monitor: drift and risk level),
# carried by the scorer too but kept out of the model card's notes and the backtest JSON.
MONITORING_REFERENCE = ("reference_profile_", "importance_", "training_risk_")


def _is_frame(X: Any) -> bool:
    # A DataFrame exists only once pandas is imported: no import needed to ask.
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(X, pandas.DataFrame)


def feature_matrix(X: pd.DataFrame, names: Sequence[str], model: str,
                   categories: Mapping[str, Sequence[Any]] | None = None) -> np.ndarray:
    """The columns ``names`` of a features frame as a float64 matrix (NaN for missing).

    Parameters
    ----------
    X
        Features frame.
    names
        Columns to read, in this order.
    model
        The model's name, for the messages.
    categories
        The categorical features and the categories each was trained with: such a
        column is read as the position of its value among those categories (LightGBM's
        integer codes), by value, whatever the frame's own categories; a missing value
        or a category not seen in training is NaN.

    Raises
    ------
    DataValidationError
        ``X`` is not a DataFrame, or lacks some of ``names``.
    """
    if not _is_frame(X):
        raise DataValidationError(
            f"{model} expects a pandas DataFrame of features, got {type(X).__name__}."
        )
    missing = [n for n in names if n not in X.columns]
    if missing:
        raise DataValidationError(
            f"{model}: the features frame lacks {len(missing)} feature(s) the model was "
            f"trained with: {missing[:10]}. Suggestion: compute features with the same "
            "churnlens version and windows as at training."
        )
    coded = [n for n in names if categories and n in categories]
    if not coded:
        return X.loc[:, list(names)].to_numpy(dtype=np.float64, na_value=np.nan)
    frame = X.loc[:, list(names)].copy()
    for name in coded:
        assert categories is not None  # coded is empty otherwise
        frame[name] = category_codes(frame[name], categories[name])
    return frame.to_numpy(dtype=np.float64, na_value=np.nan)


def category_codes(values: Any, categories: Sequence[Any]) -> np.ndarray:
    """Each value's position among ``categories`` as a float (NaN: missing or unseen).

    The values are matched by value (a pandas Categorical with other categories, or in
    another order, is recoded), so a model reads a category as it did in training.
    """
    import pandas as pd

    known = pd.Index(list(categories), dtype=object)
    positions = known.get_indexer(pd.Index(np.asarray(values, dtype=object)))
    codes = positions.astype(np.float64)
    codes[positions < 0] = np.nan
    return codes


def two_columns(risk: np.ndarray) -> np.ndarray:
    """``[1 - risk, risk]``, with risk clipped to [0, 1]."""
    risk = np.clip(risk, 0.0, 1.0)
    return np.column_stack([1.0 - risk, risk])


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function, with ``x`` clipped to [-40, 40]."""
    return 1.0 / (1.0 + np.exp(-np.clip(x, -40, 40)))


def logit(p: np.ndarray) -> np.ndarray:
    """Log-odds of ``p`` clipped to [1e-6, 1 - 1e-6]."""
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p / (1 - p))


def credit_blend(values: np.ndarray, offset: np.ndarray, *, logistic_weight: float,
                 tree_weight: float, offset_column: int | None,
                 offset_center: float | None) -> None:
    """Weight the trees' contributions as in the blend and credit BG/NBD's offset, in place.

    The one arithmetic of :meth:`ChurnModel.explain` and :meth:`ChurnScorer.explain`: the
    trees' contributions times ``(1 - w) * t``; BG/NBD's offset (times ``1 - w``) is
    credited to ``offset_column`` relative to ``offset_center`` (``None``: the mean of
    ``offset``), the rest to the bias (the last column). ``offset_column`` ``None``: the
    model does not use BG/NBD.
    """
    w = logistic_weight
    values *= (1.0 - w) * tree_weight  # in place: one (rows, features) array less
    if offset_column is not None:
        if offset_center is None:
            offset_center = float(np.mean(offset)) if len(offset) else 0.0
        values[:, offset_column] += (1.0 - w) * (offset - offset_center)
        values[:, -1] += (1.0 - w) * offset_center


def season_shift(matrix: np.ndarray, feature_names: Sequence[str],
                 level: Mapping[str, Any] | None) -> tuple[np.ndarray, np.ndarray] | None:
    """The seasonal level's terms of each row, or None when the model has none in use.

    The one arithmetic of the model and its scoring form: ``season_sin`` times its
    coefficient and ``season_cos`` times its, as ``(rows, 2)`` (a missing value adds 0),
    and the intercept as ``(rows,)``; their sum is added to the blended log-odds. The
    same shift for every customer at one date, so it moves the level, not the ranking.
    """
    if not level or not level.get("used"):
        return None
    columns = [list(feature_names).index(n) for n in SEASON_FEATURES]
    coef = np.asarray([level["season_sin"], level["season_cos"]], dtype=np.float64)
    terms = np.nan_to_num(matrix[:, columns], nan=0.0) * coef
    return terms, np.full(matrix.shape[0], float(level["intercept"]))


def add_season(log_odds: np.ndarray, shift: tuple[np.ndarray, np.ndarray] | None
               ) -> np.ndarray:
    """``log_odds`` plus the seasonal level's terms (:func:`season_shift`), in order."""
    if shift is None:
        return log_odds
    terms, intercept = shift
    return log_odds + terms[:, 0] + terms[:, 1] + intercept


def credit_season(values: np.ndarray, shift: tuple[np.ndarray, np.ndarray] | None,
                  feature_names: Sequence[str]) -> None:
    """Credit the seasonal level's terms to ``season_sin``/``season_cos`` and its
    intercept to the bias (the last column), in place."""
    if shift is None:
        return
    terms, intercept = shift
    for k, name in enumerate(SEASON_FEATURES):
        values[:, list(feature_names).index(name)] += terms[:, k]
    values[:, -1] += intercept


def checked_explanation(values: np.ndarray, log_odds: np.ndarray,
                        risk_of: Callable[[np.ndarray], np.ndarray],
                        feature_names: Sequence[str], matrix: np.ndarray,
                        index: Any) -> Explanation:
    """The :class:`Explanation`, once every row's contributions add up to its log-odds.

    ``risk_of`` maps the log-odds to the churn risk (sigmoid, then the calibrator).

    Raises
    ------
    ModelError
        If a row's contributions do not add up (a bug: refused rather than shown).
    """
    gap = np.abs(values.sum(axis=1) - log_odds)
    if len(gap) and not gap.max() <= LOG_ODDS_TOLERANCE:
        raise ModelError(
            "the model's feature contributions do not add up to its churn log-odds "
            f"(largest difference {np.nanmax(gap):.3g}); this model cannot be explained "
            "by churnlens. Suggestion: score with --no-reasons and report it.")
    return Explanation(churn_risk=risk_of(log_odds), log_odds=log_odds,
                       contributions=values, feature_names=list(feature_names),
                       feature_values=matrix, index=index)


def _signed_log1p(values: np.ndarray) -> np.ndarray:
    # churnlens._model._signed_log1p, the logistic pipeline's first step
    return np.sign(values) * np.log1p(np.abs(values))


class ChurnScorer:
    """A trained churn model in scoring form: arrays only, loaded with NumPy alone.

    Made by :meth:`churnlens.ChurnModel.to_scorer`; saved with :meth:`save` and read
    with :func:`load_scorer`. It scores exactly as the model it was made from
    (``predict_proba``, ``predict``, ``decision_function``, ``raw_score``,
    ``explain``, ``contributions``, ``bgnbd_offset``, ``model_inputs``) and carries its
    learned attributes (``feature_names_``, ``base_feature_names_``,
    ``horizon_days_``, ``as_of_``, ``classes_``). It cannot be fitted: the estimator
    stays in the bundle's pickle (:meth:`churnlens._artifact.ModelArtifact.full_model`).

    Parameters
    ----------
    meta
        Names and settings (JSON-ready).
    arrays
        The numbers: trees, logistic, BG/NBD and calibrator arrays.
    """

    source_class_ = "ChurnModel"

    def __init__(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        try:
            self.feature_names_ = [str(n) for n in meta["feature_names"]]
            self.base_feature_names_ = [str(n) for n in meta["base_feature_names"]]
            self.horizon_days_ = int(meta["horizon_days"])
            self.as_of_ = (dt.date.fromisoformat(meta["as_of"]) if meta.get("as_of")
                           else None)
            self.use_bgnbd = bool(meta["use_bgnbd"])
            self.logistic_weight = float(meta["logistic_weight"])
            self.tree_weight = float(meta.get("tree_weight", 1.0))
            self.calibration = str(meta["calibration"])
            self.has_logistic = bool(meta["has_logistic"])
            self.has_indicator = bool(meta["has_indicator"])
            self.indicator_all = bool(meta["indicator_all"])
            self.bgnbd_horizon_days = int(meta["bgnbd_horizon_days"])
            self.artifact = dict(meta.get("artifact") or {})
            for attribute in SELF_KNOWLEDGE + MONITORING_REFERENCE:  # what it knew
                if attribute.rstrip("_") in meta:
                    setattr(self, attribute, meta[attribute.rstrip("_")])
            # The value model (churnlens._value.ValueModel.to_dict(); read back with
            # churnlens._value.value_model_of), None for a model trained without one.
            self.value_model_: dict[str, Any] | None = meta.get("value_model")
            # The training categories of the categorical features, and the richer
            # inputs the model was trained with (InputSpec.to_dict(); read back with
            # churnlens._input_features.spec_of), None for a model trained without.
            self.categories_: dict[str, list[Any]] = {
                str(k): list(v) for k, v in (meta.get("categories") or {}).items()}
            self.input_spec_: dict[str, Any] | None = meta.get("input_spec")
            # The seasonal clock's daily counts (churnlens._season.season_profile), None
            # for a model without it: BG/NBD's horizon is then H at every date.
            self.season_profile_: dict[str, Any] | None = meta.get("season_profile")
            self._meta = meta
            self._arrays = {k: np.asarray(v) for k, v in arrays.items()}
            a = self._arrays
            self._trees = TreeContributions.from_arrays(
                {k[len("tree_"):]: v for k, v in a.items() if k.startswith("tree_")})
            params = np.asarray(a["bgnbd_params"], dtype=np.float64)
            self._bgnbd = tuple(float(v) for v in params)  # r, alpha, a, b: Python floats
            if self.calibration not in ("none", "isotonic", "sigmoid") or (
                    self.use_bgnbd and len(self._bgnbd) != 4):
                raise ValueError(f"calibration {self.calibration!r}, BG/NBD {self._bgnbd}")
        except (KeyError, ValueError, TypeError) as exc:
            raise ModelError(f"the saved scorer is unreadable ({type(exc).__name__}: "
                             f"{exc}). Suggestion: export the bundle again.") from exc
        self.feature_names_in_ = np.asarray(self.feature_names_, dtype=object)
        self.n_features_in_ = len(self.feature_names_)
        self.classes_ = np.array([0, 1])
        self._pickled: bytes | None = None  # the bundle's digest-checked pickle, if known

    def __reduce__(self) -> tuple[Any, ...]:
        # For Spark's broadcast and process pools: the arrays, not the lock of the trees.
        return (ChurnScorer, (self._meta, self._arrays))

    def __repr__(self) -> str:
        return (f"ChurnScorer(horizon_days_={self.horizon_days_}, "
                f"features={len(self.feature_names_)}, trees={self._trees.n_trees}, "
                f"calibration={self.calibration!r})")

    # ----------------------------------------------------------------- inputs

    def _bgnbd_columns(self, X: Any) -> np.ndarray:
        """``[p_alive, p_purchase]`` of each row: BGNBDModel's, same operations."""
        from scipy import special

        x, t_x, T = _bgnbd_data(X)
        r, alpha, a, b = self._bgnbd
        has_repeat = x > 0
        x_safe = np.where(has_repeat, x, 1.0)
        log_d = np.where(
            has_repeat,
            np.log(a) - np.log(b + x_safe - 1.0)
            + (r + x_safe) * (np.log(alpha + T) - np.log(alpha + t_x)),
            -np.inf,
        )
        alive = special.expit(-log_d)
        H = np.asarray(horizons_of(X, self.season_profile_, self.bgnbd_horizon_days,
                                   self.as_of_), dtype=float)
        y = (r + x) * (np.log(alpha + T) - np.log(alpha + T + H))
        churn = 1.0 - alive * -np.expm1(y)
        return np.column_stack([np.asarray(alive, dtype=np.float64),
                                1.0 - np.asarray(churn, dtype=np.float64)])

    def _inputs_matrix(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        names = self.feature_names_
        k = len(names) - len(BGNBD_FEATURES)
        if not self.use_bgnbd:
            return (feature_matrix(X, names, "ChurnModel", self.categories_),
                    np.zeros(len(X)))
        if tuple(names[k:]) != BGNBD_FEATURES:
            raise ModelError("the scorer's BG/NBD features are not its last two features.")
        bgnbd = self._bgnbd_columns(X)
        matrix = np.empty((len(names), len(X))).T  # column-major, as the model builds it
        matrix[:, :k] = feature_matrix(X, names[:k], "ChurnModel", self.categories_)
        matrix[:, k:] = bgnbd
        return matrix, logit(1.0 - bgnbd[:, 1])

    def model_inputs(self, X: pd.DataFrame) -> pd.DataFrame:
        """The features the components see: ``X`` plus the BG/NBD features, if used."""
        if not self.use_bgnbd:
            return X
        X = X.copy()
        X[list(BGNBD_FEATURES)] = self._bgnbd_columns(X)
        return X

    def bgnbd_offset(self, X: pd.DataFrame) -> np.ndarray:
        """BG/NBD's churn log-odds of each row (zeros without BG/NBD)."""
        if not self.use_bgnbd:
            return np.zeros(len(X))
        return logit(1.0 - self._bgnbd_columns(X)[:, 1])

    # ----------------------------------------------------------------- logistic part

    def _linear_transformed(self, matrix: np.ndarray) -> np.ndarray:
        """Signed log, median fill (+ missing indicators), scaling: the pipeline's steps
        on arrays of the same layout (each step works on a copy, as scikit-learn's)."""
        a = self._arrays
        if not matrix.shape[0]:  # scikit-learn's input check, same message
            raise ValueError(f"Found array with 0 sample(s) (shape={matrix.shape}) while a "
                             "minimum of 1 is required by SimpleImputer.")
        logged = _signed_log1p(matrix)
        if np.isinf(logged).any():
            raise ValueError(_INFINITE)  # scikit-learn's input check, same message
        filled = np.array(logged, copy=True)
        missing = np.isnan(filled)
        if missing.any():
            n_missing = np.sum(missing, axis=0)
            filled[np.where(missing.transpose())[::-1]] = np.repeat(
                a["logistic_statistics"], n_missing)
        if self.has_indicator:  # MissingIndicator selects its columns only if not all
            indicator = (missing if self.indicator_all
                         else missing[:, a["logistic_indicator_features"]])
            filled = np.hstack((filled, indicator))
        scaled = np.array(filled, copy=True)
        scaled -= a["logistic_mean"]
        scaled /= a["logistic_scale"]
        return scaled

    def _linear_decision(self, transformed: np.ndarray) -> np.ndarray:
        a = self._arrays
        scores = transformed @ a["logistic_coef"].T + a["logistic_intercept"]
        return scores.reshape(-1)

    def _linear_contributions(self, transformed: np.ndarray) -> np.ndarray:
        a = self._arrays
        n_features = len(self.feature_names_)
        terms = transformed * a["logistic_coef"][0]
        out = np.zeros((transformed.shape[0], n_features + 1))
        out[:, :n_features] = terms[:, :n_features]
        if self.has_indicator:
            for j, feature in enumerate(a["logistic_indicator_features"].tolist()):
                out[:, feature] += terms[:, n_features + j]
        out[:, -1] = a["logistic_intercept"][0]
        return out

    # ----------------------------------------------------------------- scores

    def _blended_logit(self, offset: np.ndarray, tree_raw: np.ndarray,
                       transformed: np.ndarray | None) -> np.ndarray:
        t = self.tree_weight
        tree = offset + 0.0 if t == 0.0 else tree_raw * t + offset
        w = self.logistic_weight
        if transformed is None or w == 0.0:
            return tree
        linear = self._linear_decision(transformed)
        return (1.0 - w) * tree + w * linear

    def _calibrated(self, raw: np.ndarray) -> np.ndarray:
        a = self._arrays
        if self.calibration != "none" and not np.size(raw):  # scikit-learn's input check
            raise ValueError(
                "Found array with 0 sample(s) (shape=(0,)) while a minimum of 1 is required."
                if self.calibration == "isotonic" else "Found array with 0 sample(s) "
                "(shape=(0, 1)) while a minimum of 1 is required by LogisticRegression.")
        if self.calibration == "isotonic":  # IsotonicRegression.predict (clip, interp)
            raw = np.asarray(raw, dtype=np.float64).reshape(-1)
            clipped = np.clip(raw, float(a["isotonic_x_min"]), float(a["isotonic_x_max"]))
            x, y = a["isotonic_x"], a["isotonic_y"]
            if len(y) == 1:
                return y.repeat(clipped.shape).astype(clipped.dtype)
            return np.interp(clipped, x, y).astype(clipped.dtype)
        if self.calibration == "sigmoid":  # LogisticRegression.predict_proba[:, 1]
            from scipy import special

            scores = logit(raw).reshape(-1, 1) @ a["sigmoid_coef"].T + a["sigmoid_intercept"]
            scores = scores.reshape(-1)
            return special.expit(scores, out=scores)
        return raw

    def _proba_of(self, raw: np.ndarray) -> np.ndarray:
        return two_columns(self._calibrated(raw))

    def _season(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        return season_shift(matrix, self.feature_names_, getattr(self, "season_level_", None))

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """The blended churn log-odds of each row, before any post-hoc calibration."""
        matrix, offset = self._inputs_matrix(X)
        transformed = self._linear_transformed(matrix) if self.has_logistic else None
        return add_season(self._blended_logit(offset, self._trees.raw_score(matrix),
                                              transformed), self._season(matrix))

    def raw_score(self, X: pd.DataFrame) -> np.ndarray:
        """Blended churn probability before any post-hoc calibration."""
        return sigmoid(self.decision_function(X))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """``[P(retained), P(churned)]`` for each row of ``X``."""
        return self._proba_of(self.raw_score(X))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """1 where the churn risk is at least 0.5."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int64)

    def explain(self, X: pd.DataFrame, *, offset_center: float | None = None) -> Explanation:
        """Churn risk and each feature's exact contribution: :meth:`ChurnModel.explain`.

        Parameters
        ----------
        X
            Features frame (:func:`churnlens.compute_features`).
        offset_center
            ``None``: the mean of :meth:`bgnbd_offset` over ``X``.

        Returns
        -------
        Explanation
            The model's, bit for bit.

        Raises
        ------
        ModelError
            If a row's contributions do not add up to its log-odds.
        """
        matrix, offset = self._inputs_matrix(X)
        transformed = self._linear_transformed(matrix) if self.has_logistic else None
        values, tree_raw = self._trees.explain(matrix)
        w = self.logistic_weight if self.has_logistic else 0.0
        credit_blend(values, offset, logistic_weight=w, tree_weight=self.tree_weight,
                     offset_column=self.feature_names_.index("bgnbd_p_purchase")
                     if self.use_bgnbd else None, offset_center=offset_center)
        if transformed is not None and w:
            values += w * self._linear_contributions(transformed)
        shift = self._season(matrix)
        credit_season(values, shift, self.feature_names_)
        log_odds = add_season(self._blended_logit(offset, tree_raw, transformed), shift)
        return checked_explanation(values, log_odds,
                                   lambda x: self._proba_of(sigmoid(x))[:, 1],
                                   self.feature_names_, matrix, X.index)

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """:meth:`explain`'s contributions as a frame (features plus ``bias``)."""
        return self.explain(X).contributions_frame()

    # ----------------------------------------------------------------- file

    def save(self, path: str | Path) -> Path:
        """Write the scorer as one ``.npz`` file (arrays and a JSON string, no objects).

        Parameters
        ----------
        path
            The file to write.

        Returns
        -------
        pathlib.Path
            ``path``.
        """
        target = Path(path)
        meta = json.dumps({**self._meta, "format": SCORER_FORMAT}, sort_keys=True)
        buffer = io.BytesIO()
        arrays: dict[str, Any] = {"meta": np.asarray(meta), **self._arrays}
        np.savez(buffer, allow_pickle=False, **arrays)
        target.write_bytes(buffer.getvalue())
        return target


def load_scorer(data: bytes, *, source: str = "the scorer") -> ChurnScorer:
    """Read a scorer written by :meth:`ChurnScorer.save` (data only: no pickle allowed).

    Parameters
    ----------
    data
        The file's bytes (already checked against the card's digest by the caller).
    source
        Where they came from, for the messages.

    Raises
    ------
    ModelError
        The bytes are not a churnlens scorer of a known format.
    """
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise ModelError(f"{source}: cannot be loaded (not a churnlens scorer: {exc}). "
                         "Suggestion: export the bundle again.") from exc
    found = meta.get("format") if isinstance(meta, dict) else None
    if not isinstance(meta, dict) or found != SCORER_FORMAT:
        raise ModelError(f"{source}: scorer format {found!r} is not {SCORER_FORMAT}. "
                         "Suggestion: export the bundle again with this churnlens version.")
    meta.pop("format")
    return ChurnScorer(meta, arrays)


def _bgnbd_data(X: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, t_x, T)`` as :func:`churnlens._bgnbd._features_to_data` reads them; on any
    input it would refuse, its own check runs (and raises its message)."""
    if _is_frame(X) and all(c in X.columns for c in BGNBD_INPUTS):
        try:
            x, t_x, T = (X[c].to_numpy(dtype=float, na_value=np.nan) for c in BGNBD_INPUTS)
        except (TypeError, ValueError):
            pass
        else:
            if (np.isfinite(x).all() and np.isfinite(t_x).all() and np.isfinite(T).all()
                    and not ((x < 0).any() or (t_x < 0).any() or (T < 0).any())
                    and (x == np.floor(x)).all() and not (t_x > T).any()):
                return x, t_x, T
    from churnlens._bgnbd import _features_to_data

    return _features_to_data(X)
