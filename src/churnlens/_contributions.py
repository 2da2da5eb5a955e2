"""Exact per-customer feature contributions of a churn model, fast enough for millions.

The reasons of a score come from each feature's contribution to the churn log-odds
(:meth:`churnlens.ChurnModel.contributions`). Its tree part is LightGBM's
``pred_contrib`` (path-dependent TreeSHAP), which costs about a microsecond per row
and per tree: 5 minutes for a million customers and a few hundred trees.

Why a shortcut is exact: TreeSHAP reads a row only through the direction the row
takes at each split node of a tree (left or right; it visits every node). So a
tree's contributions are a function of that *pattern* of directions, and churnlens'
trees are small (``num_leaves`` 5: 4 splits, at most 16 patterns). For each tree we
compute every row's pattern with vectorised comparisons that follow LightGBM's own
decision rule (missing values, ``default_left``), ask LightGBM's ``pred_contrib`` for
that one tree (``start_iteration=t, num_iteration=1``) on one row per pattern not
seen before, and gather. The numbers are LightGBM's own; only the order in which
the trees' terms are added differs (differences ~1e-16).

Going tree by tree costs ~50 µs per tree whatever the rows: fine for a million rows,
20 ms for the API's one customer. Up to ``_ROWS_ACROSS_TREES`` rows, every tree's
patterns are computed in one pass and the terms gathered in one ``bincount``, which
adds them in the same order (tree by tree): the same numbers, bit for bit.

Trees with categorical splits or too many splits fall back to ``pred_contrib``.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["PREDICT_LOCK", "TreeContributions", "contribution_values", "model_contributions"]

# LightGBM's predict sets the booster's iteration range (start_iteration,
# num_iteration) as shared state before predicting, so two threads predicting with
# different ranges on one booster corrupt each other's results (measured: a per-tree
# call next to a whole-model call gave risks off by 1e-3). Every predict churnlens makes
# from threads holds this lock.
PREDICT_LOCK = threading.RLock()

# LightGBM's kZeroThreshold (a float constant): |x| <= it counts as zero.
_ZERO = float(np.float32(1e-35))
_MAX_SPLITS = 16  # 2**16 patterns per tree at most; larger trees use pred_contrib
# Up to this many rows, all trees are evaluated at once (memory: ~16 bytes per row, tree
# and used feature); above, tree by tree, vectorised over the rows.
_ROWS_ACROSS_TREES = 128


class TreeContributions:
    """Contributions of a LightGBM binary booster's trees, by direction patterns.

    Parameters
    ----------
    booster
        A fitted ``lightgbm.Booster`` (one tree per iteration).

    Examples
    --------
    >>> import lightgbm as lgb
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(500, 3)); y = (X[:, 0] + rng.normal(size=500) > 0)
    >>> b = lgb.train({"objective": "binary", "num_leaves": 4, "verbose": -1},
    ...               lgb.Dataset(X, y), num_boost_round=20)
    >>> fast = TreeContributions(b).compute(X)
    >>> bool(np.allclose(fast, b.predict(X, pred_contrib=True), rtol=0, atol=1e-12))
    True
    """

    def __init__(self, booster: Any) -> None:
        self.booster = booster
        dump = booster.dump_model()
        if dump.get("num_tree_per_iteration", 1) != 1:
            raise ValueError("only single-output (binary) boosters are supported")
        best = int(getattr(booster, "best_iteration", 0) or 0)
        self.n_trees = best if best > 0 else int(booster.current_iteration())
        self.n_features = int(dump["max_feature_idx"]) + 1
        self.trees = [_flatten(info["tree_structure"])
                      for info in dump["tree_info"][: self.n_trees]]
        self.fast = all(t is not None and len(t) <= _MAX_SPLITS for t in self.trees)
        # Per tree: contributions of each pattern seen so far, on the tree's columns
        # (one row per used feature, then the bias), and which patterns are known.
        self._tables: list[np.ndarray | None] = [None] * self.n_trees
        self._known: list[np.ndarray | None] = [None] * self.n_trees
        self._lock = PREDICT_LOCK  # chunks may be explained in parallel threads
        if self.fast and self.n_trees:
            self._layout()

    def _layout(self) -> None:
        """Every tree's table as a view into one buffer, and the arrays that evaluate
        all the trees' splits at once (:meth:`_compute_across_trees`)."""
        trees = self.trees
        used = [sorted({s[0] for s in splits}) for splits in trees]
        sizes = [1 << len(splits) for splits in trees]
        rows = [len(u) + 1 for u in used]
        starts = np.cumsum([0] + [r * z for r, z in zip(rows, sizes, strict=True)])
        known_starts = np.cumsum([0, *sizes])
        self._flat = np.zeros(int(starts[-1]))
        self._flat_known = np.zeros(int(known_starts[-1]), dtype=bool)
        for t, (r, z) in enumerate(zip(rows, sizes, strict=True)):
            self._tables[t] = self._flat[starts[t]: starts[t + 1]].reshape(r, z)
            self._known[t] = self._flat_known[known_starts[t]: known_starts[t + 1]]
        self._known_start = known_starts[:-1].astype(np.int64)
        # The splits, padded to the largest tree (padding carries no bit).
        width = max(max(len(s) for s in trees), 1)
        shape = (self.n_trees, width)
        self._split_feature = np.zeros(shape, dtype=np.int64)
        self._threshold = np.zeros(shape)
        self._bit = np.zeros(shape, dtype=np.int64)
        self._default_left = np.zeros(shape, dtype=bool)
        self._nan_left = np.zeros(shape, dtype=bool)  # where NaN goes left (not Zero)
        self._zero_type = np.zeros(shape, dtype=bool)
        for t, splits in enumerate(trees):
            for bit, (feature, threshold, default_left, missing) in enumerate(splits):
                self._split_feature[t, bit] = feature
                self._threshold[t, bit] = threshold
                self._bit[t, bit] = 1 << bit
                self._default_left[t, bit] = default_left
                self._zero_type[t, bit] = missing == "Zero"
                self._nan_left[t, bit] = (default_left if missing == "NaN"
                                          else missing != "Zero" and 0.0 <= threshold)
        # One (tree, table row) pair per used feature of each tree, in tree order: where
        # its contributions start in the buffer and which output column they go to.
        self._pair_tree = np.concatenate(
            [np.full(len(u), t, dtype=np.int64) for t, u in enumerate(used)])
        self._pair_start = np.concatenate(
            [starts[t] + np.arange(len(u), dtype=np.int64) * sizes[t]
             for t, u in enumerate(used)])
        self._pair_column = np.concatenate([np.asarray(u, dtype=np.int64) for u in used])
        self._bias_start = np.asarray(
            [starts[t] + len(u) * sizes[t] for t, u in enumerate(used)], dtype=np.int64)

    def compute(self, matrix: np.ndarray) -> np.ndarray:
        """``pred_contrib`` of the first ``n_trees`` trees: ``(rows, features + 1)``."""
        matrix = np.asarray(matrix, dtype=np.float64)
        if not self.fast:
            return np.asarray(self.booster.predict(matrix, num_iteration=self.n_trees,
                                                   pred_contrib=True))
        n = matrix.shape[0]
        if 0 < n <= _ROWS_ACROSS_TREES:
            return self._compute_across_trees(matrix)
        out = np.zeros((self.n_features + 1, n))  # one contiguous row per feature
        if n == 0:
            return out.T
        columns = np.asfortranarray(matrix)  # each feature contiguous
        nan = {f: np.isnan(columns[:, f]) for f in {s[0] for t in self.trees for s in t}}
        bias = 0.0
        for t, splits in enumerate(self.trees):
            codes = np.zeros(n, dtype=np.int32)
            for bit, (feature, threshold, default_left, missing) in enumerate(splits):
                left = _goes_left(columns[:, feature], nan[feature], threshold, default_left,
                                  missing)
                codes |= left.view(np.uint8).astype(np.int32) << bit
            table, used = self._table(t, columns, codes)
            for j, feature in enumerate(used):
                out[feature] += table[j][codes]
            # The bias (the tree's expected value) is the same for every row.
            bias += table[-1][codes[0]]
        out[-1] = bias
        return out.T

    def _compute_across_trees(self, matrix: np.ndarray) -> np.ndarray:
        """:meth:`compute` for a few rows: every tree at once instead of tree by tree.

        The per-tree loop costs ~50 µs a tree whatever the rows (20 ms for 400 trees
        and one customer); here each step is one NumPy call over all the trees. The
        sums are the same, term for term and in the same order (tree by tree), so the
        results are identical to the loop's: ``bincount`` adds its weights in order.
        """
        n = matrix.shape[0]
        values = matrix[:, self._split_feature]  # (rows, trees, splits)
        nan = np.isnan(values)
        left = (values <= self._threshold) | (nan & self._nan_left)
        zero = self._zero_type & ((np.abs(values) <= _ZERO) | nan)
        left = np.where(zero, self._default_left, left)
        codes = (left * self._bit).sum(axis=2)  # (rows, trees): exact integers
        known = self._flat_known[self._known_start + codes]
        if not known.all():
            for t in np.flatnonzero(~known.all(axis=0)).tolist():
                self._table(t, matrix, codes[:, t])
        width = self.n_features + 1
        weights = self._flat[self._pair_start + codes[:, self._pair_tree]]
        # (feature, row) cells, as the loop's output: one contiguous row per feature.
        where = self._pair_column * n + np.arange(n, dtype=np.int64)[:, None]
        out = np.bincount(where.ravel(), weights=weights.ravel(), minlength=n * width)
        out = out.reshape(width, n)
        # The bias (the tree's expected value) is the same for every row: summed tree
        # by tree from the first row, as the loop does.
        bias = 0.0
        for value in self._flat[self._bias_start + codes[0]].tolist():
            bias += value
        out[-1] = bias
        return out.T

    def _table(self, t: int, matrix: np.ndarray, codes: np.ndarray
               ) -> tuple[np.ndarray, list[int]]:
        """The tree's contributions by pattern (one row per used feature, then the bias),
        filled for every pattern present in ``codes``."""
        splits = self.trees[t]
        used = sorted({s[0] for s in splits})
        size = 1 << len(splits)
        with self._lock:
            if self._tables[t] is None:
                self._tables[t] = np.zeros((len(used) + 1, size))
                self._known[t] = np.zeros(size, dtype=bool)
            table, known = self._tables[t], self._known[t]
        present = np.bincount(codes, minlength=size).astype(bool)
        if not (present & ~known).any():
            return table, used
        with self._lock:
            missing = np.flatnonzero(present & ~known)
            if not missing.size:  # another thread filled them meanwhile
                return table, used
            where = np.zeros(size, dtype=np.int64)
            where[codes] = np.arange(codes.size)
            # One thread: on a few rows, starting LightGBM's thread pool costs ~20 ms.
            contrib = np.asarray(self.booster.predict(
                matrix[where[missing]], start_iteration=t, num_iteration=1,
                pred_contrib=True, num_threads=1))
            table[:, missing] = contrib[:, [*used, self.n_features]].T
            known[missing] = True
        return table, used


