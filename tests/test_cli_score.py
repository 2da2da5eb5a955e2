"""``churnlens train`` -> ``churnlens score`` -> ``churnlens at-risk``: files, safety, kills."""

from __future__ import annotations

import csv
import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import churnlens
from churnlens._artifact import BUNDLE_CARD, BUNDLE_MODEL
from churnlens._io import read_table_metadata
from churnlens._scoring import SCORE_COLUMNS
from churnlens.cli import app

SEED = 11
TRAIN_AS_OF = "2024-03-31"
AS_OF = "2024-04-30"
FORMULA_IDS = ['=HYPERLINK("x")', "+33 1 23", "-1", "@SUM(A1)", "\tTAB", "\rCR", "\nLF",
               "\r=1+1", "\n=1+1"]
FAST = {"backtest_steps": 0, "snapshots": {"count": 6},
        "model": {"n_estimators": 60, "min_child_samples": 40, "early_stopping_rounds": 20}}
CHURNLENS = str(Path(sys.executable).with_name("churnlens"))


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli_score")
    print(f"synthetic transactions seed: {SEED}")
    tx = churnlens.generate_transactions(1500, seed=SEED, start="2023-01-01",
                                         end="2024-06-30")
    # customers whose ids a spreadsheet would run as formulas
    extra = pd.DataFrame({
        "customer_id": np.repeat(FORMULA_IDS, 2),
        "timestamp": pd.to_datetime(["2023-05-02", "2023-06-20"] * len(FORMULA_IDS)),
        "amount": 25.0, "country": "US"})
    tx = pd.concat([tx, extra], ignore_index=True)
    tx.to_parquet(folder / "tx.parquet", index=False)
    tx.loc[tx["timestamp"] < "2024-05-01"].to_parquet(folder / "history.parquet", index=False)
    (folder / "fast.yaml").write_text(yaml.safe_dump(FAST))
    code, out, err = run("train", "-t", folder / "tx.parquet", "--as-of", TRAIN_AS_OF,
                         "--config", folder / "fast.yaml", "--no-mlflow", "--bundle",
                         folder / "bundle", "--json")
    assert code == 0, err
    assert json.loads(out)["bundle"]
    return folder


@pytest.fixture
def deterministic_duckdb(monkeypatch):
    """compute_features on one DuckDB thread (see tests/test_scoring.py: with several
    threads DuckDB's sums of amounts differ in the last bits from run to run)."""
    import churnlens._features as features_module
    from churnlens._engine import connect

    monkeypatch.setattr(features_module, "connect", functools.partial(connect, threads=1))


def score(workdir: Path, out: Path, *extra: str | Path, tx: str = "tx.parquet"):
    return run("score", "-t", workdir / tx, "--as-of", AS_OF, "--model", workdir / "bundle",
               "--out", out, *extra)


def test_train_score_at_risk_produce_the_files(workdir, tmp_path):
    out = tmp_path / "scores.parquet"
    code, stdout, err = score(workdir, out, "--json-summary")
    assert code == 0, err
    summary = json.loads(stdout)  # exactly one JSON object on stdout
    scores = pd.read_parquet(out)
    assert list(scores.columns) == SCORE_COLUMNS
    assert summary["customers_scored"] == len(scores) > 1000
    assert summary["output"] == str(out)
    assert (scores["value_at_risk"] == scores["churn_risk"] * scores["expected_value"]).all()
    assert set(scores["risk_band"]) <= {"high", "medium", "low"}
    assert scores["customer_id"].is_unique and set(FORMULA_IDS) <= set(scores["customer_id"])
    meta = read_table_metadata(out)
    assert meta["as_of"] == AS_OF and meta["horizon_days"] == "91"
    assert json.loads(meta["model"]) == summary["model"]
    assert summary["model"]["as_of"] == TRAIN_AS_OF
    pairing = {p["rate"]: p for p in summary["pairing"]}
    assert set(pairing) == {"cohort_retention", "crr", "repeat_rate"}
    for rate in pairing.values():
        assert rate["predicted_low"] <= rate["predicted"] <= rate["predicted_high"]
        assert rate["last_actual"] is not None

    listing = tmp_path / "at_risk.csv"
    # --all: every customer by churn risk (the list before issue 16; the default is the
    # campaign list, tests/test_campaign_list.py)
    code, _, err = run("at-risk", "--scores", out, "--top", "100", "--out", listing, "--all")
    assert code == 0, err
    chosen = pd.read_csv(listing, dtype={"customer_id": str}, keep_default_na=False)
    assert len(chosen) == 100 and list(chosen.columns) == SCORE_COLUMNS
    expected = scores.sort_values(["churn_risk", "customer_id"], ascending=[False, True])
    assert chosen["customer_id"].tolist() == expected["customer_id"].head(100).tolist()


