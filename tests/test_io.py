"""Atomic output: a failed write never leaves a half-written or temporary file."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from churnlens import ChurnlensError
from churnlens._io import (
    COMMITTED,
    atomic_path,
    check_output_folder,
    check_output_path,
    csv_text,
    frame_records,
    json_ready,
    read_table_metadata,
    write_json,
    write_safe_csv,
    write_table,
)


class BoomError(RuntimeError):
    """Stands for any failure in the middle of a write."""


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": ["00042", "7"], "churn_risk": [0.25, 0.5],
                         "timestamp": pd.to_datetime(["2024-01-01", "2024-01-02"])})


@pytest.mark.parametrize("error", [BoomError, KeyboardInterrupt])
def test_exception_mid_write_keeps_previous_file(tmp_path: Path, error: type) -> None:
    target = tmp_path / "scores.csv"
    target.write_text("previous complete file\n")
    def write_half_then_fail() -> None:
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp != target
            with open(tmp, "w") as fh:
                fh.write("half of the new")
                fh.flush()
                raise error()

    with pytest.raises(error):
        write_half_then_fail()
    assert target.read_text() == "previous complete file\n"
    assert names(tmp_path) == ["scores.csv"]  # no temporary file left


def test_exception_mid_write_creates_nothing(tmp_path: Path) -> None:
    def write_partial_then_fail() -> None:
        with atomic_path(tmp_path / "new.parquet") as tmp:
            tmp.write_bytes(b"PAR1 partial")
            raise BoomError

    with pytest.raises(BoomError):
        write_partial_then_fail()
    assert names(tmp_path) == []


def test_write_table_failing_write_keeps_previous(tmp_path: Path, frame: pd.DataFrame,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "scores.csv"
    target.write_text("old\n")
    real_write_bytes = Path.write_bytes

    def dies_half_way(self: Path, data: bytes) -> int:
        real_write_bytes(self, bytes(data)[:5])
        raise BoomError("disk full")

    monkeypatch.setattr(Path, "write_bytes", dies_half_way)
    with pytest.raises(BoomError):
        write_table(frame, target)
    monkeypatch.undo()
    assert target.read_text() == "old\n"
    assert names(tmp_path) == ["scores.csv"]


def test_csv_dialect_is_one_for_every_table(tmp_path: Path) -> None:
    table = pd.DataFrame({"customer_id": ["=1+1", "line\rbreak", "7"], "amount": [1.5, -2.0, 3.0]})
    plain = write_table(table, tmp_path / "plain.csv")
    people = write_table(table, tmp_path / "people.csv", spreadsheet_safe=True)
    assert plain.read_bytes() == (b'customer_id,amount\r\n=1+1,1.5\r\n"line\rbreak",-2.0\r\n'
                                  b"7,3.0\r\n")
    assert people.read_bytes() == (b"customer_id,amount\r\n'=1+1,1.5\r\n\"line\rbreak\",-2.0\r\n"
                                   b"7,3.0\r\n")
    assert write_safe_csv(table, tmp_path / "safe.csv").read_bytes() == people.read_bytes()
    assert csv_text(table.head(1), header=False) == "=1+1,1.5\r\n"


def test_json_ready_golden() -> None:
    value = {
        1: [np.float64("nan"), np.float32(0.5), float("inf"), -float("inf")],
        "ints": (np.int64(3), np.uint8(4), True, np.bool_(False)),
        "missing": [None, pd.NA, pd.NaT, np.datetime64("NaT")],
        "dates": [dt.date(2024, 3, 31), pd.Timestamp("2024-03-31"),
                  pd.Timestamp("2024-03-31 10:30"), dt.datetime(2024, 1, 1, 0, 0, 1),
                  np.datetime64("2024-02-29")],
        "array": np.array([1, 2]),
        "text": "x",
    }
    expected = {
        "1": [None, 0.5, None, None],
        "ints": [3, 4, True, False],
        "missing": [None, None, None, None],
        "dates": ["2024-03-31", "2024-03-31", "2024-03-31T10:30:00", "2024-01-01T00:00:01",
                  "2024-02-29"],
        "array": [1, 2],
        "text": "x",
    }
    ready = json_ready(value)
    assert ready == expected
    assert type(ready["ints"][0]) is int and type(ready["ints"][3]) is bool
    json.dumps(ready, allow_nan=False)  # strict JSON


def test_frame_records_match_json_ready_per_value() -> None:
    frame = pd.DataFrame({
        "f": [1.5, np.nan, np.inf], "i": [1, 2, 3],
        "nullable": pd.array([1, None, 3], dtype="Int64"),
        "text": ["a", None, "c"], "day": pd.to_datetime(["2024-01-01", None, "2024-01-03"]),
        "flag": [True, False, True],
    })
    records = frame_records(frame)
    slow = [{str(k): json_ready(v) for k, v in zip(frame.columns, row, strict=True)}
            for row in frame.itertuples(index=False, name=None)]
    assert records == slow
    assert records[1] == {"f": None, "i": 2, "nullable": None, "text": None, "day": None,
                          "flag": False}
    json.dumps(records, allow_nan=False)


def test_write_table_unconvertible_frame_keeps_previous(tmp_path: Path) -> None:
    target = tmp_path / "scores.parquet"
    target.write_bytes(b"old")
    bad = pd.DataFrame({"x": pd.Series([1, "a", 2.5], dtype=object)})
    with pytest.raises(Exception):  # noqa: B017  pyarrow's own error type
        write_table(bad, target)
    assert target.read_bytes() == b"old"
    assert names(tmp_path) == ["scores.parquet"]


def test_success_replaces_the_file(tmp_path: Path, frame: pd.DataFrame) -> None:
    target = tmp_path / "scores.parquet"
    target.write_bytes(b"old")
    assert write_table(frame, target) == target
    pd.testing.assert_frame_equal(pd.read_parquet(target), frame, check_dtype=False)
    assert names(tmp_path) == ["scores.parquet"]


def test_new_file_gets_the_usual_permissions(tmp_path: Path, frame: pd.DataFrame) -> None:
    # A temporary file is private (0600); the output must not stay so.
    umask = os.umask(0o022)
    try:
        write_table(frame, tmp_path / "scores.csv")
        write_json({"a": 1}, tmp_path / "report.json")
    finally:
        os.umask(umask)
    for name in ("scores.csv", "report.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


def test_replaced_file_keeps_its_permissions(tmp_path: Path, frame: pd.DataFrame) -> None:
    target = tmp_path / "scores.csv"
    target.write_text("old\n")
    target.chmod(0o640)
    write_table(frame, target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert target.read_text() != "old\n"


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("scores.xlsx", "unsupported output type '.xlsx'"),
        ("scores", "(no extension)"),
        ("scores.csv.gz", "unsupported output type '.gz'"),
        ("missing/scores.csv", "does not exist"),
        ("a-folder.csv", "is a directory"),
    ],
)
def test_output_path_checks(tmp_path: Path, name: str, fragment: str,
                            frame: pd.DataFrame) -> None:
    (tmp_path / "a-folder.csv").mkdir()
    with pytest.raises(ChurnlensError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        check_output_path(tmp_path / name, suffixes=(".csv", ".parquet"))
    with pytest.raises(ValueError, match="Suggestion"):
        write_table(frame, tmp_path / name)
    assert names(tmp_path) == ["a-folder.csv"]


def test_suffix_case_is_ignored(tmp_path: Path) -> None:
    out = check_output_path(tmp_path / "Scores.PARQUET", suffixes=(".csv", ".parquet"))
    assert out == tmp_path / "Scores.PARQUET"


def test_parquet_metadata_round_trip(tmp_path: Path, frame: pd.DataFrame) -> None:
    meta = {"as_of": "2024-03-31", "horizon_days": "91", "model": "churnlens@champion"}
    path = write_table(frame, tmp_path / "scores.parquet", metadata=meta)
    assert read_table_metadata(path) == meta
    back = pd.read_parquet(path)
    assert back["customer_id"].tolist() == ["00042", "7"]
    assert back["churn_risk"].tolist() == [0.25, 0.5]
    # pandas' own schema metadata is kept beside ours
    assert b"pandas" in pq.read_schema(path).metadata


def test_parquet_without_metadata(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = write_table(frame, tmp_path / "plain.parquet")
    assert read_table_metadata(path) == {}


def test_csv_round_trip_keeps_text_ids(tmp_path: Path, frame: pd.DataFrame) -> None:
    from churnlens import load_transactions

    path = write_table(frame.rename(columns={"churn_risk": "amount"}), tmp_path / "t.csv")
    tx, _ = load_transactions(path)
    assert tx["customer_id"].tolist() == ["00042", "7"]


def test_write_json(tmp_path: Path) -> None:
    path = write_json({"b": 2, "a": [1, 2], "when": pd.Timestamp("2024-01-01")},
                      tmp_path / "r.json")
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": 2, "when": "2024-01-01 00:00:00"}
    assert path.read_text().endswith("\n")
    assert names(tmp_path) == ["r.json"]


def test_any_atomic_write_removes_temporaries_left_by_killed_writers(tmp_path: Path) -> None:
    """A SIGKILL can leave a hidden temporary; the next write to that target removes it."""
    from churnlens._io import write_json

    target = tmp_path / "summary.json"
    stale = tmp_path / ".summary.json.tmp-dead1234"  # no live writer holds its lock
    stale.write_text("{half")
    other = tmp_path / ".other.json.tmp-dead5678"  # another target's: left alone
    other.write_text("{")
    write_json({"ok": True}, target)
    assert not stale.exists()
    assert other.exists()
    assert target.read_text().strip().startswith("{")


# --- outputs checked before the work (issue 22) ------------------------------------------


def test_check_output_path_refuses_what_cannot_be_written(tmp_path) -> None:
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(ChurnlensError, match="does not exist"):
        check_output_path(tmp_path / "missing" / "out.csv", suffixes=(".csv",))
    with pytest.raises(ChurnlensError, match="is a file, not a folder"):
        check_output_path(tmp_path / "a-file" / "out.csv", suffixes=(".csv",))
    with pytest.raises(ChurnlensError, match="cannot write in the folder /proc"):
        check_output_path("/proc/out.csv", suffixes=(".csv",))  # not even root can
    assert check_output_path(tmp_path / "out.csv", suffixes=(".csv",)) == tmp_path / "out.csv"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # the probe is gone


def test_check_output_folder(tmp_path) -> None:
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(ChurnlensError, match="is a file, not a folder"):
        check_output_folder(tmp_path / "a-file")
    with pytest.raises(ChurnlensError, match="a-file is a file, not a folder"):
        check_output_folder(tmp_path / "a-file" / "bundle")
    with pytest.raises(ChurnlensError, match="cannot write"):
        check_output_folder("/proc/bundle")
    assert check_output_folder(tmp_path / "new" / "bundle") == tmp_path / "new" / "bundle"
    assert not (tmp_path / "new").exists()  # checked, not created
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_committed_outputs_are_recorded(tmp_path) -> None:
    COMMITTED.clear()
    write_table(pd.DataFrame({"a": [1]}), tmp_path / "t.csv")
    def half_written() -> None:
        with atomic_path(tmp_path / "u.csv") as tmp:
            tmp.write_text("half")
            raise BoomError

    with pytest.raises(BoomError):
        half_written()
    assert list(COMMITTED) == [tmp_path / "t.csv"]


@pytest.mark.parametrize("first", ["=", "+", "-", "@", "\t", "\r", "\n"])
def test_every_formula_prefix_is_neutralised(first) -> None:
    import csv
    import io

    text = csv_text(pd.DataFrame({"id": [first + "1+1", "ok"]}), spreadsheet_safe=True)
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows == [["id"], ["'" + first + "1+1"], ["ok"]]
