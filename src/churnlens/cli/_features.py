"""``features``: point-in-time features of every customer, written to a file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from churnlens._features import DEFAULT_WINDOWS_DAYS, compute_features
from churnlens._io import TABLE_SUFFIXES, check_output_path, write_table
from churnlens._loading import load_transactions
from churnlens._validation import parse_date
from churnlens._version import __version__
from churnlens.cli._app import (
    AmountColOpt,
    CustomerColOpt,
    TimeColOpt,
    TimeFormatOpt,
    TransactionsOpt,
    app,
    handle_errors,
    stderr,
    stdout,
)
from churnlens.exceptions import ChurnlensError


@app.command()
@handle_errors
def features(
    transactions: TransactionsOpt,
    as_of: Annotated[
        str, typer.Option("--as-of", help="As-of date (YYYY-MM-DD): features use history "
                                          "up to and including this day only.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file (.csv or .parquet).")],
    customer_col: CustomerColOpt = "customer_id",
    time_col: TimeColOpt = "timestamp",
    amount_col: AmountColOpt = "amount",
    time_format: TimeFormatOpt = None,
    windows_days: Annotated[
        str, typer.Option("--windows-days",
                          help="Comma-separated activity windows in days.")
    ] = ",".join(str(w) for w in DEFAULT_WINDOWS_DAYS),
) -> None:
    """Write one row of features per customer acquired by the as-of date (docs/features.md)."""
    target = check_output_path(out, suffixes=TABLE_SUFFIXES)
    as_of_date = parse_date(as_of, name="--as-of").date()
    windows = _parse_windows(windows_days)
    began = time.perf_counter()
    clean, report = load_transactions(
        transactions, customer_col=customer_col, time_col=time_col, amount_col=amount_col,
        time_format=time_format, as_of=as_of_date,
    )
    frame = compute_features(clean, as_of_date, windows_days=windows)
    frame = frame.sort_values("customer_id", kind="stable").reset_index(drop=True)
    frame["as_of"] = frame["as_of"].dt.date  # a date column in Parquet, YYYY-MM-DD in CSV
    write_table(frame, target, metadata={
        "as_of": as_of_date.isoformat(), "windows_days": json.dumps(list(windows)),
        "source": report.source, "churnlens_version": __version__,
    })
    stderr().print(
        f"read {report.rows_read:,} rows; {report.dropped_after_as_of:,} after the as-of "
        f"date and {report.dropped_missing_customer_id:,} without a customer id were left out",
        highlight=False,
    )
    stdout().print(
        f"wrote features of {len(frame):,} customers as of {as_of_date} "
        f"({len(frame.columns) - 2} features) to {target} in "
        f"{time.perf_counter() - began:.1f} s",
        highlight=False,
    )


def _parse_windows(text: str) -> tuple[int, ...]:
    try:
        windows = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ChurnlensError(
            f"--windows-days: {text!r} is not a comma-separated list of whole days. "
            "Suggestion: for example --windows-days 30,90,180,365."
        ) from None
    return windows
