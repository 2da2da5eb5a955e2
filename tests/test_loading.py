"""Data tests of the transaction contract (design.md, "Data contract").

``CORPUS`` is a table of bad and odd inputs. Each case says its expected handling:
either it loads, and ``check`` asserts what was kept, dropped, counted or converted;
or it fails with a churnlens error (a ``ValueError``) whose message names the file,
the column and the first offending rows. Every case runs through
``churnlens.load_transactions`` and through ``churnlens validate`` (typer's
CliRunner; a few also through the real console script, to prove exit status 2 and
no traceback on stderr). A failing case must leave no file behind.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import io
import json
import math
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import churnlens
from churnlens import (
    ChurnlensError,
    CleaningReport,
    DataValidationError,
    EmptyDataError,
    MissingColumnError,
    load_transactions,
)
from churnlens.cli import app

HEADER = "customer_id,timestamp,amount\n"
Check = Callable[[pd.DataFrame, CleaningReport], None]


# --- how a case makes its input ------------------------------------------------------


def text(body: str, name: str = "tx.csv", encoding: str = "utf-8") -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(body.encode(encoding))
        return path

    return make


def raw(body: bytes, name: str = "tx.csv") -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(body)
        return path

    return make


def gz(body: str, name: str = "tx.csv.gz") -> Callable[[Path], Path]:
    return raw(gzip.compress(body.encode("utf-8"), mtime=0), name)


def parquet(columns: dict[str, pa.Array], name: str = "tx.parquet") -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        pq.write_table(pa.table(columns), path)
        return path

    return make


def parquet_bytes(transform: Callable[[bytes], bytes], name: str = "tx.parquet"):
    """A valid small Parquet file, then damaged by ``transform``."""

    def make(folder: Path) -> Path:
        sink = io.BytesIO()
        pq.write_table(pa.table({"customer_id": ["a", "b"], "timestamp": ["2024-01-01"] * 2,
                                 "amount": [1.0, 2.0]}), sink)
        path = folder / name
        path.write_bytes(transform(sink.getvalue()))
        return path

    return make


def folder_itself(folder: Path) -> Path:
    (folder / "inside.csv").write_text(HEADER + "a,2024-01-01,1\n")
    return folder


def missing_path(folder: Path) -> Path:
    return folder / "does-not-exist.csv"


def zip_named_csv(folder: Path) -> Path:
    """What an .xlsx really is: a zip archive (here renamed to .csv)."""
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        sheet = "<sheetData>" + "<row/>" * 200 + "</sheetData>"
        archive.writestr("xl/worksheets/sheet1.xml", sheet)
    path = folder / "export.csv"
    path.write_bytes(sink.getvalue())
    return path


def truncated_gz(rows: int) -> Callable[[Path], Path]:
    """A gzip CSV cut in the middle (an interrupted download)."""

    def make(folder: Path) -> Path:
        body = HEADER + "".join(f"c{i:06d},2024-01-{1 + i % 28:02d},{i % 97}.5\n"
                                for i in range(rows))
        packed = gzip.compress(body.encode(), mtime=0)
        path = folder / "tx.csv.gz"
        path.write_bytes(packed[: len(packed) * 3 // 4])
        return path

    return make


def latin1_after_64k(folder: Path) -> Path:
    """UTF-8 for the first 64 KiB (where the header is read), Latin-1 further on."""
    rows = "".join(f"c{i:06d},2024-01-01,1\n" for i in range(5000))
    body = (HEADER + rows).encode() + "Zoë,2024-01-02,2\n".encode("latin-1")
    path = folder / "tx.csv"
    path.write_bytes(body)
    return path


def multibyte_across_64k(folder: Path) -> Path:
    """A valid UTF-8 file whose byte 65,536 falls inside a two-byte character."""
    rows = [HEADER]
    size = len(HEADER)
    while size < (1 << 16) - 40:
        row = f"c{len(rows):05d},2024-01-01,1\n"
        rows.append(row)
        size += len(row)
    # pad the next id with ASCII so that its "é" (2 bytes) starts at byte 65,535
    pad = (1 << 16) - 1 - size
    rows.append("x" * pad + "é,2024-01-02,2\n")
    body = "".join(rows).encode("utf-8")
    assert body[(1 << 16) - 1 : (1 << 16) + 1] == "é".encode()
    path = folder / "tx.csv"
    path.write_bytes(body)
    return path


# --- checks shared by the "loads" cases -------------------------------------------------


def ts(value: str) -> pd.Timestamp:
    return pd.Timestamp(value)


def standard(tx: pd.DataFrame) -> None:
    assert list(tx.columns[:3]) == ["customer_id", "timestamp", "amount"]
    assert tx["timestamp"].dtype == "datetime64[us]"
    assert tx["amount"].dtype == "float64"
    assert isinstance(tx.index, pd.RangeIndex) and tx.index.start == 0


def ids_are(expected: list[Any], dtype_kind: str = "text") -> Check:
    def check(tx: pd.DataFrame, report: CleaningReport) -> None:
        assert tx["customer_id"].tolist() == expected
        if dtype_kind == "text":
            assert pd.api.types.is_string_dtype(tx["customer_id"])
            assert all(isinstance(v, str) for v in tx["customer_id"])
        else:
            assert pd.api.types.is_integer_dtype(tx["customer_id"]), tx["customer_id"].dtype
            assert str(tx["customer_id"].dtype) == dtype_kind

    return check


def times_are(expected: list[str], converted: int) -> Check:
    def check(tx: pd.DataFrame, report: CleaningReport) -> None:
        assert tx["timestamp"].tolist() == [ts(v) for v in expected]
        assert report.timestamps_converted_to_utc == converted

    return check


def amounts_are(expected: list[float]) -> Check:
    def check(tx: pd.DataFrame, report: CleaningReport) -> None:
        assert tx["amount"].tolist() == expected

    return check


def last_id_endswith(suffix: str) -> Check:
    def check(tx: pd.DataFrame, report: CleaningReport) -> None:
        assert tx["customer_id"].iloc[-1].endswith(suffix)

    return check


def report_has(**expected: Any) -> Check:
    def check(tx: pd.DataFrame, report: CleaningReport) -> None:
        for key, value in expected.items():
            got = getattr(report, key)
            assert got == value, f"report.{key} = {got!r}, expected {value!r}"

    return check


def all_of(*checks: Check) -> Check:
    def check(tx: pd.DataFrame, report: CleaningReport) -> None:
        for one in checks:
            one(tx, report)

    return check


# --- the corpus ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    """One input and its documented handling.

    ``error`` is None for inputs that load (then ``check`` runs on the result), else
    the exception class; ``message`` lists fragments the message must contain, with
    ``{path}`` standing for the input path.
    """

    id: str
    make: Callable[[Path], Path]
    check: Check | None = None
    error: type[ChurnlensError] | None = None
    message: tuple[str, ...] = ()
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)


def ok(id: str, make, check: Check, **kwargs: Any) -> Case:
    return Case(id, make, check=check, kwargs=kwargs)


def fails(id: str, make, error: type[ChurnlensError], *message: str, **kwargs: Any) -> Case:
    return Case(id, make, error=error, message=message, kwargs=kwargs)


BIG_ID = 2**53 + 1  # not representable as a float64
LONG_ID = "L" * 10_000
ALIASES = "user_id,order_date,price\n7,2024-01-05,9.5\n"

CORPUS: list[Case] = [
    # columns
    fails("missing-column", text("customer_id,timestamp\na,2024-01-01\n"), MissingColumnError,
          "{path}", "missing required column 'amount'",
          "columns found: ['customer_id', 'timestamp']"),
    fails("alias-names-suggest-flags", text(ALIASES), MissingColumnError,
          "{path}", "columns found: ['user_id', 'order_date', 'price']",
          "--customer-col user_id", "--time-col order_date", "--amount-col price"),
    ok("alias-names-mapped-by-flags", text(ALIASES),
       all_of(ids_are(["7"]), times_are(["2024-01-05"], 0)),
       customer_col="user_id", time_col="order_date", amount_col="price"),
    fails("mapping-flag-names-absent-column", text(ALIASES), MissingColumnError,
          "{path}", "'client'", "columns found: ['user_id', 'order_date', 'price']",
          customer_col="client", time_col="order_date", amount_col="price"),
    # another separator is named, not reported as missing columns (issue 22)
    fails("semicolon-separated", text("customer_id;timestamp;amount\na;2024-01-01;1\n"),
          DataValidationError, "{path}", "separated by ';', not ','", "--delimiter ';'"),
    ok("semicolon-with-delimiter", text("customer_id;timestamp;amount\na;2024-01-01;1.5\n"
                                        "b;2024-01-02;2\n"),
       ids_are(["a", "b"]), delimiter=";"),
    fails("tab-separated-named-csv", text("customer_id\ttimestamp\tamount\na\t2024-01-01\t1\n"),
          DataValidationError, "separated by 'tab'", "--delimiter 'tab'"),
    fails("repeated-column-name", text("customer_id,timestamp,amount,amount\na,2024-01-01,1,2\n"),
          DataValidationError, "{path}", "'amount' at positions 3, 4"),
    # empty inputs
    fails("empty-file-0-bytes", raw(b""), EmptyDataError, "{path}", "0 bytes"),
    fails("header-only", text(HEADER), EmptyDataError, "{path}", "no data rows"),
    fails("header-then-blank-lines", text(HEADER + "\n\n\n"), EmptyDataError, "{path}",
          "no data rows"),
    fails("first-line-blank", text("\n" + HEADER + "a,2024-01-01,1\n"), EmptyDataError,
          "{path}", "first line is empty"),
    # timestamps
    fails("bad-dates", text(HEADER + "a,2024-01-01,1\nb,notadate,2\nc,2024-01-03,3\n"
                            "d,2024-02-30,4\n"),
          DataValidationError, "{path}", "'timestamp'", "2 timestamps",
          "row 2 (line 3): 'notadate'", "row 4 (line 5): '2024-02-30'", "--time-format"),
    fails("many-bad-dates", text(HEADER + "".join(f"c{i},bad{i},1\n" for i in range(8))),
          DataValidationError, "{path}", "8 timestamps", "row 1 (line 2): 'bad0'",
          "row 5 (line 6): 'bad4'", "and 3 more"),
    fails("missing-timestamp", text(HEADER + "a,2024-01-01,1\nb,,2\n"), DataValidationError,
          "{path}", "'timestamp'", "1 missing timestamps", "row 2 (line 3)"),
    ok("mixed-utc-offsets",
       text(HEADER + "a,2024-01-01T23:30:00-05:00,1\nb,2024-01-02T01:00:00+02:00,2\n"),
       # 23:30 at -05:00 is the next day in UTC; 01:00 at +02:00 is the day before
       all_of(times_are(["2024-01-02 04:30", "2024-01-01 23:00"], 2),
              report_has(first_day=dt.date(2024, 1, 1), last_day=dt.date(2024, 1, 2)))),
    ok("naive-beside-offset",
       text(HEADER + "a,2024-03-10 09:00:00,1\nb,2024-03-10T23:30:00-01:00,2\n"),
       times_are(["2024-03-10 09:00", "2024-03-11 00:30"], 1)),
    ok("z-suffix", text(HEADER + "a,2024-06-30T23:59:59Z,1\nb,2024-07-01T00:00:00Z,2\n"),
       times_are(["2024-06-30 23:59:59", "2024-07-01"], 2)),
    ok("date-only", text(HEADER + "a,2024-01-31,1\nb,2024-02-29,2\n"),
       times_are(["2024-01-31", "2024-02-29"], 0)),
    ok("date-only-beside-offsets",  # "2024-01-31" ends in "-31": a day, not an offset
       text(HEADER + "a,2024-01-31,1\nb,2024-01-31T22:00:00+05:30,2\nc,2024-02-01,3\n"),
       times_are(["2024-01-31", "2024-01-31 16:30", "2024-02-01"], 1)),
    ok("fractional-seconds", text(HEADER + "a,2024-01-01T10:00:00.123456,1\n"),
       times_are(["2024-01-01 10:00:00.123456"], 0)),
    ok("spaces-around-values", text(HEADER + "a, 2024-01-05 , 12.5 \n"),
       all_of(ids_are(["a"]), times_are(["2024-01-05"], 0))),
    fails("epoch-seconds-as-text", text(HEADER + "a,1704067200,1\n"), DataValidationError,
          "{path}", "row 1 (line 2): '1704067200'"),
    fails("day-first-without-format", text(HEADER + "a,31/12/2024,1\n"), DataValidationError,
          "{path}", "'31/12/2024'", "--time-format"),
    ok("time-format-given", text(HEADER + "a,31/12/2024,1\nb,01/02/2024,2\n"),
       times_are(["2024-12-31", "2024-02-01"], 0), time_format="%d/%m/%Y"),
    fails("time-format-mismatch", text(HEADER + "a,2024-12-31,1\n"), DataValidationError,
          "{path}", "not format '%d/%m/%Y'", "row 1 (line 2): '2024-12-31'",
          time_format="%d/%m/%Y"),
    # amounts
    fails("non-numeric-amounts", text(HEADER + "a,2024-01-01,$12.50\nb,2024-01-01,3\n"
                                      "c,2024-01-01,\"12,50\"\n"),
          DataValidationError, "{path}", "'amount'", "2 amounts that are not numbers",
          "row 1 (line 2): '$12.50'", "row 3 (line 4): '12,50'"),
    fails("missing-amount", text(HEADER + "a,2024-01-01,1\nb,2024-01-02,\n"),
          DataValidationError, "{path}", "'amount'", "1 missing amounts", "row 2 (line 3)"),
    fails("boolean-amounts-as-text", text(HEADER + "a,2024-01-01,true\nb,2024-01-01,FALSE\n"),
          DataValidationError, "{path}", "row 1 (line 2): 'true'", "row 2 (line 3): 'FALSE'"),
    fails("infinite-amounts",
          text(HEADER + "a,2024-01-01,1\nb,2024-01-01,inf\nc,2024-01-01,1e999\n"
               "d,2024-01-01,999999999999.99\ne,2024-01-01,-1000000000000\n"
               "f,2024-01-01,4111111111111111\n"),
          DataValidationError, "{path}", "4 infinite or too large amounts",
          "(beyond +-1,000,000,000,000)", "row 2 (line 3): 'inf'",
          "row 3 (line 4): '1e999'", "row 5 (line 6): '-1000000000000'",
          "row 6 (line 7): '4111111111111111'", "not ids"),
    fails("nan-amount-as-text", text(HEADER + "a,2024-01-01,NaN\n"), DataValidationError,
          "{path}", "row 1 (line 2): 'NaN'"),
    ok("negative-amounts-are-refunds",
       text(HEADER + "a,2024-01-01,20\na,2024-01-03,-5.5\nb,2024-01-04,-10\n"),
       all_of(report_has(refund_rows=2, refund_total=15.5, rows_kept=3),
              amounts_are([20.0, -5.5, -10.0]))),
    ok("zero-amounts", text(HEADER + "a,2024-01-01,0\nb,2024-01-01,0.00\nc,2024-01-01,1\n"),
       report_has(zero_amount_rows=2, rows_kept=3, refund_rows=0, refund_total=0.0)),
    # customer ids
    ok("missing-customer-ids",
       text(HEADER + "a,2024-01-01,1\n,2024-01-02,2\n   ,2024-01-03,3\nnan,2024-01-04,4\n"
            "NULL,2024-01-05,5\nb,2024-01-06,6\n"),
       all_of(ids_are(["a", "b"]),
              report_has(rows_read=6, rows_kept=2, dropped_missing_customer_id=4, customers=2))),
    fails("all-ids-missing", text(HEADER + ",2024-01-01,1\n  ,2024-01-02,2\n"), EmptyDataError,
          "{path}", "all 2 rows have no customer id", "'customer_id'"),
    ok("leading-zero-ids", text(HEADER + "00042,2024-01-01,1\n0007,2024-01-01,2\n"),
       ids_are(["00042", "0007"])),
    # the id rule (README "Customer ids"): a whole number written with a zero fraction
    # is that number, as a float id from Parquet is; other text is kept exactly
    ok("number-like-ids-stay-text",
       text(HEADER + "42,2024-01-01,1\n42.0,2024-01-01,1\n4.2e1,2024-01-01,1\n"
            "007,2024-01-01,1\n007.0,2024-01-01,1\n1.5,2024-01-01,1\n-3.00,2024-01-01,1\n"),
       all_of(ids_are(["42", "42", "4.2e1", "007", "007.0", "1.5", "-3"]),
              report_has(customers=6))),
    ok("parquet-text-ids-with-zero-fraction",
       parquet({"customer_id": pa.array(["12.0", "12", "007"]),
                "timestamp": pa.array(["2024-01-01"] * 3), "amount": pa.array([1.0] * 3)}),
       all_of(ids_are(["12", "12", "007"]), report_has(customers=2))),
    ok("unicode-ids", text(HEADER + "Zoë,2024-01-01,1\n顧客-1,2024-01-01,2\n😀,2024-01-01,3\n"),
       ids_are(["Zoë", "顧客-1", "😀"])),
    ok("very-long-id", text(HEADER + f"{LONG_ID},2024-01-01,1\n"), ids_are([LONG_ID])),
    ok("spreadsheet-formula-ids",
       text(HEADER + '"=HYPERLINK(""http://x"",""y"")",2024-01-01,1\n+1,2024-01-01,2\n'
            "@SUM(A1),2024-01-01,3\n"),
       ids_are(['=HYPERLINK("http://x","y")', "+1", "@SUM(A1)"])),
    ok("ids-with-inner-spaces-kept", text(HEADER + '" a ",2024-01-01,1\na,2024-01-01,2\n'),
       all_of(ids_are([" a ", "a"]), report_has(customers=2))),
    # duplicates
    ok("duplicate-rows-kept-and-counted",
       text(HEADER + "a,2024-01-01,5\na,2024-01-01,5\na,2024-01-01,5\nb,2024-01-01,5\n"),
       report_has(rows_kept=4, duplicate_rows=2, dropped_duplicates=0)),
    # as-of
    ok("rows-after-as-of",
       text(HEADER + "a,2024-01-31,1\na,2024-01-31T23:59:59,2\nb,2024-02-01T00:00:00,3\n"
            "c,2024-02-01T01:00:00+02:00,4\nd,2024-03-01,5\n"),
       # the whole as-of day is kept; +02:00 01:00 on Feb 1 is Jan 31 in UTC
       all_of(times_are(["2024-01-31", "2024-01-31 23:59:59", "2024-01-31 23:00"], 1),
              report_has(rows_kept=3, dropped_after_as_of=2, as_of=dt.date(2024, 1, 31),
                         last_day=dt.date(2024, 1, 31))),
       as_of="2024-01-31"),
    fails("everything-after-as-of", text(HEADER + "a,2024-01-01,1\nb,2024-02-01,2\n"),
          EmptyDataError, "{path}", "as-of date 2023-12-31", "2 rows are after it",
          as_of="2023-12-31"),
    fails("unreadable-as-of", text(HEADER + "a,2024-01-01,1\n"), ChurnlensError,
          "as_of", "'not-a-date'", as_of="not-a-date"),
    # dates outside churnlens._validation.PLAUSIBLE_DATES (issue 22)
    fails("year-1-dates", text(HEADER + "a,2024-01-01,1\nb,0001-01-01,2\n"),
          DataValidationError, "{path}", "'timestamp'",
          "outside the supported range 1900-01-01 .. 2100-12-31", "row 2 (line 3): '0001-01-01'"),
    fails("year-9999-dates-after-the-as-of", text(HEADER + "a,2024-01-01,1\nb,9999-12-31,2\n"),
          DataValidationError, "{path}", "outside the supported range", "'9999-12-31'",
          as_of="2024-06-30"),
    fails("as-of-in-year-9999", text(HEADER + "a,2024-01-01,1\n"), ChurnlensError, "as_of",
          "outside the supported dates 1900-01-01 .. 2100-12-31", as_of="9999-12-31"),
    ok("dates-at-the-edges-of-the-range",
       text(HEADER + "a,1900-01-01,1\nb,2100-12-31T23:59:59,2\n"),
       times_are(["1900-01-01", "2100-12-31 23:59:59"], 0)),
    # time formats the parser does not support are named as such (issue 22)
    fails("time-format-epoch-seconds", text(HEADER + "a,1704067200,1\n"), DataValidationError,
          "'%s'", "--time-format", "not supported", "unit='s'", time_format="%s"),
    fails("time-format-unknown-directive", text(HEADER + "a,2024-01-01,1\n"),
          DataValidationError, "%Q", "not supported", time_format="%Y-%m-%d %Q"),
    fails("time-format-stray-percent", text(HEADER + "a,2024-01-01,1\n"), DataValidationError,
          "'%Y-%m-%d %'", "not supported", time_format="%Y-%m-%d %"),
    fails("excel-serial-dates", text(HEADER + "a,45000,1\nb,45017.5,2\n"), DataValidationError,
          "{path}", "Excel serial day numbers", "origin='1899-12-30'"),
    fails("parquet-excel-serial-dates",
          parquet({"customer_id": pa.array(["a"]), "timestamp": pa.array([45000.0]),
                   "amount": pa.array([1.0])}),
          DataValidationError, "{path}", "Excel serial day numbers"),
    fails("as-of-parsed-as-year-1", text(HEADER + "a,2024-01-01,1\n"), ChurnlensError,
          "as_of", "'31st of March'", "outside the supported dates", as_of="31st of March"),
    # not CSV at all
    fails("binary-bytes-named-csv", raw(bytes(range(256)) * 8), DataValidationError,
          "{path}", "not UTF-8 text"),
    fails("nul-bytes-named-csv", raw(HEADER.encode() + b"\x00\x01\x02" * 50), DataValidationError,
          "{path}", "binary data"),
    fails("zip-archive-named-csv", zip_named_csv, DataValidationError, "{path}", "UTF-8"),
    fails("latin-1-encoded", text(HEADER + "Zoë,2024-01-01,1\n", encoding="latin-1"),
          DataValidationError, "{path}", "not UTF-8 text"),
    fails("xlsx-extension", text(HEADER + "a,2024-01-01,1\n", name="tx.xlsx"),
          DataValidationError, "{path}", "unsupported file type '.xlsx'", ".parquet"),
    fails("no-extension", text(HEADER + "a,2024-01-01,1\n", name="transactions"),
          DataValidationError, "{path}", "(no extension)"),
    fails("ragged-rows", text(HEADER + "a,2024-01-01,1\nb,2024-01-01,2,extra\n"),
          DataValidationError, "{path}", "cannot read as CSV", "Expected 3 columns"),
    fails("directory", folder_itself, DataValidationError, "{path}", "is a directory"),
    fails("missing-path", missing_path, DataValidationError, "{path}", "no such file"),
    fails("truncated-csv-gz", truncated_gz(rows=50), DataValidationError, "{path}",
          "Truncated compressed stream", "again"),
    fails("truncated-csv-gz-after-the-header", truncated_gz(rows=40_000), DataValidationError,
          "{path}", "Truncated compressed stream", "again"),
    fails("latin-1-after-the-first-64k", latin1_after_64k, DataValidationError, "{path}",
          "not UTF-8", "iconv"),
    fails("not-gzip-named-csv-gz", text(HEADER + "a,2024-01-01,1\n", name="tx.csv.gz"),
          DataValidationError, "{path}"),
    # other CSV dialects that load
    ok("utf-8-bom", text("\ufeff" + HEADER + "a,2024-01-01,1\n"), ids_are(["a"])),
    ok("tsv", text("customer_id\ttimestamp\tamount\na b\t2024-01-01\t1.5\n", name="tx.tsv"),
       all_of(ids_are(["a b"]), amounts_are([1.5]))),
    ok("csv-gz", gz(HEADER + "00001,2024-01-01,1\n"), ids_are(["00001"])),
    ok("crlf-and-quoted-header",
       text('"customer_id","timestamp","amount"\r\n"a","2024-01-01","1"\r\n'), ids_are(["a"])),
    ok("quoted-newline-in-other-column",
       text("customer_id,timestamp,amount,note\na,2024-01-01,1,\"two\nlines\"\nb,2024-01-02,2,x\n"),
       ids_are(["a", "b"])),
    ok("utf-8-character-across-64k", multibyte_across_64k,
       last_id_endswith("xé")),
    # Parquet
    fails("parquet-amount-bool",
          parquet({"customer_id": pa.array(["a", "b"]), "timestamp": pa.array(["2024-01-01"] * 2),
                   "amount": pa.array([True, False])}),
          DataValidationError, "{path}", "'amount'", "booleans"),
    fails("parquet-timestamp-int",
          parquet({"customer_id": pa.array(["a"]), "timestamp": pa.array([1704067200]),
                   "amount": pa.array([1.0])}),
          DataValidationError, "{path}", "'timestamp'", "int64 numbers, not dates", "1704067200"),
    fails("parquet-customer-id-bool",
          parquet({"customer_id": pa.array([True]), "timestamp": pa.array(["2024-01-01"]),
                   "amount": pa.array([1.0])}),
          DataValidationError, "{path}", "'customer_id'", "booleans"),
    fails("parquet-fractional-float-ids",
          parquet({"customer_id": pa.array([1.0, 2.5]), "timestamp": pa.array(["2024-01-01"] * 2),
                   "amount": pa.array([1.0, 2.0])}),
          DataValidationError, "{path}", "non-integer numbers", "2.5"),
    fails("parquet-missing-column",
          parquet({"customer_id": pa.array(["a"]), "amount": pa.array([1.0])}),
          MissingColumnError, "{path}", "'timestamp'", "columns found: ['customer_id', 'amount']"),
    fails("parquet-corrupt", parquet_bytes(lambda b: b[:4] + b"\xff" * (len(b) - 8) + b[-4:]),
          DataValidationError, "{path}", "cannot read as Parquet"),
    fails("parquet-truncated", parquet_bytes(lambda b: b[: len(b) // 2]), DataValidationError,
          "{path}", "cannot read as Parquet"),
    fails("csv-named-parquet", text(HEADER + "a,2024-01-01,1\n", name="tx.parquet"),
          DataValidationError, "{path}", "cannot read as Parquet"),
    ok("parquet-named-csv", parquet_bytes(lambda b: b, name="really-parquet.csv"),
       ids_are(["a", "b"])),
    ok("parquet-int-ids-stay-int64",
       parquet({"customer_id": pa.array([7, 42], pa.int64()),
                "timestamp": pa.array([dt.datetime(2024, 1, 1)] * 2),
                "amount": pa.array([1.0, 2])}),
       ids_are([7, 42], "int64")),
    ok("parquet-int-ids-with-nulls-exact",
       parquet({"customer_id": pa.array([BIG_ID, None, 5], pa.int64()),
                "timestamp": pa.array(["2024-01-01"] * 3), "amount": pa.array([1.0, 2, 3])}),
       all_of(ids_are([BIG_ID, 5], "Int64"), report_has(dropped_missing_customer_id=1))),
    ok("parquet-float-ids-with-nan-become-integers",
       parquet({"customer_id": pa.array([1.0, None, 3.0]),
                "timestamp": pa.array(["2024-01-01"] * 3),
                "amount": pa.array([1.0, 2, 3])}),
       all_of(ids_are([1, 3], "Int64"), report_has(dropped_missing_customer_id=1))),
    ok("parquet-dictionary-ids",
       parquet({"customer_id": pa.array(["007", "008"]).dictionary_encode(),
                "timestamp": pa.array(["2024-01-01"] * 2), "amount": pa.array([1.0, 2])}),
       ids_are(["007", "008"])),
    ok("parquet-tz-aware-timestamps",
       parquet({"customer_id": pa.array(["a", "b"]),
                "timestamp": pa.array([pd.Timestamp("2024-01-01 23:30", tz="America/New_York"),
                                       pd.Timestamp("2024-07-01 01:00", tz="Europe/Paris")],
                                      pa.timestamp("us", tz="UTC")),
                "amount": pa.array([1.0, 2])}),
       times_are(["2024-01-02 04:30", "2024-06-30 23:00"], 2)),
    ok("parquet-date32-days",
       parquet({"customer_id": pa.array(["a"]), "timestamp": pa.array([dt.date(2024, 2, 29)]),
                "amount": pa.array([1])}),
       all_of(times_are(["2024-02-29"], 0),
              amounts_are([1.0]))),
    fails("parquet-null-amount",
          parquet({"customer_id": pa.array(["a", "b"]), "timestamp": pa.array(["2024-01-01"] * 2),
                   "amount": pa.array([1, None], pa.int64())}),
          DataValidationError, "{path}", "1 missing amounts", "row 2"),
]


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


_FLAGS = {"customer_col": "--customer-col", "time_col": "--time-col",
          "amount_col": "--amount-col", "as_of": "--as-of", "time_format": "--time-format",
          "delimiter": "--delimiter"}


def cli_args(path: Path, kwargs: dict[str, Any]) -> list[str]:
    args = ["validate", "--transactions", str(path)]
    for key, value in kwargs.items():
        args += [_FLAGS[key], str(value)]
    return args


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_corpus_is_large_and_well_formed() -> None:
    assert len(CORPUS) >= 30
    assert len({case.id for case in CORPUS}) == len(CORPUS)
    assert sum(case.error is not None for case in CORPUS) >= 15
    assert sum(case.error is None for case in CORPUS) >= 15
    for case in CORPUS:
        assert (case.error is None) == (case.check is not None), case.id
        assert set(case.kwargs) <= set(_FLAGS), case.id  # every case runs through the CLI
        assert case.error is None or case.message, case.id


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.id)
def test_library(case: Case, tmp_path: Path) -> None:
    path = case.make(tmp_path)
    before = listing(tmp_path)
    if case.error is None:
        tx, report = load_transactions(path, **case.kwargs)
        standard(tx)
        assert report.rows_kept == len(tx) > 0
        assert report.rows_dropped == report.rows_read - report.rows_kept
        assert report.customers == tx["customer_id"].nunique()
        assert report.first_day == tx["timestamp"].min().date()
        assert report.last_day == tx["timestamp"].max().date()
        assert report.source == str(path)
        case.check(tx, report)
    else:
        with pytest.raises(case.error) as caught:
            load_transactions(path, **case.kwargs)
        assert isinstance(caught.value, ChurnlensError)
        assert isinstance(caught.value, ValueError)
        message = str(caught.value)
        for fragment in case.message:
            assert fragment.format(path=path) in message, message
        assert "Suggestion:" in message, message
    assert listing(tmp_path) == before  # nothing written, nothing left behind


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.id)
def test_cli_validate(case: Case, tmp_path: Path, cli: CliRunner, monkeypatch) -> None:
    path = case.make(tmp_path)
    before = listing(tmp_path)
    monkeypatch.chdir(tmp_path)
    if case.error is None:
        result = cli.invoke(app, [*cli_args(path, case.kwargs), "--json"])
        assert result.exit_code == 0, result.output
        # the CLI prints exactly the library's report
        expected = load_transactions(path, **case.kwargs).report.to_dict()
        assert json.loads(result.stdout) == expected
    else:
        result = cli.invoke(app, cli_args(path, case.kwargs))
        assert result.exit_code == 2, (result.output, result.exception)
        assert result.stdout == ""
        assert result.stderr.startswith("error: ")
        assert "Traceback" not in result.stderr
        for fragment in case.message:
            fragment = {  # the CLI names its flag, and reads typed dates as ISO only
                "as_of": "--as-of",
                "outside the supported dates": "is not a date of the form YYYY-MM-DD",
            }.get(fragment, fragment)
            assert fragment.format(path=path) in result.stderr, result.stderr
    assert listing(tmp_path) == before


def test_cli_table_for_a_corpus_case(tmp_path: Path, cli: CliRunner) -> None:
    case = next(c for c in CORPUS if c.id == "missing-customer-ids")
    path = case.make(tmp_path)
    result = cli.invoke(app, cli_args(path, {}))
    assert result.exit_code == 0, result.output
    assert "dropped: missing customer id" in result.stdout
    line = next(ln for ln in result.stdout.splitlines() if "dropped: missing customer id" in ln)
    assert "4" in line.split("missing customer id", 1)[1]
    assert "valid" in result.stdout


# --- the real console script: exit status 2 and no traceback ---------------------------------


def console_script() -> list[str]:
    """The installed ``churnlens`` script, run by this interpreter.

    Running it through ``sys.executable`` (not its shebang line) tests this
    environment even when the venv was copied from another path.
    """
    if os.name == "nt":  # pragma: no cover - an .exe launcher
        return [str(Path(sys.executable).parent / "churnlens.exe")]
    script = Path(sys.executable).parent / "churnlens"
    if not script.exists():
        pytest.fail(f"console script {script} is not installed; run pip install -e .")
    return [sys.executable, str(script)]


SUBPROCESS_CASES = ["missing-column", "binary-bytes-named-csv", "parquet-corrupt"]


@pytest.mark.slow
def test_console_script_exit_status_2_no_traceback(tmp_path: Path) -> None:
    """Real processes (started together: each pays the interpreter start-up)."""
    runs = []
    for case_id in SUBPROCESS_CASES:
        case = next(c for c in CORPUS if c.id == case_id)
        folder = tmp_path / case_id
        folder.mkdir()
        path = case.make(folder)
        process = subprocess.Popen([*console_script(), *cli_args(path, case.kwargs)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   cwd=folder)
        runs.append((case, path, folder, listing(folder), process))
    valid = tmp_path / "valid.csv"
    valid.write_text(HEADER + "00042,2024-01-01,3\n")
    ok_run = subprocess.Popen([*console_script(), "validate", "-t", str(valid), "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for case, path, folder, before, process in runs:
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 2, (case.id, stderr)
        assert stdout == "", case.id
        assert "Traceback" not in stderr, case.id
        assert stderr.startswith("error: "), case.id
        assert stderr.strip().count("\n") == 0, case.id  # one readable line
        for fragment in case.message:
            assert fragment.format(path=path) in stderr, (case.id, stderr)
        assert listing(folder) == before, case.id
    stdout, stderr = ok_run.communicate(timeout=120)
    assert ok_run.returncode == 0, stderr
    assert json.loads(stdout)["customers"] == 1


# --- DataFrame sources (library only: the CLI reads files) -------------------------------------


def frame(**columns: Any) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base = {"customer_id": ["a"] * n, "timestamp": ["2024-01-01"] * n, "amount": [1.0] * n}
    return pd.DataFrame({**base, **columns})


def test_dataframe_with_non_default_index_keeps_rows_aligned() -> None:
    raw = pd.DataFrame(
        {"customer_id": ["x", "y", "z"], "timestamp": ["2024-01-03", "2024-01-01", "2024-01-02"],
         "amount": [3.0, 1.0, 2.0]},
        index=[30, 10, 20],
    )
    tx, report = load_transactions(raw)
    standard(tx)
    assert tx["customer_id"].tolist() == ["x", "y", "z"]
    assert tx["amount"].tolist() == [3.0, 1.0, 2.0]
    assert tx["timestamp"].tolist() == [ts("2024-01-03"), ts("2024-01-01"), ts("2024-01-02")]
    assert (report.first_day, report.last_day) == (dt.date(2024, 1, 1), dt.date(2024, 1, 3))
    assert raw.index.tolist() == [30, 10, 20]  # the caller's frame is not changed
    assert raw["timestamp"].tolist()[0] == "2024-01-03"


def test_dataframe_errors_name_rows_by_index_label() -> None:
    raw = frame(timestamp=["2024-01-01", "garbage"]).set_axis(["r1", "r2"])
    with pytest.raises(DataValidationError, match=r"row 'r2': 'garbage'"):
        load_transactions(raw)
    # repeated labels cannot name a row: positions are used
    raw = frame(timestamp=["2024-01-01", "garbage"]).set_axis([5, 5])
    with pytest.raises(DataValidationError, match=r"row 1: 'garbage'"):
        load_transactions(raw)


def test_dataframe_dropping_rows_with_non_default_index() -> None:
    raw = frame(customer_id=["a", None, "b"], timestamp=["2024-01-01", "2024-02-01", "2024-03-01"],
                amount=[1.0, 2.0, 3.0]).set_axis([100, 7, 3])
    tx, report = load_transactions(raw, as_of="2024-02-15")
    assert tx["customer_id"].tolist() == ["a"]
    assert report.dropped_missing_customer_id == 1 and report.dropped_after_as_of == 1
    assert tx.index.tolist() == [0]


@pytest.mark.parametrize(
    ("ids", "expected", "dtype"),
    [
        pytest.param([7, 42, 7], [7, 42, 7], "int64", id="int64"),
        pytest.param([1.0, np.nan, 3.0], [1, 3], "Int64", id="float-with-nan"),
        pytest.param(pd.array([1, None, 3], dtype="Int64"), [1, 3], "Int64", id="nullable-Int64"),
        pytest.param(pd.Series([1, None, BIG_ID], dtype=object), [1, BIG_ID], "Int64",
                     id="python-ints-object"),
        pytest.param(np.array([5, 6], dtype=np.uint32), [5, 6], "uint32", id="uint32"),
    ],
)
def test_dataframe_integer_ids_stay_integers(ids, expected, dtype) -> None:
    n = len(ids)
    tx, report = load_transactions(frame(customer_id=ids, timestamp=["2024-01-01"] * n,
                                         amount=[1.0] * n))
    assert tx["customer_id"].tolist() == expected
    assert str(tx["customer_id"].dtype) == dtype
    assert report.dropped_missing_customer_id == n - len(expected)


@pytest.mark.parametrize("missing", [None, np.nan, pd.NA, "", "  ", "nan", "None", "<NA>"],
                         ids=repr)
def test_dataframe_missing_ids_dropped_and_counted(missing) -> None:
    raw = frame(customer_id=pd.Series(["00042", missing, "b"], dtype=object),
                timestamp=["2024-01-01"] * 3, amount=[1.0] * 3)
    tx, report = load_transactions(raw)
    assert tx["customer_id"].tolist() == ["00042", "b"]
    assert report.dropped_missing_customer_id == 1
    assert report.customers == 2


def test_dataframe_mixed_type_ids_compared_as_text() -> None:
    tx, _ = load_transactions(frame(customer_id=pd.Series([1, "1", "a"], dtype=object),
                                    timestamp=["2024-01-01"] * 3, amount=[1.0] * 3))
    assert tx["customer_id"].tolist() == ["1", "1", "a"]


def test_dataframe_categorical_ids() -> None:
    tx, _ = load_transactions(frame(customer_id=pd.Categorical(["007", "008", "007"]),
                                    timestamp=["2024-01-01"] * 3, amount=[1.0] * 3))
    assert tx["customer_id"].tolist() == ["007", "008", "007"]


@pytest.mark.parametrize(
    ("column", "values", "fragment"),
    [
        ("customer_id", [True, False], "booleans, not customer ids"),
        ("amount", [True, False], "booleans (true/false), not amounts"),
        ("amount", pd.Series([True, 2.0], dtype=object), "row 0: True"),
        ("amount", [1.0, np.inf], "1 infinite or too large amounts (beyond "
                                  "+-1,000,000,000,000): row 1: inf"),
        ("amount", [-1e12, 1.0], "too large amounts (beyond +-1,000,000,000,000): row 0"),
        ("amount", [1.0, np.nan], "missing amounts: row 1"),
        ("timestamp", [1704067200, 1704067201], "int64 numbers, not dates"),
        ("timestamp", [pd.Timestamp("2024-01-01"), pd.NaT], "missing timestamps: row 1"),
    ],
)
def test_dataframe_bad_columns(column: str, values: Any, fragment: str) -> None:
    with pytest.raises(DataValidationError) as caught:
        load_transactions(frame(**{column: values}))
    assert fragment in str(caught.value)
    assert f"'{column}'" in str(caught.value)
    assert "DataFrame" in str(caught.value)


def test_dataframe_repeated_column_names() -> None:
    raw = pd.DataFrame([["a", "2024-01-01", 1.0, 2.0]],
                       columns=["customer_id", "timestamp", "amount", "amount"])
    with pytest.raises(DataValidationError, match="'amount' at positions 3, 4"):
        load_transactions(raw)


def test_dataframe_missing_column_suggests_python_keyword() -> None:
    raw = pd.DataFrame({"user_id": ["a"], "timestamp": ["2024-01-01"], "amount": [1.0]})
    with pytest.raises(MissingColumnError) as caught:
        load_transactions(raw)
    assert "customer_col='user_id'" in str(caught.value)
    assert isinstance(caught.value, KeyError) and isinstance(caught.value, ValueError)


def test_dataframe_empty() -> None:
    with pytest.raises(EmptyDataError):
        load_transactions(pd.DataFrame({"customer_id": [], "timestamp": [], "amount": []}))


def test_dataframe_datetime_objects_mixed_naive_and_aware() -> None:
    raw = frame(timestamp=pd.Series([pd.Timestamp("2024-01-01 10:00"),
                                     pd.Timestamp("2024-01-01 23:30", tz="America/New_York")],
                                    dtype=object), amount=[1.0, 2.0])
    tx, report = load_transactions(raw)
    assert tx["timestamp"].tolist() == [ts("2024-01-01 10:00"), ts("2024-01-02 04:30")]
    assert report.timestamps_converted_to_utc == 1


def test_dataframe_python_dates() -> None:
    tx, report = load_transactions(frame(timestamp=[dt.date(2024, 3, 31)], amount=[2]))
    assert tx["timestamp"].tolist() == [ts("2024-03-31")]
    assert report.timestamps_converted_to_utc == 0


@pytest.mark.parametrize("source", [42, ["a.csv"], None, b"tx.csv"], ids=repr)
def test_not_a_source(source: Any) -> None:
    with pytest.raises(DataValidationError, match="file path or a pandas DataFrame"):
        load_transactions(source)


def test_optional_and_extra_columns(tmp_path: Path) -> None:
    path = tmp_path / "tx.csv"
    path.write_text("cust,when,paid,order,qty,country\n"
                    "01,2024-01-01,10,o-1,2,DE\n01,2024-01-01,10,o-1,2,DE\n")
    tx, report = load_transactions(path, customer_col="cust", time_col="when", amount_col="paid",
                                   order_col="order", quantity_col="qty", extra_cols=["country"])
    assert list(tx.columns) == ["customer_id", "timestamp", "amount", "order_id", "quantity",
                                "country"]
    assert tx["order_id"].tolist() == ["o-1", "o-1"]
    assert tx["quantity"].tolist() == [2.0, 2.0]
    assert report.duplicate_rows == 1
    with pytest.raises(MissingColumnError, match="'segment'"):
        load_transactions(path, customer_col="cust", time_col="when", amount_col="paid",
                          extra_cols=["segment"])
    path.write_text("customer_id,timestamp,amount,qty\na,2024-01-01,1,two\n")
    with pytest.raises(DataValidationError, match=r"'qty'.*row 1 \(line 2\): 'two'"):
        load_transactions(path, quantity_col="qty")


def test_deduplicate_drops_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "tx.csv"
    path.write_text(HEADER + "a,2024-01-01,5\na,2024-01-01,5\na,2024-01-01,6\na,2024-01-01,5\n")
    tx, report = load_transactions(path, deduplicate=True)
    assert tx["amount"].tolist() == [5.0, 6.0]
    assert report.duplicate_rows == 2 and report.dropped_duplicates == 2
    assert report.rows_dropped == 2
    tx, report = load_transactions(path)
    assert len(tx) == 4 and report.duplicate_rows == 2 and report.dropped_duplicates == 0


def test_unreadable_file_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    # Root ignores file permissions, so the refusal is simulated at open().
    path = tmp_path / "locked.csv"
    path.write_text(HEADER + "a,2024-01-01,1\n")
    real_open = Path.open

    def refuse(self: Path, *args: Any, **kwargs: Any):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(DataValidationError, match=r"locked\.csv: cannot open \(Permission denied"):
        load_transactions(path)


def test_report_to_dict_and_lines() -> None:
    _, report = load_transactions(frame(customer_id=["a", "b"], amount=[5.0, -2.0]),
                                  as_of="2024-06-30")
    out = report.to_dict()
    assert out["as_of"] == "2024-06-30" and out["first_day"] == "2024-01-01"
    assert out["rows_dropped"] == 0 and out["refund_total"] == 2.0
    assert json.loads(json.dumps(out)) == out
    labels = [label for label, _ in report.lines()]
    assert "refund rows (negative amount)" in labels and len(labels) == len(set(labels))


def test_no_refunds_total_is_plain_zero() -> None:
    _, report = load_transactions(frame(amount=[5.0]))
    assert report.refund_total == 0.0 and math.copysign(1, report.refund_total) == 1
    assert dict(report.lines())["refund total"] == "0.00"


def test_golden_example_loads_unchanged(golden_raw: pd.DataFrame) -> None:
    tx, report = load_transactions(golden_raw)
    assert tx["customer_id"].tolist() == golden_raw["customer_id"].tolist()
    assert tx["amount"].tolist() == golden_raw["amount"].tolist()
    assert report.customers == 6 and report.duplicate_rows == 0
    assert (report.first_day, report.last_day) == (dt.date(2023, 6, 1), dt.date(2024, 5, 20))


# --- properties ---------------------------------------------------------------------------------

_ID_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=12
).filter(lambda s: s.strip().lower() not in {"", "nan", "none", "null", "<na>", "na", "n/a",
                                             "#n/a", "nat"} and not s.startswith("\ufeff"))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=st.lists(_ID_TEXT, min_size=1, max_size=20),
       offsets=st.lists(st.integers(-14 * 60, 14 * 60), min_size=1, max_size=20),
       cents=st.lists(st.integers(-10**6, 10**6), min_size=1, max_size=20))
def test_csv_round_trip_keeps_ids_times_and_amounts(tmp_path: Path, ids, offsets, cents) -> None:
    n = min(len(ids), len(offsets), len(cents))
    ids, offsets, cents = ids[:n], offsets[:n], cents[:n]
    base = pd.Timestamp("2024-03-31 23:30")
    zones = [dt.timezone(dt.timedelta(minutes=o)) for o in offsets]
    stamps = [(base + pd.Timedelta(minutes=i * 97)).tz_localize(zone)
              for i, zone in enumerate(zones)]
    raw = pd.DataFrame({"customer_id": ids, "timestamp": [s.isoformat() for s in stamps],
                        "amount": [c / 100 for c in cents]})
    path = tmp_path / "prop.csv"
    raw.to_csv(path, index=False)
    tx, report = load_transactions(path)
    assert tx["customer_id"].tolist() == ids
    expected = [s.tz_convert("UTC").tz_localize(None) for s in stamps]
    assert tx["timestamp"].tolist() == expected
    assert tx["amount"].tolist() == [c / 100 for c in cents]
    assert report.timestamps_converted_to_utc == n
    assert report.refund_rows == sum(c < 0 for c in cents)


def test_public_names() -> None:
    for name in ("load_transactions", "CleaningReport", "LoadResult", "DataValidationError",
                 "EmptyDataError", "MissingColumnError"):
        assert name in churnlens.__all__


# --- the fast paths agree with the rules they shortcut -----------------------------------------
# _loading parses the common case with Arrow and leaves everything else to the pandas
# rules; these tests run the rules with and without the shortcut on generated text.

from churnlens import _loading  # noqa: E402


def _outcome(parse: Callable[[], Any]) -> Any:
    try:
        result = parse()
    except DataValidationError as exc:
        return ("error", str(exc))
    if isinstance(result, tuple):  # timestamps: (values, converted)
        return ("ok", result[0].tolist(), result[1], str(result[0].dtype))
    return ("ok", result.tolist(), str(result.dtype))


def _both_ways(monkeypatch, shortcut: str, parse: Callable[[], Any]) -> tuple[Any, Any]:
    fast = _outcome(parse)
    with monkeypatch.context() as patch:
        patch.setattr(_loading, shortcut, lambda values: None)
        slow = _outcome(parse)
    return fast, slow


_two = st.integers(0, 99).map(lambda v: f"{v:02d}")
_timestamp_text = st.one_of(
    st.builds(
        lambda year, month, day, sep, time, frac, offset, pad: (
            f"{pad}{year:04d}-{month}-{day}{sep}{time}{frac}{offset}{pad}"
        ),
        st.sampled_from([1, 1970, 2023, 2024, 9999]),
        st.sampled_from(["01", "02", "12", "13", "00", "1"]),
        st.sampled_from(["01", "28", "29", "30", "31", "32", "1"]),
        st.sampled_from(["", "T", " ", "t"]),
        st.one_of(st.just(""), st.builds(lambda h, m, s: f"{h}:{m}:{s}", _two, _two, _two),
                  st.builds(lambda h, m: f"{h}:{m}", _two, _two), _two),
        st.sampled_from(["", ".5", ".123456", ".1234567", ","]),
        st.sampled_from(["", "", "Z", "z", "+02:00", "-05:00", "+0530", "+14", "+25:00",
                         " +01:00"]),
        st.sampled_from(["", "", " "]),
    ),
    st.text(max_size=12),
)


_moment = st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31))
_naive_text = st.builds(
    lambda moment, sep, spec: moment.date().isoformat() if spec == "date"
    else moment.isoformat(sep=sep, timespec=spec),
    _moment, st.sampled_from(["T", " "]),
    st.sampled_from(["date", "hours", "minutes", "seconds", "microseconds"]),
)
_aware_text = st.builds(
    lambda moment, spec, offset: moment.isoformat(timespec=spec) + offset,
    st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1)),
    st.sampled_from(["hours", "minutes", "seconds", "microseconds"]),
    st.sampled_from(["Z", "+02:00", "-05:00", "+0530", "+14", "-00:00"]),
)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.one_of(
    st.lists(_naive_text, min_size=1, max_size=6),  # the shortcut's two cases...
    st.lists(_aware_text, min_size=1, max_size=6),
    st.lists(st.one_of(_naive_text, _aware_text, _timestamp_text), min_size=1, max_size=6),
))
def test_arrow_timestamps_agree_with_the_rules(monkeypatch, values: list[str]) -> None:
    series = pd.Series(values, dtype="str")
    fast, slow = _both_ways(monkeypatch, "_arrow_timestamps", lambda: _loading._parse_timestamps(
        series, "tx.csv", "timestamp", True, None))
    assert fast == slow


_amount_text = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10**20, 10**20).map(str),
    st.builds(lambda a, b: f"{a}.{b}", st.integers(-999, 999), st.integers(0, 999)),
    st.sampled_from(["", " 5", "5 ", "+2", ".5", "5.", "1e5", "1E-2", "1e999", "-inf",
                     "Infinity", "NaN", "nan", "1_000", "0x10", "1,5", "$3", "true", "00012",
                     "--1", "١٢", "1d"]),
    st.text(max_size=6),
)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(_amount_text, min_size=1, max_size=6))
def test_arrow_amounts_agree_with_the_rules(monkeypatch, values: list[str]) -> None:
    series = pd.Series(values, dtype="str")
    fast, slow = _both_ways(monkeypatch, "_arrow_numbers", lambda: _loading._parse_amounts(
        series, "tx.csv", "amount", True))
    assert fast == slow


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_duplicate_count_matches_pandas(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 20_000
    raw = pd.DataFrame({
        "customer_id": pd.Series([f"{i:05d}" for i in rng.integers(0, 300, n)], dtype="str"),
        "timestamp": pd.Timestamp("2024-01-01")
        + pd.to_timedelta(rng.integers(0, 5, n), unit="D"),
        "amount": rng.choice([1.0, 2.5, -1.0, 0.0], n),
        "order_id": pd.array(rng.choice([1, 2, None], n), dtype="Int64"),
        "country": pd.Series(rng.choice(["DE", "FR", None], n), dtype="str"),
    })
    tx, report = load_transactions(raw, order_col="order_id", extra_cols=["country"])
    expected = int(tx.duplicated().sum())
    assert report.duplicate_rows == expected > 0
    deduplicated, report = load_transactions(raw, order_col="order_id", extra_cols=["country"],
                                             deduplicate=True)
    pd.testing.assert_frame_equal(deduplicated, tx.drop_duplicates().reset_index(drop=True))
    assert report.dropped_duplicates == expected
    assert report.customers == tx["customer_id"].nunique()


# --- the contract for frames in memory (is_clean / ensure_clean) -----------------------


def test_loader_output_is_clean_and_passed_through_as_is() -> None:
    raw = pd.DataFrame({"customer_id": ["007", "8", "9"],
                        "timestamp": ["2024-01-10", "2024-02-01T10:00:00+02:00", "2024-02-03"],
                        "amount": ["30", "-5", "12.5"]})
    assert not _loading.is_clean(raw)
    clean = load_transactions(raw).transactions
    assert _loading.is_clean(clean)
    assert _loading.ensure_clean(clean) is clean
    pd.testing.assert_frame_equal(_loading.ensure_clean(raw), clean)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda f: f.assign(timestamp=f["timestamp"].dt.tz_localize("UTC")), "time zone"),
        (lambda f: f.assign(customer_id=["a", " NA ", "c"]), "id reading as missing"),
        (lambda f: f.assign(customer_id=["a", None, "c"]), "missing id"),
        (lambda f: f.assign(customer_id=["a", 2, "c"]), "mixed ids"),
        (lambda f: f.assign(amount=[1.0, np.inf, 2.0]), "infinite amount"),
        (lambda f: f.assign(amount=[1.0, 2e12, 2.0]), "amount out of range"),
        (lambda f: f.assign(amount=[1, 2, 3]), "integer amounts"),
        (lambda f: f.drop(columns="amount"), "missing column"),
    ],
)
def test_not_clean_frames_go_through_the_loader(change: Callable[[pd.DataFrame], pd.DataFrame],
                                                why: str) -> None:
    clean = pd.DataFrame({"customer_id": ["a", "b", "c"],
                          "timestamp": pd.to_datetime(["2024-01-01", "2024-01-02",
                                                       "2024-01-03 23:30"], format="ISO8601"),
                          "amount": [1.0, 2.0, 3.0]})
    assert _loading.is_clean(clean)
    changed = change(clean)
    assert not _loading.is_clean(changed), why
    try:
        expected = load_transactions(changed).transactions
    except DataValidationError as exc:
        with pytest.raises(DataValidationError, match=str(exc)[:30].replace("(", r"\(")):
            _loading.ensure_clean(changed)
    else:
        pd.testing.assert_frame_equal(_loading.ensure_clean(changed), expected)


# --- one customer, one id, whatever the file format (README "Customer ids") -----------------


def by_text_id(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows keyed by the text of the id (integer ids sort as numbers, text as text)."""
    out = frame.assign(customer_id=frame["customer_id"].astype(str))
    return out.sort_values("customer_id").reset_index(drop=True)


