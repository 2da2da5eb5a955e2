"""More bad inputs through the command line: each exits 2 with one clear line, no
traceback, and leaves every file as it was (see also test_cli_failures.py).

Cases: an output path that is one of the command's own inputs (it used to be replaced
by the output), Parquet columns of nested values (a crash, or ids silently turned into
text), an unusable ``engine.temp_directory`` (a crash), hints for missing columns that
could not be followed (a name with spaces, an option other than the three column flags),
compressed or UTF-16 files named ``.csv``, and a folder given as ``--config``.
"""

from __future__ import annotations

import gzip
import hashlib
import shlex
import zipfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_support import run

import churnlens

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
