"""The CLI's output is tidy (issue 16, "Offline and tidy").

- Tables fit a 100-column terminal: no header or value is cut with an ellipsis
  (``predict… actual…``); headers stack on several lines, wide tables print in parts.
- Progress lines carry no source tag (``_app.py:189``).
- ``serve`` takes its port before announcing anything: a busy port is one line and
  exit 2, never "serving on ..." and then exit 3.
- Every exit code the CLI uses is in the one table of docs/cli.md.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from api_support import wait_until_serving
from typer.testing import CliRunner

import churnlens
from churnlens.cli import app

SEED = 17
ROOT = Path(__file__).resolve().parents[1]
FAST = {"backtest_steps": 0, "snapshots": {"count": 6},
        "model": {"n_estimators": 40, "min_child_samples": 40, "early_stopping_rounds": 10}}
# a terminal 100 columns wide, without colours (so the text can be read back)
TERMINAL_100 = {"TTY_COMPATIBLE": "1", "NO_COLOR": "1", "COLUMNS": "100", "LINES": "50"}
SOURCE_TAG = re.compile(r"\b\w+\.py:\d+\b")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x1b\x07]*(?:\x07|\x1b\\)")
CHURNLENS = str(Path(sys.executable).with_name("churnlens"))


def run(*args: str | Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner(env=env).invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli_tidy")
    print(f"synthetic transactions seed: {SEED}")
    tx = churnlens.generate_transactions(1500, seed=SEED, start="2023-01-01", end="2024-12-31")
    tx.to_csv(folder / "tx.csv", index=False)
    (folder / "fast.yaml").write_text(yaml.safe_dump(FAST))
    return folder


@pytest.fixture(scope="module")
def trained(data: Path) -> tuple[Path, str]:
    """A bundle trained with --no-mlflow, and what train printed on stderr."""
    code, _, err = run("train", "-t", data / "tx.csv", "--as-of", "2024-09-30", "--config",
                       data / "fast.yaml", "--no-mlflow", "--bundle", data / "bundle")
    assert code == 0, err
    return data / "bundle", err


# --- tables at 100 columns ---------------------------------------------------------------


def plain(text: str) -> str:
    """``text`` without terminal escape sequences (bold, italics, links)."""
    return ANSI.sub("", text)


def assert_fits(out: str, width: int = 100) -> None:
    out = plain(out)
    assert out.strip(), "a table was printed"
    assert "…" not in out, out
    tables = [line for line in out.splitlines() if line[:1] in "┏┃┡│└"]
    assert tables, out
    assert max(len(line) for line in tables) <= width, out


@pytest.mark.parametrize("args", [
    ["retention", "--every", "month"],
    ["retention", "--every", "quarter", "--segment-col", "country"],
    ["retention", "--start", "2024-06-30", "--end", "2024-09-30"],
    ["retention", "--start", "2024-06-30", "--end", "2024-09-30", "--segment-col", "country"],
    ["cohorts"],
    ["cohorts", "--segment-col", "country"],
    ["validate"],
])
def test_tables_fit_100_columns(data: Path, args: list[str]) -> None:
    code, out, err = run(args[0], "-t", data / "tx.csv", *args[1:], env=TERMINAL_100)
    assert code == 0, err
    assert_fits(out)


def test_backtest_table_fits_100_columns(data: Path) -> None:
    """The issue's case: the backtest headers collapsed to ``predict… actual…``."""
    code, out, err = run("backtest", "-t", data / "tx.csv", "--as-of", "2024-06-30",
                         "--config", data / "fast.yaml", env=TERMINAL_100)
    assert code == 0, err
    assert_fits(out)
    out = plain(out)
    for word in ("auc", "brier", "lift", "decile", "predicted", "actual", "cohort",
                 "retention", "crr", "churnlens", "bgnbd", "logistic", "recency"):
        assert word in out, word


def test_cohort_months_are_stacked_not_cut(data: Path) -> None:
    code, out, err = run("cohorts", "-t", data / "tx.csv", env=TERMINAL_100)
    assert code == 0, err
    out = plain(out)
    months = set(re.findall(r"\bm(\d+)\b", out))
    assert months == {str(k) for k in range(24)}, sorted(months, key=int)
    assert "(1 of " in out