def test_the_same_id_is_one_customer_in_csv_and_parquet(tmp_path: Path) -> None:
    """Integer ids with a gap are floats in pandas: CSV gets "1.0", Parquet gets 1.0 (or
    1 when stored as integers). All three load as the same customers, with the same
    text, the same counts and the same features; text ids keep their leading zeros."""
    from churnlens import compute_features

    raw = pd.DataFrame({
        "customer_id": [1.0, 2.0, None, 1.0, 10.0, 2.0],
        "timestamp": pd.to_datetime(["2024-01-02", "2024-01-05", "2024-01-06", "2024-02-01",
                                     "2024-02-03", "2024-03-01"]),
        "amount": [10.0, 20.0, 5.0, 7.5, 3.0, 1.0],
    })
    raw.to_csv(tmp_path / "floats.csv", index=False)
    assert "\n1.0," in (tmp_path / "floats.csv").read_text()  # what pandas writes
    raw.to_parquet(tmp_path / "floats.parquet", index=False)
    raw.astype({"customer_id": "Int64"}).to_parquet(tmp_path / "ints.parquet", index=False)
    raw.astype({"customer_id": "Int64"}).to_csv(tmp_path / "ints.csv", index=False)
    loaded = {name: load_transactions(tmp_path / name)
              for name in ("floats.csv", "floats.parquet", "ints.parquet", "ints.csv")}
    features = {name: compute_features(tx, "2024-03-31") for name, (tx, _) in loaded.items()}
    for name, (tx, report) in loaded.items():
        assert tx["customer_id"].astype(str).tolist() == ["1", "2", "1", "10", "2"], name
        assert report.customers == 3 and report.dropped_missing_customer_id == 1, name
        pd.testing.assert_frame_equal(by_text_id(features[name]),
                                      by_text_id(features["floats.csv"]))
    # text stays text: leading zeros and non-whole numbers are ids as written
    (tmp_path / "text.csv").write_text(HEADER + "007,2024-01-01,1\n007.0,2024-01-01,1\n"
                                                "1.5,2024-01-01,1\n")
    assert load_transactions(tmp_path / "text.csv").transactions["customer_id"].tolist() == [
        "007", "007.0", "1.5"]
