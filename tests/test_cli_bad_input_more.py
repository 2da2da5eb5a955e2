"""More bad inputs through the command line: each exits 2 with one clear line, no
traceback, and leaves every file as it was (see also test_cli_failures.py).

Cases: an output path that is one of the command's own inputs (it used to be replaced
by the output), Parquet columns of nested values (a crash, or ids silently turned into
text), an unusable ``engine.temp_directory`` (a crash), hints for missing columns that
could not be followed (a name with spaces, an option other than the three column flags),
compressed or UTF-16 files named ``.csv``, a folder given as ``--config``, ``at-risk``
options named by their flags, scores and campaign lists that are empty, compressed or
folders, an unknown ``runs:/`` id and an unreachable tracking server, and the unit of
epoch timestamps in Parquet.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shlex
import socket
import time
import zipfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_support import hand_scores, run

import churnlens
from churnlens._io import write_table
from churnlens.exceptions import ChurnlensError

SEED = 11


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Transactions (CSV and Parquet) and scores-like Parquet, all small."""
    root = tmp_path_factory.mktemp("bad_input_more")
    print(f"synthetic transactions seed: {SEED}")
    tx = churnlens.generate_transactions(200, seed=SEED, start="2023-01-01", end="2024-06-30")
    tx.to_csv(root / "tx.csv", index=False)
    tx.to_parquet(root / "tx.parquet", index=False)
    return root


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden temporaries included) with its content's hash."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def one_error_line(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Suggestion:" in lines[0], lines[0]
    return lines[0]


def the_error_line(code: int, err: str) -> str:
    """As :func:`one_error_line`, for a command that says what it is loading first."""
    errors = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err
    return one_error_line(code, errors[0])


# --- an output that is one of the inputs ----------------------------------------------

SAME_FILE = {
    "score": "score -t {work}/tx.csv --as-of 2024-04-30 --model {work}/no-model "
             "-o {work}/tx.csv",
    "score-through-another-path": "score -t {work}/tx.csv --as-of 2024-04-30 "
                                  "--model {work}/no-model -o {work}/./sub/../tx.csv",
    "score-glob": "score -t {work}/t*.csv --as-of 2024-04-30 --model {work}/no-model "
                  "-o {work}/tx.csv",
    "score-link": "score -t {work}/link.csv --as-of 2024-04-30 --model {work}/no-model "
                  "-o {work}/tx.csv",
    "score-customers-file": "score -t {work}/tx.parquet --as-of 2024-04-30 --model "
                            "{work}/no-model --customers-file {work}/tx.csv -o {work}/tx.csv",
    "features": "features -t {work}/tx.parquet --as-of 2024-03-31 -o {work}/tx.parquet",
    "retention-csv": "retention -t {work}/tx.csv --every quarter --csv {work}/tx.csv",
    "cohorts-csv": "cohorts -t {work}/tx.csv --csv {work}/tx.csv",
    "at-risk": "at-risk --scores {work}/tx.parquet --all -o {work}/tx.parquet",
}


@pytest.mark.parametrize("case", sorted(SAME_FILE))
def test_an_output_that_is_an_input_is_refused_and_the_input_kept(case, folder, tmp_path
                                                                   ) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "sub").mkdir()
    for name in ("tx.csv", "tx.parquet"):
        (work / name).write_bytes((folder / name).read_bytes())
    (work / "link.csv").symlink_to(work / "tx.csv")
    before = snapshot(work)
    args = shlex.split(SAME_FILE[case].format(work=work))
    line = one_error_line(*run(tmp_path, *args)[::2])
    flag = {"score-customers-file": "--customers-file", "at-risk": "--scores"}.get(
        case, "--transactions")
    assert f"is also the input file of {flag}" in line, line
    assert "another output file name" in line
    assert snapshot(work) == before  # the input intact, no temporary file


def test_an_output_beside_the_input_is_written(folder, tmp_path) -> None:
    (tmp_path / "tx.csv").write_bytes((folder / "tx.csv").read_bytes())
    code, _, err = run(tmp_path, "cohorts", "-t", "tx.csv", "--csv", "cohorts.csv")
    assert code == 0, err
    assert (tmp_path / "cohorts.csv").is_file()


# --- Parquet columns of nested values -------------------------------------------------


