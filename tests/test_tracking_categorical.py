"""The logged MLflow pyfunc of a model with categorical features (text attributes).

``churnlens.features(...)`` and its Parquet files give a text attribute as a pandas
``Categorical``; a user may also pass it as plain text. The pyfunc logged at training
takes both and gives ``artifact.churn_risk``'s numbers (unseen categories: missing, as
the model reads them). MLflow (3.x) refuses ``category`` dtype for a ``string``
signature column, so those columns are ``Any`` in the signature.

Data: ``generate_inputs(400, seed=SEED)``, a temporary sqlite MLflow store.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest

from churnlens._config import load_config
from churnlens._input_features import InputTables
from churnlens._inputs import load_customers, load_events
from churnlens._pipeline import TrainingRun, train
from churnlens._synthetic import generate_inputs

SEED = 7
AS_OF = "2024-06-30"
print(f"test_tracking_categorical: generate_inputs(400, seed={SEED}), as of {AS_OF}")
SMALL = {"model.n_estimators": 30, "model.n_jobs": 1, "snapshots.count": 3,
         "backtest_steps": 0, "mlflow.experiment": "churnlens-categorical-tests"}


@dataclasses.dataclass
class Logged:
    run: TrainingRun
    features: pd.DataFrame  # the model's features, categorical columns as Categorical
    pyfunc: Any


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Logged:
    import mlflow
    import mlflow.pyfunc

    root = tmp_path_factory.mktemp("tracking_categorical")
    settings = load_config(overrides={
        **SMALL, "mlflow.tracking_uri": f"sqlite:///{root / 'mlflow.db'}"})
    generated = generate_inputs(400, seed=SEED)
    tables = InputTables(customers=load_customers(generated.customers,
                                                  valid_from_col="valid_from"),
                         events=load_events(generated.events))
    previous_uri = mlflow.get_tracking_uri()
    try:
        with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            patch.chdir(root)
            run = train(generated.transactions, as_of=AS_OF, settings=settings,
                        inputs=tables, ablation=False)
            mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
            assert run.registration is not None
            pyfunc = mlflow.pyfunc.load_model(run.registration.model_uri)
    finally:
        mlflow.set_tracking_uri(previous_uri)
    # the features as a user reads them back from the Parquet file churnlens writes
    path = root / "features.parquet"
    run.fitted.features.loc[:, run.artifact.feature_names].to_parquet(path, index=False)
    return Logged(run=run, features=pd.read_parquet(path), pyfunc=pyfunc)


def _as_text(features: pd.DataFrame) -> pd.DataFrame:
    categorical = [c for c in features.columns
                   if isinstance(features[c].dtype, pd.CategoricalDtype)]
    return features.astype({c: object for c in categorical})


def _pyfunc_risk(logged: Logged, features: pd.DataFrame) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(logged.pyfunc.predict(features)["churn_risk"], dtype=np.float64)


@pytest.mark.slow
def test_the_features_have_categorical_columns(logged: Logged) -> None:
    categorical = [c for c in logged.features.columns
                   if isinstance(logged.features[c].dtype, pd.CategoricalDtype)]
    assert "attr_channel" in categorical
    assert set(categorical) == set(logged.run.artifact.model.categories_)


@pytest.mark.slow
def test_the_pyfunc_scores_categorical_columns_as_the_model(logged: Logged) -> None:
    expected = logged.run.artifact.churn_risk(logged.features)
    np.testing.assert_allclose(_pyfunc_risk(logged, logged.features), expected,
                               rtol=0, atol=1e-12)


@pytest.mark.slow
def test_the_pyfunc_scores_text_columns_as_the_model(logged: Logged) -> None:
    expected = logged.run.artifact.churn_risk(logged.features)
    np.testing.assert_allclose(_pyfunc_risk(logged, _as_text(logged.features)), expected,
                               rtol=0, atol=1e-12)


@pytest.mark.slow
def test_unseen_and_missing_categories_read_as_the_model_reads_them(logged: Logged
                                                                    ) -> None:
    text = _as_text(logged.features).head(6).copy()
    text.loc[0, "attr_channel"] = "carrier pigeon"  # never seen in training
    text.loc[1, "attr_channel"] = None
    expected = logged.run.artifact.churn_risk(text)
    np.testing.assert_allclose(_pyfunc_risk(logged, text), expected, rtol=0, atol=1e-12)
    # the same frame as a Categorical (the unseen value is then a category of its own)
    categorical = text.astype({"attr_channel": "category"})
    np.testing.assert_allclose(_pyfunc_risk(logged, categorical), expected, rtol=0,
                               atol=1e-12)


@pytest.mark.slow
def test_the_signature_and_example_hold_categorical_columns_as_values(
        logged: Logged) -> None:
    from mlflow.types import DataType
    from mlflow.types.schema import AnyType

    inputs = {spec.name: spec.type for spec in logged.pyfunc.metadata.get_input_schema().inputs}
    for name in logged.run.artifact.model.categories_:
        assert isinstance(inputs[name], AnyType), (name, inputs[name])
    assert inputs["attr_age"] == DataType.double  # a numeric attribute keeps its type
    assert inputs["frequency"] == DataType.long
    example = logged.pyfunc.input_example
    assert example is not None
    assert all(isinstance(v, str) or v is None for v in example["attr_channel"])


def test_the_example_and_signature_of_a_categorical_column() -> None:
    from mlflow.types import DataType
    from mlflow.types.schema import AnyType

    from churnlens._tracking import _pyfunc_example_and_signature

    example = pd.DataFrame({
        "plan": pd.Categorical(["basic", None, "plus"], categories=["basic", "plus"]),
        "region": ["north", "south", None],  # categorical in the model, text here
        "frequency": np.array([1, 2, 3], dtype=np.int64)})
    output = pd.DataFrame({"churn_risk": [0.1, 0.2, 0.3]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's hint on integer columns
        values, signature = _pyfunc_example_and_signature(example, output, ["region"])
    assert values["plan"].tolist() == ["basic", None, "plus"]
    assert values["region"].tolist() == ["north", "south", None]
    assert values["frequency"].dtype == np.int64
    assert [(s.name, s.type) for s in signature.inputs.inputs] == [
        ("plan", AnyType()), ("region", AnyType()), ("frequency", DataType.long)]
    assert isinstance(example["plan"].dtype, pd.CategoricalDtype)  # not changed in place


def test_a_model_without_categorical_features_keeps_inferred_types() -> None:
    from mlflow.types import DataType

    from churnlens._tracking import _pyfunc_example_and_signature

    example = pd.DataFrame({"frequency": np.array([1, 2], dtype=np.int64),
                            "spend_30d": [1.5, 0.0]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's hint on integer columns
        values, signature = _pyfunc_example_and_signature(
            example, pd.DataFrame({"churn_risk": [0.1, 0.2]}), [])
    pd.testing.assert_frame_equal(values, example)
    assert [s.type for s in signature.inputs.inputs] == [DataType.long, DataType.double]
