"""Churn models: churnlens' LightGBM model and the baselines it is measured against.

All follow scikit-learn conventions: ``__init__`` stores its arguments, ``fit``
validates and returns ``self``, learned state ends in ``_``, ``predict_proba``
returns ``[P(retained), P(churned)]`` and checks that the model is fitted.
The churn risk of a customer is ``predict_proba(X)[:, 1]``: the probability of no
purchase occasion in the ``horizon_days`` after the as-of date.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin

from churnlens._drift import reference_profile
from churnlens._evaluation import classification_metrics
from churnlens._io import json_ready
from churnlens._scorer import (
    BGNBD_FEATURES,
    BGNBD_INPUTS,
    MONITORING_REFERENCE,
    SEASON_FEATURES,
    SELF_KNOWLEDGE,
    Explanation,
    add_season,
    checked_explanation,
    credit_blend,
    credit_season,
    season_shift,
)
from churnlens._scorer import EPS as _EPS
from churnlens._scorer import feature_matrix as _matrix
from churnlens._scorer import logit as _logit
from churnlens._scorer import sigmoid as _sigmoid
from churnlens._scorer import two_columns as _two_columns
from churnlens.exceptions import DataValidationError, ModelError, NotFittedError

__all__ = [
    "NON_FEATURE_COLUMNS",
    "ChurnModel",
    "Explanation",
    "LogisticBaseline",
    "RecencyBaseline",
    "default_feature_names",
    "numeric_feature_names",
]

# Columns of a features/snapshot frame that are identifiers or targets, not features.
NON_FEATURE_COLUMNS = frozenset({"customer_id", "as_of", "cutoff", "churned", "segment"})
# Up to this many rows, LightGBM predicts straight from the booster (see _tree_logit).
_DIRECT_PREDICT_ROWS = 4096


def default_feature_names(frame: pd.DataFrame) -> list[str]:
    """Every numeric or categorical column of a features frame that is not an id, date
    or label (categorical: a pandas ``Categorical``, e.g. a customer attribute)."""
    return [
        c for c in frame.columns
        if c not in NON_FEATURE_COLUMNS and (
            _is_categorical(frame[c]) or (pd.api.types.is_numeric_dtype(frame[c])
                                          and not pd.api.types.is_bool_dtype(frame[c])))
    ]


def _is_categorical(values: pd.Series) -> bool:
    return isinstance(values.dtype, pd.CategoricalDtype)


def numeric_feature_names(frame: pd.DataFrame, names: Sequence[str] | None = None
                          ) -> list[str]:
    """``names`` (default: :func:`default_feature_names`) without the categorical ones:
    what a model that reads numbers only (the logistic baseline) can use."""
    names = default_feature_names(frame) if names is None else list(names)
    return [n for n in names if not (n in frame.columns and _is_categorical(frame[n]))]


def _one_blas_thread(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``method`` with BLAS limited to one thread.

    The logistic regressions here (L-BFGS on tens of features) make thousands of
    small BLAS calls; a multithreaded OpenBLAS spends most of that time waking its
    threads, and on a busy machine it made fitting several times slower (measured on
    3,000 synthetic customers: the two logistic fits took 15 s, single-threaded well
    under 1 s). LightGBM uses OpenMP with its own ``n_jobs``, unaffected by this.
    """

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - scikit-learn always brings it
            limits: Any = contextlib.nullcontext()
        else:
            limits = threadpool_limits(limits=1, user_api="blas")
        with limits:
            return method(*args, **kwargs)

    return wrapper


CALIBRATIONS = ("none", "isotonic", "sigmoid")


def _is_int(value: Any, low: int) -> bool:
    return bool(isinstance(value, int | np.integer)
                and not isinstance(value, bool | np.bool_) and value >= low)


def _is_real(value: Any, low: float, high: float | None = None, *, low_open: bool = False
             ) -> bool:
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
        return False
    number = float(value)
    if not np.isfinite(number) or number < low or (low_open and number == low):
        return False
    return high is None or number <= high


def _check_fitted(model: BaseEstimator, attribute: str) -> None:
    if not hasattr(model, attribute):
        raise NotFittedError(
            f"this {type(model).__name__} is not fitted yet. Suggestion: call fit() first, "
            "or load a trained model."
        )


def _labels(y: Any) -> np.ndarray:
    labels = pd.Series(y).to_numpy()
    if pd.isna(labels).any():
        raise DataValidationError(
            "labels contain missing values (customers whose horizon is not yet observed). "
            "Suggestion: drop rows with a missing 'churned' before fitting."
        )
    labels = labels.astype(np.int64)
    if not np.isin(labels, (0, 1)).all():
        raise DataValidationError("labels must be 0 (retained) or 1 (churned).")
    if len(np.unique(labels)) < 2:
        raise DataValidationError(
            "labels have a single class; a churn model needs churned and retained customers. "
            "Suggestion: use more cutoffs or a longer history."
        )
    return labels


