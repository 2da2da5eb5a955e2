"""Dates typed by users, and data too old for the as-of date (issue 16, "Dates").

- Every option that takes a date reads ISO 8601 ``YYYY-MM-DD`` only (the API's rule):
  ``01/10/2024`` (1 October or 10 January?), ``31.12.2024``, ``Oct 1 2024``, ``today``,
  ``2024-1-5``... exit 2 with one line naming the option and the accepted form.
- An as-of date more than ``--max-staleness-days`` (default 7) after the data's last
  day is refused with exit 2 by every command that takes an as-of date and data, and
  by the library paths behind them; the message says how stale the data are.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import churnlens
from churnlens.cli import app
from churnlens.exceptions import ChurnlensError, DataValidationError

SEED = 16
DATA_END = "2024-06-30"  # the synthetic data's last day
TRAIN_AS_OF = "2024-03-31"
FAST = {"backtest_steps": 0, "snapshots": {"count": 6},
        "model": {"n_estimators": 40, "min_child_samples": 40, "early_stopping_rounds": 10}}

# Dates in every form but YYYY-MM-DD: each was read (and some guessed) before.
NOT_ISO = ["01/10/2024", "31/12/2024", "12/31/2024", "31.12.2024", "Oct 1 2024",
           "1 October 2024", "today", "now", "2024-1-5", "2024/10/01", "20241001",
           "2024-10-01T00:00:00", " 2024-10-01", "2024-10-01 ", "31st of March", "",
           "２０２４-１０-０１"]


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def one_error_line(err: str) -> str:
    """The one error line, last on stderr (after any progress lines of the command)."""
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), err
    assert sum(line.startswith("error") for line in lines) == 1, err
    return lines[-1]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli_dates")
    print(f"synthetic transactions seed: {SEED}")
    tx = churnlens.generate_transactions(600, seed=SEED, start="2023-01-01", end=DATA_END)
    assert str(tx["timestamp"].max().date()) == DATA_END
    tx.to_csv(folder / "tx.csv", index=False)
    (folder / "fast.yaml").write_text(yaml.safe_dump(FAST))
    return folder


@pytest.fixture(scope="module")
def bundle(data: Path) -> Path:
    """A model trained at TRAIN_AS_OF (no MLflow), for score and serve."""
    code, _, err = run("train", "-t", data / "tx.csv", "--as-of", TRAIN_AS_OF, "--config",
                       data / "fast.yaml", "--no-mlflow", "--bundle", data / "bundle")
    assert code == 0, err
    return data / "bundle"


# --- 1. ISO 8601 only ------------------------------------------------------------------


def date_commands(data: Path, out: Path) -> dict[str, list[str]]:
    """Every option that takes a date, in a command that is otherwise right; ``{}`` is
    replaced by the date."""
    tx = str(data / "tx.csv")
    return {
        "validate --as-of": ["validate", "-t", tx, "--as-of", "{}"],
        "features --as-of": ["features", "-t", tx, "--as-of", "{}", "-o", f"{out}/f.csv"],
        "retention --start": ["retention", "-t", tx, "--start", "{}", "--end", "2024-06-30"],
        "retention --end": ["retention", "-t", tx, "--start", "2024-03-31", "--end", "{}"],
        "retention --as-of": ["retention", "-t", tx, "--every", "quarter", "--as-of", "{}"],
        "cohorts --end": ["cohorts", "-t", tx, "--end", "{}"],
        "cohorts --as-of": ["cohorts", "-t", tx, "--as-of", "{}"],
        "generate --start": ["generate", "-o", f"{out}/g.csv", "-n", "10", "--start", "{}"],
        "generate --end": ["generate", "-o", f"{out}/g.csv", "-n", "10", "--end", "{}"],
        "train --as-of": ["train", "-t", tx, "--as-of", "{}", "--no-mlflow"],
        "backtest --as-of": ["backtest", "-t", tx, "--as-of", "2024-03-31", "--as-of", "{}"],
        "score --as-of": ["score", "-t", tx, "--as-of", "{}", "--model", str(data / "none"),
                          "-o", f"{out}/s.csv"],
        "serve --as-of": ["serve", "-t", tx, "--as-of", "{}", "--model", str(data / "none"),
                          "--port", "8799"],
    }


def assert_refused(code: int, out: str, err: str, flag: str, value: str, folder: Path) -> None:
    assert code == 2, (code, out, err)
    line = one_error_line(err)
    assert line.startswith(f"error: {flag}: {value!r}"), line
    assert "YYYY-MM-DD" in line and "Suggestion:" in line, line
    assert out == ""
    assert list(folder.iterdir()) == [], "nothing is written"


@pytest.mark.parametrize("value", NOT_ISO)
def test_every_non_iso_form_is_refused(data: Path, tmp_path: Path, value: str) -> None:
    command = date_commands(data, tmp_path)["features --as-of"]
    code, out, err = run(*[value if a == "{}" else a for a in command])
    assert_refused(code, out, err, "--as-of", value, tmp_path)


@pytest.mark.parametrize("option", list(date_commands(Path("."), Path("."))))
@pytest.mark.parametrize("value", ["01/10/2024", "today", "2024-1-5"])
def test_every_date_option_reads_iso_only(data: Path, tmp_path: Path, option: str,
                                          value: str) -> None:
    command = date_commands(data, tmp_path)[option]
    code, out, err = run(*[value if a == "{}" else a for a in command])
    assert_refused(code, out, err, option.split()[1], value, tmp_path)


def test_day_first_and_month_first_are_not_mixed(data: Path) -> None:
    """The issue's case: --start read month-first and --end day-first, exit 0."""
    code, out, err = run("retention", "-t", data / "tx.csv", "--start", "01/10/2023",
                         "--end", "31/12/2023")
    assert code == 2 and out == ""
    assert one_error_line(err).startswith("error: --start: '01/10/2023'")


