"""MLflow end to end (issue 5's key acceptance): train on small synthetic data with a
temporary sqlite store, register, promote, load ``models:/churnlens@champion`` back;
a worse model stays challenger; ``promote`` forces; bundles refuse tampering.

The whole scenario runs once (module fixture) and records what each step produced;
the tests check the record, so their order does not matter.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import re
import shutil
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import churnlens
from churnlens._artifact import BUNDLE_CARD, BUNDLE_MODEL, save_bundle
from churnlens._config import Settings, load_config
from churnlens._model_loader import load_bundle, load_model
from churnlens._pipeline import TrainingRun, train
from churnlens._tracking import date_step, run_name, transactions_digest
from churnlens.exceptions import ModelError

# Three trainings and a fresh MLflow store: 12-25 s on a 2-core machine.
pytestmark = pytest.mark.slow

SEED = 21
AS_OF = "2024-06-30"
print(f"test_tracking: generate_transactions(1500, seed={SEED}), as of {AS_OF}")
SMALL = {"model.n_estimators": 80, "model.n_jobs": 1, "snapshots.count": 5,
         "mlflow.experiment": "churnlens-tests"}
# One tree of five leaves from a zero start, no BG/NBD, no logistic part: a real but
# clearly worse model on the promotion metric (the test checks that it is worse).
WORSE = {"model.n_estimators": 1, "model.logistic_weight": 0.0, "model.use_bgnbd": False,
         "backtest_steps": 0}


@dataclasses.dataclass
class Scenario:
    store: Path
    settings: Settings
    features: pd.DataFrame
    first: TrainingRun
    champion_after_first: Any
    pyfunc_risk: np.ndarray
    worse: TrainingRun
    champion_after_worse: str
    worse_alias_versions: dict[str, str]
    forced: TrainingRun
    champion_after_forced: str
    cwd_files: list[str]
    clean: pd.DataFrame  # the transactions the runs trained on
    csv: Path  # the forced run's source
    first_steps: list[tuple[float, str]]  # (time.time(), message) of the first run


def _aliases(settings: Settings) -> dict[str, str]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=settings.mlflow.tracking_uri,
                          registry_uri=settings.mlflow.tracking_uri)
    model = client.get_registered_model(settings.mlflow.registered_model)
    return {alias: str(version) for alias, version in model.aliases.items()}


@contextlib.contextmanager
def _tracking_uri(settings: Settings) -> Iterator[None]:
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(settings.mlflow.tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    import mlflow
    import mlflow.pyfunc

    root = tmp_path_factory.mktemp("tracking")
    store = root / "mlflow.db"
    workdir = root / "cwd"
    workdir.mkdir()
    settings = load_config(overrides={**SMALL, "mlflow.tracking_uri": f"sqlite:///{store}"})
    raw = churnlens.generate_transactions(1500, seed=SEED)
    previous_uri = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        patch.chdir(workdir)  # nothing may land in the working directory
        steps: list[tuple[float, str]] = []
        first = train(raw, as_of=AS_OF, settings=settings, bundle_dir=root / "bundle",
                      progress=lambda message: steps.append((time.time(), message)))
        features = first.fitted.features
        champion = load_model("models:/churnlens@champion", settings.mlflow)
        pyfunc = mlflow.pyfunc.load_model("models:/churnlens@champion")
        pyfunc_risk = pyfunc.predict(features.loc[:, champion.feature_names])
        worse_settings = settings.with_overrides(WORSE)
        worse = train(raw, as_of=AS_OF, settings=worse_settings)
        after_worse = _aliases(settings)
        csv = root / "transactions.csv"  # the same purchases, from a file this time
        raw.to_csv(csv, index=False)
        forced = train(csv, as_of=AS_OF, settings=worse_settings, promote=True)
        after_forced = _aliases(settings)
        cwd_files = sorted(p.name for p in workdir.iterdir())
    mlflow.set_tracking_uri(previous_uri)
    return Scenario(
        store=store, settings=settings, features=features, first=first,
        champion_after_first=champion, pyfunc_risk=np.asarray(pyfunc_risk["churn_risk"]),
        worse=worse, champion_after_worse=after_worse["champion"],
        worse_alias_versions=after_worse, forced=forced,
        champion_after_forced=after_forced["champion"], cwd_files=cwd_files,
        clean=churnlens.load_transactions(raw, as_of=AS_OF).transactions, csv=csv,
        first_steps=steps,
    )


def _risk(run: TrainingRun, features: pd.DataFrame) -> np.ndarray:
    return run.artifact.churn_risk(features)


def test_first_model_is_registered_as_champion(scenario: Scenario) -> None:
    reg = scenario.first.registration
    assert reg.name == "churnlens" and reg.version == "1"
    assert reg.alias == "champion" and reg.promoted and reg.reason == "no champion yet"
    summary = scenario.first.summary()
    assert summary["run_id"] == reg.run_id and summary["model_version"] == "1"
    assert summary["alias"] == "champion"
    # The store is one folder: the database and, beside it, the artifacts; nothing
    # lands in the working directory.
    assert scenario.store.exists() and scenario.cwd_files == []
    assert (scenario.store.parent / "mlruns").is_dir()


def test_champion_loads_back_with_identical_predictions(scenario: Scenario) -> None:
    expected = _risk(scenario.first, scenario.features)
    loaded = scenario.champion_after_first
    assert (loaded.name, loaded.version, loaded.alias) == ("churnlens", "1", "champion")
    assert loaded.run_id == scenario.first.registration.run_id
    np.testing.assert_array_equal(loaded.churn_risk(scenario.features), expected)
    # the MLflow pyfunc: features in, churn_risk out
    np.testing.assert_array_equal(scenario.pyfunc_risk, expected)
    assert loaded.horizon_days == 91 and str(loaded.as_of) == AS_OF


def test_a_worse_model_stays_challenger(scenario: Scenario) -> None:
    reg = scenario.worse.registration
    assert reg.version == "2"
    # it really is worse on the promotion metric, on the same evaluation data
    assert reg.metric == "auc"
    assert reg.champion_metric == pytest.approx(scenario.first.registration.candidate_metric)
    assert reg.candidate_metric < reg.champion_metric - 0.01
    assert reg.alias == "challenger" and not reg.promoted
    assert "worse than the champion's" in reg.reason
    assert scenario.champion_after_worse == "1"
    assert scenario.worse_alias_versions == {"champion": "1", "challenger": "2"}


def test_promote_forces_the_champion(scenario: Scenario) -> None:
    reg = scenario.forced.registration
    assert reg.version == "3" and reg.alias == "champion" and reg.promoted
    assert reg.reason == "forced with --promote"
    assert reg.previous_champion_version == "1"
    assert scenario.champion_after_forced == "3"


def test_the_run_logs_every_artifact_and_metric(scenario: Scenario) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=scenario.settings.mlflow.tracking_uri)
    run_id = scenario.first.registration.run_id
    top = {a.path for a in client.list_artifacts(run_id)}
    assert {"report.html", "backtest.csv", "config.json", "cleaning_report.json",
            "features.json", "data_summary.json", "backtest.json", "plots"} <= top
    plots = {Path(a.path).name for a in client.list_artifacts(run_id, "plots")}
    assert plots == {"roc.png", "lift_and_gains.png", "calibration.png",
                     "predicted_vs_actual_retention.png", "predicted_vs_actual_spend.png",
                     "feature_importance.png",
                     "acquisition_cohorts.png", "crr_over_time.png"}
    local = Path(client.download_artifacts(run_id, "features.json", str(scenario.store.parent)))
    features = json.loads(local.read_text())
    assert features["features"] == scenario.first.artifact.feature_names
    run = client.get_run(run_id)
    metrics = run.data.metrics
    assert metrics["validation.churnlens.auc"] == pytest.approx(
        scenario.first.fitted.validation["churnlens"]["auc"])
    for model in ("churnlens", "bgnbd", "recency", "logistic", "paretonbd"):
        assert f"backtest.{model}.auc" in metrics
    for predictor in ("value_model", "heuristic", "heuristic_x_retention"):
        assert f"backtest.value.{predictor}.mae" in metrics
    assert run.data.params["as_of"] == AS_OF
    assert run.data.tags["horizon_days"] == "91"


def _client(scenario: Scenario) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=scenario.settings.mlflow.tracking_uri)


def test_runs_have_readable_names(scenario: Scenario) -> None:
    client = _client(scenario)
    for trained in (scenario.first, scenario.worse, scenario.forced):
        run = client.get_run(trained.registration.run_id)
        assert run.info.run_name == f"train {AS_OF} h91"
        assert run.data.tags["mlflow.runName"] == run.info.run_name
        assert run.data.tags["as_of"] == AS_OF
    assert run_name(dt.date(1998, 3, 31), 91) == "train 1998-03-31 h91"


def test_a_run_spans_the_whole_training_job(scenario: Scenario) -> None:
    """Not only the logging (before: 0.9 s runs of a minute's training)."""
    run = _client(scenario).get_run(scenario.first.registration.run_id)
    times = {message: at for at, message in scenario.first_steps}
    began = times["loading and validating transactions"]
    fitting = next(at for message, at in times.items() if message.startswith("training the"))
    logging = times["logging to MLflow and registering the model"]
    assert run.info.status == "FINISHED"
    # started with the job (before its first step), ended after the logging began
    assert run.info.start_time / 1000 <= began
    assert began - run.info.start_time / 1000 < 5
    assert run.info.end_time / 1000 >= logging
    assert (run.info.end_time - run.info.start_time) / 1000 >= logging - began
    assert logging - fitting > 0  # the fitting happened inside the run


def test_the_training_data_is_a_dataset_input_with_its_digest(scenario: Scenario) -> None:
    client = _client(scenario)
    digest = transactions_digest(scenario.clean)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    inputs = {}
    for trained in (scenario.first, scenario.forced):
        run = client.get_run(trained.registration.run_id)
        [entry] = run.inputs.dataset_inputs
        inputs[trained.registration.run_id] = entry
        tags = {tag.key: tag.value for tag in entry.tags}
        assert tags["mlflow.data.context"] == "training"
        assert tags["sha256"] == digest == run.data.tags["transactions_sha256"]
        assert entry.dataset.name == "transactions"
        assert entry.dataset.digest == digest[:32]
        profile = json.loads(entry.dataset.profile)
        assert profile["num_rows"] == len(scenario.clean)
        schema = json.loads(entry.dataset.schema)["mlflow_colspec"]
        assert [column["name"] for column in schema] == ["customer_id", "timestamp", "amount"]
    # The same purchases from a DataFrame and from a CSV file: one digest, so MLflow
    # records one dataset (its name and digest identify it; the source is the first's).
    first, forced = (inputs[t.registration.run_id].dataset
                     for t in (scenario.first, scenario.forced))
    assert (forced.name, forced.digest, forced.source) == (first.name, first.digest,
                                                           first.source)
    assert first.source_type == "code"


def test_a_dataset_from_a_file_names_its_source_without_credentials(
    scenario: Scenario
) -> None:
    from churnlens._tracking import _training_dataset

    digest = transactions_digest(scenario.clean)
    local = _training_dataset(scenario.clean, str(scenario.csv), digest)
    assert json.loads(local.source.to_json())["uri"] == str(scenario.csv)
    remote = _training_dataset(scenario.clean, "s3://ann:hunter2@bucket/tx.parquet", digest)
    assert "hunter2" not in remote.source.to_json()
    assert "bucket/tx.parquet" in remote.source.to_json()
    assert local.digest == digest[:32] and local.profile["num_rows"] == len(scenario.clean)


def test_the_digest_reads_every_row_in_any_order(scenario: Scenario) -> None:
    clean = scenario.clean
    digest = transactions_digest(clean)
    assert transactions_digest(clean.sample(frac=1.0, random_state=SEED)) == digest
    changed = clean.copy()
    changed.loc[changed.index[-1], "amount"] += 0.01  # the last row (MLflow's own digest
    assert transactions_digest(changed) != digest    # reads only the first 10,000)
    moved = clean.copy()
    moved.loc[moved.index[-1], "timestamp"] += pd.Timedelta(seconds=1)
    assert transactions_digest(moved) != digest
    assert transactions_digest(clean.iloc[:-1]) != digest


def test_metric_names_compare_across_runs(scenario: Scenario) -> None:
    """No date in a metric name: a backtest metric has its as-of date as the step."""
    client = _client(scenario)
    run = client.get_run(scenario.first.registration.run_id)
    names = set(run.data.metrics)
    assert not [name for name in names if re.search(r"\d{4}-\d{2}-\d{2}", name)]
    dates = [dt.date.fromisoformat(str(r["as_of"])) for r in scenario.first.backtest.runs]
    assert run.data.tags["backtest_as_of"] == ",".join(d.isoformat() for d in dates)
    history = client.get_metric_history(run.info.run_id, "backtest.churnlens.auc")
    assert sorted(m.step for m in history) == [date_step(d) for d in dates]
    by_step = {m.step: m.value for m in history}
    for backtest_run, day in zip(scenario.first.backtest.runs, dates, strict=True):
        assert by_step[date_step(day)] == pytest.approx(
            backtest_run["models"]["churnlens"]["auc"])
    # a run without a backtest: the same validation names, nothing dated
    worse = set(client.get_run(scenario.worse.registration.run_id).data.metrics)
    assert "validation.churnlens.auc" in worse
    assert all(name.startswith(("validation.", "training.")) for name in worse)
    assert {"training.snapshot_rows_before", "training.snapshot_rows_after"} <= worse
    assert date_step(dt.date(1998, 3, 31)) == 19980331


def test_the_registered_model_has_a_signature_and_pinned_requirements(
    scenario: Scenario
) -> None:
    import mlflow

    with _tracking_uri(scenario.settings):
        info = mlflow.models.get_model_info(scenario.first.registration.model_uri)
    inputs = [spec.name for spec in info.signature.inputs]
    assert inputs == scenario.first.artifact.feature_names
    assert [spec.name for spec in info.signature.outputs] == ["churn_risk"]
    assert info.saved_input_example_info is not None


def test_export_bundle_round_trip(scenario: Scenario, tmp_path: Path) -> None:
    expected = _risk(scenario.first, scenario.features)
    card = save_bundle(scenario.champion_after_first, tmp_path / "models")
    document = json.loads(card.read_text())
    assert document["version"] == "1" and document["horizon_days"] == 91
    assert document["features"] == scenario.first.artifact.feature_names
    assert len(document["sha256"]) == 64
    np.testing.assert_array_equal(load_bundle(tmp_path / "models").churn_risk(
        scenario.features), expected)
    # train(bundle_dir=...) writes the same kind of bundle
    np.testing.assert_array_equal(load_bundle(scenario.first.bundle_path).churn_risk(
        scenario.features), expected)


def test_a_tampered_bundle_is_refused(scenario: Scenario, tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    shutil.copytree(scenario.first.bundle_path.parent, folder)
    model_file = folder / BUNDLE_MODEL
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0x01  # flip one bit
    model_file.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"SHA-256 [0-9a-f]{64} does not match the card"):
        load_bundle(folder)
    # a card whose digest was edited to match is no help without the original file
    card = json.loads((folder / BUNDLE_CARD).read_text())
    card["sha256"] = "0" * 64
    (folder / BUNDLE_CARD).write_text(json.dumps(card))
    with pytest.raises(ModelError, match="refused"):
        load_bundle(folder / BUNDLE_CARD)
    with pytest.raises(ModelError, match="no churnlens model bundle here"):
        load_bundle(tmp_path / "nothing")


def test_unknown_registry_model_is_a_clear_error(scenario: Scenario) -> None:
    with pytest.raises(ModelError, match="no model models:/churnlens@nosuchalias"):
        load_model("models:/churnlens@nosuchalias", scenario.settings.mlflow)
