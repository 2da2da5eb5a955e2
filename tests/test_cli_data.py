"""The ``churnlens`` CLI shell: help, version, and ``validate``'s two outputs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from churnlens import CleaningReport, __version__, load_transactions
from churnlens.cli import app

# The JSON keys of `validate --json` are an interface: scripts depend on them.
REPORT_KEYS = {
    "source", "rows_read", "rows_kept", "rows_dropped", "dropped_missing_customer_id",
    "dropped_after_as_of", "dropped_duplicates", "duplicate_rows", "refund_rows",
    "refund_total", "zero_amount_rows", "timestamps_converted_to_utc", "customers",
    "first_day", "last_day", "as_of",
}


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


def test_help_lists_commands(cli: CliRunner) -> None:
    result = cli.invoke(app, ["--help"])
    assert result.exit_code == 0
    for word in ("generate", "validate", "--version", "Usage: churnlens"):
        assert word in result.stdout


def test_no_arguments_shows_usage(cli: CliRunner) -> None:
    result = cli.invoke(app, [])
    assert "Usage: churnlens" in result.output
    assert "validate" in result.output


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("validate", ["--transactions", "--customer-col", "--time-col", "--amount-col",
                      "--time-format", "--as-of", "--json"]),
        ("generate", ["--out", "--customers", "--seed", "--start", "--end"]),
    ],
)
def test_command_help(cli: CliRunner, command: str, options: list[str]) -> None:
    result = cli.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    for option in options:
        assert option in result.stdout, option


def test_version(cli: CliRunner) -> None:
    result = cli.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"churnlens {__version__}\n"
    assert __version__ == "0.1.0" or __version__.count(".") >= 2


def test_validate_json_keys_and_values(golden_csv: Path, cli: CliRunner) -> None:
    result = cli.invoke(app, ["validate", "-t", str(golden_csv), "--json", "--as-of", "2024-03-31"])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1  # one JSON object on one line, nothing else
    out = json.loads(result.stdout)
    assert set(out) == REPORT_KEYS
    assert set(out) == {f.name for f in dataclasses.fields(CleaningReport)} | {"rows_dropped"}
    assert out["source"] == str(golden_csv)
    assert out["rows_read"] == 11
    assert out["rows_kept"] == 7  # rows on or before 2024-03-31
    assert out["dropped_after_as_of"] == out["rows_dropped"] == 4
    assert out["customers"] == 5  # A, B, C, E, F; D arrives later
    assert out["duplicate_rows"] == 0 and out["refund_rows"] == 0
    assert out["refund_total"] == 0.0
    assert (out["first_day"], out["last_day"], out["as_of"]) == (
        "2023-06-01", "2024-03-25", "2024-03-31")
    assert out == load_transactions(golden_csv, as_of="2024-03-31").report.to_dict()


def test_validate_json_without_as_of(golden_csv: Path, cli: CliRunner) -> None:
    out = json.loads(cli.invoke(app, ["validate", "-t", str(golden_csv), "--json"]).stdout)
    assert out["as_of"] is None and out["rows_kept"] == 11 and out["customers"] == 6


def test_validate_table(golden_csv: Path, cli: CliRunner) -> None:
    result = cli.invoke(app, ["validate", "--transactions", str(golden_csv)])
    assert result.exit_code == 0, result.output
    assert "cleaning report" in result.stdout
    report = load_transactions(golden_csv).report
    rows = {line.strip("│ ").split("│")[0].strip(): line for line in result.stdout.splitlines()
            if "│" in line}
    for label, value in report.lines():
        assert label in rows, label
        if label != "source":  # a long path may wrap inside its cell
            assert value in rows[label], (label, value, rows[label])
    assert "valid: the file meets the transaction contract." in result.stdout


def test_validate_with_column_flags(tmp_path: Path, cli: CliRunner) -> None:
    path = tmp_path / "export.csv"
    path.write_text("user_id,order_date,price\n0042,2024-01-05,9.5\n0042,2024-01-06,-1\n")
    result = cli.invoke(app, ["validate", "-t", str(path), "--customer-col", "user_id",
                              "--time-col", "order_date", "--amount-col", "price", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["customers"] == 1 and out["refund_rows"] == 1 and out["refund_total"] == 1.0


def test_validate_usage_errors_exit_2(tmp_path: Path, cli: CliRunner) -> None:
    result = cli.invoke(app, ["validate"])
    assert result.exit_code == 2 and "Missing option '--transactions'" in result.stderr
    result = cli.invoke(app, ["validate", "-t", "x.csv", "--no-such-flag"])
    assert result.exit_code == 2 and "No such option" in result.stderr
    result = cli.invoke(app, ["generate", "--out", str(tmp_path / "t.csv"), "--customers", "many"])
    assert result.exit_code == 2 and "Invalid value for '--customers'" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_validate_bad_as_of_exit_2(golden_csv: Path, cli: CliRunner) -> None:
    result = cli.invoke(app, ["validate", "-t", str(golden_csv), "--as-of", "31st of March"])
    assert result.exit_code == 2, result.exception
    assert result.stderr.startswith("error: --as-of: '31st of March'")
    assert "Suggestion: use ISO format" in result.stderr


def test_paths_are_printed_as_written(tmp_path: Path, cli: CliRunner) -> None:
    """Rich must not read "[/b]" in a path as markup (a crash) or ":smile:" as an emoji."""
    folder = tmp_path / "odd[" / "b]"  # the path reads .../odd[/b]/...
    folder.mkdir(parents=True)
    out = folder / "t:smile:.csv"
    result = cli.invoke(app, ["generate", "-n", "10", "--seed", "1", "-o", str(out)])
    assert result.exit_code == 0, result.exception
    assert f"to {out} in " in result.stdout
    result = cli.invoke(app, ["validate", "-t", str(out)], env={"COLUMNS": "1000"})
    assert result.exit_code == 0, result.exception
    assert str(out) in result.stdout and "😄" not in result.stdout


def test_error_values_are_printed_as_written(tmp_path: Path, cli: CliRunner) -> None:
    path = tmp_path / "tx.csv"
    path.write_text("customer_id,timestamp,amount\na,:smile:,1\n")
    result = cli.invoke(app, ["validate", "-t", str(path)])
    assert result.exit_code == 2
    assert "row 1 (line 2): ':smile:'" in result.stderr


# --- start-up, shared options ----------------------------------------------------------

READS_TRANSACTIONS = ("validate", "features", "retention", "cohorts", "train", "backtest",
                      "score", "serve")


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_start_up_imports_no_heavy_library(flag: str) -> None:
    # --version and --help must start fast: pandas alone takes about a second to import.
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from churnlens.cli import main\n"
        "try:\n"
        f"    main([{flag!r}])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (0, None), exc.code\n"
        "heavy = ('pandas', 'numpy', 'pyarrow', 'duckdb', 'sklearn', 'pydantic', 'mlflow')\n"
        "print('loaded:', *sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.splitlines()[-1] == "loaded:", done.stdout


@pytest.mark.parametrize("command", READS_TRANSACTIONS)
def test_every_command_reading_transactions_takes_the_shared_options(
        cli: CliRunner, command: str) -> None:
    result = cli.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for option in ("--transactions", "--config", "--customer-col", "--time-col",
                   "--amount-col", "--time-format"):
        assert option in result.stdout, (command, option)


def test_no_option_is_declared_twice() -> None:
    # A flag used by several commands is declared once, in cli/_options.py.
    import ast

    import churnlens.cli

    folder = Path(churnlens.cli.__file__).parent
    declared: dict[str, list[str]] = {}
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "Option"):
                for arg in node.args:
                    if isinstance(arg, ast.Constant) and str(arg.value).startswith("--"):
                        declared.setdefault(arg.value, []).append(path.name)
    repeated = {flag: files for flag, files in declared.items()
                if len(files) > 1 and set(files) != {"_options.py"}}
    assert repeated == {}, repeated
    assert declared["--customer-col"] == ["_options.py"]


def test_column_flags_default_to_the_config(tmp_path: Path, cli: CliRunner) -> None:
    path = tmp_path / "export.csv"
    path.write_text("user_id,order_date,price,customer_id\n0042,2024-01-05,9.5,x\n"
                    "0043,2024-01-06,-1,x\n")
    config = tmp_path / "columns.yaml"
    config.write_text("data:\n  customer_col: user_id\n  time_col: order_date\n"
                      "  amount_col: price\n")
    result = cli.invoke(app, ["validate", "-t", str(path), "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["customers"] == 2
    # a flag given wins over the file
    result = cli.invoke(app, ["validate", "-t", str(path), "--config", str(config), "--json",
                              "--customer-col", "customer_id"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["customers"] == 1