@pytest.mark.parametrize(("value", "message"), [
    ("2024-02-30", "is not a calendar day"),
    ("2024-13-01", "is not a calendar day"),
    ("0001-01-01", "outside the supported dates"),
    ("9999-12-31", "outside the supported dates"),
])
def test_iso_form_but_not_a_usable_day(data: Path, tmp_path: Path, value: str,
                                       message: str) -> None:
    code, out, err = run("features", "-t", data / "tx.csv", "--as-of", value, "-o",
                         tmp_path / "f.csv")
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert line.startswith("error: --as-of: ") and message in line, line


def test_iso_dates_still_work(data: Path, tmp_path: Path) -> None:
    code, _, err = run("generate", "-o", tmp_path / "g.csv", "-n", "10", "--start",
                       "2024-01-01", "--end", "2024-02-29")
    assert code == 0, err
    days = pd.to_datetime(pd.read_csv(tmp_path / "g.csv")["timestamp"]).dt.date
    assert days.min() >= dt.date(2024, 1, 1) and days.max() <= dt.date(2024, 2, 29)
    code, out, err = run("retention", "-t", data / "tx.csv", "--start", "2024-03-31",
                         "--end", "2024-06-30", "--json")
    assert code == 0, err
    assert json.loads(out)["end"] == "2024-06-30"


def test_one_rule_for_the_cli_and_the_api() -> None:
    """The API's as_of field and the CLI's options accept and refuse the same texts."""
    from pydantic import TypeAdapter, ValidationError

    from churnlens._validation import parse_iso_day
    from churnlens.api.schemas import IsoDate

    api = TypeAdapter(IsoDate)
    for value in [*NOT_ISO, "2024-02-30", "0001-01-01", "2024-03-31", "2100-12-31"]:
        try:
            cli_day: dt.date | None = parse_iso_day(value, name="--as-of")
        except ChurnlensError:
            cli_day = None
        try:
            api_day: dt.date | None = api.validate_python(value)
        except ValidationError:
            api_day = None
        assert cli_day == api_day, value


# --- 2. stale data -----------------------------------------------------------------------

STALE = "2024-09-28"  # 90 days after DATA_END
STALE_GAP = 90
WITHIN = "2024-07-07"  # 7 days after: the default tolerance


def assert_stale(code: int, out: str, err: str) -> None:
    assert code == 2, (code, out, err)
    line = one_error_line(err)
    assert f"end {DATA_END}, {STALE_GAP} days before the as-of date {STALE}" in line, line
    assert f"--max-staleness-days {STALE_GAP}" in line and "Suggestion:" in line, line
    assert "serving" not in out + err


def stale_commands(data: Path, out: Path) -> dict[str, list[str]]:
    tx = str(data / "tx.csv")
    return {
        "validate": ["validate", "-t", tx, "--as-of", "{}"],
        "features": ["features", "-t", tx, "--as-of", "{}", "-o", f"{out}/f.csv"],
        "retention": ["retention", "-t", tx, "--start", "2024-03-31", "--end", "2024-06-30",
                      "--as-of", "{}"],
        "retention --every": ["retention", "-t", tx, "--every", "quarter", "--as-of", "{}"],
        "cohorts": ["cohorts", "-t", tx, "--as-of", "{}", "--csv", f"{out}/c.csv"],
        "train": ["train", "-t", tx, "--as-of", "{}", "--no-mlflow", "--config",
                  str(data / "fast.yaml")],
    }