def test_piped_tables_are_whole(data: Path) -> None:
    """Into a file or a pipe a table is printed at its natural width, in one piece."""
    code, out, err = run("retention", "-t", data / "tx.csv", "--every", "quarter")
    assert code == 0, err
    assert "…" not in out and "(1 of" not in out
    assert "cohort retention" in out


def test_metrics_tables_fit_any_reasonable_width() -> None:
    from rich.console import Console

    from churnlens.cli._app import print_metrics

    keys = ("auc", "pr_auc", "brier", "log_loss", "lift_top_decile", "predicted_retention",
            "actual_retention", "predicted_cohort_retention", "actual_cohort_retention",
            "predicted_crr", "actual_crr")
    by_model = {name: {k: 12345.678 for k in keys}
                for name in ("churnlens", "bgnbd", "logistic", "recency")}
    for width in (60, 80, 100, 120):
        console = Console(width=width, force_terminal=True, no_color=True, record=True,
                          file=open(os.devnull, "w"))  # noqa: SIM115 (closed with the console)
        print_metrics(console, "backtest at 2024-06-30", by_model, keys)
        text = console.export_text()
        console.file.close()
        assert "…" not in text, (width, text)
        assert max(len(line) for line in text.splitlines()) <= width, (width, text)
        assert text.count("12345.678") == len(keys) * len(by_model), (width, text)


# --- progress lines ----------------------------------------------------------------------


def test_progress_lines_have_no_source_tag(trained: tuple[Path, str]) -> None:
    _, err = trained
    assert "fitting" in err or "training" in err, err
    tagged = [line for line in err.splitlines() if SOURCE_TAG.search(line)]
    assert tagged == [], tagged


@pytest.mark.parametrize("environment", [{}, TERMINAL_100])
def test_steps_print_no_source_tag(monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str],
                                   environment: dict[str, str]) -> None:
    from churnlens.cli._app import Steps

    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with Steps() as steps:
        steps("loading the model")
        steps("scoring 1,000 customers")
    err = capsys.readouterr().err
    assert "loading the model" in err and "scoring 1,000 customers" in err
    assert not SOURCE_TAG.search(plain(err)), err


# --- serve: the port first ---------------------------------------------------------------


def test_busy_port_is_one_line_and_exit_2(data: Path, trained: tuple[Path, str]) -> None:
    bundle, _ = trained
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = run("serve", "-t", data / "tx.csv", "--model", bundle, "--port",
                             port)
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: --port {port}: 127.0.0.1:{port} is already in use")
    assert "Suggestion:" in lines[0]
    assert "serving" not in out + err


@pytest.mark.slow
def test_serve_announces_then_serves_and_a_second_one_is_refused(
        data: Path, trained: tuple[Path, str]) -> None:
    """End to end through the console script: the port is taken before the loading,
    the announcement is true, and a second server on the same port is refused."""
    bundle, _ = trained
    port = free_port()
    command = [CHURNLENS, "serve", "-t", str(data / "tx.csv"), "--model", str(bundle),
               "--port", str(port)]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    try:
        wait_until_serving(first, port)
        second = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert second.returncode == 2, second.stderr
        assert second.stdout == ""
        assert second.stderr.strip().splitlines() == [
            line for line in second.stderr.strip().splitlines() if "already in use" in line]
        assert "serving" not in second.stderr
    finally:
        first.terminate()
        _, err = first.communicate(timeout=30)
    assert f"on http://127.0.0.1:{port}" in err, err


# --- exit codes: one table ---------------------------------------------------------------


def exit_code_table() -> dict[int, str]:
    """The exit-code table of docs/cli.md: {code: meaning}."""
    text = (ROOT / "docs" / "cli.md").read_text()
    section = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\|\s*`?(\d+)`?\s*\|\s*(.+?)\s*\|", section, flags=re.MULTILINE)
    return {int(code): meaning for code, meaning in rows}


def test_every_exit_code_is_in_the_one_table() -> None:
    from churnlens.cli import _app

    table = exit_code_table()
    promised = {value for name, value in vars(_app).items() if name.startswith("EXIT_")}
    assert promised == set(table), (promised, table)
    readme = (ROOT / "README.md").read_text()
    assert "docs/cli.md#exit-codes" in readme