def _nested(folder: Path, path: Path, role: str, values: pa.Array, *,
            pandas_metadata: bool) -> Path:
    tx = pd.read_parquet(folder / "tx.parquet")
    if pandas_metadata:  # as pandas writes it: the schema says customer_id is text
        table = pa.Table.from_pandas(tx, preserve_index=False)
    else:
        table = pa.table({c: pa.array(tx[c].astype(object) if c == "customer_id" else tx[c])
                          for c in ("customer_id", "timestamp", "amount")})
    position = table.schema.get_field_index(role)
    pq.write_table(table.set_column(position, role, values), path)
    return path


@pytest.mark.parametrize(("role", "kind", "pandas_metadata"), [
    ("customer_id", "struct", True),  # used to crash: exit 1, ArrowNotImplementedError
    ("customer_id", "struct", False),  # used to pass: ids such as "{'a': 3}"
    ("customer_id", "list", False),
    ("amount", "struct", False),
    ("timestamp", "list", False),
])
@pytest.mark.parametrize("command", ["validate", "features"])
def test_a_nested_parquet_column_is_refused(role, kind, pandas_metadata, command, folder,
                                            tmp_path) -> None:
    rows = len(pd.read_parquet(folder / "tx.parquet"))
    values = (pa.array([{"a": i % 40} for i in range(rows)]) if kind == "struct"
              else pa.array([[i % 40] for i in range(rows)]))
    path = _nested(folder, tmp_path / "nested.parquet", role, values,
                   pandas_metadata=pandas_metadata)
    args = ["validate", "-t", path] if command == "validate" else [
        "features", "-t", path, "--as-of", "2024-03-31", "-o", tmp_path / "features.csv"]
    before = snapshot(tmp_path)
    line = one_error_line(*run(tmp_path, *args)[::2])
    assert f"column {role!r} in" in line and "nested values" in line, line
    assert kind in line
    flag = {"customer_id": "--customer-col", "timestamp": "--time-col",
            "amount": "--amount-col"}[role]
    assert flag in line
    assert snapshot(tmp_path) == before


def test_a_nested_column_not_read_is_ignored(folder, tmp_path) -> None:
    table = pq.read_table(folder / "tx.parquet")
    rows = table.num_rows
    pq.write_table(table.append_column("extra", pa.array([{"a": 1}] * rows)),
                   tmp_path / "extra.parquet")
    code, _, err = run(tmp_path, "validate", "-t", "extra.parquet")
    assert code == 0, err


# --- engine.temp_directory ------------------------------------------------------------


@pytest.mark.parametrize("where", ["missing-parent-on-proc", "a-file"])
@pytest.mark.parametrize("command", ["validate", "features"])
def test_an_unusable_spill_folder_is_bad_input(where, command, folder, tmp_path) -> None:
    spill = "/proc/churnlens-no-such/spill" if where != "a-file" else str(folder / "tx.csv")
    config = tmp_path / "engine.yaml"
    config.write_text(f"engine:\n  temp_directory: {spill}\n")
    args = ["validate", "-t", folder / "tx.csv"] if command == "validate" else [
        "features", "-t", folder / "tx.csv", "--as-of", "2024-03-31", "-o",
        tmp_path / "features.csv"]
    before = snapshot(tmp_path)
    line = one_error_line(*run(tmp_path, *args, "--config", config)[::2])
    assert "engine.temp_directory" in line and spill in line, line
    if where == "a-file":
        assert "it is a file, not a folder" in line
    assert snapshot(tmp_path) == before


# --- hints for missing columns --------------------------------------------------------


def test_the_hint_for_a_column_name_with_spaces_can_be_followed(folder, tmp_path) -> None:
    lines = (folder / "tx.csv").read_text().splitlines()
    header = "Customer_ID , Timestamp,AMOUNT,country"
    (tmp_path / "spaced.csv").write_text("\n".join([header, *lines[1:]]) + "\n")
    line = one_error_line(*run(tmp_path, "validate", "-t", "spaced.csv")[::2])
    assert "--customer-col 'Customer_ID '" in line, line
    assert "--time-col ' Timestamp'" in line
    assert "--amount-col AMOUNT " in line
    # the flags as a shell would pass them (the quotes keep the spaces)
    hint = line.split("Suggestion: ", 1)[1]
    flags = [part.split(" (CLI)")[0].split("map it with ", 1)[1] for part in hint.split(";")]
    code, _, err = run(tmp_path, "validate", "-t", "spaced.csv",
                       *shlex.split(" ".join(flags)))
    assert code == 0, err


def test_the_hint_for_a_mistyped_column_flag_names_the_column(folder, tmp_path) -> None:
    line = one_error_line(*run(tmp_path, "validate", "-t", folder / "tx.csv",
                               "--customer-col", "client")[::2])
    assert "--customer-col customer_id" in line, line