@pytest.mark.parametrize("command", list(stale_commands(Path("."), Path("."))))
def test_stale_as_of_is_refused(data: Path, tmp_path: Path, command: str) -> None:
    args = stale_commands(data, tmp_path)[command]
    code, out, err = run(*[STALE if a == "{}" else a for a in args])
    assert_stale(code, out, err)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["validate", "features", "retention", "cohorts"])
def test_stale_as_of_with_a_tolerance_or_within_the_default(data: Path, tmp_path: Path,
                                                            command: str) -> None:
    args = stale_commands(data, tmp_path)[command]
    code, _, err = run(*[STALE if a == "{}" else a for a in args], "--max-staleness-days",
                       str(STALE_GAP))
    assert code == 0, err
    code, _, err = run(*[WITHIN if a == "{}" else a for a in args])
    assert code == 0, err


def test_tolerance_one_day_short_is_refused(data: Path) -> None:
    code, out, err = run("validate", "-t", data / "tx.csv", "--as-of", STALE,
                         "--max-staleness-days", str(STALE_GAP - 1))
    assert_stale(code, out, err)


def test_bad_tolerance_blames_the_flag(data: Path) -> None:
    code, out, err = run("validate", "-t", data / "tx.csv", "--as-of", DATA_END,
                         "--max-staleness-days", "-1")
    assert code == 2 and out == ""
    assert "--max-staleness-days" in one_error_line(err)


def test_as_of_before_the_data_end_is_not_stale(data: Path) -> None:
    """Rows after the as-of date are dropped, not a gap: the data go on after it."""
    code, out, err = run("validate", "-t", data / "tx.csv", "--as-of", "2023-06-30",
                         "--max-staleness-days", "0", "--json")
    assert code == 0, err
    assert json.loads(out)["dropped_after_as_of"] > 0


def test_backtest_after_the_data_end_is_refused(data: Path) -> None:
    code, out, err = run("backtest", "-t", data / "tx.csv", "--as-of", STALE)
    assert code == 2 and out == ""
    assert DATA_END in one_error_line(err)


def test_stale_score_is_refused_and_writes_nothing(data: Path, bundle: Path,
                                                   tmp_path: Path) -> None:
    code, out, err = run("score", "-t", data / "tx.csv", "--as-of", STALE, "--model", bundle,
                         "-o", tmp_path / "scores.csv")
    assert_stale(code, out, err)
    assert list(tmp_path.iterdir()) == []
    code, _, err = run("score", "-t", data / "tx.csv", "--as-of", STALE, "--model", bundle,
                       "-o", tmp_path / "scores.csv", "--max-staleness-days", str(STALE_GAP))
    assert code == 0, err


def test_stale_serve_is_refused_before_serving(data: Path, bundle: Path) -> None:
    with socket.socket() as probe:  # a free port: the port is taken before the loading
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, out, err = run("serve", "-t", data / "tx.csv", "--as-of", STALE, "--model", bundle,
                         "--port", port)
    assert_stale(code, out, err)


@pytest.mark.slow
def test_stale_score_on_spark_is_refused(data: Path, bundle: Path, tmp_path: Path) -> None:
    pytest.importorskip("pyspark")
    code, out, err = run("score", "-t", data / "tx.csv", "--as-of", STALE, "--model", bundle,
                         "-o", tmp_path / "scores.csv", "--engine", "spark")
    assert code == 2, err
    assert out == ""
    line = err.strip().splitlines()[-1]
    assert f"{STALE_GAP} days before the as-of date {STALE}" in line, err
    assert list(tmp_path.iterdir()) == []


# --- the library paths behind the commands ---------------------------------------------


def test_loader_refuses_stale_data_when_asked(data: Path) -> None:
    with pytest.raises(DataValidationError, match=f"end {DATA_END}, {STALE_GAP} days before"):
        churnlens.load_transactions(data / "tx.csv", as_of=STALE, max_staleness_days=7)
    # a tolerance as large as the gap, or no check (the loader's default), load
    churnlens.load_transactions(data / "tx.csv", as_of=STALE, max_staleness_days=STALE_GAP)
    churnlens.load_transactions(data / "tx.csv", as_of=STALE)


def test_score_file_refuses_stale_data(data: Path, bundle: Path) -> None:
    from churnlens._model_loader import load_model
    from churnlens._scoring import score_file

    artifact = load_model(str(bundle))
    with pytest.raises(DataValidationError, match=f"{STALE_GAP} days before the as-of"):
        score_file(data / "tx.csv", dt.date.fromisoformat(STALE), artifact)
    result = score_file(data / "tx.csv", dt.date.fromisoformat(WITHIN), artifact)
    assert len(result.scores) > 0
