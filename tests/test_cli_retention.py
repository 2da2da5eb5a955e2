"""``churnlens retention`` and ``churnlens cohorts``: outputs, files and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import GOLDEN_T0, GOLDEN_T1
from typer.testing import CliRunner

from churnlens import generate_transactions
from churnlens.cli import app

# The JSON keys of `retention --json` are an interface: scripts depend on them.
KEYS = ["start", "end", "window_days", "S", "E", "N", "reactivated", "crr",
        "cohort_retention", "churn_rate", "repeat_rate", "simple_ratio"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


@pytest.fixture
def segmented_csv(tmp_path: Path) -> Path:
    path = tmp_path / "tx.csv"
    generate_transactions(300, seed=5, start="2023-01-01", end="2023-12-31").to_csv(
        path, index=False)
    return path


def run(cli: CliRunner, *args: str | Path) -> tuple[int, str, str]:
    result = cli.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_golden_json_exactly(cli: CliRunner, golden_csv: Path) -> None:
    code, out, _ = run(cli, "retention", "--transactions", golden_csv, "--start", GOLDEN_T0,
                       "--end", GOLDEN_T1, "--json")
    assert code == 0
    payload = json.loads(out)  # exactly one JSON object on stdout
    assert list(payload) == KEYS
    assert payload == {
        "start": "2024-03-31", "end": "2024-06-30", "window_days": 91,
        "S": 3, "E": 4, "N": 1, "reactivated": 2,
        "crr": 100.0, "cohort_retention": 100 / 3, "churn_rate": 100 - 100 / 3,
        "repeat_rate": 60.0, "simple_ratio": 400 / 3,
    }


def test_json_null_for_zero_denominator(cli: CliRunner, golden_csv: Path) -> None:
    code, out, _ = run(cli, "retention", "-t", golden_csv, "--start", "2023-01-01",
                       "--end", "2023-03-31", "--json", "--window-days", "30")
    assert code == 0
    payload = json.loads(out)
    assert payload["window_days"] == 30
    assert all(payload[k] is None for k in ("crr", "cohort_retention", "churn_rate",
                                            "repeat_rate", "simple_ratio"))


def test_table_explains_every_rate(cli: CliRunner, golden_csv: Path) -> None:
    code, out, err = run(cli, "retention", "--transactions", golden_csv, "--start", GOLDEN_T0,
                         "--end", GOLDEN_T1)
    assert code == 0
    for text in ("crr", "100.00%", "33.33%", "cohort_retention", "repeat_rate", "60.00%",
                 "(E - N) / S", "still active at the end"):
        assert text in out, text
    # the data ends 2024-05-20, before the period end: said on stderr, not hidden
    assert "2024-05-20" in err


def test_csv_of_one_period(cli: CliRunner, golden_csv: Path, tmp_path: Path) -> None:
    out_csv = tmp_path / "rates.csv"
    code, _, _ = run(cli, "retention", "-t", golden_csv, "--start", GOLDEN_T0,
                     "--end", GOLDEN_T1, "--csv", out_csv)
    assert code == 0
    frame = pd.read_csv(out_csv)
    assert list(frame.columns) == KEYS
    assert frame.loc[0, "crr"] == 100.0 and frame.loc[0, "S"] == 3


def test_series_json_csv_and_plot(cli: CliRunner, golden_csv: Path, tmp_path: Path) -> None:
    out_csv, out_png = tmp_path / "series.csv", tmp_path / "crr.png"
    code, out, _ = run(cli, "retention", "-t", golden_csv, "--every", "quarter", "--json",
                       "--csv", out_csv, "--plot", out_png)
    assert code == 0
    payload = json.loads(out)
    assert payload["every"] == "quarter" and payload["window_days"] is None
    periods = payload["periods"]
    assert [p["period"] for p in periods] == ["2023Q2", "2023Q3", "2023Q4", "2024Q1", "2024Q2"]
    assert [p["complete"] for p in periods] == [False, False, True, True, False]
    assert set(KEYS) <= set(periods[-1]) and periods[-1]["crr"] == 100.0
    assert len(pd.read_csv(out_csv)) == 5
    assert out_png.read_bytes()[:8] == PNG_MAGIC


def test_series_table(cli: CliRunner, golden_csv: Path) -> None:
    code, out, _ = run(cli, "retention", "-t", golden_csv, "--every", "28d",
                       "--start", "2024-03-01", "--end", "2024-05-20")
    assert code == 0
    assert "2024-04-23..2024-05-20" in out and "crr" in out


def test_segments(cli: CliRunner, segmented_csv: Path) -> None:
    code, out, _ = run(cli, "retention", "-t", segmented_csv, "--start", "2023-06-30",
                       "--end", "2023-09-30", "--segment-col", "country", "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["segment_col"] == "country" and payload["window_days"] == 92
    segments = {row["country"]: row for row in payload["segments"]}
    assert set(segments) == {"DE", "FR", "GB", "NL", "US"}
    total = json.loads(run(cli, "retention", "-t", segmented_csv, "--start", "2023-06-30",
                           "--end", "2023-09-30", "--json")[1])
    assert sum(row["S"] for row in segments.values()) == total["S"]
    code, out, _ = run(cli, "retention", "-t", segmented_csv, "--every", "quarter",
                       "--segment-col", "country")
    assert code == 0 and "country" in out
    # a period before any customer: no segments, still one well-formed object
    code, out, _ = run(cli, "retention", "-t", segmented_csv, "--start", "2020-01-01",
                       "--end", "2020-02-01", "--segment-col", "country", "--json")
    assert code == 0
    assert json.loads(out) == {"start": "2020-01-01", "end": "2020-02-01", "window_days": 31,
                               "segment_col": "country", "segments": []}


def test_cohorts_by_segment(cli: CliRunner, segmented_csv: Path, tmp_path: Path) -> None:
    out_png, out_csv = tmp_path / "c.png", tmp_path / "c.csv"
    code, _, _ = run(cli, "cohorts", "-t", segmented_csv, "--segment-col", "country",
                     "--out", out_png, "--csv", out_csv)
    assert code == 0 and out_png.read_bytes()[:8] == PNG_MAGIC
    table = pd.read_csv(out_csv)
    assert list(table.columns[:3]) == ["country", "cohort", "cohort_size"]
    assert table["cohort_size"].sum() == 300


def test_cohorts_png_and_csv(cli: CliRunner, golden_csv: Path, tmp_path: Path) -> None:
    out_png, out_csv = tmp_path / "cohorts.png", tmp_path / "cohorts.csv"
    code, out, _ = run(cli, "cohorts", "--transactions", golden_csv, "--out", out_png,
                       "--csv", out_csv)
    assert code == 0
    assert out_png.read_bytes()[:8] == PNG_MAGIC
    table = pd.read_csv(out_csv, dtype={"cohort": str})
    assert list(table.columns[:4]) == ["cohort", "cohort_size", "0", "1"]
    assert table["cohort"].iloc[0] == "2023-06" and table["cohort_size"].sum() == 6
    assert str(out_png) in out


def test_cohorts_print_and_json(cli: CliRunner, golden_csv: Path) -> None:
    code, out, _ = run(cli, "cohorts", "-t", golden_csv)
    assert code == 0 and "2023-11" in out and "m5" in out
    code, out, _ = run(cli, "cohorts", "-t", golden_csv, "--json")
    rows = json.loads(out)["cohorts"]
    assert rows[0]["cohort"] == "2023-06" and rows[0]["0"] == 100.0 and rows[1]["0"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", GOLDEN_T1, "--end", GOLDEN_T0], "must be after start"),
        (["--start", "2024-02-30", "--end", GOLDEN_T1], "not a calendar day"),
        (["--start", GOLDEN_T0], "--start and --end"),
        (["--every", "week"], "every must be one of"),
        (["--start", GOLDEN_T0, "--end", GOLDEN_T1, "--window-days", "0"], "--window-days: 0"),
        (["--start", GOLDEN_T0, "--end", GOLDEN_T1, "--segment-col", "country"], "country"),
        (["--start", GOLDEN_T0, "--end", GOLDEN_T1, "--plot", "x.png"], "--plot"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    cli: CliRunner, golden_csv: Path, tmp_path: Path, args: list[str], message: str,
) -> None:
    out_csv = tmp_path / "out.csv"
    code, out, err = run(cli, "retention", "-t", golden_csv, *args, "--csv", out_csv)
    assert code == 2, (out, err)
    assert message in err
    assert "Traceback" not in err and out == ""
    assert not out_csv.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["golden.csv"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "cohorts.jpg"], "unsupported output type"),
        (["--csv", "cohorts.parquet"], "unsupported output type"),
        (["--out", "no/such/folder/c.png"], "does not exist"),
        (["--end", "not-a-date", "--out", "cohorts.png"], "cannot read"),
    ],
)
def test_cohorts_bad_input_exits_2_and_writes_nothing(
    cli: CliRunner, golden_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    args: list[str], message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(cli, "cohorts", "-t", golden_csv, *args)
    assert code == 2
    assert message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["golden.csv"]


def test_missing_file_exits_2(cli: CliRunner, tmp_path: Path) -> None:
    code, _, err = run(cli, "retention", "-t", tmp_path / "nope.csv", "--start", GOLDEN_T0,
                       "--end", GOLDEN_T1)
    assert code == 2 and "no such file" in err


def test_help_lists_the_options(cli: CliRunner) -> None:
    result = cli.invoke(app, ["retention", "--help"])
    for option in ("--transactions", "--start", "--end", "--every", "--window-days",
                   "--segment-col", "--csv", "--plot", "--json", "--customer-col", "--as-of"):
        assert option in result.stdout, option
    result = cli.invoke(app, ["cohorts", "--help"])
    for option in ("--transactions", "--out", "--csv", "--segment-col", "--end"):
        assert option in result.stdout, option