@pytest.mark.parametrize(("args", "says"), [
    (("retention", "-t", "{tx}", "--start", "2024-01-31", "--end", "2024-03-31",
      "--segment-col", "Country"), "it is named 'country' here (names are case-sensitive)"),
    (("cohorts", "-t", "{tx}", "--segment-col", "region"),
     "check the column name given to the option"),
    (("validate", "-t", "{tx}", "--order-col", "order_number"),
     "check the column name given to the option"),
])
def test_the_hint_for_an_optional_column_does_not_blame_the_column_flags(args, says, folder,
                                                                         tmp_path) -> None:
    args = tuple(str(folder / "tx.csv") if a == "{tx}" else a for a in args)
    line = one_error_line(*run(tmp_path, *args)[::2])
    assert says in line, line
    assert "--customer-col" not in line and "--time-col" not in line, line


# --- files named .csv that are not CSV text ---------------------------------------------


@pytest.mark.parametrize(("kind", "says"), [
    ("gzip", ("is gzip-compressed", "name it .csv.gz")),
    ("zip", ("is a ZIP archive", "Excel")),
    ("utf-16", ("is UTF-16 text", "iconv -f utf-16 -t utf-8")),
])
@pytest.mark.parametrize("command", ["validate", "features"])
def test_a_compressed_or_utf16_file_named_csv_says_what_it_is(kind, says, command, folder,
                                                              tmp_path) -> None:
    text = (folder / "tx.csv").read_text()
    path = tmp_path / "tx.csv"
    if kind == "gzip":
        path.write_bytes(gzip.compress(text.encode(), mtime=0))
    elif kind == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("tx.csv", text)
    else:
        path.write_bytes(text.encode("utf-16"))
    args = ["validate", "-t", path] if command == "validate" else [
        "features", "-t", path, "--as-of", "2024-03-31", "-o", tmp_path / "features.csv"]
    before = snapshot(tmp_path)
    line = one_error_line(*run(tmp_path, *args)[::2])
    for fragment in (*says, "tx.csv"):
        assert fragment in line, (fragment, line)
    assert snapshot(tmp_path) == before


def test_a_gzip_file_renamed_as_suggested_is_read(folder, tmp_path) -> None:
    text = (folder / "tx.csv").read_text()
    (tmp_path / "tx.csv.gz").write_bytes(gzip.compress(text.encode(), mtime=0))
    code, _, err = run(tmp_path, "validate", "-t", "tx.csv.gz")
    assert code == 0, err


# --- --config -------------------------------------------------------------------------


def test_a_config_folder_is_named_as_a_folder(folder, tmp_path) -> None:
    (tmp_path / "configs").mkdir()
    line = one_error_line(*run(tmp_path, "validate", "-t", folder / "tx.csv",
                               "--config", "configs")[::2])
    assert "configs is a folder, not a config file" in line, line
    assert "no such" not in line


# --- at-risk options ------------------------------------------------------------------


@pytest.fixture(scope="module")
def scores(tmp_path_factory) -> Path:
    """Scores as churnlens score writes them (a 91-day model), by hand."""
    path = tmp_path_factory.mktemp("scores") / "scores.parquet"
    write_table(hand_scores(), path, metadata={"horizon_days": "91"})
    return path


@pytest.mark.parametrize(("args", "says"), [
    (("--top", "-1"), ("--top must be at least 1", "got -1", "--top 100")),
    (("--top", "0", "--all"), ("--top must be at least 1", "--top 100")),
    (("--min-risk", "2"), ("--min-risk must be a churn risk between 0 and 1", "got 2.0",
                           "--min-risk 0.7")),
    (("--min-risk", "-0.5", "--win-back"), ("--min-risk must be", "--min-risk 0.7")),
    (("--sort", "fastest"), ("--sort must be one of", "got 'fastest'",
                             "use one of churn_risk, value_at_risk")),
    (("--sort", "fastest", "--cost-per-contact", "2", "--save-rate", "0.2"),
     ("--sort must be one of", "expected_profit")),
    (("--sort", "expected_profit"), ("--sort expected_profit orders a list sized by profit",
                                     "--cost-per-contact")),
    (("--band", "urgent"), ("--band must be one of", "use one of high, medium, low")),
    (("--segment", "vip", "--all"), ("--segment 'vip' not found",
                                     "segments in the scores", "--segment 'at risk'")),
])
def test_at_risk_option_errors_name_the_flag(args, says, scores, tmp_path) -> None:
    before = snapshot(scores.parent)
    line = one_error_line(*run(tmp_path, "at-risk", "--scores", scores, "-o",
                               tmp_path / "list.csv", *args)[::2])
    flag = args[0]
    assert line.startswith(f"error: {flag} "), line  # not the Python parameter's name
    for fragment in says:
        assert fragment in line, (fragment, line)
    assert not (tmp_path / "list.csv").exists()
    assert snapshot(scores.parent) == before


