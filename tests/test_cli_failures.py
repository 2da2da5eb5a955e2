"""Every failure of every command: its exit status, one line on stderr, no output (issue 22).

``CORPUS`` lists odd inputs, unwritable outputs, bad config files and misleading
options, each through the real command line (typer's CliRunner). Every case must end
in the documented exit status (``churnlens.cli``: 2 bad input or options, 1 an
unexpected failure, 130 interrupted) with exactly one line on stderr that names the
problem and ends with a suggestion, no traceback, nothing on stdout, and no file
written anywhere in the working folder. Interruptions (Ctrl-C, SIGTERM) are tested in
process for DuckDB's "Query interrupted" and through the installed console script.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import typer
import yaml
from cli_support import run
from typer.testing import CliRunner

import churnlens
from churnlens._validation import PLAUSIBLE_DATES
from churnlens.cli import app
from churnlens.cli._app import DEBUG_ENV, handle_errors

SEED = 5
AS_OF = "2024-03-31"
FAST = {"backtest_steps": 0, "snapshots": {"count": 6},
        "model": {"n_estimators": 40, "min_child_samples": 40, "early_stopping_rounds": 10}}
# A folder no one can write in, root included (the tests may run as root).
UNWRITABLE = Path("/proc")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """Good inputs (transactions, a bundle) and the odd files the cases read."""
    folder = tmp_path_factory.mktemp("cli_failures")
    print(f"synthetic transactions seed: {SEED}")
    tx = churnlens.generate_transactions(600, seed=SEED, start="2023-01-01", end="2024-06-30")
    tx.to_parquet(folder / "tx.parquet", index=False)
    text = tx.to_csv(index=False)
    (folder / "tx.csv").write_text(text)
    packed = gzip.compress(text.encode(), mtime=0)
    (folder / "truncated.csv.gz").write_bytes(packed[: len(packed) // 2])
    (folder / "latin1.csv").write_bytes(
        text.encode() + "Zoë,2024-01-02 10:00:00,2.5,FR\n".encode("latin-1"))
    (folder / "semicolon.csv").write_text(text.replace(",", ";"))
    (folder / "excel.csv").write_text("customer_id,timestamp,amount\na,45000,1\nb,45017,2\n")
    (folder / "year1.csv").write_text("customer_id,timestamp,amount\na,2024-01-02,1\n"
                                      "b,0001-01-01,2\n")
    (folder / "year9999.csv").write_text("customer_id,timestamp,amount\na,2024-01-02,1\n"
                                         "b,9999-12-31,2\n")
    (folder / "a-file").write_text("not a folder\n")
    (folder / "a-folder.csv").mkdir()
    configs = {
        "latin1.yaml": "horizon_days: 30\n# région\n".encode("latin-1"),
        "duplicate.yaml": b"horizon_days: 30\nbacktest_steps: 0\nhorizon_days: 60\n",
        "bool-for-int.yaml": b"horizon_days: true\n",
        "text-for-int.yaml": b'horizon_days: "12"\n',
        "text-for-float.yaml": b'model:\n  learning_rate: "0.1"\n',
        "bool-in-list.yaml": b"features:\n  windows_days: [30, true]\n",
        "fast.yaml": yaml.safe_dump(FAST).encode(),
    }
    for name, body in configs.items():
        (folder / name).write_bytes(body)
    code, _, err = run(folder, "train", "-t", folder / "tx.parquet", "--as-of", AS_OF,
                       "--config", folder / "fast.yaml", "--no-mlflow", "--bundle",
                       folder / "bundle")
    assert code == 0, err
    return {path.name: path for path in folder.iterdir()}


@dataclasses.dataclass(frozen=True)
class Case:
    """A command line (``{name}`` = an input file, ``{out}`` = the working folder), its
    exit status, fragments its one line must hold, and fragments it must not."""

    id: str
    args: tuple[str, ...]
    code: int
    says: tuple[str, ...]
    never: tuple[str, ...] = ()


def case(id: str, args: str, code: int, *says: str, never: tuple[str, ...] = ()) -> Case:
    return Case(id, tuple(args.split()), code, says, never)


FEATURES = "features -t {tx.csv} --as-of 2024-03-31 -o {out}/features.parquet"
SCORE = "score -t {tx.parquet} --as-of 2024-04-30 --model {bundle} -o {out}/scores.csv"
TRAIN = "train -t {tx.parquet} --as-of 2024-03-31 --config {fast.yaml} --no-mlflow"
FIRST, LAST = (str(day) for day in PLAUSIBLE_DATES)

CORPUS = [
    # --- input -----------------------------------------------------------------------
    case("truncated-csv-gz", FEATURES.replace("{tx.csv}", "{truncated.csv.gz}"), 2,
         "truncated.csv.gz", "Truncated compressed stream", "again"),
    case("csv-not-utf-8", FEATURES.replace("{tx.csv}", "{latin1.csv}"), 2,
         "latin1.csv", "not UTF-8", "iconv"),
    case("time-format-epoch-seconds", FEATURES + " --time-format %s", 2,
         "'%s'", "--time-format", "not supported", never=("Expected",)),
    case("time-format-stray-percent", FEATURES + " --time-format %Y-%", 2,
         "--time-format", "stray %"),
    case("excel-serial-dates", FEATURES.replace("{tx.csv}", "{excel.csv}"), 2,
         "'45000'", "Excel serial day numbers", "origin='1899-12-30'", never=("%d/%m/%Y",)),
    case("semicolon-delimited", FEATURES.replace("{tx.csv}", "{semicolon.csv}"), 2,
         "separated by ';'", "--delimiter ';'", never=("missing required", "rename")),
    case("delimiter-not-one-character", FEATURES + " --delimiter ;;", 2,
         "--delimiter", "at most 1 character", never=("defaults",)),
    case("model-is-a-parquet-file", SCORE.replace("{bundle}", "{tx.parquet}"), 2,
         "tx.parquet", "not a churnlens model bundle or model URI", never=("JSON",)),
    case("serve-model-is-a-parquet-file",
         "serve -t {tx.parquet} --model {tx.parquet} --port 8765", 2,
         "not a churnlens model bundle or model URI"),
    case("dates-in-year-1", FEATURES.replace("{tx.csv}", "{year1.csv}"), 2,
         "'0001-01-01'", f"outside the supported range {FIRST} .. {LAST}"),
    case("dates-in-year-9999-after-the-as-of", FEATURES.replace("{tx.csv}", "{year9999.csv}"),
         2, "'9999-12-31'", f"outside the supported range {FIRST} .. {LAST}"),
    case("validate-dates-in-year-9999", "validate -t {year9999.csv}", 2, "'9999-12-31'"),
    case("as-of-in-year-9999", SCORE.replace("2024-04-30", "9999-12-31"), 2,
         "--as-of", f"outside the supported dates {FIRST} .. {LAST}"),
    case("as-of-in-year-1", FEATURES.replace("2024-03-31", "0001-01-01"), 2,
         "--as-of", "outside the supported dates"),
    # --- outputs, checked before the work starts ----------------------------------------
    case("out-folder-missing", FEATURES.replace("{out}/", "{out}/missing/"), 2,
         "does not exist"),
    case("out-folder-is-a-file", FEATURES.replace("{out}/", "{a-file}/"), 2,
         "is a file, not a folder"),
    case("out-folder-not-writable", FEATURES.replace("{out}", str(UNWRITABLE)), 2,
         "cannot write in the folder /proc"),
    case("score-out-not-writable", SCORE.replace("{out}", str(UNWRITABLE)), 2,
         "cannot write in the folder"),
    case("score-out-is-a-folder", SCORE.replace("{out}/scores.csv", "{a-folder.csv}"), 2,
         "a-folder.csv is a directory"),
    case("train-report-into-a-missing-folder", TRAIN + " --report {out}/missing/r.html", 2,
         "missing/r.html", "does not exist"),
    case("train-report-not-writable", TRAIN + f" --report {UNWRITABLE}/r.html", 2,
         "cannot write"),
    case("train-bundle-onto-a-file", TRAIN + " --bundle {a-file}", 2,
         "a-file is a file, not a folder"),
    case("export-onto-a-file", "export --model {bundle} --to {a-file}", 2,
         "is a file, not a folder"),
    case("demo-out-onto-a-file", "demo --out {a-file}", 2, "is a file, not a folder"),
    case("generate-out-not-writable", f"generate -n 10 -o {UNWRITABLE}/tx.csv", 2,
         "cannot write"),
    case("retention-csv-not-writable",
         f"retention -t {{tx.csv}} --start 2024-01-31 --end 2024-03-31 --csv "
         f"{UNWRITABLE}/rates.csv", 2, "cannot write"),
    case("at-risk-out-missing-folder",
         "at-risk --scores {tx.parquet} -o {out}/missing/list.csv", 2, "does not exist"),
    # --- config files ----------------------------------------------------------------
    case("config-not-utf-8", FEATURES + " --config {latin1.yaml}", 2,
         "latin1.yaml", "not UTF-8"),
    case("config-duplicate-key", FEATURES + " --config {duplicate.yaml}", 2,
         "duplicate.yaml", "'horizon_days' appears twice", "lines 1 and 3"),
    case("config-bool-for-int", TRAIN.replace("{fast.yaml}", "{bool-for-int.yaml}"), 2,
         "bool-for-int.yaml", "horizon_days", "valid integer", "True"),
    case("config-text-for-int", TRAIN.replace("{fast.yaml}", "{text-for-int.yaml}"), 2,
         "text-for-int.yaml", "horizon_days", "'12'"),
    case("config-text-for-float", FEATURES + " --config {text-for-float.yaml}", 2,
         "text-for-float.yaml", "model.learning_rate", "'0.1'"),
    case("config-bool-in-a-list", FEATURES + " --config {bool-in-list.yaml}", 2,
         "bool-in-list.yaml", "features.windows_days"),
    # --- options whose messages used to mislead ------------------------------------------
    case("train-horizon-negative", TRAIN + " --horizon-days -5", 2,
         "--horizon-days: -5 is not a positive whole number", never=("defaults",)),
    case("score-horizon-negative", SCORE + " --horizon-days -5", 2,
         "--horizon-days: -5 is not a positive whole number", never=("trained for",)),
    case("backtest-horizon-zero",
         "backtest -t {tx.parquet} --as-of 2024-03-31 --horizon-days 0", 2,
         "--horizon-days: 0"),
    case("generate-customers-negative", "generate -n -5 -o {out}/tx.csv", 2,
         "--customers: -5", never=("n_customers",)),
    case("demo-customers-zero", "demo -n 0 --out {out}/demo", 2, "--customers: 0"),
    case("retention-window-negative", "retention -t {tx.csv} --start 2024-01-31 --end "
         "2024-03-31 --window-days -5", 2, "--window-days: -5", never=("window_days",)),
    case("features-windows-negative", FEATURES + " --windows-days 30,-5", 2,
         "--windows-days: -5", never=("windows_days",)),
    case("bad-flag-value-over-a-good-config", FEATURES + " --config {fast.yaml} "
         "--delimiter ab", 2, "--delimiter", never=("fast.yaml", "defaults")),
]


def _expand(args: tuple[str, ...], inputs: dict[str, Path], out: Path) -> list[str]:
    expanded = []
    for arg in args:
        arg = arg.replace("{out}", str(out))
        for name, path in inputs.items():
            arg = arg.replace("{" + name + "}", str(path))
        assert "{" not in arg, arg
        expanded.append(arg)
    return expanded


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_corpus_is_well_formed() -> None:
    assert len({c.id for c in CORPUS}) == len(CORPUS) >= 35
    assert all(c.says for c in CORPUS)


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.id)
def test_every_failure_is_one_line_and_leaves_nothing(case: Case, inputs, tmp_path) -> None:
    before_inputs = listing(inputs["tx.csv"].parent)
    args = _expand(case.args, inputs, tmp_path)
    code, out, err = run(tmp_path, *args)
    assert code == case.code, (args, out, err)
    lines = err.splitlines()
    assert out == ""
    assert len(lines) == 1, err  # one line: nothing before it (checked before any work)
    line = lines[0]
    assert line.startswith("error: ") and "Suggestion:" in line, line
    assert "Traceback" not in err
    for fragment in case.says:
        assert fragment in line, (fragment, line)
    for fragment in case.never:
        assert fragment not in line, (fragment, line)
    assert listing(tmp_path) == set()  # no output, no temporary file
    assert listing(inputs["tx.csv"].parent) == before_inputs


def test_a_flag_wins_over_a_good_config_and_a_bad_flag_is_blamed(inputs, tmp_path) -> None:
    code, _, err = run(tmp_path, *_expand(tuple((TRAIN + " --horizon-days 5000").split()),
                                          inputs, tmp_path))
    assert code == 2
    assert "invalid configuration in the options given (--horizon-days" in err
    assert "--horizon-days: Input should be less than or equal to 3660" in err
    assert "fast.yaml" not in err and "defaults" not in err


def test_unexpected_failure_exits_1_with_one_line(inputs, tmp_path, monkeypatch) -> None:
    import churnlens._features as features_module

    def broken(*args, **kwargs):
        raise TypeError("boom\nsecond line")

    # the features command's SQL step (out of core: it runs in DuckDB on the file)
    monkeypatch.setattr(features_module, "create_features_table", broken)
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    code, out, err = run(tmp_path, *_expand(tuple(FEATURES.split()), inputs, tmp_path))
    assert code == 1 and out == ""
    assert err.splitlines() == [
        f"error: unexpected failure (TypeError: boom second line); no output was written. "
        f"Suggestion: run again with {DEBUG_ENV}=1 to see the traceback, and report it if "
        "the input looks right."]
    assert listing(tmp_path) == set()
    monkeypatch.setenv(DEBUG_ENV, "1")  # the traceback on request
    result = CliRunner().invoke(app, _expand(tuple(FEATURES.split()), inputs, tmp_path))
    assert result.exit_code == 1 and isinstance(result.exception, TypeError)


def test_unexpected_failure_hides_uri_passwords(inputs, tmp_path, monkeypatch) -> None:
    import churnlens._features as features_module

    def broken(*args, **kwargs):
        raise OSError("cannot reach postgresql://analyst:s3cret@db.internal/mlflow")

    # the features command's SQL step (out of core: it runs in DuckDB on the file)
    monkeypatch.setattr(features_module, "create_features_table", broken)
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    code, _, err = run(tmp_path, *_expand(tuple(FEATURES.split()), inputs, tmp_path))
    assert code == 1 and len(err.splitlines()) == 1
    assert "s3cret" not in err and "postgresql://analyst:" in err


# --- interruption ----------------------------------------------------------------------


def _signal_soon(signum: int, delay: float) -> threading.Timer:
    timer = threading.Timer(delay, os.kill, (os.getpid(), signum))
    timer.start()
    return timer


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_inside_the_duckdb_feature_query_exits_130(signum, capsys) -> None:
    """DuckDB turns a signal during a query into RuntimeError("Query interrupted"): the
    CLI must still report an interruption (130), not an unexpected failure (1)."""
    from churnlens._features import compute_features

    tx = churnlens.generate_transactions(20_000, seed=SEED, start="2022-01-01",
                                         end="2024-06-30")
    seen: list[BaseException] = []

    @handle_errors
    def command() -> None:
        try:
            while True:  # the signal lands inside the query most of the time
                compute_features(tx, AS_OF)
        except BaseException as exc:
            seen.append(exc)
            raise

    for attempt in range(8):
        seen.clear()
        timer = _signal_soon(signum, 0.05 + 0.07 * attempt)
        with pytest.raises(typer.Exit) as stopped:
            command()
        timer.join()
        assert stopped.value.exit_code == 130
        assert capsys.readouterr().err.splitlines() == ["interrupted; no output was written."]
        if isinstance(seen[0], RuntimeError):
            assert "interrupted" in str(seen[0]).lower()
            break
    else:
        pytest.fail(f"the signal never landed inside DuckDB: {seen!r}")


def test_duckdb_interruption_without_a_recorded_signal_is_still_130(capsys) -> None:
    @handle_errors
    def command() -> None:
        raise RuntimeError("Query interrupted")

    with pytest.raises(typer.Exit) as stopped:
        command()
    assert stopped.value.exit_code == 130
    assert "Traceback" not in capsys.readouterr().err


def _console_script() -> list[str]:
    script = Path(sys.executable).with_name("churnlens")
    return [sys.executable, str(script)] if script.exists() else [
        sys.executable, "-c", "from churnlens.cli import main; main()"]


@pytest.fixture(scope="module")
def big_transactions(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli_interrupt")
    tx = churnlens.generate_transactions(60_000, seed=SEED, start="2020-01-01",
                                         end="2024-06-30")
    path = folder / "big.parquet"
    tx.to_parquet(path, index=False)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_console_script_interrupted_at_any_phase(signum, big_transactions, tmp_path) -> None:
    """A real ``churnlens features`` run stopped early, midway and late (start-up, loading,
    the DuckDB query, writing): always 130, one line, no traceback, no output."""
    command = [*_console_script(), "features", "-t", str(big_transactions), "--as-of", AS_OF,
               "-o", str(tmp_path / "features.parquet")]
    began = time.perf_counter()
    full = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    duration = time.perf_counter() - began
    assert full.returncode == 0, full.stderr
    (tmp_path / "features.parquet").unlink()
    print(f"a full run takes {duration:.1f} s")
    for fraction in (0.3, 0.55, 0.75, 0.9):
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, cwd=tmp_path)
        time.sleep(duration * fraction)
        process.send_signal(signum)
        out, err = process.communicate(timeout=120)
        if "wrote features" in out:  # the work was done before the signal came
            assert process.returncode in (0, 130, -signum), (fraction, err)
            assert len(pd.read_parquet(tmp_path / "features.parquet")) > 0  # complete
            (tmp_path / "features.parquet").unlink()
            continue
        assert process.returncode == 130, (fraction, err)
        assert out == ""
        if listing(tmp_path) == set():
            assert err.splitlines() == ["interrupted; no output was written."], (fraction, err)
        else:  # the signal came after the rename: the message says so, the file is whole
            target = tmp_path / "features.parquet"
            assert listing(tmp_path) == {"features.parquet"}, fraction
            assert err.splitlines() == [f"interrupted after writing {target} (complete); "
                                        "nothing else was written."], (fraction, err)
            assert len(pd.read_parquet(target)) > 0
            target.unlink()
