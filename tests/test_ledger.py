"""The prediction ledger (``churnlens._ledger``): entries recorded by ``score`` (both
engines) and ``serve``, read back complete and whole, never half; two writers at once.

One small model is trained per process (``api_support.trained``, seed printed there) and
saved once per module as a bundle; each test has its own tracking store in ``tmp_path``.
``tests/conftest.py`` turns the ledger off for every test: these tests turn it back on.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from api_support import AS_OF, trained
from typer.testing import CliRunner

from churnlens._config import load_config
from churnlens._drift import profile_against
from churnlens._evaluation import predict_retention
from churnlens._io import json_ready
from churnlens._ledger import (
    COMPLETE_TAG,
    DEFAULT_EXPERIMENT,
    LEDGER_ENV,
    LedgerEntry,
    ledger_enabled,
    read_ledger,
    record_list,
    record_scoring,
    recorded_message,
)
from churnlens._scoring import score_customers
from churnlens.cli import app
from churnlens.exceptions import ChurnlensError

CHURNLENS = str(Path(sys.executable).with_name("churnlens"))
UNWRITABLE = "sqlite:////dev/null/no-folder/mlflow.db"  # /dev/null is not a folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The transactions (Parquet) and the model (bundle) the commands read."""
    from churnlens._artifact import save_bundle

    raw, _, artifact = trained()
    where = tmp_path_factory.mktemp("ledger")
    raw.to_parquet(where / "tx.parquet", index=False)
    save_bundle(artifact, where / "bundle")
    return where


@pytest.fixture(scope="module")
def scored() -> Any:
    """The base scored in-process at ``AS_OF`` with the trained model."""
    _, clean, artifact = trained()
    return score_customers(clean, AS_OF, artifact)


@pytest.fixture
def ledger_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LEDGER_ENV, raising=False)


def _uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _settings(uri: str) -> Any:
    return load_config(overrides={"mlflow.tracking_uri": uri})


def _score(folder: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [
        "score", "-t", str(folder / "tx.parquet"), "--as-of", AS_OF, "--model",
        str(folder / "bundle"), "--out", str(out), "--no-reasons", *extra])
    return result.exit_code, result.stdout, result.stderr


# --- the entry ----------------------------------------------------------------------------


def test_an_entry_reads_back_whole(scored: Any, tmp_path: Path) -> None:
    _, _, artifact = trained()
    uri = _uri(tmp_path)
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    run_id = record_scoring(scored, artifact, _settings(uri), source="score")
    (entry,) = read_ledger(uri)
    assert entry.run_id == run_id and entry.kind == "scoring" and entry.source == "score"
    recorded = dt.datetime.fromisoformat(entry.recorded_at)
    assert recorded.utcoffset() == dt.timedelta(0)
    assert before <= recorded <= dt.datetime.now(dt.UTC)
    assert entry.as_of == dt.date.fromisoformat(AS_OF) and entry.horizon_days == 91
    assert entry.model == scored.summary["model"]
    assert entry.customers == len(scored.scores) == scored.summary["customers_scored"]
    summary = {k: v for k, v in entry.summary.items() if k not in ("by_band", "by_segment")}
    assert summary == json_ready(scored.summary)

    # by band and segment: predicted retention of each group, recomputed here by hand
    scores = scored.scores
    level = artifact.model.level_error_
    for column, key in (("risk_band", "by_band"), ("segment", "by_segment")):
        assert set(entry.summary[key]) >= set(scores[column])
        for name, predicted in entry.summary[key].items():
            group = scores.loc[scores[column] == name]
            active = group.loc[group["recency_days"] < 91]
            assert predicted["S"] == len(active) and predicted["acquired"] == len(group)
            if len(active):
                assert predicted["cohort_retention"] == pytest.approx(
                    100 * (1 - active["churn_risk"]).mean(), rel=1e-12)
            assert predicted == predict_retention(
                group["recency_days"], group["churn_risk"], window_days=91,
                level_error=level).to_dict()

    # the model's own backtest at its latest date, its training risk, the drift profile
    latest = max(artifact.backtest["runs"], key=lambda run: run["as_of"])
    assert entry.model_backtest == {"as_of": latest["as_of"],
                                    "auc": latest["models"]["churnlens"]["auc"],
                                    "brier": latest["models"]["churnlens"]["brier"]}
    assert 0.5 < entry.model_backtest["auc"] <= 1
    assert entry.reference_risk == json_ready(artifact.model.training_risk_)
    expected = profile_against(scored.features, artifact.model.reference_profile_)
    assert set(entry.feature_profile) == set(expected) == set(
        artifact.model.reference_profile_)
    for name, profile in entry.feature_profile.items():
        assert profile["psi"] == pytest.approx(expected[name]["psi"], abs=1e-12)
        assert profile["shares"] == pytest.approx(expected[name]["shares"])
        assert profile["importance"] == pytest.approx(artifact.model.importance_[name])
    assert entry.campaign is None

    # every customer's risk, as scored
    risks = entry.risks()
    assert list(risks.columns) == ["customer_id", "churn_risk", "risk_band", "segment",
                                   "recency_days"]
    assert risks["customer_id"].tolist() == scores["customer_id"].astype(str).tolist()
    assert np.array_equal(risks["churn_risk"].to_numpy(), scores["churn_risk"].to_numpy())
    assert risks["risk_band"].tolist() == scores["risk_band"].tolist()
    assert risks["segment"].tolist() == scores["segment"].tolist()
    assert risks["recency_days"].tolist() == scores["recency_days"].tolist()
    assert LedgerEntry.from_dict(entry.to_dict()) == entry

    # the run itself: named, ended FINISHED, complete, its rates as metrics
    run = mlflow.MlflowClient(uri).get_run(run_id)
    assert run.info.run_name == f"score {AS_OF} h91"
    assert run.info.status == "FINISHED" and run.data.tags[COMPLETE_TAG] == "true"
    assert run.data.tags["churnlens.ledger.kind"] == "scoring"
    predicted = scored.summary["predicted"]
    for name in ("cohort_retention", "cohort_retention_low", "crr_high"):
        assert run.data.metrics[name] == pytest.approx(predicted[name])
    assert run.data.metrics["mean_churn_risk"] == pytest.approx(
        scores["churn_risk"].mean())