@pytest.mark.parametrize(("options", "says"), [
    ({"top": 0}, ("top must be at least 1", "top=100")),
    ({"min_risk": 1.5}, ("min_risk must be a churn risk", "min_risk=0.7")),
    ({"sort": "fastest"}, ("sort must be one of",)),
    ({"segment": "vip"}, ("segment 'vip' not found", "segment='at risk'")),
])
def test_the_library_list_keeps_its_parameter_names(options, says) -> None:
    """The same checks called from Python (and the API, whose query parameters have
    the same names) name the parameters, not the CLI's flags."""
    from churnlens._rules import at_risk_list

    with pytest.raises(ChurnlensError) as caught:
        at_risk_list(hand_scores(), kind="all", **options)
    message = str(caught.value)
    assert "--" not in message.split("Suggestion:")[0], message
    assert "Suggestion: " in message
    for fragment in says:
        assert fragment in message, (fragment, message)


# --- --scores and --list files that are not tables --------------------------------------


def _not_a_table(kind: str, work: Path, scores: Path) -> Path:
    if kind == "folder":
        folder = work / "scored"
        folder.mkdir()
        (folder / "scores.parquet").write_bytes(scores.read_bytes())
        return folder
    name = "scores.csv" if kind.endswith("csv") else "scores.parquet"
    path = work / name
    if kind.startswith("empty"):
        path.write_bytes(b"")
    else:
        data = (hand_scores().to_csv(index=False).encode() if name.endswith(".csv")
                else scores.read_bytes())
        path.write_bytes(gzip.compress(data, mtime=0))
    return path


@pytest.mark.parametrize(("kind", "says"), [
    ("empty-csv", ("is an empty file (0 bytes)", "write it again with churnlens")),
    ("empty-parquet", ("is an empty file (0 bytes)", "write it again with churnlens")),
    ("gzip-csv", ("is gzip-compressed", "gunzip -c", "name it scores.csv.gz")),
    ("gzip-parquet", ("is gzip-compressed", "gunzip -c")),
    ("folder", ("is a folder, not a", "pass the .parquet or .csv file itself",
                "(in it: scores.parquet)")),
])
@pytest.mark.parametrize("command", ["at-risk", "campaign"])
def test_a_scores_or_list_file_that_is_not_a_table_says_what_it_is(kind, says, command,
                                                                   folder, scores,
                                                                   tmp_path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    path = _not_a_table(kind, work, scores)
    if command == "at-risk":
        flag, args = "--scores", ["at-risk", "--scores", path, "--all", "-o",
                                  tmp_path / "list.csv"]
    else:
        flag, args = "--list", ["campaign", "-t", folder / "tx.csv", "--list", path,
                                "--start", "2024-03-01", "--horizon-days", "30"]
    before = snapshot(tmp_path)
    line = one_error_line(*run(tmp_path, *args)[::2])
    assert f"{flag} {path}: " in line, line
    for fragment in says:
        assert fragment in line, (fragment, line)
    assert "no such" not in line
    assert snapshot(tmp_path) == before


def test_a_gzip_scores_file_renamed_as_suggested_is_read(tmp_path) -> None:
    (tmp_path / "scores.csv.gz").write_bytes(
        gzip.compress(hand_scores().to_csv(index=False).encode(), mtime=0))
    code, _, err = run(tmp_path, "at-risk", "--scores", "scores.csv.gz", "--all", "-o",
                       "list.csv")
    assert code == 0, err
    assert len(pd.read_csv(tmp_path / "list.csv")) == len(hand_scores())


# --- --model runs:/ and the tracking server ----------------------------------------------


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> str:
    """A sqlite tracking store MLflow has set up, with no run."""
    import mlflow

    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    mlflow.MlflowClient(tracking_uri=uri).search_experiments()
    return uri


def test_an_unknown_run_names_the_store_and_how_to_list_its_runs(folder, empty_store,
                                                                 tmp_path) -> None:
    run_id = "0123456789abcdef0123456789abcdef"
    line = the_error_line(*run(tmp_path, "score", "-t", folder / "tx.csv", "--as-of",
                               "2024-04-30", "--model", f"runs:/{run_id}/model",
                               "--tracking-uri", empty_store, "-o",
                               tmp_path / "scores.parquet")[::2])
    assert f"no run {run_id} in the tracking store at {empty_store}" in line, line
    assert f"mlflow ui --backend-store-uri {empty_store}" in line
    assert "models:/NAME@ALIAS" in line
    assert not (tmp_path / "scores.parquet").exists()


def _refused_port() -> int:
    """A local port nothing listens on (bound, then freed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("model", ["models:/churnlens@champion", "runs:/0123abcd/model"])
def test_an_unreachable_tracking_server_is_named_at_once(model, folder, tmp_path,
                                                         monkeypatch) -> None:
    """Used to retry for about four minutes, then say there is no such model."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "7")
    uri = f"http://churn:s3cret@127.0.0.1:{_refused_port()}"
    started = time.monotonic()
    code, _, err = run(tmp_path, "score", "-t", folder / "tx.csv", "--as-of", "2024-04-30",
                       "--model", model, "--tracking-uri", uri, "-o",
                       tmp_path / "scores.parquet")
    elapsed = time.monotonic() - started
    line = the_error_line(code, err)
    assert "cannot reach the MLflow tracking server at http://churn:***@127.0.0.1:" in line
    assert "Connection refused" in line and model in line, line
    assert "s3cret" not in err
    assert "no model" not in line
    assert elapsed < 60, elapsed
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "7"  # the user's, untouched
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ
    assert not (tmp_path / "scores.parquet").exists()


# --- epoch and boolean timestamps in Parquet -------------------------------------------


EPOCH = {"s": 1_704_067_200, "ms": 1_704_067_200_000, "us": 1_704_067_200_000_000,
         "ns": 1_704_067_200_000_000_000}
WORDS = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}


