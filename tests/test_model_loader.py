"""The one door to a model (``churnlens._model_loader``): every path refuses alike.

A bundle whose card disagrees with its model is refused with the same message by
``churnlens.load_model``, ``churnlens export`` and ``churnlens score``; the registry
path checks the MLflow signature; promotion loads the champion through the same door;
a tampered file is never unpickled. The registry is read straight from its sqlite
tables when it can be (speed): a test checks that this reads what MLflow's client
reads.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import churnlens
from churnlens._artifact import BUNDLE_CARD, BUNDLE_MODEL, ModelArtifact, save_bundle
from churnlens._config import Settings, load_config
from churnlens._model_loader import check_model, load_bundle, load_model
from churnlens._registry import _from_mlflow, _from_sqlite, fetch_registered
from churnlens.cli import app
from churnlens.exceptions import ModelError

SEED = 11
TRAIN_AS_OF = "2024-03-31"
SCORE_AS_OF = "2024-04-30"
FAST_MODEL = {"mlflow.enabled": False, "backtest_steps": 0, "snapshots.count": 6,
              "model.n_estimators": 60, "model.min_child_samples": 40,
              "model.early_stopping_rounds": 20, "model.n_jobs": 1}
print(f"test_model_loader: generate_transactions(1500, seed={SEED}), as of {TRAIN_AS_OF}")


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return churnlens.generate_transactions(1500, seed=SEED, start="2023-01-01",
                                           end="2024-06-30")


@pytest.fixture(scope="module")
def artifact(raw: pd.DataFrame) -> ModelArtifact:
    from churnlens._pipeline import train

    clean = churnlens.load_transactions(raw).transactions
    return train(clean, as_of=TRAIN_AS_OF, settings=load_config(overrides=FAST_MODEL)).artifact


@pytest.fixture(scope="module")
def transactions_file(raw: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("loader-tx") / "tx.parquet"
    raw.to_parquet(path, index=False)
    return path


@pytest.fixture
def bundle(artifact: ModelArtifact, tmp_path: Path) -> Path:
    folder = tmp_path / "bundle"
    save_bundle(artifact, folder)
    return folder


def _edit_card(folder: Path, **changes: object) -> None:
    card = json.loads((folder / BUNDLE_CARD).read_text())
    card.update(changes)
    (folder / BUNDLE_CARD).write_text(json.dumps(card))


# --- the checks -------------------------------------------------------------------------


def test_check_model_refuses_mismatches(artifact):
    check_model(artifact)  # consistent
    with pytest.raises(ModelError, match="predicts churn over 91 days, not 30"):
        check_model(artifact, horizon_days=30)
    other_horizon = copy.copy(artifact)
    other_horizon.horizon_days = 30
    with pytest.raises(ModelError, match="fitted for a 91-day horizon"):
        check_model(other_horizon)
    card = artifact.card()
    check_model(artifact, card=card)
    check_model(artifact, card=card, signature_inputs=artifact.feature_names)
    card["features"] = [*card["features"][:-1], "favourite_colour"]
    with pytest.raises(ModelError, match="its model card lists other features"):
        check_model(artifact, card=card)
    with pytest.raises(ModelError, match="its MLflow signature lists other features"):
        check_model(artifact, signature_inputs=artifact.feature_names[1:])
    # the registry path has both a card and a signature: each is checked
    with pytest.raises(ModelError, match="its MLflow signature lists other features"):
        check_model(artifact, card=artifact.card(), signature_inputs=artifact.feature_names[::-1])
    narrow = copy.copy(artifact)
    narrow.windows_days = (30,)  # the model needs spend_365d...
    with pytest.raises(ModelError, match="does not compute"):
        check_model(narrow)
    unfitted = copy.copy(artifact)
    unfitted.model = churnlens.ChurnModel()
    with pytest.raises(ModelError, match="does not hold a fitted churnlens model"):
        check_model(unfitted)


def test_load_model_refuses_bad_bundles(artifact, bundle, tmp_path):
    assert load_model(bundle).feature_names == artifact.feature_names
    assert load_model(bundle / BUNDLE_CARD).feature_names == artifact.feature_names
    assert load_model(bundle, horizon_days=91).horizon_days == 91
    with pytest.raises(ModelError, match="no churnlens model bundle"):
        load_model(tmp_path / "nowhere")
    # the card lists other features than the model (a hand-edited card)
    card = json.loads((bundle / BUNDLE_CARD).read_text())
    _edit_card(bundle, features=card["features"][::-1])
    with pytest.raises(ModelError, match="lists other features"):
        load_model(bundle)
    _edit_card(bundle, features=card["features"], horizon_days=30)
    with pytest.raises(ModelError, match="horizon_days = 30"):
        load_model(bundle)
    _edit_card(bundle, horizon_days=card["horizon_days"], as_of="2020-01-01")
    with pytest.raises(ModelError, match="as_of = '2020-01-01'"):
        load_model(bundle)
    (bundle / BUNDLE_CARD).write_text("[1, 2]")
    with pytest.raises(ModelError, match="not a JSON object"):
        load_model(bundle)


def test_a_tampered_model_file_is_never_unpickled(artifact, bundle, monkeypatch):
    import joblib

    with (bundle / BUNDLE_MODEL).open("ab") as fh:
        fh.write(b"tampered")
    unpickled: list[object] = []
    monkeypatch.setattr(joblib, "load", lambda *a, **k: unpickled.append(a))
    with pytest.raises(ModelError, match="does not match the card"):
        load_model(bundle)
    assert unpickled == []


def test_public_names_are_the_one_door(bundle):
    assert churnlens.load_model is load_model and churnlens.load_bundle is load_bundle
    assert load_bundle(bundle).horizon_days == 91
    _edit_card(bundle, horizon_days=30)
    with pytest.raises(ModelError, match="horizon_days = 30"):
        load_bundle(bundle)
    with pytest.raises(ModelError, match="is a registry URI"):
        load_bundle("models:/churnlens@champion")


@pytest.mark.parametrize(("change", "message"), [
    ("horizon", "its model card says horizon_days = 30 but the model has 91"),
    ("features", "its model card lists other features than the model uses"),
])
def test_a_card_that_disagrees_is_refused_alike_everywhere(bundle, transactions_file, tmp_path,
                                                           change, message):
    card = json.loads((bundle / BUNDLE_CARD).read_text())
    if change == "horizon":
        _edit_card(bundle, horizon_days=30)
    else:
        _edit_card(bundle, features=card["features"][:-1])
    with pytest.raises(ModelError, match=message) as refused:
        churnlens.load_model(str(bundle))
    expected = f"error: {refused.value}"
    exported = tmp_path / "exported"
    code, _, err = run("export", "--model", bundle, "--to", exported)
    assert code == 2 and expected in err
    assert not exported.exists()
    scores = tmp_path / "scores.parquet"
    code, _, err = run("score", "-t", transactions_file, "--as-of", SCORE_AS_OF, "--model",
                       bundle, "--out", scores)
    assert code == 2 and expected in err
    assert not scores.exists()


@pytest.mark.slow
def test_loading_a_bundle_does_not_import_mlflow(bundle):
    code = ("import sys, churnlens; a = churnlens.load_model(sys.argv[1]); "
            "print(a.horizon_days, 'mlflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(bundle)], capture_output=True,
                         text=True, check=True).stdout
    assert out.split() == ["91", "False"]


# --- the registry ----------------------------------------------------------------------


@dataclasses.dataclass
class Registry:
    settings: Settings
    first: object  # churnlens.TrainingRun
    model_folder: Path  # the registered model's artifacts (MLmodel, artifacts/bundle)


@contextlib.contextmanager
def _restored(*paths: Path) -> Iterator[None]:
    saved = {path: path.read_bytes() for path in paths}
    try:
        yield
    finally:
        for path, content in saved.items():
            path.write_bytes(content)


@pytest.fixture(scope="module")
def registry(raw: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Registry:
    from churnlens._pipeline import train

    root = tmp_path_factory.mktemp("loader-registry")
    settings = load_config(overrides={**FAST_MODEL, "mlflow.enabled": True,
                                      "mlflow.tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
                                      "mlflow.experiment": "churnlens-loader-tests"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = train(raw, as_of=TRAIN_AS_OF, settings=settings)
    found = fetch_registered("models:/churnlens@champion", settings.mlflow, root)
    return Registry(settings=settings, first=first, model_folder=found.bundle.parent.parent)


def _signature_without_last_feature(mlmodel: Path) -> None:
    document = yaml.safe_load(mlmodel.read_text())
    inputs = json.loads(document["signature"]["inputs"])
    document["signature"]["inputs"] = json.dumps(inputs[:-1])
    mlmodel.write_text(yaml.safe_dump(document))


@pytest.mark.slow
def test_the_sqlite_reading_agrees_with_mlflows_client(registry, tmp_path):
    uri, settings = "models:/churnlens@champion", registry.settings.mlflow
    database = Path(settings.tracking_uri[len("sqlite:///"):])
    direct = _from_sqlite(uri, database, settings.tracking_uri)
    import mlflow

    previous, elsewhere = mlflow.get_tracking_uri(), tmp_path / "elsewhere.db"
    mlflow.set_tracking_uri(f"sqlite:///{elsewhere}")  # the global URI is not used
    try:
        client = _from_mlflow(uri, settings.tracking_uri, tmp_path)
    finally:
        mlflow.set_tracking_uri(previous)
    assert not elsewhere.exists()
    assert direct is not None
    for field in ("name", "version", "alias", "run_id", "signature_inputs"):
        assert getattr(direct, field) == getattr(client, field), field
    assert (direct.name, direct.version, direct.alias) == ("churnlens", "1", "champion")
    assert direct.run_id == registry.first.registration.run_id
    assert direct.signature_inputs == registry.first.artifact.feature_names
    for name in (BUNDLE_CARD, BUNDLE_MODEL):
        assert (direct.bundle / name).read_bytes() == (client.bundle / name).read_bytes()
    by_number = _from_sqlite("models:/churnlens/1", database, settings.tracking_uri)
    assert by_number is not None and by_number.bundle == direct.bundle
    assert by_number.alias is None and by_number.version == "1"
    # a logged-model id is left to MLflow's client
    assert _from_sqlite(registry.first.registration.model_uri, database,
                        settings.tracking_uri) is None


@pytest.mark.slow
def test_registered_models_load_with_their_coordinates(registry, tmp_path):
    settings = registry.settings.mlflow
    champion = load_model("models:/churnlens@champion", settings)
    assert (champion.name, champion.version, champion.alias) == ("churnlens", "1", "champion")
    run_id = registry.first.registration.run_id
    assert champion.run_id == run_id
    import mlflow

    previous, elsewhere = mlflow.get_tracking_uri(), f"sqlite:///{tmp_path / 'elsewhere.db'}"
    mlflow.set_tracking_uri(elsewhere)
    try:  # MLflow's client path, whatever the global tracking URI, which is left as it was
        by_run = load_model(f"runs:/{run_id}/model", settings)
        assert mlflow.get_tracking_uri() == elsewhere
    finally:
        mlflow.set_tracking_uri(previous)
    assert by_run.run_id == run_id and by_run.version is None
    features = registry.first.fitted.features
    np.testing.assert_array_equal(champion.churn_risk(features), by_run.churn_risk(features))
    with pytest.raises(ModelError, match="no model models:/churnlens@nope in the registry"):
        load_model("models:/churnlens@nope", settings)
    with pytest.raises(ModelError, match="no model models:/churnlens/7 in the registry"):
        load_model("models:/churnlens/7", settings)
    missing = settings.model_copy(update={"tracking_uri": "sqlite:////nonexistent/m.db"})
    with pytest.raises(ModelError, match="no MLflow store at"):
        load_model("models:/churnlens@champion", missing)


@pytest.mark.slow
def test_the_registry_path_checks_the_signature(registry, transactions_file, tmp_path):
    settings = registry.settings.mlflow
    run_id = registry.first.registration.run_id
    mlmodel = registry.model_folder / "MLmodel"
    with _restored(mlmodel):
        _signature_without_last_feature(mlmodel)
        for uri in ("models:/churnlens@champion", f"runs:/{run_id}/model"):
            with pytest.raises(ModelError, match="its MLflow signature lists other features"):
                load_model(uri, settings)
        scores = tmp_path / "scores.parquet"
        code, _, err = run("score", "-t", transactions_file, "--as-of", SCORE_AS_OF,
                           "--model", "models:/churnlens@champion", "--tracking-uri",
                           settings.tracking_uri, "--out", scores)
        assert code == 2 and "its MLflow signature lists other features" in err
        assert not scores.exists()
    assert load_model("models:/churnlens@champion", settings).version == "1"


@pytest.mark.slow
def test_a_tampered_registered_bundle_is_refused(registry, tmp_path):
    settings = registry.settings.mlflow
    model_file = registry.model_folder / "artifacts" / "bundle" / BUNDLE_MODEL
    with _restored(model_file):
        with model_file.open("ab") as fh:
            fh.write(b"\0")
        for uri in ("models:/churnlens@champion",
                    f"runs:/{registry.first.registration.run_id}/model"):
            with pytest.raises(ModelError, match="does not match the card"):
                load_model(uri, settings)
        exported = tmp_path / "exported"
        code, _, err = run("export", "--to", exported, "--tracking-uri", settings.tracking_uri)
        assert code == 2 and "does not match the card" in err
        assert not exported.exists()


@pytest.mark.slow
def test_promotion_loads_the_champion_through_the_same_door(registry, raw):
    from churnlens._pipeline import train

    settings = registry.settings
    card = registry.model_folder / "artifacts" / "bundle" / BUNDLE_CARD
    with _restored(card):
        _edit_card(card.parent, horizon_days=30)
        with pytest.raises(ModelError) as refused:
            load_model("models:/churnlens@champion", settings.mlflow)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            second = train(raw, as_of=TRAIN_AS_OF, settings=settings)
    registration = second.registration
    assert not registration.promoted and registration.alias == "challenger"
    assert registration.champion_metric is None
    assert f"the champion cannot be scored on this data ({refused.value})" in registration.reason
    assert "horizon_days = 30" in registration.reason


# --- the scoring form (churnlens-scorer.npz) ----------------------------------------------


def test_scoring_loads_the_scorer_with_the_models_scores(artifact, bundle, raw, tmp_path):
    from churnlens._artifact import BUNDLE_SCORER
    from churnlens._model import ChurnModel
    from churnlens._scorer import ChurnScorer

    scoring, full = load_model(bundle), load_model(bundle, full=True)
    assert isinstance(scoring.model, ChurnScorer) and isinstance(full.model, ChurnModel)
    features = churnlens.compute_features(churnlens.load_transactions(raw).transactions,
                                          SCORE_AS_OF)
    expected = artifact.churn_risk(features)
    np.testing.assert_array_equal(scoring.churn_risk(features), expected)
    np.testing.assert_array_equal(full.churn_risk(features), expected)
    np.testing.assert_array_equal(scoring.model.explain(features).contributions,
                                  artifact.model.explain(features).contributions)
    np.testing.assert_array_equal(scoring.full_model().predict_proba(features),
                                  artifact.model.predict_proba(features))
    for name in ("horizon_days", "as_of", "windows_days", "churnlens_version"):
        assert getattr(scoring, name) == getattr(artifact, name)
    assert scoring.feature_names == artifact.feature_names
    assert scoring.card()["model_class"] == "ChurnModel"
    # exporting what was loaded for scoring writes the full bundle again
    again = save_bundle(scoring, tmp_path / "again").parent
    assert (again / BUNDLE_SCORER).is_file()
    assert isinstance(load_model(again, full=True).model, ChurnModel)
    np.testing.assert_array_equal(load_model(again).churn_risk(features), expected)


def test_a_tampered_scorer_file_is_refused_on_every_path(bundle):
    from churnlens._artifact import BUNDLE_SCORER

    with (bundle / BUNDLE_SCORER).open("ab") as fh:
        fh.write(b"tampered")
    for full in (False, True):
        with pytest.raises(ModelError, match="does not match the card"):
            load_model(bundle, full=full)
    (bundle / BUNDLE_SCORER).unlink()
    with pytest.raises(ModelError, match="scorer file named by the card is missing"):
        load_model(bundle)


def test_bundles_without_a_scorer_load_from_their_pickle(artifact, bundle):
    from churnlens._artifact import BUNDLE_SCORER
    from churnlens._model import ChurnModel

    (bundle / BUNDLE_SCORER).unlink()
    card = json.loads((bundle / BUNDLE_CARD).read_text())
    del card["scorer_file"], card["scorer_sha256"]
    (bundle / BUNDLE_CARD).write_text(json.dumps(card))
    loaded = load_model(bundle)
    assert isinstance(loaded.model, ChurnModel)
    assert loaded.full_model() is loaded.model
    assert loaded.feature_names == artifact.feature_names


@pytest.mark.slow
def test_loading_for_scoring_imports_no_model_library(bundle):
    code = ("import sys\n"
            "import churnlens._model_loader\n"
            "light = [m for m in ('pandas', 'sklearn') if m in sys.modules]\n"
            "import churnlens\n"
            "a = churnlens.load_model(sys.argv[1])\n"
            "heavy = [m for m in ('sklearn', 'lightgbm', 'mlflow', 'joblib', 'scipy',\n"
            "                     'pandas', 'duckdb')\n"
            "         if m in sys.modules]\n"
            "print(type(a.model).__name__, light, heavy)")
    out = subprocess.run([sys.executable, "-c", code, str(bundle)], capture_output=True,
                         text=True, check=True).stdout
    assert out.split() == ["ChurnScorer", "[]", "[]"]