class ChurnModel(ClassifierMixin, BaseEstimator):
    """churnlens' churn model: BG/NBD + LightGBM + logistic regression, blended.

    Three parts, each there for a measured reason (see the README, "How drift is
    handled"):

    1. **BG/NBD**, fitted at each snapshot cutoff on that cutoff's histories only, gives
       each customer a structural churn probability that extrapolates sensibly to the
       future (every purchase is also a chance to drop out, so a burst of holiday
       purchases is not read as loyalty). Its probabilities also enter as features.
    2. **LightGBM** boosts from BG/NBD's log-odds (``init_score``): the trees learn
       corrections to the structural model, with early stopping on the latest
       ``validation_cutoffs`` cutoffs (held out, never shuffled with older ones).
    3. **Logistic regression** on the same features (signed log, imputed, scaled):
       smooth, so it extrapolates well when the scoring date differs from every
       training cutoff (season, cohort age).

    The churn log-odds is ``(1 - logistic_weight) * lightgbm + logistic_weight *
    logistic``. Four rules keep it from being worse than its baselines on a log unlike
    CDNOW (README, "A model that holds on any purchase log"): inputs of the logistic part
    with no support in training are not used (``dropped_inputs_``); every held-out
    comparison is out of sample, on the held-out rows split in two (early stopping, and
    the choice); the blend is used only when it ranks the held-out cutoff clearly better
    than BG/NBD alone, else the model is BG/NBD alone (``selection_``); and the model
    measures its own level error (``level_error_``, which widens the intervals of
    :func:`~churnlens.predict_retention`) and says what it cannot know (``warnings_``,
    ``short_history_``, ``bgnbd_flags_``). An optional post-hoc calibrator (``isotonic``
    or ``sigmoid``) can be fitted on the held-out cutoffs; it is off by default because,
    on CDNOW, it carried the held-out period's level (autumn and holidays) into the
    scored period and made the predicted retention worse.

    Parameters
    ----------
    horizon_days
        The churn horizon the labels were built with.
    feature_names
        Features to use; ``None`` uses every numeric or categorical feature column
        (:func:`default_feature_names`). A categorical feature (a pandas
        ``Categorical``) is split on natively by LightGBM (its training categories are
        kept in ``categories_``) and not read by the logistic part.
    n_estimators, learning_rate, num_leaves, min_child_samples, subsample,
    colsample_bytree, reg_lambda, early_stopping_rounds
        LightGBM settings (``n_estimators`` is the cap; early stopping picks the count).
    logistic_weight
        Weight of the logistic component in the blend (0: LightGBM only).
    calibration
        ``"none"``, ``"isotonic"`` or ``"sigmoid"`` (Platt scaling of the log-odds).
    validation_cutoffs
        How many of the latest cutoffs are held out.
    recency_half_life_snapshots
        Weight of a snapshot halves every this many cutoffs back; ``None`` for equal
        weights.
    season_level
        With the calendar features (``season_sin``, ``season_cos``), shift the chosen
        log-odds by a seasonal level fitted on the training cutoffs (``season_level_``;
        docs/training.md, "The seasonal level"). Off by default: on a strong yearly cycle
        it cut the cohort-retention error at one backtest date from 6.2 to 0.1 points
        and raised it at another from 2.0 to 11.4.
    select_blend
        Use the blend only when it ranks the held-out cutoffs better than BG/NBD alone
        (by more than ``SELECTION_Z`` standard errors of the ROC AUC difference);
        otherwise the model is BG/NBD alone.
        The choice and both AUCs are in ``selection_`` and the model card.
    use_bgnbd
        Use the BG/NBD offset and features (recommended). In training BG/NBD is
        fitted per cutoff (no leakage); for scoring, on the ``reference`` frame given to
        ``fit`` (the customers at the as-of date), and those parameters are kept, so a
        single customer can be scored later.
    random_state, n_jobs
        Seed and threads; the same seed and thread count give identical predictions.
        ``n_jobs=None`` picks 1 thread below 1,000,000 training rows (OpenMP overhead
        dominates there: on CDNOW's 259k snapshot rows, 2 threads on a 2-core machine
        took 98-120 s and 2.6x the CPU time of 1 thread's 38-41 s, for the same model)
        and all available cores above.

    Examples
    --------
    >>> model = ChurnModel(horizon_days=91)
    >>> model.get_params()["logistic_weight"]
    0.5
    """

    # What a model pickled before the parameter existed reads (it did not have it).
    season_level = False

    def __init__(
        self,
        horizon_days: int = 91,
        feature_names: Sequence[str] | None = None,
        n_estimators: int = 3000,
        learning_rate: float = 0.03,
        num_leaves: int = 5,
        min_child_samples: int = 400,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        reg_lambda: float = 1.0,
        early_stopping_rounds: int = 50,
        logistic_weight: float = 0.5,
        calibration: str = "none",
        validation_cutoffs: int = 1,
        recency_half_life_snapshots: float | None = None,
        use_bgnbd: bool = True,
        select_blend: bool = True,
        season_level: bool = False,
        random_state: int = 0,
        n_jobs: int | None = None,
    ) -> None:
        self.horizon_days = horizon_days
        self.feature_names = feature_names
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.early_stopping_rounds = early_stopping_rounds
        self.logistic_weight = logistic_weight
        self.calibration = calibration
        self.validation_cutoffs = validation_cutoffs
        self.recency_half_life_snapshots = recency_half_life_snapshots
        self.use_bgnbd = use_bgnbd
        self.select_blend = select_blend
        self.season_level = season_level
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _validate_params(self) -> None:
        """Check every parameter here, before any work; the message lists what is allowed.

        Without this, a bad value surfaced as LightGBM's C++ ``Check failed`` after the
        BG/NBD fits, or was silently accepted (a negative half-life weighted the oldest
        snapshots most).
        """
        problems = [
            f"{name}={getattr(self, name)!r} (allowed: {allowed})"
            for name, ok, allowed in (
                ("horizon_days", _is_int(self.horizon_days, 1), "an integer >= 1"),
                ("n_estimators", _is_int(self.n_estimators, 1), "an integer >= 1"),
                ("learning_rate", _is_real(self.learning_rate, 0, 1, low_open=True),
                 "a number in (0, 1]"),
                ("num_leaves", _is_int(self.num_leaves, 2), "an integer >= 2"),
                ("min_child_samples", _is_int(self.min_child_samples, 1), "an integer >= 1"),
                ("subsample", _is_real(self.subsample, 0, 1, low_open=True),
                 "a number in (0, 1]"),
                ("colsample_bytree", _is_real(self.colsample_bytree, 0, 1, low_open=True),
                 "a number in (0, 1]"),
                ("reg_lambda", _is_real(self.reg_lambda, 0), "a number >= 0"),
                ("early_stopping_rounds", _is_int(self.early_stopping_rounds, 1),
                 "an integer >= 1"),
                ("logistic_weight", _is_real(self.logistic_weight, 0, 1),
                 "a number in [0, 1]"),
                ("calibration", self.calibration in CALIBRATIONS,
                 "one of " + ", ".join(repr(c) for c in CALIBRATIONS)),
                ("validation_cutoffs", _is_int(self.validation_cutoffs, 1), "an integer >= 1"),
                ("recency_half_life_snapshots", self.recency_half_life_snapshots is None
                 or _is_real(self.recency_half_life_snapshots, 0, low_open=True),
                 "None or a number > 0"),
                ("use_bgnbd", isinstance(self.use_bgnbd, bool | np.bool_), "True or False"),
                ("select_blend", isinstance(self.select_blend, bool | np.bool_),
                 "True or False"),
                ("season_level", isinstance(self.season_level, bool | np.bool_),
                 "True or False"),
                ("random_state", _is_int(self.random_state, 0), "an integer >= 0"),
                ("n_jobs", self.n_jobs is None or _is_int(self.n_jobs, 1),
                 "None (automatic) or an integer >= 1"),
                ("feature_names", self.feature_names is None or (
                    not isinstance(self.feature_names, str)
                    and all(isinstance(n, str) for n in self.feature_names)),
                 "None or a list of column names"),
            )
            if not ok
        ]
        if problems:
            raise DataValidationError(
                f"invalid {type(self).__name__} parameter(s): " + "; ".join(problems) + "."
            )

    @_one_blas_thread
    def fit(
        self,
        X: pd.DataFrame,
        y: Any,
        *,
        cutoff: Any = None,
        as_of: dt.date | None = None,
        reference: pd.DataFrame | None = None,
        season_daily: pd.Series | None = None,
    ) -> ChurnModel:
        """Fit on snapshots.

        Parameters
        ----------
        X
            Features, one row per (customer, cutoff).
        y
            ``churned`` labels (0/1, no missing values).
        cutoff
            The cutoff date of each row (a column name of ``X`` or an array). Rows of
            the latest ``validation_cutoffs`` cutoffs are held out. ``None`` uses
            ``X["cutoff"]``.
        as_of
            The training as-of date (default: latest cutoff + horizon).
        reference
            Features of the customers at the as-of date, on which the BG/NBD component
            used for scoring is fitted (default: the latest cutoff's rows).
        season_daily
            The seasonal clock (:mod:`churnlens._season`, docs/training.md): the daily
            purchase occasions of all customers up to the as-of date
            (:func:`~churnlens._season.daily_occasions`). Given, BG/NBD's horizon at
            each cutoff and scoring date ``d`` is ``H * s(d)``; the model keeps the
            counts it needs to compute ``s`` when scoring (``season_profile_``) and the
            indices in ``season_clock_``. ``None`` (default): no clock, horizon ``H``.
        """
        import lightgbm as lgb

        self._validate_params()
        labels = _labels(y)
        if cutoff is None:
            cutoff = "cutoff"
        raw_cuts = X[cutoff] if isinstance(cutoff, str) else pd.Series(cutoff, index=X.index)
        cuts = pd.Series(pd.to_datetime(raw_cuts).to_numpy(), index=X.index)
        base = list(self.feature_names) if self.feature_names else default_feature_names(X)
        base = [n for n in base if n not in BGNBD_FEATURES]
        if not base:
            raise DataValidationError("no numeric feature columns to fit on.")
        # Categorical features (pandas Categorical, e.g. customer attributes): LightGBM
        # splits on them natively, reading each value's position among the training
        # categories (kept here, so scoring maps values by these, not by the scoring
        # frame's own categories; unseen or missing: NaN); the logistic part and the
        # support guard read the numeric features only.
        self.categories_: dict[str, list[Any]] = {
            n: list(X[n].cat.categories) for n in base
            if n in X.columns and _is_categorical(X[n])}

        distinct = np.sort(cuts.unique())
        if len(distinct) <= self.validation_cutoffs:
            raise DataValidationError(
                f"{len(distinct)} cutoff(s) given, but {self.validation_cutoffs} are held out "
                "for validation. Suggestion: use more snapshot cutoffs."
            )
        held_out = cuts.isin(distinct[-int(self.validation_cutoffs):]).to_numpy()
        self.season_profile_: dict[str, Any] | None = None
        self.__dict__.pop("season_clock_", None)  # set below when the clock is used
        horizons: dict[Any, float] = {}
        if season_daily is not None and self.use_bgnbd:
            from churnlens._season import season_index, season_index_of_counts, season_profile

            clock_as_of = as_of or (pd.Timestamp(distinct[-1]).date()
                                    + dt.timedelta(days=int(self.horizon_days)))
            h = int(self.horizon_days)
            # s at each cutoff reads the days on or before that cutoff only
            scale = {c: season_index(season_daily, pd.Timestamp(c).date(), h) for c in distinct}
            horizons = {c: h * v for c, v in scale.items()}
            self.season_profile_ = season_profile(season_daily, clock_as_of, h)
            self.season_clock_: dict[str, Any] = {
                "used": True, "horizon_days": h,
                "training_cutoffs": {str(pd.Timestamp(c).date()): round(v, 4)
                                     for c, v in scale.items()},
                "as_of": round(season_index_of_counts(
                    self.season_profile_["counts"],
                    dt.date.fromisoformat(self.season_profile_["first_day"]),
                    clock_as_of, h), 4)}
        names = list(base)
        offset = np.zeros(len(X))
        self.bgnbd_flags_: list[dict[str, Any]] = []
        if self.use_bgnbd:
            X = self._augment_per_cutoff(X, cuts, distinct, horizons)
            names += list(BGNBD_FEATURES)
            offset = _logit(1.0 - X["bgnbd_p_purchase"].to_numpy(dtype=np.float64))
            offset = np.nan_to_num(offset, nan=0.0)
            latest = X.loc[(cuts == distinct[-1]).to_numpy()]
            self.bgnbd_ = _fit_bgnbd(reference if reference is not None else latest,
                                     int(self.horizon_days))
        matrix = _matrix(X, names, type(self).__name__, self.categories_)
        categorical = [names.index(n) for n in self.categories_]
        rank_back = len(distinct) - 1 - np.searchsorted(distinct, cuts.to_numpy())
        if self.recency_half_life_snapshots:
            weights = 0.5 ** (rank_back / float(self.recency_half_life_snapshots))
        else:
            weights = np.ones(len(X))

        train, valid = ~held_out, held_out
        # The held-out rows, split at random in two: early stopping looks at one half,
        # the choice between the blend and BG/NBD alone at the other (early stopping
        # picks the trees' count that suits its rows, which favoured the blend there).
        if len(np.unique(labels[valid])) < 2 or len(np.unique(labels[train])) < 2:
            raise DataValidationError(
                "the training or the held-out cutoffs contain a single class. Suggestion: "
                "use more customers or more cutoffs."
            )
        coin = np.random.default_rng(int(self.random_state)).random(int(valid.sum())) < 0.5
        stop, select = valid.copy(), valid.copy()
        stop[valid], select[valid] = coin, ~coin
        if min(len(np.unique(labels[stop])), len(np.unique(labels[select]))) < 2:
            stop = select = valid  # too few held-out rows to split: both look at all
        booster = lgb.LGBMClassifier(
            objective="binary",
            n_estimators=int(self.n_estimators),
            learning_rate=float(self.learning_rate),
            num_leaves=int(self.num_leaves),
            min_child_samples=int(self.min_child_samples),
            subsample=float(self.subsample),
            subsample_freq=1 if self.subsample < 1 else 0,
            colsample_bytree=float(self.colsample_bytree),
            reg_lambda=float(self.reg_lambda),
            random_state=int(self.random_state),
            n_jobs=_threads(self.n_jobs, len(X)),
            deterministic=True,
            force_row_wise=True,
            verbose=-1,
        )
        booster.fit(
            matrix[train], labels[train], sample_weight=weights[train], init_score=offset[train],
            **_eval_data(booster, matrix[stop], labels[stop]), eval_init_score=[offset[stop]],
            callbacks=[lgb.early_stopping(int(self.early_stopping_rounds), verbose=False)],
            categorical_feature=categorical if categorical else "auto",
        )
        self.booster_ = booster
        self.best_iteration_ = int(booster.best_iteration_ or booster.n_estimators)
        # The reference frame: the customers at the scoring (as-of) date, with the
        # BG/NBD inputs the scoring BG/NBD gives them; without one, the held-out rows.
        if reference is not None:
            reference_matrix = _matrix(self._with_bgnbd(reference) if self.use_bgnbd
                                       else reference, names, type(self).__name__,
                                       self.categories_)
        else:
            reference_matrix = matrix[valid]
        if categorical:
            numeric = [j for j in range(len(names)) if j not in categorical]
            self.dropped_inputs_ = _unsupported_inputs(
                [names[j] for j in numeric], matrix[train][:, numeric],
                reference_matrix[:, numeric])
        else:
            self.dropped_inputs_ = _unsupported_inputs(names, matrix[train],
                                                       reference_matrix)
        self.logistic_ = None
        # The logistic part holds the dropped inputs and the categorical ones at 0: a
        # zero coefficient, so they contribute exactly nothing (its shape is kept).
        dropped = sorted([names.index(d["feature"]) for d in self.dropped_inputs_]
                         + categorical)
        if self.logistic_weight > 0:
            self.logistic_ = _fit_linear(matrix[train], labels[train], weights[train],
                                         dropped, int(self.random_state))
        self.feature_names_ = names
        self.base_feature_names_ = base
        self.season_level_: dict[str, Any] = {"used": False}  # fitted below
        self.calibrator_ = _Calibrator("none")
        self.tree_weight_ = 1.0
        self.logistic_weight_ = (float(self.logistic_weight) if self.logistic_ is not None
                                 else 0.0)
        raw_select = self._blended_logit(matrix[select], offset[select])
        held_out_dates = {str(pd.Timestamp(c).date())
                          for c in distinct[-int(self.validation_cutoffs):]}
        self.selection_ = _select_blend(
            labels[select], offset[select], raw_select,
            enabled=bool(self.select_blend and self.use_bgnbd),
            held_out_bgnbd_on_boundary=any(
                f["cutoff"] in held_out_dates for f in self.bgnbd_flags_),
            scoring_bgnbd_on_boundary=bool(
                self.use_bgnbd and getattr(self.bgnbd_, "boundary_", None)))
        if self.selection_["chosen"] == "bgnbd":
            self.tree_weight_ = self.logistic_weight_ = 0.0
        # The seasonal level, whatever part was chosen (docs/training.md).
        self.season_level_ = _fit_season_level(
            names, matrix[train], self._blended_logit(matrix[train], offset[train]),
            labels[train], weights[train], distinct[:-int(self.validation_cutoffs)],
            enabled=bool(self.season_level))
        self.selection_["season_level"] = bool(self.season_level_["used"])
        raw_valid = self._blended_logit(matrix[valid], offset[valid])
        self.calibrator_ = _fit_calibrator(self.calibration, _sigmoid(raw_valid), labels[valid])
        # Every held-out comparison is out of sample: the blend choice above, and the
        # metrics promotion compares (every part fitted on the training cutoffs only).
        held_out_risk = self.calibrator_.transform(_sigmoid(raw_valid))
        self.held_out_metrics_ = classification_metrics(labels[valid], held_out_risk)
        if self.logistic_ is not None and self.logistic_weight_:
            # Chosen: the logistic part is refitted on every cutoff, the latest labels
            # included, as the baselines are (CDNOW 1997-06-30: AUC 0.741 -> 0.747).
            self.logistic_ = _fit_linear(matrix, labels, weights, dropped, int(self.random_state))
        self.validation_cutoffs_ = list(pd.unique(raw_cuts[held_out]))
        self.feature_names_in_ = np.asarray(names, dtype=object)
        self.n_features_in_ = len(names)
        self.classes_ = np.array([0, 1])
        self.horizon_days_ = int(self.horizon_days)
        last_cutoff = pd.Timestamp(distinct[-1]).date()
        self.as_of_ = as_of or last_cutoff + dt.timedelta(days=self.horizon_days_)
        self.training_cutoffs_ = [pd.Timestamp(c).date() for c in distinct]
        self.n_training_rows_ = int(train.sum())
        self.n_validation_rows_ = int(valid.sum())
        # What the model knows about its own level (README, "How sure the level is").
        # (at the held-out cutoffs, the risks of the parts fitted without them)
        risk = self._proba_of(_sigmoid(self._blended_logit(matrix, offset)))[:, 1]
        risk[valid] = held_out_risk
        self.level_error_ = _level_error(cuts.to_numpy(), X, labels, risk,
                                         self.horizon_days_)
        if reference is not None and self.use_bgnbd and len(reference):
            self.level_error_ = _with_disagreement(
                self.level_error_, reference, self.predict_proba(reference)[:, 1],
                1.0 - _bgnbd_columns(self.bgnbd_, reference, self._horizons(reference))[:, 1],
                self.horizon_days_)
        tenure = (reference if reference is not None else X.loc[valid]).get("tenure_days")
        self.history_days_ = (int(np.nanmax(tenure.to_numpy(dtype=np.float64)))
                              + (0 if reference is not None else self.horizon_days_)
                              if tenure is not None and len(tenure) else None)
        self.short_history_ = bool(self.history_days_ is not None
                                   and self.history_days_ < 365 + self.horizon_days_)
        if self.use_bgnbd:
            issue = getattr(self.bgnbd_, "boundary_", None)
            if issue:
                self.bgnbd_flags_.append({"cutoff": "scoring", "issue": issue})
        self.warnings_ = self._warnings()
        # What monitoring compares a scoring with (churnlens monitor: drift and level)
        self.reference_profile_ = reference_profile(
            X, [n for n in base if n not in self.categories_])
        self.importance_ = self._importance(X)
        self.training_risk_ = {"mean_risk": float(np.mean(risk)) if len(risk) else None,
                               "churn_rate": float(np.mean(labels)) if len(labels) else None,
                               "rows": len(labels)}
        return self

    def _importance(self, X: pd.DataFrame) -> dict[str, float]:
        """Each base feature's share of the mean absolute contribution on training rows.

        Up to ``IMPORTANCE_ROWS`` training rows (a seeded sample) are explained; BG/NBD's
        columns are credited in equal parts to the features BG/NBD reads
        (``repeat_frequency``, ``t_x_days``, ``tenure_days``), so a model that is BG/NBD
        alone still says which inputs matter. Shares sum to 1 (all 0 if nothing moves).
        """
        rows = X if len(X) <= IMPORTANCE_ROWS else X.sample(
            IMPORTANCE_ROWS, random_state=int(self.random_state))
        explanation = self.explain(rows)
        mean_abs = np.abs(explanation.contributions[:, :-1]).mean(axis=0)
        credit = dict.fromkeys(self.base_feature_names_, 0.0)
        readers = [n for n in BGNBD_INPUTS if n in credit]
        for name, value in zip(explanation.feature_names, mean_abs, strict=True):
            if name in credit:
                credit[name] += float(value)
            elif name in BGNBD_FEATURES and readers:
                for reader in readers:
                    credit[reader] += float(value) / len(readers)
        total = sum(credit.values())
        return {n: (v / total if total > 0 else 0.0) for n, v in credit.items()}

    def _warnings(self) -> list[str]:
        """Plain-English notes on what this model cannot know (model card, summary)."""
        notes = []
        if self.short_history_:
            notes.append(
                f"no full season of history ({self.history_days_} days of data, less than "
                f"a year plus the {self.horizon_days_}-day horizon): the level may be off "
                "by several points")
        chosen = self.selection_
        if chosen["chosen"] == "bgnbd" and chosen.get("held_out_bgnbd_on_boundary") and (
                not chosen.get("scoring_bgnbd_on_boundary")):
            notes.append(
                "the model is BG/NBD alone: BG/NBD's fit at the held-out cutoff is on its "
                "boundary (too little history there), so the blend cannot be checked")
        elif chosen["chosen"] == "bgnbd":
            notes.append(
                "the model is BG/NBD alone: the blend did not rank the held-out cutoff "
                f"better (AUC {chosen['held_out_auc_blend']:.3f} vs "
                f"{chosen['held_out_auc_bgnbd']:.3f})")
        if self.dropped_inputs_:
            notes.append(
                f"{len(self.dropped_inputs_)} input(s) without support in training are not "
                "used by the linear part: " + ", ".join(
                    d["feature"] for d in self.dropped_inputs_))
        for flag in self.bgnbd_flags_:
            where = ("the scoring fit" if flag["cutoff"] == "scoring"
                     else f"the cutoff {flag['cutoff']}")
            notes.append(f"BG/NBD at {where}: {flag['issue']}")
        return notes

    def _augment_per_cutoff(
        self, X: pd.DataFrame, cuts: pd.Series, distinct: np.ndarray,
        horizons: dict[Any, float] | None = None,
    ) -> pd.DataFrame:
        """Add BG/NBD features, fitting BG/NBD on each cutoff's own histories (with the
        horizon ``horizons[cutoff]`` when given: the seasonal clock)."""
        X = X.copy()
        for name in BGNBD_FEATURES:
            X[name] = np.nan
        failed = []
        flags: list[dict[str, Any]] = []
        for value in distinct:
            rows = (cuts == value).to_numpy()
            try:
                bgnbd = _fit_bgnbd(X.loc[rows], int(self.horizon_days))
            except (ValueError, FloatingPointError):
                # Too little history at an early cutoff to identify BG/NBD: leave the
                # two features missing there (LightGBM handles missing values).
                failed.append(pd.Timestamp(value).date())
                continue
            X.loc[rows, list(BGNBD_FEATURES)] = _bgnbd_columns(
                bgnbd, X.loc[rows], (horizons or {}).get(value))
            issue = getattr(bgnbd, "boundary_", None)
            if issue:
                flags.append({"cutoff": str(pd.Timestamp(value).date()), "issue": issue})
        self.bgnbd_failed_cutoffs_ = failed
        self.bgnbd_flags_ = flags + [
            {"cutoff": str(c), "issue": "the fit failed (too little history)"}
            for c in failed]
        return X

    def _with_bgnbd(self, X: pd.DataFrame) -> pd.DataFrame:
        if not self.use_bgnbd:
            return X
        X = X.copy()
        X[list(BGNBD_FEATURES)] = _bgnbd_columns(self.bgnbd_, X, self._horizons(X))
        return X

    def _horizons(self, X: pd.DataFrame) -> np.ndarray | int | None:
        """The scoring BG/NBD's horizon of each row: ``H * s`` at the row's date with
        the seasonal clock (:func:`churnlens._season.horizons_of`), else None (``H``)."""
        profile = getattr(self, "season_profile_", None)
        if not profile:
            return None
        from churnlens._season import horizons_of

        return horizons_of(X, profile, int(self.bgnbd_.horizon_days_),
                           getattr(self, "as_of_", None))

    def _offset(self, inputs: pd.DataFrame) -> np.ndarray:
        if not self.use_bgnbd:
            return np.zeros(len(inputs))
        return _logit(1.0 - inputs["bgnbd_p_purchase"].to_numpy(dtype=np.float64))

    def _season(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The seasonal level's terms of each row (:func:`~churnlens._scorer.season_shift`);
        None for a model without one (or pickled before it existed)."""
        return season_shift(matrix, self.feature_names_, getattr(self, "season_level_", None))

    def _blended_logit(self, matrix: np.ndarray, offset: np.ndarray, *,
                       transformed: np.ndarray | None = None,
                       tree_raw: np.ndarray | None = None) -> np.ndarray:
        """The blended churn log-odds, plus the seasonal level if used; ``transformed``:
        the logistic pipeline's transforms of ``matrix`` (:func:`_linear_transformed`),
        and ``tree_raw``: LightGBM's raw score of ``matrix``, when computed already."""
        return add_season(self._blend(matrix, offset, transformed=transformed,
                                      tree_raw=tree_raw), self._season(matrix))

    def _blend(self, matrix: np.ndarray, offset: np.ndarray, *,
               transformed: np.ndarray | None = None,
               tree_raw: np.ndarray | None = None) -> np.ndarray:
        """The blend of the parts: ``(1 - w) * (t * trees + BG/NBD) + w * logistic``."""
        t = float(getattr(self, "tree_weight_", 1.0))
        if t == 0.0:
            tree = offset + 0.0
        else:
            tree = (self._tree_logit(matrix) if tree_raw is None else tree_raw) * t + offset
        if self.logistic_ is None:
            return tree
        w = float(getattr(self, "logistic_weight_", self.logistic_weight))
        if w == 0.0:
            return tree
        if transformed is None:
            linear = self.logistic_.decision_function(matrix)
        else:  # what the pipeline's decision_function does after its transforms
            linear = self.logistic_[-1].decision_function(transformed)
        return (1.0 - w) * tree + w * linear

    def _tree_logit(self, matrix: np.ndarray) -> np.ndarray:
        """LightGBM's raw score. For a few rows straight from the booster: the
        scikit-learn wrapper's input checks cost 5x the prediction of 32 rows; the
        numbers are the same (the wrapper calls the same predict). Under
        ``PREDICT_LOCK``: LightGBM's predict is not thread-safe (see there)."""
        from churnlens._contributions import PREDICT_LOCK

        with PREDICT_LOCK:
            if len(matrix) <= _DIRECT_PREDICT_ROWS:
                return np.asarray(self.booster_.booster_.predict(
                    matrix, raw_score=True, num_threads=1, verbose=-1))
            return np.asarray(self.booster_.predict_proba(matrix, raw_score=True))

    def _inputs_matrix(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """``_matrix(self.model_inputs(X), self.feature_names_)`` and ``self._offset`` of
        those inputs, without building the inputs frame (a copy of ``X`` with two more
        columns, which cost more than the rest for a few rows). The same numbers."""
        _check_fitted(self, "booster_")
        names = self.feature_names_
        # a model pickled before categorical features has none
        categories = getattr(self, "categories_", None)
        k = len(names) - len(BGNBD_FEATURES)
        if not self.use_bgnbd or tuple(names[k:]) != BGNBD_FEATURES:
            inputs = self._with_bgnbd(X)
            return _matrix(inputs, names, "ChurnModel", categories), self._offset(inputs)
        bgnbd = _bgnbd_columns(self.bgnbd_, X, self._horizons(X))
        matrix = np.empty((len(names), len(X))).T  # column-major, as _matrix gives it
        matrix[:, :k] = _matrix(X, names[:k], "ChurnModel", categories)
        matrix[:, k:] = bgnbd
        return matrix, _logit(1.0 - bgnbd[:, 1])

    def model_inputs(self, X: pd.DataFrame) -> pd.DataFrame:
        """The features the components see: ``X`` plus the BG/NBD features, if used."""
        _check_fitted(self, "booster_")
        return self._with_bgnbd(X)

    def bgnbd_offset(self, X: pd.DataFrame) -> np.ndarray:
        """BG/NBD's churn log-odds of each row: the score LightGBM boosts from.

        Zeros when the model does not use BG/NBD. Its mean over a scored base is what
        :meth:`explain` takes as ``offset_center``.
        """
        _check_fitted(self, "booster_")
        if not self.use_bgnbd:
            return np.zeros(len(X))
        return _logit(1.0 - _bgnbd_columns(self.bgnbd_, X, self._horizons(X))[:, 1])

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """The blended churn log-odds of each row, before any post-hoc calibration."""
        _check_fitted(self, "booster_")
        return self._blended_logit(*self._inputs_matrix(X))

    def raw_score(self, X: pd.DataFrame) -> np.ndarray:
        """Blended churn probability before any post-hoc calibration."""
        return _sigmoid(self.decision_function(X))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """``[P(retained), P(churned)]`` for each row of ``X``."""
        _check_fitted(self, "calibrator_")  # before reading it: NotFittedError, not AttributeError
        return self._proba_of(self.raw_score(X))

    def explain(self, X: pd.DataFrame, *, offset_center: float | None = None) -> Explanation:
        """Churn risk and each feature's exact contribution to it, in one pass.

        The contributions are to the blended churn log-odds: LightGBM's exact tree
        contributions (path-dependent TreeSHAP, the numbers of its ``pred_contrib``),
        the logistic part's exact linear terms (missing-value indicators folded into
        their feature), and BG/NBD's offset, credited to ``bgnbd_p_purchase`` relative
        to ``offset_center`` (the rest goes to the bias), each weighted as in the blend.
        The risk comes from the same pass (the trees' leaves the contributions follow)
        and is ``predict_proba(X)[:, 1]`` bit for bit; no second prediction is made.

        Parameters
        ----------
        X
            Features frame (:func:`churnlens.compute_features`).
        offset_center
            ``None``: the mean of :meth:`bgnbd_offset` over ``X``. Pass the mean over a
            whole scored base so that each row's contributions do not depend on which
            other rows are explained with it (chunks, API requests).

        Returns
        -------
        Explanation
            ``churn_risk``, ``log_odds``, ``contributions`` (features + bias) and the
            feature values read.

        Raises
        ------
        ModelError
            If a row's contributions do not add up to its log-odds (a bug: refused
            rather than shown).

        Examples
        --------
        >>> explanation = model.explain(features)  # doctest: +SKIP
        >>> explanation.contributions.sum(axis=1)  # explanation.log_odds  # doctest: +SKIP
        """
        from churnlens._contributions import tree_contributions

        _check_fitted(self, "calibrator_")
        matrix, offset = self._inputs_matrix(X)
        transformed = (_linear_transformed(self.logistic_, matrix)
                       if self.logistic_ is not None else None)
        values, tree_raw = tree_contributions(self.booster_.booster_).explain(matrix)
        w = float(getattr(self, "logistic_weight_", self.logistic_weight)
                  ) if self.logistic_ is not None else 0.0
        credit_blend(values, offset, logistic_weight=w,
                     tree_weight=float(getattr(self, "tree_weight_", 1.0)),
                     offset_column=self.feature_names_.index("bgnbd_p_purchase")
                     if self.use_bgnbd else None, offset_center=offset_center)
        if self.logistic_ is not None and w:
            values += w * _linear_contributions(self.logistic_, matrix,
                                                len(self.feature_names_), transformed)
        credit_season(values, self._season(matrix), self.feature_names_)
        log_odds = self._blended_logit(matrix, offset, transformed=transformed,
                                       tree_raw=tree_raw)
        return checked_explanation(values, log_odds,
                                   lambda x: self._proba_of(_sigmoid(x))[:, 1],
                                   self.feature_names_, matrix, X.index)

    def _proba_of(self, raw: np.ndarray) -> np.ndarray:
        """:meth:`predict_proba` from :meth:`raw_score`."""
        return _two_columns(self.calibrator_.transform(raw))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """1 where the churn risk is at least 0.5."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int64)

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per-customer contributions of each feature to the blended churn log-odds.

        :meth:`explain`'s contributions as a frame: one column per feature plus
        ``bias``; each row sums to the blended log-odds before any post-hoc calibration.
        """
        return self.explain(X).contributions_frame()

    def to_scorer(self) -> Any:
        """This model in scoring form: plain arrays, loaded with NumPy alone, no pickle.

        The :class:`~churnlens._scorer.ChurnScorer` gives this model's
        ``predict_proba``, ``decision_function``, ``explain`` and ``bgnbd_offset``
        bit for bit; bundles carry it beside the pickle (``churnlens-scorer.npz``).

        Returns
        -------
        churnlens._scorer.ChurnScorer
            The scorer.

        Raises
        ------
        ModelError
            If this model cannot be put in that form (trees with more than 16 splits,
            an unknown calibrator); it is then scored as itself. Categorical splits are
            tabulated like numeric ones.
        """
        from churnlens._contributions import TreeContributions
        from churnlens._scorer import ChurnScorer

        _check_fitted(self, "calibrator_")
        trees = TreeContributions(self.booster_.booster_)
        trees.complete()
        arrays = {f"tree_{k}": v for k, v in trees.to_arrays().items()}
        meta: dict[str, Any] = {
            "feature_names": list(self.feature_names_),
            "base_feature_names": list(self.base_feature_names_),
            "horizon_days": int(self.horizon_days_),
            "as_of": str(self.as_of_) if getattr(self, "as_of_", None) else None,
            "use_bgnbd": bool(self.use_bgnbd),
            "logistic_weight": float(getattr(self, "logistic_weight_",
                                             self.logistic_weight)),
            "tree_weight": float(getattr(self, "tree_weight_", 1.0)),
            "calibration": self.calibrator_.method,
            "has_logistic": self.logistic_ is not None,
            "has_indicator": False, "indicator_all": False, "bgnbd_horizon_days": 0,
        }
        categories = getattr(self, "categories_", None)
        if categories:  # the training categories of each categorical feature
            meta["categories"] = json_ready(categories)
        if getattr(self, "season_profile_", None):  # the seasonal clock's daily counts
            meta["season_profile"] = json_ready(self.season_profile_)
        spec = getattr(self, "input_spec_", None)
        if spec is not None:  # the richer inputs it was trained with (set by fit_models)
            meta["input_spec"] = spec.to_dict()
        for key in SELF_KNOWLEDGE + MONITORING_REFERENCE:  # what it knows about itself
            if hasattr(self, key):
                meta[key.rstrip("_")] = json_ready(getattr(self, key))
        if getattr(self, "value_model_", None) is not None:  # set by fit_models (_value)
            meta["value_model"] = self.value_model_.to_dict()
        arrays["bgnbd_params"] = np.zeros(0)
        if self.use_bgnbd:
            params = self.bgnbd_.params_
            arrays["bgnbd_params"] = np.asarray(
                [params[k] for k in ("r", "alpha", "a", "b")], dtype=np.float64)
            meta["bgnbd_horizon_days"] = int(self.bgnbd_.horizon_days_)
        if self.logistic_ is not None:
            steps = self.logistic_.named_steps
            if [type(step).__name__ for _, step in self.logistic_.steps] != [
                    "FunctionTransformer", "SimpleImputer", "StandardScaler",
                    "LogisticRegression"] or steps["functiontransformer"].func is not (
                    _signed_log1p) or not steps["simpleimputer"].keep_empty_features:
                raise ModelError("this model's logistic pipeline is not churnlens' own; it "
                                 "cannot be put in scoring form.")
            imputer, scaler = steps["simpleimputer"], steps["standardscaler"]
            logistic = steps["logisticregression"]
            indicator = imputer.indicator_
            arrays["logistic_statistics"] = np.asarray(imputer.statistics_, dtype=np.float64)
            meta["has_indicator"] = indicator is not None
            if indicator is not None:
                features = np.asarray(indicator.features_, dtype=np.int64)
                arrays["logistic_indicator_features"] = features
                meta["indicator_all"] = bool(features.size >= indicator._n_features)
            arrays["logistic_mean"] = np.asarray(scaler.mean_, dtype=np.float64)
            arrays["logistic_scale"] = np.asarray(scaler.scale_, dtype=np.float64)
            arrays["logistic_coef"] = np.asarray(logistic.coef_, dtype=np.float64)
            arrays["logistic_intercept"] = np.asarray(logistic.intercept_, dtype=np.float64)
        calibrator = self.calibrator_.model
        if self.calibrator_.method == "isotonic":
            arrays["isotonic_x"] = np.asarray(calibrator.X_thresholds_, dtype=np.float64)
            arrays["isotonic_y"] = np.asarray(calibrator.y_thresholds_, dtype=np.float64)
            arrays["isotonic_x_min"] = np.asarray(calibrator.X_min_, dtype=np.float64)
            arrays["isotonic_x_max"] = np.asarray(calibrator.X_max_, dtype=np.float64)
        elif self.calibrator_.method == "sigmoid":
            arrays["sigmoid_coef"] = np.asarray(calibrator.coef_, dtype=np.float64)
            arrays["sigmoid_intercept"] = np.asarray(calibrator.intercept_, dtype=np.float64)
        scorer = ChurnScorer(meta, arrays)
        # The calibrator is the one step whose library code could change with its
        # version: check it reproduces this one's exactly, or keep the pickle only.
        grid = np.unique(np.concatenate([np.linspace(0.0, 1.0, 1001), arrays.get(
            "isotonic_x", np.zeros(0))]).clip(0.0, 1.0))
        if not np.array_equal(scorer._calibrated(grid.copy()),
                              self.calibrator_.transform(grid.copy())):
            raise ModelError(f"the {self.calibrator_.method} calibrator of this model cannot "
                             "be reproduced exactly in scoring form.")
        return scorer

    @property
    def feature_importances_(self) -> pd.Series:
        """Total gain of each feature in the LightGBM part, largest first."""
        _check_fitted(self, "booster_")
        gain = self.booster_.booster_.feature_importance(importance_type="gain")
        return pd.Series(gain, index=self.feature_names_).sort_values(ascending=False)


def _eval_data(booster: Any, X: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """The held-out set in the form this LightGBM takes (``eval_X``/``eval_y`` from 4.6
    on, where ``eval_set`` is deprecated; ``eval_set`` before)."""
    import inspect

    if "eval_X" in inspect.signature(booster.fit).parameters:
        return {"eval_X": (X,), "eval_y": (y,)}
    return {"eval_set": [(X, y)]}


def _threads(n_jobs: int | None, rows: int) -> int:
    """LightGBM threads: as asked, or 1 for small data and every available core above."""
    if n_jobs is not None:
        return int(n_jobs)
    if rows < 1_000_000:
        return 1
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else os.cpu_count() or 1)


def _logistic_pipeline(random_state: int, *, C: float = 1.0) -> Any:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    return make_pipeline(
        FunctionTransformer(_signed_log1p),
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(C=C, max_iter=2000, random_state=random_state),
    )


def _linear_transformed(pipeline: Any, matrix: np.ndarray) -> np.ndarray:
    """The logistic pipeline's transforms of ``matrix`` (what its last step sees)."""
    steps = pipeline.named_steps
    return steps["standardscaler"].transform(
        steps["simpleimputer"].transform(steps["functiontransformer"].transform(matrix)))


def _linear_contributions(pipeline: Any, matrix: np.ndarray, n_features: int,
                          transformed: np.ndarray | None = None) -> np.ndarray:
    """Exact per-feature terms of the logistic pipeline (indicators folded in)."""
    steps = pipeline.named_steps
    if transformed is None:
        transformed = _linear_transformed(pipeline, matrix)
    model = steps["logisticregression"]
    terms = transformed * model.coef_[0]
    out = np.zeros((matrix.shape[0], n_features + 1))
    out[:, :n_features] = terms[:, :n_features]
    indicator = steps["simpleimputer"].indicator_
    if indicator is not None:
        for j, feature in enumerate(indicator.features_):
            out[:, feature] += terms[:, n_features + j]
    out[:, -1] = model.intercept_[0]
    return out


# An input of the linear part whose spread (standard deviation of its signed log) at
# the scoring date is more than this many times its spread in the training snapshots,
# or that is constant in training, is not used by the linear part (README, "The
# support guard"). Measured on a log that starts mid-life (issue 15): the trend features
# are constant at every training cutoff earlier than their window, the logistic part
# gave them huge effective coefficients, and at the scoring date each swung the
# log-odds by about 2 with the wrong sign.
SUPPORT_RATIO = 4.0
# Training rows explained for the feature importances monitoring weighs drift by.
IMPORTANCE_ROWS = 20_000
_CONSTANT_SPREAD = 1e-9


# The blend is used only when it ranks the held-out cutoff better than BG/NBD alone
# by more than this many standard errors of the difference of the two ROC AUCs
# (DeLong's paired variance); otherwise the model is BG/NBD alone (README, "When the
# model is BG/NBD alone"). Measured: on short or left-truncated synthetic logs the
# blend's corrections, learned on snapshots with little history, ranked the scoring
# date 0.006-0.008 AUC below BG/NBD while they tied it on the held-out cutoff (a
# difference of 0.001, well within its noise); on CDNOW the blend's held-out gain is
# about 0.011, several standard errors.
SELECTION_Z = 1.645


def _level_error(cuts: np.ndarray, X: pd.DataFrame, labels: np.ndarray,
                 risk: np.ndarray, horizon_days: int) -> dict[str, Any]:
    """How far the model's predicted retention was from the actual, cutoff by cutoff.

    At every snapshot cutoff (the held-out ones out of sample), predicted cohort
    retention and CRR (``predict_retention``'s definitions, in points) against what
    happened. ``rms_*`` is the root mean square of those errors: the typical distance of
    the model's level from the truth across the seasons and ages the snapshots cover.
    ``half_width_*`` is ``t(0.975, n) * rms``, Student's quantile for ``n`` cutoffs, the
    part of a 95% interval that this level error adds (wide when there are few cutoffs).
    """
    from scipy.stats import t as student_t

    empty = {"cutoffs": [], "cohort_retention_errors": [], "crr_errors": [],
             "rms_cohort_retention": float("nan"), "rms_crr": float("nan"),
             "half_width_cohort_retention": float("nan"), "half_width_crr": float("nan"),
             "n_cutoffs": 0}
    if "recency_days" not in X.columns:
        return empty
    recency = X["recency_days"].to_numpy(dtype=np.float64)
    cohort_errors, crr_errors, used = [], [], []
    for value in np.unique(cuts):
        rows = cuts == value
        active = rows & (recency < horizon_days)
        if not active.any():
            continue
        stay_p, stay_y = 1.0 - risk, 1.0 - labels
        base = int(active.sum())
        cohort_errors.append(100 * (stay_p[active].sum() - stay_y[active].sum()) / base)
        crr_errors.append(100 * (stay_p[rows].sum() - stay_y[rows].sum()) / base)
        used.append(str(pd.Timestamp(value).date()))
    if not used:
        return empty
    n = len(used)
    quantile = float(student_t.ppf(0.975, n))
    rms_cohort = float(np.sqrt(np.mean(np.square(cohort_errors))))
    rms_crr = float(np.sqrt(np.mean(np.square(crr_errors))))
    return {"cutoffs": used,
            "cohort_retention_errors": [float(e) for e in cohort_errors],
            "crr_errors": [float(e) for e in crr_errors],
            "rms_cohort_retention": rms_cohort, "rms_crr": rms_crr,
            "half_width_cohort_retention": quantile * rms_cohort,
            "half_width_crr": quantile * rms_crr, "n_cutoffs": n}


def _with_disagreement(level: dict[str, Any], reference: pd.DataFrame, risk: np.ndarray,
                       bgnbd_risk: np.ndarray, horizon_days: int) -> dict[str, Any]:
    """``level`` with the model's disagreement with BG/NBD alone at the scoring date.

    The trees and the logistic part correct BG/NBD's level where the training
    snapshots told them to; at the scoring date, where BG/NBD has more history than at
    any training cutoff, those corrections are extrapolated. How far they move the
    predicted retention away from BG/NBD's is added (in quadrature) to the half-widths:
    on a log that starts mid-life, scored 180 days in, the blend was 4.0 points off
    while every cutoff error was within 1.1, and it disagreed with BG/NBD by 6.4 points.
    Zero when the model is BG/NBD alone.
    """
    if "recency_days" not in reference.columns:
        return level
    recency = reference["recency_days"].to_numpy(dtype=np.float64)
    active = recency < horizon_days
    base = int(active.sum())
    if not base:
        return level
    out = dict(level)
    for rate, rows in (("cohort_retention", active), ("crr", np.ones_like(active))):
        gap = 100 * float((bgnbd_risk[rows] - risk[rows]).sum()) / base
        out[f"disagreement_{rate}"] = gap
        half = out.get(f"half_width_{rate}")
        out[f"half_width_{rate}"] = math.hypot(
            half if half is not None and math.isfinite(half) else 0.0, gap)
    return out


def _select_blend(labels: np.ndarray, offset: np.ndarray, blended: np.ndarray, *,
                  enabled: bool, held_out_bgnbd_on_boundary: bool = False,
                  scoring_bgnbd_on_boundary: bool = False) -> dict[str, Any]:
    """Held-out ROC AUC of BG/NBD alone and of the blend, and which is used.

    When BG/NBD's fit at the held-out cutoff is on the boundary of its parameter space
    (too little history there) while the scoring fit is not, the comparison is against
    a BG/NBD that is not the one used for scoring, and the trees learned corrections to
    boundary fits: BG/NBD alone is used (one year of data with a strong season, scored
    90 days after the start: held-out AUC 0.61 for BG/NBD and 0.64 for the blend, at
    the scoring date 0.81 and 0.78).
    """
    bgnbd, blend, se = _paired_auc(labels, offset, blended)
    z = (blend - bgnbd) / se if se > 0 else (np.inf if blend > bgnbd else 0.0)
    unlike = held_out_bgnbd_on_boundary and not scoring_bgnbd_on_boundary
    chosen = "blend" if not enabled or (z > SELECTION_Z and not unlike) else "bgnbd"
    return {"chosen": chosen, "held_out_auc_bgnbd": bgnbd, "held_out_auc_blend": blend,
            "difference_se": se, "z": float(z), "z_needed": SELECTION_Z,
            "held_out_bgnbd_on_boundary": held_out_bgnbd_on_boundary,
            "scoring_bgnbd_on_boundary": scoring_bgnbd_on_boundary, "enabled": enabled}


def _paired_auc(labels: np.ndarray, a: np.ndarray, b: np.ndarray
                ) -> tuple[float, float, float]:
    """ROC AUC of scores ``a`` and ``b`` (higher: label 1) and the standard error of
    ``auc(b) - auc(a)`` on the same rows (DeLong, DeLong and Clarke-Pearson 1988,
    computed from mid-ranks as in Sun and Xu 2014)."""
    from scipy.stats import rankdata

    positive = np.asarray(labels) == 1
    m, n = int(positive.sum()), int((~positive).sum())
    aucs, v10, v01 = [], [], []
    for score in (a, b):
        score = np.asarray(score, dtype=np.float64)
        overall = rankdata(score)
        pos_rank = rankdata(score[positive])
        neg_rank = rankdata(score[~positive])
        placement_pos = (overall[positive] - pos_rank) / n   # share of negatives below
        placement_neg = 1.0 - (overall[~positive] - neg_rank) / m
        aucs.append(float(placement_pos.mean()))
        v10.append(placement_pos)
        v01.append(placement_neg)
    s10, s01 = np.cov(np.vstack(v10)), np.cov(np.vstack(v01))
    var = ((s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m
           + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n)
    return aucs[0], aucs[1], float(np.sqrt(max(var, 0.0)))


def _unsupported_inputs(names: Sequence[str], train: np.ndarray, reference: np.ndarray
                        ) -> list[dict[str, Any]]:
    """Inputs with no support in training: constant there, or far wider at scoring.

    Parameters
    ----------
    names
        The column names of both matrices.
    train, reference
        The training rows and the rows at the scoring date (the same columns).

    Returns
    -------
    list of dict
        ``feature``, ``reason`` (plain words), ``train_spread``, ``scoring_spread`` and
        ``ratio`` (``None`` when constant in training), in column order.
    """
    dropped: list[dict[str, Any]] = []
    for j, name in enumerate(names):
        spread_train = _spread(train[:, j])
        spread_ref = _spread(reference[:, j])
        if not spread_train > _CONSTANT_SPREAD:
            dropped.append({"feature": name, "reason": "constant in the training snapshots",
                            "train_spread": spread_train, "scoring_spread": spread_ref,
                            "ratio": None})
        elif spread_ref > SUPPORT_RATIO * spread_train:
            ratio = spread_ref / spread_train
            dropped.append({"feature": name, "reason": (
                f"spread at the scoring date {ratio:.1f}x its spread in training "
                f"(limit {SUPPORT_RATIO:g}x)"), "train_spread": spread_train,
                "scoring_spread": spread_ref, "ratio": ratio})
    return dropped


def _spread(values: np.ndarray) -> float:
    """Standard deviation of the signed log of the non-missing values (0 if none)."""
    finite = values[np.isfinite(values)]
    if finite.size < 2:
        return 0.0
    return float(np.std(_signed_log1p(finite)))


def _fit_linear(matrix: np.ndarray, labels: np.ndarray, weights: np.ndarray,
                dropped: Sequence[int], random_state: int) -> Any:
    """The logistic part, fitted with the ``dropped`` columns held at 0.

    A column that is constant in training gets a zero coefficient (and no missing-value
    indicator), so the pipeline keeps its shape and scoring form while the dropped
    inputs contribute exactly nothing, whatever their values at scoring.
    """
    if len(np.unique(labels)) < 2:
        raise DataValidationError(
            "the training cutoffs contain a single class. Suggestion: use more customers "
            "or more cutoffs.")
    inputs = matrix
    if len(dropped):
        inputs = matrix.copy()
        inputs[:, list(dropped)] = 0.0
    pipeline = _logistic_pipeline(random_state).fit(
        inputs, labels, logisticregression__sample_weight=weights)
    if len(dropped):
        coef = pipeline.named_steps["logisticregression"].coef_
        coef[0, list(dropped)] = 0.0  # already 0 up to rounding: a constant column
    return pipeline


def _fit_season_level(names: Sequence[str], matrix: np.ndarray, raw: np.ndarray,
                      labels: np.ndarray, weights: np.ndarray, cutoffs: np.ndarray, *,
                      enabled: bool = True) -> dict[str, Any]:
    """The seasonal level: ``logit(p) = raw + a + c * season_sin + d * season_cos``.

    The selection compares rankings, and the calendar features mostly tell the level:
    when BG/NBD alone is chosen (or the trees barely use them), the season of the horizon
    would not reach the prediction at all. So, whatever part was chosen, a shift of the
    chosen log-odds by the cutoff's position in the year is fitted by maximum likelihood
    on the training cutoffs' labels (the held-out ones stay out of sample), with the
    chosen log-odds as a fixed offset. It is the same for every customer at one date: the
    ranking (AUC) at a date is unchanged, only the level follows the season.

    Used only when asked (``season_level=True``: off by default, see docs/training.md,
    "The seasonal level", for why), the model reads the calendar features and the
    training cutoffs fall in all four quarters of the year (a cycle is not fitted on part
    of one); else ``used`` is False with the ``reason``.

    Returns
    -------
    dict
        ``used``, ``reason``, ``intercept``, ``season_sin``, ``season_cos`` (the
        coefficients) and ``training_cutoffs``.
    """
    quarters = {(pd.Timestamp(c).month - 1) // 3 for c in cutoffs}
    out: dict[str, Any] = {"used": False, "reason": None, "intercept": 0.0,
                           "season_sin": 0.0, "season_cos": 0.0,
                           "training_cutoffs": len(cutoffs)}
    if not enabled:
        out["reason"] = "not asked for (model.season_level: false)"
        return out
    if not all(n in names for n in SEASON_FEATURES):
        out["reason"] = "the model does not read the calendar features"
        return out
    if len(quarters) < 4:
        out["reason"] = (f"the training cutoffs fall in {len(quarters)} of the 4 quarters "
                         "of the year")
        return out
    season = np.nan_to_num(matrix[:, [list(names).index(n) for n in SEASON_FEATURES]])
    design = np.column_stack([np.ones(len(raw)), season])
    beta = np.zeros(3)
    ridge = 1e-6 * float(weights.sum())
    for _ in range(100):  # Newton's method on a convex likelihood: a few steps
        p = _sigmoid(raw + design @ beta)
        gradient = design.T @ (weights * (p - labels)) + ridge * beta
        hessian = (design * (weights * p * (1 - p))[:, None]).T @ design + ridge * np.eye(3)
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.abs(step).max() < 1e-10:
            break
    if not np.isfinite(beta).all():
        out["reason"] = "its fit did not give finite coefficients"
        return out
    out.update(used=True, intercept=float(beta[0]), season_sin=float(beta[1]),
               season_cos=float(beta[2]))
    return out


def _fit_bgnbd(features: pd.DataFrame, horizon_days: int) -> Any:
    from churnlens._bgnbd import BGNBDModel

    return BGNBDModel(horizon_days=horizon_days).fit(features)


def _bgnbd_columns(bgnbd: Any, features: pd.DataFrame,
                   horizon: np.ndarray | float | None = None) -> np.ndarray:
    # p_alive and predict_churn_risk of the BGNBDModel, reading the features once;
    # ``horizon`` (the seasonal clock's H * s, per row or one number) replaces its own
    if horizon is None:
        alive, churn = bgnbd._alive_and_churn_risk(features)
    else:
        from churnlens._bgnbd import (
            _features_to_data,
            _p_alive_unchecked,
            bgnbd_prob_purchase_in,
        )

        params = bgnbd._fitted_params()
        x, t_x, T = _features_to_data(features)
        alive = _p_alive_unchecked(params, x, t_x, T)
        churn = 1.0 - bgnbd_prob_purchase_in(params, horizon, x, t_x, T)
    p_alive = np.asarray(alive, dtype=np.float64)
    p_purchase = 1.0 - np.asarray(churn, dtype=np.float64)
    return np.column_stack([p_alive, p_purchase])


class _Calibrator:
    """Monotone map from raw score to probability (isotonic, Platt, or identity)."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.model: Any = None

    def fit(self, raw: np.ndarray, labels: np.ndarray) -> _Calibrator:
        if self.method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            self.model = IsotonicRegression(y_min=_EPS, y_max=1 - _EPS, out_of_bounds="clip")
            self.model.fit(raw, labels)
        elif self.method == "sigmoid":
            from sklearn.linear_model import LogisticRegression

            self.model = LogisticRegression(C=1e6, max_iter=1000)
            self.model.fit(_logit(raw).reshape(-1, 1), labels)
        return self

    def transform(self, raw: np.ndarray) -> np.ndarray:
        if self.method == "isotonic":
            return self.model.predict(raw)
        if self.method == "sigmoid":
            return self.model.predict_proba(_logit(raw).reshape(-1, 1))[:, 1]
        return raw


def _fit_calibrator(method: str, raw: np.ndarray, labels: np.ndarray) -> _Calibrator:
    return _Calibrator(method).fit(raw, labels)


class RecencyBaseline(ClassifierMixin, BaseEstimator):
    """Churn risk from days since the last purchase alone (isotonic, non-decreasing).

    The simplest serious baseline: the longer since the last purchase, the likelier
    the customer has churned.

    Parameters
    ----------
    feature
        The recency column.
    """

    def __init__(self, feature: str = "recency_days") -> None:
        self.feature = feature

    def fit(self, X: pd.DataFrame, y: Any) -> RecencyBaseline:
        """Fit the risk curve on the training snapshots."""
        from sklearn.isotonic import IsotonicRegression

        labels = _labels(y)
        values = _matrix(X, [self.feature], type(self).__name__)[:, 0]
        self.curve_ = IsotonicRegression(
            increasing=True, y_min=_EPS, y_max=1 - _EPS, out_of_bounds="clip"
        ).fit(values, labels)
        self.classes_ = np.array([0, 1])
        self.feature_names_ = [self.feature]
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """``[P(retained), P(churned)]``."""
        _check_fitted(self, "curve_")
        values = _matrix(X, [self.feature], type(self).__name__)[:, 0]
        return _two_columns(self.curve_.predict(values))


class LogisticBaseline(ClassifierMixin, BaseEstimator):
    """Logistic regression on the same features (signed log, median-imputed, scaled).

    Parameters
    ----------
    feature_names
        Features to use; ``None`` uses every numeric feature column.
    C
        Inverse regularisation strength.
    random_state
        Seed of the solver.
    """

    def __init__(self, feature_names: Sequence[str] | None = None, C: float = 1.0,
                 random_state: int = 0) -> None:
        self.feature_names = feature_names
        self.C = C
        self.random_state = random_state

    @_one_blas_thread
    def fit(self, X: pd.DataFrame, y: Any) -> LogisticBaseline:
        """Fit on the training snapshots."""
        labels = _labels(y)
        # numbers only: a categorical feature (customer attribute) is not read here
        names = numeric_feature_names(X, self.feature_names or None)
        self.pipeline_ = _logistic_pipeline(self.random_state, C=self.C).fit(
            _matrix(X, names, type(self).__name__), labels)
        self.feature_names_ = names
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """``[P(retained), P(churned)]``."""
        _check_fitted(self, "pipeline_")
        matrix = _matrix(X, self.feature_names_, type(self).__name__)
        return _two_columns(self.pipeline_.predict_proba(matrix)[:, 1])


def _signed_log1p(values: np.ndarray) -> np.ndarray:
    """Compress heavy tails (spend, counts) while keeping the sign (refunds)."""
    return np.sign(values) * np.log1p(np.abs(values))