def test_human_summary_and_csv_output(workdir, tmp_path):
    out = tmp_path / "scores.csv"
    code, stdout, err = score(workdir, out, "--no-reasons")
    assert code == 0, err
    assert "predicted vs last actual" in stdout and "cohort_retention" in stdout
    scores = pd.read_csv(out, dtype={"customer_id": str}, keep_default_na=False)
    assert list(scores.columns) == SCORE_COLUMNS[:-3]
    summary = json.loads((tmp_path / "scores.csv.summary.json").read_text())
    assert summary["customers_scored"] == len(scores)
    assert "scoring" in err  # progress on stderr


def test_at_risk_list_neutralizes_formula_ids(workdir, tmp_path):
    out = tmp_path / "scores.parquet"
    assert score(workdir, out)[0] == 0
    listing = tmp_path / "list.csv"
    code, _, err = run("at-risk", "--scores", out, "--out", listing, "--sort", "value_at_risk",
                       "--all")
    assert code == 0, err
    with listing.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    ids = {row["customer_id"] for row in rows}
    assert len(rows) == len(pd.read_parquet(out))
    for raw in FORMULA_IDS:
        assert "'" + raw in ids, raw
        assert raw not in ids
    values = [float(row["value_at_risk"]) for row in rows]
    assert values == sorted(values, reverse=True)


def test_score_csv_neutralizes_formula_ids(workdir, tmp_path):
    """``score --out *.csv`` is a file people open: no cell may run as a formula, and a
    CR or LF at the start of an id must not start a new row (issue 22)."""
    exact, listing = tmp_path / "scores.parquet", tmp_path / "scores.csv"
    assert score(workdir, exact, "--no-reasons")[0] == 0
    code, _, err = score(workdir, listing, "--no-reasons")
    assert code == 0, err
    expected = pd.read_parquet(exact)
    assert set(FORMULA_IDS) <= set(expected["customer_id"])  # Parquet keeps ids exact
    frame = pd.read_csv(listing, dtype=str, keep_default_na=False)
    with listing.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    # a reader that takes a bare CR or LF as a line end would see extra rows
    with listing.open(encoding="utf-8") as fh:  # universal newlines: \r, \n, \r\n
        physical = fh.read().splitlines()
    for cells in (frame.to_numpy().tolist(), rows[1:]):
        assert len(cells) == len(expected)
        first_cells = [row[0] for row in cells]
        assert not [c for c in first_cells if c.startswith(("=", "+", "-", "@", "\t", "\r",
                                                             "\n"))]
        for raw in FORMULA_IDS:
            assert "'" + raw in first_cells, raw
    # rows end in CRLF; the only other line breaks are the ones inside quoted ids
    assert len(physical) == len(expected) + 1 + sum(
        raw.count("\r") + raw.count("\n") for raw in FORMULA_IDS)


