"""Exact per-row contributions of a LightGBM booster's trees, fast enough for millions.

The one implementation of the tree part of :meth:`churnlens.ChurnModel.explain` (and so
of the reasons of every score). LightGBM's own ``pred_contrib`` (path-dependent
TreeSHAP) costs about a microsecond per row and per tree: 5 minutes for a million
customers and a few hundred trees.

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

The same direction patterns also give each row's leaf in every tree, so the booster's
raw score comes from the same pass (:meth:`TreeContributions.explain`): the leaf values
added tree by tree from 0, as LightGBM's predict adds them, so the score is LightGBM's
bit for bit and the model's risk needs no second prediction.

Categorical splits (LightGBM's ``==`` nodes on a categorical feature, read as its
integer codes) follow LightGBM's ``CategoricalDecision``: NaN and negative codes go
right, a code in the node's category set goes left. Trees with more splits than
``_MAX_SPLITS`` fall back to ``pred_contrib``.

:meth:`TreeContributions.complete` tabulates every pattern a row can reach, after
which the trees need no booster: :meth:`~TreeContributions.to_arrays` /
:meth:`~TreeContributions.from_arrays` are the trees of a model's scoring form
(:mod:`churnlens._scorer`), scored with NumPy alone.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from churnlens.exceptions import ModelError

__all__ = ["PREDICT_LOCK", "TreeContributions", "tree_contributions"]

# LightGBM's predict sets the booster's iteration range (start_iteration,
# num_iteration) as shared state before predicting, so two threads predicting with
# different ranges on one booster corrupt each other's results (measured: a per-tree
# call next to a whole-model call gave risks off by 1e-3). Every predict churnlens makes
# from threads holds this lock.
PREDICT_LOCK = threading.RLock()

# LightGBM's kZeroThreshold (a float constant): |x| <= it counts as zero.
_ZERO = float(np.float32(1e-35))
# LightGBM reads a value at or beyond +-1e300 as +-1e300 (Common::AvoidInf), so a split
# at 1e300 (its "missing or not" split) sends every finite value left, 1e301 and inf too.
_LIGHTGBM_MAX = 1e300
_MAX_SPLITS = 16  # 2**16 patterns per tree at most; larger trees use pred_contrib
# Up to this many rows, all trees are evaluated at once (memory: ~16 bytes per row, tree
# and used feature); above, tree by tree, vectorised over the rows.
_ROWS_ACROSS_TREES = 128
# LightGBM's missing_type of a split, in the order saved by TreeContributions.to_arrays.
# "Categorical" marks a categorical split (its threshold: the index of its category set).
_MISSING_TYPES = ("None", "Zero", "NaN", "Categorical")
# LightGBM casts a categorical value to a C int: at or beyond it, no category matches.
_INT_LIMIT = float(2**31 - 1)


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
        # The category set of every categorical split (its threshold is its index here).
        self.category_sets: list[np.ndarray] = []
        flat = [_flatten(info["tree_structure"], self.category_sets)
                for info in dump["tree_info"][: self.n_trees]]
        self.fast = all(t is not None and len(t) <= _MAX_SPLITS for t in flat)
        # The split nodes of each tree (only read when ``fast``).
        self.trees: list[list[tuple[int, float, bool, str]]] = [t or [] for t in flat]
        # Per tree: the leaf value each direction pattern leads to.
        self._leaves = [_leaf_values(info["tree_structure"], len(splits))
                        for info, splits in zip(dump["tree_info"][: self.n_trees], self.trees,
                                                strict=True)] if self.fast else []
        # Per tree: contributions of each pattern seen so far, on the tree's columns
        # (one row per used feature, then the bias), and which patterns are known.
        self._tables: list[np.ndarray | None] = [None] * self.n_trees
        self._known: list[np.ndarray | None] = [None] * self.n_trees
        self._lock = PREDICT_LOCK  # chunks may be explained in parallel threads
        self.completed = False  # every reachable pattern tabulated (complete())
        self.categorical = bool(self.category_sets)  # then no all-trees-at-once pass
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
        self._flat_leaf = np.concatenate(self._leaves)  # indexed like _flat_known

    def complete(self) -> None:
        """Fill every tree's table for every direction pattern a row can take.

        After this, :meth:`explain` and :meth:`raw_score` never call the booster again,
        so the trees can be saved as plain arrays (:meth:`to_arrays`) and scored
        without LightGBM. A row's pattern depends on each used feature only through
        which side of each threshold (and of LightGBM's zero band, and NaN) it lies
        on, so one value per such interval and per point between them reaches every
        pattern any row can take; LightGBM's ``pred_contrib`` gives each pattern's
        contributions from one such row, as :meth:`_table` does for scored rows.

        Raises
        ------
        ModelError
            If the trees are not tabulable (more than ``_MAX_SPLITS`` splits in a tree,
            or a split of a kind LightGBM has not documented).
        """
        if not self.fast:
            raise ModelError(
                "the LightGBM trees cannot be tabulated (more than "
                f"{_MAX_SPLITS} splits in a tree). Suggestion: keep num_leaves <= "
                f"{_MAX_SPLITS + 1}; such a model is scored with LightGBM.")
        if not self.n_trees:
            raise ModelError("the booster has no trees to tabulate. Suggestion: train again.")
        for t, splits in enumerate(self.trees):
            used = sorted({s[0] for s in splits})
            options = []
            for feature in used:
                nodes = [s for s in splits if s[0] == feature]
                if any(s[3] == "Categorical" for s in nodes):
                    # every category of a set, one in none, and NaN (with the negatives)
                    codes = sorted({int(c) for s in nodes if s[3] == "Categorical"
                                    for c in self.category_sets[int(s[1])]})
                    candidates = [*map(float, codes), float(codes[-1] + 1 if codes else 0)]
                else:
                    points = {-_ZERO, 0.0, _ZERO, *(s[1] for s in nodes)}
                    candidates = sorted({v for p in points
                                         for v in (p, np.nextafter(p, np.inf),
                                                   np.nextafter(p, -np.inf))})
                values = np.asarray([*candidates, np.nan])
                nan = np.isnan(values)
                sides = np.column_stack([_goes_left(values, nan, threshold, default_left,
                                                    missing, self.category_sets)
                                         for _, threshold, default_left, missing in nodes])
                _, first = np.unique(sides, axis=0, return_index=True)
                options.append(values[np.sort(first)])
            grid = np.asarray(list(itertools.product(*options)), dtype=np.float64)
            rows = np.zeros((len(grid), self.n_features))
            rows[:, used] = grid
            self._table(t, rows, self._codes(splits, rows))
        self.completed = True

    def _codes(self, splits: list[tuple[int, float, bool, str]], matrix: np.ndarray
               ) -> np.ndarray:
        """Each row's direction pattern in one tree (bit ``b``: left at split ``b``)."""
        codes = np.zeros(matrix.shape[0], dtype=np.intp)
        for bit, (feature, threshold, default_left, missing) in enumerate(splits):
            column = matrix[:, feature]
            left = _goes_left(column, np.isnan(column), threshold, default_left, missing,
                              self.category_sets)
            codes |= left.astype(np.intp) << bit
        return codes

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The trees and their complete tables as plain arrays (:meth:`from_arrays`).

        Raises
        ------
        ModelError
            If a table is not complete (call :meth:`complete` first).
        """
        if not self.completed:
            raise ModelError("the tree tables are not complete. Suggestion: call "
                             "complete() first.")
        splits = [s for tree in self.trees for s in tree]
        return {
            "tree_splits": np.asarray([len(t) for t in self.trees], dtype=np.int64),
            "split_feature": np.asarray([s[0] for s in splits], dtype=np.int64),
            "split_threshold": np.asarray([s[1] for s in splits], dtype=np.float64),
            "split_default_left": np.asarray([s[2] for s in splits], dtype=bool),
            "split_missing": np.asarray([_MISSING_TYPES.index(s[3]) for s in splits],
                                        dtype=np.int64),
            "leaf_values": np.asarray(self._flat_leaf, dtype=np.float64),
            "tables": np.asarray(self._flat, dtype=np.float64),
            "tables_known": np.asarray(self._flat_known, dtype=bool),
            "n_features": np.asarray(self.n_features, dtype=np.int64),
            # categorical splits: set k is values[bounds[k]:bounds[k + 1]]
            "category_values": np.asarray(
                [int(c) for cats in self.category_sets for c in cats], dtype=np.int64),
            "category_bounds": np.cumsum(
                [0, *(len(cats) for cats in self.category_sets)]).astype(np.int64),
        }

    @classmethod
    def from_arrays(cls, arrays: Any) -> TreeContributions:
        """Trees saved by :meth:`to_arrays`, scored without LightGBM.

        Parameters
        ----------
        arrays
            A mapping with the arrays of :meth:`to_arrays` (e.g. an ``np.load`` result).

        Raises
        ------
        ModelError
            If the arrays do not describe consistent trees.
        """
        self = cls.__new__(cls)
        self.booster = None
        try:
            counts = [int(c) for c in np.asarray(arrays["tree_splits"])]
            feature = np.asarray(arrays["split_feature"], dtype=np.int64)
            threshold = np.asarray(arrays["split_threshold"], dtype=np.float64)
            default_left = np.asarray(arrays["split_default_left"], dtype=bool)
            missing = np.asarray(arrays["split_missing"], dtype=np.int64)
            leaves = np.asarray(arrays["leaf_values"], dtype=np.float64)
            tables = np.asarray(arrays["tables"], dtype=np.float64)
            known = np.asarray(arrays["tables_known"], dtype=bool)
            self.n_features = int(arrays["n_features"])
            # absent from scorers saved before categorical splits were tabulated
            names = set(getattr(arrays, "files", None) or arrays)
            if "category_bounds" in names:
                cat_values = np.asarray(arrays["category_values"], dtype=np.int64)
                bounds = np.asarray(arrays["category_bounds"], dtype=np.int64)
                self.category_sets = [cat_values[bounds[k]: bounds[k + 1]].copy()
                                      for k in range(len(bounds) - 1)]
            else:
                self.category_sets = []
            ends = np.cumsum([0, *counts])
            self.trees = [
                [(int(feature[i]), float(threshold[i]), bool(default_left[i]),
                  _MISSING_TYPES[int(missing[i])]) for i in range(ends[t], ends[t + 1])]
                for t in range(len(counts))]
            leaf_ends = np.cumsum([0, *(1 << c for c in counts)])
            self._leaves = [leaves[leaf_ends[t]: leaf_ends[t + 1]].copy()
                            for t in range(len(counts))]
            valid = (len(leaves) == leaf_ends[-1] and len(self.trees) > 0
                     and all(c <= _MAX_SPLITS for c in counts)
                     and all(0 <= s[0] < self.n_features for t in self.trees for s in t)
                     and all(0 <= s[1] < len(self.category_sets) for t in self.trees
                             for s in t if s[3] == "Categorical"))
        except (KeyError, ValueError, IndexError, TypeError) as exc:
            raise ModelError(f"the saved trees are unreadable ({exc}).") from exc
        if not valid:
            raise ModelError("the saved trees are inconsistent (sizes or feature indices).")
        self.n_trees = len(self.trees)
        self.fast = True
        self.categorical = bool(self.category_sets)
        self._tables = [None] * self.n_trees
        self._known = [None] * self.n_trees
        self._lock = PREDICT_LOCK
        self._layout()
        if tables.shape != self._flat.shape or known.shape != self._flat_known.shape:
            raise ModelError("the saved tree tables do not match the saved trees.")
        self._flat[:] = tables
        self._flat_known[:] = known
        self.completed = True
        return self

    def raw_score(self, matrix: np.ndarray) -> np.ndarray:
        """The booster's raw score alone: :meth:`explain`'s, bit for bit, cheaper."""
        matrix = np.asarray(matrix, dtype=np.float64)
        if not self.fast:
            with self._lock:  # see PREDICT_LOCK
                return np.asarray(self.booster.predict(
                    matrix, num_iteration=self.n_trees, raw_score=True), dtype=np.float64)
        n = matrix.shape[0]
        if 0 < n <= _ROWS_ACROSS_TREES and not self.categorical:
            return self._raw_across_trees(self._codes_across_trees(matrix))
        raw = np.zeros(n)
        if n == 0:
            return raw
        columns = np.asfortranarray(matrix)
        nan = {f: np.isnan(columns[:, f]) for f in {s[0] for t in self.trees for s in t}}
        codes = np.empty(n, dtype=np.intp)
        shifted = np.empty(n, dtype=np.intp)
        gathered = np.empty(n)
        for t, splits in enumerate(self.trees):
            _tree_codes(splits, columns, nan, codes, shifted, self.category_sets)
            np.take(self._leaves[t], codes, out=gathered, mode="clip")
            raw += gathered
        return raw

    def compute(self, matrix: np.ndarray) -> np.ndarray:
        """``pred_contrib`` of the first ``n_trees`` trees: ``(rows, features + 1)``."""
        return self.explain(matrix)[0]

    def explain(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The contributions of :meth:`compute` and the booster's raw score, in one pass.

        The raw score is LightGBM's ``predict(raw_score=True)`` of the first ``n_trees``
        trees, bit for bit: each row's leaf values added tree by tree from 0.
        """
        matrix = np.asarray(matrix, dtype=np.float64)
        if not self.fast:
            with self._lock:  # see PREDICT_LOCK
                contrib = self.booster.predict(matrix, num_iteration=self.n_trees,
                                               pred_contrib=True)
                raw = self.booster.predict(matrix, num_iteration=self.n_trees, raw_score=True)
            # float64 always, as the fast paths: credit_blend scales it in place.
            return (np.asarray(contrib, dtype=np.float64),
                    np.asarray(raw, dtype=np.float64))
        n = matrix.shape[0]
        if 0 < n <= _ROWS_ACROSS_TREES and not self.categorical:
            return self._compute_across_trees(matrix)
        out = np.zeros((self.n_features + 1, n))  # one contiguous row per feature
        raw = np.zeros(n)
        if n == 0:
            return out.T, raw
        columns = np.asfortranarray(matrix)  # each feature contiguous
        nan = {f: np.isnan(columns[:, f]) for f in {s[0] for t in self.trees for s in t}}
        bias = 0.0
        # Buffers reused by every tree (fresh arrays per tree cost 20% more time). The
        # codes are intp: what take() indexes with, so it does not convert them.
        codes = np.empty(n, dtype=np.intp)
        shifted = np.empty(n, dtype=np.intp)
        gathered = np.empty(n)
        for t, splits in enumerate(self.trees):
            _tree_codes(splits, columns, nan, codes, shifted, self.category_sets)
            table, used = self._table(t, columns, codes)
            for j, feature in enumerate(used):
                np.take(table[j], codes, out=gathered, mode="clip")  # codes < table size
                out[feature] += gathered
            # The bias (the tree's expected value) is the same for every row.
            bias += table[-1][codes[0]]
            np.take(self._leaves[t], codes, out=gathered, mode="clip")
            raw += gathered
        out[-1] = bias
        return out.T, raw

    def _compute_across_trees(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`compute` for a few rows: every tree at once instead of tree by tree.

        The per-tree loop costs ~50 µs a tree whatever the rows (20 ms for 400 trees
        and one customer); here each step is one NumPy call over all the trees. The
        sums are the same, term for term and in the same order (tree by tree), so the
        results are identical to the loop's: ``bincount`` adds its weights in order.
        """
        n = matrix.shape[0]
        codes = self._codes_across_trees(matrix)
        known = self._flat_known[self._known_start + codes]
        if not known.all():
            for t in np.flatnonzero(~known.all(axis=0)).tolist():
                self._table(t, matrix, codes[:, t])
        width = self.n_features + 1
        weights = self._flat[self._pair_start + codes[:, self._pair_tree]]
        # (feature, row) cells, as the loop's output: one contiguous row per feature.
        where = self._pair_column * n + np.arange(n, dtype=np.int64)[:, None]
        summed = np.bincount(where.ravel(), weights=weights.ravel(), minlength=n * width)
        # float64 even with no split in any tree: bincount of nothing is an int array
        out = summed.astype(np.float64, copy=False).reshape(width, n)
        # The bias (the tree's expected value) is the same for every row: summed tree
        # by tree from the first row, as the loop does.
        bias = 0.0
        for value in self._flat[self._bias_start + codes[0]].tolist():
            bias += value
        out[-1] = bias
        return out.T, self._raw_across_trees(codes)

    def _codes_across_trees(self, matrix: np.ndarray) -> np.ndarray:
        """Each row's split pattern in every tree at once: ``(rows, trees)`` integers."""
        # (rows, trees, splits), read as LightGBM reads them (see _goes_left)
        values = np.clip(matrix[:, self._split_feature], -_LIGHTGBM_MAX, _LIGHTGBM_MAX)
        nan = np.isnan(values)
        left = (values <= self._threshold) | (nan & self._nan_left)
        zero = self._zero_type & ((np.abs(values) <= _ZERO) | nan)
        left = np.where(zero, self._default_left, left)
        return (left * self._bit).sum(axis=2)  # exact integers

    def _raw_across_trees(self, codes: np.ndarray) -> np.ndarray:
        """The raw score from :meth:`_codes_across_trees`' patterns."""
        # Each row's leaves added in tree order (cumsum is sequential), as LightGBM does.
        leaves = self._flat_leaf[self._known_start + codes]
        return np.cumsum(leaves, axis=1)[:, -1]

    def _table(self, t: int, matrix: np.ndarray, codes: np.ndarray
               ) -> tuple[np.ndarray, list[int]]:
        """The tree's contributions by pattern (one row per used feature, then the bias),
        filled for every pattern present in ``codes``."""
        splits = self.trees[t]
        used = sorted({s[0] for s in splits})
        size = 1 << len(splits)
        with self._lock:
            table, known = self._tables[t], self._known[t]
            if table is None or known is None:
                table = self._tables[t] = np.zeros((len(used) + 1, size))
                known = self._known[t] = np.zeros(size, dtype=bool)
        present = np.bincount(codes, minlength=size).astype(bool)
        if not (present & ~known).any():
            return table, used
        with self._lock:
            missing = np.flatnonzero(present & ~known)
            if not missing.size:  # another thread filled them meanwhile
                return table, used
            if self.booster is None:  # saved trees: every reachable pattern is tabulated
                raise ModelError(
                    f"tree {t} of the saved model has no contributions for a direction "
                    "pattern of these rows; the saved trees are incomplete. Suggestion: "
                    "export the bundle again with this churnlens version.")
            where = np.zeros(size, dtype=np.int64)
            where[codes] = np.arange(codes.size)
            # One thread: on a few rows, starting LightGBM's thread pool costs ~20 ms.
            contrib = np.asarray(self.booster.predict(
                matrix[where[missing]], start_iteration=t, num_iteration=1,
                pred_contrib=True, num_threads=1))
            table[:, missing] = contrib[:, [*used, self.n_features]].T
            known[missing] = True
        return table, used


def _flatten(node: dict[str, Any], category_sets: list[np.ndarray]
             ) -> list[tuple[int, float, bool, str]] | None:
    """The split nodes of a tree (any order), or None if one is of an unknown kind.

    A categorical split's category set is appended to ``category_sets``; the split is
    ``(feature, index of its set, default_left, "Categorical")``.
    """
    splits: list[tuple[int, float, bool, str]] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if "split_index" not in current:
            continue
        kind = current.get("decision_type")
        if kind == "==":  # categorical: threshold "0||3||5", the categories going left
            category_sets.append(np.asarray(
                sorted(int(c) for c in str(current["threshold"]).split("||")),
                dtype=np.int64))
            splits.append((int(current["split_feature"]), float(len(category_sets) - 1),
                           bool(current["default_left"]), "Categorical"))
        elif kind == "<=":
            splits.append((int(current["split_feature"]), float(current["threshold"]),
                           bool(current["default_left"]), str(current["missing_type"])))
        else:
            return None
        stack.extend((current["left_child"], current["right_child"]))
    return splits


def _leaf_values(node: dict[str, Any], n_splits: int) -> np.ndarray:
    """The leaf value each direction pattern of a tree leads to (bit ``b`` set: left at
    the ``b``-th split node in :func:`_flatten`'s order)."""
    bits: dict[int, int] = {}
    stack = [node]
    while stack:  # the order of _flatten
        current = stack.pop()
        if "split_index" in current:
            bits[id(current)] = len(bits)
            stack.extend((current["left_child"], current["right_child"]))
    codes = np.arange(1 << n_splits)
    out = np.zeros(codes.size)
    walk = [(node, np.ones(codes.size, dtype=bool))]
    while walk:
        current, rows = walk.pop()
        if "split_index" not in current:
            out[rows] = float(current["leaf_value"])
            continue
        left = ((codes >> bits[id(current)]) & 1).astype(bool)
        walk.extend(((current["left_child"], rows & left),
                     (current["right_child"], rows & ~left)))
    return out


def _tree_codes(splits: Sequence[tuple[int, float, bool, str]], columns: np.ndarray,
                nan: dict[int, np.ndarray], codes: np.ndarray, shifted: np.ndarray,
                category_sets: Sequence[np.ndarray] = ()) -> None:
    """Fill ``codes`` with each row's split pattern in one tree (bit ``i``: split ``i``
    sends the row left); ``shifted`` is a buffer of the same shape, reused by every tree."""
    codes.fill(0)
    for bit, (feature, threshold, default_left, missing) in enumerate(splits):
        left = _goes_left(columns[:, feature], nan[feature], threshold, default_left, missing,
                          category_sets)
        np.left_shift(left, bit, out=shifted, dtype=np.intp)
        codes |= shifted


def _goes_left(values: np.ndarray, nan: np.ndarray, threshold: float, default_left: bool,
               missing: str, category_sets: Sequence[np.ndarray] = ()) -> np.ndarray:
    """LightGBM's ``NumericalDecision`` (tree.h), vectorised: True where a row goes left.

    Values beyond +-1e300 are read as +-1e300 first, as LightGBM does (NaN stays NaN).
    A categorical split (``missing`` ``"Categorical"``, ``threshold`` the index of its
    set in ``category_sets``) is its ``CategoricalDecision``: the value cast to an int
    (towards zero) goes left when it is in the set; NaN and negatives go right.
    """
    if missing == "Categorical":
        usable = ~nan & (values > -1.0) & (values < _INT_LIMIT)
        codes = np.trunc(np.where(usable, values, -1.0)).astype(np.int64)
        return usable & np.isin(codes, category_sets[int(threshold)])
    values = np.clip(values, -_LIGHTGBM_MAX, _LIGHTGBM_MAX)
    below = values <= threshold  # False for NaN
    if missing == "NaN":  # NaN takes the default direction
        return below | nan if default_left else below
    if missing == "Zero":  # NaN is read as 0; zeros take the default direction
        zero = (np.abs(values) <= _ZERO) | nan
        return np.where(zero, default_left, below)
    # missing_type None: NaN is read as 0 and compared like any value
    return below | nan if 0.0 <= threshold else below


_CACHE: dict[int, TreeContributions] = {}


def tree_contributions(booster: Any) -> TreeContributions:
    """One :class:`TreeContributions` per booster in this process (tables are reused).

    Parameters
    ----------
    booster
        A fitted ``lightgbm.Booster``.
    """
    found = _CACHE.get(id(booster))
    if found is None or found.booster is not booster:
        found = TreeContributions(booster)
        _CACHE.clear()  # one model at a time in practice; do not pin old ones
        _CACHE[id(booster)] = found
    return found