def _flatten(node: dict[str, Any]) -> list[tuple[int, float, bool, str]] | None:
    """The split nodes of a tree (any order), or None if one is not numerical."""
    splits: list[tuple[int, float, bool, str]] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if "split_index" not in current:
            continue
        if current.get("decision_type") != "<=":
            return None
        splits.append((int(current["split_feature"]), float(current["threshold"]),
                       bool(current["default_left"]), str(current["missing_type"])))
        stack.extend((current["left_child"], current["right_child"]))
    return splits


def _goes_left(values: np.ndarray, nan: np.ndarray, threshold: float, default_left: bool,
               missing: str) -> np.ndarray:
    """LightGBM's ``NumericalDecision`` (tree.h), vectorised: True where a row goes left."""
    below = values <= threshold  # False for NaN
    if missing == "NaN":  # NaN takes the default direction
        return below | nan if default_left else below
    if missing == "Zero":  # NaN is read as 0; zeros take the default direction
        zero = (np.abs(values) <= _ZERO) | nan
        return np.where(zero, default_left, below)
    # missing_type None: NaN is read as 0 and compared like any value
    return below | nan if 0.0 <= threshold else below


_CACHE: dict[int, TreeContributions] = {}


def _tree_contributions(booster: Any) -> TreeContributions:
    """One :class:`TreeContributions` per booster in this process (tables are reused)."""
    found = _CACHE.get(id(booster))
    if found is None or found.booster is not booster:
        found = TreeContributions(booster)
        _CACHE.clear()  # one model at a time in practice; do not pin old ones
        _CACHE[id(booster)] = found
    return found