def _one_entry(scored: Any, tmp_path: Path) -> tuple[str, Any, str, Any, str]:
    """A new store with one complete scoring entry: its URI, settings, run id, an MLflow
    client and the ledger's experiment id."""
    uri = _uri(tmp_path)
    settings = _settings(uri)
    kept = record_scoring(scored, trained()[2], settings, source="score")
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(DEFAULT_EXPERIMENT).experiment_id
    return uri, settings, kept, client, experiment


def test_only_complete_entries_are_read(scored: Any, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    uri, settings, kept, client, experiment = _one_entry(scored, tmp_path)
    artifact = trained()[2]
    # a copy of the complete entry's artifacts in runs that are not complete
    source = Path(client.download_artifacts(kept, "ledger", str(tmp_path / "copy")))
    for status, complete in (("RUNNING", True), ("FINISHED", False), ("FAILED", True),
                             ("KILLED", True)):
        run = client.create_run(experiment, tags={"churnlens.ledger.kind": "scoring"})
        client.log_artifacts(run.info.run_id, str(source), "ledger")
        if complete:
            client.set_tag(run.info.run_id, COMPLETE_TAG, "true")
        if status != "RUNNING":
            client.set_terminated(run.info.run_id, status)
    # a recording that fails half-way: the run ends FAILED, the error says what to do
    from mlflow.tracking import MlflowClient

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(MlflowClient, "log_artifacts", broken)
    with pytest.raises(ChurnlensError, match=r"not recorded.*disk full.*ended FAILED.*"
                                             r"Suggestion:.*--no-ledger"):
        record_scoring(scored, artifact, settings, source="score")
    monkeypatch.undo()
    failed = client.search_runs([experiment], "attributes.status = 'FAILED'")
    assert len(failed) == 2  # the one made by hand and the broken recording
    assert [e.run_id for e in read_ledger(uri)] == [kept]
    assert [e.run_id for e in read_ledger(uri, kind="scoring")] == [kept]
    assert read_ledger(uri, kind="campaign-list") == []
    assert read_ledger(uri, experiment="another") == []
    with pytest.raises(ChurnlensError, match="unknown ledger entry kind"):
        read_ledger(uri, kind="scorings")


def test_one_unreadable_entry_does_not_stop_the_others(scored: Any, tmp_path: Path) -> None:
    """A complete run whose entry document is not an entry (another version, edited by
    hand, or a list recorded with an empty as-of before that was refused) is skipped with
    a warning; before, every later read of the ledger failed on it."""
    uri, settings, kept, client, experiment = _one_entry(scored, tmp_path)
    bad = tmp_path / "bad" / "ledger"
    bad.mkdir(parents=True)
    document = json.loads(Path(client.download_artifacts(
        kept, "ledger/entry.json", str(tmp_path / "copy"))).read_text())
    (bad / "entry.json").write_text(json.dumps({**document, "as_of": None}))
    run = client.create_run(experiment, tags={"churnlens.ledger.kind": "scoring"})
    client.log_artifacts(run.info.run_id, str(bad), "ledger")
    client.set_terminated(run.info.run_id, "FINISHED")
    client.set_tag(run.info.run_id, COMPLETE_TAG, "true")
    with pytest.warns(UserWarning, match=f"ledger entry {run.info.run_id} skipped"):
        assert [e.run_id for e in read_ledger(uri)] == [kept]
    # a list whose as-of cells are empty is refused, not recorded with no date
    frame = scored.scores.head(8).assign(group=["control"] * 2 + ["treatment"] * 6, as_of="")
    with pytest.raises(ChurnlensError, match="as-of date or horizon is unknown"):
        record_list(frame, list_id="x", control_fraction=0.25, seed=0, scores_entry=None,
                    settings=settings, horizon_days=91)


def test_reading_a_store_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    assert read_ledger(_uri(tmp_path)) == []
    assert not (tmp_path / "mlflow.db").exists()


def test_a_campaign_list_entry(scored: Any, tmp_path: Path) -> None:
    _, _, artifact = trained()
    uri = _uri(tmp_path)
    settings = _settings(uri)
    record_scoring(scored, artifact, settings, source="score")
    (scores_entry,) = read_ledger(uri)
    frame = scored.scores.head(40).assign(
        group=np.where(np.arange(40) % 4 == 0, "control", "treatment"))
    run_id = record_list(frame, list_id="spring", control_fraction=0.25, seed=7,
                         scores_entry=scores_entry, settings=settings)
    (entry,) = read_ledger(uri, kind="campaign-list")
    assert entry.run_id == run_id and entry.source == "at-risk"
    assert entry.as_of == scores_entry.as_of and entry.model == scores_entry.model
    assert entry.campaign["groups"] == {"treatment": 30, "control": 10}
    assert entry.campaign["scores_run_id"] == scores_entry.run_id
    assert sum(g["control"] for g in entry.campaign["by_band"].values()) == 10
    members = entry.members()
    assert members["customer_id"].tolist() == frame["customer_id"].astype(str).tolist()
    assert members["group"].tolist() == frame["group"].tolist()
    with pytest.raises(ChurnlensError, match="no per-customer risks"):
        entry.risks()
    assert [e.kind for e in read_ledger(uri)] == ["scoring", "campaign-list"]


def test_the_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    assert os.environ[LEDGER_ENV] == "off"  # tests/conftest.py, for the whole session
    assert ledger_enabled(False) is False
    monkeypatch.delenv(LEDGER_ENV, raising=False)
    assert ledger_enabled(False) is True
    assert ledger_enabled(True) is False
    assert ledger_enabled(False, load_config(overrides={"monitoring.ledger": False})) is False
    for value in ("off", "0", "false", "NO", " Off "):
        monkeypatch.setenv(LEDGER_ENV, value)
        assert ledger_enabled(False) is False
    monkeypatch.setenv(LEDGER_ENV, "on")
    assert ledger_enabled(False) is True


def test_the_message_masks_credentials() -> None:
    settings = load_config(overrides={
        "mlflow.tracking_uri": "postgresql://me:s3cret@db.local/mlflow"})
    line = recorded_message("abc123", settings)
    assert line == ("ledger: recorded run abc123 in churnlens-monitoring at "
                    "postgresql://me:***@db.local/mlflow")


# --- churnlens score ----------------------------------------------------------------------


def test_score_records_and_says_where(folder: Path, tmp_path: Path, ledger_on: None) -> None:
    uri = _uri(tmp_path)
    out = tmp_path / "scores.parquet"
    code, stdout, stderr = _score(folder, out, "--tracking-uri", uri)
    assert code == 0, stderr
    (entry,) = read_ledger(uri)
    assert f"ledger: recorded run {entry.run_id} in churnlens-monitoring at {uri}" in stdout
    assert entry.source == "score"
    assert np.array_equal(entry.risks()["churn_risk"].to_numpy(),
                          pd.read_parquet(out)["churn_risk"].to_numpy())

    code, stdout, stderr = _score(folder, tmp_path / "again.csv", "--tracking-uri", uri,
                                  "--json-summary")
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["ledger_run_id"] == read_ledger(uri)[-1].run_id != entry.run_id
    assert f"ledger: recorded run {summary['ledger_run_id']}" in stderr
    beside = json.loads((tmp_path / "again.csv.summary.json").read_text())
    assert beside["ledger_run_id"] == summary["ledger_run_id"]


def test_no_ledger_and_the_environment_write_nothing(folder: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch
                                                      ) -> None:
    uri = _uri(tmp_path)
    monkeypatch.delenv(LEDGER_ENV, raising=False)
    code, stdout, stderr = _score(folder, tmp_path / "a.parquet", "--tracking-uri", uri,
                                  "--no-ledger", "--json-summary")
    assert code == 0, stderr
    assert json.loads(stdout)["ledger_run_id"] is None and "ledger:" not in stderr
    monkeypatch.setenv(LEDGER_ENV, "off")
    code, stdout, stderr = _score(folder, tmp_path / "b.parquet", "--tracking-uri", uri)
    assert code == 0, stderr
    assert "ledger:" not in stdout + stderr
    assert not (tmp_path / "mlflow.db").exists() and read_ledger(uri) == []


def test_a_ledger_failure_keeps_the_scores_and_exits_1(folder: Path, tmp_path: Path,
                                                       scored: Any, ledger_on: None) -> None:
    out = tmp_path / "scores.csv"
    code, stdout, stderr = _score(folder, out, "--tracking-uri", UNWRITABLE)
    assert code == 1
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and stderr.strip().splitlines()[-1] == errors[0]
    print(errors[0])
    assert errors[0].startswith("error: the scores were written to ")
    assert str(out) in stderr and "the ledger entry was not recorded" in stderr
    assert "Suggestion:" in stderr and "--no-ledger" in stderr
    assert "predicted vs last actual" in stdout  # the summary is printed as usual
    scores = pd.read_csv(out, dtype={"customer_id": str}, keep_default_na=False)
    assert scores["customer_id"].tolist() == scored.scores["customer_id"].tolist()
    assert json.loads((tmp_path / "scores.csv.summary.json").read_text())[
        "ledger_run_id"] is None


@pytest.mark.slow
def test_two_concurrent_scorings_write_two_complete_entries(folder: Path, tmp_path: Path
                                                            ) -> None:
    uri = _uri(tmp_path)  # a store that does not exist yet: both create it at once
    env = {k: v for k, v in os.environ.items() if k != LEDGER_ENV}
    outs = [tmp_path / f"scores_{i}.parquet" for i in range(2)]
    processes = [subprocess.Popen(
        [CHURNLENS, "score", "-t", str(folder / "tx.parquet"), "--as-of", AS_OF,
         "--model", str(folder / "bundle"), "--out", str(out), "--no-reasons",
         "--tracking-uri", uri, "--json-summary"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for out in outs]
    answers = [p.communicate(timeout=300) for p in processes]
    for process, (_, err) in zip(processes, answers, strict=True):
        assert process.returncode == 0, err
    run_ids = [json.loads(out)["ledger_run_id"] for out, _ in answers]
    entries = {e.run_id: e for e in read_ledger(uri)}
    assert sorted(entries) == sorted(run_ids) and len(set(run_ids)) == 2
    client = mlflow.MlflowClient(uri)
    for run_id, out in zip(run_ids, outs, strict=True):
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and run.data.tags[COMPLETE_TAG] == "true"
        risks = entries[run_id].risks()
        scores = pd.read_parquet(out)
        assert risks["customer_id"].tolist() == scores["customer_id"].astype(str).tolist()
        assert np.array_equal(risks["churn_risk"].to_numpy(), scores["churn_risk"].to_numpy())


# --- Spark --------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_spark_scoring_records_its_feature_profile(folder: Path, spark: Any,
                                                     scored: Any, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from churnlens._spark_scoring import score_file_with_spark

    _, _, artifact = trained()
    settings = _settings(_uri(tmp_path))
    result = score_file_with_spark(folder / "tx.parquet", AS_OF, artifact,
                                   settings=settings, reasons=False)
    run_id = record_scoring(result, artifact, settings, source="score --engine spark")
    (entry,) = read_ledger(_uri(tmp_path))
    assert entry.run_id == run_id and entry.source == "score --engine spark"
    embedded = scored.feature_profile
    assert set(entry.feature_profile) == set(embedded)
    for name, profile in entry.feature_profile.items():
        # the same bins (exact counts), quantiles within Spark's approximation
        assert profile["rows"] == embedded[name]["rows"]
        assert profile["shares"] == pytest.approx(embedded[name]["shares"], abs=2e-3), name
        assert profile["psi"] == pytest.approx(embedded[name]["psi"], abs=0.01), name
        low, high = embedded[name]["quantiles"]["p01"], embedded[name]["quantiles"]["p99"]
        assert low - 1e-9 <= profile["quantiles"]["p50"] <= high + 1e-9
    assert np.allclose(entry.risks()["churn_risk"].to_numpy(),
                       scored.scores["churn_risk"].to_numpy(), atol=1e-9)

    # the command names its engine
    monkeypatch.delenv(LEDGER_ENV, raising=False)
    code, stdout, stderr = _score(folder, tmp_path / "spark.parquet", "--engine", "spark",
                                  "--tracking-uri", _uri(tmp_path))
    assert code == 0, stderr
    latest = read_ledger(_uri(tmp_path))[-1]
    assert latest.source == "score --engine spark" and latest.feature_profile is not None
    assert f"ledger: recorded run {latest.run_id}" in stdout


# --- churnlens serve ------------------------------------------------------------------------


def test_serve_records_at_start_and_on_reload(folder: Path, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    from fastapi.testclient import TestClient

    from churnlens.api import create_app, load_state

    uri = _uri(tmp_path)
    settings = _settings(uri)

    def loader() -> Any:
        return load_state(folder / "tx.parquet", str(folder / "bundle"), settings,
                          as_of=AS_OF, ledger=True)

    initial = loader()
    assert initial.ledger_error is None and initial.settings is settings
    with TestClient(create_app(loader, initial=initial)) as client:
        assert client.post("/reload", json={}).json()["reloaded"] is True
    entries = read_ledger(uri)
    assert [e.source for e in entries] == ["serve", "serve"]
    assert entries[0].run_id == initial.ledger_run_id
    assert np.array_equal(entries[1].risks()["churn_risk"].to_numpy(),
                          initial.scores["churn_risk"].to_numpy())
    assert entries[1].feature_profile is not None

    # a ledger that cannot be written: a warning, and the state serves all the same
    broken = load_config(overrides={"mlflow.tracking_uri": UNWRITABLE})
    with caplog.at_level(logging.WARNING, logger="churnlens.api"):
        state = load_state(folder / "tx.parquet", str(folder / "bundle"), broken,
                           as_of=AS_OF, ledger=True)
    assert state.ledger_run_id is None and "not recorded" in state.ledger_error
    assert len(state.scores) == len(initial.scores)
    assert any("ledger" in r.getMessage() and "serving anyway" in r.getMessage()
               for r in caplog.records)
    quiet = load_state(folder / "tx.parquet", str(folder / "bundle"), settings, as_of=AS_OF)
    assert quiet.ledger_run_id is None and quiet.ledger_error is None
    assert len(read_ledger(uri)) == 2


@pytest.mark.slow
def test_churnlens_serve_records_unless_told_not_to(folder: Path, tmp_path: Path) -> None:
    import socket

    import httpx
    from api_support import wait_until_serving

    from churnlens.api import API_KEYS_ENV
    from churnlens.api.errors import ALLOWED_HOSTS_ENV

    uri = _uri(tmp_path)
    env = {k: v for k, v in os.environ.items()
           if k not in (LEDGER_ENV, API_KEYS_ENV, ALLOWED_HOSTS_ENV)}
    for extra, expected in (([], 2), (["--no-ledger"], 2)):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        process = subprocess.Popen(
            [CHURNLENS, "serve", "-t", str(folder / "tx.parquet"), "--model",
             str(folder / "bundle"), "--port", str(port), "--tracking-uri", uri, *extra],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            wait_until_serving(process, port, timeout=120)
            answer = httpx.post(f"http://127.0.0.1:{port}/reload", json={}, timeout=120)
            assert answer.json()["reloaded"] is True
        finally:
            process.terminate()
            _, err = process.communicate(timeout=60)
        entries = read_ledger(uri)
        assert len(entries) == expected and {e.source for e in entries} == {"serve"}
        if not extra:
            assert f"ledger: recorded run {entries[0].run_id}" in err