def test_at_risk_filters_and_errors(workdir, tmp_path):
    out = tmp_path / "scores.parquet"
    assert score(workdir, out)[0] == 0
    scores = pd.read_parquet(out)
    segment = scores["segment"].value_counts().index[0]
    listing = tmp_path / "list.parquet"
    code, _, err = run("at-risk", "-s", out, "-o", listing, "--segment", segment,
                       "--min-risk", "0.5", "--all")
    assert code == 0, err
    chosen = pd.read_parquet(listing)
    expected = scores[(scores["segment"] == segment) & (scores["churn_risk"] >= 0.5)]
    assert len(chosen) == len(expected) > 0
    code, _, err = run("at-risk", "-s", out, "-o", tmp_path / "x.csv", "--segment", "vip")
    assert code == 2 and "segments in the scores" in err
    assert not (tmp_path / "x.csv").exists()
    code, _, err = run("at-risk", "-s", tmp_path / "none.parquet", "-o", tmp_path / "x.csv")
    assert code == 2 and "run churnlens score first" in err


def test_scores_ignore_transactions_after_the_as_of_date(workdir, tmp_path,
                                                         deterministic_duckdb):
    full, alone = tmp_path / "full.parquet", tmp_path / "alone.parquet"
    assert score(workdir, full)[0] == 0
    assert score(workdir, alone, tx="history.parquet")[0] == 0
    assert full.read_bytes() == alone.read_bytes()