def model_contributions(model: Any, features: pd.DataFrame, *,
                        offset_center: float | None = None,
                        inputs: pd.DataFrame | None = None,
                        matrix: np.ndarray | None = None) -> pd.DataFrame:
    """:meth:`ChurnModel.contributions`, with the fast exact tree part.

    Parameters
    ----------
    model
        A fitted :class:`churnlens.ChurnModel`.
    features
        Features frame (``compute_features``).
    offset_center
        ``ChurnModel.contributions`` credits BG/NBD's log-odds offset, centred on its
        mean over the rows given, to ``bgnbd_p_purchase``. Pass the mean over the
        whole scored base to get, chunk by chunk, what one call on the whole base
        gives. ``None``: the mean over ``features`` (as ``ChurnModel.contributions``).
    inputs, matrix
        ``model.model_inputs(features)`` and its matrix of the model's features, when
        the caller has them already.

    Returns
    -------
    pandas.DataFrame
        One column per model feature plus ``bias``; each row sums to the blended
        churn log-odds before any post-hoc calibration.
    """
    values = contribution_values(model, features, offset_center=offset_center, inputs=inputs,
                                 matrix=matrix)
    return pd.DataFrame(values, columns=[*model.feature_names_, "bias"], index=features.index)


def contribution_values(model: Any, features: pd.DataFrame, *,
                        offset_center: float | None = None,
                        inputs: pd.DataFrame | None = None,
                        matrix: np.ndarray | None = None,
                        offset: np.ndarray | None = None,
                        transformed: np.ndarray | None = None) -> np.ndarray:
    """:func:`model_contributions` as an array, without the frame.

    For a handful of rows, building the frame costs more than the numbers.

    Parameters
    ----------
    model, features, offset_center, inputs, matrix
        As for :func:`model_contributions`.
    offset, transformed
        BG/NBD's log-odds offset of each row and the logistic pipeline's transforms of
        ``matrix``, when computed already (then ``inputs`` is not needed).

    Returns
    -------
    numpy.ndarray
        ``(rows, features + 1)``: the values of :func:`model_contributions`.
    """
    from churnlens._model import _linear_contributions, _matrix

    if inputs is None and (matrix is None or offset is None):
        inputs = model.model_inputs(features)
    if matrix is None:
        matrix = _matrix(inputs, model.feature_names_, type(model).__name__)
    w = float(model.logistic_weight) if model.logistic_ is not None else 0.0
    values = (1.0 - w) * _tree_contributions(model.booster_.booster_).compute(matrix)
    if model.use_bgnbd:
        if offset is None:
            offset = model._offset(inputs)
        k = model.feature_names_.index("bgnbd_p_purchase")
        if offset_center is None:
            offset_center = float(np.mean(offset)) if len(offset) else 0.0
        values[:, k] += (1.0 - w) * (offset - offset_center)
        values[:, -1] += (1.0 - w) * offset_center
    if model.logistic_ is not None:
        values += w * _linear_contributions(model.logistic_, matrix, len(model.feature_names_),
                                            transformed)
    return values


def offset_sum(model: Any, features: pd.DataFrame) -> tuple[float, int]:
    """Sum and count of BG/NBD's log-odds offset over ``features`` (for a base-wide mean)."""
    if not getattr(model, "use_bgnbd", False) or not len(features):
        return 0.0, len(features)
    offset = model._offset(model.model_inputs(features))
    return float(np.sum(offset)), len(offset)
