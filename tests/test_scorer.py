"""ChurnScorer: the scoring form of a ChurnModel gives its numbers bit for bit, and
loads with NumPy alone (no pickle, no pandas/scikit-learn/LightGBM/MLflow).

Data: ``generate_transactions(2000, seed=SEED)``; snapshots at 8 monthly cutoffs ending
``AS_OF - HORIZON``; models with few trees so that every variant trains in seconds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from snapshot_support import labelled_history

import churnlens
from churnlens._model import ChurnModel
from churnlens._scorer import ChurnScorer, Explanation, load_scorer
from churnlens.exceptions import DataValidationError, ModelError

SEED = 5
N_CUSTOMERS = 2000
AS_OF = dt.date(2024, 6, 30)
HORIZON = 91
print(f"test_scorer: generate_transactions({N_CUSTOMERS}, seed={SEED}), as of {AS_OF}")


@dataclasses.dataclass
class Data:
    snapshots: pd.DataFrame
    features: pd.DataFrame  # features at AS_OF


@pytest.fixture(scope="module")
def data() -> Data:
    history, snapshots = labelled_history(
        churnlens.generate_transactions(N_CUSTOMERS, seed=SEED), AS_OF, HORIZON)
    return Data(snapshots=snapshots, features=churnlens.compute_features(history, AS_OF))


VARIANTS = {
    "default": {},
    "isotonic": {"calibration": "isotonic"},
    "sigmoid": {"calibration": "sigmoid"},
    "no_bgnbd": {"use_bgnbd": False},
    "trees_only": {"logistic_weight": 0.0, "calibration": "isotonic"},
    "logistic_heavy": {"logistic_weight": 0.9, "num_leaves": 9},
}


def _fit(data: Data, **params: object) -> ChurnModel:
    params.setdefault("select_blend", False)  # the blend's arithmetic, not BG/NBD alone
    model = ChurnModel(horizon_days=HORIZON, random_state=3, n_estimators=120,
                       learning_rate=0.1, min_child_samples=100, **params)
    return model.fit(data.snapshots, data.snapshots["churned"].astype(int), as_of=AS_OF,
                     reference=data.features)


@pytest.fixture(scope="module", params=list(VARIANTS))
def pair(request: pytest.FixtureRequest, data: Data) -> tuple[ChurnModel, ChurnScorer]:
    model = _fit(data, **VARIANTS[request.param])
    return model, model.to_scorer()


def _edge_rows(features: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Real rows with features set to NaN, 0, -0.0, negative and huge values (BG/NBD
    inputs kept valid: the model refuses invalid ones, tested separately)."""
    rng = np.random.default_rng(SEED)
    rows = features.sample(400, random_state=SEED, replace=True).reset_index(drop=True)
    free = [n for n in names if n not in ("repeat_frequency", "t_x_days", "tenure_days")]
    specials = np.array([np.nan, 0.0, -0.0, 1e-40, -1e-40, 1e300, -1e300, 1e12, -5.0])
    for name in free:
        rows[name] = rows[name].astype(np.float64)
        hit = rng.random(len(rows)) < 0.3
        rows.loc[hit, name] = rng.choice(specials, hit.sum())
    return rows


def _assert_same(model: ChurnModel, scorer: ChurnScorer, frame: pd.DataFrame) -> None:
    np.testing.assert_array_equal(scorer.predict_proba(frame), model.predict_proba(frame))
    np.testing.assert_array_equal(scorer.decision_function(frame),
                                  model.decision_function(frame))
    np.testing.assert_array_equal(scorer.bgnbd_offset(frame), model.bgnbd_offset(frame))
    np.testing.assert_array_equal(scorer.predict(frame), model.predict(frame))
    for center in (None, 0.25):
        mine, theirs = (m.explain(frame, offset_center=center) for m in (scorer, model))
        assert isinstance(mine, Explanation)
        np.testing.assert_array_equal(mine.churn_risk, theirs.churn_risk)
        np.testing.assert_array_equal(mine.log_odds, theirs.log_odds)
        np.testing.assert_array_equal(mine.contributions, theirs.contributions)
        np.testing.assert_array_equal(mine.feature_values, theirs.feature_values)
        assert mine.feature_names == theirs.feature_names
        assert mine.index.equals(theirs.index)