def _bundle_copy(workdir: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "bundle"
    shutil.copytree(workdir / "bundle", target)
    return target


@pytest.mark.parametrize(("case", "message"), [
    ("missing", "no churnlens model bundle"),
    ("digest", "does not match the card"),
    ("features", "lists other features"),
    ("unreadable", "cannot be loaded"),
    ("horizon", "predicts churn over 91 days, not 30"),
    ("past", "before the model's training as-of"),
])
def test_unusable_models_are_refused_with_exit_2(workdir, tmp_path, case, message):
    model = _bundle_copy(workdir, tmp_path)
    extra: list[str] = []
    as_of = AS_OF
    if case == "missing":
        model = tmp_path / "nowhere"
    elif case == "digest":
        with (model / BUNDLE_MODEL).open("ab") as fh:
            fh.write(b"\0")
    elif case == "features":
        card = json.loads((model / BUNDLE_CARD).read_text())
        card["features"] = card["features"][:-1]
        (model / BUNDLE_CARD).write_text(json.dumps(card))
    elif case == "unreadable":  # garbage with a matching digest: unpickling fails
        import hashlib

        (model / BUNDLE_MODEL).write_bytes(b"not a pickle")
        card = json.loads((model / BUNDLE_CARD).read_text())
        card["sha256"] = hashlib.sha256(b"not a pickle").hexdigest()
        if card.get("scorer_file"):  # scoring reads the scorer form when there is one
            (model / card["scorer_file"]).write_bytes(b"not a scorer")
            card["scorer_sha256"] = hashlib.sha256(b"not a scorer").hexdigest()
        (model / BUNDLE_CARD).write_text(json.dumps(card))
    elif case == "horizon":
        extra = ["--horizon-days", "30"]
    elif case == "past":
        as_of = "2024-03-01"
    out = tmp_path / "scores.parquet"
    code, _, err = run("score", "-t", workdir / "tx.parquet", "--as-of", as_of, "--model",
                       model, "--out", out, *extra)
    assert code == 2, err
    assert message in err
    assert not out.exists()
    assert list(tmp_path.glob(".scores.parquet.tmp-*")) == []


def test_allow_past_scores_a_backfill(workdir, tmp_path):
    out = tmp_path / "scores.parquet"
    code, _, err = run("score", "-t", workdir / "tx.parquet", "--as-of", "2024-03-01",
                       "--model", workdir / "bundle", "--out", out, "--allow-past",
                       "--no-reasons")
    assert code == 0, err
    assert set(pd.read_parquet(out)["as_of"].astype(str)) == {"2024-03-01"}


@pytest.mark.slow
def test_model_version_and_alias_from_the_registry(workdir, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code, out, err = run("train", "-t", workdir / "tx.parquet", "--as-of", TRAIN_AS_OF,
                         "--config", workdir / "fast.yaml", "--tracking-uri", uri, "--json")
    assert code == 0, err
    assert json.loads(out)["alias"] == "champion"
    scores = tmp_path / "scores.parquet"
    code, stdout, err = run("score", "-t", workdir / "tx.parquet", "--as-of", AS_OF,
                            "--model", "models:/churnlens@champion", "--tracking-uri", uri,
                            "--out", scores, "--json-summary", "--no-reasons")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["model"]["version"] == "1" and summary["model"]["alias"] == "champion"
    assert summary["model"]["name"] == "churnlens" and summary["model"]["run_id"]
    assert json.loads(read_table_metadata(scores)["model"]) == summary["model"]
    code, _, err = run("score", "-t", workdir / "tx.parquet", "--as-of", AS_OF, "--model",
                       "models:/churnlens@nope", "--tracking-uri", uri, "--out", scores)
    assert code == 2 and "no model models:/churnlens@nope" in err


# --- kills ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_transactions(workdir) -> Path:
    """Enough customers that scoring runs for several seconds."""
    path = workdir / "big.parquet"
    churnlens.generate_transactions(150_000, seed=2, start="2023-01-01",
                                    end="2024-06-30").to_parquet(path, index=False)
    return path


def _start_score(workdir: Path, transactions: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [CHURNLENS, "score", "-t", str(transactions), "--as-of", AS_OF, "--model",
         str(workdir / "bundle"), "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "COLUMNS": "200"})


def _wait_for(process: subprocess.Popen, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if text in line:
            return
    process.kill()
    raise AssertionError(f"never saw {text!r}: {''.join(seen)}")


@pytest.mark.slow
@pytest.mark.parametrize("kill", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_scoring_leaves_the_previous_output_intact(workdir, big_transactions,
                                                            tmp_path, kill):
    out = tmp_path / "scores.parquet"
    assert score(workdir, out, "--no-reasons")[0] == 0  # the previous night's file
    before = out.read_bytes()
    process = _start_score(workdir, big_transactions, out)
    _wait_for(process, "scoring")  # features done, customers being scored
    time.sleep(0.2)  # (scoring itself takes about a second: the kill must land inside it)
    process.send_signal(kill)
    code = process.wait(timeout=120)
    assert code == (-9 if kill == signal.SIGKILL else 130)
    assert out.read_bytes() == before
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != "scores.parquet")
    if kill == signal.SIGKILL:
        # The scores stream into the locked temporary beside the target (_io.atomic_path):
        # a SIGKILL can leave it (never a partial target), and the next successful write
        # to the same target removes it.
        assert len(left) <= 1 and all(n.startswith(".scores.parquet.tmp-") for n in left)
        assert score(workdir, out, "--no-reasons")[0] == 0
        assert out.read_bytes() == before
    else:
        assert left == []  # a handled signal removes the temporary itself
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.parquet"]


@pytest.mark.slow
def test_a_kill_while_writing_leaves_a_whole_file_and_no_leftovers(workdir, big_transactions,
                                                                   tmp_path):
    out = tmp_path / "scores.parquet"
    assert score(workdir, out, "--no-reasons")[0] == 0
    before = out.read_bytes()
    process = _start_score(workdir, big_transactions, out)
    _wait_for(process, "writing")  # everything computed; the file is being written
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    after = out.read_bytes()
    if after != before:  # the rename happened: the new file is whole
        assert pd.read_parquet(out)["customer_id"].nunique() > 100_000
    # a temporary file may be left by a kill during the final copy; the next successful
    # write to the same target removes it
    assert score(workdir, out, "--no-reasons")[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.parquet"]
