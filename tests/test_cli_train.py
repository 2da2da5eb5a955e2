"""``churnlens train``, ``backtest`` and ``export``: JSON documents, files, exit codes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import churnlens
from churnlens._artifact import BUNDLE_CARD, BUNDLE_MODEL
from churnlens._model_loader import load_bundle
from churnlens.cli import app

SEED = 13
AS_OF = "2024-09-30"
print(f"test_cli_train: generate_transactions(1500, seed={SEED})")
MODELS = {"churnlens", "bgnbd", "recency", "logistic", "paretonbd"}
VALUE_PREDICTORS = ["bgnbd_gammagamma", "heuristic", "heuristic_x_retention",
                    "paretonbd_gammagamma", "value_model"]
SMALL_CONFIG = "model:\n  n_estimators: 60\n  n_jobs: 1\nsnapshots:\n  count: 5\n"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cli-train-inputs")
    csv = folder / "tx.csv"
    churnlens.generate_transactions(1500, seed=SEED).to_csv(csv, index=False)
    config = folder / "small.yaml"
    config.write_text(SMALL_CONFIG)
    quick = folder / "quick.yaml"
    quick.write_text(SMALL_CONFIG + "backtest_steps: 0\n")
    return {"csv": csv, "config": config, "quick": quick}


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def _uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture(scope="module")
def trained(inputs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[dict, Path]:
    folder = tmp_path_factory.mktemp("cli-train")
    code, out, err = run("train", "--transactions", inputs["csv"], "--as-of", AS_OF,
                         "--horizon-days", "91", "--config", inputs["config"],
                         "--tracking-uri", _uri(folder), "--report", folder / "report.html",
                         "--bundle", folder / "bundle", "--json")
    assert code == 0, err
    return json.loads(out), folder  # exactly one JSON object on stdout


@pytest.mark.slow
def test_train_json_document(trained: tuple[dict, Path]) -> None:
    summary, folder = trained
    assert {"run_id", "model_version", "alias", "validation", "backtest"} <= set(summary)
    assert len(summary["run_id"]) == 32 and summary["model_version"] == "1"
    assert summary["alias"] == "champion" and summary["promoted"] is True
    assert summary["as_of"] == AS_OF and summary["horizon_days"] == 91
    assert set(summary["validation"]) == MODELS - {"paretonbd"}  # backtest only
    assert 0.5 < summary["validation"]["churnlens"]["auc"] <= 1
    [run_] = summary["backtest"]  # backtest_steps: 1, at as-of - horizon
    assert run_["as_of"] == "2024-07-01" and set(run_["models"]) == MODELS
    assert summary["report"] == str(folder / "report.html")
    assert (folder / "report.html").stat().st_size > 50_000
    assert (folder / "bundle" / BUNDLE_CARD).is_file()
    assert summary["cleaning"]["rows_kept"] < summary["cleaning"]["rows_read"]  # after as-of


@pytest.mark.slow
def test_train_table_output_and_promote(inputs: dict[str, Path], trained: tuple[dict, Path]
                                        ) -> None:
    _, folder = trained  # the same store: this is version 2
    code, out, err = run("train", "-t", inputs["csv"], "--as-of", AS_OF, "--config",
                         inputs["quick"], "--tracking-uri", _uri(folder), "--promote")
    assert code == 0, err
    assert "model churnlens version 2 -> @champion (forced with --promote)" in out
    assert "held-out validation (cutoff 2024-07-01, horizon 91 d)" in out
    assert "Traceback" not in out + err
    # progress goes to stderr, results to stdout
    assert "fitting LightGBM" in err and "fitting LightGBM" not in out


@pytest.mark.slow
def test_export_writes_a_bundle_that_predicts_like_the_registered_model(
    trained: tuple[dict, Path], tmp_path: Path
) -> None:
    _, folder = trained
    code, out, err = run("export", "--model", "models:/churnlens/1", "--to", tmp_path / "m",
                         "--tracking-uri", _uri(folder))
    assert code == 0, err
    assert "exported models:/churnlens/1 (version 1, as of 2024-09-30, horizon 91 d)" in out
    card = json.loads((tmp_path / "m" / BUNDLE_CARD).read_text())
    assert card["version"] == "1" and card["as_of"] == AS_OF
    exported = load_bundle(tmp_path / "m")
    direct = load_bundle(folder / "bundle")
    features = churnlens.compute_features(
        churnlens.load_transactions(churnlens.generate_transactions(1500, seed=SEED),
                                    as_of=AS_OF).transactions, AS_OF)
    np.testing.assert_array_equal(exported.churn_risk(features), direct.churn_risk(features))


@pytest.mark.slow
def test_backtest_json_document(inputs: dict[str, Path]) -> None:
    code, out, err = run("backtest", "-t", inputs["csv"], "--as-of", "2024-06-30",
                         "--as-of", "2024-03-31", "--horizon-days", "91", "--config",
                         inputs["config"], "--json")
    assert code == 0, err
    document = json.loads(out)
    assert list(document) == ["runs", "interval_coverage"]
    assert document["interval_coverage"]["churnlens"]["dates"] == 2
    assert [r["as_of"] for r in document["runs"]] == ["2024-03-31", "2024-06-30"]
    for run_ in document["runs"]:
        assert set(run_) == {"as_of", "horizon_days", "models", "warnings", "model",
                             "baseline_fits", "value"}
        assert set(run_["value"]["models"]) == set(VALUE_PREDICTORS)
        assert run_["horizon_days"] == 91 and set(run_["models"]) == MODELS
        for metrics in run_["models"].values():
            assert {"auc", "pr_auc", "brier", "log_loss", "lift_top_decile",
                    "predicted_retention", "actual_retention", "predicted_cohort_retention",
                    "actual_cohort_retention", "predicted_crr", "actual_crr"} <= set(metrics)


def test_backtest_table_output(inputs: dict[str, Path]) -> None:
    code, out, err = run("backtest", "-t", inputs["csv"], "--as-of", "2024-06-30",
                         "--config", inputs["config"])
    assert code == 0, err
    # two tables: ranking and calibration, then retention predicted vs actual
    assert "backtest at 2024-06-30 (horizon 91 d): ranking and calibration" in out
    assert "backtest at 2024-06-30 (horizon 91 d): retention, predicted vs actual (%)" in out
    lines = [line for line in out.splitlines() if "│" in line]
    assert [line.split("│")[1].strip() for line in lines] == [
        "churnlens", "bgnbd", "logistic", "recency", "paretonbd"] * 2 + VALUE_PREDICTORS
    # the value backtest, its predictors said in words
    assert "value backtest at 2024-06-30: spend in the horizon, predicted vs actual" in out
    assert "heuristic: spend if the customer stays" in out
    assert "heuristic_x_retention: heuristic x (1 - churnlens churn risk)" in out
    # the interval's coverage over the backtest's dates, in words
    assert re.search(r"churnlens' 95% intervals held the actual in [01] of 1 date\(s\)", out)


# --- bad input: exit 2, one readable line, nothing written ---------------------------


def _assert_refused(code: int, out: str, err: str, *phrases: str) -> None:
    assert code == 2, (out, err)
    assert out == ""
    # progress lines may come first; the error is one line, and the last
    assert err.splitlines()[-1].startswith("error: "), err
    assert err.count("error: ") == 1 and "Traceback" not in err
    for phrase in phrases:
        assert phrase in err, err


def test_train_with_a_missing_column_writes_nothing(tmp_path: Path) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text("customer_id,timestamp,price\nA,2024-01-01,3\n")
    code, out, err = run("train", "-t", csv, "--as-of", AS_OF, "--tracking-uri",
                         _uri(tmp_path), "--report", tmp_path / "report.html", "--bundle",
                         tmp_path / "bundle", "--json")
    _assert_refused(code, out, err, "bad.csv", "amount")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


def test_train_with_too_little_history_writes_nothing(
    inputs: dict[str, Path], tmp_path: Path
) -> None:
    code, out, err = run("train", "-t", inputs["csv"], "--as-of", "2023-04-15", "--config",
                         inputs["config"], "--tracking-uri", _uri(tmp_path),
                         "--report", tmp_path / "report.html", "--bundle", tmp_path / "b")
    _assert_refused(code, out, err, "training cutoff(s)", "Suggestion")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("args", "phrases"), [
    (["--config", "{bad}"], ["unknown key 'modle'"]),
    (["--horizon-days", "0"], ["--horizon-days", "positive whole number"]),
    (["--as-of", "2024-13-01"], ["2024-13-01"]),
])
def test_train_bad_options(inputs: dict[str, Path], tmp_path: Path, args: list[str],
                           phrases: list[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("modle:\n  n_estimators: 5\n")
    args = [str(bad) if a == "{bad}" else a for a in args]
    base = ["train", "-t", inputs["csv"], "--tracking-uri", _uri(tmp_path)]
    if "--as-of" not in args:
        base += ["--as-of", AS_OF]
    code, out, err = run(*base, *args)
    _assert_refused(code, out, err, *phrases)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_backtest_past_the_data_is_refused(inputs: dict[str, Path]) -> None:
    code, out, err = run("backtest", "-t", inputs["csv"], "--as-of", "2024-11-30",
                         "--horizon-days", "91", "--json")
    _assert_refused(code, out, err, "cannot backtest at 2024-11-30",
                    "after the end of the data (2024-12-31)")


def test_export_of_an_unknown_model_writes_nothing(tmp_path: Path) -> None:
    code, out, err = run("export", "--model", "models:/churnlens@champion", "--to",
                         tmp_path / "models", "--tracking-uri", _uri(tmp_path / "store"))
    _assert_refused(code, out, err, "no MLflow store at", "no model models:/churnlens@champion")
    assert list(tmp_path.iterdir()) == []  # no stray empty store either
    code, out, err = run("export", "--model", tmp_path / "nowhere", "--to", tmp_path / "m2")
    _assert_refused(code, out, err, "no churnlens model bundle here")
    assert not (tmp_path / "m2").exists()


@pytest.mark.slow
def test_export_refuses_a_tampered_bundle(trained: tuple[dict, Path], tmp_path: Path) -> None:
    _, folder = trained
    import shutil

    shutil.copytree(folder / "bundle", tmp_path / "bundle")
    model = tmp_path / "bundle" / BUNDLE_MODEL
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF  # always a different byte (overwriting with a constant may not be)
    model.write_bytes(bytes(data))
    code, out, err = run("export", "--model", tmp_path / "bundle", "--to", tmp_path / "out")
    _assert_refused(code, out, err, "does not match the card", "refused")
    assert not (tmp_path / "out").exists()