@pytest.mark.parametrize("rows", [1, 7, 128, 129, 5000])
def test_scores_are_the_models_bit_for_bit(pair, data: Data, rows: int) -> None:
    model, scorer = pair
    frame = data.features.sample(rows, replace=True, random_state=rows)
    _assert_same(model, scorer, frame)


def test_edge_values_score_identically(pair, data: Data) -> None:
    model, scorer = pair
    edge = _edge_rows(data.features, model.base_feature_names_)
    _assert_same(model, scorer, edge)
    for n in (1, 3):  # the few-rows path of the trees
        _assert_same(model, scorer, edge.iloc[:n])


def test_no_rows(pair, data: Data) -> None:
    model, scorer = pair
    empty = data.features.iloc[:0]
    outcomes = []
    for m in (model, scorer):  # scikit-learn refuses 0 rows: so must the scorer
        try:
            outcomes.append(m.predict_proba(empty))
        except ValueError as exc:
            outcomes.append(str(exc))
    if isinstance(outcomes[0], str):
        assert isinstance(outcomes[1], str) and outcomes[1] == outcomes[0]
    else:
        np.testing.assert_array_equal(outcomes[1], outcomes[0])


def test_learned_attributes(pair) -> None:
    model, scorer = pair
    assert scorer.feature_names_ == model.feature_names_
    assert scorer.base_feature_names_ == model.base_feature_names_
    assert scorer.horizon_days_ == model.horizon_days_ == HORIZON
    assert scorer.as_of_ == model.as_of_
    assert scorer.use_bgnbd == model.use_bgnbd
    np.testing.assert_array_equal(scorer.classes_, model.classes_)
    assert list(scorer.feature_names_in_) == list(model.feature_names_in_)


def test_save_load_and_pickle_round_trip(pair, data: Data, tmp_path: Path) -> None:
    model, scorer = pair
    path = scorer.save(tmp_path / "scorer.npz")
    loaded = load_scorer(path.read_bytes())
    again = pickle.loads(pickle.dumps(loaded))  # Spark broadcasts it
    frame = data.features.sample(300, random_state=1)
    for other in (loaded, again):
        _assert_same(model, other, frame)
    with np.load(path, allow_pickle=False) as npz:  # data only
        assert all(npz[name].dtype != object for name in npz.files)


def test_refuses_what_the_model_refuses(data: Data) -> None:
    model = _fit(data)
    scorer = model.to_scorer()
    bad_inputs = data.features.head(5).copy()
    bad_inputs.loc[2, "t_x_days"] = bad_inputs.loc[2, "tenure_days"] + 1
    missing = data.features.drop(columns=[model.base_feature_names_[-1]])
    infinite = data.features.head(5).copy()
    infinite[model.base_feature_names_[-1]] = np.inf
    for frame, error in ((bad_inputs, DataValidationError), (missing, DataValidationError),
                         (data.features.to_numpy(), DataValidationError),
                         (data.features.drop(columns=["tenure_days"]), DataValidationError),
                         (infinite, ValueError)):
        with pytest.raises(error) as theirs:
            model.predict_proba(frame)
        with pytest.raises(error) as mine:
            scorer.predict_proba(frame)
        assert str(mine.value) == str(theirs.value)


def test_unreadable_scorer_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot be loaded"):
        load_scorer(b"not a zip file")
    objects = tmp_path / "objects.npz"
    np.savez(objects, meta=np.asarray(json.dumps({"format": 1})),
             evil=np.asarray([object()], dtype=object))
    with pytest.raises(ModelError, match="not a churnlens scorer"):
        load_scorer(objects.read_bytes())


def test_loading_imports_numpy_only(data: Data, tmp_path: Path) -> None:
    path = _fit(data).to_scorer().save(tmp_path / "scorer.npz")
    code = (
        "import sys\n"
        "from churnlens._scorer import load_scorer\n"
        f"scorer = load_scorer(open({str(path)!r}, 'rb').read())\n"
        "heavy = [m for m in ('pandas', 'sklearn', 'lightgbm', 'mlflow', 'scipy', 'joblib')\n"
        "         if m in sys.modules]\n"
        "print(scorer.horizon_days_, heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == [str(HORIZON), "[]"]