def _typed_timestamps(path: Path, values: pa.Array) -> Path:
    pq.write_table(pa.table({"customer_id": pa.array(["a", "b"]), "timestamp": values,
                             "amount": pa.array([1.0, 2.0])}), path)
    return path


def _same_message_on_both_engines(path: Path) -> str:
    """The pandas loader and the DuckDB one refuse the file with the same message."""
    from churnlens._loading import load_transactions
    from churnlens._loading_sql import load_transactions_sql

    def sql(path: Path) -> None:
        with load_transactions_sql(path):
            pass

    messages = []
    for load in (load_transactions, sql):
        with pytest.raises(ChurnlensError) as caught:
            load(path)
        messages.append(str(caught.value))
    assert messages[0] == messages[1]
    return messages[0]


@pytest.mark.parametrize("unit", sorted(EPOCH))
def test_the_epoch_hint_follows_the_magnitude_of_the_values(unit, tmp_path) -> None:
    first = EPOCH[unit]
    path = _typed_timestamps(tmp_path / f"epoch-{unit}.parquet",
                             pa.array([first, first + 86_400 * (first // EPOCH["s"])]))
    line = one_error_line(*run(tmp_path, "validate", "-t", path)[::2])
    assert "int64 numbers, not dates" in line, line
    assert f"these look like epoch {WORDS[unit]} ({first} is 2024-01-01 00:00:00)" in line
    assert f"pandas.to_datetime(column, unit={unit!r})" in line
    if unit != "s":
        assert "unit='s'" not in line
    assert line.split("error: ", 1)[1] == _same_message_on_both_engines(path)


def test_epoch_numbers_of_no_unit_list_the_units(tmp_path) -> None:
    path = _typed_timestamps(tmp_path / "huge.parquet", pa.array([1e30, 2e30]))
    line = one_error_line(*run(tmp_path, "validate", "-t", path)[::2])
    assert "unit 's', 'ms', 'us' or 'ns'" in line, line
    assert "look like epoch" not in line


def test_a_boolean_timestamp_column_is_called_booleans(tmp_path) -> None:
    path = _typed_timestamps(tmp_path / "flags.parquet", pa.array([True, False]))
    line = one_error_line(*run(tmp_path, "validate", "-t", path)[::2])
    assert "column 'timestamp' in" in line and "holds booleans (true/false), not dates" in line
    assert "numbers" not in line and "epoch" not in line, line
    assert "--time-col" in line
    assert line.split("error: ", 1)[1] == _same_message_on_both_engines(path)
